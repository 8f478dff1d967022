#pragma once
/// @file checkpoint.hpp
/// @brief Saving and loading models (and optionally optimizer state) as safetensors files.
///
/// A checkpoint holds every parameter and buffer under its model name ("0.weight"), F32, and
/// metadata: "tern.format", "tern.version", "tern.policy", "tern.architecture" (the model's
/// architecture as JSON, tern::architecture: each layer's config()), "tern.model" (its one-line
/// description, for people) plus any entries the caller adds (e.g. the training step).
/// Loading checks the policy, the architecture (structured data, never parsed text), every name,
/// shape and dtype, and says what differs.

#include <filesystem>
#include <cctype>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "io/architecture.hpp"
#include "io/safetensors.hpp"
#include "optim/optimizer.hpp"
#include "sequential.hpp"
#include "version.hpp"

namespace tern {

/// @brief Metadata key of the checkpoint format marker.
inline constexpr const char* checkpoint_format = "tern-checkpoint-1";

/// @brief How strict load_checkpoint is.
struct load_options {
    /// Accept a checkpoint of another policy with the same architecture (parameters are policy-free
    /// fp32 shadow weights), e.g. to resume a continual-QAT run whose file predates the switch.
    bool allow_policy_change = false;
};

/// @brief The model's tensors and metadata as a safetensors_data, ready to save or extend.
template <class Model>
io::safetensors_data checkpoint_data(Model& model, const detail::optimizer_base* optimizer = nullptr,
                                     const std::map<std::string, std::string>& extra = {}) {
    io::safetensors_data data;
    for (const auto& p : model.parameters()) data.put(p.name, *p.value);
    if (optimizer) optimizer->save_state(data);
    for (const auto& [k, v] : extra) data.metadata[k] = v;
    data.metadata["tern.format"] = checkpoint_format;
    data.metadata["tern.version"] = version_string;
    data.metadata["tern.policy"] = policy_name(model);
    data.metadata["tern.architecture"] = architecture(model).dump();
    data.metadata["tern.model"] = model.describe();
    return data;
}

/// @brief Saves @p model (and @p optimizer's state when given) to @p path atomically.
/// @param extra additional metadata entries (strings), e.g. {"step", "1200"}.
/// @throws tern::error when the file cannot be written; an existing file is then left untouched.
template <class Model>
void save_checkpoint(const std::filesystem::path& path, Model& model,
                     const detail::optimizer_base* optimizer = nullptr,
                     const std::map<std::string, std::string>& extra = {}) {
    io::save_safetensors(path, checkpoint_data(model, optimizer, extra));
}

namespace detail {

/// A checkpoint's model tensors, decoded and checked, and the parameters they go to.
struct decoded_model {
    parameter_list params;
    std::vector<tensor> values;  // one per parameter, same order
};

/// Checks @p data against @p model and decodes every model tensor without changing the model:
/// the first half of a transactional load.
template <class Model>
decoded_model decode_model(const io::safetensors_data& data, Model& model, const std::string& source,
                           load_options options) {
    const auto meta = [&](const char* key) -> std::string {
        auto it = data.metadata.find(key);
        require(it != data.metadata.end(), source, ": not a tern checkpoint (no '", key, "' metadata)");
        return it->second;
    };
    require(meta("tern.format") == checkpoint_format, source, ": expected checkpoint format '", checkpoint_format,
            "', found ", io::detail::quote(meta("tern.format")));
    const std::string policy = policy_name(model), file_policy = meta("tern.policy");
    if (!options.allow_policy_change)
        require(file_policy == policy, source, ": policy mismatch: the model is '", policy, "', the checkpoint is ",
                io::detail::quote(file_policy), " (convert the model, or load with allow_policy_change)");
    if (!data.metadata.count("tern.architecture")) {
        // Written before checkpoints recorded their architecture: only the same model in the same
        // policy can load it, recognized by its description.
        const std::string described = model.describe(), file_described = meta("tern.model");
        require(!options.allow_policy_change, source,
                ": this checkpoint predates 'tern.architecture' metadata, so it loads only into the same model "
                "in the same policy (load it that way and save it again to convert it)");
        require(file_described == described, source, ": the checkpoint holds a different model.\n  expected: ",
                described, "\n  found:    ", io::detail::quote(file_described, described.size() + 40));
    }
    const nlohmann::json expected = architecture(model);
    const nlohmann::json found =
        data.metadata.count("tern.architecture")
            ? io::detail::parse_json_limited(meta("tern.architecture"), source + ": metadata 'tern.architecture'")
            : expected;
    const bool same = options.allow_policy_change ? without_policies(found) == without_policies(expected)
                                                  : found == expected;
    require(same, source, ": the checkpoint holds a different ", options.allow_policy_change ? "architecture" : "model",
            ".\n  expected: ", io::detail::dump_short(expected, 600), "\n  found:    ", io::detail::dump_short(found, 600));
    decoded_model out{model.parameters(), {}};
    const parameter_list& params = out.params;
    std::size_t model_tensors = 0;
    for (const auto& p : params) {
        require(data.contains(p.name), source, ": missing tensor '", p.name, "' (shape ",
                shape_string(p.value->shape()), ")");
        ++model_tensors;
    }
    for (const auto& name : data.names()) {
        if (name.rfind("optimizer.", 0) == 0) continue;
        bool known = false;
        for (const auto& p : params) known |= p.name == name;
        require(known, source, ": unexpected tensor ", io::detail::quote(name), " that the model does not have");
    }
    out.values.reserve(model_tensors);
    for (const auto& p : params) out.values.push_back(data.get_f32(p.name, to_shape(p.value->shape())));
    return out;
}

/// Moves what decode_model returned into the model's parameters (moves only, nothing that can fail).
inline void commit_model(decoded_model&& d) noexcept {
    for (std::size_t i = 0; i < d.params.size(); ++i) *d.params[i].value = std::move(d.values[i]);
}

}  // namespace detail

/// @brief Copies the tensors of @p data into @p model after checking that they fit exactly.
/// @throws tern::error saying what does not match; the model is unchanged on error.
template <class Model>
void restore_model(const io::safetensors_data& data, Model& model, const std::string& source,
                   load_options options = {}) {
    detail::commit_model(detail::decode_model(data, model, source, options));
}

/// @brief Loads @p path into @p model (and @p optimizer, which must then be in the file).
/// @return the file's metadata (including any extra entries saved with it).
/// @throws tern::error naming the file and what does not match (policy, model, tensor name,
///         shape, dtype) or what is malformed; the model and the optimizer are unchanged on error
///         (both are decoded and checked before either is changed).
template <class Model>
std::map<std::string, std::string> load_checkpoint(const std::filesystem::path& path, Model& model,
                                                   detail::optimizer_base* optimizer = nullptr,
                                                   load_options options = {}) {
    io::safetensors_data data = io::load_safetensors(path);
    detail::decoded_model decoded = detail::decode_model(data, model, path.string(), options);
    std::optional<detail::optimizer_base::decoded_state> state;
    if (optimizer) state = optimizer->decode_state(data);
    // Commit: moves only, so nothing below can fail half-way.
    detail::commit_model(std::move(decoded));
    if (state) optimizer->commit_state(std::move(*state));
    return std::move(data.metadata);
}

}  // namespace tern
