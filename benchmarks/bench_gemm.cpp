// sgemm throughput on the shapes tern trains with, against OpenBLAS measured in the same run.
// Prints GFLOP/s (2*M*N*K per call, median of several timed samples after a warm-up) for 1 and 2
// threads; the last line is one JSON object with the tern/OpenBLAS ratios.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "tern/kernels/gemm.hpp"
#include "tern/threads.hpp"
#include "bench_machine.hpp"

#if defined(TERN_BENCH_HAVE_BLAS)
extern "C" void cblas_sgemm(int order, int trans_a, int trans_b, int M, int N, int K, float alpha, const float* A,
                            int lda, const float* B, int ldb, float beta, float* C, int ldc);
// Weak: present in OpenBLAS, absent from other BLAS builds.
extern "C" __attribute__((weak)) void openblas_set_num_threads(int);
#endif

namespace {

struct bench_shape {
    const char* name;
    bool ta, tb;
    std::size_t M, N, K;
    float beta;
};

using clock_type = std::chrono::steady_clock;

// Seconds per call of fn() over `reps` calls.
template <class Fn>
double sample(Fn& fn, int reps) {
    const auto t0 = clock_type::now();
    for (int r = 0; r < reps; ++r) fn();
    return std::chrono::duration<double>(clock_type::now() - t0).count() / reps;
}

struct timings {
    double med_a, med_b, best_a, best_b;
};

// Median (and best) seconds per call of a() and of b(). Samples (each ~10 ms) alternate between the two so
// both see the same load on a shared machine; warm-up calls first (caches, pool threads, pages).
template <class FnA, class FnB>
timings median_seconds(FnA&& a, FnB&& b) {
    for (int i = 0; i < 3; ++i) {
        a();
        b();
    }
    const int reps_a = std::max(1, int(0.01 / std::max(sample(a, 1), 1e-9)));
    const int reps_b = std::max(1, int(0.01 / std::max(sample(b, 1), 1e-9)));
    std::vector<double> sa, sb;
    for (int s = 0; s < 9; ++s) {
        sa.push_back(sample(a, reps_a));
        sb.push_back(sample(b, reps_b));
    }
    std::sort(sa.begin(), sa.end());
    std::sort(sb.begin(), sb.end());
    return {sa[sa.size() / 2], sb[sb.size() / 2], sa.front(), sb.front()};
}

}  // namespace

int main() {
    tern_bench::print_machine("bench_gemm");
    const bench_shape shapes[] = {
        {"mlp_fwd_x.Wt", false, true, 128, 256, 784, 0.0f},   // x[128x784] . W^T, W is 256x784
        {"mlp_dW_gt.x", true, false, 256, 784, 128, 1.0f},    // dW += g^T . x
        {"mlp_dx_g.W", false, false, 128, 784, 256, 0.0f},    // dx = g . W
        {"hidden_fwd", false, true, 128, 256, 256, 0.0f},     // 256 -> 256 layer
        {"head_fwd", false, true, 128, 10, 256, 0.0f},        // 256 -> 10 layer
        {"conv_lm_4096", false, false, 4096, 128, 128, 0.0f},  // im2col / LM-like
        {"gemv_x.Wt", false, true, 1, 2048, 2048, 0.0f},      // one token
        {"gemv_x.W", false, false, 1, 2048, 2048, 0.0f},      // one token, W stored K x N
        {"square_512", false, false, 512, 512, 512, 0.0f},
    };
    std::mt19937 rng(7);
    std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
    std::printf("sgemm GFLOP/s: median of 9 alternating samples (best sample in brackets); tern path: %s\n",
                tern::kernels::detail::gemm_path_name(tern::kernels::detail::best_gemm_path()));
    std::printf("%-14s %5s %5s %5s %2s %2s %3s %9s %9s %7s   %9s %9s %7s\n", "shape", "M", "N", "K", "tA", "tB",
                "thr", "tern", "openblas", "ratio", "[tern", "openblas", "ratio]");
    struct result {
        double tern, blas, tern_best, blas_best;
    };
    constexpr std::size_t n_shapes = sizeof(shapes) / sizeof(shapes[0]);
    result results[2][n_shapes] = {};
    // All 1-thread runs first, then all 2-thread runs: one pool resize, and a table printed at the end.
    for (int threads : {1, 2}) {
        tern::set_num_threads(std::size_t(threads));
#if defined(TERN_BENCH_HAVE_BLAS)
        if (openblas_set_num_threads) openblas_set_num_threads(threads);
#endif
        for (std::size_t si = 0; si < n_shapes; ++si) {
            const bench_shape& s = shapes[si];
            const std::size_t lda = s.ta ? s.M : s.K, ldb = s.tb ? s.K : s.N, ldc = s.N;
            std::vector<float> A(s.M * s.K), B(s.K * s.N), C(s.M * s.N, 0.0f);
            for (auto& x : A) x = dist(rng);
            for (auto& x : B) x = dist(rng);
            const double flops = 2.0 * double(s.M) * double(s.N) * double(s.K);
            auto run_tern = [&] {
                tern::kernels::sgemm(s.ta, s.tb, s.M, s.N, s.K, 1.0f, A.data(), lda, B.data(), ldb, s.beta, C.data(),
                                     ldc);
            };
#if defined(TERN_BENCH_HAVE_BLAS)
            auto run_blas = [&] {
                cblas_sgemm(101, s.ta ? 112 : 111, s.tb ? 112 : 111, int(s.M), int(s.N), int(s.K), 1.0f, A.data(),
                            int(lda), B.data(), int(ldb), s.beta, C.data(), int(ldc));
            };
            const timings t = median_seconds(run_tern, run_blas);
#else
            timings t = median_seconds(run_tern, [] {});
            t.med_b = t.best_b = 0.0;
#endif
            auto gf = [&](double sec) { return sec > 0 ? flops / sec * 1e-9 : 0.0; };
            results[threads - 1][si] = {gf(t.med_a), gf(t.med_b), gf(t.best_a), gf(t.best_b)};
        }
    }
    std::string json = "{\"bench\":\"gemm\",\"ratios\":{";
    bool first = true;
    for (std::size_t si = 0; si < n_shapes; ++si) {
        const bench_shape& s = shapes[si];
        for (int threads : {1, 2}) {
            const result& r = results[threads - 1][si];
            const double ratio = r.blas > 0 ? r.tern / r.blas : 0.0;
            const double best_ratio = r.blas_best > 0 ? r.tern_best / r.blas_best : 0.0;
            std::printf("%-14s %5zu %5zu %5zu %2d %2d %3d %9.1f %9.1f %7.2f   %9.1f %9.1f %7.2f\n", s.name, s.M, s.N,
                        s.K, int(s.ta), int(s.tb), threads, r.tern, r.blas, ratio, r.tern_best, r.blas_best,
                        best_ratio);
            char entry[128];
            std::snprintf(entry, sizeof entry, "%s\"%s_t%d\":%.3f", first ? "" : ",", s.name, threads, ratio);
            json += entry;
            first = false;
        }
    }
    json += "}}";
    std::printf("%s\n", json.c_str());
    return 0;
}
