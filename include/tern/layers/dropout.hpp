#pragma once
/// @file layers/dropout.hpp
/// @brief Inverted dropout: in training, zero each element with probability p and scale the rest by 1/(1-p).

#include <random>
#include <string>
#include <vector>

#include <type_traits>

#include "../random.hpp"
#include "../tensor.hpp"
#include "identity.hpp"

namespace tern {

/// @brief Dropout with probability @p p; the identity in evaluation mode.
/// @throws tern::error if p is not in [0, 1).
class dropout {
public:
    /// Dropout does nothing at inference: tern::freeze drops it (its frozen form is identity).
    static constexpr bool identity_when_frozen = true;
    static constexpr bool parameter_free = true;
    template <class T>
    using transform = std::conditional_t<T::freezing, identity, dropout>;

    explicit dropout(float p = 0.1f) : p_(p), rng_(global_rng()()) {
        detail::require(p >= 0.0f && p < 1.0f, "dropout: expected probability in [0, 1), got ", p);
    }

    void set_training(bool training) { training_ = training; }

    tensor forward(const tensor& x) {
        if (!training_ || p_ == 0.0f) {
            mask_.clear();
            return x;
        }
        mask_.resize(x.size());
        std::bernoulli_distribution keep(1.0 - double(p_));
        const float scale = 1.0f / (1.0f - p_);
        tensor y(detail::to_shape(x.shape()));
        for (std::size_t i = 0; i < x.size(); ++i) {
            mask_[i] = keep(rng_) ? scale : 0.0f;
            y.data()[i] = x.data()[i] * mask_[i];
        }
        return y;
    }

    tensor backward(const tensor& grad_output) {
        if (mask_.empty()) return grad_output;
        detail::require(grad_output.size() == mask_.size(), "dropout: expected output gradient with ", mask_.size(),
                        " elements, got ", grad_output.size());
        tensor dx(detail::to_shape(grad_output.shape()));
        for (std::size_t i = 0; i < mask_.size(); ++i) dx.data()[i] = grad_output.data()[i] * mask_[i];
        return dx;
    }

    std::string describe() const { return "dropout(" + std::to_string(p_) + ")"; }

private:
    float p_;
    bool training_ = true;
    std::mt19937_64 rng_;
    std::vector<float> mask_;
};

}  // namespace tern
