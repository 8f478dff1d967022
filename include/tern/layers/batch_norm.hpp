#pragma once
/// @file layers/batch_norm.hpp
/// @brief tern::batch_norm2d: batch normalization of NCHW images with running statistics.
///
/// Normalization layers stay full precision in every policy.

#include <cmath>
#include <string>
#include <vector>

#include "../parameter.hpp"
#include "../io/layer_io.hpp"
#include "../policy.hpp"
#include "../tensor.hpp"
#include "../threads.hpp"

namespace tern {

/// @brief Batch normalization over the channels of [B, C, H, W] images (PyTorch's nn.BatchNorm2d).
///
/// Training mode: each channel is normalized with the mean and biased variance over (B, H, W), then
/// scaled by weight (gamma, init 1) and shifted by bias (beta, init 0); the running statistics
/// follow r = (1 - momentum) r + momentum * batch value, with the unbiased variance for
/// running_var. Evaluation mode (set_training(false)): the running statistics are used and not
/// updated. Parameters: "weight" and "bias" (trainable, no weight decay); buffers "running_mean"
/// (init 0) and "running_var" (init 1), listed with grad == nullptr so checkpoints save them.
/// @throws tern::error on a non-positive channel count, a momentum outside [0, 1], an input that is
///         not [B, C, H, W] with C channels, or a training batch with a single value per channel.
/// @tparam Policy fp32 (trains) or frozen<fp32> (evaluation only: the running statistics, no
///         gradients and nothing kept for backward).
template <class Policy = fp32>
class basic_batch_norm2d {
    static_assert(fixed_precision_policy<Policy>,
                  "tern::basic_batch_norm2d: Policy must be tern::fp32 or tern::frozen<tern::fp32>");

public:
    static constexpr bool trainable = trainable_policy<Policy>;
    template <class T>
    using transform = basic_batch_norm2d<fixed_policy_t<T>>;

    explicit basic_batch_norm2d(std::size_t channels, float momentum = 0.1f, float eps = 1e-5f)
        : C_(channels), momentum_(momentum), eps_(eps) {
        detail::require(channels > 0, "batch_norm2d: expected a positive channel count, got 0");
        detail::require(momentum >= 0.0f && momentum <= 1.0f, "batch_norm2d: expected momentum in [0, 1], got ",
                        momentum);
        detail::require(eps > 0.0f, "batch_norm2d: expected eps > 0, got ", eps);
        weight = tensor(shape_t{channels}, 1.0f);
        bias = zeros({channels});
        running_mean = zeros({channels});
        running_var = tensor(shape_t{channels}, 1.0f);
        if constexpr (trainable) {
            weight_grad = zeros({channels});
            bias_grad = zeros({channels});
            training_ = true;
            used_batch_stats_ = true;
        }
    }
    /// The same layer from another instantiation (freezing keeps gamma, beta and the running
    /// statistics, and drops the gradients).
    template <class Q>
    explicit basic_batch_norm2d(const basic_batch_norm2d<Q>& other)
        : basic_batch_norm2d(other.channels(), other.momentum(), other.eps()) {
        weight = other.weight;
        bias = other.bias;
        running_mean = other.running_mean;
        running_var = other.running_var;
        set_training(trainable && other.training());
    }

    /// Batch statistics (training) or the running ones (evaluation); a frozen layer only evaluates.
    void set_training(bool training) {
        if constexpr (trainable) training_ = training;
        else detail::require(!training, "batch_norm2d: a frozen layer cannot train");
    }
    bool training() const {
        if constexpr (trainable) return training_;
        else return false;
    }

    tensor forward(const tensor& x) {
        detail::require(x.dimension() == 4 && x.shape()[1] == C_, "batch_norm2d: expected input [B, ", C_,
                        ", H, W] (NCHW), got shape ", detail::shape_string(x.shape()));
        const shape_t shape = detail::to_shape(x.shape());
        const std::size_t B = shape[0], area = shape[2] * shape[3], n = B * area;
        const bool batch_stats = training();
        detail::require(!batch_stats || n > 1, "batch_norm2d: training needs more than one value per channel, got input ",
                        detail::shape_string(x.shape()));
        if constexpr (trainable) {
            shape_ = shape;
            used_batch_stats_ = batch_stats;
            x_hat_.resize(x.size());
            inv_std_.resize(C_);
        }
        tensor y(shape);
        const float* xs = x.data();
        float* ys = y.data();
        float* xh = nullptr;
        if constexpr (trainable) xh = x_hat_.data();
        parallel_for(
            C_, [&](std::size_t lo, std::size_t hi) {
                for (std::size_t c = lo; c < hi; ++c) {
                    float mean, inv;
                    if (batch_stats) {
                        double s = 0;
                        for (std::size_t b = 0; b < B; ++b) {
                            const float* p = xs + (b * C_ + c) * area;
                            for (std::size_t i = 0; i < area; ++i) s += p[i];
                        }
                        const double m = s / double(n);
                        double s2 = 0;
                        for (std::size_t b = 0; b < B; ++b) {
                            const float* p = xs + (b * C_ + c) * area;
                            for (std::size_t i = 0; i < area; ++i) {
                                const double d = p[i] - m;
                                s2 += d * d;
                            }
                        }
                        const double var = s2 / double(n);
                        mean = float(m);
                        inv = float(1.0 / std::sqrt(var + double(eps_)));
                        running_mean(c) = (1.0f - momentum_) * running_mean(c) + momentum_ * mean;
                        running_var(c) =
                            (1.0f - momentum_) * running_var(c) + momentum_ * float(s2 / double(n - 1));
                    } else {
                        mean = running_mean(c);
                        inv = 1.0f / std::sqrt(running_var(c) + eps_);
                    }
                    const float g = weight(c), sh = bias(c);
                    if constexpr (trainable) {
                        inv_std_[c] = inv;
                        for (std::size_t b = 0; b < B; ++b) {
                            const std::size_t off = (b * C_ + c) * area;
                            for (std::size_t i = 0; i < area; ++i) {
                                const float v = (xs[off + i] - mean) * inv;
                                xh[off + i] = v;
                                ys[off + i] = v * g + sh;
                            }
                        }
                    } else {
                        for (std::size_t b = 0; b < B; ++b) {
                            const std::size_t off = (b * C_ + c) * area;
                            for (std::size_t i = 0; i < area; ++i) ys[off + i] = (xs[off + i] - mean) * inv * g + sh;
                        }
                    }
                }
            },
            double(x.size()) * 4, 2e5);
        return y;
    }

    tensor backward(const tensor& grad_output)
        requires trainable
    {
        detail::require(detail::to_shape(grad_output.shape()) == shape_, "batch_norm2d: expected output gradient of shape ",
                        detail::shape_string(shape_), ", got ", detail::shape_string(grad_output.shape()));
        const std::size_t B = shape_[0], area = shape_[2] * shape_[3], n = B * area;
        tensor dx(shape_);
        const float* gs = grad_output.data();
        const float* xh = x_hat_.data();
        float* d = dx.data();
        parallel_for(
            C_, [&](std::size_t lo, std::size_t hi) {
                for (std::size_t c = lo; c < hi; ++c) {
                    double sg = 0, sgx = 0;
                    for (std::size_t b = 0; b < B; ++b) {
                        const std::size_t off = (b * C_ + c) * area;
                        for (std::size_t i = 0; i < area; ++i) {
                            sg += gs[off + i];
                            sgx += double(gs[off + i]) * xh[off + i];
                        }
                    }
                    weight_grad(c) += float(sgx);
                    bias_grad(c) += float(sg);
                    const float scale = weight(c) * inv_std_[c];
                    // Batch statistics depend on x: subtract the mean gradient and its projection on x_hat.
                    const float mg = used_batch_stats_ ? float(sg / double(n)) : 0.0f;
                    const float mgx = used_batch_stats_ ? float(sgx / double(n)) : 0.0f;
                    for (std::size_t b = 0; b < B; ++b) {
                        const std::size_t off = (b * C_ + c) * area;
                        for (std::size_t i = 0; i < area; ++i) d[off + i] = scale * (gs[off + i] - mg - xh[off + i] * mgx);
                    }
                }
            },
            double(dx.size()) * 4, 2e5);
        return dx;
    }

    void collect_parameters(parameter_list& out, const std::string& prefix)
        requires trainable
    {
        out.push_back({prefix + "weight", &weight, &weight_grad, false});
        out.push_back({prefix + "bias", &bias, &bias_grad, false});
        out.push_back({prefix + "running_mean", &running_mean, nullptr, false});
        out.push_back({prefix + "running_var", &running_var, nullptr, false});
    }

    std::string describe() const { return "batch_norm2d(" + std::to_string(C_) + ")"; }

    std::size_t channels() const { return C_; }
    float momentum() const { return momentum_; }
    float eps() const { return eps_; }

    /// @name Saving and loading (see io/layer_io.hpp); a loaded layer is in evaluation mode
    /// @{
    static constexpr const char* kind() { return "batch_norm2d"; }
    nlohmann::json config() const {
        return {{"kind", kind()}, {"channels", C_}, {"momentum", momentum_}, {"eps", eps_}};
    }
    /// "weight", "bias", "running_mean", "running_var", F32 [C] each.
    void save(layer_writer& w) const {
        w.put("weight", weight);
        w.put("bias", bias);
        w.put("running_mean", running_mean);
        w.put("running_var", running_var);
    }
    static basic_batch_norm2d load(const layer_reader& r) {
        const std::size_t C = r.size_field("channels", 1, std::size_t{1} << 24);
        const double momentum = r.number_field("momentum"), eps = r.number_field("eps");
        if (!(momentum >= 0.0 && momentum <= 1.0)) r.fail("field 'momentum': expected a number in [0, 1], found ", momentum);
        if (!(eps > 0.0 && eps < 1.0)) r.fail("field 'eps': expected a number in (0, 1), found ", eps);
        basic_batch_norm2d l(C, float(momentum), float(eps));
        l.weight = r.f32("weight", {C});
        l.bias = r.f32("bias", {C});
        l.running_mean = r.f32("running_mean", {C});
        l.running_var = r.f32("running_var", {C});
        for (std::size_t c = 0; c < C; ++c)
            if (!(l.running_var(c) >= 0.0f) || !std::isfinite(l.running_var(c)))
                r.fail("tensor '", r.prefix(), "running_var': expected finite values >= 0, found ", l.running_var(c),
                       " at channel ", c);
        l.set_training(false);
        return l;
    }
    feature_info propagate(feature_info in, const std::string& where) const {
        detail::image_height(in, C_, where);
        return in;
    }
    std::size_t parameter_bytes() const { return 4 * C_ * sizeof(float); }
    /// @}

    tensor weight, bias;                ///< gamma and beta, [C] each
    tensor running_mean, running_var;   ///< buffers, [C] each
    [[no_unique_address]] training_only<Policy, tensor> weight_grad{}, bias_grad{};  ///< training only

private:
    std::size_t C_;
    float momentum_, eps_;
    // Training only: the mode, and what backward needs.
    [[no_unique_address]] training_only<Policy, bool> training_{}, used_batch_stats_{};
    [[no_unique_address]] training_only<Policy, shape_t> shape_{};
    [[no_unique_address]] training_only<Policy, std::vector<float>> x_hat_{}, inv_std_{};
};

/// @brief Batch norm that trains (frozen: basic_batch_norm2d<frozen<fp32>>).
using batch_norm2d = basic_batch_norm2d<>;

}  // namespace tern
