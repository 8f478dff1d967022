#pragma once
/// @file layers/projection.hpp
/// @brief The BitLinear math on a token matrix, shared by linear and conv2d.
///
/// projection<Policy, ActBits> maps T tokens of K features to T tokens of N features,
/// following ../shared/spec/bitlinear.md for every policy. It owns the shadow weight, the
/// optional bias, their gradients, and what the backward pass needs.

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "../kernels/fp16.hpp"
#include "../kernels/gemm.hpp"
#include "../parameter.hpp"
#include "../policy.hpp"
#include "../quantize.hpp"
#include "../random.hpp"
#include "../tensor.hpp"

namespace tern::detail {

/// Adds "in", "out", "bias", "policy" (and "activation_bits" when ternary) to @p c: the
/// configuration of a projection in policy P, trained or frozen.
template <class P, int ActBits>
void projection_config(nlohmann::json& c, std::size_t in, std::size_t out, bool bias) {
    c["in"] = in;
    c["out"] = out;
    c["bias"] = bias;
    c["policy"] = std::string(P::name);
    if constexpr (P::ternary) c["activation_bits"] = ActBits;
}

/// y[T x N] = x[T x K] W^T (+ b): the full-precision product of the training and frozen projections.
inline void dense_product(const float* x, std::size_t T, std::size_t K, const float* w, std::size_t N,
                          const float* bias, float* y) {
    kernels::sgemm(false, true, T, N, K, 1.0f, x, K, w, K, 0.0f, y, N);
    if (bias)
        for (std::size_t t = 0; t < T; ++t)
            for (std::size_t n = 0; n < N; ++n) y[t * N + n] += bias[n];
}

/// The input a full-precision policy P multiplies: BitLinear's per-token normalization (prenorm
/// policies), then binary16 rounding (fp16). Writes into @p buf [T x K] when P changes x; returns
/// the pointer to read (x itself for fp32). @p rstd receives the normalization's 1/std per token.
template <class P>
const float* prepare_input(const float* x, std::size_t T, std::size_t K, float* buf, float* rstd) {
    if constexpr (P::normalize_input) {
        normalize_tokens(x, T, K, buf, rstd);
        x = buf;
    }
    if constexpr (P::half_precision) {
        kernels::round_to_half(x, buf, T * K);
        x = buf;
    }
    return x;
}

/// The storage figures of a layer built on a frozen projection (linear, conv2d), for the run-time
/// model: @p Layer has core() returning its projection<frozen<P>>.
template <class Layer>
struct frozen_storage {
    std::size_t parameter_bytes() const { return core().parameter_bytes(); }
    std::size_t packed_weights() const { return core().packed_weight_count(); }
    std::size_t packed_bytes() const { return core().packed_bytes(); }

private:
    const auto& core() const { return static_cast<const Layer&>(*this).core(); }
};

/// The training projection (below) keeps shadow weights and what backward needs; the frozen one,
/// projection<frozen<P>, ActBits> (layers/frozen_projection.hpp, included by deploy/freeze.hpp),
/// keeps the packed or full-precision weights alone.
template <class Policy, int ActBits>
class projection;
template <class P, int ActBits>
class projection<frozen<P>, ActBits>;

template <class Policy, int ActBits>
class projection {
    static_assert(quantization_policy<Policy>,
                  "tern: Policy must be a quantization policy (tern::fp32, fp16, absmean_ternary, absmedian_ternary)");
    static_assert(activation_bits<ActBits>,
                  "tern: ActBits must be in 2..16, or tern::float_activations for unquantized activations");

public:
    projection() = default;
    projection(std::size_t in, std::size_t out, bool bias) : in_(in), out_(out), has_bias_(bias) {
        weight = tensor(shape_t{out, in});
        weight_grad = zeros({out, in});
        const float bound = in ? 1.0f / std::sqrt(float(in)) : 0.0f;  // PyTorch's default init
        fill_uniform(weight.data(), weight.size(), bound);
        if (bias) {
            this->bias = tensor(shape_t{out});
            fill_uniform(this->bias.data(), out, bound);
            bias_grad = zeros({out});
        }
    }

    /// Copies parameters from the same projection in another policy (continual QAT conversion).
    template <class Q, int B>
    explicit projection(const projection<Q, B>& other)
        : weight(other.weight), bias(other.bias), weight_grad(other.weight_grad), bias_grad(other.bias_grad),
          in_(other.in_features()), out_(other.out_features()), has_bias_(other.has_bias()),
          lambda_(other.quant_strength()) {}

    std::size_t in_features() const { return in_; }
    std::size_t out_features() const { return out_; }
    bool has_bias() const { return has_bias_; }

    void set_quant_strength(float lambda) {
        require(lambda >= 0.0f && lambda <= 1.0f, "quantization strength (lambda): expected a value in [0, 1], got ",
                lambda);
        lambda_ = lambda;
    }
    float quant_strength() const { return lambda_; }

    /// y[T x N] = x^[T x K] W^T + b, keeping x^ and W^ for the backward pass.
    void forward(const float* x, std::size_t T, float* y) {
        tokens_ = T;
        const std::size_t K = in_, N = out_;
        x_hat_.resize(T * K);
        const float* w_used = weight.data();
        if constexpr (Policy::normalize_input) {
            x_norm_.resize(T * K);
            rstd_.resize(T);
            normalize_tokens(x, T, K, x_norm_.data(), rstd_.data());
            x = x_norm_.data();
        }
        if constexpr (quantizes_activations<Policy, ActBits>) {
            quantize_activations(x, T, K, ActBits, lambda_, x_hat_.data(), nullptr);
        } else if constexpr (Policy::half_precision) {
            kernels::round_to_half(x, x_hat_.data(), T * K);
        } else {
            std::copy(x, x + T * K, x_hat_.data());
        }
        if constexpr (Policy::ternary) {
            w_hat_.resize(N * K);
            weight_scale_ = ternarize_weights<Policy>(weight.data(), N * K, lambda_, w_hat_.data());
            w_used = w_hat_.data();
        } else if constexpr (Policy::half_precision) {
            w_hat_.resize(N * K);
            kernels::round_to_half(weight.data(), w_hat_.data(), N * K);
            w_used = w_hat_.data();
        }
        dense_product(x_hat_.data(), T, K, w_used, N, has_bias() ? bias.data() : nullptr, y);
    }

    /// Accumulates dW and db from g[T x N] and writes dx[T x K] (straight-through estimator).
    void backward(const float* g, float* dx) {
        backward_parameters(g);
        const std::size_t T = tokens_, K = in_, N = out_;
        const float* w_used = (Policy::ternary || Policy::half_precision) ? w_hat_.data() : weight.data();
        kernels::sgemm(false, false, T, K, N, 1.0f, g, N, w_used, K, 0.0f, dx, K);
        if constexpr (Policy::normalize_input) normalize_tokens_backward(dx, x_norm_.data(), rstd_.data(), T, K, dx);
    }

    /// The parameter half of backward: dW += g^T x^, db += column sums of g.
    void backward_parameters(const float* g) {
        const std::size_t T = tokens_, K = in_, N = out_;
        kernels::sgemm(true, false, N, K, T, 1.0f, g, N, x_hat_.data(), K, 1.0f, weight_grad.data(), K);
        if (has_bias()) {
            float* db = bias_grad.data();
            for (std::size_t t = 0; t < T; ++t)
                for (std::size_t n = 0; n < N; ++n) db[n] += g[t * N + n];
        }
    }

    void collect_parameters(parameter_list& out, const std::string& prefix) {
        out.push_back({prefix + "weight", &weight, &weight_grad, true});
        if (has_bias()) out.push_back({prefix + "bias", &bias, &bias_grad, false});
    }

    /// The bias values, or null without a bias.
    const float* bias_data() const { return has_bias() ? bias.data() : nullptr; }

    /// s_w of the last forward pass (ternary policies only).
    float last_weight_scale() const { return weight_scale_; }

    /// Adds the projection's fields to @p c (projection_config), as the frozen projection does,
    /// so a checkpoint and a packed file describe a layer alike.
    void add_config(nlohmann::json& c) const { projection_config<Policy, ActBits>(c, in_, out_, has_bias()); }

    static std::string policy_string() {
        std::string s(Policy::name);
        if constexpr (quantizes_activations<Policy, ActBits>) s += ",a" + std::to_string(ActBits);
        return s;
    }

    tensor weight, bias, weight_grad, bias_grad;  ///< bias and bias_grad are meaningful only with has_bias()

private:
    std::size_t in_ = 0, out_ = 0, tokens_ = 0;
    bool has_bias_ = false;  // (a default xarray is a 0-d scalar of size 1, so size() cannot tell)
    float lambda_ = 1.0f;
    float weight_scale_ = 1.0f;
    std::vector<float> x_hat_, x_norm_, rstd_, w_hat_;
};

}  // namespace tern::detail
