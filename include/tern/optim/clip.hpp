#pragma once
/// @file optim/clip.hpp
/// @brief Gradient clipping by global L2 norm.

#include <cmath>

#include "../parameter.hpp"

namespace tern {

/// @brief Scales all gradients so their global L2 norm is at most @p max_norm; returns the norm before.
/// @throws tern::error if the norm is not finite (a diverged step must not be applied silently).
inline float clip_grad_norm(const parameter_list& params, float max_norm) {
    detail::require(max_norm > 0, "clip_grad_norm: expected max_norm > 0, got ", max_norm);
    double sq = 0;
    for (const auto& p : params)
        if (p.grad)
            for (float g : *p.grad) sq += double(g) * g;
    const float norm = float(std::sqrt(sq));
    detail::require(std::isfinite(norm), "clip_grad_norm: the gradient norm is not finite (", norm, ")");
    if (norm > max_norm) {
        const float scale = max_norm / (norm + 1e-6f);
        for (const auto& p : params)
            if (p.grad)
                for (auto& g : *p.grad) g *= scale;
    }
    return norm;
}

}  // namespace tern
