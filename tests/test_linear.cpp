// linear<Policy, ActBits>: golden values from an independent PyTorch implementation
// (tools/make_golden.py -> tests/data/bitlinear_golden.txt), gradient checks, shapes and errors.
#include <catch2/catch.hpp>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "gradcheck.hpp"
#include "tern/kernels/fp16.hpp"
#include "tern/layers/linear.hpp"

namespace {

struct golden_case {
    std::string name, policy;
    int bits = 8;
    float lambda = 1.0f;
    std::size_t tokens = 0, in = 0, out = 0;
    bool bias = false;
    std::map<std::string, std::vector<float>> tensors;
};

std::vector<golden_case> read_golden() {
    std::ifstream file(std::string(TERN_TEST_DATA_DIR) + "/bitlinear_golden.txt");
    REQUIRE(file.good());
    std::vector<golden_case> cases;
    std::string word;
    while (file >> word) {
        if (word[0] == '#') {
            std::string rest;
            std::getline(file, rest);
        } else if (word == "case") {
            golden_case c;
            std::string key;
            int bias = 0;
            file >> c.name >> key >> c.policy >> key >> c.bits >> key >> c.lambda >> key >> c.tokens >> key >> c.in >>
                key >> c.out >> key >> bias;
            c.bias = bias != 0;
            cases.push_back(c);
        } else if (word == "tensor") {
            std::string name;
            std::size_t count = 0;
            file >> name >> count;
            std::vector<float> values(count);
            for (auto& v : values) file >> v;
            cases.back().tensors[name] = values;
        }
    }
    REQUIRE(cases.size() >= 9);
    return cases;
}

template <class Policy, int Bits>
void check_against_golden(const golden_case& c) {
    INFO("golden case " << c.name);
    tern::linear<Policy, Bits> layer(c.in, c.out, c.bias);
    layer.set_quant_strength(c.lambda);
    std::copy(c.tensors.at("W").begin(), c.tensors.at("W").end(), layer.weight().begin());
    std::copy(c.tensors.at("b").begin(), c.tensors.at("b").end(), layer.bias().begin());
    tern::tensor x(tern::shape_t{c.tokens, c.in});
    std::copy(c.tensors.at("x").begin(), c.tensors.at("x").end(), x.begin());
    tern::tensor g(tern::shape_t{c.tokens, c.out});
    std::copy(c.tensors.at("g").begin(), c.tensors.at("g").end(), g.begin());

    const tern::tensor y = layer.forward(x);
    const tern::tensor dx = layer.backward(g);
    tern::parameter_list params;
    layer.collect_parameters(params, "");
    const auto expect_close = [](const std::string& what, const float* got, const std::vector<float>& want) {
        for (std::size_t i = 0; i < want.size(); ++i) {
            INFO(what << "[" << i << "]");
            REQUIRE(got[i] == Approx(want[i]).margin(1e-5).epsilon(1e-5));
        }
    };
    expect_close("y", y.data(), c.tensors.at("y"));
    expect_close("dx", dx.data(), c.tensors.at("dx"));
    expect_close("dW", params.at(0).grad->data(), c.tensors.at("dW"));
    expect_close("db", params.at(1).grad->data(), c.tensors.at("db"));
}

}  // namespace

TEST_CASE("BitLinear matches the PyTorch golden values", "[linear][golden]") {
    int checked = 0;
    for (const auto& c : read_golden()) {
        if (c.policy == "absmean" && c.bits == 8) check_against_golden<tern::absmean_ternary, 8>(c);
        else if (c.policy == "absmean" && c.bits == 4) check_against_golden<tern::absmean_ternary, 4>(c);
        else if (c.policy == "absmedian" && c.bits == 8) check_against_golden<tern::absmedian_ternary, 8>(c);
        else if (c.policy == "fp32") check_against_golden<tern::fp32, 8>(c);
        else FAIL("unexpected golden case " << c.name);
        ++checked;
    }
    CHECK(checked >= 9);
}

TEMPLATE_TEST_CASE("linear gradient check (ternary policies at lambda = 0, fp32)", "[linear][grad]", tern::fp32,
                   tern::fp32_prenorm, tern::absmean_ternary, tern::absmedian_ternary) {
    tern::manual_seed(3);
    for (bool bias : {false, true}) {
        tern::linear<TestType> layer(12, 7, bias);
        layer.set_quant_strength(0.0f);
        tern_test::gradcheck(layer, tern_test::random_tensor({2, 3, 12}, 5));
    }
    tern::linear<TestType, tern::float_activations> float_acts(9, 4, true);
    float_acts.set_quant_strength(0.0f);
    tern_test::gradcheck(float_acts, tern_test::random_tensor({5, 9}, 6));
}

TEST_CASE("fp16 policy rounds weights and inputs to binary16 and accumulates in fp32", "[linear][fp16]") {
    tern::manual_seed(1);
    tern::linear<tern::fp16> layer(10, 3, true);
    const tern::tensor x = tern_test::random_tensor({4, 10}, 2);
    const tern::tensor y = layer.forward(x);
    for (std::size_t t = 0; t < 4; ++t)
        for (std::size_t n = 0; n < 3; ++n) {
            double acc = 0;
            for (std::size_t k = 0; k < 10; ++k)
                acc += double(tern::kernels::round_to_half(x(t, k))) * tern::kernels::round_to_half(layer.weight()(n, k));
            CHECK(y(t, n) == Approx(acc + layer.bias()(n)).margin(1e-5));
        }
    // Straight-through gradients: the same as fp32 computed on the rounded operands.
    const tern::tensor g = tern_test::random_tensor({4, 3}, 4);
    const tern::tensor dx = layer.backward(g);
    for (std::size_t t = 0; t < 4; ++t)
        for (std::size_t k = 0; k < 10; ++k) {
            double acc = 0;
            for (std::size_t n = 0; n < 3; ++n) acc += double(g(t, n)) * tern::kernels::round_to_half(layer.weight()(n, k));
            CHECK(dx(t, k) == Approx(acc).margin(1e-5));
        }
}

TEST_CASE("a fully quantized layer computes an integer product rescaled once per token", "[linear]") {
    tern::manual_seed(9);
    tern::linear<tern::absmean_ternary> layer(32, 6);
    const tern::tensor x = tern_test::random_tensor({3, 32}, 10);
    const tern::tensor y = layer.forward(x);
    // Recompute y = (xq Wq^T) / (s_w s_x) from the quantizers directly.
    std::vector<float> xn(3 * 32), xhat(3 * 32), sx(3), what(6 * 32);
    std::vector<std::int8_t> wq(6 * 32);
    tern::normalize_tokens(x.data(), 3, 32, xn.data(), nullptr);
    tern::quantize_activations(xn.data(), 3, 32, 8, 1.0f, xhat.data(), sx.data());
    const float sw = tern::ternarize_weights<tern::absmean_ternary>(layer.weight().data(), 6 * 32, 1.0f, what.data(), wq.data());
    for (std::size_t t = 0; t < 3; ++t)
        for (std::size_t n = 0; n < 6; ++n) {
            long acc = 0;
            for (std::size_t k = 0; k < 32; ++k) acc += long(std::nearbyint(xhat[t * 32 + k] * sx[t])) * wq[n * 32 + k];
            CHECK(y(t, n) == Approx(double(acc) / (double(sw) * sx[t])).margin(1e-5));
        }
    CHECK(layer.core().last_weight_scale() == sw);
}

TEST_CASE("linear rejects inputs of the wrong width with a clear message", "[linear][errors]") {
    tern::linear<tern::absmedian_ternary> layer(8, 4);
    REQUIRE_THROWS_WITH(layer.forward(tern::zeros({2, 7})),
                        Catch::Contains("expected input with last axis 8") && Catch::Contains("[2, 7]"));
    layer.forward(tern::zeros({2, 8}));
    REQUIRE_THROWS_AS(layer.backward(tern::zeros({2, 5})), tern::error);
    REQUIRE_THROWS_AS(layer.set_quant_strength(1.5f), tern::error);
    REQUIRE_THROWS_AS((tern::linear<tern::fp32>(0, 3)), tern::error);
}

TEST_CASE("linear keeps leading axes and describes itself", "[linear]") {
    tern::linear<tern::absmean_ternary, 4> layer(6, 2);
    const tern::tensor y = layer.forward(tern_test::random_tensor({2, 3, 6}, 1));
    CHECK(tern::detail::to_shape(y.shape()) == tern::shape_t{2, 3, 2});
    CHECK(layer.describe() == "linear<absmean,a4>(6->2)");
    CHECK(tern::linear<tern::fp32>(6, 2).describe() == "linear<fp32>(6->2,bias)");
}
