#pragma once
/// @file kernels/gemm_common.hpp
/// @brief Pieces shared by every sgemm code path: ISA macros, scratch buffers, the portable packers.
///
/// Packed layout (BLIS style): a panel holds S "lines" (rows of op(A), or columns of op(B)) for kc
/// steps of k, stored k-major: panel[k * S + line]. Lines past the matrix edge are zero, so the
/// micro-kernels always run full width and only the final store is clipped.

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <new>

// Defining TERN_DISABLE_SIMD builds only the portable code (as on non-x86 targets).
#if (defined(__x86_64__) || defined(_M_X64)) && (defined(__GNUC__) || defined(__clang__)) && !defined(TERN_DISABLE_SIMD)
#define TERN_GEMM_X86 1
#include <immintrin.h>
// Function-level targets let the header build without -march flags; dispatch happens at run time.
#define TERN_TARGET_AVX2 __attribute__((target("avx2,fma")))
#define TERN_TARGET_AVX512 __attribute__((target("avx512f,avx2,fma")))
#else
#define TERN_GEMM_X86 0
#endif

/// Stops the compiler from fusing the product held in @p v into the add that follows it
/// (-ffp-contract=fast, the GNU default, does so wherever FMA is available): a fused multiply-add
/// rounds once instead of twice, and SIMD loops that must round exactly as their portable
/// reference (activation statistics, Adam) put it after each such product.
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#define TERN_UNFUSED(v) __asm__("" : "+v"(v))
#else
#define TERN_UNFUSED(v) ((void)0)
#endif

namespace tern::kernels::detail {

/// Which implementation sgemm runs; `automatic` picks the best the CPU supports.
enum class gemm_path { automatic, scalar, avx2, avx512 };

/// A 64-byte-aligned float buffer that only grows; one per thread and purpose.
class aligned_scratch {
public:
    aligned_scratch() = default;
    aligned_scratch(const aligned_scratch&) = delete;
    aligned_scratch& operator=(const aligned_scratch&) = delete;
    ~aligned_scratch() { release(); }

    float* get(std::size_t n) {
        if (n > capacity_) {
            release();
            // Round up so small growth steps do not reallocate every call.
            const std::size_t cap = std::max<std::size_t>(n, 4096);
            data_ = static_cast<float*>(::operator new[](cap * sizeof(float), std::align_val_t{64}));
            capacity_ = cap;
        }
        return data_;
    }

private:
    void release() {
        if (data_) ::operator delete[](data_, std::align_val_t{64});
        data_ = nullptr;
        capacity_ = 0;
    }
    float* data_ = nullptr;
    std::size_t capacity_ = 0;
};

/// Thread-local scratch: slot 0 packs A, slot 1 packs B, slot 2 is for vectors (GEMV paths).
inline float* scratch(int slot, std::size_t n) {
    thread_local aligned_scratch buffers[3];
    return buffers[slot].get(n);
}

/// The operands of one product, with op() resolved into "where is element (line, k)".
struct gemm_args {
    bool ta, tb;
    std::size_t M, N, K;
    float alpha;
    const float* A;
    std::size_t lda;
    const float* B;
    std::size_t ldb;
    float beta;
    float* C;
    std::size_t ldc;
    /// Set when the driver computes C^T = op(B)^T op(A)^T: element (i, j) of the product then
    /// lives at C[j*ldc + i].
    bool c_trans = false;

    /// A is "k-contiguous" (element (i,k) at A[i*lda+k]) unless transposed.
    bool a_kcontig() const { return !ta; }
    const float* a_at(std::size_t i, std::size_t k) const { return ta ? A + k * lda + i : A + i * lda + k; }
    /// B is k-contiguous (element (k,j) at B[j*ldb+k]) only when transposed.
    bool b_kcontig() const { return tb; }
    const float* b_at(std::size_t k, std::size_t j) const { return tb ? B + j * ldb + k : B + k * ldb + j; }
};

/// Portable packer: panel[k*S + r] = element (r, k) for r < lines, zero for lines <= r < S.
/// With kcontig, (r, k) is at src[r*ld + k]; otherwise at src[k*ld + r].
template <std::size_t S>
inline void pack_panel_scalar(bool kcontig, const float* src, std::size_t ld, std::size_t lines, std::size_t kc,
                              float* dst) {
    if (kcontig) {
        for (std::size_t r = 0; r < lines; ++r) {
            const float* s = src + r * ld;
            for (std::size_t k = 0; k < kc; ++k) dst[k * S + r] = s[k];
        }
        for (std::size_t r = lines; r < S; ++r)
            for (std::size_t k = 0; k < kc; ++k) dst[k * S + r] = 0.0f;
    } else {
        for (std::size_t k = 0; k < kc; ++k) {
            const float* s = src + k * ld;
            float* d = dst + k * S;
            for (std::size_t r = 0; r < lines; ++r) d[r] = s[r];
            for (std::size_t r = lines; r < S; ++r) d[r] = 0.0f;
        }
    }
}

/// Writes alpha * acc (an mr x nr tile with row stride `stride`) into C, blending beta * C unless
/// beta == 0, in which case old C is never read (it may hold NaN).
inline void store_tile_scalar(const float* acc, std::size_t stride, std::size_t mr, std::size_t nr, float* c,
                              std::size_t ldc, float alpha, float beta) {
    for (std::size_t r = 0; r < mr; ++r) {
        float* cr = c + r * ldc;
        const float* ar = acc + r * stride;
        if (beta == 0.0f) {
            for (std::size_t j = 0; j < nr; ++j) cr[j] = alpha * ar[j];
        } else {
            for (std::size_t j = 0; j < nr; ++j) cr[j] = alpha * ar[j] + beta * cr[j];
        }
    }
}

}  // namespace tern::kernels::detail
