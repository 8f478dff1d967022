#pragma once
/// @file graph/gcn_conv.hpp
/// @brief tern::gcn_conv: one graph convolution H' = S H W^T (+ b) (Kipf and Welling 2017), W a
/// tern::linear of the policy.

#include <string>
#include <utility>

#include "../layers/linear.hpp"
#include "propagation.hpp"

namespace tern {

/// @brief A graph convolution over the nodes of one graph: input H [nodes, in], output [nodes, out].
///
/// The product is ordered by the shapes, fixed at construction: S (H W^T) when out < in (the
/// sparse product then runs over the narrower matrix), (S H) W^T otherwise. In a ternary policy
/// the two orders quantize different activations (H or S H), so the order is part of the layer,
/// not chosen per call. Gradients flow through S^T. The graph S is a shared_ptr to an immutable
/// tern::propagation, shared by every layer and every converted or frozen copy of the model.
/// Frozen (tern::frozen<P>) it runs the packed linear; it has no file entry (a file cannot hold
/// the graph), so a frozen GCN runs as a compile-time model.
/// @throws tern::error for a missing graph or an input that is not [nodes, in].
template <class Policy, int ActBits = 8>
class gcn_conv {
    using inner_type = linear<Policy, ActBits>;

public:
    using policy = Policy;
    static constexpr bool trainable = trainable_policy<Policy>;
    template <class T>
    using transform = gcn_conv<typename T::template apply<Policy>, ActBits>;

    gcn_conv(shared_propagation graph, std::size_t in, std::size_t out,
             bool bias = !detail::valid_policy_t<Policy>::ternary)
        requires trainable
        : graph_(std::move(graph)), w_(in, out, bias) {
        detail::require_graph(graph_, "gcn_conv");
    }

    template <class Q, int B>
    explicit gcn_conv(const gcn_conv<Q, B>& other) : graph_(other.graph()), w_(other.inner()) {}

    /// Whether the product runs S (H W^T): the linear map first.
    bool projects_first() const { return w_.out_features() < w_.in_features(); }

    void forward(const tensor& x, tensor& y) {
        if (projects_first()) {
            w_.forward(x, mid_);
            graph_->apply(mid_, y, "gcn_conv");
        } else {
            graph_->apply(x, mid_, "gcn_conv");
            w_.forward(mid_, y);
        }
    }
    tensor forward(const tensor& x) {
        tensor y;
        forward(x, y);
        return y;
    }

    tensor backward(const tensor& grad_output)
        requires trainable
    {
        tensor dx;
        if (projects_first()) {
            graph_->apply_transposed(grad_output, mid_, "gcn_conv");
            dx = w_.backward(mid_);
        } else {
            const tensor d_mid = w_.backward(grad_output);
            graph_->apply_transposed(d_mid, dx, "gcn_conv");
        }
        return dx;
    }
    void backward_parameters(const tensor& grad_output)
        requires trainable
    {
        if (projects_first()) {
            graph_->apply_transposed(grad_output, mid_, "gcn_conv");
            w_.backward_parameters(mid_);
        } else {
            w_.backward_parameters(grad_output);
        }
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

    std::string describe() const { return "gcn_conv(" + w_.describe() + ")"; }

    const shared_propagation& graph() const { return graph_; }
    const inner_type& inner() const { return w_; }
    inner_type& inner() { return w_; }

private:
    shared_propagation graph_;
    inner_type w_;
    tensor mid_;  // H W^T or S H of the last forward (the buffer is reused)
};

}  // namespace tern
