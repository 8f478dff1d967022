// Tests of the frozen language model: packed decoder blocks with key/value caches against
// decoder_lm's forward at lambda 1 (every position), generation, packed files and malformed files.
#include <catch2/catch.hpp>

#include "freeze_support.hpp"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

#include <tern/deploy/freeze.hpp>
#include <tern/deploy/language_model.hpp>
#include <tern/deploy/packed_model.hpp>
#include <tern/io/safetensors.hpp>
#include <tern/layers/transformer.hpp>
#include <tern/random.hpp>

namespace fs = std::filesystem;

namespace {

using tern_test::argmax_rows;
using tern_test::max_row_relative_diff;
using tern_test::require_error;
using tern_test::temp_dir;

std::size_t argmax(const float* row, std::size_t n) { return std::size_t(std::max_element(row, row + n) - row); }

tern::lm_config small_config(std::size_t mlp_hidden = 0) {
    return {.vocab = 40, .d_model = 32, .layers = 2, .heads = 4, .context = 24, .mlp_hidden = mlp_hidden};
}

/// Rotary, SwiGLU, LayerNorm and a quantized head: every choice away from the default.
constexpr tern::lm_design unusual_design{.norm = tern::norm_kind::layer,
                                         .mlp = tern::mlp_kind::swiglu,
                                         .positions = tern::position_kind::rotary,
                                         .quantized_head = true};

std::vector<int> random_tokens(std::size_t n, std::size_t vocab, std::mt19937& rng) {
    std::uniform_int_distribution<int> d(0, int(vocab) - 1);
    std::vector<int> t(n);
    for (auto& v : t) v = d(rng);
    return t;
}

template <class P, tern::lm_design Design>
void check_lm(std::size_t mlp_hidden = 0) {
    INFO(tern::describe_design(Design));
    tern::manual_seed(31 + int(Design.positions) + 2 * int(Design.quantized_head));
    std::mt19937 rng(7 + unsigned(Design.positions) + 2 * unsigned(Design.quantized_head));
    const tern::lm_config cfg = small_config(mlp_hidden);
    tern::decoder_lm<P, 8, Design> lm(cfg);
    // The frozen model is decoder_lm itself in the frozen policy (compile time), and the run-time
    // model wraps it.
    auto frozen_static = tern::freeze(lm);
    static_assert(std::is_same_v<decltype(frozen_static), tern::decoder_lm<tern::frozen<P>, 8, Design>>);
    tern::inference_model frozen = tern::freeze(lm);
    REQUIRE(tern::is_language_model(frozen));
    CHECK(frozen.size() == 1);
    CHECK(frozen.layer(0).config()["quantized_head"] == Design.quantized_head);
    CHECK(frozen.packed_weights() ==
          (P::ternary ? cfg.layers * (4 * cfg.d_model * cfg.d_model +
                                      (Design.mlp == tern::mlp_kind::swiglu ? 3 : 2) * cfg.d_model *
                                          (cfg.mlp_hidden ? cfg.mlp_hidden : 4 * cfg.d_model)) +
                            (Design.quantized_head ? cfg.d_model * cfg.vocab : 0)
                      : 0));

    // Whole sequences (batch 2): the same logits as the training forward.
    const std::size_t T = 20, V = cfg.vocab;
    const auto seq = random_tokens(2 * T, V, rng);
    tern::tensor ids(tern::shape_t{2, T});
    for (std::size_t i = 0; i < seq.size(); ++i) ids.data()[i] = float(seq[i]);
    const tern::tensor ref = lm.forward(ids);
    const tern::tensor whole = frozen.forward(ids);
    REQUIRE(whole.shape() == ref.shape());
    CHECK(max_row_relative_diff(whole.data(), ref.data(), 2 * T, V) < 2e-3);

    // Cached: a 5-token prompt, then one token per call; every position's logits match.
    frozen.begin_sequence(2, cfg.context);
    std::size_t same_argmax = 0;
    for (std::size_t p = 0; p < T;) {
        const std::size_t t = p == 0 ? 5 : 1;
        tern::tensor step(tern::shape_t{2, t});
        for (std::size_t b = 0; b < 2; ++b)
            for (std::size_t i = 0; i < t; ++i) step.data()[b * t + i] = float(seq[b * T + p + i]);
        const tern::tensor& y = frozen.run(step);
        for (std::size_t b = 0; b < 2; ++b)
            for (std::size_t i = 0; i < t; ++i) {
                const float* got = y.data() + (b * t + i) * V;
                const float* want = ref.data() + (b * T + p + i) * V;
                INFO("sequence " << b << ", position " << p + i);
                CHECK(max_row_relative_diff(got, want, 1, V) < 2e-3);
                same_argmax += argmax(got, V) == argmax(want, V);
            }
        p += t;
    }
    frozen.end_sequence();
    CHECK(same_argmax == 2 * T);

    // Greedy generation past the context (re-prefill): the same tokens as decoder_lm::generate.
    const auto prompt = random_tokens(6, V, rng);
    const tern::sample_options greedy{.temperature = 0.0f, .top_k = 0, .seed = 1};
    // (A ternary head gives integer-valued dot products, so exact ties between two tokens are common
    // and float rounding breaks them either way: compared with the fp head only.)
    if (!Design.quantized_head) CHECK(tern::generate_tokens(frozen, prompt, 30, greedy) == lm.generate(prompt, 30, greedy));
    // Sampling is reproducible from the seed (a float-rounding difference in the logits may pick
    // another token than the training model near a boundary of the distribution, so not compared).
    const tern::sample_options sampled{.temperature = 0.7f, .top_k = 5, .seed = 9};
    const auto s1 = tern::generate_tokens(frozen, prompt, 12, sampled);
    CHECK(s1.size() == 12);
    CHECK(tern::generate_tokens(frozen, prompt, 12, sampled) == s1);
    // The compile-time frozen model runs the same loop.
    if (!Design.quantized_head) CHECK(frozen_static.generate(prompt, 30, greedy) == lm.generate(prompt, 30, greedy));

    // Packed file round trip: identical logits.
    temp_dir dir("tern_test_freeze_lm_");
    const fs::path file = dir.path / "lm.tern";
    tern::save_packed_model(file, frozen, {.test_inputs = std::nullopt, .metadata = {{"tokenizer", "bytes"}}});
    tern::inference_model loaded = tern::load_packed_model(file);
    CHECK(loaded.describe() == frozen.describe());
    CHECK(loaded.model_bytes() == frozen.model_bytes());
    const tern::tensor again = loaded.forward(ids);
    CHECK(std::equal(again.begin(), again.end(), whole.begin()));
    CHECK(tern::generate_tokens(loaded, prompt, 10) == tern::generate_tokens(frozen, prompt, 10));
}

}  // namespace

TEMPLATE_TEST_CASE("frozen LM equals decoder_lm at every position and generates the same tokens", "[freeze][lm]",
                   tern::absmean_ternary, tern::absmedian_ternary) {
    check_lm<TestType, tern::lm_design{}>();
    check_lm<TestType, unusual_design>(48);  // freezing registers the design: its file loads
    check_lm<TestType, tern::llama_design>();
}

TEST_CASE("fp32 LM freezes to full-precision projections", "[freeze][lm]") {
    check_lm<tern::fp32, tern::lm_design{}>();
}

TEST_CASE("malformed LM packed files raise tern::error", "[freeze][lm]") {
    tern::manual_seed(41);
    tern::decoder_lm<tern::absmean_ternary> lm(small_config());
    tern::inference_model frozen = tern::freeze(lm);
    const tern::io::safetensors_data good = tern::packed_model_data(frozen);
    const std::string where = "packed model 'x'";
    CHECK_NOTHROW(tern::parse_packed_model(good, where));
    const auto with_arch = [&](auto&& edit) {
        tern::io::safetensors_data d = good;
        nlohmann::json a = nlohmann::json::parse(d.metadata.at("tern.architecture"));
        edit(a);
        d.metadata["tern.architecture"] = a.dump();
        return d;
    };
    SECTION("heads that do not divide d_model") {
        const auto d = with_arch([](nlohmann::json& a) { a["layers"][0]["heads"] = 5; });
        require_error([&] { tern::parse_packed_model(d, where); }, {"layer 0 (decoder_lm)", "multiple of heads"});
    }
    SECTION("an unknown mlp kind") {
        const auto d = with_arch([](nlohmann::json& a) { a["layers"][0]["mlp"] = "relu2"; });
        require_error([&] { tern::parse_packed_model(d, where); }, {"layer 0", "field 'mlp'", "relu2"});
    }
    SECTION("a design this program has not registered") {
        const auto d = with_arch([](nlohmann::json& a) { a["layers"][0]["norm"] = "layer_norm"; });
        require_error([&] { tern::parse_packed_model(d, where); },
                      {"layer 0", "cannot load a decoder_lm with layer_norm, gelu, learned positions, fp32 head",
                       "tern::register_lm_design"});
    }
    SECTION("swiglu without a gate") {
        tern::register_lm_design<tern::lm_design{.mlp = tern::mlp_kind::swiglu}>();
        const auto d = with_arch([](nlohmann::json& a) { a["layers"][0]["mlp"] = "swiglu"; });
        require_error([&] { tern::parse_packed_model(d, where); }, {"layer 0", "missing tensor '0.blocks.0.mlp.gate."});
    }
    SECTION("a norm eps this tern does not use") {
        const auto d = with_arch([](nlohmann::json& a) { a["layers"][0]["norm_eps"] = 1e-6; });
        require_error([&] { tern::parse_packed_model(d, where); }, {"layer 0", "field 'norm_eps'"});
    }
    SECTION("embedding width that does not chain") {
        const auto d = with_arch([](nlohmann::json& a) { a["layers"][0]["d_model"] = 16; });
        require_error([&] { tern::parse_packed_model(d, where); }, {"layer 0", "tok.weight"});
    }
    SECTION("missing packed projection") {
        tern::io::safetensors_data d = good;
        REQUIRE(d.tensors.erase("0.blocks.1.attn.v.packed_cols") + d.tensors.erase("0.blocks.1.attn.v.packed") > 0);
        require_error([&] { tern::parse_packed_model(d, where); }, {"missing tensor '0.blocks.1.attn.v."});
    }
    SECTION("extra tensor") {
        tern::io::safetensors_data d = good;
        d.put("0.extra", tern::tensor(tern::shape_t{2}, 1.0f));
        require_error([&] { tern::parse_packed_model(d, where); }, {"0.extra", "belongs to no layer"});
    }
    SECTION("generation from a classifier is refused") {
        tern::inference_model empty;
        require_error([&] { tern::generate_tokens(empty, {1, 2}, 3); }, {"not a language model"});
    }
}
