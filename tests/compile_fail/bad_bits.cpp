// Must NOT compile: 1-bit activations are outside 2..16.
#include "tern/layers/linear.hpp"
int main() { tern::linear<tern::absmean_ternary, 1> layer(4, 2); (void)layer; }
