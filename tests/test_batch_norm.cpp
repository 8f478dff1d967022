// batch_norm2d: statistics in training and evaluation modes, running averages, gradient checks
// in both modes, parameters and buffers, errors.
#include <catch2/catch.hpp>
#include <cmath>

#include "gradcheck.hpp"
#include "tern/layers/batch_norm.hpp"

TEST_CASE("batch_norm2d normalizes each channel over (B, H, W) in training mode", "[batch_norm]") {
    tern::batch_norm2d bn(3);
    tern::tensor x = tern_test::random_tensor({4, 3, 5, 6}, 1, 2.0f);
    for (std::size_t b = 0; b < 4; ++b)  // give channel c a mean of c
        for (std::size_t c = 0; c < 3; ++c)
            for (std::size_t i = 0; i < 30; ++i) x.data()[(b * 3 + c) * 30 + i] += float(c);
    bn.weight = tern::tensor{1.0f, 2.0f, 0.5f};
    bn.bias = tern::tensor{0.0f, -1.0f, 3.0f};
    const tern::tensor y = bn.forward(x);
    for (std::size_t c = 0; c < 3; ++c) {
        double s = 0, s2 = 0, xs = 0, xs2 = 0;
        for (std::size_t b = 0; b < 4; ++b)
            for (std::size_t i = 0; i < 30; ++i) {
                const double v = y.data()[(b * 3 + c) * 30 + i], u = x.data()[(b * 3 + c) * 30 + i];
                s += v;
                s2 += v * v;
                xs += u;
                xs2 += u * u;
            }
        const double mean = s / 120, var = s2 / 120 - mean * mean;
        CHECK(mean == Approx(bn.bias(c)).margin(1e-5));
        CHECK(std::sqrt(var) == Approx(bn.weight(c)).epsilon(1e-3));
        // running = 0.9 * init + 0.1 * batch (unbiased variance)
        const double xm = xs / 120, xv = (xs2 / 120 - xm * xm) * 120.0 / 119.0;
        CHECK(bn.running_mean(c) == Approx(0.1 * xm).margin(1e-5));
        CHECK(bn.running_var(c) == Approx(0.9 + 0.1 * xv).epsilon(1e-4));
    }
}

TEST_CASE("batch_norm2d uses the running statistics in evaluation mode", "[batch_norm]") {
    tern::batch_norm2d bn(2, 0.5f);
    bn.running_mean = tern::tensor{1.0f, -2.0f};
    bn.running_var = tern::tensor{4.0f, 0.25f};
    bn.weight = tern::tensor{3.0f, 1.0f};
    bn.bias = tern::tensor{0.5f, 0.0f};
    bn.set_training(false);
    const tern::tensor x = tern_test::random_tensor({1, 2, 3, 3}, 2);
    const tern::tensor y = bn.forward(x);
    for (std::size_t i = 0; i < 9; ++i) {
        CHECK(y.data()[i] == Approx((x.data()[i] - 1.0) / std::sqrt(4.0 + 1e-5) * 3.0 + 0.5).margin(1e-5));
        CHECK(y.data()[9 + i] == Approx((x.data()[9 + i] + 2.0) / std::sqrt(0.25 + 1e-5)).margin(1e-4));
    }
    CHECK(bn.running_mean(0) == 1.0f);  // unchanged in evaluation mode
    CHECK(bn.running_var(1) == 0.25f);
    // A single image is fine in evaluation mode, not in training mode.
    bn.forward(tern::zeros({1, 2, 1, 1}));
    bn.set_training(true);
    REQUIRE_THROWS_WITH(bn.forward(tern::zeros({1, 2, 1, 1})), Catch::Contains("more than one value per channel"));
}

TEST_CASE("batch_norm2d gradient check in training and evaluation modes", "[batch_norm][grad]") {
    tern::batch_norm2d bn(3);
    bn.weight = tern::tensor{1.5f, -0.7f, 0.9f};
    bn.bias = tern::tensor{0.1f, 0.2f, -0.3f};
    tern_test::gradcheck(bn, tern_test::random_tensor({3, 3, 4, 2}, 3));
    bn.running_mean = tern::tensor{0.3f, -0.1f, 0.0f};
    bn.running_var = tern::tensor{1.2f, 0.8f, 2.0f};
    bn.set_training(false);
    tern_test::gradcheck(bn, tern_test::random_tensor({2, 3, 3, 3}, 4));
}

TEST_CASE("batch_norm2d lists gamma/beta without decay and its buffers without gradients", "[batch_norm]") {
    tern::batch_norm2d bn(4);
    tern::parameter_list params;
    bn.collect_parameters(params, "2.");
    REQUIRE(params.size() == 4);
    CHECK(params[0].name == "2.weight");
    CHECK(params[1].name == "2.bias");
    CHECK(params[2].name == "2.running_mean");
    CHECK(params[3].name == "2.running_var");
    CHECK((params[0].trainable() && params[1].trainable()));
    CHECK((!params[2].trainable() && !params[3].trainable()));
    CHECK((!params[0].decay && !params[1].decay));
    CHECK(tern::count_parameters(params) == 8);
    CHECK(bn.describe() == "batch_norm2d(4)");
}

TEST_CASE("batch_norm2d rejects bad sizes and inputs", "[batch_norm][errors]") {
    REQUIRE_THROWS_AS(tern::batch_norm2d(0), tern::error);
    REQUIRE_THROWS_AS(tern::batch_norm2d(3, 1.5f), tern::error);
    tern::batch_norm2d bn(3);
    REQUIRE_THROWS_WITH(bn.forward(tern::zeros({2, 4, 3, 3})),
                        Catch::Contains("batch_norm2d") && Catch::Contains("[B, 3, H, W]") &&
                            Catch::Contains("[2, 4, 3, 3]"));
    REQUIRE_THROWS_WITH(bn.forward(tern::zeros({2, 3})), Catch::Contains("[2, 3]"));
    bn.forward(tern_test::random_tensor({2, 3, 2, 2}, 1));
    REQUIRE_THROWS_WITH(bn.backward(tern::zeros({2, 3, 2, 3})), Catch::Contains("[2, 3, 2, 2]"));
}
