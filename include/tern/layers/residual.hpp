#pragma once
/// @file layers/residual.hpp
/// @brief Residual connections: y = body(x) + shortcut(x), with the identity as the default shortcut.

#include <string>
#include <utility>

#include "identity.hpp"
#include "layer.hpp"

namespace tern {

/// @brief y = body(x) + shortcut(x). Body and Shortcut are layers (often a tern::sequential).
///
/// Parameters are named "<prefix>body.<...>" and "<prefix>shortcut.<...>".
/// @throws tern::error when body and shortcut produce different shapes.
template <class Body, class Shortcut = identity>
class residual {
    static_assert(forward_layer<Body> && forward_layer<Shortcut>, "tern::residual: Body and Shortcut must be layers");

public:
    template <class T>
    using transform = residual<transform_t<Body, T>, transform_t<Shortcut, T>>;

    explicit residual(Body body, Shortcut shortcut = {}) : body_(std::move(body)), shortcut_(std::move(shortcut)) {}

    template <class B2, class S2>
    explicit residual(const residual<B2, S2>& other)
        : body_(other.body()), shortcut_(other.shortcut()), training_(other.training()) {}

    tensor forward(const tensor& x) {
        tensor y = body_.forward(x);
        const tensor s = shortcut_.forward(x);
        detail::require(y.shape() == s.shape(), "residual: the body gives shape ", detail::shape_string(y.shape()),
                        " but the shortcut gives ", detail::shape_string(s.shape()));
        float* out = y.data();
        const float* add = s.data();
        for (std::size_t i = 0, n = y.size(); i < n; ++i) out[i] += add[i];
        return y;
    }

    tensor backward(const tensor& grad_output) {
        tensor dx = body_.backward(grad_output);
        const tensor ds = shortcut_.backward(grad_output);
        float* out = dx.data();
        const float* add = ds.data();
        for (std::size_t i = 0, n = dx.size(); i < n; ++i) out[i] += add[i];
        return dx;
    }

    void collect_parameters(parameter_list& out, const std::string& prefix) {
        detail::collect_parameters_of(body_, out, prefix + "body.");
        detail::collect_parameters_of(shortcut_, out, prefix + "shortcut.");
    }
    void set_training(bool training) {
        training_ = training;
        detail::set_training_of(body_, training);
        detail::set_training_of(shortcut_, training);
    }
    /// The mode last set with set_training (true for a new block).
    bool training() const { return training_; }
    void set_quant_strength(float lambda) {
        detail::set_quant_strength_of(body_, lambda);
        detail::set_quant_strength_of(shortcut_, lambda);
    }
    void collect_policies(std::vector<std::string>& out) const {
        detail::collect_policies_of(body_, out);
        detail::collect_policies_of(shortcut_, out);
    }

    std::string describe() const {
        return "residual(" + body_.describe() + (identity_shortcut() ? "" : ", shortcut=" + shortcut_.describe()) + ")";
    }
    /// Whether the shortcut is y = x (tern::identity, or a run-time shortcut with no layers).
    bool identity_shortcut() const {
        if constexpr (std::is_same_v<Shortcut, identity>) return true;
        else if constexpr (requires { shortcut_.is_identity(); }) return shortcut_.is_identity();
        else return false;
    }

    Body& body() { return body_; }
    const Body& body() const { return body_; }
    Shortcut& shortcut() { return shortcut_; }
    const Shortcut& shortcut() const { return shortcut_; }

private:
    Body body_;
    Shortcut shortcut_;
    bool training_ = true;
};

namespace detail {
/// Whether L is a tern::residual.
template <class L>
struct is_residual : std::false_type {};
template <class B, class S>
struct is_residual<residual<B, S>> : std::true_type {};
}  // namespace detail

}  // namespace tern
