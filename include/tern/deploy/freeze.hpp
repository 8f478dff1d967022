#pragma once
/// @file deploy/freeze.hpp
/// @brief tern::freeze: a trained compile-time model becomes a run-time inference model.
///
/// Quantized layers (linear in a ternary policy) become frozen_linear with packed 2-bit weights and
/// their per-tensor scale, computed once from the shadow weights at lambda = 1. Full-precision
/// layers, pinned layers, norms and activations keep their trained values; dropout and identity
/// disappear (they are the identity at inference).
///
/// ## Extending
/// Each training layer type L maps to inference layers through `tern::freezer<L>`, a struct with
/// @code
/// static void append(const L& layer, tern::layer_list& out);   // push 0, 1 or more layers
/// @endcode
/// A new layer kind (conv2d, embedding, attention, ...) adds its own specialization next to its
/// inference layer, without touching this file:
/// @code
/// template <class P, int B> struct tern::freezer<tern::conv2d<P, B>> {
///     static void append(const tern::conv2d<P, B>& l, tern::layer_list& out) { out.push_back(...); }
/// };
/// @endcode
/// and registers a loader for its kind name (tern::register_layer_kind) so files load it.

#include <cctype>
#include <cstdint>
#include <memory>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "../layers/activations.hpp"
#include "../layers/dropout.hpp"
#include "../layers/flatten.hpp"
#include "../layers/linear.hpp"
#include "../layers/norm.hpp"
#include "../layers/pinned.hpp"
#include "../layers/residual.hpp"
#include "../quantize.hpp"
#include "../sequential.hpp"
#include "frozen_linear.hpp"
#include "inference_model.hpp"

namespace tern {

namespace detail {
template <class>
inline constexpr bool no_freezer = false;
}  // namespace detail

/// @brief How a training layer of type @p L becomes inference layers (specialize per layer type).
/// @tparam L the training layer type.
template <class L>
struct freezer {
    static_assert(detail::no_freezer<L>,
                  "tern::freeze: this layer type has no tern::freezer<L> specialization (see deploy/freeze.hpp)");
    static void append(const L&, layer_list&) {}
};

/// @brief linear: packed frozen_linear in ternary policies, frozen_dense otherwise.
template <class P, int B>
struct freezer<linear<P, B>> {
    static void append(const linear<P, B>& l, layer_list& out) {
        const auto& core = l.core();
        const std::size_t N = core.out_features(), K = core.in_features();
        const float* bias = core.has_bias() ? core.bias.data() : nullptr;
        if constexpr (P::ternary) {
            detail::require(quantizes_activations<P, B>, "freeze: ", l.describe(),
                            " keeps float activations; the packed kernels need 8-bit activations");
            std::vector<std::int8_t> codes(N * K);
            // lambda = 1: the fully quantized forward the frozen layer must reproduce.
            const float s_w = ternarize_weights<P>(core.weight.data(), N * K, 1.0f, nullptr, codes.data());
            out.push_back(std::make_unique<frozen_linear>(codes.data(), K, N, s_w, bias, std::string(P::name), B));
        } else {
            tensor w = core.weight;
            tensor b = core.has_bias() ? tensor(core.bias) : tensor::from_shape({0});
            out.push_back(std::make_unique<frozen_dense>(std::move(w), std::move(b), P::normalize_input,
                                                         P::half_precision, std::string(P::name)));
        }
    }
};

/// @brief pinned<L> freezes as L (its policy never changed).
template <class L>
struct freezer<pinned<L>> {
    static void append(const pinned<L>& l, layer_list& out) { freezer<L>::append(static_cast<const L&>(l), out); }
};

template <>
struct freezer<relu> {
    static void append(const relu&, layer_list& out) {
        out.push_back(std::make_unique<frozen_activation>(frozen_activation::function::relu));
    }
};
template <>
struct freezer<gelu> {
    static void append(const gelu&, layer_list& out) {
        out.push_back(std::make_unique<frozen_activation>(frozen_activation::function::gelu));
    }
};
template <>
struct freezer<silu> {
    static void append(const silu&, layer_list& out) {
        out.push_back(std::make_unique<frozen_activation>(frozen_activation::function::silu));
    }
};
template <>
struct freezer<flatten> {
    static void append(const flatten&, layer_list& out) { out.push_back(std::make_unique<frozen_flatten>()); }
};
/// @brief dropout is the identity at inference: nothing to add.
template <>
struct freezer<dropout> {
    static void append(const dropout&, layer_list&) {}
};
template <>
struct freezer<identity> {
    static void append(const identity&, layer_list&) {}
};

namespace detail {

/// Feature count, eps, gain and shift of a norm layer. Uses features()/eps() accessors when the
/// layer has them; otherwise the gain's size (or the count in describe()) and the default eps.
template <class Norm>
std::unique_ptr<inference_layer> freeze_norm(const Norm& l, bool rms, float default_eps) {
    parameter_list params;
    // collect_parameters only takes pointers (it is non-const for the optimizer's sake).
    const_cast<Norm&>(l).collect_parameters(params, "");
    tensor gain = tensor::from_shape({0}), shift = tensor::from_shape({0});
    for (const auto& p : params) {
        if (p.name == "weight") gain = *p.value;
        else if (p.name == "bias") shift = *p.value;
    }
    std::size_t features = 0;
    if constexpr (requires { l.features(); }) {
        features = l.features();
    } else if (gain.dimension() == 1 && gain.size() > 0) {
        features = gain.size();
    } else {  // "layer_norm(256)" / "rms_norm(256,affine)"
        const std::string d = l.describe();
        for (std::size_t i = d.find('(') + 1; i < d.size() && std::isdigit(static_cast<unsigned char>(d[i])); ++i)
            features = features * 10 + std::size_t(d[i] - '0');
    }
    float eps = default_eps;
    if constexpr (requires { l.eps(); }) eps = l.eps();
    return std::make_unique<frozen_norm>(rms, features, eps, std::move(gain), std::move(shift));
}

}  // namespace detail

/// @brief layer_norm (eps: the layer's eps() when it has the accessor, else the default 1e-5).
template <>
struct freezer<layer_norm> {
    static void append(const layer_norm& l, layer_list& out) { out.push_back(detail::freeze_norm(l, false, 1e-5f)); }
};
/// @brief rms_norm (eps: the layer's eps() when it has the accessor, else the default 1e-6).
template <>
struct freezer<rms_norm> {
    static void append(const rms_norm& l, layer_list& out) { out.push_back(detail::freeze_norm(l, true, 1e-6f)); }
};

/// @brief residual: one frozen_residual holding both branches.
template <class Body, class Shortcut>
struct freezer<residual<Body, Shortcut>> {
    static void append(const residual<Body, Shortcut>& l, layer_list& out) {
        layer_list body, shortcut;
        freezer<Body>::append(l.body(), body);
        freezer<Shortcut>::append(l.shortcut(), shortcut);
        out.push_back(std::make_unique<frozen_residual>(std::move(body), std::move(shortcut)));
    }
};

/// @brief sequential: its layers in order (nested sequentials are flattened).
template <class... Layers>
struct freezer<sequential<Layers...>> {
    static void append(const sequential<Layers...>& model, layer_list& out) {
        append_from(model, out, std::index_sequence_for<Layers...>{});
    }

private:
    template <std::size_t... I>
    static void append_from(const sequential<Layers...>& model, layer_list& out, std::index_sequence<I...>) {
        (freezer<std::remove_cvref_t<decltype(model.template layer<I>())>>::append(model.template layer<I>(), out), ...);
    }
};

/// @brief The inference model of a trained model: packed ternary layers at lambda = 1, everything
/// else as trained. The trained model is not modified.
/// @throws tern::error for a quantized layer the packed kernels cannot run (activation bits other than 8).
template <class Model>
inference_model freeze(const Model& model) {
    layer_list layers;
    freezer<Model>::append(model, layers);
    inference_model out(std::move(layers), policy_name(model));
    out.set_source_description(model.describe());
    return out;
}

}  // namespace tern
