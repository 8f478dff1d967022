// sgemm: every dispatch path this CPU supports against a double-precision reference, for all
// transpose combinations, odd sizes, alpha/beta variants (beta == 0 over NaN), padded leading
// dimensions, and one or two threads.
#include <catch2/catch.hpp>
#include <cmath>
#include <cstddef>
#include <limits>
#include <random>
#include <vector>

#include "tern/kernels/gemm.hpp"

namespace {

using tern::kernels::detail::gemm_path;

struct shape {
    std::size_t M, N, K;
};

std::vector<gemm_path> available_paths() {
    std::vector<gemm_path> paths{gemm_path::scalar};
    for (gemm_path p : {gemm_path::avx2, gemm_path::avx512})
        if (tern::kernels::detail::gemm_path_supported(p)) paths.push_back(p);
    return paths;
}

std::vector<float> random_vector(std::size_t n, std::mt19937& rng) {
    std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
    std::vector<float> v(n);
    for (auto& x : v) x = dist(rng);
    return v;
}

// One product: operands stored as the flags say, with leading dimensions padded by `pad`.
struct problem {
    bool ta, tb;
    shape s;
    std::size_t lda, ldb, ldc;
    std::vector<float> A, B, C0;
    std::vector<double> P, Pabs;  // op(A)*op(B) and |op(A)|*|op(B)|, in double

    problem(bool ta_, bool tb_, shape s_, std::size_t pad, std::mt19937& rng) : ta(ta_), tb(tb_), s(s_) {
        const std::size_t a_rows = ta ? s.K : s.M, a_cols = ta ? s.M : s.K;
        const std::size_t b_rows = tb ? s.N : s.K, b_cols = tb ? s.K : s.N;
        lda = a_cols + pad;
        ldb = b_cols + pad;
        ldc = s.N + pad;
        A = random_vector(a_rows * lda, rng);
        B = random_vector(b_rows * ldb, rng);
        C0 = random_vector(s.M * ldc, rng);
        P.assign(s.M * s.N, 0.0);
        Pabs.assign(s.M * s.N, 0.0);
        for (std::size_t i = 0; i < s.M; ++i)
            for (std::size_t k = 0; k < s.K; ++k) {
                const double a = ta ? A[k * lda + i] : A[i * lda + k];
                for (std::size_t j = 0; j < s.N; ++j) {
                    const double b = tb ? B[j * ldb + k] : B[k * ldb + j];
                    P[i * s.N + j] += a * b;
                    Pabs[i * s.N + j] += std::fabs(a * b);
                }
            }
    }

    // Runs one path; returns the number of wrong elements (inside or outside the M x N block).
    std::size_t check(gemm_path path, float alpha, float beta, bool nan_c) const {
        std::vector<float> C = C0;
        const float sentinel = 12345.0f;
        for (std::size_t i = 0; i < s.M; ++i) {
            for (std::size_t j = 0; j < s.N; ++j)
                if (nan_c) C[i * ldc + j] = std::numeric_limits<float>::quiet_NaN();
            for (std::size_t j = s.N; j < ldc; ++j) C[i * ldc + j] = sentinel;
        }
        tern::kernels::detail::sgemm_path(path, ta, tb, s.M, s.N, s.K, alpha, A.data(), lda, B.data(), ldb, beta,
                                          C.data(), ldc);
        std::size_t bad = 0;
        for (std::size_t i = 0; i < s.M; ++i) {
            for (std::size_t j = 0; j < s.N; ++j) {
                const double c0 = nan_c ? 0.0 : C0[i * ldc + j];
                const double want = double(alpha) * P[i * s.N + j] + (beta == 0.0f ? 0.0 : double(beta) * c0);
                const double scale = std::fabs(alpha) * Pabs[i * s.N + j] + std::fabs(beta * c0);
                // Worst-case float accumulation bound, K + a few roundings of one ulp each.
                const double tol = double(s.K + 4) * 1.2e-7 * scale + 1e-30;
                const float got = C[i * ldc + j];
                if (!(std::fabs(double(got) - want) <= tol)) ++bad;
            }
            for (std::size_t j = s.N; j < ldc; ++j)
                if (C[i * ldc + j] != sentinel) ++bad;
        }
        return bad;
    }
};

struct variant {
    float alpha, beta;
    bool nan_c;
};

const variant variants[] = {
    {1.0f, 0.0f, true}, {0.5f, 1.0f, false}, {-1.5f, 0.25f, false}, {2.0f, 0.0f, true}, {0.0f, 2.0f, false}};

// Threads are the outer loop: the pool is resized twice per test case, not once per shape.
void set_threads(std::size_t n) {
    if (tern::num_threads() != n) tern::set_num_threads(n);
}

void run_shapes(const std::vector<shape>& shapes) {
    const std::size_t pads[4] = {0, 3, 1, 7};
    for (std::size_t threads : {1u, 2u}) {
        set_threads(threads);
        std::mt19937 rng(1234);
        for (const shape& s : shapes) {
            for (int t = 0; t < 4; ++t) {
                const bool ta = t & 1, tb = t & 2;
                const problem p(ta, tb, s, pads[t], rng);
                for (gemm_path path : available_paths()) {
                    for (const variant& v : variants) {
                        INFO("M=" << s.M << " N=" << s.N << " K=" << s.K << " ta=" << ta << " tb=" << tb
                                  << " path=" << tern::kernels::detail::gemm_path_name(path)
                                  << " threads=" << threads << " alpha=" << v.alpha << " beta=" << v.beta
                                  << " nanC=" << v.nan_c);
                        REQUIRE(p.check(path, v.alpha, v.beta, v.nan_c) == 0);
                    }
                }
            }
        }
    }
}

}  // namespace

TEST_CASE("sgemm matches a double reference on small odd shapes", "[gemm]") {
    std::vector<shape> shapes;
    for (std::size_t M : {1u, 3u, 17u, 65u})
        for (std::size_t N : {1u, 3u, 17u, 65u})
            for (std::size_t K : {1u, 3u, 17u, 65u}) shapes.push_back({M, N, K});
    run_shapes(shapes);
}

TEST_CASE("sgemm matches a double reference on large shapes (blocking edges, threads)", "[gemm]") {
    run_shapes({
        {63, 129, 257},   // odd everything, one K slice
        {257, 65, 129},   // M > N: threads split rows
        {128, 256, 784},  // MLP forward: three K slices
        {200, 300, 520},  // several MC blocks per thread
        {13, 4200, 40},   // crosses the NC block
        {400, 33, 300},   // N just above one AVX-512 panel
        {300, 10, 784},   // narrow output layer: computed as C^T
        {129, 5, 2000},   // narrow, several K slices
        {517, 1, 3000},   // GEMV, column output
        {1, 2100, 600},   // GEMV, row output
    });
}

TEST_CASE("sgemm handles empty products and checks leading dimensions", "[gemm]") {
    std::vector<float> A(12, 1.0f), B(12, 1.0f), C(12, std::numeric_limits<float>::quiet_NaN());
    // K == 0 with beta == 0 clears C without reading it.
    tern::kernels::sgemm(false, false, 3, 4, 0, 1.0f, A.data(), 1, B.data(), 4, 0.0f, C.data(), 4);
    for (float c : C) REQUIRE(c == 0.0f);
    std::fill(C.begin(), C.end(), 1.0f);
    tern::kernels::sgemm(false, false, 3, 4, 0, 1.0f, A.data(), 1, B.data(), 4, 3.0f, C.data(), 4);
    for (float c : C) REQUIRE(c == 3.0f);
    // M == 0 or N == 0 is a no-op.
    tern::kernels::sgemm(false, false, 0, 4, 3, 1.0f, A.data(), 3, B.data(), 4, 0.0f, C.data(), 4);
    for (float c : C) REQUIRE(c == 3.0f);
    REQUIRE_THROWS_AS(tern::kernels::sgemm(false, false, 3, 4, 3, 1.0f, A.data(), 2, B.data(), 4, 0.0f, C.data(), 4),
                      tern::error);
    REQUIRE_THROWS_AS(tern::kernels::sgemm(false, true, 3, 4, 3, 1.0f, A.data(), 3, B.data(), 2, 0.0f, C.data(), 4),
                      tern::error);
    REQUIRE_THROWS_AS(tern::kernels::sgemm(false, false, 3, 4, 3, 1.0f, A.data(), 3, B.data(), 4, 0.0f, C.data(), 3),
                      tern::error);
}

TEST_CASE("sgemm reports the paths it dispatches to", "[gemm]") {
    const gemm_path best = tern::kernels::detail::best_gemm_path();
    REQUIRE(best != gemm_path::automatic);
    REQUIRE(tern::kernels::detail::gemm_path_supported(best));
    WARN("sgemm path on this CPU: " << tern::kernels::detail::gemm_path_name(best));
}
