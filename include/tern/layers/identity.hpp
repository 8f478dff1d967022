#pragma once
/// @file layers/identity.hpp
/// @brief tern::identity: y = x (the default shortcut of a residual block, and the frozen form of
/// layers that do nothing at inference, such as dropout).

#include <string>

#include "../tensor.hpp"

namespace tern {

/// @brief The identity layer.
struct identity {
    static constexpr bool parameter_free = true;
    identity() = default;
    /// The frozen form of a layer that is the identity at inference (it declares
    /// `static constexpr bool identity_when_frozen = true`).
    template <class L>
        requires L::identity_when_frozen
    explicit identity(const L&) {}

    tensor forward(const tensor& x) { return x; }
    tensor backward(const tensor& grad_output) { return grad_output; }
    std::string describe() const { return "identity"; }
};

}  // namespace tern
