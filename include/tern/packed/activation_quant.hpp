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
/// Bit-exactness between paths: mean and rstd come from token_stats, whose portable, AVX2 and
/// AVX-512 variants perform the same float operations in the same order (that of the training
/// layers' normalize_tokens, so frozen models normalize exactly as they were trained). The same
/// pass finds the range of x, from which max |x~| follows exactly (token_summary::absmax), so
/// quantizing a token reads it three times, not four. Each element then goes through the same
/// float operations in every path, and rounding is round-half-even in all of them (cvtps2dq in
/// SIMD, the 1.5*2^23 trick in scalar; std::nearbyint would be a libm call per element).

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>

#include "../error.hpp"
#include "../kernels/gemm_common.hpp"
#include "../quantize.hpp"
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

/// What a token's quantization needs to know about it: the normalization's mean and rstd (0 and 1
/// without normalization) and the range [lo, hi] of its raw values (NaNs ignored).
struct token_summary {
    float mean = 0.0f, rstd = 1.0f, lo = 0.0f, hi = 0.0f;

    /// max_k |(x_k - mean) * rstd| without another pass: float subtraction and multiplication by
    /// rstd > 0 never reverse the order of two values, so the largest magnitude is reached at lo or
    /// hi, exactly (the same float the per-element maximum gives). NaNs count as 0, as they do in
    /// the training layers' std::max reduction.
    float absmax() const {
        float m = 0.0f;
        m = std::max(m, std::fabs((hi - mean) * rstd));
        m = std::max(m, std::fabs((lo - mean) * rstd));
        return m;
    }
};

/// Lanes of the statistics sums: those of the training layers' reductions (detail::lane_sum and
/// detail::lane_sum_sq_dev in quantize.hpp). The order of the float additions is part of the
/// result: element i goes to lane i mod 16, elements past the last full 16 go to lane 0 in
/// sequence, and the lanes are combined pairwise (detail::combine_lanes_sum). The SIMD variants
/// below keep exactly that order.
inline constexpr std::size_t stat_lanes = tern::detail::lanes;
static_assert(stat_lanes == 16, "the SIMD statistics hold 16 lanes");
static_assert(act_eps == quant_eps, "packed and training normalization share their epsilon");

/// Range of x with the operand order of maxps/minps (a NaN element never replaces the running
/// value), so every path finds the same lo and hi.
inline void value_range(const float* x, std::size_t K, float& lo, float& hi) {
    float l = std::numeric_limits<float>::infinity(), h = -l;
    for (std::size_t k = 0; k < K; ++k) {
        h = x[k] > h ? x[k] : h;
        l = x[k] < l ? x[k] : l;
    }
    lo = l;
    hi = h;
}

/// Per-token mean, 1/sqrt(var + eps) and range, the portable version: the training layers' own
/// reductions (tern::normalize_tokens), so the packed path normalizes exactly as training.
inline token_summary act_stats(const float* x, std::size_t K) {
    token_summary r;
    value_range(x, K, r.lo, r.hi);
    r.mean = tern::detail::lane_sum(x, K) / static_cast<float>(K);
    const float var = tern::detail::lane_sum_sq_dev(x, K, r.mean) / static_cast<float>(K);
    r.rstd = 1.0f / std::sqrt(var + act_eps);
    return r;
}

#if TERN_PACKED_X86
/// AVX2 version of act_stats: lanes 0-7 in one register, 8-15 in the other; bit-identical.
__attribute__((target("avx2"))) inline token_summary act_stats_avx2(const float* x, std::size_t K) {
    constexpr std::size_t L = stat_lanes;
    const std::size_t full = K - K % L;
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    __m256 h0 = _mm256_set1_ps(-std::numeric_limits<float>::infinity()), h1 = h0;
    __m256 l0 = _mm256_set1_ps(std::numeric_limits<float>::infinity()), l1 = l0;
    for (std::size_t i = 0; i < full; i += L) {
        const __m256 a = _mm256_loadu_ps(x + i), b = _mm256_loadu_ps(x + i + 8);
        s0 = _mm256_add_ps(s0, a);
        s1 = _mm256_add_ps(s1, b);
        h0 = _mm256_max_ps(a, h0);  // maxps returns the second operand when the first is NaN
        h1 = _mm256_max_ps(b, h1);
        l0 = _mm256_min_ps(a, l0);
        l1 = _mm256_min_ps(b, l1);
    }
    token_summary r;
    alignas(32) float acc[L];
    _mm256_store_ps(acc, _mm256_max_ps(h0, h1));
    r.hi = -std::numeric_limits<float>::infinity();
    for (int j = 0; j < 8; ++j) r.hi = acc[j] > r.hi ? acc[j] : r.hi;
    _mm256_store_ps(acc, _mm256_min_ps(l0, l1));
    r.lo = std::numeric_limits<float>::infinity();
    for (int j = 0; j < 8; ++j) r.lo = acc[j] < r.lo ? acc[j] : r.lo;
    for (std::size_t i = full; i < K; ++i) {
        r.hi = x[i] > r.hi ? x[i] : r.hi;
        r.lo = x[i] < r.lo ? x[i] : r.lo;
    }
    _mm256_store_ps(acc, s0);
    _mm256_store_ps(acc + 8, s1);
    for (std::size_t i = full; i < K; ++i) acc[0] += x[i];
    const float mean = tern::detail::combine_lanes_sum(acc) / static_cast<float>(K);
    const __m256 vm = _mm256_set1_ps(mean);
    s0 = _mm256_setzero_ps();
    s1 = _mm256_setzero_ps();
    for (std::size_t i = 0; i < full; i += L) {
        const __m256 d0 = _mm256_sub_ps(_mm256_loadu_ps(x + i), vm);
        const __m256 d1 = _mm256_sub_ps(_mm256_loadu_ps(x + i + 8), vm);
        __m256 p0 = _mm256_mul_ps(d0, d0), p1 = _mm256_mul_ps(d1, d1);
        TERN_UNFUSED(p0);
        TERN_UNFUSED(p1);
        s0 = _mm256_add_ps(s0, p0);
        s1 = _mm256_add_ps(s1, p1);
    }
    _mm256_store_ps(acc, s0);
    _mm256_store_ps(acc + 8, s1);
    for (std::size_t i = full; i < K; ++i) {
        const float d = x[i] - mean;
        float p = d * d;
        TERN_UNFUSED(p);
        acc[0] += p;
    }
    const float var = tern::detail::combine_lanes_sum(acc) / static_cast<float>(K);
    r.mean = mean;
    r.rstd = 1.0f / std::sqrt(var + act_eps);
    return r;
}

#define TERN_PACKED_TARGET_AVX512_FLOAT __attribute__((target("avx2,avx512f,avx512bw")))

// Many plain AVX-512 intrinsics trip GCC 12's false -Wuninitialized (its headers pass
// _mm512_undefined_*()); their all-lanes maskz forms compute the same.
inline constexpr __mmask16 all16 = static_cast<__mmask16>(0xFFFF);
TERN_PACKED_TARGET_AVX512_FLOAT inline __m512 max512(__m512 a, __m512 b) { return _mm512_maskz_max_ps(all16, a, b); }
TERN_PACKED_TARGET_AVX512_FLOAT inline __m512 min512(__m512 a, __m512 b) { return _mm512_maskz_min_ps(all16, a, b); }
TERN_PACKED_TARGET_AVX512_FLOAT inline __m128i narrow_epi32_epi8(__m512i v) { return _mm512_maskz_cvtepi32_epi8(all16, v); }

/// AVX-512 version of act_stats for NT tokens at once (one zmm holds a token's 16 lanes; the NT
/// tokens are independent dependency chains). Bit-identical to act_stats.
template <int NT>
TERN_PACKED_TARGET_AVX512_FLOAT inline void act_stats_avx512(const float* x, std::size_t ldx, std::size_t K,
                                                             token_summary* out) {
    constexpr std::size_t L = stat_lanes;
    const std::size_t full = K - K % L;
    constexpr float inf = std::numeric_limits<float>::infinity();
    __m512 s[NT], h[NT], l[NT];
    for (int t = 0; t < NT; ++t) {
        s[t] = _mm512_setzero_ps();
        h[t] = _mm512_set1_ps(-inf);
        l[t] = _mm512_set1_ps(inf);
    }
    for (std::size_t i = 0; i < full; i += L)
        for (int t = 0; t < NT; ++t) {
            const __m512 v = _mm512_loadu_ps(x + t * ldx + i);
            s[t] = _mm512_add_ps(s[t], v);
            h[t] = max512(v, h[t]);
            l[t] = min512(v, l[t]);
        }
    alignas(64) float acc[L];
    __m512 vm[NT];
    for (int t = 0; t < NT; ++t) {
        const float* xt = x + t * ldx;
        token_summary& r = out[t];
        _mm512_store_ps(acc, h[t]);
        r.hi = -inf;
        for (float v : acc) r.hi = v > r.hi ? v : r.hi;
        _mm512_store_ps(acc, l[t]);
        r.lo = inf;
        for (float v : acc) r.lo = v < r.lo ? v : r.lo;
        for (std::size_t i = full; i < K; ++i) {
            r.hi = xt[i] > r.hi ? xt[i] : r.hi;
            r.lo = xt[i] < r.lo ? xt[i] : r.lo;
        }
        _mm512_store_ps(acc, s[t]);
        for (std::size_t i = full; i < K; ++i) acc[0] += xt[i];
        r.mean = tern::detail::combine_lanes_sum(acc) / static_cast<float>(K);
        vm[t] = _mm512_set1_ps(r.mean);
        s[t] = _mm512_setzero_ps();
    }
    for (std::size_t i = 0; i < full; i += L)
        for (int t = 0; t < NT; ++t) {
            const __m512 d = _mm512_sub_ps(_mm512_loadu_ps(x + t * ldx + i), vm[t]);
            __m512 p = _mm512_mul_ps(d, d);
            TERN_UNFUSED(p);
            s[t] = _mm512_add_ps(s[t], p);
        }
    for (int t = 0; t < NT; ++t) {
        const float* xt = x + t * ldx;
        _mm512_store_ps(acc, s[t]);
        for (std::size_t i = full; i < K; ++i) {
            const float d = xt[i] - out[t].mean;
            float p = d * d;
            TERN_UNFUSED(p);
            acc[0] += p;
        }
        const float var = tern::detail::combine_lanes_sum(acc) / static_cast<float>(K);
        out[t].rstd = 1.0f / std::sqrt(var + act_eps);
    }
}
#endif

/// Per-token summaries of T tokens (row stride @p ldx): with @p normalize, mean, rstd and range;
/// without, the range alone (mean 0, rstd 1). Every variant gives the same bits, so the fastest
/// one the CPU has is used whatever the requested kernel path.
inline void token_stats(const float* x, std::size_t ldx, std::size_t T, std::size_t K, bool normalize,
                        token_summary* out) {
    if (!normalize) {
        for (std::size_t t = 0; t < T; ++t) {
            out[t] = token_summary{};
            value_range(x + t * ldx, K, out[t].lo, out[t].hi);
        }
        return;
    }
#if TERN_PACKED_X86
    if (caps().avx512vnni) {
        std::size_t t = 0;
        for (; t + 4 <= T; t += 4) act_stats_avx512<4>(x + t * ldx, ldx, K, out + t);
        for (; t < T; ++t) act_stats_avx512<1>(x + t * ldx, ldx, K, out + t);
        return;
    }
    if (caps().avx2) {
        for (std::size_t t = 0; t < T; ++t) out[t] = act_stats_avx2(x + t * ldx, K);
        return;
    }
#endif
    for (std::size_t t = 0; t < T; ++t) out[t] = act_stats(x + t * ldx, K);
}

/// Scalar reference for one token: x~ = (x - mean) * rstd, then scale, round, clamp.
inline void quantize_row_scalar(const float* x, std::size_t K, std::size_t Kp, const token_summary& st,
                                std::int8_t* q, float& scale, std::int32_t& sum) {
    const float mean = st.mean, rstd = st.rstd;
    const float s = static_cast<float>(act_qmax) / std::max(st.absmax(), act_eps);
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
                                                              const token_summary& st, std::int8_t* q,
                                                              float& scale, std::int32_t& sum) {
    const float mean = st.mean, rstd = st.rstd;
    const __m256 vmean = _mm256_set1_ps(mean), vrstd = _mm256_set1_ps(rstd);
    const float s = static_cast<float>(act_qmax) / std::max(st.absmax(), act_eps);
    const __m256 vs = _mm256_set1_ps(s);
    const __m256 lo = _mm256_set1_ps(-200.0f), hi = _mm256_set1_ps(200.0f);
    const __m256i qmax = _mm256_set1_epi32(act_qmax), qmin = _mm256_set1_epi32(-act_qmax);
    __m256i vsum = _mm256_setzero_si256();
    std::size_t k = 0;
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

/// 16 elements of quantize_row_scalar's loop: (x - mean) * rstd * s, clamped, rounded, clamped.
TERN_PACKED_TARGET_AVX512_FLOAT inline __m512i quantize16_avx512(__m512 x, __m512 mean, __m512 rstd, __m512 s) {
    const __m512 t = _mm512_mul_ps(_mm512_sub_ps(x, mean), rstd);
    const __m512 v = min512(max512(_mm512_mul_ps(t, s), _mm512_set1_ps(-200.0f)), _mm512_set1_ps(200.0f));
    const __m512i r = _mm512_maskz_cvtps_epi32(all16, v);  // cvtps2dq rounds to nearest even
    return _mm512_maskz_min_epi32(all16, _mm512_maskz_max_epi32(all16, r, _mm512_set1_epi32(-act_qmax)),
                                  _mm512_set1_epi32(act_qmax));
}

/// AVX-512 version of quantize_row_scalar: the same element operations on 16 floats at a time,
/// the remainder under a mask, and vpmovdb for the in-order int32 -> int8 narrowing.
TERN_PACKED_TARGET_AVX512_FLOAT inline void quantize_row_avx512(const float* x, std::size_t K, std::size_t Kp,
                                                               const token_summary& st, std::int8_t* q,
                                                               float& scale, std::int32_t& sum) {
    const __m512 vmean = _mm512_set1_ps(st.mean), vrstd = _mm512_set1_ps(st.rstd);
    const float s = static_cast<float>(act_qmax) / std::max(st.absmax(), act_eps);
    const __m512 vs = _mm512_set1_ps(s);
    const std::size_t full = K - K % 16;
    const __mmask16 rest = static_cast<__mmask16>((1u << (K - full)) - 1u);
    __m512i vsum = _mm512_setzero_si512();
    std::size_t k = 0;
    for (; k < full; k += 16) {
        const __m512i r = quantize16_avx512(_mm512_loadu_ps(x + k), vmean, vrstd, vs);
        vsum = _mm512_add_epi32(vsum, r);
        _mm_storeu_si128(reinterpret_cast<__m128i*>(q + k), narrow_epi32_epi8(r));
    }
    if (rest) {
        const __m512i r =
            _mm512_maskz_mov_epi32(rest, quantize16_avx512(_mm512_maskz_loadu_ps(rest, x + k), vmean, vrstd, vs));
        vsum = _mm512_add_epi32(vsum, r);
        _mm_storeu_si128(reinterpret_cast<__m128i*>(q + k), narrow_epi32_epi8(r));  // zeros past K
        k += 16;
    }
    if (k < Kp) std::memset(q + k, 0, Kp - k);
    alignas(64) std::int32_t sums[16];
    _mm512_store_si512(sums, vsum);
    std::int32_t total = 0;
    for (std::int32_t v : sums) total += v;
    scale = s;
    sum = total;
}
#endif

}  // namespace detail

/// @brief Quantizes @p tokens rows of @p cols floats (row stride @p ldx) into @p out.
/// @param normalize apply the parameter-free per-token normalization first (bitlinear.md step 1);
///        pass false when @p x is already normalized.
/// @param path kernel_path::automatic, or a path to force (avx2 and avxvnni use the AVX2 code,
///        avx512vnni the AVX-512 code; all give the same bits).
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
    constexpr std::size_t chunk = 64;  // summaries of a chunk of tokens first (AVX-512 does 4 at once)
    detail::token_summary st[chunk];
    for (std::size_t t0 = 0; t0 < tokens; t0 += chunk) {
        const std::size_t n = std::min(chunk, tokens - t0);
        detail::token_stats(x + t0 * ldx, ldx, n, cols, normalize, st);
        for (std::size_t i = 0; i < n; ++i) {
            const std::size_t t = t0 + i;
            const float* xt = x + t * ldx;
            std::int8_t* qt = out.q.data() + t * Kp;
#if TERN_PACKED_X86
            if (p == kernel_path::avx512vnni) {
                detail::quantize_row_avx512(xt, cols, Kp, st[i], qt, out.scale[t], out.sum[t]);
                continue;
            }
            if (p != kernel_path::scalar) {
                detail::quantize_row_avx2(xt, cols, Kp, st[i], qt, out.scale[t], out.sum[t]);
                continue;
            }
#endif
            detail::quantize_row_scalar(xt, cols, Kp, st[i], qt, out.scale[t], out.sum[t]);
        }
    }
    (void)p;
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
