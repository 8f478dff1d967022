// Replays every input that ever broke a reader (tests/fuzz/regressions/<target>/) and the seed
// corpus through the fuzz targets' own checks (harness.hpp), without libFuzzer: part of the normal
// suite under GCC and of the sanitizer run.
#include <catch2/catch.hpp>

#include <filesystem>
#include <map>
#include <set>
#include <string>

#include "harness.hpp"

namespace fs = std::filesystem;

namespace {

/// What the reader must say about each hand-written regression input (docs/file-formats.md).
const std::map<std::string, std::string> expected_errors = {
    {"idx/rank7-zero-dim.idx", "the limit is 281474976710656 elements"},
    {"idx_gzip/rank7-zero-dim.plain", "the limit is 281474976710656 elements"},
    {"safetensors/nested-brackets.safetensors", "nests JSON arrays and objects deeper than 64 levels"},
    {"bpe/self-merge-40.bpe", "more than the limit of 64"},
    {"checkpoint_adam/late-failure.safetensors", "no tensor named 'optimizer.1.3.weight'"},
    {"packed/pool-padding-2p63.tern", "field 'padding': expected an integer in 0..4096"},
    {"packed/nested-architecture.tern", "nests JSON arrays and objects deeper than 64 levels"},
    {"linqs/unknown-edge.txt", "g.cites' line 2: node id 'zz' is not in the content file"},
    {"ogb/huge-index-overlap.txt", "edge.csv' line 1: expected node indices in 0..1"},
};

fs::path regressions_dir() { return fs::path(TERN_FUZZ_REGRESSIONS_DIR); }

}  // namespace

TEST_CASE("every input that broke a reader is now refused cleanly", "[fuzz]") {
    tern_fuzz::set_abort_on_finding(false);
    std::set<std::string> seen;
    std::size_t files = 0;
    for (const auto& t : tern_fuzz::targets()) {
        const fs::path dir = regressions_dir() / t.name;
        if (!fs::is_directory(dir)) continue;
        for (const auto& entry : fs::directory_iterator(dir)) {
            if (!entry.is_regular_file()) continue;
            const std::string key = std::string(t.name) + "/" + entry.path().filename().string();
            INFO(key);
            const auto bytes = tern_fuzz::detail::read_file(entry.path());
            tern_fuzz::verdict v = tern_fuzz::verdict::accepted;
            REQUIRE_NOTHROW(v = t.run(bytes.data(), bytes.size()));
            ++files;
            if (auto it = expected_errors.find(key); it != expected_errors.end()) {
                seen.insert(key);
                CHECK(v == tern_fuzz::verdict::rejected);
                INFO("message: " << tern_fuzz::last_error());
                CHECK(tern_fuzz::last_error().find(it->second) != std::string::npos);
            }
        }
    }
    CHECK(files >= expected_errors.size());
    for (const auto& [key, _] : expected_errors) {
        INFO("regression input missing: " << key);
        CHECK(seen.count(key) == 1);
    }
}

TEST_CASE("every seed written by tern's own writers is accepted", "[fuzz]") {
    tern_fuzz::set_abort_on_finding(false);
    const fs::path dir = fs::temp_directory_path() / "tern_test_fuzz_seeds";
    fs::remove_all(dir);
    const std::size_t written = tern_fuzz::write_seeds(dir);
    std::size_t replayed = 0;
    for (const auto& t : tern_fuzz::targets()) {
        REQUIRE(fs::is_directory(dir / t.name));
        for (const auto& entry : fs::directory_iterator(dir / t.name)) {
            const std::string key = std::string(t.name) + "/" + entry.path().filename().string();
            INFO(key);
            const auto bytes = tern_fuzz::detail::read_file(entry.path());
            tern_fuzz::verdict v = tern_fuzz::verdict::rejected;
            REQUIRE_NOTHROW(v = t.run(bytes.data(), bytes.size()));
            INFO("error: " << tern_fuzz::last_error());
            CHECK(v == tern_fuzz::verdict::accepted);
            ++replayed;
        }
    }
    CHECK(replayed == written);
    fs::remove_all(dir);
}

TEST_CASE("the late-failing checkpoint fails late", "[fuzz]") {
    // The regression input holds a valid model and fails only in the optimizer state, after the
    // model tensors are decoded (before the fix the model was then left overwritten, which
    // run_checkpoint_adam reports as a finding): the model-only target loads the same file.
    tern_fuzz::set_abort_on_finding(false);
    const auto bytes =
        tern_fuzz::detail::read_file(regressions_dir() / "checkpoint_adam" / "late-failure.safetensors");
    REQUIRE(!bytes.empty());
    CHECK(tern_fuzz::run_checkpoint_adam(bytes.data(), bytes.size()) == tern_fuzz::verdict::rejected);
    // The model-only target ignores the optimizer state, so the same file loads there.
    CHECK(tern_fuzz::run_checkpoint(bytes.data(), bytes.size()) == tern_fuzz::verdict::accepted);
}
