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
class conv2d {
    static_assert(quantization_policy<Policy>,
                  "tern::conv2d: Policy must be a quantization policy (tern::fp32, fp16, absmean_ternary, absmedian_ternary)");
    static_assert(activation_bits<ActBits>, "tern::conv2d: ActBits must be in 2..16, or tern::float_activations");

public:
    using policy = Policy;
    static constexpr int activation_bits = ActBits;
    template <class Q>
    using rebind = conv2d<Q, ActBits>;

    /// @param in_channels, out_channels  channel counts. @param kernel  square kernel size.
    /// @param options  stride, padding, dilation. @param bias  whether to learn a bias per output channel
    ///        (ternary layers default to none).
    conv2d(std::size_t in_channels, std::size_t out_channels, std::size_t kernel, conv2d_options options = {},
           bool bias = !Policy::ternary)
        : core_(in_channels * kernel * kernel, out_channels, bias), in_(in_channels), out_(out_channels),
          k_(kernel), opt_(options) {
        detail::require(in_channels > 0 && out_channels > 0 && kernel > 0,
                        "conv2d: expected positive channel counts and kernel size, got ", in_channels, " -> ",
                        out_channels, ", kernel ", kernel);
        detail::require(options.stride > 0 && options.dilation > 0,
                        "conv2d: expected stride and dilation of at least 1, got stride ", options.stride,
                        ", dilation ", options.dilation);
    }

    /// Converts a conv2d layer of another policy: every parameter is copied exactly.
    template <class Q, int B>
    explicit conv2d(const conv2d<Q, B>& other)
        : core_(other.core()), in_(other.in_channels()), out_(other.out_channels()), k_(other.kernel_size()),
          opt_(other.options()) {}

    tensor forward(const tensor& x) {
        check_input(x);
        const std::size_t B = x.shape()[0];
        geo_ = geometry(x.shape()[2], x.shape()[3]);
        batch_ = B;
        const std::size_t P = geo_.positions(), K = geo_.patch(), N = out_;
        const std::size_t T = B * P;
        cols_.resize(T * K);
        tokens_out_.resize(T * N);
        const std::size_t image = in_ * geo_.H * geo_.W;
        const float* xs = x.data();
        parallel_for(
            B, [&](std::size_t lo, std::size_t hi) {
                for (std::size_t b = lo; b < hi; ++b) geo_.unfold(xs + b * image, cols_.data() + b * P * K);
            },
            double(T) * double(K), 2e5);
        core_.forward(cols_.data(), T, tokens_out_.data());
        tensor y(shape_t{B, N, geo_.Ho, geo_.Wo});
        float* ys = y.data();
        parallel_for(
            B, [&](std::size_t lo, std::size_t hi) {
                for (std::size_t b = lo; b < hi; ++b)
                    detail::transpose_block(tokens_out_.data() + b * P * N, P, N, ys + b * N * P);
            },
            double(T) * double(N), 2e5);
        return y;
    }

    tensor backward(const tensor& grad_output) {
        const shape_t expected{batch_, out_, geo_.Ho, geo_.Wo};
        detail::require(detail::to_shape(grad_output.shape()) == expected, "conv2d: expected output gradient of shape ",
                        detail::shape_string(expected), ", got ", detail::shape_string(grad_output.shape()));
        const std::size_t B = batch_, P = geo_.positions(), K = geo_.patch(), N = out_;
        const std::size_t T = B * P;
        tokens_out_.resize(T * N);  // reused as the token-major output gradient
        const float* gs = grad_output.data();
        parallel_for(
            B, [&](std::size_t lo, std::size_t hi) {
                for (std::size_t b = lo; b < hi; ++b)
                    detail::transpose_block(gs + b * N * P, N, P, tokens_out_.data() + b * P * N);
            },
            double(T) * double(N), 2e5);
        cols_.resize(T * K);  // reused as d(patches)
        core_.backward(tokens_out_.data(), cols_.data());
        tensor dx = zeros({B, in_, geo_.H, geo_.W});
        const std::size_t image = in_ * geo_.H * geo_.W;
        float* dxs = dx.data();
        parallel_for(
            B, [&](std::size_t lo, std::size_t hi) {
                for (std::size_t b = lo; b < hi; ++b) geo_.fold_add(cols_.data() + b * P * K, dxs + b * image);
            },
            double(T) * double(K), 2e5);
        return dx;
    }

    void collect_parameters(parameter_list& out, const std::string& prefix) { core_.collect_parameters(out, prefix); }
    void set_quant_strength(float lambda) { core_.set_quant_strength(lambda); }

    /// E.g. "conv2d<absmean,a8>(1->32,k3,s1,p1)"; ",d2" for dilation 2, ",bias" with a bias.
    std::string describe() const {
        std::string s = "conv2d<" + core_.policy_string() + ">(" + std::to_string(in_) + "->" + std::to_string(out_) +
                        ",k" + std::to_string(k_) + ",s" + std::to_string(opt_.stride) + ",p" +
                        std::to_string(opt_.padding);
        if (opt_.dilation != 1) s += ",d" + std::to_string(opt_.dilation);
        return s + (core_.has_bias() ? ",bias" : "") + ")";
    }

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
    tensor& weight() { return core_.weight; }
    tensor& bias() { return core_.bias; }
    const detail::projection<Policy, ActBits>& core() const { return core_; }
    detail::projection<Policy, ActBits>& core() { return core_; }

private:
    detail::im2col_geometry geometry(std::size_t H, std::size_t W) const {
        detail::im2col_geometry g;
        g.C = in_;
        g.H = H;
        g.W = W;
        g.k = k_;
        g.stride = opt_.stride;
        g.pad = opt_.padding;
        g.dil = opt_.dilation;
        g.Ho = detail::conv_out_size(H, k_, opt_.stride, opt_.padding, opt_.dilation);
        g.Wo = detail::conv_out_size(W, k_, opt_.stride, opt_.padding, opt_.dilation);
        return g;
    }

    void check_input(const tensor& x) const {
        detail::require(x.dimension() == 4 && x.shape()[1] == in_, "conv2d: expected input [B, ", in_,
                        ", H, W] (NCHW), got shape ", detail::shape_string(x.shape()));
        const std::size_t span = opt_.dilation * (k_ - 1) + 1;
        detail::require(x.shape()[2] + 2 * opt_.padding >= span && x.shape()[3] + 2 * opt_.padding >= span,
                        "conv2d: input of shape ", detail::shape_string(x.shape()), " is smaller than the kernel (",
                        span, "x", span, " with dilation) after padding ", opt_.padding);
    }

    detail::projection<Policy, ActBits> core_;
    std::size_t in_ = 0, out_ = 0, k_ = 1;
    conv2d_options opt_;
    detail::im2col_geometry geo_;
    std::size_t batch_ = 0;
    std::vector<float> cols_, tokens_out_;
};

}  // namespace tern
