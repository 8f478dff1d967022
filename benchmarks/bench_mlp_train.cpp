// bench_mlp_train: training speed of the MLP 784-256-256-10 (batch 128, Adam) on Fashion-MNIST,
// one epoch per policy, plus the cost of the median weight scale against a whole training step.
// Ratios printed here are against tern's own fp32 step measured in the same run; the PyTorch
// comparison is benchmarks/mlp_vs_pytorch.sh, which runs this program and PyTorch side by side.
//
//   bench_mlp_train [--threads 2] [--steps 468] [--policy all|fp32|fp16|absmean|absmedian]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "tern/tern.hpp"
#include "bench_machine.hpp"

namespace {

using clock_type = std::chrono::steady_clock;

template <class P>
auto make_mlp(std::size_t hidden) {
    return tern::sequential{tern::linear<P>(784, hidden), tern::relu{}, tern::linear<P>(hidden, hidden),
                            tern::relu{}, tern::linear<P>(hidden, 10)};
}

struct run_result {
    double seconds = 0, samples_per_s = 0, final_loss = 0;
    std::size_t steps = 0;
};

template <class P>
run_result train_steps(const tern::data::dataset& train, std::size_t steps, std::size_t warmup) {
    tern::manual_seed(1);
    auto model = make_mlp<P>(256);
    tern::adam opt(model.parameters(), {.lr = 1e-3f});
    tern::softmax_cross_entropy loss;
    tern::data::batch_iterator batches(train, {.batch_size = 128, .seed = 1, .drop_last = true});
    const auto params = model.parameters();
    tern::data::batch b;
    std::uint64_t epoch = 0;
    const auto one_step = [&](float& value) {
        if (!batches.next(b)) {
            batches.begin_epoch(++epoch);
            batches.next(b);
        }
        tern::zero_gradients(params);
        const tern::tensor logits = model.forward(b.inputs);
        value = loss.forward(logits, b.labels);
        tern::backward_parameters(model, loss.backward());
        opt.step();
    };
    float value = 0;
    for (std::size_t i = 0; i < warmup; ++i) one_step(value);
    const auto start = clock_type::now();
    for (std::size_t i = 0; i < steps; ++i) one_step(value);
    run_result r;
    r.seconds = std::chrono::duration<double>(clock_type::now() - start).count();
    r.steps = steps;
    r.samples_per_s = double(steps * 128) / r.seconds;
    r.final_loss = value;
    return r;
}

/// Median time of fn over several repetitions, in seconds.
template <class Fn>
double median_seconds(Fn&& fn, int reps) {
    std::vector<double> t;
    for (int r = 0; r < reps; ++r) {
        const auto start = clock_type::now();
        fn();
        t.push_back(std::chrono::duration<double>(clock_type::now() - start).count());
    }
    std::sort(t.begin(), t.end());
    return t[t.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
    std::size_t threads = 2, steps = 468;
    std::string only = "all", data_dir = "/usr/share/datasets/fashion-mnist";
    for (int i = 1; i + 1 < argc; i += 2) {
        const std::string flag = argv[i];
        if (flag == "--threads") threads = std::stoul(argv[i + 1]);
        else if (flag == "--steps") steps = std::stoul(argv[i + 1]);
        else if (flag == "--policy") only = argv[i + 1];
        else if (flag == "--data") data_dir = argv[i + 1];
        else {
            std::fprintf(stderr, "bench_mlp_train: unknown flag %s\n", flag.c_str());
            return 2;
        }
    }
    try {
        tern::set_num_threads(threads);
        tern_bench::print_machine("bench_mlp_train");
        auto train = tern::data::load_mnist_dir(data_dir, true);
        std::printf("MLP 784-256-256-10, batch 128, Adam, %zu steps after 10 warm-up steps, %zu thread(s)\n", steps,
                    threads);
        std::printf("%-10s %10s %14s %12s\n", "policy", "seconds", "samples/s", "ms/step");
        double fp32_step = 0;
        std::string json = "{\"threads\":" + std::to_string(threads) + ",\"steps\":" + std::to_string(steps);
        const auto report = [&](const char* name, const run_result& r) {
            const double ms = 1e3 * r.seconds / double(r.steps);
            if (std::string(name) == "fp32") fp32_step = ms;
            std::printf("%-10s %10.2f %14.0f %12.3f", name, r.seconds, r.samples_per_s, ms);
            if (fp32_step > 0 && std::string(name) != "fp32") std::printf("   %.2fx tern fp32 step", ms / fp32_step);
            std::printf("\n");
            json += ",\"" + std::string(name) + "_samples_per_s\":" + std::to_string(r.samples_per_s);
            if (fp32_step > 0 && std::string(name) != "fp32")
                json += ",\"" + std::string(name) + "_step_vs_fp32\":" + std::to_string(ms / fp32_step);
        };
        if (only == "all" || only == "fp32") report("fp32", train_steps<tern::fp32>(train, steps, 10));
        if (only == "all" || only == "fp16") report("fp16", train_steps<tern::fp16>(train, steps, 10));
        if (only == "all" || only == "absmean") report("absmean", train_steps<tern::absmean_ternary>(train, steps, 10));
        if (only == "all" || only == "absmedian")
            report("absmedian", train_steps<tern::absmedian_ternary>(train, steps, 10));

        // The median scale of the 784x256 layer against one absmedian training step.
        if (only == "all" || only == "absmedian") {
            std::vector<float> w(784 * 256);
            tern::manual_seed(2);
            tern::detail::fill_uniform(w.data(), w.size(), 1.0f / 28.0f);
            volatile float sink = 0;
            const double median = median_seconds(
                [&] {
                    for (int i = 0; i < 100; ++i)
                        sink = sink + tern::weight_scale_value<tern::absmedian_ternary>(w.data(), w.size());
                },
                7) / 100.0;
            std::vector<float> a(w.size());  // allocated once, as tern's selection keeps its scratch
            const double sort_based = median_seconds(
                [&] {
                    for (std::size_t i = 0; i < w.size(); ++i) a[i] = std::fabs(w[i]);
                    std::nth_element(a.begin(), a.begin() + long((a.size() - 1) / 2), a.end());
                    sink = sink + a[(a.size() - 1) / 2];
                },
                7);
            const auto step = train_steps<tern::absmedian_ternary>(train, 50, 5);
            const double step_s = step.seconds / double(step.steps);
            std::printf("median |W| of 784x256: %.1f us (std::nth_element on a copy: %.1f us, %.1fx slower); "
                        "%.1f%% of a %.2f ms absmedian training step\n",
                        1e6 * median, 1e6 * sort_based, sort_based / median, 100 * median / step_s, 1e3 * step_s);
            json += ",\"median_us\":" + std::to_string(1e6 * median) +
                    ",\"median_fraction_of_step\":" + std::to_string(median / step_s);
        }
        std::printf("%s}\n", json.c_str());
    } catch (const std::exception& e) {
        std::fprintf(stderr, "bench_mlp_train: %s\n", e.what());
        return 1;
    }
}
