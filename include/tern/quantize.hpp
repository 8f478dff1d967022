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

/// Non-volatile variant for hot loops that the compiler can vectorize (same result).
inline float round_half_even_fast(float v) {
#if defined(__FAST_MATH__)
    return std::nearbyint(v);
#else
    constexpr float magic = 12582912.0f;
    return (v + magic) - magic;
#endif
}

/// Sum with several independent accumulators (ILP, and less rounding error than one chain).
inline double sum_abs(const float* x, std::size_t n) {
    double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    std::size_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; ++j) acc[j] += std::fabs(x[i + j]);
    for (; i < n; ++i) acc[0] += std::fabs(x[i]);
    return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

/// Lower median of |x| by radix selection: one histogram pass over the top bits of |x|
/// (which order like the values for non-negative floats), then std::nth_element on the
/// one bucket that holds the answer. O(n), and much faster than nth_element on all of x.
inline float lower_median_abs(const float* x, std::size_t n) {
    if (n == 0) return 0.0f;
    const std::size_t k = (n - 1) / 2;  // rank of the lower median, 0-based
    constexpr int shift = 20;           // 11 bits: exponent + 3 mantissa bits
    constexpr std::size_t buckets = std::size_t{1} << (31 - shift);
    thread_local std::vector<std::uint32_t> histogram;
    thread_local std::vector<float> candidates;
    histogram.assign(buckets, 0);
    for (std::size_t i = 0; i < n; ++i) {
        std::uint32_t bits;
        std::memcpy(&bits, x + i, sizeof bits);
        ++histogram[(bits & 0x7fffffffu) >> shift];
    }
    std::size_t below = 0, bucket = 0;
    for (; bucket < buckets; ++bucket) {
        if (below + histogram[bucket] > k) break;
        below += histogram[bucket];
    }
    candidates.clear();
    candidates.reserve(histogram[bucket]);
    for (std::size_t i = 0; i < n; ++i) {
        std::uint32_t bits;
        std::memcpy(&bits, x + i, sizeof bits);
        bits &= 0x7fffffffu;
        if ((bits >> shift) == bucket) {
            float v;
            std::memcpy(&v, &bits, sizeof v);
            candidates.push_back(v);
        }
    }
    auto nth = candidates.begin() + static_cast<std::ptrdiff_t>(k - below);
    std::nth_element(candidates.begin(), nth, candidates.end());
    return *nth;
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
                double s = 0, s2 = 0;
                for (std::size_t k = 0; k < K; ++k) s += row[k];
                const double mean = s / double(K);
                for (std::size_t k = 0; k < K; ++k) {
                    const double d = row[k] - mean;
                    s2 += d * d;
                }
                const float r = float(1.0 / std::sqrt(s2 / double(K) + double(eps)));
                const float m = float(mean);
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
                double sg = 0, sgv = 0;
                for (std::size_t k = 0; k < K; ++k) {
                    sg += g[k];
                    sgv += double(g[k]) * v[k];
                }
                const float mg = float(sg / double(K)), mgv = float(sgv / double(K));
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
                float amax = 0;
                for (std::size_t k = 0; k < K; ++k) amax = std::max(amax, std::fabs(row[k]));
                const float s = qp / std::max(amax, quant_eps);
                const float inv = std::max(amax, quant_eps) / qp;  // 1 / s_x, computed directly
                float* o = out + t * K;
                if (lambda == 1.0f) {
                    for (std::size_t k = 0; k < K; ++k) {
                        const float v = std::clamp(row[k] * s, -qp, qp);
                        o[k] = detail::round_half_even_fast(v) * inv;
                    }
                } else {
                    for (std::size_t k = 0; k < K; ++k) {
                        const float v = std::clamp(row[k] * s, -qp, qp);
                        const float q = detail::round_half_even_fast(v) * inv;
                        o[k] = row[k] + lambda * (q - row[k]);
                    }
                }
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
        return n == 0 ? 0.0f : float(detail::sum_abs(w, n) / double(n));
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
    for (std::size_t i = 0; i < n; ++i) {
        // Clamp before rounding so outliers stay inside the rounding trick's range.
        const float q = detail::round_half_even_fast(std::clamp(w[i] * s, -2.0f, 2.0f));
        const float c = std::clamp(q, -1.0f, 1.0f);
        if (w_hat) w_hat[i] = lambda == 1.0f ? c * inv : w[i] + lambda * (c * inv - w[i]);
        if (codes) codes[i] = static_cast<std::int8_t>(c);
    }
    return s;
}

}  // namespace tern
