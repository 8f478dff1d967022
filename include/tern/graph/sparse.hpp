#pragma once
/// @file graph/sparse.hpp
/// @brief Sparse matrices in CSR form with float values: building from an edge list (duplicates
/// summed), sparse x dense products parallel over rows, the transpose and the GCN normalization.

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "../error.hpp"
#include "../tensor.hpp"
#include "../threads.hpp"

namespace tern {

/// @brief One entry of a sparse matrix given as a list: A[row, col] += value.
struct sparse_entry {
    std::size_t row = 0, col = 0;
    float value = 1.0f;
};

/// @brief A sparse matrix in compressed sparse row form: the entries of row r are
/// col_index[row_start[r] .. row_start[r + 1]) with values[...], columns ascending, no column twice.
struct csr_matrix {
    std::size_t rows = 0, cols = 0;
    std::vector<std::size_t> row_start{0};  ///< rows + 1 offsets into col_index and values
    std::vector<std::uint32_t> col_index;   ///< 32-bit: graphs with 2^32 nodes are out of scope
    std::vector<float> values;

    std::size_t nonzeros() const { return values.size(); }
    std::size_t row_nonzeros(std::size_t r) const { return row_start[r + 1] - row_start[r]; }

    /// @brief A[rows x cols] from @p entries in any order; entries at the same place are summed.
    /// @throws tern::error for an entry outside the matrix, or more than 2^32 columns.
    static csr_matrix from_entries(std::size_t rows, std::size_t cols, const std::vector<sparse_entry>& entries) {
        detail::require(cols <= (std::size_t{1} << 32), "csr_matrix: expected at most 2^32 columns, got ", cols);
        csr_matrix m;
        m.rows = rows;
        m.cols = cols;
        // Counting sort by row, then each row sorted by column and its duplicates merged.
        std::vector<std::size_t> count(rows + 1, 0);
        for (const auto& e : entries) {
            detail::require(e.row < rows && e.col < cols, "csr_matrix: entry (", e.row, ", ", e.col,
                            ") is outside the ", rows, " x ", cols, " matrix");
            ++count[e.row + 1];
        }
        for (std::size_t r = 0; r < rows; ++r) count[r + 1] += count[r];
        std::vector<std::pair<std::uint32_t, float>> sorted(entries.size());
        std::vector<std::size_t> next(count.begin(), count.end() - 1);
        for (const auto& e : entries) sorted[next[e.row]++] = {std::uint32_t(e.col), e.value};
        m.row_start.assign(rows + 1, 0);
        m.col_index.reserve(entries.size());
        m.values.reserve(entries.size());
        for (std::size_t r = 0; r < rows; ++r) {
            auto first = sorted.begin() + std::ptrdiff_t(count[r]), last = sorted.begin() + std::ptrdiff_t(count[r + 1]);
            std::sort(first, last, [](const auto& a, const auto& b) { return a.first < b.first; });
            for (auto it = first; it != last; ++it) {
                if (m.col_index.size() > m.row_start[r] && m.col_index.back() == it->first) m.values.back() += it->second;
                else {
                    m.col_index.push_back(it->first);
                    m.values.push_back(it->second);
                }
            }
            m.row_start[r + 1] = m.values.size();
        }
        return m;
    }

    /// @brief The dense [rows, cols] form (for tests and small matrices).
    tensor to_dense() const {
        tensor d = zeros({rows, cols});
        for (std::size_t r = 0; r < rows; ++r)
            for (std::size_t i = row_start[r]; i < row_start[r + 1]; ++i) d(r, col_index[i]) += values[i];
        return d;
    }
};

namespace detail {
/// Rows of the product per task: a row costs nnz x F multiply-adds, too little to hand out alone.
inline double spmm_work(const csr_matrix& a, std::size_t features) {
    return double(a.nonzeros() + a.rows) * double(features);
}
}  // namespace detail

/// @brief Y[rows x F] = A X for a dense row-major X[cols x F], written into @p y (which must hold
/// rows x F floats); rows are split across tern's thread pool (each row of Y is written by one
/// thread, so no atomics are needed).
inline void spmm(const csr_matrix& a, const float* x, std::size_t features, float* y) {
    const std::size_t F = features;
    parallel_for(
        a.rows,
        [&](std::size_t lo, std::size_t hi) {
            for (std::size_t r = lo; r < hi; ++r) {
                float* out = y + r * F;
                std::fill(out, out + F, 0.0f);
                for (std::size_t i = a.row_start[r]; i < a.row_start[r + 1]; ++i) {
                    const float v = a.values[i];
                    const float* in = x + std::size_t(a.col_index[i]) * F;
                    for (std::size_t f = 0; f < F; ++f) out[f] += v * in[f];
                }
            }
        },
        detail::spmm_work(a, F), 2e5);
}

/// @brief A X for a dense X [cols, F]; returns [rows, F].
/// @throws tern::error when X is not a matrix with a.cols rows.
inline tensor spmm(const csr_matrix& a, const tensor& x) {
    detail::require(x.dimension() == 2 && x.shape()[0] == a.cols, "spmm: expected a dense [", a.cols,
                    ", features] matrix, got shape ", detail::shape_string(x.shape()));
    tensor y = tensor::from_shape({a.rows, x.shape()[1]});
    spmm(a, x.data(), x.shape()[1], y.data());
    return y;
}

/// @brief A^T, again in CSR form (columns ascending in every row).
inline csr_matrix transpose(const csr_matrix& a) {
    csr_matrix t;
    t.rows = a.cols;
    t.cols = a.rows;
    t.row_start.assign(a.cols + 1, 0);
    for (std::uint32_t c : a.col_index) ++t.row_start[std::size_t(c) + 1];
    for (std::size_t c = 0; c < a.cols; ++c) t.row_start[c + 1] += t.row_start[c];
    t.col_index.resize(a.nonzeros());
    t.values.resize(a.nonzeros());
    std::vector<std::size_t> next(t.row_start.begin(), t.row_start.end() - 1);
    // Walking A's rows in order visits each column's entries with ascending row: t stays sorted.
    for (std::size_t r = 0; r < a.rows; ++r)
        for (std::size_t i = a.row_start[r]; i < a.row_start[r + 1]; ++i) {
            const std::size_t at = next[a.col_index[i]]++;
            t.col_index[at] = std::uint32_t(r);
            t.values[at] = a.values[i];
        }
    return t;
}

/// @brief Whether A equals its transpose exactly (same pattern and values).
inline bool is_symmetric(const csr_matrix& a) {
    if (a.rows != a.cols) return false;
    const csr_matrix t = transpose(a);
    return t.row_start == a.row_start && t.col_index == a.col_index && t.values == a.values;
}

/// @brief The undirected adjacency of @p nodes nodes from directed @p edges (pairs of node
/// indices): A[u, v] = A[v, u] = 1 for every edge, duplicates and both directions counted once.
/// A self-loop (u, u) is kept as a diagonal 1.
/// @throws tern::error for an edge naming a node >= nodes.
inline csr_matrix undirected_adjacency(std::size_t nodes, const std::vector<std::pair<std::size_t, std::size_t>>& edges) {
    std::vector<sparse_entry> entries;
    entries.reserve(2 * edges.size());
    for (const auto& [u, v] : edges) {
        detail::require(u < nodes && v < nodes, "undirected_adjacency: edge (", u, ", ", v, ") names a node outside 0..",
                        nodes, " - 1");
        entries.push_back({u, v, 1.0f});
        if (u != v) entries.push_back({v, u, 1.0f});
    }
    csr_matrix a = csr_matrix::from_entries(nodes, nodes, entries);
    for (float& v : a.values) v = 1.0f;  // a duplicate edge is one edge
    return a;
}

/// @brief The GCN propagation matrix S = D^-1/2 (A + I) D^-1/2 (Kipf and Welling), or
/// D^-1/2 A D^-1/2 without @p self_loops, where D is the diagonal of row sums of the matrix used.
/// A node without any entry (possible only without self-loops) keeps an empty row.
/// @throws tern::error for a matrix that is not square or has a negative row sum.
inline csr_matrix gcn_normalize(const csr_matrix& a, bool self_loops = true) {
    detail::require(a.rows == a.cols, "gcn_normalize: expected a square adjacency matrix, got ", a.rows, " x ", a.cols);
    std::vector<sparse_entry> entries;
    entries.reserve(a.nonzeros() + (self_loops ? a.rows : 0));
    for (std::size_t r = 0; r < a.rows; ++r) {
        for (std::size_t i = a.row_start[r]; i < a.row_start[r + 1]; ++i)
            entries.push_back({r, a.col_index[i], a.values[i]});
        if (self_loops) entries.push_back({r, r, 1.0f});  // summed with an existing diagonal entry
    }
    csr_matrix s = csr_matrix::from_entries(a.rows, a.cols, entries);
    std::vector<float> inv_sqrt_degree(s.rows, 0.0f);
    for (std::size_t r = 0; r < s.rows; ++r) {
        double degree = 0;
        for (std::size_t i = s.row_start[r]; i < s.row_start[r + 1]; ++i) degree += s.values[i];
        detail::require(degree >= 0, "gcn_normalize: row ", r, " has the negative degree ", degree);
        inv_sqrt_degree[r] = degree > 0 ? float(1.0 / std::sqrt(degree)) : 0.0f;
    }
    for (std::size_t r = 0; r < s.rows; ++r)
        for (std::size_t i = s.row_start[r]; i < s.row_start[r + 1]; ++i)
            s.values[i] *= inv_sqrt_degree[r] * inv_sqrt_degree[s.col_index[i]];
    return s;
}

}  // namespace tern
