// Benchmark of the packed ternary kernels against OpenBLAS sgemv/sgemm and an int8-weight GEMV.
//
// Shape K = N = 2048 (in cache at 2 bits per weight: 1 MiB). Each figure is the median of several
// timed runs after a warm-up. GEMV: G weights/s (N*K per call / time); GEMM: G multiply-adds/s
// (N*K*T / time). Activation quantization is timed separately and excluded from the GEMV/GEMM
// figures (the BLAS baselines get float activations for free as well).
// Then alternating samples (every side timed in turn, 15 rounds, median and range): GEMM T=64
// against the same path's one-token GEMV (weight reuse), 1 against 2 threads, and the GEMV at
// smaller shapes. Run `TERN_KERNEL_PATH=avx2 bench_kernels` to make the AVX2 path the default
// one: the smaller GEMVs run on it (every path this CPU has is measured in the tables either way).
// The last line of output is one JSON object.

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <map>
#include <random>
#include <string>
#include <vector>

#include <tern/packed/activation_quant.hpp>
#include <tern/packed/packed_matrix.hpp>
#include <tern/packed/ternary_gemm.hpp>
#include <tern/threads.hpp>
#include "bench_machine.hpp"

#if defined(TERN_BENCH_HAVE_BLAS)
extern "C" {
// CBLAS enums are passed as int: CblasRowMajor = 101, CblasNoTrans = 111, CblasTrans = 112.
void cblas_sgemv(int order, int trans, int m, int n, float alpha, const float* a, int lda, const float* x, int incx,
                 float beta, float* y, int incy);
void cblas_sgemm(int order, int transa, int transb, int m, int n, int k, float alpha, const float* a, int lda,
                 const float* b, int ldb, float beta, float* c, int ldc);
// Only OpenBLAS has it; weak so another BLAS still links.
__attribute__((weak)) void openblas_set_num_threads(int);
}
#endif

using namespace tern::packed;

namespace {

volatile float sink = 0.0f;
double last_min = 0.0;  // fastest run of the last time_call (the shared machine's noise floor)

/// Median seconds per call of @p fn: warm-up, then @p runs runs of enough calls to last ~15 ms.
double time_call(const std::function<void()>& fn, int runs = 11) {
    using clock = std::chrono::steady_clock;
    for (int i = 0; i < 3; ++i) fn();
    auto t0 = clock::now();
    int calls = 0;
    while (std::chrono::duration<double>(clock::now() - t0).count() < 0.01) {
        fn();
        ++calls;
    }
    const double per = std::chrono::duration<double>(clock::now() - t0).count() / calls;
    const int reps = std::max(1, int(0.015 / per));
    std::vector<double> times;
    for (int r = 0; r < runs; ++r) {
        auto a = clock::now();
        for (int i = 0; i < reps; ++i) fn();
        times.push_back(std::chrono::duration<double>(clock::now() - a).count() / reps);
    }
    std::sort(times.begin(), times.end());
    last_min = times.front();
    return times[times.size() / 2];
}

// A plain int8-weight x int8-activation GEMV (second baseline): 4 rows share each activation load,
// vpmaddubsw on |w| and sign(a, w), widened with vpmaddwd every block of 32.
#if TERN_PACKED_X86
__attribute__((target("avx2"))) void int8_gemv_avx2(const std::int8_t* w, const std::int8_t* a, std::size_t N,
                                                    std::size_t K, std::int32_t* y) {
    const __m256i ones = _mm256_set1_epi16(1);
    for (std::size_t n = 0; n < N; n += 4) {
        __m256i acc[4] = {_mm256_setzero_si256(), _mm256_setzero_si256(), _mm256_setzero_si256(),
                          _mm256_setzero_si256()};
        for (std::size_t k = 0; k < K; k += 32) {
            const __m256i av = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a + k));
            for (int r = 0; r < 4; ++r) {
                const __m256i wv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + (n + r) * K + k));
                const __m256i p = _mm256_maddubs_epi16(_mm256_sign_epi8(wv, wv), _mm256_sign_epi8(av, wv));
                acc[r] = _mm256_add_epi32(acc[r], _mm256_madd_epi16(p, ones));
            }
        }
        const __m128i s = detail::hsum4_epi32(acc[0], acc[1], acc[2], acc[3]);
        _mm_storeu_si128(reinterpret_cast<__m128i*>(y + n), s);
    }
}

// The same GEMV at the instruction-set levels of the ternary kernel paths, so each comparison is
// at equal footing: AVX-VNNI (vpdpbusd on 256 bits) and AVX-512 VNNI (512 bits; AVX-512 has no
// vpsignb, so the sign of w moves to a by a masked negation).
__attribute__((target("avx2,avxvnni"))) void int8_gemv_avxvnni(const std::int8_t* w, const std::int8_t* a,
                                                               std::size_t N, std::size_t K, std::int32_t* y) {
    for (std::size_t n = 0; n < N; n += 4) {
        __m256i acc[4] = {_mm256_setzero_si256(), _mm256_setzero_si256(), _mm256_setzero_si256(),
                          _mm256_setzero_si256()};
        for (std::size_t k = 0; k < K; k += 32) {
            const __m256i av = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a + k));
            for (int r = 0; r < 4; ++r) {
                const __m256i wv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + (n + r) * K + k));
                acc[r] = _mm256_dpbusd_avx_epi32(acc[r], _mm256_sign_epi8(wv, wv), _mm256_sign_epi8(av, wv));
            }
        }
        const __m128i s = detail::hsum4_epi32(acc[0], acc[1], acc[2], acc[3]);
        _mm_storeu_si128(reinterpret_cast<__m128i*>(y + n), s);
    }
}

__attribute__((target("avx512f,avx512bw,avx512vnni"))) void int8_gemv_avx512vnni(const std::int8_t* w,
                                                                                  const std::int8_t* a, std::size_t N,
                                                                                  std::size_t K, std::int32_t* y) {
    const __m512i zero = _mm512_setzero_si512();
    for (std::size_t n = 0; n < N; n += 4) {
        __m512i acc[4] = {zero, zero, zero, zero};
        for (std::size_t k = 0; k < K; k += 64) {
            const __m512i av = _mm512_loadu_si512(a + k);
            for (int r = 0; r < 4; ++r) {
                const __m512i wv = _mm512_loadu_si512(w + (n + r) * K + k);
                const __m512i as = _mm512_mask_sub_epi8(av, _mm512_movepi8_mask(wv), zero, av);
                acc[r] = _mm512_dpbusd_epi32(acc[r], _mm512_abs_epi8(wv), as);
            }
        }
        const __m128i s = detail::hsum4_epi32(_mm256_add_epi32(detail::lo256(acc[0]), detail::hi256(acc[0])),
                                              _mm256_add_epi32(detail::lo256(acc[1]), detail::hi256(acc[1])),
                                              _mm256_add_epi32(detail::lo256(acc[2]), detail::hi256(acc[2])),
                                              _mm256_add_epi32(detail::lo256(acc[3]), detail::hi256(acc[3])));
        _mm_storeu_si128(reinterpret_cast<__m128i*>(y + n), s);
    }
}
#endif

void int8_gemv_scalar(const std::int8_t* w, const std::int8_t* a, std::size_t N, std::size_t K, std::int32_t* y) {
    for (std::size_t n = 0; n < N; ++n) {
        std::int32_t s = 0;
        for (std::size_t k = 0; k < K; ++k) s += w[n * K + k] * a[k];
        y[n] = s;
    }
}

/// A throughput: median over runs and the best run, in G units per second.
struct rate {
    double med = 0, best = 0;
};

rate measure(const std::function<void()>& fn, double work, int runs = 11) {
    const double t = time_call(fn, runs);
    return {work / t * 1e-9, work / last_min * 1e-9};
}

/// One side of an alternating comparison: a call, its thread count and its work per call.
struct contender {
    std::string label;
    std::size_t threads;
    double work;
    std::function<void()> fn;
};

/// Rates of @p sides in G units per second: @p rounds rounds, each timing one sample (enough
/// calls for ~5 ms) of every side in turn, so that all sides see the same load on a shared
/// machine. Prints the median and the range (slowest-fastest sample) of each side.
std::vector<double> alternate(std::vector<contender>& sides, int rounds = 15) {
    using clock = std::chrono::steady_clock;
    std::vector<int> reps;
    for (auto& c : sides) {
        tern::set_num_threads(c.threads);
        for (int i = 0; i < 3; ++i) c.fn();
        const auto t0 = clock::now();
        c.fn();
        const double once = std::chrono::duration<double>(clock::now() - t0).count();
        reps.push_back(std::max(1, int(0.005 / std::max(once, 1e-9))));
    }
    std::vector<std::vector<double>> rates(sides.size());
    for (int r = 0; r < rounds; ++r)
        for (std::size_t i = 0; i < sides.size(); ++i) {
            tern::set_num_threads(sides[i].threads);
            sides[i].fn();  // wakes the pool after the resize
            const auto t0 = clock::now();
            for (int k = 0; k < reps[i]; ++k) sides[i].fn();
            const double sec = std::chrono::duration<double>(clock::now() - t0).count() / reps[i];
            rates[i].push_back(sides[i].work / sec * 1e-9);
        }
    std::vector<double> medians;
    for (std::size_t i = 0; i < sides.size(); ++i) {
        auto& v = rates[i];
        std::sort(v.begin(), v.end());
        medians.push_back(v[v.size() / 2]);
        std::printf("%-44s %2zu thread%s %9.1f  (range %.1f-%.1f)\n", sides[i].label.c_str(), sides[i].threads,
                    sides[i].threads > 1 ? "s" : " ", medians.back(), v.front(), v.back());
    }
    return medians;
}

struct results {
    std::map<std::string, rate> gemv, gemm8, gemm64;  // by path: G weights/s, G multiply-adds/s
    std::map<std::string, rate> gemm64_quant;          // GEMM T=64 with its activation quantization timed
    rate sgemv, sgemm8, sgemm64, int8;
    double quant_ns = 0;
};

}  // namespace

int main() {
    tern_bench::print_machine("bench_kernels");
    const std::size_t N = 2048, K = 2048;
    std::mt19937 rng(42);
    std::uniform_int_distribution<int> tern_dist(-1, 1);
    std::normal_distribution<float> nd(0.0f, 1.0f);
    std::vector<std::int8_t> w8(N * K);
    for (auto& v : w8) v = static_cast<std::int8_t>(tern_dist(rng));
    std::vector<float> wf(w8.begin(), w8.end());
    const packed_matrix W(w8, N, K);
    std::vector<float> x64(64 * K);
    for (auto& v : x64) v = nd(rng);
    const auto q1 = quantize_activations(x64.data(), 1, K, true);
    const auto q8 = quantize_activations(x64.data(), 8, K, true);
    const auto q64 = quantize_activations(x64.data(), 64, K, true);
    std::vector<float> y(64 * N);
    std::vector<std::int32_t> yi(N);
    const float s_w = 1.0f;

    auto ratio = [](double a, double b) { return b > 0 ? a / b : 0.0; };
    std::vector<kernel_path> paths;
    for (auto p : {kernel_path::scalar, kernel_path::avx2, kernel_path::avxvnni, kernel_path::avx512vnni})
        if (kernel_path_available(p)) paths.push_back(p);
    const kernel_path best = best_kernel_path();
    const std::string bname = kernel_path_name(best);
    const double nk = double(N) * double(K);

    std::printf("packed ternary kernels, N = K = %zu, packed %.2f bits/weight (%zu bytes), best path %s\n", N,
                W.bits_per_weight(), W.byte_count(), bname.c_str());
    std::printf("median of 11 runs after warm-up (best run in brackets); activation quantization excluded\n");
    std::map<int, results> all;
    for (int threads : {1, 2}) {
        tern::set_num_threads(std::size_t(threads));
#if defined(TERN_BENCH_HAVE_BLAS)
        if (openblas_set_num_threads) openblas_set_num_threads(threads);
#endif
        results& r = all[threads];
        for (kernel_path p : paths) {
            const std::string name = kernel_path_name(p);
            const int runs = p == kernel_path::scalar ? 3 : 11;
            r.gemv[name] = measure([&] { ternary_gemm(W, q1, s_w, y.data(), nullptr, p); }, nk, runs);
            if (p == kernel_path::scalar) continue;
            r.gemm8[name] = measure([&] { ternary_gemm(W, q8, s_w, y.data(), nullptr, p); }, nk * 8);
            r.gemm64[name] = measure([&] { ternary_gemm(W, q64, s_w, y.data(), nullptr, p); }, nk * 64);
            // As llama.cpp's matrix-multiply benchmark counts TQ2_0: float activations in, quantized per call.
            quantized_activations qa;
            r.gemm64_quant[name] = measure(
                [&] {
                    quantize_activations(x64.data(), 64, K, K, qa, true);
                    ternary_gemm(W, qa, s_w, y.data(), nullptr, p);
                },
                nk * 64);
        }
        {
            quantized_activations qa;
            r.quant_ns = time_call([&] { quantize_activations(x64.data(), 1, K, K, qa, true); }) * 1e9;
        }
#if TERN_PACKED_X86
        if (best != kernel_path::scalar) {
            // The instruction set of the best ternary path; rows split over the pool like the ternary kernel.
            using gemv_fn = void (*)(const std::int8_t*, const std::int8_t*, std::size_t, std::size_t, std::int32_t*);
            const gemv_fn int8_gemv = best == kernel_path::avx512vnni ? int8_gemv_avx512vnni
                                      : best == kernel_path::avxvnni  ? int8_gemv_avxvnni
                                                                      : int8_gemv_avx2;
            std::vector<std::int32_t> ref(N), got(N);
            int8_gemv_scalar(w8.data(), q1.q.data(), N, K, ref.data());
            int8_gemv(w8.data(), q1.q.data(), N, K, got.data());
            if (got != ref) {
                std::fprintf(stderr, "bench_kernels: the %s int8 baseline disagrees with the scalar one\n", bname.c_str());
                return 1;
            }
            r.int8 = measure(
                [&] {
                    tern::parallel_for(
                        N / 4,
                        [&](std::size_t lo, std::size_t hi) {
                            int8_gemv(w8.data() + lo * 4 * K, q1.q.data(), (hi - lo) * 4, K, yi.data() + lo * 4);
                        },
                        nk);
                },
                nk);
        } else
#endif
        {
            r.int8 = measure([&] { int8_gemv_scalar(w8.data(), q1.q.data(), N, K, yi.data()); }, nk, 3);
        }
#if defined(TERN_BENCH_HAVE_BLAS)
        const int n = int(N), k = int(K);
        r.sgemv = measure([&] { cblas_sgemv(101, 111, n, k, 1.0f, wf.data(), k, x64.data(), 1, 0.0f, y.data(), 1); }, nk);
        r.sgemm8 = measure(
            [&] { cblas_sgemm(101, 111, 112, 8, n, k, 1.0f, x64.data(), k, wf.data(), k, 0.0f, y.data(), n); }, nk * 8);
        r.sgemm64 = measure(
            [&] { cblas_sgemm(101, 111, 112, 64, n, k, 1.0f, x64.data(), k, wf.data(), k, 0.0f, y.data(), n); },
            nk * 64);
#endif
        sink = sink + y[0];
    }

    auto row = [](const std::string& label, const rate& v, const char* unit) {
        std::printf("%-36s %9.1f  [%7.1f]  %s\n", label.c_str(), v.med, v.best, unit);
    };
    for (auto& [threads, r] : all) {
        std::printf("\n== %d thread%s ==\n", threads, threads > 1 ? "s" : "");
        std::printf("%-36s %9s  [%7s]\n", "kernel", "median", "best");
        for (auto& [name, v] : r.gemv) row("ternary GEMV " + name, v, "G weights/s");
        row("int8-weight GEMV (" + bname + ", baseline)", r.int8, "G weights/s");
        row("OpenBLAS sgemv", r.sgemv, "G weights/s");
        for (auto& [name, v] : r.gemm8) row("ternary GEMM T=8 " + name, v, "G MAC/s");
        row("OpenBLAS sgemm T=8", r.sgemm8, "G MAC/s");
        for (auto& [name, v] : r.gemm64) row("ternary GEMM T=64 " + name, v, "G MAC/s");
        for (auto& [name, v] : r.gemm64_quant) row("  + activation quantization " + name, v, "G MAC/s");
        row("OpenBLAS sgemm T=64", r.sgemm64, "G MAC/s");
        std::printf("%-36s %9.0f  ns/token (K=%zu, normalization included)\n", "activation quantization",
                    r.quant_ns, K);
        for (auto& [name, v] : r.gemm64)
            std::printf("weight reuse, %s: GEMM T=64 / the same path's one-token GEMV = %.2f (medians)\n", name.c_str(),
                        ratio(v.med, r.gemv[name].med));
        std::printf("ratios of medians (%s): GEMV/sgemv %.2f, GEMV/int8 %.2f, GEMM8/sgemm %.2f, GEMM64/sgemm %.2f\n",
                    bname.c_str(), ratio(r.gemv[bname].med, r.sgemv.med), ratio(r.gemv[bname].med, r.int8.med),
                    ratio(r.gemm8[bname].med, r.sgemm8.med), ratio(r.gemm64[bname].med, r.sgemm64.med));
    }

    // Alternating samples: weight reuse (GEMM T=64 against the same path's one-token GEMV) and what
    // a second thread brings, per path; then the GEMV at smaller shapes, where threads may not pay.
    std::printf("\n== alternating samples, %d rounds: median (range) ==\n", 15);
    std::map<std::string, std::vector<double>> alt;
    for (kernel_path p : paths) {
        if (p == kernel_path::scalar) continue;
        const std::string name = kernel_path_name(p);
        std::vector<contender> sides;
        for (std::size_t threads : {1, 2}) {
            sides.push_back({"GEMV " + name + " (G weights/s)", threads, nk,
                             [&, p] { ternary_gemm(W, q1, s_w, y.data(), nullptr, p); }});
            sides.push_back({"GEMM T=64 " + name + " (G MAC/s)", threads, nk * 64,
                             [&, p] { ternary_gemm(W, q64, s_w, y.data(), nullptr, p); }});
        }
        const auto m = alternate(sides);
        alt[name] = m;
        std::printf("  %s: GEMM64/GEMV %.2f at 1 thread; 2 threads / 1: GEMV %.2f, GEMM64 %.2f\n", name.c_str(),
                    ratio(m[1], m[0]), ratio(m[2], m[0]), ratio(m[3], m[1]));
    }
    for (std::size_t n : {256, 512, 1024}) {
        std::vector<std::int8_t> ws(n * n);
        for (auto& v : ws) v = static_cast<std::int8_t>(tern_dist(rng));
        const packed_matrix Ws(ws, n, n);
        const auto qs = quantize_activations(x64.data(), 1, n, true);
        const double work = double(n) * double(n);
        std::vector<contender> sides;
        for (std::size_t threads : {1, 2})
            sides.push_back({"GEMV " + std::to_string(n) + "x" + std::to_string(n) + " " + active_kernel_path_name() + " (G weights/s)",
                             threads, work, [&] { ternary_gemm(Ws, qs, s_w, y.data(), nullptr); }});
        const auto m = alternate(sides);
        std::printf("  %zux%zu (%.2g multiply-adds, %s): 2 threads / 1 = %.2f\n", n, n, work,
                    work < detail::parallel_grain ? "below parallel_grain: 1 thread either way" : "split over threads",
                    ratio(m[1], m[0]));
    }
    tern::set_num_threads(1);

    // Ratio of two alternating medians of a path (0 where the path was not measured).
    auto alt_ratio = [&](const std::string& path, std::size_t a, std::size_t b) {
        return alt.count(path) ? ratio(alt[path][a], alt[path][b]) : 0.0;
    };
    results& r1 = all[1];
    results& r2 = all[2];
    std::printf(
        "{\"path\": \"%s\", \"threads\": 1, \"gemv_gweights_per_s\": %.2f, \"sgemv_gweights_per_s\": %.2f, "
        "\"int8_gemv_gweights_per_s\": %.2f, \"gemv_ratio_vs_sgemv\": %.2f, \"gemv_ratio_vs_int8\": %.2f, "
        "\"gemm8_gmacs_per_s\": %.2f, \"sgemm8_gmacs_per_s\": %.2f, \"gemm8_ratio_vs_sgemm\": %.2f, "
        "\"gemm64_gmacs_per_s\": %.2f, \"sgemm64_gmacs_per_s\": %.2f, \"gemm64_ratio_vs_sgemm\": %.2f, "
        "\"gemv_best_run_gweights_per_s\": %.2f, \"gemv_avx2_gweights_per_s\": %.2f, "
        "\"gemv_scalar_gweights_per_s\": %.2f, \"quant_ns_per_token\": %.0f, \"gemv_2t_gweights_per_s\": %.2f, "
        "\"gemv_2t_ratio_vs_sgemv\": %.2f, \"gemm8_2t_ratio_vs_sgemm\": %.2f, \"gemm64_2t_ratio_vs_sgemm\": %.2f, "
        "\"alternating_gemm64_over_gemv\": %.2f, \"alternating_gemv_2t_over_1t\": %.2f, "
        "\"alternating_gemm64_2t_over_1t\": %.2f, \"avx2_gemm64_gmacs_per_s\": %.2f, "
        "\"avx2_alternating_gemm64_over_gemv\": %.2f}\n",
        bname.c_str(), r1.gemv[bname].med, r1.sgemv.med, r1.int8.med, ratio(r1.gemv[bname].med, r1.sgemv.med),
        ratio(r1.gemv[bname].med, r1.int8.med), r1.gemm8[bname].med, r1.sgemm8.med,
        ratio(r1.gemm8[bname].med, r1.sgemm8.med), r1.gemm64[bname].med, r1.sgemm64.med,
        ratio(r1.gemm64[bname].med, r1.sgemm64.med), r1.gemv[bname].best,
        r1.gemv.count("avx2") ? r1.gemv["avx2"].med : 0.0, r1.gemv["scalar"].med, r1.quant_ns, r2.gemv[bname].med,
        ratio(r2.gemv[bname].med, r2.sgemv.med), ratio(r2.gemm8[bname].med, r2.sgemm8.med),
        ratio(r2.gemm64[bname].med, r2.sgemm64.med), alt_ratio(bname, 1, 0), alt_ratio(bname, 2, 0),
        alt_ratio(bname, 3, 1), r1.gemm64.count("avx2") ? r1.gemm64["avx2"].med : 0.0, alt_ratio("avx2", 1, 0));
    return 0;
}
