// CIFAR-10 / CIFAR-100 binary readers: exact round trips on written files, directory layouts,
// and clear errors for wrong sizes, out-of-range labels and missing files.
#include <catch2/catch.hpp>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <unistd.h>

#include "tern/data/cifar.hpp"

namespace fs = std::filesystem;
using bytes_t = std::vector<std::uint8_t>;

namespace {

struct temp_dir {
    fs::path path;
    temp_dir() {
        static int counter = 0;
        path = fs::temp_directory_path() / ("tern_test_cifar_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
        fs::remove_all(path);
        fs::create_directories(path);
    }
    ~temp_dir() {
        std::error_code ec;
        fs::remove_all(path, ec);
    }
};

/// Pixel byte k of image @p id (a pattern distinct per image and position).
std::uint8_t pixel(int id, std::size_t k) { return std::uint8_t((k * 7 + std::size_t(id) * 31) & 0xff); }

/// Records with the given label bytes (1 for CIFAR-10, 2 for CIFAR-100); image id = first id + index.
bytes_t records(const std::vector<bytes_t>& labels, int first_id) {
    bytes_t out;
    for (std::size_t r = 0; r < labels.size(); ++r) {
        out.insert(out.end(), labels[r].begin(), labels[r].end());
        for (std::size_t k = 0; k < 3072; ++k) out.push_back(pixel(first_id + int(r), k));
    }
    return out;
}

void write(const fs::path& p, const bytes_t& b) {
    std::ofstream out(p, std::ios::binary);
    out.write(reinterpret_cast<const char*>(b.data()), std::streamsize(b.size()));
}

/// Checks image @p n of @p images against the pattern of image @p id, channel by channel.
void check_image(const tern::tensor& images, std::size_t n, int id) {
    for (std::size_t c = 0; c < 3; ++c)
        for (std::size_t y = 0; y < 32; y += 5)
            for (std::size_t x = 0; x < 32; x += 3)
                REQUIRE(images(n, c, y, x) == float(pixel(id, c * 1024 + y * 32 + x)) / 255.0f);
}

}  // namespace

TEST_CASE("CIFAR-10 file and directory round trip", "[cifar]") {
    temp_dir dir;
    const std::size_t counts[5] = {2, 1, 3, 1, 2};
    int id = 0;
    std::vector<int> expect_labels;
    for (int b = 0; b < 5; ++b) {
        std::vector<bytes_t> labels;
        for (std::size_t r = 0; r < counts[b]; ++r) {
            labels.push_back({std::uint8_t((id + int(r)) % 10)});
            expect_labels.push_back((id + int(r)) % 10);
        }
        write(dir.path / ("data_batch_" + std::to_string(b + 1) + ".bin"), records(labels, id));
        id += int(counts[b]);
    }
    write(dir.path / "test_batch.bin", records({{9}, {0}}, 100));

    const auto train = tern::data::load_cifar10_dir(dir.path, true);
    REQUIRE(train.inputs.shape() == tern::shape_t{9, 3, 32, 32});
    REQUIRE(train.labels == expect_labels);
    for (std::size_t n = 0; n < 9; ++n) check_image(train.inputs, n, int(n));

    const auto test = tern::data::load_cifar10_dir(dir.path, false);
    REQUIRE(test.labels == std::vector<int>{9, 0});
    check_image(test.inputs, 1, 101);
    // Every pixel byte maps to byte / 255 (spot checks above, full check here).
    const auto one = tern::data::load_cifar10_file(dir.path / "test_batch.bin");
    for (std::size_t k = 0; k < 3072; ++k) REQUIRE(one.inputs.data()[k] == float(pixel(100, k)) / 255.0f);

    // The folder the official archive unpacks to is found from its parent.
    temp_dir parent;
    fs::create_directories(parent.path / "cifar-10-batches-bin");
    fs::copy_file(dir.path / "test_batch.bin", parent.path / "cifar-10-batches-bin" / "test_batch.bin");
    REQUIRE(tern::data::load_cifar10_dir(parent.path, false).labels == std::vector<int>{9, 0});
}

TEST_CASE("CIFAR-100 fine and coarse labels", "[cifar]") {
    temp_dir dir;
    write(dir.path / "train.bin", records({{19, 99}, {0, 0}, {7, 42}}, 0));
    write(dir.path / "test.bin", records({{3, 50}}, 10));
    const auto fine = tern::data::load_cifar100_dir(dir.path, true, true);
    REQUIRE(fine.inputs.shape() == tern::shape_t{3, 3, 32, 32});
    REQUIRE(fine.labels == std::vector<int>{99, 0, 42});
    check_image(fine.inputs, 2, 2);
    REQUIRE(tern::data::load_cifar100_dir(dir.path, true, false).labels == std::vector<int>{19, 0, 7});
    const auto test = tern::data::load_cifar100_dir(dir.path, false);
    REQUIRE(test.labels == std::vector<int>{50});
    check_image(test.inputs, 0, 10);
}

TEST_CASE("CIFAR readers reject malformed files", "[cifar]") {
    temp_dir dir;
    SECTION("size not a multiple of the record") {
        bytes_t b = records({{1}, {2}}, 0);
        b.resize(b.size() - 5);
        write(dir.path / "short.bin", b);
        REQUIRE_THROWS_WITH(tern::data::load_cifar10_file(dir.path / "short.bin"),
                            Catch::Contains("short.bin") && Catch::Contains("size 6141 is not a multiple of the 3073-byte record size"));
        // A CIFAR-10 file read as CIFAR-100 has the wrong record size too.
        write(dir.path / "ten.bin", records({{1}, {2}}, 0));
        REQUIRE_THROWS_WITH(tern::data::load_cifar100_file(dir.path / "ten.bin"),
                            Catch::Contains("not a multiple of the 3074-byte record size"));
    }
    SECTION("empty file") {
        write(dir.path / "empty.bin", {});
        REQUIRE_THROWS_WITH(tern::data::load_cifar10_file(dir.path / "empty.bin"), Catch::Contains("file is empty"));
    }
    SECTION("labels out of range") {
        write(dir.path / "bad10.bin", records({{3}, {10}}, 0));
        REQUIRE_THROWS_WITH(tern::data::load_cifar10_file(dir.path / "bad10.bin"),
                            Catch::Contains("bad10.bin") && Catch::Contains("record 1 has label 10, expected 0..9"));
        write(dir.path / "bad100.bin", records({{20, 5}}, 0));
        REQUIRE_THROWS_WITH(tern::data::load_cifar100_file(dir.path / "bad100.bin", false),
                            Catch::Contains("record 0 has label 20, expected 0..19"));
        REQUIRE(tern::data::load_cifar100_file(dir.path / "bad100.bin", true).labels == std::vector<int>{5});
        write(dir.path / "bad100f.bin", records({{1, 100}}, 0));
        REQUIRE_THROWS_WITH(tern::data::load_cifar100_file(dir.path / "bad100f.bin", true),
                            Catch::Contains("record 0 has label 100, expected 0..99"));
    }
    SECTION("missing files") {
        for (int b : {1, 2, 4, 5}) write(dir.path / ("data_batch_" + std::to_string(b) + ".bin"), records({{1}}, 0));
        REQUIRE_THROWS_WITH(tern::data::load_cifar10_dir(dir.path, true),
                            Catch::Contains("data_batch_3.bin") && Catch::Contains("no such file"));
        REQUIRE_THROWS_WITH(tern::data::load_cifar10_dir(dir.path, false), Catch::Contains("test_batch.bin"));
        REQUIRE_THROWS_WITH(tern::data::load_cifar100_dir(dir.path, true), Catch::Contains("train.bin"));
        REQUIRE_THROWS_WITH(tern::data::load_cifar10_file(dir.path), Catch::Contains("not a regular file"));
    }
}
