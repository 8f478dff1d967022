// The worked example of docs/layers.md: a layer kind written once outside the library
// (tests/residual_linear.hpp) trains, freezes, saves, loads and runs in the run-time model with
// one registration line and nothing else touched.
#include <catch2/catch.hpp>

#include "freeze_support.hpp"
#include "gradcheck.hpp"
#include "residual_linear.hpp"

#include <cmath>
#include <random>
#include <type_traits>

#include <tern/deploy/packed_model.hpp>
#include <tern/loss.hpp>
#include <tern/optim/adam.hpp>

namespace {

// The one registration line: files may now hold "residual_linear" entries in these policies.
const bool registered = (tern::register_policy_layer_kinds<tern_test::residual_linear, 8, tern::fp32,
                                                           tern::absmean_ternary, tern::absmedian_ternary>(),
                         true);

template <class P>
auto make_model() {
    return tern::sequential{tern::linear<P>(6, 16), tern::relu{}, tern_test::residual_linear<P>(16),
                            tern::relu{}, tern::linear<P>(16, 3)};
}

}  // namespace

TEMPLATE_TEST_CASE("residual_linear: gradient check", "[layer_kind]", tern::fp32, tern::absmean_ternary) {
    tern::manual_seed(3);
    tern_test::residual_linear<TestType> l(6);
    l.set_quant_strength(0.0f);  // the straight-through estimator is exact only at lambda 0
    tern_test::gradcheck(l, tern_test::random_tensor({4, 6}, 11));
}

TEMPLATE_TEST_CASE("a new layer kind trains, freezes, saves, loads and runs", "[layer_kind]", tern::fp32,
                   tern::absmean_ternary, tern::absmedian_ternary) {
    REQUIRE(registered);
    tern::manual_seed(5);
    std::mt19937 rng(2);
    std::normal_distribution<float> d;
    // Three classes by the sign pattern of the first two inputs (a learnable rule).
    tern::tensor x = tern::tensor::from_shape({96, 6});
    std::vector<int> labels(96);
    for (std::size_t i = 0; i < 96; ++i) {
        for (std::size_t k = 0; k < 6; ++k) x(i, k) = d(rng);
        labels[i] = x(i, 0) > 0 ? 0 : (x(i, 1) > 0 ? 1 : 2);
    }

    // Trains: the loss falls.
    auto model = make_model<TestType>();
    tern::adamw opt(model.parameters(), {.lr = 1e-2f, .weight_decay = 0.0f});
    tern::softmax_cross_entropy loss;
    const float first = loss.forward(model.forward(x), labels);
    float last = first;
    for (int step = 0; step < 150; ++step) {
        opt.zero_grad();
        last = loss.forward(model.forward(x), labels);
        model.backward(loss.backward());
        opt.step();
    }
    CHECK(last < 0.5f * first);

    // Freezes: the same templates in the frozen policy, as the training forward at lambda 1.
    auto frozen = tern::freeze(model);
    static_assert(std::is_same_v<std::remove_cvref_t<decltype(frozen.template layer<2>())>,
                                 tern_test::residual_linear<tern::frozen<TestType>>>);
    const tern::tensor y_train = model.forward(x), y_frozen = frozen.forward(x);
    CHECK(tern_test::max_row_relative_diff(y_frozen, y_train) < 1e-4);

    // Saves and loads through the registry; the loaded run-time model computes the same bits.
    tern_test::temp_dir dir("tern_test_layer_kind_");
    tern::inference_model runtime = tern::freeze(model);
    CHECK(runtime.layer(2).kind() == "residual_linear");
    tern::save_packed_model(dir / "model.safetensors", runtime, {.test_inputs = x, .metadata = {}});
    tern::inference_model loaded = tern::load_packed_model(dir / "model.safetensors");
    CHECK(loaded.describe() == runtime.describe());
    const tern::tensor a = loaded.forward(x), b = runtime.forward(x);
    CHECK(std::equal(a.begin(), a.end(), b.begin()));
    CHECK(std::equal(a.begin(), a.end(), y_frozen.begin()));

    // Its file entry is checked like the built-in ones.
    auto data = tern::io::load_safetensors(dir / "model.safetensors");
    auto arch = nlohmann::json::parse(data.metadata.at("tern.architecture"));
    arch["layers"][2]["out"] = 17;
    data.metadata["tern.architecture"] = arch.dump();
    tern_test::require_error([&] { (void)tern::parse_packed_model(data, "m"); },
                             {"m: layer 2 (residual_linear)", "expected a square layer"});
}
