// cnn: trains a small convolutional network (or a small ResNet) on Fashion-MNIST, CIFAR-10 or
// CIFAR-100 in one of tern's policies, evaluates it, and saves/loads checkpoints.
//
//   cnn --policy absmean --epochs 5                       # 1.58-bit convolutions and linears
//   cnn --policy fp32 --save cnn.safetensors              # the full-precision reference
//   cnn --policy absmedian --first-layer fp               # keep the first convolution in fp32
//   cnn --dataset cifar10 --data ~/cifar-10-batches-bin --model resnet --epochs 30
//   cnn --load cnn.safetensors --eval-only
//
// Models (every convolution and linear layer follows the policy, except the first convolution
// with --first-layer fp; pooling and batch norm stay full precision):
//   small:  conv3x3(C->32)+ReLU+maxpool2, conv3x3(32->64)+ReLU+maxpool2, flatten,
//           linear(64*(H/4)*(W/4)->128)+ReLU, linear(128->classes)   (padding 1, with biases;
//           the architecture of benchmarks/pytorch_baselines.py cnn)
//   resnet: conv3x3(C->16)+BN+ReLU, a basic block at 16 channels, blocks of 32 and 64 channels
//           with stride 2 (1x1 convolution + BN shortcuts), global average pooling, linear(64->classes).
//
// The last line of output is one JSON object with the results.
#include <chrono>
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>
#include <optional>

#include "common/cli.hpp"
#include "common/parallel.hpp"  // mpirun -np N: data-parallel (TERN_WITH_MPI)
#include "tern/data/augment.hpp"
#include "tern/deploy/packed_model.hpp"   // --export
#include "tern/deploy/packed_model.hpp"  // --export
#include "tern/layers/batch_norm.hpp"
#include "tern/layers/conv2d.hpp"
#include "tern/layers/pooling.hpp"
#include "tern/tern.hpp"

namespace {

struct settings {
    std::string policy, dataset, data_dir, model, first_layer, save, load, log, schedule;
    std::string export_path;  // --export: packed inference model written after training
    std::size_t epochs = 5, batch = 128, threads = 2, crop = 0;
    double lr = 1e-3, wd = 0.0;
    std::uint64_t seed = 1;
    bool flip = false, eval_only = false, quiet = false;
};

struct image_data {
    tern::data::dataset train, test;
    std::size_t channels = 1, side = 28, classes = 10;
};

/// The small CNN, written once for every policy; First is the first convolution's type.
template <class P, class First>
auto make_small(std::size_t channels, std::size_t side, std::size_t classes) {
    const std::size_t flat = 64 * (side / 4) * (side / 4);
    return tern::sequential{First(channels, 32, 3, tern::conv2d_options{.padding = 1}, true),
                            tern::relu{},
                            tern::max_pool2d(2),
                            tern::conv2d<P>(32, 64, 3, tern::conv2d_options{.padding = 1}, true),
                            tern::relu{},
                            tern::max_pool2d(2),
                            tern::flatten{},
                            tern::linear<P>(flat, 128, true),
                            tern::relu{},
                            tern::linear<P>(128, classes, true)};
}

/// A ResNet basic block that keeps the shape: x + BN(conv(ReLU(BN(conv(x))))).
template <class P>
auto basic_block(std::size_t c) {
    return tern::residual{tern::sequential{tern::conv2d<P>(c, c, 3, {.padding = 1}, false), tern::batch_norm2d(c),
                                           tern::relu{}, tern::conv2d<P>(c, c, 3, {.padding = 1}, false),
                                           tern::batch_norm2d(c)}};
}

/// A basic block that halves the resolution and changes the width, with a 1x1 convolution shortcut.
template <class P>
auto down_block(std::size_t in, std::size_t out) {
    return tern::residual{
        tern::sequential{tern::conv2d<P>(in, out, 3, {.stride = 2, .padding = 1}, false), tern::batch_norm2d(out),
                         tern::relu{}, tern::conv2d<P>(out, out, 3, {.padding = 1}, false), tern::batch_norm2d(out)},
        tern::sequential{tern::conv2d<P>(in, out, 1, {.stride = 2}, false), tern::batch_norm2d(out)}};
}

template <class P, class First>
auto make_resnet(std::size_t channels, std::size_t, std::size_t classes) {
    return tern::sequential{First(channels, 16, 3, tern::conv2d_options{.padding = 1}, false),
                            tern::batch_norm2d(16),
                            tern::relu{},
                            basic_block<P>(16),
                            tern::relu{},
                            down_block<P>(16, 32),
                            tern::relu{},
                            down_block<P>(32, 64),
                            tern::relu{},
                            tern::global_avg_pool2d{},
                            tern::linear<P>(64, classes, true)};
}

/// Standardizes channel c of every image with (mean[c], std[c]).
void standardize(tern::tensor& images, const std::vector<float>& mean, const std::vector<float>& stdev) {
    const std::size_t n = images.shape()[0], C = images.shape()[1], area = images.shape()[2] * images.shape()[3];
    float* p = images.data();
    for (std::size_t i = 0; i < n; ++i)
        for (std::size_t c = 0; c < C; ++c)
            for (std::size_t k = 0; k < area; ++k, ++p) *p = (*p - mean[c]) / stdev[c];
}

image_data load_data(const settings& s, bool need_train) {
    image_data d;
    const auto load = [&](bool train) -> tern::data::dataset {
        if (s.dataset == "fashion") {
            auto set = tern::data::load_mnist_dir(s.data_dir, train);
            const std::size_t n = set.size();
            tern::detail::require(set.inputs.size() == n * 784, "--data ", s.data_dir,
                                  ": expected 28x28 images, got shape ", tern::detail::shape_string(set.inputs.shape()));
            set.inputs.reshape({n, std::size_t(1), std::size_t(28), std::size_t(28)});
            standardize(set.inputs, {0.2860f}, {0.3530f});
            return set;
        }
        if (s.dataset == "cifar10") {
            auto set = tern::data::load_cifar10_dir(s.data_dir, train);
            standardize(set.inputs, {0.4914f, 0.4822f, 0.4465f}, {0.2470f, 0.2435f, 0.2616f});
            return set;
        }
        auto set = tern::data::load_cifar100_dir(s.data_dir, train, true);
        standardize(set.inputs, {0.5071f, 0.4865f, 0.4409f}, {0.2673f, 0.2564f, 0.2762f});
        return set;
    };
    d.test = load(false);
    if (need_train) d.train = load(true);
    d.channels = d.test.inputs.shape()[1];
    d.side = d.test.inputs.shape()[2];
    d.classes = s.dataset == "cifar100" ? 100 : 10;
    return d;
}

template <class P, class Model>
nlohmann::json train_and_evaluate(const settings& s, Model& model) {
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
    tern_examples::world::get().sync(optimizer);  // rank 0's model and optimizer state everywhere
    const image_data data = load_data(s, !s.eval_only);
    const std::size_t params = tern::count_parameters(model.parameters());
    std::cerr << "model: " << model.describe() << "\n"
              << "parameters: " << params << ", threads: " << tern::num_threads() << "\n";

    std::optional<tern::csv_log> log;
    if (!s.log.empty())
        log.emplace(s.log, std::vector<std::string>{"epoch", "step", "train_loss", "train_accuracy", "test_loss",
                                                    "test_accuracy", "samples_per_s", "seconds"});
    double samples_per_s = 0, train_seconds = 0;
    std::size_t trained_samples = 0;
    const std::size_t eval_batch = 256;
    if (!s.eval_only) {
        std::cerr << "data: " << data.train.size() << " training and " << data.test.size() << " test images ["
                  << data.channels << ", " << data.side << ", " << data.side << "] from " << s.data_dir << "\n";
        tern::softmax_cross_entropy loss;
        tern::data::batch_iterator batches(data.train, {.batch_size = s.batch, .seed = s.seed});
        tern::data::image_augmenter augment({.crop_padding = s.crop, .horizontal_flip = s.flip, .seed = s.seed});
        const std::size_t total_steps = s.epochs * batches.batches_per_epoch();
        const tern::warmup_cosine cosine(float(s.lr), 0, total_steps);
        const auto set_lr = [&](std::size_t st) {
            if (s.schedule == "cosine") optimizer.set_learning_rate(cosine(st));
        };
        for (std::size_t epoch = start_epoch; epoch < s.epochs; ++epoch) {
            batches.begin_epoch(epoch);
            augment.begin_epoch(epoch);
            tern::train_options options{
                .title = "epoch " + std::to_string(epoch + 1) + "/" + std::to_string(s.epochs),
                .show_progress = !s.quiet,
                .before_step = set_lr};
            tern_examples::world::get().attach(options);
            if (augment.active()) options.prepare_batch = [&](tern::data::batch& b) { augment.apply(b.inputs); };
            const auto stats = tern::train_classifier_epoch(model, loss, optimizer, batches, step, options);
            const auto eval = tern::evaluate_classifier(model, data.test, data.classes, eval_batch);
            train_seconds += stats.seconds;
            trained_samples += data.train.size();
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
    const auto eval = tern::evaluate_classifier(model, data.test, data.classes, eval_batch);
    if (!s.export_path.empty()) {  // packed model for `infer` (records the input shape [C, H, W])
        tern::packed_save_options how{.test_inputs = tern::data::gather_rows(data.test.inputs, data.test.labels, {0, 1, 2, 3}).inputs,
                                      .metadata = {}};
        if (s.dataset == "fashion") how.metadata = {{"input.mean", "0.2860"}, {"input.std", "0.3530"}};
        tern::save_packed_model(s.export_path, model, how);
        std::cerr << "exported packed model to " << s.export_path << "\n";
    }
    if (!s.quiet) std::cerr << "confusion matrix (test set):\n" << eval.confusion.to_string();
    return {{"policy", std::string(P::name)},
            {"model", s.model},
            {"dataset", s.dataset},
            {"first_layer", s.first_layer},
            {"model_policy", tern::policy_name(model)},
            {"epochs", s.epochs},
            {"params", params},
            {"threads", tern::num_threads()},
            {"test_accuracy", eval.accuracy},
            {"test_loss", eval.loss},
            {"train_samples_per_s", samples_per_s}};
}

template <class P, class First>
nlohmann::json run_with(const settings& s, std::size_t channels, std::size_t side, std::size_t classes) {
    tern::manual_seed(s.seed);
    if (s.model == "resnet") {
        auto model = make_resnet<P, First>(channels, side, classes);
        return train_and_evaluate<P>(s, model);
    }
    auto model = make_small<P, First>(channels, side, classes);
    return train_and_evaluate<P>(s, model);
}

template <class P>
nlohmann::json run(const settings& s) {
    const bool fashion = s.dataset == "fashion";
    const std::size_t channels = fashion ? 1 : 3, side = fashion ? 28 : 32, classes = s.dataset == "cifar100" ? 100 : 10;
    if (s.first_layer == "fp") return run_with<P, tern::pinned<tern::conv2d<tern::fp32>>>(s, channels, side, classes);
    return run_with<P, tern::conv2d<P>>(s, channels, side, classes);
}

}  // namespace

int main(int argc, char** argv) {
    tern_examples::world world(argc, argv);
    try {
        tern_examples::cli args(argc, argv,
                                "Trains a small CNN or ResNet on Fashion-MNIST (IDX) or CIFAR-10/100 (binary version) "
                                "in a tern policy.");
        settings s;
        s.policy = args.choice("policy", "absmean", {"fp32", "fp16", "absmean", "absmedian"}, "weight policy");
        s.dataset = args.choice("dataset", "fashion", {"fashion", "cifar10", "cifar100"}, "data set");
        s.data_dir = args.value("data", "", "data directory (default: /usr/share/datasets/fashion-mnist for fashion)");
        s.model = args.choice("model", "small", {"small", "resnet"}, "architecture");
        s.first_layer = args.choice("first-layer", "policy", {"policy", "fp"},
                                    "first convolution in the policy, or pinned to fp32");
        s.epochs = std::size_t(args.integer("epochs", 5, 0, 100000, "training epochs"));
        s.batch = std::size_t(args.integer("batch", 128, 1, 1 << 20, "batch size"));
        s.lr = args.real("lr", 1e-3, 0.0, 10.0, "AdamW learning rate");
        s.wd = args.real("wd", 0.0, 0.0, 10.0, "AdamW decoupled weight decay (not on biases and batch norm)");
        s.schedule = args.choice("schedule", "constant", {"constant", "cosine"},
                                 "learning rate: constant, or cosine decay to 0 over the run");
        const std::string augment = args.choice("augment", "auto", {"auto", "on", "off"},
                                                "random crop (padding 4 on CIFAR, 2 on Fashion-MNIST) and horizontal "
                                                "flip; auto = on for CIFAR, off for Fashion-MNIST");
        s.threads = std::size_t(args.integer("threads", 2, 1, 1024, "threads"));
        s.seed = std::uint64_t(args.integer("seed", 1, 0, 1L << 62, "random seed (initialization, order, augmentation)"));
        s.save = args.value("save", "", "checkpoint file to write after every epoch (safetensors)");
        s.load = args.value("load", "", "checkpoint to start from (resumes training when it has optimizer state)");
        s.eval_only = args.flag("eval-only", "only evaluate (use with --load)");
        s.log = args.value("log", "", "CSV file for the training curves");
        s.quiet = args.flag("quiet", "no progress bar or confusion matrix");
        s.export_path = args.value("export", "", "packed model file (tern-packed-3) to write after training, for infer");
        if (!args.finish()) return 0;
        if (s.data_dir.empty()) {
            tern::detail::require(s.dataset == "fashion", "--dataset ", s.dataset,
                                  " needs --data DIR (the folder of the binary version)");
            s.data_dir = "/usr/share/datasets/fashion-mnist";
        }
        const bool cifar = s.dataset != "fashion";
        const bool augment_on = augment == "on" || (augment == "auto" && cifar);
        s.crop = augment_on ? (cifar ? 4 : 2) : 0;
        s.flip = augment_on;
        tern::set_num_threads(s.threads);
        world.root_only(s.save, s.log, s.export_path);

        nlohmann::json result;
        if (s.policy == "fp32") result = run<tern::fp32>(s);
        else if (s.policy == "fp16") result = run<tern::fp16>(s);
        else if (s.policy == "absmean") result = run<tern::absmean_ternary>(s);
        else result = run<tern::absmedian_ternary>(s);
        result["augment"] = augment_on;
        std::cout << result.dump() << std::endl;
        return 0;
    } catch (const std::exception& e) {
        return world.fail("cnn", e);
    }
}
