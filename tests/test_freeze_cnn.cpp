// Tests of frozen convolutional networks: packed conv2d (im2col GEMM), pooling, folded batch norm
// and pinned fp convolutions against the training model's evaluation-mode forward at lambda 1;
// packed file round trips and malformed files.
#include <catch2/catch.hpp>

#include "freeze_support.hpp"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include <tern/deploy/freeze.hpp>
#include <tern/deploy/packed_model.hpp>
#include <tern/deploy/packed_model.hpp>
#include <tern/io/safetensors.hpp>
#include <tern/layers/activations.hpp>
#include <tern/layers/batch_norm.hpp>
#include <tern/layers/conv2d.hpp>
#include <tern/layers/flatten.hpp>
#include <tern/layers/linear.hpp>
#include <tern/layers/pinned.hpp>
#include <tern/layers/pooling.hpp>
#include <tern/layers/residual.hpp>
#include <tern/random.hpp>
#include <tern/sequential.hpp>

namespace fs = std::filesystem;

namespace {

using tern_test::argmax_rows;
using tern_test::max_row_relative_diff;
using tern_test::require_error;
using tern_test::temp_dir;

tern::tensor random_input(const tern::shape_t& shape, std::mt19937& rng) {
    tern::tensor x = tern::tensor::from_shape(shape);
    std::normal_distribution<float> d(0.1f, 1.0f);
    for (auto& v : x) v = d(rng);
    return x;
}

/// The small CNN of examples/cnn (narrower), on 1 x 12 x 12 images.
template <class P, class First>
auto make_small() {
    return tern::sequential{First(1, 8, 3, tern::conv2d_options{.padding = 1}, true),
                            tern::relu{},
                            tern::max_pool2d(2),
                            tern::conv2d<P>(8, 16, 3, tern::conv2d_options{.padding = 1}, true),
                            tern::relu{},
                            tern::avg_pool2d(2),
                            tern::flatten{},
                            tern::linear<P>(16 * 3 * 3, 32, true),
                            tern::relu{},
                            tern::linear<P>(32, 10, true)};
}

/// A small ResNet: batch norm, residual blocks with a strided 1x1 convolution shortcut, global pooling.
template <class P, class First>
auto make_resnet() {
    return tern::sequential{
        First(1, 8, 3, tern::conv2d_options{.padding = 1}, false),
        tern::batch_norm2d(8),
        tern::relu{},
        tern::residual{tern::sequential{tern::conv2d<P>(8, 8, 3, {.padding = 1}, false), tern::batch_norm2d(8),
                                        tern::relu{}, tern::conv2d<P>(8, 8, 3, {.padding = 1}, false),
                                        tern::batch_norm2d(8)}},
        tern::relu{},
        tern::residual{
            tern::sequential{tern::conv2d<P>(8, 16, 3, {.stride = 2, .padding = 1}, false), tern::batch_norm2d(16),
                             tern::relu{}, tern::conv2d<P>(16, 16, 3, {.padding = 1, .dilation = 1}, false),
                             tern::batch_norm2d(16)},
            tern::sequential{tern::conv2d<P>(8, 16, 1, {.stride = 2}, false), tern::batch_norm2d(16)}},
        tern::relu{},
        tern::global_avg_pool2d{},
        tern::linear<P>(16, 10, true)};
}

/// Runs a few training-mode batches (moving the batch-norm statistics away from 0 / 1), then
/// switches to evaluation mode.
template <class Model>
void settle(Model& model, std::mt19937& rng) {
    model.set_training(true);
    for (int i = 0; i < 3; ++i) (void)model.forward(random_input({6, 1, 12, 12}, rng));
    model.set_training(false);
}

/// @p tolerance: largest relative difference per output row. 1e-4 is float rounding; deeper models
/// get about one int8 step (1/127): there the frozen layers' float outputs (integer products,
/// folded batch norm) differ from training's in the last bits, and such a difference can move one
/// activation of a later layer across a rounding boundary of its 8-bit quantization.
template <class Model>
void check_frozen_equals_training(Model& model, std::mt19937& rng, double tolerance = 1e-4) {
    settle(model, rng);
    const tern::tensor x = random_input({7, 1, 12, 12}, rng);
    const tern::tensor y_train = model.forward(x);
    tern::inference_model frozen = tern::freeze(model);
    const tern::tensor y = frozen.forward(x);
    INFO(frozen.describe());
    CHECK(max_row_relative_diff(y, y_train) < tolerance);
    CHECK(argmax_rows(y) == argmax_rows(y_train));

    // Packed file round trip: the loaded model computes the same bits.
    temp_dir dir("tern_test_freeze_cnn_");
    const fs::path file = dir / "cnn.tern";
    tern::save_packed_model(file, frozen, {.test_inputs = random_input({3, 1, 12, 12}, rng), .metadata = {}});
    tern::inference_model loaded = tern::load_packed_model(file);
    CHECK(loaded.input_shape() == tern::shape_t{1, 12, 12});
    CHECK(loaded.describe() == frozen.describe());
    const tern::tensor y2 = loaded.forward(x);
    CHECK(std::equal(y2.begin(), y2.end(), y.begin()));
    CHECK(loaded.model_bytes() == frozen.model_bytes());
}

}  // namespace

TEMPLATE_TEST_CASE("frozen small CNN equals the training forward at lambda 1", "[freeze][cnn]", tern::absmean_ternary,
                   tern::absmedian_ternary) {
    tern::manual_seed(21);
    std::mt19937 rng(4);
    SECTION("ternary first convolution") {
        auto model = make_small<TestType, tern::conv2d<TestType>>();
        check_frozen_equals_training(model, rng);
        tern::inference_model f = tern::freeze(model);
        CHECK(f.layer(0).kind() == "ternary_conv2d");
        CHECK(f.packed_weights() == 8 * 9 + 16 * 8 * 9 + 144 * 32 + 32 * 10);
    }
    SECTION("pinned fp32 first convolution") {
        auto model = make_small<TestType, tern::pinned<tern::conv2d<tern::fp32>>>();
        check_frozen_equals_training(model, rng);
        tern::inference_model f = tern::freeze(model);
        CHECK(f.layer(0).kind() == "conv2d");
        CHECK(f.layer(3).kind() == "ternary_conv2d");
    }
}

TEMPLATE_TEST_CASE("frozen ResNet (batch norm, residuals, global pooling) equals the training forward",
                   "[freeze][cnn]", tern::absmean_ternary, tern::absmedian_ternary) {
    tern::manual_seed(22);
    std::mt19937 rng(6);
    auto model = make_resnet<TestType, tern::pinned<tern::conv2d<tern::fp32>>>();
    check_frozen_equals_training(model, rng, 1e-2);
}

TEST_CASE("fp32 CNN freezes to full-precision convolutions", "[freeze][cnn]") {
    tern::manual_seed(23);
    std::mt19937 rng(8);
    auto model = make_resnet<tern::fp32, tern::conv2d<tern::fp32>>();
    check_frozen_equals_training(model, rng);
    CHECK(tern::inference_model(tern::freeze(model)).packed_weights() == 0);
}

TEST_CASE("malformed CNN packed files raise tern::error", "[freeze][cnn]") {
    tern::manual_seed(24);
    std::mt19937 rng(9);
    auto model = make_resnet<tern::absmean_ternary, tern::conv2d<tern::absmean_ternary>>();
    settle(model, rng);
    tern::inference_model frozen = tern::freeze(model);
    const tern::io::safetensors_data good =
        tern::packed_model_data(frozen, {.test_inputs = random_input({2, 1, 12, 12}, rng), .metadata = {}});
    const std::string where = "packed model 'x'";
    CHECK_NOTHROW(tern::parse_packed_model(good, where));

    const auto with_arch = [&](auto&& edit) {
        tern::io::safetensors_data d = good;
        nlohmann::json a = nlohmann::json::parse(d.metadata.at("tern.architecture"));
        edit(a);
        d.metadata["tern.architecture"] = a.dump();
        return d;
    };
    SECTION("kernel size that does not fit the projection") {
        const auto d = with_arch([](nlohmann::json& a) { a["layers"][0]["kernel"] = 5; });
        require_error([&] { tern::parse_packed_model(d, where); }, {"layer 0", "ternary_conv2d"});
    }
    SECTION("policy that does not fit the kind") {
        const auto d = with_arch([](nlohmann::json& a) { a["layers"][0]["policy"] = "fp32"; });
        require_error([&] { tern::parse_packed_model(d, where); },
                      {"layer 0", "field 'policy'", "absmean, absmedian", "'fp32'"});
    }
    SECTION("channel count that does not chain") {
        const auto d = with_arch([](nlohmann::json& a) { a["layers"][1]["channels"] = 9; });
        require_error([&] { tern::parse_packed_model(d, where); }, {"layer 1", "batch_norm2d"});
    }
    SECTION("missing batch-norm tensor") {
        tern::io::safetensors_data d = good;
        d.tensors.erase("1.running_var");
        require_error([&] { tern::parse_packed_model(d, where); }, {"missing tensor '1.running_var'"});
    }
    SECTION("truncated packed convolution weights") {
        tern::io::safetensors_data d = good;
        auto& t = d.tensors.at("3.body.0.packed_cols");  // 8 x 72: all tail
        t.bytes.resize(t.bytes.size() - 1);
        t.shape = {t.bytes.size()};
        require_error([&] { tern::parse_packed_model(d, where); },
                      {"3.body.0.packed_cols", "expected U8 [144]", "found U8 [143]"});
    }
    SECTION("changed weights fail the embedded test cases") {
        tern::io::safetensors_data d = good;
        auto& t = d.tensors.at("1.weight");  // the batch norm's gain
        for (std::size_t c = 0; c < 8; ++c) t.bytes[4 * c + 2] ^= 0x20;  // every gain off by about 25%
        require_error([&] { tern::parse_packed_model(d, where); }, {"embedded test case"});
    }
}
