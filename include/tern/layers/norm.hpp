#pragma once
/// @file layers/norm.hpp
/// @brief Normalization over the last axis: layer_norm and rms_norm, each with an optional affine part.
///
/// Norm layers always stay full precision, whatever the model's policy.

#include <cmath>
#include <string>
#include <vector>

#include "../io/layer_io.hpp"
#include "../parameter.hpp"
#include "../policy.hpp"
#include "../quantize.hpp"
#include "../tensor.hpp"

namespace tern {
namespace detail {

/// The optional learnable gain (and shift) of a norm layer; their gradients only while it trains.
template <class Policy>
class norm_affine {
public:
    static constexpr bool trainable = trainable_policy<Policy>;

    norm_affine(std::size_t features, bool affine, bool with_shift)
        : features_(features), affine_(affine), shift_(affine && with_shift) {
        require(features > 0, "norm: expected a positive feature count, got ", features);
        if (affine) {
            gain = tensor(shape_t{features}, 1.0f);
            if constexpr (trainable) gain_grad = zeros({features});
            if (with_shift) {
                shift = tensor(shape_t{features}, 0.0f);
                if constexpr (trainable) shift_grad = zeros({features});
            }
        }
    }
    /// The same gain and shift from another instantiation (freezing drops the gradients).
    template <class Q>
    explicit norm_affine(const norm_affine<Q>& other)
        : gain(other.gain), shift(other.shift), features_(other.features()), affine_(other.affine()),
          shift_(other.has_shift()) {
        if constexpr (trainable) {
            gain_grad = zeros(to_shape(gain.shape()));
            shift_grad = zeros(to_shape(shift.shape()));
        }
    }

    bool affine() const { return affine_; }
    bool has_shift() const { return shift_; }
    std::size_t features() const { return features_; }

    /// y = xn * gain + shift per token, in place.
    void apply(float* y, std::size_t T) const {
        if (!affine()) return;
        const float* g = gain.data();
        const bool has_shift = shift_;
        const float* b = has_shift ? shift.data() : nullptr;
        for (std::size_t t = 0; t < T; ++t)
            for (std::size_t k = 0; k < features_; ++k)
                y[t * features_ + k] = y[t * features_ + k] * g[k] + (has_shift ? b[k] : 0.0f);
    }

    /// Accumulates dgain, dshift and writes dxn = g * gain.
    void backward(const float* g, const float* xn, std::size_t T, float* dxn)
        requires trainable
    {
        if (!affine()) {
            std::copy(g, g + T * features_, dxn);
            return;
        }
        float* dg = gain_grad.data();
        float* db = shift_ ? shift_grad.data() : nullptr;
        const float* gn = gain.data();
        for (std::size_t t = 0; t < T; ++t)
            for (std::size_t k = 0; k < features_; ++k) {
                const std::size_t i = t * features_ + k;
                dg[k] += g[i] * xn[i];
                if (db) db[k] += g[i];
                dxn[i] = g[i] * gn[k];
            }
    }

    void collect(parameter_list& out, const std::string& prefix)
        requires trainable
    {
        if (!affine()) return;
        out.push_back({prefix + "weight", &gain, &gain_grad, false});
        if (shift_) out.push_back({prefix + "bias", &shift, &shift_grad, false});
    }

    /// "weight" (gain) and "bias" (shift) when present.
    void save(layer_writer& w) const {
        if (!affine()) return;
        w.put("weight", gain);
        if (shift_) w.put("bias", shift);
    }
    /// Reads what save() wrote.
    void load(const layer_reader& r) {
        if (!affine()) return;
        gain = r.f32("weight", {features_});
        if (shift_) shift = r.f32("bias", {features_});
    }
    std::size_t parameter_bytes() const { return (affine_ ? features_ : 0) * (shift_ ? 2 : 1) * sizeof(float); }

    tensor gain, shift;
    [[no_unique_address]] training_only<Policy, tensor> gain_grad{}, shift_grad{};

private:
    std::size_t features_;
    bool affine_, shift_;  // explicit: a default xarray is a 0-d scalar of size 1
};

/// What layer_norm and rms_norm share: sizes, the affine part, what backward keeps (training
/// only), and the parameter and file protocol. @p Derived gives normalize, normalize_backward and
/// kind().
template <class Derived, class Policy>
class norm_layer {
    static_assert(fixed_precision_policy<Policy>, "tern norms: Policy must be tern::fp32 or tern::frozen<tern::fp32>");

public:
    static constexpr bool trainable = trainable_policy<Policy>;

    void forward(const tensor& x, tensor& y) {
        const std::size_t T = token_count(x, features_, Derived::kind());
        if constexpr (trainable) {
            shape_like(xn_, x, features_);
            rstd_.resize(T);
            Derived::normalize(x.data(), T, features_, eps_, xn_.data(), rstd_.data());
            y = xn_;
        } else {
            shape_like(y, x, features_);
            scratch_.resize(T);
            Derived::normalize(x.data(), T, features_, eps_, y.data(), scratch_.data());
        }
        affine_.apply(y.data(), T);
    }
    tensor forward(const tensor& x) {
        tensor y;
        forward(x, y);
        return y;
    }

    tensor backward(const tensor& grad_output)
        requires trainable
    {
        require(grad_output.shape() == xn_.shape(), Derived::kind(), ": expected output gradient of shape ",
                shape_string(xn_.shape()), ", got ", shape_string(grad_output.shape()));
        const std::size_t T = rstd_.size();
        tensor dx(to_shape(xn_.shape()));
        affine_.backward(grad_output.data(), xn_.data(), T, dx.data());
        Derived::normalize_backward(dx.data(), xn_.data(), rstd_.data(), T, features_, dx.data());
        return dx;
    }

    void collect_parameters(parameter_list& out, const std::string& prefix)
        requires trainable
    {
        affine_.collect(out, prefix);
    }
    std::size_t features() const { return features_; }
    float eps() const { return eps_; }
    bool affine() const { return affine_.affine(); }
    const norm_affine<Policy>& affine_part() const { return affine_; }
    std::string describe() const {
        return std::string(Derived::kind()) + "(" + std::to_string(features_) + (affine() ? ",affine" : "") + ")";
    }

    /// @name Saving and loading (see io/layer_io.hpp)
    /// @{
    nlohmann::json config() const {
        return {{"kind", Derived::kind()}, {"features", features_}, {"eps", eps_}, {"affine", affine()}};
    }
    void save(layer_writer& w) const { affine_.save(w); }
    /// Reads the gain (and shift) that save() wrote, for a norm inside another layer.
    void load_parameters(const layer_reader& r) { affine_.load(r); }
    static Derived load(const layer_reader& r) {
        const double eps = r.number_field("eps");
        if (!(eps > 0.0 && eps < 1.0)) r.fail("field 'eps': expected a number in (0, 1), found ", eps);
        Derived l(r.size_field("features"), r.bool_field("affine"), float(eps));
        l.load_parameters(r);
        return l;
    }
    feature_info propagate(feature_info in, const std::string& where) const {
        require(in.last == 0 || in.last == features_, where, ": expects ", features_,
                " input features but the previous layers give ", in.last);
        return {features_, in.total};
    }
    std::size_t parameter_bytes() const { return affine_.parameter_bytes(); }
    /// @}

protected:
    norm_layer(std::size_t features, bool affine, float eps, bool with_shift)
        : features_(features), eps_(eps), affine_(features, affine, with_shift) {}
    template <class Other>
    explicit norm_layer(const Other& other)
        : features_(other.features()), eps_(other.eps()), affine_(other.affine_part()) {}

private:
    std::size_t features_;
    float eps_;
    norm_affine<Policy> affine_;
    // What backward needs (training only): the normalized input and 1/std per token.
    [[no_unique_address]] training_only<Policy, tensor> xn_{};
    [[no_unique_address]] training_only<Policy, std::vector<float>> rstd_{};
    // The frozen forward's 1/std per token (nobody reads it afterwards).
    [[no_unique_address]] std::conditional_t<trainable, empty, std::vector<float>> scratch_{};
};

}  // namespace detail

/// @brief LayerNorm over the last axis: (x - mean) / sqrt(var + eps) * gain + shift.
/// @tparam Policy fp32 (trains) or frozen<fp32> (forward only, no state kept for backward).
template <class Policy = fp32>
class basic_layer_norm : public detail::norm_layer<basic_layer_norm<Policy>, Policy> {
    using base = detail::norm_layer<basic_layer_norm<Policy>, Policy>;

public:
    template <class T>
    using transform = basic_layer_norm<fixed_policy_t<T>>;
    explicit basic_layer_norm(std::size_t features, bool affine = true, float eps = 1e-5f)
        : base(features, affine, eps, true) {}
    template <class Q>
    explicit basic_layer_norm(const basic_layer_norm<Q>& other) : base(other) {}
    static constexpr const char* kind() { return "layer_norm"; }

    static void normalize(const float* x, std::size_t T, std::size_t F, float eps, float* xn, float* rstd) {
        normalize_tokens(x, T, F, xn, rstd, eps);
    }
    static void normalize_backward(const float* dxn, const float* xn, const float* rstd, std::size_t T, std::size_t F,
                                   float* dx) {
        normalize_tokens_backward(dxn, xn, rstd, T, F, dx);
    }
};

/// @brief RMSNorm over the last axis: x / sqrt(mean(x^2) + eps) * gain.
/// @tparam Policy fp32 (trains) or frozen<fp32> (forward only, no state kept for backward).
template <class Policy = fp32>
class basic_rms_norm : public detail::norm_layer<basic_rms_norm<Policy>, Policy> {
    using base = detail::norm_layer<basic_rms_norm<Policy>, Policy>;

public:
    template <class T>
    using transform = basic_rms_norm<fixed_policy_t<T>>;
    explicit basic_rms_norm(std::size_t features, bool affine = true, float eps = 1e-6f)
        : base(features, affine, eps, false) {}
    template <class Q>
    explicit basic_rms_norm(const basic_rms_norm<Q>& other) : base(other) {}
    static constexpr const char* kind() { return "rms_norm"; }

    static void normalize(const float* x, std::size_t T, std::size_t F, float eps, float* xn, float* rstd) {
        for (std::size_t t = 0; t < T; ++t) {
            double s2 = 0;
            for (std::size_t k = 0; k < F; ++k) s2 += double(x[t * F + k]) * x[t * F + k];
            const float r = float(1.0 / std::sqrt(s2 / double(F) + double(eps)));
            rstd[t] = r;
            for (std::size_t k = 0; k < F; ++k) xn[t * F + k] = x[t * F + k] * r;
        }
    }
    /// dx = rstd * (dxn - xn * mean(dxn * xn)) per token (@p dx may alias @p dxn).
    static void normalize_backward(const float* dxn, const float* xn, const float* rstd, std::size_t T, std::size_t F,
                                   float* dx) {
        for (std::size_t t = 0; t < T; ++t) {
            double s = 0;
            for (std::size_t k = 0; k < F; ++k) s += double(dxn[t * F + k]) * xn[t * F + k];
            const float m = float(s / double(F));
            for (std::size_t k = 0; k < F; ++k) {
                const std::size_t i = t * F + k;
                dx[i] = rstd[t] * (dxn[i] - xn[i] * m);
            }
        }
    }
};

/// @brief The norms that train (their frozen forms are basic_layer_norm<frozen<fp32>> and
/// basic_rms_norm<frozen<fp32>>).
using layer_norm = basic_layer_norm<>;
using rms_norm = basic_rms_norm<>;

}  // namespace tern
