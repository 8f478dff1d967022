#pragma once
/// @file kernels/gemm_avx2.hpp
/// @brief AVX2+FMA pieces of sgemm: SIMD packers (also used by the AVX-512 path), the 6x16 ymm
/// micro-kernel and the two GEMV kernels. Compiled with function-level targets; callers must check
/// the CPU first.

#include "gemm_common.hpp"

#if TERN_GEMM_X86

#include <array>
#include <utility>

namespace tern::kernels::detail::avx2 {

/// Transposes 8 k-contiguous lines into panel columns r0..r0+7, eight k at a time.
TERN_TARGET_AVX2 inline void pack_8_lines(const float* src, std::size_t ld, std::size_t kc, float* dst,
                                          std::size_t S) {
    std::size_t k = 0;
    for (; k + 8 <= kc; k += 8) {
        const float* s = src + k;
        const __m256 r0 = _mm256_loadu_ps(s), r1 = _mm256_loadu_ps(s + ld), r2 = _mm256_loadu_ps(s + 2 * ld),
                     r3 = _mm256_loadu_ps(s + 3 * ld), r4 = _mm256_loadu_ps(s + 4 * ld),
                     r5 = _mm256_loadu_ps(s + 5 * ld), r6 = _mm256_loadu_ps(s + 6 * ld),
                     r7 = _mm256_loadu_ps(s + 7 * ld);
        const __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1);
        const __m256 t2 = _mm256_unpacklo_ps(r2, r3), t3 = _mm256_unpackhi_ps(r2, r3);
        const __m256 t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5);
        const __m256 t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
        const __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
        const __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
        const __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
        const __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
        float* d = dst + k * S;
        _mm256_storeu_ps(d + 0 * S, _mm256_permute2f128_ps(u0, u4, 0x20));
        _mm256_storeu_ps(d + 1 * S, _mm256_permute2f128_ps(u1, u5, 0x20));
        _mm256_storeu_ps(d + 2 * S, _mm256_permute2f128_ps(u2, u6, 0x20));
        _mm256_storeu_ps(d + 3 * S, _mm256_permute2f128_ps(u3, u7, 0x20));
        _mm256_storeu_ps(d + 4 * S, _mm256_permute2f128_ps(u0, u4, 0x31));
        _mm256_storeu_ps(d + 5 * S, _mm256_permute2f128_ps(u1, u5, 0x31));
        _mm256_storeu_ps(d + 6 * S, _mm256_permute2f128_ps(u2, u6, 0x31));
        _mm256_storeu_ps(d + 7 * S, _mm256_permute2f128_ps(u3, u7, 0x31));
    }
    for (; k < kc; ++k)
        for (std::size_t r = 0; r < 8; ++r) dst[k * S + r] = src[r * ld + k];
}

/// Same for 4 lines with a 4x4 SSE transpose.
TERN_TARGET_AVX2 inline void pack_4_lines(const float* src, std::size_t ld, std::size_t kc, float* dst,
                                          std::size_t S) {
    std::size_t k = 0;
    for (; k + 4 <= kc; k += 4) {
        __m128 r0 = _mm_loadu_ps(src + k), r1 = _mm_loadu_ps(src + ld + k), r2 = _mm_loadu_ps(src + 2 * ld + k),
               r3 = _mm_loadu_ps(src + 3 * ld + k);
        _MM_TRANSPOSE4_PS(r0, r1, r2, r3);
        float* d = dst + k * S;
        _mm_storeu_ps(d, r0);
        _mm_storeu_ps(d + S, r1);
        _mm_storeu_ps(d + 2 * S, r2);
        _mm_storeu_ps(d + 3 * S, r3);
    }
    for (; k < kc; ++k)
        for (std::size_t r = 0; r < 4; ++r) dst[k * S + r] = src[r * ld + k];
}

/// SIMD version of pack_panel_scalar (same layout and zero padding).
template <std::size_t S>
TERN_TARGET_AVX2 void pack_panel(bool kcontig, const float* src, std::size_t ld, std::size_t lines, std::size_t kc,
                                 float* dst) {
    if (!kcontig) {
        if (lines != S) {
            pack_panel_scalar<S>(false, src, ld, lines, kc, dst);
            return;
        }
        // Full panel: each k is one contiguous run of S floats.
        for (std::size_t k = 0; k < kc; ++k) {
            const float* s = src + k * ld;
            float* d = dst + k * S;
            std::size_t j = 0;
            for (; j + 8 <= S; j += 8) _mm256_storeu_ps(d + j, _mm256_loadu_ps(s + j));
            for (; j + 4 <= S; j += 4) _mm_storeu_ps(d + j, _mm_loadu_ps(s + j));
            for (; j < S; ++j) d[j] = s[j];
        }
        return;
    }
    std::size_t r = 0;
    for (; r + 8 <= lines; r += 8) pack_8_lines(src + r * ld, ld, kc, dst + r, S);
    for (; r + 4 <= lines; r += 4) pack_4_lines(src + r * ld, ld, kc, dst + r, S);
    for (; r < lines; ++r)
        for (std::size_t k = 0; k < kc; ++k) dst[k * S + r] = src[r * ld + k];
    for (; r < S; ++r)
        for (std::size_t k = 0; k < kc; ++k) dst[k * S + r] = 0.0f;
}

inline constexpr std::size_t MR = 6, NR = 16;

/// Lane mask with the first n (0..8) lanes set, for maskload/maskstore at the N edge.
TERN_TARGET_AVX2 inline __m256i lane_mask(std::size_t n) {
    const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(int(n)), idx);
}

/// R x (8V) micro-kernel: acc += a_panel * b_panel over kc, then C = alpha*acc (+ beta*C).
/// 6x16 uses 12 accumulators + 2 B vectors + 1 broadcast = 15 of 16 ymm registers.
template <int R, int V>
TERN_TARGET_AVX2 void ukernel(std::size_t kc, const float* a, const float* b, float* c, std::size_t ldc,
                              std::size_t nr, float alpha, float beta) {
    __m256 acc[R][V];
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r)
#pragma GCC unroll 2
        for (int v = 0; v < V; ++v) acc[r][v] = _mm256_setzero_ps();
#pragma GCC unroll 4
    for (std::size_t k = 0; k < kc; ++k) {
        __m256 bv[V];
#pragma GCC unroll 2
        for (int v = 0; v < V; ++v) bv[v] = _mm256_load_ps(b + 8 * v);
#pragma GCC unroll 8
        for (int r = 0; r < R; ++r) {
            const __m256 ar = _mm256_broadcast_ss(a + r);
#pragma GCC unroll 2
            for (int v = 0; v < V; ++v) acc[r][v] = _mm256_fmadd_ps(ar, bv[v], acc[r][v]);
        }
        a += MR;
        b += NR;
    }
    const __m256 va = _mm256_set1_ps(alpha), vb = _mm256_set1_ps(beta);
    const bool full = nr == std::size_t(8 * V);
    __m256i mask[V];
#pragma GCC unroll 2
    for (int v = 0; v < V; ++v) mask[v] = lane_mask(nr > std::size_t(8 * v) ? std::min<std::size_t>(nr - 8 * v, 8) : 0);
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
        float* cr = c + r * ldc;
#pragma GCC unroll 2
        for (int v = 0; v < V; ++v) {
            __m256 x = _mm256_mul_ps(acc[r][v], va);
            if (full) {
                if (beta != 0.0f) x = _mm256_fmadd_ps(vb, _mm256_loadu_ps(cr + 8 * v), x);
                _mm256_storeu_ps(cr + 8 * v, x);
            } else {
                if (beta != 0.0f) x = _mm256_fmadd_ps(vb, _mm256_maskload_ps(cr + 8 * v, mask[v]), x);
                _mm256_maskstore_ps(cr + 8 * v, mask[v], x);
            }
        }
    }
}

using kernel_fn = void (*)(std::size_t, const float*, const float*, float*, std::size_t, std::size_t, float, float);

template <std::size_t... I>
constexpr std::array<kernel_fn, sizeof...(I)> make_kernel_table(std::index_sequence<I...>) {
    return {{&ukernel<int(I / 2) + 1, int(I % 2) + 1>...}};
}

/// Entry used by the generic driver: picks the instantiation for an mr x nr edge tile.
inline void kernel(std::size_t mr, std::size_t nr, std::size_t kc, const float* a, const float* b, float* c,
                   std::size_t ldc, float alpha, float beta) {
    static constexpr auto table = make_kernel_table(std::make_index_sequence<2 * MR>{});
    table[(mr - 1) * 2 + (nr > 8 ? 1 : 0)](kc, a, b, c, ldc, nr, alpha, beta);
}

TERN_TARGET_AVX2 inline float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/// out[i] = sum_k X[i*ldx + k] * v[k] for i in [0, rows): four rows share each load of v.
TERN_TARGET_AVX2 inline void gemv_dot(std::size_t rows, std::size_t K, const float* X, std::size_t ldx,
                                      const float* v, float* out) {
    std::size_t i = 0;
    for (; i + 4 <= rows; i += 4) {
        const float* x0 = X + i * ldx;
        const float* x1 = x0 + ldx;
        const float* x2 = x1 + ldx;
        const float* x3 = x2 + ldx;
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, b0 = a0, b1 = a0, b2 = a0, b3 = a0;
        std::size_t k = 0;
        for (; k + 16 <= K; k += 16) {
            const __m256 v0 = _mm256_loadu_ps(v + k), v1 = _mm256_loadu_ps(v + k + 8);
            a0 = _mm256_fmadd_ps(_mm256_loadu_ps(x0 + k), v0, a0);
            a1 = _mm256_fmadd_ps(_mm256_loadu_ps(x1 + k), v0, a1);
            a2 = _mm256_fmadd_ps(_mm256_loadu_ps(x2 + k), v0, a2);
            a3 = _mm256_fmadd_ps(_mm256_loadu_ps(x3 + k), v0, a3);
            b0 = _mm256_fmadd_ps(_mm256_loadu_ps(x0 + k + 8), v1, b0);
            b1 = _mm256_fmadd_ps(_mm256_loadu_ps(x1 + k + 8), v1, b1);
            b2 = _mm256_fmadd_ps(_mm256_loadu_ps(x2 + k + 8), v1, b2);
            b3 = _mm256_fmadd_ps(_mm256_loadu_ps(x3 + k + 8), v1, b3);
        }
        for (; k + 8 <= K; k += 8) {
            const __m256 v0 = _mm256_loadu_ps(v + k);
            a0 = _mm256_fmadd_ps(_mm256_loadu_ps(x0 + k), v0, a0);
            a1 = _mm256_fmadd_ps(_mm256_loadu_ps(x1 + k), v0, a1);
            a2 = _mm256_fmadd_ps(_mm256_loadu_ps(x2 + k), v0, a2);
            a3 = _mm256_fmadd_ps(_mm256_loadu_ps(x3 + k), v0, a3);
        }
        float s0 = hsum(_mm256_add_ps(a0, b0)), s1 = hsum(_mm256_add_ps(a1, b1)), s2 = hsum(_mm256_add_ps(a2, b2)),
              s3 = hsum(_mm256_add_ps(a3, b3));
        for (; k < K; ++k) {
            s0 += x0[k] * v[k];
            s1 += x1[k] * v[k];
            s2 += x2[k] * v[k];
            s3 += x3[k] * v[k];
        }
        out[i] = s0;
        out[i + 1] = s1;
        out[i + 2] = s2;
        out[i + 3] = s3;
    }
    for (; i < rows; ++i) {
        const float* x0 = X + i * ldx;
        __m256 a0 = _mm256_setzero_ps(), b0 = a0;
        std::size_t k = 0;
        for (; k + 16 <= K; k += 16) {
            a0 = _mm256_fmadd_ps(_mm256_loadu_ps(x0 + k), _mm256_loadu_ps(v + k), a0);
            b0 = _mm256_fmadd_ps(_mm256_loadu_ps(x0 + k + 8), _mm256_loadu_ps(v + k + 8), b0);
        }
        float s = hsum(_mm256_add_ps(a0, b0));
        for (; k < K; ++k) s += x0[k] * v[k];
        out[i] = s;
    }
}

/// out[i] = sum_k X[k*ldx + i] * v[k]. Four rows of X stream contiguously at a time into an output
/// chunk that stays in L1; walking X column-block by column-block instead defeats the prefetchers.
TERN_TARGET_AVX2 inline void gemv_axpy(std::size_t rows, std::size_t K, const float* X, std::size_t ldx,
                                       const float* v, float* out) {
    constexpr std::size_t chunk = 2048;  // 8 KB of outputs
    for (std::size_t i0 = 0; i0 < rows; i0 += chunk) {
        const std::size_t n = std::min(chunk, rows - i0);
        const std::size_t nmain = n - n % 8;
        float* o = out + i0;
        std::fill(o, o + n, 0.0f);
        std::size_t k = 0;
        for (; k + 4 <= K; k += 4) {
            const float* x0 = X + k * ldx + i0;
            const float* x1 = x0 + ldx;
            const float* x2 = x1 + ldx;
            const float* x3 = x2 + ldx;
            const __m256 v0 = _mm256_broadcast_ss(v + k), v1 = _mm256_broadcast_ss(v + k + 1),
                         v2 = _mm256_broadcast_ss(v + k + 2), v3 = _mm256_broadcast_ss(v + k + 3);
            std::size_t j = 0;
            for (; j < nmain; j += 8) {
                __m256 acc = _mm256_loadu_ps(o + j);
                acc = _mm256_fmadd_ps(_mm256_loadu_ps(x0 + j), v0, acc);
                acc = _mm256_fmadd_ps(_mm256_loadu_ps(x1 + j), v1, acc);
                acc = _mm256_fmadd_ps(_mm256_loadu_ps(x2 + j), v2, acc);
                acc = _mm256_fmadd_ps(_mm256_loadu_ps(x3 + j), v3, acc);
                _mm256_storeu_ps(o + j, acc);
            }
            for (; j < n; ++j) o[j] += x0[j] * v[k] + x1[j] * v[k + 1] + x2[j] * v[k + 2] + x3[j] * v[k + 3];
        }
        for (; k < K; ++k) {
            const float* x0 = X + k * ldx + i0;
            const __m256 v0 = _mm256_broadcast_ss(v + k);
            std::size_t j = 0;
            for (; j < nmain; j += 8)
                _mm256_storeu_ps(o + j, _mm256_fmadd_ps(_mm256_loadu_ps(x0 + j), v0, _mm256_loadu_ps(o + j)));
            for (; j < n; ++j) o[j] += x0[j] * v[k];
        }
    }
}

}  // namespace tern::kernels::detail::avx2

#endif  // TERN_GEMM_X86
