#pragma once
/// @file optim/schedule.hpp
/// @brief Learning-rate schedules: callables mapping a step (0-based) to a learning rate.

#include <algorithm>
#include <cmath>
#include <cstddef>

#include "../error.hpp"

namespace tern {

/// @brief The same rate at every step.
struct constant_lr {
    float lr;
    float operator()(std::size_t) const { return lr; }
};

/// @brief Linear warm-up from 0 over @p warmup steps, then cosine decay to @p min_lr at @p total steps.
struct warmup_cosine {
    float lr;
    std::size_t warmup;
    std::size_t total;
    float min_lr = 0.0f;

    warmup_cosine(float lr_, std::size_t warmup_, std::size_t total_, float min_lr_ = 0.0f)
        : lr(lr_), warmup(warmup_), total(total_), min_lr(min_lr_) {
        detail::require(warmup <= total, "warmup_cosine: expected warm-up steps (", warmup,
                        ") not to exceed the total (", total, ")");
    }

    float operator()(std::size_t step) const {
        if (step < warmup) return lr * float(step + 1) / float(warmup);
        if (step >= total) return min_lr;
        const double progress = double(step - warmup) / double(std::max<std::size_t>(1, total - warmup));
        return min_lr + float(0.5 * (1.0 + std::cos(3.14159265358979323846 * progress))) * (lr - min_lr);
    }
};

/// @brief lr * gamma^(step / step_size).
struct step_decay {
    float lr;
    std::size_t step_size;
    float gamma = 0.1f;

    step_decay(float lr_, std::size_t step_size_, float gamma_ = 0.1f) : lr(lr_), step_size(step_size_), gamma(gamma_) {
        detail::require(step_size > 0, "step_decay: expected step_size > 0");
    }
    float operator()(std::size_t step) const { return lr * std::pow(gamma, float(step / step_size)); }
};

}  // namespace tern
