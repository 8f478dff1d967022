// two_policies: the README's API example as a program: one model definition, trained in fp32 and
// in absmean (BitNet b1.58) on Fashion-MNIST. Usage: two_policies [EPOCHS] [DATA_DIR]
#include <cstdio>
#include <cstdlib>
#include <string>

#include "tern/tern.hpp"

// The model, written once as a template over the policy.
template <class Policy>
auto make_mlp() {
    return tern::sequential{tern::flatten{},
                            tern::linear<Policy>(784, 256), tern::relu{},
                            tern::linear<Policy>(256, 256), tern::relu{},
                            tern::linear<Policy>(256, 10)};
}

template <class Policy>
double train(const tern::data::dataset& train_set, const tern::data::dataset& test_set, std::uint64_t epochs) {
    auto model = make_mlp<Policy>();
    tern::adamw optimizer(model.parameters(), {.lr = 1e-3f, .weight_decay = 0.0f});
    tern::softmax_cross_entropy loss;
    tern::data::batch_iterator batches(train_set, {.batch_size = 128, .seed = 1});
    std::size_t step = 0;
    for (std::uint64_t epoch = 0; epoch < epochs; ++epoch) {
        batches.begin_epoch(epoch);
        tern::train_classifier_epoch(model, loss, optimizer, batches, step);
    }
    tern::save_checkpoint(std::string("mlp_") + std::string(Policy::name) + ".safetensors", model, &optimizer);
    return tern::evaluate_classifier(model, test_set, 10).accuracy;
}

int main(int argc, char** argv) {
    try {
        const std::uint64_t epochs = argc > 1 ? std::strtoull(argv[1], nullptr, 10) : 1;
        const std::string dir = argc > 2 ? argv[2] : "/usr/share/datasets/fashion-mnist";
        auto train_set = tern::data::load_mnist_dir(dir, true);
        auto test_set = tern::data::load_mnist_dir(dir, false);
        const double full = train<tern::fp32>(train_set, test_set, epochs);
        const double ternary = train<tern::absmean_ternary>(train_set, test_set, epochs);  // BitNet b1.58
        std::printf("{\"fp32_test_accuracy\":%.4f,\"absmean_test_accuracy\":%.4f}\n", full, ternary);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "two_policies: error: %s\n", e.what());
        return 1;
    }
}
