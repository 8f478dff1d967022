#pragma once
/// @file packed/activation_quant.hpp
/// @brief Per-token int8 activation quantization for the packed ternary kernels (bitlinear.md 1-2).
///
/// For each token (row of x, length K):
///   1. optional normalization: x~ = (x - mean) * rstd with rstd = 1 / sqrt(var + 1e-5), mean and
///      biased variance over K (without normalization x~ = x);
///   2. s_x = 127 / max(max_k |x~_k|, 1e-5);  q = clamp(round_half_even(x~ * s_x), -127, 127).
/// The range is symmetric ([-127, 127], as in the Microsoft reference) so the kernels need no
/// zero point. q is written padded with zeros to padded_cols_for(K); sum(q) is kept per token.
///
/// Bit-exactness between paths: mean and rstd come from one shared function (token_stats: AVX2
/// when the CPU has it, whatever the requested path, so every path sees the same two numbers; the
/// requested path selects only the elementwise kernel); each element then goes
/// through the same float operations, subtraction, multiplication, max, in every path, and
/// rounding is round-half-even in all of them (cvtps2dq in SIMD, the 1.5*2^23 trick in scalar;
/// std::nearbyint would be a libm call per element).

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "../error.hpp"
#include "aligned_buffer.hpp"
#include "cpu_dispatch.hpp"
#include "packed_matrix.hpp"

namespace tern::packed {

/// Largest quantized magnitude (8-bit, symmetric).
inline constexpr int act_qmax = 127;
/// eps of the normalization variance and of the scale's denominator.
inline constexpr float act_eps = 1e-5f;

/// @brief Quantized activations: tokens x padded_cols int8 (zero padded), per-token scale and sum.
struct quantized_activations {
    std::size_t tokens = 0;       ///< T
    std::size_t cols = 0;         ///< K (logical)
    std::size_t padded_cols = 0;  ///< padded_cols_for(K): row stride of q
    aligned_buffer<std::int8_t> q;      ///< T x padded_cols, values in [-127, 127]
    aligned_buffer<float> scale;        ///< s_x per token (x~ ~= q / s_x)
    aligned_buffer<std::int32_t> sum;   ///< sum_k q per token

    /// @brief Pointer to token @p t's padded_cols quantized values.
    const std::int8_t* row(std::size_t t) const { return q.data() + t * padded_cols; }

    /// @brief Sizes the buffers for @p T tokens of @p K features (storage is reused when it fits).
    void resize(std::size_t T, std::size_t K) {
        tokens = T;
        cols = K;
        padded_cols = padded_cols_for(K);
        q.resize(T * padded_cols);
        scale.resize(T);
        sum.resize(T);
    }
};

namespace detail {

/// Rounds half to even without libm: adding 1.5 * 2^23 pushes the fraction out of the mantissa in
/// the default rounding mode (valid for |v| < 2^22; quantized values are within +-128).
inline float round_half_even_small(float v) {
    constexpr float magic = 12582912.0f;  // 1.5 * 2^23
    volatile float keep = v + magic;      // volatile: no compiler may fold (v + m) - m
    return keep - magic;
}

/// Clamps to [-200, 200] with the operand order of maxps/minps, so a NaN becomes -200 in every
/// path (then -127) instead of reaching an undefined float-to-int conversion.
inline float clamp_like_simd(float v) {
    v = v > -200.0f ? v : -200.0f;
    return v < 200.0f ? v : 200.0f;
}

/// Per-token mean and 1/sqrt(var + eps) (two passes, float sums in 16 lanes): the portable version.
inline void act_stats(const float* x, std::size_t K, float& mean, float& rstd) {
    constexpr std::size_t L = 16;
    float acc[L] = {};
    std::size_t k = 0;
    for (; k + L <= K; k += L)
        for (std::size_t l = 0; l < L; ++l) acc[l] += x[k + l];
    for (std::size_t l = 0; l < L && k + l < K; ++l) acc[l] += x[k + l];
    float s = 0.0f;
    for (std::size_t l = 0; l < L; ++l) s += acc[l];
    mean = s / static_cast<float>(K);
    float v[L] = {};
    k = 0;
    for (; k + L <= K; k += L)
        for (std::size_t l = 0; l < L; ++l) {
            const float d = x[k + l] - mean;
            const float d2 = d * d;  // separate statement: keep mul and add apart
            v[l] += d2;
        }
    for (std::size_t l = 0; l < L && k + l < K; ++l) {
        const float d = x[k + l] - mean;
        const float d2 = d * d;
        v[l] += d2;
    }
    float var = 0.0f;
    for (std::size_t l = 0; l < L; ++l) var += v[l];
    var /= static_cast<float>(K);
    rstd = 1.0f / std::sqrt(var + act_eps);
}

#if TERN_PACKED_X86
/// AVX2 version of act_stats (same formula, its own summation order). Whichever of the two runs
/// is chosen by the CPU alone, never by the requested path, so all paths share mean and rstd.
__attribute__((target("avx2"))) inline void act_stats_avx2(const float* x, std::size_t K, float& mean,
                                                           float& rstd) {
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    std::size_t k = 0;
    for (; k + 16 <= K; k += 16) {
        s0 = _mm256_add_ps(s0, _mm256_loadu_ps(x + k));
        s1 = _mm256_add_ps(s1, _mm256_loadu_ps(x + k + 8));
    }
    alignas(32) float lanes[8];
    _mm256_store_ps(lanes, _mm256_add_ps(s0, s1));
    float s = 0.0f;
    for (float l : lanes) s += l;
    for (std::size_t j = 0; j < 16 && k + j < K; ++j) s += x[k + j];  // bounded: fewer than 16 remain
    mean = s / static_cast<float>(K);
    const __m256 vm = _mm256_set1_ps(mean);
    __m256 v0 = _mm256_setzero_ps(), v1 = _mm256_setzero_ps();
    for (k = 0; k + 16 <= K; k += 16) {
        const __m256 d0 = _mm256_sub_ps(_mm256_loadu_ps(x + k), vm);
        const __m256 d1 = _mm256_sub_ps(_mm256_loadu_ps(x + k + 8), vm);
        v0 = _mm256_add_ps(v0, _mm256_mul_ps(d0, d0));
        v1 = _mm256_add_ps(v1, _mm256_mul_ps(d1, d1));
    }
    _mm256_store_ps(lanes, _mm256_add_ps(v0, v1));
    float var = 0.0f;
    for (float l : lanes) var += l;
    for (std::size_t j = 0; j < 16 && k + j < K; ++j) {
        const float d = x[k + j] - mean;
        var += d * d;
    }
    var /= static_cast<float>(K);
    rstd = 1.0f / std::sqrt(var + act_eps);
}
#endif

/// Per-token normalization statistics, the same for every kernel path on a given CPU.
inline void token_stats(const float* x, std::size_t K, float& mean, float& rstd) {
#if TERN_PACKED_X86
    if (caps().avx2) return act_stats_avx2(x, K, mean, rstd);
#endif
    act_stats(x, K, mean, rstd);
}

/// Scalar reference for one token: x~ = (x - mean) * rstd, then scale, round, clamp.
inline void quantize_row_scalar(const float* x, std::size_t K, std::size_t Kp, float mean, float rstd,
                                std::int8_t* q, float& scale, std::int32_t& sum) {
    float m = 0.0f;
    for (std::size_t k = 0; k < K; ++k) m = std::max(m, std::fabs((x[k] - mean) * rstd));
    const float s = static_cast<float>(act_qmax) / std::max(m, act_eps);
    std::int32_t total = 0;
    for (std::size_t k = 0; k < K; ++k) {
        const float v = (x[k] - mean) * rstd * s;
        float r = round_half_even_small(clamp_like_simd(v));
        r = std::clamp(r, -float(act_qmax), float(act_qmax));
        const auto qi = static_cast<std::int32_t>(r);
        q[k] = static_cast<std::int8_t>(qi);
        total += qi;
    }
    std::memset(q + K, 0, Kp - K);
    scale = s;
    sum = total;
}

#if TERN_PACKED_X86
/// AVX2 version of quantize_row_scalar (no FMA in the target on purpose: the element operations
/// have no a*b+c shape, and none may be fused).
__attribute__((target("avx2"))) inline void quantize_row_avx2(const float* x, std::size_t K, std::size_t Kp,
                                                              float mean, float rstd, std::int8_t* q,
                                                              float& scale, std::int32_t& sum) {
    const __m256 vmean = _mm256_set1_ps(mean), vrstd = _mm256_set1_ps(rstd);
    const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    // Four independent max chains (max is exact and order-free, so this matches the scalar loop).
    __m256 vmax[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
    std::size_t k = 0;
    for (; k + 32 <= K; k += 32) {
#pragma GCC unroll 4
        for (int i = 0; i < 4; ++i) {
            const __m256 t = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(x + k + 8 * i), vmean), vrstd);
            vmax[i] = _mm256_max_ps(_mm256_and_ps(t, absmask), vmax[i]);  // a NaN keeps vmax, as std::max
        }
    }
    for (; k + 8 <= K; k += 8) {
        const __m256 t = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(x + k), vmean), vrstd);
        vmax[0] = _mm256_max_ps(_mm256_and_ps(t, absmask), vmax[0]);
    }
    alignas(32) float lanes[8];
    _mm256_store_ps(lanes, _mm256_max_ps(_mm256_max_ps(vmax[0], vmax[1]), _mm256_max_ps(vmax[2], vmax[3])));
    float m = 0.0f;
    for (float l : lanes) m = std::max(m, l);
    for (; k < K; ++k) m = std::max(m, std::fabs((x[k] - mean) * rstd));
    const float s = static_cast<float>(act_qmax) / std::max(m, act_eps);

    const __m256 vs = _mm256_set1_ps(s);
    const __m256 lo = _mm256_set1_ps(-200.0f), hi = _mm256_set1_ps(200.0f);
    const __m256i qmax = _mm256_set1_epi32(act_qmax), qmin = _mm256_set1_epi32(-act_qmax);
    __m256i vsum = _mm256_setzero_si256();
    k = 0;
    for (; k + 32 <= K; k += 32) {
        __m256i r[4];
#pragma GCC unroll 4
        for (int i = 0; i < 4; ++i) {  // unrolled: r[] must live in registers
            const __m256 t = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(x + k + 8 * i), vmean), vrstd);
            const __m256 v = _mm256_min_ps(_mm256_max_ps(_mm256_mul_ps(t, vs), lo), hi);
            r[i] = _mm256_min_epi32(_mm256_max_epi32(_mm256_cvtps_epi32(v), qmin), qmax);  // nearest-even
            vsum = _mm256_add_epi32(vsum, r[i]);
        }
        // packs interleave 128-bit lanes; the final permute restores element order.
        const __m256i p16a = _mm256_packs_epi32(r[0], r[1]);
        const __m256i p16b = _mm256_packs_epi32(r[2], r[3]);
        const __m256i p8 = _mm256_packs_epi16(p16a, p16b);
        const __m256i ordered = _mm256_permutevar8x32_epi32(p8, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(q + k), ordered);
    }
    alignas(32) std::int32_t sl[8];
    _mm256_store_si256(reinterpret_cast<__m256i*>(sl), vsum);
    std::int32_t total = 0;
    for (std::int32_t v : sl) total += v;
    for (; k < K; ++k) {
        const float v = (x[k] - mean) * rstd * s;
        float r = round_half_even_small(clamp_like_simd(v));
        r = std::clamp(r, -float(act_qmax), float(act_qmax));
        const auto qi = static_cast<std::int32_t>(r);
        q[k] = static_cast<std::int8_t>(qi);
        total += qi;
    }
    std::memset(q + K, 0, Kp - K);
    scale = s;
    sum = total;
}
#endif

}  // namespace detail

/// @brief Quantizes @p tokens rows of @p cols floats (row stride @p ldx) into @p out.
/// @param normalize apply the parameter-free per-token normalization first (bitlinear.md step 1);
///        pass false when @p x is already normalized.
/// @param path kernel_path::automatic, or a path to force (avx2 and above use the AVX2 code).
/// @throws tern::error on zero @p cols, @p ldx < @p cols, or an unavailable path.
inline void quantize_activations(const float* x, std::size_t tokens, std::size_t cols, std::size_t ldx,
                                 quantized_activations& out, bool normalize = true,
                                 kernel_path path = kernel_path::automatic) {
    detail::require(cols > 0 && cols <= max_cols, "quantize_activations: cols must be in 1..", max_cols, ", got ",
                    cols);
    detail::require(ldx >= cols, "quantize_activations: row stride ", ldx, " is smaller than cols ", cols);
    const kernel_path p = detail::resolve_path(path, "quantize_activations");
    out.resize(tokens, cols);
    const std::size_t Kp = out.padded_cols;
    for (std::size_t t = 0; t < tokens; ++t) {
        const float* xt = x + t * ldx;
        float mean = 0.0f, rstd = 1.0f;
        if (normalize) detail::token_stats(xt, cols, mean, rstd);
        std::int8_t* qt = out.q.data() + t * Kp;
#if TERN_PACKED_X86
        if (p != kernel_path::scalar) {
            detail::quantize_row_avx2(xt, cols, Kp, mean, rstd, qt, out.scale[t], out.sum[t]);
            continue;
        }
#endif
        (void)p;
        detail::quantize_row_scalar(xt, cols, Kp, mean, rstd, qt, out.scale[t], out.sum[t]);
    }
}

/// @brief Convenience overload: contiguous rows (ldx = cols), returns a new object.
inline quantized_activations quantize_activations(const float* x, std::size_t tokens, std::size_t cols,
                                                  bool normalize = true,
                                                  kernel_path path = kernel_path::automatic) {
    quantized_activations out;
    quantize_activations(x, tokens, cols, cols, out, normalize, path);
    return out;
}

}  // namespace tern::packed
