#pragma once
/// @file layers/flatten.hpp
/// @brief Flattens [B, d1, d2, ...] to [B, d1*d2*...].

#include <algorithm>
#include <string>

#include "../io/layer_io.hpp"
#include "../policy.hpp"
#include "../tensor.hpp"

namespace tern {

/// @brief Keeps the first axis and merges the rest.
/// @tparam Policy fp32 (trains: keeps the input shape for backward) or frozen<fp32> (forward only).
template <class Policy = fp32>
class basic_flatten {
    static_assert(fixed_precision_policy<Policy>, "tern::basic_flatten: Policy must be tern::fp32 or tern::frozen<tern::fp32>");

public:
    static constexpr bool parameter_free = true;
    static constexpr bool trainable = trainable_policy<Policy>;
    template <class T>
    using transform = basic_flatten<fixed_policy_t<T>>;
    basic_flatten() = default;
    template <class Q>
    explicit basic_flatten(const basic_flatten<Q>&) {}

    void forward(const tensor& x, tensor& y) {
        detail::require(x.dimension() >= 1, "flatten: expected a tensor with a batch axis, got a scalar");
        if constexpr (trainable) input_shape_.assign(x.shape().begin(), x.shape().end());
        const std::size_t batch = x.shape()[0], per = batch ? x.size() / batch : 0;
        if (y.dimension() != 2 || y.shape()[0] != batch || y.shape()[1] != per) y.resize({batch, per});
        std::copy(x.data(), x.data() + x.size(), y.data());
    }
    /// Whether forward would return a copy of @p x (a batch that is flat already): the run-time
    /// model then passes x on instead.
    static bool copies_unchanged(const tensor& x) { return x.dimension() == 2; }
    tensor forward(const tensor& x) {
        tensor y;
        forward(x, y);
        return y;
    }

    tensor backward(const tensor& grad_output)
        requires trainable
    {
        std::size_t n = 1;
        for (auto d : input_shape_) n *= d;
        detail::require(grad_output.size() == n, "flatten: expected output gradient with ", n, " elements, got ",
                        grad_output.size());
        tensor dx = grad_output;
        dx.reshape(input_shape_);
        return dx;
    }

    std::string describe() const { return "flatten"; }
    static constexpr const char* kind() { return "flatten"; }
    nlohmann::json config() const { return {{"kind", kind()}}; }
    static basic_flatten load(const layer_reader&) { return basic_flatten{}; }
    feature_info propagate(feature_info in, const std::string&) const { return {in.total, in.total}; }

private:
    [[no_unique_address]] training_only<Policy, shape_t> input_shape_{};
};

/// @brief flatten that trains (the frozen form is basic_flatten<frozen<fp32>>).
using flatten = basic_flatten<>;

}  // namespace tern
