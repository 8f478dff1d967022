#pragma once
/// @file layers/mlp_block.hpp
/// @brief The feed-forward block of a transformer: GELU (up, gelu, down) or SwiGLU
/// (silu(gate) * up, down), every projection a tern::linear<Policy, ActBits> without bias.
///
/// The element-wise parts are fused loops with a vectorizable exp (see attention.hpp), run on
/// tern's thread pool; GELU is the exact erf form (PyTorch's nn.GELU) to about 2e-7.

#include <cmath>
#include <optional>
#include <string>
#include <vector>

#include "../threads.hpp"
#include "attention.hpp"
#include "linear.hpp"

namespace tern {

/// @brief Which feed-forward block.
enum class mlp_kind { gelu, swiglu };

inline const char* mlp_kind_name(mlp_kind k) { return k == mlp_kind::gelu ? "gelu" : "swiglu"; }

namespace detail {

/// GELU value and derivative: erf by Abramowitz-Stegun 7.1.26 (|error| < 1.5e-7), whose
/// exp(-x^2 / 2) is also the normal density of the derivative.
inline void gelu_with_derivative(float x, float& value, float& derivative) {
    const float z = std::fabs(x) * 0.70710678118654752f;
    const float e = fast_exp(-0.5f * x * x);
    const float t = 1.0f / (1.0f + 0.3275911f * z);
    const float poly =
        t * (0.254829592f + t * (-0.284496736f + t * (1.421413741f + t * (-1.453152027f + t * 1.061405429f))));
    const float erf_abs = 1.0f - poly * e;
    const float cdf = 0.5f * (1.0f + (x < 0.0f ? -erf_abs : erf_abs));
    value = x * cdf;
    derivative = cdf + x * e * 0.39894228040143268f;
}

#if TERN_LM_KERNELS_X86
namespace avx2 {

/// y = gelu(x), d = gelu'(x) on 8 lanes at a time (the scalar formula, vectorized).
__attribute__((target("avx2,fma"))) inline void gelu_forward(const float* x, float* y, float* d, std::size_t n) {
    const __m256 sign = _mm256_set1_ps(-0.0f), one = _mm256_set1_ps(1.0f), half = _mm256_set1_ps(0.5f);
    std::size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 v = _mm256_loadu_ps(x + i);
        const __m256 z = _mm256_mul_ps(_mm256_andnot_ps(sign, v), _mm256_set1_ps(0.70710678118654752f));
        const __m256 e = exp8(_mm256_mul_ps(_mm256_set1_ps(-0.5f), _mm256_mul_ps(v, v)));
        const __m256 t = _mm256_div_ps(one, _mm256_fmadd_ps(_mm256_set1_ps(0.3275911f), z, one));
        __m256 poly = _mm256_fmadd_ps(t, _mm256_set1_ps(1.061405429f), _mm256_set1_ps(-1.453152027f));
        poly = _mm256_fmadd_ps(t, poly, _mm256_set1_ps(1.421413741f));
        poly = _mm256_fmadd_ps(t, poly, _mm256_set1_ps(-0.284496736f));
        poly = _mm256_fmadd_ps(t, poly, _mm256_set1_ps(0.254829592f));
        poly = _mm256_mul_ps(t, poly);
        const __m256 erf_abs = _mm256_fnmadd_ps(poly, e, one);
        const __m256 erf = _mm256_or_ps(erf_abs, _mm256_and_ps(sign, v));
        const __m256 cdf = _mm256_mul_ps(half, _mm256_add_ps(one, erf));
        _mm256_storeu_ps(y + i, _mm256_mul_ps(v, cdf));
        _mm256_storeu_ps(d + i, _mm256_fmadd_ps(_mm256_mul_ps(v, e), _mm256_set1_ps(0.39894228040143268f), cdf));
    }
    for (; i < n; ++i) gelu_with_derivative(x[i], y[i], d[i]);
}

/// s = silu(g), d = silu'(g), a = s * u on 8 lanes at a time.
__attribute__((target("avx2,fma"))) inline void swiglu_forward(const float* g, const float* u, float* s, float* d,
                                                                float* a, std::size_t n) {
    const __m256 one = _mm256_set1_ps(1.0f), sign = _mm256_set1_ps(-0.0f);
    std::size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 gv = _mm256_loadu_ps(g + i);
        const __m256 sig = _mm256_div_ps(one, _mm256_add_ps(one, exp8(_mm256_xor_ps(gv, sign))));
        const __m256 sv = _mm256_mul_ps(gv, sig);
        _mm256_storeu_ps(s + i, sv);
        _mm256_storeu_ps(d + i, _mm256_mul_ps(sig, _mm256_fmadd_ps(gv, _mm256_sub_ps(one, sig), one)));
        _mm256_storeu_ps(a + i, _mm256_mul_ps(sv, _mm256_loadu_ps(u + i)));
    }
    for (; i < n; ++i) {
        const float sig = 1.0f / (1.0f + fast_exp(-g[i]));
        s[i] = g[i] * sig;
        d[i] = sig * (1.0f + g[i] * (1.0f - sig));
        a[i] = s[i] * u[i];
    }
}

}  // namespace avx2
#endif

/// y = gelu(x), d = gelu'(x).
inline void gelu_forward(const float* x, float* y, float* d, std::size_t n) {
#if TERN_LM_KERNELS_X86
    if (lm_kernels_avx2()) return avx2::gelu_forward(x, y, d, n);
#endif
    for (std::size_t i = 0; i < n; ++i) gelu_with_derivative(x[i], y[i], d[i]);
}

/// s = silu(g), d = silu'(g), a = s * u.
inline void swiglu_forward(const float* g, const float* u, float* s, float* d, float* a, std::size_t n) {
#if TERN_LM_KERNELS_X86
    if (lm_kernels_avx2()) return avx2::swiglu_forward(g, u, s, d, a, n);
#endif
    for (std::size_t i = 0; i < n; ++i) {
        const float sig = 1.0f / (1.0f + fast_exp(-g[i]));
        s[i] = g[i] * sig;
        d[i] = sig * (1.0f + g[i] * (1.0f - sig));
        a[i] = s[i] * u[i];
    }
}

/// Runs fn(lo, hi) over [0, n), split over the pool when n is large.
template <class Fn>
void elementwise_parallel(std::size_t n, Fn&& fn) {
    constexpr std::size_t chunk = 4096;
    parallel_for(
        (n + chunk - 1) / chunk,
        [&](std::size_t lo, std::size_t hi) { fn(lo * chunk, std::min(n, hi * chunk)); }, double(n) * 20.0);
}

}  // namespace detail

/// @brief Transformer feed-forward block over the last axis: [..., d_model] -> [..., d_model].
///
/// gelu:   y = down(gelu(up(x)))                   parameters "up.weight", "down.weight"
/// swiglu: y = down(silu(gate(x)) * up(x))         parameters "gate.weight", "up.weight", "down.weight"
/// The kind is a template parameter: a GELU block has no gate member and no branch on the kind.
/// @throws tern::error on zero sizes or an input whose last axis is not d_model.
template <class Policy, int ActBits = 8, mlp_kind Kind = mlp_kind::gelu>
class mlp_block {
    static_assert(quantization_policy<Policy>,
                  "tern::mlp_block: Policy must be a quantization policy (tern::fp32, fp16, absmean_ternary, absmedian_ternary)");
    static_assert(tern::activation_bits<ActBits>,
                  "tern::mlp_block: ActBits must be in 2..16, or tern::float_activations");

public:
    using policy = Policy;
    /// False for the frozen instantiation (tern::frozen<P>): forward only, no training state.
    static constexpr bool trainable = trainable_policy<Policy>;
    /// The up/gate/down projections: linear<Policy, ActBits> (a wrong Policy stops at the assertion above).
    using projection_type = linear<detail::valid_policy_t<Policy>, detail::valid_bits<ActBits>>;
    template <class T>
    using transform = mlp_block<typename T::template apply<Policy>, ActBits, Kind>;
    static constexpr mlp_kind kind = Kind;
    static constexpr bool gated = Kind == mlp_kind::swiglu;

    mlp_block(std::size_t d_model, std::size_t hidden)
        requires trainable
        : up_(d_model, hidden, false), down_(hidden, d_model, false), gate_(make_gate(d_model, hidden)) {}

    template <class Q, int B>
    explicit mlp_block(const mlp_block<Q, B, Kind>& other)
        : up_(other.up_proj()), down_(other.down_proj()), gate_(copy_gate(other)) {}

    void forward(const tensor& x, tensor& y) {
        // h = up(x); a = gelu(h) or silu(gate(x)) * h; y = down(a). The derivatives (d1, silu)
        // are kept for backward in training; frozen, scratch_ holds them.
        up_.forward(x, h_);
        const std::size_t n = h_.size();
        detail::shape_like(a_, h_, h_.shape().back());
        std::vector<float>& d1v = derivative_buffer();
        d1v.resize(n);
        float* av = a_.data();
        float* d1 = d1v.data();
        if constexpr (!gated) {
            const float* hv = h_.data();
            detail::elementwise_parallel(n, [&](std::size_t lo, std::size_t hi) {
                detail::gelu_forward(hv + lo, av + lo, d1 + lo, hi - lo);
            });
        } else {
            gate_.forward(x, g_);
            std::vector<float>& sil = silu_buffer();
            sil.resize(n);
            const float *gv = g_.data(), *uv = h_.data();
            float* sv = sil.data();
            detail::elementwise_parallel(n, [&](std::size_t lo, std::size_t hi) {
                detail::swiglu_forward(gv + lo, uv + lo, sv + lo, d1 + lo, av + lo, hi - lo);
            });
        }
        down_.forward(a_, y);
    }
    tensor forward(const tensor& x) {
        tensor y;
        forward(x, y);
        return y;
    }

    tensor backward(const tensor& grad_output)
        requires trainable
    {
        tensor da = down_.backward(grad_output);
        const std::size_t n = da.size();
        float* dav = da.data();
        const float* d1 = d1_.data();
        if constexpr (!gated) {
            detail::elementwise_parallel(n, [&](std::size_t lo, std::size_t hi) {
                for (std::size_t i = lo; i < hi; ++i) dav[i] *= d1[i];
            });
            return up_.backward(da);
        } else {
            tensor dg(detail::to_shape(da.shape()));
            float* dgv = dg.data();
            const float *sv = silu_.data(), *uv = h_.data();
            detail::elementwise_parallel(n, [&](std::size_t lo, std::size_t hi) {
                for (std::size_t i = lo; i < hi; ++i) {
                    dgv[i] = dav[i] * uv[i] * d1[i];
                    dav[i] *= sv[i];  // d up
                }
            });
            tensor dx = up_.backward(da);
            const tensor dxg = gate_.backward(dg);
            float* out = dx.data();
            const float* add = dxg.data();
            for (std::size_t i = 0, m = dx.size(); i < m; ++i) out[i] += add[i];
            return dx;
        }
    }

    void collect_parameters(parameter_list& out, const std::string& prefix)
        requires trainable
    {
        if constexpr (gated) gate_.collect_parameters(out, prefix + "gate.");
        up_.collect_parameters(out, prefix + "up.");
        down_.collect_parameters(out, prefix + "down.");
    }
    void set_quant_strength(float lambda)
        requires trainable
    {
        if constexpr (gated) gate_.set_quant_strength(lambda);
        up_.set_quant_strength(lambda);
        down_.set_quant_strength(lambda);
    }

    std::string describe() const {
        std::string gate;
        if constexpr (gated) gate = ",gate=" + gate_.describe();
        return std::string("mlp_block(") + mlp_kind_name(Kind) + gate +
               ",up=" + up_.describe() + ",down=" + down_.describe() + ")";
    }

    /// Frozen: the projections' tensors under "gate." (swiglu), "up.", "down.".
    void save(layer_writer& w) const
        requires(!trainable)
    {
        const auto put = [&](const char* name, const projection_type& l) {
            layer_writer sub = w.nested(name);
            l.save(sub);
        };
        if constexpr (gated) put("gate", gate_);
        put("up", up_);
        put("down", down_);
    }
    /// Frozen: what save() wrote, for a d_model -> hidden -> d_model block.
    static mlp_block load(const layer_reader& r, std::size_t d_model, std::size_t hidden)
        requires(!trainable)
    {
        using L = projection_type;
        const auto read_gate = [&]() -> gate_type {
            if constexpr (gated) return L::load(r.sub("gate"), d_model, hidden, false);
            else return {};
        };
        return mlp_block(L::load(r.sub("up"), d_model, hidden, false), L::load(r.sub("down"), hidden, d_model, false),
                         read_gate());
    }
    std::size_t parameter_bytes() const
        requires(!trainable)
    {
        return up_.parameter_bytes() + down_.parameter_bytes() + gate_part([](const auto& g) { return g.parameter_bytes(); });
    }
    std::size_t packed_weights() const
        requires(!trainable)
    {
        return up_.packed_weights() + down_.packed_weights() + gate_part([](const auto& g) { return g.packed_weights(); });
    }
    std::size_t packed_bytes() const
        requires(!trainable)
    {
        return up_.packed_bytes() + down_.packed_bytes() + gate_part([](const auto& g) { return g.packed_bytes(); });
    }

    std::size_t hidden() const { return up_.out_features(); }
    const projection_type& up_proj() const { return up_; }
    const projection_type& down_proj() const { return down_; }
    const projection_type& gate_proj() const
        requires gated
    {
        return gate_;
    }

private:
    /// The gate projection of a SwiGLU block; nothing in a GELU block.
    using gate_type = std::conditional_t<gated, projection_type, detail::empty>;

    mlp_block(projection_type up, projection_type down, gate_type gate)
        : up_(std::move(up)), down_(std::move(down)), gate_(std::move(gate)) {}

    static gate_type make_gate(std::size_t d_model, std::size_t hidden) {
        if constexpr (gated) return projection_type(d_model, hidden, false);
        else return {};
    }
    template <class Other>
    static gate_type copy_gate(const Other& other) {
        if constexpr (gated) return projection_type(other.gate_proj());
        else return {};
    }
    template <class Fn>
    std::size_t gate_part(Fn&& fn) const {
        if constexpr (gated) return fn(gate_);
        else return 0;
    }

    std::vector<float>& derivative_buffer() {
        if constexpr (trainable) return d1_;
        else return scratch_;
    }
    std::vector<float>& silu_buffer() {
        if constexpr (trainable) return silu_;
        else return scratch2_;
    }

    projection_type up_, down_;
    [[no_unique_address]] gate_type gate_;
    tensor h_, a_, g_;  // up(x), the activation, gate(x): reused buffers (h_ is read by backward)
    // What backward needs (training only): gelu'(h) or silu'(gate), and silu(gate).
    [[no_unique_address]] training_only<Policy, std::vector<float>> d1_{}, silu_{};
    // The frozen instantiation's scratch for the same values (nobody reads them afterwards).
    [[no_unique_address]] std::conditional_t<trainable, detail::empty, std::vector<float>> scratch_{}, scratch2_{};
};

}  // namespace tern
