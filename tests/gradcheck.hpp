#pragma once
// Finite-difference gradient checks for any tern layer (the analogue of dlib's test_layer()).
//
// The scalar L = sum(forward(x) * g) for a fixed random g; backward(g) must give dL/dx and
// accumulate dL/dparam, which are compared with central differences.

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
    float step = 1e-2f;   // finite-difference step
    double tol = 2e-2;    // max |analytic - numeric| / max(1, |numeric|)
    std::size_t max_checks = 64;  // entries checked per tensor (spread over it)
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

    const auto stride_of = [&](std::size_t n) { return std::max<std::size_t>(1, n / opt.max_checks); };
    for (std::size_t i = 0; i < x.size(); i += stride_of(x.size())) {
        const float keep = x.data()[i];
        x.data()[i] = keep + opt.step;
        const double up = weighted_output(layer, x, g);
        x.data()[i] = keep - opt.step;
        const double down = weighted_output(layer, x, g);
        x.data()[i] = keep;
        compare("dx[" + std::to_string(i) + "]", dx.data()[i], (up - down) / (2.0 * opt.step), opt.tol);
    }
    for (auto& p : params) {
        if (!p.grad) continue;
        const tern::tensor analytic = *p.grad;
        for (std::size_t i = 0; i < p.value->size(); i += stride_of(p.value->size())) {
            float& w = p.value->data()[i];
            const float keep = w;
            w = keep + opt.step;
            const double up = weighted_output(layer, x, g);
            w = keep - opt.step;
            const double down = weighted_output(layer, x, g);
            w = keep;
            compare(p.name + "[" + std::to_string(i) + "]", analytic.data()[i], (up - down) / (2.0 * opt.step),
                    opt.tol);
        }
    }
}

}  // namespace tern_test
