#pragma once
/// @file continual.hpp
/// @brief Continual quantization-aware training (arXiv 2502.11895): train in 16 bits, switch the same
/// model to a ternary policy, keep or reset the optimizer state, phase the quantization in.
///
/// @code
/// auto pre = make_model<tern::fp16>();            // the 16-bit phase
/// tern::adamw opt(pre.parameters());
/// ... train until step S ...
/// auto post = tern::convert<tern::absmean_ternary>(pre);   // parameters copied exactly
/// tern::switch_optimizer(opt, post.parameters(), schedule.reset_optimizer);
/// ... each step: post.set_quant_strength(schedule.lambda(step));
///                opt.set_learning_rate(base_lr(step) * schedule.lr_factor(step));
/// @endcode

#include <cmath>
#include <cstddef>

#include "optim/optimizer.hpp"

namespace tern {

/// @brief lambda = tanh(2.5 t / T) for t < T, then exactly 1; T = 0 is a hard switch (1 at once).
inline float phase_in_lambda(std::size_t t, std::size_t T) {
    if (T == 0 || t >= T) return 1.0f;
    return float(std::tanh(2.5 * double(t) / double(T)));
}

/// @brief Where the switch happens and how quantization and the learning rate resume after it.
struct continual_schedule {
    std::size_t switch_at = 0;     ///< step S of the switch
    std::size_t phase_in = 0;      ///< T: steps of the tanh phase-in (0 = hard switch)
    bool reset_optimizer = false;  ///< reset Adam's moments at the switch (otherwise kept)
    std::size_t rewarm = 0;        ///< W: with a reset optimizer, re-warm the learning rate over W steps

    /// Whether @p step runs in the quantized policy.
    bool switched(std::size_t step) const { return step >= switch_at; }

    /// Quantization strength at @p step (1 before the switch is never used: the fp phase has none).
    float lambda(std::size_t step) const { return switched(step) ? phase_in_lambda(step - switch_at, phase_in) : 1.0f; }

    /// Factor on the schedule's learning rate: linear 0 -> 1 over W steps after a reset switch.
    float lr_factor(std::size_t step) const {
        if (!reset_optimizer || rewarm == 0 || !switched(step)) return 1.0f;
        const std::size_t t = step - switch_at;
        return t >= rewarm ? 1.0f : float(t) / float(rewarm);
    }
};

/// @brief Points @p optimizer at the converted model's parameters; keeps the moments and step
/// count (retain) or resets them (@p reset).
/// @throws tern::error when the new parameters do not match the old ones in name and shape.
inline void switch_optimizer(detail::optimizer_base& optimizer, parameter_list new_params, bool reset) {
    optimizer.rebind(std::move(new_params));
    if (reset) optimizer.reset_state();
}

}  // namespace tern
