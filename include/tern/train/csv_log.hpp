#pragma once
/// @file train/csv_log.hpp
/// @brief A CSV log of training curves: one header, one row per record, flushed as it goes.

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "../error.hpp"

namespace tern {

/// @brief Writes rows of numbers under fixed column names; flushes each row so a crash keeps the curve.
class csv_log {
public:
    /// @throws tern::error if the file cannot be opened.
    csv_log(const std::filesystem::path& path, std::vector<std::string> columns) : columns_(std::move(columns)) {
        out_.open(path, std::ios::out | std::ios::trunc);
        detail::require(out_.good(), "csv_log: cannot open '", path.string(), "' for writing");
        for (std::size_t i = 0; i < columns_.size(); ++i) out_ << (i ? "," : "") << columns_[i];
        out_ << '\n' << std::flush;
    }

    /// @throws tern::error if the row does not have one value per column.
    void row(const std::vector<double>& values) {
        detail::require(values.size() == columns_.size(), "csv_log: expected ", columns_.size(), " values, got ",
                        values.size());
        std::ostringstream line;
        line.precision(8);
        for (std::size_t i = 0; i < values.size(); ++i) line << (i ? "," : "") << values[i];
        out_ << line.str() << '\n' << std::flush;
        detail::require(out_.good(), "csv_log: writing a row failed");
    }

private:
    std::vector<std::string> columns_;
    std::ofstream out_;
};

}  // namespace tern
