#pragma once
/// @file text/corpus.hpp
/// @brief A tokenized text split into training and validation parts, served as (input, target)
/// windows of the context length, and the unigram entropy a language model has to beat.
///
/// Windows: input = tokens[s .. s + T), target = tokens[s + 1 .. s + T] (the next token at every
/// position). Training windows start anywhere in the training part (random offsets); validation
/// windows tile the held-out tail of the text without overlap, so every validation target is
/// scored once. Inputs are float tensors [B, T] (token ids, exact below 2^24), targets one int per
/// token in the same order, as tern::softmax_cross_entropy takes them.

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "../error.hpp"
#include "../tensor.hpp"

namespace tern::text {

/// @brief A batch of windows: inputs [B, T] and B * T targets.
struct lm_batch {
    tensor inputs;
    std::vector<int> targets;
};

/// @brief Entropy in bits per token of the token frequencies in @p tokens (0 for an empty list).
inline double unigram_entropy_bits(const std::vector<int>& tokens) {
    if (tokens.empty()) return 0.0;
    int max_id = 0;
    for (int t : tokens) {
        detail::require(t >= 0, "unigram_entropy_bits: negative token id ", t);
        max_id = std::max(max_id, t);
    }
    std::vector<double> counts(std::size_t(max_id) + 1, 0.0);
    for (int t : tokens) counts[std::size_t(t)] += 1.0;
    double h = 0.0;
    const double n = double(tokens.size());
    for (double c : counts)
        if (c > 0) h -= (c / n) * std::log2(c / n);
    return h;
}

/// @brief Token stream with a held-out validation tail, served as context-length windows.
/// @throws tern::error from the constructor when either part is shorter than one window
///         (context + 1 tokens) or the fraction is outside [0, 1).
class corpus {
public:
    /// @param tokens  the whole tokenized text. @param context  window length T.
    /// @param validation_fraction  share of the text (its end) held out for validation.
    corpus(std::vector<int> tokens, std::size_t context, double validation_fraction = 0.05)
        : context_(context) {
        detail::require(context > 0, "corpus: expected a positive context length");
        detail::require(validation_fraction >= 0.0 && validation_fraction < 1.0,
                        "corpus: expected a validation fraction in [0, 1), got ", validation_fraction);
        const std::size_t n_val = std::size_t(double(tokens.size()) * validation_fraction);
        const std::size_t n_train = tokens.size() - n_val;
        detail::require(n_train >= context + 1, "corpus: the training part has ", n_train,
                        " tokens, fewer than one window of ", context + 1);
        detail::require(validation_fraction == 0.0 || n_val >= context + 1, "corpus: the validation part has ",
                        n_val, " tokens, fewer than one window of ", context + 1, " (use a larger fraction or text)");
        val_.assign(tokens.begin() + std::ptrdiff_t(n_train), tokens.end());
        tokens.resize(n_train);
        train_ = std::move(tokens);
    }

    std::size_t context() const { return context_; }
    const std::vector<int>& train_tokens() const { return train_; }
    const std::vector<int>& validation_tokens() const { return val_; }

    /// @p batch training windows at uniformly random offsets.
    lm_batch sample(std::size_t batch, std::mt19937_64& rng) const {
        std::uniform_int_distribution<std::size_t> start(0, train_.size() - context_ - 1);
        lm_batch b{tensor(shape_t{batch, context_}), std::vector<int>(batch * context_)};
        for (std::size_t i = 0; i < batch; ++i) fill(train_, start(rng), i, b);
        return b;
    }

    /// Number of non-overlapping validation windows.
    std::size_t validation_windows() const { return val_.size() < context_ + 1 ? 0 : (val_.size() - 1) / context_; }

    /// Validation windows [first, first + count), in order.
    /// @throws tern::error if the range goes past validation_windows().
    lm_batch validation_batch(std::size_t first, std::size_t count) const {
        detail::require(first + count <= validation_windows(), "corpus: validation windows ", first, "..",
                        first + count, " exceed the ", validation_windows(), " available");
        lm_batch b{tensor(shape_t{count, context_}), std::vector<int>(count * context_)};
        for (std::size_t i = 0; i < count; ++i) fill(val_, (first + i) * context_, i, b);
        return b;
    }

private:
    void fill(const std::vector<int>& src, std::size_t s, std::size_t row, lm_batch& b) const {
        float* in = b.inputs.data() + row * context_;
        int* tg = b.targets.data() + row * context_;
        for (std::size_t t = 0; t < context_; ++t) {
            in[t] = float(src[s + t]);
            tg[t] = src[s + t + 1];
        }
    }

    std::size_t context_;
    std::vector<int> train_, val_;
};

/// @brief The whole content of a file as bytes.
/// @throws tern::error if it cannot be read.
inline std::string read_file_bytes(const std::filesystem::path& path) {
    std::ifstream in(path, std::ios::binary);
    detail::require(in.good(), "read_file_bytes: cannot open '", path.string(), "'");
    std::ostringstream s;
    s << in.rdbuf();
    detail::require(!in.bad(), "read_file_bytes: reading '", path.string(), "' failed");
    return s.str();
}

/// @brief Everything a shell command writes to its standard output (e.g. `bible Gen1:1-Rev22:21`).
/// @throws tern::error if the command cannot be started or exits with a failure status.
inline std::string read_command_output(const std::string& command) {
    FILE* pipe = ::popen(command.c_str(), "r");
    detail::require(pipe != nullptr, "read_command_output: cannot run '", command, "'");
    std::string out;
    char buf[1 << 16];
    std::size_t n = 0;
    while ((n = std::fread(buf, 1, sizeof buf, pipe)) > 0) out.append(buf, n);
    const int status = ::pclose(pipe);
    detail::require(status == 0, "read_command_output: '", command, "' failed (status ", status, ")");
    return out;
}

}  // namespace tern::text
