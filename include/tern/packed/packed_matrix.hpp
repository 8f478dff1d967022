#pragma once
/// @file packed/packed_matrix.hpp
/// @brief packed_matrix: an N x K ternary weight matrix at 2 bits per weight, laid out for SIMD.
///
/// ## Codes
/// A weight w in {-1, 0, +1} is stored as the 2-bit code c = w + 1 in {0, 1, 2}; code 3 never
/// occurs. Kernels compute sum_k c*q and subtract sum_k q, which removes the +1 offset.
///
/// ## Blocks
/// K is padded with code 1 (weight 0) to Kp, a multiple of 128, and cut into Kp/128 blocks of 128
/// weights stored in 32 bytes. Byte j (0..31) of a block holds the weights j, j+32, j+64 and j+96
/// of the block in bits 0-1, 2-3, 4-5 and 6-7. So "sub-block" s (weights 32s..32s+31) is
/// `(byte >> 2s) & 3` over the 32 bytes: one shift and one AND unpack 32 weights, and the matching
/// activations are 32 consecutive int8 values.
///
/// ## Row interleaving
/// Rows are padded to Np, a multiple of 4 (padding rows are all code 1), and grouped by 4. The
/// storage is an array of "tiles" of 128 bytes, tile (g, b) for row group g and block b at byte
/// offset (g * Kp/128 + b) * 128. Inside a tile, row 4g+r occupies bytes [32r, 32r+32):
///
///     tile(g,b) = [ row 4g+0, block b | row 4g+1, block b | row 4g+2, block b | row 4g+3, block b ]
///                   32 bytes            32 bytes            32 bytes            32 bytes
///
/// A kernel walking one row group reads one contiguous stream, one ymm per row or one zmm per
/// two rows per block, and every row shares the same activation registers.
///
/// Total size: Np * Kp / 4 bytes, i.e. 2 bits per weight plus padding.

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "../error.hpp"
#include "aligned_buffer.hpp"

namespace tern::packed {

/// Weights per block (along K).
inline constexpr std::size_t block_weights = 128;
/// Bytes per block and row.
inline constexpr std::size_t block_bytes = 32;
/// Rows interleaved together.
inline constexpr std::size_t group_rows = 4;
/// Bytes of one (row group, block) tile.
inline constexpr std::size_t tile_bytes = block_bytes * group_rows;
/// Largest K accepted: keeps every integer dot product (|sum c*q| <= 254 * Kp) inside int32.
inline constexpr std::size_t max_cols = std::size_t{1} << 23;

/// @brief K rounded up to a multiple of 128 (the padded column count).
constexpr std::size_t padded_cols_for(std::size_t cols) {
    return (cols + block_weights - 1) / block_weights * block_weights;
}
/// @brief N rounded up to a multiple of 4 (the padded row count).
constexpr std::size_t padded_rows_for(std::size_t rows) {
    return (rows + group_rows - 1) / group_rows * group_rows;
}

namespace detail {

/// Checks the dims of a packed matrix: positive, K within max_cols, N * K within 2^40 weights.
inline void check_packed_dims(std::size_t rows, std::size_t cols, const char* where) {
    require(rows > 0 && cols > 0, where, ": dims must be positive, got ", rows, " x ", cols);
    require(cols <= max_cols, where, ": ", cols, " columns exceed the limit of ", max_cols);
    require(rows <= (std::size_t{1} << 40) / cols, where, ": ", rows, " x ", cols, " is too large");
}

}  // namespace detail

/// @brief Packed ternary weight matrix (see the file comment for the exact byte layout).
class packed_matrix {
public:
    /// @brief An empty 0 x 0 matrix.
    packed_matrix() = default;

    /// @brief Packs @p rows x @p cols row-major weights, each in {-1, 0, 1}.
    /// @throws tern::error on any other value, on zero dims or if @p cols > max_cols.
    packed_matrix(const std::int8_t* weights, std::size_t rows, std::size_t cols) {
        init_dims(rows, cols, "packed_matrix");
        storage_.resize(byte_count());
        std::memset(storage_.data(), 0x55, storage_.size());  // code 1 everywhere: weight 0 padding
        for (std::size_t n = 0; n < rows; ++n) {
            const std::int8_t* w = weights + n * cols;
            for (std::size_t k = 0; k < cols; ++k) {
                const int v = w[k];
                detail::require(v >= -1 && v <= 1, "packed_matrix: weight (", n, ", ", k, ") is ", v,
                                ", expected -1, 0 or 1");
                set_code(n, k, static_cast<unsigned>(v + 1));
            }
        }
    }

    /// @brief Packs a std::vector of rows*cols weights (see the pointer overload).
    packed_matrix(const std::vector<std::int8_t>& weights, std::size_t rows, std::size_t cols)
        : packed_matrix((detail::require(weights.size() == rows * cols, "packed_matrix: got ", weights.size(),
                                         " weights for a ", rows, " x ", cols, " matrix"),
                         weights.data()),
                        rows, cols) {}

    /// @brief Adopts raw packed bytes (as written by bytes()), e.g. read back from a file.
    /// @throws tern::error if @p size is not padded_rows*padded_cols/4, if any code is 3, or if a
    /// padding position does not hold code 1.
    packed_matrix(std::size_t rows, std::size_t cols, const std::uint8_t* data, std::size_t size) {
        init_dims(rows, cols, "packed_matrix(raw)");
        detail::require(size == byte_count(), "packed_matrix(raw): expected ", byte_count(), " bytes for a ", rows,
                        " x ", cols, " matrix (padded ", padded_rows_, " x ", padded_cols_, "), got ", size);
        detail::require(data != nullptr, "packed_matrix(raw): null data");
        storage_.resize(size);
        std::memcpy(storage_.data(), data, size);
        for (std::size_t i = 0; i < size; ++i) {
            const unsigned b = storage_[i];
            // A code is 3 exactly when both of its bits are set.
            detail::require((b & (b >> 1) & 0x55u) == 0, "packed_matrix(raw): byte ", i, " holds the invalid code 3");
        }
        for (std::size_t n = 0; n < padded_rows_; ++n) {
            const std::size_t k0 = n < rows_ ? cols_ : 0;
            for (std::size_t k = k0; k < padded_cols_; ++k)
                detail::require(code(n, k) == 1, "packed_matrix(raw): padding position (", n, ", ", k,
                                ") holds code ", code(n, k), ", expected 1 (weight 0)");
        }
    }

    /// @brief Logical rows (N, output features).
    std::size_t rows() const { return rows_; }
    /// @brief Logical columns (K, input features).
    std::size_t cols() const { return cols_; }
    /// @brief Rows rounded up to a multiple of 4.
    std::size_t padded_rows() const { return padded_rows_; }
    /// @brief Columns rounded up to a multiple of 128.
    std::size_t padded_cols() const { return padded_cols_; }
    /// @brief Number of 128-weight blocks per row (padded_cols / 128).
    std::size_t blocks() const { return padded_cols_ / block_weights; }
    /// @brief Number of 4-row groups (padded_rows / 4).
    std::size_t groups() const { return padded_rows_ / group_rows; }
    /// @brief Size of the raw storage in bytes: padded_rows * padded_cols / 4.
    std::size_t byte_count() const { return padded_rows_ * padded_cols_ / 4; }
    /// @brief Raw packed storage (byte_count() bytes, 64-byte aligned).
    const std::uint8_t* bytes() const { return storage_.data(); }
    /// @brief Storage bits per logical weight (2 plus padding overhead).
    double bits_per_weight() const {
        return rows_ * cols_ == 0 ? 0.0 : 8.0 * double(byte_count()) / (double(rows_) * double(cols_));
    }

    /// @brief The 2-bit code (w + 1) at padded position (@p n, @p k).
    unsigned code(std::size_t n, std::size_t k) const { return (storage_[offset(n, k)] >> shift(k)) & 3u; }
    /// @brief The weight in {-1, 0, 1} at logical position (@p n, @p k).
    int weight(std::size_t n, std::size_t k) const { return static_cast<int>(code(n, k)) - 1; }

    /// @brief Unpacks into @p out (rows x cols row-major, values in {-1, 0, 1}).
    void unpack(std::int8_t* out) const {
        for (std::size_t n = 0; n < rows_; ++n)
            for (std::size_t k = 0; k < cols_; ++k) out[n * cols_ + k] = static_cast<std::int8_t>(weight(n, k));
    }
    /// @brief Unpacks into a new rows x cols row-major vector.
    std::vector<std::int8_t> unpack() const {
        std::vector<std::int8_t> out(rows_ * cols_);
        unpack(out.data());
        return out;
    }

private:
    void init_dims(std::size_t rows, std::size_t cols, const char* where) {
        detail::check_packed_dims(rows, cols, where);
        rows_ = rows;
        cols_ = cols;
        padded_rows_ = padded_rows_for(rows);
        padded_cols_ = padded_cols_for(cols);
    }
    std::size_t offset(std::size_t n, std::size_t k) const {
        const std::size_t g = n / group_rows, r = n % group_rows, b = k / block_weights;
        return (g * blocks() + b) * tile_bytes + r * block_bytes + k % block_bytes;
    }
    static unsigned shift(std::size_t k) { return static_cast<unsigned>(2 * ((k % block_weights) / block_bytes)); }
    void set_code(std::size_t n, std::size_t k, unsigned c) {
        std::uint8_t& b = storage_[offset(n, k)];
        const unsigned s = shift(k);
        b = static_cast<std::uint8_t>((b & ~(3u << s)) | (c << s));
    }

    std::size_t rows_ = 0, cols_ = 0, padded_rows_ = 0, padded_cols_ = 0;
    aligned_buffer<std::uint8_t> storage_;
};

}  // namespace tern::packed
