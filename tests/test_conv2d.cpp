// conv2d<Policy, ActBits>: against a naive direct convolution (forward and backward), against
// BitLinear applied to hand-made patches (ternary), gradient checks, conversion, shapes and errors.
#include <catch2/catch.hpp>
#include <cstring>

#include "gradcheck.hpp"
#include "tern/layers/conv2d.hpp"
#include "tern/layers/linear.hpp"

namespace {

struct geometry {
    std::size_t B, C, H, W, O, k, stride, pad, dil;
};

// x[b, c, h, w] or 0 outside the image.
float at(const tern::tensor& x, std::size_t b, std::size_t c, long h, long w) {
    if (h < 0 || w < 0 || h >= long(x.shape()[2]) || w >= long(x.shape()[3])) return 0.0f;
    return x(b, c, std::size_t(h), std::size_t(w));
}

// Direct convolution, in double: y[b, o, i, j] = bias[o] + sum x[b, c, i s - p + ki d, j s - p + kj d] W[o, c, ki, kj].
tern::tensor naive_conv(const tern::tensor& x, const tern::tensor& w, const float* bias, const geometry& g,
                        std::size_t Ho, std::size_t Wo) {
    tern::tensor y(tern::shape_t{g.B, g.O, Ho, Wo});
    for (std::size_t b = 0; b < g.B; ++b)
        for (std::size_t o = 0; o < g.O; ++o)
            for (std::size_t i = 0; i < Ho; ++i)
                for (std::size_t j = 0; j < Wo; ++j) {
                    double acc = bias ? bias[o] : 0.0;
                    for (std::size_t c = 0; c < g.C; ++c)
                        for (std::size_t ki = 0; ki < g.k; ++ki)
                            for (std::size_t kj = 0; kj < g.k; ++kj)
                                acc += double(at(x, b, c, long(i * g.stride + ki * g.dil) - long(g.pad),
                                                 long(j * g.stride + kj * g.dil) - long(g.pad))) *
                                       w(o, (c * g.k + ki) * g.k + kj);
                    y(b, o, i, j) = float(acc);
                }
    return y;
}

}  // namespace

TEST_CASE("fp32 conv2d equals a direct convolution, forward and backward", "[conv2d]") {
    const geometry cases[] = {
        {2, 3, 7, 6, 4, 3, 1, 1, 1},  // 'same' padding
        {2, 2, 9, 8, 3, 3, 2, 0, 1},  // stride 2, no padding
        {1, 3, 8, 9, 5, 3, 2, 2, 1},  // stride 2, padding 2
        {2, 2, 9, 9, 3, 3, 1, 2, 2},  // dilation 2
        {3, 4, 5, 5, 2, 1, 1, 0, 1},  // 1x1
        {1, 1, 6, 7, 2, 5, 1, 0, 1},  // kernel 5
    };
    std::uint64_t seed = 1;
    for (const auto& g : cases) {
        for (bool bias : {false, true}) {
            INFO("C=" << g.C << " H=" << g.H << " W=" << g.W << " k=" << g.k << " s=" << g.stride << " p=" << g.pad
                      << " d=" << g.dil << " bias=" << bias);
            tern::manual_seed(seed);
            tern::conv2d<tern::fp32> conv(g.C, g.O, g.k, {.stride = g.stride, .padding = g.pad, .dilation = g.dil},
                                          bias);
            const tern::tensor x = tern_test::random_tensor({g.B, g.C, g.H, g.W}, ++seed);
            const tern::tensor y = conv.forward(x);
            const std::size_t Ho = y.shape()[2], Wo = y.shape()[3];
            CHECK(Ho == (g.H + 2 * g.pad - g.dil * (g.k - 1) - 1) / g.stride + 1);
            CHECK(Wo == (g.W + 2 * g.pad - g.dil * (g.k - 1) - 1) / g.stride + 1);
            const tern::tensor want = naive_conv(x, conv.weight(), bias ? conv.bias().data() : nullptr, g, Ho, Wo);
            REQUIRE(y.shape() == want.shape());
            for (std::size_t i = 0; i < y.size(); ++i) REQUIRE(y.data()[i] == Approx(want.data()[i]).margin(1e-5));

            // Backward: the gradient of sum(y * gy) via the naive adjoint.
            const tern::tensor gy = tern_test::random_tensor(tern::detail::to_shape(y.shape()), ++seed);
            tern::parameter_list params;
            conv.collect_parameters(params, "");
            for (auto& p : params) p.grad->fill(0.0f);
            const tern::tensor dx = conv.backward(gy);
            tern::tensor dx_want = tern::zeros(tern::detail::to_shape(x.shape()));
            tern::tensor dw_want = tern::zeros(tern::detail::to_shape(conv.weight().shape()));
            std::vector<double> db_want(g.O, 0.0);
            for (std::size_t b = 0; b < g.B; ++b)
                for (std::size_t o = 0; o < g.O; ++o)
                    for (std::size_t i = 0; i < Ho; ++i)
                        for (std::size_t j = 0; j < Wo; ++j) {
                            const float go = gy(b, o, i, j);
                            db_want[o] += go;
                            for (std::size_t c = 0; c < g.C; ++c)
                                for (std::size_t ki = 0; ki < g.k; ++ki)
                                    for (std::size_t kj = 0; kj < g.k; ++kj) {
                                        const long h = long(i * g.stride + ki * g.dil) - long(g.pad);
                                        const long w = long(j * g.stride + kj * g.dil) - long(g.pad);
                                        const std::size_t col = (c * g.k + ki) * g.k + kj;
                                        dw_want(o, col) += go * at(x, b, c, h, w);
                                        if (h >= 0 && w >= 0 && h < long(g.H) && w < long(g.W))
                                            dx_want(b, c, std::size_t(h), std::size_t(w)) += go * conv.weight()(o, col);
                                    }
                        }
            for (std::size_t i = 0; i < dx.size(); ++i) REQUIRE(dx.data()[i] == Approx(dx_want.data()[i]).margin(1e-4));
            for (std::size_t i = 0; i < dw_want.size(); ++i)
                REQUIRE(params[0].grad->data()[i] == Approx(dw_want.data()[i]).margin(1e-4));
            if (bias)
                for (std::size_t o = 0; o < g.O; ++o) REQUIRE(params[1].grad->data()[o] == Approx(db_want[o]).margin(1e-4));
        }
    }
}

TEMPLATE_TEST_CASE("ternary conv2d is BitLinear over im2col patches (one token per output position)", "[conv2d]",
                   tern::absmean_ternary, tern::absmedian_ternary) {
    const geometry g{2, 3, 6, 5, 4, 3, 2, 1, 1};
    tern::manual_seed(11);
    tern::conv2d<TestType> conv(g.C, g.O, g.k, {.stride = g.stride, .padding = g.pad});
    tern::linear<TestType> lin(g.C * g.k * g.k, g.O);
    lin.weight() = conv.weight();
    const tern::tensor x = tern_test::random_tensor({g.B, g.C, g.H, g.W}, 12);
    const tern::tensor y = conv.forward(x);
    const std::size_t Ho = y.shape()[2], Wo = y.shape()[3];
    // Patches built by hand: token (b, i, j) holds x[b, c, i s - p + ki, j s - p + kj] in (c, ki, kj) order.
    const std::size_t K = g.C * g.k * g.k;
    tern::tensor patches(tern::shape_t{g.B, Ho * Wo, K});
    for (std::size_t b = 0; b < g.B; ++b)
        for (std::size_t i = 0; i < Ho; ++i)
            for (std::size_t j = 0; j < Wo; ++j)
                for (std::size_t c = 0; c < g.C; ++c)
                    for (std::size_t ki = 0; ki < g.k; ++ki)
                        for (std::size_t kj = 0; kj < g.k; ++kj)
                            patches(b, i * Wo + j, (c * g.k + ki) * g.k + kj) =
                                at(x, b, c, long(i * g.stride + ki) - long(g.pad), long(j * g.stride + kj) - long(g.pad));
    const tern::tensor t = lin.forward(patches);
    for (std::size_t b = 0; b < g.B; ++b)
        for (std::size_t o = 0; o < g.O; ++o)
            for (std::size_t p = 0; p < Ho * Wo; ++p) REQUIRE(y(b, o, p / Wo, p % Wo) == Approx(t(b, p, o)).margin(1e-5));
    CHECK(conv.core().last_weight_scale() == lin.core().last_weight_scale());
}

TEMPLATE_TEST_CASE("conv2d gradient check with stride and padding (ternary at lambda = 0)", "[conv2d][grad]",
                   tern::fp32, tern::fp32_prenorm, tern::absmean_ternary, tern::absmedian_ternary) {
    tern::manual_seed(4);
    {
        tern::conv2d<TestType> conv(2, 3, 3, {.stride = 1, .padding = 1}, true);
        conv.set_quant_strength(0.0f);
        tern_test::gradcheck(conv, tern_test::random_tensor({2, 2, 5, 4}, 5));
    }
    {
        tern::conv2d<TestType> conv(3, 2, 3, {.stride = 2, .padding = 2}, false);
        conv.set_quant_strength(0.0f);
        tern_test::gradcheck(conv, tern_test::random_tensor({1, 3, 6, 7}, 6));
    }
    {
        tern::conv2d<TestType, tern::float_activations> conv(2, 2, 2, {.stride = 1, .padding = 0, .dilation = 2});
        conv.set_quant_strength(0.0f);
        tern_test::gradcheck(conv, tern_test::random_tensor({2, 2, 5, 5}, 7));
    }
}

TEST_CASE("conv2d in fp16 convolves binary16-rounded operands", "[conv2d][fp16]") {
    tern::manual_seed(8);
    tern::conv2d<tern::fp16> half(2, 3, 3, {.padding = 1});
    tern::conv2d<tern::fp32> full(2, 3, 3, {.padding = 1});
    full.weight() = half.weight();
    full.bias() = half.bias();
    tern::tensor x = tern_test::random_tensor({1, 2, 4, 4}, 9);
    const tern::tensor y16 = half.forward(x);
    for (auto& w : full.weight()) w = tern::kernels::round_to_half(w);
    for (auto& v : x) v = tern::kernels::round_to_half(v);
    const tern::tensor y32 = full.forward(x);
    for (std::size_t i = 0; i < y16.size(); ++i) CHECK(y16.data()[i] == Approx(y32.data()[i]).margin(1e-5));

    // Backward: the gradients of the rounded operands (dx through the rounded weight, dW from the
    // rounded input).
    const tern::tensor gy = tern_test::random_tensor(tern::detail::to_shape(y16.shape()), 10);
    tern::parameter_list p16, p32;
    half.collect_parameters(p16, "");
    full.collect_parameters(p32, "");
    for (auto* ps : {&p16, &p32})
        for (auto& p : *ps) p.grad->fill(0.0f);
    const tern::tensor dx16 = half.backward(gy), dx32 = full.backward(gy);
    for (std::size_t i = 0; i < dx16.size(); ++i) CHECK(dx16.data()[i] == Approx(dx32.data()[i]).margin(1e-5));
    for (std::size_t j = 0; j < p16.size(); ++j)
        for (std::size_t i = 0; i < p16[j].grad->size(); ++i)
            CHECK(p16[j].grad->data()[i] == Approx(p32[j].grad->data()[i]).margin(1e-5));
}

TEST_CASE("conv2d converts between policies, describes itself and checks its input", "[conv2d][errors]") {
    tern::manual_seed(2);
    tern::conv2d<tern::fp32> fp(1, 32, 3, {.padding = 1});
    tern::conv2d<tern::absmean_ternary> q(fp);
    CHECK(std::memcmp(q.weight().data(), fp.weight().data(), fp.weight().size() * sizeof(float)) == 0);
    CHECK(tern::detail::to_shape(q.weight().shape()) == tern::shape_t{32, 9});
    CHECK(fp.describe() == "conv2d<fp32>(1->32,k3,s1,p1,bias)");
    CHECK(q.describe() == "conv2d<absmean,a8>(1->32,k3,s1,p1,bias)");
    CHECK(tern::conv2d<tern::absmedian_ternary, 4>(3, 8, 5, {.stride = 2, .dilation = 2}).describe() ==
          "conv2d<absmedian,a4>(3->8,k5,s2,p0,d2)");
    static_assert(std::is_same_v<tern::rebind_t<tern::conv2d<tern::fp16, 4>, tern::absmean_ternary>,
                                 tern::conv2d<tern::absmean_ternary, 4>>);

    tern::conv2d<tern::absmedian_ternary> conv(3, 4, 3);
    REQUIRE_THROWS_WITH(conv.forward(tern::zeros({2, 2, 8, 8})),
                        Catch::Contains("conv2d") && Catch::Contains("[B, 3, H, W]") && Catch::Contains("[2, 2, 8, 8]"));
    REQUIRE_THROWS_WITH(conv.forward(tern::zeros({2, 3, 8})), Catch::Contains("[2, 3, 8]"));
    REQUIRE_THROWS_WITH(conv.forward(tern::zeros({1, 3, 2, 8})),
                        Catch::Contains("smaller than the kernel") && Catch::Contains("[1, 3, 2, 8]"));
    const tern::tensor y = conv.forward(tern_test::random_tensor({2, 3, 5, 5}, 1));
    CHECK(tern::detail::to_shape(y.shape()) == tern::shape_t{2, 4, 3, 3});
    REQUIRE_THROWS_WITH(conv.backward(tern::zeros({2, 4, 3, 2})),
                        Catch::Contains("[2, 4, 3, 3]") && Catch::Contains("[2, 4, 3, 2]"));
    REQUIRE_THROWS_AS((tern::conv2d<tern::fp32>(0, 3, 3)), tern::error);
    REQUIRE_THROWS_AS((tern::conv2d<tern::fp32>(1, 3, 3, {.stride = 0})), tern::error);
}

TEST_CASE("conv2d on a larger batch runs the threaded path and matches the single-image results", "[conv2d]") {
    tern::manual_seed(3);
    tern::conv2d<tern::absmean_ternary> conv(4, 8, 3, {.padding = 1});
    const tern::tensor x = tern_test::random_tensor({16, 4, 12, 12}, 4);
    const tern::tensor y = conv.forward(x);
    // Image 13 alone (the per-token math does not mix images).
    tern::tensor one(tern::shape_t{1, 4, 12, 12});
    std::memcpy(one.data(), x.data() + 13 * one.size(), one.size() * sizeof(float));
    const tern::tensor y1 = conv.forward(one);
    for (std::size_t i = 0; i < y1.size(); ++i) REQUIRE(y1.data()[i] == Approx(y.data()[13 * y1.size() + i]).margin(1e-5));
}
