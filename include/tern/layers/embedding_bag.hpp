#pragma once
/// @file layers/embedding_bag.hpp
/// @brief tern::embedding_bag: the sum or mean of weight rows for bag-of-words input (WideMLP's
/// input layer), with the weight table in any policy (ternary allowed).

#include <nlohmann/json.hpp>

#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "../io/layer_io.hpp"
#include "../kernels/fp16.hpp"
#include "../parameter.hpp"
#include "../policy.hpp"
#include "../quantize.hpp"
#include "../random.hpp"
#include "../tensor.hpp"
#include "../threads.hpp"

namespace tern {

/// @brief y[b] = sum_j x[b, j] table[j] (or that sum divided by sum_j x[b, j] with @c mean) for a
/// bag-of-words batch x [batch, vocab] of non-negative word counts (or weights).
///
/// Only the words present cost anything: forward gathers their rows and backward scatters into
/// them, so a batch costs (words present) x dim, not vocab x dim. The table [vocab, dim] is the
/// policy's weight: rounded to binary16 (fp16) or ternary with one per-tensor scale (absmean,
/// absmedian, with the straight-through estimator). BitLinear's per-token normalization and
/// activation quantization do not apply: the input is integer counts, not activations. Frozen,
/// the table is fixed at lambda 1 (files store ternary codes, one byte each, and their step).
/// @tparam ActBits unused (bags are not quantized); present so the layer registers like the other
/// policy layers.
/// @throws tern::error for an input that is not [batch, vocab] or holds a negative or non-finite count.
template <class Policy, int ActBits = 8>
class embedding_bag {
    static_assert(quantization_policy<Policy>,
                  "tern::embedding_bag: Policy must be a quantization policy (tern::fp32, fp16, absmean_ternary, absmedian_ternary)");
    using base_policy = detail::valid_policy_t<Policy>;

public:
    using policy = Policy;
    static constexpr bool trainable = trainable_policy<Policy>;
    template <class T>
    using transform = embedding_bag<typename T::template apply<Policy>, ActBits>;

    /// @param vocab, dim  table size. @param mean  average the rows instead of summing them.
    /// The table starts N(0, 1), as PyTorch's nn.EmbeddingBag.
    embedding_bag(std::size_t vocab, std::size_t dim, bool mean = false)
        requires trainable
        : vocab_(vocab), dim_(dim), mean_(mean) {
        detail::require(vocab > 0 && dim > 0, "embedding_bag: expected a positive vocabulary and width, got ", vocab,
                        " x ", dim);
        weight = tensor(shape_t{vocab, dim});
        weight_grad = zeros({vocab, dim});
        std::normal_distribution<float> normal(0.0f, 1.0f);
        auto& rng = global_rng();
        for (auto& w : weight) w = normal(rng);
    }

    /// Converts from another policy: parameters copied exactly, or frozen at lambda 1.
    template <class Q, int B>
    explicit embedding_bag(const embedding_bag<Q, B>& other)
        : vocab_(other.vocab_size()), dim_(other.dim()), mean_(other.mean()) {
        if constexpr (trainable) {
            weight = other.weight;
            weight_grad = other.weight_grad;
            lambda_ = other.quant_strength();
        } else {
            static_assert(embedding_bag<Q, B>::trainable, "embedding_bag: freeze a trainable layer");
            table_ = tensor::from_shape({vocab_, dim_});
            effective_table<Q>(other.weight.data(), 1.0f, table_.data(), &codes_, &step_);
        }
    }

    void forward(const tensor& x, tensor& y) {
        read_bags(x);
        const float* table = table_.data();
        if constexpr (trainable) {
            table_ = tensor::from_shape({vocab_, dim_});
            effective_table<Policy>(weight.data(), lambda_, table_.data(), nullptr, nullptr);
            table = table_.data();
        }
        if (y.dimension() != 2 || y.shape()[0] != batch_ || y.shape()[1] != dim_) y = tensor::from_shape({batch_, dim_});
        float* out = y.data();
        parallel_for(
            batch_,
            [&](std::size_t lo, std::size_t hi) {
                for (std::size_t b = lo; b < hi; ++b) {
                    float* row = out + b * dim_;
                    std::fill(row, row + dim_, 0.0f);
                    for (std::size_t i = bag_start_[b]; i < bag_start_[b + 1]; ++i) {
                        const float c = counts_[i];
                        const float* w = table + std::size_t(words_[i]) * dim_;
                        for (std::size_t d = 0; d < dim_; ++d) row[d] += c * w[d];
                    }
                    if (mean_ && bag_size_[b] > 0)
                        for (std::size_t d = 0; d < dim_; ++d) row[d] /= bag_size_[b];
                }
            },
            double(counts_.size() + batch_) * double(dim_), 2e5);
        if constexpr (trainable)
            if (mean_) output_ = y;  // d y / d x[b, j] = (table[j] - y[b]) / n[b]
    }
    tensor forward(const tensor& x) {
        tensor y;
        forward(x, y);
        return y;
    }

    /// Accumulates the table gradient (rows of the words present) and returns d/dx [batch, vocab].
    tensor backward(const tensor& grad_output)
        requires trainable
    {
        backward_parameters(grad_output);
        tensor dx = tensor::from_shape({batch_, vocab_});
        const float* g = grad_output.data();
        const float* table = table_.data();
        for (std::size_t b = 0; b < batch_; ++b) {
            const float* gb = g + b * dim_;
            const float inv_n = mean_ ? (bag_size_[b] > 0 ? 1.0f / bag_size_[b] : 0.0f) : 1.0f;
            const float offset = mean_ ? lane_dot_plain(gb, output_.data() + b * dim_) : 0.0f;
            for (std::size_t j = 0; j < vocab_; ++j)
                dx.data()[b * vocab_ + j] = (lane_dot_plain(gb, table + j * dim_) - offset) * inv_n;
        }
        return dx;
    }

    /// backward without the input gradient (the layer is usually a model's first).
    void backward_parameters(const tensor& grad_output)
        requires trainable
    {
        detail::require(grad_output.dimension() == 2 && grad_output.shape()[0] == batch_ && grad_output.shape()[1] == dim_,
                        "embedding_bag: expected output gradient of shape [", batch_, ", ", dim_, "], got ",
                        detail::shape_string(grad_output.shape()));
        const float* g = grad_output.data();
        float* dw = weight_grad.data();
        for (std::size_t b = 0; b < batch_; ++b) {
            const float inv_n = mean_ ? (bag_size_[b] > 0 ? 1.0f / bag_size_[b] : 0.0f) : 1.0f;
            for (std::size_t i = bag_start_[b]; i < bag_start_[b + 1]; ++i) {
                const float c = counts_[i] * inv_n;
                float* row = dw + std::size_t(words_[i]) * dim_;
                for (std::size_t d = 0; d < dim_; ++d) row[d] += c * g[b * dim_ + d];
            }
        }
    }

    void collect_parameters(parameter_list& out, const std::string& prefix)
        requires trainable
    {
        out.push_back({prefix + "weight", &weight, &weight_grad, true});
    }
    void set_quant_strength(float lambda)
        requires trainable
    {
        detail::require(lambda >= 0.0f && lambda <= 1.0f,
                        "embedding_bag: expected a quantization strength in [0, 1], got ", lambda);
        lambda_ = lambda;
    }
    float quant_strength() const { return lambda_; }

    std::string describe() const {
        return std::string(kind()) + "<" + std::string(Policy::name) + ">(" + std::to_string(vocab_) + "x" +
               std::to_string(dim_) + (mean_ ? ",mean" : ",sum") + ")";
    }

    /// @name Saving and loading (see io/layer_io.hpp)
    /// @{
    static constexpr const char* kind() { return "embedding_bag"; }
    nlohmann::json config() const
        requires(!trainable)
    {
        return {{"kind", kind()}, {"policy", std::string(Policy::name)}, {"in", vocab_}, {"out", dim_}, {"mean", mean_}};
    }
    void save(layer_writer& w) const
        requires(!trainable)
    {
        if constexpr (base_policy::ternary) {
            std::vector<std::uint8_t> stored(codes_.size());
            for (std::size_t i = 0; i < codes_.size(); ++i) stored[i] = std::uint8_t(codes_[i] + 1);
            w.put_bytes("codes", stored.data(), stored.size());
            w.put("step", tensor(shape_t{1}, step_));
        } else {
            w.put("table", table_);
        }
    }
    static embedding_bag load(const layer_reader& r)
        requires(!trainable)
    {
        embedding_bag e;
        e.vocab_ = r.size_field("in", 1, std::size_t{1} << 24);
        e.dim_ = r.size_field("out", 1, std::size_t{1} << 16);
        e.mean_ = r.bool_field("mean");
        const auto cells = io::detail::checked_mul(e.vocab_, e.dim_);
        if (!cells || *cells > (std::uint64_t{1} << 32)) r.fail("a table of ", e.vocab_, " x ", e.dim_, " is too large");
        if constexpr (base_policy::ternary) {
            const auto& stored = r.u8("codes", e.vocab_ * e.dim_);
            const float step = r.f32("step", {1})(0);
            if (!std::isfinite(step) || step <= 0.0f) r.fail("tensor 'step': expected a positive finite value, found ", step);
            e.step_ = step;
            e.codes_.resize(stored.size());
            e.table_ = tensor::from_shape({e.vocab_, e.dim_});
            for (std::size_t i = 0; i < stored.size(); ++i) {
                if (stored[i] > 2) r.fail("tensor 'codes': expected ternary codes 0, 1 or 2, found ", int(stored[i]));
                e.codes_[i] = std::int8_t(int(stored[i]) - 1);
                e.table_.data()[i] = float(e.codes_[i]) * step;
            }
        } else {
            e.table_ = r.f32("table", {e.vocab_, e.dim_});
        }
        return e;
    }
    feature_info propagate(feature_info in, const std::string& where) const {
        detail::require(in.last == 0 || in.last == vocab_, where, ": expects bags over ", vocab_,
                        " words but the previous layers give ", in.last);
        return {dim_, dim_};
    }
    std::size_t parameter_bytes() const
        requires(!trainable)
    {
        return table_.size() * sizeof(float) + codes_.size();
    }
    /// @}

    std::size_t vocab_size() const { return vocab_; }
    std::size_t dim() const { return dim_; }
    bool mean() const { return mean_; }

    /// The shadow weights and their gradient (training only; empty when frozen).
    tensor weight, weight_grad;

private:
    template <class Q, int B>
    friend class embedding_bag;
    embedding_bag() = default;

    static float lane_dot_plain(const float* a, const float* b, std::size_t n) { return detail::lane_dot(a, b, n); }
    float lane_dot_plain(const float* a, const float* b) const { return lane_dot_plain(a, b, dim_); }

    /// The table policy Q computes from shadow weights @p w at strength @p lambda; for a ternary Q
    /// also its codes and step (the value of code 1) when asked.
    template <class Q>
    void effective_table(const float* w, float lambda, float* out, std::vector<std::int8_t>* codes, float* step) const {
        const std::size_t n = vocab_ * dim_;
        if constexpr (Q::ternary) {
            if (codes) codes->resize(n);
            const float s = ternarize_weights<Q>(w, n, lambda, out, codes ? codes->data() : nullptr);
            (void)s;
            // The step is ternarize_weights' own 1/s_w (max(scale, eps)), so code * step rebuilds the table.
            if (step) *step = std::max(weight_scale_value<Q>(w, n), quant_eps);
        } else if constexpr (Q::half_precision) {
            kernels::round_to_half(w, out, n);
        } else {
            std::copy(w, w + n, out);
        }
    }

    /// Reads x [batch, vocab] into per-bag word lists (the non-zero counts).
    void read_bags(const tensor& x) {
        detail::require(x.dimension() == 2 && x.shape()[1] == vocab_, "embedding_bag: expected bags [batch, ", vocab_,
                        "], got shape ", detail::shape_string(x.shape()));
        batch_ = x.shape()[0];
        bag_start_.assign(1, 0);
        bag_size_.assign(batch_, 0.0f);
        words_.clear();
        counts_.clear();
        const float* in = x.data();
        for (std::size_t b = 0; b < batch_; ++b) {
            for (std::size_t j = 0; j < vocab_; ++j) {
                const float c = in[b * vocab_ + j];
                if (c == 0.0f) continue;
                detail::require(c > 0.0f && std::isfinite(c), "embedding_bag: count ", c, " of word ", j, " in bag ", b,
                                " is not a non-negative finite number");
                words_.push_back(std::uint32_t(j));
                counts_.push_back(c);
                bag_size_[b] += c;
            }
            bag_start_.push_back(words_.size());
        }
    }

    std::size_t vocab_ = 0, dim_ = 0;
    bool mean_ = false;
    float lambda_ = 1.0f;
    tensor table_;  // training: the last forward's effective table; frozen: the fixed one
    std::vector<std::int8_t> codes_;
    float step_ = 0.0f;
    std::size_t batch_ = 0;
    std::vector<std::size_t> bag_start_;
    std::vector<std::uint32_t> words_;
    std::vector<float> counts_, bag_size_;
    [[no_unique_address]] training_only<Policy, tensor> output_{};
};

}  // namespace tern
