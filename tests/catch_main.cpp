// Catch2's main, compiled once for all of tern's test programs.
#define CATCH_CONFIG_MAIN
#include <catch2/catch.hpp>
