#pragma once
/// @file loss.hpp
/// @brief Losses: softmax cross-entropy (stable, optional label smoothing) and mean squared error.
///
/// A loss object computes the mean loss over a batch in forward() and returns dL/d(input) from
/// backward(). A non-finite loss raises tern::error rather than training on garbage.

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "tensor.hpp"

namespace tern {

/// @brief Softmax cross-entropy over the last axis of logits [..., C], averaged over tokens.
class softmax_cross_entropy {
public:
    /// @param label_smoothing in [0, 1): target = (1 - eps) one-hot + eps / C.
    explicit softmax_cross_entropy(float label_smoothing = 0.0f) : smoothing_(label_smoothing) {
        detail::require(label_smoothing >= 0.0f && label_smoothing < 1.0f,
                        "softmax_cross_entropy: expected label smoothing in [0, 1), got ", label_smoothing);
    }

    /// @param labels one class index in [0, C) per token.
    /// @throws tern::error on a label count or value that does not fit, or a non-finite loss.
    float forward(const tensor& logits, const std::vector<int>& labels) {
        detail::require(logits.dimension() >= 1 && logits.shape().back() > 0,
                        "softmax_cross_entropy: expected logits [..., classes], got shape ",
                        detail::shape_string(logits.shape()));
        const std::size_t C = logits.shape().back();
        const std::size_t T = logits.size() / C;
        detail::require(labels.size() == T, "softmax_cross_entropy: expected ", T, " labels (one per row of logits ",
                        detail::shape_string(logits.shape()), "), got ", labels.size());
        probs_ = tensor(detail::to_shape(logits.shape()));
        labels_ = labels;
        double total = 0;
        const float* z = logits.data();
        float* p = probs_.data();
        for (std::size_t t = 0; t < T; ++t) {
            const int y = labels[t];
            detail::require(y >= 0 && std::size_t(y) < C, "softmax_cross_entropy: label ", y, " at row ", t,
                            " is outside [0, ", C, ")");
            const float* row = z + t * C;
            const float zmax = *std::max_element(row, row + C);
            double sum = 0, mean_logit = 0;
            for (std::size_t c = 0; c < C; ++c) {
                p[t * C + c] = std::exp(row[c] - zmax);
                sum += p[t * C + c];
                mean_logit += row[c];
            }
            const double log_sum = std::log(sum) + zmax;
            for (std::size_t c = 0; c < C; ++c) p[t * C + c] = float(p[t * C + c] / sum);
            const double nll = log_sum - row[y];
            const double uniform = log_sum - mean_logit / double(C);
            total += (1.0 - smoothing_) * nll + smoothing_ * uniform;
        }
        const float loss = T ? float(total / double(T)) : 0.0f;
        detail::require(std::isfinite(loss), "softmax_cross_entropy: the loss is not finite (", loss,
                        "): the model diverged; lower the learning rate or check the input");
        return loss;
    }

    /// dL/dlogits = (softmax - target) / T.
    tensor backward() const {
        tensor g = probs_;
        const std::size_t C = g.shape().back();
        const std::size_t T = g.size() / C;
        const float inv_t = T ? 1.0f / float(T) : 0.0f;
        float* d = g.data();
        for (std::size_t t = 0; t < T; ++t) {
            for (std::size_t c = 0; c < C; ++c) d[t * C + c] -= smoothing_ / float(C);
            d[t * C + std::size_t(labels_[t])] -= 1.0f - smoothing_;
            for (std::size_t c = 0; c < C; ++c) d[t * C + c] *= inv_t;
        }
        return g;
    }

    /// Softmax probabilities of the last forward call.
    const tensor& probabilities() const { return probs_; }

private:
    float smoothing_;
    tensor probs_;
    std::vector<int> labels_;
};

/// @brief Softmax cross-entropy over a subset of the rows of logits [N, C]: the labelled nodes of
/// a graph (a training mask), averaged over that subset; the other rows get no gradient.
class masked_cross_entropy {
public:
    /// @param labels one class per row (rows outside @p rows are not read).
    /// @param rows the rows that count (each at most once, all below N).
    /// @throws tern::error for a row outside the logits, an empty subset, or a bad label.
    float forward(const tensor& logits, const std::vector<int>& labels, const std::vector<std::size_t>& rows) {
        detail::require(logits.dimension() == 2, "masked_cross_entropy: expected logits [rows, classes], got shape ",
                        detail::shape_string(logits.shape()));
        const std::size_t N = logits.shape()[0], C = logits.shape()[1];
        detail::require(labels.size() == N, "masked_cross_entropy: expected ", N, " labels (one per row), got ",
                        labels.size());
        detail::require(!rows.empty(), "masked_cross_entropy: expected at least one row in the mask");
        tensor picked = tensor::from_shape({rows.size(), C});
        std::vector<int> picked_labels(rows.size());
        for (std::size_t i = 0; i < rows.size(); ++i) {
            detail::require(rows[i] < N, "masked_cross_entropy: mask row ", rows[i], " is outside the ", N, " rows");
            std::copy_n(logits.data() + rows[i] * C, C, picked.data() + i * C);
            picked_labels[i] = labels[rows[i]];
        }
        rows_ = rows;
        shape_ = {N, C};
        return inner_.forward(picked, picked_labels);
    }

    /// dL/dlogits [N, C]: the subset's softmax gradient in its rows, zero elsewhere.
    tensor backward() const {
        const tensor g = inner_.backward();
        tensor out = zeros(shape_);
        const std::size_t C = shape_[1];
        for (std::size_t i = 0; i < rows_.size(); ++i) std::copy_n(g.data() + i * C, C, out.data() + rows_[i] * C);
        return out;
    }

private:
    softmax_cross_entropy inner_;
    std::vector<std::size_t> rows_;
    shape_t shape_;
};

/// @brief Mean squared error, averaged over all elements.
class mse_loss {
public:
    float forward(const tensor& prediction, const tensor& target) {
        detail::require(prediction.shape() == target.shape(), "mse_loss: expected target of shape ",
                        detail::shape_string(prediction.shape()), ", got ", detail::shape_string(target.shape()));
        diff_ = prediction - target;
        double s = 0;
        for (float d : diff_) s += double(d) * d;
        const float loss = diff_.size() ? float(s / double(diff_.size())) : 0.0f;
        detail::require(std::isfinite(loss), "mse_loss: the loss is not finite (", loss, ")");
        return loss;
    }

    tensor backward() const {
        tensor g = diff_;
        const float scale = diff_.size() ? 2.0f / float(diff_.size()) : 0.0f;
        for (auto& v : g) v *= scale;
        return g;
    }

private:
    tensor diff_;
};

/// @brief Index of the largest logit of each row of [..., C].
inline std::vector<int> argmax_rows(const tensor& logits) {
    const std::size_t C = logits.shape().back();
    const std::size_t T = C ? logits.size() / C : 0;
    std::vector<int> out(T);
    for (std::size_t t = 0; t < T; ++t) {
        const float* row = logits.data() + t * C;
        out[t] = int(std::max_element(row, row + C) - row);
    }
    return out;
}

}  // namespace tern
