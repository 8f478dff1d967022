#pragma once
/// @file deploy/frozen_lm.hpp
/// @brief Inference layers of the decoder-only language model (tern::decoder_lm): token embedding
/// (+ learned positions) and the pre-norm decoder block with packed q/k/v/o and MLP projections and
/// its own key/value cache; freezers, registered kinds and tern::generate_tokens.
///
/// A frozen decoder_lm is the layer list [token_embedding, decoder_block x L, rms_norm|layer_norm,
/// linear|ternary_linear (head)]: forward(ids [B, T]) -> logits [B, T, vocab]. Between
/// begin_sequence(B, capacity) and end_sequence() each forward call holds the next tokens of the
/// B sequences (the prompt, then one token at a time): the embedding continues the positions and
/// every block attends to its cached keys and values. Outside that mode a call is a whole sequence.
///
/// ## File entries (tern-packed-3)
///   - "token_embedding": {"vocab", "dim", "context", "learned_positions"}; tensors "weight"
///     F32 [vocab, dim], "positions" F32 [context, dim] with learned positions;
///   - "decoder_block": {"d_model", "heads", "rotary", "rotary_base", "mlp": "gelu"|"swiglu",
///     "hidden", and one-layer arrays "norm1", "q", "k", "v", "o", "norm2", "up", "down" (+ "gate"
///     for swiglu)}; the sub-layers' tensors live under "<path>.<name>.0.".
/// The tokenizer is recorded in the metadata by the exporter ("tokenizer": "bytes" | "bpe<N>").

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "../layers/attention.hpp"
#include "../layers/mlp_block.hpp"
#include "../layers/transformer.hpp"
#include "freeze.hpp"
#include "inference_model.hpp"

namespace tern {

namespace detail {

/// The run-time form of training layer @p l frozen (one erased layer template).
template <class L>
std::unique_ptr<inference_layer> freeze_one(const L& l) {
    return std::make_unique<erased_layer<frozen_layer_t<L>>>(frozen_layer_t<L>(l));
}

/// (in, out) of a projection, from its configuration; (0, 0) for a layer without them.
inline std::pair<std::size_t, std::size_t> projection_dims(const inference_layer& l) {
    const nlohmann::json c = l.config();
    if (!c.contains("in") || !c.contains("out") || !c["in"].is_number_unsigned() || !c["out"].is_number_unsigned())
        return {0, 0};
    return {c["in"].get<std::size_t>(), c["out"].get<std::size_t>()};
}

inline void save_sub(const layer_writer& w, const char* name, const inference_layer& l) {
    layer_writer s = w.nested(name).nested("0");
    l.save(s);
}

/// Loads the one-layer array @p name of @p r, whose kind must be one of @p kinds.
inline std::unique_ptr<inference_layer> load_sub(const layer_reader& r, const char* name,
                                                 const std::vector<std::string>& kinds) {
    const nlohmann::json& arr = r.array_field(name);
    if (arr.size() != 1) r.fail("field '", name, "': expected exactly one layer, found ", arr.size());
    const std::string kind =
        arr[0].is_object() && arr[0].contains("kind") && arr[0]["kind"].is_string() ? arr[0]["kind"].get<std::string>() : "";
    if (std::find(kinds.begin(), kinds.end(), kind) == kinds.end()) {
        std::string want;
        for (const auto& k : kinds) want += (want.empty() ? "" : " or ") + k;
        r.fail("field '", name, "': expected a ", want, " layer, found kind '", kind, "'");
    }
    layer_list l = load_layers(arr, [&](std::size_t i) { return r.nested(name, i, arr[i]); });
    return std::move(l[0]);
}

}  // namespace detail

/// @brief Token embedding, plus learned absolute positions when the model has them:
/// ids [B, T] (whole numbers as floats) -> [B, T, dim]. Stateful in incremental mode (the next
/// call continues the positions).
class frozen_token_embedding final : public inference_layer {
public:
    /// @param positions  [context, dim], or an empty tensor (rotary models: no position table).
    frozen_token_embedding(tensor weight, tensor positions, std::size_t context)
        : weight_(std::move(weight)), pos_(std::move(positions)), context_(context) {
        detail::require(weight_.dimension() == 2 && weight_.size() > 0, "token_embedding: expected a 2-d table, got ",
                        detail::shape_string(weight_.shape()));
        vocab_ = weight_.shape()[0];
        dim_ = weight_.shape()[1];
        learned_ = pos_.dimension() == 2 && pos_.size() > 0;
        detail::require(context_ > 0, "token_embedding: expected a positive context");
        detail::require(!learned_ || (pos_.shape()[0] == context_ && pos_.shape()[1] == dim_),
                        "token_embedding: positions of shape ", detail::shape_string(pos_.shape()), ", expected [",
                        context_, ", ", dim_, "]");
    }

    std::string kind() const override { return "token_embedding"; }
    std::size_t vocab_size() const { return vocab_; }
    std::size_t dim() const { return dim_; }
    /// @brief Longest sequence (the position table; the cache capacity of generation).
    std::size_t context() const { return context_; }

    const tensor& forward(const tensor& ids) override {
        detail::require(ids.dimension() == 2 && ids.shape()[0] > 0 && ids.shape()[1] > 0,
                        "token_embedding: expected token ids [batch, tokens], got shape ",
                        detail::shape_string(ids.shape()));
        const std::size_t B = ids.shape()[0], T = ids.shape()[1];
        const std::size_t offset = incremental_ ? offset_ : 0;
        detail::require(!incremental_ || B == batch_, "token_embedding: the sequence was begun with batch ", batch_,
                        ", got ", B);
        detail::require(offset + T <= (incremental_ ? capacity_ : context_), "token_embedding: positions ", offset,
                        "..", offset + T, " exceed the context of ", incremental_ ? capacity_ : context_);
        const shape_t shape{B, T, dim_};
        if (y_.shape() != shape) y_.resize(shape);
        const float* w = weight_.data();
        for (std::size_t i = 0; i < B * T; ++i) {
            const float v = ids.data()[i];
            detail::require(v >= 0.0f && v < float(vocab_) && v == std::floor(v), "token_embedding: token id ", v,
                            " at position ", i, " is not a whole number in [0, ", vocab_, ")");
            const float* row = w + std::size_t(v) * dim_;
            float* o = y_.data() + i * dim_;
            if (learned_) {
                const float* p = pos_.data() + (offset + i % T) * dim_;
                for (std::size_t k = 0; k < dim_; ++k) o[k] = row[k] + p[k];
            } else {
                std::copy_n(row, dim_, o);
            }
        }
        if (incremental_) offset_ += T;
        return y_;
    }

    void begin_sequence(std::size_t batch, std::size_t capacity) override {
        detail::require(!learned_ || capacity <= context_, "token_embedding: a sequence of ", capacity,
                        " tokens exceeds the learned positions (", context_, ")");
        incremental_ = true;
        batch_ = batch;
        capacity_ = capacity;
        offset_ = 0;
    }
    void end_sequence() override {
        incremental_ = false;
        offset_ = 0;
    }

    nlohmann::json config() const override {
        return {{"kind", kind()}, {"vocab", vocab_}, {"dim", dim_}, {"context", context_}, {"learned_positions", learned_}};
    }
    void save(layer_writer& w) const override {
        w.put("weight", weight_);
        if (learned_) w.put("positions", pos_);
    }
    std::size_t parameter_bytes() const override { return (weight_.size() + (learned_ ? pos_.size() : 0)) * sizeof(float); }
    feature_info propagate(feature_info, const std::string&) const override { return {dim_, 0}; }
    std::string describe() const override {
        return "token_embedding(" + std::to_string(vocab_) + "x" + std::to_string(dim_) +
               (learned_ ? ",positions=" + std::to_string(context_) : "") + ")";
    }

    /// @brief Loader for "token_embedding".
    static std::unique_ptr<inference_layer> load(const layer_reader& r) {
        const std::size_t V = r.size_field("vocab"), D = r.size_field("dim"), C = r.size_field("context");
        const bool learned = r.bool_field("learned_positions");
        tensor w = r.f32("weight", {V, D});
        tensor p = learned ? r.f32("positions", {C, D}) : tensor::from_shape({0});
        return std::make_unique<frozen_token_embedding>(std::move(w), std::move(p), C);
    }

private:
    tensor weight_, pos_, y_;
    std::size_t vocab_ = 0, dim_ = 0, context_ = 0;
    bool learned_ = false, incremental_ = false;
    std::size_t batch_ = 0, capacity_ = 0, offset_ = 0;
};

/// @brief Pre-norm decoder block: h = x + o(attn(q, k, v of norm1(x))); y = h + mlp(norm2(h)),
/// computed as tern::decoder_block does, with packed (or fp) projections and its own key/value cache.
/// Input and output [B, T, d_model].
class frozen_decoder_block final : public inference_layer {
public:
    /// @brief The parts of a block (each projection a frozen_linear or frozen_dense).
    struct parts {
        std::unique_ptr<inference_layer> norm1, q, k, v, o, norm2, up, gate, down;  ///< gate: swiglu only
    };

    frozen_decoder_block(std::size_t d_model, std::size_t heads, bool rotary, float rotary_base, mlp_kind mlp,
                         parts p)
        : d_(d_model), heads_(heads), rotary_(rotary), base_(rotary_base), mlp_(mlp), p_(std::move(p)) {
        detail::require(heads_ > 0 && d_ % heads_ == 0, "decoder_block: d_model ", d_, " is not a multiple of heads ",
                        heads_);
        detail::require(!rotary_ || (d_ / heads_) % 2 == 0, "decoder_block: rotary positions need an even head dimension");
        detail::require(p_.norm1 && p_.q && p_.k && p_.v && p_.o && p_.norm2 && p_.up && p_.down,
                        "decoder_block: missing part");
        detail::require((mlp_ == mlp_kind::swiglu) == bool(p_.gate), "decoder_block: a gate projection is ",
                        mlp_ == mlp_kind::swiglu ? "required (swiglu)" : "only valid with swiglu");
        for (const auto* n : {p_.norm1.get(), p_.norm2.get()}) {
            detail::require(n->kind() == "rms_norm" || n->kind() == "layer_norm",
                            "decoder_block: the norms must be rms_norm or layer_norm, got ", n->kind());
            (void)n->propagate({d_, d_}, "decoder_block norm");
        }
        const auto check = [](const inference_layer& l, std::size_t in, std::size_t out, const char* name) {
            const auto dims = detail::projection_dims(l);
            detail::require(dims.first == in && dims.second == out, "decoder_block: projection ", name, " is ",
                            dims.first, "->", dims.second, ", expected ", in, "->", out);
        };
        check(*p_.q, d_, d_, "q");
        check(*p_.k, d_, d_, "k");
        check(*p_.v, d_, d_, "v");
        check(*p_.o, d_, d_, "o");
        hidden_ = detail::projection_dims(*p_.up).second;
        detail::require(hidden_ > 0, "decoder_block: the up projection must be ternary_linear or linear");
        check(*p_.up, d_, hidden_, "up");
        if (p_.gate) check(*p_.gate, d_, hidden_, "gate");
        check(*p_.down, hidden_, d_, "down");
    }

    std::string kind() const override { return "decoder_block"; }
    std::size_t d_model() const { return d_; }
    std::size_t heads() const { return heads_; }

    const tensor& forward(const tensor& x) override {
        detail::require(x.dimension() == 3 && x.shape()[2] == d_ && x.shape()[1] > 0,
                        "decoder_block: expected input [batch, tokens, ", d_, "], got shape ",
                        detail::shape_string(x.shape()));
        const std::size_t B = x.shape()[0], t = x.shape()[1], D = d_;
        if (!incremental_) reset_cache(B, t);
        detail::require(B == batch_, "decoder_block: the sequence was begun with batch ", batch_, ", got ", B);
        detail::require(length_ + t <= capacity_, "decoder_block: the cache holds ", length_, " of ", capacity_,
                        " positions; ", t, " more do not fit");
        const tensor& n1 = p_.norm1->forward(x);
        const tensor& q = p_.q->forward(n1);
        const tensor& k = p_.k->forward(n1);
        const tensor& v = p_.v->forward(n1);
        const std::size_t pos0 = length_, Tk = pos0 + t, hd = D / heads_;
        q_.assign(q.data(), q.data() + q.size());
        for (std::size_t b = 0; b < B; ++b) {
            std::copy_n(k.data() + b * t * D, t * D, keys_.data() + (b * capacity_ + pos0) * D);
            std::copy_n(v.data() + b * t * D, t * D, values_.data() + (b * capacity_ + pos0) * D);
        }
        if (rotary_) {
            rotate(q_.data(), t * D, B, t, pos0, t);
            for (std::size_t b = 0; b < B; ++b) rotate(keys_.data() + (b * capacity_ + pos0) * D, 0, 1, t, pos0, t);
        }
        const float scale = 1.0f / std::sqrt(float(hd));
        if (ctx_.shape() != shape_t{B, t, D}) ctx_.resize({B, t, D});
        if (scores_.size() < t * Tk) scores_.resize(t * Tk);
        for (std::size_t b = 0; b < B; ++b)
            for (std::size_t h = 0; h < heads_; ++h) {
                const float* Kh = keys_.data() + b * capacity_ * D + h * hd;
                const float* Vh = values_.data() + b * capacity_ * D + h * hd;
                float* S = scores_.data();
                // The same products as the training layer's cached attention (its SIMD GEMV/GEMM
                // kernels); the masked scores become exactly 0, so the context product may run
                // over all Tk keys.
                kernels::sgemm(false, true, t, Tk, hd, scale, q_.data() + b * t * D + h * hd, D, Kh, D, 0.0f, S, Tk);
                detail::causal_softmax_rows(S, t, Tk, Tk, pos0);
                kernels::sgemm(false, false, t, hd, Tk, 1.0f, S, Tk, Vh, D, 0.0f, ctx_.data() + b * t * D + h * hd, D);
            }
        length_ = Tk;
        const tensor& a = p_.o->forward(ctx_);
        if (h_.shape() != x.shape()) h_.resize(detail::to_shape(x.shape()));
        for (std::size_t i = 0, n = x.size(); i < n; ++i) h_.data()[i] = a.data()[i] + x.data()[i];
        const tensor& n2 = p_.norm2->forward(h_);
        const tensor& u = p_.up->forward(n2);
        const std::size_t n = u.size();
        if (act_.shape() != u.shape()) act_.resize(detail::to_shape(u.shape()));
        if (d1_.size() < n) d1_.resize(n);
        if (mlp_ == mlp_kind::gelu) {
            detail::gelu_forward(u.data(), act_.data(), d1_.data(), n);
        } else {
            const tensor& g = p_.gate->forward(n2);
            if (silu_.size() < n) silu_.resize(n);
            detail::swiglu_forward(g.data(), u.data(), silu_.data(), d1_.data(), act_.data(), n);
        }
        const tensor& dn = p_.down->forward(act_);
        if (y_.shape() != x.shape()) y_.resize(detail::to_shape(x.shape()));
        for (std::size_t i = 0, m = x.size(); i < m; ++i) y_.data()[i] = dn.data()[i] + h_.data()[i];
        return y_;
    }

    void begin_sequence(std::size_t batch, std::size_t capacity) override {
        incremental_ = true;
        reset_cache(batch, capacity);
    }
    void end_sequence() override {
        incremental_ = false;
        keys_.clear();
        keys_.shrink_to_fit();
        values_.clear();
        values_.shrink_to_fit();
        capacity_ = length_ = 0;
    }

    nlohmann::json config() const override {
        nlohmann::json c = {{"kind", kind()},
                            {"d_model", d_},
                            {"heads", heads_},
                            {"rotary", rotary_},
                            {"rotary_base", base_},
                            {"mlp", mlp_ == mlp_kind::gelu ? "gelu" : "swiglu"},
                            {"hidden", hidden_}};
        for (const auto& [name, l] : named()) c[name] = nlohmann::json::array({l->config()});
        return c;
    }
    void save(layer_writer& w) const override {
        for (const auto& [name, l] : named()) detail::save_sub(w, name, *l);
    }
    std::size_t parameter_bytes() const override { return sum([](const inference_layer& l) { return l.parameter_bytes(); }); }
    std::size_t packed_weights() const override { return sum([](const inference_layer& l) { return l.packed_weights(); }); }
    std::size_t packed_bytes() const override { return sum([](const inference_layer& l) { return l.packed_bytes(); }); }
    feature_info propagate(feature_info in, const std::string& where) const override {
        detail::require(in.last == 0 || in.last == d_, where, ": expects ", d_, " features but the previous layers give ",
                        in.last);
        return {d_, in.total};
    }
    std::string describe() const override {
        std::string s = "decoder_block(d=" + std::to_string(d_) + ",heads=" + std::to_string(heads_) +
                        (rotary_ ? ",rotary" : "") + ",mlp=" + (mlp_ == mlp_kind::gelu ? "gelu" : "swiglu");
        for (const auto& [name, l] : named()) s += std::string(",") + name + "=" + l->describe();
        return s + ")";
    }

    /// @brief Loader for "decoder_block".
    static std::unique_ptr<inference_layer> load(const layer_reader& r) {
        const std::size_t D = r.size_field("d_model"), H = r.size_field("heads");
        const bool rotary = r.bool_field("rotary");
        const double base = r.number_field("rotary_base");
        if (!(base > 0.0)) r.fail("field 'rotary_base': expected a positive number, found ", base);
        const std::string m = r.string_field("mlp");
        if (m != "gelu" && m != "swiglu") r.fail("field 'mlp': expected \"gelu\" or \"swiglu\", found \"", m, "\"");
        const mlp_kind mk = m == "gelu" ? mlp_kind::gelu : mlp_kind::swiglu;
        const std::vector<std::string> norms = {"rms_norm", "layer_norm"}, projs = {"ternary_linear", "linear"};
        parts p;
        p.norm1 = detail::load_sub(r, "norm1", norms);
        p.q = detail::load_sub(r, "q", projs);
        p.k = detail::load_sub(r, "k", projs);
        p.v = detail::load_sub(r, "v", projs);
        p.o = detail::load_sub(r, "o", projs);
        p.norm2 = detail::load_sub(r, "norm2", norms);
        p.up = detail::load_sub(r, "up", projs);
        if (mk == mlp_kind::swiglu) p.gate = detail::load_sub(r, "gate", projs);
        else if (r.config().contains("gate")) r.fail("field 'gate' is only valid with \"mlp\": \"swiglu\"");
        p.down = detail::load_sub(r, "down", projs);
        try {
            auto b = std::make_unique<frozen_decoder_block>(D, H, rotary, float(base), mk, std::move(p));
            if (b->hidden_ != r.size_field("hidden")) r.fail("field 'hidden' does not match the up projection");
            return b;
        } catch (const error& e) {
            if (std::string(e.what()).find(r.where()) == 0) throw;
            r.fail(e.what());
        }
    }

private:
    std::vector<std::pair<const char*, const inference_layer*>> named() const {
        std::vector<std::pair<const char*, const inference_layer*>> v = {
            {"norm1", p_.norm1.get()}, {"q", p_.q.get()},         {"k", p_.k.get()},   {"v", p_.v.get()},
            {"o", p_.o.get()},         {"norm2", p_.norm2.get()}, {"up", p_.up.get()}};
        if (p_.gate) v.push_back({"gate", p_.gate.get()});
        v.push_back({"down", p_.down.get()});
        return v;
    }
    template <class Fn>
    std::size_t sum(Fn&& fn) const {
        std::size_t n = 0;
        for (const auto& [name, l] : named()) n += fn(*l);
        return n;
    }

    void reset_cache(std::size_t batch, std::size_t capacity) {
        batch_ = batch;
        capacity_ = capacity;
        length_ = 0;
        if (keys_.size() < batch * capacity * d_) {
            keys_.resize(batch * capacity * d_);
            values_.resize(batch * capacity * d_);
        }
    }

    /// Rotates pairs (i, i + hd/2) of every head of @p rows tokens (@p count per sequence, row
    /// stride d_, sequences @p seq_stride apart) at positions offset .. offset + count - 1, with the
    /// angles of causal_self_attention (double precision, then rounded).
    void rotate(float* z, std::size_t seq_stride, std::size_t sequences, std::size_t count, std::size_t offset,
                std::size_t) {
        const std::size_t hd = d_ / heads_, half = hd / 2, need = offset + count;
        if (rope_positions_ < need) {
            rope_cos_.resize(need * half);
            rope_sin_.resize(need * half);
            for (std::size_t p = rope_positions_; p < need; ++p)
                for (std::size_t i = 0; i < half; ++i) {
                    const double angle = double(p) * std::pow(double(base_), -2.0 * double(i) / double(hd));
                    rope_cos_[p * half + i] = float(std::cos(angle));
                    rope_sin_[p * half + i] = float(std::sin(angle));
                }
            rope_positions_ = need;
        }
        for (std::size_t b = 0; b < sequences; ++b)
            for (std::size_t t = 0; t < count; ++t) {
                const float* c = rope_cos_.data() + (offset + t) * half;
                const float* s = rope_sin_.data() + (offset + t) * half;
                for (std::size_t h = 0; h < heads_; ++h) {
                    float* v = z + b * seq_stride + t * d_ + h * hd;
                    for (std::size_t i = 0; i < half; ++i) {
                        const float a = v[i], bb = v[i + half], sn = s[i];
                        v[i] = a * c[i] - bb * sn;
                        v[i + half] = a * sn + bb * c[i];
                    }
                }
            }
    }

    std::size_t d_, heads_;
    bool rotary_;
    float base_;
    mlp_kind mlp_;
    parts p_;
    std::size_t hidden_ = 0;
    // Key/value cache [batch, capacity, d_model].
    bool incremental_ = false;
    std::size_t batch_ = 0, capacity_ = 0, length_ = 0;
    std::vector<float> keys_, values_, q_, scores_, d1_, silu_;
    std::vector<float> rope_cos_, rope_sin_;
    std::size_t rope_positions_ = 0;
    tensor ctx_, h_, act_, y_;
};

namespace detail {
/// The norm inside an any_norm (rms_norm or layer_norm), as a run-time layer.
inline std::unique_ptr<inference_layer> freeze_any_norm(const any_norm& n) {
    return n.visit([](const auto& norm) -> std::unique_ptr<inference_layer> { return freeze_one(norm); });
}

/// decoder_block: one frozen_decoder_block (projections packed in ternary policies).
template <class P, int B>
std::unique_ptr<inference_layer> freeze_block(const decoder_block<P, B>& l) {
    const auto& a = l.attention();
    frozen_decoder_block::parts p;
    p.norm1 = freeze_any_norm(l.norm1());
    p.q = freeze_one(a.q_proj());
    p.k = freeze_one(a.k_proj());
    p.v = freeze_one(a.v_proj());
    p.o = freeze_one(a.o_proj());
    p.norm2 = freeze_any_norm(l.norm2());
    p.up = freeze_one(l.mlp().up_proj());
    if (l.mlp().gate_proj()) p.gate = freeze_one(*l.mlp().gate_proj());
    p.down = freeze_one(l.mlp().down_proj());
    return std::make_unique<frozen_decoder_block>(a.d_model(), a.heads(), a.options().rotary, a.options().rotary_base,
                                                  l.mlp().kind(), std::move(p));
}
}  // namespace detail

/// @brief A frozen decoder_lm as a run-time model: [token_embedding, decoder_block x L, final
/// norm, head] (the head packed only when the training head was quantized).
template <class P, int B>
inference_model freeze(const decoder_lm<P, B>& lm) {
    layer_list out;
    const lm_config& c = lm.config();
    tensor pos = lm.positions() ? tensor(lm.positions()->weight) : tensor::from_shape({0});
    out.push_back(
        std::make_unique<frozen_token_embedding>(tensor(lm.token_embedding().weight), std::move(pos), c.context));
    for (const auto& b : lm.blocks()) out.push_back(detail::freeze_block(b));
    out.push_back(detail::freeze_any_norm(lm.final_norm()));
    if (lm.head_fp()) out.push_back(detail::freeze_one(*lm.head_fp()));
    else out.push_back(detail::freeze_one(*lm.head_quantized()));
    inference_model m(std::move(out), policy_name(lm));
    m.set_source_description(lm.describe());
    return m;
}

namespace detail {
/// Loaders of the LM kinds; called by register_builtin_layer_kinds() on the first load.
inline void register_lm_layer_kinds() {
    register_builtin_if_absent("token_embedding", [](const layer_reader& r) { return frozen_token_embedding::load(r); });
    register_builtin_if_absent("decoder_block", [](const layer_reader& r) { return frozen_decoder_block::load(r); });
}
}  // namespace detail

/// @brief Whether @p model is a frozen language model (its first layer is a token_embedding).
inline bool is_language_model(const inference_model& model) {
    return model.size() > 0 && model.layer(0).kind() == "token_embedding";
}

/// @brief Continues @p prompt by @p count tokens with the key/value caches, exactly as
/// decoder_lm::generate does (the same sampling and random stream, the same re-prefill from the
/// last context / 2 tokens when the context fills up); calls @p on_token with each token.
/// @throws tern::error for a model that is not a language model, an empty prompt or bad ids.
inline std::vector<int> generate_tokens(inference_model& model, const std::vector<int>& prompt, std::size_t count,
                                        const sample_options& options = {},
                                        const std::function<void(int)>& on_token = {}) {
    detail::require(is_language_model(model), "generate_tokens: the model is not a language model (its first layer is ",
                    model.size() ? model.layer(0).kind() : std::string("missing"), ", expected token_embedding)");
    detail::require(!prompt.empty(), "generate_tokens: expected a non-empty prompt");
    const std::size_t context = model.layer(0).config()["context"].get<std::size_t>();
    std::mt19937_64 rng(options.seed);
    std::vector<int> seq = prompt, out;
    std::size_t cached = 0;
    tensor ids;
    const auto prefill = [&](std::size_t keep) -> const tensor& {
        model.begin_sequence(1, context);
        const std::size_t start = seq.size() - std::min(seq.size(), keep);
        ids.resize({1, seq.size() - start});
        for (std::size_t i = start; i < seq.size(); ++i) ids.data()[i - start] = float(seq[i]);
        cached = seq.size() - start;
        return model.run(ids);
    };
    const tensor* logits = &prefill(context);
    for (std::size_t n = 0; n < count; ++n) {
        const std::size_t vocab = logits->shape().back(), rows = logits->size() / vocab;
        const int next = sample_token(logits->data() + (rows - 1) * vocab, vocab, options, rng);
        seq.push_back(next);
        out.push_back(next);
        if (on_token) on_token(next);
        if (n + 1 == count) break;
        if (cached >= context) {
            logits = &prefill(std::max<std::size_t>(1, context / 2));
        } else {
            ids.resize({1, 1});
            ids.data()[0] = float(next);
            ++cached;
            logits = &model.run(ids);
        }
    }
    model.end_sequence();
    return out;
}

}  // namespace tern
