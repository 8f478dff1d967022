// Checkpoints: bit-exact round trip (model and optimizer), and clear errors for the wrong policy,
// wrong shape, truncated and corrupted files.
#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>

#include "tern/tern.hpp"

namespace {
namespace fs = std::filesystem;

template <class P>
auto make_model(std::size_t hidden = 6) {
    return tern::sequential{tern::linear<P>(4, hidden, true), tern::relu{}, tern::layer_norm(hidden),
                            tern::linear<P>(hidden, 3, false)};
}

fs::path temp_file(const std::string& name) {
    const fs::path dir = fs::temp_directory_path() / "tern_test_checkpoint";
    fs::create_directories(dir);
    return dir / name;
}

std::vector<char> read_all(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), {}};
}

void write_all(const fs::path& p, const std::vector<char>& bytes) {
    std::ofstream out(p, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), std::streamsize(bytes.size()));
}
}  // namespace

TEMPLATE_TEST_CASE("checkpoint round trip is bit-exact", "[checkpoint]", tern::fp32, tern::fp16,
                   tern::absmean_ternary, tern::absmedian_ternary) {
    tern::manual_seed(1);
    auto model = make_model<TestType>();
    tern::adamw opt(model.parameters());
    model.forward(tern::tensor(tern::shape_t{2, 4}, 0.5f));
    model.backward(tern::tensor(tern::shape_t{2, 3}, 1.0f));
    opt.step();
    const fs::path path = temp_file(std::string(TestType::name) + ".safetensors");
    tern::save_checkpoint(path, model, &opt, {{"step", "1"}});

    tern::manual_seed(2);
    auto loaded = make_model<TestType>();
    tern::adamw opt2(loaded.parameters());
    const auto meta = tern::load_checkpoint(path, loaded, &opt2);
    CHECK(meta.at("step") == "1");
    CHECK(meta.at("tern.policy") == std::string(TestType::name));
    CHECK(opt2.steps() == 1);
    auto a = model.parameters(), b = loaded.parameters();
    for (std::size_t i = 0; i < a.size(); ++i)
        REQUIRE(std::memcmp(a[i].value->data(), b[i].value->data(), a[i].value->size() * 4) == 0);
    const tern::tensor x = tern::tensor(tern::shape_t{1, 4}, 0.25f);
    const bool same_output = model.forward(x) == loaded.forward(x);
    CHECK(same_output);
}

TEST_CASE("checkpoint errors name what does not match", "[checkpoint][errors]") {
    tern::manual_seed(3);
    auto model = make_model<tern::absmean_ternary>();
    const fs::path path = temp_file("errors.safetensors");
    tern::save_checkpoint(path, model);

    auto wrong_policy = make_model<tern::fp16>();
    REQUIRE_THROWS_WITH(tern::load_checkpoint(path, wrong_policy),
                        Catch::Contains("policy mismatch") && Catch::Contains("'fp16'") && Catch::Contains("'absmean'"));
    // Same architecture in another policy is accepted when asked for.
    CHECK_NOTHROW(tern::load_checkpoint(path, wrong_policy, nullptr, {.allow_policy_change = true}));

    auto wrong_shape = make_model<tern::absmean_ternary>(7);
    REQUIRE_THROWS_WITH(tern::load_checkpoint(path, wrong_shape), Catch::Contains("different model"));

    tern::adam opt(model.parameters());
    REQUIRE_THROWS_WITH(tern::load_checkpoint(path, model, &opt), Catch::Contains("no optimizer state"));

    const auto bytes = read_all(path);
    const fs::path broken = temp_file("broken.safetensors");
    for (std::size_t cut : {std::size_t{0}, std::size_t{7}, std::size_t{20}, bytes.size() / 2, bytes.size() - 1}) {
        write_all(broken, std::vector<char>(bytes.begin(), bytes.begin() + long(cut)));
        auto m = make_model<tern::absmean_ternary>();
        REQUIRE_THROWS_AS(tern::load_checkpoint(broken, m), tern::error);
    }
    // Corrupt the JSON header.
    auto corrupt = bytes;
    corrupt[10] = '{';
    corrupt[11] = '{';
    write_all(broken, corrupt);
    auto m = make_model<tern::absmean_ternary>();
    const auto before = m.parameters()[0].value->operator()(0, 0);
    REQUIRE_THROWS_AS(tern::load_checkpoint(broken, m), tern::error);
    CHECK(m.parameters()[0].value->operator()(0, 0) == before);  // unchanged on error
    REQUIRE_THROWS_WITH(tern::load_checkpoint(temp_file("does_not_exist.safetensors"), m), Catch::Contains("does_not_exist"));
}

TEST_CASE("checkpoints record and verify the architecture as data", "[checkpoint]") {
    tern::manual_seed(4);
    auto model = make_model<tern::absmean_ternary>();
    const fs::path path = temp_file("architecture.safetensors");
    tern::save_checkpoint(path, model);
    const auto file = tern::io::load_safetensors(path);
    const auto arch = nlohmann::json::parse(file.metadata.at("tern.architecture"));
    CHECK(arch == tern::architecture(model));
    REQUIRE(arch["kind"] == "sequential");
    REQUIRE(arch["layers"].size() == 4);
    CHECK(arch["layers"][0]["kind"] == "linear");
    CHECK(arch["layers"][0]["in"] == 4);
    CHECK(arch["layers"][0]["policy"] == "absmean");
    CHECK(arch["layers"][2]["kind"] == "layer_norm");
    // Another policy loads with allow_policy_change; another width does not, policy change or not.
    auto other_policy = make_model<tern::fp32>();
    CHECK_NOTHROW(tern::load_checkpoint(path, other_policy, nullptr, {.allow_policy_change = true}));
    auto wider = make_model<tern::fp32>(7);
    REQUIRE_THROWS_WITH(tern::load_checkpoint(path, wider, nullptr, {.allow_policy_change = true}),
                        Catch::Contains("different architecture") && Catch::Contains("\"out\":7"));
    // A layer option the description leaves implicit still counts (here the norm's eps).
    auto other_eps = tern::sequential{tern::linear<tern::absmean_ternary>(4, 6, true), tern::relu{},
                                      tern::layer_norm(6, true, 1e-3f), tern::linear<tern::absmean_ternary>(6, 3, false)};
    REQUIRE_THROWS_WITH(tern::load_checkpoint(path, other_eps), Catch::Contains("different model"));

    // A checkpoint from before the architecture metadata loads into the same model, same policy.
    auto old = file;
    old.metadata.erase("tern.architecture");
    const fs::path old_path = temp_file("no_architecture.safetensors");
    tern::io::save_safetensors(old_path, old);
    auto same = make_model<tern::absmean_ternary>();
    CHECK_NOTHROW(tern::load_checkpoint(old_path, same));
    REQUIRE_THROWS_WITH(tern::load_checkpoint(old_path, other_policy, nullptr, {.allow_policy_change = true}),
                        Catch::Contains("predates 'tern.architecture'"));
    auto corrupt = file;
    corrupt.metadata["tern.architecture"] = "{\"kind\": [";
    tern::io::save_safetensors(old_path, corrupt);
    REQUIRE_THROWS_WITH(tern::load_checkpoint(old_path, same), Catch::Contains("'tern.architecture' is not valid JSON"));
}

TEST_CASE("a failed save leaves the existing checkpoint intact", "[checkpoint][errors]") {
    auto model = make_model<tern::fp32>();
    const fs::path path = temp_file("keep.safetensors");
    tern::save_checkpoint(path, model);
    const auto before = read_all(path);
    REQUIRE_THROWS_AS(tern::save_checkpoint(temp_file("no_such_dir") / "x" / "y.safetensors", model), tern::error);
    CHECK(read_all(path) == before);
}
