#pragma once
/// @file deploy/language_model.hpp
/// @brief Generation with a run-time language model: a frozen tern::decoder_lm loaded from a file
/// (or converted from tern::freeze), run by the same loop as decoder_lm::generate.

#include <functional>
#include <string>
#include <vector>

#include "../layers/transformer.hpp"
#include "inference_model.hpp"

namespace tern {

/// @brief Whether @p model is a language model (a frozen decoder_lm).
inline bool is_language_model(const inference_model& model) {
    return model.size() == 1 && model.layer(0).kind() == "decoder_lm";
}

/// @brief Continues @p prompt by @p count tokens with the key/value caches, exactly as
/// decoder_lm::generate does (the same loop: the same sampling and random stream, the same
/// re-prefill from the last context / 2 tokens when the context fills up); calls @p on_token with
/// each token.
/// @throws tern::error for a model that is not a language model, an empty prompt or bad ids.
inline std::vector<int> generate_tokens(inference_model& model, const std::vector<int>& prompt, std::size_t count,
                                        const sample_options& options = {},
                                        const std::function<void(int)>& on_token = {}) {
    detail::require(is_language_model(model), "generate_tokens: the model is not a language model (its first layer is ",
                    model.size() ? model.layer(0).kind() : std::string("missing"), ", expected decoder_lm)");
    const std::size_t context = model.layer(0).config()["context"].get<std::size_t>();
    return detail::generate_with(model, context, prompt, count, options, on_token);
}

}  // namespace tern
