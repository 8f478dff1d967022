// sgemm throughput on the shapes tern trains with, against OpenBLAS measured in the same run.
// Prints GFLOP/s (2*M*N*K per call, median of several timed samples after a warm-up) for 1 and 2
// threads; the last line is one JSON object with the tern/OpenBLAS ratios.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "tern/kernels/gemm.hpp"
#include "tern/threads.hpp"

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

// Median seconds per call of fn(), each sample long enough (~10 ms) to swamp timer noise.
template <class Fn>
double median_seconds(Fn&& fn) {
    using clock = std::chrono::steady_clock;
    for (int i = 0; i < 3; ++i) fn();  // warm-up: caches, pool threads, page faults
    auto t0 = clock::now();
    fn();
    const double once = std::chrono::duration<double>(clock::now() - t0).count();
    const int reps = std::max(1, int(0.01 / std::max(once, 1e-9)));
    std::vector<double> samples;
    for (int s = 0; s < 9; ++s) {
        t0 = clock::now();
        for (int r = 0; r < reps; ++r) fn();
        samples.push_back(std::chrono::duration<double>(clock::now() - t0).count() / reps);
    }
    std::sort(samples.begin(), samples.end());
    return samples[samples.size() / 2];
}

}  // namespace

int main() {
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
    std::printf("sgemm GFLOP/s, median of 9 samples; tern path: %s\n",
                tern::kernels::detail::gemm_path_name(tern::kernels::detail::best_gemm_path()));
    std::printf("%-14s %5s %5s %5s %2s %2s %3s %9s %9s %7s\n", "shape", "M", "N", "K", "tA", "tB", "thr", "tern",
                "openblas", "ratio");
    struct result {
        double tern, blas;
    };
    constexpr std::size_t n_shapes = sizeof(shapes) / sizeof(shapes[0]);
    result results[2][n_shapes] = {};
    // All 1-thread runs first, then one resize to 2: the pool is never restarted after it has run work.
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
            const double t_tern = median_seconds([&] {
                tern::kernels::sgemm(s.ta, s.tb, s.M, s.N, s.K, 1.0f, A.data(), lda, B.data(), ldb, s.beta, C.data(),
                                     ldc);
            });
            double t_blas = 0.0;
#if defined(TERN_BENCH_HAVE_BLAS)
            t_blas = median_seconds([&] {
                cblas_sgemm(101, s.ta ? 112 : 111, s.tb ? 112 : 111, int(s.M), int(s.N), int(s.K), 1.0f, A.data(),
                            int(lda), B.data(), int(ldb), s.beta, C.data(), int(ldc));
            });
#endif
            results[threads - 1][si] = {flops / t_tern * 1e-9, t_blas > 0 ? flops / t_blas * 1e-9 : 0.0};
        }
    }
    std::string json = "{\"bench\":\"gemm\",\"ratios\":{";
    bool first = true;
    for (std::size_t si = 0; si < n_shapes; ++si) {
        const bench_shape& s = shapes[si];
        for (int threads : {1, 2}) {
            const result& r = results[threads - 1][si];
            const double ratio = r.blas > 0 ? r.tern / r.blas : 0.0;
            std::printf("%-14s %5zu %5zu %5zu %2d %2d %3d %9.1f %9.1f %7.2f\n", s.name, s.M, s.N, s.K, int(s.ta),
                        int(s.tb), threads, r.tern, r.blas, ratio);
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
