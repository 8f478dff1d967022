#pragma once
/// @file graph/propagation.hpp
/// @brief A graph's propagation matrix S (e.g. the GCN-normalized adjacency) with its transpose,
/// shared read-only by the graph layers of a model.
///
/// Graph layers hold a std::shared_ptr<const propagation>: the graph is data, not a parameter.
/// Every layer of a model (and its converted or frozen copies) propagates over the same matrix
/// without copying it, and nothing can change it under a layer that cached a product with it.

#include <memory>
#include <string>
#include <utility>

#include "sparse.hpp"

namespace tern {

/// @brief A square sparse matrix S and S^T (S^T is S itself when S is symmetric, as the GCN
/// normalization of an undirected graph is: it is then not stored twice).
class propagation {
public:
    /// @throws tern::error if @p s is not square.
    explicit propagation(csr_matrix s) : s_(std::move(s)) {
        detail::require(s_.rows == s_.cols, "propagation: expected a square matrix, got ", s_.rows, " x ", s_.cols);
        if (!is_symmetric(s_)) transposed_ = transpose(s_);
        else symmetric_ = true;
    }

    std::size_t nodes() const { return s_.rows; }
    const csr_matrix& matrix() const { return s_; }
    const csr_matrix& transposed() const { return symmetric_ ? s_ : transposed_; }
    bool symmetric() const { return symmetric_; }

    /// @brief Y = S X for X [nodes, F], written into @p y (resized to [nodes, F] when needed).
    void apply(const tensor& x, tensor& y, const char* who) const { product(s_, x, y, who); }
    /// @brief Y = S^T X (the backward pass of Y = S X).
    void apply_transposed(const tensor& x, tensor& y, const char* who) const { product(transposed(), x, y, who); }

private:
    static void product(const csr_matrix& m, const tensor& x, tensor& y, const char* who) {
        detail::require(x.dimension() == 2 && x.shape()[0] == m.cols, who, ": expected node features [", m.cols,
                        ", features] (one row per node of the graph), got shape ", detail::shape_string(x.shape()));
        const std::size_t F = x.shape()[1];
        if (y.dimension() != 2 || y.shape()[0] != m.rows || y.shape()[1] != F) y = tensor::from_shape({m.rows, F});
        spmm(m, x.data(), F, y.data());
    }

    csr_matrix s_, transposed_;
    bool symmetric_ = false;
};

/// @brief The handle graph layers keep.
using shared_propagation = std::shared_ptr<const propagation>;

/// @brief Builds the shared propagation S = D^-1/2 (A + I) D^-1/2 of an adjacency @p a
/// (gcn_normalize; @p self_loops as there).
inline shared_propagation make_gcn_propagation(const csr_matrix& a, bool self_loops = true) {
    return std::make_shared<const propagation>(gcn_normalize(a, self_loops));
}

namespace detail {
inline void require_graph(const shared_propagation& g, const char* who) {
    require(g != nullptr, who, ": expected a graph (a shared tern::propagation), got none");
}
}  // namespace detail

}  // namespace tern
