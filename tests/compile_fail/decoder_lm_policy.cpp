// Must NOT compile: int is not a quantization policy (one error line, from decoder_lm itself).
#include "tern/layers/transformer.hpp"
int main() { tern::decoder_lm<int> layer(tern::lm_config{}); (void)layer; }
