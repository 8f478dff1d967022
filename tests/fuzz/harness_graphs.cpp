// Fuzz targets of the graph readers: LINQS / Planetoid text (data/linqs.hpp) and OGB CSV
// (data/ogb.hpp). One input holds several files, separated by lines "%%" (in the order
// content, cites, split for LINQS; node-feat, node-label, edge, train, valid, test for OGB); a
// file the input does not reach is absent.
#include <tern/data/linqs.hpp>
#include <tern/data/ogb.hpp>
#include <tern/graph/propagation.hpp>

#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "harness.hpp"

namespace tern_fuzz {
namespace {

using detail::finding;

std::vector<std::string_view> split_parts(const std::uint8_t* data, std::size_t size) {
    const std::string_view all(reinterpret_cast<const char*>(data), size);
    std::vector<std::string_view> parts;
    std::size_t start = 0;
    for (;;) {
        const std::size_t at = all.find("\n%%\n", start);
        if (at == std::string_view::npos) {
            parts.push_back(all.substr(start));
            return parts;
        }
        parts.push_back(all.substr(start, at + 1 - start));
        start = at + 4;
    }
}

/// A fresh scratch directory holding @p names[i] = parts[i] for the parts the input has.
std::filesystem::path write_parts(const char* target, const std::vector<std::string>& names,
                                  const std::vector<std::string_view>& parts) {
    const auto dir = detail::scratch_file(target, ".d");
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
    std::filesystem::create_directories(dir);
    for (std::size_t i = 0; i < names.size() && i < parts.size(); ++i)
        detail::write_file(dir / names[i], reinterpret_cast<const std::uint8_t*>(parts[i].data()), parts[i].size());
    return dir;
}

/// What an accepted graph promises: shapes agree, labels and edges in range, a valid split, and
/// the GCN propagation builds and runs.
void check_graph(const char* target, const tern::data::graph_data& g) {
    const std::size_t n = g.nodes();
    if (n == 0 || g.features.dimension() != 2 || g.features.shape()[0] != n) finding(target, "accepted a graph whose features do not match its nodes");
    for (int y : g.labels)
        if (y < 0 || std::size_t(y) >= g.classes.size()) finding(target, "label " + std::to_string(y) + " outside the classes");
    for (auto [a, b] : g.edges)
        if (a >= n || b >= n) finding(target, "edge outside the nodes");
    try {
        if (g.split) tern::check_split(*g.split, n, target);
        const auto s = tern::make_gcn_propagation(g.adjacency());
        tern::tensor y;
        s->apply(g.features, y, target);
    } catch (const std::exception& e) {
        finding(target, std::string("an accepted graph does not propagate: ") + e.what());
    }
}

}  // namespace

verdict run_linqs(const std::uint8_t* data, std::size_t size) {
    const auto dir = write_parts("linqs", {"g.content", "g.cites", "g.split"}, split_parts(data, size));
    tern::data::graph_data g;
    const verdict v = guarded("linqs", [&] { g = tern::data::read_linqs(dir, "g"); });
    if (v == verdict::accepted) check_graph("linqs", g);
    return v;
}

verdict run_ogb(const std::uint8_t* data, std::size_t size) {
    const auto dir = write_parts("ogb", {"node-feat.csv", "node-label.csv", "edge.csv", "train.csv", "valid.csv", "test.csv"},
                                 split_parts(data, size));
    tern::data::graph_data g;
    const verdict v = guarded("ogb", [&] { g = tern::data::read_ogb(dir); });
    if (v == verdict::accepted) check_graph("ogb", g);
    return v;
}

namespace detail {

std::size_t write_graph_seeds(const std::filesystem::path& dir) {
    const auto seed = [&](const char* target, const std::string& name, const std::string& text) {
        std::filesystem::create_directories(dir / target);
        write_file(dir / target / name, reinterpret_cast<const std::uint8_t*>(text.data()), text.size());
    };
    seed("linqs", "seed0.txt", "a\t1\t0\tx\nb\t0\t1\ty\nc\t1\t1\tx\n%%\na\tb\nb\tc\n");
    seed("linqs", "seed1.txt",
         "31336\t0\t1\t0\tNeural_Networks\n1061127\t1\t0\t0\tRule_Learning\n7\t1\t1\t0\tTheory\n%%\n"
         "31336\t1061127\n7\t7\n%%\n31336\ttrain\n1061127\ttest\n7\tvalidation\n");
    seed("ogb", "seed0.txt", "0.5,1\n-1,2e3\n3,4\n%%\n0\n1\n0\n%%\n0,1\n1,2\n2,0\n%%\n0\n%%\n1\n%%\n2\n");
    return 3;
}

}  // namespace detail
}  // namespace tern_fuzz
