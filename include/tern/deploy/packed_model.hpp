#pragma once
/// @file deploy/packed_model.hpp
/// @brief The packed model file: save a frozen (or trained) model, load it back as a run-time
/// inference_model from the file alone.
///
/// ## Format "tern-packed-3" (a safetensors file)
/// Every entry of the architecture is the `config()` of a layer template (structured data: its
/// kind, sizes, policy and options), and its tensors are what that layer's `save()` writes, named
/// "<layer path>.<name>" (layer path "3", or "2.body.0" inside a residual):
///   - linear / conv2d in a ternary policy (kinds "ternary_linear", "ternary_conv2d"): an N x K
///     packed::split_matrix at exactly 2 bits per weight: "packed" U8 [N0 * K0 / 4], the body
///     (N0 = N - N mod 4 rows, K0 = K - K mod 128 columns) in the packed_matrix layout: codes w+1,
///     128-weight blocks of 32 bytes, rows interleaved by 4; "packed_rows" U8 [(N mod 4) * K0 / 4],
///     the last N mod 4 rows, tile by tile; "packed_cols" U8 [ceil(N * (K mod 128) / 4)], the last
///     K mod 128 columns as a row-major code stream; each present only when non-empty; "scale" F32
///     [1] (s_w), "bias" F32 [N] if any;
///   - linear / conv2d in a full-precision policy: "weight" F32 [N, K], "bias" F32 [N] if any;
///   - embedding_bag (config "in" = vocabulary, "out" = width, "mean"): "table" F32 [in, out] in a
///     full-precision policy; in a ternary one "codes" U8 [in * out] (code + 1, one byte each) and
///     "step" F32 [1] (the table value of code 1);
///   - layer_norm / rms_norm: "weight" (gain), "bias" (shift, layer_norm) F32 [features] when affine;
///   - batch_norm2d: "weight", "bias", "running_mean", "running_var" F32 [channels];
///   - optional embedded test cases: "test.inputs" F32 [n, ...], "test.outputs" F32 [n, ...].
/// Metadata (strings): "tern.format" = "tern-packed-3", "tern.version", "tern.policy" (e.g.
/// "absmean"), "tern.activation_bits" = "8", "tern.model" (the trained model's description) and
/// "tern.architecture", a JSON object {"input_shape": [...] | null, "layers": [{"kind": ...}, ...]}
/// from which the model is rebuilt (residual entries nest "body" and "shortcut" layer arrays).
/// Files of the earlier formats tern-packed-1 and tern-packed-2 are refused with a message that
/// names the format and asks for a new export.
///
/// Loading trusts nothing: a missing or extra tensor, a wrong dtype, shape or byte count, a code of
/// value 3, a non-zero padding weight, bad JSON, an unknown layer kind or layers whose sizes do not
/// chain all raise tern::error naming the file, the layer and what was expected versus found.

#include <nlohmann/json.hpp>

#include <cmath>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <type_traits>
#include <utility>

#include "../error.hpp"
#include "../io/safetensors.hpp"
#include "../tensor.hpp"
#include "../version.hpp"
#include "../layers/batch_norm.hpp"
#include "../layers/conv2d.hpp"
#include "../layers/embedding_bag.hpp"
#include "../layers/pooling.hpp"
#include "freeze.hpp"
#include "language_model.hpp"
#include "inference_model.hpp"

namespace tern {

/// @brief Metadata value of "tern.format" for packed model files.
inline constexpr const char* packed_model_format = "tern-packed-3";

/// @brief Options of save_packed_model.
struct packed_save_options {
    /// A few input samples [n, ...]: their outputs are computed now, stored in the file and
    /// checked when it loads (frugally-deep style). Also records the per-sample input shape.
    std::optional<tensor> test_inputs;
    /// Extra metadata entries.
    std::map<std::string, std::string> metadata;
};

/// @brief Options of load_packed_model.
struct packed_load_options {
    /// Run the embedded test cases (if any) and fail when the outputs differ.
    bool check_test_cases = true;
    /// Relative tolerance of that check (of each sample's largest output magnitude).
    float test_tolerance = 5e-3f;
};

namespace detail {

/// Registers tern's own layer kinds (once; user registrations win). Each is a layer template of
/// the library (its frozen instantiation, or a parameter-free layer) behind erased_layer: one
/// line per kind.
inline void register_builtin_layer_kinds() {
    static const bool done = [] {
        register_policy_layer_kinds<linear, 8, fp32, fp16, fp32_prenorm, fp16_prenorm, absmean_ternary,
                                    absmedian_ternary>();
        register_policy_layer_kinds<conv2d, 8, fp32, fp16, fp32_prenorm, fp16_prenorm, absmean_ternary,
                                    absmedian_ternary>();
        register_policy_layer_kinds<embedding_bag, 8, fp32, fp16, absmean_ternary, absmedian_ternary>();
        register_layer_kind<frozen_layer_t<relu>>();
        register_layer_kind<frozen_layer_t<gelu>>();
        register_layer_kind<frozen_layer_t<silu>>();
        register_layer_kind<frozen_layer_t<flatten>>();
        register_layer_kind<frozen_layer_t<layer_norm>>();
        register_layer_kind<frozen_layer_t<rms_norm>>();
        register_layer_kind<frozen_layer_t<max_pool2d>>();
        register_layer_kind<avg_pool2d>();
        register_layer_kind<frozen_layer_t<global_avg_pool2d>>();
        register_layer_kind<frozen_layer_t<batch_norm2d>>();
        register_builtin_if_absent("decoder_lm", load_decoder_lm);
        register_lm_design<lm_design{}>();
        register_builtin_if_absent("residual", load_runtime_residual);
        return true;
    }();
    (void)done;
}

/// Largest |a - b| over the samples, relative to each sample's largest |b| (at least 1).
inline void check_test_cases(inference_model& model, const io::safetensors_data& data, const std::string& where,
                             float tol, std::set<std::string>& used) {
    const bool has_in = data.contains("test.inputs"), has_out = data.contains("test.outputs");
    require(has_in == has_out, where, ": embedded test cases need both 'test.inputs' and 'test.outputs', found only '",
            has_in ? "test.inputs" : "test.outputs", "'");
    if (!has_in) return;
    used.insert("test.inputs");
    used.insert("test.outputs");
    const tensor in = data.get_f32("test.inputs");
    const tensor expected = data.get_f32("test.outputs");
    require(in.dimension() >= 1 && expected.dimension() >= 1 && in.shape()[0] == expected.shape()[0] &&
                in.shape()[0] > 0,
            where, ": embedded test cases: 'test.inputs' ", shape_string(in.shape()), " and 'test.outputs' ",
            shape_string(expected.shape()), " must have the same positive sample count");
    if (!model.input_shape().empty()) {
        shape_t per(in.shape().begin() + 1, in.shape().end());
        require(per == model.input_shape(), where, ": embedded test inputs have sample shape ", shape_string(per),
                ", the architecture says ", shape_string(model.input_shape()));
    }
    tensor got;
    try {
        got = model.forward(in);
    } catch (const error& e) {
        fail(where, ": running the embedded test cases failed: ", e.what());
    }
    require(got.shape() == expected.shape(), where, ": embedded test cases: the model outputs shape ",
            shape_string(got.shape()), ", the file expects ", shape_string(expected.shape()));
    const std::size_t n = expected.shape()[0], per = expected.size() / n;
    for (std::size_t s = 0; s < n; ++s) {
        float scale = 1.0f;
        for (std::size_t i = 0; i < per; ++i) scale = std::max(scale, std::fabs(expected.data()[s * per + i]));
        for (std::size_t i = 0; i < per; ++i) {
            const float a = got.data()[s * per + i], b = expected.data()[s * per + i];
            require(std::fabs(a - b) <= tol * scale, where, ": embedded test case ", s, ": output ", i, " is ", a,
                    ", the file expects ", b, " (tolerance ", tol * scale,
                    "); the weights or the architecture do not match the model that was saved");
        }
    }
}

}  // namespace detail

/// @brief The packed file contents of @p model (tensors and metadata), ready to save.
/// With options.test_inputs, the model runs on them and records the sample shape.
/// @throws tern::error if the test inputs do not fit the model.
inline io::safetensors_data packed_model_data(inference_model& model, const packed_save_options& options = {}) {
    io::safetensors_data data;
    if (options.test_inputs) {
        const tensor& in = *options.test_inputs;
        detail::require(in.dimension() >= 2 && in.shape()[0] > 0, "save_packed_model: test inputs need shape [n, ...] with n > 0, got ",
                        detail::shape_string(in.shape()));
        model.set_input_shape(shape_t(in.shape().begin() + 1, in.shape().end()));
        data.put("test.inputs", in);
        data.put("test.outputs", model.forward(in));
    }
    model.check_shapes("save_packed_model");
    layer_writer w(data, "");
    detail::save_layers(model.layers(), w);
    for (const auto& [k, v] : options.metadata) data.metadata[k] = v;
    data.metadata["tern.format"] = packed_model_format;
    data.metadata["tern.version"] = version_string;
    data.metadata["tern.policy"] = model.policy();
    data.metadata["tern.activation_bits"] = "8";
    data.metadata["tern.model"] = model.source_description();
    data.metadata["tern.architecture"] = model.architecture().dump();
    return data;
}

/// @brief Saves @p model as a packed model file at @p path, atomically (io::save_safetensors).
/// @throws tern::error when the file cannot be written (an existing file is then left untouched).
inline void save_packed_model(const std::filesystem::path& path, inference_model& model,
                              const packed_save_options& options = {}) {
    io::save_safetensors(path, packed_model_data(model, options));
}

/// @brief Freezes a trained model (tern::freeze) and saves it as a packed model file.
template <class Model>
    requires(!std::is_same_v<std::remove_cvref_t<Model>, inference_model>)
void save_packed_model(const std::filesystem::path& path, const Model& trained, const packed_save_options& options = {}) {
    inference_model frozen = freeze(trained);
    save_packed_model(path, frozen, options);
}

/// @brief Rebuilds a model from packed-file contents; @p where names the source in messages.
/// @throws tern::error for every malformed input (see the file comment).
inline inference_model parse_packed_model(const io::safetensors_data& data, const std::string& where,
                                          const packed_load_options& options = {}) {
    detail::register_builtin_layer_kinds();
    const auto meta = [&](const char* key) -> const std::string& {
        auto it = data.metadata.find(key);
        detail::require(it != data.metadata.end(), where, ": not a tern packed model (no '", key, "' metadata)");
        return it->second;
    };
    const std::string& format = meta("tern.format");
    detail::require(format != "tern-checkpoint-1", where,
                    ": this is a training checkpoint, not a packed model; export one with tern::save_packed_model "
                    "(e.g. mlp --export FILE)");
    detail::require(format != "tern-packed-1", where, ": format 'tern-packed-1' comes from an earlier tern, whose ",
                    "ternary layers padded rows and columns; expected '", packed_model_format,
                    "': export the model again (e.g. mlp --export FILE)");
    detail::require(format != "tern-packed-2", where, ": format 'tern-packed-2' comes from an earlier tern, whose ",
                    "inference layers were written apart from the training layers (other fields for convolutions, "
                    "norms and batch norms); expected '", packed_model_format,
                    "': export the model again from its checkpoint (e.g. mlp --load CKPT --export FILE)");
    detail::require(format == packed_model_format, where, ": expected format '", packed_model_format, "', found '",
                    format, "'");
    const std::string& policy = meta("tern.policy");
    const std::string& bits = meta("tern.activation_bits");
    detail::require(bits == "8", where, ": activation bits '", bits, "' are not supported (8 only)");

    nlohmann::json arch;
    try {
        arch = io::detail::parse_json_limited(meta("tern.architecture"), where + ": metadata 'tern.architecture'");
    } catch (const nlohmann::json::exception& e) {
        detail::fail(where, ": metadata 'tern.architecture' is not valid JSON: ", e.what());
    }
    detail::require(arch.is_object() && arch.contains("layers") && arch["layers"].is_array(), where,
                    ": metadata 'tern.architecture' must be an object with a \"layers\" array, found ",
                    io::detail::dump_short(arch));
    const nlohmann::json& layers = arch["layers"];
    detail::require(!layers.empty(), where, ": the architecture has no layers");
    shape_t input_shape;
    if (arch.contains("input_shape") && !arch["input_shape"].is_null()) {
        const nlohmann::json& s = arch["input_shape"];
        detail::require(s.is_array() && !s.empty(), where, ": 'input_shape' must be null or a non-empty array, found ",
                        io::detail::dump_short(s));
        for (const auto& d : s) {
            detail::require(d.is_number_unsigned() && d.get<std::uint64_t>() > 0 &&
                                d.get<std::uint64_t>() < (std::uint64_t{1} << 40),
                            where, ": 'input_shape' entries must be positive integers, found ", io::detail::dump_short(s));
            input_shape.push_back(static_cast<std::size_t>(d.get<std::uint64_t>()));
        }
    }

    std::set<std::string> used;
    layer_list built = load_layers(layers, [&](std::size_t i) {
        return layer_reader(data, where, std::to_string(i), layers[i], used);
    });
    inference_model model(std::move(built), policy);
    model.set_input_shape(std::move(input_shape));
    if (auto it = data.metadata.find("tern.model"); it != data.metadata.end()) model.set_source_description(it->second);
    model.check_shapes(where);

    if (options.check_test_cases) {
        detail::check_test_cases(model, data, where, options.test_tolerance, used);
    } else {
        used.insert("test.inputs");
        used.insert("test.outputs");
    }
    for (const auto& name : data.names())
        detail::require(used.count(name) != 0, where, ": tensor '", name,
                        "' belongs to no layer of the architecture (extra or misnamed tensor)");
    return model;
}

/// @brief Loads a packed model file as a run-time inference model (no compile-time type needed,
/// no shadow weights read).
/// @throws tern::error naming the file, the layer and expected vs found for every malformed file.
inline inference_model load_packed_model(const std::filesystem::path& path, const packed_load_options& options = {}) {
    const io::safetensors_data data = io::load_safetensors(path);
    return parse_packed_model(data, "packed model '" + path.string() + "'", options);
}

}  // namespace tern
