// Packed ternary GEMV and GEMM at their best: the fastest of 60 single calls per figure, which a
// shared machine's preemption (another build on the same cores) can only slow, never speed up; two
// repeats per path. Complements bench_kernels' medians when the machine is loaded. Shape
// N = K = 2048, activation quantization excluded; GEMV in G weights/s, GEMM in G multiply-adds/s,
// and each path's GEMM T=64 / its own one-token GEMV from the same run.
//
// Usage: bench_packed_best [threads] [path ...]   (default: 1 thread, every available SIMD path)
// For a before/after comparison build it against the older headers as well, e.g.
//   git archive <commit> include | tar -x -C /tmp/old
//   g++ -O3 -std=gnu++20 -I/tmp/old/include benchmarks/bench_packed_best.cpp -o /tmp/best_old
// and alternate the two binaries.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include <tern/packed/activation_quant.hpp>
#include <tern/packed/ternary_gemm.hpp>
#include <tern/threads.hpp>
#include "bench_machine.hpp"

using namespace tern::packed;

namespace {

/// @p work / (fastest of 60 single calls of @p fn), after 3 warm-up calls, in G units per second.
template <class Fn>
double best_rate(Fn&& fn, double work) {
    using clock = std::chrono::steady_clock;
    for (int i = 0; i < 3; ++i) fn();
    double best = 1e30;
    for (int r = 0; r < 60; ++r) {
        const auto t0 = clock::now();
        fn();
        best = std::min(best, std::chrono::duration<double>(clock::now() - t0).count());
    }
    return work / best * 1e-9;
}

}  // namespace

int main(int argc, char** argv) {
    const std::size_t threads = argc > 1 ? std::size_t(std::max(1, std::atoi(argv[1]))) : 1;
    // Paths matched by name here (not kernel_path_from_name) so that older headers build it too.
    std::vector<kernel_path> paths;
    for (auto p : {kernel_path::avx2, kernel_path::avxvnni, kernel_path::avx512vnni}) {
        bool named = argc <= 2;
        for (int i = 2; i < argc; ++i) named = named || std::string(argv[i]) == kernel_path_name(p);
        if (named && kernel_path_available(p)) paths.push_back(p);
    }
    tern::set_num_threads(threads);
    tern_bench::print_machine("bench_packed_best");

    const std::size_t N = 2048, K = 2048;
    std::mt19937 rng(1);
    std::uniform_int_distribution<int> ternary(-1, 1);
    std::normal_distribution<float> normal;
    std::vector<std::int8_t> w(N * K);
    for (auto& v : w) v = static_cast<std::int8_t>(ternary(rng));
    const packed_matrix W(w, N, K);
    std::vector<float> x(64 * K);
    for (auto& v : x) v = normal(rng);
    const auto q1 = quantize_activations(x.data(), 1, K, true);
    const auto q8 = quantize_activations(x.data(), 8, K, true);
    const auto q64 = quantize_activations(x.data(), 64, K, true);
    std::vector<float> y(64 * N);
    const double nk = double(N) * double(K);
    std::printf("N = K = %zu, %zu thread(s), fastest of 60 calls\n", N, threads);
    std::printf("%-11s %6s %14s %14s %15s %13s\n", "path", "repeat", "GEMV G w/s", "GEMM8 G MAC/s", "GEMM64 G MAC/s",
                "GEMM64/GEMV");
    for (kernel_path p : paths)
        for (int rep = 1; rep <= 2; ++rep) {
            const double gemv = best_rate([&] { ternary_gemm(W, q1, 1.0f, y.data(), nullptr, p); }, nk);
            const double gemm8 = best_rate([&] { ternary_gemm(W, q8, 1.0f, y.data(), nullptr, p); }, nk * 8);
            const double gemm64 = best_rate([&] { ternary_gemm(W, q64, 1.0f, y.data(), nullptr, p); }, nk * 64);
            std::printf("%-11s %6d %14.1f %14.1f %15.1f %13.2f\n", kernel_path_name(p), rep, gemv, gemm8, gemm64,
                        gemm64 / gemv);
        }
    return 0;
}
