#pragma once
/// @file train/node_classification.hpp
/// @brief Node classification on one graph: train/validation/test node sets, seeded Planetoid and
/// random splits, accuracy per set, and a full-batch training loop with optional early stopping.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <numeric>
#include <random>
#include <vector>

#include "../error.hpp"
#include "../layers/layer.hpp"
#include "../loss.hpp"
#include "../optim/adam.hpp"
#include "../tensor.hpp"

namespace tern {

/// @brief The nodes of each set (a mask given as its node indices, ascending).
struct node_split {
    std::vector<std::size_t> train, validation, test;
};

/// @brief Checks that @p split names nodes below @p nodes, each set non-empty and no node twice.
/// @throws tern::error naming @p where and the offending node.
inline void check_split(const node_split& split, std::size_t nodes, const std::string& where) {
    std::vector<char> seen(nodes, 0);
    const auto check = [&](const std::vector<std::size_t>& set, const char* name) {
        detail::require(!set.empty(), where, ": the ", name, " set is empty");
        for (std::size_t n : set) {
            detail::require(n < nodes, where, ": ", name, " node ", n, " is outside the ", nodes, " nodes");
            detail::require(!seen[n], where, ": node ", n, " is in more than one set (again in ", name, ")");
            seen[n] = 1;
        }
    };
    check(split.train, "train");
    check(split.validation, "validation");
    check(split.test, "test");
}

/// @brief The Planetoid split (Yang et al. 2016, as used for Cora, CiteSeer, PubMed): @p per_class
/// labelled training nodes of every class, then @p validation and @p test nodes from the rest,
/// all drawn with a generator seeded by @p seed. Labels below 0 mark unlabelled nodes, never drawn.
/// @throws tern::error when a class has fewer than @p per_class nodes or too few nodes remain.
inline node_split planetoid_split(const std::vector<int>& labels, std::size_t classes, std::size_t per_class,
                                  std::size_t validation, std::size_t test, std::uint64_t seed) {
    std::mt19937_64 rng(seed);
    std::vector<std::size_t> order(labels.size());
    std::iota(order.begin(), order.end(), std::size_t{0});
    std::shuffle(order.begin(), order.end(), rng);
    node_split s;
    std::vector<std::size_t> taken(classes, 0), rest;
    for (std::size_t n : order) {
        const int y = labels[n];
        if (y < 0) continue;
        detail::require(std::size_t(y) < classes, "planetoid_split: label ", y, " of node ", n, " is not below ", classes);
        if (taken[std::size_t(y)] < per_class) {
            ++taken[std::size_t(y)];
            s.train.push_back(n);
        } else {
            rest.push_back(n);
        }
    }
    for (std::size_t c = 0; c < classes; ++c)
        detail::require(taken[c] == per_class, "planetoid_split: class ", c, " has ", taken[c], " nodes, fewer than the ",
                        per_class, " training nodes per class");
    detail::require(rest.size() >= validation + test, "planetoid_split: ", rest.size(),
                    " labelled nodes remain after training, fewer than ", validation, " validation + ", test, " test");
    s.validation.assign(rest.begin(), rest.begin() + std::ptrdiff_t(validation));
    s.test.assign(rest.begin() + std::ptrdiff_t(validation), rest.begin() + std::ptrdiff_t(validation + test));
    for (auto* set : {&s.train, &s.validation, &s.test}) std::sort(set->begin(), set->end());
    return s;
}

/// @brief A seeded random split of @p count items into train / validation / test by fractions
/// (the rest after train and validation is test), e.g. 0.8 / 0.1.
inline node_split random_split(std::size_t count, double train_fraction, double validation_fraction, std::uint64_t seed) {
    detail::require(train_fraction > 0 && validation_fraction > 0 && train_fraction + validation_fraction < 1,
                    "random_split: expected positive fractions summing below 1, got ", train_fraction, " and ",
                    validation_fraction);
    std::mt19937_64 rng(seed);
    std::vector<std::size_t> order(count);
    std::iota(order.begin(), order.end(), std::size_t{0});
    std::shuffle(order.begin(), order.end(), rng);
    const auto a = std::size_t(double(count) * train_fraction), b = a + std::size_t(double(count) * validation_fraction);
    node_split s;
    s.train.assign(order.begin(), order.begin() + std::ptrdiff_t(a));
    s.validation.assign(order.begin() + std::ptrdiff_t(a), order.begin() + std::ptrdiff_t(b));
    s.test.assign(order.begin() + std::ptrdiff_t(b), order.end());
    for (auto* set : {&s.train, &s.validation, &s.test}) std::sort(set->begin(), set->end());
    return s;
}

/// @brief The fraction of @p rows whose largest logit is their label (0 for no rows).
inline double masked_accuracy(const tensor& logits, const std::vector<int>& labels, const std::vector<std::size_t>& rows) {
    const std::size_t C = logits.shape().back();
    std::size_t right = 0;
    for (std::size_t r : rows) {
        const float* z = logits.data() + r * C;
        right += int(std::max_element(z, z + C) - z) == labels[r];
    }
    return rows.empty() ? 0.0 : double(right) / double(rows.size());
}

/// @brief Full-batch training settings (the SGC and GCN papers' defaults).
struct node_training_options {
    std::size_t epochs = 100;
    float lr = 0.01f;
    float weight_decay = 5e-4f;
    /// Stop after this many epochs without a better validation accuracy and restore the best
    /// parameters; 0 trains every epoch and keeps the last parameters.
    std::size_t patience = 0;
    /// Called after every epoch with (epoch, training loss, validation accuracy).
    std::function<void(std::size_t, float, double)> on_epoch{};
};

/// @brief What a training run reached (accuracies of the parameters the model ends with).
struct node_training_result {
    double train_accuracy = 0, validation_accuracy = 0, test_accuracy = 0;
    float final_loss = 0;
    std::size_t epochs_run = 0, best_epoch = 0;  ///< best_epoch: 0 when no validation ran (no patience, no on_epoch)
};

/// @brief Trains @p model (input: the node features [nodes, F]; output: logits [nodes, C]) on the
/// training nodes of @p split with AdamW and the masked cross-entropy, one full-batch step per
/// epoch, evaluating the validation accuracy after each (in evaluation mode: no dropout).
/// @throws tern::error for a bad split, labels of the wrong count, or a diverging loss.
template <class Model>
node_training_result train_node_classifier(Model& model, const tensor& features, const std::vector<int>& labels,
                                           const node_split& split, const node_training_options& options = {}) {
    const std::size_t nodes = features.dimension() == 2 ? features.shape()[0] : 0;
    detail::require(nodes > 0, "train_node_classifier: expected node features [nodes, features], got shape ",
                    detail::shape_string(features.shape()));
    detail::require(labels.size() == nodes, "train_node_classifier: expected ", nodes, " labels, got ", labels.size());
    check_split(split, nodes, "train_node_classifier");
    parameter_list params;
    detail::collect_parameters_of(model, params, "");
    adamw opt(params, {.lr = options.lr, .weight_decay = options.weight_decay});
    masked_cross_entropy loss;
    node_training_result result;
    double best = -1;
    std::vector<tensor> best_values;
    const auto evaluate = [&] {
        detail::set_training_of(model, false);
        const tensor logits = model.forward(features);
        detail::set_training_of(model, true);
        return logits;
    };
    for (std::size_t epoch = 1; epoch <= options.epochs; ++epoch) {
        detail::set_training_of(model, true);
        opt.zero_grad();
        result.final_loss = loss.forward(model.forward(features), labels, split.train);
        backward_parameters(model, loss.backward());
        opt.step();
        result.epochs_run = epoch;
        if (!options.patience && !options.on_epoch) continue;  // nobody reads the validation accuracy
        const double val = masked_accuracy(evaluate(), labels, split.validation);
        if (options.on_epoch) options.on_epoch(epoch, result.final_loss, val);
        if (val > best) {
            best = val;
            result.best_epoch = epoch;
            if (options.patience) {
                best_values.clear();
                for (const auto& p : params) best_values.push_back(*p.value);
            }
        } else if (options.patience && epoch - result.best_epoch >= options.patience) {
            break;
        }
    }
    if (options.patience)
        for (std::size_t i = 0; i < params.size(); ++i) *params[i].value = best_values[i];
    const tensor logits = evaluate();
    result.train_accuracy = masked_accuracy(logits, labels, split.train);
    result.validation_accuracy = masked_accuracy(logits, labels, split.validation);
    result.test_accuracy = masked_accuracy(logits, labels, split.test);
    return result;
}

}  // namespace tern
