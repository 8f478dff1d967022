// mlp: trains a 784 -> hidden -> hidden -> 10 MLP on Fashion-MNIST (or any IDX copy of MNIST)
// in one of tern's policies, evaluates it, and saves/loads checkpoints.
//
//   mlp --policy absmean --epochs 5              # 1.58-bit weights, 8-bit activations
//   mlp --policy fp32 --save mlp.safetensors     # the full-precision reference
//   mlp --load mlp.safetensors --eval-only
//   mlp --policy absmean --switch-at 1000 --phase-in 200   # continual QAT: fp16, then 1.58-bit
//
// The last line of output is one JSON object with the results.
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>
#include <optional>

#include "common/cli.hpp"
#include "common/parallel.hpp"  // mpirun -np N: data-parallel (TERN_WITH_MPI)
#include "tern/tern.hpp"
#include "tern/deploy/packed_model.hpp"  // --export

namespace {

struct settings {
    std::string policy, pre_policy, data_dir, save, load, log, lr_schedule;
    std::string export_path;  // --export: packed inference model written after training
    std::size_t hidden = 256, epochs = 5, batch = 128, threads = 2;
    double lr = 1e-3, wd = 0.0;
    std::uint64_t seed = 1;
    bool eval_only = false, quiet = false;
    tern::continual_schedule schedule;  // switch_at == 0: no pre-training phase
};

/// The model, written once for every policy.
template <class P>
auto make_mlp(std::size_t hidden) {
    return tern::sequential{tern::flatten{},
                            tern::linear<P>(784, hidden), tern::relu{},
                            tern::linear<P>(hidden, hidden), tern::relu{},
                            tern::linear<P>(hidden, 10)};
}

/// Fashion-MNIST's pixel statistics: standardizing helps the fp policies (BitLinear normalizes anyway).
void standardize(tern::tensor& images) {
    for (auto& v : images) v = (v - 0.2860f) / 0.3530f;
}

/// Trains in policy Pre until --switch-at, then converts to Post (continual QAT); Pre == Post
/// (or no --switch-at) trains in one policy throughout.
template <class Pre, class Post>
nlohmann::json run(const settings& s) {
    tern::manual_seed(s.seed);
    using post_model = decltype(tern::convert<Post>(make_mlp<Pre>(1)));
    const bool switching = s.schedule.switch_at > 0;
    auto pre = make_mlp<Pre>(s.hidden);
    std::optional<post_model> post;
    tern::adamw optimizer(pre.parameters(), {.lr = float(s.lr), .weight_decay = float(s.wd)});
    const auto enter_post = [&] {  // the switch: same parameters, new policy, optimizer kept or reset
        post.emplace(tern::convert<Post>(pre));
        tern::switch_optimizer(optimizer, post->parameters(), switching && s.schedule.reset_optimizer);
    };
    if (!switching) enter_post();
    std::size_t start_epoch = 0, step = 0;

    if (!s.load.empty()) {
        const auto file = tern::io::load_safetensors(s.load);
        const bool with_optimizer = !s.eval_only && file.metadata.count("optimizer");
        const std::string file_policy = file.metadata.count("tern.policy") ? file.metadata.at("tern.policy") : "";
        if (!post && file_policy == Post::name) enter_post();  // the run was saved after its switch
        if (post) tern::restore_model(file, *post, s.load);
        else tern::restore_model(file, pre, s.load);
        if (with_optimizer) {
            optimizer.load_state(file);
            start_epoch = std::stoul(file.metadata.count("epoch") ? file.metadata.at("epoch") : "0");
            step = std::stoul(file.metadata.count("step") ? file.metadata.at("step") : "0");
        }
        std::cerr << "loaded " << s.load << " (" << file.metadata.at("tern.model") << ")"
                  << (with_optimizer ? ", resuming after epoch " + std::to_string(start_epoch) : "") << "\n";
    }

    tern_examples::world::get().sync(optimizer);  // rank 0's model and optimizer state everywhere
    auto test = tern::data::load_mnist_dir(s.data_dir, false);
    standardize(test.inputs);
    const std::size_t params = tern::count_parameters(pre.parameters());
    std::cerr << "model: " << (post ? post->describe() : pre.describe()) << "\n";
    if (switching)
        std::cerr << "continual QAT: " << Pre::name << " until step " << s.schedule.switch_at << ", then " << Post::name
                  << " (phase-in " << s.schedule.phase_in << " steps, optimizer "
                  << (s.schedule.reset_optimizer ? "reset, re-warm " + std::to_string(s.schedule.rewarm) : "kept")
                  << ")\n";
    std::cerr << "parameters: " << params << ", threads: " << tern::num_threads() << "\n";

    std::optional<tern::csv_log> log;
    if (!s.log.empty())
        log.emplace(s.log, std::vector<std::string>{"epoch", "step", "train_loss", "train_accuracy", "test_loss",
                                                    "test_accuracy", "samples_per_s", "seconds"});
    const auto evaluate = [&] { return post ? tern::evaluate_classifier(*post, test, 10)
                                            : tern::evaluate_classifier(pre, test, 10); };
    double train_seconds = 0, trained_samples = 0;
    if (!s.eval_only) {
        auto train = tern::data::load_mnist_dir(s.data_dir, true);
        standardize(train.inputs);
        std::cerr << "data: " << train.size() << " training and " << test.size() << " test images from "
                  << s.data_dir << "\n";
        tern::softmax_cross_entropy loss;
        tern::data::batch_iterator batches(train, {.batch_size = s.batch, .seed = s.seed});
        const std::size_t total_steps = s.epochs * batches.batches_per_epoch();
        const tern::warmup_cosine cosine(float(s.lr), 0, total_steps);
        const auto before_step = [&](std::size_t at) {
            const float base = s.lr_schedule == "cosine" ? cosine(at) : float(s.lr);
            optimizer.set_learning_rate(base * s.schedule.lr_factor(at));
            if (post) post->set_quant_strength(s.schedule.lambda(at));
        };
        for (std::size_t epoch = start_epoch; epoch < s.epochs; ++epoch) {
            batches.begin_epoch(epoch);
            tern::train_options options{.title = "epoch " + std::to_string(epoch + 1) + "/" + std::to_string(s.epochs),
                                        .show_progress = !s.quiet,
                                        .before_step = before_step};
            tern_examples::world::get().attach(options);
            // An epoch may hold the switch: train the pre model up to it, then the converted model.
            tern::epoch_stats stats;
            const auto add = [&](const tern::epoch_stats& part) {
                const double n = double(stats.steps + part.steps);
                if (n > 0) {
                    stats.loss = (stats.loss * double(stats.steps) + part.loss * double(part.steps)) / n;
                    stats.accuracy = (stats.accuracy * double(stats.steps) + part.accuracy * double(part.steps)) / n;
                }
                stats.steps += part.steps;
                stats.seconds += part.seconds;
            };
            if (!post) {
                options.stop_at = s.schedule.switch_at;
                add(tern::train_classifier_epoch(pre, loss, optimizer, batches, step, options));
                options.stop_at = static_cast<std::size_t>(-1);
                if (step >= s.schedule.switch_at) {
                    enter_post();
                    std::cerr << "step " << step << ": switched to " << Post::name << "\n";
                }
            }
            if (post) add(tern::train_classifier_epoch(*post, loss, optimizer, batches, step, options));
            stats.samples_per_s = stats.seconds > 0 ? double(train.size()) / stats.seconds : 0.0;
            const auto eval = evaluate();
            train_seconds += stats.seconds;
            trained_samples += double(train.size());
            std::fprintf(stderr, "epoch %zu: train loss %.4f acc %.2f%% | test loss %.4f acc %.2f%% | %.0f samples/s\n",
                         epoch + 1, stats.loss, 100 * stats.accuracy, eval.loss, 100 * eval.accuracy,
                         stats.samples_per_s);
            if (log) log->row({double(epoch + 1), double(step), stats.loss, stats.accuracy, eval.loss, eval.accuracy,
                               stats.samples_per_s, stats.seconds});
            if (!s.save.empty()) {
                const std::map<std::string, std::string> where = {{"epoch", std::to_string(epoch + 1)},
                                                                  {"step", std::to_string(step)}};
                if (post) tern::save_checkpoint(s.save, *post, &optimizer, where);
                else tern::save_checkpoint(s.save, pre, &optimizer, where);
            }
        }
    }
    const auto eval = evaluate();
    if (!s.export_path.empty()) {  // packed model for `infer` (fp policies export full-precision layers)
        const tern::packed_save_options how{.test_inputs = tern::data::gather_rows(test.inputs, test.labels, {0, 1, 2, 3}).inputs,
                                            .metadata = {{"input.mean", "0.2860"}, {"input.std", "0.3530"}}};
        if (post) tern::save_packed_model(s.export_path, *post, how);
        else tern::save_packed_model(s.export_path, pre, how);
        std::cerr << "exported packed model to " << s.export_path << "\n";
    }
    if (!s.quiet) std::cerr << "confusion matrix (test set):\n" << eval.confusion.to_string();
    nlohmann::json result = {{"policy", std::string(Post::name)},
                             {"hidden", s.hidden},
                             {"epochs", s.epochs},
                             {"params", params},
                             {"threads", tern::num_threads()},
                             {"test_accuracy", eval.accuracy},
                             {"test_loss", eval.loss},
                             {"train_samples_per_s", train_seconds > 0 ? trained_samples / train_seconds : 0.0}};
    if (switching) {
        result["pre_policy"] = std::string(Pre::name);
        result["switch_at"] = s.schedule.switch_at;
    }
    return result;
}

template <class Post>
nlohmann::json run_with_pre(const settings& s) {
    if (s.schedule.switch_at == 0) return run<Post, Post>(s);
    if (s.pre_policy == "fp32") return run<tern::fp32, Post>(s);
    return run<tern::fp16, Post>(s);
}

}  // namespace

int main(int argc, char** argv) {
    tern_examples::world world(argc, argv);
    try {
        tern_examples::cli args(argc, argv,
                                "Trains a 784-hidden-hidden-10 MLP on Fashion-MNIST (IDX files) in a tern policy.");
        settings s;
        s.policy = args.choice("policy", "absmean", {"fp32", "fp16", "absmean", "absmedian"}, "weight policy");
        s.data_dir = args.value("data", "/usr/share/datasets/fashion-mnist", "directory with the IDX files");
        s.hidden = std::size_t(args.integer("hidden", 256, 1, 1 << 16, "hidden width"));
        s.epochs = std::size_t(args.integer("epochs", 5, 0, 100000, "training epochs"));
        s.batch = std::size_t(args.integer("batch", 128, 1, 1 << 20, "batch size"));
        s.lr = args.real("lr", 1e-3, 0.0, 10.0, "AdamW learning rate");
        s.lr_schedule = args.choice("schedule", "cosine", {"cosine", "constant"},
                                    "learning-rate schedule over all epochs (cosine decays to 0)");
        s.wd = args.real("wd", 0.0, 0.0, 10.0, "AdamW decoupled weight decay (not on biases)");
        s.threads = std::size_t(args.integer("threads", 2, 1, 1024, "threads"));
        s.seed = std::uint64_t(args.integer("seed", 1, 0, 1L << 62, "random seed"));
        s.save = args.value("save", "", "checkpoint file to write after every epoch (safetensors)");
        s.load = args.value("load", "", "checkpoint to start from (resumes training when it has optimizer state)");
        s.eval_only = args.flag("eval-only", "only evaluate (use with --load)");
        s.log = args.value("log", "", "CSV file for the training curves");
        s.export_path = args.value("export", "", "packed model file (tern-packed-3) to write after training, for infer");
        s.quiet = args.flag("quiet", "no progress bar or confusion matrix");
        s.schedule.switch_at = std::size_t(args.integer(
            "switch-at", 0, 0, 1L << 40, "continual QAT: train in --pre-policy until this step, then in --policy"));
        s.pre_policy = args.choice("pre-policy", "fp16", {"fp16", "fp32"}, "policy before --switch-at");
        s.schedule.phase_in = std::size_t(args.integer("phase-in", 0, 0, 1L << 40, "steps of tanh quantization phase-in after the switch (0: hard switch)"));
        s.schedule.reset_optimizer = args.flag("reset-optimizer", "reset Adam's moments at the switch (default: keep them)");
        s.schedule.rewarm = std::size_t(args.integer("rewarm", 0, 0, 1L << 40, "with --reset-optimizer: re-warm the learning rate over this many steps"));
        if (!args.finish()) return 0;
        tern::detail::require(s.schedule.switch_at == 0 || s.policy == "absmean" || s.policy == "absmedian",
                              "--switch-at converts to a ternary --policy (absmean or absmedian), got --policy ",
                              s.policy);
        tern::detail::require(s.schedule.rewarm == 0 || s.schedule.reset_optimizer,
                              "--rewarm only applies with --reset-optimizer (a kept optimizer needs no re-warm)");
        tern::set_num_threads(s.threads);
        world.root_only(s.save, s.log, s.export_path);

        nlohmann::json result;
        if (s.policy == "fp32") result = run<tern::fp32, tern::fp32>(s);
        else if (s.policy == "fp16") result = run<tern::fp16, tern::fp16>(s);
        else if (s.policy == "absmean") result = run_with_pre<tern::absmean_ternary>(s);
        else result = run_with_pre<tern::absmedian_ternary>(s);
        std::cout << result.dump() << std::endl;
        return 0;
    } catch (const std::exception& e) {
        return world.fail("mlp", e);
    }
}
