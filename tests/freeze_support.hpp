#pragma once
// Helpers shared by the tests of frozen (inference) models: output comparisons, error checks and a
// scratch directory.

#include <catch2/catch.hpp>
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <filesystem>
#include <random>
#include <string>
#include <system_error>
#include <vector>

#include "tern/error.hpp"
#include "tern/tensor.hpp"

namespace tern_test {

/// Largest |a - b| over rows of length N, relative to the row's largest |b| (at least 1e-6).
inline double max_row_relative_diff(const float* a, const float* b, std::size_t rows, std::size_t N) {
    double worst = 0;
    for (std::size_t r = 0; r < rows; ++r) {
        double scale = 1e-6;
        for (std::size_t n = 0; n < N; ++n) scale = std::max(scale, double(std::fabs(b[r * N + n])));
        for (std::size_t n = 0; n < N; ++n)
            worst = std::max(worst, std::fabs(double(a[r * N + n]) - double(b[r * N + n])) / scale);
    }
    return worst;
}

/// The same over the rows of two tensors of one shape (rows = the last axis).
inline double max_row_relative_diff(const tern::tensor& a, const tern::tensor& b) {
    REQUIRE(a.shape() == b.shape());
    const std::size_t N = b.shape().back();
    return max_row_relative_diff(a.data(), b.data(), b.size() / N, N);
}

/// Index of the largest value of each row (rows = the last axis).
inline std::vector<std::size_t> argmax_rows(const tern::tensor& y) {
    const std::size_t N = y.shape().back(), rows = y.size() / N;
    std::vector<std::size_t> out(rows);
    for (std::size_t r = 0; r < rows; ++r)
        out[r] = std::size_t(std::max_element(y.data() + r * N, y.data() + (r + 1) * N) - (y.data() + r * N));
    return out;
}

/// Runs @p fn and checks that it throws tern::error whose message contains every one of @p parts.
template <class Fn>
void require_error(Fn&& fn, const std::vector<std::string>& parts) {
    try {
        fn();
    } catch (const tern::error& e) {
        const std::string msg = e.what();
        INFO("message: " << msg);
        for (const auto& p : parts) CHECK(msg.find(p) != std::string::npos);
        return;
    }
    FAIL("expected a tern::error");
}

/// A fresh directory under the system's temporary directory, removed with everything in it.
struct temp_dir {
    std::filesystem::path path;
    explicit temp_dir(const std::string& prefix) {
        path = std::filesystem::temp_directory_path() / (prefix + std::to_string(std::random_device{}()));
        std::filesystem::create_directories(path);
    }
    ~temp_dir() {
        std::error_code ec;
        std::filesystem::remove_all(path, ec);
    }
    temp_dir(const temp_dir&) = delete;
    temp_dir& operator=(const temp_dir&) = delete;
    std::filesystem::path operator/(const std::string& name) const { return path / name; }
};

}  // namespace tern_test
