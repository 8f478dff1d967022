// Fuzz targets of the model readers: checkpoints (model only, with Adam state, with
// allow_policy_change) and packed models (public API only: save_packed_model, load_packed_model,
// freeze, inference_model::forward).
#include <tern/tern.hpp>

#include <cstring>
#include <optional>
#include <string>

#include "harness.hpp"

namespace tern_fuzz {
namespace {

using detail::finding;

template <class P>
auto make_model() {
    return tern::sequential{tern::linear<P>(4, 6, true), tern::relu{}, tern::layer_norm(6),
                            tern::linear<P>(6, 3, false)};
}

/// Every bit of the model's parameters and of the optimizer's state (via its own writer).
struct snapshot {
    std::vector<std::string> names;
    std::vector<tern::shape_t> shapes;
    std::vector<std::vector<std::uint8_t>> values;
    std::vector<std::uint8_t> optimizer;
    std::size_t steps = 0;

    bool operator==(const snapshot&) const = default;
};

template <class Model>
snapshot take(Model& model, const tern::detail::optimizer_base* opt) {
    snapshot s;
    for (const auto& p : model.parameters()) {
        s.names.push_back(p.name);
        s.shapes.push_back(tern::detail::to_shape(p.value->shape()));
        const auto* b = reinterpret_cast<const std::uint8_t*>(p.value->data());
        s.values.emplace_back(b, b + p.value->size() * sizeof(float));
    }
    if (opt) {
        tern::io::safetensors_data d;
        opt->save_state(d);
        s.optimizer = tern::io::serialize_safetensors(d);
        s.steps = opt->steps();
    }
    return s;
}

/// Moves the model and the optimizer away from their initial values (non-zero Adam moments).
template <class Model>
void train_one_step(Model& model, tern::adamw& opt) {
    model.forward(tern::tensor(tern::shape_t{2, 4}, 0.5f));
    model.backward(tern::tensor(tern::shape_t{2, 3}, 1.0f));
    opt.step();
}

enum class ckpt_mode { model_only, adam, policy_change };

template <class P>
verdict check_checkpoint(const char* target, ckpt_mode mode, const std::uint8_t* data, std::size_t size) {
    const auto path = detail::scratch_file(target, ".safetensors");
    detail::write_file(path, data, size);
    tern::manual_seed(11);
    auto model = make_model<P>();
    std::optional<tern::adamw> opt;
    if (mode == ckpt_mode::adam) {
        opt.emplace(model.parameters());
        train_one_step(model, *opt);
    }
    const tern::detail::optimizer_base* o = opt ? &*opt : nullptr;
    const snapshot before = take(model, o);
    const verdict v = guarded(target, [&] {
        tern::load_checkpoint(path, model, opt ? &*opt : nullptr,
                              {.allow_policy_change = mode == ckpt_mode::policy_change});
    });
    if (v == verdict::rejected) {
        if (!(take(model, o) == before))
            finding(target, "a failed load changed the model or the optimizer: " + last_error());
        return v;
    }
    try {
        const tern::tensor y = model.forward(tern::tensor(tern::shape_t{2, 4}, 0.25f));
        if (tern::detail::to_shape(y.shape()) != tern::shape_t{2, 3}) finding(target, "forward gave a wrong shape");
    } catch (const finding_error&) {
        throw;
    } catch (const std::exception& e) {
        finding(target, std::string("forward after a successful load threw: ") + e.what());
    }
    return v;
}

/// Largest input (elements per sample) the harness runs a loaded packed model on.
constexpr std::size_t max_forward_elements = std::size_t{1} << 16;

}  // namespace

verdict run_checkpoint(const std::uint8_t* data, std::size_t size) {
    return check_checkpoint<tern::absmean_ternary>("checkpoint", ckpt_mode::model_only, data, size);
}

verdict run_checkpoint_adam(const std::uint8_t* data, std::size_t size) {
    return check_checkpoint<tern::absmean_ternary>("checkpoint_adam", ckpt_mode::adam, data, size);
}

/// The file is meant to come from an absmean model; the model here is absmedian.
verdict run_checkpoint_policy(const std::uint8_t* data, std::size_t size) {
    return check_checkpoint<tern::absmedian_ternary>("checkpoint_policy", ckpt_mode::policy_change, data, size);
}

/// Packed-model contract: load_packed_model (which runs the file's embedded test cases) accepts or
/// rejects; a loaded model with a known input shape runs one forward pass on a batch of two
/// without any exception. Without an input shape a forward pass of [2, 16] may be refused with
/// tern::error (the harness cannot know the input size), but nothing else.
verdict run_packed(const std::uint8_t* data, std::size_t size) {
    const auto path = detail::scratch_file("packed", ".tern");
    detail::write_file(path, data, size);
    tern::inference_model model;
    const verdict v = guarded("packed", [&] { model = tern::load_packed_model(path); });
    if (v == verdict::rejected) return v;
    tern::shape_t shape{2};
    std::size_t elements = 1;
    for (auto d : model.input_shape()) {
        shape.push_back(d);
        elements = elements > max_forward_elements ? elements : elements * d;
    }
    if (model.input_shape().empty()) {
        tern::tensor x(tern::shape_t{2, 16}, 0.5f);
        guarded("packed", [&] { model.forward(x); });
        return v;
    }
    if (elements > max_forward_elements) return v;
    tern::tensor x = tern::tensor::from_shape(shape);
    for (std::size_t i = 0; i < x.size(); ++i) x.data()[i] = float(i % 5) * 0.25f - 0.5f;
    try {
        const tern::tensor y = model.forward(x);
        if (y.dimension() == 0 || y.shape()[0] != 2) finding("packed", "forward lost the batch axis");
    } catch (const finding_error&) {
        throw;
    } catch (const std::exception& e) {
        finding("packed", std::string("forward on the declared input shape threw: ") + e.what());
    }
    return v;
}

namespace detail {

std::size_t write_model_seeds(const std::filesystem::path& dir) {
    std::size_t n = 0;
    for (const char* t : {"checkpoint", "checkpoint_adam", "checkpoint_policy", "packed"})
        std::filesystem::create_directories(dir / t);
    {
        tern::manual_seed(5);
        auto model = make_model<tern::absmean_ternary>();
        tern::adamw opt(model.parameters());
        train_one_step(model, opt);
        tern::save_checkpoint(dir / "checkpoint" / "seed0.safetensors", model, nullptr, {{"step", "1"}});
        tern::save_checkpoint(dir / "checkpoint_adam" / "seed0.safetensors", model, &opt, {{"step", "1"}});
        tern::save_checkpoint(dir / "checkpoint_policy" / "seed0.safetensors", model);
        auto other = make_model<tern::fp16>();
        tern::save_checkpoint(dir / "checkpoint_policy" / "seed1.safetensors", other);
        n += 4;
    }
    {
        tern::manual_seed(6);
        auto mlp = tern::sequential{tern::flatten{}, tern::linear<tern::absmean_ternary>(12, 8, true), tern::relu{},
                                    tern::layer_norm(8), tern::linear<tern::absmean_ternary>(8, 3, false)};
        tern::tensor x = tern::tensor::from_shape({2, 3, 4});
        for (std::size_t i = 0; i < x.size(); ++i) x.data()[i] = float(i % 7) * 0.3f - 1.0f;
        tern::save_packed_model(dir / "packed" / "mlp.tern", mlp, {.test_inputs = x, .metadata = {}});
        tern::save_packed_model(dir / "packed" / "mlp_no_tests.tern", mlp);
        auto cnn = tern::sequential{tern::conv2d<tern::absmean_ternary>(1, 4, 3, tern::conv2d_options{.padding = 1}, true),
                                    tern::relu{},
                                    tern::max_pool2d(2),
                                    tern::avg_pool2d(3, 1, 1),
                                    tern::flatten{},
                                    tern::linear<tern::absmean_ternary>(4 * 4 * 4, 5, true)};
        tern::tensor img = tern::tensor::from_shape({2, 1, 8, 8});
        for (std::size_t i = 0; i < img.size(); ++i) img.data()[i] = float(i % 11) * 0.2f - 1.0f;
        tern::save_packed_model(dir / "packed" / "cnn.tern", cnn, {.test_inputs = img, .metadata = {}});
        n += 3;
    }
    return n;
}

}  // namespace detail
}  // namespace tern_fuzz
