// Quantizer properties (../shared/spec/bitlinear.md steps 1-4).
#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <numeric>
#include <random>
#include <set>
#include <vector>

#include "tern/quantize.hpp"

namespace {
std::vector<float> random_values(std::size_t n, std::uint64_t seed, float scale = 1.0f) {
    std::mt19937_64 rng(seed);
    std::normal_distribution<float> dist(0.0f, scale);
    std::vector<float> v(n);
    for (auto& x : v) x = dist(rng);
    return v;
}
}  // namespace

TEST_CASE("round_half_even ties go to the even neighbour", "[quantize]") {
    using tern::detail::round_half_even;
    CHECK(round_half_even(0.5f) == 0.0f);
    CHECK(round_half_even(1.5f) == 2.0f);
    CHECK(round_half_even(2.5f) == 2.0f);
    CHECK(round_half_even(-0.5f) == 0.0f);
    CHECK(round_half_even(-1.5f) == -2.0f);
    CHECK(round_half_even(-2.5f) == -2.0f);
    CHECK(round_half_even(126.5f) == 126.0f);
    CHECK(round_half_even(0.49999997f) == 0.0f);
    CHECK(round_half_even(1.2f) == 1.0f);
    CHECK(round_half_even(-1.7f) == -2.0f);
    // Agrees with std::nearbyint (default rounding mode) across the activation range.
    for (int i = -40000; i <= 40000; ++i) {
        const float v = float(i) * 0.00625f;
        REQUIRE(round_half_even(v) == std::nearbyint(v));
        REQUIRE(tern::detail::round_half_even_fast(v) == std::nearbyint(v));
    }
}

TEMPLATE_TEST_CASE("ternary weights are in {-1, 0, 1} with the policy's scale", "[quantize]", tern::absmean_ternary,
                   tern::absmedian_ternary) {
    for (std::size_t n : {1u, 2u, 7u, 128u, 1001u, 65536u}) {
        auto w = random_values(n, n, 0.05f);
        std::vector<float> w_hat(n);
        std::vector<std::int8_t> codes(n);
        const float s = tern::ternarize_weights<TestType>(w.data(), n, 1.0f, w_hat.data(), codes.data());
        std::vector<float> a(n);
        std::transform(w.begin(), w.end(), a.begin(), [](float x) { return std::fabs(x); });
        float m;
        if constexpr (std::is_same_v<TestType, tern::absmean_ternary>) {
            m = float(std::accumulate(a.begin(), a.end(), 0.0) / double(n));
            CHECK(1.0f / s == Approx(m).epsilon(1e-5));
        } else {
            std::sort(a.begin(), a.end());
            m = a[(n - 1) / 2];  // lower median: for even n the smaller middle value
            CHECK(1.0f / s == Approx(m).epsilon(1e-6));
        }
        const float inv_scale = std::max(tern::weight_scale_value<TestType>(w.data(), n), tern::quant_eps);
        for (std::size_t i = 0; i < n; ++i) {
            REQUIRE((codes[i] == -1 || codes[i] == 0 || codes[i] == 1));
            const float expected = std::clamp(std::nearbyint(w[i] * s), -1.0f, 1.0f);
            REQUIRE(float(codes[i]) == expected);
            REQUIRE(w_hat[i] == float(codes[i]) * inv_scale);
        }
    }
}

TEST_CASE("lower median of |W| for odd and even counts", "[quantize]") {
    const std::vector<float> odd = {-3.0f, 1.0f, 2.0f};  // |W| = 1, 2, 3 -> 2
    CHECK(tern::weight_scale_value<tern::absmedian_ternary>(odd.data(), odd.size()) == 2.0f);
    const std::vector<float> even = {4.0f, -1.0f, 3.0f, -2.0f};  // 1, 2, 3, 4 -> lower middle 2
    CHECK(tern::weight_scale_value<tern::absmedian_ternary>(even.data(), even.size()) == 2.0f);
    const std::vector<float> ties = {0.5f, -0.5f, 0.5f, 0.25f};
    CHECK(tern::weight_scale_value<tern::absmedian_ternary>(ties.data(), ties.size()) == 0.5f);
    const std::vector<float> one = {-7.0f};
    CHECK(tern::weight_scale_value<tern::absmedian_ternary>(one.data(), one.size()) == 7.0f);
    // Values spread over many exponents and sharing a histogram bucket.
    for (std::uint64_t seed = 0; seed < 20; ++seed) {
        std::mt19937_64 rng(seed);
        std::vector<float> w(1 + seed * 37);
        std::uniform_real_distribution<float> u(-1.0f, 1.0f);
        for (auto& x : w) x = u(rng) * std::pow(10.0f, float(int(rng() % 7) - 3));
        if (seed % 2) std::fill(w.begin(), w.begin() + long(w.size() / 2), 0.125f);
        std::vector<float> a(w.size());
        std::transform(w.begin(), w.end(), a.begin(), [](float x) { return std::fabs(x); });
        std::sort(a.begin(), a.end());
        REQUIRE(tern::weight_scale_value<tern::absmedian_ternary>(w.data(), w.size()) == a[(w.size() - 1) / 2]);
    }
    // Both histogram levels shared: values a few ulps apart (bits below the second level decide),
    // and a large trained-like normal layer.
    const auto check_against_sort = [](std::vector<float> w) {
        std::vector<float> a(w.size());
        std::transform(w.begin(), w.end(), a.begin(), [](float x) { return std::fabs(x); });
        std::sort(a.begin(), a.end());
        CHECK(tern::weight_scale_value<tern::absmedian_ternary>(w.data(), w.size()) == a[(w.size() - 1) / 2]);
    };
    std::vector<float> close(2001);
    for (std::size_t i = 0; i < close.size(); ++i)
        close[i] = (i % 2 ? -1.0f : 1.0f) * std::nextafter(1.0f + float((i * 7919) % 1000) * 0x1p-23f, 2.0f);
    check_against_sort(close);
    std::mt19937 rng(3);
    std::normal_distribution<float> normal(0.0f, 0.02f);
    std::vector<float> layer(784 * 256);
    for (auto& x : layer) x = normal(rng);
    check_against_sort(layer);
}

TEST_CASE("an all-zero weight uses eps and yields zeros", "[quantize]") {
    std::vector<float> w(10, 0.0f), w_hat(10, 1.0f);
    std::vector<std::int8_t> codes(10, 5);
    const float s = tern::ternarize_weights<tern::absmean_ternary>(w.data(), 10, 1.0f, w_hat.data(), codes.data());
    CHECK(s == Approx(1.0f / tern::quant_eps));
    for (int i = 0; i < 10; ++i) CHECK((codes[i] == 0 && w_hat[i] == 0.0f));
}

TEST_CASE("activation quantization stays in the per-token range", "[quantize]") {
    const std::size_t T = 9, K = 33;
    for (int bits : {2, 4, 8, 16}) {
        auto x = random_values(T * K, bits, 3.0f);
        std::vector<float> out(T * K), scale(T);
        tern::quantize_activations(x.data(), T, K, bits, 1.0f, out.data(), scale.data());
        const float qp = float((1 << (bits - 1)) - 1);
        for (std::size_t t = 0; t < T; ++t) {
            float amax = 0;
            for (std::size_t k = 0; k < K; ++k) amax = std::max(amax, std::fabs(x[t * K + k]));
            REQUIRE(scale[t] == Approx(qp / amax).epsilon(1e-6));
            bool hit_max = false;
            for (std::size_t k = 0; k < K; ++k) {
                const float q = out[t * K + k] * scale[t];
                REQUIRE(std::fabs(q - std::nearbyint(q)) < 1e-3f + 1e-6f * qp);  // an integer level
                REQUIRE(std::fabs(q) <= qp * (1 + 1e-6f) + 1e-3f);
                REQUIRE(q == Approx(std::nearbyint(x[t * K + k] * scale[t])).margin(1e-3).epsilon(1e-6));
                hit_max |= std::fabs(std::fabs(q) - qp) < 1e-3f + 1e-6f * qp;
            }
            REQUIRE(hit_max);  // the absmax element maps to +-Qp
        }
    }
}

TEST_CASE("lambda = 0 is the identity and lambda = 1 the full quantizer", "[quantize]") {
    const std::size_t T = 4, K = 16, n = 64;
    auto x = random_values(T * K, 3);
    std::vector<float> out0(T * K), out1(T * K), half(T * K);
    tern::quantize_activations(x.data(), T, K, 8, 0.0f, out0.data(), nullptr);
    tern::quantize_activations(x.data(), T, K, 8, 1.0f, out1.data(), nullptr);
    tern::quantize_activations(x.data(), T, K, 8, 0.5f, half.data(), nullptr);
    for (std::size_t i = 0; i < T * K; ++i) {
        REQUIRE(out0[i] == x[i]);
        REQUIRE(half[i] == Approx(0.5f * (x[i] + out1[i])).margin(1e-6));
    }
    auto w = random_values(n, 4, 0.1f);
    std::vector<float> w0(n), w1(n);
    tern::ternarize_weights<tern::absmedian_ternary>(w.data(), n, 0.0f, w0.data());
    tern::ternarize_weights<tern::absmedian_ternary>(w.data(), n, 1.0f, w1.data());
    std::set<float> levels(w1.begin(), w1.end());
    CHECK(levels.size() <= 3);
    for (std::size_t i = 0; i < n; ++i) REQUIRE(w0[i] == w[i]);
}

TEST_CASE("token normalization has zero mean and unit variance per token", "[quantize]") {
    const std::size_t T = 5, K = 40;
    auto x = random_values(T * K, 11, 4.0f);
    for (std::size_t i = 0; i < T * K; ++i) x[i] += float(i / K);  // a different offset per token
    std::vector<float> xn(T * K), rstd(T);
    tern::normalize_tokens(x.data(), T, K, xn.data(), rstd.data());
    for (std::size_t t = 0; t < T; ++t) {
        double s = 0, s2 = 0;
        for (std::size_t k = 0; k < K; ++k) s += xn[t * K + k];
        for (std::size_t k = 0; k < K; ++k) s2 += double(xn[t * K + k]) * xn[t * K + k];
        CHECK(s / K == Approx(0.0).margin(1e-5));
        CHECK(s2 / K == Approx(1.0).epsilon(1e-4));
    }
}
