// mlp: trains a 784 -> hidden -> hidden -> 10 MLP on Fashion-MNIST (or any IDX copy of MNIST)
// in one of tern's policies, evaluates it, and saves/loads checkpoints.
//
//   mlp --policy absmean --epochs 5              # 1.58-bit weights, 8-bit activations
//   mlp --policy fp32 --save mlp.safetensors     # the full-precision reference
//   mlp --load mlp.safetensors --eval-only
//
// The last line of output is one JSON object with the results.
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>
#include <optional>

#include "common/cli.hpp"
#include "tern/tern.hpp"

namespace {

struct settings {
    std::string policy, data_dir, save, load, log;
    std::size_t hidden = 256, epochs = 5, batch = 128, threads = 2;
    double lr = 1e-3, wd = 0.0;
    std::uint64_t seed = 1;
    bool eval_only = false, quiet = false;
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

template <class P>
nlohmann::json run(const settings& s) {
    tern::manual_seed(s.seed);
    auto model = make_mlp<P>(s.hidden);
    tern::adamw optimizer(model.parameters(), {.lr = float(s.lr), .weight_decay = float(s.wd)});
    std::size_t start_epoch = 0, step = 0;

    if (!s.load.empty()) {
        const bool with_optimizer = !s.eval_only && tern::io::load_safetensors(s.load).metadata.count("optimizer");
        const auto meta = tern::load_checkpoint(s.load, model, with_optimizer ? &optimizer : nullptr);
        if (with_optimizer) {
            start_epoch = std::stoul(meta.count("epoch") ? meta.at("epoch") : "0");
            step = optimizer.steps();
        }
        std::cerr << "loaded " << s.load << " (" << meta.at("tern.model") << ")"
                  << (with_optimizer ? ", resuming after epoch " + std::to_string(start_epoch) : "") << "\n";
    }

    auto test = tern::data::load_mnist_dir(s.data_dir, false);
    standardize(test.inputs);
    const std::size_t params = tern::count_parameters(model.parameters());
    std::cerr << "model: " << model.describe() << "\n"
              << "parameters: " << params << ", threads: " << tern::num_threads() << "\n";

    std::optional<tern::csv_log> log;
    if (!s.log.empty())
        log.emplace(s.log, std::vector<std::string>{"epoch", "step", "train_loss", "train_accuracy", "test_loss",
                                                    "test_accuracy", "samples_per_s", "seconds"});
    double samples_per_s = 0, train_seconds = 0;
    std::size_t trained_samples = 0;
    if (!s.eval_only) {
        auto train = tern::data::load_mnist_dir(s.data_dir, true);
        standardize(train.inputs);
        std::cerr << "data: " << train.size() << " training and " << test.size() << " test images from "
                  << s.data_dir << "\n";
        tern::softmax_cross_entropy loss;
        tern::data::batch_iterator batches(train, {.batch_size = s.batch, .seed = s.seed});
        for (std::size_t epoch = start_epoch; epoch < s.epochs; ++epoch) {
            batches.begin_epoch(epoch);
            const auto stats = tern::train_classifier_epoch(
                model, loss, optimizer, batches, step,
                {.title = "epoch " + std::to_string(epoch + 1) + "/" + std::to_string(s.epochs),
                 .show_progress = !s.quiet});
            const auto eval = tern::evaluate_classifier(model, test, 10);
            train_seconds += stats.seconds;
            trained_samples += train.size();
            std::fprintf(stderr, "epoch %zu: train loss %.4f acc %.2f%% | test loss %.4f acc %.2f%% | %.0f samples/s\n",
                         epoch + 1, stats.loss, 100 * stats.accuracy, eval.loss, 100 * eval.accuracy,
                         stats.samples_per_s);
            if (log) log->row({double(epoch + 1), double(step), stats.loss, stats.accuracy, eval.loss, eval.accuracy,
                               stats.samples_per_s, stats.seconds});
            if (!s.save.empty())
                tern::save_checkpoint(s.save, model, &optimizer, {{"epoch", std::to_string(epoch + 1)}});
        }
        samples_per_s = train_seconds > 0 ? double(trained_samples) / train_seconds : 0.0;
    }
    const auto eval = tern::evaluate_classifier(model, test, 10);
    if (!s.quiet) std::cerr << "confusion matrix (test set):\n" << eval.confusion.to_string();
    return {{"policy", std::string(P::name)},
            {"hidden", s.hidden},
            {"epochs", s.epochs},
            {"params", params},
            {"threads", tern::num_threads()},
            {"test_accuracy", eval.accuracy},
            {"test_loss", eval.loss},
            {"train_samples_per_s", samples_per_s}};
}

}  // namespace

int main(int argc, char** argv) {
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
        s.wd = args.real("wd", 0.0, 0.0, 10.0, "AdamW decoupled weight decay (not on biases)");
        s.threads = std::size_t(args.integer("threads", 2, 1, 1024, "threads"));
        s.seed = std::uint64_t(args.integer("seed", 1, 0, 1L << 62, "random seed"));
        s.save = args.value("save", "", "checkpoint file to write after every epoch (safetensors)");
        s.load = args.value("load", "", "checkpoint to start from (resumes training when it has optimizer state)");
        s.eval_only = args.flag("eval-only", "only evaluate (use with --load)");
        s.log = args.value("log", "", "CSV file for the training curves");
        s.quiet = args.flag("quiet", "no progress bar or confusion matrix");
        if (!args.finish()) return 0;
        tern::set_num_threads(s.threads);

        nlohmann::json result;
        if (s.policy == "fp32") result = run<tern::fp32>(s);
        else if (s.policy == "fp16") result = run<tern::fp16>(s);
        else if (s.policy == "absmean") result = run<tern::absmean_ternary>(s);
        else result = run<tern::absmedian_ternary>(s);
        std::cout << result.dump() << std::endl;
        return 0;
    } catch (const std::exception& e) {
        std::cerr << "mlp: error: " << e.what() << "\n";
        return 1;
    }
}
