#pragma once
/// @file graph/sgc.hpp
/// @brief tern::sgc: Simplified Graph Convolution (Wu et al. 2019), logits = (S^K X) W^T, with
/// S^K X computed once and cached, and W a tern::linear of the policy (BitLinear when ternary).

#include <cstdint>
#include <cstring>
#include <string>
#include <utility>

#include "../layers/linear.hpp"
#include "propagation.hpp"

namespace tern {

namespace detail {
/// A 64-bit fingerprint of @p n floats (their bit patterns; FNV-1a style over 64-bit words in four
/// independent lanes, so the multiplications overlap): the SGC cache's key, far cheaper than K
/// sparse products and than keeping a second copy of the features to compare.
inline std::uint64_t fingerprint(const float* x, std::size_t n) {
    constexpr std::uint64_t prime = 1099511628211ull;
    std::uint64_t lane[4] = {1469598103934665603ull ^ n, 0x9e3779b97f4a7c15ull, 0xc2b2ae3d27d4eb4full,
                             0x165667b19e3779f9ull};
    const std::size_t words = n / 2, full = words - words % 4;
    for (std::size_t i = 0; i < full; i += 4)
        for (std::size_t k = 0; k < 4; ++k) {
            std::uint64_t w;
            std::memcpy(&w, x + 2 * (i + k), sizeof w);
            lane[k] = (lane[k] ^ w) * prime;
        }
    for (std::size_t i = 2 * full; i < n; ++i) {
        std::uint32_t bits;
        std::memcpy(&bits, x + i, sizeof bits);
        lane[0] = (lane[0] ^ bits) * prime;
    }
    return ((lane[0] * prime ^ lane[1]) * prime ^ lane[2]) * prime ^ lane[3];
}
}  // namespace detail

/// @brief SGC: y = (S^K x) W^T (+ b) over the nodes of one graph.
///
/// The input is the node features x [nodes, in]; S is the graph's propagation matrix, held as a
/// shared_ptr to an immutable tern::propagation (the graph is data shared by every copy of the
/// model, not a parameter). Training full-batch passes the same x every epoch, so S^K x is kept
/// with a fingerprint of x and recomputed only when x changes. backward propagates through
/// (S^T)^K; as a model's first layer, backward_parameters skips that.
/// Frozen (tern::frozen<P>) it runs the packed linear on S^K x. It has no file entry of its own: a
/// file cannot hold the graph, so an exported SGC is its linear layer applied to S^K x
/// (inner(), with propagate_features()).
/// @tparam Policy, ActBits  those of the linear layer (see tern::linear).
/// @throws tern::error for a missing graph, K = 0 or an input that is not [nodes, in].
template <class Policy, int ActBits = 8>
class sgc {
    using inner_type = linear<Policy, ActBits>;

public:
    using policy = Policy;
    static constexpr bool trainable = trainable_policy<Policy>;
    template <class T>
    using transform = sgc<typename T::template apply<Policy>, ActBits>;

    /// @param graph S. @param hops K >= 1. @param in, out  feature and class counts. @param bias  as tern::linear.
    sgc(shared_propagation graph, std::size_t hops, std::size_t in, std::size_t out,
        bool bias = !detail::valid_policy_t<Policy>::ternary)
        requires trainable
        : graph_(std::move(graph)), hops_(hops), w_(in, out, bias) {
        detail::require_graph(graph_, "sgc");
        detail::require(hops >= 1, "sgc: expected K >= 1 propagation steps, got ", hops);
    }

    /// Converts an SGC of another policy (same graph, same K; the cache is recomputed on first use).
    template <class Q, int B>
    explicit sgc(const sgc<Q, B>& other) : graph_(other.graph()), hops_(other.hops()), w_(other.inner()) {}

    /// @brief S^K x, the features the linear layer sees (cached: see the class comment).
    const tensor& propagate_features(const tensor& x) {
        const std::uint64_t key = detail::fingerprint(x.data(), x.size());
        if (cached_ && key == cached_key_ && detail::to_shape(x.shape()) == cached_shape_) return propagated_;
        tensor other;
        graph_->apply(x, propagated_, "sgc");
        for (std::size_t k = 1; k < hops_; ++k) {
            graph_->apply(propagated_, other, "sgc");
            std::swap(propagated_, other);
        }
        cached_ = true;
        cached_key_ = key;
        cached_shape_ = detail::to_shape(x.shape());
        return propagated_;
    }

    void forward(const tensor& x, tensor& y) { w_.forward(propagate_features(x), y); }
    tensor forward(const tensor& x) {
        tensor y;
        forward(x, y);
        return y;
    }

    tensor backward(const tensor& grad_output)
        requires trainable
    {
        tensor g = w_.backward(grad_output), other;
        for (std::size_t k = 0; k < hops_; ++k) {
            graph_->apply_transposed(g, other, "sgc");
            std::swap(g, other);
        }
        return g;
    }
    void backward_parameters(const tensor& grad_output)
        requires trainable
    {
        w_.backward_parameters(grad_output);
    }
    void collect_parameters(parameter_list& out, const std::string& prefix)
        requires trainable
    {
        w_.collect_parameters(out, prefix);
    }
    void set_quant_strength(float lambda)
        requires trainable
    {
        w_.set_quant_strength(lambda);
    }

    std::string describe() const { return "sgc(K=" + std::to_string(hops_) + ", " + w_.describe() + ")"; }

    const shared_propagation& graph() const { return graph_; }
    std::size_t hops() const { return hops_; }
    const inner_type& inner() const { return w_; }
    inner_type& inner() { return w_; }

private:
    shared_propagation graph_;
    std::size_t hops_ = 1;
    inner_type w_;
    tensor propagated_;
    bool cached_ = false;
    std::uint64_t cached_key_ = 0;
    shape_t cached_shape_;
};

}  // namespace tern
