#pragma once
/// @file packed/ternary_kernels_x86.hpp
/// @brief Internal: the integer kernels of the packed ternary GEMV/GEMM (scalar reference + x86 SIMD).
///
/// Every kernel has the same contract (see kernel_fn): for the row groups [g0, g1) of a
/// packed_matrix and T tokens of int8 activations, it writes the exact integer
///     dots[t * ldd + 4 * (g - g0) + r] = sum_k c[4g+r][k] * q[t][k] - sum_q[t]
/// i.e. sum_k w*q. Padding rows are written too (their value is meaningless to callers).
/// Integer arithmetic only, so every path equals the scalar reference bit for bit.

#include <algorithm>
#include <cstddef>
#include <cstdint>

#include "cpu_dispatch.hpp"
#include "packed_matrix.hpp"

/// Full unrolling of the small register-array loops: without it GCC -O2 keeps the accumulator
/// arrays in memory.
#define TERN_PACKED_UNROLL _Pragma("GCC unroll 16")

namespace tern::packed::detail {

/// Signature shared by all integer kernels. @p w: packed bytes, @p nb: blocks per row,
/// @p q: activations with row stride @p ldq (>= nb*128, zero padded), @p dots: row stride @p ldd.
using kernel_fn = void (*)(const std::uint8_t* w, std::size_t nb, std::size_t g0, std::size_t g1,
                           const std::int8_t* q, std::size_t ldq, const std::int32_t* sum_q, std::size_t T,
                           std::int32_t* dots, std::size_t ldd);

/// Portable reference: straight from the layout definition in packed_matrix.hpp.
inline void kernel_scalar(const std::uint8_t* w, std::size_t nb, std::size_t g0, std::size_t g1,
                          const std::int8_t* q, std::size_t ldq, const std::int32_t* sum_q, std::size_t T,
                          std::int32_t* dots, std::size_t ldd) {
    for (std::size_t g = g0; g < g1; ++g)
        for (std::size_t t = 0; t < T; ++t) {
            const std::int8_t* qt = q + t * ldq;
            for (std::size_t r = 0; r < group_rows; ++r) {
                std::int32_t acc = 0;
                for (std::size_t b = 0; b < nb; ++b) {
                    const std::uint8_t* bytes = w + (g * nb + b) * tile_bytes + r * block_bytes;
                    const std::int8_t* qb = qt + b * block_weights;
                    for (std::size_t j = 0; j < block_bytes; ++j)
                        for (unsigned s = 0; s < 4; ++s)
                            acc += static_cast<std::int32_t>((bytes[j] >> (2 * s)) & 3u) * qb[32 * s + j];
                }
                dots[t * ldd + (g - g0) * group_rows + r] = acc - sum_q[t];
            }
        }
}

#if TERN_PACKED_X86

#define TERN_PACKED_TARGET_AVX2 __attribute__((target("avx2")))
#define TERN_PACKED_TARGET_AVXVNNI __attribute__((target("avx2,avxvnni")))
#define TERN_PACKED_TARGET_AVX512 __attribute__((target("avx2,avx512f,avx512bw,avx512vnni")))

/// Sums each of four int32x8 vectors: returns {sum(a), sum(b), sum(c), sum(d)}.
TERN_PACKED_TARGET_AVX2 inline __m128i hsum4_epi32(__m256i a, __m256i b, __m256i c, __m256i d) {
    const __m256i ab = _mm256_hadd_epi32(a, b);    // a01 a23 b01 b23 | a45 a67 b45 b67
    const __m256i cd = _mm256_hadd_epi32(c, d);
    const __m256i abcd = _mm256_hadd_epi32(ab, cd);  // a0-3 b0-3 c0-3 d0-3 | a4-7 b4-7 c4-7 d4-7
    return _mm_add_epi32(_mm256_castsi256_si128(abcd), _mm256_extracti128_si256(abcd, 1));
}

TERN_PACKED_TARGET_AVX2 inline void store4(std::int32_t* out, __m128i v, std::int32_t sum_q) {
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out), _mm_sub_epi32(v, _mm_set1_epi32(sum_q)));
}

TERN_PACKED_TARGET_AVX2 inline __m256i load256(const void* p) {
    return _mm256_loadu_si256(static_cast<const __m256i*>(p));
}

// ---------------------------------------------------------------------------------------------
// AVX2: vpmaddubsw(code, q) gives int16 pairs of at most 2*2*127 = 508; the four sub-blocks of a
// block add to at most 2032 per int16 lane, so 16 blocks (32512) fit in int16 before vpmaddwd
// widens them to int32.
// ---------------------------------------------------------------------------------------------

inline constexpr std::size_t avx2_int16_blocks = 16;

TERN_PACKED_TARGET_AVX2 inline void kernel_avx2_gemv(const std::uint8_t* w, std::size_t nb, std::size_t g0,
                                                     std::size_t g1, const std::int8_t* q, std::size_t,
                                                     const std::int32_t* sum_q, std::size_t,
                                                     std::int32_t* dots, std::size_t) {
    const __m256i m3 = _mm256_set1_epi8(3), m12 = _mm256_set1_epi8(12);
    const __m256i ones = _mm256_set1_epi16(1);
    for (std::size_t g = g0; g < g1; ++g) {
        const std::uint8_t* wg = w + g * nb * tile_bytes;
        __m256i acc32[4] = {_mm256_setzero_si256(), _mm256_setzero_si256(), _mm256_setzero_si256(),
                            _mm256_setzero_si256()};
        for (std::size_t b0 = 0; b0 < nb; b0 += avx2_int16_blocks) {
            const std::size_t b1 = std::min(nb, b0 + avx2_int16_blocks);
            __m256i acc16[4] = {_mm256_setzero_si256(), _mm256_setzero_si256(), _mm256_setzero_si256(),
                                _mm256_setzero_si256()};
            for (std::size_t b = b0; b < b1; ++b) {
                const std::int8_t* qb = q + b * block_weights;
                const __m256i a0 = load256(qb), a1 = load256(qb + 32), a2 = load256(qb + 64), a3 = load256(qb + 96);
                const std::uint8_t* tile = wg + b * tile_bytes;
                TERN_PACKED_UNROLL
                for (int r = 0; r < 4; ++r) {
                    const __m256i x = load256(tile + 32 * r);
                    // One shift instead of three: (x & 0x0C) is 4 * code 1 and ((x >> 4) & 0x0C)
                    // 4 * code 3, so their products sum to 4x the true value (at most 4064 per
                    // lane) and one exact arithmetic shift scales them back. The 16-bit shift
                    // leaks bits across bytes; the ANDs remove them.
                    const __m256i x4 = _mm256_srli_epi16(x, 4);
                    const __m256i even = _mm256_add_epi16(_mm256_maddubs_epi16(_mm256_and_si256(x, m3), a0),
                                                          _mm256_maddubs_epi16(_mm256_and_si256(x4, m3), a2));
                    const __m256i odd4 = _mm256_add_epi16(_mm256_maddubs_epi16(_mm256_and_si256(x, m12), a1),
                                                          _mm256_maddubs_epi16(_mm256_and_si256(x4, m12), a3));
                    acc16[r] = _mm256_add_epi16(acc16[r], _mm256_add_epi16(even, _mm256_srai_epi16(odd4, 2)));
                }
            }
            TERN_PACKED_UNROLL
            for (int r = 0; r < 4; ++r) acc32[r] = _mm256_add_epi32(acc32[r], _mm256_madd_epi16(acc16[r], ones));
        }
        store4(dots + (g - g0) * group_rows, hsum4_epi32(acc32[0], acc32[1], acc32[2], acc32[3]), sum_q[0]);
    }
}

// One sub-block of 8 tokens: unpack the row's next 32 codes (AND, then shift the rest down) and
// add their products with each token's 32 activations at byte offset OFF.
#define TERN_AVX2_SUB8(OFF, SHIFT)                                                              \
    "vpand %[m3], %[x], %[u]\n\t" SHIFT                                                         \
    "vpmaddubsw " OFF "(%[q0]), %[u], %[p]\n\tvpaddw %[p], %[a0], %[a0]\n\t"                    \
    "vpmaddubsw " OFF "(%[q0],%[l],1), %[u], %[p]\n\tvpaddw %[p], %[a1], %[a1]\n\t"             \
    "vpmaddubsw " OFF "(%[q0],%[l],2), %[u], %[p]\n\tvpaddw %[p], %[a2], %[a2]\n\t"             \
    "vpmaddubsw " OFF "(%[q0],%[l3],1), %[u], %[p]\n\tvpaddw %[p], %[a3], %[a3]\n\t"            \
    "vpmaddubsw " OFF "(%[q4]), %[u], %[p]\n\tvpaddw %[p], %[a4], %[a4]\n\t"                    \
    "vpmaddubsw " OFF "(%[q4],%[l],1), %[u], %[p]\n\tvpaddw %[p], %[a5], %[a5]\n\t"             \
    "vpmaddubsw " OFF "(%[q4],%[l],2), %[u], %[p]\n\tvpaddw %[p], %[a6], %[a6]\n\t"             \
    "vpmaddubsw " OFF "(%[q4],%[l3],1), %[u], %[p]\n\tvpaddw %[p], %[a7], %[a7]\n\t"
#define TERN_AVX2_SHIFT "vpsrlw $2, %[x], %[x]\n\t"

/// One row against 8 tokens over @p n >= 1 blocks: the row's blocks lie tile_bytes apart from
/// @p row, token t's activations at q0 + t * ldq (tokens 4-7 from q4 = q0 + 4 * ldq); the products
/// add to the int16 accumulators @p acc. One asm loop, because GCC, given the same steps as
/// intrinsics, keeps half of the accumulators in memory across blocks (a store and a reload of
/// each on every block). AT&T syntax, GCC's and Clang's default (not for -masm=intel).
TERN_PACKED_TARGET_AVX2 inline void avx2_row_8tokens(const std::uint8_t* row, std::size_t n, const std::int8_t* q0,
                                                     std::size_t ldq, __m256i m3, __m256i (&acc)[8]) {
    static_assert(tile_bytes == 128 && block_weights == 128, "the asm steps 128 bytes per block on both sides");
    const std::int8_t* q4 = q0 + 4 * ldq;
    __m256i a0 = acc[0], a1 = acc[1], a2 = acc[2], a3 = acc[3], a4 = acc[4], a5 = acc[5], a6 = acc[6], a7 = acc[7];
    __m256i x, u, p;
    __asm__(
        "1:\n\t"
        "vmovdqu (%[w]), %[x]\n\t"
        TERN_AVX2_SUB8("0", TERN_AVX2_SHIFT) TERN_AVX2_SUB8("32", TERN_AVX2_SHIFT)
        TERN_AVX2_SUB8("64", TERN_AVX2_SHIFT) TERN_AVX2_SUB8("96", "")
        "add $128, %[w]\n\t"
        "sub $-128, %[q0]\n\t"
        "sub $-128, %[q4]\n\t"
        "dec %[n]\n\t"
        "jnz 1b\n\t"
        : [a0] "+x"(a0), [a1] "+x"(a1), [a2] "+x"(a2), [a3] "+x"(a3), [a4] "+x"(a4), [a5] "+x"(a5), [a6] "+x"(a6),
          [a7] "+x"(a7), [x] "=&x"(x), [u] "=&x"(u), [p] "=&x"(p), [w] "+r"(row), [q0] "+r"(q0), [q4] "+r"(q4),
          [n] "+r"(n)
        : [l] "r"(ldq), [l3] "r"(3 * ldq), [m3] "x"(m3)
        : "cc", "memory");
    acc[0] = a0, acc[1] = a1, acc[2] = a2, acc[3] = a3, acc[4] = a4, acc[5] = a5, acc[6] = a6, acc[7] = a7;
}
#undef TERN_AVX2_SUB8
#undef TERN_AVX2_SHIFT

/// Most tokens an AVX2 GEMM tile applies a row's unpacked codes to (8 int16 accumulators, the
/// codes, the mask and a product: 12 of the 16 ymm registers).
inline constexpr int avx2_tile_tokens = 8;

/// AVX2 batch, register-blocked: each row of the group in turn, its codes unpacked once per
/// sub-block and applied to TT tokens, whose products add up in int16 (one vpmaddubsw and one
/// vpaddw per 32 weights and token) for up to avx2_int16_blocks blocks before one vpmaddwd per
/// token widens them. Against a per-token widening this saves a fifth of the multiplier work
/// (vpmaddwd shares the multiply ports with vpmaddubsw). Full tiles run the asm loop above;
/// partial ones (the last T mod 8 tokens) the same steps in intrinsics, at most 4 tokens at once.
template <int TT>
TERN_PACKED_TARGET_AVX2 inline void avx2_gemm_tile(const std::uint8_t* wg, std::size_t nb, const std::int8_t* q,
                                                   std::size_t ldq, const std::int32_t* sum_q, std::int32_t* out,
                                                   std::size_t ldd) {
    static_assert(TT >= 1 && TT <= avx2_tile_tokens, "one tile holds 1 to 8 tokens");
    if constexpr (TT > 4 && TT < avx2_tile_tokens) {
        // 5-7 tokens as 4 + the rest: GCC spills the intrinsics' accumulators beyond 4 tokens.
        avx2_gemm_tile<4>(wg, nb, q, ldq, sum_q, out, ldd);
        avx2_gemm_tile<TT - 4>(wg, nb, q + 4 * ldq, ldq, sum_q + 4, out + 4 * ldd, ldd);
        return;
    }
    const __m256i m3 = _mm256_set1_epi8(3);
    const __m256i ones = _mm256_set1_epi16(1);
    __m256i wide[group_rows][TT];  // int32 sums per row and token
    for (std::size_t r = 0; r < group_rows; ++r) {
        const std::uint8_t* row = wg + block_bytes * r;
        TERN_PACKED_UNROLL
        for (int t = 0; t < TT; ++t) wide[r][t] = _mm256_setzero_si256();
        for (std::size_t b0 = 0; b0 < nb; b0 += avx2_int16_blocks) {
            const std::size_t b1 = std::min(nb, b0 + avx2_int16_blocks);
            __m256i acc[TT];
            TERN_PACKED_UNROLL
            for (int t = 0; t < TT; ++t) acc[t] = _mm256_setzero_si256();
            if constexpr (TT == avx2_tile_tokens) {
                avx2_row_8tokens(row + b0 * tile_bytes, b1 - b0, q + b0 * block_weights, ldq, m3, acc);
            } else {
                for (std::size_t b = b0; b < b1; ++b) {
                    __m256i x = load256(row + b * tile_bytes);
                    const std::int8_t* qb = q + b * block_weights;
                    TERN_PACKED_UNROLL
                    for (int s = 0; s < 4; ++s) {
                        const __m256i u = _mm256_and_si256(x, m3);
                        x = _mm256_srli_epi16(x, 2);
                        TERN_PACKED_UNROLL
                        for (int t = 0; t < TT; ++t)
                            acc[t] = _mm256_add_epi16(acc[t], _mm256_maddubs_epi16(u, load256(qb + t * ldq + 32 * s)));
                    }
                }
            }
            TERN_PACKED_UNROLL
            for (int t = 0; t < TT; ++t) wide[r][t] = _mm256_add_epi32(wide[r][t], _mm256_madd_epi16(acc[t], ones));
        }
    }
    TERN_PACKED_UNROLL
    for (int t = 0; t < TT; ++t)
        store4(out + t * ldd, hsum4_epi32(wide[0][t], wide[1][t], wide[2][t], wide[3][t]), sum_q[t]);
}

// ---------------------------------------------------------------------------------------------
// AVX-VNNI (VEX, ymm): vpdpbusd(code, q) adds four u8*s8 products straight into int32.
// ---------------------------------------------------------------------------------------------

TERN_PACKED_TARGET_AVXVNNI inline void kernel_avxvnni_gemv(const std::uint8_t* w, std::size_t nb, std::size_t g0,
                                                           std::size_t g1, const std::int8_t* q, std::size_t,
                                                           const std::int32_t* sum_q, std::size_t,
                                                           std::int32_t* dots, std::size_t) {
    const __m256i m3 = _mm256_set1_epi8(3);
    for (std::size_t g = g0; g < g1; ++g) {
        const std::uint8_t* wg = w + g * nb * tile_bytes;
        // Two accumulators per row (even / odd sub-blocks) keep 8 independent dependency chains.
        __m256i acc[4][2];
        TERN_PACKED_UNROLL
        for (auto& r : acc) r[0] = r[1] = _mm256_setzero_si256();
        for (std::size_t b = 0; b < nb; ++b) {
            const std::int8_t* qb = q + b * block_weights;
            const __m256i a0 = load256(qb), a1 = load256(qb + 32), a2 = load256(qb + 64), a3 = load256(qb + 96);
            const std::uint8_t* tile = wg + b * tile_bytes;
            TERN_PACKED_UNROLL
            for (int r = 0; r < 4; ++r) {
                const __m256i x = load256(tile + 32 * r);
                acc[r][0] = _mm256_dpbusd_avx_epi32(acc[r][0], _mm256_and_si256(x, m3), a0);
                acc[r][1] = _mm256_dpbusd_avx_epi32(acc[r][1], _mm256_and_si256(_mm256_srli_epi16(x, 2), m3), a1);
                acc[r][0] = _mm256_dpbusd_avx_epi32(acc[r][0], _mm256_and_si256(_mm256_srli_epi16(x, 4), m3), a2);
                acc[r][1] = _mm256_dpbusd_avx_epi32(acc[r][1], _mm256_and_si256(_mm256_srli_epi16(x, 6), m3), a3);
            }
        }
        store4(dots + (g - g0) * group_rows,
               hsum4_epi32(_mm256_add_epi32(acc[0][0], acc[0][1]), _mm256_add_epi32(acc[1][0], acc[1][1]),
                           _mm256_add_epi32(acc[2][0], acc[2][1]), _mm256_add_epi32(acc[3][0], acc[3][1])),
               sum_q[0]);
    }
}

template <int TT>
TERN_PACKED_TARGET_AVXVNNI inline void avxvnni_gemm_tile(const std::uint8_t* wg, std::size_t nb,
                                                         const std::int8_t* q, std::size_t ldq,
                                                         const std::int32_t* sum_q, std::int32_t* out,
                                                         std::size_t ldd) {
    const __m256i m3 = _mm256_set1_epi8(3);
    __m256i acc[4][TT];
    TERN_PACKED_UNROLL
    for (int pair = 0; pair < 2; ++pair) {
        __m256i a2[2][TT];
        TERN_PACKED_UNROLL
        for (int r = 0; r < 2; ++r)
            TERN_PACKED_UNROLL
            for (int t = 0; t < TT; ++t) a2[r][t] = _mm256_setzero_si256();
        for (std::size_t b = 0; b < nb; ++b) {
            const std::uint8_t* tile = wg + b * tile_bytes + 64 * pair;
            TERN_PACKED_UNROLL
            for (int r = 0; r < 2; ++r) {
                const __m256i x = load256(tile + 32 * r);
                const __m256i u0 = _mm256_and_si256(x, m3);
                const __m256i u1 = _mm256_and_si256(_mm256_srli_epi16(x, 2), m3);
                const __m256i u2 = _mm256_and_si256(_mm256_srli_epi16(x, 4), m3);
                const __m256i u3 = _mm256_and_si256(_mm256_srli_epi16(x, 6), m3);
                TERN_PACKED_UNROLL
                for (int t = 0; t < TT; ++t) {
                    const std::int8_t* qb = q + t * ldq + b * block_weights;
                    __m256i a = a2[r][t];
                    a = _mm256_dpbusd_avx_epi32(a, u0, load256(qb));
                    a = _mm256_dpbusd_avx_epi32(a, u1, load256(qb + 32));
                    a = _mm256_dpbusd_avx_epi32(a, u2, load256(qb + 64));
                    a2[r][t] = _mm256_dpbusd_avx_epi32(a, u3, load256(qb + 96));
                }
            }
        }
        TERN_PACKED_UNROLL
        for (int r = 0; r < 2; ++r)
            TERN_PACKED_UNROLL
            for (int t = 0; t < TT; ++t) acc[2 * pair + r][t] = a2[r][t];
    }
    TERN_PACKED_UNROLL
    for (int t = 0; t < TT; ++t) store4(out + t * ldd, hsum4_epi32(acc[0][t], acc[1][t], acc[2][t], acc[3][t]), sum_q[t]);
}

// ---------------------------------------------------------------------------------------------
// AVX-512 VNNI (zmm): one zmm holds two rows of a block (64 bytes of a tile); the 32 activation
// bytes of a sub-block are broadcast to both halves.
// ---------------------------------------------------------------------------------------------

TERN_PACKED_TARGET_AVX512 inline __m512i bcast256(const void* p) {
    // maskz form: the plain intrinsic trips a false -Wuninitialized in GCC 12's headers.
    return _mm512_maskz_broadcast_i64x4(0xFF, _mm256_loadu_si256(static_cast<const __m256i*>(p)));
}
TERN_PACKED_TARGET_AVX512 inline __m512i srai32(__m512i v, unsigned n) {
    return _mm512_maskz_srai_epi32(static_cast<__mmask16>(0xFFFF), v, n);  // (same GCC 12 workaround)
}
TERN_PACKED_TARGET_AVX512 inline __m512i srli16(__m512i v, unsigned n) {
    return _mm512_maskz_srli_epi16(static_cast<__mmask32>(0xFFFFFFFFu), v, n);
}
TERN_PACKED_TARGET_AVX512 inline __m256i lo256(__m512i v) { return _mm512_maskz_extracti64x4_epi64(0xF, v, 0); }
TERN_PACKED_TARGET_AVX512 inline __m256i hi256(__m512i v) { return _mm512_maskz_extracti64x4_epi64(0xF, v, 1); }

/// GEMV blocks per int32 flush of the masked-code accumulators: the sub-block-3 accumulator
/// holds 64*c*q, at most 4*128*127 = 65024 per lane and block, so 16384 blocks stay < 2^31.
inline constexpr std::size_t avx512_gemv_chunk_blocks = 16384;

/// GEMV on zmm without shifts: (byte & 0x0C) is 4*c1, (byte & 0x30) 16*c2, (byte & 0xC0) 64*c3
/// (at most 128, still a valid u8), each summed in its own accumulator and scaled back down
/// exactly with an arithmetic shift (every term is a multiple of 4^s).
TERN_PACKED_TARGET_AVX512 inline void kernel_avx512_gemv(const std::uint8_t* w, std::size_t nb, std::size_t g0,
                                                         std::size_t g1, const std::int8_t* q, std::size_t,
                                                         const std::int32_t* sum_q, std::size_t,
                                                         std::int32_t* dots, std::size_t) {
    const __m512i m0 = _mm512_set1_epi8(0x03), m1 = _mm512_set1_epi8(0x0C), m2 = _mm512_set1_epi8(0x30),
                  m3 = _mm512_set1_epi8(static_cast<char>(0xC0));
    for (std::size_t g = g0; g < g1; ++g) {
        const std::uint8_t* wg = w + g * nb * tile_bytes;
        __m512i total[2] = {_mm512_setzero_si512(), _mm512_setzero_si512()};
        for (std::size_t c0 = 0; c0 < nb; c0 += avx512_gemv_chunk_blocks) {
            const std::size_t c1 = std::min(nb, c0 + avx512_gemv_chunk_blocks);
            __m512i acc[2][4];
            TERN_PACKED_UNROLL
            for (auto& p : acc) p[0] = p[1] = p[2] = p[3] = _mm512_setzero_si512();
            for (std::size_t b = c0; b < c1; ++b) {
                const std::int8_t* qb = q + b * block_weights;
                const __m512i a0 = bcast256(qb), a1 = bcast256(qb + 32), a2 = bcast256(qb + 64), a3 = bcast256(qb + 96);
                const std::uint8_t* tile = wg + b * tile_bytes;
                TERN_PACKED_UNROLL
                for (int p = 0; p < 2; ++p) {
                    const __m512i x = _mm512_loadu_si512(tile + 64 * p);
                    acc[p][0] = _mm512_dpbusd_epi32(acc[p][0], _mm512_and_si512(x, m0), a0);
                    acc[p][1] = _mm512_dpbusd_epi32(acc[p][1], _mm512_and_si512(x, m1), a1);
                    acc[p][2] = _mm512_dpbusd_epi32(acc[p][2], _mm512_and_si512(x, m2), a2);
                    acc[p][3] = _mm512_dpbusd_epi32(acc[p][3], _mm512_and_si512(x, m3), a3);
                }
            }
            TERN_PACKED_UNROLL
            for (int p = 0; p < 2; ++p) {
                const __m512i s01 = _mm512_add_epi32(acc[p][0], srai32(acc[p][1], 2));
                const __m512i s23 = _mm512_add_epi32(srai32(acc[p][2], 4), srai32(acc[p][3], 6));
                total[p] = _mm512_add_epi32(total[p], _mm512_add_epi32(s01, s23));
            }
        }
        store4(dots + (g - g0) * group_rows,
               hsum4_epi32(lo256(total[0]), hi256(total[0]), lo256(total[1]), hi256(total[1])), sum_q[0]);
    }
}

/// The 16 sums of 4 rows x 4 tokens, from the GEMM tile's accumulators of those tokens: a01[t]
/// holds row 0 in lanes 0-7 and row 1 in lanes 8-15, a23[t] rows 2 and 3. A reduction tree over
/// all four tokens at once (three shuffle-and-add levels and one permute) costs about a third of
/// four separate horizontal sums, which matter when K is only a block or two.
/// out[t * ldd + r] = sum(row r, token t) - sum_q[t].
TERN_PACKED_TARGET_AVX512 inline void reduce_store_4x4(const __m512i* a01, const __m512i* a23,
                                                       const std::int32_t* sum_q, std::int32_t* out,
                                                       std::size_t ldd) {
    // Level 1, per token: 128-bit lane r of c[t] = 4 partial sums of row r.
    __m512i c[4];
    TERN_PACKED_UNROLL
    for (int t = 0; t < 4; ++t)
        c[t] = _mm512_add_epi32(_mm512_maskz_shuffle_i64x2(0xFF, a01[t], a23[t], _MM_SHUFFLE(2, 0, 2, 0)),
                                _mm512_maskz_shuffle_i64x2(0xFF, a01[t], a23[t], _MM_SHUFFLE(3, 1, 3, 1)));
    // Level 2, token pairs: lane r = {t0 half, t1 half, t0 half, t1 half}.
    const __m512i d01 = _mm512_add_epi32(_mm512_maskz_unpacklo_epi32(0xFFFF, c[0], c[1]),
                                         _mm512_maskz_unpackhi_epi32(0xFFFF, c[0], c[1]));
    const __m512i d23 = _mm512_add_epi32(_mm512_maskz_unpacklo_epi32(0xFFFF, c[2], c[3]),
                                         _mm512_maskz_unpackhi_epi32(0xFFFF, c[2], c[3]));
    // Level 3: lane r = {S(t0, r), S(t1, r), S(t2, r), S(t3, r)}.
    const __m512i e = _mm512_add_epi32(_mm512_maskz_unpacklo_epi64(0xFF, d01, d23),
                                       _mm512_maskz_unpackhi_epi64(0xFF, d01, d23));
    // Transpose to token-major (element 4t + r = S(t, r)) and subtract each token's sum(q).
    const __m512i to_tokens = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
    const __m512i spread = _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);
    const __m512i sq = _mm512_maskz_permutexvar_epi32(
        0xFFFF, spread, _mm512_maskz_broadcast_i32x4(0xFFFF, _mm_loadu_si128(reinterpret_cast<const __m128i*>(sum_q))));
    const __m512i o = _mm512_sub_epi32(_mm512_maskz_permutexvar_epi32(0xFFFF, to_tokens, e), sq);
    // Token t's four values sit in elements 4t..4t+3: a masked store at out + t*ldd - 4t puts them
    // at out + t*ldd (ldd >= 4, so the base never precedes out).
    TERN_PACKED_UNROLL
    for (int t = 0; t < 4; ++t)
        _mm512_mask_storeu_epi32(out + t * ldd - 4 * t, static_cast<__mmask16>(0xFu << (4 * t)), o);
}

/// Batch on zmm: a block's 4 rows are unpacked once (8 zmm) and applied to TT tokens.
template <int TT>
TERN_PACKED_TARGET_AVX512 inline void avx512_gemm_tile(const std::uint8_t* wg, std::size_t nb, const std::int8_t* q,
                                                       std::size_t ldq, const std::int32_t* sum_q, std::int32_t* out,
                                                       std::size_t ldd) {
    const __m512i m3 = _mm512_set1_epi8(3);
    __m512i acc[2][TT];
    TERN_PACKED_UNROLL
    for (int p = 0; p < 2; ++p)
        TERN_PACKED_UNROLL
        for (int t = 0; t < TT; ++t) acc[p][t] = _mm512_setzero_si512();
    for (std::size_t b = 0; b < nb; ++b) {
        const std::uint8_t* tile = wg + b * tile_bytes;
        __m512i u[2][4];
        TERN_PACKED_UNROLL
        for (int p = 0; p < 2; ++p) {
            const __m512i x = _mm512_loadu_si512(tile + 64 * p);
            u[p][0] = _mm512_and_si512(x, m3);
            u[p][1] = _mm512_and_si512(srli16(x, 2), m3);
            u[p][2] = _mm512_and_si512(srli16(x, 4), m3);
            u[p][3] = _mm512_and_si512(srli16(x, 6), m3);
        }
        TERN_PACKED_UNROLL
        for (int t = 0; t < TT; ++t) {
            const std::int8_t* qb = q + t * ldq + b * block_weights;
            TERN_PACKED_UNROLL
            for (int s = 0; s < 4; ++s) {
                const __m512i a = bcast256(qb + 32 * s);
                acc[0][t] = _mm512_dpbusd_epi32(acc[0][t], u[0][s], a);
                acc[1][t] = _mm512_dpbusd_epi32(acc[1][t], u[1][s], a);
            }
        }
    }
    constexpr int quads = TT / 4;  // tokens reduced four at a time, the rest one by one
    TERN_PACKED_UNROLL
    for (int u = 0; u < quads; ++u)
        reduce_store_4x4(acc[0] + 4 * u, acc[1] + 4 * u, sum_q + 4 * u, out + 4 * u * ldd, ldd);
    TERN_PACKED_UNROLL
    for (int t = 4 * quads; t < TT; ++t)
        store4(out + t * ldd, hsum4_epi32(lo256(acc[0][t]), hi256(acc[0][t]), lo256(acc[1][t]), hi256(acc[1][t])),
               sum_q[t]);
}

/// Tiles::run<TT> for a runtime tt in [1, TT]: the tile sizes below TT serve the last, partial tile.
template <class Tiles, int TT>
inline void run_tile(std::size_t tt, const std::uint8_t* wg, std::size_t nb, const std::int8_t* q, std::size_t ldq,
                     const std::int32_t* sum_q, std::int32_t* out, std::size_t ldd) {
    if constexpr (TT > 1) {
        if (tt < std::size_t(TT)) return run_tile<Tiles, TT - 1>(tt, wg, nb, q, ldq, sum_q, out, ldd);
    }
    Tiles::template run<TT>(wg, nb, q, ldq, sum_q, out, ldd);
}

/// Runs Tiles::run<TT> over every token tile (at most MaxTT tokens) and every group of [g0, g1).
/// Token tiles are the outer loop: a tile's activations stay in L1 while the caller's chunk of
/// weight groups streams by.
template <class Tiles, int MaxTT>
inline void gemm_driver(const std::uint8_t* w, std::size_t nb, std::size_t g0, std::size_t g1,
                        const std::int8_t* q, std::size_t ldq, const std::int32_t* sum_q, std::size_t T,
                        std::int32_t* dots, std::size_t ldd) {
    for (std::size_t t0 = 0; t0 < T; t0 += MaxTT) {
        const std::size_t tt = std::min<std::size_t>(MaxTT, T - t0);
        for (std::size_t g = g0; g < g1; ++g)
            run_tile<Tiles, MaxTT>(tt, w + g * nb * tile_bytes, nb, q + t0 * ldq, ldq, sum_q + t0,
                                   dots + t0 * ldd + (g - g0) * group_rows, ldd);
    }
}

#define TERN_PACKED_TILES(name, fn)                                                                      \
    struct name {                                                                                        \
        template <int TT>                                                                                \
        static void run(const std::uint8_t* wg, std::size_t nb, const std::int8_t* q, std::size_t ldq,   \
                        const std::int32_t* sum_q, std::int32_t* out, std::size_t ldd) {                 \
            fn<TT>(wg, nb, q, ldq, sum_q, out, ldd);                                                     \
        }                                                                                                \
    };
TERN_PACKED_TILES(avx2_tiles, avx2_gemm_tile)
TERN_PACKED_TILES(avxvnni_tiles, avxvnni_gemm_tile)
TERN_PACKED_TILES(avx512_tiles, avx512_gemm_tile)
#undef TERN_PACKED_TILES

inline constexpr kernel_fn kernel_avx2_gemm = gemm_driver<avx2_tiles, avx2_tile_tokens>;
inline constexpr kernel_fn kernel_avxvnni_gemm = gemm_driver<avxvnni_tiles, 4>;
inline constexpr kernel_fn kernel_avx512_gemm = gemm_driver<avx512_tiles, 8>;

#endif  // TERN_PACKED_X86

/// Picks the integer kernel for @p path and a token count of @p T.
inline kernel_fn select_kernel(kernel_path path, std::size_t T) {
#if TERN_PACKED_X86
    const bool one = T == 1;
    switch (path) {
        case kernel_path::avx2: return one ? kernel_avx2_gemv : kernel_avx2_gemm;
        case kernel_path::avxvnni: return one ? kernel_avxvnni_gemv : kernel_avxvnni_gemm;
        case kernel_path::avx512vnni: return one ? kernel_avx512_gemv : kernel_avx512_gemm;
        default: break;
    }
#else
    (void)path;
    (void)T;
#endif
    return kernel_scalar;
}

}  // namespace tern::packed::detail
