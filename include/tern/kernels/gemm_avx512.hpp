#pragma once
/// @file kernels/gemm_avx512.hpp
/// @brief AVX-512F pieces of sgemm: the 12x32 zmm micro-kernel and zmm GEMV kernels. Packing reuses
/// the AVX2 packers (every AVX-512 CPU has AVX2). Callers must check the CPU first.

#include "gemm_avx2.hpp"

#if TERN_GEMM_X86

namespace tern::kernels::detail::avx512 {

// 12x32: 24 accumulators + 2 B vectors leave room for broadcasts in 32 zmm registers; each k step
// issues 24 FMAs for 2 vector loads and 12 broadcasts, well inside Zen 5's load bandwidth.
inline constexpr std::size_t MR = 12, NR = 32;

/// Mask with the first n (0..16) lanes set.
inline __mmask16 lanes(std::size_t n) { return n >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << n) - 1u); }

/// R x (16V) micro-kernel over a packed A panel (stride MR) and B panel (stride NR).
template <int R, int V>
TERN_TARGET_AVX512 void ukernel(std::size_t kc, const float* a, const float* b, float* c, std::size_t ldc,
                                std::size_t nr, float alpha, float beta) {
    __m512 acc[R][V];
#pragma GCC unroll 12
    for (int r = 0; r < R; ++r)
#pragma GCC unroll 2
        for (int v = 0; v < V; ++v) acc[r][v] = _mm512_setzero_ps();
#pragma GCC unroll 4
    for (std::size_t k = 0; k < kc; ++k) {
        __m512 bv[V];
#pragma GCC unroll 2
        for (int v = 0; v < V; ++v) bv[v] = _mm512_load_ps(b + 16 * v);
#pragma GCC unroll 12
        for (int r = 0; r < R; ++r) {
            const __m512 ar = _mm512_set1_ps(a[r]);
#pragma GCC unroll 2
            for (int v = 0; v < V; ++v) acc[r][v] = _mm512_fmadd_ps(ar, bv[v], acc[r][v]);
        }
        a += MR;
        b += NR;
    }
    const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
    __mmask16 mask[V];
#pragma GCC unroll 2
    for (int v = 0; v < V; ++v) mask[v] = lanes(nr > std::size_t(16 * v) ? nr - 16 * v : 0);
#pragma GCC unroll 12
    for (int r = 0; r < R; ++r) {
        float* cr = c + r * ldc;
#pragma GCC unroll 2
        for (int v = 0; v < V; ++v) {
            __m512 x = _mm512_mul_ps(acc[r][v], va);
            // Masked loads never touch (or fault on) columns past the edge of C.
            if (beta != 0.0f) x = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(mask[v], cr + 16 * v), x);
            _mm512_mask_storeu_ps(cr + 16 * v, mask[v], x);
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
    table[(mr - 1) * 2 + (nr > 16 ? 1 : 0)](kc, a, b, c, ldc, nr, alpha, beta);
}

/// Horizontal sum. (GCC 12's _mm512_reduce_add_ps trips -Wmaybe-uninitialized inside its own header.)
TERN_TARGET_AVX512 inline float hsum(__m512 v) {
    alignas(64) float lanes16[16];
    _mm512_store_ps(lanes16, v);
    float s = 0.0f;
    for (float x : lanes16) s += x;
    return s;
}

/// out[i] = sum_k X[i*ldx + k] * v[k]; four rows share each load of v, the K tail is masked.
TERN_TARGET_AVX512 inline void gemv_dot(std::size_t rows, std::size_t K, const float* X, std::size_t ldx,
                                        const float* v, float* out) {
    std::size_t i = 0;
    const __mmask16 tail = lanes(K % 16);
    const std::size_t kmain = K - K % 16;
    for (; i + 4 <= rows; i += 4) {
        const float* x0 = X + i * ldx;
        const float* x1 = x0 + ldx;
        const float* x2 = x1 + ldx;
        const float* x3 = x2 + ldx;
        __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, b0 = a0, b1 = a0, b2 = a0, b3 = a0;
        std::size_t k = 0;
        for (; k + 32 <= K; k += 32) {
            const __m512 v0 = _mm512_loadu_ps(v + k), v1 = _mm512_loadu_ps(v + k + 16);
            a0 = _mm512_fmadd_ps(_mm512_loadu_ps(x0 + k), v0, a0);
            a1 = _mm512_fmadd_ps(_mm512_loadu_ps(x1 + k), v0, a1);
            a2 = _mm512_fmadd_ps(_mm512_loadu_ps(x2 + k), v0, a2);
            a3 = _mm512_fmadd_ps(_mm512_loadu_ps(x3 + k), v0, a3);
            b0 = _mm512_fmadd_ps(_mm512_loadu_ps(x0 + k + 16), v1, b0);
            b1 = _mm512_fmadd_ps(_mm512_loadu_ps(x1 + k + 16), v1, b1);
            b2 = _mm512_fmadd_ps(_mm512_loadu_ps(x2 + k + 16), v1, b2);
            b3 = _mm512_fmadd_ps(_mm512_loadu_ps(x3 + k + 16), v1, b3);
        }
        for (; k < kmain; k += 16) {
            const __m512 v0 = _mm512_loadu_ps(v + k);
            a0 = _mm512_fmadd_ps(_mm512_loadu_ps(x0 + k), v0, a0);
            a1 = _mm512_fmadd_ps(_mm512_loadu_ps(x1 + k), v0, a1);
            a2 = _mm512_fmadd_ps(_mm512_loadu_ps(x2 + k), v0, a2);
            a3 = _mm512_fmadd_ps(_mm512_loadu_ps(x3 + k), v0, a3);
        }
        if (tail) {
            const __m512 v0 = _mm512_maskz_loadu_ps(tail, v + k);
            b0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(tail, x0 + k), v0, b0);
            b1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(tail, x1 + k), v0, b1);
            b2 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(tail, x2 + k), v0, b2);
            b3 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(tail, x3 + k), v0, b3);
        }
        out[i] = hsum(_mm512_add_ps(a0, b0));
        out[i + 1] = hsum(_mm512_add_ps(a1, b1));
        out[i + 2] = hsum(_mm512_add_ps(a2, b2));
        out[i + 3] = hsum(_mm512_add_ps(a3, b3));
    }
    for (; i < rows; ++i) {
        const float* x0 = X + i * ldx;
        __m512 a0 = _mm512_setzero_ps(), b0 = a0;
        std::size_t k = 0;
        for (; k + 32 <= K; k += 32) {
            a0 = _mm512_fmadd_ps(_mm512_loadu_ps(x0 + k), _mm512_loadu_ps(v + k), a0);
            b0 = _mm512_fmadd_ps(_mm512_loadu_ps(x0 + k + 16), _mm512_loadu_ps(v + k + 16), b0);
        }
        for (; k < kmain; k += 16) a0 = _mm512_fmadd_ps(_mm512_loadu_ps(x0 + k), _mm512_loadu_ps(v + k), a0);
        if (tail)
            b0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(tail, x0 + k), _mm512_maskz_loadu_ps(tail, v + k), b0);
        out[i] = hsum(_mm512_add_ps(a0, b0));
    }
}

/// out[i] = sum_k X[k*ldx + i] * v[k]. Four rows of X stream contiguously at a time into an output
/// chunk that stays in L1; walking X column-block by column-block instead defeats the prefetchers.
TERN_TARGET_AVX512 inline void gemv_axpy(std::size_t rows, std::size_t K, const float* X, std::size_t ldx,
                                         const float* v, float* out) {
    constexpr std::size_t chunk = 2048;  // 8 KB of outputs
    for (std::size_t i0 = 0; i0 < rows; i0 += chunk) {
        const std::size_t n = std::min(chunk, rows - i0);
        float* o = out + i0;
        const __mmask16 tail = lanes(n % 16);
        const std::size_t nmain = n - n % 16;
        std::size_t k = 0;
        for (; k + 4 <= K; k += 4) {
            const float* x0 = X + k * ldx + i0;
            const float* x1 = x0 + ldx;
            const float* x2 = x1 + ldx;
            const float* x3 = x2 + ldx;
            const __m512 v0 = _mm512_set1_ps(v[k]), v1 = _mm512_set1_ps(v[k + 1]), v2 = _mm512_set1_ps(v[k + 2]),
                         v3 = _mm512_set1_ps(v[k + 3]);
            const bool first = k == 0;  // the first pass overwrites, so out needs no clearing
            std::size_t j = 0;
            for (; j < nmain; j += 16) {
                __m512 acc = first ? _mm512_setzero_ps() : _mm512_loadu_ps(o + j);
                acc = _mm512_fmadd_ps(_mm512_loadu_ps(x0 + j), v0, acc);
                acc = _mm512_fmadd_ps(_mm512_loadu_ps(x1 + j), v1, acc);
                acc = _mm512_fmadd_ps(_mm512_loadu_ps(x2 + j), v2, acc);
                acc = _mm512_fmadd_ps(_mm512_loadu_ps(x3 + j), v3, acc);
                _mm512_storeu_ps(o + j, acc);
            }
            if (tail) {
                __m512 acc = first ? _mm512_setzero_ps() : _mm512_maskz_loadu_ps(tail, o + j);
                acc = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(tail, x0 + j), v0, acc);
                acc = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(tail, x1 + j), v1, acc);
                acc = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(tail, x2 + j), v2, acc);
                acc = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(tail, x3 + j), v3, acc);
                _mm512_mask_storeu_ps(o + j, tail, acc);
            }
        }
        for (; k < K; ++k) {
            const float* x0 = X + k * ldx + i0;
            const __m512 v0 = _mm512_set1_ps(v[k]);
            const bool first = k == 0;
            std::size_t j = 0;
            for (; j < nmain; j += 16) {
                const __m512 acc = first ? _mm512_setzero_ps() : _mm512_loadu_ps(o + j);
                _mm512_storeu_ps(o + j, _mm512_fmadd_ps(_mm512_loadu_ps(x0 + j), v0, acc));
            }
            if (tail) {
                const __m512 acc = first ? _mm512_setzero_ps() : _mm512_maskz_loadu_ps(tail, o + j);
                _mm512_mask_storeu_ps(o + j, tail, _mm512_fmadd_ps(_mm512_maskz_loadu_ps(tail, x0 + j), v0, acc));
            }
        }
    }
}

}  // namespace tern::kernels::detail::avx512

#endif  // TERN_GEMM_X86
