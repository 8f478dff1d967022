#pragma once
// for_each_kind<V1, V2, ...>(f): calls f(std::integral_constant<T, V>{}) for each value, so a test
// can loop over choices that are template arguments (an lm_design, an mlp_kind, a position_kind).
#include <type_traits>

namespace tern_test {

template <auto... Values, class Fn>
void for_each_kind(Fn&& fn) {
    (fn(std::integral_constant<decltype(Values), Values>{}), ...);
}

}  // namespace tern_test
