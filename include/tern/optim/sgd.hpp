#pragma once
/// @file optim/sgd.hpp
/// @brief Stochastic gradient descent with momentum (optionally Nesterov) and L2 weight decay.

#include "optimizer.hpp"

namespace tern {

/// @brief SGD's hyper-parameters.
struct sgd_options {
    float lr = 0.01f;
    float momentum = 0.0f;
    float weight_decay = 0.0f;  ///< L2, only on parameters marked `decay`
    bool nesterov = false;
};

/// @brief v = momentum * v + g; w -= lr * v (or lr * (g + momentum * v) with Nesterov).
class sgd : public detail::optimizer_base {
public:
    explicit sgd(parameter_list params, sgd_options options = {})
        : optimizer_base(std::move(params), options.lr, 1, "sgd"), opt_(options) {
        detail::require(options.momentum >= 0 && options.momentum < 1, "sgd: expected momentum in [0, 1), got ",
                        options.momentum);
        detail::require(options.weight_decay >= 0, "sgd: expected weight_decay >= 0, got ", options.weight_decay);
    }

    void step() {
        ++step_;
        for (std::size_t i = 0; i < trainable_.size(); ++i) {
            const parameter& p = trainable_parameter(i);
            float* w = p.value->data();
            const float* g = p.grad->data();
            float* v = state_[i][0].data();
            const float wd = p.decay ? opt_.weight_decay : 0.0f;
            for (std::size_t k = 0, n = p.value->size(); k < n; ++k) {
                const float gk = g[k] + wd * w[k];
                v[k] = opt_.momentum * v[k] + gk;
                w[k] -= lr_ * (opt_.nesterov ? gk + opt_.momentum * v[k] : v[k]);
            }
        }
    }

private:
    sgd_options opt_;
};

}  // namespace tern
