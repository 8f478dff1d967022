# Compiles SOURCE and passes only if compilation fails with EXPECT in the diagnostics, and with
# exactly one error (a wrong policy must give one readable line, not a cascade).
execute_process(
  COMMAND ${COMPILER} -std=c++20 -fsyntax-only ${INCLUDES} ${SOURCE}
  RESULT_VARIABLE result OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(result EQUAL 0)
  message(FATAL_ERROR "${SOURCE} compiled, but it must be rejected")
endif()
string(FIND "${err}" "${EXPECT}" found)
if(found EQUAL -1)
  message(FATAL_ERROR "${SOURCE} was rejected without the expected message '${EXPECT}':\n${err}")
endif()
string(REGEX MATCHALL "error: " errors "${err}")
list(LENGTH errors error_count)
if(NOT error_count EQUAL 1)
  message(FATAL_ERROR "${SOURCE} was rejected with ${error_count} errors instead of one:\n${err}")
endif()
message(STATUS "rejected as expected: ${EXPECT}")
