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
#include "../tensor.hpp"
#include "../threads.hpp"

namespace tern {

/// @brief Looks up one learned row of `weight [vocab, dim]` per token id.
///
/// forward(ids [...]) gives [..., dim]; backward scatter-adds the output gradient into the rows
/// that were used and returns zeros of the ids' shape (ids have no gradient).
/// @throws tern::error for an id that is negative, fractional or not below the vocabulary size.
class embedding {
public:
    /// @param vocab, dim  table size. @param init_std  standard deviation of the N(0, std) init
    ///        (1, as PyTorch's nn.Embedding).
    embedding(std::size_t vocab, std::size_t dim, float init_std = 1.0f) : vocab_(vocab), dim_(dim) {
        detail::require(vocab > 0 && dim > 0, "embedding: expected a positive vocabulary and width, got ", vocab,
                        " x ", dim);
        weight = tensor(shape_t{vocab, dim});
        weight_grad = zeros({vocab, dim});
        std::normal_distribution<float> normal(0.0f, init_std);
        auto& rng = global_rng();
        for (auto& w : weight) w = normal(rng);
    }

    /// An embedding holding @p table [vocab, dim] (a loaded model's; no random draw).
    static embedding from_table(tensor table) {
        detail::require(table.dimension() == 2 && table.size() > 0, "embedding: expected a [vocab, dim] table, got ",
                        detail::shape_string(table.shape()));
        embedding e;
        e.vocab_ = table.shape()[0];
        e.dim_ = table.shape()[1];
        e.weight = std::move(table);
        return e;
    }

    tensor forward(const tensor& ids) {
        ids_.resize(ids.size());
        const float* in = ids.data();
        for (std::size_t i = 0; i < ids.size(); ++i) ids_[i] = to_id(in[i], i);
        input_shape_ = detail::to_shape(ids.shape());
        shape_t out_shape = input_shape_;
        out_shape.push_back(dim_);
        tensor y(out_shape);
        const float* w = weight.data();
        float* out = y.data();
        for (std::size_t i = 0; i < ids_.size(); ++i) std::copy_n(w + ids_[i] * dim_, dim_, out + i * dim_);
        return y;
    }

    tensor backward(const tensor& grad_output) {
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

    void collect_parameters(parameter_list& out, const std::string& prefix) {
        out.push_back({prefix + "weight", &weight, &weight_grad, false});
    }

    std::string describe() const { return "embedding(" + std::to_string(vocab_) + "x" + std::to_string(dim_) + ")"; }

    std::size_t vocab_size() const { return vocab_; }
    std::size_t dim() const { return dim_; }

    tensor weight, weight_grad;

private:
    embedding() = default;

    std::size_t to_id(float v, std::size_t where) const {
        detail::require(v >= 0.0f && v < float(vocab_) && v == std::floor(v), "embedding: token id ", v,
                        " at position ", where, " is not a whole number in [0, ", vocab_, ")");
        return std::size_t(v);
    }

    std::size_t vocab_ = 0, dim_ = 0;
    std::vector<std::size_t> ids_;
    shape_t input_shape_;
};

/// @brief Learned absolute positions: y[b, t, :] = x[b, t, :] + weight[offset + t, :].
///
/// Input [B, T, dim] (or [T, dim]); T + offset must not exceed the table's length (the context).
class learned_positions {
public:
    learned_positions(std::size_t context, std::size_t dim, float init_std = 1.0f) : context_(context), dim_(dim) {
        detail::require(context > 0 && dim > 0, "learned_positions: expected a positive context and width, got ",
                        context, " x ", dim);
        weight = tensor(shape_t{context, dim});
        weight_grad = zeros({context, dim});
        std::normal_distribution<float> normal(0.0f, init_std);
        auto& rng = global_rng();
        for (auto& w : weight) w = normal(rng);
    }

    /// Positions holding @p table [context, dim] (a loaded model's; no random draw).
    static learned_positions from_table(tensor table) {
        detail::require(table.dimension() == 2 && table.size() > 0,
                        "learned_positions: expected a [context, dim] table, got ", detail::shape_string(table.shape()));
        learned_positions p;
        p.context_ = table.shape()[0];
        p.dim_ = table.shape()[1];
        p.weight = std::move(table);
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
        T_ = T;
        offset_ = offset;
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

    tensor backward(const tensor& grad_output) {
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

    void collect_parameters(parameter_list& out, const std::string& prefix) {
        out.push_back({prefix + "weight", &weight, &weight_grad, false});
    }

    std::string describe() const {
        return "learned_positions(" + std::to_string(context_) + "x" + std::to_string(dim_) + ")";
    }

    std::size_t context() const { return context_; }

    tensor weight, weight_grad;

private:
    learned_positions() = default;

    std::size_t context_ = 0, dim_ = 0;
    std::size_t T_ = 0, offset_ = 0;
};

}  // namespace tern
