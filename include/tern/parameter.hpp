#pragma once
/// @file parameter.hpp
/// @brief Named views of a model's parameters, gradients and buffers.
///
/// Layers own their tensors; a model hands the optimizer and the checkpoint code a flat list
/// of named references to them (the names are stable: "<layer index>.<name>").

#include <string>
#include <vector>

#include "tensor.hpp"

namespace tern {

/// @brief A reference to one named tensor of a model.
struct parameter {
    std::string name;         ///< e.g. "0.weight"
    tensor* value = nullptr;  ///< the fp32 (shadow) value
    tensor* grad = nullptr;   ///< its gradient; null for buffers such as running statistics
    bool decay = true;        ///< whether decoupled weight decay applies (off for biases and norms)

    bool trainable() const { return grad != nullptr; }
};

using parameter_list = std::vector<parameter>;

/// @brief Sets every gradient in @p params to zero.
inline void zero_gradients(const parameter_list& params) {
    for (const auto& p : params)
        if (p.grad) p.grad->fill(0.0f);
}

/// @brief Number of trainable scalars in @p params.
inline std::size_t count_parameters(const parameter_list& params) {
    std::size_t n = 0;
    for (const auto& p : params)
        if (p.trainable()) n += p.value->size();
    return n;
}

}  // namespace tern
