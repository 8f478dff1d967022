#pragma once
/// @file packed/split_matrix.hpp
/// @brief split_matrix: an N x K ternary matrix of any shape at exactly 2 bits per weight, and its
/// exact integer product on the packed kernels.
///
/// packed_matrix pads rows to a multiple of 4 and K to a multiple of 128, which small layers pay
/// for dearly: a 10-row head over 256 inputs costs 2.4 bits per weight, a 3x3 convolution over one
/// channel (K = 9) 28 bits. split_matrix cuts the matrix into three parts, none of them padded:
///
///            K0 = K - K mod 128                r = K mod 128
///         +--------------------------------+----------------+
///         | body: N0 x K0 (N0 = N - N mod 4)|                |
///         +--------------------------------+ tail: N x r     |
///         | strip: e x K0 (e = N mod 4)     |                |
///         +--------------------------------+----------------+
///
///   - body: a packed_matrix (the spec layout: 128-weight blocks, rows interleaved by 4), which
///     needs no padding at this size.
///   - strip: the last e rows, tile by tile as the body's next row group would be, but with e rows
///     per tile instead of 4: block b of strip row i at bytes [(b * e + i) * 32, + 32).
///   - tail: the last r columns of every row, a stream of 2-bit codes in row-major order: the code
///     of (n, K0 + k) has index i = n * r + k and sits in byte i / 4, bits 2 * (i % 4); the unused
///     codes of the last byte are 1 (weight 0).
/// The codes take exactly ceil(N * K / 4) bytes, on disk and in memory, for any N and K.
///
/// ## Products
/// The kernels want whole 4-row tiles and, for the tail, one row per SIMD lane (lane_matrix):
///   - the body runs as it is;
///   - the strip is copied into one padded 4-row group on every call: e * K0 / 4 bytes, small next
///     to the strip's own products;
///   - the tail is kept as a lane_matrix when that layout's padding costs at most 1% of the
///     layer's weights (e.g. none for K = 784, N = 256); otherwise it stays a code stream and a
///     lane_matrix is built from it on every call, which only small layers need.
/// Every part computes exact integers, so the products are the same on every kernel path.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "../error.hpp"
#include "aligned_buffer.hpp"
#include "cpu_dispatch.hpp"
#include "lane_matrix.hpp"
#include "packed_matrix.hpp"
#include "ternary_gemm.hpp"

namespace tern::packed {

/// @brief An N x K ternary matrix at exactly 2 bits per weight (see the file comment).
class split_matrix {
public:
    /// @brief An empty 0 x 0 matrix.
    split_matrix() = default;

    /// @brief Packs @p rows x @p cols row-major weights, each in {-1, 0, 1}.
    /// @throws tern::error on any other value, on zero dims or if @p cols > max_cols.
    split_matrix(const std::int8_t* w, std::size_t rows, std::size_t cols) {
        init_dims(rows, cols, "split_matrix");
        detail::require(w != nullptr, "split_matrix: null weights");
        for (std::size_t i = 0; i < rows * cols; ++i)
            detail::require(w[i] >= -1 && w[i] <= 1, "split_matrix: weight (", i / cols, ", ", i % cols, ") is ",
                            int(w[i]), ", expected -1, 0 or 1");
        if (body_rows() && main_cols_) {
            std::vector<std::int8_t> body(body_rows() * main_cols_);
            for (std::size_t n = 0; n < body_rows(); ++n)
                std::copy(w + n * cols, w + n * cols + main_cols_, body.data() + n * main_cols_);
            body_ = packed_matrix(body, body_rows(), main_cols_);
        }
        strip_.resize(strip_bytes_for(rows, cols));  // zeroed; every code is set below
        for (std::size_t i = 0; i < strip_rows_; ++i)
            for (std::size_t k = 0; k < main_cols_; ++k) {
                const unsigned c = unsigned(w[(body_rows() + i) * cols + k] + 1);
                strip_.data()[strip_offset(i, k)] |= static_cast<std::uint8_t>(c << code_shift(k));
            }
        std::vector<std::int8_t> tail(rows * tail_cols_);
        for (std::size_t n = 0; n < rows; ++n)
            std::copy(w + n * cols + main_cols_, w + (n + 1) * cols, tail.data() + n * tail_cols_);
        set_tail(tail);
    }

    /// @brief Packs a std::vector of rows * cols weights (see the pointer overload).
    split_matrix(const std::vector<std::int8_t>& w, std::size_t rows, std::size_t cols)
        : split_matrix((detail::require(w.size() == rows * cols, "split_matrix: got ", w.size(), " weights for a ",
                                        rows, " x ", cols, " matrix"),
                        w.data()),
                       rows, cols) {}

    /// @brief Adopts the three parts as written by body().bytes(), strip_bytes() and tail_stream(),
    /// e.g. read back from a file, checking every byte.
    /// @throws tern::error if a byte count is wrong, a code is 3 or an unused tail code is not 1.
    split_matrix(std::size_t rows, std::size_t cols, const std::vector<std::uint8_t>& body,
                 const std::vector<std::uint8_t>& strip, const std::vector<std::uint8_t>& tail) {
        init_dims(rows, cols, "split_matrix(raw)");
        const auto expect = [&](const char* part, std::size_t want, std::size_t got) {
            detail::require(want == got, "split_matrix(raw): expected ", want, " ", part, " bytes for a ", rows, " x ",
                            cols, " matrix, got ", got);
        };
        expect("body", body_bytes_for(rows, cols), body.size());
        expect("strip", strip_bytes_for(rows, cols), strip.size());
        expect("tail", tail_bytes_for(rows, cols), tail.size());
        if (!body.empty()) body_ = packed_matrix(body_rows(), main_cols_, body.data(), body.size());
        strip_.resize(strip.size());
        for (std::size_t i = 0; i < strip.size(); ++i) {
            const unsigned b = strip[i];
            detail::require((b & (b >> 1) & 0x55u) == 0, "split_matrix(raw): strip byte ", i,
                            " holds the invalid code 3");
            strip_.data()[i] = strip[i];
        }
        const std::size_t count = rows * tail_cols_;
        std::vector<std::int8_t> t(count);
        for (std::size_t i = 0; i < 4 * tail.size(); ++i) {
            const unsigned c = stream_code(tail.data(), i);
            if (i < count) {
                detail::require(c != 3, "split_matrix(raw): tail code ", i, " (row ", i / tail_cols_, ", column ",
                                main_cols_ + i % tail_cols_, ") is the invalid code 3");
                t[i] = static_cast<std::int8_t>(int(c) - 1);
            } else {
                detail::require(c == 1, "split_matrix(raw): unused tail code ", i, " of the last byte is ", c,
                                ", expected 1 (weight 0)");
            }
        }
        set_tail(t);
    }

    /// @brief Rows (N, output features).
    std::size_t rows() const { return rows_; }
    /// @brief Columns (K, input features).
    std::size_t cols() const { return cols_; }
    /// @brief K0: columns of the body and the strip (a multiple of 128, possibly 0).
    std::size_t main_cols() const { return main_cols_; }
    /// @brief r = K mod 128: columns of the tail.
    std::size_t tail_cols() const { return tail_cols_; }
    /// @brief N0: rows of the body (a multiple of 4).
    std::size_t body_rows() const { return rows_ - strip_rows_; }
    /// @brief e = N mod 4: rows of the strip.
    std::size_t strip_rows() const { return strip_rows_; }

    /// @brief File bytes of each part for an N x K matrix.
    static std::size_t body_bytes_for(std::size_t rows, std::size_t cols) {
        return (rows - rows % group_rows) * (cols - cols % block_weights) / 4;
    }
    static std::size_t strip_bytes_for(std::size_t rows, std::size_t cols) {
        return rows % group_rows * (cols - cols % block_weights) / 4;
    }
    static std::size_t tail_bytes_for(std::size_t rows, std::size_t cols) {
        return (rows * (cols % block_weights) + 3) / 4;
    }

    /// @brief The body (empty when N < 4 or K < 128).
    const packed_matrix& body() const { return body_; }
    /// @brief The strip's bytes (strip_bytes_for(N, K) of them).
    std::vector<std::uint8_t> strip_bytes() const {
        return std::vector<std::uint8_t>(strip_.data(), strip_.data() + strip_.size());
    }
    /// @brief The tail as its code stream (tail_bytes_for(N, K) bytes), whichever form it is kept in.
    std::vector<std::uint8_t> tail_stream() const {
        if (!tail_in_lanes()) return std::vector<std::uint8_t>(stream_.data(), stream_.data() + stream_.size());
        std::vector<std::int8_t> t(rows_ * tail_cols_);
        for (std::size_t n = 0; n < rows_; ++n)
            for (std::size_t k = 0; k < tail_cols_; ++k) t[n * tail_cols_ + k] = std::int8_t(lanes_.weight(n, k));
        return encode_stream(t);
    }
    /// @brief Whether the tail is kept as a ready lane_matrix (else as its code stream).
    bool tail_in_lanes() const { return lanes_.rows() > 0; }
    /// @brief Bytes held in memory for the codes: body, strip and the tail in its kept form.
    std::size_t resident_bytes() const {
        return (body_.rows() ? body_.byte_count() : 0) + strip_.size() +
               (tail_in_lanes() ? lanes_.byte_count() : stream_.size());
    }

    /// @brief The weight in {-1, 0, 1} at (@p n, @p k), whichever part holds it.
    int weight(std::size_t n, std::size_t k) const {
        if (k >= main_cols_) {
            const std::size_t j = k - main_cols_;
            if (tail_in_lanes()) return lanes_.weight(n, j);
            const std::size_t i = n * tail_cols_ + j;
            return int(stream_code(stream_.data(), i)) - 1;
        }
        if (n < body_rows()) return body_.weight(n, k);
        return int((strip_.data()[strip_offset(n - body_rows(), k)] >> code_shift(k)) & 3u) - 1;
    }
    /// @brief All weights, N x K row-major.
    std::vector<std::int8_t> unpack() const {
        std::vector<std::int8_t> w(rows_ * cols_);
        for (std::size_t n = 0; n < rows_; ++n)
            for (std::size_t k = 0; k < cols_; ++k) w[n * cols_ + k] = static_cast<std::int8_t>(weight(n, k));
        return w;
    }

    /// @brief The tail's raw-code products, dots[t * N + n] = sum_k (w[n][K0 + k] + 1) * q[t][K0 + k]
    /// for T tokens, in @p out (resized); nullptr when there is no tail.
    const std::int32_t* tail_dots(const std::int8_t* q, std::size_t ldq, std::size_t T,
                                  aligned_buffer<std::int32_t>& out, kernel_path path) const {
        if (tail_cols_ == 0 || T == 0) return nullptr;
        out.resize(T * rows_);  // zeroed
        if (tail_in_lanes()) {
            lane_gemm_add(lanes_, q + main_cols_, ldq, T, out.data(), rows_, path);
        } else {
            std::vector<std::int8_t> t(rows_ * tail_cols_);
            for (std::size_t i = 0; i < t.size(); ++i)
                t[i] = static_cast<std::int8_t>(int(stream_code(stream_.data(), i)) - 1);
            lane_gemm_add(lane_matrix(t.data(), rows_, tail_cols_, tail_cols_), q + main_cols_, ldq, T, out.data(),
                          rows_, path);
        }
        return out.data();
    }

    /// @brief The products of the body and the strip minus sum(q), chunk by chunk:
    /// @p epilogue(n0, n1, t0, t1, dots, ldd) receives dots[(t - t0) * ldd + (n - n0)] =
    /// sum_{k < K0} w[n][k] * q[t][k] - sum_{K0 <= k < K} q[t][k], so adding tail_dots gives the exact
    /// dot of the whole row. @p q holds T tokens of int8 activations with row stride @p ldq (at least
    /// K rounded up to 128, zero past K), @p sum_q their sums over all K.
    /// @param scratch holds -sum(q) per output when K < 128 (no body, no strip).
    template <class Epilogue>
    void run_main(const std::int8_t* q, std::size_t ldq, const std::int32_t* sum_q, std::size_t T, kernel_path path,
                  const char* where, aligned_buffer<std::int32_t>& scratch, Epilogue&& epilogue) const {
        detail::require(rows_ > 0, where, ": empty weight matrix");
        detail::require(ldq >= padded_cols_for(cols_), where, ": activation row stride ", ldq,
                        " is smaller than the padded K ", padded_cols_for(cols_), " (quantize with K = ", cols_, ")");
        if (T == 0) return;
        if (main_cols_ == 0) {
            // Everything is tail: only the code offset's sum(q) remains to subtract.
            scratch.resize(T * rows_);
            for (std::size_t t = 0; t < T; ++t) std::fill_n(scratch.data() + t * rows_, rows_, -sum_q[t]);
            epilogue(std::size_t{0}, rows_, std::size_t{0}, T, static_cast<const std::int32_t*>(scratch.data()),
                     rows_);
            return;
        }
        const kernel_path p = detail::resolve_path(path, where);
        const std::size_t nb = main_cols_ / block_weights;
        if (body_.rows()) detail::run_ternary_tiles(body_.bytes(), nb, body_.groups(), body_rows(), q, ldq, sum_q, T, p,
                                                    epilogue);
        if (strip_rows_) {
            // One padded 4-row group, rebuilt per call so that memory holds only the e real rows.
            thread_local aligned_buffer<std::uint8_t> group;
            if (group.size() < nb * tile_bytes) group.resize(nb * tile_bytes);
            const std::size_t e = strip_rows_, n_base = body_rows();
            for (std::size_t b = 0; b < nb; ++b) {
                std::uint8_t* tile = group.data() + b * tile_bytes;
                std::memcpy(tile, strip_.data() + b * e * block_bytes, e * block_bytes);
                std::memset(tile + e * block_bytes, 0x55, (group_rows - e) * block_bytes);  // code 1: weight 0
            }
            detail::run_ternary_tiles(group.data(), nb, 1, e, q, ldq, sum_q, T, p,
                                      [&](std::size_t n0, std::size_t n1, std::size_t t0, std::size_t t1,
                                          const std::int32_t* d, std::size_t ld) {
                                          epilogue(n_base + n0, n_base + n1, t0, t1, d, ld);
                                      });
        }
    }

private:
    void init_dims(std::size_t rows, std::size_t cols, const char* where) {
        detail::check_packed_dims(rows, cols, where);
        rows_ = rows;
        cols_ = cols;
        main_cols_ = cols - cols % block_weights;
        tail_cols_ = cols % block_weights;
        strip_rows_ = rows % group_rows;
    }
    // Byte and bit of strip row i, column k (k < K0).
    std::size_t strip_offset(std::size_t i, std::size_t k) const {
        return ((k / block_weights) * strip_rows_ + i) * block_bytes + k % block_bytes;
    }
    static unsigned code_shift(std::size_t k) { return unsigned(2 * ((k % block_weights) / block_bytes)); }

    // Code i of a tail stream (see the file comment).
    static unsigned stream_code(const std::uint8_t* stream, std::size_t i) {
        return (stream[i / 4] >> (2 * (i % 4))) & 3u;
    }
    static std::vector<std::uint8_t> encode_stream(const std::vector<std::int8_t>& t) {
        std::vector<std::uint8_t> s((t.size() + 3) / 4, 0x55);  // unused codes stay 1
        for (std::size_t i = 0; i < t.size(); ++i) {
            const unsigned shift = unsigned(2 * (i % 4));
            s[i / 4] = static_cast<std::uint8_t>((s[i / 4] & ~(3u << shift)) | (unsigned(t[i] + 1) << shift));
        }
        return s;
    }
    // Keeps the tail (N x r, values in {-1, 0, 1}) as a lane_matrix when its padding is cheap.
    void set_tail(const std::vector<std::int8_t>& t) {
        if (tail_cols_ == 0) return;
        const std::size_t padded = 4 * lane_matrix::bytes_for(rows_, tail_cols_);  // codes, padding included
        if ((padded - rows_ * tail_cols_) * 100 <= rows_ * cols_) {
            lanes_ = lane_matrix(t.data(), rows_, tail_cols_, tail_cols_);
        } else {
            const auto s = encode_stream(t);
            stream_.resize(s.size());
            std::copy(s.begin(), s.end(), stream_.data());
        }
    }

    std::size_t rows_ = 0, cols_ = 0, main_cols_ = 0, tail_cols_ = 0, strip_rows_ = 0;
    packed_matrix body_;
    aligned_buffer<std::uint8_t> strip_;
    lane_matrix lanes_;                    // the tail, when kept ready for the kernels
    aligned_buffer<std::uint8_t> stream_;  // the tail, when kept as its code stream
};

}  // namespace tern::packed
