// dropout (train/eval, scaling, gradient through the mask) and flatten (shapes, gradient check).
#include <catch2/catch.hpp>

#include "gradcheck.hpp"
#include "tern/layers/dropout.hpp"
#include "tern/layers/flatten.hpp"

TEST_CASE("dropout zeroes about p of the inputs and rescales the rest", "[dropout]") {
    tern::manual_seed(1);
    tern::dropout drop(0.25f);
    const tern::tensor x = tern::tensor(tern::shape_t{100, 100}, 1.0f);
    const tern::tensor y = drop.forward(x);
    std::size_t zeros = 0;
    for (float v : y) {
        REQUIRE((v == 0.0f || v == Approx(1.0f / 0.75f)));
        zeros += v == 0.0f;
    }
    CHECK(double(zeros) / 1e4 == Approx(0.25).margin(0.02));
    // The gradient goes through the same mask.
    const tern::tensor g = drop.backward(tern::tensor(tern::shape_t{100, 100}, 2.0f));
    for (std::size_t i = 0; i < y.size(); ++i) REQUIRE(g.data()[i] == 2.0f * y.data()[i]);
    drop.set_training(false);
    const bool unchanged = drop.forward(x) == x;
    CHECK(unchanged);
    REQUIRE_THROWS_AS(tern::dropout(1.0f), tern::error);
}

TEST_CASE("dropout gradient check with a fixed mask", "[dropout][grad]") {
    tern::manual_seed(2);
    tern::dropout drop(0.0f);  // p = 0 keeps the mask fixed across the finite-difference evaluations
    tern_test::gradcheck(drop, tern_test::random_tensor({4, 3}, 1));
}

TEST_CASE("flatten merges all axes after the first and restores them backward", "[flatten][grad]") {
    tern::flatten f;
    const tern::tensor x = tern_test::random_tensor({2, 3, 4, 5}, 3);
    const tern::tensor y = f.forward(x);
    CHECK(tern::detail::to_shape(y.shape()) == tern::shape_t{2, 60});
    tern_test::gradcheck(f, x);
    REQUIRE_THROWS_AS(f.backward(tern::zeros({2, 59})), tern::error);
}
