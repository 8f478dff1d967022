#pragma once
/// @file layers/attention.hpp
/// @brief Multi-head causal self-attention with q/k/v/o projections in any policy, optional rotary
/// positions, and a key/value cache for incremental generation.
///
/// The per-head products QK^T and PV run through tern::kernels::sgemm directly on the [B, T, D]
/// projection outputs (a head is a column slice with leading dimension D, so nothing is
/// transposed or copied); the B * heads products run in parallel on tern's thread pool.

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "../kernels/gemm.hpp"
#include "../threads.hpp"
#include "linear.hpp"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && !defined(TERN_DISABLE_SIMD)
#define TERN_LM_KERNELS_X86 1
#include <immintrin.h>
#else
#define TERN_LM_KERNELS_X86 0
#endif

namespace tern {
namespace detail {

/// exp(x) to about 2 ulp, in plain arithmetic so that loops over it vectorize (no libm call).
/// Inputs below -87 give about 1e-38 (not 0); NaN is not propagated.
inline float fast_exp(float x) {
    x = std::min(88.0f, std::max(-87.0f, x));
    const float shifter = 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer
    const float t = x * 1.44269504088896341f + shifter;
    const float n = t - shifter;
    const float r = (x - n * 0.693359375f) + n * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    const std::int32_t e = std::bit_cast<std::int32_t>(t) - std::bit_cast<std::int32_t>(shifter);
    return p * std::bit_cast<float>((e + 127) << 23);
}

/// Whether the AVX2 versions of the element-wise kernels can run here (checked once).
inline bool lm_kernels_avx2() {
#if TERN_LM_KERNELS_X86
    static const bool ok = [] {
        __builtin_cpu_init();
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    }();
    return ok;
#else
    return false;
#endif
}

#if TERN_LM_KERNELS_X86
namespace avx2 {

/// fast_exp on 8 lanes (the same steps, with fused multiply-adds).
__attribute__((target("avx2,fma"))) inline __m256 exp8(__m256 x) {
    x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.0f)), _mm256_set1_ps(88.0f));
    const __m256 shifter = _mm256_set1_ps(12582912.0f);
    const __m256 t = _mm256_fmadd_ps(x, _mm256_set1_ps(1.44269504088896341f), shifter);
    const __m256 n = _mm256_sub_ps(t, shifter);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fmadd_ps(n, _mm256_set1_ps(2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    const __m256i e = _mm256_sub_epi32(_mm256_castps_si256(t), _mm256_castps_si256(shifter));
    const __m256 scale = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(e, _mm256_set1_epi32(127)), 23));
    return _mm256_mul_ps(p, scale);
}

/// row[j] = exp(row[j] - shift); returns the sum of the new values.
__attribute__((target("avx2,fma"))) inline float exp_shifted(float* row, std::size_t n, float shift) {
    const __m256 s = _mm256_set1_ps(shift);
    __m256 acc = _mm256_setzero_ps();
    std::size_t j = 0;
    for (; j + 8 <= n; j += 8) {
        const __m256 v = exp8(_mm256_sub_ps(_mm256_loadu_ps(row + j), s));
        _mm256_storeu_ps(row + j, v);
        acc = _mm256_add_ps(acc, v);
    }
    alignas(32) float lanes[8];
    _mm256_store_ps(lanes, acc);
    float sum = ((lanes[0] + lanes[1]) + (lanes[2] + lanes[3])) + ((lanes[4] + lanes[5]) + (lanes[6] + lanes[7]));
    for (; j < n; ++j) {
        row[j] = fast_exp(row[j] - shift);
        sum += row[j];
    }
    return sum;
}

}  // namespace avx2
#endif

/// row[j] = exp(row[j] - shift) for j < n; returns their sum.
inline float exp_shifted(float* row, std::size_t n, float shift) {
#if TERN_LM_KERNELS_X86
    if (lm_kernels_avx2()) return avx2::exp_shifted(row, n, shift);
#endif
    float sum = 0.0f;
    for (std::size_t j = 0; j < n; ++j) {
        row[j] = fast_exp(row[j] - shift);
        sum += row[j];
    }
    return sum;
}

/// Sum of a[i] * b[i] with 8 independent accumulators (vectorizes without reassociation flags).
inline float dot8(const float* a, const float* b, std::size_t n) {
    float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    std::size_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (std::size_t l = 0; l < 8; ++l) acc[l] += a[i + l] * b[i + l];
    float s = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
    for (; i < n; ++i) s += a[i] * b[i];
    return s;
}

/// Softmax of rows of S [rows x ld] where row r may see columns 0 .. first_visible + r (causal);
/// masked entries become exactly 0.
inline void causal_softmax_rows(float* S, std::size_t rows, std::size_t cols, std::size_t ld,
                                std::size_t first_visible) {
    for (std::size_t r = 0; r < rows; ++r) {
        float* row = S + r * ld;
        const std::size_t n = std::min(cols, first_visible + r + 1);
        float m = row[0];
        for (std::size_t j = 1; j < n; ++j) m = std::max(m, row[j]);
        const float inv = 1.0f / exp_shifted(row, n, m);
        for (std::size_t j = 0; j < n; ++j) row[j] *= inv;
        for (std::size_t j = n; j < cols; ++j) row[j] = 0.0f;
    }
}

/// Backward of a causal softmax row block: dS = P * (dP - rowsum(P * dP)) * scale, in place in dP.
inline void causal_softmax_backward_rows(const float* P, float* dP, std::size_t T, float scale) {
    for (std::size_t r = 0; r < T; ++r) {
        const float* pr = P + r * T;
        float* dr = dP + r * T;
        const std::size_t n = r + 1;
        const float s = dot8(pr, dr, n);
        for (std::size_t j = 0; j < n; ++j) dr[j] = pr[j] * (dr[j] - s) * scale;
        for (std::size_t j = n; j < T; ++j) dr[j] = 0.0f;
    }
}

}  // namespace detail

/// @brief Key/value cache of one attention layer: keys and values [batch, capacity, d_model].
struct kv_cache {
    std::vector<float> keys, values;
    std::size_t batch = 0, capacity = 0, dim = 0, length = 0;

    /// Empties the cache and sizes it for @p batch sequences of up to @p capacity tokens.
    void reset(std::size_t batch_, std::size_t capacity_, std::size_t dim_) {
        batch = batch_;
        capacity = capacity_;
        dim = dim_;
        length = 0;
        keys.assign(batch * capacity * dim, 0.0f);
        values.assign(batch * capacity * dim, 0.0f);
    }
};

/// @brief How positions enter a transformer: learned absolute embeddings added to the tokens
/// before the first block (attention itself adds none), or rotary q/k inside every attention.
enum class position_kind { learned, rotary };

/// @brief Options of causal_self_attention.
struct attention_options {
    float rotary_base = 10000;  ///< rotary positions: theta_i = base^(-2i / head_dim)
};

/// @brief Multi-head causal self-attention, y = o(softmax(q k^T / sqrt(hd) + mask) v), per head.
///
/// Input and output [B, T, d_model]. The q/k/v/o projections are tern::linear<Policy, ActBits>
/// without bias, so in a ternary policy each is a BitLinear with its own weight scale.
/// Parameters: "q.weight", "k.weight", "v.weight", "o.weight".
/// @tparam Policy, ActBits as for tern::linear.
/// @tparam Positions rotary: q and k are rotated by position (RoPE, half-split pairs
///         (i, i + hd/2)); learned: no positions here (the model adds them to its input).
/// @throws tern::error if d_model is not a multiple of heads (or head_dim is odd with rotary), or
///         on an input that is not [B, T, d_model].
template <class Policy, int ActBits = 8, position_kind Positions = position_kind::learned>
class causal_self_attention {
    static_assert(quantization_policy<Policy>,
                  "tern::causal_self_attention: Policy must be a quantization policy (tern::fp32, fp16, absmean_ternary, absmedian_ternary)");
    static_assert(tern::activation_bits<ActBits>,
                  "tern::causal_self_attention: ActBits must be in 2..16, or tern::float_activations");

public:
    using policy = Policy;
    /// False for the frozen instantiation (tern::frozen<P>): forward only, no training state.
    static constexpr bool trainable = trainable_policy<Policy>;
    /// The q/k/v/o projections: linear<Policy, ActBits> (a wrong Policy stops at the assertion above).
    using projection_type = linear<detail::valid_policy_t<Policy>, detail::valid_bits<ActBits>>;
    template <class T>
    using transform = causal_self_attention<typename T::template apply<Policy>, ActBits, Positions>;
    static constexpr bool rotary = Positions == position_kind::rotary;

    causal_self_attention(std::size_t d_model, std::size_t heads, attention_options options = {})
        requires trainable
        : q_(d_model, d_model, false), k_(d_model, d_model, false), v_(d_model, d_model, false),
          o_(d_model, d_model, false), d_(d_model), heads_(heads), opt_(options) {
        detail::require(heads > 0 && d_model % heads == 0, "causal_self_attention: d_model ", d_model,
                        " is not a multiple of the head count ", heads);
        detail::require(!rotary || (d_model / heads) % 2 == 0,
                        "causal_self_attention: rotary positions need an even head dimension, got ", d_model / heads);
    }

    /// Converts the same layer from another policy (parameters copied exactly).
    template <class Q, int B>
    explicit causal_self_attention(const causal_self_attention<Q, B, Positions>& other)
        : q_(other.q_proj()), k_(other.k_proj()), v_(other.v_proj()), o_(other.o_proj()), d_(other.d_model()),
          heads_(other.heads()), opt_(other.options()) {}

    tensor forward(const tensor& x) {
        check_input(x);
        if constexpr (trainable) {
            B_ = x.shape()[0];
            T_ = x.shape()[1];
            return attend(x, q_act_, k_act_, v_act_, probs_);
        } else {
            tensor q, k, v;
            std::vector<float> probs;
            return attend(x, q, k, v, probs);
        }
    }

private:
    /// The whole-sequence forward; @p q, @p k, @p v (after rotation) and @p probs [B * heads, T, T]
    /// are what backward needs (members in training, locals when frozen).
    tensor attend(const tensor& x, tensor& q, tensor& k, tensor& v, std::vector<float>& probs) {
        const std::size_t B = x.shape()[0], T = x.shape()[1];
        q_.forward(x, q);
        k_.forward(x, k);
        v_.forward(x, v);
        if constexpr (rotary) {
            rotate(q.data(), B, T, 0, false);
            rotate(k.data(), B, T, 0, false);
        }
        probs.resize(B * heads_ * T * T);
        tensor ctx(shape_t{B, T, d_});
        const std::size_t hd = head_dim(), D = d_;
        const float scale = 1.0f / std::sqrt(float(hd));
        const float *Q = q.data(), *K = k.data(), *V = v.data();
        float* C = ctx.data();
        float* P = probs.data();
        parallel_for(
            B * heads_,
            [&](std::size_t lo, std::size_t hi) {
                for (std::size_t i = lo; i < hi; ++i) {
                    const std::size_t off = (i / heads_) * T * D + (i % heads_) * hd;
                    float* Pi = P + i * T * T;
                    kernels::sgemm(false, true, T, T, hd, scale, Q + off, D, K + off, D, 0.0f, Pi, T);
                    detail::causal_softmax_rows(Pi, T, T, T, 0);
                    kernels::sgemm(false, false, T, hd, T, 1.0f, Pi, T, V + off, D, 0.0f, C + off, D);
                }
            },
            4.0 * double(B * heads_) * double(T) * double(T) * double(hd));
        return o_.forward(ctx);
    }

public:
    tensor backward(const tensor& grad_output)
        requires trainable
    {
        const tensor dctx = o_.backward(grad_output);
        const std::size_t B = B_, T = T_, hd = head_dim(), D = d_;
        tensor dq(shape_t{B, T, D}), dk(shape_t{B, T, D}), dv(shape_t{B, T, D});
        const float scale = 1.0f / std::sqrt(float(hd));
        const float *Q = q_act_.data(), *K = k_act_.data(), *V = v_act_.data(), *G = dctx.data();
        const float* P = probs_.data();
        float *dQ = dq.data(), *dK = dk.data(), *dV = dv.data();
        parallel_for(
            B * heads_,
            [&](std::size_t lo, std::size_t hi) {
                std::vector<float> dS(T * T);
                for (std::size_t i = lo; i < hi; ++i) {
                    const std::size_t off = (i / heads_) * T * D + (i % heads_) * hd;
                    const float* Pi = P + i * T * T;
                    float* dp = dS.data();
                    kernels::sgemm(false, true, T, T, hd, 1.0f, G + off, D, V + off, D, 0.0f, dp, T);  // dP = dO V^T
                    kernels::sgemm(true, false, T, hd, T, 1.0f, Pi, T, G + off, D, 0.0f, dV + off, D);  // dV = P^T dO
                    detail::causal_softmax_backward_rows(Pi, dp, T, scale);
                    kernels::sgemm(false, false, T, hd, T, 1.0f, dp, T, K + off, D, 0.0f, dQ + off, D);  // dS K
                    kernels::sgemm(true, false, T, hd, T, 1.0f, dp, T, Q + off, D, 0.0f, dK + off, D);   // dS^T Q
                }
            },
            8.0 * double(B * heads_) * double(T) * double(T) * double(hd));
        if constexpr (rotary) {
            rotate(dQ, B, T, 0, true);
            rotate(dK, B, T, 0, true);
        }
        tensor dx = q_.backward(dq);
        const tensor dxk = k_.backward(dk);
        const tensor dxv = v_.backward(dv);
        float* out = dx.data();
        const float *a = dxk.data(), *b = dxv.data();
        for (std::size_t i = 0, n = dx.size(); i < n; ++i) out[i] += a[i] + b[i];
        return dx;
    }

    /// Incremental forward for generation: x [B, t, d_model] holds the next t tokens of each
    /// sequence (positions cache.length .. cache.length + t - 1); their keys and values are
    /// appended to @p cache and they attend to everything cached. Not for training (no backward).
    /// @throws tern::error if the cache has another batch size or width, or would overflow.
    tensor forward_cached(const tensor& x, kv_cache& cache) {
        check_input(x);
        const std::size_t B = x.shape()[0], t = x.shape()[1], hd = head_dim(), D = d_;
        detail::require(cache.batch == B && cache.dim == D, "causal_self_attention: the cache holds ", cache.batch,
                        " sequences of width ", cache.dim, ", the input ", B, " of width ", D);
        detail::require(cache.length + t <= cache.capacity, "causal_self_attention: the cache holds ", cache.length,
                        " of ", cache.capacity, " positions; ", t, " more do not fit");
        tensor q = q_.forward(x), k = k_.forward(x), v = v_.forward(x);
        const std::size_t pos0 = cache.length;
        if constexpr (rotary) {
            rotate(q.data(), B, t, pos0, false);
            rotate(k.data(), B, t, pos0, false);
        }
        for (std::size_t b = 0; b < B; ++b) {
            std::copy_n(k.data() + b * t * D, t * D, cache.keys.data() + (b * cache.capacity + pos0) * D);
            std::copy_n(v.data() + b * t * D, t * D, cache.values.data() + (b * cache.capacity + pos0) * D);
        }
        const std::size_t Tk = pos0 + t;
        const float scale = 1.0f / std::sqrt(float(hd));
        tensor ctx(shape_t{B, t, D});
        std::vector<float> S(t * Tk);
        for (std::size_t b = 0; b < B; ++b)
            for (std::size_t h = 0; h < heads_; ++h) {
                const float* Qh = q.data() + b * t * D + h * hd;
                const float* Kh = cache.keys.data() + b * cache.capacity * D + h * hd;
                const float* Vh = cache.values.data() + b * cache.capacity * D + h * hd;
                kernels::sgemm(false, true, t, Tk, hd, scale, Qh, D, Kh, D, 0.0f, S.data(), Tk);
                detail::causal_softmax_rows(S.data(), t, Tk, Tk, pos0);
                kernels::sgemm(false, false, t, hd, Tk, 1.0f, S.data(), Tk, Vh, D, 0.0f,
                               ctx.data() + b * t * D + h * hd, D);
            }
        cache.length = Tk;
        return o_.forward(ctx);
    }

    void collect_parameters(parameter_list& out, const std::string& prefix)
        requires trainable
    {
        q_.collect_parameters(out, prefix + "q.");
        k_.collect_parameters(out, prefix + "k.");
        v_.collect_parameters(out, prefix + "v.");
        o_.collect_parameters(out, prefix + "o.");
    }
    void set_quant_strength(float lambda)
        requires trainable
    {
        q_.set_quant_strength(lambda);
        k_.set_quant_strength(lambda);
        v_.set_quant_strength(lambda);
        o_.set_quant_strength(lambda);
    }

    std::string describe() const {
        return "causal_self_attention(" + std::to_string(d_) + ",heads=" + std::to_string(heads_) +
               (rotary ? ",rotary" : "") + ",q=" + q_.describe() + ",k=" + k_.describe() +
               ",v=" + v_.describe() + ",o=" + o_.describe() + ")";
    }

    /// Frozen: the projections' tensors under "q.", "k.", "v.", "o.".
    void save(layer_writer& w) const
        requires(!trainable)
    {
        for (const auto& [name, l] : projections()) {
            layer_writer sub = w.nested(name);
            l->save(sub);
        }
    }
    /// Frozen: what save() wrote, for a d_model-wide layer with @p heads heads.
    static causal_self_attention load(const layer_reader& r, std::size_t d_model, std::size_t heads,
                                      attention_options options)
        requires(!trainable)
    {
        detail::require(heads > 0 && d_model % heads == 0 && (!rotary || (d_model / heads) % 2 == 0),
                        "causal_self_attention: ", heads, " heads do not divide d_model ", d_model,
                        rotary ? " into an even head dimension" : "");
        using L = projection_type;
        return causal_self_attention(L::load(r.sub("q"), d_model, d_model, false),
                                     L::load(r.sub("k"), d_model, d_model, false),
                                     L::load(r.sub("v"), d_model, d_model, false),
                                     L::load(r.sub("o"), d_model, d_model, false), d_model, heads, options);
    }
    std::size_t parameter_bytes() const
        requires(!trainable)
    {
        return q_.parameter_bytes() + k_.parameter_bytes() + v_.parameter_bytes() + o_.parameter_bytes();
    }
    std::size_t packed_weights() const
        requires(!trainable)
    {
        return q_.packed_weights() + k_.packed_weights() + v_.packed_weights() + o_.packed_weights();
    }
    std::size_t packed_bytes() const
        requires(!trainable)
    {
        return q_.packed_bytes() + k_.packed_bytes() + v_.packed_bytes() + o_.packed_bytes();
    }

    std::size_t d_model() const { return d_; }
    std::size_t heads() const { return heads_; }
    std::size_t head_dim() const { return d_ / heads_; }
    const attention_options& options() const { return opt_; }
    const projection_type& q_proj() const { return q_; }
    const projection_type& k_proj() const { return k_; }
    const projection_type& v_proj() const { return v_; }
    const projection_type& o_proj() const { return o_; }

private:
    causal_self_attention(projection_type q, projection_type k, projection_type v, projection_type o,
                          std::size_t d_model, std::size_t heads, attention_options options)
        : q_(std::move(q)), k_(std::move(k)), v_(std::move(v)), o_(std::move(o)), d_(d_model), heads_(heads),
          opt_(options) {}

    std::vector<std::pair<const char*, const projection_type*>> projections() const {
        return {{"q", &q_}, {"k", &k_}, {"v", &v_}, {"o", &o_}};
    }

    void check_input(const tensor& x) const {
        detail::require(x.dimension() == 3 && x.shape()[2] == d_ && x.shape()[1] > 0,
                        "causal_self_attention: expected input [batch, tokens, ", d_, "], got shape ",
                        detail::shape_string(x.shape()));
    }

    /// Rotates (or, with @p inverse, rotates back) pairs (i, i + hd/2) of every head of
    /// z [B, T, D] by the angle (offset + t) * base^(-2i/hd).
    void rotate(float* z, std::size_t B, std::size_t T, std::size_t offset, bool inverse) {
        const std::size_t hd = head_dim(), half = hd / 2, need = offset + T;
        if (rope_positions_ < need) {
            rope_cos_.resize(need * half);
            rope_sin_.resize(need * half);
            for (std::size_t p = 0; p < need; ++p)
                for (std::size_t i = 0; i < half; ++i) {
                    const double angle =
                        double(p) * std::pow(double(opt_.rotary_base), -2.0 * double(i) / double(hd));
                    rope_cos_[p * half + i] = float(std::cos(angle));
                    rope_sin_[p * half + i] = float(std::sin(angle));
                }
            rope_positions_ = need;
        }
        const float sign = inverse ? -1.0f : 1.0f;
        for (std::size_t b = 0; b < B; ++b)
            for (std::size_t t = 0; t < T; ++t) {
                const float* c = rope_cos_.data() + (offset + t) * half;
                const float* s = rope_sin_.data() + (offset + t) * half;
                for (std::size_t h = 0; h < heads_; ++h) {
                    float* v = z + (b * T + t) * d_ + h * hd;
                    for (std::size_t i = 0; i < half; ++i) {
                        const float a = v[i], bb = v[i + half], sn = sign * s[i];
                        v[i] = a * c[i] - bb * sn;
                        v[i + half] = a * sn + bb * c[i];
                    }
                }
            }
    }

    projection_type q_, k_, v_, o_;
    std::size_t d_, heads_;
    attention_options opt_;
    // What backward needs (training only): q, k, v after rotation, and the probabilities [B * heads, T, T].
    [[no_unique_address]] training_only<Policy, std::size_t> B_{}, T_{};
    [[no_unique_address]] training_only<Policy, tensor> q_act_{}, k_act_{}, v_act_{};
    [[no_unique_address]] training_only<Policy, std::vector<float>> probs_{};
    std::vector<float> rope_cos_, rope_sin_;
    std::size_t rope_positions_ = 0;
};

}  // namespace tern
