// Optimizers and schedules: update rules against hand computations, decoupled decay off for
// biases, clipping, state save/load/rebind/reset.
#include <catch2/catch.hpp>
#include <cmath>
#include <filesystem>
#include <optional>
#include <random>
#include <vector>

#include "tern/tern.hpp"

namespace {
struct one_param {
    tern::tensor w = tern::tensor({2.0f, -1.0f});
    tern::tensor g = tern::tensor({0.5f, 0.25f});
    tern::tensor b = tern::tensor({1.0f});
    tern::tensor bg = tern::tensor({0.5f});
    tern::parameter_list list() { return {{"w", &w, &g, true}, {"b", &b, &bg, false}}; }
};
}  // namespace

TEST_CASE("Adam's first steps follow the bias-corrected rule", "[optim]") {
    one_param p;
    tern::adam opt(p.list(), {.lr = 0.1f});
    opt.step();
    // Step 1: m^ = g, v^ = g^2, so w -= lr * g / (|g| + eps) = lr * sign(g).
    CHECK(p.w(0) == Approx(1.9f).epsilon(1e-5));
    CHECK(p.w(1) == Approx(-1.1f).epsilon(1e-5));
    opt.step();
    // Step 2 with the same gradient: still lr * sign(g).
    CHECK(p.w(0) == Approx(1.8f).epsilon(1e-5));
    CHECK(opt.steps() == 2);
}

TEST_CASE("AdamW decays weights but not biases; Adam's L2 goes through the moments", "[optim]") {
    one_param p;
    p.g.fill(0.0f);
    p.bg.fill(0.0f);
    tern::adamw opt(p.list(), {.lr = 0.1f, .weight_decay = 0.5f});
    opt.step();
    CHECK(p.w(0) == Approx(2.0f * (1 - 0.05f)));
    CHECK(p.b(0) == 1.0f);
    one_param q;
    q.g.fill(0.0f);
    tern::adam l2(q.list(), {.lr = 0.1f, .weight_decay = 0.5f});
    l2.step();
    CHECK(q.w(0) == Approx(1.9f).epsilon(1e-5));  // gradient 0.5*w > 0: one lr-sized step
}

TEST_CASE("SGD with momentum", "[optim]") {
    one_param p;
    tern::sgd opt(p.list(), {.lr = 0.1f, .momentum = 0.9f});
    opt.step();
    CHECK(p.w(0) == Approx(2.0f - 0.05f));
    opt.step();
    CHECK(p.w(0) == Approx(2.0f - 0.05f - 0.1f * (0.9f * 0.5f + 0.5f)));
    REQUIRE_THROWS_AS(tern::sgd(p.list(), {.momentum = 1.5f}), tern::error);
}

TEST_CASE("gradient clipping by global norm", "[optim]") {
    one_param p;  // norm of (0.5, 0.25, 0.5) = 0.75
    CHECK(tern::clip_grad_norm(p.list(), 10.0f) == Approx(0.75f));
    CHECK(p.g(0) == 0.5f);
    tern::clip_grad_norm(p.list(), 0.375f);
    CHECK(p.g(0) == Approx(0.25f).epsilon(1e-4));
    p.g(1) = std::nanf("");
    REQUIRE_THROWS_AS(tern::clip_grad_norm(p.list(), 1.0f), tern::error);
}

TEST_CASE("learning-rate schedules", "[optim][schedule]") {
    tern::warmup_cosine s(1.0f, 10, 110, 0.1f);
    CHECK(s(0) == Approx(0.1f));
    CHECK(s(9) == Approx(1.0f));
    CHECK(s(10) == Approx(1.0f));
    CHECK(s(60) == Approx(0.55f));
    CHECK(s(110) == Approx(0.1f));
    tern::step_decay d(1.0f, 5, 0.5f);
    CHECK(d(4) == 1.0f);
    CHECK(d(5) == 0.5f);
    CHECK(d(10) == 0.25f);
    CHECK(tern::constant_lr{0.3f}(1000) == 0.3f);
    REQUIRE_THROWS_AS(tern::warmup_cosine(1.0f, 20, 10), tern::error);
}

TEST_CASE("optimizer state saves, loads, rebinds and resets", "[optim][state]") {
    one_param p;
    tern::adam opt(p.list(), {.lr = 0.01f});
    opt.step();
    opt.step();
    tern::io::safetensors_data saved;
    opt.save_state(saved);
    one_param q;
    tern::adam restored(q.list(), {.lr = 0.01f});
    restored.load_state(saved);
    CHECK(restored.steps() == 2);
    p.g.fill(0.1f);
    q.w = p.w;
    q.g.fill(0.1f);
    q.b = p.b;
    opt.step();
    restored.step();
    CHECK(q.w(0) == p.w(0));  // identical moments -> identical update
    // Rebinding keeps the moments; a different shape is refused.
    one_param r;
    restored.rebind(r.list());
    CHECK(restored.steps() == 3);
    tern::tensor other = tern::tensor({1.0f, 2.0f, 3.0f}), other_g = other;
    REQUIRE_THROWS_WITH(restored.rebind({{"w", &other, &other_g, true}, {"b", &r.b, &r.bg, false}}),
                        Catch::Contains("[2]") && Catch::Contains("[3]"));
    restored.reset_state();
    CHECK(restored.steps() == 0);
    // State of another optimizer kind is refused.
    tern::sgd plain(p.list());
    REQUIRE_THROWS_WITH(plain.load_state(saved), Catch::Contains("'sgd'") && Catch::Contains("'adam'"));
}

TEST_CASE("the Adam update gives the same bits on every SIMD path", "[optim][simd]") {
    using tern::kernels::detail::gemm_path;
    std::mt19937 rng(9);
    std::normal_distribution<float> d(0.0f, 1.0f);
    const std::size_t n = 1000 + 13;  // not a multiple of any vector width
    std::vector<float> w0(n), g(n), m0(n), v0(n);
    for (std::size_t i = 0; i < n; ++i) {
        w0[i] = d(rng);
        g[i] = 1e-3f * d(rng);
        m0[i] = 1e-3f * d(rng);
        v0[i] = 1e-6f * std::abs(d(rng));
    }
    v0[5] = 0.0f;  // sqrt(0) and a zero gradient
    g[5] = 0.0f;
    for (const bool decoupled : {false, true}) {
        const tern::kernels::adam_coefficients c{0.9f, 0.999f, 1e-8f, 3e-3f, 1.0f / std::sqrt(0.002f),
                                                 decoupled ? 1.0f - 3e-3f * 0.01f : 1.0f, decoupled ? 0.0f : 0.01f};
        auto w_ref = w0, m_ref = m0, v_ref = v0;
        tern::kernels::adam_update(w_ref.data(), g.data(), m_ref.data(), v_ref.data(), n, c, gemm_path::scalar);
        // The scalar path follows the formula of kernels/adam_update.hpp.
        const float gk = g[7] + c.l2 * w0[7];
        const float mk = c.b1 * m0[7] + (1.0f - c.b1) * gk, vk = c.b2 * v0[7] + (1.0f - c.b2) * gk * gk;
        CHECK(m_ref[7] == Approx(mk).epsilon(1e-6));
        CHECK(v_ref[7] == Approx(vk).epsilon(1e-6));
        CHECK(w_ref[7] ==
              Approx(w0[7] * c.shrink - c.step_size * mk / (std::sqrt(vk) * c.inv_sqrt_bc2 + c.eps)).epsilon(1e-6));
        for (gemm_path p : {gemm_path::avx2, gemm_path::avx512}) {
            if (!tern::kernels::detail::gemm_path_supported(p)) continue;
            INFO("path " << tern::kernels::detail::gemm_path_name(p) << ", decoupled " << decoupled);
            auto w = w0, m = m0, v = v0;
            tern::kernels::adam_update(w.data(), g.data(), m.data(), v.data(), n, c, p);
            CHECK(w == w_ref);
            CHECK(m == m_ref);
            CHECK(v == v_ref);
        }
    }
}

TEST_CASE("a copied optimizer outlives its original; a moved model trains on after rebind", "[optim][state]") {
    tern::manual_seed(4);
    auto make = [] { return tern::sequential{tern::linear<tern::absmean_ternary>(6, 5), tern::relu{},
                                             tern::linear<tern::fp32>(5, 3)}; };
    const tern::tensor x = tern::tensor(tern::shape_t{4, 6}, 0.5f);
    const std::vector<int> labels = {0, 1, 2, 1};
    tern::softmax_cross_entropy loss;
    auto step = [&](auto& model, auto& opt) {
        opt.zero_grad();
        loss.forward(model.forward(x), labels);
        model.backward(loss.backward());
        opt.step();
    };
    // Reference: one model, one optimizer, 6 steps.
    auto ref = make();
    auto start = ref;  // the same initial weights for the second run
    tern::adamw ref_opt(ref.parameters(), {.lr = 1e-2f});
    for (int i = 0; i < 6; ++i) step(ref, ref_opt);

    // The same run, but the optimizer is copied after 2 steps and the original destroyed; the model
    // is then moved and the copy rebound to it (its names, shapes and moments are its own).
    auto model = start;
    std::optional<tern::adamw> original(std::in_place, model.parameters(), tern::adam_options{.lr = 1e-2f});
    for (int i = 0; i < 2; ++i) step(model, *original);
    tern::adamw copy = *original;
    original.reset();
    auto moved = std::move(model);
    copy.rebind(moved.parameters());
    for (int i = 0; i < 4; ++i) step(moved, copy);
    CHECK(copy.steps() == 6);
    const auto a = ref.parameters(), b = moved.parameters();
    REQUIRE(a.size() == b.size());
    for (std::size_t i = 0; i < a.size(); ++i) {
        INFO(a[i].name);
        CHECK(std::equal(a[i].value->begin(), a[i].value->end(), b[i].value->begin()));
    }
}
