// safetensors: bit-exact round trips, deterministic output, atomic saves, and hostile input
// (truncation at every byte, random header corruption, lying lengths and shapes) that must
// raise tern::error without crashing or allocating what the header claims.
#include <bit>
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include <unistd.h>

#include "tern/io/safetensors.hpp"

namespace fs = std::filesystem;
using tern::io::dtype;
using tern::io::safetensors_data;

namespace {

struct temp_dir {
    fs::path path;
    temp_dir() {
        static int counter = 0;
        path = fs::temp_directory_path() /
               ("tern_test_safetensors_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
        fs::remove_all(path);
        fs::create_directories(path);
    }
    ~temp_dir() {
        std::error_code ec;
        fs::remove_all(path, ec);
    }
};

std::vector<std::uint8_t> read_all(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void write_all(const fs::path& p, const std::vector<std::uint8_t>& bytes) {
    std::ofstream out(p, std::ios::binary);
    out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}

/// A safetensors blob with header @p json (unpadded) followed by @p buffer_size zero bytes.
std::vector<std::uint8_t> blob(const std::string& json, std::size_t buffer_size) {
    std::vector<std::uint8_t> out(8 + json.size() + buffer_size, 0);
    const std::uint64_t n = json.size();
    for (int i = 0; i < 8; ++i) out[i] = std::uint8_t(n >> (8 * i));
    std::memcpy(out.data() + 8, json.data(), json.size());
    return out;
}

std::string parse_error(const std::vector<std::uint8_t>& bytes) {
    try {
        tern::io::parse_safetensors(bytes.data(), bytes.size(), "test");
    } catch (const tern::error& e) {
        return e.what();
    }
    return "(no error)";
}

bool same_bits(const tern::tensor& a, const tern::tensor& b) {
    return a.shape() == b.shape() && (a.size() == 0 || std::memcmp(a.data(), b.data(), a.size() * 4) == 0);
}

/// A small data set with awkward float values, odd shapes and several dtypes.
safetensors_data sample_data() {
    safetensors_data d;
    d.metadata["format"] = "pt";
    d.metadata["note"] = "tern test \xc3\xa9";
    tern::tensor w = tern::tensor::from_shape({2, 4});
    const float specials[8] = {std::numeric_limits<float>::quiet_NaN(),
                               std::bit_cast<float>(0x7fa00001u),  // signalling NaN with payload
                               std::numeric_limits<float>::infinity(),
                               -std::numeric_limits<float>::infinity(),
                               -0.0f,
                               std::numeric_limits<float>::denorm_min(),
                               std::bit_cast<float>(0xffc12345u),  // negative NaN with payload
                               1.0f / 3.0f};
    std::memcpy(w.data(), specials, sizeof specials);
    d.put("layer.weight", w);
    tern::tensor scalar = tern::tensor::from_shape({});
    scalar() = 42.5f;
    d.put("scalar", scalar);
    d.put("empty", tern::tensor::from_shape({0, 3}));
    d.put_bytes("half", dtype::f16, {3}, {0x00, 0x3c, 0x00, 0xc0, 0x00, 0x7c});
    d.put_bytes("bf", dtype::bf16, {1, 2}, {0x80, 0x3f, 0x00, 0x80});
    d.put_bytes("count", dtype::i64, {}, {7, 0, 0, 0, 0, 0, 0, 0x80});
    d.put_bytes("mask", dtype::boolean, {3}, {1, 0, 1});
    d.put_bytes("bytes", dtype::u8, {5}, {1, 2, 3, 254, 255});
    d.put_bytes("d", dtype::f64, {1}, {0, 0, 0, 0, 0, 0, 0xf0, 0x3f});
    return d;
}

void require_same(const safetensors_data& a, const safetensors_data& b) {
    REQUIRE(a.metadata == b.metadata);
    REQUIRE(a.names() == b.names());
    for (const auto& name : a.names()) {
        INFO(name);
        REQUIRE(a.at(name).type == b.at(name).type);
        REQUIRE(a.at(name).shape == b.at(name).shape);
        REQUIRE(a.at(name).bytes == b.at(name).bytes);
    }
}

}  // namespace

TEST_CASE("dtype names, sizes and parsing", "[safetensors]") {
    REQUIRE(std::string(tern::io::dtype_name(dtype::bf16)) == "BF16");
    REQUIRE(std::string(tern::io::dtype_name(dtype::boolean)) == "BOOL");
    REQUIRE(tern::io::dtype_size(dtype::f64) == 8);
    REQUIRE(tern::io::dtype_size(dtype::i16) == 2);
    REQUIRE(tern::io::dtype_size(dtype::boolean) == 1);
    for (dtype t : {dtype::f32, dtype::f16, dtype::bf16, dtype::f64, dtype::i8, dtype::u8, dtype::i16, dtype::i32,
                    dtype::i64, dtype::u32, dtype::boolean})
        REQUIRE(tern::io::parse_dtype(tern::io::dtype_name(t)) == t);
    REQUIRE_FALSE(tern::io::parse_dtype("f32").has_value());
    REQUIRE_FALSE(tern::io::parse_dtype("F8_E4M3").has_value());
}

TEST_CASE("safetensors round trip is bit-exact", "[safetensors]") {
    temp_dir dir;
    const safetensors_data d = sample_data();
    const fs::path file = dir.path / "model.safetensors";
    tern::io::save_safetensors(file, d);

    const auto bytes = read_all(file);
    REQUIRE(bytes == tern::io::serialize_safetensors(d));
    std::uint64_t n = 0;
    for (int i = 7; i >= 0; --i) n = (n << 8) | bytes[i];
    REQUIRE(n % 8 == 0);
    REQUIRE(bytes[8] == '{');

    const safetensors_data back = tern::io::load_safetensors(file);
    require_same(d, back);
    REQUIRE(same_bits(back.get_f32("layer.weight", {2, 4}), d.get_f32("layer.weight")));
    const tern::tensor s = back.get_f32("scalar", {});
    REQUIRE(s.dimension() == 0);
    REQUIRE(s() == 42.5f);
    const tern::tensor e = back.get_f32("empty", {0, 3});
    REQUIRE(e.size() == 0);
    REQUIRE(e.shape() == tern::shape_t{0, 3});

    // Saving what was loaded reproduces the same file byte for byte.
    tern::io::save_safetensors(dir.path / "again.safetensors", back);
    REQUIRE(read_all(dir.path / "again.safetensors") == bytes);
    // In-memory parse agrees with the file reader.
    require_same(tern::io::parse_safetensors(bytes.data(), bytes.size(), "mem"), d);
}

TEST_CASE("safetensors empty file content round trips", "[safetensors]") {
    const safetensors_data empty;
    const auto bytes = tern::io::serialize_safetensors(empty);
    REQUIRE(bytes.size() == 16);
    const auto back = tern::io::parse_safetensors(bytes.data(), bytes.size(), "empty");
    REQUIRE(back.size() == 0);
    REQUIRE(back.metadata.empty());
}

TEST_CASE("safetensors parses a hand-built PyTorch-style file", "[safetensors]") {
    // What torch + safetensors write for a Linear(3, 2) and a BatchNorm counter, padded with spaces.
    std::string json =
        R"({"__metadata__":{"format":"pt"},"fc.weight":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]},)"
        R"("fc.bias":{"dtype":"F32","shape":[2],"data_offsets":[24,32]},)"
        R"("bn.num_batches_tracked":{"dtype":"I64","shape":[],"data_offsets":[32,40]}})";
    json.append((8 - json.size() % 8) % 8, ' ');
    const std::uint8_t data[] = {
        0x00, 0x00, 0x80, 0x3f,  0x00, 0x00, 0x00, 0x40,  0x00, 0x00, 0x40, 0x40,   // 1 2 3
        0x00, 0x00, 0x80, 0xbf,  0x00, 0x00, 0x00, 0x00,  0x00, 0x00, 0x00, 0x3f,   // -1 0 0.5
        0x00, 0x00, 0x20, 0x41,  0x00, 0x00, 0x00, 0x80,                            // 10 -0
        0x05, 0x00, 0x00, 0x00,  0x00, 0x00, 0x00, 0x00,                            // int64 5
    };
    std::vector<std::uint8_t> file(8);
    for (int i = 0; i < 8; ++i) file[i] = std::uint8_t(std::uint64_t(json.size()) >> (8 * i));
    file.insert(file.end(), json.begin(), json.end());
    file.insert(file.end(), std::begin(data), std::end(data));

    const auto d = tern::io::parse_safetensors(file.data(), file.size(), "torch");
    REQUIRE(d.metadata.at("format") == "pt");
    REQUIRE(d.names() == std::vector<std::string>{"bn.num_batches_tracked", "fc.bias", "fc.weight"});
    const tern::tensor w = d.get_f32("fc.weight", {2, 3});
    const float expect_w[] = {1, 2, 3, -1, 0, 0.5f};
    for (int i = 0; i < 6; ++i) REQUIRE(w.data()[i] == expect_w[i]);
    const tern::tensor b = d.get_f32("fc.bias", {2});
    REQUIRE(b(0) == 10.0f);
    REQUIRE(std::signbit(b(1)));
    const auto& count = d.at("bn.num_batches_tracked");
    REQUIRE(count.type == dtype::i64);
    REQUIRE(count.shape.empty());
    REQUIRE(count.bytes[0] == 5);
}

TEST_CASE("safetensors accessors give precise errors", "[safetensors]") {
    const safetensors_data d = sample_data();
    REQUIRE(d.contains("scalar"));
    REQUIRE_FALSE(d.contains("nope"));
    REQUIRE_THROWS_WITH(d.at("nope"), Catch::Contains("no tensor named 'nope'") && Catch::Contains("'bf'"));
    REQUIRE_THROWS_WITH(d.get_f32("layer.weight", {4, 2}),
                        Catch::Contains("'layer.weight'") && Catch::Contains("expected F32 with shape [4, 2]") &&
                            Catch::Contains("found F32 with shape [2, 4]"));
    REQUIRE_THROWS_WITH(d.get_f32("half"), Catch::Contains("expected dtype F32, found F16"));
    REQUIRE_THROWS_WITH(d.get_f32("half", {3}), Catch::Contains("found F16 with shape [3]"));

    safetensors_data e;
    REQUIRE_THROWS_WITH(e.put_bytes("x", dtype::i32, {2, 2}, std::vector<std::uint8_t>(15)),
                        Catch::Contains("needs 16 bytes, got 15"));
    REQUIRE_THROWS_AS(e.put("__metadata__", tern::zeros({1})), tern::error);
    REQUIRE_THROWS_AS(e.put_bytes("y", dtype::u8, {std::size_t(1) << 40, std::size_t(1) << 40}, {}), tern::error);
}

TEST_CASE("safetensors truncated at every byte raises tern::error", "[safetensors]") {
    const auto bytes = tern::io::serialize_safetensors(sample_data());
    for (std::size_t k = 0; k < bytes.size(); ++k) {
        INFO("truncated to " << k << " of " << bytes.size() << " bytes");
        REQUIRE_THROWS_AS(tern::io::parse_safetensors(bytes.data(), k, "cut"), tern::error);
    }
    // The file reader too, at a spread of cut points.
    temp_dir dir;
    const fs::path file = dir.path / "cut.safetensors";
    for (std::size_t k : {std::size_t(0), std::size_t(3), std::size_t(8), std::size_t(9), bytes.size() / 2,
                          bytes.size() - 1}) {
        write_all(file, std::vector<std::uint8_t>(bytes.begin(), bytes.begin() + std::ptrdiff_t(k)));
        INFO("file truncated to " << k);
        REQUIRE_THROWS_AS(tern::io::load_safetensors(file), tern::error);
    }
    // One extra byte at the end is not accounted for by any tensor.
    auto longer = bytes;
    longer.push_back(0);
    REQUIRE_THROWS_WITH(tern::io::parse_safetensors(longer.data(), longer.size(), "long"),
                        Catch::Contains("1 unaccounted bytes"));
}

TEST_CASE("safetensors with random header corruption fails cleanly or loads consistently", "[safetensors]") {
    const auto good = tern::io::serialize_safetensors(sample_data());
    std::uint64_t header = 0;
    for (int i = 7; i >= 0; --i) header = (header << 8) | good[i];
    const std::size_t corruptible = 8 + std::size_t(header);
    std::size_t loaded = 0, rejected = 0;
    for (std::uint64_t seed = 0; seed < 1500; ++seed) {
        std::mt19937_64 rng(seed);
        auto bytes = good;
        const int flips = 1 + int(rng() % 4);
        for (int f = 0; f < flips; ++f) {
            const std::size_t pos = rng() % corruptible;
            // Mix random bytes with JSON-significant characters to reach deeper into the parser.
            static const char interesting[] = "{}[]\",:0123456789 -e.";
            bytes[pos] = (rng() & 1) ? std::uint8_t(rng()) : std::uint8_t(interesting[rng() % (sizeof interesting - 1)]);
        }
        INFO("seed " << seed);
        try {
            const auto d = tern::io::parse_safetensors(bytes.data(), bytes.size(), "fuzz");
            ++loaded;
            // Whatever loaded must be self-consistent and survive another round trip.
            for (const auto& name : d.names()) {
                const auto& t = d.at(name);
                std::size_t n = tern::io::dtype_size(t.type);
                for (auto s : t.shape) n *= s;
                REQUIRE(t.bytes.size() == n);
            }
            const auto again = tern::io::serialize_safetensors(d);
            require_same(tern::io::parse_safetensors(again.data(), again.size(), "again"), d);
        } catch (const tern::error&) {
            ++rejected;
        }
    }
    REQUIRE(rejected > 0);
    REQUIRE(loaded + rejected == 1500);
}

TEST_CASE("safetensors rejects lying lengths and shapes without allocating them", "[safetensors]") {
    // Header length far past the file and past the sanity cap.
    for (std::uint64_t claimed : {std::uint64_t(1) << 63, std::uint64_t(200'000'000), std::uint64_t(99'999'999),
                                  std::uint64_t(64)}) {
        std::vector<std::uint8_t> b(40, ' ');
        for (int i = 0; i < 8; ++i) b[i] = std::uint8_t(claimed >> (8 * i));
        INFO("claimed header length " << claimed);
        REQUIRE_THROWS_WITH(tern::io::parse_safetensors(b.data(), b.size(), "liar"), Catch::Contains("header length"));
    }
    // A shape whose product overflows size_t.
    REQUIRE_THAT(
        parse_error(blob(R"({"a":{"dtype":"F32","shape":[4294967296,4294967296,4294967296],"data_offsets":[0,4]}})", 4)),
        Catch::Contains("tensor 'a'") && Catch::Contains("more bytes than can be addressed"));
    REQUIRE_THROWS_AS(tern::io::parse_safetensors(nullptr, 0, "null"), tern::error);
    // A huge but representable shape: offsets say 4 bytes, shape says 4e12.
    REQUIRE_THAT(parse_error(blob(R"({"a":{"dtype":"F32","shape":[1000000000000],"data_offsets":[0,4]}})", 4)),
                 Catch::Contains("span 4 bytes but F32 with shape [1000000000000] needs 4000000000000"));
    // Offsets past the buffer, even if consistent with the shape.
    REQUIRE_THAT(parse_error(blob(R"({"a":{"dtype":"U8","shape":[1000000000000],"data_offsets":[0,1000000000000]}})", 4)),
                 Catch::Contains("run past the end of the 4-byte data buffer"));
    // Offsets beyond uint64 are floats in JSON and rejected as such.
    REQUIRE_THAT(parse_error(blob(R"({"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1e30]}})", 1)),
                 Catch::Contains("data_offsets[1]: expected a non-negative integer"));
}

TEST_CASE("safetensors rejects malformed headers with precise messages", "[safetensors]") {
    struct bad_case {
        std::string json;
        std::size_t buffer;
        std::string expect;
    };
    const bad_case cases[] = {
        {R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
         12, "tensor 'b' data_offsets [4, 12] overlap tensor 'a' [0, 8]"},
        {R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})",
         12, "bytes [4, 8) of the data buffer belong to no tensor"},
        {R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"z":{"dtype":"F32","shape":[0],"data_offsets":[2,2]}})",
         4, "overlap"},
        {R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[4,4]}})", 4, "span 0 bytes but F32 with shape [1] needs 4"},
        {R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[8,4]}})", 8, "begin > end"},
        {R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", 6, "2 unaccounted bytes"},
        {R"({"a":{"dtype":"F33","shape":[1],"data_offsets":[0,4]}})", 4, "unknown dtype \"F33\""},
        {R"({"a":{"dtype":7,"shape":[1],"data_offsets":[0,4]}})", 4, "dtype must be a string, found number"},
        {R"({"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", 4, "shape[0]: expected a non-negative integer, found -1"},
        {R"({"a":{"dtype":"F32","shape":[1.5],"data_offsets":[0,4]}})", 4, "shape[0]: expected a non-negative integer, found 1.5"},
        {R"({"a":{"dtype":"F32","shape":"1","data_offsets":[0,4]}})", 4, "shape must be an array, found string"},
        {R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4,8]}})", 4, "data_offsets must be an array [begin, end]"},
        {R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[-4,4]}})", 4, "data_offsets[0]: expected a non-negative integer"},
        {R"({"a":{"dtype":"F32","data_offsets":[0,4]}})", 4, "tensor 'a': missing field 'shape'"},
        {R"({"a":[1,2]})", 0, "tensor 'a': expected an object with dtype, shape and data_offsets, found array"},
        {R"({"__metadata__":{"k":1}})", 0, "__metadata__ entry 'k' must be a string, found number"},
        {R"({"__metadata__":[]})", 0, "__metadata__ must be an object"},
        {R"([1,2,3])", 0, "header must be a JSON object, found array"},
        {R"({"a":)", 0, "header is not valid JSON"},
        {"{\"\xff\":1}", 0, "header is not valid JSON"},
    };
    for (const auto& c : cases) {
        INFO(c.json);
        REQUIRE_THAT(parse_error(blob(c.json, c.buffer)), Catch::Contains(c.expect) && Catch::Contains("'test'"));
    }
    // Zero-length tensors may sit at a boundary, and the header may be padded with spaces.
    const auto padded = blob(
        R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"z":{"dtype":"F32","shape":[0,5],"data_offsets":[4,4]}}   )", 4);
    const auto ok = tern::io::parse_safetensors(padded.data(), padded.size(), "ok");
    REQUIRE(ok.size() == 2);
}

TEST_CASE("safetensors file errors name the file", "[safetensors]") {
    temp_dir dir;
    const fs::path missing = dir.path / "missing.safetensors";
    REQUIRE_THROWS_WITH(tern::io::load_safetensors(missing),
                        Catch::Contains("missing.safetensors") && Catch::Contains("no such file"));
    const fs::path bad = dir.path / "bad.safetensors";
    write_all(bad, blob(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}})", 4));
    REQUIRE_THROWS_WITH(tern::io::load_safetensors(bad),
                        Catch::Contains("bad.safetensors") && Catch::Contains("tensor 'a'") &&
                            Catch::Contains("needs 8"));
}

TEST_CASE("safetensors save is atomic", "[safetensors]") {
    temp_dir dir;
    const fs::path file = dir.path / "w.safetensors";
    safetensors_data first;
    first.put("x", tern::zeros({3}));
    tern::io::save_safetensors(file, first);
    const auto first_bytes = read_all(file);

    auto only_target_left = [&] {
        std::size_t entries = 0;
        for (const auto& e : fs::directory_iterator(dir.path)) {
            INFO(e.path().string());
            REQUIRE(e.path().filename() == "w.safetensors");
            ++entries;
        }
        REQUIRE(entries == 1);
    };

    SECTION("saving over an existing file replaces it") {
        safetensors_data second = sample_data();
        tern::io::save_safetensors(file, second);
        require_same(tern::io::load_safetensors(file), second);
        only_target_left();
    }
    SECTION("inconsistent data throws and leaves the old file alone") {
        safetensors_data broken;
        broken.tensors["x"] = tern::io::stored_tensor{dtype::f32, {4}, std::vector<std::uint8_t>(3)};
        REQUIRE_THROWS_WITH(tern::io::save_safetensors(file, broken),
                            Catch::Contains("w.safetensors") && Catch::Contains("needs 16 bytes, it holds 3"));
        REQUIRE(read_all(file) == first_bytes);
        only_target_left();
    }
    SECTION("saving into a missing directory throws") {
        REQUIRE_THROWS_WITH(tern::io::save_safetensors(dir.path / "no" / "such" / "dir.safetensors", first),
                            Catch::Contains("cannot create temporary file"));
        REQUIRE(read_all(file) == first_bytes);
        only_target_left();
    }
    SECTION("a failed rename removes the temporary file") {
        // Renaming a file over a non-empty directory fails after the data was written.
        const fs::path target = dir.path / "taken";
        fs::create_directories(target / "inner");
        REQUIRE_THROWS_WITH(tern::io::save_safetensors(target, first), Catch::Contains("renaming"));
        REQUIRE(fs::is_directory(target / "inner"));
        fs::remove_all(target);
        REQUIRE(read_all(file) == first_bytes);
        only_target_left();
    }
}
