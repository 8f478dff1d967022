#pragma once
/// @file deploy/inference_model.hpp
/// @brief The run-time inference model: a list of polymorphic, forward-only layers.
///
/// A trained compile-time model (tern::sequential) becomes an inference_model through
/// tern::freeze (deploy/freeze.hpp), and a packed model file (deploy/packed_model.hpp) loads into
/// one without knowing any compile-time type: the file's architecture names each layer's kind,
/// and a registry maps kinds to loaders. This header holds the protocol, the registry and the
/// parameter-free or small layers (activations, flatten, norms, residual); the linear layers live
/// in their own headers (linear, conv2d, ... in a frozen policy), wrapped by erased_layer.
///
/// Inference layers own their output buffer: forward returns a reference that stays valid until
/// the layer's next call, so a forward pass allocates nothing once the shapes are steady. A model
/// is therefore not safe to run from two threads at once (one model per thread).

#include <nlohmann/json.hpp>

#include <algorithm>
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
#include "../io/layer_io.hpp"
#include "../io/safetensors.hpp"
#include "../layers/residual.hpp"
#include "../sequential.hpp"
#include "../policy.hpp"
#include "../quantize.hpp"
#include "../tensor.hpp"

namespace tern {

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
        if (!arr[i].is_object()) r.fail("expected an object {\"kind\": ...}, found ", io::detail::dump_short(arr[i]));
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

/// @brief A layer list as a compile-time layer (forward and describe): the run-time body and
/// shortcut of a residual, so that tern::residual itself is what runs.
class runtime_sequence {
public:
    static constexpr bool parameter_free = true;  // forward-only: its layers hold frozen parameters
    runtime_sequence() = default;
    explicit runtime_sequence(layer_list layers) : layers_(std::move(layers)) {}

    void forward(const tensor& x, tensor& y) { y = detail::run_layers(layers_, x); }
    tensor forward(const tensor& x) { return detail::run_layers(layers_, x); }
    /// As the compile-time parts read: one layer as itself, several as sequential(...).
    std::string describe() const {
        if (layers_.size() == 1) return layers_[0]->describe();
        std::string s;
        for (std::size_t i = 0; i < layers_.size(); ++i) s += (i ? ", " : "") + layers_[i]->describe();
        return "sequential(" + s + ")";
    }
    /// An empty list computes y = x: the identity shortcut of a residual.
    bool is_identity() const { return layers_.empty(); }
    const layer_list& layers() const { return layers_; }
    layer_list& layers() { return layers_; }

private:
    layer_list layers_;
};

/// @brief The run-time residual: tern::residual over two run-time layer lists.
using runtime_residual = residual<runtime_sequence, runtime_sequence>;

namespace detail {

// What erased_layer asks of a layer: its members, and for the run-time residual (whose template
// has no file protocol of its own) the same answers computed from its two branches.
template <class L>
std::string layer_kind(const L& l) {
    return l.kind();
}
inline std::string layer_kind(const runtime_residual&) { return "residual"; }

template <class L>
nlohmann::json layer_config(const L& l) {
    return l.config();
}
inline nlohmann::json layer_config(const runtime_residual& r) {
    return {{"kind", "residual"},
            {"body", layers_config(r.body().layers())},
            {"shortcut", layers_config(r.shortcut().layers())}};
}

template <class L>
void layer_save(const L& l, layer_writer& w) {
    if constexpr (requires { l.save(w); }) l.save(w);
}
inline void layer_save(const runtime_residual& r, layer_writer& w) {
    layer_writer bw = w.nested("body"), sw = w.nested("shortcut");
    save_layers(r.body().layers(), bw);
    save_layers(r.shortcut().layers(), sw);
}

/// Sum of @p fn over both branches of a run-time residual.
template <class Fn>
std::size_t residual_sum(const runtime_residual& r, Fn&& fn) {
    return sum_layers(r.body().layers(), fn) + sum_layers(r.shortcut().layers(), fn);
}

template <class L>
std::size_t layer_parameter_bytes(const L& l) {
    if constexpr (requires { l.parameter_bytes(); }) return l.parameter_bytes();
    else return 0;
}
inline std::size_t layer_parameter_bytes(const runtime_residual& r) {
    return residual_sum(r, [](const inference_layer& l) { return l.parameter_bytes(); });
}
template <class L>
std::size_t layer_packed_weights(const L& l) {
    if constexpr (requires { l.packed_weights(); }) return l.packed_weights();
    else return 0;
}
inline std::size_t layer_packed_weights(const runtime_residual& r) {
    return residual_sum(r, [](const inference_layer& l) { return l.packed_weights(); });
}
template <class L>
std::size_t layer_packed_bytes(const L& l) {
    if constexpr (requires { l.packed_bytes(); }) return l.packed_bytes();
    else return 0;
}
inline std::size_t layer_packed_bytes(const runtime_residual& r) {
    return residual_sum(r, [](const inference_layer& l) { return l.packed_bytes(); });
}

template <class L>
feature_info layer_propagate(const L& l, feature_info in, const std::string& where) {
    if constexpr (requires { l.propagate(in, where); }) return l.propagate(in, where);
    else return in;
}
inline feature_info layer_propagate(const runtime_residual& r, feature_info in, const std::string& where) {
    const feature_info b = propagate_layers(r.body().layers(), in, where + " body");
    const feature_info s = propagate_layers(r.shortcut().layers(), in, where + " shortcut");
    require(b.last == 0 || s.last == 0 || b.last == s.last, where, ": the body gives ", b.last,
            " features but the shortcut gives ", s.last);
    return {b.last ? b.last : s.last, b.total ? b.total : s.total};
}

template <class L>
void layer_begin_sequence(L& l, std::size_t batch, std::size_t capacity) {
    if constexpr (requires { l.begin_sequence(batch, capacity); }) l.begin_sequence(batch, capacity);
}
inline void layer_begin_sequence(runtime_residual& r, std::size_t batch, std::size_t capacity) {
    for (auto& l : r.body().layers()) l->begin_sequence(batch, capacity);
    for (auto& l : r.shortcut().layers()) l->begin_sequence(batch, capacity);
}
template <class L>
void layer_end_sequence(L& l) {
    if constexpr (requires { l.end_sequence(); }) l.end_sequence();
}
inline void layer_end_sequence(runtime_residual& r) {
    for (auto& l : r.body().layers()) l->end_sequence();
    for (auto& l : r.shortcut().layers()) l->end_sequence();
}

}  // namespace detail

/// @brief The run-time form of a layer L: type erasure over the one definition of the layer (as
/// std::function wraps a callable). Every kind a file holds runs as such a wrapper around a layer
/// template in a frozen policy, or a parameter-free layer; nothing here re-implements a layer.
/// The wrapper owns the output buffer, so when L has `forward(x, y)` a forward pass allocates
/// nothing once the shapes are steady.
template <class L>
class erased_layer final : public inference_layer {
public:
    explicit erased_layer(L layer) : layer_(std::move(layer)) {}

    std::string kind() const override { return detail::layer_kind(layer_); }
    const tensor& forward(const tensor& x) override {
        // A layer that would only copy its input (flatten of a flat batch) hands it on.
        if constexpr (requires { layer_.copies_unchanged(x); })
            if (layer_.copies_unchanged(x)) return x;
        if constexpr (requires { layer_.forward(x, out_); }) layer_.forward(x, out_);
        else out_ = layer_.forward(x);
        return out_;
    }
    nlohmann::json config() const override { return detail::layer_config(layer_); }
    void save(layer_writer& w) const override { detail::layer_save(layer_, w); }
    std::size_t parameter_bytes() const override { return detail::layer_parameter_bytes(layer_); }
    std::size_t packed_weights() const override { return detail::layer_packed_weights(layer_); }
    std::size_t packed_bytes() const override { return detail::layer_packed_bytes(layer_); }
    feature_info propagate(feature_info in, const std::string& where) const override {
        return detail::layer_propagate(layer_, in, where);
    }
    void begin_sequence(std::size_t batch, std::size_t capacity) override {
        detail::layer_begin_sequence(layer_, batch, capacity);
    }
    void end_sequence() override { detail::layer_end_sequence(layer_); }
    std::string describe() const override { return layer_.describe(); }

    /// @brief The wrapped layer.
    const L& get() const { return layer_; }
    L& get() { return layer_; }

private:
    L layer_;
    tensor out_;
};

/// @brief Called when a frozen layer of type L becomes part of a run-time model (tern::freeze):
/// nothing for most kinds; a kind whose loader depends on the type (a decoder_lm design, see
/// deploy/language_model.hpp) overloads it to register that loader, so that a program can load
/// the files it saves.
template <class L>
void register_erased_kind(const L&) {}

namespace detail {


/// Appends the run-time form of the frozen compile-time layer @p l to @p out: a sequential's
/// layers one by one, nothing for the identity, a residual over the run-time forms of its
/// branches, one erased_layer otherwise.
template <class L>
void append_erased(L&& l, layer_list& out);

template <class L>
layer_list erase_layers(L&& l) {
    layer_list out;
    append_erased(std::forward<L>(l), out);
    return out;
}

template <class L>
void append_erased(L&& l, layer_list& out) {
    using T = std::remove_cvref_t<L>;
    if constexpr (is_sequential<T>::value) {
        [&]<std::size_t... I>(std::index_sequence<I...>) {
            (append_erased(std::move(l.template layer<I>()), out), ...);
        }(std::make_index_sequence<T::size()>{});
    } else if constexpr (std::is_same_v<T, identity>) {
    } else if constexpr (is_residual<T>::value && !std::is_same_v<T, runtime_residual>) {
        out.push_back(std::make_unique<erased_layer<runtime_residual>>(
            runtime_residual(runtime_sequence(erase_layers(std::move(l.body()))),
                             runtime_sequence(erase_layers(std::move(l.shortcut()))))));
    } else {
        register_erased_kind(l);  // found by argument-dependent lookup: overloads live beside their layers
        out.push_back(std::make_unique<erased_layer<T>>(std::move(l)));
    }
}

}  // namespace detail

/// @brief Loader of kind "residual": tern::residual over the run-time lists "body" and "shortcut".
inline std::unique_ptr<inference_layer> load_runtime_residual(const layer_reader& r) {
    const nlohmann::json& body = r.array_field("body");
    const nlohmann::json& shortcut = r.array_field("shortcut");
    layer_list b = load_layers(body, [&](std::size_t i) { return r.nested("body", i, body[i]); });
    layer_list s = load_layers(shortcut, [&](std::size_t i) { return r.nested("shortcut", i, shortcut[i]); });
    return std::make_unique<erased_layer<runtime_residual>>(
        runtime_residual(runtime_sequence(std::move(b)), runtime_sequence(std::move(s))));
}

namespace detail {

/// The loader of a layer type L (its static load), wrapped as an erased_layer; an error of L's
/// own checks is given the file and layer context.
template <class L>
std::unique_ptr<inference_layer> load_erased(const layer_reader& r) {
    try {
        return std::make_unique<erased_layer<L>>(L::load(r));
    } catch (const error& e) {
        const std::string m = e.what();
        if (m.rfind(r.where(), 0) == 0) throw;
        r.fail(m);
    }
}

}  // namespace detail

/// @brief Registers the parameter-free or fixed-policy layer type L under its kind L::kind().
template <class L>
void register_layer_kind() {
    detail::register_builtin_if_absent(std::string(L::kind()),
                                       [](const layer_reader& r) { return detail::load_erased<L>(r); });
}

namespace detail {

/// The loader of a layer template over a policy, Layer<Policy, ActBits>, for files of kind
/// @p kind: the entry's "policy" field picks the frozen instantiation among @p Policies.
template <template <class, int> class Layer, int ActBits, class... Policies>
layer_loader policy_loader(std::string kind) {
    return [kind](const layer_reader& r) -> std::unique_ptr<inference_layer> {
        const std::string policy = r.string_field("policy");
        std::unique_ptr<inference_layer> out;
        std::string known;
        (
            [&] {
                using L = Layer<frozen<Policies>, ActBits>;
                if (L::kind() != kind) return;
                known += (known.empty() ? "" : ", ") + std::string(Policies::name);
                if (!out && policy == Policies::name) out = detail::load_erased<L>(r);
            }(),
            ...);
        if (!out) r.fail("field 'policy': expected one of ", known, " for kind '", kind, "', found '",
                         policy.substr(0, 40), "'");
        return out;
    };
}

/// policy_loader over tern's own policies (the ones its exporters write).
template <template <class, int> class Layer, int ActBits>
layer_loader builtin_policy_loader(std::string kind) {
    return policy_loader<Layer, ActBits, fp32, fp16, fp32_prenorm, fp16_prenorm, absmean_ternary, absmedian_ternary>(
        std::move(kind));
}

}  // namespace detail

/// @brief Registers a layer template over a policy, Layer<Policy, ActBits>: its frozen
/// instantiation in each of @p Policies, under the kinds they report (e.g. "ternary_linear" and
/// "linear"); the loader picks the policy from the entry's "policy" field.
template <template <class, int> class Layer, int ActBits, class... Policies>
void register_policy_layer_kinds() {
    std::vector<std::string> kinds;
    (
        [&] {
            const std::string k = Layer<frozen<Policies>, ActBits>::kind();
            if (std::find(kinds.begin(), kinds.end(), k) == kinds.end()) kinds.push_back(k);
        }(),
        ...);
    for (const std::string& kind : kinds)
        detail::register_builtin_if_absent(kind, detail::policy_loader<Layer, ActBits, Policies...>(kind));
}

/// @brief A frozen model: inference layers in order, plus what the file records about them.
///
/// Built by tern::freeze or tern::load_packed_model. Move-only. One forward at a time.
class inference_model {
public:
    inference_model() = default;
    explicit inference_model(layer_list layers, std::string policy = "none")
        : layers_(std::move(layers)), policy_(std::move(policy)) {}

    /// @brief The run-time form of a frozen compile-time model (tern::freeze): its layers, each
    /// wrapped by erased_layer (a sequential contributes its layers in order).
    template <forward_layer Frozen>
        requires(!std::is_same_v<std::remove_cvref_t<Frozen>, inference_model>)
    inference_model(Frozen model)  // NOLINT: implicit, `inference_model m = tern::freeze(trained);`
        : policy_(policy_name(model)), source_(model.describe()) {
        layers_ = detail::erase_layers(std::move(model));
    }

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
