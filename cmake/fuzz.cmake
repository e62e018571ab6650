# libFuzzer targets (RELIABILITY.md): bin/gguf_fuzz, the GGUF reader under ASan + UBSan.
# libFuzzer ships with clang, not g++, so whatever compiler builds lowbit, the fuzzer is compiled
# by one clang++ command (a handful of sources: the reader and core/). LOWBIT_FUZZ=AUTO builds it
# when a clang++ that links -fsanitize=fuzzer is found (scripts/install-deps.sh installs clang and
# libclang-rt-14-dev), ON requires it, OFF leaves it out. ctest runs it for a bounded time
# (test gguf_fuzz_bounded, fuzz/run-bounded.sh) over the committed corpus fuzz/corpus/gguf.
set(LOWBIT_FUZZ AUTO CACHE STRING "Build the libFuzzer targets with clang++: AUTO, ON or OFF")

if(NOT LOWBIT_FUZZ STREQUAL "OFF")
  find_program(LOWBIT_CLANGXX NAMES clang++ clang++-16 clang++-15 clang++-14)
  set(LOWBIT_FUZZ_OK FALSE)
  if(LOWBIT_CLANGXX)
    # Probe once: does this clang++ link a fuzzer with ASan/UBSan (needs libclang-rt)?
    set(probe_dir ${CMAKE_BINARY_DIR}/fuzz_probe)
    file(WRITE ${probe_dir}/probe.cpp
         "#include <cstddef>\n#include <cstdint>\nextern \"C\" int LLVMFuzzerTestOneInput("
         "const uint8_t*, size_t) { return 0; }\n")
    execute_process(
      COMMAND ${LOWBIT_CLANGXX} -fsanitize=fuzzer,address,undefined ${probe_dir}/probe.cpp
              -o ${probe_dir}/probe
      RESULT_VARIABLE probe_rc OUTPUT_QUIET ERROR_QUIET)
    if(probe_rc EQUAL 0)
      set(LOWBIT_FUZZ_OK TRUE)
    endif()
  endif()
  if(NOT LOWBIT_FUZZ_OK)
    if(LOWBIT_FUZZ STREQUAL "ON")
      message(FATAL_ERROR "LOWBIT_FUZZ=ON but no clang++ links -fsanitize=fuzzer "
                          "(found: '${LOWBIT_CLANGXX}'); install clang and libclang-rt-14-dev")
    endif()
    message(STATUS "lowbit: libFuzzer targets left out (no clang++ with -fsanitize=fuzzer)")
  else()
    message(STATUS "lowbit: libFuzzer targets built with ${LOWBIT_CLANGXX}")
    find_library(LOWBIT_FMT_LIB fmt REQUIRED)
    set(fuzz_sources ${PROJECT_SOURCE_DIR}/fuzz/gguf_fuzz.cpp ${PROJECT_SOURCE_DIR}/src/io/gguf.cpp)
    file(GLOB core_sources CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/src/core/*.cpp)
    list(APPEND fuzz_sources ${core_sources})
    set(fuzz_bin ${CMAKE_BINARY_DIR}/bin/gguf_fuzz)
    add_custom_command(
      OUTPUT ${fuzz_bin}
      COMMAND ${LOWBIT_CLANGXX} -std=c++20 -g -O1 -fno-omit-frame-pointer
              -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
              -I${PROJECT_SOURCE_DIR}/src ${fuzz_sources} ${LOWBIT_FMT_LIB} -o ${fuzz_bin}
      DEPENDS ${fuzz_sources} ${PROJECT_SOURCE_DIR}/src/io/gguf.h
      COMMENT "Building the libFuzzer target gguf_fuzz with clang++"
      VERBATIM)
    add_custom_target(gguf_fuzz ALL DEPENDS ${fuzz_bin})
    if(LOWBIT_BUILD_TESTS)
      add_test(NAME gguf_fuzz_bounded
               COMMAND bash ${PROJECT_SOURCE_DIR}/fuzz/run-bounded.sh ${fuzz_bin}
                       ${PROJECT_SOURCE_DIR}/fuzz/corpus/gguf 60)
      set_tests_properties(gguf_fuzz_bounded PROPERTIES LABELS "fuzz" TIMEOUT 300)
    endif()
  endif()
endif()
