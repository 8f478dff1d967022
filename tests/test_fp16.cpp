// round_to_half: known binary16 values and ties, every half value round-trips, and the F16C path
// gives exactly the scalar bits on millions of random patterns (NaN payloads included).
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "tern/kernels/fp16.hpp"

namespace {

std::uint32_t bits(float x) {
    std::uint32_t u;
    std::memcpy(&u, &x, sizeof u);
    return u;
}

float from_bits(std::uint32_t u) {
    float x;
    std::memcpy(&x, &u, sizeof x);
    return x;
}

// Decodes a binary16 pattern exactly (independent of the code under test).
float half_to_float(std::uint16_t h) {
    const int sign = (h >> 15) & 1, exp = (h >> 10) & 0x1f, man = h & 0x3ff;
    float v;
    if (exp == 0)
        v = std::ldexp(float(man), -24);
    else if (exp == 31)
        v = man ? std::numeric_limits<float>::quiet_NaN() : std::numeric_limits<float>::infinity();
    else
        v = std::ldexp(float(man | 0x400), exp - 25);
    return sign ? -v : v;
}

float r(float x) { return tern::kernels::round_to_half(x); }

}  // namespace

TEST_CASE("round_to_half gives the known binary16 values", "[fp16]") {
    REQUIRE(r(0.1f) == 0.0999755859375f);
    REQUIRE(r(1.0f) == 1.0f);
    REQUIRE(r(-2.5f) == -2.5f);
    REQUIRE(r(65504.0f) == 65504.0f);
    REQUIRE(r(65519.99f) == 65504.0f);
    REQUIRE(r(65520.0f) == std::numeric_limits<float>::infinity());
    REQUIRE(r(-65520.0f) == -std::numeric_limits<float>::infinity());
    REQUIRE(r(1e30f) == std::numeric_limits<float>::infinity());
    REQUIRE(r(std::numeric_limits<float>::infinity()) == std::numeric_limits<float>::infinity());
    REQUIRE(std::isnan(r(std::numeric_limits<float>::quiet_NaN())));
    REQUIRE(std::isnan(r(-std::numeric_limits<float>::signaling_NaN())));
    // Zero keeps its sign.
    REQUIRE(bits(r(0.0f)) == bits(0.0f));
    REQUIRE(bits(r(-0.0f)) == bits(-0.0f));
    // Subnormals: the smallest is 2^-24, the largest 1023 * 2^-24, the smallest normal 2^-14.
    REQUIRE(r(0x1p-24f) == 0x1p-24f);
    REQUIRE(r(1023 * 0x1p-24f) == 1023 * 0x1p-24f);
    REQUIRE(r(0x1p-14f) == 0x1p-14f);
    REQUIRE(r(0x1.8p-24f) == 0x1p-23f);  // 1.5 quanta -> 2 (tie to even)
    REQUIRE(r(0x1.7p-24f) == 0x1p-24f);
    REQUIRE(r(1e-30f) == 0.0f);
    REQUIRE(bits(r(-1e-30f)) == bits(-0.0f));
    REQUIRE(r(std::numeric_limits<float>::denorm_min()) == 0.0f);
    // Halfway cases tie to even.
    REQUIRE(r(0x1p-25f) == 0.0f);                                // between 0 and 2^-24
    REQUIRE(r(std::nextafter(0x1p-25f, 1.0f)) == 0x1p-24f);      // just above halfway
    REQUIRE(r(3 * 0x1p-25f) == 0x1p-23f);                        // between 1 and 2 quanta
    REQUIRE(r(1.0f + 0x1p-11f) == 1.0f);                         // between 1 and 1 + 2^-10
    REQUIRE(r(1.0f + 3 * 0x1p-11f) == 1.0f + 0x1p-9f);           // between odd and even
    REQUIRE(r(std::nextafter(1.0f + 0x1p-11f, 2.0f)) == 1.0f + 0x1p-10f);
    REQUIRE(r(2049.0f) == 2048.0f);
    REQUIRE(r(2051.0f) == 2052.0f);
    REQUIRE(r(0x1.ffep-15f) == 0x1p-14f);  // subnormal that rounds up into the normal range
}

TEST_CASE("round_to_half leaves every binary16 value unchanged", "[fp16]") {
    for (std::uint32_t h = 0; h < 0x10000; ++h) {
        const float f = half_to_float(std::uint16_t(h));
        if (std::isnan(f)) continue;
        INFO("half 0x" << std::hex << h);
        REQUIRE(bits(r(f)) == bits(f));
    }
}

TEST_CASE("round_to_half quiets NaN and keeps its top payload bits", "[fp16]") {
    const float snan = from_bits(0x7f800001u | (0x155u << 13));  // signalling, payload in the kept bits
    REQUIRE(bits(r(snan)) == (0x7fc00000u | (0x155u << 13)));
    REQUIRE(bits(r(from_bits(0xffc00001u))) == 0xffc00000u);
}

TEST_CASE("round_to_half F16C path equals the scalar path bit for bit", "[fp16]") {
    std::mt19937 rng(99);
    const std::size_t n = std::size_t(1) << 22;
    std::vector<float> in(n), scalar(n), fast(n);
    const bool have_f16c = tern::kernels::detail::cpu_has_f16c();
    if (!have_f16c) WARN("no F16C on this CPU: the dispatched path is the scalar one");
    for (int round = 0; round < 4; ++round) {  // 16M patterns in all
        for (std::size_t i = 0; i < n; ++i) {
            std::uint32_t u = rng();
            // Half of the draws land near the binary16 range so the rounding branches all get traffic.
            if (i & 1) u = (u & 0x81ffffffu) | ((0x66u + (u >> 25) % 0x20u) << 23);
            in[i] = from_bits(u);
        }
        tern::kernels::detail::round_to_half_scalar(in.data(), scalar.data(), n);
        for (std::size_t i = 0; i < n; i += 4099) REQUIRE(bits(scalar[i]) == bits(r(in[i])));
        tern::kernels::round_to_half(in.data(), fast.data(), n - 3);  // odd length: exercises the tail
        fast[n - 3] = r(in[n - 3]);
        fast[n - 2] = r(in[n - 2]);
        fast[n - 1] = r(in[n - 1]);
        std::size_t mismatches = 0;
        std::size_t first = n;
        for (std::size_t i = 0; i < n; ++i)
            if (bits(scalar[i]) != bits(fast[i])) {
                if (first == n) first = i;
                ++mismatches;
            }
        INFO("first mismatch: input 0x" << std::hex << (first < n ? bits(in[first]) : 0u) << " scalar 0x"
                                        << (first < n ? bits(scalar[first]) : 0u) << " fast 0x"
                                        << (first < n ? bits(fast[first]) : 0u));
        REQUIRE(mismatches == 0);
    }
    // In place works too.
    std::vector<float> inplace(in.begin(), in.begin() + 1001);
    tern::kernels::round_to_half(inplace.data(), inplace.data(), inplace.size());
    for (std::size_t i = 0; i < inplace.size(); ++i) REQUIRE(bits(inplace[i]) == bits(r(in[i])));
}
