// max_pool2d, avg_pool2d, global_avg_pool2d: values against a direct computation, gradient checks,
// padding, overlapping windows, shapes and errors.
#include <catch2/catch.hpp>
#include <algorithm>
#include <limits>
#include <random>
#include <vector>

#include "gradcheck.hpp"
#include "tern/layers/pooling.hpp"

namespace {

// Values spaced 0.05 apart in random order: no two elements tie within a finite-difference step.
tern::tensor distinct_values(const tern::shape_t& shape, std::uint64_t seed) {
    tern::tensor x(shape);
    std::vector<std::size_t> order(x.size());
    for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
    std::mt19937_64 rng(seed);
    std::shuffle(order.begin(), order.end(), rng);
    for (std::size_t i = 0; i < order.size(); ++i) x.data()[i] = 0.05f * (float(order[i]) - float(order.size()) / 2);
    return x;
}

}  // namespace

TEST_CASE("max_pool2d picks the window maximum and routes the gradient to it", "[pooling]") {
    tern::max_pool2d pool(2);
    tern::tensor x = {{{{1, 5, 2, 0}, {3, 4, 8, 1}, {0, 0, 1, 1}, {9, 2, 1, 3}}}};
    const tern::tensor y = pool.forward(x);
    REQUIRE(tern::detail::to_shape(y.shape()) == tern::shape_t{1, 1, 2, 2});
    CHECK(y(0, 0, 0, 0) == 5);
    CHECK(y(0, 0, 0, 1) == 8);
    CHECK(y(0, 0, 1, 0) == 9);
    CHECK(y(0, 0, 1, 1) == 3);
    const tern::tensor dx = pool.backward(tern::tensor{{{{1, 2}, {3, 4}}}});
    CHECK(dx(0, 0, 0, 1) == 1);
    CHECK(dx(0, 0, 1, 2) == 2);
    CHECK(dx(0, 0, 3, 0) == 3);
    CHECK(dx(0, 0, 3, 3) == 4);
    double total = 0;
    for (float v : dx) total += v;
    CHECK(total == 10);
    CHECK(pool.describe() == "max_pool2d(k2,s2,p0)");
}

TEST_CASE("pooling matches a direct computation with overlap and padding", "[pooling]") {
    const tern::tensor x = tern_test::random_tensor({2, 3, 7, 6}, 1);
    for (std::size_t k : {2, 3})
        for (std::size_t s : {1, 2})
            for (std::size_t p = 0; p <= k / 2; ++p) {
                INFO("k=" << k << " s=" << s << " p=" << p);
                tern::max_pool2d mp(k, s, p);
                tern::avg_pool2d ap(k, s, p);
                const tern::tensor ym = mp.forward(x), ya = ap.forward(x);
                const std::size_t Ho = (7 + 2 * p - k) / s + 1, Wo = (6 + 2 * p - k) / s + 1;
                REQUIRE(tern::detail::to_shape(ym.shape()) == tern::shape_t{2, 3, Ho, Wo});
                REQUIRE(ya.shape() == ym.shape());
                for (std::size_t b = 0; b < 2; ++b)
                    for (std::size_t c = 0; c < 3; ++c)
                        for (std::size_t i = 0; i < Ho; ++i)
                            for (std::size_t j = 0; j < Wo; ++j) {
                                float best = -std::numeric_limits<float>::infinity();
                                double sum = 0;
                                for (std::size_t a = 0; a < k; ++a)
                                    for (std::size_t e = 0; e < k; ++e) {
                                        const long h = long(i * s + a) - long(p), w = long(j * s + e) - long(p);
                                        if (h < 0 || w < 0 || h >= 7 || w >= 6) continue;
                                        best = std::max(best, x(b, c, std::size_t(h), std::size_t(w)));
                                        sum += x(b, c, std::size_t(h), std::size_t(w));
                                    }
                                CHECK(ym(b, c, i, j) == best);
                                CHECK(ya(b, c, i, j) == Approx(sum / double(k * k)).margin(1e-6));
                            }
            }
}

TEST_CASE("pooling gradient checks", "[pooling][grad]") {
    SECTION("max_pool2d, overlapping and padded") {
        tern::max_pool2d pool(3, 2, 1);
        tern_test::gradcheck(pool, distinct_values({2, 2, 5, 6}, 2));
    }
    SECTION("max_pool2d 2x2") {
        tern::max_pool2d pool(2);
        tern_test::gradcheck(pool, distinct_values({2, 3, 4, 6}, 3));
    }
    SECTION("avg_pool2d, overlapping and padded") {
        tern::avg_pool2d pool(3, 1, 1);
        tern_test::gradcheck(pool, tern_test::random_tensor({2, 2, 4, 5}, 4));
    }
    SECTION("global_avg_pool2d") {
        tern::global_avg_pool2d pool;
        tern_test::gradcheck(pool, tern_test::random_tensor({3, 4, 3, 5}, 5));
    }
}

TEST_CASE("global_avg_pool2d averages each plane to [B, C]", "[pooling]") {
    tern::global_avg_pool2d pool;
    const tern::tensor x = tern_test::random_tensor({2, 3, 4, 5}, 6);
    const tern::tensor y = pool.forward(x);
    REQUIRE(tern::detail::to_shape(y.shape()) == tern::shape_t{2, 3});
    for (std::size_t b = 0; b < 2; ++b)
        for (std::size_t c = 0; c < 3; ++c) {
            double s = 0;
            for (std::size_t i = 0; i < 4; ++i)
                for (std::size_t j = 0; j < 5; ++j) s += x(b, c, i, j);
            CHECK(y(b, c) == Approx(s / 20).margin(1e-6));
        }
    CHECK(pool.describe() == "global_avg_pool2d");
}

TEST_CASE("pooling on a large batch (threaded) equals the per-image results", "[pooling]") {
    tern::max_pool2d pool(2);
    const tern::tensor x = tern_test::random_tensor({64, 16, 16, 16}, 7);
    const tern::tensor y = pool.forward(x);
    tern::tensor one(tern::shape_t{1, 16, 16, 16});
    std::copy(x.data() + 40 * one.size(), x.data() + 41 * one.size(), one.data());
    tern::max_pool2d single(2);
    const tern::tensor y1 = single.forward(one);
    for (std::size_t i = 0; i < y1.size(); ++i) REQUIRE(y1.data()[i] == y.data()[40 * y1.size() + i]);
}

TEST_CASE("pooling rejects bad geometry and inputs with clear messages", "[pooling][errors]") {
    REQUIRE_THROWS_WITH(tern::max_pool2d(0), Catch::Contains("max_pool2d") && Catch::Contains("kernel"));
    REQUIRE_THROWS_WITH(tern::avg_pool2d(2, 2, 2), Catch::Contains("padding must be at most half"));
    tern::max_pool2d pool(3);
    REQUIRE_THROWS_WITH(pool.forward(tern::zeros({2, 8, 8})),
                        Catch::Contains("max_pool2d") && Catch::Contains("[B, C, H, W]") && Catch::Contains("[2, 8, 8]"));
    REQUIRE_THROWS_WITH(pool.forward(tern::zeros({1, 1, 2, 8})), Catch::Contains("smaller than the 3x3 window"));
    pool.forward(tern::zeros({1, 2, 6, 6}));
    REQUIRE_THROWS_WITH(pool.backward(tern::zeros({1, 2, 3, 3})),
                        Catch::Contains("[1, 2, 2, 2]") && Catch::Contains("[1, 2, 3, 3]"));
    tern::global_avg_pool2d gap;
    REQUIRE_THROWS_WITH(gap.forward(tern::zeros({4, 10})), Catch::Contains("global_avg_pool2d"));
}
