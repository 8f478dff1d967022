// continual_qat: the experiment of "Continual Quantization-Aware Pre-Training" (arXiv 2502.11895)
// at small scale, on a byte-level decoder-only LM trained on the King James Bible.
//
// At equal total steps it runs: 16-bit only; 1.58-bit from scratch; and 16 -> 1.58-bit switches
// at two points, each with the optimizer state kept or reset (then re-warmed), with a hard switch
// or a tanh phase-in of the quantization. It writes a Markdown table of final validation losses
// (and the loss spike after each switch), an SVG plot of the loss curves, and a CSV of every curve.
// The last output line is a JSON object with the final validation loss of each run.
//
//   continual_qat --steps 600 --switch-points 200,400 --out runs/continual_qat
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <sstream>

#include "common/cli.hpp"
#include "tern/continual.hpp"
#include "tern/layers/transformer.hpp"
#include "tern/loss.hpp"
#include "tern/optim/adam.hpp"
#include "tern/optim/clip.hpp"
#include "tern/optim/schedule.hpp"
#include "tern/text/corpus.hpp"
#include "tern/text/tokenizer.hpp"
#include "tern/threads.hpp"
#include "tern/train/progress.hpp"

namespace {

struct settings {
    tern::lm_config model;
    std::size_t steps = 600, batch = 16, warmup = 30, eval_every = 25, eval_windows = 48, phase_in = 100,
                rewarm = 50, threads = 2;
    std::vector<std::size_t> switch_points;
    double lr = 2e-3, wd = 0.01;
    std::uint64_t seed = 1;
    std::string text, out, post, pre;
};

/// One run of the experiment.
struct run_spec {
    std::string name;
    bool ternary_only = false;    // 1.58-bit from scratch
    bool fp_only = false;         // 16-bit throughout
    tern::continual_schedule schedule;
};

struct run_result {
    run_spec spec;
    std::vector<double> train_loss;                         // per step
    std::vector<std::pair<std::size_t, double>> val_curve;  // (step, validation loss)
    double final_val = 0;
    double spike = 0;  // largest excess of the training loss over the 16-bit-only run after the switch
    double seconds = 0;
};

double mean_loss(auto& lm, const tern::text::corpus& data, std::size_t windows, std::size_t batch) {
    const std::size_t total = std::min(windows, data.validation_windows());
    const std::size_t stride = std::max<std::size_t>(1, data.validation_windows() / std::max<std::size_t>(1, total));
    tern::softmax_cross_entropy loss;
    double sum = 0;
    std::size_t tokens = 0;
    for (std::size_t i = 0; i < total; i += batch) {
        const std::size_t n = std::min(batch, total - i);
        tern::text::lm_batch b{tern::tensor(tern::shape_t{n, data.context()}), {}};
        for (std::size_t k = 0; k < n; ++k) {
            const auto w = data.validation_batch((i + k) * stride, 1);
            std::copy(w.inputs.begin(), w.inputs.end(), b.inputs.begin() + std::ptrdiff_t(k * data.context()));
            b.targets.insert(b.targets.end(), w.targets.begin(), w.targets.end());
        }
        sum += double(loss.forward(lm.forward(b.inputs), b.targets)) * double(b.targets.size());
        tokens += b.targets.size();
    }
    return sum / double(std::max<std::size_t>(1, tokens));
}

/// Trains one run: Pre (16-bit) until the switch, then Post (1.58-bit) converted from it.
template <class Pre, class Post>
run_result train_run(const run_spec& spec, const settings& s, const tern::text::corpus& data) {
    tern::manual_seed(s.seed);  // every run starts from the same initial weights
    tern::decoder_lm<Pre> pre(s.model);
    std::optional<tern::decoder_lm<Post>> post;
    tern::adamw optimizer(pre.parameters(), {.lr = float(s.lr), .weight_decay = float(s.wd)});
    const tern::warmup_cosine base_lr(float(s.lr), s.warmup, s.steps, float(s.lr) * 0.1f);
    const auto enter_post = [&](bool reset) {
        post.emplace(pre);  // the same parameters, bit for bit, in the ternary policy
        tern::switch_optimizer(optimizer, post->parameters(), reset);
    };
    if (spec.ternary_only) enter_post(true);

    std::mt19937_64 rng(s.seed + 17);  // the same batches in every run
    tern::softmax_cross_entropy loss;
    run_result r{spec, {}, {}, 0, 0, 0};
    tern::progress_bar bar(spec.name, s.steps);
    const auto start = std::chrono::steady_clock::now();
    const std::size_t S = spec.schedule.switch_at;
    for (std::size_t step = 0; step < s.steps; ++step) {
        if (!post && !spec.fp_only && step >= S) enter_post(spec.schedule.reset_optimizer);
        optimizer.set_learning_rate(base_lr(step) * (post && !spec.ternary_only ? spec.schedule.lr_factor(step) : 1.0f));
        if (post && !spec.ternary_only) post->set_quant_strength(spec.schedule.lambda(step));
        const auto batch = data.sample(s.batch, rng);
        optimizer.zero_grad();
        float value;
        if (post) {
            value = loss.forward(post->forward(batch.inputs), batch.targets);
            post->backward(loss.backward());
        } else {
            value = loss.forward(pre.forward(batch.inputs), batch.targets);
            pre.backward(loss.backward());
        }
        tern::clip_grad_norm(optimizer.parameters(), 1.0f);
        optimizer.step();
        r.train_loss.push_back(value);
        // Evaluate on schedule, and densely in the steps right after a switch to catch the spike.
        const bool near_switch = !spec.fp_only && !spec.ternary_only && step >= S && step < S + 50;
        if ((step + 1) % s.eval_every == 0 || step + 1 == s.steps || (near_switch && (step - S) % 5 == 0)) {
            const double v = post ? mean_loss(*post, data, s.eval_windows, s.batch)
                                  : mean_loss(pre, data, s.eval_windows, s.batch);
            r.val_curve.emplace_back(step + 1, v);
        }
        bar.update(step + 1, value, -1, double((step + 1) * s.batch * data.context()));
    }
    bar.finish();
    r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    r.final_val = post ? mean_loss(*post, data, data.validation_windows(), s.batch)
                       : mean_loss(pre, data, data.validation_windows(), s.batch);
    return r;
}

std::string fixed(double v, int digits = 4) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.*f", digits, v);
    return buf;
}

/// Loss curves as an SVG line plot (validation loss against step), one colour per run.
std::string svg_plot(const std::vector<run_result>& runs, const settings& s) {
    const double w = 960, h = 540, left = 70, right = 250, top = 50, bottom = 50;
    double lo = 1e9, hi = -1e9;
    for (const auto& r : runs)
        for (const auto& [step, v] : r.val_curve) lo = std::min(lo, v), hi = std::max(hi, v);
    hi = std::min(hi, lo + 2.0);  // keep the interesting range visible
    const auto x = [&](double step) { return left + (w - left - right) * step / double(s.steps); };
    const auto y = [&](double v) { return top + (h - top - bottom) * (hi - std::min(v, hi)) / (hi - lo); };
    static const char* colours[] = {"#000000", "#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#8c564b",
                                    "#e377c2", "#17becf", "#bcbd22", "#ff7f0e", "#7f7f7f", "#aec7e8"};
    std::ostringstream o;
    o << "<svg xmlns='http://www.w3.org/2000/svg' width='" << w << "' height='" << h
      << "' font-family='sans-serif' font-size='12'>\n<rect width='100%' height='100%' fill='white'/>\n"
      << "<text x='" << left << "' y='24' font-size='15'>Validation loss (nats/byte), KJV byte LM, "
      << s.model.layers << " layers, d_model " << s.model.d_model << "; " << s.pre << " -> " << s.post
      << " switches</text>\n";
    for (int i = 0; i <= 4; ++i) {
        const double v = lo + (hi - lo) * i / 4.0;
        o << "<line x1='" << left << "' x2='" << w - right << "' y1='" << y(v) << "' y2='" << y(v)
          << "' stroke='#ddd'/><text x='" << left - 45 << "' y='" << y(v) + 4 << "'>" << fixed(v, 2) << "</text>\n";
    }
    for (std::size_t p : s.switch_points)
        o << "<line x1='" << x(double(p)) << "' x2='" << x(double(p)) << "' y1='" << top << "' y2='" << h - bottom
          << "' stroke='#999' stroke-dasharray='4,3'/>\n";
    for (int i = 0; i <= 4; ++i) {
        const double step = double(s.steps) * i / 4.0;
        o << "<text x='" << x(step) - 10 << "' y='" << h - bottom + 16 << "'>" << std::size_t(step) << "</text>\n";
    }
    o << "<text x='" << (w - right) / 2 << "' y='" << h - 8 << "'>step</text>\n";
    for (std::size_t i = 0; i < runs.size(); ++i) {
        const char* c = colours[i % 12];
        o << "<polyline fill='none' stroke-width='1.6' stroke='" << c << "' points='";
        for (const auto& [step, v] : runs[i].val_curve) o << x(double(step)) << ',' << y(v) << ' ';
        o << "'/>\n<text x='" << w - right + 10 << "' y='" << top + 16 * double(i) << "' fill='" << c << "'>"
          << runs[i].spec.name << "</text>\n";
    }
    o << "</svg>\n";
    return o.str();
}

template <class Pre, class Post>
std::vector<run_result> run_all(const settings& s, const tern::text::corpus& data) {
    std::vector<run_spec> specs;
    specs.push_back({std::string(Pre::name) + " only", false, true, {.switch_at = s.steps}});
    specs.push_back({std::string(Post::name) + " from scratch", true, false, {.switch_at = 0}});
    for (std::size_t p : s.switch_points)
        for (bool reset : {false, true})
            for (std::size_t T : {std::size_t{0}, s.phase_in})
                specs.push_back({"switch@" + std::to_string(p) + (reset ? " reset" : " keep") +
                                     (T ? " phase-in" : " hard"),
                                 false, false,
                                 {.switch_at = p, .phase_in = T, .reset_optimizer = reset,
                                  .rewarm = reset ? s.rewarm : 0}});
    std::vector<run_result> results;
    for (const auto& spec : specs) {
        results.push_back(train_run<Pre, Post>(spec, s, data));
        run_result& r = results.back();
        const std::size_t S = spec.schedule.switch_at;
        if (!spec.fp_only && !spec.ternary_only) {
            // Every run sees the same batches, so the loss difference to the 16-bit-only run at the same
            // step isolates what the switch costs; 5-step means smooth out batch-to-batch noise.
            const auto& base = results.front().train_loss;
            const auto smooth = [](const std::vector<double>& v, std::size_t at) {
                double sum = 0;
                for (std::size_t i = at - 4; i <= at; ++i) sum += v[i];
                return sum / 5;
            };
            r.spike = -1e9;
            for (std::size_t t = S + 4; t < std::min(s.steps, S + 100); ++t)
                r.spike = std::max(r.spike, smooth(r.train_loss, t) - smooth(base, t));
        }
        std::fprintf(stderr, "%-28s final validation loss %.4f%s (%.0f s)\n", spec.name.c_str(), r.final_val,
                     spec.fp_only || spec.ternary_only ? "" : (", spike " + fixed(r.spike)).c_str(), r.seconds);
    }
    return results;
}

}  // namespace

int main(int argc, char** argv) {
    try {
        tern_examples::cli args(argc, argv,
                                "Continual QAT experiment: 16-bit -> 1.58-bit switches on a byte-level KJV language model.");
        settings s;
        s.text = args.value("text", "", "text file (default: the King James Bible from `bible Gen1:1-Rev22:21`)");
        s.post = args.choice("policy", "absmean", {"absmean", "absmedian"}, "the 1.58-bit policy switched to");
        s.pre = args.choice("pre-policy", "fp16", {"fp16", "fp16_prenorm"},
                            "the 16-bit phase (fp16_prenorm: with BitLinear's input normalization already on)");
        s.steps = std::size_t(args.integer("steps", 600, 20, 1L << 30, "optimizer steps of every run"));
        const std::string points = args.value("switch-points", "", "comma-separated switch steps (default: steps/3,2*steps/3)");
        s.phase_in = std::size_t(args.integer("phase-in", 100, 1, 1L << 30, "phase-in steps T of the phase-in runs"));
        s.rewarm = std::size_t(args.integer("rewarm", 50, 0, 1L << 30, "learning-rate re-warm steps after a reset"));
        s.model.d_model = std::size_t(args.integer("d-model", 64, 8, 4096, "model width"));
        s.model.layers = std::size_t(args.integer("layers", 2, 1, 64, "decoder blocks"));
        s.model.heads = std::size_t(args.integer("heads", 4, 1, 64, "attention heads"));
        s.model.context = std::size_t(args.integer("context", 64, 4, 4096, "context length"));
        s.batch = std::size_t(args.integer("batch", 16, 1, 4096, "batch size"));
        s.lr = args.real("lr", 2e-3, 0, 1, "peak learning rate (warm-up, then cosine to 10%)");
        s.wd = args.real("wd", 0.01, 0, 1, "AdamW weight decay");
        s.eval_every = std::size_t(args.integer("eval-every", 25, 1, 1L << 30, "steps between validation losses"));
        s.threads = std::size_t(args.integer("threads", 2, 1, 1024, "threads"));
        s.seed = std::uint64_t(args.integer("seed", 1, 0, 1L << 62, "seed"));
        s.out = args.value("out", "runs/continual_qat", "output directory (table, plot, curves)");
        if (!args.finish()) return 0;
        if (points.empty()) {
            s.switch_points = {s.steps / 3, 2 * s.steps / 3};
        } else {
            std::stringstream in(points);
            std::string item;
            while (std::getline(in, item, ',')) {
                char* end = nullptr;
                const long v = std::strtol(item.c_str(), &end, 10);
                tern::detail::require(!item.empty() && *end == '\0' && v > 10 && std::size_t(v) < s.steps,
                                      "--switch-points expects steps in (10, ", s.steps, "), got '", item, "'");
                s.switch_points.push_back(std::size_t(v));
            }
        }
        tern::set_num_threads(s.threads);

        const std::string raw = s.text.empty() ? tern::text::read_command_output("bible Gen1:1-Rev22:21")
                                               : tern::text::read_file_bytes(s.text);
        const tern::text::corpus data(tern::text::byte_tokenizer{}.encode(raw), s.model.context, 0.02);
        const double unigram = tern::text::unigram_entropy_bits(data.train_tokens()) * std::log(2.0);
        std::fprintf(stderr, "corpus: %zu training and %zu validation bytes; unigram entropy %.4f nats/byte\n",
                     data.train_tokens().size(), data.validation_tokens().size(), unigram);

        std::vector<run_result> results;
        if (s.pre == "fp16") {
            results = s.post == "absmean" ? run_all<tern::fp16, tern::absmean_ternary>(s, data)
                                          : run_all<tern::fp16, tern::absmedian_ternary>(s, data);
        } else {
            results = s.post == "absmean" ? run_all<tern::fp16_prenorm, tern::absmean_ternary>(s, data)
                                          : run_all<tern::fp16_prenorm, tern::absmedian_ternary>(s, data);
        }

        std::filesystem::create_directories(s.out);
        std::ostringstream table;
        table << "| run | final validation loss (nats/byte) | bits/byte | spike: max excess training loss over the 16-bit-only run in the 100 steps after the switch |\n|---|---|---|---|\n";
        nlohmann::json summary = {{"steps", s.steps}, {"pre_policy", s.pre}, {"policy", s.post}, {"d_model", s.model.d_model}, {"layers", s.model.layers},
                                  {"unigram_nats", unigram}};
        for (const auto& r : results) {
            const bool switched = !r.spec.fp_only && !r.spec.ternary_only;
            table << "| " << r.spec.name << " | " << fixed(r.final_val) << " | " << fixed(r.final_val / std::log(2.0))
                  << " | " << (switched ? fixed(r.spike) : "-") << " |\n";
            summary["final_val_loss"][r.spec.name] = r.final_val;
            if (switched) summary["spike"][r.spec.name] = r.spike;
        }
        table << "\nUnigram entropy of the corpus: " << fixed(unigram) << " nats/byte. " << s.steps
              << " steps per run, batch " << s.batch << ", context " << s.model.context << ", d_model "
              << s.model.d_model << ", " << s.model.layers << " layers, " << s.model.heads
              << " heads; phase-in T = " << s.phase_in << ", re-warm W = " << s.rewarm << " after a reset.\n";
        std::ofstream(std::filesystem::path(s.out) / "table.md") << table.str();
        std::ofstream(std::filesystem::path(s.out) / "loss_curves.svg") << svg_plot(results, s);
        std::ofstream curves(std::filesystem::path(s.out) / "curves.csv");
        curves << "run,step,train_loss,val_loss\n";
        for (const auto& r : results) {
            std::size_t v = 0;
            for (std::size_t i = 0; i < r.train_loss.size(); ++i) {
                curves << '"' << r.spec.name << "\"," << i + 1 << ',' << r.train_loss[i] << ',';
                if (v < r.val_curve.size() && r.val_curve[v].first == i + 1) curves << r.val_curve[v++].second;
                curves << '\n';
            }
        }
        std::cerr << table.str() << "wrote " << s.out << "/table.md, loss_curves.svg, curves.csv\n";
        std::cout << summary.dump() << std::endl;
        return 0;
    } catch (const std::exception& e) {
        std::cerr << "continual_qat: error: " << e.what() << "\n";
        return 1;
    }
}
