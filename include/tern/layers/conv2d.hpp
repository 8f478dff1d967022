#pragma once
/// @file layers/conv2d.hpp
/// @brief tern::conv2d: a 2-D convolution in any quantization policy (BitLinear over im2col patches).
///
/// Images are NCHW tensors [B, C, H, W]. The convolution is computed as a matrix product over
/// patches: the input is unfolded (im2col) into a token-major matrix [B*Ho*Wo, C_in*k*k], each
/// output position being one token; tern::detail::projection maps the tokens to C_out features,
/// and the result is transposed back to NCHW. In a ternary policy every patch is normalized and
/// quantized per token and the weight has one per-tensor scale (../shared/spec/bitlinear.md,
/// "Which layers are quantized"); in fp32 this is exactly a plain convolution.

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "../io/layer_io.hpp"
#include "../threads.hpp"
#include "projection.hpp"

namespace tern {

/// @brief Geometry of a convolution besides its channel counts and kernel size.
struct conv2d_options {
    std::size_t stride = 1;    ///< step between output positions, in input pixels
    std::size_t padding = 0;   ///< zero padding added on every side
    std::size_t dilation = 1;  ///< spacing between kernel taps
};

namespace detail {

/// Size of one output axis: (in + 2 pad - dil (k - 1) - 1) / stride + 1 (0 when the window does not fit).
inline std::size_t conv_out_size(std::size_t in, std::size_t k, std::size_t stride, std::size_t pad,
                                 std::size_t dil) {
    const std::size_t span = dil * (k - 1) + 1;
    if (in + 2 * pad < span) return 0;
    return (in + 2 * pad - span) / stride + 1;
}

/// The geometry of one convolution on one input size, and the im2col/col2im kernels.
struct im2col_geometry {
    std::size_t C = 0, H = 0, W = 0, k = 1, stride = 1, pad = 0, dil = 1, Ho = 0, Wo = 0;

    /// A C-channel H x W input under a k x k kernel with @p opt (output size derived).
    static im2col_geometry of(std::size_t C, std::size_t H, std::size_t W, std::size_t k, const conv2d_options& opt) {
        im2col_geometry g;
        g.C = C;
        g.H = H;
        g.W = W;
        g.k = k;
        g.stride = opt.stride;
        g.pad = opt.padding;
        g.dil = opt.dilation;
        g.Ho = conv_out_size(H, k, opt.stride, opt.padding, opt.dilation);
        g.Wo = conv_out_size(W, k, opt.stride, opt.padding, opt.dilation);
        return g;
    }

    std::size_t patch() const { return C * k * k; }      // K: features per token
    std::size_t positions() const { return Ho * Wo; }   // tokens per image

    /// Unfolds one image x [C, H, W] into cols [Ho*Wo, C*k*k], columns ordered (c, ki, kj) like a
    /// PyTorch weight [C_out, C_in, kh, kw] flattened.
    void unfold(const float* x, float* cols) const {
        const std::size_t K = patch();
        const long Hl = long(H), Wl = long(W), kl = long(k), d = long(dil);
        for (std::size_t oh = 0; oh < Ho; ++oh) {
            const long ih0 = long(oh * stride) - long(pad);
            for (std::size_t ow = 0; ow < Wo; ++ow) {
                const long iw0 = long(ow * stride) - long(pad);
                const bool inside_w = iw0 >= 0 && iw0 + (kl - 1) * d < Wl;
                float* dst = cols + (oh * Wo + ow) * K;
                for (std::size_t c = 0; c < C; ++c) {
                    const float* plane = x + c * H * W;
                    for (long ki = 0; ki < kl; ++ki, dst += k) {
                        const long ih = ih0 + ki * d;
                        if (ih < 0 || ih >= Hl) {
                            std::fill(dst, dst + k, 0.0f);
                            continue;
                        }
                        const float* row = plane + ih * Wl;
                        if (inside_w) {
                            for (long kj = 0; kj < kl; ++kj) dst[kj] = row[iw0 + kj * d];
                        } else {
                            for (long kj = 0; kj < kl; ++kj) {
                                const long iw = iw0 + kj * d;
                                dst[kj] = (iw >= 0 && iw < Wl) ? row[iw] : 0.0f;
                            }
                        }
                    }
                }
            }
        }
    }

    /// Adjoint of unfold: adds cols [Ho*Wo, C*k*k] into dx [C, H, W] (dx must be initialized).
    void fold_add(const float* cols, float* dx) const {
        const std::size_t K = patch();
        const long Hl = long(H), Wl = long(W), kl = long(k), d = long(dil);
        for (std::size_t oh = 0; oh < Ho; ++oh) {
            const long ih0 = long(oh * stride) - long(pad);
            for (std::size_t ow = 0; ow < Wo; ++ow) {
                const long iw0 = long(ow * stride) - long(pad);
                const bool inside_w = iw0 >= 0 && iw0 + (kl - 1) * d < Wl;
                const float* src = cols + (oh * Wo + ow) * K;
                for (std::size_t c = 0; c < C; ++c) {
                    float* plane = dx + c * H * W;
                    for (long ki = 0; ki < kl; ++ki, src += k) {
                        const long ih = ih0 + ki * d;
                        if (ih < 0 || ih >= Hl) continue;
                        float* row = plane + ih * Wl;
                        if (inside_w) {
                            for (long kj = 0; kj < kl; ++kj) row[iw0 + kj * d] += src[kj];
                        } else {
                            for (long kj = 0; kj < kl; ++kj) {
                                const long iw = iw0 + kj * d;
                                if (iw >= 0 && iw < Wl) row[iw] += src[kj];
                            }
                        }
                    }
                }
            }
        }
    }
};

/// Columns [ow_lo, ow_hi) of an output row whose input column ow * stride + dj lies inside [0, W).
inline void valid_columns(long dj, std::size_t stride, std::size_t W, std::size_t Wo, std::size_t& ow_lo,
                          std::size_t& ow_hi) {
    const long s = long(stride);
    const long lo = dj >= 0 ? 0 : (-dj + s - 1) / s;
    const long hi = long(W) - 1 - dj < 0 ? 0 : (long(W) - 1 - dj) / s + 1;
    ow_hi = std::size_t(std::min<long>(hi, long(Wo)));
    ow_lo = std::min(std::size_t(lo), ow_hi);
}

/// GCC turns short copy and fill loops into memcpy/memset calls; the rows of a small image are 7 to
/// 28 floats, where the call costs more than the copy. The row kernels below keep their loops.
#if defined(__GNUC__) && !defined(__clang__)
#define TERN_INLINE_LOOPS __attribute__((optimize("no-tree-loop-distribute-patterns")))
#else
#define TERN_INLINE_LOOPS
#endif

/// Channel-major unfold of one image x [C, H, W]: row r = (c, ki, kj) of the patch matrix
/// (k-major like a flattened PyTorch weight) goes to colsT + r * ld, its Ho*Wo positions
/// contiguous. Every row is a shifted copy of an input plane, so the inner loop is a copy
/// (stride 1) rather than k-element gathers per position.
TERN_INLINE_LOOPS inline void unfold_rows(const im2col_geometry& g, const float* x, float* colsT, std::size_t ld) {
    const std::size_t k = g.k, Wo = g.Wo;
    for (std::size_t c = 0; c < g.C; ++c)
        for (std::size_t ki = 0; ki < k; ++ki)
            for (std::size_t kj = 0; kj < k; ++kj) {
                float* dst = colsT + ((c * k + ki) * k + kj) * ld;
                const long dj = long(kj * g.dil) - long(g.pad);
                std::size_t lo, hi;
                valid_columns(dj, g.stride, g.W, Wo, lo, hi);
                for (std::size_t oh = 0; oh < g.Ho; ++oh, dst += Wo) {
                    const long ih = long(oh * g.stride) - long(g.pad) + long(ki * g.dil);
                    if (ih < 0 || ih >= long(g.H)) {
                        for (std::size_t ow = 0; ow < Wo; ++ow) dst[ow] = 0.0f;
                        continue;
                    }
                    const float* row = x + (c * g.H + std::size_t(ih)) * g.W;
                    for (std::size_t ow = 0; ow < lo; ++ow) dst[ow] = 0.0f;
                    if (g.stride == 1) {
                        for (std::size_t ow = lo; ow < hi; ++ow) dst[ow] = row[long(ow) + dj];
                    } else {
                        for (std::size_t ow = lo; ow < hi; ++ow) dst[ow] = row[long(ow * g.stride) + dj];
                    }
                    for (std::size_t ow = hi; ow < Wo; ++ow) dst[ow] = 0.0f;
                }
            }
}

/// Adjoint of unfold_rows: adds the rows of dcolsT (stride ld) into dx [C, H, W].
TERN_INLINE_LOOPS inline void fold_rows_add(const im2col_geometry& g, const float* dcolsT, std::size_t ld, float* dx) {
    const std::size_t k = g.k, Wo = g.Wo;
    for (std::size_t c = 0; c < g.C; ++c)
        for (std::size_t ki = 0; ki < k; ++ki)
            for (std::size_t kj = 0; kj < k; ++kj) {
                const float* src = dcolsT + ((c * k + ki) * k + kj) * ld;
                const long dj = long(kj * g.dil) - long(g.pad);
                std::size_t lo, hi;
                valid_columns(dj, g.stride, g.W, Wo, lo, hi);
                for (std::size_t oh = 0; oh < g.Ho; ++oh, src += Wo) {
                    const long ih = long(oh * g.stride) - long(g.pad) + long(ki * g.dil);
                    if (ih < 0 || ih >= long(g.H)) continue;
                    float* row = dx + (c * g.H + std::size_t(ih)) * g.W;
                    if (g.stride == 1) {
                        float* r = row + long(lo) + dj;
                        for (std::size_t ow = lo; ow < hi; ++ow) r[ow - lo] += src[ow];
                    } else {
                        for (std::size_t ow = lo; ow < hi; ++ow) row[long(ow * g.stride) + dj] += src[ow];
                    }
                }
            }
}

/// out[n, p] = in[p, n] for one image: token-major [P, N] to channel-major [N, P] (and back
/// with the roles of P and N swapped). Blocked so both sides stay in cache.
inline void transpose_block(const float* in, std::size_t P, std::size_t N, float* out) {
    constexpr std::size_t tile = 32;
    for (std::size_t p0 = 0; p0 < P; p0 += tile) {
        const std::size_t p1 = std::min(P, p0 + tile);
        for (std::size_t n0 = 0; n0 < N; n0 += tile) {
            const std::size_t n1 = std::min(N, n0 + tile);
            for (std::size_t p = p0; p < p1; ++p)
                for (std::size_t n = n0; n < n1; ++n) out[n * P + p] = in[p * N + n];
        }
    }
}

}  // namespace detail

/// @brief 2-D convolution over NCHW images, in policy @p Policy.
///
/// x [B, C_in, H, W] -> y [B, C_out, Ho, Wo] with Ho = (H + 2 padding - dilation (k - 1) - 1) / stride + 1
/// (likewise Wo). Computed as im2col + tern::detail::projection: in a ternary policy it is BitLinear
/// over patches (every output position is a token of C_in*k*k values, normalized and quantized per
/// token; one weight scale per tensor); in fp32 it is a plain convolution (cross-correlation, as in
/// PyTorch); in fp16 a convolution of binary16-rounded operands.
///
/// The weight is stored as a matrix [C_out, C_in*k*k] whose columns are ordered (c_in, ki, kj),
/// i.e. a PyTorch weight [C_out, C_in, k, k] flattened; checkpoints hold it in that shape.
/// Groups are not supported (use separate layers).
/// @tparam Policy  fp32, fp16, absmean_ternary, absmedian_ternary (or a *_prenorm variant).
/// @tparam ActBits activation bits, 2..16, or float_activations (8 by default).
/// @throws tern::error on a non-positive size, a zero stride or dilation, an input that is not
///         [B, C_in, H, W], or an image smaller than the (dilated) kernel after padding.
template <class Policy, int ActBits = 8>
class conv2d : public std::conditional_t<trainable_policy<Policy>, detail::empty,
                                         detail::frozen_storage<conv2d<Policy, ActBits>>> {
    static_assert(quantization_policy<Policy>,
                  "tern::conv2d: Policy must be a quantization policy (tern::fp32, fp16, absmean_ternary, absmedian_ternary)");
    static_assert(activation_bits<ActBits>, "tern::conv2d: ActBits must be in 2..16, or tern::float_activations");

public:
    using policy = Policy;
    static constexpr int activation_bits = ActBits;
    /// False for the frozen instantiation (tern::frozen<P>): forward only, no training state.
    static constexpr bool trainable = trainable_policy<Policy>;
    template <class T>
    using transform = conv2d<typename T::template apply<Policy>, ActBits>;

    /// @param in_channels, out_channels  channel counts. @param kernel  square kernel size.
    /// @param options  stride, padding, dilation. @param bias  whether to learn a bias per output channel
    ///        (ternary layers default to none).
    conv2d(std::size_t in_channels, std::size_t out_channels, std::size_t kernel, conv2d_options options = {},
           bool bias = !detail::valid_policy_t<Policy>::ternary)
        requires trainable
        : core_(in_channels * kernel * kernel, out_channels, bias), in_(in_channels), out_(out_channels),
          k_(kernel), opt_(options) {
        check_sizes();
    }

    /// Converts a conv2d layer of another policy: every parameter is copied exactly; into a frozen
    /// policy, the weights are frozen at lambda 1 (packed 2-bit codes when ternary).
    template <class Q, int B>
    explicit conv2d(const conv2d<Q, B>& other)
        : core_(other.core()), in_(other.in_channels()), out_(other.out_channels()), k_(other.kernel_size()),
          opt_(other.options()) {}

    /// y = conv(x), written into @p y (resized only when its shape changes).
    void forward(const tensor& x, tensor& y) {
        check_input(x);
        const std::size_t B = x.shape()[0];
        const auto geo = geometry(x.shape()[2], x.shape()[3]);
        if constexpr (trainable) {
            geo_ = geo;
            batch_ = B;
        }
        const shape_t shape{B, out_, geo.Ho, geo.Wo};
        if (detail::to_shape(y.shape()) != shape) y.resize(shape);
        if constexpr (channel_major) {
            forward_channel_major(x, geo, y);
            return;
        }
        const std::size_t P = geo.positions(), K = geo.patch(), N = out_;
        const std::size_t T = B * P;
        cols_.resize(T * K);
        tokens_out_.resize(T * N);
        const std::size_t image = in_ * geo.H * geo.W;
        const float* xs = x.data();
        parallel_for(
            B, [&](std::size_t lo, std::size_t hi) {
                for (std::size_t b = lo; b < hi; ++b) geo.unfold(xs + b * image, cols_.data() + b * P * K);
            },
            double(T) * double(K), 2e5);
        core_.forward(cols_.data(), T, tokens_out_.data());
        float* ys = y.data();
        parallel_for(
            B, [&](std::size_t lo, std::size_t hi) {
                for (std::size_t b = lo; b < hi; ++b)
                    detail::transpose_block(tokens_out_.data() + b * P * N, P, N, ys + b * N * P);
            },
            double(T) * double(N), 2e5);
    }
    tensor forward(const tensor& x) {
        tensor y;
        forward(x, y);
        return y;
    }

    tensor backward(const tensor& grad_output)
        requires trainable
    {
        check_grad(grad_output);
        if constexpr (channel_major) {
            backward_channel_major(grad_output);
            return input_gradient_channel_major();
        }
        const std::size_t B = batch_, P = geo_.positions(), K = geo_.patch();
        backward_token_major(grad_output);
        cols_.resize(B * P * K);  // reused as d(patches)
        core_.backward(tokens_out_.data(), cols_.data());
        tensor dx = zeros({B, in_, geo_.H, geo_.W});
        const std::size_t image = in_ * geo_.H * geo_.W;
        float* dxs = dx.data();
        parallel_for(
            B, [&](std::size_t lo, std::size_t hi) {
                for (std::size_t b = lo; b < hi; ++b) geo_.fold_add(cols_.data() + b * P * K, dxs + b * image);
            },
            double(B * P) * double(K), 2e5);
        return dx;
    }

    /// backward without the input gradient (see tern::backward_parameters): for a first layer,
    /// whose input gradient would be a product and an image-sized fold that nobody reads.
    void backward_parameters(const tensor& grad_output)
        requires trainable
    {
        check_grad(grad_output);
        if constexpr (channel_major) {
            backward_channel_major(grad_output);
        } else {
            backward_token_major(grad_output);
            core_.backward_parameters(tokens_out_.data());
        }
    }

    void collect_parameters(parameter_list& out, const std::string& prefix)
        requires trainable
    {
        core_.collect_parameters(out, prefix);
    }
    void set_quant_strength(float lambda)
        requires trainable
    {
        core_.set_quant_strength(lambda);
    }

    /// E.g. "conv2d<absmean,a8>(1->32,k3,s1,p1)"; ",d2" for dilation 2, ",bias" with a bias.
    std::string describe() const {
        std::string s = std::string(kind()) + "<" + core_.policy_string() + ">(" + std::to_string(in_) + "->" +
                        std::to_string(out_) + ",k" + std::to_string(k_) + ",s" + std::to_string(opt_.stride) +
                        ",p" + std::to_string(opt_.padding);
        if (opt_.dilation != 1) s += ",d" + std::to_string(opt_.dilation);
        return s + (core_.has_bias() ? ",bias" : "") + ")";
    }

    /// @name Saving and loading (see io/layer_io.hpp)
    /// @{
    /// "ternary_conv2d" for packed ternary weights, "conv2d" for full-precision ones.
    static constexpr const char* kind() { return trainable || !Policy::ternary ? "conv2d" : "ternary_conv2d"; }
    /// Channels, kernel, stride, padding, dilation and the projection's "in" (C_in*k*k), "out",
    /// "bias", "policy" (and "activation_bits"); the projection's tensors are the layer's.
    nlohmann::json config() const {
        nlohmann::json c = {{"kind", kind()},         {"in_channels", in_},     {"out_channels", out_},
                            {"kernel", k_},           {"stride", opt_.stride}, {"padding", opt_.padding},
                            {"dilation", opt_.dilation}};
        core_.add_config(c);
        return c;
    }
    void save(layer_writer& w) const
        requires(!trainable)
    {
        core_.save(w);
    }
    static conv2d load(const layer_reader& r)
        requires(!trainable)
    {
        conv2d l;
        l.in_ = r.size_field("in_channels");
        l.out_ = r.size_field("out_channels");
        l.k_ = r.size_field("kernel");
        l.opt_.stride = r.size_field("stride");
        l.opt_.dilation = r.size_field("dilation");
        l.opt_.padding = r.size_field("padding", 0, 4096);
        const std::size_t in = r.size_field("in"), out = r.size_field("out");
        if (in != l.in_ * l.k_ * l.k_ || out != l.out_)
            r.fail("projection ", in, "->", out, " does not fit ", l.in_, "->", l.out_, " channels with kernel ", l.k_,
                   " (expected ", l.in_ * l.k_ * l.k_, "->", l.out_, ")");
        l.core_ = core_type::load(r, in, out, r.bool_field("bias"));
        return l;
    }
    feature_info propagate(feature_info in, const std::string& where) const {
        const std::size_t H = detail::image_height(in, in_, where);
        if (!H) return {};
        const std::size_t Ho = detail::conv_out_size(H, k_, opt_.stride, opt_.padding, opt_.dilation);
        const std::size_t Wo = detail::conv_out_size(in.last, k_, opt_.stride, opt_.padding, opt_.dilation);
        detail::require(Ho > 0 && Wo > 0, where, ": images of ", H, "x", in.last, " are smaller than the kernel");
        return {Wo, out_ * Ho * Wo};
    }
    /// @}

    /// Output shape for an input of shape [B, C_in, H, W] (no checks beyond the arithmetic).
    shape_t output_shape(std::size_t batch, std::size_t H, std::size_t W) const {
        const auto g = geometry(H, W);
        return {batch, out_, g.Ho, g.Wo};
    }

    std::size_t in_channels() const { return in_; }
    std::size_t out_channels() const { return out_; }
    std::size_t kernel_size() const { return k_; }
    const conv2d_options& options() const { return opt_; }
    /// The weight matrix [C_out, C_in*k*k] (a [C_out, C_in, k, k] kernel flattened).
    tensor& weight()
        requires trainable
    {
        return core_.weight;
    }
    tensor& bias()
        requires trainable
    {
        return core_.bias;
    }
    const auto& core() const { return core_; }
    auto& core() { return core_; }

private:
    using core_type = detail::projection<detail::valid_policy_t<Policy>, detail::valid_bits<ActBits>>;

    conv2d() = default;  // for load

    void check_sizes() const {
        detail::require(in_ > 0 && out_ > 0 && k_ > 0, "conv2d: expected positive channel counts and kernel size, got ",
                        in_, " -> ", out_, ", kernel ", k_);
        detail::require(opt_.stride > 0 && opt_.dilation > 0,
                        "conv2d: expected stride and dilation of at least 1, got stride ", opt_.stride,
                        ", dilation ", opt_.dilation);
    }

    /// fp32 and fp16 do nothing per token, so they skip the token-major detour: the patches are
    /// unfolded channel-major, colsT [K, B*P], and one product W [N, K] x colsT gives the output
    /// channel-major, [N, B*P], from which each image's [N, P] block is a row copy (no element
    /// transposes, and the unfold copies whole rows). Per-token policies (ternary, prenorm)
    /// normalize and quantize tokens, which needs the token-major matrix.
    static constexpr bool channel_major = !Policy::ternary && !Policy::normalize_input;

    /// The weight the product uses: the shadow weight, or its binary16 rounding in fp16; the frozen
    /// weight (rounded once) in a frozen policy.
    const float* weight_used() {
        if constexpr (!trainable) {
            return core_.weight().data();
        } else if constexpr (Policy::half_precision) {
            w_half_.resize(core_.weight.size());
            kernels::round_to_half(core_.weight.data(), w_half_.data(), w_half_.size());
            return w_half_.data();
        } else {
            return core_.weight.data();
        }
    }

    void forward_channel_major(const tensor& x, const detail::im2col_geometry& geo, tensor& y) {
        const std::size_t B = x.shape()[0], P = geo.positions(), K = geo.patch(), N = out_, BP = B * P;
        cols_.resize(K * BP);  // colsT [K, B*P]
        tokens_out_.resize(N * BP);  // [N, B*P]
        const std::size_t image = in_ * geo.H * geo.W;
        const float* xs = x.data();
        float* colsT = cols_.data();
        parallel_for(
            B, [&](std::size_t lo, std::size_t hi) {
                for (std::size_t b = lo; b < hi; ++b) {
                    detail::unfold_rows(geo, xs + b * image, colsT + b * P, BP);
                    if constexpr (Policy::half_precision)
                        for (std::size_t r = 0; r < K; ++r)
                            kernels::round_to_half(colsT + r * BP + b * P, colsT + r * BP + b * P, P);
                }
            },
            double(BP) * double(K), 2e5);
        kernels::sgemm(false, false, N, BP, K, 1.0f, weight_used(), K, colsT, BP, 0.0f, tokens_out_.data(), BP);
        float* ys = y.data();
        const float* bias = core_.bias_data();
        parallel_for(
            B, [&](std::size_t lo, std::size_t hi) {
                for (std::size_t b = lo; b < hi; ++b)
                    for (std::size_t n = 0; n < N; ++n) {
                        const float* src = tokens_out_.data() + n * BP + b * P;
                        float* dst = ys + (b * N + n) * P;
                        const float add = bias ? bias[n] : 0.0f;
                        for (std::size_t p = 0; p < P; ++p) dst[p] = src[p] + add;
                    }
            },
            double(BP) * double(N), 2e5);
    }

    void check_grad(const tensor& grad_output) const {
        const shape_t expected{batch_, out_, geo_.Ho, geo_.Wo};
        detail::require(detail::to_shape(grad_output.shape()) == expected, "conv2d: expected output gradient of shape ",
                        detail::shape_string(expected), ", got ", detail::shape_string(grad_output.shape()));
    }

    /// Token-major path: the output gradient transposed to [B*P, N] into tokens_out_.
    void backward_token_major(const tensor& grad_output) {
        const std::size_t B = batch_, P = geo_.positions(), N = out_;
        tokens_out_.resize(B * P * N);
        const float* gs = grad_output.data();
        parallel_for(
            B, [&](std::size_t lo, std::size_t hi) {
                for (std::size_t b = lo; b < hi; ++b)
                    detail::transpose_block(gs + b * N * P, N, P, tokens_out_.data() + b * P * N);
            },
            double(B * P) * double(N), 2e5);
    }

    /// Channel-major path, parameter half: dY [N, B*P] into tokens_out_, dW += dY colsT^T,
    /// db += row sums of dY.
    void backward_channel_major(const tensor& grad_output) {
        const std::size_t B = batch_, P = geo_.positions(), K = geo_.patch(), N = out_, BP = B * P;
        tokens_out_.resize(N * BP);
        const float* gs = grad_output.data();
        float* dY = tokens_out_.data();
        parallel_for(
            B, [&](std::size_t lo, std::size_t hi) {
                for (std::size_t b = lo; b < hi; ++b)
                    for (std::size_t n = 0; n < N; ++n)
                        std::copy(gs + (b * N + n) * P, gs + (b * N + n + 1) * P, dY + n * BP + b * P);
            },
            double(BP) * double(N), 2e5);
        kernels::sgemm(false, true, N, K, BP, 1.0f, dY, BP, cols_.data(), BP, 1.0f, core_.weight_grad.data(), K);
        if (core_.has_bias()) {
            float* db = core_.bias_grad.data();
            for (std::size_t n = 0; n < N; ++n) db[n] += detail::lane_sum(dY + n * BP, BP);  // vectorized
        }
    }

    /// Channel-major path, input half (after backward_channel_major): dcolsT = W^T dY overwrites
    /// colsT, then folds into dx.
    tensor input_gradient_channel_major() {
        const std::size_t B = batch_, P = geo_.positions(), K = geo_.patch(), N = out_, BP = B * P;
        const float* w = Policy::half_precision ? w_half_.data() : core_.weight.data();
        kernels::sgemm(true, false, K, BP, N, 1.0f, w, K, tokens_out_.data(), BP, 0.0f, cols_.data(), BP);
        tensor dx = zeros({B, in_, geo_.H, geo_.W});
        const std::size_t image = in_ * geo_.H * geo_.W;
        float* dxs = dx.data();
        parallel_for(
            B, [&](std::size_t lo, std::size_t hi) {
                for (std::size_t b = lo; b < hi; ++b) detail::fold_rows_add(geo_, cols_.data() + b * P, BP, dxs + b * image);
            },
            double(BP) * double(K), 2e5);
        return dx;
    }

    detail::im2col_geometry geometry(std::size_t H, std::size_t W) const {
        return detail::im2col_geometry::of(in_, H, W, k_, opt_);
    }

    void check_input(const tensor& x) const {
        detail::require(x.dimension() == 4 && x.shape()[1] == in_, "conv2d: expected input [B, ", in_,
                        ", H, W] (NCHW), got shape ", detail::shape_string(x.shape()));
        const std::size_t span = opt_.dilation * (k_ - 1) + 1;
        detail::require(x.shape()[2] + 2 * opt_.padding >= span && x.shape()[3] + 2 * opt_.padding >= span,
                        "conv2d: input of shape ", detail::shape_string(x.shape()), " is smaller than the kernel (",
                        span, "x", span, " with dilation) after padding ", opt_.padding);
    }

    core_type core_;
    std::size_t in_ = 0, out_ = 0, k_ = 1;
    conv2d_options opt_;
    std::vector<float> cols_, tokens_out_;  // scratch of both instantiations
    // What backward needs (training only).
    [[no_unique_address]] training_only<Policy, detail::im2col_geometry> geo_{};
    [[no_unique_address]] training_only<Policy, std::size_t> batch_{};
    [[no_unique_address]] training_only<Policy, std::vector<float>> w_half_{};
};

}  // namespace tern
