#pragma once
/// @file cifar.hpp
/// @brief Readers for the CIFAR-10 and CIFAR-100 binary versions.
///
/// CIFAR-10 records: 1 label byte + 3072 pixel bytes. CIFAR-100 records: coarse label byte,
/// fine label byte + 3072 pixel bytes. Pixels are 1024 red, 1024 green, 1024 blue, each a
/// row-major 32x32 plane, which is exactly the [3, 32, 32] layout returned here.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <system_error>
#include <vector>

#include "../error.hpp"
#include "../tensor.hpp"
#include "batches.hpp"

namespace tern::data {

namespace detail {
// tern's shared checks and shape helpers (require, fail, shape_string, ...) are used from here.
using namespace ::tern::detail;
}  // namespace detail

/// @brief Pixel bytes per CIFAR image (3 channels x 32 x 32).
inline constexpr std::size_t cifar_image_bytes = 3 * 32 * 32;

namespace detail {

/// How to read one CIFAR flavour: label bytes per record, which one to use, and its range.
struct cifar_layout {
    std::size_t label_bytes;
    std::size_t label_index;
    int num_classes;
    const char* name;  ///< for messages, e.g. "CIFAR-100 fine"
};

/// Reads the records of all @p files into one data set; every size and label is checked first
/// against the file system, so nothing is allocated from a guess.
inline dataset load_cifar_records(const std::vector<std::filesystem::path>& files, const cifar_layout& layout) {
    const std::size_t record = layout.label_bytes + cifar_image_bytes;
    std::size_t total = 0;
    for (const auto& path : files) {
        const std::string where = std::string(layout.name) + " file '" + path.string() + "'";
        std::error_code ec;
        require(std::filesystem::is_regular_file(path, ec), where, ": ",
                std::filesystem::exists(path, ec) ? "not a regular file" : "no such file");
        const std::uintmax_t size = std::filesystem::file_size(path, ec);
        require(!ec, where, ": cannot get file size: ", ec.message());
        require(size > 0, where, ": file is empty, expected records of ", record, " bytes");
        require(size % record == 0, where, ": size ", size, " is not a multiple of the ", record,
                "-byte record size (", size / record, " whole records and ", size % record, " bytes left over)");
        total += static_cast<std::size_t>(size / record);
    }

    dataset out{tensor::from_shape({total, 3, 32, 32}), std::vector<int>(total)};
    float* dst = out.inputs.data();
    std::size_t n = 0;
    constexpr std::size_t records_per_chunk = 512;
    std::vector<std::uint8_t> buf;
    for (const auto& path : files) {
        const std::string where = std::string(layout.name) + " file '" + path.string() + "'";
        const auto records = static_cast<std::size_t>(std::filesystem::file_size(path) / record);
        std::ifstream in(path, std::ios::binary);
        require(in.is_open(), where, ": cannot open for reading");
        for (std::size_t done = 0; done < records;) {
            const std::size_t step = std::min(records_per_chunk, records - done);
            buf.resize(step * record);
            in.read(reinterpret_cast<char*>(buf.data()), static_cast<std::streamsize>(buf.size()));
            require(static_cast<std::size_t>(in.gcount()) == buf.size(), where, ": read error at record ",
                    done, " (file changed while reading?)");
            for (std::size_t r = 0; r < step; ++r) {
                const std::uint8_t* rec = buf.data() + r * record;
                const int label = rec[layout.label_index];
                require(label < layout.num_classes, where, ": record ", done + r, " has label ", label,
                        ", expected 0..", layout.num_classes - 1);
                out.labels[n] = label;
                const std::uint8_t* px = rec + layout.label_bytes;
                float* img = dst + n * cifar_image_bytes;
                for (std::size_t k = 0; k < cifar_image_bytes; ++k) img[k] = float(px[k]) / 255.0f;
                ++n;
            }
            done += step;
        }
    }
    return out;
}

/// @p dir itself if it holds @p probe, else the subfolder the official archive unpacks to.
inline std::filesystem::path cifar_folder(const std::filesystem::path& dir, const std::string& probe,
                                          const std::string& archive_subdir) {
    std::error_code ec;
    if (!std::filesystem::exists(dir / probe, ec) && std::filesystem::exists(dir / archive_subdir / probe, ec))
        return dir / archive_subdir;
    return dir;
}

}  // namespace detail

/// @brief Loads one CIFAR-10 binary file: images [n, 3, 32, 32] in [0, 1], labels 0..9.
/// @throws tern::error if the file is missing, its size is not a multiple of 3073, or a label is > 9.
inline dataset load_cifar10_file(const std::filesystem::path& path) {
    return detail::load_cifar_records({path}, {1, 0, 10, "CIFAR-10"});
}

/// @brief Loads one CIFAR-100 binary file with the fine (0..99) or coarse (0..19) labels.
/// @throws tern::error if the file is missing, its size is not a multiple of 3074, or a label is out of range.
inline dataset load_cifar100_file(const std::filesystem::path& path, bool fine = true) {
    return detail::load_cifar_records(
        {path}, fine ? detail::cifar_layout{2, 1, 100, "CIFAR-100 fine"} : detail::cifar_layout{2, 0, 20, "CIFAR-100 coarse"});
}

/// @brief Loads CIFAR-10 from @p dir (or its cifar-10-batches-bin subfolder): the training set
/// data_batch_1.bin..data_batch_5.bin in order (train=true) or test_batch.bin.
/// @throws tern::error if a file is missing or malformed.
inline dataset load_cifar10_dir(const std::filesystem::path& dir, bool train) {
    const auto folder = detail::cifar_folder(dir, train ? "data_batch_1.bin" : "test_batch.bin", "cifar-10-batches-bin");
    std::vector<std::filesystem::path> files;
    if (train)
        for (int i = 1; i <= 5; ++i) files.push_back(folder / ("data_batch_" + std::to_string(i) + ".bin"));
    else
        files.push_back(folder / "test_batch.bin");
    return detail::load_cifar_records(files, {1, 0, 10, "CIFAR-10"});
}

/// @brief Loads CIFAR-100 from @p dir (or its cifar-100-binary subfolder): train.bin or test.bin,
/// with the fine (0..99) or coarse (0..19) labels.
/// @throws tern::error if the file is missing or malformed.
inline dataset load_cifar100_dir(const std::filesystem::path& dir, bool train, bool fine = true) {
    const std::string name = train ? "train.bin" : "test.bin";
    return load_cifar100_file(detail::cifar_folder(dir, name, "cifar-100-binary") / name, fine);
}

}  // namespace tern::data
