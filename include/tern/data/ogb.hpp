#pragma once
/// @file data/ogb.hpp
/// @brief OGB-style node property prediction data (ogbn-arxiv and the like) from CSV files.
///
/// The files, in DIR itself or in OGB's own layout (`DIR/raw/` and `DIR/split/NAME/`), decompressed
/// (`gunzip -k`: tern reads plain text):
/// - `edge.csv`: one edge per line, `a,b` (0-based node indices);
/// - `node-feat.csv`: one line per node, F comma-separated numbers (F the same on every line);
/// - `node-label.csv`: one line per node, its class (a whole number);
/// - `train.csv`, `valid.csv`, `test.csv`: one node index per line.
/// The node count is the number of lines of node-feat.csv. Every malformed line gives a
/// tern::error naming the file, the line and what was expected.

#include <algorithm>
#include <filesystem>
#include <string>
#include <vector>

#include "graph_data.hpp"

namespace tern::data {

namespace detail {

/// `DIR/NAME`, `DIR/raw/NAME` or `DIR/split/ANY/NAME`, whichever exists first; a gzipped copy
/// alone is an error that says to decompress it.
inline std::filesystem::path find_ogb_file(const std::filesystem::path& dir, const std::string& name) {
    std::vector<std::filesystem::path> candidates = {dir / name, dir / "raw" / name};
    std::error_code ec;
    if (std::filesystem::is_directory(dir / "split", ec)) {
        std::vector<std::filesystem::path> kinds;
        for (const auto& e : std::filesystem::directory_iterator(dir / "split", ec))
            if (e.is_directory(ec)) kinds.push_back(e.path());
        std::sort(kinds.begin(), kinds.end());
        for (const auto& k : kinds) candidates.push_back(k / name);
    }
    for (const auto& c : candidates)
        if (std::filesystem::is_regular_file(c, ec)) return c;
    for (const auto& c : candidates)
        if (std::filesystem::is_regular_file(c.string() + ".gz", ec))
            tern::detail::fail("OGB data '", dir.string(), "': found ", c.string(),
                               ".gz but tern reads plain CSV: decompress it first (gunzip -k)");
    tern::detail::fail("OGB data '", dir.string(), "': expected ", name, " in the directory, in raw/ or in split/<name>/");
}

/// The node indices of a split file, each below @p nodes.
inline std::vector<std::size_t> read_ogb_index_file(const std::filesystem::path& path, std::size_t nodes) {
    line_reader in(path, "OGB split file");
    std::vector<std::size_t> out;
    std::string line;
    while (in.next(line)) {
        if (line.empty()) continue;
        const auto v = parse_index(line, nodes ? nodes - 1 : 0);
        if (!v || nodes == 0)
            in.fail("expected a node index in 0..", nodes ? nodes - 1 : 0, ", found ", io::detail::quote(line));
        out.push_back(*v);
    }
    std::sort(out.begin(), out.end());
    return out;
}

}  // namespace detail

/// @brief Reads an OGB-style node classification data set from @p dir (see the file comment).
/// Classes are named by their numbers ("0", "1", ...), as many as the largest label + 1.
/// @throws tern::error naming the file and line for a malformed line, a node index out of range,
///         ragged feature rows, a missing label, an empty graph, or an overlapping split.
inline graph_data read_ogb(const std::filesystem::path& dir) {
    graph_data g;
    std::size_t nodes = 0, features = 0;
    {
        detail::line_reader in(detail::find_ogb_file(dir, "node-feat.csv"), "OGB node feature file");
        const std::size_t lines = in.count_lines();
        std::vector<std::string_view> fields;
        std::string line;
        while (in.next(line)) {
            detail::split_fields(line, ',', fields);
            if (nodes == 0) {
                features = fields.size();
                if (features > detail::max_node_features)
                    in.fail("expected at most ", detail::max_node_features, " features, found ", features);
                if (lines > detail::max_graph_nodes) in.fail("expected at most ", detail::max_graph_nodes, " nodes, found ", lines);
                const auto cells = io::detail::checked_mul(lines, features);
                if (!cells || *cells > io::limits::max_elements) in.fail("too many feature values: ", lines, " x ", features);
                g.features = tensor::from_shape({lines, features});
            } else if (fields.size() != features) {
                in.fail("expected ", features, " comma-separated features (as on line 1), found ", fields.size());
            }
            float* out = g.features.data() + nodes * features;
            for (std::size_t f = 0; f < features; ++f) {
                const auto v = detail::parse_float(fields[f]);
                if (!v) in.fail("feature ", f + 1, ": expected a finite number, found ", io::detail::quote(fields[f]));
                out[f] = *v;
            }
            ++nodes;
        }
        if (nodes == 0) in.fail_file("expected one line of features per node, found an empty graph");
    }
    {
        detail::line_reader in(detail::find_ogb_file(dir, "node-label.csv"), "OGB node label file");
        std::string line;
        int largest = 0;
        while (in.next(line)) {
            if (g.labels.size() == nodes) in.fail("expected ", nodes, " labels (one per line of node-feat.csv), found more");
            const auto v = detail::parse_index(line, std::size_t{1} << 20);
            if (!v) in.fail("expected a class number in 0..", std::size_t{1} << 20, ", found ", io::detail::quote(line));
            g.labels.push_back(int(*v));
            largest = std::max(largest, int(*v));
        }
        if (g.labels.size() != nodes)
            in.fail_file("expected ", nodes, " labels (one per line of node-feat.csv), found ", g.labels.size(),
                         ": the label of node ", g.labels.size(), " is missing");
        for (int c = 0; c <= largest; ++c) g.classes.push_back(std::to_string(c));
    }
    {
        detail::line_reader in(detail::find_ogb_file(dir, "edge.csv"), "OGB edge file");
        std::vector<std::string_view> fields;
        std::string line;
        while (in.next(line)) {
            if (line.empty()) continue;
            detail::split_fields(line, ',', fields);
            if (fields.size() != 2) in.fail("expected two node indices 'a,b', found ", fields.size(), " fields");
            const auto a = detail::parse_index(fields[0], nodes - 1), b = detail::parse_index(fields[1], nodes - 1);
            if (!a || !b)
                in.fail("expected node indices in 0..", nodes - 1, " (the rows of node-feat.csv), found ",
                        io::detail::quote(!a ? fields[0] : fields[1]));
            g.edges.emplace_back(*a, *b);
        }
    }
    node_split s;
    s.train = detail::read_ogb_index_file(detail::find_ogb_file(dir, "train.csv"), nodes);
    s.validation = detail::read_ogb_index_file(detail::find_ogb_file(dir, "valid.csv"), nodes);
    s.test = detail::read_ogb_index_file(detail::find_ogb_file(dir, "test.csv"), nodes);
    check_split(s, nodes, "OGB data '" + dir.string() + "'");
    g.split = std::move(s);
    return g;
}

}  // namespace tern::data
