#pragma once
/// @file optim/optimizer.hpp
/// @brief What SGD and Adam share: the parameter list, the learning rate, the step count, and
/// per-parameter state tensors that can be saved, loaded, kept or reset.

#include <cstddef>
#include <string>
#include <vector>

#include "../io/safetensors.hpp"
#include "../parameter.hpp"

namespace tern::detail {

class optimizer_base {
public:
    optimizer_base(parameter_list params, float lr, std::size_t state_slots, std::string kind)
        : kind_(std::move(kind)), slots_(state_slots), lr_(lr) {
        require(lr >= 0.0f, kind_, ": expected a non-negative learning rate, got ", lr);
        bind(std::move(params));
    }

    float learning_rate() const { return lr_; }
    void set_learning_rate(float lr) {
        require(lr >= 0.0f, kind_, ": expected a non-negative learning rate, got ", lr);
        lr_ = lr;
    }
    /// Number of update steps taken so far.
    std::size_t steps() const { return step_; }
    const parameter_list& parameters() const { return params_; }
    void zero_grad() { zero_gradients(params_); }

    /// Points the optimizer at the parameters of another model with the same names and shapes
    /// (the same model in another policy), keeping every state tensor and the step count.
    void rebind(parameter_list params) {
        std::vector<const parameter*> old_trainable = trainable_;
        require(count_trainable(params) == old_trainable.size(), kind_, ": cannot rebind to a model with ",
                count_trainable(params), " trainable tensors; the optimizer has ", old_trainable.size());
        std::size_t i = 0;
        for (const auto& p : params) {
            if (!p.trainable()) continue;
            const parameter& before = *old_trainable[i++];
            require(p.name == before.name && p.value->shape() == before.value->shape(), kind_,
                    ": cannot rebind: expected parameter '", before.name, "' of shape ",
                    shape_string(before.value->shape()), ", got '", p.name, "' of shape ",
                    shape_string(p.value->shape()));
        }
        std::vector<std::vector<tensor>> kept = std::move(state_);
        bind(std::move(params));
        state_ = std::move(kept);
    }

    /// Forgets all moments and the step count (the "reset" branch of continual QAT).
    void reset_state() {
        step_ = 0;
        for (auto& per_param : state_)
            for (auto& t : per_param) t.fill(0.0f);
    }

    /// Adds "optimizer.<slot>.<name>" tensors and the step count to @p out.
    void save_state(io::safetensors_data& out) const {
        out.metadata["optimizer"] = kind_;
        out.metadata["optimizer.step"] = std::to_string(step_);
        for (std::size_t i = 0; i < trainable_.size(); ++i)
            for (std::size_t s = 0; s < slots_; ++s)
                out.put("optimizer." + std::to_string(s) + "." + trainable_[i]->name, state_[i][s]);
    }

    /// Restores what save_state wrote; every tensor must be present with the right shape.
    void load_state(const io::safetensors_data& in) {
        auto kind = in.metadata.find("optimizer");
        require(kind != in.metadata.end(), kind_, ": the checkpoint holds no optimizer state");
        require(kind->second == kind_, "optimizer state: expected '", kind_, "', the checkpoint holds '",
                kind->second, "'");
        auto step = in.metadata.find("optimizer.step");
        require(step != in.metadata.end(), kind_, ": the checkpoint has no optimizer.step");
        std::size_t parsed = 0;
        try {
            parsed = std::stoull(step->second);
        } catch (const std::exception&) {
            fail(kind_, ": optimizer.step must be a whole number, got '", step->second, "'");
        }
        for (std::size_t i = 0; i < trainable_.size(); ++i)
            for (std::size_t s = 0; s < slots_; ++s)
                state_[i][s] = in.get_f32("optimizer." + std::to_string(s) + "." + trainable_[i]->name,
                                          to_shape(trainable_[i]->value->shape()));
        step_ = parsed;
    }

protected:
    static std::size_t count_trainable(const parameter_list& params) {
        std::size_t n = 0;
        for (const auto& p : params) n += p.trainable();
        return n;
    }

    void bind(parameter_list params) {
        params_ = std::move(params);
        trainable_.clear();
        state_.clear();
        for (const auto& p : params_) {
            if (!p.trainable()) continue;
            trainable_.push_back(&p);
            state_.emplace_back(slots_, zeros(to_shape(p.value->shape())));
        }
    }

    std::string kind_;
    std::size_t slots_;
    float lr_;
    std::size_t step_ = 0;
    parameter_list params_;
    std::vector<const parameter*> trainable_;
    std::vector<std::vector<tensor>> state_;  // [trainable parameter][slot]
};

}  // namespace tern::detail
