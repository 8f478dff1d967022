#pragma once
/// @file layers/transformer.hpp
/// @brief A pre-norm decoder block and a decoder-only language model, written once over the policy.
///
/// decoder_lm<Policy, ActBits> maps token ids [B, T] (carried as a float tensor: exact for ids
/// below 2^24) to logits [B, T, vocab]. Embeddings, positions, norms and (by default) the head stay
/// full precision; every projection of attention and MLP is tern::linear<Policy, ActBits>.
/// tern::convert<Q>(lm), tern::save_checkpoint and tern::load_checkpoint work on it.

#include <algorithm>
#include <cmath>
#include <functional>
#include <optional>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "attention.hpp"
#include "embedding.hpp"
#include "linear.hpp"
#include "mlp_block.hpp"
#include "norm.hpp"
#include "frozen_projection.hpp"
#include "pinned.hpp"

namespace tern {

/// @brief Which normalization a transformer uses.
enum class norm_kind { rms, layer };

/// @brief The norm layer of a kind: rms_norm or layer_norm (basic_rms_norm<Policy> or
/// basic_layer_norm<Policy>; Policy fp32 or frozen<fp32>).
template <norm_kind Kind, class Policy = fp32>
using norm_layer_t = std::conditional_t<Kind == norm_kind::rms, basic_rms_norm<Policy>, basic_layer_norm<Policy>>;

/// @brief The architecture of a decoder LM, fixed at compile time: a template argument of
/// decoder_block and decoder_lm, so no branch on it remains inside the model, and a model type
/// says everything the tensors do not.
struct lm_design {
    norm_kind norm = norm_kind::rms;
    mlp_kind mlp = mlp_kind::gelu;
    position_kind positions = position_kind::learned;
    bool quantized_head = false;  ///< the head in the model's policy instead of fp32
    friend constexpr bool operator==(const lm_design&, const lm_design&) = default;
};

/// @brief LLaMA's choices (and BitNet b1.58's): RMSNorm, SwiGLU, rotary positions.
inline constexpr lm_design llama_design{.norm = norm_kind::rms, .mlp = mlp_kind::swiglu, .positions = position_kind::rotary};
/// @brief GPT-2's choices: LayerNorm, GELU, learned positions.
inline constexpr lm_design gpt_design{.norm = norm_kind::layer, .mlp = mlp_kind::gelu, .positions = position_kind::learned};

/// @brief The design as text, e.g. "rms_norm, swiglu, rotary positions, fp32 head".
inline std::string describe_design(const lm_design& d) {
    return std::string(d.norm == norm_kind::rms ? "rms_norm" : "layer_norm") + ", " + mlp_kind_name(d.mlp) + ", " +
           (d.positions == position_kind::rotary ? "rotary" : "learned") + " positions, " +
           (d.quantized_head ? "quantized" : "fp32") + " head";
}

/// @brief The design a file entry of kind "decoder_lm" describes (its "norm", "mlp", "positions" and "quantized_head"
/// fields), checked to be one tern knows.
inline lm_design read_lm_design(const layer_reader& r) {
    const std::string mlp = r.string_field("mlp"), norm = r.string_field("norm"),
                      positions = r.string_field("positions");
    if (mlp != "gelu" && mlp != "swiglu") r.fail("field 'mlp': expected \"gelu\" or \"swiglu\", found \"", mlp.substr(0, 40), "\"");
    if (norm != "rms_norm" && norm != "layer_norm")
        r.fail("field 'norm': expected \"rms_norm\" or \"layer_norm\", found \"", norm.substr(0, 40), "\"");
    if (positions != "learned" && positions != "rotary")
        r.fail("field 'positions': expected \"learned\" or \"rotary\", found \"", positions.substr(0, 40), "\"");
    return {.norm = norm == "rms_norm" ? norm_kind::rms : norm_kind::layer,
            .mlp = mlp == "gelu" ? mlp_kind::gelu : mlp_kind::swiglu,
            .positions = positions == "learned" ? position_kind::learned : position_kind::rotary,
            .quantized_head = r.bool_field("quantized_head")};
}

/// @brief Shape of one decoder block.
struct block_options {
    std::size_t d_model = 128;
    std::size_t heads = 4;
    std::size_t mlp_hidden = 0;  ///< 0: 4 * d_model
};

/// @brief Pre-norm decoder block: h = x + attn(norm1(x)); y = h + mlp(norm2(h)). [B, T, D] -> [B, T, D].
///
/// Parameters "norm1.", "attn.", "norm2.", "mlp." (see causal_self_attention and mlp_block).
/// @tparam Design the norm, MLP and position kinds (its head field is the model's business).
template <class Policy, int ActBits = 8, lm_design Design = lm_design{}>
class decoder_block {
    static_assert(quantization_policy<Policy>,
                  "tern::decoder_block: Policy must be a quantization policy (tern::fp32, fp16, absmean_ternary, absmedian_ternary)");
    static_assert(tern::activation_bits<ActBits>,
                  "tern::decoder_block: ActBits must be in 2..16, or tern::float_activations");

public:
    using policy = Policy;
    /// False for the frozen instantiation (tern::frozen<P>): forward only, no training state.
    static constexpr bool trainable = trainable_policy<Policy>;
    /// causal_self_attention<Policy, ActBits> and mlp_block<Policy, ActBits> (a wrong Policy stops at
    /// the assertion above).
    using attention_type =
        causal_self_attention<detail::valid_policy_t<Policy>, detail::valid_bits<ActBits>, Design.positions>;
    using mlp_type = mlp_block<detail::valid_policy_t<Policy>, detail::valid_bits<ActBits>, Design.mlp>;
    using norm_type = norm_layer_t<Design.norm, fixed_policy_of<Policy>>;
    template <class T>
    using transform = decoder_block<typename T::template apply<Policy>, ActBits, Design>;

    explicit decoder_block(const block_options& o)
        requires trainable
        : opt_(normalized(o)), norm1_(make_norm(o.d_model)), attn_(o.d_model, o.heads),
          norm2_(make_norm(o.d_model)), mlp_(o.d_model, opt_.mlp_hidden) {}

    template <class Q, int B>
    explicit decoder_block(const decoder_block<Q, B, Design>& other)
        : opt_(other.options()), norm1_(other.norm1()), attn_(other.attention()), norm2_(other.norm2()),
          mlp_(other.mlp()) {}

    tensor forward(const tensor& x) {
        tensor h = attn_.forward(norm1_.forward(x));
        add_into(h, x);
        tensor y = mlp_.forward(norm2_.forward(h));
        add_into(y, h);
        return y;
    }

    /// Incremental forward for generation (see causal_self_attention::forward_cached).
    tensor forward_cached(const tensor& x, kv_cache& cache) {
        tensor h = attn_.forward_cached(norm1_.forward(x), cache);
        add_into(h, x);
        tensor y = mlp_.forward(norm2_.forward(h));
        add_into(y, h);
        return y;
    }

    tensor backward(const tensor& grad_output)
        requires trainable
    {
        tensor dh = norm2_.backward(mlp_.backward(grad_output));
        add_into(dh, grad_output);
        tensor dx = norm1_.backward(attn_.backward(dh));
        add_into(dx, dh);
        return dx;
    }

    void collect_parameters(parameter_list& out, const std::string& prefix)
        requires trainable
    {
        norm1_.collect_parameters(out, prefix + "norm1.");
        attn_.collect_parameters(out, prefix + "attn.");
        norm2_.collect_parameters(out, prefix + "norm2.");
        mlp_.collect_parameters(out, prefix + "mlp.");
    }
    void set_quant_strength(float lambda)
        requires trainable
    {
        attn_.set_quant_strength(lambda);
        mlp_.set_quant_strength(lambda);
    }

    /// Frozen: the parts' tensors under "norm1.", "attn.", "norm2.", "mlp." (as the parameters).
    void save(layer_writer& w) const
        requires(!trainable)
    {
        layer_writer n1 = w.nested("norm1"), a = w.nested("attn"), n2 = w.nested("norm2"), m = w.nested("mlp");
        norm1_.save(n1);
        attn_.save(a);
        norm2_.save(n2);
        mlp_.save(m);
    }
    /// Frozen: what save() wrote, for a block of shape @p o (mlp_hidden resolved).
    static decoder_block load(const layer_reader& r, const block_options& o)
        requires(!trainable)
    {
        norm_type n1 = make_norm(o.d_model), n2 = make_norm(o.d_model);
        n1.load_parameters(r.sub("norm1"));
        n2.load_parameters(r.sub("norm2"));
        return decoder_block(o, std::move(n1), attention_type::load(r.sub("attn"), o.d_model, o.heads, {}),
                             std::move(n2), mlp_type::load(r.sub("mlp"), o.d_model, o.mlp_hidden));
    }
    std::size_t parameter_bytes() const
        requires(!trainable)
    {
        return norm1_.parameter_bytes() + attn_.parameter_bytes() + norm2_.parameter_bytes() + mlp_.parameter_bytes();
    }
    std::size_t packed_weights() const
        requires(!trainable)
    {
        return attn_.packed_weights() + mlp_.packed_weights();
    }
    std::size_t packed_bytes() const
        requires(!trainable)
    {
        return attn_.packed_bytes() + mlp_.packed_bytes();
    }

    std::string describe() const {
        return "decoder_block(" + norm1_.describe() + ", " + attn_.describe() + ", " + norm2_.describe() + ", " +
               mlp_.describe() + ")";
    }

    const block_options& options() const { return opt_; }
    const norm_type& norm1() const { return norm1_; }
    const norm_type& norm2() const { return norm2_; }
    const attention_type& attention() const { return attn_; }
    const mlp_type& mlp() const { return mlp_; }

private:
    decoder_block(const block_options& o, norm_type n1, attention_type attn, norm_type n2, mlp_type mlp)
        : opt_(o), norm1_(std::move(n1)), attn_(std::move(attn)), norm2_(std::move(n2)), mlp_(std::move(mlp)) {}

    static norm_type make_norm(std::size_t features) { return norm_type(features, true, 1e-5f); }

    static block_options normalized(block_options o) {
        if (o.mlp_hidden == 0) o.mlp_hidden = 4 * o.d_model;
        return o;
    }
    static void add_into(tensor& y, const tensor& x) {
        detail::require(y.size() == x.size(), "decoder_block: residual shapes differ");
        float* out = y.data();
        const float* in = x.data();
        for (std::size_t i = 0, n = y.size(); i < n; ++i) out[i] += in[i];
    }

    block_options opt_;
    norm_type norm1_;
    attention_type attn_;
    norm_type norm2_;
    mlp_type mlp_;
};

/// @brief Sizes of a decoder-only language model (its kinds are the lm_design template argument).
struct lm_config {
    std::size_t vocab = 256;
    std::size_t d_model = 128;
    std::size_t layers = 4;
    std::size_t heads = 4;
    std::size_t context = 128;   ///< longest sequence (the learned position table, the KV cache)
    std::size_t mlp_hidden = 0;  ///< 0: 4 * d_model
};

/// @brief How generate() picks the next token.
struct sample_options {
    float temperature = 1.0f;  ///< 0: greedy (argmax)
    std::size_t top_k = 0;     ///< 0: all tokens
    std::uint64_t seed = 1;
};

/// @brief Samples one token from a row of logits.
inline int sample_token(const float* logits, std::size_t vocab, const sample_options& o, std::mt19937_64& rng) {
    detail::require(o.temperature >= 0.0f, "sample_token: expected a temperature >= 0, got ", o.temperature);
    if (o.temperature == 0.0f) return int(std::max_element(logits, logits + vocab) - logits);
    std::vector<std::pair<float, int>> cand(vocab);
    for (std::size_t i = 0; i < vocab; ++i) cand[i] = {logits[i] / o.temperature, int(i)};
    std::size_t k = (o.top_k == 0 || o.top_k > vocab) ? vocab : o.top_k;
    if (k < vocab) {
        std::partial_sort(cand.begin(), cand.begin() + std::ptrdiff_t(k), cand.end(),
                          [](const auto& a, const auto& b) { return a.first > b.first; });
        cand.resize(k);
    }
    float m = cand[0].first;
    for (const auto& c : cand) m = std::max(m, c.first);
    std::vector<double> w(cand.size());
    for (std::size_t i = 0; i < cand.size(); ++i) w[i] = std::exp(double(cand[i].first - m));
    std::discrete_distribution<std::size_t> pick(w.begin(), w.end());
    return cand[pick(rng)].second;
}

namespace detail {

/// The generation loop of every language model (decoder_lm::generate, tern::generate_tokens on a
/// run-time model): @p model follows the incremental protocol (begin_sequence(batch, capacity),
/// forward(ids [1, t]) -> logits [1, t, vocab] continuing the sequence, end_sequence()). When the
/// context fills up, the cache is rebuilt from the last context / 2 tokens.
template <class Model>
std::vector<int> generate_with(Model& model, std::size_t context, const std::vector<int>& prompt, std::size_t count,
                               const sample_options& options, const std::function<void(int)>& on_token) {
    require(!prompt.empty(), "generate: expected a non-empty prompt");
    std::mt19937_64 rng(options.seed);
    std::vector<int> seq = prompt, out;
    std::size_t cached = 0;
    tensor ids;
    const auto prefill = [&](std::size_t keep) {
        model.begin_sequence(1, context);
        const std::size_t start = seq.size() - std::min(seq.size(), keep);
        ids.resize({1, seq.size() - start});
        for (std::size_t i = start; i < seq.size(); ++i) ids.data()[i - start] = float(seq[i]);
        cached = seq.size() - start;
        return tensor(model.forward(ids));
    };
    tensor logits = prefill(context);
    for (std::size_t n = 0; n < count; ++n) {
        const std::size_t vocab = logits.shape().back(), rows = logits.size() / vocab;
        const int next = sample_token(logits.data() + (rows - 1) * vocab, vocab, options, rng);
        seq.push_back(next);
        out.push_back(next);
        if (on_token) on_token(next);
        if (n + 1 == count) break;
        if (cached >= context) {
            logits = prefill(std::max<std::size_t>(1, context / 2));
        } else {
            ids.resize({1, 1});
            ids.data()[0] = float(next);
            ++cached;
            logits = model.forward(ids);
        }
    }
    model.end_sequence();
    return out;
}

}  // namespace detail

/// @brief Decoder-only transformer LM: token embedding (+ learned positions), pre-norm
/// decoder blocks, a final norm and a head to vocabulary logits.
///
/// forward(ids [B, T]) -> logits [B, T, vocab]; backward(dlogits) accumulates every gradient and
/// returns zeros [B, T]. Parameters: "tok.weight", "pos.weight" (learned positions only),
/// "blocks.<i>.<...>", "norm.weight" (and "norm.bias" with layer_norm), "head.weight".
/// The head is pinned<linear<fp32>> unless Design.quantized_head asks for linear<Policy, ActBits>.
/// @tparam Policy, ActBits as for tern::linear.
/// @tparam Design norm, MLP and position kinds and the head's precision (lm_design{}, llama_design,
///         gpt_design or any other): members and code paths are chosen at compile time.
/// @throws tern::error for a bad configuration, ids that are not [B, T] with T <= context, or ids
///         outside the vocabulary.
template <class Policy, int ActBits = 8, lm_design Design = lm_design{}>
class decoder_lm {
    static_assert(quantization_policy<Policy>,
                  "tern::decoder_lm: Policy must be a quantization policy (tern::fp32, fp16, absmean_ternary, absmedian_ternary)");
    static_assert(tern::activation_bits<ActBits>,
                  "tern::decoder_lm: ActBits must be in 2..16, or tern::float_activations");

public:
    using policy = Policy;
    /// decoder_block<Policy, ActBits> and linear<Policy, ActBits> (a wrong Policy stops at the
    /// assertion above).
    using block_type = decoder_block<detail::valid_policy_t<Policy>, detail::valid_bits<ActBits>, Design>;
    using norm_type = typename block_type::norm_type;
    static constexpr int activation_bits = ActBits;
    static constexpr lm_design design = Design;
    static constexpr bool learned_positions_table = Design.positions == position_kind::learned;
    /// False for the frozen instantiation (tern::frozen<P>): forward only, no training state.
    static constexpr bool trainable = trainable_policy<Policy>;
    template <class T>
    using transform = decoder_lm<typename T::template apply<Policy>, ActBits, Design>;
    /// The head: linear<Policy, ActBits> with Design.quantized_head; otherwise full precision,
    /// pinned to fp32 in training and frozen fp32 in a frozen model.
    using head_type = std::conditional_t<
        Design.quantized_head, linear<detail::valid_policy_t<Policy>, detail::valid_bits<ActBits>>,
        std::conditional_t<trainable, pinned<linear<fp32>>, linear<frozen<fp32>>>>;
    /// The learned position table, or nothing with rotary positions.
    using positions_type = std::conditional_t<learned_positions_table,
                                              basic_learned_positions<fixed_policy_of<Policy>>, detail::empty>;
    /// The token embedding: full precision, trained with the model or frozen with it.
    using embedding_type = basic_embedding<fixed_policy_of<Policy>>;

    explicit decoder_lm(const lm_config& c)
        requires trainable
        : cfg_(checked(c)), tok_(c.vocab, c.d_model), pos_(make_positions(c)), norm_(make_norm(c.d_model)),
          head_(c.d_model, c.vocab, false) {
        const block_options bo = block_shape(c);
        blocks_.reserve(c.layers);
        for (std::size_t i = 0; i < c.layers; ++i) blocks_.emplace_back(bo);
    }

    /// The same model in another policy: every parameter copied exactly (continual QAT).
    template <class Q, int B>
    explicit decoder_lm(const decoder_lm<Q, B, Design>& other)
        : cfg_(other.settings()), tok_(other.token_embedding()), pos_(other.position_table()),
          norm_(other.final_norm()), head_(other.head()) {
        for (const auto& b : other.blocks()) blocks_.emplace_back(b);
    }

    /// Logits [B, T, vocab] of ids [B, T]; between begin_sequence() and end_sequence(), the next
    /// tokens of the sequences begun (forward_cached).
    tensor forward(const tensor& ids) {
        if (incremental_) return forward_cached(ids);
        check_ids(ids, cfg_.context);
        tensor x = tok_.forward(ids);
        if constexpr (learned_positions_table) x = pos_.forward(x);
        for (auto& b : blocks_) x = b.forward(x);
        return head_.forward(norm_.forward(x));
    }

    tensor backward(const tensor& grad_logits)
        requires trainable
    {
        tensor g = norm_.backward(head_.backward(grad_logits));
        for (std::size_t i = blocks_.size(); i-- > 0;) g = blocks_[i].backward(g);
        if constexpr (learned_positions_table) g = pos_.backward(g);
        return tok_.backward(g);
    }

    /// Empties the key/value caches and sizes them for @p batch sequences of up to context tokens.
    void reset_cache(std::size_t batch = 1) {
        caches_.resize(blocks_.size());
        for (auto& c : caches_) c.reset(batch, cfg_.context, cfg_.d_model);
    }

    /// Tokens cached so far (per sequence).
    std::size_t cached_length() const { return caches_.empty() ? 0 : caches_[0].length; }

    /// Incremental forward: ids [B, t] continue the cached sequences (call reset_cache(B) first);
    /// returns their logits [B, t, vocab] without recomputing the prefix. Not for training.
    /// @throws tern::error when the cache is missing, for another batch size, or would overflow.
    tensor forward_cached(const tensor& ids) {
        detail::require(!caches_.empty(), "decoder_lm: call reset_cache() before forward_cached()");
        check_ids(ids, cfg_.context - cached_length());
        const std::size_t offset = cached_length();
        tensor x = tok_.forward(ids);
        if constexpr (learned_positions_table) x = pos_.forward(x, offset);
        for (std::size_t i = 0; i < blocks_.size(); ++i) x = blocks_[i].forward_cached(x, caches_[i]);
        return head_.forward(norm_.forward(x));
    }

    /// Starts incremental inference: until end_sequence(), forward() continues @p batch sequences
    /// of up to @p capacity tokens (at most the context) with the key/value caches.
    void begin_sequence(std::size_t batch, std::size_t capacity) {
        detail::require(capacity <= cfg_.context, "decoder_lm: a sequence of ", capacity,
                        " tokens exceeds the context (", cfg_.context, ")");
        reset_cache(batch);
        incremental_ = true;
    }
    /// Leaves incremental inference and frees the caches.
    void end_sequence() {
        incremental_ = false;
        caches_.clear();
    }

    /// Continues @p prompt by @p count sampled tokens using the KV cache; calls @p on_token with each.
    /// When the context fills up, the cache is rebuilt from the last context / 2 tokens.
    /// @throws tern::error for an empty prompt or ids outside the vocabulary.
    std::vector<int> generate(const std::vector<int>& prompt, std::size_t count, const sample_options& options = {},
                              const std::function<void(int)>& on_token = {}) {
        return detail::generate_with(*this, cfg_.context, prompt, count, options, on_token);
    }

    /// @name Saving and loading the frozen model (see io/layer_io.hpp)
    /// @{
    static constexpr const char* kind() { return "decoder_lm"; }
    /// Sizes, kinds (norm, mlp, positions), the head's precision, eps and the rotary base, the
    /// policy and activation bits: everything the tensors do not say.
    nlohmann::json config() const {
        nlohmann::json c = {{"kind", kind()},
                            {"vocab", cfg_.vocab},
                            {"d_model", cfg_.d_model},
                            {"layers", cfg_.layers},
                            {"heads", cfg_.heads},
                            {"context", cfg_.context},
                            {"hidden", blocks_.empty() ? std::size_t(0) : blocks_[0].mlp().hidden()},
                            {"mlp", mlp_kind_name(Design.mlp)},
                            {"norm", Design.norm == norm_kind::rms ? "rms_norm" : "layer_norm"},
                            {"norm_eps", norm_eps},
                            {"positions", Design.positions == position_kind::learned ? "learned" : "rotary"},
                            {"rotary_base", attention_options{}.rotary_base},
                            {"quantized_head", Design.quantized_head},
                            {"policy", std::string(Policy::name)},
                            {"activation_bits", ActBits}};
        return c;
    }
    /// Tensors named as the parameters: "tok.weight", "pos.weight", "blocks.<i>.<...>", "norm.<...>",
    /// "head.<...>" (packed projections as linear saves them).
    void save(layer_writer& w) const
        requires(!trainable)
    {
        w.put("tok.weight", tok_.weight);
        if constexpr (learned_positions_table) w.put("pos.weight", pos_.weight);
        for (std::size_t i = 0; i < blocks_.size(); ++i) {
            layer_writer bw = w.nested("blocks").nested(std::to_string(i));
            blocks_[i].save(bw);
        }
        layer_writer nw = w.nested("norm"), hw = w.nested("head");
        norm_.save(nw);
        head_.save(hw);
    }
    /// Rebuilds the frozen model from its configuration and tensors, checking every field.
    static decoder_lm load(const layer_reader& r)
        requires(!trainable)
    {
        lm_config c;
        c.vocab = r.size_field("vocab", 1, std::size_t{1} << 24);
        c.d_model = r.size_field("d_model", 1, std::size_t{1} << 16);
        c.layers = r.size_field("layers", 1, 4096);
        c.heads = r.size_field("heads", 1, c.d_model);
        c.context = r.size_field("context", 1, std::size_t{1} << 20);
        c.mlp_hidden = r.size_field("hidden", 1, std::size_t{1} << 18);
        if (const lm_design d = read_lm_design(r); d != Design)
            r.fail("the file holds a decoder_lm with ", describe_design(d), "; this model type has ",
                   describe_design(Design));
        if (r.number_field("norm_eps") != double(norm_eps))
            r.fail("field 'norm_eps': this tern's norms use ", norm_eps, ", found ", r.number_field("norm_eps"));
        if (r.number_field("rotary_base") != double(attention_options{}.rotary_base))
            r.fail("field 'rotary_base': this tern uses ", attention_options{}.rotary_base, ", found ",
                   r.number_field("rotary_base"));
        try {
            c = checked(c);
        } catch (const error& e) {
            r.fail(e.what());
        }
        const auto read_positions = [&]() -> positions_type {
            if constexpr (learned_positions_table)
                return positions_type::from_table(r.f32("pos.weight", {c.context, c.d_model}));
            else return {};
        };
        // Read in file order (function arguments have no evaluation order): the first error names the first bad tensor.
        embedding_type tok = embedding_type::from_table(r.f32("tok.weight", {c.vocab, c.d_model}));
        positions_type pos = read_positions();
        head_type head = head_type::load(r.sub("head"), c.d_model, c.vocab, false);
        decoder_lm m(c, std::move(tok), std::move(pos), std::move(head));
        const block_options bo = block_shape(c);
        for (std::size_t i = 0; i < c.layers; ++i)
            m.blocks_.push_back(block_type::load(r.sub("blocks." + std::to_string(i)), bo));
        m.norm_.load_parameters(r.sub("norm"));
        return m;
    }
    /// Input: token ids; output: logits over the vocabulary.
    feature_info propagate(feature_info, const std::string&) const { return {cfg_.vocab, 0}; }
    std::size_t parameter_bytes() const
        requires(!trainable)
    {
        std::size_t n = tok_.weight.size() * sizeof(float) + norm_.parameter_bytes() + head_.parameter_bytes();
        if constexpr (learned_positions_table) n += pos_.weight.size() * sizeof(float);
        for (const auto& b : blocks_) n += b.parameter_bytes();
        return n;
    }
    std::size_t packed_weights() const
        requires(!trainable)
    {
        std::size_t n = head_.packed_weights();
        for (const auto& b : blocks_) n += b.packed_weights();
        return n;
    }
    std::size_t packed_bytes() const
        requires(!trainable)
    {
        std::size_t n = head_.packed_bytes();
        for (const auto& b : blocks_) n += b.packed_bytes();
        return n;
    }
    /// @}

    /// The eps of every norm of the model (PyTorch's default).
    static constexpr float norm_eps = 1e-5f;

public:
    parameter_list parameters()
        requires trainable
    {
        parameter_list out;
        collect_parameters(out, "");
        return out;
    }
    void collect_parameters(parameter_list& out, const std::string& prefix)
        requires trainable
    {
        tok_.collect_parameters(out, prefix + "tok.");
        if constexpr (learned_positions_table) pos_.collect_parameters(out, prefix + "pos.");
        for (std::size_t i = 0; i < blocks_.size(); ++i)
            blocks_[i].collect_parameters(out, prefix + "blocks." + std::to_string(i) + ".");
        norm_.collect_parameters(out, prefix + "norm.");
        head_.collect_parameters(out, prefix + "head.");
    }
    void zero_grad()
        requires trainable
    {
        zero_gradients(parameters());
    }
    void set_training(bool) {}  // no dropout: the same computation in training and evaluation
    void set_quant_strength(float lambda)
        requires trainable
    {
        for (auto& b : blocks_) b.set_quant_strength(lambda);
        if constexpr (Design.quantized_head) head_.set_quant_strength(lambda);
    }
    void collect_policies(std::vector<std::string>& out) const {
        const auto add = [&](std::string_view name) {
            if (std::find(out.begin(), out.end(), std::string(name)) == out.end()) out.emplace_back(name);
        };
        add(Policy::name);
        if constexpr (!Design.quantized_head) add(fp32::name);
    }

    std::string describe() const {
        std::string s = "decoder_lm(vocab=" + std::to_string(cfg_.vocab) + ",context=" +
                        std::to_string(cfg_.context) + ", " + tok_.describe();
        if constexpr (learned_positions_table) s += ", " + pos_.describe();
        for (const auto& b : blocks_) s += ", " + b.describe();
        s += ", " + norm_.describe() + ", head=" + head_.describe() + ")";
        return s;
    }

    /// The sizes and kinds the model was built with.
    const lm_config& settings() const { return cfg_; }
    const embedding_type& token_embedding() const { return tok_; }
    /// The learned position table (learned positions only).
    const positions_type& position_table() const { return pos_; }
    const std::vector<block_type>& blocks() const { return blocks_; }
    std::vector<block_type>& blocks() { return blocks_; }
    const norm_type& final_norm() const { return norm_; }
    const head_type& head() const { return head_; }

private:
    /// For load: the configuration, token table, positions and head; blocks and norm are filled in.
    decoder_lm(const lm_config& c, embedding_type tok, positions_type pos, head_type head)
        : cfg_(c), tok_(std::move(tok)), pos_(std::move(pos)), norm_(make_norm(c.d_model)), head_(std::move(head)) {}

    static positions_type make_positions(const lm_config& c) {
        if constexpr (learned_positions_table) return positions_type(c.context, c.d_model);
        else return {};
    }
    static norm_type make_norm(std::size_t features) { return norm_type(features, true, norm_eps); }

    static block_options block_shape(const lm_config& c) {
        return {.d_model = c.d_model, .heads = c.heads, .mlp_hidden = c.mlp_hidden ? c.mlp_hidden : 4 * c.d_model};
    }

    static lm_config checked(lm_config c) {
        detail::require(c.vocab > 0 && c.d_model > 0 && c.layers > 0 && c.context > 0,
                        "decoder_lm: expected positive vocab, d_model, layers and context");
        detail::require(c.heads > 0 && c.d_model % c.heads == 0, "decoder_lm: d_model ", c.d_model,
                        " is not a multiple of heads ", c.heads);
        return c;
    }

    void check_ids(const tensor& ids, std::size_t max_tokens) const {
        detail::require(ids.dimension() == 2 && ids.shape()[0] > 0 && ids.shape()[1] > 0,
                        "decoder_lm: expected token ids [batch, tokens], got shape ",
                        detail::shape_string(ids.shape()));
        detail::require(ids.shape()[1] <= max_tokens, "decoder_lm: ", ids.shape()[1],
                        " tokens exceed the room left in the context (", max_tokens, " of ", cfg_.context, ")");
    }

    lm_config cfg_;
    embedding_type tok_;
    [[no_unique_address]] positions_type pos_;
    std::vector<block_type> blocks_;
    norm_type norm_;
    head_type head_;
    std::vector<kv_cache> caches_;
    bool incremental_ = false;
};

}  // namespace tern
