#pragma once
/// @file deploy/inference_model.hpp
/// @brief The run-time inference model: a list of polymorphic, forward-only layers.
///
/// A trained compile-time model (tern::sequential) becomes an inference_model through
/// tern::freeze (deploy/freeze.hpp), and a packed model file (deploy/packed_model.hpp) loads into
/// one without knowing any compile-time type: the file's architecture names each layer's kind,
/// and a registry maps kinds to loaders. This header holds the protocol, the registry and the
/// parameter-free or small layers (activations, flatten, norms, residual); the linear layers live
/// in deploy/frozen_linear.hpp.
///
/// Inference layers own their output buffer: forward returns a reference that stays valid until
/// the layer's next call, so a forward pass allocates nothing once the shapes are steady. A model
/// is therefore not safe to run from two threads at once (one model per thread).

#include <nlohmann/json.hpp>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "../error.hpp"
#include "../io/safetensors.hpp"
#include "../layers/activations.hpp"
#include "../quantize.hpp"
#include "../tensor.hpp"

namespace tern {

/// @brief What the shape check knows about a layer's input or output: the last axis and the
/// number of values per sample (0 = unknown).
struct feature_info {
    std::size_t last = 0;   ///< size of the last (feature) axis
    std::size_t total = 0;  ///< values per sample (product of the non-batch axes)
};

/// @brief Writes one layer's tensors under its name prefix ("3.", "2.body.0.").
class layer_writer {
public:
    layer_writer(io::safetensors_data& data, std::string prefix) : data_(data), prefix_(std::move(prefix)) {}
    /// @brief Stores an F32 tensor as prefix + name.
    void put(const std::string& name, const tensor& t) { data_.put(prefix_ + name, t); }
    /// @brief Stores @p n raw bytes as a U8 tensor of shape [n].
    void put_bytes(const std::string& name, const std::uint8_t* p, std::size_t n) {
        data_.put_bytes(prefix_ + name, io::dtype::u8, {n}, std::vector<std::uint8_t>(p, p + n));
    }
    /// @brief A writer for a nested layer list ("<prefix><sub>.").
    layer_writer nested(const std::string& sub) const { return layer_writer(data_, prefix_ + sub + "."); }
    const std::string& prefix() const { return prefix_; }

private:
    io::safetensors_data& data_;
    std::string prefix_;
};

/// @brief Reads one layer's configuration and tensors, with errors naming the file, the layer and
/// what was expected versus found.
class layer_reader {
public:
    /// @param where  "packed model 'f.safetensors'" (the file), @param path  layer path ("3", "2.body.0")
    layer_reader(const io::safetensors_data& data, std::string where, std::string path, const nlohmann::json& config,
                 std::set<std::string>& used)
        : data_(data), where_(std::move(where)), path_(std::move(path)), config_(config), used_(used) {}

    /// @brief Throws tern::error prefixed with the file and layer.
    template <class... Parts>
    [[noreturn]] void fail(Parts&&... parts) const {
        detail::fail(context(), ": ", std::forward<Parts>(parts)...);
    }
    /// @brief "packed model 'f': layer 3 (ternary_linear)".
    std::string context() const {
        std::string kind = config_.is_object() && config_.contains("kind") && config_["kind"].is_string()
                               ? config_["kind"].get<std::string>()
                               : std::string("?");
        return where_ + ": layer " + path_ + " (" + kind + ")";
    }
    const nlohmann::json& config() const { return config_; }
    const std::string& path() const { return path_; }
    const std::string& where() const { return where_; }

    /// @brief A positive integer field of the configuration.
    std::size_t size_field(const char* key) const {
        const nlohmann::json& v = field(key);
        if (!v.is_number_unsigned() || v.get<std::uint64_t>() == 0 || v.get<std::uint64_t>() > (std::uint64_t{1} << 40))
            fail("field '", key, "': expected a positive integer, found ", v.dump());
        return static_cast<std::size_t>(v.get<std::uint64_t>());
    }
    /// @brief A boolean field of the configuration.
    bool bool_field(const char* key) const {
        const nlohmann::json& v = field(key);
        if (!v.is_boolean()) fail("field '", key, "': expected true or false, found ", v.dump());
        return v.get<bool>();
    }
    /// @brief A finite number field of the configuration.
    double number_field(const char* key) const {
        const nlohmann::json& v = field(key);
        if (!v.is_number() || !std::isfinite(v.get<double>()))
            fail("field '", key, "': expected a finite number, found ", v.dump());
        return v.get<double>();
    }
    /// @brief A string field of the configuration.
    std::string string_field(const char* key) const {
        const nlohmann::json& v = field(key);
        if (!v.is_string()) fail("field '", key, "': expected a string, found ", v.dump());
        return v.get<std::string>();
    }
    /// @brief An array field (nested layer lists).
    const nlohmann::json& array_field(const char* key) const {
        const nlohmann::json& v = field(key);
        if (!v.is_array()) fail("field '", key, "': expected an array of layers, found ", v.type_name());
        return v;
    }

    /// @brief The F32 tensor prefix + name with exactly @p shape.
    tensor f32(const std::string& name, const shape_t& shape) const {
        const io::stored_tensor& s = tensor_at(name);
        if (s.type != io::dtype::f32 || s.shape != shape)
            fail("tensor '", full(name), "': expected F32 ", detail::shape_string(shape), ", found ",
                 io::dtype_name(s.type), " ", detail::shape_string(s.shape));
        tensor t = tensor::from_shape(shape);
        io::detail::le_to_floats(s.bytes.data(), t.size(), t.data());
        return t;
    }
    /// @brief The U8 tensor prefix + name, which must hold exactly @p bytes bytes (shape [bytes]).
    const std::vector<std::uint8_t>& u8(const std::string& name, std::size_t bytes) const {
        const io::stored_tensor& s = tensor_at(name);
        if (s.type != io::dtype::u8 || s.shape != shape_t{bytes})
            fail("tensor '", full(name), "': expected U8 [", bytes, "] (", bytes, " packed bytes), found ",
                 io::dtype_name(s.type), " ", detail::shape_string(s.shape));
        return s.bytes;
    }
    /// @brief Whether the tensor prefix + name exists.
    bool has(const std::string& name) const { return data_.contains(full(name)); }

    /// @brief A reader for a layer of a nested list.
    layer_reader nested(const std::string& sub, std::size_t index, const nlohmann::json& config) const {
        return layer_reader(data_, where_, path_ + "." + sub + "." + std::to_string(index), config, used_);
    }
    /// @brief The tensor name prefix of this layer ("3.").
    std::string prefix() const { return path_ + "."; }

private:
    std::string full(const std::string& name) const { return path_ + "." + name; }
    const nlohmann::json& field(const char* key) const {
        if (!config_.contains(key)) fail("missing field '", key, "' in the architecture entry ", config_.dump());
        return config_[key];
    }
    const io::stored_tensor& tensor_at(const std::string& name) const {
        auto it = data_.tensors.find(full(name));
        if (it == data_.tensors.end()) fail("missing tensor '", full(name), "'");
        used_.insert(full(name));
        return it->second;
    }

    const io::safetensors_data& data_;
    std::string where_, path_;
    const nlohmann::json& config_;
    std::set<std::string>& used_;
};

/// @brief A forward-only layer of an inference model.
///
/// To add a kind: derive, implement the pure virtuals, add a tern::freezer specialization for the
/// training layer (deploy/freeze.hpp) and register a loader with tern::register_layer_kind.
class inference_layer {
public:
    virtual ~inference_layer() = default;
    /// @brief The kind as written in the architecture ("ternary_linear", "relu", ...).
    virtual std::string kind() const = 0;
    /// @brief Runs the layer on @p x [..., features]; the result is owned by the layer and valid
    /// until its next forward call.
    /// @throws tern::error on an input of the wrong shape.
    virtual const tensor& forward(const tensor& x) = 0;
    /// @brief The architecture entry: {"kind": kind(), sizes and flags...}.
    virtual nlohmann::json config() const { return {{"kind", kind()}}; }
    /// @brief Writes the layer's tensors (names relative to the writer's prefix).
    virtual void save(layer_writer&) const {}
    /// @brief Bytes of parameters held in memory.
    virtual std::size_t parameter_bytes() const { return 0; }
    /// @brief Packed ternary weights (logical count) held by this layer and nested layers.
    virtual std::size_t packed_weights() const { return 0; }
    /// @brief Bytes of packed weights and their scales held by this layer and nested layers.
    virtual std::size_t packed_bytes() const { return 0; }
    /// @brief The output shape information for input @p in; throws (naming @p where) when the input
    /// cannot fit this layer. The default is shape-preserving.
    virtual feature_info propagate(feature_info in, const std::string& where) const {
        (void)where;
        return in;
    }
    /// @brief Starts incremental (token by token) inference: until end_sequence(), each forward call
    /// holds the next tokens of @p batch sequences of at most @p capacity tokens, and stateful layers
    /// (attention with its key/value cache) keep what earlier calls saw. Stateless layers ignore it.
    virtual void begin_sequence(std::size_t batch, std::size_t capacity) {
        (void)batch;
        (void)capacity;
    }
    /// @brief Leaves incremental mode (forward sees whole sequences again) and frees any cache.
    virtual void end_sequence() {}
    /// @brief One-line description: the kind, with the configuration when there is more to say.
    virtual std::string describe() const {
        const nlohmann::json c = config();
        return c.size() <= 1 ? kind() : kind() + c.dump();
    }
};

/// @brief An ordered list of inference layers (a model, or a residual branch).
using layer_list = std::vector<std::unique_ptr<inference_layer>>;

/// @brief Builds a layer of a registered kind from its architecture entry and tensors.
using layer_loader = std::function<std::unique_ptr<inference_layer>(const layer_reader&)>;

namespace detail {

struct layer_registry {
    std::mutex mutex;
    std::map<std::string, layer_loader> loaders;
    static layer_registry& instance() {
        static layer_registry r;
        return r;
    }
};

/// Runs every layer of @p layers on @p x in order; returns the last output (x itself if empty).
inline const tensor& run_layers(layer_list& layers, const tensor& x) {
    const tensor* cur = &x;
    for (auto& l : layers) cur = &l->forward(*cur);
    return *cur;
}

inline nlohmann::json layers_config(const layer_list& layers) {
    nlohmann::json a = nlohmann::json::array();
    for (const auto& l : layers) a.push_back(l->config());
    return a;
}

inline void save_layers(const layer_list& layers, layer_writer& w) {
    for (std::size_t i = 0; i < layers.size(); ++i) {
        layer_writer lw = w.nested(std::to_string(i));
        layers[i]->save(lw);
    }
}

inline feature_info propagate_layers(const layer_list& layers, feature_info in, const std::string& where) {
    for (std::size_t i = 0; i < layers.size(); ++i)
        in = layers[i]->propagate(in, where + ": layer " + std::to_string(i) + " (" + layers[i]->kind() + ")");
    return in;
}

template <class Fn>
std::size_t sum_layers(const layer_list& layers, Fn&& fn) {
    std::size_t n = 0;
    for (const auto& l : layers) n += fn(*l);
    return n;
}

/// Makes @p y hold shape @p x.shape() with the last axis replaced by @p last (no allocation when
/// the shape is unchanged).
inline void shape_like(tensor& y, const tensor& x, std::size_t last) {
    bool same = y.dimension() == x.dimension();
    for (std::size_t i = 0; same && i + 1 < x.dimension(); ++i) same = y.shape()[i] == x.shape()[i];
    if (same && x.dimension() > 0) same = y.shape()[x.dimension() - 1] == last;
    if (!same) y.resize(with_last_axis(x, last));
}

}  // namespace detail

/// @brief Registers (or replaces) the loader of layer kind @p kind. Returns true, so a header can
/// register at static-initialization time: `inline const bool registered = tern::register_layer_kind(...)`.
inline bool register_layer_kind(const std::string& kind, layer_loader loader) {
    auto& r = detail::layer_registry::instance();
    std::lock_guard<std::mutex> lock(r.mutex);
    r.loaders[kind] = std::move(loader);
    return true;
}

/// @brief The registered kinds, sorted.
inline std::vector<std::string> registered_layer_kinds() {
    auto& r = detail::layer_registry::instance();
    std::lock_guard<std::mutex> lock(r.mutex);
    std::vector<std::string> out;
    for (const auto& kv : r.loaders) out.push_back(kv.first);
    return out;
}

namespace detail {
/// Registers a built-in kind unless the user registered that name already (user registrations win).
inline void register_builtin_if_absent(const std::string& kind, layer_loader loader) {
    auto& r = layer_registry::instance();
    std::lock_guard<std::mutex> lock(r.mutex);
    if (!r.loaders.count(kind)) r.loaders[kind] = std::move(loader);
}
}  // namespace detail

/// @brief Builds the layers of the architecture array @p arr (entries read by @p make_reader(i)).
template <class MakeReader>
layer_list load_layers(const nlohmann::json& arr, MakeReader&& make_reader) {
    layer_list out;
    for (std::size_t i = 0; i < arr.size(); ++i) {
        const layer_reader r = make_reader(i);
        if (!arr[i].is_object()) r.fail("expected an object {\"kind\": ...}, found ", arr[i].dump());
        const std::string kind = r.string_field("kind");
        layer_loader loader;
        {
            auto& reg = detail::layer_registry::instance();
            std::lock_guard<std::mutex> lock(reg.mutex);
            auto it = reg.loaders.find(kind);
            if (it != reg.loaders.end()) loader = it->second;
        }
        if (!loader) {
            std::string known;
            for (const auto& k : registered_layer_kinds()) known += (known.empty() ? "" : ", ") + k;
            r.fail("unknown layer kind '", kind, "' (known: ", known, ")");
        }
        out.push_back(loader(r));
    }
    return out;
}

/// @brief relu, gelu or silu, element-wise, with the training layers' exact formulas.
class frozen_activation final : public inference_layer {
public:
    enum class function { relu, gelu, silu };
    explicit frozen_activation(function f) : f_(f) {}

    std::string kind() const override {
        switch (f_) {
            case function::relu: return "relu";
            case function::gelu: return "gelu";
            case function::silu: return "silu";
        }
        return "?";
    }
    const tensor& forward(const tensor& x) override {
        detail::shape_like(out_, x, x.dimension() ? x.shape().back() : 1);
        const float* in = x.data();
        float* o = out_.data();
        const std::size_t n = x.size();
        switch (f_) {
            case function::relu:
                for (std::size_t i = 0; i < n; ++i) o[i] = relu::value(in[i]);
                break;
            case function::gelu:
                for (std::size_t i = 0; i < n; ++i) o[i] = gelu::value(in[i]);
                break;
            case function::silu:
                for (std::size_t i = 0; i < n; ++i) o[i] = silu::value(in[i]);
                break;
        }
        return out_;
    }

private:
    function f_;
    tensor out_;
};

/// @brief Merges every axis after the first (as tern::flatten).
class frozen_flatten final : public inference_layer {
public:
    std::string kind() const override { return "flatten"; }
    const tensor& forward(const tensor& x) override {
        detail::require(x.dimension() >= 1, "flatten: expected a tensor with a batch axis, got a scalar");
        if (x.dimension() == 2) return x;  // already flat: no copy (layers never modify their input)
        const std::size_t batch = x.shape()[0];
        const std::size_t per = batch ? x.size() / batch : 0;
        if (out_.dimension() != 2 || out_.shape()[0] != batch || out_.shape()[1] != per) out_.resize({batch, per});
        std::copy(x.data(), x.data() + x.size(), out_.data());
        return out_;
    }
    feature_info propagate(feature_info in, const std::string&) const override { return {in.total, in.total}; }

private:
    tensor out_;
};

/// @brief layer_norm (kind "layer_norm") or rms_norm (kind "rms_norm") over the last axis, with the
/// optional affine part, computed exactly as the training layers do.
class frozen_norm final : public inference_layer {
public:
    /// @param rms  RMSNorm (no mean, no shift) instead of LayerNorm.
    /// @param gain, shift  empty when absent (shift only for layer_norm).
    frozen_norm(bool rms, std::size_t features, float eps, tensor gain, tensor shift)
        : rms_(rms), features_(features), eps_(eps), gain_(std::move(gain)), shift_(std::move(shift)) {
        // A default tern::tensor is a 0-d scalar of size 1: "absent" is any 0-d or empty tensor.
        affine_ = gain_.dimension() >= 1 && gain_.size() > 0;
        has_shift_ = shift_.dimension() >= 1 && shift_.size() > 0;
        detail::require(features > 0, kind(), ": expected a positive feature count");
        detail::require(!affine_ || gain_.size() == features, kind(), ": gain has ", gain_.size(),
                        " values, expected ", features);
        detail::require(!has_shift_ || (affine_ && !rms_ && shift_.size() == features), kind(), ": shift has ",
                        shift_.size(), " values, expected ", features, " (and only with a layer_norm gain)");
    }

    std::string kind() const override { return rms_ ? "rms_norm" : "layer_norm"; }
    bool affine() const { return affine_; }

    const tensor& forward(const tensor& x) override {
        const std::size_t T = detail::token_count(x, features_, rms_ ? "rms_norm" : "layer_norm");
        detail::shape_like(out_, x, features_);
        const float* in = x.data();
        float* out = out_.data();
        const std::size_t K = features_;
        if (!rms_) {
            normalize_tokens(in, T, K, out, nullptr, eps_);
        } else {
            for (std::size_t t = 0; t < T; ++t) {
                double s2 = 0;
                for (std::size_t k = 0; k < K; ++k) s2 += double(in[t * K + k]) * in[t * K + k];
                const float r = float(1.0 / std::sqrt(s2 / double(K) + double(eps_)));
                for (std::size_t k = 0; k < K; ++k) out[t * K + k] = in[t * K + k] * r;
            }
        }
        if (affine()) {
            const float* g = gain_.data();
            const bool has_shift = has_shift_;
            const float* b = has_shift ? shift_.data() : nullptr;
            for (std::size_t t = 0; t < T; ++t)
                for (std::size_t k = 0; k < K; ++k)
                    out[t * K + k] = out[t * K + k] * g[k] + (has_shift ? b[k] : 0.0f);
        }
        return out_;
    }

    nlohmann::json config() const override {
        return {{"kind", kind()}, {"features", features_}, {"eps", eps_}, {"affine", affine()},
                {"shift", has_shift_}};
    }
    void save(layer_writer& w) const override {
        if (affine()) w.put("weight", gain_);
        if (has_shift_) w.put("bias", shift_);
    }
    std::size_t parameter_bytes() const override {
        return ((affine_ ? gain_.size() : 0) + (has_shift_ ? shift_.size() : 0)) * sizeof(float);
    }
    feature_info propagate(feature_info in, const std::string& where) const override {
        detail::require(in.last == 0 || in.last == features_, where, ": expects ", features_,
                        " input features but the previous layers give ", in.last);
        return {features_, in.total};
    }

    /// @brief Loader for the kinds "layer_norm" and "rms_norm".
    static std::unique_ptr<inference_layer> load(const layer_reader& r, bool rms) {
        const std::size_t n = r.size_field("features");
        const double eps = r.number_field("eps");
        if (!(eps > 0.0)) r.fail("field 'eps': expected a positive number, found ", eps);
        const bool affine = r.bool_field("affine");
        const bool shift = r.bool_field("shift");
        if (shift && (rms || !affine)) r.fail("field 'shift': true is only valid for an affine layer_norm");
        tensor g = tensor::from_shape({0}), b = tensor::from_shape({0});
        if (affine) g = r.f32("weight", {n});
        if (shift) b = r.f32("bias", {n});
        return std::make_unique<frozen_norm>(rms, n, float(eps), std::move(g), std::move(b));
    }

private:
    bool rms_, affine_ = false, has_shift_ = false;
    std::size_t features_;
    float eps_;
    tensor gain_, shift_, out_;
};

/// @brief y = body(x) + shortcut(x), each branch a layer list (an empty shortcut is the identity).
class frozen_residual final : public inference_layer {
public:
    frozen_residual(layer_list body, layer_list shortcut) : body_(std::move(body)), shortcut_(std::move(shortcut)) {}

    std::string kind() const override { return "residual"; }
    const tensor& forward(const tensor& x) override {
        const tensor& b = detail::run_layers(body_, x);
        const tensor& s = detail::run_layers(shortcut_, x);
        detail::require(b.shape() == s.shape(), "residual: the body gives shape ", detail::shape_string(b.shape()),
                        " but the shortcut gives ", detail::shape_string(s.shape()));
        detail::shape_like(out_, b, b.dimension() ? b.shape().back() : 1);
        const float* pb = b.data();
        const float* ps = s.data();
        float* o = out_.data();
        for (std::size_t i = 0, n = b.size(); i < n; ++i) o[i] = pb[i] + ps[i];
        return out_;
    }
    nlohmann::json config() const override {
        return {{"kind", kind()}, {"body", detail::layers_config(body_)}, {"shortcut", detail::layers_config(shortcut_)}};
    }
    void save(layer_writer& w) const override {
        layer_writer bw = w.nested("body"), sw = w.nested("shortcut");
        detail::save_layers(body_, bw);
        detail::save_layers(shortcut_, sw);
    }
    void begin_sequence(std::size_t batch, std::size_t capacity) override {
        for (auto& l : body_) l->begin_sequence(batch, capacity);
        for (auto& l : shortcut_) l->begin_sequence(batch, capacity);
    }
    void end_sequence() override {
        for (auto& l : body_) l->end_sequence();
        for (auto& l : shortcut_) l->end_sequence();
    }
    std::size_t parameter_bytes() const override {
        auto f = [](const inference_layer& l) { return l.parameter_bytes(); };
        return detail::sum_layers(body_, f) + detail::sum_layers(shortcut_, f);
    }
    std::size_t packed_weights() const override {
        auto f = [](const inference_layer& l) { return l.packed_weights(); };
        return detail::sum_layers(body_, f) + detail::sum_layers(shortcut_, f);
    }
    std::size_t packed_bytes() const override {
        auto f = [](const inference_layer& l) { return l.packed_bytes(); };
        return detail::sum_layers(body_, f) + detail::sum_layers(shortcut_, f);
    }
    feature_info propagate(feature_info in, const std::string& where) const override {
        const feature_info b = detail::propagate_layers(body_, in, where + " body");
        const feature_info s = detail::propagate_layers(shortcut_, in, where + " shortcut");
        detail::require(b.last == 0 || s.last == 0 || b.last == s.last, where, ": the body gives ", b.last,
                        " features but the shortcut gives ", s.last);
        return {b.last ? b.last : s.last, b.total ? b.total : s.total};
    }

    static std::unique_ptr<inference_layer> load(const layer_reader& r) {
        const nlohmann::json& body = r.array_field("body");
        const nlohmann::json& shortcut = r.array_field("shortcut");
        layer_list b = load_layers(body, [&](std::size_t i) { return r.nested("body", i, body[i]); });
        layer_list s = load_layers(shortcut, [&](std::size_t i) { return r.nested("shortcut", i, shortcut[i]); });
        return std::make_unique<frozen_residual>(std::move(b), std::move(s));
    }

private:
    layer_list body_, shortcut_;
    tensor out_;
};

/// @brief A frozen model: inference layers in order, plus what the file records about them.
///
/// Built by tern::freeze or tern::load_packed_model. Move-only. One forward at a time.
class inference_model {
public:
    inference_model() = default;
    explicit inference_model(layer_list layers, std::string policy = "none")
        : layers_(std::move(layers)), policy_(std::move(policy)) {}

    /// @brief Runs the model; the result is a copy (see run() for the zero-copy form).
    tensor forward(const tensor& x) { return run(x); }
    /// @brief Runs the model; the result is owned by the last layer, valid until the next call.
    const tensor& run(const tensor& x) { return detail::run_layers(layers_, x); }

    /// @brief Starts incremental inference (see inference_layer::begin_sequence), e.g. token
    /// generation with the key/value cache: run the prompt, then one token per call.
    void begin_sequence(std::size_t batch, std::size_t capacity) {
        for (auto& l : layers_) l->begin_sequence(batch, capacity);
    }
    /// @brief Ends incremental inference.
    void end_sequence() {
        for (auto& l : layers_) l->end_sequence();
    }

    /// @brief Bytes of parameters held in memory (packed weights, scales, biases, fp tensors).
    std::size_t model_bytes() const {
        return detail::sum_layers(layers_, [](const inference_layer& l) { return l.parameter_bytes(); });
    }
    /// @brief Number of ternary weights held packed.
    std::size_t packed_weights() const {
        return detail::sum_layers(layers_, [](const inference_layer& l) { return l.packed_weights(); });
    }
    /// @brief Bytes of the packed weights and their scales.
    std::size_t packed_bytes() const {
        return detail::sum_layers(layers_, [](const inference_layer& l) { return l.packed_bytes(); });
    }
    /// @brief Storage bits per ternary weight over all packed layers (0 if there are none).
    double bits_per_weight() const {
        const std::size_t w = packed_weights();
        return w ? 8.0 * double(packed_bytes()) / double(w) : 0.0;
    }

    /// @brief The architecture as written to files: {"input_shape": [...] or null, "layers": [...]}.
    nlohmann::json architecture() const {
        nlohmann::json a = {{"layers", detail::layers_config(layers_)}};
        a["input_shape"] = input_shape_.empty() ? nlohmann::json(nullptr) : nlohmann::json(input_shape_);
        return a;
    }
    /// @brief Checks that consecutive layers agree on feature counts; throws naming @p where and the layer.
    feature_info check_shapes(const std::string& where) const {
        feature_info in;
        if (!input_shape_.empty()) {
            in.last = input_shape_.back();
            in.total = 1;
            for (auto d : input_shape_) in.total *= d;
        }
        return detail::propagate_layers(layers_, in, where);
    }

    std::string describe() const {
        std::string s = "inference_model(";
        for (std::size_t i = 0; i < layers_.size(); ++i) s += (i ? ", " : "") + layers_[i]->describe();
        return s + ")";
    }

    std::size_t size() const { return layers_.size(); }
    inference_layer& layer(std::size_t i) { return *layers_.at(i); }
    const inference_layer& layer(std::size_t i) const { return *layers_.at(i); }
    const layer_list& layers() const { return layers_; }

    /// @brief The policy of the trained model ("absmean", "absmean+fp32", ...).
    const std::string& policy() const { return policy_; }
    void set_policy(std::string p) { policy_ = std::move(p); }
    /// @brief Per-sample input shape (without the batch axis), empty when unknown.
    const shape_t& input_shape() const { return input_shape_; }
    void set_input_shape(shape_t s) { input_shape_ = std::move(s); }
    /// @brief Description of the model this one was frozen from (may be empty).
    const std::string& source_description() const { return source_; }
    void set_source_description(std::string s) { source_ = std::move(s); }

private:
    layer_list layers_;
    std::string policy_ = "none";
    shape_t input_shape_;
    std::string source_;
};

}  // namespace tern
