// Sparse matrices against dense products, the graph layers (sgc, gcn_conv) and embedding_bag:
// gradient checks, freezing, files, and node classification with masks on a synthetic graph.
#include <catch2/catch.hpp>

#include "freeze_support.hpp"
#include "gradcheck.hpp"

#include <cmath>
#include <random>

#include <tern/deploy/packed_model.hpp>
#include <tern/graph/gcn_conv.hpp>
#include <tern/graph/sgc.hpp>
#include <tern/layers/embedding_bag.hpp>
#include <tern/train/node_classification.hpp>

namespace {

tern::tensor dense_product(const tern::tensor& a, const tern::tensor& b) {
    const std::size_t n = a.shape()[0], k = a.shape()[1], m = b.shape()[1];
    tern::tensor c = tern::zeros({n, m});
    for (std::size_t i = 0; i < n; ++i)
        for (std::size_t j = 0; j < k; ++j)
            for (std::size_t l = 0; l < m; ++l) c(i, l) += a(i, j) * b(j, l);
    return c;
}

double max_abs_diff(const tern::tensor& a, const tern::tensor& b) {
    REQUIRE(a.shape() == b.shape());
    double d = 0;
    for (std::size_t i = 0; i < a.size(); ++i) d = std::max(d, double(std::fabs(a.data()[i] - b.data()[i])));
    return d;
}

// A random graph of @p nodes with @p edges random edges (duplicates and self-loops included).
tern::csr_matrix random_graph(std::size_t nodes, std::size_t edges, std::uint64_t seed) {
    std::mt19937_64 rng(seed);
    std::uniform_int_distribution<std::size_t> pick(0, nodes - 1);
    std::vector<std::pair<std::size_t, std::size_t>> e;
    for (std::size_t i = 0; i < edges; ++i) e.emplace_back(pick(rng), pick(rng));
    return tern::undirected_adjacency(nodes, e);
}

// Two communities of @p half nodes: edges mostly inside a community; features are the community
// signal in a few of @p features dimensions plus noise, so neighbours' features help.
struct community_graph {
    tern::shared_propagation graph;
    tern::tensor features;
    std::vector<int> labels;
};
community_graph make_communities(std::size_t half, std::size_t features, std::uint64_t seed) {
    std::mt19937_64 rng(seed);
    const std::size_t n = 2 * half;
    std::uniform_int_distribution<std::size_t> pick(0, half - 1);
    std::bernoulli_distribution across(0.1);
    std::vector<std::pair<std::size_t, std::size_t>> edges;
    for (std::size_t u = 0; u < n; ++u)
        for (int k = 0; k < 4; ++k) {
            const std::size_t side = across(rng) ? 1 - u / half : u / half;
            edges.emplace_back(u, side * half + pick(rng));
        }
    community_graph g;
    g.graph = tern::make_gcn_propagation(tern::undirected_adjacency(n, edges));
    g.features = tern_test::random_tensor({n, features}, seed + 1, 1.0f);
    g.labels.resize(n);
    for (std::size_t u = 0; u < n; ++u) {
        g.labels[u] = int(u / half);
        for (std::size_t f = 0; f < 3; ++f) g.features(u, f) += g.labels[u] ? 0.6f : -0.6f;
    }
    return g;
}

}  // namespace

TEST_CASE("csr_matrix: duplicates summed, empty rows, products, transpose", "[graph][sparse]") {
    // Row 1 and row 4 are empty; (0, 2) appears twice.
    const std::vector<tern::sparse_entry> entries = {{0, 2, 1.5f}, {3, 0, -2.0f}, {0, 2, 0.5f}, {2, 4, 3.0f},
                                                     {0, 0, 1.0f}, {2, 1, 0.25f}, {3, 3, 4.0f}};
    const tern::csr_matrix a = tern::csr_matrix::from_entries(5, 5, entries);
    CHECK(a.nonzeros() == 6);
    CHECK(a.row_nonzeros(1) == 0);
    CHECK(a.row_nonzeros(4) == 0);
    tern::tensor dense = tern::zeros({5, 5});
    for (const auto& e : entries) dense(e.row, e.col) += e.value;
    CHECK(max_abs_diff(a.to_dense(), dense) == 0.0);
    CHECK(max_abs_diff(tern::transpose(a).to_dense(), tern::tensor(xt::transpose(dense))) == 0.0);

    const tern::tensor x = tern_test::random_tensor({5, 7}, 3);
    CHECK(max_abs_diff(tern::spmm(a, x), dense_product(dense, x)) < 1e-5);

    // A product large enough to be split over two threads equals the dense one.
    tern::set_num_threads(2);
    const tern::csr_matrix big = random_graph(300, 1500, 9);
    const tern::tensor xb = tern_test::random_tensor({300, 64}, 4);
    CHECK(max_abs_diff(tern::spmm(big, xb), dense_product(big.to_dense(), xb)) < 1e-4);
    CHECK(tern::is_symmetric(big));
    tern::set_num_threads(1);

    tern_test::require_error([&] { (void)tern::spmm(a, tern::zeros({4, 2})); }, {"spmm", "[5, features]", "[4, 2]"});
    tern_test::require_error([&] { (void)tern::csr_matrix::from_entries(2, 2, {{2, 0, 1.0f}}); },
                             {"entry (2, 0)", "2 x 2"});
}

TEST_CASE("undirected adjacency and GCN normalization match the dense formulas", "[graph][sparse]") {
    // Edge (0, 1) given three times (twice reversed); node 4 has no edge; (2, 2) a self-loop.
    const tern::csr_matrix a = tern::undirected_adjacency(5, {{0, 1}, {1, 0}, {0, 1}, {1, 2}, {2, 3}, {2, 2}});
    tern::tensor dense = tern::zeros({5, 5});
    for (auto [u, v] : std::vector<std::pair<int, int>>{{0, 1}, {1, 2}, {2, 3}})
        dense(u, v) = dense(v, u) = 1.0f;
    dense(2, 2) = 1.0f;
    CHECK(max_abs_diff(a.to_dense(), dense) == 0.0);

    for (bool loops : {true, false}) {
        INFO("self-loops " << loops);
        tern::tensor m = dense;
        if (loops)
            for (std::size_t i = 0; i < 5; ++i) m(i, i) += 1.0f;
        tern::tensor expected = tern::zeros({5, 5});
        for (std::size_t i = 0; i < 5; ++i)
            for (std::size_t j = 0; j < 5; ++j) {
                double di = 0, dj = 0;
                for (std::size_t k = 0; k < 5; ++k) di += m(i, k), dj += m(j, k);
                if (m(i, j) != 0) expected(i, j) = float(m(i, j) / std::sqrt(di * dj));
            }
        const tern::csr_matrix s = tern::gcn_normalize(a, loops);
        CHECK(max_abs_diff(s.to_dense(), expected) < 1e-6);
        CHECK(s.row_nonzeros(4) == (loops ? 1u : 0u));  // the isolated node: only its self-loop
    }
    tern_test::require_error([] { (void)tern::undirected_adjacency(3, {{0, 3}}); }, {"edge (0, 3)", "0..3 - 1"});
    tern_test::require_error([] { (void)tern::propagation(tern::csr_matrix::from_entries(2, 3, {})); },
                             {"square", "2 x 3"});
}

TEMPLATE_TEST_CASE("graph layers and embedding_bag: gradient checks", "[graph][gradcheck]", tern::fp32,
                   tern::absmean_ternary) {
    tern::manual_seed(2);
    // A directed (non-symmetric) propagation exercises S^T in the backward pass.
    const auto directed = std::make_shared<const tern::propagation>(tern::csr_matrix::from_entries(
        5, 5, {{0, 1, 0.5f}, {1, 2, 1.0f}, {2, 0, -0.7f}, {3, 3, 0.9f}, {0, 0, 0.3f}, {2, 4, 0.4f}}));
    REQUIRE(!directed->symmetric());
    SECTION("sgc, K = 2") {
        tern::sgc<TestType> l(directed, 2, 4, 3);
        l.set_quant_strength(0.0f);  // the straight-through estimator is exact only at lambda 0
        tern_test::gradcheck(l, tern_test::random_tensor({5, 4}, 11));
    }
    SECTION("gcn_conv, both orders of the product") {
        for (auto [in, out] : {std::pair<std::size_t, std::size_t>{6, 3}, {3, 6}}) {
            tern::gcn_conv<TestType> l(directed, in, out);
            CHECK(l.projects_first() == (out < in));
            l.set_quant_strength(0.0f);
            tern_test::gradcheck(l, tern_test::random_tensor({5, in}, 12));
        }
    }
    SECTION("embedding_bag, sum and mean") {
        for (bool mean : {false, true}) {
            tern::embedding_bag<TestType> l(7, 4, mean);
            l.set_quant_strength(0.0f);
            tern::tensor bags = tern_test::random_tensor({3, 7}, 13);
            for (auto& c : bags) c = 0.5f + std::fabs(c);  // positive counts: the steps keep every word present
            tern_test::gradcheck(l, bags);
        }
    }
}

TEST_CASE("sgc caches S^K X and recomputes it when X changes", "[graph]") {
    tern::manual_seed(4);
    const auto g = make_communities(10, 5, 1);
    tern::sgc<tern::fp32> l(g.graph, 2, 5, 2);
    tern::tensor x = g.features;
    const tern::tensor expected = tern::spmm(g.graph->matrix(), tern::spmm(g.graph->matrix(), x));
    CHECK(max_abs_diff(l.propagate_features(x), expected) < 1e-5);
    const float* cached = l.propagate_features(x).data();
    CHECK(l.propagate_features(x).data() == cached);
    x(3, 1) += 1.0f;
    CHECK(max_abs_diff(l.propagate_features(x), tern::spmm(g.graph->matrix(), tern::spmm(g.graph->matrix(), x))) < 1e-5);
    tern_test::require_error([&] { (void)l.forward(tern::zeros({7, 5})); }, {"sgc", "[20, features]", "[7, 5]"});
}

TEST_CASE("masked cross-entropy equals the loss over the selected rows", "[graph][loss]") {
    const tern::tensor logits = tern_test::random_tensor({6, 3}, 5);
    const std::vector<int> labels = {0, 2, 1, 1, 0, 2};
    const std::vector<std::size_t> rows = {1, 4, 5};
    tern::masked_cross_entropy masked;
    const float l = masked.forward(logits, labels, rows);
    const tern::tensor g = masked.backward();
    tern::tensor picked = tern::tensor::from_shape({3, 3});
    for (std::size_t i = 0; i < 3; ++i)
        for (std::size_t c = 0; c < 3; ++c) picked(i, c) = logits(rows[i], c);
    tern::softmax_cross_entropy plain;
    CHECK(l == Approx(plain.forward(picked, {2, 0, 2})));
    const tern::tensor gp = plain.backward();
    for (std::size_t r = 0; r < 6; ++r)
        for (std::size_t c = 0; c < 3; ++c) {
            const auto it = std::find(rows.begin(), rows.end(), r);
            CHECK(g(r, c) == (it == rows.end() ? 0.0f : gp(std::size_t(it - rows.begin()), c)));
        }
    tern_test::require_error([&] { (void)masked.forward(logits, labels, {6}); }, {"mask row 6", "6 rows"});
    tern_test::require_error([&] { (void)masked.forward(logits, labels, {}); }, {"at least one row"});
}

TEST_CASE("Planetoid split: per-class training nodes, disjoint seeded sets", "[graph]") {
    std::vector<int> labels(300);
    for (std::size_t i = 0; i < labels.size(); ++i) labels[i] = int(i % 3);
    labels[7] = -1;  // unlabelled
    const tern::node_split s = tern::planetoid_split(labels, 3, 20, 50, 100, 42);
    CHECK(s.train.size() == 60);
    CHECK(s.validation.size() == 50);
    CHECK(s.test.size() == 100);
    tern::check_split(s, labels.size(), "split");
    for (int c = 0; c < 3; ++c)
        CHECK(std::count_if(s.train.begin(), s.train.end(), [&](std::size_t n) { return labels[n] == c; }) == 20);
    for (const auto* set : {&s.train, &s.validation, &s.test})
        CHECK(std::find(set->begin(), set->end(), 7u) == set->end());
    CHECK(tern::planetoid_split(labels, 3, 20, 50, 100, 42).test == s.test);
    CHECK(tern::planetoid_split(labels, 3, 20, 50, 100, 43).test != s.test);
    tern_test::require_error([&] { (void)tern::planetoid_split(labels, 3, 20, 250, 100, 1); },
                             {"fewer than 250 validation + 100 test"});
}

TEMPLATE_TEST_CASE("node classification: SGC and a 2-layer GCN learn two communities, then freeze", "[graph]",
                   tern::fp32, tern::fp16, tern::absmean_ternary, tern::absmedian_ternary) {
    tern::manual_seed(7);
    const auto g = make_communities(60, 16, 3);
    const tern::node_split split = tern::planetoid_split(g.labels, 2, 10, 30, 60, 5);
    tern::node_training_options opt{.epochs = 60, .lr = 0.05f, .weight_decay = 5e-4f, .patience = 0, .on_epoch = {}};

    tern::sequential sgc_model{tern::sgc<TestType>(g.graph, 2, 16, 2)};
    const auto sgc_result = tern::train_node_classifier(sgc_model, g.features, g.labels, split, opt);
    INFO("SGC test accuracy " << sgc_result.test_accuracy);
    CHECK(sgc_result.test_accuracy > 0.85);

    tern::sequential gcn{tern::gcn_conv<TestType>(g.graph, 16, 8), tern::relu{}, tern::dropout(0.5f),
                         tern::gcn_conv<TestType>(g.graph, 8, 2)};
    opt.patience = 20;
    const auto gcn_result = tern::train_node_classifier(gcn, g.features, g.labels, split, opt);
    INFO("GCN test accuracy " << gcn_result.test_accuracy << " after " << gcn_result.epochs_run << " epochs");
    CHECK(gcn_result.test_accuracy > 0.85);
    CHECK(gcn_result.epochs_run >= gcn_result.best_epoch);

    // Frozen: the same templates in frozen<P>, sharing the graph, computing the training forward.
    gcn.set_training(false);
    auto frozen = tern::freeze(gcn);
    CHECK(frozen.template layer<0>().graph() == g.graph);
    CHECK(tern_test::max_row_relative_diff(frozen.forward(g.features), gcn.forward(g.features)) < 1e-4);
    auto frozen_sgc = tern::freeze(sgc_model);
    CHECK(tern_test::max_row_relative_diff(frozen_sgc.forward(g.features), sgc_model.forward(g.features)) < 1e-4);
}

TEMPLATE_TEST_CASE("WideMLP: embedding_bag trains, freezes, saves and loads", "[graph][embedding_bag]", tern::fp32,
                   tern::absmean_ternary) {
    tern::manual_seed(3);
    // Bags of 12 words: class 0 uses words 0..5 more, class 1 words 6..11.
    std::mt19937 rng(1);
    std::bernoulli_distribution coin(0.5), likely(0.6), unlikely(0.15);
    tern::tensor bags = tern::zeros({80, 12});
    std::vector<int> labels(80);
    for (std::size_t b = 0; b < 80; ++b) {
        labels[b] = coin(rng);
        for (std::size_t w = 0; w < 12; ++w) bags(b, w) = ((w < 6) == (labels[b] == 0) ? likely(rng) : unlikely(rng));
    }
    tern::sequential model{tern::embedding_bag<TestType>(12, 16), tern::relu{}, tern::linear<TestType>(16, 2)};
    tern::adamw opt(model.parameters(), {.lr = 1e-2f, .weight_decay = 0.0f});
    tern::softmax_cross_entropy loss;
    const float first = loss.forward(model.forward(bags), labels);
    float last = first;
    for (int step = 0; step < 100; ++step) {
        opt.zero_grad();
        last = loss.forward(model.forward(bags), labels);
        tern::backward_parameters(model, loss.backward());
        opt.step();
    }
    CHECK(last < 0.5f * first);

    auto frozen = tern::freeze(model);
    const tern::tensor y_train = model.forward(bags), y_frozen = frozen.forward(bags);
    CHECK(tern_test::max_row_relative_diff(y_frozen, y_train) < 1e-4);

    tern_test::temp_dir dir("tern_test_graph_");
    tern::inference_model runtime = tern::freeze(model);
    CHECK(runtime.layer(0).kind() == "embedding_bag");
    tern::save_packed_model(dir / "widemlp.safetensors", runtime, {.test_inputs = bags, .metadata = {}});
    tern::inference_model loaded = tern::load_packed_model(dir / "widemlp.safetensors");
    const tern::tensor a = loaded.forward(bags);
    CHECK(std::equal(a.begin(), a.end(), y_frozen.begin()));

    auto data = tern::io::load_safetensors(dir / "widemlp.safetensors");
    auto arch = nlohmann::json::parse(data.metadata.at("tern.architecture"));
    arch["layers"][0]["in"] = 13;
    data.metadata["tern.architecture"] = arch.dump();
    tern_test::require_error([&] { (void)tern::parse_packed_model(data, "m"); }, {"m: layer 0 (embedding_bag)"});
    tern_test::require_error([&] { (void)model.forward(tern::zeros({2, 5})); }, {"embedding_bag", "[batch, 12]"});
}
