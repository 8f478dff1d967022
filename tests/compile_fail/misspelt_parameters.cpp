// Must NOT compile: the layer misspells collect_parameters, so its weight would silently never train.
#include "tern/layers/linear.hpp"
#include "tern/sequential.hpp"
struct scaled {
    tern::tensor scale = tern::zeros({1}), grad = tern::zeros({1});
    tern::tensor forward(const tern::tensor& x) { return x; }
    tern::tensor backward(const tern::tensor& g) { return g; }
    std::string describe() const { return "scaled"; }
    void collect_parameter(tern::parameter_list& out, const std::string& prefix) {
        out.push_back({prefix + "scale", &scale, &grad, false});
    }
};
int main() {
    auto model = tern::sequential{tern::linear<tern::fp32>(4, 4), scaled{}};
    (void)model.parameters();
}
