#pragma once
/// @file batches.hpp
/// @brief Labelled data sets, seeded mini-batch iteration and a deterministic validation split.
///
/// Shuffling uses std::mt19937_64 (fully specified by the standard) and a hand-written
/// Fisher-Yates with rejection sampling, so the same seed gives the same order with every
/// standard library (std::shuffle and std::uniform_int_distribution are implementation-defined).

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <random>
#include <utility>
#include <vector>

#include "../error.hpp"
#include "../tensor.hpp"

namespace tern::data {

namespace detail {
// tern's shared checks and shape helpers (require, fail, shape_string, ...) are used from here.
using namespace ::tern::detail;
}  // namespace detail

/// @brief Inputs [n, ...] with one integer label per row.
struct dataset {
    tensor inputs;
    std::vector<int> labels;

    /// @brief Number of samples (rows of inputs).
    std::size_t size() const { return labels.size(); }
};

/// @brief One mini-batch: copies of the selected rows, shape [b, ...], and their labels.
struct batch {
    tensor inputs;
    std::vector<int> labels;

    std::size_t size() const { return labels.size(); }
};

/// @brief How a batch_iterator walks the data.
struct batch_options {
    std::size_t batch_size = 32;
    bool shuffle = true;       ///< Reorder the samples at the start of every epoch.
    std::uint64_t seed = 0;    ///< Same seed and epoch number -> same order.
    bool drop_last = false;    ///< Skip the final batch when it would be smaller than batch_size.
};

namespace detail {

/// Checks that @p inputs has a leading sample axis matching @p labels; returns the row length.
inline std::size_t row_length(const tensor& inputs, const std::vector<int>& labels, const char* where) {
    require(inputs.dimension() >= 1, where, ": expected inputs with a leading sample axis, got shape ",
            shape_string(inputs.shape()));
    require(inputs.shape()[0] == labels.size(), where, ": inputs have ", inputs.shape()[0],
            " rows (shape ", shape_string(inputs.shape()), ") but there are ", labels.size(), " labels");
    return labels.empty() ? 0 : inputs.size() / labels.size();
}

/// Uniform integer in [0, bound) without modulo bias; bound > 0.
inline std::uint64_t uniform_below(std::mt19937_64& rng, std::uint64_t bound) {
    // Reject the top partial block of the 64-bit range so every residue is equally likely.
    const std::uint64_t limit = std::uint64_t(-1) - (std::uint64_t(-1) % bound);
    std::uint64_t r;
    do r = rng(); while (r >= limit);
    return r % bound;
}

/// In-place Fisher-Yates shuffle, identical on every platform for a given generator state.
inline void shuffle_indices(std::vector<std::size_t>& idx, std::mt19937_64& rng) {
    for (std::size_t i = idx.size(); i > 1; --i) {
        const auto j = static_cast<std::size_t>(uniform_below(rng, i));
        std::swap(idx[i - 1], idx[j]);
    }
}

/// Mixes seed and epoch (splitmix64 finaliser) so each epoch gets an unrelated, reproducible stream.
inline std::uint64_t mix_seed(std::uint64_t seed, std::uint64_t epoch) {
    std::uint64_t z = seed + 0x9e3779b97f4a7c15ULL * (epoch + 1);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

}  // namespace detail

/// @brief Copies the rows @p indices of (@p inputs, @p labels) into a new data set, in that order.
/// @throws tern::error if inputs and labels disagree on the sample count or an index is out of range.
inline dataset gather_rows(const tensor& inputs, const std::vector<int>& labels,
                           const std::vector<std::size_t>& indices) {
    const std::size_t row = detail::row_length(inputs, labels, "gather_rows");
    shape_t shape = detail::to_shape(inputs.shape());
    shape[0] = indices.size();
    dataset out{tensor::from_shape(shape), std::vector<int>(indices.size())};
    for (std::size_t k = 0; k < indices.size(); ++k) {
        const std::size_t i = indices[k];
        detail::require(i < labels.size(), "gather_rows: index ", i, " out of range for ", labels.size(),
                        " samples");
        if (row > 0) std::memcpy(out.inputs.data() + k * row, inputs.data() + i * row, row * sizeof(float));
        out.labels[k] = labels[i];
    }
    return out;
}

/// @brief The rows [first, second) of a global batch of @p rows that part @p index of @p count
/// takes: part r of W gets [r*rows/W, (r+1)*rows/W), so the parts tile the batch in order and
/// differ in size by at most one row (a part may be empty when rows < count).
/// @throws tern::error if count is 0 or index >= count.
inline std::pair<std::size_t, std::size_t> shard_bounds(std::size_t rows, std::size_t index, std::size_t count) {
    detail::require(count > 0 && index < count, "shard_bounds: expected part index < count, got part ", index,
                    " of ", count);
    return {rows * index / count, rows * (index + 1) / count};
}

/// @brief A copy of the rows [begin, end) of @p b (inputs and labels).
/// @throws tern::error if the range does not lie within the batch.
inline batch slice_rows(const batch& b, std::size_t begin, std::size_t end) {
    const std::size_t row = detail::row_length(b.inputs, b.labels, "slice_rows");
    detail::require(begin <= end && end <= b.size(), "slice_rows: rows [", begin, ", ", end,
                    ") do not lie within a batch of ", b.size());
    shape_t shape = detail::to_shape(b.inputs.shape());
    shape[0] = end - begin;
    batch out{tensor::from_shape(shape), std::vector<int>(b.labels.begin() + std::ptrdiff_t(begin),
                                                          b.labels.begin() + std::ptrdiff_t(end))};
    if (row > 0 && end > begin)
        std::memcpy(out.inputs.data(), b.inputs.data() + begin * row, (end - begin) * row * sizeof(float));
    return out;
}

/// @brief Walks (inputs [n, ...], labels) in mini-batches, optionally reshuffled each epoch.
///
/// Holds references to the inputs and labels: they must outlive the iterator (temporaries are
/// rejected at compile time). Usage:
/// @code
///   data::batch_iterator it(train.inputs, train.labels, {.batch_size = 64, .seed = 7});
///   for (std::uint64_t epoch = 0; epoch < 10; ++epoch) {
///       it.begin_epoch(epoch);
///       data::batch b;
///       while (it.next(b)) { /* b.inputs: [<=64, ...], b.labels */ }
///   }
/// @endcode
class batch_iterator {
public:
    /// @brief Iterates over @p inputs [n, ...] and @p labels (n entries).
    /// @throws tern::error if batch_size is 0 or inputs and labels disagree on n.
    batch_iterator(const tensor& inputs, const std::vector<int>& labels, batch_options options)
        : inputs_(&inputs), labels_(&labels), options_(options) {
        row_ = detail::row_length(inputs, labels, "batch_iterator");
        detail::require(options.batch_size > 0, "batch_iterator: batch_size must be at least 1, got 0");
        begin_epoch(0);
    }
    /// @brief Iterates over @p data; @p data must outlive the iterator.
    batch_iterator(const dataset& data, batch_options options)
        : batch_iterator(data.inputs, data.labels, options) {}

    // The iterator keeps pointers: binding it to a temporary would dangle.
    batch_iterator(const tensor&&, const std::vector<int>&, batch_options) = delete;
    batch_iterator(const tensor&, const std::vector<int>&&, batch_options) = delete;
    batch_iterator(const tensor&&, const std::vector<int>&&, batch_options) = delete;
    batch_iterator(const dataset&&, batch_options) = delete;

    /// @brief Restarts at the first batch of epoch @p epoch; with shuffle on, the order is a pure
    /// function of (seed, epoch), so epochs can be replayed or resumed in any order.
    void begin_epoch(std::uint64_t epoch) {
        order_.resize(labels_->size());
        for (std::size_t i = 0; i < order_.size(); ++i) order_[i] = i;
        if (options_.shuffle) {
            std::mt19937_64 rng(detail::mix_seed(options_.seed, epoch));
            detail::shuffle_indices(order_, rng);
        }
        pos_ = 0;
        epoch_ = epoch;
    }

    /// @brief Fills @p out with the next batch of the current epoch; returns false (and leaves
    /// @p out unchanged) when the epoch is exhausted.
    bool next(batch& out) {
        const std::size_t n = order_.size();
        if (pos_ >= n) return false;
        const std::size_t b = std::min(options_.batch_size, n - pos_);
        if (b < options_.batch_size && options_.drop_last) {
            pos_ = n;
            return false;
        }
        shape_t shape = detail::to_shape(inputs_->shape());
        shape[0] = b;
        out.inputs = tensor::from_shape(shape);
        out.labels.resize(b);
        for (std::size_t k = 0; k < b; ++k) {
            const std::size_t i = order_[pos_ + k];
            if (row_ > 0)
                std::memcpy(out.inputs.data() + k * row_, inputs_->data() + i * row_, row_ * sizeof(float));
            out.labels[k] = (*labels_)[i];
        }
        pos_ += b;
        return true;
    }

    /// @brief Number of batches next() yields per epoch.
    std::size_t batches_per_epoch() const {
        const std::size_t n = order_.size(), bs = options_.batch_size;
        return options_.drop_last ? n / bs : (n + bs - 1) / bs;
    }
    /// @brief Sample order of the current epoch (indices into the inputs).
    const std::vector<std::size_t>& order() const { return order_; }
    /// @brief The epoch last started with begin_epoch (0 after construction).
    std::uint64_t epoch() const { return epoch_; }
    /// @brief The options the iterator was built with.
    const batch_options& options() const { return options_; }

private:
    const tensor* inputs_;
    const std::vector<int>* labels_;
    batch_options options_;
    std::size_t row_ = 0;
    std::vector<std::size_t> order_;
    std::size_t pos_ = 0;
    std::uint64_t epoch_ = 0;
};

/// @brief Result of split_validation: disjoint training and validation subsets.
struct split_result {
    dataset train;
    dataset validation;
};

/// @brief Splits @p validation_count samples of @p data off into a validation set, chosen by a
/// seeded shuffle (same seed -> same split). Both parts keep the original relative order.
/// @throws tern::error if validation_count exceeds the number of samples.
inline split_result split_validation(const dataset& data, std::size_t validation_count, std::uint64_t seed) {
    const std::size_t n = data.size();
    detail::row_length(data.inputs, data.labels, "split_validation");
    detail::require(validation_count <= n, "split_validation: asked for ", validation_count,
                    " validation samples but the data set has only ", n);
    std::vector<std::size_t> perm(n);
    for (std::size_t i = 0; i < n; ++i) perm[i] = i;
    std::mt19937_64 rng(detail::mix_seed(seed, ~std::uint64_t(0)));
    detail::shuffle_indices(perm, rng);
    std::vector<char> is_val(n, 0);
    for (std::size_t k = 0; k < validation_count; ++k) is_val[perm[k]] = 1;
    std::vector<std::size_t> train_idx, val_idx;
    train_idx.reserve(n - validation_count);
    val_idx.reserve(validation_count);
    for (std::size_t i = 0; i < n; ++i) (is_val[i] ? val_idx : train_idx).push_back(i);
    return {gather_rows(data.inputs, data.labels, train_idx), gather_rows(data.inputs, data.labels, val_idx)};
}

}  // namespace tern::data
