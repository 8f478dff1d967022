// IDX reader: exact round trips (plain and gzip, every element type), every kind of malformed
// file, MNIST directory loading. The real Fashion-MNIST files: tests/fashion_mnist.cpp.
#include <zlib.h>

#include <bit>
#include <catch2/catch.hpp>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <unistd.h>

#include "tern/data/idx.hpp"

namespace fs = std::filesystem;
using bytes_t = std::vector<std::uint8_t>;

namespace {

struct temp_dir {
    fs::path path;
    temp_dir() {
        static int counter = 0;
        path = fs::temp_directory_path() / ("tern_test_idx_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
        fs::remove_all(path);
        fs::create_directories(path);
    }
    ~temp_dir() {
        std::error_code ec;
        fs::remove_all(path, ec);
    }
};

/// IDX bytes: magic 00 00 type ndim, big-endian dims, then @p data.
bytes_t idx_bytes(std::uint8_t type, const std::vector<std::uint32_t>& dims, const bytes_t& data) {
    bytes_t out = {0, 0, type, std::uint8_t(dims.size())};
    for (std::uint32_t d : dims)
        for (int s = 24; s >= 0; s -= 8) out.push_back(std::uint8_t(d >> s));
    out.insert(out.end(), data.begin(), data.end());
    return out;
}

void write_plain(const fs::path& p, const bytes_t& b) {
    std::ofstream out(p, std::ios::binary);
    out.write(reinterpret_cast<const char*>(b.data()), std::streamsize(b.size()));
}

void write_gzip(const fs::path& p, const bytes_t& b) {
    gzFile f = gzopen(p.string().c_str(), "wb");
    REQUIRE(f != nullptr);
    if (!b.empty()) REQUIRE(gzwrite(f, b.data(), unsigned(b.size())) == int(b.size()));
    REQUIRE(gzclose(f) == Z_OK);
}

bytes_t read_file(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

std::string error_of(const fs::path& p) {
    try {
        tern::data::read_idx(p);
    } catch (const tern::error& e) {
        return e.what();
    }
    return "(no error)";
}

bytes_t counting(std::size_t n) {
    bytes_t b(n);
    for (std::size_t i = 0; i < n; ++i) b[i] = std::uint8_t(i * 37 + 11);
    return b;
}

}  // namespace

TEST_CASE("IDX ubyte files round trip, plain and gzip", "[idx]") {
    temp_dir dir;
    const bytes_t pixels = counting(3 * 4 * 5);
    const bytes_t file = idx_bytes(0x08, {3, 4, 5}, pixels);
    for (bool gz : {false, true}) {
        INFO("gzip " << gz);
        const fs::path p = dir.path / (gz ? "img.gz" : "img");
        gz ? write_gzip(p, file) : write_plain(p, file);
        const auto f = tern::data::read_idx(p);
        REQUIRE(f.type == tern::data::idx_type::u8);
        REQUIRE(f.dims == tern::shape_t{3, 4, 5});
        REQUIRE(f.bytes == pixels);
        REQUIRE(f.count() == 60);

        const tern::tensor images = tern::data::load_idx_images(p);
        REQUIRE(images.shape() == tern::shape_t{3, 20});
        for (std::size_t i = 0; i < pixels.size(); ++i) REQUIRE(images.data()[i] == float(pixels[i]) / 255.0f);
    }
    const bytes_t labels = {0, 9, 3, 255};
    write_gzip(dir.path / "labels.gz", idx_bytes(0x08, {4}, labels));
    REQUIRE(tern::data::load_idx_labels(dir.path / "labels.gz") == std::vector<int>{0, 9, 3, 255});
    // A file with a zero dimension is valid and empty.
    write_plain(dir.path / "none", idx_bytes(0x08, {0, 28, 28}, {}));
    REQUIRE(tern::data::load_idx_images(dir.path / "none").shape() == tern::shape_t{0, 784});
}

TEST_CASE("IDX other element types decode big-endian values", "[idx]") {
    temp_dir dir;
    struct type_case {
        std::uint8_t code;
        bytes_t data;
        std::vector<float> expect;
    };
    const std::uint32_t f = std::bit_cast<std::uint32_t>(-1.5f);
    const std::uint64_t d = std::bit_cast<std::uint64_t>(0.25);
    const type_case cases[] = {
        {0x09, {0x80, 0x7f}, {-128, 127}},
        {0x0B, {0xff, 0xfe, 0x01, 0x00}, {-2, 256}},
        {0x0C, {0xff, 0xff, 0xff, 0xfd, 0x00, 0x01, 0x00, 0x00}, {-3, 65536}},
        {0x0D, {std::uint8_t(f >> 24), std::uint8_t(f >> 16), std::uint8_t(f >> 8), std::uint8_t(f), 0x3f, 0x80, 0, 0},
         {-1.5f, 1.0f}},
        {0x0E, {std::uint8_t(d >> 56), std::uint8_t(d >> 48), std::uint8_t(d >> 40), std::uint8_t(d >> 32),
                std::uint8_t(d >> 24), std::uint8_t(d >> 16), std::uint8_t(d >> 8), std::uint8_t(d), 0xc0, 0, 0, 0, 0,
                0, 0, 0},
         {0.25f, -2.0f}},
    };
    for (const auto& c : cases) {
        INFO("type 0x" << std::hex << int(c.code));
        for (bool gz : {false, true}) {
            // (appending instead of "t" + to_string(...) avoids a GCC 12 -Wrestrict false positive)
            std::string name = std::to_string(c.code);
            name.append(gz ? ".type.gz" : ".type");
            const fs::path p = dir.path / name;
            gz ? write_gzip(p, idx_bytes(c.code, {2}, c.data)) : write_plain(p, idx_bytes(c.code, {2}, c.data));
            const auto file = tern::data::read_idx(p);
            REQUIRE(file.bytes == c.data);
            const tern::tensor t = tern::data::idx_to_tensor(file);
            REQUIRE(t.shape() == tern::shape_t{2});
            REQUIRE(t(0) == c.expect[0]);
            REQUIRE(t(1) == c.expect[1]);
        }
        // Images and labels must be ubyte.
        REQUIRE_THROWS_WITH(tern::data::load_idx_labels(dir.path / (std::to_string(c.code) + ".type")),
                            Catch::Contains("expected element type ubyte"));
    }
}

TEST_CASE("IDX malformed files raise clear errors", "[idx]") {
    temp_dir dir;
    struct bad_case {
        const char* name;
        bytes_t bytes;
        const char* expect;
    };
    bytes_t garbage = idx_bytes(0x08, {2, 2}, {1, 2, 3, 4});
    garbage.push_back(9);
    const bad_case cases[] = {
        {"empty", {}, "truncated header: expected a 4-byte magic number"},
        {"short_magic", {0, 0, 8}, "has only 3 bytes"},
        {"bad_magic", {0x50, 0x4b, 0x03, 0x04, 0, 0, 0, 0}, "bad magic: expected 00 00 <type> <ndim>, found 50 4b 03 04"},
        {"bad_type", {0, 0, 0x0a, 1, 0, 0, 0, 0}, "unknown element type code 0x0a"},
        {"ndim0", {0, 0, 8, 0}, "expected at least 1 dimension, header says ndim=0"},
        {"short_dims", {0, 0, 8, 3, 0, 0, 0, 1, 0, 0}, "truncated header: ndim=3 needs 16 header bytes"},
        {"short_data", idx_bytes(0x08, {2, 3}, {1, 2, 3, 4, 5}), "truncated data: dims [2, 3] of ubyte (0x08) need 6"},
        {"short_data16", idx_bytes(0x0B, {3}, {1, 2, 3, 4, 5}), "need 6 data bytes after the 8-byte header, the file has only 5"},
        {"garbage", garbage, "trailing garbage"},
        {"huge", idx_bytes(0x08, {60000, 60000, 60000}, {1, 2, 3}), "need 216000000000000 data bytes"},
        {"overflow", idx_bytes(0x0E, {0xffffffff, 0xffffffff, 0xffffffff}, {}), "more bytes than can be addressed"},
        {"overflow_elem", idx_bytes(0x0E, {0xffffffff, 0xffffffff}, {}), "more bytes than can be addressed"},
    };
    for (const auto& c : cases) {
        for (bool gz : {false, true}) {
            // An empty gzip stream is still a valid gzip file with an empty body.
            const fs::path p = dir.path / (std::string(c.name) + (gz ? ".gz" : ".idx"));
            gz ? write_gzip(p, c.bytes) : write_plain(p, c.bytes);
            INFO(p.string());
            const std::string msg = error_of(p);
            REQUIRE_THAT(msg, Catch::Contains(p.string()));
            // Messages about sizes say "file" for plain files and "decompressed data" for gzip.
            std::string expect = c.expect;
            if (gz) {
                const auto at = expect.find("the file has");
                if (at != std::string::npos) expect = expect.substr(0, at);
                const auto at2 = expect.find("has only");
                if (at2 != std::string::npos) expect = expect.substr(0, at2);
            }
            REQUIRE_THAT(msg, Catch::Contains(expect));
        }
    }
    REQUIRE_THAT(error_of(dir.path / "missing"), Catch::Contains("missing") && Catch::Contains("no such file"));
    REQUIRE_THAT(error_of(dir.path), Catch::Contains("not a regular file"));
}

TEST_CASE("IDX gzip: lying headers, corrupt and truncated streams", "[idx]") {
    temp_dir dir;
    // The header claims ~4 TB; the reader must fail after the real data instead of allocating it.
    const fs::path liar = dir.path / "liar.gz";
    write_gzip(liar, idx_bytes(0x08, {4000000000u, 1000}, counting(1000)));
    REQUIRE_THAT(error_of(liar), Catch::Contains("truncated data") && Catch::Contains("ends after 1000"));

    // More decompressed data than the header describes.
    const fs::path extra = dir.path / "extra.gz";
    bytes_t body = idx_bytes(0x08, {10}, counting(10));
    body.resize(body.size() + 5000, 7);
    write_gzip(extra, body);
    REQUIRE_THAT(error_of(extra), Catch::Contains("trailing garbage") && Catch::Contains("need 10 data bytes"));

    // Cut the compressed file short and flip bytes in its middle: zlib errors become tern::error.
    const fs::path whole = dir.path / "whole.gz";
    write_gzip(whole, idx_bytes(0x08, {50, 40}, counting(2000)));
    const bytes_t gz = read_file(whole);
    for (std::size_t cut : {std::size_t(2), std::size_t(10), gz.size() / 2, gz.size() - 4, gz.size() - 1}) {
        const fs::path p = dir.path / "cut.gz";
        write_plain(p, bytes_t(gz.begin(), gz.begin() + std::ptrdiff_t(cut)));
        INFO("cut at " << cut << " of " << gz.size());
        REQUIRE_THROWS_AS(tern::data::read_idx(p), tern::error);
    }
    bytes_t flipped = gz;
    flipped[gz.size() - 6] ^= 0xff;  // inside the CRC32 trailer
    write_plain(dir.path / "crc.gz", flipped);
    REQUIRE_THROWS_AS(tern::data::read_idx(dir.path / "crc.gz"), tern::error);
    for (std::size_t pos = 12; pos < gz.size() - 8; pos += 7) {
        bytes_t b = gz;
        b[pos] ^= 0x5a;
        write_plain(dir.path / "flip.gz", b);
        INFO("flipped byte " << pos);
        try {
            const auto f = tern::data::read_idx(dir.path / "flip.gz");
            // Only possible if the corruption kept a consistent header; the size must still match.
            REQUIRE(f.bytes.size() == f.count() * tern::data::idx_element_size(f.type));
        } catch (const tern::error&) {
        }
    }
}

TEST_CASE("IDX images and labels check their rank", "[idx]") {
    temp_dir dir;
    write_plain(dir.path / "labels", idx_bytes(0x08, {3}, {1, 2, 3}));
    write_plain(dir.path / "images", idx_bytes(0x08, {1, 2, 2}, {1, 2, 3, 4}));
    REQUIRE_THROWS_WITH(tern::data::load_idx_images(dir.path / "labels"),
                        Catch::Contains("expected 3 dims [count, rows, cols], found 1 dims [3]"));
    REQUIRE_THROWS_WITH(tern::data::load_idx_labels(dir.path / "images"),
                        Catch::Contains("expected 1 dim [count], found 3 dims [1, 2, 2]"));
}

TEST_CASE("load_mnist_dir finds plain and gzip files and checks counts", "[idx]") {
    temp_dir dir;
    write_gzip(dir.path / "train-images-idx3-ubyte.gz", idx_bytes(0x08, {3, 2, 2}, counting(12)));
    write_gzip(dir.path / "train-labels-idx1-ubyte.gz", idx_bytes(0x08, {3}, {4, 5, 6}));
    write_plain(dir.path / "t10k-images-idx3-ubyte", idx_bytes(0x08, {2, 2, 2}, counting(8)));
    write_plain(dir.path / "t10k-labels-idx1-ubyte", idx_bytes(0x08, {3}, {1, 2, 3}));

    const auto train = tern::data::load_mnist_dir(dir.path, true);
    REQUIRE(train.inputs.shape() == tern::shape_t{3, 4});
    REQUIRE(train.labels == std::vector<int>{4, 5, 6});
    REQUIRE_THROWS_WITH(tern::data::load_mnist_dir(dir.path, false),
                        Catch::Contains("t10k-images-idx3-ubyte has 2 images but t10k-labels-idx1-ubyte has 3 labels"));
    fs::remove(dir.path / "train-labels-idx1-ubyte.gz");
    REQUIRE_THROWS_WITH(tern::data::load_mnist_dir(dir.path, true),
                        Catch::Contains("no train-labels file found") && Catch::Contains("train-labels-idx1-ubyte.gz"));
    REQUIRE_THROWS_WITH(tern::data::load_mnist_dir(dir.path / "nope", true), Catch::Contains("not a directory"));
}
