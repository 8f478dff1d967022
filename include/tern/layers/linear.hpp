#pragma once
/// @file layers/linear.hpp
/// @brief tern::linear: a fully connected layer in any quantization policy (BitLinear when ternary).

#include <string>
#include <type_traits>
#include <utility>

#include "../io/layer_io.hpp"
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
class linear : public std::conditional_t<trainable_policy<Policy>, detail::empty,
                                         detail::frozen_storage<linear<Policy, ActBits>>> {
    static_assert(quantization_policy<Policy>,
                  "tern::linear: Policy must be a quantization policy (tern::fp32, fp16, absmean_ternary, absmedian_ternary)");
    static_assert(activation_bits<ActBits>,
                  "tern::linear: ActBits must be in 2..16, or tern::float_activations");

    using core_type = detail::projection<detail::valid_policy_t<Policy>, detail::valid_bits<ActBits>>;

public:
    using policy = Policy;
    static constexpr int activation_bits = ActBits;
    /// False for the frozen instantiation (tern::frozen<P>): forward only, no training state.
    static constexpr bool trainable = trainable_policy<Policy>;
    template <class T>
    using transform = linear<typename T::template apply<Policy>, ActBits>;

    /// @param in, out  feature counts. @param bias  whether to learn a bias (ternary layers default to none).
    linear(std::size_t in, std::size_t out, bool bias = !detail::valid_policy_t<Policy>::ternary)
        requires trainable
        : core_(in, out, bias) {
        detail::require(in > 0 && out > 0, "linear: expected positive feature counts, got ", in, " -> ", out);
    }

    /// Converts a linear layer of another policy: every parameter is copied exactly; into a frozen
    /// policy, the weights are frozen at lambda 1 (packed 2-bit codes when ternary).
    template <class Q, int B>
    explicit linear(const linear<Q, B>& other) : core_(other.core()) {}

    /// y = layer(x), written into @p y (resized only when its shape changes: a frozen model reuses
    /// its buffers and allocates nothing once the shapes are steady).
    void forward(const tensor& x, tensor& y) {
        const std::size_t T = detail::token_count(x, core_.in_features(), "linear");
        if constexpr (trainable) input_shape_ = detail::to_shape(x.shape());
        detail::shape_like(y, x, core_.out_features());
        core_.forward(x.data(), T, y.data());
    }
    tensor forward(const tensor& x) {
        tensor y;
        forward(x, y);
        return y;
    }

    tensor backward(const tensor& grad_output)
        requires trainable
    {
        check_grad(grad_output);
        tensor dx(input_shape_);
        core_.backward(grad_output.data(), dx.data());
        return dx;
    }

    /// backward without the input gradient (see tern::backward_parameters).
    void backward_parameters(const tensor& grad_output)
        requires trainable
    {
        check_grad(grad_output);
        core_.backward_parameters(grad_output.data());
    }

    void collect_parameters(parameter_list& out, const std::string& prefix)
        requires trainable
    {
        core_.collect_parameters(out, prefix);
    }
    void set_quant_strength(float lambda)
        requires trainable
    {
        core_.set_quant_strength(lambda);
    }

    std::string describe() const {
        return std::string(kind()) + "<" + core_.policy_string() + ">(" + std::to_string(core_.in_features()) +
               "->" + std::to_string(core_.out_features()) + (core_.has_bias() ? ",bias" : "") + ")";
    }

    /// @name Saving and loading (see io/layer_io.hpp)
    /// @{
    /// "ternary_linear" for packed ternary weights, "linear" for full-precision ones.
    static constexpr const char* kind() { return trainable || !Policy::ternary ? "linear" : "ternary_linear"; }
    nlohmann::json config() const {
        nlohmann::json c = {{"kind", kind()}};
        core_.add_config(c);
        return c;
    }
    void save(layer_writer& w) const
        requires(!trainable)
    {
        core_.save(w);
    }
    static linear load(const layer_reader& r)
        requires(!trainable)
    {
        const std::size_t in = r.size_field("in"), out = r.size_field("out");
        return linear(core_type::load(r, in, out, r.bool_field("bias")));
    }
    /// The tensors of a linear inside another layer, whose configuration gives the sizes.
    static linear load(const layer_reader& r, std::size_t in, std::size_t out, bool bias)
        requires(!trainable)
    {
        return linear(core_type::load(r, in, out, bias));
    }
    feature_info propagate(feature_info in, const std::string& where) const {
        detail::require(in.last == 0 || in.last == in_features(), where, ": expects ", in_features(),
                        " input features but the previous layers give ", in.last);
        return {out_features(), in.total && in.last ? in.total / in.last * out_features() : 0};
    }
    /// @}

    std::size_t in_features() const { return core_.in_features(); }
    std::size_t out_features() const { return core_.out_features(); }
    tensor& weight()
        requires trainable
    {
        return core_.weight;
    }
    tensor& bias()
        requires trainable
    {
        return core_.bias;
    }
    const core_type& core() const { return core_; }
    core_type& core() { return core_; }

private:
    void check_grad(const tensor& grad_output) const {
        shape_t expected = input_shape_;
        if (!expected.empty()) expected.back() = core_.out_features();
        detail::require(detail::to_shape(grad_output.shape()) == expected, "linear: expected output gradient of shape ",
                        detail::shape_string(expected), ", got ", detail::shape_string(grad_output.shape()));
    }

    explicit linear(core_type core) : core_(std::move(core)) {}

    core_type core_;
    [[no_unique_address]] training_only<Policy, shape_t> input_shape_{};
};

}  // namespace tern
