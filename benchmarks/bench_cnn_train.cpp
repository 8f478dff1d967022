// bench_cnn_train: training throughput of the small Fashion-MNIST CNN in tern, the same model,
// optimizer, batch size and step count as `benchmarks/pytorch_baselines.py cnn` (see
// benchmarks/cnn_vs_pytorch.sh, which runs both in one go and prints the ratios).
//
//   bench_cnn_train --policy absmean --threads 2 --steps 100 [--warmup 5] [--batch 128] [--repeats 3]
//
// Model: conv3x3(1->32)+ReLU+maxpool2, conv3x3(32->64)+ReLU+maxpool2, flatten, linear(3136->128)+ReLU,
// linear(128->10), padding 1, biases everywhere; Adam lr 1e-3. Each timed run starts from a fresh
// seeded model after untimed warm-up steps on a throw-away model; the median run is reported as
// one JSON line (samples_per_s, seconds, final_loss).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>
#include <vector>

#include "../examples/common/cli.hpp"
#include "tern/layers/conv2d.hpp"
#include "tern/layers/pooling.hpp"
#include "tern/tern.hpp"
#include "bench_machine.hpp"

namespace {

template <class P>
auto make_cnn() {
    return tern::sequential{tern::conv2d<P>(1, 32, 3, {.padding = 1}, true),
                            tern::relu{},
                            tern::max_pool2d(2),
                            tern::conv2d<P>(32, 64, 3, {.padding = 1}, true),
                            tern::relu{},
                            tern::max_pool2d(2),
                            tern::flatten{},
                            tern::linear<P>(64 * 7 * 7, 128, true),
                            tern::relu{},
                            tern::linear<P>(128, 10, true)};
}

struct run_result {
    double seconds = 0;
    float final_loss = 0;
};

/// Trains a fresh model for @p steps full batches (reshuffling at each epoch end) and times it.
template <class P>
run_result train(const tern::data::dataset& data, std::size_t batch, std::size_t steps, std::uint64_t seed) {
    tern::manual_seed(seed);
    auto model = make_cnn<P>();
    tern::adam optimizer(model.parameters(), {.lr = 1e-3f});
    tern::softmax_cross_entropy loss;
    tern::data::batch_iterator batches(data, {.batch_size = batch, .seed = seed, .drop_last = true});
    const auto params = model.parameters();
    std::uint64_t epoch = 0;
    tern::data::batch b;
    run_result r;
    const auto start = std::chrono::steady_clock::now();
    for (std::size_t step = 0; step < steps; ++step) {
        if (!batches.next(b)) {
            batches.begin_epoch(++epoch);
            batches.next(b);
        }
        tern::zero_gradients(params);
        r.final_loss = loss.forward(model.forward(b.inputs), b.labels);
        tern::backward_parameters(model, loss.backward());
        optimizer.step();
    }
    r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    return r;
}

template <class P>
nlohmann::json bench(const tern::data::dataset& data, std::size_t batch, std::size_t steps, std::size_t warmup,
                     std::size_t repeats) {
    if (warmup) train<P>(data, batch, warmup, 1235);
    std::vector<run_result> runs;
    for (std::size_t r = 0; r < repeats; ++r) runs.push_back(train<P>(data, batch, steps, 1234));
    std::sort(runs.begin(), runs.end(), [](const run_result& a, const run_result& b) { return a.seconds < b.seconds; });
    const run_result& median = runs[runs.size() / 2];
    std::vector<double> rates;
    for (const auto& r : runs) rates.push_back(double(batch * steps) / r.seconds);
    return {{"framework", "tern"},
            {"model", "cnn"},
            {"policy", std::string(P::name)},
            {"threads", tern::num_threads()},
            {"steps", steps},
            {"batch", batch},
            {"repeats", repeats},
            {"seconds", median.seconds},
            {"samples_per_s", double(batch * steps) / median.seconds},
            {"samples_per_s_all", rates},
            {"final_loss", median.final_loss}};
}

}  // namespace

int main(int argc, char** argv) {
    try {
        tern_examples::cli args(argc, argv, "Training throughput of the small Fashion-MNIST CNN (tern side of "
                                            "benchmarks/cnn_vs_pytorch.sh).");
        const std::string policy =
            args.choice("policy", "fp32", {"fp32", "fp16", "absmean", "absmedian"}, "weight policy");
        const auto threads = std::size_t(args.integer("threads", 2, 1, 1024, "threads"));
        const auto steps = std::size_t(args.integer("steps", 100, 1, 1 << 30, "timed optimizer steps per run"));
        const auto warmup = std::size_t(args.integer("warmup", 5, 0, 1 << 30, "untimed steps before timing"));
        const auto batch = std::size_t(args.integer("batch", 128, 1, 1 << 20, "batch size"));
        const auto repeats = std::size_t(args.integer("repeats", 1, 1, 100, "timed runs (the median is reported)"));
        const std::string dir = args.value("data", "/usr/share/datasets/fashion-mnist", "Fashion-MNIST IDX directory");
        if (!args.finish()) return 0;
        tern_bench::print_machine("bench_cnn_train");
        tern::set_num_threads(threads);
        auto data = tern::data::load_mnist_dir(dir, true);
        const std::size_t n = data.size();
        data.inputs.reshape({n, std::size_t(1), std::size_t(28), std::size_t(28)});
        nlohmann::json result;
        if (policy == "fp32") result = bench<tern::fp32>(data, batch, steps, warmup, repeats);
        else if (policy == "fp16") result = bench<tern::fp16>(data, batch, steps, warmup, repeats);
        else if (policy == "absmean") result = bench<tern::absmean_ternary>(data, batch, steps, warmup, repeats);
        else result = bench<tern::absmedian_ternary>(data, batch, steps, warmup, repeats);
        std::cout << result.dump() << std::endl;
        return 0;
    } catch (const std::exception& e) {
        std::cerr << "bench_cnn_train: error: " << e.what() << "\n";
        return 1;
    }
}
