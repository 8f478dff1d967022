#pragma once
/// @file kernels/adam_update.hpp
/// @brief The Adam update of one parameter tensor, portable and AVX2 / AVX-512, equal bit for bit.
///
/// Per element (g~ = g + l2 * w; l2 is 0 for AdamW, whose decay is the shrink factor instead):
///     m = b1 * m + (1 - b1) * g~
///     v = b2 * v + (1 - b2) * g~ * g~
///     w = w * shrink - step_size * m / (sqrt(v) * inv_sqrt_bc2 + eps)
/// Without -fno-math-errno a compiler cannot vectorize the portable loop (sqrtf may set errno), and
/// the update then costs a third of a small MLP's training step. The SIMD paths run the same
/// operations in the same order with no fused multiply-add (TERN_UNFUSED), and every operation
/// here (+, *, /, sqrt) is correctly rounded, so all paths give the same bits.

#include <cstddef>

#include "gemm.hpp"
#include "gemm_common.hpp"

namespace tern::kernels {

/// @brief The constants of one Adam step for one tensor.
struct adam_coefficients {
    float b1, b2, eps, step_size, inv_sqrt_bc2, shrink, l2;
};

namespace detail {

inline void adam_update_scalar(float* __restrict w, const float* __restrict g, float* __restrict m,
                               float* __restrict v, std::size_t n, const adam_coefficients& c) {
    const float ob1 = 1.0f - c.b1, ob2 = 1.0f - c.b2;
    for (std::size_t k = 0; k < n; ++k) {
        float decay = c.l2 * w[k];
        TERN_UNFUSED(decay);
        const float gk = g[k] + decay;
        float m_old = c.b1 * m[k], m_new = ob1 * gk;
        TERN_UNFUSED(m_old);
        TERN_UNFUSED(m_new);
        const float mk = m_old + m_new;
        float v_old = c.b2 * v[k], v_new = ob2 * gk * gk;
        TERN_UNFUSED(v_old);
        TERN_UNFUSED(v_new);
        const float vk = v_old + v_new;
        float root = __builtin_sqrtf(vk) * c.inv_sqrt_bc2;
        TERN_UNFUSED(root);
        float kept = w[k] * c.shrink;
        TERN_UNFUSED(kept);
        m[k] = mk;
        v[k] = vk;
        w[k] = kept - c.step_size * mk / (root + c.eps);
    }
}

#if TERN_GEMM_X86

// One body for both widths: V is __m256 or __m512, the ops are the matching intrinsics.
#define TERN_ADAM_SIMD_BODY(V, set1, load, store, add, sub, mul, div, sqrt, W)                        \
    const V b1 = set1(c.b1), b2 = set1(c.b2), ob1 = set1(1.0f - c.b1), ob2 = set1(1.0f - c.b2);    \
    const V eps = set1(c.eps), step = set1(c.step_size), ibc = set1(c.inv_sqrt_bc2);               \
    const V shrink = set1(c.shrink), l2 = set1(c.l2);                                              \
    std::size_t k = 0;                                                                             \
    for (; k + W <= n; k += W) {                                                                   \
        const V wk = load(w + k);                                                                  \
        V decay = mul(l2, wk);                                                                     \
        TERN_UNFUSED(decay);                                                                       \
        const V gk = add(load(g + k), decay);                                                      \
        V m_old = mul(b1, load(m + k)), m_new = mul(ob1, gk);                                      \
        TERN_UNFUSED(m_old);                                                                       \
        TERN_UNFUSED(m_new);                                                                       \
        const V mk = add(m_old, m_new);                                                            \
        V v_old = mul(b2, load(v + k)), v_new = mul(mul(ob2, gk), gk);                             \
        TERN_UNFUSED(v_old);                                                                       \
        TERN_UNFUSED(v_new);                                                                       \
        const V vk = add(v_old, v_new);                                                            \
        V root = mul(sqrt(vk), ibc);                                                               \
        TERN_UNFUSED(root);                                                                        \
        V kept = mul(wk, shrink);                                                                  \
        TERN_UNFUSED(kept);                                                                        \
        store(m + k, mk);                                                                          \
        store(v + k, vk);                                                                          \
        store(w + k, sub(kept, div(mul(step, mk), add(root, eps))));                               \
    }                                                                                              \
    adam_update_scalar(w + k, g + k, m + k, v + k, n - k, c);

TERN_TARGET_AVX2 inline void adam_update_avx2(float* __restrict w, const float* __restrict g, float* __restrict m,
                                              float* __restrict v, std::size_t n, const adam_coefficients& c) {
    TERN_ADAM_SIMD_BODY(__m256, _mm256_set1_ps, _mm256_loadu_ps, _mm256_storeu_ps, _mm256_add_ps, _mm256_sub_ps,
                        _mm256_mul_ps, _mm256_div_ps, _mm256_sqrt_ps, 8)
}

// The maskz form: GCC 12 warns that _mm512_sqrt_ps reads an uninitialized value.
TERN_TARGET_AVX512 inline __m512 sqrt16(__m512 x) { return _mm512_maskz_sqrt_ps(__mmask16(0xFFFF), x); }

TERN_TARGET_AVX512 inline void adam_update_avx512(float* __restrict w, const float* __restrict g,
                                                  float* __restrict m, float* __restrict v, std::size_t n,
                                                  const adam_coefficients& c) {
    TERN_ADAM_SIMD_BODY(__m512, _mm512_set1_ps, _mm512_loadu_ps, _mm512_storeu_ps, _mm512_add_ps, _mm512_sub_ps,
                        _mm512_mul_ps, _mm512_div_ps, sqrt16, 16)
}

#undef TERN_ADAM_SIMD_BODY

#endif  // TERN_GEMM_X86

}  // namespace detail

/// @brief Updates @p n elements of a tensor (weights @p w, gradient @p g, moments @p m, @p v) in
/// place; @p path as for sgemm (automatic: the best this CPU has). The arrays must not overlap.
/// @throws tern::error if a forced path is not supported by this CPU.
inline void adam_update(float* w, const float* g, float* m, float* v, std::size_t n, const adam_coefficients& c,
                        detail::gemm_path path = detail::gemm_path::automatic) {
    if (path == detail::gemm_path::automatic) path = detail::best_gemm_path();
    tern::detail::require(detail::gemm_path_supported(path), "adam_update: the ", detail::gemm_path_name(path),
                          " path is not supported by this CPU");
#if TERN_GEMM_X86
    if (path == detail::gemm_path::avx512) return detail::adam_update_avx512(w, g, m, v, n, c);
    if (path == detail::gemm_path::avx2) return detail::adam_update_avx2(w, g, m, v, n, c);
#endif
    detail::adam_update_scalar(w, g, m, v, n, c);
}

}  // namespace tern::kernels
