#pragma once
// Finite-difference gradient checks for any tern layer (the analogue of dlib's test_layer()).
//
// The scalar L = sum(forward(x) * g) for a fixed random g, summed in double; backward(g) must give
// dL/dx and accumulate dL/dparam. EVERY entry of the input and of every trainable parameter is
// compared (the layers under test are small) with a fourth-order central difference,
//   (8 (L(t+h) - L(t-h)) - (L(t+2h) - L(t-2h))) / (12 h),
// whose truncation error is O(h^4), so a step large enough to keep float rounding small (h = 1e-2)
// still gives the derivative to about 1e-5. The error |analytic - numeric| / max(1, |numeric|)
// (relative for gradients of magnitude 1 and more, absolute below) must be under 1e-3.
#include <catch2/catch.hpp>
#include <cmath>
#include <random>
#include <string>

#include "tern/layers/layer.hpp"
#include "tern/tensor.hpp"

namespace tern_test {

inline tern::tensor random_tensor(const tern::shape_t& shape, std::uint64_t seed, float scale = 1.0f) {
    tern::tensor t(shape);
    std::mt19937_64 rng(seed);
    std::normal_distribution<float> dist(0.0f, scale);
    for (auto& v : t) v = dist(rng);
    return t;
}

template <class Layer>
double weighted_output(Layer& layer, const tern::tensor& x, const tern::tensor& g) {
    tern::tensor y = layer.forward(x);
    REQUIRE(y.shape() == g.shape());
    double s = 0;
    for (std::size_t i = 0; i < y.size(); ++i) s += double(y.data()[i]) * g.data()[i];
    return s;
}

struct gradcheck_options {
    float step = 1e-2f;  // finite-difference step h (the stencil reaches t +- 2h)
    double tol = 1e-3;   // max |analytic - numeric| / max(1, |numeric|)
};

inline void compare(const std::string& what, double analytic, double numeric, double tol) {
    const double err = std::fabs(analytic - numeric) / std::max(1.0, std::fabs(numeric));
    INFO(what << ": analytic " << analytic << ", numeric " << numeric);
    CHECK(err < tol);
}

/// Checks dL/dx and every trainable parameter's gradient of @p layer at input @p x.
template <class Layer>
void gradcheck(Layer& layer, tern::tensor x, gradcheck_options opt = {}, std::uint64_t seed = 7) {
    tern::tensor y0 = layer.forward(x);
    const tern::tensor g = random_tensor(tern::detail::to_shape(y0.shape()), seed + 1);
    tern::parameter_list params;
    tern::detail::collect_parameters_of(layer, params, "");
    for (auto& p : params)
        if (p.grad) p.grad->fill(0.0f);
    layer.forward(x);
    const tern::tensor dx = layer.backward(g);
    REQUIRE(dx.shape() == x.shape());

    // Fourth-order central difference of L in the entry @p v (restored afterwards).
    const auto numeric = [&](float& v) {
        const float keep = v;
        const auto at = [&](float t) {
            v = t;
            return weighted_output(layer, x, g);
        };
        const double h = opt.step;
        const double d1 = at(keep + opt.step) - at(keep - opt.step);
        const double d2 = at(keep + 2 * opt.step) - at(keep - 2 * opt.step);
        v = keep;
        return (8.0 * d1 - d2) / (12.0 * h);
    };
    for (std::size_t i = 0; i < x.size(); ++i)
        compare("dx[" + std::to_string(i) + "]", dx.data()[i], numeric(x.data()[i]), opt.tol);
    for (auto& p : params) {
        if (!p.grad) continue;
        const tern::tensor analytic = *p.grad;
        for (std::size_t i = 0; i < p.value->size(); ++i)
            compare(p.name + "[" + std::to_string(i) + "]", analytic.data()[i], numeric(p.value->data()[i]), opt.tol);
    }
}

}  // namespace tern_test
