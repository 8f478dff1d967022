#pragma once
/// @file packed/ternary_gemm.hpp
/// @brief Packed ternary GEMV/GEMM: y[t][n] = (sum_k w[n][k] * q[t][k]) / (s_w * s_x[t]) (+ bias[n]).
///
/// With codes c = w + 1 the kernels compute sum_k c*q - sum_k q exactly in int32 (see
/// ternary_kernels_x86.hpp), then one shared scalar epilogue converts it:
///     y = float(dot) * (1 / (s_w * s_x[t]))  (+ bias[n])
/// The epilogue is the same code for every path, so SIMD and scalar outputs are identical bit for
/// bit, not only the integer sums. The reciprocal is taken once per token (a division per output
/// would cost as much as a small layer); it can differ from a true division by 1 ulp.
///
/// Threads: the row groups are split over tern's persistent pool (tern::parallel_for) when the
/// product has at least ~1e6 weight-token multiply-adds; smaller ones run on the calling thread.

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>

#include "../error.hpp"
#include "../threads.hpp"
#include "activation_quant.hpp"
#include "aligned_buffer.hpp"
#include "cpu_dispatch.hpp"
#include "packed_matrix.hpp"
#include "ternary_kernels_x86.hpp"

namespace tern::packed {

namespace detail {

/// Row groups handed to a kernel at once (64 rows): their weights stay cache-resident while
/// every token tile passes over them.
inline constexpr std::size_t chunk_groups = 16;
/// Tokens handed to a kernel at once (bounds the per-thread scratch).
inline constexpr std::size_t chunk_tokens = 64;
/// Multiply-adds below which a call stays on one thread (pool wake-up costs ~1-2 us). Measured
/// on the Zen 5 class machine (bench_packed_best, fastest of 60 calls, 2026-12-02): 2048x2048
/// gains 1.72x (GEMV, AVX-512) to 1.93x (64 tokens) from a second thread when that core is free;
/// when it is busy (a shared machine), a split call waits for its slower half and can run 10x
/// slower than one thread, whatever the grain.
inline constexpr double parallel_grain = 1e6;

/// Runs the integer kernel over the row groups of raw tiles in packed_matrix layout (@p groups
/// groups of @p nb blocks, @p N <= 4 * groups real rows) and hands each finished (rows x tokens)
/// chunk to @p epilogue(n0, n1, t0, t1, dots, ldd), where dots[(t - t0) * ldd + (n - n0)] is the
/// exact dot of row n. The caller has checked @p ldq against the padded K (nb * 128).
template <class Epilogue>
void run_ternary_tiles(const std::uint8_t* w, std::size_t nb, std::size_t groups, std::size_t N, const std::int8_t* q,
                       std::size_t ldq, const std::int32_t* sum_q, std::size_t T, kernel_path p,
                       Epilogue&& epilogue) {
    if (T == 0 || groups == 0) return;
    const double work = double(groups * group_rows) * double(nb * block_weights) * double(T);
    parallel_for(
        groups,
        [&](std::size_t lo, std::size_t hi) {
            thread_local aligned_buffer<std::int32_t> scratch;
            const std::size_t need = chunk_groups * group_rows * std::min(T, chunk_tokens);
            if (scratch.size() < need) scratch.resize(need);
            for (std::size_t g0 = lo; g0 < hi; g0 += chunk_groups) {
                const std::size_t g1 = std::min(hi, g0 + chunk_groups);
                const std::size_t ldd = (g1 - g0) * group_rows;
                const std::size_t n0 = g0 * group_rows, n1 = std::min(N, g1 * group_rows);
                for (std::size_t t0 = 0; t0 < T; t0 += chunk_tokens) {
                    const std::size_t t1 = std::min(T, t0 + chunk_tokens);
                    const kernel_fn kernel = select_kernel(p, t1 - t0);
                    kernel(w, nb, g0, g1, q + t0 * ldq, ldq, sum_q + t0, t1 - t0, scratch.data(), ldd);
                    epilogue(n0, n1, t0, t1, static_cast<const std::int32_t*>(scratch.data()), ldd);
                }
            }
        },
        work, parallel_grain);
}

/// run_ternary_tiles over a packed_matrix, after checking the stride and resolving the path.
template <class Epilogue>
void run_ternary(const packed_matrix& W, const std::int8_t* q, std::size_t ldq, const std::int32_t* sum_q,
                 std::size_t T, kernel_path path, const char* where, Epilogue&& epilogue) {
    require(W.rows() > 0, where, ": empty weight matrix");
    require(ldq >= W.padded_cols(), where, ": activation row stride ", ldq, " is smaller than the padded K ",
            W.padded_cols(), " (quantize with K = ", W.cols(), ")");
    if (T == 0) return;
    run_ternary_tiles(W.bytes(), W.blocks(), W.groups(), W.rows(), q, ldq, sum_q, T, resolve_path(path, where),
                      epilogue);
}

}  // namespace detail

/// @brief Exact integer product: dots[t * ldd + n] = sum_k w[n][k] * q[t][k] for T tokens.
/// @param q      T rows of int8 activations, row stride @p ldq >= W.padded_cols(), zero beyond W.cols()
/// @param sum_q  per-token sum of q (as produced by quantize_activations)
/// @param path   kernel_path::automatic (detected or forced) or a specific available path
/// @throws tern::error on a too small stride or an unavailable path.
inline void ternary_gemm_int(const packed_matrix& W, const std::int8_t* q, std::size_t ldq,
                             const std::int32_t* sum_q, std::size_t T, std::int32_t* dots, std::size_t ldd,
                             kernel_path path = kernel_path::automatic) {
    detail::require(ldd >= W.rows(), "ternary_gemm_int: output stride ", ldd, " is smaller than N ", W.rows());
    detail::run_ternary(W, q, ldq, sum_q, T, path, "ternary_gemm_int",
                        [&](std::size_t n0, std::size_t n1, std::size_t t0, std::size_t t1, const std::int32_t* d,
                            std::size_t ld) {
                            for (std::size_t t = t0; t < t1; ++t)
                                std::copy(d + (t - t0) * ld, d + (t - t0) * ld + (n1 - n0), dots + t * ldd + n0);
                        });
}

/// @brief Exact integer product for quantized activations: dots is a.tokens x W.rows(), row-major.
inline void ternary_gemm_int(const packed_matrix& W, const quantized_activations& a, std::int32_t* dots,
                             kernel_path path = kernel_path::automatic) {
    detail::require(a.cols == W.cols(), "ternary_gemm_int: activations have K = ", a.cols, ", weights K = ",
                    W.cols());
    ternary_gemm_int(W, a.q.data(), a.padded_cols, a.sum.data(), a.tokens, dots, W.rows(), path);
}

/// @brief y[t * ldy + n] = (sum_k w[n][k] * q[t][k]) / (s_w * s_x[t]) (+ bias[n]) for T tokens.
/// @param s_x   per-token activation scales; @param s_w the per-tensor weight scale (> 0)
/// @param bias  optional, W.rows() values added after dequantization (nullptr: none)
/// @throws tern::error on bad strides, a non-positive s_w or an unavailable path.
inline void ternary_gemm(const packed_matrix& W, const std::int8_t* q, std::size_t ldq, const float* s_x,
                         const std::int32_t* sum_q, std::size_t T, float s_w, float* y, std::size_t ldy,
                         const float* bias = nullptr, kernel_path path = kernel_path::automatic) {
    detail::require(ldy >= W.rows(), "ternary_gemm: output stride ", ldy, " is smaller than N ", W.rows());
    detail::require(s_w > 0.0f && std::isfinite(s_w), "ternary_gemm: weight scale must be positive, got ", s_w);
    detail::run_ternary(W, q, ldq, sum_q, T, path, "ternary_gemm",
                        [&](std::size_t n0, std::size_t n1, std::size_t t0, std::size_t t1, const std::int32_t* d,
                            std::size_t ld) {
                            for (std::size_t t = t0; t < t1; ++t) {
                                const float inv = 1.0f / (s_w * s_x[t]);
                                const std::int32_t* dt = d + (t - t0) * ld;
                                float* yt = y + t * ldy;
                                if (bias) {
                                    for (std::size_t n = n0; n < n1; ++n) {
                                        const float v = static_cast<float>(dt[n - n0]) * inv;
                                        yt[n] = v + bias[n];
                                    }
                                } else {
                                    for (std::size_t n = n0; n < n1; ++n) yt[n] = static_cast<float>(dt[n - n0]) * inv;
                                }
                            }
                        });
}

/// @brief ternary_gemm on quantized activations; y is a.tokens x W.rows(), row-major.
inline void ternary_gemm(const packed_matrix& W, const quantized_activations& a, float s_w, float* y,
                         const float* bias = nullptr, kernel_path path = kernel_path::automatic) {
    detail::require(a.cols == W.cols(), "ternary_gemm: activations have K = ", a.cols, ", weights K = ", W.cols());
    ternary_gemm(W, a.q.data(), a.padded_cols, a.scale.data(), a.sum.data(), a.tokens, s_w, y, W.rows(), bias,
                 path);
}

/// @brief One token: y[n] = (sum_k w[n][k] * q[k]) / (s_w * s_x) (+ bias[n]).
/// @param q W.padded_cols() int8 values, zero beyond W.cols().
inline void ternary_gemv(const packed_matrix& W, const std::int8_t* q, float s_x, std::int32_t sum_q, float s_w,
                         float* y, const float* bias = nullptr, kernel_path path = kernel_path::automatic) {
    ternary_gemm(W, q, W.padded_cols(), &s_x, &sum_q, 1, s_w, y, W.rows(), bias, path);
}

}  // namespace tern::packed
