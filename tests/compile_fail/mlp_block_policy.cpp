// Must NOT compile: int is not a quantization policy (one error line, from mlp_block itself).
#include "tern/layers/mlp_block.hpp"
int main() { tern::mlp_block<int> layer(8, 16); (void)layer; }
