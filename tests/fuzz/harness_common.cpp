// What the fuzz targets share: findings, scratch files, the table of targets, seeds.
#include "harness.hpp"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <system_error>

#if !defined(_WIN32)
#include <unistd.h>
#endif

namespace tern_fuzz {
namespace {
bool abort_on_finding = true;
std::string last_message;
}  // namespace

const std::string& last_error() { return last_message; }

void set_abort_on_finding(bool abort) { abort_on_finding = abort; }

const std::vector<target>& targets() {
    static const std::vector<target> all = {
        {"idx", run_idx},
        {"idx_gzip", run_idx_gzip},
        {"cifar", run_cifar},
        {"safetensors", run_safetensors},
        {"bpe", run_bpe},
        {"checkpoint", run_checkpoint},
        {"checkpoint_adam", run_checkpoint_adam},
        {"checkpoint_policy", run_checkpoint_policy},
        {"packed", run_packed},
        {"linqs", run_linqs},
        {"ogb", run_ogb},
    };
    return all;
}

const target& find_target(std::string_view name) {
    for (const auto& t : targets())
        if (name == t.name) return t;
    throw std::invalid_argument("no fuzz target named '" + std::string(name) + "'");
}

std::size_t write_seeds(const std::filesystem::path& dir) {
    return detail::write_data_seeds(dir) + detail::write_model_seeds(dir) + detail::write_graph_seeds(dir);
}

namespace detail {

void finding(const char* target, const std::string& what) {
    const std::string text = std::string("tern fuzz finding [") + target + "]: " + what;
    if (!abort_on_finding) throw finding_error(text);
    std::fprintf(stderr, "%s\n", text.c_str());
    std::fflush(stderr);
    std::abort();
}

std::filesystem::path scratch_file(const char* target, const char* extension) {
#if defined(_WIN32)
    const long pid = 0;
#else
    const long pid = static_cast<long>(::getpid());
#endif
    static const std::filesystem::path dir = [pid] {
        const auto d = std::filesystem::temp_directory_path() / ("tern_fuzz_" + std::to_string(pid));
        std::filesystem::create_directories(d);
        return d;
    }();
    return dir / (std::string(target) + extension);
}

void write_file(const std::filesystem::path& path, const std::uint8_t* data, std::size_t size) {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    if (size) out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
    out.close();
    if (!out) {
        std::fprintf(stderr, "tern fuzz: cannot write scratch file '%s'\n", path.string().c_str());
        std::abort();  // the harness's own failure, not a finding in tern
    }
}

void write_file(const std::filesystem::path& path, const std::vector<std::uint8_t>& bytes) {
    write_file(path, bytes.data(), bytes.size());
}

std::vector<std::uint8_t> read_file(const std::filesystem::path& path) {
    std::ifstream in(path, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void rejected(const char* target, const std::string& message) {
    last_message = message;
    if (message.empty()) finding(target, "tern::error with an empty message");
    if (message.size() > max_message_bytes)
        finding(target, "tern::error message of " + std::to_string(message.size()) + " bytes (more than " +
                            std::to_string(max_message_bytes) + "): " + message.substr(0, 200) + "...");
    const auto lines = static_cast<std::size_t>(std::count(message.begin(), message.end(), '\n')) + 1;
    if (lines > max_message_lines)
        finding(target, "tern::error message of " + std::to_string(lines) + " lines: " + message.substr(0, 200));
}

void accepted() { last_message.clear(); }

}  // namespace detail
}  // namespace tern_fuzz
