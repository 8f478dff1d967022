#pragma once
/// @file layers/layer.hpp
/// @brief The layer protocol every tern layer follows, and helpers to visit optional parts.
///
/// A layer is a class with
///   - `tensor forward(const tensor& x)`: computes the output and keeps what backward needs;
///   - `tensor backward(const tensor& grad_output)`: accumulates parameter gradients and returns
///     the gradient with respect to the input of the last forward call;
///   - `std::string describe() const`: a one-line description used in checkpoints.
/// and either `void collect_parameters(parameter_list&, const std::string& prefix)` or
/// `static constexpr bool parameter_free = true` (checked at compile time, so a misspelt member
/// cannot leave a layer silently untrained). Optional members, found with `if constexpr (requires ...)`:
///   - `void set_training(bool)` (dropout, batch norm);
///   - `void set_quant_strength(float)` (quantized layers: the lambda of the spec);
///   - `void backward_parameters(const tensor& grad_output)`: backward without the input gradient,
///     for a layer whose input gradient nobody reads (the first layer with parameters of a model);
///   - `using policy = ...` (layers with a quantization policy);
///   - `template <class T> using transform = ...`: the same layer with policy transform T applied
///     (T::apply<P> is the new policy of a layer in policy P), with a converting constructor from
///     this layer. tern::convert<Q> (every layer to Q) and tern::freeze (every layer to frozen<P>)
///     are both such transforms, so neither restates a model's architecture.
///
/// A forward-only layer (the frozen instantiation of a layer template, tern::frozen<P>) has
/// forward and describe but no backward: see `forward_layer`.

#include <algorithm>
#include <concepts>
#include <string>
#include <vector>

#include "../parameter.hpp"
#include "../policy.hpp"
#include "../tensor.hpp"

namespace tern {

/// @brief What every layer provides, frozen (forward-only) layers included.
template <class L>
concept forward_layer = requires(L l, const L cl, const tensor& x) {
    { l.forward(x) } -> std::convertible_to<tensor>;
    { cl.describe() } -> std::convertible_to<std::string>;
};

/// @brief A trainable layer: a forward_layer with backward.
template <class L>
concept layer = forward_layer<L> && requires(L l, const tensor& x) {
    { l.backward(x) } -> std::convertible_to<tensor>;
};

/// @brief Policy transform "every layer to policy Q" (tern::convert). Pinned layers keep theirs.
template <class Q>
struct to_policy {
    template <class P>
    using apply = Q;
    static constexpr bool freezing = false;
};

/// @brief Policy transform "every layer to its frozen form" (tern::freeze), pinned layers too.
struct to_frozen {
    template <class P>
    using apply = frozen_t<P>;
    static constexpr bool freezing = true;
};

namespace detail {

/// A layer that says it holds no parameters (`static constexpr bool parameter_free = true`).
template <class L>
concept parameter_free_layer = requires {
    requires L::parameter_free;
};

template <class L>
void collect_parameters_of(L& l, parameter_list& out, const std::string& prefix) {
    // Every trainable layer either lists its parameters or declares that it has none, so a
    // misspelt collect_parameters is a compile error instead of a layer that silently trains nothing.
    if constexpr (requires { l.collect_parameters(out, prefix); }) {
        l.collect_parameters(out, prefix);
    } else {
        static_assert(parameter_free_layer<L>,
                      "tern: a layer must list its parameters (collect_parameters(parameter_list&, const "
                      "std::string&)) or declare `static constexpr bool parameter_free = true`");
    }
}

template <class L>
void set_training_of(L& l, bool training) {
    if constexpr (requires { l.set_training(training); }) l.set_training(training);
}

/// Whether @p l is in training mode: l.training() where the layer or model reports it, else true
/// (the mode every layer starts in).
template <class L>
bool training_of(const L& l) {
    if constexpr (requires { { l.training() } -> std::convertible_to<bool>; }) return l.training();
    else return true;
}

/// Layers with parameters (or that may hold some: every layer that can list them).
template <class L>
concept has_parameters = requires(L l, parameter_list& out, const std::string& prefix) {
    l.collect_parameters(out, prefix);
};

/// Parameter gradients of @p l from @p g, skipping the input gradient where the layer can.
template <class L>
void backward_parameters_of(L& l, const tensor& g) {
    if constexpr (requires { l.backward_parameters(g); }) l.backward_parameters(g);
    else (void)l.backward(g);
}

template <class L>
void set_quant_strength_of(L& l, float lambda) {
    if constexpr (requires { l.set_quant_strength(lambda); }) l.set_quant_strength(lambda);
}

/// Adds the policy names of @p l (and of the layers inside it) to @p out, once each.
template <class L>
void collect_policies_of(const L& l, std::vector<std::string>& out) {
    if constexpr (requires { l.collect_policies(out); }) {
        l.collect_policies(out);
    } else if constexpr (requires { typename L::policy; }) {
        const std::string name(L::policy::name);
        if (std::find(out.begin(), out.end(), name) == out.end()) out.push_back(name);
    }
}

/// Layer L under policy transform T, or L itself for a layer without a policy.
template <class L, class T>
struct transform_layer {
    using type = L;
};
template <class L, class T>
    requires requires { typename L::template transform<T>; }
struct transform_layer<L, T> {
    using type = typename L::template transform<T>;
};

}  // namespace detail

/// @brief The type of layer L under policy transform T (L itself for layers without a policy).
template <class L, class T>
using transform_t = typename detail::transform_layer<L, T>::type;

/// @brief The type of layer L in policy Q (L itself for layers without a policy).
template <class L, class Q>
using rebind_t = transform_t<L, to_policy<Q>>;

/// @brief The forward-only type tern::freeze makes of layer L.
template <class L>
using frozen_layer_t = transform_t<L, to_frozen>;

/// @brief The training step's backward pass: accumulates the parameter gradients of @p model from
/// the loss gradient @p grad_output without computing the gradient with respect to the model's
/// input, which a training loop discards (a sequential model then also skips the input gradients
/// of the layers before its first layer with parameters, and that layer's own: for an MLP on
/// images, the 784-wide product of the first linear layer). Falls back to model.backward.
template <class Model>
void backward_parameters(Model& model, const tensor& grad_output) {
    detail::backward_parameters_of(model, grad_output);
}

}  // namespace tern
