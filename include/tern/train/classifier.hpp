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

/// @brief One step's share of a data-parallel run, handed to train_options::reduce_gradients.
///
/// Before the hook: this process's rows and sums. After it: the sums over every process, so the
/// loop reports the loss and accuracy of the whole global batch.
struct step_share {
    std::size_t rows = 0;         ///< rows this process trained on (may be 0)
    std::size_t global_rows = 0;  ///< rows of the whole global batch
    double loss_sum = 0;          ///< mean loss over this process's rows times rows
    double correct = 0;           ///< rows whose argmax matched the label
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
    /// Data parallelism: with shard_count W > 1 this process trains on the rows
    /// data::shard_bounds(G, shard_index, W) of every global batch of G rows (every process walks
    /// the same batches in the same order), and reduce_gradients is required.
    std::size_t shard_index = 0;
    std::size_t shard_count = 1;  ///< number of processes sharing each batch
    /// Called after backward and before clipping and the optimizer step. A data-parallel hook (see
    /// tern/distributed/mpi.hpp) scales each gradient by rows / global_rows, sums the gradients and
    /// the share across processes, so every process steps with the gradient of the whole batch.
    std::function<void(const parameter_list&, step_share&)> reduce_gradients = {};
};

/// @brief One pass over @p batches: forward, loss, backward, optimizer step per batch.
/// @param global_step counts optimizer steps across epochs; incremented per batch.
/// @throws tern::error when the loss becomes non-finite (with the step where it happened).
template <class Model, class Optimizer>
epoch_stats train_classifier_epoch(Model& model, softmax_cross_entropy& loss, Optimizer& optimizer,
                                   data::batch_iterator& batches, std::size_t& global_step,
                                   const train_options& options = {}) {
    detail::require(options.shard_count > 0 && options.shard_index < options.shard_count, options.title,
                    ": expected shard_index < shard_count, got ", options.shard_index, " of ", options.shard_count);
    detail::require(options.shard_count == 1 || options.reduce_gradients, options.title,
                    ": shard_count ", options.shard_count, " needs a reduce_gradients hook (or every process "
                    "would step with its own shard's gradient)");
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
        step_share share{.rows = b.size(), .global_rows = b.size()};
        if (options.shard_count > 1) {
            const auto [begin, end] = data::shard_bounds(b.size(), options.shard_index, options.shard_count);
            b = data::slice_rows(b, begin, end);
            share.rows = b.size();
        }
        zero_gradients(params);
        if (share.rows > 0) {  // a process whose shard of a small last batch is empty adds zero gradients
            const tensor logits = model.forward(b.inputs);
            try {
                share.loss_sum = double(loss.forward(logits, b.labels)) * double(share.rows);
            } catch (const error& e) {
                detail::fail(options.title, ", step ", global_step, ": ", e.what());
            }
            tern::backward_parameters(model, loss.backward());
            const auto predicted = argmax_rows(logits);
            for (std::size_t i = 0; i < predicted.size(); ++i) share.correct += predicted[i] == b.labels[i];
        }
        if (options.reduce_gradients) options.reduce_gradients(params, share);
        if (options.clip_norm > 0) clip_grad_norm(params, options.clip_norm);
        optimizer.step();
        ++global_step;
        ++stats.steps;
        loss_sum += share.loss_sum / double(share.global_rows);
        right += std::size_t(std::llround(share.correct));  // a count, summed in floating point
        seen += share.global_rows;
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

/// @brief Evaluates @p model (in evaluation mode) on all of @p data in batches of @p batch_size,
/// then puts it back in the mode it found (model.training(), where the model reports one; else
/// training mode), also when the evaluation throws.
template <class Model>
eval_result evaluate_classifier(Model& model, const data::dataset& data, std::size_t classes,
                                std::size_t batch_size = 500) {
    struct restore_mode {
        Model& model;
        bool training;
        ~restore_mode() { model.set_training(training); }
    } restore{model, detail::training_of(model)};
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
    r.loss = data.size() ? loss_sum / double(data.size()) : 0.0;
    r.accuracy = r.confusion.accuracy();
    return r;
}

}  // namespace tern
