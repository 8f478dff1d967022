// Must NOT compile: the packed kernels run 8-bit activations, so a ternary layer trained with
// 4-bit activations has no frozen form.
#include "tern/deploy/freeze.hpp"
int main() {
    tern::linear<tern::absmean_ternary, 4> layer(4, 2);
    auto frozen = tern::freeze(layer);
    (void)frozen;
}
