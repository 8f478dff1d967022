#pragma once
/// @file deploy/language_model.hpp
/// @brief Run-time language models: loading a frozen tern::decoder_lm of any registered design from
/// a file, and generation by the same loop as decoder_lm::generate.
///
/// A design (lm_design) is a template argument, so each one a program loads must be compiled in.
/// Files of the default design load everywhere; a program registers others with
/// tern::register_lm_design<D>(), and freezing a decoder_lm registers its design, so a program
/// loads what it saves. `infer` registers the designs the `lm` example offers.

#include <functional>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "../layers/transformer.hpp"
#include "inference_model.hpp"

namespace tern {

namespace detail {

/// The decoder_lm designs this program can load, each with its loader over tern's policies.
struct lm_design_registry {
    std::mutex mutex;
    std::vector<std::pair<lm_design, layer_loader>> loaders;
    static lm_design_registry& instance() {
        static lm_design_registry r;
        return r;
    }
};

template <lm_design Design>
struct lm_of_design {
    template <class Policy, int ActBits>
    using type = decoder_lm<Policy, ActBits, Design>;
};

/// The loader of kind "decoder_lm": the entry's design picks a registered loader.
inline std::unique_ptr<inference_layer> load_decoder_lm(const layer_reader& r) {
    const lm_design design = read_lm_design(r);
    layer_loader loader;
    std::string known;
    {
        auto& reg = lm_design_registry::instance();
        std::lock_guard<std::mutex> lock(reg.mutex);
        for (const auto& [d, l] : reg.loaders) {
            known += (known.empty() ? "" : "; ") + describe_design(d);
            if (d == design) loader = l;
        }
    }
    if (!loader)
        r.fail("this program cannot load a decoder_lm with ", describe_design(design),
               " (it knows: ", known, "); register the design with tern::register_lm_design<...>()");
    return loader(r);
}

}  // namespace detail

/// @brief Lets files holding decoder_lm<P, 8, Design> load in this program, in every policy of
/// tern's (compiles those frozen instantiations). Idempotent.
template <lm_design Design>
void register_lm_design() {
    auto& reg = detail::lm_design_registry::instance();
    std::lock_guard<std::mutex> lock(reg.mutex);
    for (const auto& entry : reg.loaders)
        if (entry.first == Design) return;
    reg.loaders.emplace_back(Design,
                             detail::builtin_policy_loader<detail::lm_of_design<Design>::template type, 8>("decoder_lm"));
}

/// A frozen decoder_lm joins a run-time model (tern::freeze): its design becomes loadable.
template <class Policy, int ActBits, lm_design Design>
void register_erased_kind(const decoder_lm<Policy, ActBits, Design>&) {
    if constexpr (ActBits == 8) register_lm_design<Design>();
}

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
