// Conan test_package: a ternary layer built and run through the installed package.
#include <tern/tern.hpp>

#include <cstdio>

int main() {
    tern::manual_seed(1);
    tern::linear<tern::absmean_ternary> layer(4, 2);
    tern::tensor x(tern::shape_t{1, 4});
    for (std::size_t i = 0; i < x.size(); ++i) x.data()[i] = float(i) - 1.5f;
    const tern::tensor y = layer.forward(x);
    std::printf("tern %s: %s -> [%zu, %zu]\n", tern::version_string, layer.describe().c_str(), y.shape()[0],
                y.shape()[1]);
    return y.shape()[0] == 1 && y.shape()[1] == 2 ? 0 : 1;
}
