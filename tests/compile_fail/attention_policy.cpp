// Must NOT compile: int is not a quantization policy (one error line, from attention itself).
#include "tern/layers/attention.hpp"
int main() { tern::causal_self_attention<int> layer(8, 2); (void)layer; }
