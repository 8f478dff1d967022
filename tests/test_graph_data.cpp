// The graph readers (LINQS / Planetoid and OGB CSV): small graphs written here are read back and
// trained on; every malformed file gives a tern::error naming the file, the line and what was expected.
#include <catch2/catch.hpp>

#include "freeze_support.hpp"

#include <fstream>
#include <random>

#include <tern/data/linqs.hpp>
#include <tern/data/ogb.hpp>
#include <tern/graph/sgc.hpp>
#include <tern/sequential.hpp>

namespace fs = std::filesystem;

namespace {

void write_text(const fs::path& path, const std::string& text) {
    fs::create_directories(path.parent_path());
    std::ofstream(path, std::ios::binary) << text;
}

// Two communities of 30 nodes with ids "p0".."p59"; 8 binary features, 3 of which follow the class.
tern::data::graph_data small_graph(std::uint64_t seed) {
    std::mt19937_64 rng(seed);
    std::bernoulli_distribution noise(0.3), signal(0.8), across(0.1);
    std::uniform_int_distribution<std::size_t> pick(0, 29);
    tern::data::graph_data g;
    g.features = tern::zeros({60, 8});
    g.classes = {"alpha", "beta"};
    for (std::size_t u = 0; u < 60; ++u) {
        const int y = int(u / 30);
        g.labels.push_back(y);
        g.node_names.push_back(std::string("p").append(std::to_string(u)));
        for (std::size_t f = 0; f < 8; ++f) g.features(u, f) = (f < 3 && (f % 2 == std::size_t(y))) ? signal(rng) : noise(rng);
        for (int k = 0; k < 3; ++k) g.edges.emplace_back(u, (across(rng) ? 1 - y : y) * 30 + int(pick(rng)));
    }
    return g;
}

double train_sgc(const tern::data::graph_data& g, const tern::node_split& split) {
    tern::manual_seed(1);
    const auto graph = tern::make_gcn_propagation(g.adjacency());
    tern::sequential model{tern::sgc<tern::absmean_ternary>(graph, 2, g.features.shape()[1], g.classes.size())};
    return tern::train_node_classifier(model, g.features, g.labels, split, {.epochs = 60, .lr = 0.05f}).test_accuracy;
}

}  // namespace

TEST_CASE("LINQS: a written graph reads back exactly and trains", "[graph][data]") {
    tern_test::temp_dir dir("tern_test_linqs_");
    tern::data::graph_data g = small_graph(3);
    g.split = tern::planetoid_split(g.labels, 2, 5, 15, 30, 1);
    tern::data::write_linqs(dir.path, "toy", g);
    const tern::data::graph_data r = tern::data::read_linqs(dir.path, "toy");
    CHECK(r.node_names == g.node_names);
    CHECK(r.labels == g.labels);
    CHECK(r.classes == g.classes);
    CHECK(r.edges == g.edges);
    CHECK(r.features == g.features);
    REQUIRE(r.split);
    CHECK(r.split->train == g.split->train);
    CHECK(r.split->test == g.split->test);
    const double accuracy = train_sgc(r, *r.split);
    INFO("test accuracy " << accuracy);
    CHECK(accuracy > 0.8);
}

TEST_CASE("LINQS: malformed files name the file, the line and what was expected", "[graph][data]") {
    tern_test::temp_dir dir("tern_test_linqs_bad_");
    const std::string good = "a\t1\t0\tx\nb\t0\t1\ty\nc\t1\t1\tx\n";
    write_text(dir / "g.cites", "a\tb\n");
    const auto expect = [&](const std::string& content, const std::string& cites, std::vector<std::string> parts) {
        write_text(dir / "g.content", content);
        write_text(dir / "g.cites", cites);
        tern_test::require_error([&] { (void)tern::data::read_linqs(dir.path, "g"); }, parts);
    };
    expect(good, "a\tb\nb\tzz\n", {"g.cites' line 2", "node id 'zz' is not in the content file"});
    expect("a\t1\t0\tx\nb\t0\t1\t1\ty\n", "", {"g.content' line 2", "expected a node id, 2 features", "found 4 fields"});
    expect("a\t1\t0\tx\nb\t0\t1\n", "", {"g.content' line 2", "and a label", "is the label missing?"});
    expect("", "", {"g.content'", "found an empty graph"});
    expect("a\t1\t0\tx\nb\t0\tnan\ty\n", "", {"line 2", "feature 2: expected a finite number, found 'nan'"});
    expect("a\t1\t0\tx\na\t0\t1\ty\n", "", {"line 2", "node id 'a' appears a second time"});
    expect(good, "a\tb\tc\n", {"g.cites' line 1", "expected two node ids, found 3 fields"});
    write_text(dir / "g.content", good);
    write_text(dir / "g.cites", "a\tb\n");
    write_text(dir / "g.split", "a\ttrain\nb\tholdout\n");
    tern_test::require_error([&] { (void)tern::data::read_linqs(dir.path, "g"); },
                             {"g.split' line 2", "expected train, validation or test, found 'holdout'"});
    fs::remove(dir / "g.split");
    // Unknown ids in edges may be skipped on request (the public CiteSeer has some), and counted.
    write_text(dir / "g.cites", "a\tb\nq\tb\n");
    std::size_t skipped = 0;
    const auto r = tern::data::read_linqs(dir.path, "g", {.skip_unknown_edges = true}, &skipped);
    CHECK(skipped == 1);
    CHECK(r.edges.size() == 1);
    tern_test::require_error([&] { (void)tern::data::read_linqs(dir.path, "missing"); },
                             {"missing.content'", "no such file"});
}

TEST_CASE("OGB CSV: a written graph reads and trains; malformed files are refused", "[graph][data]") {
    tern_test::temp_dir dir("tern_test_ogb_");
    const tern::data::graph_data g = small_graph(5);
    const tern::node_split split = tern::planetoid_split(g.labels, 2, 5, 15, 30, 2);
    std::string feat, label, edge;
    for (std::size_t u = 0; u < g.nodes(); ++u) {
        for (std::size_t f = 0; f < 8; ++f) {
            if (f) feat += ',';
            feat += std::to_string(int(g.features(u, f)));
        }
        feat += "\n";
        label += std::to_string(g.labels[u]) + "\n";
    }
    for (auto [a, b] : g.edges) edge += std::to_string(a) + "," + std::to_string(b) + "\n";
    const auto list = [](const std::vector<std::size_t>& v) {
        std::string s;
        for (auto n : v) s += std::to_string(n) + "\n";
        return s;
    };
    // OGB's own layout: raw/ and split/<name>/.
    write_text(dir / "raw/node-feat.csv", feat);
    write_text(dir / "raw/node-label.csv", label);
    write_text(dir / "raw/edge.csv", edge);
    write_text(dir / "split/random/train.csv", list(split.train));
    write_text(dir / "split/random/valid.csv", list(split.validation));
    write_text(dir / "split/random/test.csv", list(split.test));
    const tern::data::graph_data r = tern::data::read_ogb(dir.path);
    CHECK(r.features == g.features);
    CHECK(r.labels == g.labels);
    CHECK(r.edges == g.edges);
    REQUIRE(r.split);
    CHECK(r.split->validation == split.validation);
    const double accuracy = train_sgc(r, *r.split);
    INFO("test accuracy " << accuracy);
    CHECK(accuracy > 0.8);

    const auto expect = [&](const std::string& file, const std::string& text, std::vector<std::string> parts) {
        const fs::path p = dir / file;
        const std::string keep = [&] {
            std::ifstream in(p, std::ios::binary);
            return std::string(std::istreambuf_iterator<char>(in), {});
        }();
        write_text(p, text);
        tern_test::require_error([&] { (void)tern::data::read_ogb(dir.path); }, parts);
        write_text(p, keep);
    };
    expect("raw/edge.csv", "0,1\n2,60\n", {"edge.csv' line 2", "expected node indices in 0..59", "found '60'"});
    expect("raw/edge.csv", "0,1\n2\n", {"edge.csv' line 2", "expected two node indices"});
    expect("raw/node-feat.csv", "1,0\n1,0,1\n", {"node-feat.csv' line 2", "expected 2 comma-separated features"});
    expect("raw/node-feat.csv", "", {"node-feat.csv'", "found an empty graph"});
    expect("raw/node-label.csv", label.substr(0, label.size() - 2), {"node-label.csv'", "the label of node 59 is missing"});
    expect("raw/node-label.csv", std::string("x\n").append(label), {"node-label.csv' line 1", "expected a class number", "found 'x'"});
    expect("raw/edge.csv", "0,99999999999999999999999\n", {"edge.csv' line 1", "found '99999999999999999999999'"});
    expect("split/random/test.csv", list(split.train), {"node", "is in more than one set"});
    fs::rename(dir / "raw/edge.csv", dir / "raw/edge.csv.gz");
    tern_test::require_error([&] { (void)tern::data::read_ogb(dir.path); }, {"edge.csv.gz", "gunzip -k"});
}
