// Fuzz targets of the data readers: IDX (plain and gzip), CIFAR binary, safetensors, BPE files.
#include <zlib.h>

#include <tern/data/cifar.hpp>
#include <tern/data/idx.hpp>
#include <tern/io/safetensors.hpp>
#include <tern/text/tokenizer.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>

#include "harness.hpp"

namespace tern_fuzz {
namespace {

using detail::finding;

void expect(bool ok, const char* target, const std::string& what) {
    if (!ok) finding(target, what);
}

/// Runs @p fn, which must not throw at all (it works on something a reader accepted).
template <class Fn>
void must_work(const char* target, const char* what, Fn&& fn) {
    try {
        fn();
    } catch (const finding_error&) {
        throw;
    } catch (const std::exception& e) {
        finding(target, std::string(what) + " failed on accepted input: " + e.what());
    }
}

/// IDX contract: read_idx accepts or rejects; what it accepts decodes (idx_to_tensor) to
/// exactly count() elements; the typed loaders accept or reject the same file on their own.
verdict check_idx_file(const char* target, const std::filesystem::path& path) {
    tern::data::idx_file f;
    const verdict v = guarded(target, [&] { f = tern::data::read_idx(path); });
    if (v == verdict::accepted) {
        std::size_t count = 1;
        for (auto d : f.dims) count *= d;
        expect(f.count() == count && f.bytes.size() == count * tern::data::idx_element_size(f.type), target,
               "read_idx returned " + std::to_string(f.bytes.size()) + " bytes for dims " +
                   tern::detail::shape_string(f.dims));
        must_work(target, "idx_to_tensor", [&] {
            const tern::tensor t = tern::data::idx_to_tensor(f);
            expect(t.size() == count && tern::detail::to_shape(t.shape()) == f.dims, target,
                   "idx_to_tensor gave shape " + tern::detail::shape_string(t.shape()));
        });
    }
    tern::tensor images;
    if (guarded(target, [&] { images = tern::data::load_idx_images(path); }) == verdict::accepted) {
        expect(v == verdict::accepted && images.dimension() == 2, target, "load_idx_images accepted a bad file");
        for (float x : images) expect(x >= 0.0f && x <= 1.0f, target, "load_idx_images: pixel outside [0, 1]");
    }
    std::vector<int> labels;
    if (guarded(target, [&] { labels = tern::data::load_idx_labels(path); }) == verdict::accepted)
        expect(v == verdict::accepted && labels.size() == f.bytes.size(), target, "load_idx_labels disagrees with read_idx");
    return v;
}

void gzip_to(const std::filesystem::path& path, const std::uint8_t* data, std::size_t size) {
    gzFile g = gzopen(path.string().c_str(), "wb");
    if (!g) finding("idx_gzip", "harness: gzopen for writing failed");
    if (size) gzwrite(g, data, static_cast<unsigned>(size));
    gzclose(g);
}

/// CIFAR contract for one layout: a data set of n images [n, 3, 32, 32] in [0, 1], labels in range.
verdict check_cifar(const std::filesystem::path& path, int classes, bool hundred, bool fine) {
    tern::data::dataset d;
    const verdict v = guarded("cifar", [&] {
        d = hundred ? tern::data::load_cifar100_file(path, fine) : tern::data::load_cifar10_file(path);
    });
    if (v == verdict::rejected) return v;
    const std::size_t n = d.labels.size();
    expect(tern::detail::to_shape(d.inputs.shape()) == tern::shape_t{n, 3, 32, 32}, "cifar",
           "images of shape " + tern::detail::shape_string(d.inputs.shape()) + " for " + std::to_string(n) + " labels");
    for (int l : d.labels) expect(l >= 0 && l < classes, "cifar", "label " + std::to_string(l) + " out of range");
    for (float x : d.inputs) expect(x >= 0.0f && x <= 1.0f, "cifar", "pixel outside [0, 1]");
    return v;
}

bool same(const tern::io::safetensors_data& a, const tern::io::safetensors_data& b) {
    if (a.metadata != b.metadata || a.tensors.size() != b.tensors.size()) return false;
    for (const auto& [name, t] : a.tensors) {
        auto it = b.tensors.find(name);
        if (it == b.tensors.end() || it->second.type != t.type || it->second.shape != t.shape ||
            it->second.bytes != t.bytes)
            return false;
    }
    return true;
}

}  // namespace

verdict run_idx(const std::uint8_t* data, std::size_t size) {
    const auto path = detail::scratch_file("idx", ".idx");
    detail::write_file(path, data, size);
    return check_idx_file("idx", path);
}

/// First byte odd: the rest is IDX content that the harness gzips (the fuzzer explores the IDX
/// layout through the gzip path); even: the rest is written as is (corrupt gzip streams).
verdict run_idx_gzip(const std::uint8_t* data, std::size_t size) {
    const auto path = detail::scratch_file("idx_gzip", ".idx.gz");
    if (size == 0) return verdict::rejected;
    if (data[0] & 1) {
        gzip_to(path, data + 1, size - 1);
    } else {
        // Make sure the reader takes the gzip path: a gzip magic in front of the bytes.
        std::vector<std::uint8_t> bytes(size + 1);
        bytes[0] = 0x1f;
        bytes[1] = 0x8b;
        std::copy(data + 1, data + size, bytes.begin() + 2);
        detail::write_file(path, bytes);
    }
    return check_idx_file("idx_gzip", path);
}

verdict run_cifar(const std::uint8_t* data, std::size_t size) {
    const auto path = detail::scratch_file("cifar", ".bin");
    detail::write_file(path, data, size);
    // The same bytes through the three layouts: accepted if any of them accepts.
    const verdict fine = check_cifar(path, 100, true, true);
    const verdict coarse = check_cifar(path, 20, true, false);
    const verdict ten = check_cifar(path, 10, false, false);
    const bool any = fine == verdict::accepted || coarse == verdict::accepted || ten == verdict::accepted;
    return any ? verdict::accepted : verdict::rejected;
}

/// safetensors contract: the file reader and the in-memory parser agree (verdict and contents);
/// what they accept re-serializes to bytes that parse back to the same contents, and every F32
/// tensor decodes.
verdict run_safetensors(const std::uint8_t* data, std::size_t size) {
    const auto path = detail::scratch_file("safetensors", ".safetensors");
    detail::write_file(path, data, size);
    tern::io::safetensors_data from_file, from_memory;
    const verdict v = guarded("safetensors", [&] { from_file = tern::io::load_safetensors(path); });
    const std::string file_error = last_error();
    const verdict m = guarded("safetensors", [&] { from_memory = tern::io::parse_safetensors(data, size, "fuzz"); });
    expect(v == m, "safetensors",
           std::string("load_safetensors and parse_safetensors disagree: ") +
               (v == verdict::accepted ? "file accepted" : "file rejected: " + file_error) + ", memory " +
               (m == verdict::accepted ? "accepted" : "rejected: " + last_error()));
    if (v == verdict::rejected) return v;
    expect(same(from_file, from_memory), "safetensors", "load_safetensors and parse_safetensors read different contents");
    must_work("safetensors", "re-serializing", [&] {
        const std::vector<std::uint8_t> again = tern::io::serialize_safetensors(from_file);
        const auto back = tern::io::parse_safetensors(again.data(), again.size(), "again");
        expect(same(back, from_file), "safetensors", "serialize + parse does not round trip");
        for (const auto& [name, t] : from_file.tensors)
            if (t.type == tern::io::dtype::f32) {
                const tern::tensor x = from_file.get_f32(name);
                expect(x.size() * 4 == t.bytes.size(), "safetensors", "get_f32 size mismatch");
            }
    });
    return v;
}

/// BPE contract: a loaded tokenizer has 256 + merges tokens, and encode/decode round trip any
/// bytes (here a fixed text plus the input itself) with ids below the vocabulary size.
verdict run_bpe(const std::uint8_t* data, std::size_t size) {
    const auto path = detail::scratch_file("bpe", ".bpe");
    detail::write_file(path, data, size);
    tern::text::bpe_tokenizer tok;
    const verdict v = guarded("bpe", [&] { tok = tern::text::bpe_tokenizer::load(path); });
    if (v == verdict::rejected) return v;
    must_work("bpe", "encode/decode", [&] {
        expect(tok.vocab_size() == 256 + tok.merges().size(), "bpe", "vocab_size is not 256 + merges");
        std::string text = "In the beginning God created the heaven and the earth. 0123 \xe2\x80\x94 \t\n";
        text.append(reinterpret_cast<const char*>(data), std::min<std::size_t>(size, 512));
        const std::vector<int> ids = tok.encode(text);
        for (int id : ids) expect(id >= 0 && std::size_t(id) < tok.vocab_size(), "bpe", "encode gave an id out of range");
        expect(tok.decode(ids) == text, "bpe", "decode(encode(text)) != text");
    });
    return v;
}

namespace detail {
namespace {

void put_be32(std::vector<std::uint8_t>& out, std::uint32_t v) {
    for (int s = 24; s >= 0; s -= 8) out.push_back(static_cast<std::uint8_t>(v >> s));
}

std::vector<std::uint8_t> idx_bytes(std::uint8_t type, const std::vector<std::uint32_t>& dims, std::size_t elem) {
    std::vector<std::uint8_t> out{0, 0, type, static_cast<std::uint8_t>(dims.size())};
    std::size_t n = 1;
    for (auto d : dims) {
        put_be32(out, d);
        n *= d;
    }
    for (std::size_t i = 0; i < n * elem; ++i) out.push_back(static_cast<std::uint8_t>(i * 37 + 11));
    return out;
}

std::vector<std::uint8_t> gzip_bytes(const std::vector<std::uint8_t>& plain) {
    z_stream z{};
    deflateInit2(&z, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY);  // +16: gzip wrapper
    std::vector<std::uint8_t> out(deflateBound(&z, static_cast<uLong>(plain.size())) + 32);
    z.next_in = const_cast<Bytef*>(plain.data());
    z.avail_in = static_cast<uInt>(plain.size());
    z.next_out = out.data();
    z.avail_out = static_cast<uInt>(out.size());
    deflate(&z, Z_FINISH);
    out.resize(z.total_out);
    deflateEnd(&z);
    return out;
}

void seed(const std::filesystem::path& dir, const char* target, const std::string& name,
          const std::vector<std::uint8_t>& bytes, std::size_t& count) {
    std::filesystem::create_directories(dir / target);
    write_file(dir / target / name, bytes);
    ++count;
}

}  // namespace

std::size_t write_data_seeds(const std::filesystem::path& dir) {
    std::size_t n = 0;
    // IDX: tern has no IDX writer, so the seeds are the format's byte layout (MNIST-like files).
    const std::vector<std::vector<std::uint8_t>> idx = {
        idx_bytes(0x08, {3, 4, 5}, 1),  // images
        idx_bytes(0x08, {6}, 1),        // labels
        idx_bytes(0x09, {2, 3}, 1),  idx_bytes(0x0B, {2, 2}, 2), idx_bytes(0x0C, {3}, 4),
        idx_bytes(0x0D, {2, 2}, 4),  idx_bytes(0x0E, {1, 2, 1, 2}, 8), idx_bytes(0x08, {0, 7}, 1),
    };
    for (std::size_t i = 0; i < idx.size(); ++i) {
        seed(dir, "idx", "seed" + std::to_string(i) + ".idx", idx[i], n);
        std::vector<std::uint8_t> odd(1 + idx[i].size(), 1);  // first byte odd: the harness gzips the rest
        std::copy(idx[i].begin(), idx[i].end(), odd.begin() + 1);
        seed(dir, "idx_gzip", "seed" + std::to_string(i) + ".plain", odd, n);
        const auto gz = gzip_bytes(idx[i]);  // the harness writes the 1f 8b magic itself
        std::vector<std::uint8_t> even(gz.size() - 1, 0);
        std::copy(gz.begin() + 2, gz.end(), even.begin() + 1);
        seed(dir, "idx_gzip", "seed" + std::to_string(i) + ".gz", even, n);
    }
    // CIFAR: two records of CIFAR-10 (1 label byte) and of CIFAR-100 (2 label bytes).
    for (std::size_t label_bytes : {1, 2}) {
        std::vector<std::uint8_t> f;
        for (int r = 0; r < 2; ++r) {
            for (std::size_t l = 0; l < label_bytes; ++l) f.push_back(static_cast<std::uint8_t>(r + 3 * l));
            for (std::size_t i = 0; i < tern::data::cifar_image_bytes; ++i) f.push_back(static_cast<std::uint8_t>(i * 7 + r));
        }
        seed(dir, "cifar", "seed" + std::to_string(label_bytes) + ".bin", f, n);
    }
    // safetensors, written by tern: metadata, several dtypes, a zero-size tensor.
    {
        tern::io::safetensors_data d;
        d.metadata["note"] = "seed";
        d.metadata["tern.format"] = "fuzz";
        tern::tensor w = tern::tensor::from_shape({2, 3});
        for (std::size_t i = 0; i < w.size(); ++i) w.data()[i] = 0.5f * float(i) - 1.0f;
        d.put("w", w);
        d.put("b", tern::tensor::from_shape({3}));
        d.put_bytes("u", tern::io::dtype::u8, {4}, {1, 2, 3, 4});
        d.put_bytes("i", tern::io::dtype::i64, {1}, std::vector<std::uint8_t>(8, 7));
        d.put_bytes("e", tern::io::dtype::f16, {0, 3}, {});
        seed(dir, "safetensors", "seed0.safetensors", tern::io::serialize_safetensors(d), n);
        tern::io::safetensors_data empty;
        seed(dir, "safetensors", "seed1.safetensors", tern::io::serialize_safetensors(empty), n);
    }
    // BPE, written by tern after training on a short text.
    {
        const std::string text =
            "In the beginning God created the heaven and the earth. And the earth was without form, and void; "
            "and darkness was upon the face of the deep. And the Spirit of God moved upon the face of the waters.";
        const auto path = dir / "bpe" / "seed0.bpe";
        std::filesystem::create_directories(dir / "bpe");
        tern::text::bpe_tokenizer::train(text, 300).save(path);
        tern::text::bpe_tokenizer{}.save(dir / "bpe" / "seed1.bpe");
        n += 2;
    }
    return n;
}

}  // namespace detail
}  // namespace tern_fuzz
