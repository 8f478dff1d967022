// Must NOT compile: a frozen layer is forward-only (no training state, no backward).
#include "tern/deploy/freeze.hpp"
int main() {
    tern::linear<tern::absmean_ternary> layer(4, 2);
    auto frozen = tern::freeze(layer);
    (void)frozen.backward(tern::zeros({1, 2}));
}
