// infer: runs a packed model file (written by tern::save_packed_model, e.g. `mlp --export FILE`)
// without any training code or shadow weights.
//
//   infer --model mlp.tern                       # classify the Fashion-MNIST test images
//   infer --model mlp.tern --data DIR --batch 1 --threads 1
//
// Images are standardized as examples/mlp does, (v - mean) / std with Fashion-MNIST's statistics
// (0.2860, 0.3530), unless the file records others ("input.mean", "input.std" metadata).
// The last line of output is one JSON object: accuracy, images_per_s, model_bytes, file_bytes,
// bits_per_weight (packed layers), kernel path.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "common/cli.hpp"
#include "common/lm_designs.hpp"
#include "tern/data/idx.hpp"
#include "tern/deploy/language_model.hpp"
#include "tern/deploy/packed_model.hpp"
#include "tern/io/safetensors.hpp"
#include "tern/text/tokenizer.hpp"
#include "tern/packed/cpu_dispatch.hpp"
#include "tern/threads.hpp"

namespace {

/// A metadata number of the file, or @p fallback when absent.
float metadata_number(const tern::io::safetensors_data& file, const std::string& key, float fallback) {
    auto it = file.metadata.find(key);
    if (it == file.metadata.end()) return fallback;
    try {
        return std::stof(it->second);
    } catch (const std::exception&) {
        tern::detail::fail("metadata '", key, "' of the model file is not a number: '", it->second, "'");
    }
}

}  // namespace

int main(int argc, char** argv) {
    try {
        tern_examples::cli args(argc, argv, "Classifies IDX test images with a packed tern model file.");
        const std::string model_path = args.value("model", "", "packed model file (safetensors, tern-packed-3)");
        const std::string data_dir = args.value("data", "/usr/share/datasets/fashion-mnist",
                                                "directory with the IDX test files (t10k-*)");
        const auto threads = std::size_t(args.integer("threads", 1, 1, 1024, "threads"));
        const auto batch = std::size_t(args.integer("batch", 64, 1, 1 << 20, "images per forward call"));
        const auto limit = std::size_t(args.integer("limit", 0, 0, 1L << 40, "classify only the first N images (0: all)"));
        const double mean_flag = args.real("mean", 0.2860, -1e6, 1e6, "input standardization mean (file metadata wins)");
        const double std_flag = args.real("std", 0.3530, 1e-12, 1e6, "input standardization std (file metadata wins)");
        const std::string prompt = args.value("prompt", "", "language models: the text to continue");
        const auto gen_tokens = std::size_t(args.integer("tokens", 200, 1, 1 << 24, "language models: tokens to generate"));
        const double temperature = args.real("temperature", 0.8, 0.0, 100.0, "language models: sampling temperature (0: greedy)");
        const auto top_k = std::size_t(args.integer("top-k", 0, 0, 1 << 24, "language models: sample among the k likeliest (0: all)"));
        const auto seed = std::uint64_t(args.integer("seed", 1, 0, 1L << 62, "language models: sampling seed"));
        if (!args.finish()) return 0;
        tern::detail::require(!model_path.empty(), "--model FILE is required (a packed model, e.g. from mlp --export)");
        tern::set_num_threads(threads);

        tern_examples::register_example_lm_designs();  // every design `lm --export` can write
        const auto t_load = std::chrono::steady_clock::now();
        const tern::io::safetensors_data file = tern::io::load_safetensors(model_path);
        tern::inference_model model = tern::parse_packed_model(file, "packed model '" + model_path + "'");
        // The fields every final JSON line carries, whatever the model does.
        const auto model_facts = [&] {
            return nlohmann::json{{"threads", threads},
                                  {"model_bytes", model.model_bytes()},
                                  {"file_bytes", std::filesystem::file_size(model_path)},
                                  {"packed_weights", model.packed_weights()},
                                  {"bits_per_weight", model.bits_per_weight()},
                                  {"kernel_path", tern::packed::active_kernel_path_name()}};
        };
        const double load_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_load).count();
        const float mean = metadata_number(file, "input.mean", float(mean_flag));
        const float sd = metadata_number(file, "input.std", float(std_flag));
        std::cerr << "model: " << model.describe() << "\n"
                  << "policy " << model.policy() << ", " << model.model_bytes() << " parameter bytes, "
                  << model.bits_per_weight() << " bits per packed weight, loaded in " << load_s * 1e3 << " ms\n";

        if (tern::is_language_model(model)) {  // generate text from --prompt
            auto it = file.metadata.find("tokenizer");
            const std::string tok = it == file.metadata.end() ? "bytes" : it->second;
            tern::detail::require(tok == "bytes", "the model uses tokenizer '", tok,
                                  "'; infer generates with the byte tokenizer only (export a --tokenizer bytes model)");
            tern::detail::require(!prompt.empty(), "--prompt TEXT is required for a language model");
            const tern::text::byte_tokenizer codec;
            const std::vector<int> ids = codec.encode(prompt);
            const tern::sample_options how{.temperature = float(temperature), .top_k = top_k, .seed = seed};
            (void)tern::generate_tokens(model, ids, 2, how);  // warm-up: sizes the buffers
            const auto t0 = std::chrono::steady_clock::now();
            const std::vector<int> out = tern::generate_tokens(model, ids, gen_tokens, how);
            const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
            std::cout << prompt << codec.decode(out) << "\n";
            std::fprintf(stderr, "%zu tokens in %.3f s: %.1f tokens/s (prompt %zu tokens, %zu thread%s, %s kernels)\n",
                         out.size(), seconds, double(out.size()) / seconds, ids.size(), threads, threads == 1 ? "" : "s",
                         tern::packed::active_kernel_path_name());
            nlohmann::json result = {{"model", model_path},
                                     {"policy", model.policy()},
                                     {"tokenizer", tok},
                                     {"prompt_tokens", ids.size()},
                                     {"generated_tokens", out.size()},
                                     {"tokens_per_s", double(out.size()) / seconds},
                                     {"seconds", seconds},
                                     {"temperature", temperature},
                                     {"top_k", top_k},
                                     {"seed", seed}};
            result.update(model_facts());
            std::cout << result.dump() << std::endl;
            return 0;
        }

        auto test = tern::data::load_mnist_dir(data_dir, false);
        std::size_t n = test.size();
        if (limit) n = std::min(n, limit);
        tern::detail::require(n > 0, "no test images in '", data_dir, "'");
        const std::size_t per = test.inputs.size() / test.size();
        for (auto& v : test.inputs) v = (v - mean) / sd;

        // One warm-up call sizes every layer's buffers; then the timed pass over all images.
        // A convolutional model records its per-sample input shape ([1, 28, 28]): images become NCHW.
        tern::shape_t sample{per};
        if (!model.input_shape().empty()) {
            std::size_t count = 1;
            for (auto d : model.input_shape()) count *= d;
            tern::detail::require(count == per, "the model expects samples of shape ",
                                  tern::detail::shape_string(model.input_shape()), " (", count, " values), the images have ",
                                  per, " values");
            sample = model.input_shape();
        }
        const auto batch_shape = [&](std::size_t b) {
            tern::shape_t s{b};
            s.insert(s.end(), sample.begin(), sample.end());
            return s;
        };
        tern::tensor x = tern::tensor::from_shape(batch_shape(std::min(batch, n)));
        std::copy(test.inputs.data(), test.inputs.data() + x.size(), x.data());
        (void)model.run(x);
        std::size_t correct = 0, classes = 0;
        const auto t0 = std::chrono::steady_clock::now();
        for (std::size_t i = 0; i < n; i += batch) {
            const std::size_t b = std::min(batch, n - i);
            if (x.shape()[0] != b) x.resize(batch_shape(b));
            std::copy(test.inputs.data() + i * per, test.inputs.data() + (i + b) * per, x.data());
            const tern::tensor& y = model.run(x);
            classes = y.shape().back();
            for (std::size_t r = 0; r < b; ++r) {
                const float* row = y.data() + r * classes;
                const auto best = std::size_t(std::max_element(row, row + classes) - row);
                correct += int(best) == test.labels[i + r];
            }
        }
        const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        const double accuracy = double(correct) / double(n);
        std::fprintf(stderr, "%zu images: accuracy %.2f%%, %.0f images/s (batch %zu, %zu thread%s, %s kernels)\n", n,
                     100 * accuracy, double(n) / seconds, batch, threads, threads == 1 ? "" : "s",
                     tern::packed::active_kernel_path_name());

        nlohmann::json result = {{"model", model_path},
                                 {"policy", model.policy()},
                                 {"images", n},
                                 {"accuracy", accuracy},
                                 {"images_per_s", double(n) / seconds},
                                 {"seconds", seconds},
                                 {"batch", batch}};
        result.update(model_facts());
        std::cout << result.dump() << std::endl;
        return 0;
    } catch (const std::exception& e) {
        std::cerr << "infer: error: " << e.what() << "\n";
        return 1;
    }
}
