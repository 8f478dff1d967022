#pragma once
// The line every benchmark prints first: the CPU it ran on, the SIMD paths tern took there and the
// load average, so that each figure can be tied to its machine class (AVX2 or AVX-512) and to the
// load it was measured under. TERN_KERNEL_PATH=avx2 (see tern/packed/cpu_dispatch.hpp) runs the
// packed kernels on the AVX2 path of an AVX-512 machine.
#include <cstdio>
#include <fstream>
#include <string>
#include <thread>

#include <tern/kernels/gemm.hpp>
#include <tern/packed/cpu_dispatch.hpp>

namespace tern_bench {

/// The value of the first "<key>" line of /proc/cpuinfo (Linux), or "" where there is none.
inline std::string cpuinfo_field(const std::string& key) {
    std::ifstream in("/proc/cpuinfo");
    for (std::string line; std::getline(in, line);) {
        const auto colon = line.find(':');
        if (colon == std::string::npos || line.find_last_not_of(" \t", colon - 1) + 1 != key.size() ||
            line.compare(0, key.size(), key) != 0)
            continue;
        const auto start = line.find_first_not_of(' ', colon + 1);
        return start == std::string::npos ? "" : line.substr(start);
    }
    return "";
}

/// "model name (family F, model M)": a virtual machine may name only "AMD EPYC", and the family
/// tells the class apart (25: Zen 3/4, 26: Zen 5).
inline std::string cpu_model() {
    const std::string name = cpuinfo_field("model name");
    if (name.empty()) return "unknown";
    return name + " (family " + cpuinfo_field("cpu family") + ", model " + cpuinfo_field("model") + ")";
}

/// The 1, 5 and 15 minute load averages of /proc/loadavg, or "unknown".
inline std::string load_average() {
    std::ifstream in("/proc/loadavg");
    std::string a, b, c;
    if (!(in >> a >> b >> c)) return "unknown";
    return a + " " + b + " " + c;
}

/// Prints "<name>: CPU ..., packed path ..., fp32 GEMM path ..., load average ..." on one line.
inline void print_machine(const char* name) {
    namespace tp = tern::packed;
    std::printf("%s: CPU %s, %u logical CPUs; packed kernel path %s (best on this CPU %s); fp32 GEMM path %s; "
                "load average %s\n",
                name, cpu_model().c_str(), std::thread::hardware_concurrency(), tp::active_kernel_path_name(),
                tp::kernel_path_name(tp::best_kernel_path()),
                tern::kernels::detail::gemm_path_name(tern::kernels::detail::best_gemm_path()),
                load_average().c_str());
}

}  // namespace tern_bench
