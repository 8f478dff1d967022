// Tokenizers: byte and BPE round trips on arbitrary bytes (invalid UTF-8 included), BPE training,
// save/load round trips and clear errors on malformed files.
#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <random>

#include "tern/text/tokenizer.hpp"

namespace {

std::string random_bytes(std::size_t n, std::uint64_t seed) {
    std::mt19937_64 rng(seed);
    std::string s(n, '\0');
    for (auto& c : s) c = char(rng() & 0xff);
    return s;
}

const char* sample_text =
    "In the beginning God created the heaven and the earth.\n"
    "And the earth was without form, and void; and darkness was upon the face of the deep.\n"
    "And the Spirit of God moved upon the face of the waters.\n"
    "And God said, Let there be light: and there was light.\n";

std::string corpus_text() {
    std::string s;
    for (int i = 0; i < 20; ++i) s += sample_text;
    return s;
}

std::filesystem::path temp_file(const std::string& name, const std::string& content) {
    const auto p = std::filesystem::temp_directory_path() / name;
    std::ofstream(p, std::ios::binary) << content;
    return p;
}

}  // namespace

TEST_CASE("byte tokenizer round-trips any byte string", "[tokenizer][bytes]") {
    tern::text::byte_tokenizer tok;
    CHECK(tok.vocab_size() == 256);
    for (std::uint64_t seed = 0; seed < 20; ++seed) {
        const std::string s = random_bytes(seed * 13, seed);
        const auto ids = tok.encode(s);
        REQUIRE(ids.size() == s.size());
        CHECK(tok.decode(ids) == s);
    }
    CHECK(tok.encode(std::string("\xff\x00\x80", 3)) == std::vector<int>{255, 0, 128});
    REQUIRE_THROWS_WITH(tok.decode({65, 256}), Catch::Contains("id 256"));
}

TEST_CASE("BPE learns merges that shorten text and round-trips any bytes", "[tokenizer][bpe]") {
    const std::string text = corpus_text();
    const auto tok = tern::text::bpe_tokenizer::train(text, 256 + 60);
    CHECK(tok.vocab_size() == 316);
    const auto ids = tok.encode(text);
    CHECK(ids.size() < text.size() / 2);
    CHECK(tok.decode(ids) == text);
    // " the" is frequent enough to be one token
    CHECK(tok.encode(" the").size() == 1);
    for (std::uint64_t seed = 0; seed < 30; ++seed) {
        const std::string s = random_bytes(seed * 17, seed + 100) + " the earth \xc3\x28 \xf0\x28\x8c\x28 face";
        CHECK(tok.decode(tok.encode(s)) == s);
    }
    CHECK(tok.encode("").empty());
    CHECK(tok.decode({}).empty());
    REQUIRE_THROWS_WITH(tok.decode({316}), Catch::Contains("316"));
    // Training is deterministic.
    CHECK(tern::text::bpe_tokenizer::train(text, 316).merges() == tok.merges());
}

TEST_CASE("BPE chunks never mix whitespace, words and punctuation", "[tokenizer][bpe]") {
    const auto chunks = tern::text::detail::split_chunks("Let there  be light:\n\nand");
    const std::vector<std::string_view> want{"Let", " there", " ", " be", " light", ":", "\n\n", "and"};
    CHECK(chunks == want);
}

TEST_CASE("BPE saves and loads exactly", "[tokenizer][bpe][io]") {
    const auto tok = tern::text::bpe_tokenizer::train(corpus_text(), 300);
    const auto path = std::filesystem::temp_directory_path() / "tern_test_bpe.txt";
    tok.save(path);
    const auto back = tern::text::bpe_tokenizer::load(path);
    CHECK(back.merges() == tok.merges());
    const std::string s = random_bytes(500, 9) + corpus_text();
    CHECK(back.encode(s) == tok.encode(s));
    std::filesystem::remove(path);
}

TEST_CASE("BPE load names the problem in malformed files", "[tokenizer][bpe][errors]") {
    using tern::text::bpe_tokenizer;
    REQUIRE_THROWS_WITH(bpe_tokenizer::load("/nonexistent/bpe.txt"), Catch::Contains("cannot open"));
    auto p = temp_file("tern_bad1.txt", "hello\n");
    REQUIRE_THROWS_WITH(bpe_tokenizer::load(p), Catch::Contains("not a tern BPE file"));
    p = temp_file("tern_bad2.txt", "tern-bpe 1\nmerges x\n");
    REQUIRE_THROWS_WITH(bpe_tokenizer::load(p), Catch::Contains("line 2"));
    p = temp_file("tern_bad3.txt", "tern-bpe 1\nmerges 3\n104 101\n");
    REQUIRE_THROWS_WITH(bpe_tokenizer::load(p), Catch::Contains("expected 3 merges, found 1"));
    p = temp_file("tern_bad4.txt", "tern-bpe 1\nmerges 2\n104 101\n256 300\n");
    REQUIRE_THROWS_WITH(bpe_tokenizer::load(p), Catch::Contains("line 4") && Catch::Contains("token 300"));
    p = temp_file("tern_bad5.txt", "tern-bpe 1\nmerges 1\n104 one\n");
    REQUIRE_THROWS_WITH(bpe_tokenizer::load(p), Catch::Contains("line 3") && Catch::Contains("two token ids"));
    p = temp_file("tern_bad6.txt", "tern-bpe 1\nmerges 1\n104 101\n99 98\n");
    REQUIRE_THROWS_WITH(bpe_tokenizer::load(p), Catch::Contains("unexpected content"));
    p = temp_file("tern_bad7.txt", "tern-bpe 1\nmerges 1\n104 101 7\n");
    REQUIRE_THROWS_WITH(bpe_tokenizer::load(p), Catch::Contains("line 3"));
    p = temp_file("tern_ok.txt", "tern-bpe 1\r\nmerges 1\r\n104 101\r\n");
    CHECK(bpe_tokenizer::load(p).encode("he") == std::vector<int>{256});
    for (int i = 1; i <= 7; ++i) std::filesystem::remove(std::filesystem::temp_directory_path() / ("tern_bad" + std::to_string(i) + ".txt"));
    std::filesystem::remove(p);
    REQUIRE_THROWS_WITH(bpe_tokenizer::train("abc", 100), Catch::Contains("256"));
}
