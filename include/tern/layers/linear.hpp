#pragma once
/// @file layers/linear.hpp
/// @brief tern::linear: a fully connected layer in any quantization policy (BitLinear when ternary).

#include <string>

#include "projection.hpp"

namespace tern {

/// @brief Fully connected layer y = x W^T + b over the last axis of x, in policy @p Policy.
///
/// In a ternary policy this is BitLinear (../shared/spec/bitlinear.md): per-token normalization,
/// @p ActBits absmax activation quantization, ternary weights with a per-tensor scale, identity
/// straight-through estimator. The fp32 shadow weight is what is stored and optimized.
/// @tparam Policy  fp32, fp16, absmean_ternary, absmedian_ternary (or a *_prenorm variant).
/// @tparam ActBits activation bits, 2..16, or float_activations (8 by default).
/// @throws tern::error from forward/backward when the input's last axis is not in_features.
template <class Policy, int ActBits = 8>
class linear {
    static_assert(quantization_policy<Policy>,
                  "tern::linear: Policy must be a quantization policy (tern::fp32, fp16, absmean_ternary, absmedian_ternary)");
    static_assert(activation_bits<ActBits>,
                  "tern::linear: ActBits must be in 2..16, or tern::float_activations");

    using core_type = detail::projection<detail::valid_policy_t<Policy>, detail::valid_bits<ActBits>>;

public:
    using policy = Policy;
    static constexpr int activation_bits = ActBits;
    template <class Q>
    using rebind = linear<Q, ActBits>;

    /// @param in, out  feature counts. @param bias  whether to learn a bias (ternary layers default to none).
    linear(std::size_t in, std::size_t out, bool bias = !detail::valid_policy_t<Policy>::ternary)
        : core_(in, out, bias) {
        detail::require(in > 0 && out > 0, "linear: expected positive feature counts, got ", in, " -> ", out);
    }

    /// Converts a linear layer of another policy: every parameter is copied exactly.
    template <class Q, int B>
    explicit linear(const linear<Q, B>& other) : core_(other.core()) {}

    tensor forward(const tensor& x) {
        const std::size_t T = detail::token_count(x, core_.in_features(), "linear");
        input_shape_ = detail::to_shape(x.shape());
        tensor y(detail::with_last_axis(x, core_.out_features()));
        core_.forward(x.data(), T, y.data());
        return y;
    }

    tensor backward(const tensor& grad_output) {
        check_grad(grad_output);
        tensor dx(input_shape_);
        core_.backward(grad_output.data(), dx.data());
        return dx;
    }

    /// backward without the input gradient (see tern::backward_parameters).
    void backward_parameters(const tensor& grad_output) {
        check_grad(grad_output);
        core_.backward_parameters(grad_output.data());
    }

    void collect_parameters(parameter_list& out, const std::string& prefix) { core_.collect_parameters(out, prefix); }
    void set_quant_strength(float lambda) { core_.set_quant_strength(lambda); }

    std::string describe() const {
        return "linear<" + core_.policy_string() + ">(" + std::to_string(core_.in_features()) + "->" +
               std::to_string(core_.out_features()) + (core_.has_bias() ? ",bias" : "") + ")";
    }

    std::size_t in_features() const { return core_.in_features(); }
    std::size_t out_features() const { return core_.out_features(); }
    tensor& weight() { return core_.weight; }
    tensor& bias() { return core_.bias; }
    const core_type& core() const { return core_; }
    core_type& core() { return core_; }

private:
    void check_grad(const tensor& grad_output) const {
        shape_t expected = input_shape_;
        if (!expected.empty()) expected.back() = core_.out_features();
        detail::require(detail::to_shape(grad_output.shape()) == expected, "linear: expected output gradient of shape ",
                        detail::shape_string(expected), ", got ", detail::shape_string(grad_output.shape()));
    }

    core_type core_;
    shape_t input_shape_;
};

}  // namespace tern
