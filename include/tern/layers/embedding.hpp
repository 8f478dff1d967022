#pragma once
/// @file layers/embedding.hpp
/// @brief Token embeddings and learned absolute positions (both full precision).
///
/// Token ids travel as a float tensor of any shape (usually [B, T]); a float holds every integer
/// below 2^24 exactly, far above any vocabulary tern trains. Embeddings never change policy.

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "../parameter.hpp"
#include "../random.hpp"
#include "../policy.hpp"
#include "../tensor.hpp"
#include "../threads.hpp"

namespace tern {

/// @brief Looks up one learned row of `weight [vocab, dim]` per token id.
///
/// forward(ids [...]) gives [..., dim]; backward scatter-adds the output gradient into the rows
/// that were used and returns zeros of the ids' shape (ids have no gradient).
/// @throws tern::error for an id that is negative, fractional or not below the vocabulary size.
/// @tparam Policy fp32 (trains) or frozen<fp32> (forward only: no gradient, no ids kept).
template <class Policy = fp32>
class basic_embedding {
    static_assert(fixed_precision_policy<Policy>, "tern::basic_embedding: Policy must be tern::fp32 or tern::frozen<tern::fp32>");

public:
    static constexpr bool trainable = trainable_policy<Policy>;
    template <class T>
    using transform = basic_embedding<fixed_policy_t<T>>;

    /// @param vocab, dim  table size. @param init_std  standard deviation of the N(0, std) init
    ///        (1, as PyTorch's nn.Embedding).
    basic_embedding(std::size_t vocab, std::size_t dim, float init_std = 1.0f)
        requires trainable
        : vocab_(vocab), dim_(dim) {
        detail::require(vocab > 0 && dim > 0, "embedding: expected a positive vocabulary and width, got ", vocab,
                        " x ", dim);
        weight = tensor(shape_t{vocab, dim});
        weight_grad = zeros({vocab, dim});
        std::normal_distribution<float> normal(0.0f, init_std);
        auto& rng = global_rng();
        for (auto& w : weight) w = normal(rng);
    }
    /// The same table from another instantiation (freezing drops the gradient).
    template <class Q>
    explicit basic_embedding(const basic_embedding<Q>& other)
        : weight(other.weight), vocab_(other.vocab_size()), dim_(other.dim()) {
        if constexpr (trainable) weight_grad = zeros({vocab_, dim_});
    }

    /// An embedding holding @p table [vocab, dim] (a loaded model's; no random draw).
    static basic_embedding from_table(tensor table) {
        detail::require(table.dimension() == 2 && table.size() > 0, "embedding: expected a [vocab, dim] table, got ",
                        detail::shape_string(table.shape()));
        basic_embedding e;
        e.vocab_ = table.shape()[0];
        e.dim_ = table.shape()[1];
        e.weight = std::move(table);
        if constexpr (trainable) e.weight_grad = zeros({e.vocab_, e.dim_});
        return e;
    }

    tensor forward(const tensor& ids) {
        std::vector<std::size_t> local;
        std::vector<std::size_t>& id = ids_buffer(local);
        id.resize(ids.size());
        const float* in = ids.data();
        for (std::size_t i = 0; i < ids.size(); ++i) id[i] = to_id(in[i], i);
        shape_t out_shape = detail::to_shape(ids.shape());
        if constexpr (trainable) input_shape_ = out_shape;
        out_shape.push_back(dim_);
        tensor y(out_shape);
        const float* w = weight.data();
        float* out = y.data();
        for (std::size_t i = 0; i < id.size(); ++i) std::copy_n(w + id[i] * dim_, dim_, out + i * dim_);
        return y;
    }

    tensor backward(const tensor& grad_output)
        requires trainable
    {
        detail::require(grad_output.size() == ids_.size() * dim_ && grad_output.dimension() >= 1 &&
                            grad_output.shape().back() == dim_,
                        "embedding: expected output gradient with ", ids_.size(), " rows of ", dim_, ", got shape ",
                        detail::shape_string(grad_output.shape()));
        const float* g = grad_output.data();
        float* dw = weight_grad.data();
        for (std::size_t i = 0; i < ids_.size(); ++i) {
            float* row = dw + ids_[i] * dim_;
            const float* gi = g + i * dim_;
            for (std::size_t k = 0; k < dim_; ++k) row[k] += gi[k];
        }
        return zeros(input_shape_);
    }

    void collect_parameters(parameter_list& out, const std::string& prefix)
        requires trainable
    {
        out.push_back({prefix + "weight", &weight, &weight_grad, false});
    }

    std::string describe() const { return "embedding(" + std::to_string(vocab_) + "x" + std::to_string(dim_) + ")"; }

    std::size_t vocab_size() const { return vocab_; }
    std::size_t dim() const { return dim_; }

    tensor weight;
    [[no_unique_address]] training_only<Policy, tensor> weight_grad{};

private:
    basic_embedding() = default;

    /// The ids of the last forward: kept for backward in training, a local buffer when frozen.
    std::vector<std::size_t>& ids_buffer(std::vector<std::size_t>& local) {
        if constexpr (trainable) return ids_;
        else return local;
    }

    std::size_t to_id(float v, std::size_t where) const {
        detail::require(v >= 0.0f && v < float(vocab_) && v == std::floor(v), "embedding: token id ", v,
                        " at position ", where, " is not a whole number in [0, ", vocab_, ")");
        return std::size_t(v);
    }

    std::size_t vocab_ = 0, dim_ = 0;
    // What backward needs (training only): the ids and their shape.
    [[no_unique_address]] training_only<Policy, std::vector<std::size_t>> ids_{};
    [[no_unique_address]] training_only<Policy, shape_t> input_shape_{};
};

/// @brief The token embedding that trains (frozen: basic_embedding<frozen<fp32>>).
using embedding = basic_embedding<>;

/// @brief Learned absolute positions: y[b, t, :] = x[b, t, :] + weight[offset + t, :].
///
/// Input [B, T, dim] (or [T, dim]); T + offset must not exceed the table's length (the context).
/// @tparam Policy fp32 (trains) or frozen<fp32> (forward only).
template <class Policy = fp32>
class basic_learned_positions {
    static_assert(fixed_precision_policy<Policy>,
                  "tern::basic_learned_positions: Policy must be tern::fp32 or tern::frozen<tern::fp32>");

public:
    static constexpr bool trainable = trainable_policy<Policy>;
    template <class T>
    using transform = basic_learned_positions<fixed_policy_t<T>>;

    basic_learned_positions(std::size_t context, std::size_t dim, float init_std = 1.0f)
        requires trainable
        : context_(context), dim_(dim) {
        detail::require(context > 0 && dim > 0, "learned_positions: expected a positive context and width, got ",
                        context, " x ", dim);
        weight = tensor(shape_t{context, dim});
        weight_grad = zeros({context, dim});
        std::normal_distribution<float> normal(0.0f, init_std);
        auto& rng = global_rng();
        for (auto& w : weight) w = normal(rng);
    }

    /// The same table from another instantiation (freezing drops the gradient).
    template <class Q>
    explicit basic_learned_positions(const basic_learned_positions<Q>& other)
        : weight(other.weight), context_(other.context()), dim_(other.dim()) {
        if constexpr (trainable) weight_grad = zeros({context_, dim_});
    }

    /// Positions holding @p table [context, dim] (a loaded model's; no random draw).
    static basic_learned_positions from_table(tensor table) {
        detail::require(table.dimension() == 2 && table.size() > 0,
                        "learned_positions: expected a [context, dim] table, got ", detail::shape_string(table.shape()));
        basic_learned_positions p;
        p.context_ = table.shape()[0];
        p.dim_ = table.shape()[1];
        p.weight = std::move(table);
        if constexpr (trainable) p.weight_grad = zeros({p.context_, p.dim_});
        return p;
    }

    tensor forward(const tensor& x) { return forward(x, 0); }

    /// Adds the rows of positions offset .. offset + T - 1 (cached generation passes the prefix length).
    tensor forward(const tensor& x, std::size_t offset) {
        detail::require(x.dimension() >= 2 && x.shape().back() == dim_, "learned_positions: expected input [..., T, ",
                        dim_, "], got shape ", detail::shape_string(x.shape()));
        const std::size_t T = x.shape()[x.dimension() - 2];
        detail::require(offset + T <= context_, "learned_positions: positions ", offset, "..", offset + T,
                        " exceed the context of ", context_);
        if constexpr (trainable) {
            T_ = T;
            offset_ = offset;
        }
        tensor y = x;
        const std::size_t rows = x.size() / dim_;
        const float* p = weight.data() + offset * dim_;
        float* out = y.data();
        for (std::size_t r = 0; r < rows; ++r) {
            const float* pr = p + (r % T) * dim_;
            float* o = out + r * dim_;
            for (std::size_t k = 0; k < dim_; ++k) o[k] += pr[k];
        }
        return y;
    }

    tensor backward(const tensor& grad_output)
        requires trainable
    {
        const std::size_t rows = grad_output.size() / dim_;
        detail::require(grad_output.dimension() >= 2 && grad_output.shape().back() == dim_ && T_ &&
                            rows % T_ == 0,
                        "learned_positions: unexpected output gradient of shape ",
                        detail::shape_string(grad_output.shape()));
        const float* g = grad_output.data();
        float* dp = weight_grad.data() + offset_ * dim_;
        for (std::size_t r = 0; r < rows; ++r) {
            float* d = dp + (r % T_) * dim_;
            const float* gr = g + r * dim_;
            for (std::size_t k = 0; k < dim_; ++k) d[k] += gr[k];
        }
        return grad_output;
    }

    void collect_parameters(parameter_list& out, const std::string& prefix)
        requires trainable
    {
        out.push_back({prefix + "weight", &weight, &weight_grad, false});
    }

    std::string describe() const {
        return "learned_positions(" + std::to_string(context_) + "x" + std::to_string(dim_) + ")";
    }

    std::size_t context() const { return context_; }
    std::size_t dim() const { return dim_; }

    tensor weight;
    [[no_unique_address]] training_only<Policy, tensor> weight_grad{};

private:
    basic_learned_positions() = default;

    std::size_t context_ = 0, dim_ = 0;
    // What backward needs (training only): the rows added by the last forward.
    [[no_unique_address]] training_only<Policy, std::size_t> T_{}, offset_{};
};

/// @brief Learned positions that train (frozen: basic_learned_positions<frozen<fp32>>).
using learned_positions = basic_learned_positions<>;

}  // namespace tern
