// relu, gelu, silu: values and gradient checks.
#include <catch2/catch.hpp>
#include <cmath>

#include "gradcheck.hpp"
#include "tern/layers/activations.hpp"

namespace {
// Inputs kept away from relu's kink so central differences are valid.
tern::tensor away_from_zero(tern::tensor x) {
    for (auto& v : x) v += v >= 0 ? 0.1f : -0.1f;
    return x;
}
}  // namespace

TEMPLATE_TEST_CASE("activation gradient check", "[activations][grad]", tern::relu, tern::gelu, tern::silu) {
    TestType layer;
    tern_test::gradcheck(layer, away_from_zero(tern_test::random_tensor({3, 2, 5}, 1)));
}

TEST_CASE("activation values", "[activations]") {
    tern::tensor x = {-2.0f, -0.5f, 0.0f, 0.5f, 2.0f};
    const tern::tensor r = tern::relu{}.forward(x);
    CHECK(r(0) == 0.0f);
    CHECK(r(4) == 2.0f);
    const tern::tensor g = tern::gelu{}.forward(x);
    CHECK(g(4) == Approx(1.9544997f).epsilon(1e-6));  // 2 * Phi(2)
    CHECK(g(0) == Approx(-0.0455003f).epsilon(1e-5));
    const tern::tensor s = tern::silu{}.forward(x);
    CHECK(s(3) == Approx(0.5f / (1.0f + std::exp(-0.5f))));
    CHECK(tern::gelu{}.describe() == "gelu");
}

TEST_CASE("activation backward checks the gradient shape", "[activations][errors]") {
    tern::relu r;
    r.forward(tern::zeros({2, 3}));
    REQUIRE_THROWS_WITH(r.backward(tern::zeros({3, 2})), Catch::Contains("relu") && Catch::Contains("[2, 3]"));
}
