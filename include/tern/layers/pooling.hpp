#pragma once
/// @file layers/pooling.hpp
/// @brief Pooling over NCHW images: max_pool2d, avg_pool2d and global_avg_pool2d.
///
/// Pooling layers have no parameters and no policy: they stay full precision in every model.

#include <algorithm>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "../io/layer_io.hpp"
#include "../policy.hpp"
#include "../tensor.hpp"
#include "../threads.hpp"

namespace tern {
namespace detail {

/// Checks a pooling geometry without overflow (the values may come from a file): kernel >= 1 and
/// padding <= kernel / 2, so every window of the output holds at least one input cell.
inline void check_pool_geometry(const char* name, std::size_t kernel, std::size_t padding) {
    require(kernel > 0, name, ": expected a kernel size of at least 1, got 0");
    require(padding <= kernel / 2, name, ": padding must be at most half the kernel size, got padding ", padding,
            " for kernel ", kernel);
}

/// Clipped input range [lo, hi) of pooling window o (kernel k, stride s, padding p) along an
/// axis of length n: the training layers and the frozen inference layer share it. The arithmetic is
/// unsigned and checked, so no geometry (read from a file, say) can overflow it.
/// @throws tern::error for a geometry check_pool_geometry refuses or a window start past 2^64.
inline void pool_range(std::size_t o, std::size_t n, std::size_t k, std::size_t s, std::size_t p, std::size_t& lo,
                       std::size_t& hi) {
    check_pool_geometry("pooling", k, p);
    std::size_t at = 0, end = 0;  // window [at - p, end - p) before clipping
    require(!__builtin_mul_overflow(o, s, &at) && !__builtin_add_overflow(at, k, &end), "pooling: window ", o,
            " of stride ", s, " and kernel ", k, " lies past 2^64");
    lo = std::min(at > p ? at - p : 0, n);
    hi = std::min(end > p ? end - p : 0, n);
}

/// Shared geometry and checks of the windowed pooling layers.
class pool_window {
public:
    static constexpr bool parameter_free = true;
    pool_window(const char* name, std::size_t kernel, std::size_t stride, std::size_t padding)
        : name_(name), k_(kernel), s_(stride == 0 ? kernel : stride), p_(padding) {
        check_pool_geometry(name, kernel, padding);
    }

    std::string describe() const {
        return std::string(name_) + "(k" + std::to_string(k_) + ",s" + std::to_string(s_) + ",p" +
               std::to_string(p_) + ")";
    }

    std::size_t kernel_size() const { return k_; }
    std::size_t stride() const { return s_; }
    std::size_t padding() const { return p_; }

    nlohmann::json config() const { return {{"kind", name_}, {"kernel", k_}, {"stride", s_}, {"padding", p_}}; }
    /// The output's size is known only from an image's height, which a flat feature count lacks.
    feature_info propagate(feature_info, const std::string&) const { return {}; }

protected:
    /// Checks x is [B, C, H, W] with room for one window; records the shapes.
    void begin(const tensor& x) {
        require(x.dimension() == 4, name_, ": expected input [B, C, H, W] (NCHW), got shape ",
                shape_string(x.shape()));
        N_ = x.shape()[0];
        C_ = x.shape()[1];
        H_ = x.shape()[2];
        W_ = x.shape()[3];
        require(H_ + 2 * p_ >= k_ && W_ + 2 * p_ >= k_, name_, ": input of shape ", shape_string(x.shape()),
                " is smaller than the ", k_, "x", k_, " window after padding ", p_);
        Ho_ = (H_ + 2 * p_ - k_) / s_ + 1;
        Wo_ = (W_ + 2 * p_ - k_) / s_ + 1;
    }

    void check_grad(const tensor& g) const {
        const shape_t expected{N_, C_, Ho_, Wo_};
        require(to_shape(g.shape()) == expected, name_, ": expected output gradient of shape ",
                shape_string(expected), ", got ", shape_string(g.shape()));
    }

    /// Clipped input range [lo, hi) of window o along an axis of length n.
    void range(std::size_t o, std::size_t n, std::size_t& lo, std::size_t& hi) const {
        pool_range(o, n, k_, s_, p_, lo, hi);
    }

    /// Runs fn(plane index) for every (image, channel) plane, in parallel for large inputs.
    template <class Fn>
    void for_planes(Fn&& fn) const {
        parallel_for(
            N_ * C_, [&](std::size_t lo, std::size_t hi) {
                for (std::size_t i = lo; i < hi; ++i) fn(i);
            },
            double(N_ * C_) * double(Ho_ * Wo_ * k_ * k_), 4e5);
    }

    const char* name_;
    std::size_t k_, s_, p_;
    std::size_t N_ = 0, C_ = 0, H_ = 0, W_ = 0, Ho_ = 0, Wo_ = 0;
};

}  // namespace detail

/// @brief Max pooling over k x k windows of NCHW images (PyTorch's nn.MaxPool2d).
///
/// Output [B, C, Ho, Wo] with Ho = (H + 2 padding - k) / stride + 1; padded cells never win.
/// The gradient goes to the first maximal element of each window.
/// @throws tern::error for kernel 0, padding above kernel / 2, a non-NCHW input or one smaller
///         than the window.
/// @tparam Policy fp32 (trains: keeps each window's winner for backward) or frozen<fp32>.
template <class Policy = fp32>
class basic_max_pool2d : public detail::pool_window {
    static_assert(fixed_precision_policy<Policy>, "tern::basic_max_pool2d: Policy must be tern::fp32 or tern::frozen<tern::fp32>");

public:
    static constexpr bool trainable = trainable_policy<Policy>;
    template <class T>
    using transform = basic_max_pool2d<fixed_policy_t<T>>;

    /// @param stride  0 means "equal to the kernel size" (non-overlapping windows).
    explicit basic_max_pool2d(std::size_t kernel, std::size_t stride = 0, std::size_t padding = 0)
        : pool_window("max_pool2d", kernel, stride, padding) {}
    template <class Q>
    explicit basic_max_pool2d(const basic_max_pool2d<Q>& other)
        : pool_window("max_pool2d", other.kernel_size(), other.stride(), other.padding()) {}

    tensor forward(const tensor& x) {
        begin(x);
        tensor y(shape_t{N_, C_, Ho_, Wo_});
        if constexpr (trainable) argmax_.resize(y.size());
        const float* xs = x.data();
        float* ys = y.data();
        for_planes([&](std::size_t plane) {
            const float* in = xs + plane * H_ * W_;
            float* out = ys + plane * Ho_ * Wo_;
            std::uint32_t* arg = nullptr;
            if constexpr (trainable) arg = argmax_.data() + plane * Ho_ * Wo_;
            if (k_ == 2 && s_ == 2 && p_ == 0) {  // the common 2x2 pool: no window arithmetic
                forward_2x2(in, out, arg);
                return;
            }
            for (std::size_t oh = 0; oh < Ho_; ++oh) {
                std::size_t h0, h1;
                range(oh, H_, h0, h1);
                for (std::size_t ow = 0; ow < Wo_; ++ow) {
                    std::size_t w0, w1;
                    range(ow, W_, w0, w1);
                    float best = -std::numeric_limits<float>::infinity();
                    std::size_t where = h0 * W_ + w0;
                    for (std::size_t h = h0; h < h1; ++h)
                        for (std::size_t w = w0; w < w1; ++w) {
                            const float v = in[h * W_ + w];
                            if (v > best) {
                                best = v;
                                where = h * W_ + w;
                            }
                        }
                    out[oh * Wo_ + ow] = in[where];
                    if constexpr (trainable) arg[oh * Wo_ + ow] = std::uint32_t(where);
                }
            }
        });
        return y;
    }

    tensor backward(const tensor& grad_output)
        requires trainable
    {
        check_grad(grad_output);
        tensor dx = zeros({N_, C_, H_, W_});
        const float* gs = grad_output.data();
        float* dxs = dx.data();
        for_planes([&](std::size_t plane) {
            const float* g = gs + plane * Ho_ * Wo_;
            const std::uint32_t* arg = argmax_.data() + plane * Ho_ * Wo_;
            float* d = dxs + plane * H_ * W_;
            for (std::size_t o = 0; o < Ho_ * Wo_; ++o) d[arg[o]] += g[o];
        });
        return dx;
    }

    std::string describe() const { return pool_window::describe(); }
    static constexpr const char* kind() { return "max_pool2d"; }
    static basic_max_pool2d load(const layer_reader& r) {
        return basic_max_pool2d(r.size_field("kernel", 1, 4096), r.size_field("stride", 1, 4096), r.size_field("padding", 0, 4096));
    }

private:
    /// forward for kernel 2, stride 2, no padding: the same strict first-maximum-wins scan over
    /// (h, w) in order as the general loop, written branch-free so it vectorizes.
    void forward_2x2(const float* in, float* out, std::uint32_t* arg) const {
        for (std::size_t oh = 0; oh < Ho_; ++oh) {
            if constexpr (trainable)
                max_2x2_row(in + 2 * oh * W_, in + (2 * oh + 1) * W_, out + oh * Wo_, arg + oh * Wo_,
                            std::uint32_t(2 * oh * W_), std::uint32_t(W_), Wo_);
            else max_2x2_values(in + 2 * oh * W_, in + (2 * oh + 1) * W_, out + oh * Wo_, Wo_);
        }
    }
    /// The frozen form: the same scan without recording the winner's position (NaN and -inf
    /// windows give the first element, as max_2x2_row does).
    static void max_2x2_values(const float* __restrict r0, const float* __restrict r1, float* __restrict out,
                               std::size_t Wo) {
        for (std::size_t ow = 0; ow < Wo; ++ow) {
            const float v[4] = {r0[2 * ow], r0[2 * ow + 1], r1[2 * ow], r1[2 * ow + 1]};
            float best = -std::numeric_limits<float>::infinity();
            bool any = false;
            for (float x : v) {
                const bool take = x > best;
                best = take ? x : best;
                any = any || take;
            }
            out[ow] = any ? best : v[0];
        }
    }

    static void max_2x2_row(const float* __restrict r0, const float* __restrict r1, float* __restrict out,
                            std::uint32_t* __restrict arg, std::uint32_t base, std::uint32_t W, std::size_t Wo) {
        for (std::size_t ow = 0; ow < Wo; ++ow) {
            const float v0 = r0[2 * ow], v1 = r0[2 * ow + 1], v2 = r1[2 * ow], v3 = r1[2 * ow + 1];
            float best = -std::numeric_limits<float>::infinity();
            std::uint32_t at = 0;  // offset of the winner from the window's top-left element
            bool take = v0 > best;
            best = take ? v0 : best;
            take = v1 > best;
            best = take ? v1 : best;
            at = take ? 1u : at;
            take = v2 > best;
            best = take ? v2 : best;
            at = take ? W : at;
            take = v3 > best;
            at = take ? W + 1u : at;
            out[ow] = at == 0 ? v0 : at == 1 ? v1 : at == W ? v2 : v3;  // W >= 2: the offsets differ
            arg[ow] = base + 2u * std::uint32_t(ow) + at;
        }
    }

    // What backward needs (training only): the index of each window's winner in its H x W plane.
    [[no_unique_address]] training_only<Policy, std::vector<std::uint32_t>> argmax_{};
};

/// @brief Max pooling that trains (frozen: basic_max_pool2d<frozen<fp32>>).
using max_pool2d = basic_max_pool2d<>;

/// @brief Average pooling over k x k windows of NCHW images (PyTorch's nn.AvgPool2d with its
/// default count_include_pad=true: padded zeros count, every window is divided by k*k).
/// @throws tern::error as max_pool2d.
class avg_pool2d : public detail::pool_window {
public:
    /// @param stride  0 means "equal to the kernel size".
    explicit avg_pool2d(std::size_t kernel, std::size_t stride = 0, std::size_t padding = 0)
        : pool_window("avg_pool2d", kernel, stride, padding) {}

    tensor forward(const tensor& x) {
        begin(x);
        tensor y(shape_t{N_, C_, Ho_, Wo_});
        const float inv = 1.0f / float(k_ * k_);
        const float* xs = x.data();
        float* ys = y.data();
        for_planes([&](std::size_t plane) {
            const float* in = xs + plane * H_ * W_;
            float* out = ys + plane * Ho_ * Wo_;
            for (std::size_t oh = 0; oh < Ho_; ++oh) {
                std::size_t h0, h1;
                range(oh, H_, h0, h1);
                for (std::size_t ow = 0; ow < Wo_; ++ow) {
                    std::size_t w0, w1;
                    range(ow, W_, w0, w1);
                    float s = 0.0f;
                    for (std::size_t h = h0; h < h1; ++h)
                        for (std::size_t w = w0; w < w1; ++w) s += in[h * W_ + w];
                    out[oh * Wo_ + ow] = s * inv;
                }
            }
        });
        return y;
    }

    tensor backward(const tensor& grad_output) {
        check_grad(grad_output);
        tensor dx = zeros({N_, C_, H_, W_});
        const float inv = 1.0f / float(k_ * k_);
        const float* gs = grad_output.data();
        float* dxs = dx.data();
        for_planes([&](std::size_t plane) {
            const float* g = gs + plane * Ho_ * Wo_;
            float* d = dxs + plane * H_ * W_;
            for (std::size_t oh = 0; oh < Ho_; ++oh) {
                std::size_t h0, h1;
                range(oh, H_, h0, h1);
                for (std::size_t ow = 0; ow < Wo_; ++ow) {
                    std::size_t w0, w1;
                    range(ow, W_, w0, w1);
                    const float v = g[oh * Wo_ + ow] * inv;
                    for (std::size_t h = h0; h < h1; ++h)
                        for (std::size_t w = w0; w < w1; ++w) d[h * W_ + w] += v;
                }
            }
        });
        return dx;
    }

    std::string describe() const { return pool_window::describe(); }
    static constexpr const char* kind() { return "avg_pool2d"; }
    static avg_pool2d load(const layer_reader& r) {
        return avg_pool2d(r.size_field("kernel", 1, 4096), r.size_field("stride", 1, 4096), r.size_field("padding", 0, 4096));
    }
};

/// @brief Global average pooling: [B, C, H, W] -> [B, C], the mean of each channel plane
/// (the input of a ResNet's classifier).
/// @throws tern::error for an input that is not [B, C, H, W] with H, W >= 1.
/// @tparam Policy fp32 (trains: keeps the input shape) or frozen<fp32> (forward only).
template <class Policy = fp32>
class basic_global_avg_pool2d {
    static_assert(fixed_precision_policy<Policy>,
                  "tern::basic_global_avg_pool2d: Policy must be tern::fp32 or tern::frozen<tern::fp32>");

public:
    static constexpr bool parameter_free = true;
    static constexpr bool trainable = trainable_policy<Policy>;
    template <class T>
    using transform = basic_global_avg_pool2d<fixed_policy_t<T>>;
    basic_global_avg_pool2d() = default;
    template <class Q>
    explicit basic_global_avg_pool2d(const basic_global_avg_pool2d<Q>&) {}

    tensor forward(const tensor& x) {
        detail::require(x.dimension() == 4 && x.shape()[2] > 0 && x.shape()[3] > 0,
                        "global_avg_pool2d: expected input [B, C, H, W] (NCHW) with H, W >= 1, got shape ",
                        detail::shape_string(x.shape()));
        const shape_t in_shape = detail::to_shape(x.shape());
        if constexpr (trainable) input_shape_ = in_shape;
        const std::size_t planes = in_shape[0] * in_shape[1], area = in_shape[2] * in_shape[3];
        tensor y(shape_t{in_shape[0], in_shape[1]});
        const float* xs = x.data();
        float* ys = y.data();
        for (std::size_t p = 0; p < planes; ++p) {
            const float* in = xs + p * area;
            float s = 0.0f;
            for (std::size_t i = 0; i < area; ++i) s += in[i];
            ys[p] = s / float(area);
        }
        return y;
    }

    tensor backward(const tensor& grad_output)
        requires trainable
    {
        detail::require(input_shape_.size() == 4, "global_avg_pool2d: backward called before forward");
        const shape_t expected{input_shape_[0], input_shape_[1]};
        detail::require(detail::to_shape(grad_output.shape()) == expected,
                        "global_avg_pool2d: expected output gradient of shape ", detail::shape_string(expected),
                        ", got ", detail::shape_string(grad_output.shape()));
        const std::size_t planes = expected[0] * expected[1], area = input_shape_[2] * input_shape_[3];
        tensor dx(input_shape_);
        const float* gs = grad_output.data();
        float* d = dx.data();
        for (std::size_t p = 0; p < planes; ++p) std::fill(d + p * area, d + (p + 1) * area, gs[p] / float(area));
        return dx;
    }

    std::string describe() const { return "global_avg_pool2d"; }
    static constexpr const char* kind() { return "global_avg_pool2d"; }
    nlohmann::json config() const { return {{"kind", kind()}}; }
    static basic_global_avg_pool2d load(const layer_reader&) { return basic_global_avg_pool2d{}; }
    feature_info propagate(feature_info, const std::string&) const { return {}; }

private:
    [[no_unique_address]] training_only<Policy, shape_t> input_shape_{};
};

/// @brief Global average pooling that trains (frozen: basic_global_avg_pool2d<frozen<fp32>>).
using global_avg_pool2d = basic_global_avg_pool2d<>;

}  // namespace tern
