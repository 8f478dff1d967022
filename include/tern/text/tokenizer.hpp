#pragma once
/// @file text/tokenizer.hpp
/// @brief Tokenizers for language models: raw bytes (256 symbols) and byte-pair encoding.
///
/// Both work on arbitrary byte strings (invalid UTF-8 included): every token stands for a
/// non-empty byte string, and decode(encode(s)) == s for every s.
///
/// BPE (trainable, saved as a small text file):
///  - the text is cut into chunks that merges never cross: a chunk is a run of letters/digits
///    (bytes >= 0x80 count as letters), a run of punctuation, or a run of whitespace; a single
///    space before a letter or punctuation run belongs to that run (" word");
///  - training repeatedly merges the most frequent adjacent pair of tokens within chunks (ties:
///    the smallest pair of ids), adding one token per merge (ids 256, 257, ...);
///  - encoding applies the merges in the order they were learned (lowest rank first).
/// File format ("tern-bpe 1"): a header line, "merges N", then N lines "LEFT RIGHT" with the ids
/// merged into token 256 + line index; ids must refer to tokens that exist before that merge.
/// A token is at most bpe_max_token_bytes long (training never crosses a 64-byte chunk), so a file
/// cannot describe more than 64 bytes per merge (docs/file-formats.md).

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "../error.hpp"
#include "../io/checked.hpp"

namespace tern::text {

/// @brief Longest token in bytes: the chunk length, which merges never cross.
inline constexpr std::size_t bpe_max_token_bytes = 64;

/// @brief One token per byte: ids 0..255.
class byte_tokenizer {
public:
    std::size_t vocab_size() const { return 256; }
    std::string name() const { return "bytes"; }

    std::vector<int> encode(std::string_view text) const {
        std::vector<int> ids(text.size());
        for (std::size_t i = 0; i < text.size(); ++i) ids[i] = int(static_cast<unsigned char>(text[i]));
        return ids;
    }

    /// @throws tern::error for an id outside 0..255.
    std::string decode(const std::vector<int>& ids) const {
        std::string s(ids.size(), '\0');
        for (std::size_t i = 0; i < ids.size(); ++i) {
            detail::require(ids[i] >= 0 && ids[i] < 256, "byte_tokenizer: id ", ids[i], " at position ", i,
                            " is outside [0, 256)");
            s[i] = char(static_cast<unsigned char>(ids[i]));
        }
        return s;
    }
};

namespace detail {
using namespace ::tern::detail;  // require/fail stay reachable as detail:: inside tern::text

/// 0: whitespace, 1: letters, digits and bytes >= 0x80, 2: everything else.
inline int byte_class(unsigned char c) {
    if (c == ' ' || c == '\n' || c == '\t' || c == '\r' || c == '\f' || c == '\v') return 0;
    if ((c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c >= 0x80) return 1;
    return 2;
}

/// Cuts @p text into BPE chunks (see the file comment); chunks are at most bpe_max_token_bytes.
inline std::vector<std::string_view> split_chunks(std::string_view text) {
    std::vector<std::string_view> out;
    std::size_t start = 0;
    for (std::size_t i = 1; i <= text.size(); ++i) {
        bool cut = i == text.size() || i - start >= bpe_max_token_bytes;
        if (!cut) {
            const unsigned char prev = static_cast<unsigned char>(text[i - 1]), cur = static_cast<unsigned char>(text[i]);
            const int cp = byte_class(prev), cc = byte_class(cur);
            if (cc == 0) {
                // whitespace continues a whitespace run, except that a space followed by a
                // non-space starts the next chunk
                const bool space_leads = cur == ' ' && i + 1 < text.size() &&
                                         byte_class(static_cast<unsigned char>(text[i + 1])) != 0;
                cut = cp != 0 || space_leads;
            } else {
                const bool leading_space = prev == ' ' && i - 1 == start;
                cut = cc != cp && !leading_space;
            }
        }
        if (cut) {
            out.push_back(text.substr(start, i - start));
            start = i;
        }
    }
    return out;
}

}  // namespace detail

/// @brief Byte-pair encoding over bytes: 256 byte tokens plus one token per learned merge.
/// @throws tern::error from train() on a bad vocabulary size, from load() on a malformed file
///         (naming the file, line and problem), and from decode() on unknown ids.
class bpe_tokenizer {
public:
    /// A tokenizer with no merges (equivalent to byte_tokenizer).
    bpe_tokenizer() { rebuild(); }

    /// Learns merges from @p corpus until the vocabulary has @p vocab_size tokens (or no pair
    /// occurs at least @p min_count times).
    static bpe_tokenizer train(std::string_view corpus, std::size_t vocab_size, std::size_t min_count = 2) {
        tern::detail::require(vocab_size >= 256 && vocab_size <= (1u << 24), "bpe_tokenizer::train: expected a vocabulary of 256..2^24 tokens, got ",
                              vocab_size);
        // Unique chunks with their counts; merges are applied to those, weighted by count.
        std::unordered_map<std::string_view, std::size_t> counts;
        for (auto c : detail::split_chunks(corpus)) ++counts[c];
        std::vector<std::vector<int>> words;
        std::vector<std::size_t> freq;
        words.reserve(counts.size());
        std::vector<std::pair<std::string_view, std::size_t>> sorted(counts.begin(), counts.end());
        std::sort(sorted.begin(), sorted.end());  // deterministic order
        for (const auto& [w, n] : sorted) {
            std::vector<int> ids(w.size());
            for (std::size_t i = 0; i < w.size(); ++i) ids[i] = int(static_cast<unsigned char>(w[i]));
            words.push_back(std::move(ids));
            freq.push_back(n);
        }
        bpe_tokenizer tok;
        std::unordered_map<std::uint64_t, std::size_t> pairs;
        while (256 + tok.merges_.size() < vocab_size) {
            pairs.clear();
            for (std::size_t w = 0; w < words.size(); ++w)
                for (std::size_t i = 0; i + 1 < words[w].size(); ++i) pairs[key(words[w][i], words[w][i + 1])] += freq[w];
            std::uint64_t best_key = 0;
            std::size_t best_count = 0;
            for (const auto& [k, n] : pairs)
                if (n > best_count || (n == best_count && k < best_key)) {  // ties: the smallest pair
                    best_key = k;
                    best_count = n;
                }
            const std::pair<int, int> best{int(best_key >> 32), int(best_key & 0xffffffffu)};
            if (best_count < std::max<std::size_t>(min_count, 1)) break;
            const int id = int(256 + tok.merges_.size());
            tok.merges_.push_back(best);
            for (auto& w : words) merge_in_place(w, best, id);
        }
        tok.rebuild();
        return tok;
    }

    std::size_t vocab_size() const { return 256 + merges_.size(); }
    std::string name() const { return "bpe" + std::to_string(vocab_size()); }
    const std::vector<std::pair<int, int>>& merges() const { return merges_; }

    /// The bytes token @p id stands for.
    const std::string& token_bytes(int id) const {
        tern::detail::require(id >= 0 && std::size_t(id) < vocab_size(), "bpe_tokenizer: id ", id, " is outside [0, ",
                              vocab_size(), ")");
        return pieces_[std::size_t(id)];
    }

    std::vector<int> encode(std::string_view text) const {
        std::vector<int> out;
        out.reserve(text.size() / 2);
        for (auto chunk : detail::split_chunks(text)) {
            auto it = cache_.find(std::string(chunk));
            if (it == cache_.end()) it = cache_.emplace(std::string(chunk), encode_chunk(chunk)).first;
            out.insert(out.end(), it->second.begin(), it->second.end());
        }
        return out;
    }

    std::string decode(const std::vector<int>& ids) const {
        std::string s;
        for (std::size_t i = 0; i < ids.size(); ++i) {
            tern::detail::require(ids[i] >= 0 && std::size_t(ids[i]) < vocab_size(), "bpe_tokenizer: id ", ids[i],
                                  " at position ", i, " is outside [0, ", vocab_size(), ")");
            s += pieces_[std::size_t(ids[i])];
        }
        return s;
    }

    /// Writes the merges as a "tern-bpe 1" text file.
    /// @throws tern::error if the file cannot be written.
    void save(const std::filesystem::path& path) const {
        std::ofstream out(path, std::ios::out | std::ios::trunc);
        tern::detail::require(out.good(), "bpe_tokenizer: cannot open '", path.string(), "' for writing");
        out << "tern-bpe 1\nmerges " << merges_.size() << "\n";
        for (const auto& [a, b] : merges_) out << a << ' ' << b << '\n';
        out.flush();
        tern::detail::require(out.good(), "bpe_tokenizer: writing '", path.string(), "' failed");
    }

    /// Reads a file written by save().
    /// @throws tern::error naming the file and line for a missing file, a wrong header, a bad count,
    ///         a malformed line, an id that refers to a token not defined yet, or trailing content.
    static bpe_tokenizer load(const std::filesystem::path& path) {
        const std::string where = "bpe_tokenizer: '" + path.string() + "'";
        std::error_code ec;
        const std::uintmax_t file_size = std::filesystem::file_size(path, ec);
        tern::detail::require(!ec, where, ": cannot open the file (", ec.message(), ")");
        std::ifstream in(path, std::ios::binary);
        tern::detail::require(in.good(), where, ": cannot open the file");
        std::string line;
        std::size_t line_no = 0;
        const auto next = [&]() -> bool {
            if (!std::getline(in, line)) return false;
            ++line_no;
            if (!line.empty() && line.back() == '\r') line.pop_back();
            return true;
        };
        tern::detail::require(next() && line == "tern-bpe 1", where,
                              ": not a tern BPE file (expected first line 'tern-bpe 1', got ", io::detail::quote(line), ")");
        tern::detail::require(next(), where, ": line 2: expected 'merges N', found the end of the file");
        std::size_t count = 0;
        {
            std::istringstream s(line);
            std::string word, rest;
            long long n = -1;
            tern::detail::require((s >> word >> n) && word == "merges" && !(s >> rest) && n >= 0 && n < (1 << 24),
                                  where, ": line 2: expected 'merges N' with N in [0, 2^24), got ", io::detail::quote(line));
            count = std::size_t(n);
        }
        // Each merge line takes at least 4 bytes ("0 0\n"): nothing is reserved beyond what the rest
        // of the file can hold (a short file then fails below, naming the line it ends at).
        const std::streamoff pos = in.tellg();
        const std::uintmax_t remaining = pos < 0 ? 0 : file_size - std::min<std::uintmax_t>(file_size, std::uintmax_t(pos));
        const std::size_t possible = std::size_t(std::min<std::uintmax_t>(count, remaining / 4));
        bpe_tokenizer tok;
        tok.merges_.reserve(possible);
        std::vector<std::size_t> length(256, 1);  // bytes of each token, checked before rebuild() builds them
        length.reserve(256 + possible);
        for (std::size_t i = 0; i < count; ++i) {
            tern::detail::require(next(), where, ": expected ", count, " merges, found ", i, " (the file ends at line ",
                                  line_no, ")");
            std::istringstream s(line);
            long long a = -1, b = -1;
            std::string rest;
            tern::detail::require(bool(s >> a >> b) && !(s >> rest), where, ": line ", line_no,
                                  ": expected two token ids 'LEFT RIGHT', got ", io::detail::quote(line));
            const long long defined = 256 + (long long)i;
            tern::detail::require(a >= 0 && b >= 0 && a < defined && b < defined, where, ": line ", line_no,
                                  ": merge ", i, " refers to token ", (a < 0 || a >= defined) ? a : b,
                                  ", but only ids 0..", defined - 1, " exist before it");
            const std::size_t bytes = length[std::size_t(a)] + length[std::size_t(b)];
            tern::detail::require(bytes <= bpe_max_token_bytes, where, ": line ", line_no, ": merge ", i, " of tokens ",
                                  a, " and ", b, " makes a token of ", bytes, " bytes, more than the limit of ",
                                  bpe_max_token_bytes);
            length.push_back(bytes);
            tok.merges_.emplace_back(int(a), int(b));
        }
        while (next())
            tern::detail::require(line.find_first_not_of(" \t") == std::string::npos, where, ": line ", line_no,
                                  ": unexpected content after the ", count, " merges: ", io::detail::quote(line));
        tok.rebuild();
        return tok;
    }

private:
    static void merge_in_place(std::vector<int>& w, std::pair<int, int> pair, int id) {
        std::size_t o = 0;
        for (std::size_t i = 0; i < w.size(); ++i) {
            if (i + 1 < w.size() && w[i] == pair.first && w[i + 1] == pair.second) {
                w[o++] = id;
                ++i;
            } else {
                w[o++] = w[i];
            }
        }
        w.resize(o);
    }

    std::vector<int> encode_chunk(std::string_view chunk) const {
        std::vector<int> ids(chunk.size());
        for (std::size_t i = 0; i < chunk.size(); ++i) ids[i] = int(static_cast<unsigned char>(chunk[i]));
        while (ids.size() > 1) {
            std::size_t best_rank = merges_.size();
            for (std::size_t i = 0; i + 1 < ids.size(); ++i) {
                auto it = rank_.find(key(ids[i], ids[i + 1]));
                if (it != rank_.end() && it->second < best_rank) best_rank = it->second;
            }
            if (best_rank == merges_.size()) break;
            merge_in_place(ids, merges_[best_rank], int(256 + best_rank));
        }
        return ids;
    }

    static std::uint64_t key(int a, int b) { return (std::uint64_t(std::uint32_t(a)) << 32) | std::uint32_t(b); }

    void rebuild() {
        pieces_.assign(256, std::string());
        for (int i = 0; i < 256; ++i) pieces_[std::size_t(i)] = std::string(1, char(static_cast<unsigned char>(i)));
        rank_.clear();
        cache_.clear();
        for (std::size_t r = 0; r < merges_.size(); ++r) {
            const auto [a, b] = merges_[r];
            pieces_.push_back(pieces_[std::size_t(a)] + pieces_[std::size_t(b)]);
            rank_.emplace(key(a, b), r);
        }
    }

    std::vector<std::pair<int, int>> merges_;
    std::vector<std::string> pieces_;
    std::unordered_map<std::uint64_t, std::size_t> rank_;
    mutable std::unordered_map<std::string, std::vector<int>> cache_;  // chunk -> ids (encode is pure)
};

}  // namespace tern::text
