#pragma once
/// @file optim/optimizer.hpp
/// @brief What SGD and Adam share: the parameter list, the learning rate, the step count, and
/// per-parameter state tensors that can be saved, loaded, kept or reset.

#include <charconv>
#include <cstddef>
#include <string>
#include <system_error>
#include <utility>
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
        require(count_trainable(params) == trainable_.size(), kind_, ": cannot rebind to a model with ",
                count_trainable(params), " trainable tensors; the optimizer has ", trainable_.size());
        std::size_t i = 0;
        for (const auto& p : params) {
            if (!p.trainable()) continue;
            // Names and shapes are the optimizer's own copies: the old model may be gone (moved).
            const std::string& name = names_[i];
            const shape_t& shape = shapes_[i++];
            require(p.name == name && to_shape(p.value->shape()) == shape, kind_, ": cannot rebind: expected parameter '",
                    name, "' of shape ", shape_string(shape), ", got '", p.name, "' of shape ",
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
                out.put("optimizer." + std::to_string(s) + "." + names_[i], state_[i][s]);
    }

    /// What load_state reads from a file, decoded and checked but not yet applied.
    struct decoded_state {
        std::size_t step = 0;
        std::vector<std::vector<tensor>> state;
    };

    /// Restores what save_state wrote; every tensor must be present with the right shape.
    /// The optimizer is unchanged when this throws.
    void load_state(const io::safetensors_data& in) { commit_state(decode_state(in)); }

    /// Reads and checks the state in @p in without changing the optimizer (the first half of
    /// load_state; a checkpoint load decodes the model and the optimizer before it changes either).
    decoded_state decode_state(const io::safetensors_data& in) const {
        auto kind = in.metadata.find("optimizer");
        require(kind != in.metadata.end(), kind_, ": the checkpoint holds no optimizer state");
        require(kind->second == kind_, "optimizer state: expected '", kind_, "', the checkpoint holds ",
                io::detail::quote(kind->second));
        auto step = in.metadata.find("optimizer.step");
        require(step != in.metadata.end(), kind_, ": the checkpoint has no optimizer.step");
        decoded_state out;
        const std::string& text = step->second;
        const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), out.step);
        require(!text.empty() && ec == std::errc() && end == text.data() + text.size(), kind_,
                ": optimizer.step must be a whole number, got ", io::detail::quote(text));
        out.state.resize(trainable_.size());
        for (std::size_t i = 0; i < trainable_.size(); ++i)
            for (std::size_t s = 0; s < slots_; ++s)
                out.state[i].push_back(in.get_f32("optimizer." + std::to_string(s) + "." + names_[i], shapes_[i]));
        return out;
    }

    /// Applies what decode_state returned (moves only, nothing that can fail).
    void commit_state(decoded_state&& d) noexcept {
        state_ = std::move(d.state);
        step_ = d.step;
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
        names_.clear();
        shapes_.clear();
        state_.clear();
        for (std::size_t i = 0; i < params_.size(); ++i) {
            const parameter& p = params_[i];
            if (!p.trainable()) continue;
            trainable_.push_back(i);
            names_.push_back(p.name);
            shapes_.push_back(to_shape(p.value->shape()));
            state_.emplace_back(slots_, zeros(shapes_.back()));
        }
    }

    std::string kind_;
    std::size_t slots_;
    float lr_;
    std::size_t step_ = 0;
    parameter_list params_;
    /// The trainable parameters' positions in params_ (indices, not pointers: a copy of the
    /// optimizer stays valid when the original is gone), names and shapes.
    std::vector<std::size_t> trainable_;
    std::vector<std::string> names_;
    std::vector<shape_t> shapes_;
    std::vector<std::vector<tensor>> state_;  // [trainable parameter][slot]

    /// The i-th trainable parameter.
    const parameter& trainable_parameter(std::size_t i) const { return params_[trainable_[i]]; }
};

}  // namespace tern::detail
