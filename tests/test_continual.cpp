// Continual QAT: the phase-in schedule, the learning-rate re-warm, exact conversion with kept or reset
// optimizer state, and resuming across the switch giving the same losses as an uninterrupted run.
#include <catch2/catch.hpp>
#include <cmath>
#include <filesystem>
#include <optional>

#include "gradcheck.hpp"
#include "tern/tern.hpp"

namespace {

template <class P>
auto make_model() {
    return tern::sequential{tern::linear<P>(6, 16), tern::relu{}, tern::linear<P>(16, 3)};
}

struct toy_batches {
    std::vector<tern::tensor> inputs;
    std::vector<std::vector<int>> labels;
    explicit toy_batches(std::size_t n) {
        for (std::size_t i = 0; i < n; ++i) {
            inputs.push_back(tern_test::random_tensor({8, 6}, 100 + i));
            std::vector<int> y(8);
            for (std::size_t r = 0; r < 8; ++r) y[r] = inputs.back()(r, 0) > 0 ? 0 : inputs.back()(r, 1) > 0 ? 1 : 2;
            labels.push_back(y);
        }
    }
};

template <class Model>
float train_step(Model& model, tern::adamw& opt, const toy_batches& data, std::size_t step,
                 const tern::continual_schedule& schedule, bool quantized) {
    opt.set_learning_rate(0.01f * schedule.lr_factor(step));
    if (quantized) model.set_quant_strength(schedule.lambda(step));
    model.zero_grad();
    tern::softmax_cross_entropy loss;
    const float value = loss.forward(model.forward(data.inputs[step]), data.labels[step]);
    model.backward(loss.backward());
    opt.step();
    return value;
}

/// Runs steps [from, to) of a fp16 -> absmean run switching at schedule.switch_at; optionally
/// saves a checkpoint at step @p save_at, or starts from a checkpoint.
std::vector<float> run(const toy_batches& data, const tern::continual_schedule& schedule, std::size_t to,
                       const std::string& save_path = "", std::size_t save_at = 0, const std::string& load_path = "") {
    tern::manual_seed(11);
    auto pre = make_model<tern::fp16>();
    std::optional<decltype(tern::convert<tern::absmean_ternary>(pre))> post;
    tern::adamw opt(pre.parameters(), {.lr = 0.01f, .weight_decay = 0.01f});
    std::size_t step = 0;
    if (!load_path.empty()) {
        post.emplace(tern::convert<tern::absmean_ternary>(pre));
        tern::switch_optimizer(opt, post->parameters(), false);
        const auto meta = tern::load_checkpoint(load_path, *post, &opt);
        step = std::stoul(meta.at("step"));
    }
    std::vector<float> losses;
    for (; step < to; ++step) {
        if (!post && schedule.switched(step)) {
            post.emplace(tern::convert<tern::absmean_ternary>(pre));
            tern::switch_optimizer(opt, post->parameters(), schedule.reset_optimizer);
        }
        if (!save_path.empty() && step == save_at) {
            REQUIRE(post);
            tern::save_checkpoint(save_path, *post, &opt, {{"step", std::to_string(step)}});
        }
        losses.push_back(post ? train_step(*post, opt, data, step, schedule, true)
                              : train_step(pre, opt, data, step, schedule, false));
    }
    return losses;
}

}  // namespace

TEST_CASE("phase-in lambda: tanh(2.5 t / T), then exactly 1", "[continual]") {
    const std::size_t T = 100;
    CHECK(tern::phase_in_lambda(0, T) == 0.0f);
    CHECK(tern::phase_in_lambda(T / 2, T) == Approx(std::tanh(1.25)).epsilon(1e-6));
    CHECK(tern::phase_in_lambda(T / 2, T) == Approx(0.848).margin(1e-3));
    CHECK(tern::phase_in_lambda(T - 1, T) == Approx(std::tanh(2.5 * 99.0 / 100.0)).epsilon(1e-6));
    CHECK(tern::phase_in_lambda(T - 1, T) < 1.0f);
    CHECK(tern::phase_in_lambda(T, T) == 1.0f);
    CHECK(tern::phase_in_lambda(5 * T, T) == 1.0f);
    CHECK(tern::phase_in_lambda(0, 0) == 1.0f);  // hard switch
    tern::continual_schedule s{.switch_at = 50, .phase_in = 10, .reset_optimizer = true, .rewarm = 4};
    CHECK(s.lambda(50) == 0.0f);
    CHECK(s.lambda(60) == 1.0f);
    CHECK(s.lr_factor(49) == 1.0f);
    CHECK(s.lr_factor(50) == 0.0f);
    CHECK(s.lr_factor(52) == 0.5f);
    CHECK(s.lr_factor(54) == 1.0f);
    s.reset_optimizer = false;
    CHECK(s.lr_factor(50) == 1.0f);  // a kept optimizer is not re-warmed
}

TEST_CASE("the switch copies parameters bit-exactly and keeps or resets the moments", "[continual]") {
    tern::manual_seed(2);
    auto pre = make_model<tern::fp16>();
    tern::adamw opt(pre.parameters());
    const toy_batches data(3);
    const tern::continual_schedule never{.switch_at = 1000};
    for (std::size_t i = 0; i < 3; ++i) train_step(pre, opt, data, i, never, false);
    tern::io::safetensors_data before;
    opt.save_state(before);

    auto post = tern::convert<tern::absmedian_ternary>(pre);
    auto a = pre.parameters(), b = post.parameters();
    for (std::size_t i = 0; i < a.size(); ++i)
        REQUIRE(std::memcmp(a[i].value->data(), b[i].value->data(), a[i].value->size() * 4) == 0);
    tern::switch_optimizer(opt, post.parameters(), false);
    tern::io::safetensors_data kept;
    opt.save_state(kept);
    CHECK(opt.steps() == 3);
    for (const auto& name : before.names()) {
        INFO(name);
        CHECK(kept.at(name).bytes == before.at(name).bytes);  // moments identical after the switch
    }
    CHECK(opt.parameters()[0].value == post.parameters()[0].value);  // and it now updates the new model

    tern::switch_optimizer(opt, post.parameters(), true);
    CHECK(opt.steps() == 0);
    tern::io::safetensors_data reset;
    opt.save_state(reset);
    for (const auto& name : reset.names())
        for (std::uint8_t byte : reset.at(name).bytes) REQUIRE(byte == 0);
}

TEST_CASE("resuming across the switch reproduces the uninterrupted losses", "[continual][checkpoint]") {
    const toy_batches data(40);
    for (bool reset : {false, true}) {
        const tern::continual_schedule schedule{.switch_at = 12, .phase_in = 10, .reset_optimizer = reset,
                                                .rewarm = reset ? 5u : 0u};
        const auto path = std::filesystem::temp_directory_path() / "tern_test_continual.safetensors";
        const auto full = run(data, schedule, 40, path.string(), 17);
        const auto resumed = run(data, schedule, 40, "", 0, path.string());
        REQUIRE(resumed.size() == 40 - 17);
        for (std::size_t i = 0; i < resumed.size(); ++i) {
            INFO("step " << 17 + i);
            REQUIRE(resumed[i] == full[17 + i]);  // bit-exact
        }
        std::filesystem::remove(path);
    }
}
