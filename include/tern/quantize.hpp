#pragma once
/// @file quantize.hpp
/// @brief The BitLinear quantizers of ../shared/spec/bitlinear.md as raw-pointer kernels.
///
/// - normalize_tokens: parameter-free per-token normalization (step 1);
/// - quantize_activations: per-token absmax quantization to ActBits with the lambda blend (steps 2, 4);
/// - weight_scale_value: mean or LOWER median of |W| over the whole tensor (step 3);
/// - ternarize_weights: Wq in {-1,0,1}, and the blended dequantized weight W^ (step 4).
/// Rounding is round-half-to-even everywhere.

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "policy.hpp"
#include "threads.hpp"

namespace tern {

/// @brief The epsilon of the spec (normalization, activation and weight scales).
inline constexpr float quant_eps = 1e-5f;

namespace detail {

/// Round half to even for |v| < 2^22, without a libm call (std::nearbyint is one on plain x86-64).
/// Adding 1.5 * 2^23 pushes the fraction bits out of the mantissa, and the FPU's default
/// round-to-nearest-even mode does the rounding.
inline float round_half_even(float v) {
#if defined(__FAST_MATH__)
    return std::nearbyint(v);  // -ffast-math may fold the trick away
#else
    constexpr float magic = 12582912.0f;
    volatile float shifted = v + magic;  // volatile: keep the two adds even under aggressive folding
    return shifted - magic;
#endif
}

/// min(max(v, lo), hi): unlike std::clamp (which returns references), this if-converts and vectorizes.
inline float clamp_value(float v, float lo, float hi) { return std::min(std::max(v, lo), hi); }

/// o = x + lambda (clamp(round(x s), -qp, qp) inv - x) over one row; a plain function (not a
/// lambda capture) so every operand is a local value and the loop vectorizes.
inline void quantize_row(const float* __restrict row, std::size_t K, float s, float inv, float qp, float lambda,
                         float* __restrict o);

/// Non-volatile variant for hot loops that the compiler can vectorize (same result).
inline float round_half_even_fast(float v) {
#if defined(__FAST_MATH__)
    return std::nearbyint(v);
#else
    constexpr float magic = 12582912.0f;
    return (v + magic) - magic;
#endif
}

inline void quantize_row(const float* __restrict row, std::size_t K, float s, float inv, float qp, float lambda,
                         float* __restrict o) {
    if (lambda == 1.0f) {
        for (std::size_t k = 0; k < K; ++k) o[k] = round_half_even_fast(clamp_value(row[k] * s, -qp, qp)) * inv;
    } else {
        for (std::size_t k = 0; k < K; ++k) {
            const float q = round_half_even_fast(clamp_value(row[k] * s, -qp, qp)) * inv;
            o[k] = row[k] + lambda * (q - row[k]);
        }
    }
}

/// The ternary code clamp(round(w s), -1, 1), computed as round(clamp(w s, -1, 1)): the same value
/// (rounding is monotonic and +-1 are integers), one clamp fewer, and outliers never reach the trick.
inline float ternary_code(float w, float s, float lo = -1.0f, float hi = 1.0f) {
    return round_half_even_fast(clamp_value(w * s, lo, hi));
}

/// 1.0f that the optimizer cannot see through. With literal +-1 clamp bounds GCC 12 rewrites
/// clamp(.) * inv into branches on the three outcomes, and the loop no longer vectorizes (4-8x slower).
inline float opaque_one() {
    static volatile float one = 1.0f;
    return one;
}

/// w_hat = w + lambda (code(w) inv - w), with a branch-free loop per case so both vectorize.
inline void ternary_dequantized(const float* __restrict w, std::size_t n, float s, float inv, float lambda,
                                float* __restrict w_hat) {
    const float one = opaque_one();
    if (lambda == 1.0f) {
        for (std::size_t i = 0; i < n; ++i) w_hat[i] = ternary_code(w[i], s, -one, one) * inv;
    } else {
        for (std::size_t i = 0; i < n; ++i)
            w_hat[i] = w[i] + lambda * (ternary_code(w[i], s, -one, one) * inv - w[i]);
    }
}

inline void ternary_codes(const float* __restrict w, std::size_t n, float s, std::int8_t* __restrict codes) {
    for (std::size_t i = 0; i < n; ++i) codes[i] = static_cast<std::int8_t>(ternary_code(w[i], s));
}

// Reductions over 16 independent lanes: the compiler turns the fixed-width inner loops into SIMD
// (a single accumulator would be a serial dependency chain, and std::max/+ reductions are not
// vectorized without -ffast-math). Lanes are combined pairwise at the end.
inline constexpr std::size_t lanes = 16;

inline float combine_lanes_sum(float* acc) {
    for (std::size_t w = lanes / 2; w > 0; w /= 2)
        for (std::size_t j = 0; j < w; ++j) acc[j] += acc[j + w];
    return acc[0];
}

inline float lane_sum(const float* x, std::size_t n) {
    float acc[lanes] = {};
    const std::size_t full = n - n % lanes;
    for (std::size_t i = 0; i < full; i += lanes)
        for (std::size_t j = 0; j < lanes; ++j) acc[j] += x[i + j];
    for (std::size_t i = full; i < n; ++i) acc[0] += x[i];
    return combine_lanes_sum(acc);
}

inline float lane_sum_abs(const float* x, std::size_t n) {
    float acc[lanes] = {};
    const std::size_t full = n - n % lanes;
    for (std::size_t i = 0; i < full; i += lanes)
        for (std::size_t j = 0; j < lanes; ++j) acc[j] += std::fabs(x[i + j]);
    for (std::size_t i = full; i < n; ++i) acc[0] += std::fabs(x[i]);
    return combine_lanes_sum(acc);
}

/// Sum of (x - m)^2.
inline float lane_sum_sq_dev(const float* x, std::size_t n, float m) {
    float acc[lanes] = {};
    const std::size_t full = n - n % lanes;
    for (std::size_t i = 0; i < full; i += lanes)
        for (std::size_t j = 0; j < lanes; ++j) acc[j] += (x[i + j] - m) * (x[i + j] - m);
    for (std::size_t i = full; i < n; ++i) acc[0] += (x[i] - m) * (x[i] - m);
    return combine_lanes_sum(acc);
}

/// Sum of a[i] * b[i].
inline float lane_dot(const float* a, const float* b, std::size_t n) {
    float acc[lanes] = {};
    const std::size_t full = n - n % lanes;
    for (std::size_t i = 0; i < full; i += lanes)
        for (std::size_t j = 0; j < lanes; ++j) acc[j] += a[i + j] * b[i + j];
    for (std::size_t i = full; i < n; ++i) acc[0] += a[i] * b[i];
    return combine_lanes_sum(acc);
}

inline float lane_max_abs(const float* x, std::size_t n) {
    float acc[lanes] = {};
    const std::size_t full = n - n % lanes;
    for (std::size_t i = 0; i < full; i += lanes)
        for (std::size_t j = 0; j < lanes; ++j) acc[j] = std::max(acc[j], std::fabs(x[i + j]));
    for (std::size_t i = full; i < n; ++i) acc[0] = std::max(acc[0], std::fabs(x[i]));
    for (std::size_t w = lanes / 2; w > 0; w /= 2)
        for (std::size_t j = 0; j < w; ++j) acc[j] = std::max(acc[j], acc[j + w]);
    return acc[0];
}

/// Lower median of |x| by radix selection over the bits of |x| (which order like the values for
/// non-negative floats): a histogram of the top 11 bits (exponent + 3 mantissa bits) finds the
/// bucket of the answer; a second pass collects that bucket's values and a histogram of their next
/// 10 bits; std::nth_element then sorts out the one sub-bucket left, a few values at most in
/// trained weights. O(n); a single level left up to a tenth of the weights to nth_element.
inline float lower_median_abs(const float* x, std::size_t n) {
    if (n == 0) return 0.0f;
    const std::size_t k = (n - 1) / 2;  // rank of the lower median, 0-based
    constexpr int shift1 = 20, shift2 = 10;
    constexpr std::size_t buckets1 = std::size_t{1} << (31 - shift1), buckets2 = std::size_t{1} << (shift1 - shift2);
    thread_local std::vector<std::uint32_t> histogram, partial, candidates;
    // Finds the bucket holding rank r of a histogram; r becomes the rank inside that bucket.
    const auto select = [](const std::vector<std::uint32_t>& h, std::size_t& r) {
        std::size_t b = 0;
        for (; r >= h[b]; ++b) r -= h[b];
        return static_cast<std::uint32_t>(b);
    };
    // Four interleaved sub-histograms: runs of equal buckets would otherwise serialize on one counter.
    partial.assign(4 * buckets1, 0);
    for (std::size_t i = 0; i < n; ++i) {
        std::uint32_t bits;
        std::memcpy(&bits, x + i, sizeof bits);
        ++partial[(i & 3) * buckets1 + ((bits & 0x7fffffffu) >> shift1)];
    }
    histogram.resize(buckets1);
    for (std::size_t b = 0; b < buckets1; ++b)
        histogram[b] = partial[b] + partial[buckets1 + b] + partial[2 * buckets1 + b] + partial[3 * buckets1 + b];
    std::size_t rank = k;
    const std::uint32_t top = select(histogram, rank);
    candidates.clear();
    candidates.reserve(histogram[top]);
    histogram.assign(buckets2, 0);
    for (std::size_t i = 0; i < n; ++i) {
        std::uint32_t bits;
        std::memcpy(&bits, x + i, sizeof bits);
        bits &= 0x7fffffffu;
        if ((bits >> shift1) == top) {
            candidates.push_back(bits);
            ++histogram[(bits >> shift2) & (buckets2 - 1)];
        }
    }
    const std::uint32_t middle = select(histogram, rank);
    std::size_t kept = 0;
    for (const std::uint32_t bits : candidates)
        if (((bits >> shift2) & (buckets2 - 1)) == middle) candidates[kept++] = bits;
    // Bit patterns of non-negative floats order like the floats, so selecting on them is exact.
    const auto nth = candidates.begin() + static_cast<std::ptrdiff_t>(rank);
    std::nth_element(candidates.begin(), nth, candidates.begin() + static_cast<std::ptrdiff_t>(kept));
    float v;
    std::memcpy(&v, &*nth, sizeof v);
    return v;
}

}  // namespace detail

/// @brief Per-token normalization without parameters: xn = (x - mean) / sqrt(var + eps).
/// @param x      T x K input, token-major.
/// @param xn     T x K output (may alias x).
/// @param rstd   T outputs 1/sqrt(var + eps), kept for the backward pass (may be null).
/// @param eps    added to the variance (the spec's 1e-5 by default).
inline void normalize_tokens(const float* x, std::size_t T, std::size_t K, float* xn, float* rstd,
                             float eps = quant_eps) {
    parallel_for(
        T,
        [&](std::size_t lo, std::size_t hi) {
            for (std::size_t t = lo; t < hi; ++t) {
                const float* row = x + t * K;
                const float m = detail::lane_sum(row, K) / float(K);
                const float var = detail::lane_sum_sq_dev(row, K, m) / float(K);
                const float r = 1.0f / std::sqrt(var + eps);
                float* out = xn + t * K;
                for (std::size_t k = 0; k < K; ++k) out[k] = (row[k] - m) * r;
                if (rstd) rstd[t] = r;
            }
        },
        double(T) * double(K) * 4, 2e5);
}

/// @brief Backward of normalize_tokens: dx = rstd * (dxn - mean(dxn) - xn * mean(dxn * xn)).
/// @param dxn  T x K gradient with respect to the normalized input.
/// @param xn   T x K normalized input of the forward pass.
/// @param rstd T values from the forward pass.
/// @param dx   T x K output (may alias dxn).
inline void normalize_tokens_backward(const float* dxn, const float* xn, const float* rstd, std::size_t T,
                                      std::size_t K, float* dx) {
    parallel_for(
        T,
        [&](std::size_t lo, std::size_t hi) {
            for (std::size_t t = lo; t < hi; ++t) {
                const float* g = dxn + t * K;
                const float* v = xn + t * K;
                const float mg = detail::lane_sum(g, K) / float(K);
                const float mgv = detail::lane_dot(g, v, K) / float(K);
                const float r = rstd[t];
                float* out = dx + t * K;
                for (std::size_t k = 0; k < K; ++k) out[k] = r * (g[k] - mg - v[k] * mgv);
            }
        },
        double(T) * double(K) * 4, 2e5);
}

/// @brief Per-token absmax activation quantization with the lambda blend.
///
/// s_x = Qp / max(max|x|, eps) with Qp = 2^(bits-1) - 1; xq = clamp(round(x s_x), -Qp, Qp);
/// out = x + lambda (xq / s_x - x). With lambda = 1, out = xq / s_x exactly.
/// @param scale T outputs s_x (may be null).
inline void quantize_activations(const float* x, std::size_t T, std::size_t K, int bits, float lambda, float* out,
                                 float* scale) {
    const float qp = float((1 << (bits - 1)) - 1);
    parallel_for(
        T,
        [&](std::size_t lo, std::size_t hi) {
            for (std::size_t t = lo; t < hi; ++t) {
                const float* row = x + t * K;
                const float amax = detail::lane_max_abs(row, K);
                const float s = qp / std::max(amax, quant_eps);
                const float inv = std::max(amax, quant_eps) / qp;  // 1 / s_x, computed directly
                float* o = out + t * K;
                detail::quantize_row(row, K, s, inv, qp, lambda, o);
                if (scale) scale[t] = s;
            }
        },
        double(T) * double(K) * 3, 2e5);
}

/// @brief The per-tensor weight statistic m: mean(|W|) or the lower median of |W|.
template <quantization_policy Policy>
float weight_scale_value(const float* w, std::size_t n) {
    static_assert(Policy::ternary, "weight_scale_value: only ternary policies have a weight scale");
    if constexpr (Policy::scale == weight_scale::abs_mean) {
        return n == 0 ? 0.0f : detail::lane_sum_abs(w, n) / float(n);
    } else {
        return detail::lower_median_abs(w, n);
    }
}

/// @brief Ternary weights: s_w = 1 / max(m, eps), Wq = clamp(round(W s_w), -1, 1).
///
/// Writes the blended dequantized weight W^ = W + lambda (Wq / s_w - W) into @p w_hat and,
/// if @p codes is not null, Wq into @p codes. Returns s_w.
template <quantization_policy Policy>
float ternarize_weights(const float* w, std::size_t n, float lambda, float* w_hat, std::int8_t* codes = nullptr) {
    const float m = weight_scale_value<Policy>(w, n);
    const float s = 1.0f / std::max(m, quant_eps);
    const float inv = std::max(m, quant_eps);  // 1 / s_w, without a second rounding
    if (w_hat) detail::ternary_dequantized(w, n, s, inv, lambda, w_hat);
    if (codes) detail::ternary_codes(w, n, s, codes);
    return s;
}

}  // namespace tern
