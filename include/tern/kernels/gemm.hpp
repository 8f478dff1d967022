#pragma once
/// @file kernels/gemm.hpp
/// @brief fp32 matrix product used by every full-precision and training path.
///
/// C[M x N] = alpha * op(A) * op(B) + beta * C, all row-major, where op(A) is M x K and op(B) is K x N.
/// With transpose_a, A is stored K x M; with transpose_b, B is stored N x K.
///
/// Structure (BLIS style): for each block of columns and each slice of K, op(B) is packed into
/// NR-wide panels and op(A) into MR-high panels in thread-local, 64-byte-aligned scratch; a
/// register-blocked micro-kernel then multiplies panel pairs with the accumulators kept in registers.
/// Three paths are chosen at run time: AVX-512F (12x32 zmm), AVX2+FMA (6x16 ymm) and portable
/// scalar (4x8). Products with M == 1 or N == 1 skip packing and run a GEMV kernel instead; narrow
/// products (N < NR) are computed as C^T so that the long side fills the vector lanes.

#include <algorithm>
#include <cstddef>

#include "../error.hpp"
#include "../threads.hpp"
#include "gemm_avx2.hpp"
#include "gemm_avx512.hpp"
#include "gemm_common.hpp"

namespace tern::kernels {
namespace detail {

// ---------------------------------------------------------------------------------------------
// Portable path

namespace scalar {

inline constexpr std::size_t MR = 4, NR = 8;

/// 4x8 tile in a local array; compilers vectorize the inner j loop with plain SSE2/NEON.
inline void kernel(std::size_t mr, std::size_t nr, std::size_t kc, const float* a, const float* b, float* c,
                   std::size_t ldc, float alpha, float beta) {
    float acc[MR][NR] = {};
    for (std::size_t k = 0; k < kc; ++k) {
        for (std::size_t r = 0; r < MR; ++r) {
            const float ar = a[k * MR + r];
            for (std::size_t j = 0; j < NR; ++j) acc[r][j] += ar * b[k * NR + j];
        }
    }
    store_tile_scalar(&acc[0][0], NR, mr, nr, c, ldc, alpha, beta);
}

inline void gemv_dot(std::size_t rows, std::size_t K, const float* X, std::size_t ldx, const float* v,
                     float* out) {
    for (std::size_t i = 0; i < rows; ++i) {
        const float* x = X + i * ldx;
        // Eight independent partial sums: vectorizable without -ffast-math, and no latency chain.
        float part[8] = {};
        std::size_t k = 0;
        for (; k + 8 <= K; k += 8)
            for (std::size_t l = 0; l < 8; ++l) part[l] += x[k + l] * v[k + l];
        float s = 0.0f;
        for (; k < K; ++k) s += x[k] * v[k];
        for (float p : part) s += p;
        out[i] = s;
    }
}

inline void gemv_axpy(std::size_t rows, std::size_t K, const float* X, std::size_t ldx, const float* v,
                      float* out) {
    std::fill(out, out + rows, 0.0f);
    for (std::size_t k = 0; k < K; ++k) {
        const float* x = X + k * ldx;
        const float vk = v[k];
        for (std::size_t i = 0; i < rows; ++i) out[i] += x[i] * vk;
    }
}

}  // namespace scalar

// ---------------------------------------------------------------------------------------------
// Per-path parameters. KC keeps one B micro-panel (KC x NR) in L1 while A panels stream from L2;
// MC x KC of packed A stays in L2 (1 MB on Zen 5); NC bounds the packed B block.

struct isa_scalar {
    static constexpr std::size_t MR = scalar::MR, NR = scalar::NR, KC = 256, MC = 128, NC = 2048;
    static void pack_a(bool kc_, const float* s, std::size_t ld, std::size_t n, std::size_t kc, float* d) {
        pack_panel_scalar<MR>(kc_, s, ld, n, kc, d);
    }
    static void pack_b(bool kc_, const float* s, std::size_t ld, std::size_t n, std::size_t kc, float* d) {
        pack_panel_scalar<NR>(kc_, s, ld, n, kc, d);
    }
    static constexpr auto kernel = &scalar::kernel;
    static constexpr auto gemv_dot = &scalar::gemv_dot;
    static constexpr auto gemv_axpy = &scalar::gemv_axpy;
};

#if TERN_GEMM_X86
struct isa_avx2 {
    static constexpr std::size_t MR = avx2::MR, NR = avx2::NR, KC = 256, MC = 144, NC = 4096;
    static constexpr auto pack_a = &avx2::pack_panel<MR>;
    static constexpr auto pack_b = &avx2::pack_panel<NR>;
    static constexpr auto kernel = &avx2::kernel;
    static constexpr auto gemv_dot = &avx2::gemv_dot;
    static constexpr auto gemv_axpy = &avx2::gemv_axpy;
};

struct isa_avx512 {
    static constexpr std::size_t MR = avx512::MR, NR = avx512::NR, KC = 256, MC = 192, NC = 4096;
    static constexpr auto pack_a = &avx2::pack_panel<MR>;
    static constexpr auto pack_b = &avx2::pack_panel<NR>;
    static constexpr auto kernel = &avx512::kernel;
    static constexpr auto gemv_dot = &avx512::gemv_dot;
    static constexpr auto gemv_axpy = &avx512::gemv_axpy;
};
#endif

// ---------------------------------------------------------------------------------------------
// CPU dispatch

inline bool cpu_has_avx2() {
#if TERN_GEMM_X86
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
    return false;
#endif
}

inline bool cpu_has_avx512() {
#if TERN_GEMM_X86
    return cpu_has_avx2() && __builtin_cpu_supports("avx512f");
#else
    return false;
#endif
}

/// Whether @p path can run on this CPU (automatic and scalar always can).
inline bool gemm_path_supported(gemm_path path) {
    switch (path) {
        case gemm_path::avx2: return cpu_has_avx2();
        case gemm_path::avx512: return cpu_has_avx512();
        default: return true;
    }
}

/// The fastest path this CPU supports, detected once.
inline gemm_path best_gemm_path() {
    static const gemm_path best =
        cpu_has_avx512() ? gemm_path::avx512 : (cpu_has_avx2() ? gemm_path::avx2 : gemm_path::scalar);
    return best;
}

inline const char* gemm_path_name(gemm_path path) {
    switch (path) {
        case gemm_path::scalar: return "scalar";
        case gemm_path::avx2: return "avx2";
        case gemm_path::avx512: return "avx512";
        default: return "automatic";
    }
}

// ---------------------------------------------------------------------------------------------
// Drivers

inline std::size_t round_up(std::size_t x, std::size_t m) { return (x + m - 1) / m * m; }

/// C[j*ldc + i] = alpha * tile[i][j] (+ beta * old), for the transposed-product mode.
inline void store_tile_transposed(const float* tile, std::size_t stride, std::size_t mr, std::size_t nr, float* c,
                                  std::size_t ldc, float alpha, float beta) {
    for (std::size_t j = 0; j < nr; ++j) {
        float* cj = c + j * ldc;
        for (std::size_t i = 0; i < mr; ++i) {
            const float x = alpha * tile[i * stride + j];
            cj[i] = beta == 0.0f ? x : x + beta * cj[i];
        }
    }
}

/// Serial blocked product for the C block [m0, m1) x [n0, n1); one call per thread.
template <class Isa>
void gemm_block(const gemm_args& g, std::size_t m0, std::size_t m1, std::size_t n0, std::size_t n1) {
    constexpr std::size_t MR = Isa::MR, NR = Isa::NR;
    // Equal K slices (784 -> 3 x 262 rather than 256+256+256+16) so no slice is mostly overhead.
    const std::size_t k_slices = (g.K + Isa::KC - 1) / Isa::KC;
    const std::size_t kc_max = (g.K + k_slices - 1) / k_slices;
    const std::size_t mc_max = std::min(Isa::MC, round_up(m1 - m0, MR));
    const std::size_t nc_max = std::min(Isa::NC, round_up(n1 - n0, NR));
    float* ap = scratch(0, kc_max * mc_max);
    float* bp = scratch(1, kc_max * nc_max);
    alignas(64) float tile[MR * NR];  // only used with c_trans

    for (std::size_t jc = n0; jc < n1; jc += Isa::NC) {
        const std::size_t nc = std::min(Isa::NC, n1 - jc);
        for (std::size_t pc = 0; pc < g.K; pc += kc_max) {
            const std::size_t kc = std::min(kc_max, g.K - pc);
            for (std::size_t jr = 0; jr < nc; jr += NR)
                Isa::pack_b(g.b_kcontig(), g.b_at(pc, jc + jr), g.ldb, std::min(NR, nc - jr), kc, bp + jr * kc);
            // Later K slices accumulate onto what the first slice wrote.
            const float beta = pc == 0 ? g.beta : 1.0f;
            for (std::size_t ic = m0; ic < m1; ic += Isa::MC) {
                const std::size_t mc = std::min(Isa::MC, m1 - ic);
                for (std::size_t ir = 0; ir < mc; ir += MR)
                    Isa::pack_a(g.a_kcontig(), g.a_at(ic + ir, pc), g.lda, std::min(MR, mc - ir), kc, ap + ir * kc);
                // jr outside ir: one B micro-panel stays in L1 while the A panels of the block pass by.
                for (std::size_t jr = 0; jr < nc; jr += NR) {
                    const std::size_t nr = std::min(NR, nc - jr);
                    for (std::size_t ir = 0; ir < mc; ir += MR) {
                        const std::size_t mr = std::min(MR, mc - ir);
                        if (!g.c_trans) {
                            Isa::kernel(mr, nr, kc, ap + ir * kc, bp + jr * kc, g.C + (ic + ir) * g.ldc + jc + jr,
                                        g.ldc, g.alpha, beta);
                        } else {
                            Isa::kernel(mr, nr, kc, ap + ir * kc, bp + jr * kc, tile, NR, 1.0f, 0.0f);
                            store_tile_transposed(tile, NR, mr, nr, g.C + (jc + jr) * g.ldc + ic + ir, g.ldc,
                                                  g.alpha, beta);
                        }
                    }
                }
            }
        }
    }
}

/// Threads split C by columns when M <= N (each thread then re-packs only A, the smaller operand),
/// otherwise by rows; small products stay on the calling thread.
template <class Isa>
void gemm_threaded(const gemm_args& g) {
    const double work = double(g.M) * double(g.N) * double(g.K);
    const std::size_t n_blocks = (g.N + Isa::NR - 1) / Isa::NR;
    const std::size_t m_blocks = (g.M + Isa::MR - 1) / Isa::MR;
    const bool split_n = (g.M <= g.N && n_blocks >= 2) || m_blocks < 2;
    if (split_n) {
        parallel_for(
            n_blocks,
            [&](std::size_t lo, std::size_t hi) {
                gemm_block<Isa>(g, 0, g.M, lo * Isa::NR, std::min(hi * Isa::NR, g.N));
            },
            work);
    } else {
        parallel_for(
            m_blocks,
            [&](std::size_t lo, std::size_t hi) {
                gemm_block<Isa>(g, lo * Isa::MR, std::min(hi * Isa::MR, g.M), 0, g.N);
            },
            work);
    }
}

/// M == 1 or N == 1: packing would cost as much as the product, so read the matrix in place.
template <class Isa>
void gemv(const gemm_args& g) {
    // The output vector is a row of C (M == 1) or a column of C (N == 1); the matrix is op(B)^T or op(A).
    const bool row = g.M == 1;
    const std::size_t rows = row ? g.N : g.M;
    const float* X = row ? g.B : g.A;
    const std::size_t ldx = row ? g.ldb : g.lda;
    const bool dot_form = row ? g.tb : !g.ta;
    const float* v = row ? g.A : g.B;
    const std::size_t v_stride = row ? (g.ta ? g.lda : 1) : (g.tb ? 1 : g.ldb);
    const std::size_t out_stride = row ? 1 : g.ldc;

    if (v_stride != 1) {
        float* vb = scratch(2, g.K);
        for (std::size_t k = 0; k < g.K; ++k) vb[k] = v[k * v_stride];
        v = vb;
    }
    float* out = scratch(0, rows);
    // 128-row chunks keep the wide axpy kernel on full blocks in every thread.
    constexpr std::size_t chunk = 128;
    parallel_for(
        (rows + chunk - 1) / chunk,
        [&](std::size_t lo, std::size_t hi) {
            const std::size_t i0 = lo * chunk, i1 = std::min(hi * chunk, rows);
            if (dot_form)
                Isa::gemv_dot(i1 - i0, g.K, X + i0 * ldx, ldx, v, out + i0);
            else
                Isa::gemv_axpy(i1 - i0, g.K, X + i0, ldx, v, out + i0);
            float* c = g.C;
            for (std::size_t i = i0; i < i1; ++i) {
                float& ci = c[i * out_stride];
                ci = g.beta == 0.0f ? g.alpha * out[i] : g.alpha * out[i] + g.beta * ci;
            }
        },
        double(rows) * double(g.K));
}

template <class Isa>
void sgemm_isa(const gemm_args& g) {
    if (g.M == 1 || g.N == 1) {
        gemv<Isa>(g);
    } else if (g.N < Isa::NR && g.M > g.N) {
        // Narrow C (a 10-class output layer): most lanes of each NR-wide tile would be padding.
        // Compute C^T = op(B)^T op(A)^T instead, so the wide side runs along the vector lanes.
        const gemm_args t{!g.tb, !g.ta, g.N, g.M, g.K, g.alpha, g.B, g.ldb, g.A, g.lda, g.beta, g.C, g.ldc, true};
        gemm_threaded<Isa>(t);
    } else {
        gemm_threaded<Isa>(g);
    }
}

/// sgemm on a chosen path (tests force each one). Throws tern::error if the CPU lacks it.
inline void sgemm_path(gemm_path path, bool transpose_a, bool transpose_b, std::size_t M, std::size_t N,
                       std::size_t K, float alpha, const float* A, std::size_t lda, const float* B, std::size_t ldb,
                       float beta, float* C, std::size_t ldc) {
    tern::detail::require(lda >= (transpose_a ? M : K), "sgemm: lda ", lda, " is smaller than a row of A (",
            transpose_a ? M : K, ")");
    tern::detail::require(ldb >= (transpose_b ? K : N), "sgemm: ldb ", ldb, " is smaller than a row of B (",
            transpose_b ? K : N, ")");
    tern::detail::require(ldc >= N, "sgemm: ldc ", ldc, " is smaller than a row of C (", N, ")");
    if (path == gemm_path::automatic) path = best_gemm_path();
    tern::detail::require(gemm_path_supported(path), "sgemm: the ", gemm_path_name(path), " path is not supported by this CPU");
    if (M == 0 || N == 0) return;

    if (K == 0 || alpha == 0.0f) {
        // op(A)*op(B) contributes nothing; A and B are not read (BLAS semantics).
        for (std::size_t i = 0; i < M; ++i) {
            float* c = C + i * ldc;
            for (std::size_t j = 0; j < N; ++j) c[j] = beta == 0.0f ? 0.0f : beta * c[j];
        }
        return;
    }

    const gemm_args g{transpose_a, transpose_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc};
    switch (path) {
#if TERN_GEMM_X86
        case gemm_path::avx512: sgemm_isa<isa_avx512>(g); break;
        case gemm_path::avx2: sgemm_isa<isa_avx2>(g); break;
#endif
        default: sgemm_isa<isa_scalar>(g); break;
    }
}

}  // namespace detail

/// @brief Row-major single-precision GEMM, C = alpha * op(A) * op(B) + beta * C, using the fastest
/// kernel this CPU supports and the thread pool for products above about a million multiply-adds.
///
/// op(A) is M x K (stored K x M with @p transpose_a), op(B) is K x N (stored N x K with
/// @p transpose_b). With beta == 0, C is overwritten without being read (NaN in C is ignored).
/// @throws tern::error if a leading dimension is smaller than the row it describes.
inline void sgemm(bool transpose_a, bool transpose_b, std::size_t M, std::size_t N, std::size_t K, float alpha,
                  const float* A, std::size_t lda, const float* B, std::size_t ldb, float beta, float* C,
                  std::size_t ldc) {
    detail::sgemm_path(detail::gemm_path::automatic, transpose_a, transpose_b, M, N, K, alpha, A, lda, B, ldb,
                       beta, C, ldc);
}

}  // namespace tern::kernels
