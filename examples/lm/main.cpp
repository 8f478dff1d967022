// lm: trains a small decoder-only transformer language model on the King James Bible (the text
// of `bible Gen1:1-Rev22:21`, Debian package bible-kjv) or on any text (--text FILE), in one of
// tern's policies; reports validation loss, bits per byte and perplexity next to the text's
// unigram entropy, samples text from a prompt during and after training, and saves/resumes
// checkpoints.
//
//   lm --policy absmean --steps 2000                      # 1.58-bit weights, 8-bit activations
//   lm --policy fp16 --save lm.safetensors                # the 16-bit baseline, checkpointed
//   lm --load lm.safetensors --policy fp16 --steps 3000   # resume to step 3000
//   lm --load lm.safetensors --policy fp16 --steps 0 --generate "And God said" --tokens 300
//
// Token ids are carried as a float tensor [batch, context] (exact below 2^24). With
// --tokenizer bpe a byte-pair encoding is trained on the training part (or read from
// --bpe-file when that file exists, and written there otherwise). The last line of output is
// one JSON object with the results.
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>

#include "common/cli.hpp"
#include "common/lm_designs.hpp"
#include "common/parallel.hpp"  // mpirun -np N: data-parallel (TERN_WITH_MPI)
#include "tern/layers/transformer.hpp"
#include "tern/continual.hpp"
#include "tern/deploy/language_model.hpp"
#include "tern/deploy/packed_model.hpp"
#include "tern/text/corpus.hpp"
#include "tern/text/tokenizer.hpp"
#include "tern/tern.hpp"

namespace {

struct settings {
    std::string policy, text, tokenizer, bpe_file, save, load, log, prompt, arch;
    std::size_t d_model = 128, layers = 4, heads = 4, context = 128, batch = 32, steps = 2000, warmup = 100;
    std::size_t threads = 2, vocab = 512, eval_every = 500, eval_windows = 256, sample_every = 0, tokens = 200;
    std::size_t top_k = 0;
    double lr = 1e-3, wd = 0.01, val_fraction = 0.05, clip = 1.0, temperature = 0.8;
    std::uint64_t seed = 1;
    bool quantized_head = false, quiet = false;
    std::string pre_policy;              // continual QAT: the policy before the switch
    std::string export_path;             // packed 2-bit model for infer
    tern::continual_schedule schedule;   // switch_at == 0: no switch
};

/// The tokenizer in use: bytes, or a BPE.
struct text_codec {
    std::optional<tern::text::bpe_tokenizer> bpe;
    std::size_t vocab_size() const { return bpe ? bpe->vocab_size() : 256; }
    std::string name() const { return bpe ? bpe->name() : "bytes"; }
    std::vector<int> encode(std::string_view s) const {
        return bpe ? bpe->encode(s) : tern::text::byte_tokenizer{}.encode(s);
    }
    std::string decode(const std::vector<int>& ids) const {
        return bpe ? bpe->decode(ids) : tern::text::byte_tokenizer{}.decode(ids);
    }
    std::size_t bytes_of(int id) const { return bpe ? bpe->token_bytes(id).size() : 1; }
};

/// Mean loss per token and bits per byte over validation windows (all of them when @p limit is 0,
/// else @p limit windows spread evenly over the split).
template <class Model>
std::pair<double, double> evaluate(Model& lm, const tern::text::corpus& data, const text_codec& codec,
                                   std::size_t batch, std::size_t limit) {
    const std::size_t total = data.validation_windows();
    const std::size_t use = limit == 0 ? total : std::min(limit, total);
    const std::size_t stride = std::max<std::size_t>(1, total / std::max<std::size_t>(1, use));
    tern::softmax_cross_entropy loss;
    double nats = 0, tokens = 0, bytes = 0;
    lm.set_training(false);
    for (std::size_t i = 0; i < use; i += batch) {
        const std::size_t n = std::min(batch, use - i);
        tern::text::lm_batch b;
        if (stride == 1) {
            b = data.validation_batch(i, n);
        } else {  // evenly spaced windows, gathered one by one
            b.inputs = tern::tensor(tern::shape_t{n, data.context()});
            b.targets.resize(n * data.context());
            for (std::size_t k = 0; k < n; ++k) {
                const auto w = data.validation_batch((i + k) * stride, 1);
                std::copy(w.inputs.begin(), w.inputs.end(), b.inputs.begin() + std::ptrdiff_t(k * data.context()));
                std::copy(w.targets.begin(), w.targets.end(), b.targets.begin() + std::ptrdiff_t(k * data.context()));
            }
        }
        const double l = loss.forward(lm.forward(b.inputs), b.targets);
        nats += l * double(b.targets.size());
        tokens += double(b.targets.size());
        for (int t : b.targets) bytes += double(codec.bytes_of(t));
    }
    lm.set_training(true);
    const double mean = nats / std::max(1.0, tokens);
    return {mean, nats / std::log(2.0) / std::max(1.0, bytes)};
}

template <class Model>
std::string sample_text(Model& lm, const text_codec& codec, const settings& s, std::uint64_t seed) {
    const auto prompt = codec.encode(s.prompt);
    const auto out = lm.generate(prompt, s.tokens,
                                 {.temperature = float(s.temperature), .top_k = s.top_k, .seed = seed});
    return s.prompt + codec.decode(out);
}

/// Trains decoder_lm<., 8, Design> in policy Pre until --switch-at, then in P (continual QAT);
/// Pre == P trains in P throughout.
template <class Pre, class P, tern::lm_design Design>
nlohmann::json run(const settings& s, const std::string& raw) {
    // Tokenizer and data. BPE learns from the training part only (the text before the held-out tail).
    text_codec codec;
    if (s.tokenizer == "bpe") {
        if (!s.bpe_file.empty() && std::filesystem::exists(s.bpe_file)) {
            codec.bpe = tern::text::bpe_tokenizer::load(s.bpe_file);
        } else {
            const std::size_t train_bytes = raw.size() - std::size_t(double(raw.size()) * s.val_fraction);
            codec.bpe = tern::text::bpe_tokenizer::train(std::string_view(raw).substr(0, train_bytes), s.vocab);
            if (!s.bpe_file.empty()) codec.bpe->save(s.bpe_file);
        }
    }
    const tern::text::corpus data(codec.encode(raw), s.context, s.val_fraction);
    const auto& train_tokens = data.train_tokens();
    double train_bytes = 0;
    for (int t : train_tokens) train_bytes += double(codec.bytes_of(t));
    const double unigram_bits_per_token = tern::text::unigram_entropy_bits(train_tokens);
    const double unigram_bpc = unigram_bits_per_token * double(train_tokens.size()) / train_bytes;

    tern::manual_seed(s.seed);
    tern::lm_config cfg{.vocab = codec.vocab_size(),
                        .d_model = s.d_model,
                        .layers = s.layers,
                        .heads = s.heads,
                        .context = s.context,
                        .mlp_hidden = 0};
    tern::decoder_lm<Pre, 8, Design> pre(cfg);
    std::optional<tern::decoder_lm<P, 8, Design>> post;
    tern::adamw optimizer(pre.parameters(), {.lr = float(s.lr), .weight_decay = float(s.wd)});
    const bool switching = s.schedule.switch_at > 0;
    const auto enter_post = [&] {  // the switch: same parameters, new policy, optimizer kept or reset
        post.emplace(pre);
        tern::switch_optimizer(optimizer, post->parameters(), switching && s.schedule.reset_optimizer);
    };
    if (!switching) enter_post();
    // Runs f on the model in use (the pre-switch model until the switch).
    const auto active = [&](auto&& f) { return post ? f(*post) : f(pre); };
    const tern::warmup_cosine schedule(float(s.lr), std::min(s.warmup, s.steps), std::max<std::size_t>(s.steps, 1),
                                       float(s.lr) * 0.1f);
    std::size_t step = 0;
    if (!s.load.empty()) {
        const auto file = tern::io::load_safetensors(s.load);
        const bool with_optimizer = s.steps > 0 && file.metadata.count("optimizer");
        const auto& meta = file.metadata;
        // A file saved after the switch holds the converted model.
        if (!post && meta.count("tern.policy") && meta.at("tern.policy") != tern::policy_name(pre)) enter_post();
        active([&](auto& lm) { tern::restore_model(file, lm, s.load); });
        if (with_optimizer) optimizer.load_state(file);
        if (meta.count("tokenizer"))
            tern::detail::require(meta.at("tokenizer") == codec.name(), s.load, ": trained with tokenizer '",
                                  meta.at("tokenizer"), "', this run uses '", codec.name(), "'");
        if (with_optimizer) step = optimizer.steps();
        std::cerr << "loaded " << s.load << (with_optimizer ? ", resuming at step " + std::to_string(step) : "")
                  << "\n";
    }
    tern_examples::world::get().sync(optimizer);  // rank 0's model and optimizer state everywhere
    const std::size_t n_params = tern::count_parameters(optimizer.parameters());
    std::cerr << "model: " << active([](auto& lm) { return tern::policy_name(lm); }) << " (" << tern::describe_design(Design) << "), " << s.layers << " layers, d_model " << s.d_model << ", "
              << s.heads << " heads, context " << s.context << ", vocab " << cfg.vocab << " (" << codec.name()
              << "), " << n_params << " parameters, " << tern::num_threads() << " threads\n";
    std::fprintf(stderr, "data: %zu training and %zu validation tokens; unigram entropy %.4f bits/token = %.4f bits/byte\n",
                 train_tokens.size(), data.validation_tokens().size(), unigram_bits_per_token, unigram_bpc);

    std::optional<tern::csv_log> log;
    if (!s.log.empty())
        log.emplace(s.log, std::vector<std::string>{"step", "train_loss", "val_loss", "val_bpc", "tokens_per_s"});
    const auto save = [&](std::size_t at) {
        if (!s.save.empty())
            active([&](auto& lm) {
                tern::save_checkpoint(s.save, lm, &optimizer, {{"step", std::to_string(at)}, {"tokenizer", codec.name()}});
            });
    };

    tern::softmax_cross_entropy loss;
    std::mt19937_64 rng(s.seed * 7919 + step);
    double train_seconds = 0, trained_tokens = 0, running = 0;
    const std::size_t start = step;
    tern::progress_bar bar("train", s.steps > start ? s.steps - start : 0);
    const auto t_start = std::chrono::steady_clock::now();
    for (; step < s.steps; ++step) {
        if (!post && step >= s.schedule.switch_at) {
            enter_post();
            if (!s.quiet) bar.finish();
            std::cerr << "step " << step << ": switched to " << P::name << "\n";
        }
        const auto batch = tern_examples::world::get().shard(data.sample(s.batch, rng));  // this rank's windows
        optimizer.set_learning_rate(schedule(step) * s.schedule.lr_factor(step));
        if (post) post->set_quant_strength(s.schedule.lambda(step));
        optimizer.zero_grad();
        const float local_loss = active([&](auto& lm) {
            const float value = loss.forward(lm.forward(batch.inputs), batch.targets);
            lm.backward(loss.backward());
            return value;
        });
        // With MPI: the gradients and the loss of the whole global batch, on every rank.
        const float l = tern_examples::world::get().reduce(optimizer.parameters(), batch.inputs.shape()[0], s.batch,
                                                           local_loss);
        if (s.clip > 0) tern::clip_grad_norm(optimizer.parameters(), float(s.clip));
        optimizer.step();
        running = step == start ? l : 0.98 * running + 0.02 * l;
        trained_tokens += double(s.batch * s.context);  // the global batch
        train_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count();
        if (!s.quiet) bar.update(step + 1 - start, running, -1, trained_tokens);
        const bool last = step + 1 == s.steps;
        if ((s.eval_every && (step + 1) % s.eval_every == 0) || last) {
            const auto [vl, vb] = active([&](auto& lm) { return evaluate(lm, data, codec, s.batch, s.eval_windows); });
            if (!s.quiet) bar.finish();
            std::fprintf(stderr, "step %zu: train loss %.4f | val loss %.4f, %.4f bits/byte (sampled %zu windows) | %.0f tokens/s\n",
                         step + 1, running, vl, vb, s.eval_windows, trained_tokens / train_seconds);
            if (log) log->row({double(step + 1), running, vl, vb, trained_tokens / train_seconds});
            save(step + 1);
        }
        if (s.sample_every && (step + 1) % s.sample_every == 0)
            std::cerr << "--- sample at step " << step + 1 << ":\n"
                      << active([&](auto& lm) { return sample_text(lm, codec, s, s.seed + step); }) << "\n---\n";
    }
    if (!s.quiet && s.steps > start) bar.finish();

    const auto [val_loss, val_bpc] = active([&](auto& lm) { return evaluate(lm, data, codec, s.batch, 0); });
    std::fprintf(stderr, "validation (all %zu windows): loss %.4f nats/token, %.4f bits/byte, perplexity %.3f; "
                 "unigram entropy %.4f bits/byte\n",
                 data.validation_windows(), val_loss, val_bpc, std::exp(val_loss), unigram_bpc);
    if (!s.export_path.empty()) {
        tern::detail::require(codec.name() == "bytes",
                              "--export: only byte-tokenizer models can be exported (infer has no BPE tokenizer)");
        active([&](auto& lm) {
            tern::save_packed_model(s.export_path, lm, {.test_inputs = std::nullopt, .metadata = {{"tokenizer", codec.name()}}});
        });
        std::cerr << "exported the packed model to " << s.export_path << "\n";
    }
    const auto g0 = std::chrono::steady_clock::now();
    const std::string sample = active([&](auto& lm) { return sample_text(lm, codec, s, s.seed); });
    const double gen_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - g0).count();
    std::cerr << "--- sample (temperature " << s.temperature << ", top-k " << s.top_k << "):\n" << sample << "\n---\n";
    return {{"policy", std::string(P::name)},
            {"model_policy", active([](auto& lm) { return tern::policy_name(lm); })},
            {"arch", s.arch},
            {"quantized_head", Design.quantized_head},
            {"params", n_params},
            {"d_model", s.d_model},
            {"layers", s.layers},
            {"heads", s.heads},
            {"context", s.context},
            {"batch", s.batch},
            {"steps", step},
            {"tokenizer", codec.name()},
            {"threads", tern::num_threads()},
            {"val_loss", val_loss},
            {"val_bpc", val_bpc},
            {"val_ppl", std::exp(val_loss)},
            {"unigram_bpc", unigram_bpc},
            {"train_seconds", train_seconds},
            {"train_tokens_per_s", train_seconds > 0 ? trained_tokens / train_seconds : 0.0},
            {"generate_tokens_per_s", gen_seconds > 0 ? double(s.tokens) / gen_seconds : 0.0}};
}

/// Continual QAT (--switch-at) is compiled for the default design only: each pre-policy doubles
/// the models compiled, and the other designs would multiply that again.
template <class P, tern::lm_design Design>
nlohmann::json run_with_pre(const settings& s, const std::string& raw) {
    if (s.schedule.switch_at == 0) return run<P, P, Design>(s, raw);
    if constexpr (Design == tern::lm_design{}) {
        if (s.pre_policy == "fp32") return run<tern::fp32, P, Design>(s, raw);
        if (s.pre_policy == "fp16_prenorm") return run<tern::fp16_prenorm, P, Design>(s, raw);
        return run<tern::fp16, P, Design>(s, raw);
    } else {
        throw tern::error("--switch-at: continual QAT is built for --arch tern without --quantized-head; got --arch " +
                          s.arch + (Design.quantized_head ? " --quantized-head" : ""));
    }
}

}  // namespace

int main(int argc, char** argv) {
    tern_examples::world world(argc, argv);
    try {
        tern_examples::cli args(argc, argv,
                                "Trains a decoder-only transformer LM (bytes or BPE) on the KJV bible or --text, "
                                "in a tern policy, and samples text from it.");
        settings s;
        s.policy = args.choice("policy", "absmean", {"fp32", "fp16", "absmean", "absmedian"}, "weight policy");
        s.text = args.value("text", "", "training text file (default: the output of `bible Gen1:1-Rev22:21`)");
        s.tokenizer = args.choice("tokenizer", "bytes", {"bytes", "bpe"}, "tokenizer");
        s.vocab = std::size_t(args.integer("vocab", 512, 256, 1 << 20, "BPE vocabulary size"));
        s.bpe_file = args.value("bpe-file", "", "BPE merges: read if it exists, else written after training");
        s.d_model = std::size_t(args.integer("d-model", 128, 1, 1 << 16, "model width"));
        s.layers = std::size_t(args.integer("layers", 4, 1, 1000, "decoder blocks"));
        s.heads = std::size_t(args.integer("heads", 4, 1, 1024, "attention heads"));
        s.context = std::size_t(args.integer("context", 128, 2, 1 << 16, "context length (tokens)"));
        s.arch = args.choice("arch", "tern", tern_examples::lm_arch_names(),
                             "design: tern (RMSNorm, GELU, learned positions), llama (RMSNorm, SwiGLU, rotary), "
                             "gpt (LayerNorm, GELU, learned positions)");
        s.quantized_head = args.flag("quantized-head", "put the LM head in the model's policy (default fp32)");
        s.batch = std::size_t(args.integer("batch", 32, 1, 1 << 16, "windows per step"));
        s.steps = std::size_t(args.integer("steps", 2000, 0, 1L << 40, "total optimizer steps (0: evaluate only)"));
        s.lr = args.real("lr", 1e-3, 0.0, 10.0, "peak AdamW learning rate (cosine decay to lr/10)");
        s.wd = args.real("wd", 0.01, 0.0, 10.0, "AdamW decoupled weight decay");
        s.warmup = std::size_t(args.integer("warmup", 100, 0, 1L << 40, "linear warm-up steps"));
        s.clip = args.real("clip", 1.0, 0.0, 1e9, "gradient-norm clipping (0: off)");
        s.val_fraction = args.real("val-fraction", 0.05, 0.0, 0.9, "share of the text held out (its end)");
        s.eval_every = std::size_t(args.integer("eval-every", 500, 0, 1L << 40, "steps between evaluations"));
        s.eval_windows = std::size_t(args.integer("eval-windows", 256, 1, 1L << 40, "windows per evaluation in training"));
        s.sample_every = std::size_t(args.integer("sample-every", 0, 0, 1L << 40, "steps between samples (0: end only)"));
        s.threads = std::size_t(args.integer("threads", 2, 1, 1024, "threads"));
        s.seed = std::uint64_t(args.integer("seed", 1, 0, 1L << 62, "random seed"));
        s.save = args.value("save", "", "checkpoint file written at every evaluation (safetensors)");
        s.load = args.value("load", "", "checkpoint to start from (resumes when it has optimizer state)");
        s.prompt = args.value("generate", "And God said", "prompt for the samples");
        s.tokens = std::size_t(args.integer("tokens", 200, 0, 1 << 24, "tokens to sample"));
        s.temperature = args.real("temperature", 0.8, 0.0, 100.0, "sampling temperature (0: greedy)");
        s.top_k = std::size_t(args.integer("top-k", 0, 0, 1 << 24, "sample among the k likeliest (0: all)"));
        s.log = args.value("log", "", "CSV file for the training curve");
        s.quiet = args.flag("quiet", "no progress bar");
        s.export_path = args.value("export", "", "packed 2-bit model file for `infer` (byte tokenizer, ternary or fp policy)");
        s.schedule.switch_at = std::size_t(args.integer(
            "switch-at", 0, 0, 1L << 40, "continual QAT: train in --pre-policy until this step, then in --policy"));
        s.pre_policy = args.choice("pre-policy", "fp16", {"fp16", "fp32", "fp16_prenorm"}, "policy before --switch-at");
        s.schedule.phase_in = std::size_t(args.integer(
            "phase-in", 0, 0, 1L << 40, "steps of tanh quantization phase-in after the switch (0: hard switch)"));
        s.schedule.reset_optimizer = args.flag("reset-optimizer", "reset AdamW's moments at the switch (default: keep)");
        s.schedule.rewarm = std::size_t(args.integer(
            "rewarm", 0, 0, 1L << 40, "with --reset-optimizer: re-warm the learning rate over this many steps"));
        if (!args.finish()) return 0;
        tern::detail::require(s.schedule.switch_at == 0 || s.policy == "absmean" || s.policy == "absmedian",
                              "--switch-at converts to a ternary --policy (absmean or absmedian), got --policy ",
                              s.policy);
        tern::detail::require(s.schedule.rewarm == 0 || s.schedule.reset_optimizer,
                              "--rewarm only applies with --reset-optimizer (a kept optimizer needs no re-warm)");
        tern::detail::require(!s.prompt.empty(), "--generate expects a non-empty prompt");
        tern::set_num_threads(s.threads);
        world.root_only(s.save, s.log, s.export_path);
        const std::string raw = s.text.empty() ? tern::text::read_command_output("bible Gen1:1-Rev22:21")
                                               : tern::text::read_file_bytes(s.text);

        // The one place the design and policy are chosen: everything below is compiled for them.
        nlohmann::json result = tern_examples::with_lm_design(s.arch, s.quantized_head, [&]<tern::lm_design D>() {
            if (s.policy == "fp32") return run<tern::fp32, tern::fp32, D>(s, raw);
            if (s.policy == "fp16") return run<tern::fp16, tern::fp16, D>(s, raw);
            if (s.policy == "absmean") return run_with_pre<tern::absmean_ternary, D>(s, raw);
            return run_with_pre<tern::absmedian_ternary, D>(s, raw);
        });
        if (s.schedule.switch_at > 0) {
            result["pre_policy"] = s.pre_policy;
            result["switch_at"] = s.schedule.switch_at;
        }
        std::cout << result.dump() << std::endl;
        return 0;
    } catch (const std::exception& e) {
        return world.fail("lm", e);
    }
}
