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
#include "../quantize.hpp"
#include "../tensor.hpp"

namespace tern {
namespace detail {

/// The optional learnable gain (and shift) of a norm layer.
class norm_affine {
public:
    norm_affine(std::size_t features, bool affine, bool with_shift)
        : features_(features), affine_(affine), shift_(affine && with_shift) {
        require(features > 0, "norm: expected a positive feature count, got ", features);
        if (affine) {
            gain = tensor(shape_t{features}, 1.0f);
            gain_grad = zeros({features});
            if (with_shift) {
                shift = tensor(shape_t{features}, 0.0f);
                shift_grad = zeros({features});
            }
        }
    }

    bool affine() const { return affine_; }

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
    void backward(const float* g, const float* xn, std::size_t T, float* dxn) {
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

    void collect(parameter_list& out, const std::string& prefix) {
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

    tensor gain, shift, gain_grad, shift_grad;

private:
    std::size_t features_;
    bool affine_, shift_;  // explicit: a default xarray is a 0-d scalar of size 1
};

/// What layer_norm and rms_norm share: sizes, the affine part, what backward keeps, and the
/// parameter and file protocol. @p Derived gives forward, backward and kind().
template <class Derived>
class norm_layer {
public:
    void collect_parameters(parameter_list& out, const std::string& prefix) { affine_.collect(out, prefix); }
    std::size_t features() const { return features_; }
    float eps() const { return eps_; }
    bool affine() const { return affine_.affine(); }
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

    std::size_t features_;
    float eps_;
    norm_affine affine_;
    tensor xn_;
    std::vector<float> rstd_;
};

}  // namespace detail

/// @brief LayerNorm over the last axis: (x - mean) / sqrt(var + eps) * gain + shift.
class layer_norm : public detail::norm_layer<layer_norm> {
public:
    explicit layer_norm(std::size_t features, bool affine = true, float eps = 1e-5f)
        : norm_layer(features, affine, eps, true) {}
    static constexpr const char* kind() { return "layer_norm"; }

    void forward(const tensor& x, tensor& y) {
        const std::size_t T = detail::token_count(x, features_, "layer_norm");
        detail::shape_like(xn_, x, features_);
        rstd_.resize(T);
        normalize_tokens(x.data(), T, features_, xn_.data(), rstd_.data(), eps_);
        y = xn_;
        affine_.apply(y.data(), T);
    }
    tensor forward(const tensor& x) {
        tensor y;
        forward(x, y);
        return y;
    }

    tensor backward(const tensor& grad_output) {
        detail::require(grad_output.shape() == xn_.shape(), "layer_norm: expected output gradient of shape ",
                        detail::shape_string(xn_.shape()), ", got ", detail::shape_string(grad_output.shape()));
        const std::size_t T = rstd_.size();
        tensor dx(detail::to_shape(xn_.shape()));
        affine_.backward(grad_output.data(), xn_.data(), T, dx.data());
        normalize_tokens_backward(dx.data(), xn_.data(), rstd_.data(), T, features_, dx.data());
        return dx;
    }
};

/// @brief RMSNorm over the last axis: x / sqrt(mean(x^2) + eps) * gain.
class rms_norm : public detail::norm_layer<rms_norm> {
public:
    explicit rms_norm(std::size_t features, bool affine = true, float eps = 1e-6f)
        : norm_layer(features, affine, eps, false) {}
    static constexpr const char* kind() { return "rms_norm"; }

    void forward(const tensor& x, tensor& y) {
        const std::size_t T = detail::token_count(x, features_, "rms_norm");
        detail::shape_like(xn_, x, features_);
        rstd_.resize(T);
        const float* in = x.data();
        float* out = xn_.data();
        for (std::size_t t = 0; t < T; ++t) {
            double s2 = 0;
            for (std::size_t k = 0; k < features_; ++k) s2 += double(in[t * features_ + k]) * in[t * features_ + k];
            const float r = float(1.0 / std::sqrt(s2 / double(features_) + double(eps_)));
            rstd_[t] = r;
            for (std::size_t k = 0; k < features_; ++k) out[t * features_ + k] = in[t * features_ + k] * r;
        }
        y = xn_;
        affine_.apply(y.data(), T);
    }
    tensor forward(const tensor& x) {
        tensor y;
        forward(x, y);
        return y;
    }

    tensor backward(const tensor& grad_output) {
        detail::require(grad_output.shape() == xn_.shape(), "rms_norm: expected output gradient of shape ",
                        detail::shape_string(xn_.shape()), ", got ", detail::shape_string(grad_output.shape()));
        const std::size_t T = rstd_.size();
        tensor dx(detail::to_shape(xn_.shape()));
        float* d = dx.data();
        affine_.backward(grad_output.data(), xn_.data(), T, d);
        const float* xn = xn_.data();
        for (std::size_t t = 0; t < T; ++t) {
            double s = 0;
            for (std::size_t k = 0; k < features_; ++k) s += double(d[t * features_ + k]) * xn[t * features_ + k];
            const float m = float(s / double(features_));
            for (std::size_t k = 0; k < features_; ++k) {
                const std::size_t i = t * features_ + k;
                d[i] = rstd_[t] * (d[i] - xn[i] * m);
            }
        }
        return dx;
    }
};

}  // namespace tern
