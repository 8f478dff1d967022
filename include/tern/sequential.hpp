#pragma once
/// @file sequential.hpp
/// @brief tern::sequential: a model as a flat, compile-time list of layers.
///
/// A model definition is written once as a template over the policy:
/// @code
/// template <class P> auto make_mlp() {
///     return tern::sequential{tern::linear<P>(784, 256), tern::relu{}, tern::linear<P>(256, 10)};
/// }
/// @endcode
/// and tern::convert<Q>(model) turns a trained model into the same model in policy Q.

#include <cstddef>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "layers/layer.hpp"
#include "parameter.hpp"
#include "tensor.hpp"

namespace tern {

/// @brief A flat list of layers applied in order; itself a layer.
template <class... Layers>
class sequential {
    static_assert(sizeof...(Layers) > 0, "tern::sequential: a model needs at least one layer");
    static_assert((forward_layer<Layers> && ...),
                  "tern::sequential: every element must be a layer (forward, backward, describe)");

public:
    template <class T>
    using transform = sequential<transform_t<Layers, T>...>;

    explicit sequential(Layers... layers) : layers_(std::move(layers)...) {}

    /// Converts every layer of a model of the same architecture in another policy.
    template <class... Others>
        requires(sizeof...(Others) == sizeof...(Layers) && !std::is_same_v<sequential<Others...>, sequential>)
    explicit sequential(const sequential<Others...>& other)
        : sequential(other, std::index_sequence_for<Layers...>{}) {}

    static constexpr std::size_t size() { return sizeof...(Layers); }

    tensor forward(const tensor& x) {
        return std::apply([&](auto&... l) { return forward_all(x, l...); }, layers_);
    }

    tensor backward(const tensor& grad_output) {
        return backward_from<sizeof...(Layers)>(grad_output);
    }

    /// backward without the gradients nobody reads (see tern::backward_parameters): layers before
    /// the first layer with parameters get no gradient at all, and that layer computes only its
    /// parameters' gradients.
    void backward_parameters(const tensor& grad_output) { backward_parameters_from<sizeof...(Layers)>(grad_output); }

    /// Named references to every parameter and buffer ("<index>.<name>").
    parameter_list parameters() {
        parameter_list out;
        collect_parameters(out, "");
        return out;
    }

    void collect_parameters(parameter_list& out, const std::string& prefix) {
        for_each_indexed([&](auto& l, std::size_t i) {
            detail::collect_parameters_of(l, out, prefix + std::to_string(i) + ".");
        });
    }

    /// Training mode (dropout active, batch norm updates statistics) or evaluation mode.
    void set_training(bool training) {
        training_ = training;
        for_each_indexed([&](auto& l, std::size_t) { detail::set_training_of(l, training); });
    }
    /// The mode last set with set_training (true for a new model; a converted model keeps its source's).
    bool training() const { return training_; }

    /// The quantization strength lambda in [0, 1] of every quantized layer.
    void set_quant_strength(float lambda) {
        for_each_indexed([&](auto& l, std::size_t) { detail::set_quant_strength_of(l, lambda); });
    }

    /// Names of the quantization policies used by the layers, in order of first use.
    void collect_policies(std::vector<std::string>& out) const {
        std::apply([&](const auto&... l) { (detail::collect_policies_of(l, out), ...); }, layers_);
    }

    void zero_grad() { zero_gradients(parameters()); }

    std::string describe() const {
        std::string s = "sequential(";
        std::size_t i = 0;
        std::apply([&](const auto&... l) { ((s += (i++ ? ", " : "") + l.describe()), ...); }, layers_);
        return s + ")";
    }

    template <std::size_t I>
    auto& layer() { return std::get<I>(layers_); }
    template <std::size_t I>
    const auto& layer() const { return std::get<I>(layers_); }

private:
    template <class... Others, std::size_t... I>
    sequential(const sequential<Others...>& other, std::index_sequence<I...>)
        : layers_(Layers(other.template layer<I>())...), training_(other.training()) {}

    template <class First, class... Rest>
    static tensor forward_all(const tensor& x, First& first, Rest&... rest) {
        if constexpr (sizeof...(Rest) == 0) return first.forward(x);
        else return forward_all(first.forward(x), rest...);
    }

    template <std::size_t I>
    tensor backward_from(const tensor& g) {
        if constexpr (I == 1) return std::get<0>(layers_).backward(g);
        else return backward_from<I - 1>(std::get<I - 1>(layers_).backward(g));
    }

    /// Whether any of the first @p I layers can hold parameters.
    template <std::size_t I>
    static constexpr bool parameters_before() {
        return []<std::size_t... J>(std::index_sequence<J...>) {
            return (detail::has_parameters<std::tuple_element_t<J, std::tuple<Layers...>>> || ...);
        }(std::make_index_sequence<I>{});
    }

    template <std::size_t I>
    void backward_parameters_from(const tensor& g) {
        auto& l = std::get<I - 1>(layers_);
        if constexpr (I == 1 || !parameters_before<I - 1>()) detail::backward_parameters_of(l, g);
        else backward_parameters_from<I - 1>(l.backward(g));
    }

    template <class Fn>
    void for_each_indexed(Fn&& fn) {
        std::size_t i = 0;
        std::apply([&](auto&... l) { (fn(l, i++), ...); }, layers_);
    }

    std::tuple<Layers...> layers_;
    bool training_ = true;
};

/// @brief The policy of a model: its layers' policy name ("absmean"), names joined by '+' when
/// layers differ ("fp32+absmean"), or "none" for a model without policy layers.
template <class Model>
std::string policy_name(const Model& model) {
    std::vector<std::string> names;
    detail::collect_policies_of(model, names);
    if (names.empty()) return "none";
    std::string s = names[0];
    for (std::size_t i = 1; i < names.size(); ++i) s += "+" + names[i];
    return s;
}

/// @brief The same model in policy Q, every parameter copied exactly (continual QAT conversion).
template <class Q, class Model>
rebind_t<Model, Q> convert(const Model& model) {
    return rebind_t<Model, Q>(model);
}

namespace detail {
/// Whether L is a tern::sequential.
template <class L>
struct is_sequential : std::false_type {};
template <class... Ls>
struct is_sequential<sequential<Ls...>> : std::true_type {};
}  // namespace detail

}  // namespace tern
