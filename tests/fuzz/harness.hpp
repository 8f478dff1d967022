#pragma once
// The contract every tern file reader keeps (docs/file-formats.md), as one function per fuzz
// target. The libFuzzer programs (fuzz_target.cpp, built with -DTERN_FUZZ=ON under clang) and the
// replay test of the normal suite (replay.cpp, any compiler) call the same functions.
//
// For every input a target checks:
//   - the reader returns or throws tern::error, whose message is short (at most max_message_bytes
//     and max_message_lines): anything else escaping is a finding;
//   - on tern::error, the model, optimizer or data passed in is bit-identical to before;
//   - on success, the result is usable: a loaded model runs one forward pass, a tokenizer round
//     trips text, a data set has the shape and label range it promises.
// A finding prints "tern fuzz finding [target]: ..." and aborts (libFuzzer then saves the input),
// or, after set_abort_on_finding(false), throws finding_error (the replay test reports it).

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace tern_fuzz {

/// What a reader did with one input.
enum class verdict { accepted, rejected };

/// The message of the last tern::error a target saw (empty after an accepted input).
const std::string& last_error();

/// A broken contract, thrown instead of aborting after set_abort_on_finding(false).
struct finding_error : std::runtime_error {
    using std::runtime_error::runtime_error;
};

/// true (the default, for libFuzzer): a finding aborts. false: it throws finding_error.
void set_abort_on_finding(bool abort);

inline constexpr std::size_t max_message_bytes = 1024;
inline constexpr std::size_t max_message_lines = 3;

/// One fuzz target: its name (the folder under tests/fuzz/regressions/) and its check.
struct target {
    const char* name;
    verdict (*run)(const std::uint8_t* data, std::size_t size);
};

/// Every target, in a fixed order.
const std::vector<target>& targets();

/// The target named @p name; throws std::invalid_argument if there is none.
const target& find_target(std::string_view name);

/// Writes seed inputs for every target into @p dir / <target name> / (tern's own writers for
/// safetensors, checkpoints, packed models and BPE files; the byte layouts for IDX and CIFAR,
/// which tern only reads). Returns the number of files written.
std::size_t write_seeds(const std::filesystem::path& dir);

// The targets (defined in harness_data.cpp, harness_models.cpp and harness_graphs.cpp).
verdict run_idx(const std::uint8_t* data, std::size_t size);
verdict run_idx_gzip(const std::uint8_t* data, std::size_t size);
verdict run_cifar(const std::uint8_t* data, std::size_t size);
verdict run_safetensors(const std::uint8_t* data, std::size_t size);
verdict run_bpe(const std::uint8_t* data, std::size_t size);
verdict run_checkpoint(const std::uint8_t* data, std::size_t size);
verdict run_checkpoint_adam(const std::uint8_t* data, std::size_t size);
verdict run_checkpoint_policy(const std::uint8_t* data, std::size_t size);
verdict run_packed(const std::uint8_t* data, std::size_t size);
verdict run_linqs(const std::uint8_t* data, std::size_t size);
verdict run_ogb(const std::uint8_t* data, std::size_t size);

namespace detail {

/// Prints and aborts, or throws finding_error (see set_abort_on_finding).
[[noreturn]] void finding(const char* target, const std::string& what);

/// A scratch file of this process for the input (one per target name), rewritten on each call.
std::filesystem::path scratch_file(const char* target, const char* extension);
void write_file(const std::filesystem::path& path, const std::uint8_t* data, std::size_t size);
void write_file(const std::filesystem::path& path, const std::vector<std::uint8_t>& bytes);
std::vector<std::uint8_t> read_file(const std::filesystem::path& path);

/// Records @p message as last_error() and checks it is short and non-empty.
void rejected(const char* target, const std::string& message);
void accepted();

std::size_t write_data_seeds(const std::filesystem::path& dir);
std::size_t write_model_seeds(const std::filesystem::path& dir);
std::size_t write_graph_seeds(const std::filesystem::path& dir);

}  // namespace detail

/// Runs @p load: verdict::accepted if it returns, verdict::rejected on tern::error (after checking
/// the message); any other exception is a finding.
template <class Load>
verdict guarded(const char* target, Load&& load);

}  // namespace tern_fuzz

#include <tern/error.hpp>
#include <typeinfo>

template <class Load>
tern_fuzz::verdict tern_fuzz::guarded(const char* target, Load&& load) {
    try {
        load();
    } catch (const tern::error& e) {
        detail::rejected(target, e.what());
        return verdict::rejected;
    } catch (const finding_error&) {
        throw;
    } catch (const std::exception& e) {
        detail::finding(target, std::string("a ") + typeid(e).name() + " escaped the reader: " + e.what());
    } catch (...) {
        detail::finding(target, "an exception that is not a std::exception escaped the reader");
    }
    detail::accepted();
    return verdict::accepted;
}
