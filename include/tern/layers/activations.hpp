#pragma once
/// @file layers/activations.hpp
/// @brief Element-wise activation layers: relu, gelu (exact, erf-based), silu.
///
/// Activations are layers of their own (not template parameters of other layers), so a model
/// lists them like any other layer and no layer type multiplies per activation.

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "../io/layer_io.hpp"
#include "../policy.hpp"
#include "../tensor.hpp"
#include "../threads.hpp"

namespace tern {
namespace detail {

/// out[i] = f(in[i]) over restrict pointers (so the loop vectorizes), threaded for big tensors.
template <class Fn>
void map_elements(const float* __restrict in, float* __restrict out, std::size_t n, Fn f) {
    parallel_for(
        n, [&](std::size_t lo, std::size_t hi) { for (std::size_t i = lo; i < hi; ++i) out[i] = f(in[i]); },
        double(n) * 8, 4e5);
}

/// out[i] = g[i] * f'(in[i]).
template <class Fn>
void map_gradients(const float* __restrict in, const float* __restrict g, float* __restrict out, std::size_t n,
                   Fn derivative) {
    parallel_for(
        n,
        [&](std::size_t lo, std::size_t hi) {
            for (std::size_t i = lo; i < hi; ++i) out[i] = g[i] * derivative(in[i]);
        },
        double(n) * 8, 4e5);
}

/// Shared plumbing of element-wise layers: keep the input (training only), map forward and
/// backward per element. @p Policy is fp32 (trains) or frozen<fp32> (forward only).
template <class Derived, class Policy>
class elementwise {
    static_assert(fixed_precision_policy<Policy>, "tern activations: Policy must be tern::fp32 or tern::frozen<tern::fp32>");

public:
    static constexpr bool parameter_free = true;
    static constexpr bool trainable = trainable_policy<Policy>;
    void forward(const tensor& x, tensor& y) {
        if constexpr (trainable) input_ = x;
        if (y.shape() != x.shape()) y.resize(to_shape(x.shape()));
        map_elements(x.data(), y.data(), x.size(), [](float v) { return Derived::value(v); });
    }
    tensor forward(const tensor& x) {
        tensor y;
        forward(x, y);
        return y;
    }

    tensor backward(const tensor& grad_output)
        requires trainable
    {
        require(grad_output.shape() == input_.shape(), Derived::label, ": expected output gradient of shape ",
                shape_string(input_.shape()), ", got ", shape_string(grad_output.shape()));
        tensor dx(detail::to_shape(input_.shape()));
        map_gradients(input_.data(), grad_output.data(), dx.data(), input_.size(),
                      [](float v) { return Derived::derivative(v); });
        return dx;
    }

    std::string describe() const { return Derived::label; }
    static constexpr const char* kind() { return Derived::label; }
    nlohmann::json config() const { return {{"kind", kind()}}; }
    static Derived load(const layer_reader&) { return Derived{}; }

private:
    [[no_unique_address]] training_only<Policy, tensor> input_{};
};

}  // namespace detail

/// @brief max(x, 0).
///
/// Its derivative depends only on the sign of x, so instead of a copy of the input (4 bytes per
/// element, written in forward and read again in backward) it keeps a 1-byte mask x > 0: ReLU
/// layers sit on the largest activations of a CNN, where this traffic is most of their cost.
/// @tparam Policy fp32 (trains) or frozen<fp32> (forward only: no mask is kept).
template <class Policy = fp32>
struct basic_relu {
    static_assert(fixed_precision_policy<Policy>, "tern::basic_relu: Policy must be tern::fp32 or tern::frozen<tern::fp32>");
    static constexpr bool parameter_free = true;
    static constexpr bool trainable = trainable_policy<Policy>;
    template <class T>
    using transform = basic_relu<fixed_policy_t<T>>;
    static constexpr const char* label = "relu";
    basic_relu() = default;
    template <class Q>
    explicit basic_relu(const basic_relu<Q>&) {}
    static float value(float x) { return x > 0.0f ? x : 0.0f; }
    static float derivative(float x) { return x > 0.0f ? 1.0f : 0.0f; }

    void forward(const tensor& x, tensor& y) {
        if (y.shape() != x.shape()) y.resize(detail::to_shape(x.shape()));
        const std::size_t n = x.size();
        const float* in = x.data();
        float* out = y.data();
        if constexpr (trainable) {
            shape_.assign(x.shape().begin(), x.shape().end());  // no allocation once the shape is steady
            positive_.resize(n);
            std::uint8_t* mask = positive_.data();
            parallel_for(
                n, [&](std::size_t lo, std::size_t hi) { forward_range(in + lo, out + lo, mask + lo, hi - lo); },
                double(n) * 8, 4e5);
        } else {
            detail::map_elements(in, out, n, [](float v) { return value(v); });
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
        detail::require(detail::to_shape(grad_output.shape()) == shape_, label, ": expected output gradient of shape ",
                        detail::shape_string(shape_), ", got ", detail::shape_string(grad_output.shape()));
        tensor dx(shape_);
        const std::size_t n = dx.size();
        const float* g = grad_output.data();
        const std::uint8_t* mask = positive_.data();
        float* out = dx.data();
        parallel_for(
            n, [&](std::size_t lo, std::size_t hi) { backward_range(g + lo, mask + lo, out + lo, hi - lo); },
            double(n) * 8, 4e5);
        return dx;
    }

    std::string describe() const { return label; }
    static constexpr const char* kind() { return label; }
    nlohmann::json config() const { return {{"kind", kind()}}; }
    static basic_relu load(const layer_reader&) { return basic_relu{}; }

private:
    // Plain functions over restrict pointers, so both loops vectorize.
    static void forward_range(const float* __restrict in, float* __restrict out, std::uint8_t* __restrict mask,
                              std::size_t n) {
        for (std::size_t i = 0; i < n; ++i) {
            const bool pos = in[i] > 0.0f;
            out[i] = pos ? in[i] : 0.0f;
            mask[i] = pos;
        }
    }
    static void backward_range(const float* __restrict g, const std::uint8_t* __restrict mask, float* __restrict out,
                               std::size_t n) {
        for (std::size_t i = 0; i < n; ++i) {
            const float m = mask[i];  // g * 0 or g * 1, as g * derivative(x)
            out[i] = g[i] * m;
        }
    }

    [[no_unique_address]] training_only<Policy, shape_t> shape_{};
    [[no_unique_address]] training_only<Policy, std::vector<std::uint8_t>> positive_{};
};

/// @brief ReLU that trains (the frozen form is basic_relu<frozen<fp32>>).
using relu = basic_relu<>;

/// @brief GELU, the exact form x * Phi(x) (PyTorch's default nn.GELU).
template <class Policy = fp32>
struct basic_gelu : detail::elementwise<basic_gelu<Policy>, Policy> {
    template <class T>
    using transform = basic_gelu<fixed_policy_t<T>>;
    basic_gelu() = default;
    template <class Q>
    explicit basic_gelu(const basic_gelu<Q>&) {}
    static constexpr const char* label = "gelu";
    static float value(float x) { return 0.5f * x * (1.0f + std::erf(x * 0.70710678118654752f)); }
    static float derivative(float x) {
        const float cdf = 0.5f * (1.0f + std::erf(x * 0.70710678118654752f));
        const float pdf = 0.39894228040143268f * std::exp(-0.5f * x * x);
        return cdf + x * pdf;
    }
};

/// @brief GELU that trains (the frozen form is basic_gelu<frozen<fp32>>).
using gelu = basic_gelu<>;

/// @brief SiLU (swish): x * sigmoid(x).
template <class Policy = fp32>
struct basic_silu : detail::elementwise<basic_silu<Policy>, Policy> {
    template <class T>
    using transform = basic_silu<fixed_policy_t<T>>;
    basic_silu() = default;
    template <class Q>
    explicit basic_silu(const basic_silu<Q>&) {}
    static constexpr const char* label = "silu";
    static float value(float x) { return x / (1.0f + std::exp(-x)); }
    static float derivative(float x) {
        const float s = 1.0f / (1.0f + std::exp(-x));
        return s * (1.0f + x * (1.0f - s));
    }
};

/// @brief SiLU that trains (the frozen form is basic_silu<frozen<fp32>>).
using silu = basic_silu<>;

}  // namespace tern
