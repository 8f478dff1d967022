#pragma once
/// @file kernels/fp16.hpp
/// @brief Rounding fp32 values to IEEE binary16 (round to nearest, ties to even), returned as fp32.
///
/// The scalar function works on the bit pattern (its one float multiply is exact), so it gives the
/// same bits on every platform and under any rounding mode. The array version uses F16C
/// (vcvtps2ph / vcvtph2ps) when the CPU has it; the scalar code reproduces the hardware exactly,
/// NaN payloads included, so results never depend on which path ran.

#include <cstddef>
#include <cstdint>
#include <cstring>

// Defining TERN_DISABLE_SIMD builds only the portable code (as on non-x86 targets).
#if (defined(__x86_64__) || defined(_M_X64)) && (defined(__GNUC__) || defined(__clang__)) && !defined(TERN_DISABLE_SIMD)
#define TERN_FP16_X86 1
#include <cpuid.h>
#include <immintrin.h>
#else
#define TERN_FP16_X86 0
#endif

namespace tern::kernels {

/// @brief The binary16 value nearest to @p x (ties to even), as a float. Magnitudes of 65520 and
/// above become inf, magnitudes up to 2^-25 become (signed) zero, binary16 subnormals are kept, and NaN
/// stays NaN (quieted, payload cut to binary16's 10 bits, exactly like F16C).
inline float round_to_half(float x) {
    std::uint32_t u;
    std::memcpy(&u, &x, sizeof u);
    const std::uint32_t sign = u & 0x80000000u, mag = u & 0x7fffffffu;
    std::uint32_t out;
    if (mag > 0x7f800000u) {
        // NaN: binary16 keeps the top 10 mantissa bits and sets the quiet bit.
        out = (u & 0xffffe000u) | 0x00400000u;
    } else if (mag >= 0x477ff000u) {
        // 65520 is halfway between 65504 (the largest half) and 65536; ties to even go up: inf.
        out = sign | 0x7f800000u;
    } else if (mag >= 0x38800000u) {
        // Normal half (|x| >= 2^-14): drop 13 mantissa bits, rounding to nearest even; a carry
        // into the exponent is the correct result.
        out = sign | ((mag + 0x0fffu + ((mag >> 13) & 1u)) & ~0x1fffu);
    } else {
        // Subnormal half: the result is q * 2^-24 with q = |x| / 2^-24 rounded to nearest even.
        const std::uint32_t exp = mag >> 23;
        std::uint32_t q = 0;
        if (exp >= 102) {  // below 2^-25 (exp < 102) everything rounds to zero
            const std::uint32_t m = (mag & 0x007fffffu) | 0x00800000u;
            const std::uint32_t shift = 126u - exp;  // 14..24: |x| = m * 2^(exp-150) = (m >> shift) * 2^-24
            q = m >> shift;
            const std::uint32_t rest = m & ((1u << shift) - 1u), half = 1u << (shift - 1u);
            if (rest > half || (rest == half && (q & 1u))) ++q;
        }
        // q <= 1024 converts exactly; 1024 * 2^-24 = 2^-14 is the smallest normal half.
        const float r = float(q) * 0x1p-24f;
        std::memcpy(&out, &r, sizeof out);
        out |= sign;
    }
    float r;
    std::memcpy(&r, &out, sizeof r);
    return r;
}

namespace detail {

/// Portable array version.
inline void round_to_half_scalar(const float* in, float* out, std::size_t n) {
    for (std::size_t i = 0; i < n; ++i) out[i] = round_to_half(in[i]);
}

#if TERN_FP16_X86
/// F16C version: eight values per round trip, rounding fixed to nearest-even (not MXCSR's mode).
__attribute__((target("avx,f16c"))) inline void round_to_half_f16c(const float* in, float* out, std::size_t n) {
    std::size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m128i h = _mm256_cvtps_ph(_mm256_loadu_ps(in + i), _MM_FROUND_TO_NEAREST_INT);
        _mm256_storeu_ps(out + i, _mm256_cvtph_ps(h));
    }
    for (; i < n; ++i) out[i] = round_to_half(in[i]);
}
#endif

/// Whether round_to_half_f16c can run here.
inline bool cpu_has_f16c() {
#if TERN_FP16_X86
    // CPUID directly: older Clang's __builtin_cpu_supports does not know "f16c".
    static const bool has = [] {
        unsigned a = 0, b = 0, c = 0, d = 0;
        if (!__get_cpuid(1, &a, &b, &c, &d)) return false;
        const bool osxsave = c & (1u << 27), avx = c & (1u << 28), f16c = c & (1u << 29);
        if (!(osxsave && avx && f16c)) return false;
        unsigned xcr0_lo = 0, xcr0_hi = 0;
        __asm__("xgetbv" : "=a"(xcr0_lo), "=d"(xcr0_hi) : "c"(0));
        return (xcr0_lo & 6u) == 6u;  // the OS saves SSE and AVX state
    }();
    return has;
#else
    return false;
#endif
}

}  // namespace detail

/// @brief out[i] = round_to_half(in[i]) for i < n. @p in and @p out may be the same array.
inline void round_to_half(const float* in, float* out, std::size_t n) {
#if TERN_FP16_X86
    if (detail::cpu_has_f16c()) {
        detail::round_to_half_f16c(in, out, n);
        return;
    }
#endif
    detail::round_to_half_scalar(in, out, n);
}

}  // namespace tern::kernels
