#pragma once
/// @file packed/lane_matrix.hpp
/// @brief lane_matrix: a narrow ternary matrix (at most 128 columns) at 2 bits per weight, laid out
/// so that each 32-bit SIMD lane belongs to one output row; and its integer product.
///
/// packed_matrix cuts K into 128-weight blocks and sums each row across a register, which suits
/// long rows. The last K mod 128 columns of a layer (784 = 6 * 128 + 16 for an MNIST MLP) are a
/// narrow matrix of their own, and there a per-row horizontal sum would cost more than the
/// products. Here the lanes are rows instead: vpdpbusd adds 4 products per lane straight into that
/// row's sum, for 16 rows per zmm, and no horizontal sum is ever needed.
///
/// ## Layout
/// Rows are padded to a multiple of 16 and columns to a multiple of 16, both with code 1
/// (weight 0). The matrix is an array of 64-byte units, unit (rb, c) for row block rb (rows
/// 16rb..16rb+15) and column chunk c (columns 16c..16c+15) at byte offset (rb * chunks + c) * 64.
/// Inside a unit, row 16rb+i owns bytes 4i..4i+3 (32-bit lane i), and byte 4i+b holds the codes of
/// columns 16c+b, 16c+4+b, 16c+8+b and 16c+12+b in bits 0-1, 2-3, 4-5 and 6-7. So
/// `(unit >> 2s) & 3` gives, in lane i, the codes of columns 16c+4s .. 16c+4s+3 of row 16rb+i:
/// one vpdpbusd against those 4 activations broadcast to every lane.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "../error.hpp"
#include "aligned_buffer.hpp"
#include "cpu_dispatch.hpp"

namespace tern::packed {

/// @brief Narrow packed ternary matrix, one row per SIMD lane (see the file comment).
class lane_matrix {
public:
    /// Rows per unit (32-bit lanes of a zmm).
    static constexpr std::size_t unit_rows = 16;
    /// Columns per unit.
    static constexpr std::size_t unit_cols = 16;
    /// Bytes per unit.
    static constexpr std::size_t unit_bytes = 64;
    /// Most columns a lane_matrix holds (a layer's K mod 128 tail has at most 127).
    static constexpr std::size_t max_cols = 128;

    lane_matrix() = default;

    /// @brief Packs @p rows x @p cols weights in {-1, 0, 1}, row-major with row stride @p ld.
    /// @throws tern::error on an empty shape, more than max_cols columns or a value outside {-1, 0, 1}.
    lane_matrix(const std::int8_t* w, std::size_t rows, std::size_t cols, std::size_t ld)
        : rows_(rows), cols_(cols) {
        detail::require(rows > 0 && cols > 0, "lane_matrix: expected a non-empty shape, got ", rows, " x ", cols);
        detail::require(cols <= max_cols, "lane_matrix: at most ", max_cols, " columns, got ", cols);
        detail::require(w != nullptr, "lane_matrix: null weights");
        storage_.resize(bytes_for(rows, cols));
        std::uint8_t* out = storage_.data();
        for (std::size_t i = 0; i < storage_.size(); ++i) out[i] = 0x55;  // code 1 everywhere
        for (std::size_t n = 0; n < rows; ++n)
            for (std::size_t k = 0; k < cols; ++k) {
                const int v = w[n * ld + k];
                detail::require(v >= -1 && v <= 1, "lane_matrix: weight (", n, ", ", k, ") is ", v,
                                ", expected -1, 0 or 1");
                std::uint8_t& byte = out[byte_index(n, k)];
                const unsigned shift = bit_shift(k);
                byte = static_cast<std::uint8_t>((byte & ~(3u << shift)) | (unsigned(v + 1) << shift));
            }
    }

    /// @brief Bytes of a rows x cols lane_matrix: rows and columns padded to multiples of 16.
    static constexpr std::size_t bytes_for(std::size_t rows, std::size_t cols) {
        return (rows + unit_rows - 1) / unit_rows * ((cols + unit_cols - 1) / unit_cols) * unit_bytes;
    }

    std::size_t rows() const { return rows_; }
    std::size_t cols() const { return cols_; }
    /// @brief Row blocks of 16 rows.
    std::size_t row_blocks() const { return (rows_ + unit_rows - 1) / unit_rows; }
    /// @brief Column chunks of 16 columns (1 to 8).
    std::size_t chunks() const { return (cols_ + unit_cols - 1) / unit_cols; }
    /// @brief Columns the product reads from every activation row (zeros past cols()).
    std::size_t padded_cols() const { return chunks() * unit_cols; }
    const std::uint8_t* bytes() const { return storage_.data(); }
    std::size_t byte_count() const { return storage_.size(); }

    /// @brief The weight in {-1, 0, 1} at (@p n, @p k).
    int weight(std::size_t n, std::size_t k) const {
        return int((storage_[byte_index(n, k)] >> bit_shift(k)) & 3u) - 1;
    }

private:
    std::size_t byte_index(std::size_t n, std::size_t k) const {
        const std::size_t unit = (n / unit_rows) * chunks() + k / unit_cols;
        return unit * unit_bytes + 4 * (n % unit_rows) + k % 4;
    }
    static unsigned bit_shift(std::size_t k) { return unsigned(2 * ((k % unit_cols) / 4)); }

    std::size_t rows_ = 0, cols_ = 0;
    aligned_buffer<std::uint8_t> storage_;
};

namespace detail {

/// Portable reference: dots[t * ldd + n] += sum_k c(n, k) * q[t * ldq + k] with codes c = w + 1.
inline void lane_gemm_add_scalar(const lane_matrix& W, const std::int8_t* q, std::size_t ldq, std::size_t T,
                                 std::int32_t* dots, std::size_t ldd) {
    const std::size_t N = W.rows(), C = W.cols();
    for (std::size_t t = 0; t < T; ++t)
        for (std::size_t n = 0; n < N; ++n) {
            std::int32_t acc = 0;
            for (std::size_t k = 0; k < C; ++k) acc += (W.weight(n, k) + 1) * q[t * ldq + k];
            dots[t * ldd + n] += acc;
        }
}

#if TERN_PACKED_X86

inline std::int32_t load4(const std::int8_t* p) {
    std::int32_t v;
    std::memcpy(&v, p, sizeof v);
    return v;
}

/// AVX2 (also used on AVX-VNNI machines; the tail is a small part of a layer): 8 rows per ymm,
/// vpmaddubsw then vpmaddwd into int32 (pairs of at most 2 * 2 * 127, no saturation).
__attribute__((target("avx2"))) inline void lane_gemm_add_avx2(const lane_matrix& W, const std::int8_t* q,
                                                               std::size_t ldq, std::size_t T, std::int32_t* dots,
                                                               std::size_t ldd) {
    const __m256i m3 = _mm256_set1_epi8(3), ones = _mm256_set1_epi16(1);
    const std::size_t N = W.rows(), chunks = W.chunks();
    alignas(32) std::int32_t lanes[8];
    for (std::size_t rb = 0; rb < W.row_blocks(); ++rb)
        for (std::size_t half = 0; half < 2; ++half) {
            const std::size_t n0 = rb * 16 + half * 8;
            if (n0 >= N) break;
            const std::size_t rows = std::min<std::size_t>(8, N - n0);
            const std::uint8_t* units = W.bytes() + rb * chunks * lane_matrix::unit_bytes + 32 * half;
            for (std::size_t t = 0; t < T; ++t) {
                const std::int8_t* qt = q + t * ldq;
                __m256i acc = _mm256_setzero_si256();
                for (std::size_t c = 0; c < chunks; ++c) {
                    const __m256i x = _mm256_load_si256(reinterpret_cast<const __m256i*>(units + c * 64));
                    for (int s = 0; s < 4; ++s) {
                        const __m256i code = _mm256_and_si256(_mm256_srli_epi16(x, 2 * s), m3);
                        const __m256i a = _mm256_set1_epi32(load4(qt + 16 * c + 4 * s));
                        acc = _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(code, a), ones));
                    }
                }
                std::int32_t* d = dots + t * ldd + n0;
                if (rows == 8) {
                    _mm256_storeu_si256(reinterpret_cast<__m256i*>(d),
                                        _mm256_add_epi32(acc, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(d))));
                } else {
                    _mm256_store_si256(reinterpret_cast<__m256i*>(lanes), acc);
                    for (std::size_t i = 0; i < rows; ++i) d[i] += lanes[i];
                }
            }
        }
}

/// AVX-512 VNNI: the codes of a row block's chunks [c0, c0 + NC) are unpacked once (4 zmm per
/// chunk) and applied to four tokens at a time (four independent accumulator chains). NC <= 4
/// keeps the 4 * NC code registers and the accumulators within the 32 zmm registers.
template <int NC>
__attribute__((target("avx2,avx512f,avx512bw,avx512vnni"))) inline void lane_gemm_add_avx512_nc(
    const lane_matrix& W, std::size_t c0, const std::int8_t* q, std::size_t ldq, std::size_t T, std::int32_t* dots,
    std::size_t ldd) {
    const __m512i m3 = _mm512_set1_epi8(3);
    const std::size_t N = W.rows(), chunks = W.chunks();
    q += 16 * c0;
    for (std::size_t rb = 0; rb < W.row_blocks(); ++rb) {
        const std::size_t n0 = rb * 16, rows = std::min<std::size_t>(16, N - n0);
        const __mmask16 keep = static_cast<__mmask16>((1u << rows) - 1u);
        const std::uint8_t* units = W.bytes() + (rb * chunks + c0) * lane_matrix::unit_bytes;
        __m512i code[NC][4];
        for (int c = 0; c < NC; ++c) {
            const __m512i x = _mm512_load_si512(units + 64 * c);
            for (int s = 0; s < 4; ++s)
                code[c][s] = _mm512_and_si512(_mm512_maskz_srli_epi16(static_cast<__mmask32>(0xFFFFFFFFu), x, 2 * s), m3);
        }
        std::size_t t = 0;
        for (; t + 4 <= T; t += 4) {
            __m512i acc[4] = {_mm512_setzero_si512(), _mm512_setzero_si512(), _mm512_setzero_si512(),
                              _mm512_setzero_si512()};
            for (int c = 0; c < NC; ++c)
                for (int s = 0; s < 4; ++s)
                    for (int u = 0; u < 4; ++u)
                        acc[u] = _mm512_dpbusd_epi32(acc[u], code[c][s],
                                                     _mm512_set1_epi32(load4(q + (t + u) * ldq + 16 * c + 4 * s)));
            for (int u = 0; u < 4; ++u) {
                std::int32_t* d = dots + (t + u) * ldd + n0;
                _mm512_mask_storeu_epi32(d, keep, _mm512_add_epi32(acc[u], _mm512_maskz_loadu_epi32(keep, d)));
            }
        }
        for (; t < T; ++t) {
            __m512i acc = _mm512_setzero_si512();
            for (int c = 0; c < NC; ++c)
                for (int s = 0; s < 4; ++s)
                    acc = _mm512_dpbusd_epi32(acc, code[c][s], _mm512_set1_epi32(load4(q + t * ldq + 16 * c + 4 * s)));
            std::int32_t* d = dots + t * ldd + n0;
            _mm512_mask_storeu_epi32(d, keep, _mm512_add_epi32(acc, _mm512_maskz_loadu_epi32(keep, d)));
        }
    }
}

/// Passes of at most 4 chunks; each adds its part of the products to dots.
inline void lane_gemm_add_avx512(const lane_matrix& W, const std::int8_t* q, std::size_t ldq, std::size_t T,
                                 std::int32_t* dots, std::size_t ldd) {
    for (std::size_t c0 = 0; c0 < W.chunks(); c0 += 4) {
        switch (std::min<std::size_t>(4, W.chunks() - c0)) {
            case 1: lane_gemm_add_avx512_nc<1>(W, c0, q, ldq, T, dots, ldd); break;
            case 2: lane_gemm_add_avx512_nc<2>(W, c0, q, ldq, T, dots, ldd); break;
            case 3: lane_gemm_add_avx512_nc<3>(W, c0, q, ldq, T, dots, ldd); break;
            default: lane_gemm_add_avx512_nc<4>(W, c0, q, ldq, T, dots, ldd); break;
        }
    }
}

#endif  // TERN_PACKED_X86

}  // namespace detail

/// @brief Adds the exact integer products of a lane_matrix to @p dots:
///     dots[t * ldd + n] += sum_k (w[n][k] + 1) * q[t * ldq + k]
/// (the raw codes, as packed_matrix's kernels before they subtract sum(q)). Every path gives the
/// same integers. @p q must hold W.padded_cols() values per token, zero past W.cols().
/// @throws tern::error on an empty matrix, a too small stride or an unavailable path.
inline void lane_gemm_add(const lane_matrix& W, const std::int8_t* q, std::size_t ldq, std::size_t T,
                          std::int32_t* dots, std::size_t ldd, kernel_path path = kernel_path::automatic) {
    detail::require(W.rows() > 0, "lane_gemm_add: empty matrix");
    detail::require(ldq >= W.padded_cols(), "lane_gemm_add: activation stride ", ldq, " is smaller than the ",
                    W.padded_cols(), " columns the product reads");
    detail::require(ldd >= W.rows(), "lane_gemm_add: output stride ", ldd, " is smaller than N ", W.rows());
    const kernel_path p = detail::resolve_path(path, "lane_gemm_add");
#if TERN_PACKED_X86
    if (p == kernel_path::avx512vnni) return detail::lane_gemm_add_avx512(W, q, ldq, T, dots, ldd);
    if (p != kernel_path::scalar) return detail::lane_gemm_add_avx2(W, q, ldq, T, dots, ldd);
#endif
    (void)p;
    detail::lane_gemm_add_scalar(W, q, ldq, T, dots, ldd);
}

}  // namespace tern::packed
