#pragma once
/// @file deploy/frozen_linear.hpp
/// @brief Inference linear layers: frozen_linear (packed ternary weights, int8 activations) and
/// frozen_dense (full-precision weights, for fp32/fp16 layers and pinned heads).
///
/// frozen_linear computes BitLinear at lambda = 1 (../shared/spec/bitlinear.md, step 5):
///     y[t][n] = (sum_k Wq[n][k] * xq[t][k]) / (s_w * s_x[t]) (+ b[n])
/// with the per-token normalization and int8 quantization of packed::quantize_activations and the
/// exact integer product of packed::ternary_gemm_int.
///
/// ## Storage
/// The weights live in a packed::split_matrix: exactly 2 bits per weight for any N and K (a body
/// in the spec's packed layout, the last N mod 4 rows and the last K mod 128 columns kept apart
/// without padding), plus the 4-byte scale. K = 784, N = 256 costs 2.0002 bits per weight, a
/// 256 -> 10 head 2.0125 and a 3x3 convolution over one channel into 32 (288 weights) 2.11, the
/// scale being most of the excess. The file holds the same bytes as memory, apart from a tail kept
/// in lane layout (see split_matrix).

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "../kernels/fp16.hpp"
#include "../kernels/gemm.hpp"
#include "../packed/activation_quant.hpp"
#include "../packed/aligned_buffer.hpp"
#include "../packed/split_matrix.hpp"
#include "../quantize.hpp"
#include "inference_model.hpp"

namespace tern {

/// @brief Inference BitLinear: 2-bit packed ternary weights, a per-tensor scale s_w, optional bias.
///
/// forward(x [..., K]) normalizes each token, quantizes it to int8 (absmax, 127 levels) and runs
/// the packed integer product; it equals `linear<absmean_ternary|absmedian_ternary, 8>::forward` at
/// lambda 1 up to float rounding: the int8 codes and scales are the training layer's (same
/// normalization, same quantization), only the final products are summed in another order.
/// @throws tern::error on construction for activation bits other than 8, codes outside {-1, 0, 1},
/// a non-positive scale; on forward for an input whose last axis is not K.
class frozen_linear final : public inference_layer {
public:
    /// @brief Packs @p codes (N x K row-major, values in {-1, 0, 1}) with weight scale @p s_w
    /// (Wq / s_w is the dequantized weight) and optional @p bias (N values, or null).
    /// @param policy  the training policy name, recorded in the file ("absmean", "absmedian").
    frozen_linear(const std::int8_t* codes, std::size_t in, std::size_t out, float s_w, const float* bias,
                  std::string policy, int activation_bits = 8)
        : in_(in), out_(out), s_w_(s_w), policy_(std::move(policy)) {
        check_header(activation_bits);
        detail::require(codes != nullptr, "frozen_linear: null codes");
        W_ = packed::split_matrix(codes, out, in);
        if (bias) bias_.assign(bias, bias + out);
    }

    /// @brief Adopts packed bytes as written by save() (the split_matrix's body, strip and tail),
    /// checking every code.
    /// @throws tern::error if a byte count is wrong, a code is 3 or an unused code is not 1.
    frozen_linear(std::size_t in, std::size_t out, float s_w, std::vector<float> bias, std::string policy,
                  int activation_bits, const std::vector<std::uint8_t>& body, const std::vector<std::uint8_t>& strip,
                  const std::vector<std::uint8_t>& tail)
        : in_(in), out_(out), s_w_(s_w), bias_(std::move(bias)), policy_(std::move(policy)) {
        check_header(activation_bits);
        detail::require(bias_.empty() || bias_.size() == out, "frozen_linear: bias has ", bias_.size(),
                        " values, expected ", out);
        W_ = packed::split_matrix(out, in, body, strip, tail);
    }

    std::string kind() const override { return "ternary_linear"; }
    std::size_t in_features() const { return in_; }
    std::size_t out_features() const { return out_; }
    float weight_scale() const { return s_w_; }
    bool has_bias() const { return !bias_.empty(); }
    const std::vector<float>& bias() const { return bias_; }
    const std::string& policy() const { return policy_; }
    int activation_bits() const { return 8; }
    /// @brief The packed weights.
    const packed::split_matrix& weights() const { return W_; }

    /// @brief The weight in {-1, 0, 1} at (@p n, @p k).
    int weight(std::size_t n, std::size_t k) const { return W_.weight(n, k); }
    /// @brief All weights, N x K row-major in {-1, 0, 1}.
    std::vector<std::int8_t> unpack() const { return W_.unpack(); }

    const tensor& forward(const tensor& x) override {
        const std::size_t T = detail::token_count(x, in_, "frozen_linear (ternary_linear)");
        detail::shape_like(y_, x, out_);
        forward(x.data(), T, y_.data());
        return y_;
    }

    /// @brief Raw form: y[T x N] from x[T x K], both contiguous.
    void forward(const float* x, std::size_t T, float* y) {
        if (T == 0) return;
        const std::size_t N = out_, K = in_;
        packed::quantize_activations(x, T, K, K, qa_);  // normalizes exactly as training does
        const float s_w = s_w_;
        const float* b = bias_.empty() ? nullptr : bias_.data();
        const float* scale = qa_.scale.data();
        // The tail's products first (into dots_); the main product's epilogue then adds them while
        // it converts each finished chunk straight from the kernel's scratch to floats, so the
        // integer dots of the main part are never copied.
        const std::int32_t* tail = W_.tail_dots(qa_.q.data(), qa_.padded_cols, T, dots_, packed::kernel_path::automatic);
        // y = float(dot) * (1 / (s_w * s_x)) (+ b): one reciprocal per token, as packed::ternary_gemm.
        auto emit = [&](std::size_t n0, std::size_t n1, std::size_t t0, std::size_t t1, const std::int32_t* d,
                        std::size_t ld) {
            for (std::size_t t = t0; t < t1; ++t) {
                const float inv = 1.0f / (s_w * scale[t]);
                const std::int32_t* dt = d + (t - t0) * ld;  // dt[n - n0] for n in [n0, n1)
                const std::int32_t* tt = tail ? tail + t * N : nullptr;
                float* yt = y + t * N;
                if (tt && b) {
                    for (std::size_t n = n0; n < n1; ++n) yt[n] = static_cast<float>(dt[n - n0] + tt[n]) * inv + b[n];
                } else if (tt) {
                    for (std::size_t n = n0; n < n1; ++n) yt[n] = static_cast<float>(dt[n - n0] + tt[n]) * inv;
                } else if (b) {
                    for (std::size_t n = n0; n < n1; ++n) yt[n] = static_cast<float>(dt[n - n0]) * inv + b[n];
                } else {
                    for (std::size_t n = n0; n < n1; ++n) yt[n] = static_cast<float>(dt[n - n0]) * inv;
                }
            }
        };
        // The main kernels subtract sum(q) over all K, which removes the +1 code offset of the
        // tail as well (the tail's product adds raw codes).
        W_.run_main(qa_.q.data(), qa_.padded_cols, qa_.sum.data(), T, packed::kernel_path::automatic, "frozen_linear",
                    neg_sum_, emit);
    }

    nlohmann::json config() const override {
        return {{"kind", kind()},          {"in", in_},           {"out", out_}, {"bias", has_bias()},
                {"activation_bits", 8},    {"policy", policy_}};
    }
    void save(layer_writer& w) const override {
        if (W_.body().rows()) w.put_bytes("packed", W_.body().bytes(), W_.body().byte_count());
        if (W_.strip_rows() && W_.main_cols()) {
            const auto strip = W_.strip_bytes();
            w.put_bytes("packed_rows", strip.data(), strip.size());
        }
        if (W_.tail_cols()) {
            const auto tail = W_.tail_stream();
            w.put_bytes("packed_cols", tail.data(), tail.size());
        }
        w.put("scale", tensor(shape_t{1}, s_w_));
        if (has_bias()) {
            tensor b = tensor::from_shape({out_});
            std::copy(bias_.begin(), bias_.end(), b.data());
            w.put("bias", b);
        }
    }
    std::size_t parameter_bytes() const override { return packed_bytes() + bias_.size() * sizeof(float); }
    std::size_t packed_weights() const override { return in_ * out_; }
    std::size_t packed_bytes() const override {
        return W_.resident_bytes() + sizeof(float);
    }
    feature_info propagate(feature_info in, const std::string& where) const override {
        detail::require(in.last == 0 || in.last == in_, where, ": expects ", in_,
                        " input features but the previous layers give ", in.last);
        return {out_, in.total && in.last ? in.total / in.last * out_ : 0};
    }
    std::string describe() const override {
        return "ternary_linear<" + policy_ + ",a8>(" + std::to_string(in_) + "->" + std::to_string(out_) +
               (has_bias() ? ",bias" : "") + ")";
    }

    /// @brief Reads a frozen_linear from the entry of @p r: fields "in", "out", "bias",
    /// "activation_bits", "policy"; tensors "packed" (body), "packed_rows" (strip) and "packed_cols"
    /// (tail) as the shape requires (see packed::split_matrix), "scale" and "bias". Layers that
    /// embed a packed projection (conv2d) can reuse it.
    static frozen_linear read(const layer_reader& r) {
        const std::size_t in = r.size_field("in"), out = r.size_field("out");
        const bool bias = r.bool_field("bias");
        const double bits = r.number_field("activation_bits");
        if (bits != 8.0) r.fail("activation_bits ", bits, " is not supported by the packed kernels (8 only)");
        const std::string policy = r.string_field("policy");
        if (in > packed::max_cols) r.fail("in = ", in, " exceeds the kernels' limit of ", packed::max_cols);
        using packed::split_matrix;
        static const std::vector<std::uint8_t> none;
        const auto part = [&](const char* name, std::size_t bytes) -> const std::vector<std::uint8_t>& {
            return bytes ? r.u8(name, bytes) : none;
        };
        const auto& body = part("packed", split_matrix::body_bytes_for(out, in));
        const auto& strip = part("packed_rows", split_matrix::strip_bytes_for(out, in));
        const auto& tail = part("packed_cols", split_matrix::tail_bytes_for(out, in));
        const tensor scale = r.f32("scale", {1});
        const float s_w = scale(0);
        if (!(s_w > 0.0f) || !std::isfinite(s_w))
            r.fail("tensor '", r.prefix(), "scale': expected a positive finite weight scale, found ", s_w);
        std::vector<float> b;
        if (bias) {
            const tensor bt = r.f32("bias", {out});
            b.assign(bt.data(), bt.data() + out);
        }
        try {
            return frozen_linear(in, out, s_w, std::move(b), policy, 8, body, strip, tail);
        } catch (const error& e) {
            r.fail("packed weights ", in, "x", out, ": ", e.what());
        }
    }
    /// @brief Loader for kind "ternary_linear".
    static std::unique_ptr<inference_layer> load(const layer_reader& r) {
        return std::make_unique<frozen_linear>(read(r));
    }

private:
    void check_header(int activation_bits) const {
        detail::require(activation_bits == 8, "frozen_linear: ", activation_bits,
                        "-bit activations are not supported by the packed kernels (8 only); keep such layers in "
                        "their training form or retrain with 8-bit activations");
        detail::require(in_ > 0 && out_ > 0, "frozen_linear: expected positive feature counts, got ", in_, " -> ",
                        out_);
        detail::require(s_w_ > 0.0f && std::isfinite(s_w_), "frozen_linear: weight scale must be positive, got ",
                        s_w_);
    }

    std::size_t in_, out_;
    float s_w_;
    std::vector<float> bias_;
    std::string policy_;
    packed::split_matrix W_;
    // Scratch, reused across calls.
    packed::quantized_activations qa_;
    packed::aligned_buffer<std::int32_t> dots_, neg_sum_;
    tensor y_;
};

/// @brief Full-precision inference linear y = x W^T + b: fp32 layers, fp16 layers (weights stored
/// already rounded to binary16, inputs rounded at run time) and the prenorm policies (input
/// normalized per token first). Computes exactly what the training layer computes.
class frozen_dense final : public inference_layer {
public:
    /// @param weight [out, in]; @param bias [out] or empty; @param normalize BitLinear's input
    /// normalization (prenorm policies); @param half round inputs (and weights) to binary16.
    frozen_dense(tensor weight, tensor bias, bool normalize, bool half, std::string policy)
        : weight_(std::move(weight)), bias_(std::move(bias)), normalize_(normalize), half_(half),
          policy_(std::move(policy)) {
        detail::require(weight_.dimension() == 2 && weight_.size() > 0, "frozen_dense: expected a 2-d weight, got shape ",
                        detail::shape_string(weight_.shape()));
        out_ = weight_.shape()[0];
        in_ = weight_.shape()[1];
        // A default tern::tensor is a 0-d scalar of size 1, so "no bias" is any 0-d or empty tensor.
        has_bias_ = bias_.dimension() >= 1 && bias_.size() > 0;
        detail::require(!has_bias_ || (bias_.dimension() == 1 && bias_.size() == out_), "frozen_dense: bias of shape ",
                        detail::shape_string(bias_.shape()), " for ", out_, " outputs");
        if (half_) kernels::round_to_half(weight_.data(), weight_.data(), weight_.size());  // idempotent
    }

    std::string kind() const override { return "linear"; }
    std::size_t in_features() const { return in_; }
    std::size_t out_features() const { return out_; }
    bool has_bias() const { return has_bias_; }
    const tensor& weight() const { return weight_; }

    const tensor& forward(const tensor& x) override {
        const std::size_t T = detail::token_count(x, in_, "frozen_dense (linear)");
        detail::shape_like(y_, x, out_);
        const std::size_t K = in_, N = out_;
        const float* in = x.data();
        if (normalize_ || half_) {
            if (scratch_.size() < T * K) scratch_.resize(T * K);
            if (normalize_) {
                normalize_tokens(in, T, K, scratch_.data(), nullptr);
                in = scratch_.data();
            }
            if (half_) {
                kernels::round_to_half(in, scratch_.data(), T * K);
                in = scratch_.data();
            }
        }
        float* y = y_.data();
        kernels::sgemm(false, true, T, N, K, 1.0f, in, K, weight_.data(), K, 0.0f, y, N);
        if (has_bias()) {
            const float* b = bias_.data();
            for (std::size_t t = 0; t < T; ++t)
                for (std::size_t n = 0; n < N; ++n) y[t * N + n] += b[n];
        }
        return y_;
    }

    nlohmann::json config() const override {
        return {{"kind", kind()},          {"in", in_},     {"out", out_}, {"bias", has_bias()},
                {"normalize", normalize_}, {"half", half_}, {"policy", policy_}};
    }
    void save(layer_writer& w) const override {
        w.put("weight", weight_);
        if (has_bias()) w.put("bias", bias_);
    }
    std::size_t parameter_bytes() const override {
        return (weight_.size() + (has_bias_ ? bias_.size() : 0)) * sizeof(float);
    }
    feature_info propagate(feature_info in, const std::string& where) const override {
        detail::require(in.last == 0 || in.last == in_, where, ": expects ", in_,
                        " input features but the previous layers give ", in.last);
        return {out_, in.total && in.last ? in.total / in.last * out_ : 0};
    }
    std::string describe() const override {
        return "linear<" + policy_ + ">(" + std::to_string(in_) + "->" + std::to_string(out_) +
               (has_bias() ? ",bias" : "") + ")";
    }

    /// @brief Loader for kind "linear".
    static std::unique_ptr<inference_layer> load(const layer_reader& r) {
        const std::size_t in = r.size_field("in"), out = r.size_field("out");
        const bool bias = r.bool_field("bias"), normalize = r.bool_field("normalize"), half = r.bool_field("half");
        tensor w = r.f32("weight", {out, in});
        tensor b = bias ? r.f32("bias", {out}) : tensor::from_shape({0});
        return std::make_unique<frozen_dense>(std::move(w), std::move(b), normalize, half, r.string_field("policy"));
    }

private:
    tensor weight_, bias_;
    bool normalize_, half_, has_bias_ = false;
    std::string policy_;
    std::size_t in_ = 0, out_ = 0;
    std::vector<float> scratch_;
    tensor y_;
};

}  // namespace tern
