// Tests of freezing and packed model files: frozen layers and models against the training
// layers' quantized forward (lambda 1), packing round trips, storage cost, and malformed files.
#include <catch2/catch.hpp>

#include "freeze_support.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include <tern/checkpoint.hpp>
#include <tern/deploy/freeze.hpp>
#include <tern/deploy/packed_model.hpp>
#include <tern/layers/activations.hpp>
#include <tern/layers/batch_norm.hpp>
#include <tern/layers/dropout.hpp>
#include <tern/layers/embedding.hpp>
#include <tern/layers/flatten.hpp>
#include <tern/layers/linear.hpp>
#include <tern/layers/norm.hpp>
#include <tern/layers/pinned.hpp>
#include <tern/layers/pooling.hpp>
#include <tern/layers/residual.hpp>
#include <tern/packed/cpu_dispatch.hpp>
#include <tern/random.hpp>
#include <tern/sequential.hpp>

namespace fs = std::filesystem;

namespace {

using tern_test::argmax_rows;
using tern_test::max_row_relative_diff;
using tern_test::require_error;
using tern_test::temp_dir;

tern::tensor random_input(const tern::shape_t& shape, std::mt19937& rng, float mean = 0.2f, float sd = 1.0f) {
    tern::tensor x = tern::tensor::from_shape(shape);
    std::normal_distribution<float> d(mean, sd);
    for (auto& v : x) v = d(rng);
    return x;
}

bool bitwise_equal(const tern::tensor& a, const tern::tensor& b) {
    return a.shape() == b.shape() && std::equal(a.begin(), a.end(), b.begin());
}

template <class P>
auto make_mlp(std::size_t in, std::size_t hidden, std::size_t classes) {
    return tern::sequential{tern::flatten{},         tern::linear<P>(in, hidden), tern::relu{},
                            tern::linear<P>(hidden, hidden), tern::relu{}, tern::linear<P>(hidden, classes)};
}

}  // namespace

TEMPLATE_TEST_CASE("frozen ternary linear equals the training forward at lambda 1", "[freeze]",
                   tern::absmean_ternary, tern::absmedian_ternary) {
    tern::manual_seed(11);
    std::mt19937 rng(5);
    // (in, out): no tail; lane-layout tail (r = 16); code-stream tail (r = 44, 72); K < 128 (tail
    // only); N % 4 != 0 (a row strip); N < 4 (strip only); K = 9 as a one-channel 3x3 convolution.
    const std::vector<std::pair<std::size_t, std::size_t>> shapes = {
        {256, 64}, {784, 256}, {300, 50}, {100, 37}, {16, 9}, {200, 10}, {130, 3}, {9, 32}, {256, 10}};
    for (const auto& [K, N] : shapes)
        for (bool bias : {false, true}) {
            INFO("K = " << K << ", N = " << N << ", bias = " << bias);
            tern::linear<TestType> l(K, N, bias);
            const tern::tensor x = random_input({13, K}, rng);
            const tern::tensor y_train = l.forward(x);

            // The frozen layer is the same template in the frozen policy, built from the trained one.
            auto f = tern::freeze(l);
            static_assert(std::is_same_v<decltype(f), tern::linear<tern::frozen<TestType>>>);
            static_assert(!decltype(f)::trainable);
            std::vector<std::int8_t> codes(N * K);
            const float s_w = tern::ternarize_weights<TestType>(l.weight().data(), N * K, 1.0f, nullptr, codes.data());
            CHECK(f.core().packed_weights().unpack() == codes);
            CHECK(f.core().weight_scale() == s_w);

            const tern::tensor y = f.forward(x);
            CHECK(max_row_relative_diff(y, y_train) < 1e-5);
            // Every kernel path gives the same bits.
            for (auto p : {tern::packed::kernel_path::scalar, tern::packed::kernel_path::avx2,
                           tern::packed::kernel_path::avxvnni, tern::packed::kernel_path::avx512vnni}) {
                if (!tern::packed::kernel_path_available(p)) continue;
                tern::packed::force_kernel_path(p);
                const tern::tensor yp = f.forward(x);
                tern::packed::force_kernel_path(tern::packed::kernel_path::automatic);
                INFO("path " << tern::packed::kernel_path_name(p));
                CHECK(bitwise_equal(yp, y));
            }
        }
}

TEMPLATE_TEST_CASE("frozen MLP matches the training model and predicts the same classes", "[freeze]",
                   tern::absmean_ternary, tern::absmedian_ternary) {
    tern::manual_seed(3);
    std::mt19937 rng(8);
    auto model = make_mlp<TestType>(784, 96, 10);
    model.set_training(false);
    tern::inference_model frozen = tern::freeze(model);
    REQUIRE(frozen.size() == 6);  // flatten, linear, relu, linear, relu, linear
    CHECK(frozen.policy() == std::string(TestType::name));

    // The training layer accumulates float products in sgemm while the frozen one rescales an
    // exact integer sum, so outputs differ by float rounding; where such a difference moves a
    // later layer's activation across a rounding boundary, one int8 code changes by 1 (rare).
    // Predictions must be identical except for exact float ties.
    std::size_t total = 0, same = 0, close = 0, ties = 0;
    double worst = 0;
    for (int batch = 0; batch < 8; ++batch) {
        const tern::tensor x = random_input({250, 28, 28}, rng, 0.0f, 1.0f + 0.2f * batch);
        const tern::tensor y_train = model.forward(x);
        const tern::tensor y = frozen.forward(x);
        const auto a = argmax_rows(y), b = argmax_rows(y_train);
        for (std::size_t i = 0; i < a.size(); ++i) {
            tern::tensor yi = tern::tensor::from_shape({10}), ti = tern::tensor::from_shape({10});
            std::copy(y.data() + i * 10, y.data() + i * 10 + 10, yi.data());
            std::copy(y_train.data() + i * 10, y_train.data() + i * 10 + 10, ti.data());
            const double d = max_row_relative_diff(yi, ti);
            worst = std::max(worst, d);
            close += d < 1e-4;
            std::vector<float> v(ti.begin(), ti.end());
            std::sort(v.begin(), v.end());
            const bool tie = v[9] - v[8] <= 1e-4f * std::max(std::fabs(v[9]), 1.0f);
            ties += tie;
            same += a[i] == b[i] || tie;
        }
        total += a.size();
    }
    INFO("worst relative difference " << worst << ", rows within 1e-4: " << close << "/" << total << ", ties "
                                      << ties);
    CHECK(worst < 2e-2);
    CHECK(double(close) >= 0.98 * double(total));
    CHECK(ties <= total / 200);
    CHECK(same == total);

    // Batch 1 gives the same as the batched call.
    const tern::tensor x = random_input({5, 784}, rng);
    const tern::tensor all = frozen.forward(x);
    for (std::size_t i = 0; i < 5; ++i) {
        tern::tensor one = tern::tensor::from_shape({1, 784});
        std::copy(x.data() + i * 784, x.data() + (i + 1) * 784, one.data());
        const tern::tensor y1 = frozen.forward(one);
        CHECK(std::equal(y1.begin(), y1.end(), all.data() + i * 10));
    }
}

TEST_CASE("packed file round trip gives identical outputs", "[freeze][file]") {
    tern::manual_seed(4);
    std::mt19937 rng(9);
    temp_dir dir("tern_test_freeze_");
    auto model = make_mlp<tern::absmedian_ternary>(784, 128, 10);
    tern::inference_model frozen = tern::freeze(model);
    const tern::tensor probe = random_input({7, 784}, rng);
    tern::packed_save_options opt;
    opt.test_inputs = random_input({3, 784}, rng);
    tern::save_packed_model(dir / "mlp.safetensors", frozen, opt);
    auto loaded = tern::load_packed_model(dir / "mlp.safetensors");
    CHECK(loaded.size() == frozen.size());
    CHECK(loaded.policy() == "absmedian");
    CHECK(loaded.input_shape() == tern::shape_t{784});
    CHECK(loaded.model_bytes() == frozen.model_bytes());
    CHECK(loaded.describe() == frozen.describe());
    CHECK(bitwise_equal(loaded.forward(probe), frozen.forward(probe)));
    // Every packed byte and scale survives the round trip.
    const auto saved = tern::packed_model_data(frozen), reloaded = tern::packed_model_data(loaded);
    REQUIRE(saved.names() == reloaded.names());
    for (const auto& name : saved.names()) CHECK(saved.tensors.at(name).bytes == reloaded.tensors.at(name).bytes);

    // The trained model can be saved directly (frozen on the way).
    tern::save_packed_model(dir / "direct.safetensors", model);
    auto direct = tern::load_packed_model(dir / "direct.safetensors");
    CHECK(bitwise_equal(direct.forward(probe), frozen.forward(probe)));
    CHECK(direct.input_shape().empty());
}

TEST_CASE("mixed model: residual, norms, gelu, silu, dropout, fp16 and a pinned fp32 head", "[freeze][file]") {
    tern::manual_seed(12);
    std::mt19937 rng(13);
    using P = tern::absmean_ternary;
    auto model = tern::sequential{
        tern::linear<P>(64, 48, true),
        tern::gelu{},
        tern::residual(tern::sequential{tern::layer_norm(48), tern::linear<P>(48, 48), tern::silu{}}),
        tern::dropout(0.3f),
        tern::rms_norm(48),
        tern::residual(tern::sequential{tern::linear<tern::fp16>(48, 32)}, tern::linear<tern::fp32_prenorm>(48, 32)),
        tern::pinned<tern::linear<tern::fp32>>(32, 5)};
    // Non-trivial norm gains and shifts.
    for (auto& p : model.parameters())
        if (p.name.find("weight") != std::string::npos && p.value->dimension() == 1)
            for (auto& v : *p.value) v = 1.0f + 0.1f * std::normal_distribution<float>()(rng);
    model.set_training(false);
    tern::inference_model frozen = tern::freeze(model);
    CHECK(frozen.policy() == "absmean+fp16+fp32_prenorm+fp32");
    const tern::tensor x = random_input({2, 9, 64}, rng);
    const tern::tensor y_train = model.forward(x);
    const tern::tensor y = frozen.forward(x);
    CHECK(max_row_relative_diff(y, y_train) < 1e-2);
    CHECK(argmax_rows(y) == argmax_rows(y_train));

    temp_dir dir("tern_test_freeze_");
    tern::packed_save_options opt;
    opt.test_inputs = random_input({2, 64}, rng);
    tern::save_packed_model(dir / "mixed.safetensors", frozen, opt);
    auto loaded = tern::load_packed_model(dir / "mixed.safetensors");
    CHECK(bitwise_equal(loaded.forward(x), frozen.forward(x)));
    CHECK(loaded.describe() == frozen.describe());
}

namespace {

/// Freezes @p layer (in evaluation mode) and checks the frozen form: forward only (no backward,
/// no parameter list), smaller (no state kept for backward), and the same outputs bit for bit.
template <class L>
void check_forward_only(L layer, const tern::tensor& x) {
    using F = tern::frozen_layer_t<L>;
    static_assert(!std::is_same_v<F, L>, "the frozen form is another instantiation");
    static_assert(tern::forward_layer<F> && !tern::layer<F>, "a frozen layer has no backward");
    static_assert(!requires(F f, tern::parameter_list& out) { f.collect_parameters(out, ""); },
                  "a frozen layer lists no parameters to train");
    static_assert(sizeof(F) < sizeof(L), "the state kept for backward is gone");
    tern::detail::set_training_of(layer, false);
    F frozen = tern::freeze(layer);
    INFO(layer.describe());
    CHECK(frozen.describe() == layer.describe());
    const tern::tensor want = layer.forward(x);
    CHECK(bitwise_equal(frozen.forward(x), want));
    CHECK(bitwise_equal(frozen.forward(x), want));  // and again: nothing carried over between calls
}

}  // namespace

TEST_CASE("parameter-free and full-precision layers freeze to forward-only forms", "[freeze]") {
    tern::manual_seed(14);
    std::mt19937 rng(15);
    const tern::tensor images = random_input({2, 3, 6, 6}, rng);
    const tern::tensor tokens = random_input({2, 5, 8}, rng);
    check_forward_only(tern::relu{}, images);
    check_forward_only(tern::gelu{}, tokens);
    check_forward_only(tern::silu{}, tokens);
    check_forward_only(tern::flatten{}, images);
    check_forward_only(tern::max_pool2d(2), images);
    check_forward_only(tern::max_pool2d(3, 1, 1), images);
    check_forward_only(tern::global_avg_pool2d{}, images);
    tern::layer_norm ln(8);
    tern::rms_norm rms(8);
    tern::parameter_list gains;
    ln.collect_parameters(gains, "");
    for (auto& v : *gains.at(0).value) v = 1.0f + 0.1f * std::normal_distribution<float>()(rng);
    check_forward_only(ln, tokens);
    check_forward_only(rms, tokens);
    tern::batch_norm2d bn(3);
    bn.forward(images);  // running statistics away from their initial values
    check_forward_only(bn, images);
    tern::tensor ids(tern::shape_t{2, 4});
    for (std::size_t i = 0; i < ids.size(); ++i) ids.data()[i] = float(i % 7);
    check_forward_only(tern::embedding(7, 8), ids);
    check_forward_only(tern::learned_positions(5, 8), tokens);
}

TEST_CASE("a run-time residual describes itself as the compile-time one", "[freeze]") {
    tern::manual_seed(16);
    using P = tern::absmean_ternary;
    // The run-time form of the frozen block reads as the frozen compile-time block.
    const auto check = [](const auto& block) {
        tern::inference_model frozen = tern::freeze(tern::sequential{block});
        REQUIRE(frozen.size() == 1);
        const std::string want = tern::freeze(block).describe();
        CHECK(frozen.layer(0).describe() == want);
        return want;
    };
    const std::string plain = check(tern::residual(tern::sequential{tern::linear<P>(8, 8), tern::relu{}}));
    CHECK(plain.find("shortcut") == std::string::npos);  // the identity shortcut is not mentioned
    check(tern::residual(tern::linear<P>(8, 8)));
    CHECK(check(tern::residual(tern::linear<P>(8, 4), tern::linear<P>(8, 4))).find(", shortcut=") !=
          std::string::npos);
}

TEST_CASE("a 784x256 ternary layer costs at most 2.1 bits per weight in memory and on disk", "[freeze][size]") {
    tern::manual_seed(1);
    temp_dir dir("tern_test_freeze_");
    auto model = tern::sequential{tern::linear<tern::absmean_ternary>(784, 256)};
    tern::inference_model frozen = tern::freeze(model);
    const double weights = 784.0 * 256.0;
    CHECK(frozen.packed_weights() == 784u * 256u);
    CHECK(frozen.bits_per_weight() <= 2.1);
    CHECK(8.0 * double(frozen.model_bytes()) / weights <= 2.1);
    tern::save_packed_model(dir / "one.safetensors", frozen);
    const auto data = tern::io::load_safetensors(dir / "one.safetensors");
    std::size_t tensor_bytes = 0;
    for (const auto& [name, t] : data.tensors) tensor_bytes += t.bytes.size();
    CHECK(8.0 * double(tensor_bytes) / weights <= 2.1);
    CHECK(8.0 * double(fs::file_size(dir / "one.safetensors")) / weights <= 2.1);  // header included
    CHECK(data.at("0.packed").type == tern::io::dtype::u8);
}

TEST_CASE("every ternary layer of at least 400 weights costs at most 2.1 bits per weight", "[freeze][size]") {
    // The codes take exactly ceil(N*K/4) bytes in the file; the 4-byte scale is what keeps layers
    // under 400 weights above 2.1 (a 9 -> 32 convolution: 288 weights, 2.11 bits).
    tern::manual_seed(3);
    temp_dir dir("tern_test_freeze_");
    const std::pair<std::size_t, std::size_t> shapes[] = {{256, 10}, {10, 40}, {27, 16}, {9, 48},  {72, 16},
                                                          {300, 7},  {129, 5}, {63, 63}, {784, 100}, {1000, 3}};
    for (const auto& [in, out] : shapes) {
        INFO(in << " -> " << out);
        tern::inference_model frozen = tern::freeze(tern::sequential{tern::linear<tern::absmedian_ternary>(in, out)});
        const double weights = double(in * out);
        CHECK(frozen.bits_per_weight() <= 2.1);  // in memory, scale included
        tern::save_packed_model(dir / "layer.safetensors", frozen);
        const auto data = tern::io::load_safetensors(dir / "layer.safetensors");
        std::size_t code_bytes = 0;
        for (const auto& [name, t] : data.tensors)
            if (name.find(".packed") != std::string::npos) code_bytes += t.bytes.size();
        CHECK(code_bytes == (in * out + 3) / 4);
        CHECK(8.0 * double(code_bytes + 4) / weights <= 2.1);  // on disk, scale included
        auto loaded = tern::load_packed_model(dir / "layer.safetensors");
        CHECK(loaded.bits_per_weight() == frozen.bits_per_weight());
    }
}

// A ternary layer with activation bits other than 8 has no frozen form: a compile-time error
// (tests/compile_fail/freeze_bits.cpp), as is backward on a frozen layer (frozen_backward.cpp).

TEST_CASE("frozen layers check their input", "[freeze]") {
    tern::manual_seed(2);
    auto model = make_mlp<tern::absmean_ternary>(784, 32, 10);
    tern::inference_model frozen = tern::freeze(model);
    require_error([&] { (void)frozen.forward(tern::zeros({2, 783})); }, {"784", "783"});
}

TEST_CASE("malformed packed files raise clear errors", "[freeze][file]") {
    tern::manual_seed(6);
    std::mt19937 rng(7);
    temp_dir dir("tern_test_freeze_");
    // Hidden width 63: layer 1 (784 -> 63) has a body, a 3-row strip and a 16-column tail; layer 5
    // (63 -> 10) is all tail, 630 codes in 158 bytes, the last 2 codes unused.
    auto model = make_mlp<tern::absmean_ternary>(784, 63, 10);
    tern::inference_model frozen = tern::freeze(model);
    tern::packed_save_options opt;
    opt.test_inputs = random_input({2, 784}, rng);
    const tern::io::safetensors_data good = tern::packed_model_data(frozen, opt);
    const fs::path file = dir / "bad.safetensors";
    const std::string named = "packed model '" + file.string() + "'";
    const auto write_and_load = [&](const tern::io::safetensors_data& d) {
        tern::io::save_safetensors(file, d);
        (void)tern::load_packed_model(file);
    };
    const auto edit_arch = [&](auto&& fn) {
        auto d = good;
        auto arch = nlohmann::json::parse(d.metadata.at("tern.architecture"));
        fn(arch);
        d.metadata["tern.architecture"] = arch.dump();
        return d;
    };

    SECTION("the good file loads") { REQUIRE_NOTHROW(write_and_load(good)); }
    SECTION("missing tensor") {
        auto d = good;
        d.tensors.erase("1.packed");
        require_error([&] { write_and_load(d); }, {named, "layer 1 (ternary_linear)", "missing tensor '1.packed'"});
    }
    SECTION("wrong byte count") {
        auto d = good;
        auto& t = d.tensors.at("1.packed");
        t.bytes.resize(t.bytes.size() - 32);
        t.shape = {t.bytes.size()};
        require_error([&] { write_and_load(d); }, {named, "layer 1", "expected U8 [" + std::to_string(t.bytes.size() + 32) + "]",
                                                   "found U8 [" + std::to_string(t.bytes.size()) + "]"});
    }
    SECTION("code of value 3") {
        auto d = good;
        d.tensors.at("1.packed").bytes[100] = 0xFF;
        require_error([&] { write_and_load(d); }, {named, "layer 1", "invalid code 3"});
    }
    SECTION("non-zero weight in the unused codes") {
        auto d = good;
        auto& tail = d.tensors.at("5.packed_cols").bytes;
        REQUIRE(tail.size() == 158);
        tail.back() = static_cast<std::uint8_t>((tail.back() & 0x0F) | 0x60);  // unused code 630 = 2
        require_error([&] { write_and_load(d); }, {named, "layer 5", "unused tail code 630", "expected 1"});
    }
    SECTION("code of value 3 in the strip and the tail") {
        auto d = good;
        d.tensors.at("1.packed_rows").bytes[7] = 0x3F;
        require_error([&] { write_and_load(d); }, {named, "layer 1", "strip byte 7", "invalid code 3"});
        d = good;
        d.tensors.at("1.packed_cols").bytes[5] = 0xC5;  // code 23 (row 1, column 775)
        require_error([&] { write_and_load(d); }, {named, "layer 1", "tail code 23", "row 1, column 775", "code 3"});
    }
    SECTION("missing strip") {
        auto d = good;
        d.tensors.erase("1.packed_rows");
        require_error([&] { write_and_load(d); }, {named, "layer 1", "missing tensor '1.packed_rows'"});
    }
    SECTION("wrong dtype for the scale") {
        auto d = good;
        d.put_bytes("1.scale", tern::io::dtype::u8, {4}, {0, 0, 128, 63});
        require_error([&] { write_and_load(d); }, {named, "1.scale", "expected F32 [1]", "found U8 [4]"});
    }
    SECTION("bad JSON architecture") {
        auto d = good;
        d.metadata["tern.architecture"] = "{\"layers\": [ {\"kind\": ";
        require_error([&] { write_and_load(d); }, {named, "tern.architecture", "not valid JSON"});
    }
    SECTION("architecture without layers") {
        auto d = edit_arch([](nlohmann::json& a) { a.erase("layers"); });
        require_error([&] { write_and_load(d); }, {named, "\"layers\" array"});
    }
    SECTION("unknown layer kind") {
        auto d = edit_arch([](nlohmann::json& a) { a["layers"][2]["kind"] = "tanh"; });
        require_error([&] { write_and_load(d); }, {named, "layer 2", "unknown layer kind 'tanh'", "relu"});
    }
    SECTION("missing field") {
        auto d = edit_arch([](nlohmann::json& a) { a["layers"][1].erase("out"); });
        require_error([&] { write_and_load(d); }, {named, "layer 1", "missing field 'out'"});
    }
    SECTION("sizes that do not match the tensors") {
        auto d = edit_arch([](nlohmann::json& a) { a["layers"][1]["out"] = 65; });
        require_error([&] { write_and_load(d); }, {named, "layer 1", "tensor '1.packed': expected U8 [12288]",
                                                   "found U8 [11520]"});
    }
    SECTION("inconsistent sizes between consecutive layers") {
        // Replace layer 3 (63 -> 63) by a 32 -> 63 layer with matching tensors.
        tern::inference_model other = tern::freeze(tern::sequential{tern::linear<tern::absmean_ternary>(32, 63)});
        auto d = good;
        for (auto it = d.tensors.begin(); it != d.tensors.end();)
            it = it->first.rfind("3.", 0) == 0 ? d.tensors.erase(it) : std::next(it);
        tern::layer_writer w(d, "3.");
        other.layer(0).save(w);
        auto arch = nlohmann::json::parse(d.metadata.at("tern.architecture"));
        arch["layers"][3] = other.layer(0).config();
        d.metadata["tern.architecture"] = arch.dump();
        require_error([&] { write_and_load(d); }, {named, "layer 3 (ternary_linear)", "expects 32 input features",
                                                   "previous layers give 63"});
    }
    SECTION("unsupported activation bits") {
        auto d = edit_arch([](nlohmann::json& a) { a["layers"][1]["activation_bits"] = 4; });
        require_error([&] { write_and_load(d); }, {named, "layer 1", "activation_bits 4", "8 only"});
    }
    SECTION("extra tensor") {
        auto d = good;
        d.put("7.weight", tern::zeros({3}));
        require_error([&] { write_and_load(d); }, {named, "'7.weight'", "belongs to no layer"});
    }
    SECTION("wrong metadata") {
        auto d = good;
        d.metadata["tern.format"] = "tern-packed-9";
        require_error([&] { write_and_load(d); }, {named, "expected format 'tern-packed-3'", "tern-packed-9"});
        d.metadata["tern.format"] = "tern-packed-2";
        require_error([&] { write_and_load(d); }, {named, "'tern-packed-2'", "earlier tern", "export the model again"});
        d.metadata["tern.format"] = "tern-packed-1";
        require_error([&] { write_and_load(d); }, {named, "'tern-packed-1'", "earlier tern", "export the model again"});
        d = good;
        d.metadata.erase("tern.policy");
        require_error([&] { write_and_load(d); }, {named, "tern.policy"});
    }
    SECTION("a training checkpoint is not a packed model") {
        tern::save_checkpoint(file, model);
        require_error([&] { (void)tern::load_packed_model(file); }, {named, "training checkpoint"});
    }
    SECTION("embedded test cases catch changed weights") {
        auto d = good;
        // (Hidden layers are scale-invariant: the next layer normalizes. The head's scale is not.)
        auto& s = d.tensors.at("5.scale").bytes;
        s[3] ^= 0x01;  // the scale's exponent changes: outputs double or halve
        require_error([&] { write_and_load(d); }, {named, "embedded test case"});
        tern::io::save_safetensors(file, d);
        tern::packed_load_options lo;
        lo.check_test_cases = false;
        CHECK_NOTHROW(tern::load_packed_model(file, lo));
    }
    SECTION("truncated file") {
        tern::io::save_safetensors(file, good);
        const auto size = fs::file_size(file);
        fs::resize_file(file, size - 1000);
        require_error([&] { (void)tern::load_packed_model(file); }, {file.string()});
        fs::resize_file(file, 5);
        require_error([&] { (void)tern::load_packed_model(file); }, {file.string(), "too short"});
    }
}

namespace {

/// A layer kind defined outside tern's deploy headers, to test the extension point.
class times_two final : public tern::inference_layer {
public:
    std::string kind() const override { return "test_times_two"; }
    const tern::tensor& forward(const tern::tensor& x) override {
        out_ = x * 2.0f;
        return out_;
    }

private:
    tern::tensor out_;
};

const bool times_two_registered = tern::register_layer_kind(
    "test_times_two", [](const tern::layer_reader&) -> std::unique_ptr<tern::inference_layer> {
        return std::make_unique<times_two>();
    });

}  // namespace

TEST_CASE("layer kinds registered outside the core save and load", "[freeze][file]") {
    REQUIRE(times_two_registered);
    tern::manual_seed(21);
    std::mt19937 rng(22);
    temp_dir dir("tern_test_freeze_");
    tern::inference_model frozen = tern::freeze(tern::sequential{tern::linear<tern::absmean_ternary>(40, 12), tern::relu{}});
    tern::layer_list layers;
    layers.push_back(std::make_unique<tern::erased_layer<tern::linear<tern::frozen<tern::absmean_ternary>>>>(
        tern::freeze(tern::linear<tern::absmean_ternary>(40, 12))));
    layers.push_back(std::make_unique<times_two>());
    tern::inference_model model(std::move(layers), "absmean");
    tern::save_packed_model(dir / "custom.safetensors", model);
    auto loaded = tern::load_packed_model(dir / "custom.safetensors");
    REQUIRE(loaded.size() == 2);
    CHECK(loaded.layer(1).kind() == "test_times_two");
    const tern::tensor x = random_input({3, 40}, rng);
    CHECK(bitwise_equal(loaded.forward(x), model.forward(x)));
    const auto kinds = tern::registered_layer_kinds();
    CHECK(std::find(kinds.begin(), kinds.end(), "test_times_two") != kinds.end());
}
