#pragma once
// A layer kind defined outside the library, the worked example of docs/layers.md: y = x + W x,
// a square linear map with a skip connection, in any policy. It is written once; training,
// tern::freeze, packed files and the run-time model all use this definition.
#include <string>

#include <tern/deploy/inference_model.hpp>
#include <tern/layers/frozen_projection.hpp>
#include <tern/layers/linear.hpp>

namespace tern_test {

template <class Policy, int ActBits = 8>
class residual_linear {
    static_assert(tern::quantization_policy<Policy>, "residual_linear: Policy must be a quantization policy");

public:
    using policy = Policy;
    static constexpr bool trainable = tern::trainable_policy<Policy>;
    // 1. A policy transform gives the same layer in another policy (convert, freeze) ...
    template <class T>
    using transform = residual_linear<typename T::template apply<Policy>, ActBits>;

    explicit residual_linear(std::size_t features)
        requires trainable
        : w_(features, features) {}
    // ... built by a converting constructor (freezing packs the inner linear's weights).
    template <class Q, int B>
    explicit residual_linear(const residual_linear<Q, B>& other) : w_(other.inner()) {}

    // 2. Forward, once for every policy.
    void forward(const tern::tensor& x, tern::tensor& y) {
        w_.forward(x, y);
        for (std::size_t i = 0, n = y.size(); i < n; ++i) y.data()[i] += x.data()[i];
    }
    tern::tensor forward(const tern::tensor& x) {
        tern::tensor y;
        forward(x, y);
        return y;
    }

    // 3. Training: backward and parameters (absent from the frozen instantiation).
    tern::tensor backward(const tern::tensor& g)
        requires trainable
    {
        tern::tensor dx = w_.backward(g);
        for (std::size_t i = 0, n = dx.size(); i < n; ++i) dx.data()[i] += g.data()[i];
        return dx;
    }
    void collect_parameters(tern::parameter_list& out, const std::string& prefix)
        requires trainable
    {
        w_.collect_parameters(out, prefix + "w.");
    }
    void set_quant_strength(float lambda)
        requires trainable
    {
        w_.set_quant_strength(lambda);
    }
    std::string describe() const { return "residual_linear(" + w_.describe() + ")"; }

    // 4. The file protocol of the frozen instantiation: structured configuration and tensors.
    static constexpr const char* kind() { return "residual_linear"; }
    nlohmann::json config() const
        requires(!trainable)
    {
        nlohmann::json c = w_.config();
        c["kind"] = kind();
        return c;
    }
    void save(tern::layer_writer& w) const
        requires(!trainable)
    {
        w_.save(w);
    }
    static residual_linear load(const tern::layer_reader& r)
        requires(!trainable)
    {
        if (r.size_field("in") != r.size_field("out")) r.fail("residual_linear: expected a square layer");
        return residual_linear(inner_type::load(r));
    }
    std::size_t parameter_bytes() const
        requires(!trainable)
    {
        return w_.parameter_bytes();
    }

    const tern::linear<Policy, ActBits>& inner() const { return w_; }

private:
    using inner_type = tern::linear<Policy, ActBits>;
    explicit residual_linear(inner_type w) : w_(std::move(w)) {}
    inner_type w_;
};

}  // namespace tern_test
