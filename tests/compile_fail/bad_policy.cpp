// Must NOT compile: int is not a quantization policy.
#include "tern/layers/linear.hpp"
int main() { tern::linear<int> layer(4, 2); (void)layer; }
