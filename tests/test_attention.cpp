// causal_self_attention: gradient checks (causal mask, rotary, every policy family), causality,
// and cached incremental decoding against full recomputation.
#include <catch2/catch.hpp>
#include <cmath>

#include "compile_time_loop.hpp"
#include "gradcheck.hpp"
#include "tern/layers/attention.hpp"
#include "tern/layers/mlp_block.hpp"

namespace {

float max_abs_diff(const float* a, const float* b, std::size_t n) {
    float m = 0;
    for (std::size_t i = 0; i < n; ++i) m = std::max(m, std::fabs(a[i] - b[i]));
    return m;
}

}  // namespace

TEST_CASE("fast_exp matches std::exp to a few ulp", "[attention][math]") {
    for (float x = -80.0f; x < 80.0f; x += 0.0137f) {
        const double want = std::exp(double(x));
        CHECK(std::fabs(tern::detail::fast_exp(x) - want) <= 4e-7 * want);
    }
    CHECK(tern::detail::fast_exp(-1000.0f) < 1e-37f);
    CHECK(tern::detail::fast_exp(0.0f) == 1.0f);
}

TEST_CASE("gelu with derivative matches the erf form", "[attention][math]") {
    for (float x = -9.0f; x < 9.0f; x += 0.01f) {
        float v = 0, d = 0;
        tern::detail::gelu_with_derivative(x, v, d);
        const double cdf = 0.5 * (1.0 + std::erf(double(x) / std::sqrt(2.0)));
        CHECK(std::fabs(v - x * cdf) < 2e-6);
        const double pdf = std::exp(-0.5 * double(x) * x) / std::sqrt(2.0 * 3.14159265358979);
        CHECK(std::fabs(d - (cdf + x * pdf)) < 2e-6);
    }
}

TEST_CASE("vectorized gelu, swiglu and softmax kernels match the scalar formulas", "[attention][math]") {
    const std::size_t n = 1003;  // not a multiple of 8: the tails run too
    std::vector<float> x(n), u(n), y(n), d(n), s(n), a(n);
    for (std::size_t i = 0; i < n; ++i) {
        x[i] = -12.0f + 24.0f * float(i) / float(n);
        u[i] = 0.5f - float(i % 7) * 0.1f;
    }
    tern::detail::gelu_forward(x.data(), y.data(), d.data(), n);
    for (std::size_t i = 0; i < n; ++i) {
        float v = 0, dv = 0;
        tern::detail::gelu_with_derivative(x[i], v, dv);
        CHECK(std::fabs(y[i] - v) < 1e-6f * (1.0f + std::fabs(v)));
        CHECK(std::fabs(d[i] - dv) < 1e-6f * (1.0f + std::fabs(dv)));
    }
    tern::detail::swiglu_forward(x.data(), u.data(), s.data(), d.data(), a.data(), n);
    for (std::size_t i = 0; i < n; ++i) {
        const double sig = 1.0 / (1.0 + std::exp(-double(x[i])));
        CHECK(std::fabs(s[i] - x[i] * sig) < 1e-5 * (1.0 + std::fabs(x[i])));
        CHECK(std::fabs(d[i] - sig * (1.0 + x[i] * (1.0 - sig))) < 1e-5);
        CHECK(std::fabs(a[i] - x[i] * sig * u[i]) < 1e-5 * (1.0 + std::fabs(x[i])));
    }
    std::vector<float> row = x;
    const float sum = tern::detail::exp_shifted(row.data(), n, 3.0f);
    double want = 0;
    for (std::size_t i = 0; i < n; ++i) {
        const double e = std::exp(double(x[i]) - 3.0);
        want += e;
        CHECK(std::fabs(row[i] - e) <= 1e-6 * e);
    }
    CHECK(std::fabs(sum - want) <= 1e-5 * want);
}

// fp16 rounds in steps of 2^-11: finite differences cannot see through it (its STE equals fp32s).
TEMPLATE_TEST_CASE("attention gradient check with the causal mask", "[attention][grad]", tern::fp32, tern::fp32_prenorm,
                   tern::absmean_ternary, tern::absmedian_ternary) {
    tern::manual_seed(11);
    tern_test::for_each_kind<tern::position_kind::learned, tern::position_kind::rotary>([](auto positions) {
        INFO("rotary " << (positions == tern::position_kind::rotary));
        tern::causal_self_attention<TestType, 8, positions> attn(8, 2);
        attn.set_quant_strength(0.0f);  // rounding is not differentiable; lambda 0 checks the rest
        tern_test::gradcheck(attn, tern_test::random_tensor({2, 5, 8}, 3));
    });
}

TEST_CASE("attention output at position t ignores later tokens", "[attention][causal]") {
    tern::manual_seed(12);
    tern::causal_self_attention<tern::absmean_ternary, 8, tern::position_kind::rotary> attn(16, 4);
    tern::tensor x = tern_test::random_tensor({2, 9, 16}, 4);
    const tern::tensor y0 = attn.forward(x);
    const std::size_t t = 4;
    for (std::size_t b = 0; b < 2; ++b)
        for (std::size_t s = t + 1; s < 9; ++s)
            for (std::size_t k = 0; k < 16; ++k) x(b, s, k) += 0.5f * float(k % 5);  // not a constant: BitLinear removes the mean
    const tern::tensor y1 = attn.forward(x);
    for (std::size_t b = 0; b < 2; ++b)
        for (std::size_t s = 0; s <= t; ++s)
            for (std::size_t k = 0; k < 16; ++k) REQUIRE(y0(b, s, k) == y1(b, s, k));
    bool later_changed = false;
    for (std::size_t k = 0; k < 16; ++k) later_changed |= y0(0, t + 1, k) != y1(0, t + 1, k);
    CHECK(later_changed);
}

TEMPLATE_TEST_CASE("cached attention equals full recomputation", "[attention][cache]", tern::fp32,
                   tern::absmedian_ternary) {
    tern::manual_seed(13);
    tern_test::for_each_kind<tern::position_kind::learned, tern::position_kind::rotary>([](auto positions) {
        tern::causal_self_attention<TestType, 8, positions> attn(16, 2);
        const tern::tensor x = tern_test::random_tensor({2, 7, 16}, 5);
        const tern::tensor full = attn.forward(x);
        tern::kv_cache cache;
        cache.reset(2, 8, 16);
        // a prefix of 3 tokens, then one token at a time
        std::vector<std::pair<std::size_t, std::size_t>> steps{{0, 3}, {3, 1}, {4, 1}, {5, 1}, {6, 1}};
        for (auto [s, n] : steps) {
            tern::tensor part(tern::shape_t{2, n, 16});
            for (std::size_t b = 0; b < 2; ++b)
                for (std::size_t i = 0; i < n; ++i)
                    for (std::size_t k = 0; k < 16; ++k) part(b, i, k) = x(b, s + i, k);
            const tern::tensor y = attn.forward_cached(part, cache);
            for (std::size_t b = 0; b < 2; ++b)
                for (std::size_t i = 0; i < n; ++i)
                    CHECK(max_abs_diff(&y(b, i, 0), &full(b, s + i, 0), 16) < 1e-4f);
        }
        CHECK(cache.length == 7);
        tern::tensor two(tern::shape_t{2, 2, 16}, 0.0f);
        REQUIRE_THROWS_WITH(attn.forward_cached(two, cache), Catch::Contains("do not fit"));
    });
}

TEST_CASE("attention refuses bad shapes with clear messages", "[attention][errors]") {
    REQUIRE_THROWS_WITH((tern::causal_self_attention<tern::fp32>(10, 4)), Catch::Contains("multiple"));
    tern::causal_self_attention<tern::fp32> attn(8, 2);
    REQUIRE_THROWS_WITH(attn.forward(tern::zeros({3, 8})), Catch::Contains("[3, 8]"));
    CHECK(attn.describe() ==
          "causal_self_attention(8,heads=2,q=linear<fp32>(8->8),k=linear<fp32>(8->8),v=linear<fp32>(8->8),"
          "o=linear<fp32>(8->8))");
}

TEST_CASE("attention converts between policies exactly", "[attention][convert]") {
    tern::manual_seed(14);
    tern::causal_self_attention<tern::fp16> a(8, 2);
    tern::causal_self_attention<tern::absmean_ternary> b(a);
    tern::parameter_list pa, pb;
    a.collect_parameters(pa, "");
    b.collect_parameters(pb, "");
    REQUIRE(pa.size() == 4);
    REQUIRE(pb.size() == 4);
    for (std::size_t i = 0; i < 4; ++i) {
        CHECK(pa[i].name == pb[i].name);
        CHECK(bool(*pa[i].value == *pb[i].value));
    }
}
