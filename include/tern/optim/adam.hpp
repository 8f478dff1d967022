#pragma once
/// @file optim/adam.hpp
/// @brief Adam (L2 weight decay added to the gradient) and AdamW (decoupled weight decay).

#include <cmath>
#include <cstddef>

#include "../kernels/adam_update.hpp"
#include "optimizer.hpp"

namespace tern {


/// @brief Adam's hyper-parameters.
struct adam_options {
    float lr = 1e-3f;
    float beta1 = 0.9f;
    float beta2 = 0.999f;
    float eps = 1e-8f;
    float weight_decay = 0.0f;  ///< applies only to parameters marked `decay` (not biases, not norms)
};

/// @brief Adam; with `decoupled` (see tern::adamw) the weight decay is applied to the weight directly.
class adam : public detail::optimizer_base {
public:
    explicit adam(parameter_list params, adam_options options = {}, bool decoupled = false)
        : optimizer_base(std::move(params), options.lr, 2, decoupled ? "adamw" : "adam"), opt_(options),
          decoupled_(decoupled) {
        detail::require(options.beta1 >= 0 && options.beta1 < 1 && options.beta2 >= 0 && options.beta2 < 1,
                        kind_, ": expected betas in [0, 1), got ", options.beta1, ", ", options.beta2);
        detail::require(options.eps > 0, kind_, ": expected eps > 0, got ", options.eps);
        detail::require(options.weight_decay >= 0, kind_, ": expected weight_decay >= 0, got ", options.weight_decay);
    }

    /// One update of every trainable parameter from its gradient.
    void step() {
        ++step_;
        const float bc1 = 1.0f - std::pow(opt_.beta1, float(step_));
        const float bc2 = 1.0f - std::pow(opt_.beta2, float(step_));
        const float step_size = lr_ / bc1;
        const float inv_sqrt_bc2 = 1.0f / std::sqrt(bc2);
        for (std::size_t i = 0; i < trainable_.size(); ++i) {
            const parameter& p = trainable_parameter(i);
            float* w = p.value->data();
            const float* g = p.grad->data();
            float* m = state_[i][0].data();
            float* v = state_[i][1].data();
            const float wd = p.decay ? opt_.weight_decay : 0.0f;
            const kernels::adam_coefficients c{opt_.beta1, opt_.beta2,   opt_.eps, step_size, inv_sqrt_bc2,
                                               decoupled_ ? 1.0f - lr_ * wd : 1.0f, decoupled_ ? 0.0f : wd};
            // One thread: split over the pool, the update ran faster but left half of the weights
            // in the other core's cache, and the next step's serial weight quantization then
            // fetched them from there (2-thread absmean MLP training: 90k instead of 122k samples/s).
            kernels::adam_update(w, g, m, v, p.value->size(), c);
        }
    }

    const adam_options& options() const { return opt_; }

private:
    adam_options opt_;
    bool decoupled_;
};

/// @brief AdamW: Adam with decoupled weight decay (w -= lr * wd * w), off for biases and norms.
class adamw : public adam {
public:
    explicit adamw(parameter_list params, adam_options options = {.weight_decay = 0.01f})
        : adam(std::move(params), options, true) {}
};

}  // namespace tern
