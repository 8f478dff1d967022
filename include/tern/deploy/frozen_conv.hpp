#pragma once
/// @file deploy/frozen_conv.hpp
/// @brief Inference layers of convolutional networks: frozen_conv2d (a packed ternary or
/// full-precision GEMM over im2col patches), frozen_pool2d (max / average), frozen_global_avg_pool2d
/// and frozen_batch_norm2d (running statistics folded into a per-channel scale and shift), with
/// their tern::freezer specializations and registered kinds.
///
/// ## File entries (tern-packed-2)
///   - "ternary_conv2d" / "conv2d": {"in_channels", "out_channels", "kernel", "stride", "padding",
///     "dilation", "projection": [one "ternary_linear" or "linear" entry, in = C_in*k*k,
///     out = C_out]}; the projection's tensors live under "<path>.projection.0.";
///   - "max_pool2d" / "avg_pool2d": {"kernel", "stride", "padding"}; "global_avg_pool2d": {};
///   - "batch_norm2d": {"channels"}, tensors "scale" and "shift" F32 [channels]
///     (y = x * scale + shift, scale = gamma / sqrt(running_var + eps), shift = beta - mean * scale).
///
/// Images are NCHW [B, C, H, W]. A model file records the per-sample input shape ([1, 28, 28] for
/// Fashion-MNIST) when it was saved with test inputs; `infer` reshapes flat images to it.

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "../layers/batch_norm.hpp"
#include "../layers/conv2d.hpp"
#include "../layers/pooling.hpp"
#include "freeze.hpp"
#include "frozen_linear.hpp"
#include "inference_model.hpp"

namespace tern {

namespace detail {

/// The inference form of a training projection (the core of linear and conv2d) at lambda 1:
/// frozen_linear (packed) in ternary policies, frozen_dense otherwise.
template <class P, int B>
std::unique_ptr<inference_layer> freeze_projection(const projection<P, B>& core, const std::string& what) {
    const std::size_t N = core.out_features(), K = core.in_features();
    if constexpr (P::ternary) {
        require(quantizes_activations<P, B>, "freeze: ", what,
                " keeps float activations; the packed kernels need 8-bit activations");
        std::vector<std::int8_t> codes(N * K);
        const float s_w = ternarize_weights<P>(core.weight.data(), N * K, 1.0f, nullptr, codes.data());
        const float* bias = core.has_bias() ? core.bias.data() : nullptr;
        return std::make_unique<frozen_linear>(codes.data(), K, N, s_w, bias, std::string(P::name), B);
    } else {
        tensor w = core.weight;
        tensor b = core.has_bias() ? tensor(core.bias) : tensor::from_shape({0});
        return std::make_unique<frozen_dense>(std::move(w), std::move(b), P::normalize_input, P::half_precision,
                                              std::string(P::name));
    }
}

/// Height of an NCHW input described by @p in (last = W, total = C*H*W), 0 when unknown.
inline std::size_t image_height(feature_info in, std::size_t channels, const std::string& where) {
    if (in.last == 0 || in.total == 0) return 0;
    require(in.total % (channels * in.last) == 0, where, ": expects images of ", channels,
            " channels but the previous layers give ", in.total, " values per sample with width ", in.last);
    return in.total / (channels * in.last);
}

}  // namespace detail

/// @brief Inference convolution over NCHW images: im2col patches times a packed ternary matrix
/// (kind "ternary_conv2d", exactly conv2d<absmean|absmedian, 8> at lambda 1 up to float rounding) or a
/// full-precision one (kind "conv2d", for fp32/fp16 and pinned convolutions).
/// @throws tern::error on an input that is not [B, C_in, H, W] or smaller than the kernel.
class frozen_conv2d final : public inference_layer {
public:
    /// @param projection  frozen_linear or frozen_dense with in = C_in*k*k (columns ordered
    ///        (c, ki, kj)) and out = C_out.
    frozen_conv2d(std::size_t in_channels, std::size_t out_channels, std::size_t kernel, conv2d_options options,
                  std::unique_ptr<inference_layer> projection)
        : in_(in_channels), out_(out_channels), k_(kernel), opt_(options), proj_(std::move(projection)) {
        detail::require(in_ > 0 && out_ > 0 && k_ > 0 && opt_.stride > 0 && opt_.dilation > 0,
                        "frozen_conv2d: expected positive channels, kernel, stride and dilation");
        detail::require(proj_ != nullptr, "frozen_conv2d: null projection");
        std::size_t pin = 0, pout = 0;
        if (auto* p = dynamic_cast<frozen_linear*>(proj_.get())) {
            packed_ = true;
            pin = p->in_features();
            pout = p->out_features();
        } else if (auto* d = dynamic_cast<frozen_dense*>(proj_.get())) {
            pin = d->in_features();
            pout = d->out_features();
        } else {
            detail::fail("frozen_conv2d: the projection must be ternary_linear or linear, got ", proj_->kind());
        }
        detail::require(pin == in_ * k_ * k_ && pout == out_, "frozen_conv2d: projection ", pin, "->", pout,
                        " does not fit ", in_, "->", out_, " channels with kernel ", k_, " (expected ", in_ * k_ * k_,
                        "->", out_, ")");
    }

    std::string kind() const override { return packed_ ? "ternary_conv2d" : "conv2d"; }
    std::size_t in_channels() const { return in_; }
    std::size_t out_channels() const { return out_; }
    std::size_t kernel_size() const { return k_; }
    const conv2d_options& options() const { return opt_; }
    const inference_layer& projection() const { return *proj_; }

    const tensor& forward(const tensor& x) override {
        detail::require(x.dimension() == 4 && x.shape()[1] == in_, kind(), ": expected input [B, ", in_,
                        ", H, W] (NCHW), got shape ", detail::shape_string(x.shape()));
        const std::size_t B = x.shape()[0], H = x.shape()[2], W = x.shape()[3];
        const std::size_t span = opt_.dilation * (k_ - 1) + 1;
        detail::require(H + 2 * opt_.padding >= span && W + 2 * opt_.padding >= span, kind(), ": input of shape ",
                        detail::shape_string(x.shape()), " is smaller than the kernel after padding");
        const auto g = detail::im2col_geometry::of(in_, H, W, k_, opt_);
        const std::size_t P = g.positions(), K = g.patch(), N = out_, T = B * P;
        if (cols_.dimension() != 2 || cols_.shape()[0] != T || cols_.shape()[1] != K) cols_.resize({T, K});
        const std::size_t image = in_ * H * W;
        for (std::size_t b = 0; b < B; ++b) g.unfold(x.data() + b * image, cols_.data() + b * P * K);
        const tensor& tok = proj_->forward(cols_);  // [T, N]
        const shape_t shape{B, N, g.Ho, g.Wo};
        if (y_.shape() != shape) y_.resize(shape);
        for (std::size_t b = 0; b < B; ++b) detail::transpose_block(tok.data() + b * P * N, P, N, y_.data() + b * N * P);
        return y_;
    }

    nlohmann::json config() const override {
        return {{"kind", kind()},         {"in_channels", in_},      {"out_channels", out_},
                {"kernel", k_},           {"stride", opt_.stride},   {"padding", opt_.padding},
                {"dilation", opt_.dilation}, {"projection", nlohmann::json::array({proj_->config()})}};
    }
    void save(layer_writer& w) const override {
        layer_writer pw = w.nested("projection").nested("0");
        proj_->save(pw);
    }
    std::size_t parameter_bytes() const override { return proj_->parameter_bytes(); }
    std::size_t packed_weights() const override { return proj_->packed_weights(); }
    std::size_t packed_bytes() const override { return proj_->packed_bytes(); }
    feature_info propagate(feature_info in, const std::string& where) const override {
        const std::size_t H = detail::image_height(in, in_, where);
        if (!H) return {};
        const std::size_t Ho = detail::conv_out_size(H, k_, opt_.stride, opt_.padding, opt_.dilation);
        const std::size_t Wo = detail::conv_out_size(in.last, k_, opt_.stride, opt_.padding, opt_.dilation);
        detail::require(Ho > 0 && Wo > 0, where, ": images of ", H, "x", in.last, " are smaller than the kernel");
        return {Wo, out_ * Ho * Wo};
    }
    std::string describe() const override {
        return kind() + "(" + std::to_string(in_) + "->" + std::to_string(out_) + ",k" + std::to_string(k_) + ",s" +
               std::to_string(opt_.stride) + ",p" + std::to_string(opt_.padding) +
               (opt_.dilation != 1 ? ",d" + std::to_string(opt_.dilation) : "") + ", " + proj_->describe() + ")";
    }

    /// @brief Loader for the kinds "ternary_conv2d" and "conv2d".
    static std::unique_ptr<inference_layer> load(const layer_reader& r) {
        const std::size_t in = r.size_field("in_channels"), out = r.size_field("out_channels"),
                          k = r.size_field("kernel");
        conv2d_options o;
        o.stride = r.size_field("stride");
        o.dilation = r.size_field("dilation");
        const nlohmann::json& pad = r.config().contains("padding") ? r.config()["padding"] : nlohmann::json();
        if (!pad.is_number_unsigned() || pad.get<std::uint64_t>() > 4096)
            r.fail("field 'padding': expected an integer in 0..4096, found ", pad.dump());
        o.padding = std::size_t(pad.get<std::uint64_t>());
        const nlohmann::json& arr = r.array_field("projection");
        if (arr.size() != 1) r.fail("field 'projection': expected exactly one layer, found ", arr.size());
        const std::string want = r.string_field("kind") == "ternary_conv2d" ? "ternary_linear" : "linear";
        const std::string got = arr[0].is_object() && arr[0].contains("kind") ? arr[0]["kind"].dump() : "none";
        if (got != "\"" + want + "\"") r.fail("projection kind: expected '", want, "', found ", got);
        layer_list p = load_layers(arr, [&](std::size_t i) { return r.nested("projection", i, arr[i]); });
        try {
            return std::make_unique<frozen_conv2d>(in, out, k, o, std::move(p[0]));
        } catch (const error& e) {
            r.fail(e.what());
        }
    }

private:
    std::size_t in_, out_, k_;
    conv2d_options opt_;
    std::unique_ptr<inference_layer> proj_;
    bool packed_ = false;
    tensor cols_, y_;
};

/// @brief Max or average pooling over k x k windows of NCHW images, computed as max_pool2d and
/// avg_pool2d do (average: padded cells count, every window divided by k*k).
class frozen_pool2d final : public inference_layer {
public:
    enum class mode { max, average };
    /// @param stride  0 means "equal to the kernel size".
    frozen_pool2d(mode m, std::size_t kernel, std::size_t stride, std::size_t padding)
        : mode_(m), k_(kernel), s_(stride == 0 ? kernel : stride), p_(padding) {
        detail::require(k_ > 0 && 2 * p_ <= k_, kind(), ": expected kernel >= 1 and padding <= kernel / 2, got kernel ",
                        k_, ", padding ", p_);
    }

    std::string kind() const override { return mode_ == mode::max ? "max_pool2d" : "avg_pool2d"; }

    const tensor& forward(const tensor& x) override {
        detail::require(x.dimension() == 4, kind(), ": expected input [B, C, H, W] (NCHW), got shape ",
                        detail::shape_string(x.shape()));
        const std::size_t N = x.shape()[0], C = x.shape()[1], H = x.shape()[2], W = x.shape()[3];
        detail::require(H + 2 * p_ >= k_ && W + 2 * p_ >= k_, kind(), ": input of shape ",
                        detail::shape_string(x.shape()), " is smaller than the window");
        const std::size_t Ho = (H + 2 * p_ - k_) / s_ + 1, Wo = (W + 2 * p_ - k_) / s_ + 1;
        const shape_t shape{N, C, Ho, Wo};
        if (y_.shape() != shape) y_.resize(shape);
        const float inv = 1.0f / float(k_ * k_);
        const auto range = [&](std::size_t o, std::size_t n, std::size_t& lo, std::size_t& hi) {
            detail::pool_range(o, n, k_, s_, p_, lo, hi);
        };
        for (std::size_t plane = 0; plane < N * C; ++plane) {
            const float* in = x.data() + plane * H * W;
            float* out = y_.data() + plane * Ho * Wo;
            for (std::size_t oh = 0; oh < Ho; ++oh) {
                std::size_t h0, h1;
                range(oh, H, h0, h1);
                for (std::size_t ow = 0; ow < Wo; ++ow) {
                    std::size_t w0, w1;
                    range(ow, W, w0, w1);
                    if (mode_ == mode::max) {
                        float best = -std::numeric_limits<float>::infinity();
                        std::size_t where = h0 * W + w0;
                        for (std::size_t h = h0; h < h1; ++h)
                            for (std::size_t w = w0; w < w1; ++w)
                                if (in[h * W + w] > best) {
                                    best = in[h * W + w];
                                    where = h * W + w;
                                }
                        out[oh * Wo + ow] = in[where];
                    } else {
                        float s = 0.0f;
                        for (std::size_t h = h0; h < h1; ++h)
                            for (std::size_t w = w0; w < w1; ++w) s += in[h * W + w];
                        out[oh * Wo + ow] = s * inv;
                    }
                }
            }
        }
        return y_;
    }

    nlohmann::json config() const override {
        return {{"kind", kind()}, {"kernel", k_}, {"stride", s_}, {"padding", p_}};
    }
    /// Channels and height are not separable from (width, values per sample): the output is unknown.
    feature_info propagate(feature_info, const std::string&) const override { return {}; }
    std::string describe() const override {
        return kind() + "(k" + std::to_string(k_) + ",s" + std::to_string(s_) + ",p" + std::to_string(p_) + ")";
    }

    /// @brief Loader for "max_pool2d" and "avg_pool2d".
    static std::unique_ptr<inference_layer> load(const layer_reader& r, mode m) {
        const std::size_t k = r.size_field("kernel"), s = r.size_field("stride");
        const nlohmann::json& pad = r.config().contains("padding") ? r.config()["padding"] : nlohmann::json();
        if (!pad.is_number_unsigned() || 2 * pad.get<std::uint64_t>() > k)
            r.fail("field 'padding': expected an integer in 0..kernel/2, found ", pad.dump());
        return std::make_unique<frozen_pool2d>(m, k, s, std::size_t(pad.get<std::uint64_t>()));
    }

private:
    mode mode_;
    std::size_t k_, s_, p_;
    tensor y_;
};

/// @brief [B, C, H, W] -> [B, C]: the mean of each channel plane (as global_avg_pool2d).
class frozen_global_avg_pool2d final : public inference_layer {
public:
    std::string kind() const override { return "global_avg_pool2d"; }
    const tensor& forward(const tensor& x) override {
        detail::require(x.dimension() == 4 && x.shape()[2] > 0 && x.shape()[3] > 0,
                        "global_avg_pool2d: expected input [B, C, H, W] (NCHW), got shape ",
                        detail::shape_string(x.shape()));
        const std::size_t B = x.shape()[0], C = x.shape()[1], area = x.shape()[2] * x.shape()[3];
        if (y_.shape() != shape_t{B, C}) y_.resize({B, C});
        for (std::size_t p = 0; p < B * C; ++p) {
            const float* in = x.data() + p * area;
            float s = 0.0f;
            for (std::size_t i = 0; i < area; ++i) s += in[i];
            y_.data()[p] = s / float(area);
        }
        return y_;
    }
    feature_info propagate(feature_info, const std::string&) const override { return {}; }

private:
    tensor y_;
};

/// @brief Evaluation-mode batch normalization of NCHW images, folded: y = x * scale[c] + shift[c].
class frozen_batch_norm2d final : public inference_layer {
public:
    frozen_batch_norm2d(tensor scale, tensor shift) : scale_(std::move(scale)), shift_(std::move(shift)) {
        detail::require(scale_.dimension() == 1 && scale_.size() > 0 && shift_.shape() == scale_.shape(),
                        "frozen_batch_norm2d: expected scale and shift of the same shape [C], got ",
                        detail::shape_string(scale_.shape()), " and ", detail::shape_string(shift_.shape()));
        for (std::size_t c = 0; c < scale_.size(); ++c)
            detail::require(std::isfinite(scale_(c)) && std::isfinite(shift_(c)),
                            "frozen_batch_norm2d: scale and shift must be finite (channel ", c, ")");
    }
    /// @brief Folds the running statistics of @p bn (its evaluation mode).
    static std::unique_ptr<frozen_batch_norm2d> fold(const batch_norm2d& bn) {
        const std::size_t C = bn.channels();
        tensor scale = tensor::from_shape({C}), shift = tensor::from_shape({C});
        for (std::size_t c = 0; c < C; ++c) {
            const float inv = 1.0f / std::sqrt(bn.running_var(c) + bn.eps());
            scale(c) = inv * bn.weight(c);
            shift(c) = bn.bias(c) - bn.running_mean(c) * inv * bn.weight(c);
        }
        return std::make_unique<frozen_batch_norm2d>(std::move(scale), std::move(shift));
    }

    std::string kind() const override { return "batch_norm2d"; }
    std::size_t channels() const { return scale_.size(); }

    const tensor& forward(const tensor& x) override {
        const std::size_t C = channels();
        detail::require(x.dimension() == 4 && x.shape()[1] == C, "batch_norm2d: expected input [B, ", C,
                        ", H, W] (NCHW), got shape ", detail::shape_string(x.shape()));
        if (y_.shape() != x.shape()) y_.resize(detail::to_shape(x.shape()));
        const std::size_t B = x.shape()[0], area = x.shape()[2] * x.shape()[3];
        for (std::size_t b = 0; b < B; ++b)
            for (std::size_t c = 0; c < C; ++c) {
                const float a = scale_(c), s = shift_(c);
                const float* in = x.data() + (b * C + c) * area;
                float* out = y_.data() + (b * C + c) * area;
                for (std::size_t i = 0; i < area; ++i) out[i] = in[i] * a + s;
            }
        return y_;
    }
    nlohmann::json config() const override { return {{"kind", kind()}, {"channels", channels()}}; }
    void save(layer_writer& w) const override {
        w.put("scale", scale_);
        w.put("shift", shift_);
    }
    std::size_t parameter_bytes() const override { return 2 * channels() * sizeof(float); }
    feature_info propagate(feature_info in, const std::string& where) const override {
        detail::image_height(in, channels(), where);
        return in;
    }

    /// @brief Loader for "batch_norm2d".
    static std::unique_ptr<inference_layer> load(const layer_reader& r) {
        const std::size_t C = r.size_field("channels");
        tensor a = r.f32("scale", {C}), s = r.f32("shift", {C});
        try {
            return std::make_unique<frozen_batch_norm2d>(std::move(a), std::move(s));
        } catch (const error& e) {
            r.fail(e.what());
        }
    }

private:
    tensor scale_, shift_, y_;
};

/// @brief conv2d: frozen_conv2d over a packed (ternary policies) or full-precision projection.
template <class P, int B>
struct freezer<conv2d<P, B>> {
    static void append(const conv2d<P, B>& l, layer_list& out) {
        out.push_back(std::make_unique<frozen_conv2d>(l.in_channels(), l.out_channels(), l.kernel_size(), l.options(),
                                                      detail::freeze_projection(l.core(), l.describe())));
    }
};
template <>
struct freezer<max_pool2d> {
    static void append(const max_pool2d& l, layer_list& out) {
        out.push_back(std::make_unique<frozen_pool2d>(frozen_pool2d::mode::max, l.kernel_size(), l.stride(), l.padding()));
    }
};
template <>
struct freezer<avg_pool2d> {
    static void append(const avg_pool2d& l, layer_list& out) {
        out.push_back(
            std::make_unique<frozen_pool2d>(frozen_pool2d::mode::average, l.kernel_size(), l.stride(), l.padding()));
    }
};
template <>
struct freezer<global_avg_pool2d> {
    static void append(const global_avg_pool2d&, layer_list& out) {
        out.push_back(std::make_unique<frozen_global_avg_pool2d>());
    }
};
/// @brief batch_norm2d: its running statistics (evaluation mode), folded into scale and shift.
template <>
struct freezer<batch_norm2d> {
    static void append(const batch_norm2d& l, layer_list& out) { out.push_back(frozen_batch_norm2d::fold(l)); }
};

namespace detail {
/// Loaders of the CNN kinds; called by register_builtin_layer_kinds() on the first load, not at
/// static initialization, so including this header costs no code in a translation unit that never loads.
inline void register_conv_layer_kinds() {
    register_builtin_if_absent("ternary_conv2d", [](const layer_reader& r) { return frozen_conv2d::load(r); });
    register_builtin_if_absent("conv2d", [](const layer_reader& r) { return frozen_conv2d::load(r); });
    register_builtin_if_absent("max_pool2d",
                        [](const layer_reader& r) { return frozen_pool2d::load(r, frozen_pool2d::mode::max); });
    register_builtin_if_absent("avg_pool2d",
                        [](const layer_reader& r) { return frozen_pool2d::load(r, frozen_pool2d::mode::average); });
    register_builtin_if_absent("global_avg_pool2d", [](const layer_reader&) -> std::unique_ptr<inference_layer> {
        return std::make_unique<frozen_global_avg_pool2d>();
    });
    register_builtin_if_absent("batch_norm2d", [](const layer_reader& r) { return frozen_batch_norm2d::load(r); });
}
}  // namespace detail

}  // namespace tern
