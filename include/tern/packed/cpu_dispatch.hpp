#pragma once
/// @file packed/cpu_dispatch.hpp
/// @brief Which SIMD path the packed ternary kernels use: runtime CPU detection and forcing.
///
/// The headers build without any -march flag: SIMD kernels are compiled as GCC/Clang
/// function-level targets (`__attribute__((target(...)))`) and chosen at run time with
/// `__builtin_cpu_supports`. On other architectures (ARM, ...) or other compilers only the
/// portable scalar path exists. Every path gives bit-identical integer results.
///
/// A path can be forced for the whole program with the environment variable TERN_KERNEL_PATH
/// (scalar, avx2, avxvnni, avx512vnni or automatic), e.g. to measure the AVX2 path on an AVX-512
/// machine, or in code with force_kernel_path().

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "../error.hpp"

// Define TERN_PACKED_NO_SIMD to build only the portable path (as on ARM), e.g. to test it.
#if (defined(__x86_64__) || defined(_M_X64)) && (defined(__GNUC__) || defined(__clang__)) && \
    !defined(TERN_PACKED_NO_SIMD)
#define TERN_PACKED_X86 1
#include <cpuid.h>
#include <immintrin.h>
#else
#define TERN_PACKED_X86 0
#endif

namespace tern::packed {

namespace detail {
// tern::packed::detail hides tern::detail; bring the API-edge checks in.
using ::tern::detail::fail;
using ::tern::detail::require;
}  // namespace detail

/// @brief A kernel implementation. `automatic` means "the best one this CPU supports".
enum class kernel_path : int {
    automatic = -1,
    scalar = 0,      ///< portable C++, the reference
    avx2 = 1,        ///< vpmaddubsw into int16, widened with vpmaddwd
    avxvnni = 2,     ///< VEX vpdpbusd on ymm (AVX-VNNI)
    avx512vnni = 3,  ///< EVEX vpdpbusd on zmm (AVX-512 F/BW/VNNI)
};

/// @brief Short lowercase name of a path ("scalar", "avx2", "avxvnni", "avx512vnni", "automatic").
inline const char* kernel_path_name(kernel_path p) {
    switch (p) {
        case kernel_path::automatic: return "automatic";
        case kernel_path::scalar: return "scalar";
        case kernel_path::avx2: return "avx2";
        case kernel_path::avxvnni: return "avxvnni";
        case kernel_path::avx512vnni: return "avx512vnni";
    }
    return "unknown";
}

namespace detail {

struct cpu_caps {
    bool avx2 = false, avxvnni = false, avx512vnni = false;
};

inline const cpu_caps& caps() {
    static const cpu_caps c = [] {
        cpu_caps r;
#if TERN_PACKED_X86
        __builtin_cpu_init();
        r.avx2 = __builtin_cpu_supports("avx2");
        // AVX-VNNI is CPUID.(7,1):EAX bit 4; read directly since older Clang rejects
        // __builtin_cpu_supports("avxvnni"). The OS saves ymm state when "avx2" is reported.
        unsigned a = 0, b = 0, c = 0, d = 0;
        r.avxvnni = r.avx2 && __get_cpuid_count(7, 1, &a, &b, &c, &d) && ((a >> 4) & 1u);
        r.avx512vnni = r.avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                       __builtin_cpu_supports("avx512vnni");
#endif
        return r;
    }();
    return c;
}

}  // namespace detail

/// @brief The path named @p name ("scalar", "avx2", "avxvnni", "avx512vnni" or "automatic").
/// @throws tern::error on any other name.
inline kernel_path kernel_path_from_name(const std::string& name) {
    for (auto p : {kernel_path::automatic, kernel_path::scalar, kernel_path::avx2, kernel_path::avxvnni,
                   kernel_path::avx512vnni})
        if (name == kernel_path_name(p)) return p;
    detail::fail("packed: unknown kernel path '", name, "' (expected scalar, avx2, avxvnni, avx512vnni or automatic)");
}

/// @brief Whether @p p can run on this CPU (scalar and automatic always can).
inline bool kernel_path_available(kernel_path p);

namespace detail {

/// The path the environment variable TERN_KERNEL_PATH names (-1 when unset or "automatic"), so a
/// whole program (a benchmark, an application) can be run on a lower path without recompiling.
/// @throws tern::error on an unknown or unavailable path.
inline int env_forced_path() {
    const char* env = std::getenv("TERN_KERNEL_PATH");
    if (env == nullptr || *env == '\0') return -1;
    const kernel_path p = kernel_path_from_name(env);
    require(kernel_path_available(p), "TERN_KERNEL_PATH: path '", env, "' is not supported by this CPU");
    return static_cast<int>(p);
}

/// The forced path (as int), or -1 for automatic. Global so tests and benchmarks can pin a path;
/// it starts as TERN_KERNEL_PATH says.
inline std::atomic<int>& forced_path() {
    static std::atomic<int> p{env_forced_path()};
    return p;
}

}  // namespace detail

inline bool kernel_path_available(kernel_path p) {
    const auto& c = detail::caps();
    switch (p) {
        case kernel_path::automatic:
        case kernel_path::scalar: return true;
        case kernel_path::avx2: return c.avx2;
        case kernel_path::avxvnni: return c.avxvnni;
        case kernel_path::avx512vnni: return c.avx512vnni;
    }
    return false;
}

/// @brief The fastest path this CPU supports, ignoring any forcing (and TERN_KERNEL_PATH).
inline kernel_path best_kernel_path() {
    const auto& c = detail::caps();
    if (c.avx512vnni) return kernel_path::avx512vnni;
    if (c.avxvnni) return kernel_path::avxvnni;
    if (c.avx2) return kernel_path::avx2;
    return kernel_path::scalar;
}

/// @brief Forces every packed kernel call that does not name a path to use @p p
/// (kernel_path::automatic restores detection).
/// @throws tern::error if @p p is not available on this CPU.
inline void force_kernel_path(kernel_path p) {
    detail::require(kernel_path_available(p), "packed::force_kernel_path: path '", kernel_path_name(p),
                    "' is not supported by this CPU");
    detail::forced_path().store(static_cast<int>(p), std::memory_order_relaxed);
}

/// @brief The path a call with kernel_path::automatic uses now: forced (by force_kernel_path or
/// the environment variable TERN_KERNEL_PATH) or detected.
inline kernel_path active_kernel_path() {
    const int f = detail::forced_path().load(std::memory_order_relaxed);
    return f < 0 ? best_kernel_path() : static_cast<kernel_path>(f);
}

/// @brief Name of active_kernel_path(), e.g. "avx512vnni".
inline const char* active_kernel_path_name() { return kernel_path_name(active_kernel_path()); }

namespace detail {

/// Turns a caller's request into a concrete, available path.
inline kernel_path resolve_path(kernel_path requested, const char* where) {
    if (requested == kernel_path::automatic) return active_kernel_path();
    require(kernel_path_available(requested), where, ": path '", kernel_path_name(requested),
            "' is not supported by this CPU");
    return requested;
}

}  // namespace detail
}  // namespace tern::packed
