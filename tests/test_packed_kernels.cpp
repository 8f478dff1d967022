// Tests of the packed ternary kernels: packing, activation quantization, GEMV/GEMM on every path.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include <tern/packed/activation_quant.hpp>
#include <tern/packed/lane_matrix.hpp>
#include <tern/packed/packed_matrix.hpp>
#include <tern/packed/split_matrix.hpp>
#include <tern/packed/ternary_gemm.hpp>
#include <tern/quantize.hpp>
#include <tern/threads.hpp>

using namespace tern::packed;

namespace {

std::vector<std::int8_t> random_ternary(std::size_t n, std::mt19937& rng) {
    std::uniform_int_distribution<int> d(-1, 1);
    std::vector<std::int8_t> w(n);
    for (auto& v : w) v = static_cast<std::int8_t>(d(rng));
    return w;
}

std::vector<float> random_floats(std::size_t n, std::mt19937& rng, float scale = 1.0f) {
    std::normal_distribution<float> d(0.3f, scale);
    std::vector<float> x(n);
    for (auto& v : x) v = d(rng);
    return x;
}

std::vector<kernel_path> available_paths() {
    std::vector<kernel_path> out;
    for (auto p : {kernel_path::scalar, kernel_path::avx2, kernel_path::avxvnni, kernel_path::avx512vnni})
        if (kernel_path_available(p)) out.push_back(p);
    return out;
}

/// Quantized activations filled directly (bypassing quantization), e.g. all +127.
quantized_activations fixed_activations(std::size_t T, std::size_t K, int value) {
    quantized_activations a;
    a.resize(T, K);
    for (std::size_t t = 0; t < T; ++t) {
        for (std::size_t k = 0; k < K; ++k) a.q[t * a.padded_cols + k] = static_cast<std::int8_t>(value);
        a.scale[t] = 127.0f;
        a.sum[t] = static_cast<std::int32_t>(value * static_cast<int>(K));
    }
    return a;
}

quantized_activations random_activations(std::size_t T, std::size_t K, std::mt19937& rng) {
    quantized_activations a;
    a.resize(T, K);
    std::uniform_int_distribution<int> d(-127, 127);
    std::uniform_real_distribution<float> s(1.0f, 100.0f);
    for (std::size_t t = 0; t < T; ++t) {
        std::int32_t sum = 0;
        for (std::size_t k = 0; k < K; ++k) {
            const int v = d(rng);
            a.q[t * a.padded_cols + k] = static_cast<std::int8_t>(v);
            sum += v;
        }
        a.scale[t] = s(rng);
        a.sum[t] = sum;
    }
    return a;
}

/// Plain definition: sum_k w[n][k] * q[t][k] on unpacked weights.
std::vector<std::int32_t> naive_dots(const std::vector<std::int8_t>& w, std::size_t N, std::size_t K,
                                     const quantized_activations& a) {
    std::vector<std::int32_t> out(a.tokens * N);
    for (std::size_t t = 0; t < a.tokens; ++t)
        for (std::size_t n = 0; n < N; ++n) {
            std::int32_t s = 0;
            for (std::size_t k = 0; k < K; ++k) s += w[n * K + k] * a.q[t * a.padded_cols + k];
            out[t * N + n] = s;
        }
    return out;
}

/// Every path gives the naive integer dots and identical float outputs.
void check_all_paths(const std::vector<std::int8_t>& w, std::size_t N, std::size_t K, const quantized_activations& a) {
    const packed_matrix W(w, N, K);
    const auto expect = naive_dots(w, N, K, a);
    const float s_w = 1.7f;
    std::vector<float> y_ref(a.tokens * N);
    ternary_gemm(W, a, s_w, y_ref.data(), nullptr, kernel_path::scalar);
    for (kernel_path p : available_paths()) {
        INFO("path " << kernel_path_name(p) << " N=" << N << " K=" << K << " T=" << a.tokens);
        std::vector<std::int32_t> dots(a.tokens * N, -999);
        ternary_gemm_int(W, a, dots.data(), p);
        REQUIRE(dots == expect);
        std::vector<float> y(a.tokens * N, -1.0f);
        ternary_gemm(W, a, s_w, y.data(), nullptr, p);
        REQUIRE(std::memcmp(y.data(), y_ref.data(), y.size() * sizeof(float)) == 0);
        if (a.tokens == 1) {
            std::vector<float> yv(N);
            ternary_gemv(W, a.row(0), a.scale[0], a.sum[0], s_w, yv.data(), nullptr, p);
            REQUIRE(std::memcmp(yv.data(), y_ref.data(), N * sizeof(float)) == 0);
        }
    }
}

}  // namespace

TEST_CASE("packed_matrix round-trips many shapes", "[packed]") {
    std::mt19937 rng(1);
    for (std::size_t N : {1, 2, 3, 4, 5, 7, 8, 13}) {
        for (std::size_t K : {1, 2, 31, 32, 33, 100, 127, 128, 129, 255, 256, 300, 517}) {
            const auto w = random_ternary(N * K, rng);
            const packed_matrix W(w, N, K);
            CHECK(W.rows() == N);
            CHECK(W.cols() == K);
            CHECK(W.padded_rows() % 4 == 0);
            CHECK(W.padded_cols() % 128 == 0);
            CHECK(W.byte_count() == W.padded_rows() * W.padded_cols() / 4);
            REQUIRE(W.unpack() == w);
            // Padding holds code 1 (weight 0).
            for (std::size_t n = 0; n < W.padded_rows(); ++n)
                for (std::size_t k = (n < N ? K : 0); k < W.padded_cols(); ++k) REQUIRE(W.code(n, k) == 1);
            // Raw bytes rebuild the same matrix.
            const packed_matrix W2(N, K, W.bytes(), W.byte_count());
            REQUIRE(W2.unpack() == w);
            REQUIRE(std::memcmp(W2.bytes(), W.bytes(), W.byte_count()) == 0);
        }
    }
}

TEST_CASE("packed_matrix layout matches the documented byte positions", "[packed]") {
    // Row 5 (group 1, row 1 of the group), column 200 (block 1, sub-block 2, byte 8).
    const std::size_t N = 6, K = 300;
    std::vector<std::int8_t> w(N * K, 0);
    w[5 * K + 200] = 1;   // code 2
    w[0 * K + 33] = -1;   // code 0: group 0, row 0, block 0, sub-block 1, byte 1
    const packed_matrix W(w, N, K);
    const std::size_t nb = W.blocks();
    CHECK(nb == 3);
    const std::uint8_t b1 = W.bytes()[(1 * nb + 1) * 128 + 1 * 32 + 8];
    CHECK(((b1 >> 4) & 3) == 2);
    CHECK((b1 & ~(3u << 4)) == (0x55u & ~(3u << 4)));
    const std::uint8_t b2 = W.bytes()[1];
    CHECK(((b2 >> 2) & 3) == 0);
}

TEST_CASE("packed_matrix memory is about 2 bits per weight", "[packed]") {
    std::mt19937 rng(2);
    const std::size_t N = 256, K = 1000;  // K padded to 1024
    const packed_matrix W(random_ternary(N * K, rng), N, K);
    CHECK(W.bits_per_weight() <= 2.1);
    const packed_matrix W2(random_ternary(2048 * 2048, rng), 2048, 2048);
    CHECK(W2.bits_per_weight() == 2.0);
}

TEST_CASE("packed_matrix rejects invalid input", "[packed]") {
    std::vector<std::int8_t> w(12, 0);
    w[7] = 2;
    CHECK_THROWS_AS(packed_matrix(w, 3, 4), tern::error);
    w[7] = -2;
    CHECK_THROWS_AS(packed_matrix(w, 3, 4), tern::error);
    w[7] = 1;
    CHECK_NOTHROW(packed_matrix(w, 3, 4));
    CHECK_THROWS_AS(packed_matrix(w, 4, 4), tern::error);  // size mismatch
    CHECK_THROWS_AS(packed_matrix(w.data(), 0, 4), tern::error);

    const packed_matrix W(w, 3, 4);
    std::vector<std::uint8_t> raw(W.bytes(), W.bytes() + W.byte_count());
    CHECK_THROWS_AS(packed_matrix(3, 4, raw.data(), raw.size() - 1), tern::error);
    CHECK_THROWS_AS(packed_matrix(3, 4, raw.data(), raw.size() + 1), tern::error);
    CHECK_THROWS_AS(packed_matrix(3, 200, raw.data(), raw.size()), tern::error);  // dims disagree
    CHECK_THROWS_AS(packed_matrix(5, 4, raw.data(), raw.size()), tern::error);    // 8 padded rows
    CHECK_NOTHROW(packed_matrix(4, 100, raw.data(), raw.size()));                // same padded size is fine
    {
        auto bad = raw;
        bad[0] = static_cast<std::uint8_t>(bad[0] | 0x03);  // code 3 at (0, 0)
        CHECK_THROWS_AS(packed_matrix(3, 4, bad.data(), bad.size()), tern::error);
    }
    {
        auto bad = raw;
        bad[10] = 0x54;  // padding column 10 of row 0 set to code 0 (weight -1)
        CHECK_THROWS_AS(packed_matrix(3, 4, bad.data(), bad.size()), tern::error);
    }
    {
        auto bad = raw;
        bad[3 * 32 + 0] = 0x56;  // padding row 3 holds a nonzero weight
        CHECK_THROWS_AS(packed_matrix(3, 4, bad.data(), bad.size()), tern::error);
    }
}

TEST_CASE("every SIMD path equals the scalar reference on random inputs", "[packed][gemm]") {
    std::mt19937 rng(3);
    for (std::size_t N : {1, 3, 4, 5, 9, 67, 130}) {
        for (std::size_t K : {1, 77, 128, 129, 383, 1000, 2200}) {
            const auto w = random_ternary(N * K, rng);
            for (std::size_t T : {1, 2, 3, 4, 5, 6, 7, 8, 9, 64, 70}) {
                if (T > 9 && N * K > 50000) continue;
                check_all_paths(w, N, K, random_activations(T, K, rng));
            }
        }
    }
}

TEST_CASE("extreme inputs: all activations +-127 with all weights +-1", "[packed][gemm]") {
    // 16+ blocks exercise the AVX2 int16 accumulation limit; 4097 is odd and spans 33 blocks.
    for (std::size_t N : {5, 7}) {
        for (std::size_t K : {2047, 4097}) {
            for (int wv : {-1, 1}) {
                const std::vector<std::int8_t> w(N * K, static_cast<std::int8_t>(wv));
                for (int av : {-127, 127}) {
                    for (std::size_t T : {1, 3, 8, 9, 64}) {
                        const auto a = fixed_activations(T, K, av);
                        check_all_paths(w, N, K, a);
                        const packed_matrix W(w, N, K);
                        std::vector<std::int32_t> dots(T * N);
                        ternary_gemm_int(W, a, dots.data());
                        CHECK(dots[0] == wv * av * static_cast<std::int32_t>(K));
                    }
                }
            }
        }
    }
}

TEST_CASE("blocked GEMM tiles: partial token tiles, K past the int16 widening, odd rows", "[packed][gemm]") {
    // Token counts around the 8-token tile and the 64-token chunk; K below, at and past the 16
    // blocks (2048 weights) an AVX2 int16 sum holds before widening; rows not a multiple of 4.
    std::mt19937 rng(11);
    for (std::size_t N : {1, 6, 13}) {
        for (std::size_t K : {100, 2048, 2049, 4096, 4300}) {
            const auto w = random_ternary(N * K, rng);
            for (std::size_t T : {7, 8, 9, 15, 16, 17, 63, 64, 65, 72}) {
                if (K > 2049 && T != 9 && T != 65) continue;
                check_all_paths(w, N, K, random_activations(T, K, rng));
            }
        }
    }
    // Worst case for the int16 sums of a full tile: every product +-254 over 16 blocks and more.
    for (std::size_t K : {2048, 2176, 4096}) {
        for (int wv : {-1, 1}) {
            const std::vector<std::int8_t> w(5 * K, static_cast<std::int8_t>(wv));
            for (int av : {-127, 127}) {
                const auto a = fixed_activations(17, K, av);
                check_all_paths(w, 5, K, a);
            }
        }
    }
}

TEST_CASE("large layers use threads and stay exact", "[packed][gemm][threads]") {
    std::mt19937 rng(4);
    const std::size_t N = 1030, K = 1100;
    const auto w = random_ternary(N * K, rng);
    if (tern::num_threads() < 2) tern::set_num_threads(2);
    REQUIRE(tern::num_threads() >= 2);
    check_all_paths(w, N, K, random_activations(1, K, rng));
    check_all_paths(w, N, K, random_activations(9, K, rng));
    check_all_paths(w, N, K, random_activations(64, K, rng));
}

TEST_CASE("activation quantization: SIMD equals scalar", "[packed][quant]") {
    std::mt19937 rng(5);
    for (std::size_t K : {1, 2, 7, 8, 31, 32, 33, 127, 128, 129, 1000, 2048}) {
        for (bool normalize : {true, false}) {
            const std::size_t T = 5;
            auto x = random_floats(T * K, rng, 2.5f);
            const auto ref = quantize_activations(x.data(), T, K, normalize, kernel_path::scalar);
            CHECK(ref.padded_cols == padded_cols_for(K));
            for (kernel_path p : available_paths()) {
                INFO("path " << kernel_path_name(p) << " K=" << K << " normalize=" << normalize);
                const auto got = quantize_activations(x.data(), T, K, normalize, p);
                REQUIRE(std::memcmp(got.q.data(), ref.q.data(), ref.q.size()) == 0);
                REQUIRE(std::memcmp(got.scale.data(), ref.scale.data(), T * sizeof(float)) == 0);
                REQUIRE(std::memcmp(got.sum.data(), ref.sum.data(), T * sizeof(std::int32_t)) == 0);
            }
            for (std::size_t t = 0; t < T; ++t) {
                std::int32_t s = 0;
                int mx = 0;
                for (std::size_t k = 0; k < ref.padded_cols; ++k) {
                    const int v = ref.q[t * ref.padded_cols + k];
                    REQUIRE(v >= -127);
                    REQUIRE(v <= 127);
                    if (k >= K) REQUIRE(v == 0);
                    s += v;
                    mx = std::max(mx, std::abs(v));
                }
                CHECK(s == ref.sum[t]);
                if (K > 1 || !normalize) CHECK(mx == 127);  // the largest |x~| maps to 127
            }
        }
    }
}

TEST_CASE("activation quantization rounds half to even and clamps", "[packed][quant]") {
    // max |x| = 127 gives s_x = 1 exactly, so q = round_half_even(x).
    const std::vector<float> x = {0.5f,  1.5f,  2.5f,   -0.5f,  -1.5f, -2.5f, 3.5f,  126.5f, -126.5f,
                                  0.49f, 0.51f, -0.51f, 127.0f, -127.f, 4.5f,  5.5f,  -3.5f,  0.0f};
    const std::vector<int> expect = {0, 2, 2, 0, -2, -2, 4, 126, -126, 0, 1, -1, 127, -127, 4, 6, -4, 0};
    // Repeat to cover both the SIMD body (32 at a time) and the scalar tail.
    std::vector<float> xx;
    std::vector<int> ee;
    for (int r = 0; r < 4; ++r) {
        xx.insert(xx.end(), x.begin(), x.end());
        ee.insert(ee.end(), expect.begin(), expect.end());
    }
    for (kernel_path p : available_paths()) {
        INFO("path " << kernel_path_name(p));
        const auto a = quantize_activations(xx.data(), 1, xx.size(), false, p);
        CHECK(a.scale[0] == 1.0f);
        for (std::size_t k = 0; k < xx.size(); ++k) REQUIRE(int(a.q[k]) == ee[k]);
    }
    // Huge values are scaled into range, and an all-zero token gives zeros.
    const std::vector<float> big = {1e30f, -1e30f, 5e29f, 0.0f};
    const auto b = quantize_activations(big.data(), 1, big.size(), false);
    CHECK(int(b.q[0]) == 127);
    CHECK(int(b.q[1]) == -127);
    CHECK(int(b.q[2]) == 64);  // 63.5 rounds to even
    const std::vector<float> zero(40, 0.0f);
    const auto z = quantize_activations(zero.data(), 1, zero.size(), true);
    CHECK(z.sum[0] == 0);
    CHECK(z.scale[0] == Approx(127.0f / 1e-5f));
}

TEST_CASE("activation normalization follows bitlinear.md", "[packed][quant]") {
    std::mt19937 rng(6);
    const std::size_t K = 300;
    auto x = random_floats(K, rng, 3.0f);
    double mean = 0, var = 0;
    for (float v : x) mean += v;
    mean /= K;
    for (float v : x) var += (v - mean) * (v - mean);
    var /= K;
    double mx = 0;
    std::vector<double> xt(K);
    for (std::size_t k = 0; k < K; ++k) {
        xt[k] = (x[k] - mean) / std::sqrt(var + 1e-5);
        mx = std::max(mx, std::abs(xt[k]));
    }
    const double sx = 127.0 / mx;
    const auto a = quantize_activations(x.data(), 1, K, true);
    CHECK(a.scale[0] == Approx(sx).epsilon(1e-5));
    for (std::size_t k = 0; k < K; ++k) REQUIRE(std::abs(a.q[k] - xt[k] * sx) <= 0.5 + 1e-3);
}

TEST_CASE("GEMM equals the dequantized float formula", "[packed][gemm]") {
    std::mt19937 rng(7);
    const std::size_t N = 37, K = 333, T = 6;
    const auto w = random_ternary(N * K, rng);
    auto x = random_floats(T * K, rng);
    const packed_matrix W(w, N, K);
    const float s_w = 2.75f;
    std::vector<float> bias(N);
    for (std::size_t n = 0; n < N; ++n) bias[n] = 0.01f * float(n);
    for (kernel_path p : available_paths()) {
        INFO("path " << kernel_path_name(p));
        const auto a = quantize_activations(x.data(), T, K, true, p);
        std::vector<float> y(T * N);
        ternary_gemm(W, a, s_w, y.data(), bias.data(), p);
        for (std::size_t t = 0; t < T; ++t)
            for (std::size_t n = 0; n < N; ++n) {
                double ref = 0;
                for (std::size_t k = 0; k < K; ++k)
                    ref += (double(w[n * K + k]) / s_w) * (double(a.q[t * a.padded_cols + k]) / a.scale[t]);
                ref += bias[n];
                REQUIRE(y[t * N + n] == Approx(ref).epsilon(1e-5).margin(1e-5));
            }
    }
}

TEST_CASE("path selection and forcing", "[packed][dispatch]") {
    CHECK(kernel_path_available(kernel_path::scalar));
    const kernel_path best = best_kernel_path();
    CHECK(kernel_path_available(best));
    // A run under TERN_KERNEL_PATH starts on the path it names.
    const char* env = std::getenv("TERN_KERNEL_PATH");
    const kernel_path start = env && *env ? kernel_path_from_name(env) : kernel_path::automatic;
    CHECK(active_kernel_path() == (start == kernel_path::automatic ? best : start));
    force_kernel_path(kernel_path::scalar);
    CHECK(active_kernel_path() == kernel_path::scalar);
    CHECK(std::string(active_kernel_path_name()) == "scalar");
    force_kernel_path(kernel_path::automatic);
    CHECK(active_kernel_path() == best);
    for (auto p : {kernel_path::avx2, kernel_path::avxvnni, kernel_path::avx512vnni})
        if (!kernel_path_available(p)) CHECK_THROWS_AS(force_kernel_path(p), tern::error);
    std::vector<std::int8_t> w(8, 1);
    const packed_matrix W(w, 2, 4);
    const auto a = fixed_activations(1, 4, 3);
    std::vector<std::int32_t> d(2);
    ternary_gemm_int(W, a, d.data());
    CHECK(d[0] == 12);
    std::vector<float> y(2);
    CHECK_THROWS_AS(ternary_gemm(W, a, 0.0f, y.data()), tern::error);
    const auto wrong_k = fixed_activations(1, 5, 3);
    CHECK_THROWS_AS(ternary_gemm(W, wrong_k, 1.0f, y.data()), tern::error);
    WARN("best packed kernel path on this CPU: " << kernel_path_name(best));
}

TEST_CASE("TERN_KERNEL_PATH names the starting path", "[packed][dispatch]") {
    for (auto p : {kernel_path::automatic, kernel_path::scalar, kernel_path::avx2, kernel_path::avxvnni,
                   kernel_path::avx512vnni})
        CHECK(kernel_path_from_name(kernel_path_name(p)) == p);
    CHECK_THROWS_AS(kernel_path_from_name("sse9"), tern::error);
    const char* before = std::getenv("TERN_KERNEL_PATH");
    const std::string saved = before ? before : "";
    ::unsetenv("TERN_KERNEL_PATH");
    CHECK(detail::env_forced_path() == -1);
    ::setenv("TERN_KERNEL_PATH", "scalar", 1);
    CHECK(detail::env_forced_path() == int(kernel_path::scalar));
    ::setenv("TERN_KERNEL_PATH", "automatic", 1);
    CHECK(detail::env_forced_path() == -1);
    ::setenv("TERN_KERNEL_PATH", "fastest", 1);
    CHECK_THROWS_AS(detail::env_forced_path(), tern::error);
    for (auto p : {kernel_path::avx2, kernel_path::avxvnni, kernel_path::avx512vnni}) {
        ::setenv("TERN_KERNEL_PATH", kernel_path_name(p), 1);
        if (kernel_path_available(p))
            CHECK(detail::env_forced_path() == int(p));
        else
            CHECK_THROWS_AS(detail::env_forced_path(), tern::error);
    }
    if (before)
        ::setenv("TERN_KERNEL_PATH", saved.c_str(), 1);
    else
        ::unsetenv("TERN_KERNEL_PATH");
}

// ---- lane_matrix: the narrow (tail) matrix with one row per SIMD lane ----

namespace {

/// dots[t][n] = base[t][n] + sum_k (w[n][k] + 1) * q[t][k], straight from the definition.
std::vector<std::int32_t> naive_lane_dots(const std::vector<std::int8_t>& w, std::size_t N, std::size_t C,
                                          const std::vector<std::int8_t>& q, std::size_t ldq, std::size_t T,
                                          std::vector<std::int32_t> base, std::size_t ldd) {
    for (std::size_t t = 0; t < T; ++t)
        for (std::size_t n = 0; n < N; ++n) {
            std::int32_t s = 0;
            for (std::size_t k = 0; k < C; ++k) s += (w[n * C + k] + 1) * q[t * ldq + k];
            base[t * ldd + n] += s;
        }
    return base;
}

void check_lane_paths(const std::vector<std::int8_t>& w, std::size_t N, std::size_t C, std::size_t T, int fixed,
                      std::mt19937& rng) {
    const lane_matrix W(w.data(), N, C, C);
    const std::size_t ldq = W.padded_cols() + 3, ldd = N + 2;  // strides wider than the data
    std::vector<std::int8_t> q(T * ldq, 0);
    std::uniform_int_distribution<int> d(-127, 127);
    for (std::size_t t = 0; t < T; ++t)
        for (std::size_t k = 0; k < C; ++k) q[t * ldq + k] = static_cast<std::int8_t>(fixed ? fixed : d(rng));
    std::vector<std::int32_t> base(T * ldd);
    for (auto& v : base) v = d(rng);  // the product adds to what is there
    const auto expect = naive_lane_dots(w, N, C, q, ldq, T, base, ldd);
    for (kernel_path p : available_paths()) {
        INFO("path " << kernel_path_name(p) << " N=" << N << " C=" << C << " T=" << T << " fixed=" << fixed);
        auto dots = base;
        lane_gemm_add(W, q.data(), ldq, T, dots.data(), ldd, p);
        CHECK(dots == expect);
    }
}

}  // namespace

TEST_CASE("lane_matrix stores every weight where the layout says", "[packed][lane]") {
    std::mt19937 rng(11);
    for (std::size_t N : {1, 15, 16, 17, 40}) {
        for (std::size_t C : {1, 4, 15, 16, 17, 33, 64, 65, 100, 127, 128}) {
            const auto w = random_ternary(N * C, rng);
            const lane_matrix W(w.data(), N, C, C);
            CHECK(W.byte_count() == (N + 15) / 16 * ((C + 15) / 16) * 64);
            bool same = true;
            for (std::size_t n = 0; n < N; ++n)
                for (std::size_t k = 0; k < C; ++k) same = same && W.weight(n, k) == w[n * C + k];
            CHECK(same);
        }
    }
    // Row 17, column 21: unit (1, 1), lane 1, byte 4*1 + 21 % 4 = 5, bits 2*((21 % 16) / 4) = 2.
    std::vector<std::int8_t> w(20 * 24, 0);
    w[17 * 24 + 21] = 1;
    const lane_matrix W(w.data(), 20, 24, 24);
    const std::uint8_t byte = W.bytes()[(1 * 2 + 1) * 64 + 5];
    CHECK(((byte >> 2) & 3u) == 2u);
    CHECK((byte & 3u) == 1u);
}

TEST_CASE("lane_gemm_add: every SIMD path equals the definition", "[packed][lane]") {
    std::mt19937 rng(12);
    for (std::size_t N : {1, 7, 16, 17, 33, 256}) {
        for (std::size_t C : {1, 5, 16, 17, 48, 64, 65, 80, 127, 128}) {
            const auto w = random_ternary(N * C, rng);
            for (std::size_t T : {1, 3, 4, 5, 9, 64}) check_lane_paths(w, N, C, T, 0, rng);
        }
    }
    // Extremes: every weight +-1 and every activation +-127.
    for (int wv : {-1, 1})
        for (int av : {-127, 127}) {
            const std::vector<std::int8_t> w(19 * 127, static_cast<std::int8_t>(wv));
            check_lane_paths(w, 19, 127, 6, av, rng);
        }
}

TEST_CASE("lane_matrix and lane_gemm_add reject bad input", "[packed][lane]") {
    std::vector<std::int8_t> w(4 * 129, 0);
    CHECK_THROWS_AS(lane_matrix(w.data(), 4, 129, 129), tern::error);  // too wide
    CHECK_THROWS_AS(lane_matrix(w.data(), 0, 4, 4), tern::error);
    w[5] = 2;
    CHECK_THROWS_AS(lane_matrix(w.data(), 4, 8, 8), tern::error);  // not ternary
    w[5] = 0;
    const lane_matrix W(w.data(), 4, 8, 8);
    std::vector<std::int8_t> q(64, 0);
    std::vector<std::int32_t> dots(16, 0);
    CHECK_THROWS_AS(lane_gemm_add(W, q.data(), 8, 1, dots.data(), 4), tern::error);   // stride < 16 columns read
    CHECK_THROWS_AS(lane_gemm_add(W, q.data(), 16, 1, dots.data(), 3), tern::error);  // output stride < N
}

TEST_CASE("packed activation quantization equals the training layer's, bit for bit", "[packed][quant]") {
    // The frozen model must see the int8 codes and scales that linear<ternary, 8> computed in
    // training: tern::normalize_tokens, then tern::quantize_activations at lambda 1.
    std::mt19937 rng(21);
    for (std::size_t K : {1, 5, 16, 72, 100, 256, 784, 1000}) {
        const std::size_t T = 23;
        auto x = random_floats(T * K, rng, 2.0f);
        x[3] = 40.0f;  // an outlier in token 0
        std::vector<float> xn(T * K), rstd(T), xhat(T * K), s_train(T);
        tern::normalize_tokens(x.data(), T, K, xn.data(), rstd.data());
        tern::quantize_activations(xn.data(), T, K, 8, 1.0f, xhat.data(), s_train.data());
        for (kernel_path p : available_paths()) {
            INFO("path " << kernel_path_name(p) << " K=" << K);
            const auto a = quantize_activations(x.data(), T, K, true, p);
            bool same = true;
            for (std::size_t t = 0; t < T; ++t) {
                same = same && a.scale[t] == s_train[t];
                float amax = 0.0f;
                for (std::size_t k = 0; k < K; ++k) amax = std::max(amax, std::fabs(xn[t * K + k]));
                const float inv = std::max(amax, 1e-5f) / 127.0f;  // the training layer's 1 / s_x
                for (std::size_t k = 0; k < K; ++k)
                    same = same && float(a.q[t * a.padded_cols + k]) * inv == xhat[t * K + k];
            }
            CHECK(same);
        }
    }
}

namespace {

/// Exact dots of a split_matrix on every path against the definition sum_k w[n][k] * q[t][k].
void check_split_paths(const std::vector<std::int8_t>& w, std::size_t N, std::size_t K, std::size_t T, int fixed,
                       std::mt19937& rng) {
    const split_matrix S(w, N, K);
    const quantized_activations a = fixed ? fixed_activations(T, K, fixed) : random_activations(T, K, rng);
    std::vector<std::int32_t> expect(T * N);
    for (std::size_t t = 0; t < T; ++t)
        for (std::size_t n = 0; n < N; ++n) {
            std::int32_t acc = 0;
            for (std::size_t k = 0; k < K; ++k) acc += w[n * K + k] * a.q[t * a.padded_cols + k];
            expect[t * N + n] = acc;
        }
    for (kernel_path p : available_paths()) {
        INFO("path " << kernel_path_name(p) << " N=" << N << " K=" << K << " T=" << T << " fixed=" << fixed);
        aligned_buffer<std::int32_t> tail_dots, scratch;
        const std::int32_t* tail = S.tail_dots(a.q.data(), a.padded_cols, T, tail_dots, p);
        CHECK((tail != nullptr) == (K % 128 != 0));
        std::vector<std::int32_t> got(T * N, -7777);
        S.run_main(a.q.data(), a.padded_cols, a.sum.data(), T, p, "test", scratch,
                   [&](std::size_t n0, std::size_t n1, std::size_t t0, std::size_t t1, const std::int32_t* d,
                       std::size_t ld) {
                       for (std::size_t t = t0; t < t1; ++t)
                           for (std::size_t n = n0; n < n1; ++n)
                               got[t * N + n] = d[(t - t0) * ld + (n - n0)] + (tail ? tail[t * N + n] : 0);
                   });
        CHECK(got == expect);
    }
}

const std::size_t split_rows[] = {1, 2, 3, 4, 5, 7, 10, 16, 17, 63, 100};
const std::size_t split_cols[] = {1, 3, 9, 27, 64, 72, 127, 128, 129, 200, 256, 300, 784};

}  // namespace

TEST_CASE("split_matrix stores any shape in exactly ceil(N*K/4) bytes and round-trips", "[packed][split]") {
    std::mt19937 rng(31);
    for (std::size_t N : split_rows)
        for (std::size_t K : split_cols) {
            INFO("N=" << N << " K=" << K);
            const auto w = random_ternary(N * K, rng);
            const split_matrix S(w, N, K);
            CHECK(S.unpack() == w);
            const auto strip = S.strip_bytes();
            const auto tail = S.tail_stream();
            const std::size_t body = S.body().rows() ? S.body().byte_count() : 0;
            CHECK(body == split_matrix::body_bytes_for(N, K));
            CHECK(strip.size() == split_matrix::strip_bytes_for(N, K));
            CHECK(tail.size() == split_matrix::tail_bytes_for(N, K));
            CHECK(body + strip.size() + tail.size() == (N * K + 3) / 4);
            // In memory: exact, apart from a tail kept in lane layout for at most 1% of the weights.
            CHECK(8.0 * double(S.resident_bytes()) <= 2.02 * double(N * K) + 6.0);
            const std::vector<std::uint8_t> body_bytes(S.body().bytes(), S.body().bytes() + body);
            const split_matrix back(N, K, body_bytes, strip, tail);
            CHECK(back.unpack() == w);
            CHECK(back.tail_stream() == tail);
        }
}

TEST_CASE("split_matrix puts the strip and the tail where the layout says", "[packed][split]") {
    // 6 x 300: body rows 0-3, strip rows 4-5 over K0 = 256 (2 blocks), tail columns 256-299 (r = 44).
    std::vector<std::int8_t> w(6 * 300, 0);
    w[5 * 300 + 170] = 1;   // strip row 1, block 1, byte 170 % 32 = 10, bits 2 * ((170 % 128) / 32) = 2
    w[2 * 300 + 259] = -1;  // tail code 2 * 44 + 3 = 91: byte 22, bits 6-7
    const split_matrix S(w, 6, 300);
    REQUIRE(S.strip_rows() == 2);
    REQUIRE(S.main_cols() == 256);
    const auto strip = S.strip_bytes();
    const std::uint8_t s = strip[(1 * 2 + 1) * 32 + 10];
    CHECK(((s >> 2) & 3u) == 2u);
    CHECK((s & 3u) == 1u);
    const auto tail = S.tail_stream();
    CHECK(((tail[22] >> 6) & 3u) == 0u);
    CHECK(((tail[22] >> 4) & 3u) == 1u);
    CHECK(S.weight(5, 170) == 1);
    CHECK(S.weight(2, 259) == -1);
}

TEST_CASE("split_matrix products equal the definition on every path", "[packed][split]") {
    std::mt19937 rng(32);
    for (std::size_t N : split_rows)
        for (std::size_t K : split_cols) {
            const auto w = random_ternary(N * K, rng);
            for (std::size_t T : {1, 5, 70}) check_split_paths(w, N, K, T, 0, rng);
        }
    // Extremes: every weight +-1 and every activation +-127, with a strip and a stream tail.
    for (int wv : {-1, 1})
        for (int av : {-127, 127}) {
            const std::vector<std::int8_t> w(7 * 300, static_cast<std::int8_t>(wv));
            check_split_paths(w, 7, 300, 9, av, rng);
        }
}

TEST_CASE("split_matrix keeps a tail in lane layout only when its padding is cheap", "[packed][split]") {
    std::mt19937 rng(33);
    CHECK(split_matrix(random_ternary(256 * 784, rng), 256, 784).tail_in_lanes());   // no padding
    CHECK(split_matrix(random_ternary(100 * 784, rng), 100, 784).tail_in_lanes());   // 192 of 78,400
    CHECK_FALSE(split_matrix(random_ternary(32 * 9, rng), 32, 9).tail_in_lanes());  // 9 columns padded to 16
}

TEST_CASE("split_matrix rejects bad input", "[packed][split]") {
    std::vector<std::int8_t> w(5 * 130, 0);
    CHECK_THROWS_AS(split_matrix(w, 0, 130), tern::error);
    CHECK_THROWS_AS(split_matrix(w, 5, 129), tern::error);  // size mismatch
    w[3] = 2;
    CHECK_THROWS_WITH(split_matrix(w, 5, 130), Catch::Contains("weight (0, 3) is 2"));
    w[3] = 0;
    const split_matrix S(w, 5, 130);
    const std::vector<std::uint8_t> body(S.body().bytes(), S.body().bytes() + S.body().byte_count());
    const auto strip = S.strip_bytes();
    const auto tail = S.tail_stream();  // 5 * 2 = 10 codes in 3 bytes
    REQUIRE(tail.size() == 3);
    CHECK_NOTHROW(split_matrix(5, 130, body, strip, tail));
    CHECK_THROWS_WITH(split_matrix(5, 130, body, {}, tail), Catch::Contains("expected 32 strip bytes"));
    auto bad = tail;
    bad[2] = static_cast<std::uint8_t>(bad[2] | 0x30);  // unused code 10 = 3
    CHECK_THROWS_WITH(split_matrix(5, 130, body, strip, bad), Catch::Contains("unused tail code 10"));
    bad = tail;
    bad[0] = 0xFF;
    CHECK_THROWS_WITH(split_matrix(5, 130, body, strip, bad), Catch::Contains("invalid code 3"));
    auto bad_strip = strip;
    bad_strip[0] = 0x03;
    CHECK_THROWS_WITH(split_matrix(5, 130, body, bad_strip, tail), Catch::Contains("strip byte 0"));
    std::vector<std::int32_t> sum(1, 0);
    std::vector<std::int8_t> q(128, 0);
    aligned_buffer<std::int32_t> scratch;
    CHECK_THROWS_WITH(S.run_main(q.data(), 128, sum.data(), 1, kernel_path::automatic, "here", scratch,
                                 [](std::size_t, std::size_t, std::size_t, std::size_t, const std::int32_t*,
                                    std::size_t) {}),
                      Catch::Contains("here: activation row stride 128"));
}
