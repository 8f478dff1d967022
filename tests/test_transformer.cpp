// Transformer parts: MLP blocks and decoder blocks (gradient checks), the decoder-only LM
// (causality, cached generation against full recomputation, gradients, conversion, checkpoints,
// a smoke training run).
#include <catch2/catch.hpp>
#include <cmath>
#include <filesystem>
#include <random>

#include "compile_time_loop.hpp"
#include "gradcheck.hpp"
#include "tern/checkpoint.hpp"
#include "tern/layers/transformer.hpp"
#include "tern/loss.hpp"
#include "tern/optim/adam.hpp"

namespace {

tern::tensor random_ids(std::size_t B, std::size_t T, std::size_t vocab, std::uint64_t seed) {
    std::mt19937_64 rng(seed);
    std::uniform_int_distribution<int> pick(0, int(vocab) - 1);
    tern::tensor ids(tern::shape_t{B, T});
    for (auto& v : ids) v = float(pick(rng));
    return ids;
}

tern::lm_config tiny_config() {
    return {.vocab = 11, .d_model = 16, .layers = 2, .heads = 2, .context = 12};
}

}  // namespace

TEMPLATE_TEST_CASE("mlp blocks pass the gradient check", "[mlp][grad]", tern::fp32, tern::fp32_prenorm,
                   tern::absmean_ternary) {
    tern::manual_seed(21);
    tern_test::for_each_kind<tern::mlp_kind::gelu, tern::mlp_kind::swiglu>([](auto kind) {
        INFO(tern::mlp_kind_name(kind));
        tern::mlp_block<TestType, 8, kind> mlp(6, 10);
        mlp.set_quant_strength(0.0f);
        tern_test::gradcheck(mlp, tern_test::random_tensor({2, 3, 6}, 2));
    });
}

TEST_CASE("mlp block describes and names its parameters", "[mlp]") {
    tern::mlp_block<tern::absmean_ternary, 8, tern::mlp_kind::swiglu> mlp(4, 8);
    tern::parameter_list p;
    mlp.collect_parameters(p, "m.");
    REQUIRE(p.size() == 3);
    CHECK(p[0].name == "m.gate.weight");
    CHECK(p[2].name == "m.down.weight");
    CHECK(mlp.describe() ==
          "mlp_block(swiglu,gate=linear<absmean,a8>(4->8),up=linear<absmean,a8>(4->8),down=linear<absmean,a8>(8->4))");
}

TEMPLATE_TEST_CASE("a whole decoder block passes the gradient check", "[block][grad]", tern::fp32,
                   tern::absmedian_ternary) {
    tern::manual_seed(22);
    tern_test::for_each_kind<tern::lm_design{}, tern::gpt_design, tern::llama_design,
                  tern::lm_design{.norm = tern::norm_kind::layer, .positions = tern::position_kind::rotary}>(
        [](auto design) {
            INFO(tern::describe_design(design));
            tern::decoder_block<TestType, 8, design> block({.d_model = 8, .heads = 2, .mlp_hidden = 12});
            block.set_quant_strength(0.0f);
            tern_test::gradcheck(block, tern_test::random_tensor({2, 4, 8}, 3));
        });
}

TEMPLATE_TEST_CASE("LM logits at position t do not depend on later tokens", "[lm][causal]", tern::fp32,
                   tern::absmean_ternary) {
    tern::manual_seed(23);
    tern_test::for_each_kind<tern::lm_design{}, tern::lm_design{.positions = tern::position_kind::rotary}>([](auto design) {
        const auto cfg = tiny_config();
        tern::decoder_lm<TestType, 8, design> lm(cfg);
        tern::tensor ids = random_ids(2, 10, cfg.vocab, 1);
        const tern::tensor a = lm.forward(ids);
        const std::size_t t = 5;
        for (std::size_t b = 0; b < 2; ++b)
            for (std::size_t s = t + 1; s < 10; ++s) ids(b, s) = float((int(ids(b, s)) + 3) % int(cfg.vocab));
        const tern::tensor c = lm.forward(ids);
        for (std::size_t b = 0; b < 2; ++b)
            for (std::size_t s = 0; s <= t; ++s)
                for (std::size_t v = 0; v < cfg.vocab; ++v) REQUIRE(a(b, s, v) == c(b, s, v));
        bool changed = false;
        for (std::size_t v = 0; v < cfg.vocab; ++v) changed |= a(0, 9, v) != c(0, 9, v);
        CHECK(changed);
    });
}

TEMPLATE_TEST_CASE("cached generation equals full recomputation", "[lm][cache]", tern::fp32, tern::fp16,
                   tern::absmean_ternary, tern::absmedian_ternary) {
    tern::manual_seed(24);
    tern_test::for_each_kind<tern::lm_design{}, tern::llama_design>([](auto design) {
        const auto cfg = tiny_config();
        tern::decoder_lm<TestType, 8, design> lm(cfg);
        const tern::tensor ids = random_ids(2, 12, cfg.vocab, 2);
        const tern::tensor full = lm.forward(ids);
        lm.reset_cache(2);
        std::size_t s = 0;
        double worst = 0;
        for (std::size_t n : {4, 1, 1, 2, 1, 1, 1, 1}) {
            tern::tensor part(tern::shape_t{2, n});
            for (std::size_t b = 0; b < 2; ++b)
                for (std::size_t i = 0; i < n; ++i) part(b, i) = ids(b, s + i);
            const tern::tensor y = lm.forward_cached(part);
            for (std::size_t b = 0; b < 2; ++b)
                for (std::size_t i = 0; i < n; ++i)
                    for (std::size_t v = 0; v < cfg.vocab; ++v)
                        worst = std::max(worst, double(std::fabs(y(b, i, v) - full(b, s + i, v))));
            s += n;
        }
        CHECK(s == 12);
        CHECK(lm.cached_length() == 12);
        INFO(TestType::name << " worst difference " << worst);
        // Only summation order differs; a quantizer may flip one rounding step in rare cases.
        CHECK(worst < (TestType::ternary || TestType::half_precision ? 2e-2 : 1e-4));
        REQUIRE_THROWS_WITH(lm.forward_cached(random_ids(2, 1, cfg.vocab, 3)), Catch::Contains("context"));
    });
}

TEST_CASE("greedy generation with the cache equals greedy generation by full recomputation", "[lm][cache]") {
    tern::manual_seed(25);
    auto cfg = tiny_config();
    tern::decoder_lm<tern::fp32> lm(cfg);
    const std::vector<int> prompt{1, 2, 3};
    const auto cached = lm.generate(prompt, 20, {.temperature = 0.0f});  // runs past the context of 12
    REQUIRE(cached.size() == 20);
    std::vector<int> seq = prompt;
    for (std::size_t n = 0; n < 9; ++n) {  // while everything fits the context, no window sliding
        tern::tensor ids(tern::shape_t{1, seq.size()});
        for (std::size_t i = 0; i < seq.size(); ++i) ids(0, i) = float(seq[i]);
        const tern::tensor logits = lm.forward(ids);
        const float* last = &logits(0, seq.size() - 1, 0);
        seq.push_back(int(std::max_element(last, last + cfg.vocab) - last));
        CHECK(seq.back() == cached[n]);
    }
    const auto sampled = lm.generate(prompt, 30, {.temperature = 0.8f, .top_k = 3, .seed = 5});
    for (int t : sampled) CHECK((t >= 0 && t < int(cfg.vocab)));
    CHECK(sampled == lm.generate(prompt, 30, {.temperature = 0.8f, .top_k = 3, .seed = 5}));
}

TEMPLATE_TEST_CASE("LM gradients match finite differences of the loss", "[lm][grad]", tern::fp32,
                   tern::absmean_ternary) {
    tern::manual_seed(26);
    const auto cfg = tiny_config();
    tern::decoder_lm<TestType, 8, tern::lm_design{.quantized_head = TestType::ternary}> lm(cfg);
    lm.set_quant_strength(0.0f);
    const tern::tensor ids = random_ids(2, 6, cfg.vocab, 4);
    std::vector<int> targets(12);
    for (std::size_t i = 0; i < 12; ++i) targets[i] = int(i * 7 % cfg.vocab);
    tern::softmax_cross_entropy loss;
    auto params = lm.parameters();
    lm.zero_grad();
    loss.forward(lm.forward(ids), targets);
    lm.backward(loss.backward());
    const auto eval = [&] { return double(loss.forward(lm.forward(ids), targets)); };
    for (auto& p : params) {
        const tern::tensor analytic = *p.grad;
        const std::size_t stride = std::max<std::size_t>(1, p.value->size() / 7);
        for (std::size_t i = 0; i < p.value->size(); i += stride) {
            float& w = p.value->data()[i];
            const float keep = w, h = 1e-2f;
            w = keep + h;
            const double up = eval();
            w = keep - h;
            const double down = eval();
            w = keep;
            const double numeric = (up - down) / (2.0 * h);
            INFO(p.name << "[" << i << "] analytic " << analytic.data()[i] << " numeric " << numeric);
            CHECK(std::fabs(analytic.data()[i] - numeric) < 2e-3 + 2e-2 * std::fabs(numeric));
        }
    }
}

TEST_CASE("LM converts between policies, names parameters and round-trips checkpoints", "[lm][checkpoint]") {
    tern::manual_seed(27);
    auto cfg = tiny_config();
    tern::decoder_lm<tern::fp16> fp(cfg);
    auto ternary = tern::convert<tern::absmedian_ternary>(fp);
    static_assert(std::is_same_v<decltype(ternary), tern::decoder_lm<tern::absmedian_ternary>>);
    auto a = fp.parameters(), b = ternary.parameters();
    REQUIRE(a.size() == b.size());
    for (std::size_t i = 0; i < a.size(); ++i) {
        CHECK(a[i].name == b[i].name);
        CHECK(bool(*a[i].value == *b[i].value));
    }
    CHECK(a.front().name == "tok.weight");
    CHECK(a[1].name == "pos.weight");
    CHECK(a[2].name == "blocks.0.norm1.weight");
    CHECK(a[3].name == "blocks.0.attn.q.weight");
    CHECK(a.back().name == "head.weight");
    CHECK(tern::policy_name(fp) == "fp16+fp32");
    CHECK(tern::policy_name(ternary) == "absmedian+fp32");
    // PyTorch's ByteLM of the same shape: 2 * V*D... here V=11, D=16, context 12, 2 layers
    const std::size_t D = 16, V = 11;
    CHECK(tern::count_parameters(a) == V * D + 12 * D + 2 * (2 * D + 4 * D * D + 8 * D * D) + D + V * D);

    const auto path = std::filesystem::temp_directory_path() / "tern_test_lm.safetensors";
    tern::adamw opt(ternary.parameters(), {.lr = 1e-3f});
    tern::save_checkpoint(path, ternary, &opt, {{"step", "7"}});
    tern::manual_seed(99);
    tern::decoder_lm<tern::absmedian_ternary> other(cfg);
    tern::adamw opt2(other.parameters(), {.lr = 1e-3f});
    const auto meta = tern::load_checkpoint(path, other, &opt2);
    CHECK(meta.at("step") == "7");
    const tern::tensor ids = random_ids(1, 5, V, 6);
    CHECK(bool(other.forward(ids) == ternary.forward(ids)));
    tern::decoder_lm<tern::absmean_ternary> wrong_policy(cfg);
    REQUIRE_THROWS_WITH(tern::load_checkpoint(path, wrong_policy), Catch::Contains("policy mismatch"));
    auto cfg2 = cfg;
    cfg2.layers = 1;
    tern::decoder_lm<tern::absmedian_ternary> wrong_shape(cfg2);
    REQUIRE_THROWS_WITH(tern::load_checkpoint(path, wrong_shape), Catch::Contains("different model"));
    std::filesystem::remove(path);
}

TEST_CASE("LM refuses bad ids and configurations", "[lm][errors]") {
    auto cfg = tiny_config();
    tern::decoder_lm<tern::fp32> lm(cfg);
    REQUIRE_THROWS_WITH(lm.forward(tern::tensor(tern::shape_t{1, 2}, 11.0f)), Catch::Contains("token id 11"));
    REQUIRE_THROWS_WITH(lm.forward(tern::tensor(tern::shape_t{1, 13}, 1.0f)), Catch::Contains("context"));
    REQUIRE_THROWS_WITH(lm.forward(tern::tensor(tern::shape_t{4}, 1.0f)), Catch::Contains("[batch, tokens]"));
    REQUIRE_THROWS_WITH(lm.forward_cached(tern::tensor(tern::shape_t{1, 1}, 1.0f)), Catch::Contains("reset_cache"));
    cfg.heads = 3;
    REQUIRE_THROWS_WITH(tern::decoder_lm<tern::fp32>(cfg), Catch::Contains("multiple"));
}

TEMPLATE_TEST_CASE("a tiny LM learns a repeating sequence", "[lm][smoke]", tern::fp32, tern::absmean_ternary) {
    tern::manual_seed(28);
    tern::decoder_lm<TestType> lm({.vocab = 8, .d_model = 16, .layers = 1, .heads = 2, .context = 16});
    tern::adamw opt(lm.parameters(), {.lr = 3e-3f, .weight_decay = 0.0f});
    tern::softmax_cross_entropy loss;
    const int pattern[] = {0, 3, 1, 4, 1, 5, 2, 6, 5, 3, 7};  // period 11
    std::mt19937_64 rng(1);
    float first = 0, last = 0;
    for (int step = 0; step < 100; ++step) {
        tern::tensor ids(tern::shape_t{4, 16});
        std::vector<int> targets(64);
        for (std::size_t b = 0; b < 4; ++b) {
            const std::size_t start = rng() % 11;
            for (std::size_t t = 0; t < 16; ++t) {
                ids(b, t) = float(pattern[(start + t) % 11]);
                targets[b * 16 + t] = pattern[(start + t + 1) % 11];
            }
        }
        lm.zero_grad();
        const float l = loss.forward(lm.forward(ids), targets);
        lm.backward(loss.backward());
        opt.step();
        if (step == 0) first = l;
        last = l;
    }
    INFO("loss " << first << " -> " << last);
    CHECK(last < 0.25f * first);
}
