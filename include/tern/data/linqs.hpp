#pragma once
/// @file data/linqs.hpp
/// @brief The LINQS / Planetoid text format of Cora, CiteSeer and PubMed: read and write.
///
/// - `NAME.content`: one node per line, `id f_1 ... f_F label` separated by tabs or spaces (ids
///   and labels are any text without blanks; F is the same on every line);
/// - `NAME.cites`: one edge per line, `id_a id_b`, both ids of the content file;
/// - `NAME.split` (optional, written by tools/debian_graph): `id train|validation|test` per line.
/// Every malformed line gives a tern::error naming the file, the line and what was expected.

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <unordered_map>
#include <vector>

#include "graph_data.hpp"

namespace tern::data {

/// @brief How read_linqs treats edges that name a node missing from the content file.
struct linqs_options {
    /// false (the default): such an edge is an error. true: it is skipped and counted (the
    /// public CiteSeer lists a few citations of papers it does not contain).
    bool skip_unknown_edges = false;
};

/// @brief Reads DIR/NAME.content, DIR/NAME.cites and, when present, DIR/NAME.split.
/// Classes are numbered in the order of their names; rows follow the content file.
/// @param skipped  receives the number of edges skipped (with options.skip_unknown_edges).
/// @throws tern::error "<kind> file '<path>' line N: expected ..., found ..." for any malformed
///         line, a duplicate node id, an unknown id, an empty content file or a file that cannot be read.
inline graph_data read_linqs(const std::filesystem::path& dir, const std::string& name, linqs_options options = {},
                             std::size_t* skipped = nullptr) {
    graph_data g;
    std::unordered_map<std::string, std::size_t> row_of;
    {
        detail::line_reader in(dir / (name + ".content"), "LINQS content file");
        const std::size_t lines = in.count_lines();
        std::vector<std::string_view> fields;
        std::vector<std::string> label_text;
        std::string line;
        std::size_t features = 0, row = 0;
        std::vector<float> values;  // used only until the first line fixes the width
        while (in.next(line)) {
            detail::split_fields(line, ' ', fields);
            if (fields.empty()) continue;
            if (row == 0) {
                if (fields.size() < 3)
                    in.fail("expected a node id, at least one feature and a label, found ", fields.size(), " field",
                            fields.size() == 1 ? "" : "s");
                features = fields.size() - 2;
                if (features > detail::max_node_features)
                    in.fail("expected at most ", detail::max_node_features, " features, found ", features);
                const auto cells = io::detail::checked_mul(lines, features);
                if (!cells || *cells > io::limits::max_elements) in.fail("too many feature values: ", lines, " x ", features);
                g.features = tensor::from_shape({lines, features});
            } else if (fields.size() != features + 2) {
                in.fail("expected a node id, ", features, " features (as on the first node's line) and a label, found ",
                        fields.size() - 1, " fields after the id", fields.size() == features + 1 ? " (is the label missing?)" : "");
            }
            const std::string id(fields[0]);
            if (!row_of.emplace(id, row).second) in.fail("node id ", io::detail::quote(id), " appears a second time");
            float* out = g.features.data() + row * features;
            for (std::size_t f = 0; f < features; ++f) {
                const auto v = detail::parse_float(fields[1 + f]);
                if (!v) in.fail("feature ", f + 1, ": expected a finite number, found ", io::detail::quote(fields[1 + f]));
                out[f] = *v;
            }
            label_text.emplace_back(fields.back());
            g.node_names.push_back(id);
            ++row;
        }
        if (row == 0) in.fail_file("expected at least one node, found an empty graph");
        if (row < lines) {  // blank lines were counted: keep the rows read
            tensor kept = tensor::from_shape({row, features});
            std::copy_n(g.features.data(), row * features, kept.data());
            g.features = std::move(kept);
        }
        std::vector<std::string> names = label_text;
        std::sort(names.begin(), names.end());
        names.erase(std::unique(names.begin(), names.end()), names.end());
        g.classes = names;
        g.labels.resize(row);
        for (std::size_t r = 0; r < row; ++r)
            g.labels[r] = int(std::lower_bound(names.begin(), names.end(), label_text[r]) - names.begin());
    }
    const auto node = [&](std::string_view id) -> std::optional<std::size_t> {
        const auto it = row_of.find(std::string(id));
        if (it != row_of.end()) return it->second;
        return std::nullopt;
    };
    {
        detail::line_reader in(dir / (name + ".cites"), "LINQS cites file");
        std::vector<std::string_view> fields;
        std::string line;
        std::size_t skip_count = 0;
        while (in.next(line)) {
            detail::split_fields(line, ' ', fields);
            if (fields.empty()) continue;
            if (fields.size() != 2) in.fail("expected two node ids, found ", fields.size(), " fields");
            const auto a = node(fields[0]), b = node(fields[1]);
            if (!a || !b) {
                if (options.skip_unknown_edges) {
                    ++skip_count;
                    continue;
                }
                in.fail("node id ", io::detail::quote(!a ? fields[0] : fields[1]),
                        " is not in the content file (expected one of its ", g.nodes(), " node ids)");
            }
            g.edges.emplace_back(*a, *b);
        }
        if (skipped) *skipped = skip_count;
    }
    const std::filesystem::path split_path = dir / (name + ".split");
    std::error_code ec;
    if (std::filesystem::exists(split_path, ec)) {
        detail::line_reader in(split_path, "LINQS split file");
        node_split s;
        std::vector<char> seen(g.nodes(), 0);
        std::vector<std::string_view> fields;
        std::string line;
        while (in.next(line)) {
            detail::split_fields(line, ' ', fields);
            if (fields.empty()) continue;
            if (fields.size() != 2) in.fail("expected a node id and train, validation or test, found ", fields.size(), " fields");
            const auto n = node(fields[0]);
            if (!n) in.fail("node id ", io::detail::quote(fields[0]), " is not in the content file");
            if (seen[*n]) in.fail("node id ", io::detail::quote(fields[0]), " is listed a second time");
            seen[*n] = 1;
            if (fields[1] == "train") s.train.push_back(*n);
            else if (fields[1] == "validation") s.validation.push_back(*n);
            else if (fields[1] == "test") s.test.push_back(*n);
            else in.fail("expected train, validation or test, found ", io::detail::quote(fields[1]));
        }
        for (auto* set : {&s.train, &s.validation, &s.test}) std::sort(set->begin(), set->end());
        check_split(s, g.nodes(), "LINQS split file '" + split_path.string() + "'");
        g.split = std::move(s);
    }
    return g;
}

/// @brief Writes @p g as DIR/NAME.content and DIR/NAME.cites (and DIR/NAME.split when it has a
/// split). Features are written with the shortest text that reads back exactly. Node ids are the
/// node names (row numbers when there are none).
/// @throws tern::error when a file cannot be written or a name holds a blank.
inline void write_linqs(const std::filesystem::path& dir, const std::string& name, const graph_data& g) {
    const std::size_t n = g.nodes(), F = g.features.dimension() == 2 ? g.features.shape()[1] : 0;
    tern::detail::require(n > 0 && g.features.dimension() == 2 && g.features.shape()[0] == n,
                          "write_linqs: expected features [", n, ", F] for ", n, " labelled nodes, got shape ",
                          tern::detail::shape_string(g.features.shape()));
    const auto id = [&](std::size_t r) { return g.node_names.empty() ? std::to_string(r) : g.node_names[r]; };
    const auto blank_free = [](const std::string& s) {
        return !s.empty() && s.find_first_of(" \t\r\n") == std::string::npos;
    };
    const auto open = [&](const std::string& ext) {
        std::ofstream out(dir / (name + ext), std::ios::binary);
        tern::detail::require(out.is_open(), "write_linqs: cannot write '", (dir / (name + ext)).string(), "'");
        return out;
    };
    {
        std::ofstream out = open(".content");
        std::string line;
        char buf[32];
        for (std::size_t r = 0; r < n; ++r) {
            tern::detail::require(blank_free(id(r)), "write_linqs: node name ", io::detail::quote(id(r)),
                                  " is empty or holds a blank");
            const int y = g.labels[r];
            tern::detail::require(y >= 0 && std::size_t(y) < g.classes.size() && blank_free(g.classes[std::size_t(y)]),
                                  "write_linqs: node ", r, " has label ", y, " without a blank-free class name");
            line = id(r);
            for (std::size_t f = 0; f < F; ++f) {
                const auto [end, ec] = std::to_chars(buf, buf + sizeof buf, g.features(r, f));
                line += '\t';
                line.append(buf, end);
            }
            line += '\t';
            line += g.classes[std::size_t(y)];
            line += '\n';
            out << line;
        }
        tern::detail::require(bool(out), "write_linqs: writing the content file failed");
    }
    {
        std::ofstream out = open(".cites");
        for (const auto& [a, b] : g.edges) {
            tern::detail::require(a < n && b < n, "write_linqs: edge (", a, ", ", b, ") names a node outside 0..", n, " - 1");
            out << id(a) << '\t' << id(b) << '\n';
        }
        tern::detail::require(bool(out), "write_linqs: writing the cites file failed");
    }
    if (g.split) {
        std::ofstream out = open(".split");
        for (const auto& [set, word] : {std::pair{&g.split->train, "train"}, std::pair{&g.split->validation, "validation"},
                                        std::pair{&g.split->test, "test"}})
            for (std::size_t r : *set) out << id(r) << '\t' << word << '\n';
        tern::detail::require(bool(out), "write_linqs: writing the split file failed");
    }
}

}  // namespace tern::data
