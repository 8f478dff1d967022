#pragma once
/// @file policy.hpp
/// @brief Quantization policies (compile-time tag types) and the activation bit width.
///
/// A policy says how a linear or convolution layer treats its weights in the forward pass:
/// - fp32: plain full precision, the reference;
/// - fp16: weights and inputs rounded to IEEE binary16, fp32 accumulation (the papers' 16-bit baseline);
/// - absmean_ternary: BitNet b1.58, weights in {-1,0,+1} scaled by mean |W| per tensor;
/// - absmedian_ternary: the "Reloaded" variant, scaled by the lower median of |W|.
/// The fp policies can also switch on BitLinear's parameter-free input normalization
/// (`fp16_prenorm`, `fp32_prenorm`): the continual-QAT papers' "pre-quantized" 16-bit phase.

#include <concepts>
#include <type_traits>
#include <string_view>

namespace tern {

/// How the per-tensor weight scale is computed.
enum class weight_scale { none, abs_mean, abs_median };

/// @brief fp32 reference policy: y = x W^T + b.
struct fp32 {
    static constexpr std::string_view name = "fp32";
    static constexpr bool ternary = false;
    static constexpr bool half_precision = false;
    static constexpr bool normalize_input = false;
    static constexpr weight_scale scale = weight_scale::none;
};

/// @brief Emulated 16-bit policy: W and x rounded to binary16, fp32 accumulation, STE gradients.
struct fp16 {
    static constexpr std::string_view name = "fp16";
    static constexpr bool ternary = false;
    static constexpr bool half_precision = true;
    static constexpr bool normalize_input = false;
    static constexpr weight_scale scale = weight_scale::none;
};

/// @brief fp32 with BitLinear's input normalization (no quantization).
struct fp32_prenorm {
    static constexpr std::string_view name = "fp32_prenorm";
    static constexpr bool ternary = false;
    static constexpr bool half_precision = false;
    static constexpr bool normalize_input = true;
    static constexpr weight_scale scale = weight_scale::none;
};

/// @brief fp16 with BitLinear's input normalization (no quantization).
struct fp16_prenorm {
    static constexpr std::string_view name = "fp16_prenorm";
    static constexpr bool ternary = false;
    static constexpr bool half_precision = true;
    static constexpr bool normalize_input = true;
    static constexpr weight_scale scale = weight_scale::none;
};

/// @brief BitNet b1.58: ternary weights scaled by mean |W| (per tensor).
struct absmean_ternary {
    static constexpr std::string_view name = "absmean";
    static constexpr bool ternary = true;
    static constexpr bool half_precision = false;
    static constexpr bool normalize_input = true;
    static constexpr weight_scale scale = weight_scale::abs_mean;
};

/// @brief BitNet b1.58 Reloaded: ternary weights scaled by the lower median of |W| (per tensor).
struct absmedian_ternary {
    static constexpr std::string_view name = "absmedian";
    static constexpr bool ternary = true;
    static constexpr bool half_precision = false;
    static constexpr bool normalize_input = true;
    static constexpr weight_scale scale = weight_scale::abs_median;
};

/// @brief A quantization policy: a tag type with the traits above.
template <class P>
concept quantization_policy = requires {
    { P::name } -> std::convertible_to<std::string_view>;
    { P::ternary } -> std::convertible_to<bool>;
    { P::half_precision } -> std::convertible_to<bool>;
    { P::normalize_input } -> std::convertible_to<bool>;
    { P::scale } -> std::convertible_to<weight_scale>;
};

/// @brief Activation bit width meaning "keep activations in float" (no activation quantization).
inline constexpr int float_activations = 32;

/// @brief A valid activation bit width: 2..16 bits, or float_activations.
template <int Bits>
concept activation_bits = (Bits == float_activations) || (Bits >= 2 && Bits <= 16);

namespace detail {
/// The policy itself when valid, else fp32: after a failed static_assert the rest of a layer still
/// instantiates cleanly, so a wrong policy gives one error line instead of a cascade.
template <class P>
using valid_policy_t = std::conditional_t<quantization_policy<P>, P, fp32>;
/// Likewise for the activation width.
template <int Bits>
inline constexpr int valid_bits = activation_bits<Bits> ? Bits : 8;
}  // namespace detail

/// @brief Whether activations are quantized for this policy and width (only ternary policies quantize).
template <class P, int Bits>
inline constexpr bool quantizes_activations = P::ternary && Bits != float_activations;

}  // namespace tern
