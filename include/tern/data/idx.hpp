#pragma once
/// @file idx.hpp
/// @brief Reader for the IDX format of MNIST / Fashion-MNIST, plain or gzip-compressed.
///
/// Layout (all big-endian): bytes `0x00 0x00 <type> <ndim>`, then ndim uint32 dimensions, then
/// the elements in row-major order. Header dimensions are never trusted (docs/file-formats.md):
/// the rank and the element count are capped (io::limits), for plain files the dimensions are
/// checked against the real file size before anything is allocated, and gzip data is read in
/// chunks that stop at the claimed size (so a lying header cannot trigger a huge allocation).

#include <zlib.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <string>
#include <system_error>
#include <vector>

#include "../error.hpp"
#include "../io/checked.hpp"
#include "../tensor.hpp"
#include "batches.hpp"

namespace tern::data {

namespace detail {
// tern's shared checks and shape helpers (require, fail, shape_string, ...) are used from here.
using namespace ::tern::detail;
}  // namespace detail

/// @brief IDX element type codes (third magic byte).
enum class idx_type : std::uint8_t { u8 = 0x08, i8 = 0x09, i16 = 0x0B, i32 = 0x0C, f32 = 0x0D, f64 = 0x0E };

/// @brief Size in bytes of one element of @p t.
constexpr std::size_t idx_element_size(idx_type t) {
    switch (t) {
        case idx_type::u8:
        case idx_type::i8: return 1;
        case idx_type::i16: return 2;
        case idx_type::i32:
        case idx_type::f32: return 4;
        case idx_type::f64: return 8;
    }
    return 0;
}

/// @brief Human-readable name of @p t ("ubyte", "float32", ...).
constexpr const char* idx_type_name(idx_type t) {
    switch (t) {
        case idx_type::u8: return "ubyte (0x08)";
        case idx_type::i8: return "byte (0x09)";
        case idx_type::i16: return "int16 (0x0B)";
        case idx_type::i32: return "int32 (0x0C)";
        case idx_type::f32: return "float32 (0x0D)";
        case idx_type::f64: return "float64 (0x0E)";
    }
    return "unknown";
}

/// @brief Contents of an IDX file: element type, dimensions and the raw element bytes
/// (exactly product(dims) * element size bytes, still big-endian as in the file).
struct idx_file {
    idx_type type = idx_type::u8;
    shape_t dims;
    std::vector<std::uint8_t> bytes;

    /// @brief Number of elements (product of dims).
    std::size_t count() const { return bytes.size() / idx_element_size(type); }
};

namespace detail {

inline std::string hex_bytes(const std::uint8_t* p, std::size_t n) {
    static const char* digits = "0123456789abcdef";
    std::string s;
    for (std::size_t i = 0; i < n; ++i) {
        if (i) s += ' ';
        s += digits[p[i] >> 4];
        s += digits[p[i] & 15];
    }
    return s;
}

inline std::uint32_t load_be32(const std::uint8_t* p) {
    return (std::uint32_t(p[0]) << 24) | (std::uint32_t(p[1]) << 16) | (std::uint32_t(p[2]) << 8) | p[3];
}

/// Sequential byte source over a plain file: read() returns fewer bytes only at end of file.
class idx_plain_reader {
public:
    explicit idx_plain_reader(const std::filesystem::path& path) : in_(path, std::ios::binary) {}
    bool is_open() const { return in_.is_open(); }
    std::size_t read(std::uint8_t* dst, std::size_t n) {
        in_.read(reinterpret_cast<char*>(dst), static_cast<std::streamsize>(n));
        return static_cast<std::size_t>(in_.gcount());
    }

private:
    std::ifstream in_;
};

/// Sequential byte source over a gzip file (zlib's gz* API), closed on destruction.
class idx_gzip_reader {
public:
    idx_gzip_reader(const std::filesystem::path& path, const std::string& where)
        : file_(gzopen(path.string().c_str(), "rb")), where_(where) {
        require(file_ != nullptr, where_, ": cannot open for gzip decompression");
        gzbuffer(file_, 1u << 17);
    }
    ~idx_gzip_reader() {
        if (file_) gzclose(file_);
    }
    idx_gzip_reader(const idx_gzip_reader&) = delete;
    idx_gzip_reader& operator=(const idx_gzip_reader&) = delete;

    /// Returns fewer than @p n bytes only at the end of the stream; throws on corrupt data.
    std::size_t read(std::uint8_t* dst, std::size_t n) {
        std::size_t got = 0;
        while (got < n) {
            const unsigned want = static_cast<unsigned>(std::min<std::size_t>(n - got, 1u << 20));
            const int r = gzread(file_, dst + got, want);
            // A stream cut short ends with gzread() == 0 and Z_BUF_ERROR rather than -1, so the
            // error state is checked on every short read, not only on -1.
            int code = Z_OK;
            const char* msg = r > 0 ? nullptr : gzerror(file_, &code);
            if (r < 0 || code != Z_OK)
                fail(where_, ": gzip decompression failed after ", decompressed_ + got,
                     " decompressed bytes: ", msg && *msg ? msg : "unknown zlib error");
            if (r == 0) break;
            got += static_cast<std::size_t>(r);
        }
        decompressed_ += got;
        return got;
    }

private:
    gzFile file_;
    std::string where_;
    std::size_t decompressed_ = 0;
};

/// Parses header and payload from @p in. @p plain_size is the file size for plain files (checked
/// against the header before allocating), or 0 with @p gzip for compressed input.
template <class Reader>
idx_file parse_idx_stream(Reader& in, bool gzip, std::uintmax_t plain_size, const std::string& where) {
    const char* what = gzip ? "decompressed data" : "file";
    std::array<std::uint8_t, 4> magic{};
    const std::size_t got_magic = in.read(magic.data(), 4);
    require(got_magic == 4, where, ": truncated header: expected a 4-byte magic number, the ", what,
            " has only ", got_magic, " bytes");
    require(magic[0] == 0 && magic[1] == 0, where, ": bad magic: expected 00 00 <type> <ndim>, found ",
            hex_bytes(magic.data(), 4));
    const std::uint8_t code = magic[2];
    const bool known = code == 0x08 || code == 0x09 || code == 0x0B || code == 0x0C || code == 0x0D || code == 0x0E;
    require(known, where, ": unknown element type code 0x", hex_bytes(&code, 1),
            " in magic; expected one of 08 (ubyte), 09 (byte), 0b (int16), 0c (int32), 0d (float32), 0e (float64)");
    idx_file out;
    out.type = static_cast<idx_type>(code);
    const std::size_t ndim = magic[3];
    require(ndim >= 1, where, ": expected at least 1 dimension, header says ndim=0");
    require(ndim <= io::limits::max_rank, where, ": header says ndim=", ndim, ", more than the limit of ",
            io::limits::max_rank);

    std::vector<std::uint8_t> dim_bytes(4 * ndim);
    const std::size_t got_dims = in.read(dim_bytes.data(), dim_bytes.size());
    require(got_dims == dim_bytes.size(), where, ": truncated header: ndim=", ndim, " needs ", 4 + 4 * ndim,
            " header bytes, the ", what, " has only ", 4 + got_dims);
    const std::size_t header = 4 + 4 * ndim;

    // Byte count, with the non-zero dimensions capped: a zero dimension makes the count 0, but the
    // tensor's strides are still products of the other dimensions.
    const std::size_t elem = idx_element_size(out.type);
    out.dims.resize(ndim);
    for (std::size_t i = 0; i < ndim; ++i) out.dims[i] = load_be32(dim_bytes.data() + 4 * i);
    const auto bytes = io::detail::checked_bytes(out.dims, elem);
    require(bytes.has_value() && *bytes <= std::numeric_limits<std::size_t>::max(), where, ": dims ",
            shape_string(out.dims), " of ", idx_type_name(out.type), " describe more bytes than can be addressed (the limit is ",
            io::limits::max_elements, " elements, counting non-zero dimensions)");
    const std::size_t need = static_cast<std::size_t>(*bytes);

    if (!gzip) {
        require(plain_size >= header, where, ": file changed while reading (smaller than its header)");
        const std::uintmax_t have = plain_size - header;
        require(have >= need, where, ": truncated data: dims ", shape_string(out.dims), " of ",
                idx_type_name(out.type), " need ", need, " data bytes after the ", header,
                "-byte header, the file has only ", have);
        require(have == need, where, ": trailing garbage: dims ", shape_string(out.dims), " of ",
                idx_type_name(out.type), " need ", need, " data bytes after the ", header,
                "-byte header, the file has ", have, " (", have - need, " extra)");
        out.bytes.resize(need);
        const std::size_t got = in.read(out.bytes.data(), need);
        require(got == need, where, ": read error: expected ", need, " data bytes, read ", got);
        return out;
    }

    // gzip: the real size is unknown up front, so grow chunk by chunk up to the claimed size.
    constexpr std::size_t chunk = std::size_t(1) << 22;
    std::size_t have = 0;
    while (have < need) {
        const std::size_t step = std::min(chunk, need - have);
        out.bytes.resize(have + step);
        const std::size_t got = in.read(out.bytes.data() + have, step);
        have += got;
        require(got == step, where, ": truncated data: dims ", shape_string(out.dims), " of ",
                idx_type_name(out.type), " need ", need, " data bytes after the ", header,
                "-byte header, the decompressed data ends after ", have);
    }
    std::uint8_t extra = 0;
    require(in.read(&extra, 1) == 0, where, ": trailing garbage: dims ", shape_string(out.dims), " of ",
            idx_type_name(out.type), " need ", need, " data bytes after the ", header,
            "-byte header, the decompressed data has more");
    return out;
}

}  // namespace detail

/// @brief Reads an IDX file, plain or gzip-compressed (detected by the 1f 8b magic).
/// @throws tern::error naming the file on a missing file, bad magic, unknown type, ndim 0,
///         truncated header or data, trailing bytes, oversized dims or corrupt gzip data.
inline idx_file read_idx(const std::filesystem::path& path) {
    const std::string where = "IDX file '" + path.string() + "'";
    std::error_code ec;
    const bool is_file = std::filesystem::is_regular_file(path, ec);
    detail::require(is_file, where, ": ",
                    std::filesystem::exists(path, ec) ? "not a regular file" : "no such file");
    const std::uintmax_t size = std::filesystem::file_size(path, ec);
    detail::require(!ec, where, ": cannot get file size: ", ec.message());

    std::array<std::uint8_t, 2> head{};
    {
        std::ifstream probe(path, std::ios::binary);
        detail::require(probe.is_open(), where, ": cannot open for reading");
        probe.read(reinterpret_cast<char*>(head.data()), 2);
    }
    if (size >= 2 && head[0] == 0x1f && head[1] == 0x8b) {
        detail::idx_gzip_reader in(path, where);
        return detail::parse_idx_stream(in, true, 0, where);
    }
    detail::idx_plain_reader in(path);
    detail::require(in.is_open(), where, ": cannot open for reading");
    return detail::parse_idx_stream(in, false, size, where);
}

/// @brief Decodes the elements of @p f (any IDX type, big-endian) into a float tensor of shape dims.
/// @throws tern::error if dims break a cap of io::limits or do not match the number of bytes.
inline tensor idx_to_tensor(const idx_file& f) {
    const auto need = io::detail::checked_bytes(f.dims, idx_element_size(f.type));
    detail::require(need.has_value() && *need == f.bytes.size(), "idx_to_tensor: dims ",
                    detail::shape_string(f.dims), " of ", idx_type_name(f.type), " need ",
                    need ? std::to_string(*need) : std::string("more elements than the limit"), " bytes, the file holds ",
                    f.bytes.size());
    tensor out = tensor::from_shape(f.dims);
    const std::size_t n = f.count();
    const std::uint8_t* p = f.bytes.data();
    float* dst = out.data();
    for (std::size_t i = 0; i < n; ++i) {
        switch (f.type) {
            case idx_type::u8: dst[i] = float(p[i]); break;
            case idx_type::i8: dst[i] = float(static_cast<std::int8_t>(p[i])); break;
            case idx_type::i16:
                dst[i] = float(static_cast<std::int16_t>(std::uint16_t((p[2 * i] << 8) | p[2 * i + 1])));
                break;
            case idx_type::i32: dst[i] = float(static_cast<std::int32_t>(detail::load_be32(p + 4 * i))); break;
            case idx_type::f32: dst[i] = std::bit_cast<float>(detail::load_be32(p + 4 * i)); break;
            case idx_type::f64: {
                const std::uint64_t bits =
                    (std::uint64_t(detail::load_be32(p + 8 * i)) << 32) | detail::load_be32(p + 8 * i + 4);
                dst[i] = float(std::bit_cast<double>(bits));
                break;
            }
        }
    }
    return out;
}

/// @brief Loads an idx3-ubyte image file as a tensor [n, rows*cols] with values in [0, 1].
/// @throws tern::error if the file is unreadable or not ubyte with 3 dims [n, rows, cols].
inline tensor load_idx_images(const std::filesystem::path& path) {
    const idx_file f = read_idx(path);
    const std::string where = "IDX image file '" + path.string() + "'";
    detail::require(f.type == idx_type::u8, where, ": expected element type ", idx_type_name(idx_type::u8),
                    ", found ", idx_type_name(f.type));
    detail::require(f.dims.size() == 3, where, ": expected 3 dims [count, rows, cols], found ",
                    f.dims.size(), " dims ", detail::shape_string(f.dims));
    tensor out = tensor::from_shape({f.dims[0], f.dims[1] * f.dims[2]});
    // A 256-entry table keeps this loop cheap even in unoptimised, sanitised builds.
    float scale[256];
    for (int v = 0; v < 256; ++v) scale[v] = float(v) / 255.0f;
    const std::uint8_t* src = f.bytes.data();
    float* dst = out.data();
    const std::size_t n = f.bytes.size();
    for (std::size_t i = 0; i < n; ++i) dst[i] = scale[src[i]];
    return out;
}

/// @brief Loads an idx1-ubyte label file as one int per sample.
/// @throws tern::error if the file is unreadable or not ubyte with 1 dim.
inline std::vector<int> load_idx_labels(const std::filesystem::path& path) {
    const idx_file f = read_idx(path);
    const std::string where = "IDX label file '" + path.string() + "'";
    detail::require(f.type == idx_type::u8, where, ": expected element type ", idx_type_name(idx_type::u8),
                    ", found ", idx_type_name(f.type));
    detail::require(f.dims.size() == 1, where, ": expected 1 dim [count], found ", f.dims.size(), " dims ",
                    detail::shape_string(f.dims));
    return std::vector<int>(f.bytes.begin(), f.bytes.end());
}

namespace detail {

/// First existing file among the usual spellings of an MNIST file (plain, .gz, dotted variant).
inline std::filesystem::path find_mnist_file(const std::filesystem::path& dir, const std::string& stem,
                                             const std::string& kind) {
    // "train-images" + "idx3-ubyte": train-images-idx3-ubyte[.gz] or train-images.idx3-ubyte[.gz]
    const std::string names[] = {stem + "-" + kind, stem + "-" + kind + ".gz", stem + "." + kind,
                                 stem + "." + kind + ".gz"};
    std::string tried;
    for (const auto& n : names) {
        std::error_code ec;
        if (std::filesystem::is_regular_file(dir / n, ec)) return dir / n;
        tried += (tried.empty() ? "" : ", ") + n;
    }
    fail("MNIST directory '", dir.string(), "': no ", stem, " file found (tried ", tried, ")");
}

}  // namespace detail

/// @brief Loads the MNIST-format training (train=true: train-images-idx3-ubyte, train-labels-idx1-ubyte)
/// or test (t10k-...) split from @p dir; each file may be plain or end in .gz.
/// Images come back as [n, rows*cols] in [0, 1].
/// @throws tern::error if a file is missing or malformed, or image and label counts differ.
inline dataset load_mnist_dir(const std::filesystem::path& dir, bool train) {
    std::error_code ec;
    detail::require(std::filesystem::is_directory(dir, ec), "MNIST directory '", dir.string(),
                    "': not a directory");
    const std::string prefix = train ? "train" : "t10k";
    const auto images_path = detail::find_mnist_file(dir, prefix + "-images", "idx3-ubyte");
    const auto labels_path = detail::find_mnist_file(dir, prefix + "-labels", "idx1-ubyte");
    dataset out{load_idx_images(images_path), load_idx_labels(labels_path)};
    detail::require(out.inputs.shape()[0] == out.labels.size(), "MNIST directory '", dir.string(), "': ",
                    images_path.filename().string(), " has ", out.inputs.shape()[0], " images but ",
                    labels_path.filename().string(), " has ", out.labels.size(), " labels");
    return out;
}

}  // namespace tern::data
