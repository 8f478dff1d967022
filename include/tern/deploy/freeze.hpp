#pragma once
/// @file deploy/freeze.hpp
/// @brief tern::freeze: a trained model becomes the same model in its frozen policies.
///
/// Freezing is a policy transform, like tern::convert: every layer with a policy P becomes the
/// same layer template in tern::frozen<P> (pinned layers too, in their own policy), built by the
/// layer's converting constructor. A ternary projection then holds its codes at lambda 1 packed
/// at 2 bits per weight with its scale, and runs the integer kernels on int8 activations; a
/// full-precision one keeps its weight. The result is a compile-time model with no run-time
/// dispatch inside it and no training state in its policy layers (`frozen_layer_t<Model>`).
/// Layers without a quantization policy of their own (activations, pooling, flatten, norms,
/// embeddings, batch norm) are templates over fp32 or frozen<fp32> (`relu` is `basic_relu<fp32>`):
/// frozen, they keep nothing for backward either. Dropout becomes the identity.
///
/// A frozen model converts to a run-time tern::inference_model (type erasure over the same
/// layers), which is what files store and what `tern::load_packed_model` rebuilds.
///
/// ## Adding a layer kind
/// A layer template over a policy declares `template <class T> using transform = ...` and a
/// converting constructor; its frozen instantiation gives `kind()`, `config()`, `save()` and a
/// static `load()`. One registration line makes files load it: see tern::register_layer_kinds
/// (deploy/layer_registry.hpp) and docs/layers.md.

#include <type_traits>
#include <utility>

#include "../layers/activations.hpp"
#include "../layers/dropout.hpp"
#include "../layers/flatten.hpp"
#include "../layers/frozen_projection.hpp"
#include "../layers/linear.hpp"
#include "../layers/norm.hpp"
#include "../layers/pinned.hpp"
#include "../layers/residual.hpp"
#include "../sequential.hpp"
#include "inference_model.hpp"

namespace tern {

/// @brief The frozen form of a trained model: the same layer templates in the frozen policies,
/// in evaluation mode. The trained model is not modified.
/// @tparam Model a compile-time model (tern::sequential, a layer, ...).
/// A ternary layer with activation bits other than 8 is a compile-time error (the packed kernels
/// run int8 activations).
template <class Model>
frozen_layer_t<Model> freeze(const Model& model) {
    frozen_layer_t<Model> out(model);
    detail::set_training_of(out, false);
    return out;
}

}  // namespace tern
