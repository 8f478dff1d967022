// sequential: one model definition instantiates every policy; conversion copies parameters exactly;
// forward/backward plumbing; an MLP learns a synthetic problem in every policy (smoke test).
#include <catch2/catch.hpp>
#include <random>

#include "gradcheck.hpp"
#include "tern/tern.hpp"

namespace {

template <class P>
auto make_mlp(std::size_t in, std::size_t hidden, std::size_t out) {
    return tern::sequential{tern::linear<P>(in, hidden), tern::relu{}, tern::linear<P>(hidden, hidden),
                            tern::relu{}, tern::linear<P>(hidden, out)};
}

// Labels from a random linear teacher, keeping only points with a clear margin.
tern::data::dataset teacher_problem(std::size_t n, std::uint64_t seed) {
    std::mt19937_64 rng(42);  // the same teacher for every split
    std::normal_distribution<float> normal;
    const std::size_t dims = 16, classes = 4;
    std::vector<float> teacher(dims * classes);
    for (auto& t : teacher) t = normal(rng);
    rng.seed(seed);
    tern::data::dataset d;
    d.inputs = tern::tensor(tern::shape_t{n, dims});
    d.labels.resize(n);
    for (std::size_t i = 0; i < n;) {
        std::vector<float> x(dims), score(classes, 0.0f);
        for (auto& v : x) v = normal(rng);
        for (std::size_t c = 0; c < classes; ++c)
            for (std::size_t k = 0; k < dims; ++k) score[c] += teacher[c * dims + k] * x[k];
        std::vector<float> sorted = score;
        std::sort(sorted.rbegin(), sorted.rend());
        if (sorted[0] - sorted[1] < 1.5f) continue;
        std::copy(x.begin(), x.end(), d.inputs.data() + i * dims);
        d.labels[i] = int(std::max_element(score.begin(), score.end()) - score.begin());
        ++i;
    }
    return d;
}

}  // namespace

TEMPLATE_TEST_CASE("an MLP learns a synthetic problem to over 95% in every policy", "[sequential][smoke]", tern::fp32,
                   tern::fp16, tern::absmean_ternary, tern::absmedian_ternary) {
    tern::manual_seed(1);
    auto model = make_mlp<TestType>(16, 128, 4);
    const auto train = teacher_problem(2000, 1), test = teacher_problem(500, 2);
    tern::adam opt(model.parameters(), {.lr = 2e-3f});
    tern::softmax_cross_entropy loss;
    tern::data::batch_iterator batches(train, {.batch_size = 32, .seed = 3});
    std::size_t step = 0;
    for (int epoch = 0; epoch < 20; ++epoch) {
        batches.begin_epoch(std::uint64_t(epoch));
        tern::train_classifier_epoch(model, loss, opt, batches, step, {.show_progress = false});
    }
    const auto result = tern::evaluate_classifier(model, test, 4);
    INFO(TestType::name << " test accuracy " << result.accuracy);
    CHECK(result.accuracy > 0.95);
}

TEST_CASE("evaluate_classifier restores the training mode it found", "[sequential][train]") {
    tern::manual_seed(6);
    auto model = tern::sequential{tern::linear<tern::fp32>(16, 12), tern::dropout(0.5f),
                                  tern::residual{tern::sequential{tern::linear<tern::fp32>(12, 12), tern::dropout(0.5f)}},
                                  tern::linear<tern::fp32>(12, 4)};
    const auto data = teacher_problem(40, 9);
    const tern::tensor x = tern_test::random_tensor({3, 16}, 4);
    // Whether two forward passes agree: only in evaluation mode (dropout off everywhere).
    const auto deterministic = [&] { return bool(model.forward(x) == model.forward(x)); };
    CHECK(model.training());  // a new model trains
    CHECK(model.layer<2>().training());
    CHECK_FALSE(deterministic());

    // Evaluation runs with dropout off (two evaluations agree) and leaves training mode on.
    const double loss = tern::evaluate_classifier(model, data, 4, 16).loss;
    CHECK(tern::evaluate_classifier(model, data, 4, 16).loss == loss);
    CHECK(model.training());
    CHECK(model.layer<2>().training());
    CHECK_FALSE(deterministic());

    // A model in evaluation mode stays in it (it used to come back in training mode).
    model.set_training(false);
    CHECK_FALSE(model.layer<2>().training());
    CHECK(tern::evaluate_classifier(model, data, 4, 16).loss == loss);
    CHECK_FALSE(model.training());
    CHECK_FALSE(model.layer<2>().training());
    CHECK(deterministic());

    // ... also when the evaluation throws (here: the wrong class count).
    model.set_training(true);
    REQUIRE_THROWS_WITH(tern::evaluate_classifier(model, data, 5), Catch::Contains("expected 5"));
    CHECK(model.training());
    CHECK_FALSE(deterministic());
    model.set_training(false);
    REQUIRE_THROWS_WITH(tern::evaluate_classifier(model, data, 5), Catch::Contains("expected 5"));
    CHECK_FALSE(model.training());
    CHECK(deterministic());

    // Conversion keeps the mode.
    auto ternary = tern::convert<tern::absmean_ternary>(model);
    CHECK_FALSE(ternary.training());
    CHECK_FALSE(ternary.layer<2>().training());
}

TEST_CASE("one definition instantiates all policies and converts exactly", "[sequential][convert]") {
    tern::manual_seed(5);
    auto fp = make_mlp<tern::fp16>(8, 6, 3);
    auto ternary = tern::convert<tern::absmedian_ternary>(fp);
    static_assert(std::is_same_v<decltype(ternary), decltype(make_mlp<tern::absmedian_ternary>(8, 6, 3))>);
    auto a = fp.parameters(), b = ternary.parameters();
    REQUIRE(a.size() == b.size());
    for (std::size_t i = 0; i < a.size(); ++i) {
        CHECK(a[i].name == b[i].name);
        REQUIRE(a[i].value->shape() == b[i].value->shape());
        CHECK(std::memcmp(a[i].value->data(), b[i].value->data(), a[i].value->size() * sizeof(float)) == 0);
    }
    CHECK(tern::policy_name(fp) == "fp16");
    CHECK(tern::policy_name(ternary) == "absmedian");
    CHECK(ternary.describe() ==
          "sequential(linear<absmedian,a8>(8->6,bias), relu, linear<absmedian,a8>(6->6,bias), relu, "
          "linear<absmedian,a8>(6->3,bias))");
    auto mixed = tern::sequential{tern::linear<tern::fp32>(4, 4), tern::linear<tern::absmean_ternary>(4, 2)};
    CHECK(tern::policy_name(mixed) == "fp32+absmean");
}

TEST_CASE("sequential gradient check through every layer kind", "[sequential][grad]") {
    tern::manual_seed(6);
    auto model = tern::sequential{tern::linear<tern::fp32>(5, 7), tern::gelu{}, tern::layer_norm(7), tern::silu{},
                                  tern::linear<tern::absmean_ternary>(7, 4), tern::rms_norm(4), tern::flatten{}};
    model.set_quant_strength(0.0f);
    tern_test::gradcheck(model, tern_test::random_tensor({3, 5}, 8));
    auto params = model.parameters();
    CHECK(params.front().name == "0.weight");
    CHECK(params.back().name == "5.weight");
}

TEST_CASE("residual blocks add the shortcut, nest, convert and gradient-check", "[residual][grad]") {
    tern::manual_seed(7);
    auto block = tern::residual{tern::sequential{tern::rms_norm(6), tern::linear<tern::fp16>(6, 6), tern::gelu{}}};
    auto model = tern::sequential{tern::pinned<tern::linear<tern::fp32>>(4, 6), block, tern::linear<tern::fp32>(6, 2)};
    auto ternary = tern::convert<tern::absmean_ternary>(model);
    CHECK(tern::policy_name(ternary) == "fp32+absmean");
    ternary.set_quant_strength(0.0f);
    tern_test::gradcheck(ternary, tern_test::random_tensor({3, 4}, 2));
    auto names = ternary.parameters();
    CHECK(names[2].name == "1.body.0.weight");
    // A shortcut with another shape is refused with both shapes in the message.
    auto bad = tern::residual{tern::linear<tern::fp32>(4, 3), tern::identity{}};
    REQUIRE_THROWS_WITH(bad.forward(tern::zeros({2, 4})), Catch::Contains("[2, 3]") && Catch::Contains("[2, 4]"));
}

namespace {

/// Parameter gradients of @p model after one backward (or backward_parameters) from @p g.
template <class Model>
std::vector<tern::tensor> gradients_after(Model& model, const tern::tensor& x, const tern::tensor& g, bool full) {
    auto params = model.parameters();
    for (auto& p : params)
        if (p.grad) p.grad->fill(0.0f);  // buffers (batch-norm statistics) have no gradient
    (void)model.forward(x);
    if (full) (void)model.backward(g);
    else tern::backward_parameters(model, g);
    std::vector<tern::tensor> out;
    for (auto& p : params)
        if (p.grad) out.push_back(*p.grad);
    return out;
}

template <class Model>
void check_backward_parameters(Model& model, const tern::tensor& x) {
    const tern::tensor y = model.forward(x);
    const tern::tensor g = tern_test::random_tensor(tern::detail::to_shape(y.shape()), 77);
    const auto want = gradients_after(model, x, g, true);
    const auto got = gradients_after(model, x, g, false);
    REQUIRE(got.size() == want.size());
    for (std::size_t i = 0; i < got.size(); ++i) {
        INFO("parameter " << i);
        const bool same = got[i] == want[i];
        CHECK(same);
    }
}

}  // namespace

TEMPLATE_TEST_CASE("backward_parameters gives the parameter gradients of backward", "[sequential][backward]",
                   tern::fp32, tern::fp16, tern::absmean_ternary, tern::absmedian_ternary) {
    tern::manual_seed(31);
    SECTION("MLP behind a flatten (no gradient for the images or the first product's input)") {
        auto mlp = tern::sequential{tern::flatten{}, tern::linear<TestType>(12, 8), tern::relu{},
                                    tern::linear<TestType>(8, 3)};
        check_backward_parameters(mlp, tern_test::random_tensor({5, 3, 4}, 1));
    }
    SECTION("CNN with a convolution first, and with a pinned fp32 one") {
        auto cnn = tern::sequential{tern::conv2d<TestType>(2, 4, 3, {.padding = 1}, true), tern::relu{},
                                    tern::max_pool2d(2), tern::flatten{}, tern::linear<TestType>(4 * 3 * 3, 3)};
        check_backward_parameters(cnn, tern_test::random_tensor({3, 2, 6, 6}, 2));
        auto pinned = tern::sequential{tern::pinned<tern::conv2d<tern::fp32>>(2, 4, 3, tern::conv2d_options{.stride = 2}),
                                       tern::batch_norm2d(4), tern::relu{}, tern::flatten{},
                                       tern::linear<TestType>(4 * 2 * 2, 3)};
        check_backward_parameters(pinned, tern_test::random_tensor({3, 2, 5, 5}, 3));
    }
}
