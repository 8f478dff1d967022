#pragma once
/// @file layers/pinned.hpp
/// @brief pinned<L>: a layer that keeps its policy when the model around it is converted.
///
/// Papers keep some layers in full precision (the first convolution, the LM head); writing
/// `tern::pinned<tern::linear<tern::fp32>>(...)` in the model definition keeps such a layer as it
/// is through tern::convert<Q>, while every other layer changes policy.

#include <type_traits>

#include "layer.hpp"

namespace tern {

/// @brief Layer L, exempt from policy conversion (rebinding gives pinned<L> itself). Freezing is
/// not a conversion: a frozen pinned<L> is the frozen L, still in L's policy.
template <class L>
struct pinned : L {
    static_assert(layer<L>, "tern::pinned: L must be a layer");
    using L::L;
    explicit pinned(const L& l) : L(l) {}
    template <class T>
    using transform = std::conditional_t<T::freezing, transform_t<L, T>, pinned<L>>;
};

}  // namespace tern
