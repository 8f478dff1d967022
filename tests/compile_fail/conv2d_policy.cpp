// Must NOT compile: int is not a quantization policy (one error line, from conv2d itself).
#include "tern/layers/conv2d.hpp"
int main() { tern::conv2d<int> layer(3, 4, 3); (void)layer; }
