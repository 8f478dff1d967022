#pragma once
// The decoder-LM designs the examples offer. A design is a template argument of tern::decoder_lm,
// so each one is compiled in: `lm` picks one from --arch and --quantized-head once, at the top of
// main, and `infer` registers them all so that it loads whatever `lm --export` wrote.

#include <string>
#include <vector>

#include "tern/deploy/language_model.hpp"
#include "tern/error.hpp"
#include "tern/layers/transformer.hpp"

namespace tern_examples {

/// --arch names: tern's default (the README's runs), LLaMA's choices (as BitNet b1.58), GPT-2's.
inline const std::vector<std::string>& lm_arch_names() {
    static const std::vector<std::string> names{"tern", "llama", "gpt"};
    return names;
}

template <tern::lm_design Base, bool QuantizedHead>
inline constexpr tern::lm_design with_head{
    .norm = Base.norm, .mlp = Base.mlp, .positions = Base.positions, .quantized_head = QuantizedHead};

/// Calls fn.template operator()<Design>() for the design named by @p arch and @p quantized_head.
template <class Fn>
decltype(auto) with_lm_design(const std::string& arch, bool quantized_head, Fn&& fn) {
    const auto pick = [&]<tern::lm_design Base>() -> decltype(auto) {
        if (quantized_head) return fn.template operator()<with_head<Base, true>>();
        return fn.template operator()<with_head<Base, false>>();
    };
    if (arch == "llama") return pick.template operator()<tern::llama_design>();
    if (arch == "gpt") return pick.template operator()<tern::gpt_design>();
    tern::detail::require(arch == "tern", "--arch: expected tern, llama or gpt, got '", arch, "'");
    return pick.template operator()<tern::lm_design{}>();
}

/// Makes every design the examples offer loadable from packed files.
inline void register_example_lm_designs() {
    for (const std::string& arch : lm_arch_names())
        for (bool quantized_head : {false, true})
            with_lm_design(arch, quantized_head, []<tern::lm_design D>() { tern::register_lm_design<D>(); });
}

}  // namespace tern_examples
