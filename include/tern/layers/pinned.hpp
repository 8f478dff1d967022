#pragma once
/// @file layers/pinned.hpp
/// @brief pinned<L>: a layer that keeps its policy when the model around it is converted.
///
/// Papers keep some layers in full precision (the first convolution, the LM head); writing
/// `tern::pinned<tern::linear<tern::fp32>>(...)` in the model definition keeps such a layer as it
/// is through tern::convert<Q>, while every other layer changes policy.

#include "layer.hpp"

namespace tern {

/// @brief Layer L, exempt from policy conversion (rebinding gives pinned<L> itself).
template <class L>
struct pinned : L {
    static_assert(layer<L>, "tern::pinned: L must be a layer");
    using L::L;
    explicit pinned(const L& l) : L(l) {}
    template <class Q>
    using rebind = pinned<L>;
};

}  // namespace tern
