#pragma once
/// @file train/classifier.hpp
/// @brief The training and evaluation loops for classifiers (used by the MLP and CNN examples).

#include <chrono>
#include <cmath>
#include <functional>
#include <string>

#include "../data/batches.hpp"
#include "../layers/layer.hpp"
#include "../loss.hpp"
#include "../optim/clip.hpp"
#include "metrics.hpp"
#include "progress.hpp"

namespace tern {

/// @brief What one training epoch measured.
struct epoch_stats {
    double loss = 0;          ///< mean training loss over the epoch's batches
    double accuracy = 0;      ///< training accuracy over the epoch
    double seconds = 0;
    double samples_per_s = 0;
    std::size_t steps = 0;
};

/// @brief Options of train_classifier_epoch.
struct train_options {
    std::string title = "train";      ///< progress-bar label, e.g. "epoch 1/5"
    bool show_progress = true;
    float clip_norm = 0.0f;           ///< clip gradients to this global norm; 0 = off
    /// Called before each step with the global step index (to set the learning rate, lambda, ...).
    std::function<void(std::size_t)> before_step = {};
    /// Called on each batch before the forward pass (e.g. image augmentation in place).
    std::function<void(data::batch&)> prepare_batch = {};
    /// Stop before this global step, leaving the rest of the epoch in @p batches (e.g. to switch
    /// policy mid-epoch and continue the same epoch with the converted model).
    std::size_t stop_at = static_cast<std::size_t>(-1);
};

/// @brief One pass over @p batches: forward, loss, backward, optimizer step per batch.
/// @param global_step counts optimizer steps across epochs; incremented per batch.
/// @throws tern::error when the loss becomes non-finite (with the step where it happened).
template <class Model, class Optimizer>
epoch_stats train_classifier_epoch(Model& model, softmax_cross_entropy& loss, Optimizer& optimizer,
                                   data::batch_iterator& batches, std::size_t& global_step,
                                   const train_options& options = {}) {
    model.set_training(true);
    const auto params = model.parameters();
    progress_bar bar(options.title, batches.batches_per_epoch());
    const auto start = std::chrono::steady_clock::now();
    epoch_stats stats;
    double loss_sum = 0;
    std::size_t right = 0, seen = 0;
    data::batch b;
    while (global_step < options.stop_at && batches.next(b)) {
        if (options.before_step) options.before_step(global_step);
        if (options.prepare_batch) options.prepare_batch(b);
        zero_gradients(params);
        const tensor logits = model.forward(b.inputs);
        float value;
        try {
            value = loss.forward(logits, b.labels);
        } catch (const error& e) {
            detail::fail(options.title, ", step ", global_step, ": ", e.what());
        }
        tern::backward_parameters(model, loss.backward());
        if (options.clip_norm > 0) clip_grad_norm(params, options.clip_norm);
        optimizer.step();
        ++global_step;
        ++stats.steps;
        loss_sum += value;
        const auto predicted = argmax_rows(logits);
        for (std::size_t i = 0; i < predicted.size(); ++i) right += predicted[i] == b.labels[i];
        seen += b.size();
        if (options.show_progress)
            bar.update(stats.steps, loss_sum / double(stats.steps), double(right) / double(seen), double(seen));
    }
    if (options.show_progress) bar.finish();
    stats.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    stats.loss = stats.steps ? loss_sum / double(stats.steps) : 0.0;
    stats.accuracy = seen ? double(right) / double(seen) : 0.0;
    stats.samples_per_s = stats.seconds > 0 ? double(seen) / stats.seconds : 0.0;
    return stats;
}

/// @brief What an evaluation measured.
struct eval_result {
    double loss = 0;
    double accuracy = 0;
    confusion_matrix confusion{1};
};

/// @brief Evaluates @p model (in evaluation mode) on all of @p data in batches of @p batch_size.
template <class Model>
eval_result evaluate_classifier(Model& model, const data::dataset& data, std::size_t classes,
                                std::size_t batch_size = 500) {
    model.set_training(false);
    data::batch_iterator it(data, {.batch_size = batch_size, .shuffle = false});
    softmax_cross_entropy loss;
    eval_result r;
    r.confusion = confusion_matrix(classes);
    double loss_sum = 0;
    data::batch b;
    while (it.next(b)) {
        const tensor logits = model.forward(b.inputs);
        detail::require(logits.shape().back() == classes, "evaluate_classifier: the model outputs ",
                        logits.shape().back(), " classes, expected ", classes);
        loss_sum += double(loss.forward(logits, b.labels)) * double(b.size());
        r.confusion.add(b.labels, argmax_rows(logits));
    }
    model.set_training(true);
    r.loss = data.size() ? loss_sum / double(data.size()) : 0.0;
    r.accuracy = r.confusion.accuracy();
    return r;
}

}  // namespace tern
