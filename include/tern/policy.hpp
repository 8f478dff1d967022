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

/// @brief The forward-only instantiation of policy @p P: what tern::freeze turns a trained layer
/// into. The layer templates are the same; with a frozen policy they keep no training state, and a
/// ternary projection holds 2-bit packed codes and runs the integer kernels (8-bit activations).
/// Its traits are P's, so a frozen layer computes exactly what P computes at lambda 1.
template <quantization_policy P>
struct frozen {
    using trained = P;  ///< the training policy this one was frozen from
    static constexpr std::string_view name = P::name;
    static constexpr bool ternary = P::ternary;
    static constexpr bool half_precision = P::half_precision;
    static constexpr bool normalize_input = P::normalize_input;
    static constexpr weight_scale scale = P::scale;
};

/// @brief A forward-only (frozen) policy.
template <class P>
concept forward_only_policy = quantization_policy<P> && requires { typename P::trained; };

/// @brief Whether layers in policy @p P train (keep activations and gradients for backward).
template <class P>
inline constexpr bool trainable_policy = !forward_only_policy<P>;

namespace detail {
/// Stands in for a member a frozen instantiation does not have.
struct empty {};

template <class P>
struct freeze_policy {
    using type = frozen<P>;
};
template <class P>
struct freeze_policy<frozen<P>> {
    using type = frozen<P>;
};
}  // namespace detail

/// @brief A member of type T in a trainable instantiation, nothing in a frozen one (declare it
/// `[[no_unique_address]]`): training-only state (inputs kept for backward, gradients).
template <class P, class T>
using training_only = std::conditional_t<trainable_policy<P>, T, detail::empty>;

/// @brief The policy of a layer without a quantization policy of its own (activations, pooling,
/// norms and embeddings, which stay fp32) under a policy transform T (tern::to_policy,
/// tern::to_frozen): fp32 while it trains, frozen<fp32> once frozen.
template <class T>
using fixed_policy_t = std::conditional_t<T::freezing, frozen<fp32>, fp32>;

/// @brief The full-precision policy that goes with a layer in policy @p P: the fp32 parts of a
/// model (its norms, embeddings) train when it trains and are frozen when it is frozen.
template <class P>
using fixed_policy_of = std::conditional_t<trainable_policy<P>, fp32, frozen<fp32>>;

/// @brief Rejects a policy other than fp32 or frozen<fp32> for a layer that is always full
/// precision (the layer's own template argument says whether it trains).
template <class P>
concept fixed_precision_policy = std::is_same_v<P, fp32> || std::is_same_v<P, frozen<fp32>>;

/// @brief frozen<P>, or P itself when it is frozen already.
template <class P>
using frozen_t = typename detail::freeze_policy<P>::type;

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
