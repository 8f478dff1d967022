#pragma once
/// @file tensor.hpp
/// @brief The tensor type tern passes between layers, and small shape helpers.
///
/// Data lives in xtensor containers (row-major, contiguous); kernels work on `.data()`.

#include <cstddef>
#include <string>
#include <vector>

#include <xtensor/xadapt.hpp>
#include <xtensor/xarray.hpp>
#include <xtensor/xbuilder.hpp>

#include "error.hpp"

namespace tern {

/// @brief Dynamic-rank fp32 tensor, row-major. The last axis is the feature axis.
using tensor = xt::xarray<float, xt::layout_type::row_major>;
using shape_t = std::vector<std::size_t>;

namespace detail {

inline std::string shape_string(const auto& shape) {
    std::string s = "[";
    bool first = true;
    for (auto d : shape) {
        if (!first) s += ", ";
        s += std::to_string(d);
        first = false;
    }
    return s + "]";
}

inline shape_t to_shape(const auto& shape) { return shape_t(shape.begin(), shape.end()); }

/// Number of tokens (product of all axes but the last) of a tensor whose last axis has @p features.
inline std::size_t token_count(const tensor& x, std::size_t features, const char* where) {
    require(x.dimension() >= 1 && x.shape().back() == features, where, ": expected input with last axis ",
            features, ", got shape ", shape_string(x.shape()));
    return features == 0 ? 0 : x.size() / features;
}

/// The shape of @p x with its last axis replaced by @p last.
inline shape_t with_last_axis(const tensor& x, std::size_t last) {
    shape_t s = to_shape(x.shape());
    s.back() = last;
    return s;
}

/// Makes @p y hold shape @p x.shape() with the last axis replaced by @p last (no allocation when
/// the shape is unchanged).
inline void shape_like(tensor& y, const tensor& x, std::size_t last) {
    bool same = y.dimension() == x.dimension();
    for (std::size_t i = 0; same && i + 1 < x.dimension(); ++i) same = y.shape()[i] == x.shape()[i];
    if (same && x.dimension() > 0) same = y.shape()[x.dimension() - 1] == last;
    if (!same) y.resize(with_last_axis(x, last));
}

}  // namespace detail

/// @brief A zero-filled tensor of the given shape.
inline tensor zeros(const shape_t& shape) { return tensor(shape, 0.0f); }

}  // namespace tern
