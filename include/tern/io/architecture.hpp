#pragma once
/// @file io/architecture.hpp
/// @brief A compile-time model's architecture as JSON: what checkpoints record and verify.
///
/// Each layer contributes its config() (kind, sizes, options, policy: the same structured fields
/// the packed format stores); sequential and residual nest their parts. A layer without config()
/// (a user's layer, dropout) contributes {"kind": its description}. Comparing two architectures
/// compares data, never parsed text; tern::without_policies drops the policy fields, for loading
/// a checkpoint into the same model in another policy.

#include <nlohmann/json.hpp>

#include <cstddef>
#include <string>
#include <utility>

#include "../layers/residual.hpp"
#include "../sequential.hpp"

namespace tern {

/// @brief The architecture of @p model (a layer, sequential or residual) as JSON.
template <class L>
nlohmann::json architecture(const L& model) {
    if constexpr (detail::is_sequential<L>::value) {
        nlohmann::json layers = nlohmann::json::array();
        [&]<std::size_t... I>(std::index_sequence<I...>) {
            (layers.push_back(architecture(model.template layer<I>())), ...);
        }(std::make_index_sequence<L::size()>{});
        return {{"kind", "sequential"}, {"layers", std::move(layers)}};
    } else if constexpr (detail::is_residual<L>::value) {
        return {{"kind", "residual"}, {"body", architecture(model.body())}, {"shortcut", architecture(model.shortcut())}};
    } else if constexpr (requires { { model.config() } -> std::convertible_to<nlohmann::json>; }) {
        return model.config();
    } else {
        return {{"kind", model.describe()}};
    }
}

/// @brief @p arch without its "policy" and "activation_bits" fields, at every depth: what stays
/// the same when a model is converted to another policy.
inline nlohmann::json without_policies(nlohmann::json arch) {
    if (arch.is_object()) {
        arch.erase("policy");
        arch.erase("activation_bits");
        for (auto& [key, value] : arch.items()) value = without_policies(std::move(value));
    } else if (arch.is_array()) {
        for (auto& value : arch) value = without_policies(std::move(value));
    }
    return arch;
}

}  // namespace tern
