#pragma once
/// @file kernels/gemm.hpp
/// @brief fp32 matrix product used by every full-precision and training path.
///
/// C[M x N] = alpha * op(A) * op(B) + beta * C, all row-major, where op(A) is M x K and op(B) is K x N.
/// With transpose_a, A is stored K x M; with transpose_b, B is stored N x K.

#include <algorithm>
#include <cstddef>
#include <vector>

#include "../threads.hpp"

namespace tern::kernels {

/// @brief Row-major single-precision GEMM, threaded over the pool for large products.
inline void sgemm(bool transpose_a, bool transpose_b, std::size_t M, std::size_t N, std::size_t K, float alpha,
                  const float* A, std::size_t lda, const float* B, std::size_t ldb, float beta, float* C,
                  std::size_t ldc) {
    // Reference implementation: rows of C are independent, i-k-j order keeps the inner loop contiguous.
    const double work = double(M) * double(N) * double(K);
    parallel_for(
        M,
        [&](std::size_t lo, std::size_t hi) {
            std::vector<float> row(N);
            for (std::size_t i = lo; i < hi; ++i) {
                std::fill(row.begin(), row.end(), 0.0f);
                for (std::size_t k = 0; k < K; ++k) {
                    const float a = transpose_a ? A[k * lda + i] : A[i * lda + k];
                    if (transpose_b) {
                        for (std::size_t j = 0; j < N; ++j) row[j] += a * B[j * ldb + k];
                    } else {
                        const float* b = B + k * ldb;
                        for (std::size_t j = 0; j < N; ++j) row[j] += a * b[j];
                    }
                }
                float* c = C + i * ldc;
                for (std::size_t j = 0; j < N; ++j) c[j] = alpha * row[j] + (beta == 0.0f ? 0.0f : beta * c[j]);
            }
        },
        work);
}

}  // namespace tern::kernels
