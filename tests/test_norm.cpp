// layer_norm and rms_norm: gradient checks with and without the affine part, and their statistics.
#include <catch2/catch.hpp>

#include "gradcheck.hpp"
#include "tern/layers/norm.hpp"

namespace {
template <class Norm>
void perturb_affine(Norm& norm) {
    tern::parameter_list params;
    norm.collect_parameters(params, "");
    std::uint64_t seed = 40;
    for (auto& p : params) *p.value += tern_test::random_tensor(tern::detail::to_shape(p.value->shape()), seed++, 0.3f);
}
}  // namespace

TEMPLATE_TEST_CASE("norm gradient check", "[norm][grad]", tern::layer_norm, tern::rms_norm) {
    for (bool affine : {false, true}) {
        TestType norm(6, affine);
        perturb_affine(norm);
        tern_test::gradcheck(norm, tern_test::random_tensor({4, 6}, 2, 2.0f));
    }
}

TEST_CASE("layer_norm output has zero mean and unit variance per token", "[norm]") {
    tern::layer_norm norm(16);
    const tern::tensor y = norm.forward(tern_test::random_tensor({3, 16}, 5, 7.0f));
    for (std::size_t t = 0; t < 3; ++t) {
        double s = 0, s2 = 0;
        for (std::size_t k = 0; k < 16; ++k) s += y(t, k), s2 += double(y(t, k)) * y(t, k);
        CHECK(s / 16 == Approx(0).margin(1e-5));
        CHECK(s2 / 16 == Approx(1).epsilon(1e-3));
    }
}

TEST_CASE("rms_norm output has unit mean square per token; norms are not decayed", "[norm]") {
    tern::rms_norm norm(8);
    const tern::tensor y = norm.forward(tern_test::random_tensor({2, 8}, 6, 3.0f));
    for (std::size_t t = 0; t < 2; ++t) {
        double s2 = 0;
        for (std::size_t k = 0; k < 8; ++k) s2 += double(y(t, k)) * y(t, k);
        CHECK(s2 / 8 == Approx(1).epsilon(1e-4));
    }
    tern::parameter_list params;
    norm.collect_parameters(params, "n.");
    REQUIRE(params.size() == 1);
    CHECK(params[0].name == "n.weight");
    CHECK_FALSE(params[0].decay);
    REQUIRE_THROWS_AS(norm.forward(tern::zeros({2, 7})), tern::error);
}
