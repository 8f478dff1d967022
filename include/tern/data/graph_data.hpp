#pragma once
/// @file data/graph_data.hpp
/// @brief A node classification data set (nodes, edges, features, labels, optional split) and
/// the checked line reading the graph file readers (data/linqs.hpp, data/ogb.hpp) share.

#include <charconv>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "../error.hpp"
#include "../graph/sparse.hpp"
#include "../io/checked.hpp"
#include "../tensor.hpp"
#include "../train/node_classification.hpp"

namespace tern::data {

/// @brief One graph with node features and a class per node.
struct graph_data {
    tensor features;                                        ///< [nodes, features]
    std::vector<int> labels;                                ///< one class per node, in [0, classes)
    std::vector<std::string> classes;                       ///< class names (index = label)
    std::vector<std::string> node_names;                    ///< the file's node ids, in row order
    std::vector<std::pair<std::size_t, std::size_t>> edges; ///< as listed (directed pairs of rows)
    std::optional<node_split> split;                        ///< the file's split, when it has one

    std::size_t nodes() const { return labels.size(); }
    /// The undirected adjacency (duplicate and reversed edges counted once).
    csr_matrix adjacency() const { return undirected_adjacency(nodes(), edges); }
};

namespace detail {

/// Reads a text file line by line with the line number, for messages "'<file>' line N: ...".
/// Lines end at '\n' (a '\r' before it is dropped). An empty file has no lines.
class line_reader {
public:
    line_reader(const std::filesystem::path& path, std::string what) : path_(path), what_(std::move(what)) {
        std::error_code ec;
        tern::detail::require(std::filesystem::is_regular_file(path, ec), what_, " '", path.string(), "': ",
                              std::filesystem::exists(path, ec) ? "not a regular file" : "no such file");
        in_.open(path, std::ios::binary);
        tern::detail::require(in_.is_open(), what_, " '", path.string(), "': cannot open for reading");
    }

    /// The next line, or false at the end of the file.
    bool next(std::string& line) {
        if (!std::getline(in_, line)) return false;
        ++number_;
        if (!line.empty() && line.back() == '\r') line.pop_back();
        return true;
    }
    std::size_t line_number() const { return number_; }

    /// Throws "<what> '<file>' line N: <parts>".
    template <class... Parts>
    [[noreturn]] void fail(Parts&&... parts) const {
        tern::detail::fail(what_, " '", path_.string(), "' line ", number_, ": ", std::forward<Parts>(parts)...);
    }
    /// Throws "<what> '<file>': <parts>" (a problem of the whole file).
    template <class... Parts>
    [[noreturn]] void fail_file(Parts&&... parts) const {
        tern::detail::fail(what_, " '", path_.string(), "': ", std::forward<Parts>(parts)...);
    }

    /// Counts the lines left (a first pass that sizes what the second one fills), then rewinds.
    std::size_t count_lines() {
        const auto at = in_.tellg();
        std::size_t n = 0;
        std::string line;
        while (std::getline(in_, line)) ++n;
        in_.clear();
        in_.seekg(at);
        return n;
    }

private:
    std::filesystem::path path_;
    std::string what_;
    std::ifstream in_;
    std::size_t number_ = 0;
};

/// Splits @p line at any run of the @p separators (empty fields between separators are skipped
/// for whitespace, kept for a comma).
inline void split_fields(std::string_view line, char separator, std::vector<std::string_view>& out) {
    out.clear();
    if (separator == ',') {
        std::size_t start = 0;
        for (;;) {
            const std::size_t comma = line.find(',', start);
            out.push_back(line.substr(start, comma == std::string_view::npos ? std::string_view::npos : comma - start));
            if (comma == std::string_view::npos) return;
            start = comma + 1;
        }
    }
    std::size_t i = 0;
    while (i < line.size()) {
        while (i < line.size() && (line[i] == ' ' || line[i] == '\t')) ++i;
        const std::size_t start = i;
        while (i < line.size() && line[i] != ' ' && line[i] != '\t') ++i;
        if (i > start) out.push_back(line.substr(start, i - start));
    }
}

/// A finite float, or nothing.
inline std::optional<float> parse_float(std::string_view s) {
    float v = 0;
    const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec != std::errc() || end != s.data() + s.size() || !std::isfinite(v)) return std::nullopt;
    return v;
}

/// A whole number in [0, max], or nothing.
inline std::optional<std::size_t> parse_index(std::string_view s, std::size_t max) {
    std::uint64_t v = 0;
    const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec != std::errc() || end != s.data() + s.size() || v > max) return std::nullopt;
    return static_cast<std::size_t>(v);
}

/// Most nodes and features a graph file may hold: node indices are 32-bit in csr_matrix.
inline constexpr std::size_t max_graph_nodes = std::size_t{1} << 31;
inline constexpr std::size_t max_node_features = std::size_t{1} << 24;

}  // namespace detail
}  // namespace tern::data
