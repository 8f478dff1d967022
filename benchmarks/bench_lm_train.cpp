// Training speed of a byte-level decoder-only LM in tern, in the architecture of
// benchmarks/pytorch_baselines.py `lm` (pre-norm RMSNorm, causal MHA with q/k/v/o projections,
// GELU MLP 4x wide, learned absolute positions; embeddings, norms and head full precision),
// AdamW, random windows of the KJV bible (or --text). Prints one JSON line per policy:
//   bench_lm_train --policy all --threads 2 --steps 30
// benchmarks/lm_vs_pytorch.sh runs it next to PyTorch and prints the ratios.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>
#include <random>

#include "../examples/common/cli.hpp"
#include "tern/layers/transformer.hpp"
#include "tern/loss.hpp"
#include "tern/optim/adam.hpp"
#include "tern/text/corpus.hpp"
#include "tern/text/tokenizer.hpp"
#include "tern/threads.hpp"
#include "bench_machine.hpp"

namespace {

struct settings {
    std::size_t layers = 4, d_model = 128, heads = 4, context = 128, batch = 32, steps = 30, warmup = 3;
    double lr = 1e-3, wd = 0.01;
};

template <class P>
nlohmann::json run(const settings& s, const tern::text::corpus& data) {
    using clock = std::chrono::steady_clock;
    tern::manual_seed(1234);
    tern::decoder_lm<P> lm({.vocab = 256, .d_model = s.d_model, .layers = s.layers, .heads = s.heads,
                            .context = s.context});
    tern::adamw opt(lm.parameters(), {.lr = float(s.lr), .weight_decay = float(s.wd)});
    tern::softmax_cross_entropy loss;
    std::mt19937_64 rng(1234);
    float last = 0;
    std::vector<double> step_seconds;
    for (std::size_t step = 0; step < s.warmup + s.steps; ++step) {
        const auto t0 = clock::now();
        const auto batch = data.sample(s.batch, rng);
        lm.zero_grad();
        last = loss.forward(lm.forward(batch.inputs), batch.targets);
        lm.backward(loss.backward());
        opt.step();
        if (step >= s.warmup) step_seconds.push_back(std::chrono::duration<double>(clock::now() - t0).count());
    }
    double total = 0;
    for (double t : step_seconds) total += t;
    std::vector<double> sorted = step_seconds;
    std::sort(sorted.begin(), sorted.end());
    const double tokens = double(s.batch * s.context);
    return {{"framework", "tern"},
            {"model", "lm"},
            {"policy", std::string(P::name)},
            {"threads", tern::num_threads()},
            {"steps", s.steps},
            {"seconds", total},
            {"tokens_per_s", tokens * double(s.steps) / total},
            {"median_step_tokens_per_s", tokens / sorted[sorted.size() / 2]},
            {"final_loss", last},
            {"params", tern::count_parameters(lm.parameters())}};
}

}  // namespace

int main(int argc, char** argv) {
    try {
        tern_examples::cli args(argc, argv, "Training speed of tern's byte-level transformer LM (tokens/s).");
        settings s;
        const std::string policy =
            args.choice("policy", "all", {"all", "fp32", "fp16", "absmean", "absmedian"}, "policy to time");
        s.layers = std::size_t(args.integer("layers", 4, 1, 1000, "decoder blocks"));
        s.d_model = std::size_t(args.integer("d-model", 128, 1, 1 << 16, "model width"));
        s.heads = std::size_t(args.integer("heads", 4, 1, 1024, "attention heads"));
        s.context = std::size_t(args.integer("context", 128, 2, 1 << 16, "context length"));
        s.batch = std::size_t(args.integer("batch", 32, 1, 1 << 16, "windows per step"));
        s.steps = std::size_t(args.integer("steps", 30, 1, 1 << 24, "timed steps"));
        s.warmup = std::size_t(args.integer("warmup", 3, 0, 1 << 24, "untimed steps first"));
        const auto threads = std::size_t(args.integer("threads", 2, 1, 1024, "threads"));
        const std::string text = args.value("text", "", "training text (default: `bible Gen1:1-Rev22:21`)");
        if (!args.finish()) return 0;
        tern_bench::print_machine("bench_lm_train");
        tern::set_num_threads(threads);
        const std::string raw = text.empty() ? tern::text::read_command_output("bible Gen1:1-Rev22:21")
                                             : tern::text::read_file_bytes(text);
        const tern::text::corpus data(tern::text::byte_tokenizer{}.encode(raw), s.context, 0.0);
        for (const std::string p : {"fp32", "fp16", "absmean", "absmedian"}) {
            if (policy != "all" && policy != p) continue;
            nlohmann::json r = p == "fp32"   ? run<tern::fp32>(s, data)
                               : p == "fp16" ? run<tern::fp16>(s, data)
                               : p == "absmean" ? run<tern::absmean_ternary>(s, data)
                                                : run<tern::absmedian_ternary>(s, data);
            std::cout << r.dump() << std::endl;
        }
        return 0;
    } catch (const std::exception& e) {
        std::cerr << "bench_lm_train: error: " << e.what() << "\n";
        return 1;
    }
}
