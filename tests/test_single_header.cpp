// The generated single header on its own: this file includes ONLY single_include/tern/tern.hpp
// (never a header under include/) and trains a tiny MLP on an XOR-like problem to high accuracy
// in a full-precision and a ternary policy. A stale single header fails tools/amalgamate.py --check
// in CI; this test catches a single header that does not compile or work on its own.
#include <catch2/catch.hpp>

#include "../single_include/tern/tern.hpp"

#include <cstdint>
#include <random>

#ifndef TERN_SINGLE_HEADER
#error "expected the generated single header (it defines TERN_SINGLE_HEADER)"
#endif

namespace {

constexpr std::size_t dims = 8;

/// XOR of the signs of x0 and x1, with a margin; the other inputs are small noise (BitLinear's
/// parameter-free input normalization needs more than two features to keep the signs apart).
tern::data::dataset xor_problem(std::size_t n, std::uint64_t seed) {
    std::mt19937_64 rng(seed);
    std::uniform_real_distribution<float> coordinate(0.2f, 1.0f);
    std::normal_distribution<float> noise(0.0f, 0.05f);
    std::bernoulli_distribution sign;
    tern::data::dataset d;
    d.inputs = tern::tensor(tern::shape_t{n, dims});
    d.labels.resize(n);
    for (std::size_t i = 0; i < n; ++i) {
        float* x = d.inputs.data() + i * dims;
        const bool a = sign(rng), b = sign(rng);
        x[0] = a ? coordinate(rng) : -coordinate(rng);
        x[1] = b ? coordinate(rng) : -coordinate(rng);
        for (std::size_t k = 2; k < dims; ++k) x[k] = noise(rng);
        d.labels[i] = a != b ? 1 : 0;
    }
    return d;
}

template <class P>
auto make_mlp() {
    return tern::sequential{tern::linear<P>(dims, 32), tern::relu{}, tern::linear<P>(32, 32), tern::relu{},
                            tern::linear<P>(32, 2)};
}

}  // namespace

TEST_CASE("the single header carries the version macros", "[single_header]") {
    STATIC_REQUIRE(TERN_VERSION_MAJOR >= 0);
    STATIC_REQUIRE(TERN_VERSION_MINOR >= 0);
    STATIC_REQUIRE(TERN_VERSION_PATCH >= 0);
    const std::string expected = std::to_string(TERN_VERSION_MAJOR) + "." + std::to_string(TERN_VERSION_MINOR) + "." +
                                 std::to_string(TERN_VERSION_PATCH);
    CHECK(std::string(tern::version_string) == expected);
}

TEMPLATE_TEST_CASE("the single header alone trains an XOR MLP", "[single_header][smoke]", tern::fp32,
                   tern::absmean_ternary) {
    tern::manual_seed(7);
    auto model = make_mlp<TestType>();
    const auto train = xor_problem(1024, 1), test = xor_problem(512, 2);
    tern::adam opt(model.parameters(), {.lr = 3e-3f});
    tern::softmax_cross_entropy loss;
    tern::data::batch_iterator batches(train, {.batch_size = 32, .seed = 3});
    std::size_t step = 0;
    for (int epoch = 0; epoch < 15; ++epoch) {
        batches.begin_epoch(std::uint64_t(epoch));
        tern::train_classifier_epoch(model, loss, opt, batches, step, {.show_progress = false});
    }
    const auto result = tern::evaluate_classifier(model, test, 2);
    INFO(TestType::name << " test accuracy " << result.accuracy);
    CHECK(result.accuracy > 0.95);
}
