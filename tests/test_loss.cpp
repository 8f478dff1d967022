// Losses: finite-difference gradient checks, numerical stability, label smoothing, clear errors.
#include <catch2/catch.hpp>
#include <cmath>

#include "gradcheck.hpp"
#include "tern/loss.hpp"

namespace {
template <class Eval>
void check_gradient(tern::tensor x, const tern::tensor& analytic, Eval eval, double tol = 1e-3) {
    const float h = 1e-2f;
    for (std::size_t i = 0; i < x.size(); ++i) {
        const float keep = x.data()[i];
        x.data()[i] = keep + h;
        const double up = eval(x);
        x.data()[i] = keep - h;
        const double down = eval(x);
        x.data()[i] = keep;
        tern_test::compare("d[" + std::to_string(i) + "]", analytic.data()[i], (up - down) / (2.0 * h), tol);
    }
}
}  // namespace

TEST_CASE("softmax cross-entropy gradient check, with and without label smoothing", "[loss][grad]") {
    const std::vector<int> labels = {2, 0, 4};
    for (float smoothing : {0.0f, 0.1f}) {
        tern::softmax_cross_entropy loss(smoothing);
        const tern::tensor logits = tern_test::random_tensor({3, 5}, 1, 2.0f);
        loss.forward(logits, labels);
        const tern::tensor g = loss.backward();
        check_gradient(logits, g, [&](const tern::tensor& z) {
            tern::softmax_cross_entropy l(smoothing);
            return double(l.forward(z, labels));
        });
    }
}

TEST_CASE("softmax cross-entropy values and stability", "[loss]") {
    tern::softmax_cross_entropy loss;
    // Uniform logits: loss = ln(C).
    CHECK(loss.forward(tern::zeros({2, 4}), {1, 3}) == Approx(std::log(4.0f)));
    // Huge logits do not overflow (log-sum-exp with the max subtracted).
    const tern::tensor big = {{1000.0f, 0.0f, -1000.0f}};
    CHECK(loss.forward(big, {0}) == Approx(0.0f).margin(1e-6));
    CHECK(loss.forward(big, {2}) == Approx(2000.0f));
    // Leading axes are tokens: [2, 2, 3] logits take 4 labels.
    CHECK_NOTHROW(loss.forward(tern::zeros({2, 2, 3}), {0, 1, 2, 0}));
    REQUIRE_THROWS_WITH(loss.forward(tern::zeros({2, 3}), {0}), Catch::Contains("expected 2 labels"));
    REQUIRE_THROWS_WITH(loss.forward(tern::zeros({1, 3}), {3}), Catch::Contains("outside [0, 3)"));
    const tern::tensor nan = {{std::nanf(""), 0.0f}};
    REQUIRE_THROWS_WITH(loss.forward(nan, {0}), Catch::Contains("not finite"));
    REQUIRE_THROWS_AS(tern::softmax_cross_entropy(1.0f), tern::error);
}

TEST_CASE("mean squared error gradient check and errors", "[loss][grad]") {
    const tern::tensor target = tern_test::random_tensor({4, 3}, 2);
    const tern::tensor pred = tern_test::random_tensor({4, 3}, 3);
    tern::mse_loss loss;
    const float value = loss.forward(pred, target);
    double expected = 0;
    for (std::size_t i = 0; i < pred.size(); ++i)
        expected += double(pred.data()[i] - target.data()[i]) * (pred.data()[i] - target.data()[i]);
    CHECK(value == Approx(expected / 12.0));
    check_gradient(pred, loss.backward(), [&](const tern::tensor& p) {
        tern::mse_loss l;
        return double(l.forward(p, target));
    });
    REQUIRE_THROWS_WITH(loss.forward(pred, tern::zeros({3, 4})), Catch::Contains("[4, 3]") && Catch::Contains("[3, 4]"));
}
