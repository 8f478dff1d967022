#pragma once
/// @file layers/frozen_projection.hpp
/// @brief projection<frozen<P>, ActBits>: the forward-only projection inside a frozen linear or
/// conv2d (see layers/projection.hpp for the training one).
///
/// In a ternary policy it holds the codes of W at lambda 1 as a packed::split_matrix (exactly 2
/// bits per weight for any N and K, plus the 4-byte scale s_w) and computes BitLinear's step 5
///     y[t][n] = (sum_k Wq[n][k] * xq[t][k]) / (s_w * s_x[t]) (+ b[n])
/// with the per-token normalization and int8 quantization of packed::quantize_activations (the
/// training layer's own normalization and quantization, bit for bit) and the exact integer product
/// of the packed kernels. In a full-precision policy it holds W (already rounded to binary16 for
/// fp16) and computes what the training projection computes, without keeping anything for backward.

#include <nlohmann/json.hpp>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "../io/layer_io.hpp"
#include "../packed/activation_quant.hpp"
#include "../packed/aligned_buffer.hpp"
#include "../packed/split_matrix.hpp"
#include "projection.hpp"

namespace tern::detail {

template <class P, int ActBits>
class projection<frozen<P>, ActBits> {
    static_assert(!P::ternary || ActBits == 8,
                  "tern::freeze: a ternary layer freezes only with 8-bit activations, the width of the packed "
                  "integer kernels (train it with ActBits = 8)");

public:
    using policy = frozen<P>;

    projection() = default;

    /// Freezes a trained projection: its codes and scale at lambda 1 (the fully quantized forward
    /// the frozen layer reproduces), or its full-precision weight.
    template <int B>
    explicit projection(const projection<P, B>& trained)
        : in_(trained.in_features()), out_(trained.out_features()) {
        const std::size_t N = out_, K = in_;
        if (trained.has_bias()) bias_.assign(trained.bias.data(), trained.bias.data() + N);
        if constexpr (P::ternary) {
            std::vector<std::int8_t> codes(N * K);
            w_.scale = ternarize_weights<P>(trained.weight.data(), N * K, 1.0f, nullptr, codes.data());
            w_.codes = packed::split_matrix(codes.data(), N, K);
        } else {
            w_.weight = trained.weight;
            if constexpr (P::half_precision) kernels::round_to_half(w_.weight.data(), w_.weight.data(), N * K);
        }
    }

    std::size_t in_features() const { return in_; }
    std::size_t out_features() const { return out_; }
    bool has_bias() const { return !bias_.empty(); }
    const std::vector<float>& bias() const { return bias_; }
    /// The bias values, or null without a bias.
    const float* bias_data() const { return bias_.empty() ? nullptr : bias_.data(); }

    /// y[T x N] from x[T x K], both contiguous.
    void forward(const float* x, std::size_t T, float* y) {
        if (T == 0) return;
        if constexpr (P::ternary) packed_forward(x, T, y);
        else dense_forward(x, T, y);
    }

    static std::string policy_string() { return projection<P, ActBits>::policy_string(); }

    /// @name Packed ternary storage (ternary policies)
    /// @{
    /// s_w: Wq / s_w is the dequantized weight.
    float weight_scale() const requires(P::ternary) { return w_.scale; }
    const packed::split_matrix& packed_weights() const requires(P::ternary) { return w_.codes; }
    /// The weight in {-1, 0, 1} at (@p n, @p k).
    int weight_code(std::size_t n, std::size_t k) const requires(P::ternary) { return w_.codes.weight(n, k); }
    /// @}
    /// The full-precision weight [N, K] (fp policies; binary16 values in fp16).
    const tensor& weight() const requires(!P::ternary) { return w_.weight; }

    /// Bytes of parameters in memory.
    std::size_t parameter_bytes() const { return packed_bytes() + (dense_weights() + bias_.size()) * sizeof(float); }
    /// Ternary weights held packed (0 in fp policies).
    std::size_t packed_weight_count() const { return P::ternary ? in_ * out_ : 0; }
    /// Bytes of the packed codes and their scale (0 in fp policies).
    std::size_t packed_bytes() const {
        if constexpr (P::ternary) return w_.codes.resident_bytes() + sizeof(float);
        else return 0;
    }

    /// Adds "in", "out", "bias", "policy" (and "activation_bits" when ternary) to @p c.
    void add_config(nlohmann::json& c) const { projection_config<P, ActBits>(c, in_, out_, has_bias()); }

    /// Ternary: "packed" (body), "packed_rows" (strip), "packed_cols" (tail), each only when
    /// non-empty (see packed::split_matrix), and "scale" F32 [1]. Full precision: "weight" F32
    /// [N, K]. Both: "bias" F32 [N] when there is one.
    void save(layer_writer& w) const {
        if constexpr (P::ternary) {
            const packed::split_matrix& W = w_.codes;
            if (W.body().rows()) w.put_bytes("packed", W.body().bytes(), W.body().byte_count());
            if (W.strip_rows() && W.main_cols()) {
                const auto strip = W.strip_bytes();
                w.put_bytes("packed_rows", strip.data(), strip.size());
            }
            if (W.tail_cols()) {
                const auto tail = W.tail_stream();
                w.put_bytes("packed_cols", tail.data(), tail.size());
            }
            w.put("scale", tensor(shape_t{1}, w_.scale));
        } else {
            w.put("weight", w_.weight);
        }
        if (has_bias()) {
            tensor b = tensor::from_shape({out_});
            std::copy(bias_.begin(), bias_.end(), b.data());
            w.put("bias", b);
        }
    }

    /// Reads what save() wrote, with the sizes @p in and @p out from the layer's configuration,
    /// checking every byte (a code of 3, an unused tail code other than 1, a non-positive scale).
    static projection load(const layer_reader& r, std::size_t in, std::size_t out, bool bias) {
        projection p;
        p.in_ = in;
        p.out_ = out;
        if constexpr (P::ternary) {
            const double bits = r.number_field("activation_bits");
            if (bits != double(ActBits))
                r.fail("activation_bits ", bits, " is not supported by the packed kernels (", ActBits, " only)");
            if (in > packed::max_cols) r.fail("in = ", in, " exceeds the kernels' limit of ", packed::max_cols);
            using packed::split_matrix;
            static const std::vector<std::uint8_t> none;
            const auto part = [&](const char* name, std::size_t bytes) -> const std::vector<std::uint8_t>& {
                return bytes ? r.u8(name, bytes) : none;
            };
            const auto& body = part("packed", split_matrix::body_bytes_for(out, in));
            const auto& strip = part("packed_rows", split_matrix::strip_bytes_for(out, in));
            const auto& tail = part("packed_cols", split_matrix::tail_bytes_for(out, in));
            const float s_w = r.f32("scale", {1})(0);
            if (!(s_w > 0.0f) || !std::isfinite(s_w))
                r.fail("tensor '", r.prefix(), "scale': expected a positive finite weight scale, found ", s_w);
            p.w_.scale = s_w;
            try {
                p.w_.codes = split_matrix(out, in, body, strip, tail);
            } catch (const error& e) {
                r.fail("packed weights ", in, "x", out, ": ", e.what());
            }
        } else {
            p.w_.weight = r.f32("weight", {out, in});
            if constexpr (P::half_precision) kernels::round_to_half(p.w_.weight.data(), p.w_.weight.data(), out * in);
        }
        if (bias) {
            const tensor b = r.f32("bias", {out});
            p.bias_.assign(b.data(), b.data() + out);
        }
        return p;
    }

private:
    struct packed_storage {
        float scale = 1.0f;
        packed::split_matrix codes;
        // Scratch, reused across calls.
        packed::quantized_activations qa;
        packed::aligned_buffer<std::int32_t> dots, neg_sum;
    };
    struct dense_storage {
        tensor weight;
        std::vector<float> scratch;
    };

    std::size_t dense_weights() const {
        if constexpr (P::ternary) return 0;
        else return w_.weight.size();
    }

    void packed_forward(const float* x, std::size_t T, float* y) {
        const std::size_t N = out_, K = in_;
        packed_storage& s = w_;
        packed::quantize_activations(x, T, K, K, s.qa);  // normalizes exactly as training does
        const float s_w = s.scale;
        const float* b = bias_.empty() ? nullptr : bias_.data();
        const float* scale = s.qa.scale.data();
        // The tail's products first (into dots); the main product's epilogue then adds them while
        // it converts each finished chunk straight from the kernel's scratch to floats, so the
        // integer dots of the main part are never copied.
        const std::int32_t* tail =
            s.codes.tail_dots(s.qa.q.data(), s.qa.padded_cols, T, s.dots, packed::kernel_path::automatic);
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
        s.codes.run_main(s.qa.q.data(), s.qa.padded_cols, s.qa.sum.data(), T, packed::kernel_path::automatic,
                         "frozen linear", s.neg_sum, emit);
    }

    void dense_forward(const float* x, std::size_t T, float* y) {
        const std::size_t K = in_, N = out_;
        dense_storage& s = w_;
        const float* in = x;
        if constexpr (P::normalize_input || P::half_precision) {
            if (s.scratch.size() < T * K) s.scratch.resize(T * K);
            in = prepare_input<P>(x, T, K, s.scratch.data(), nullptr);
        }
        dense_product(in, T, K, s.weight.data(), N, bias_.empty() ? nullptr : bias_.data(), y);
    }

    std::size_t in_ = 0, out_ = 0;
    std::vector<float> bias_;
    std::conditional_t<P::ternary, packed_storage, dense_storage> w_;
};

}  // namespace tern::detail
