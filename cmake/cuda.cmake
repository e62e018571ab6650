# The CUDA backend (docs/cuda.md). Included from the top-level CMakeLists.txt after lowbit_core
# exists. With LOWBIT_CUDA=AUTO it is built when a CUDA compiler is found, and left out
# cleanly otherwise: then LOWBIT_HAVE_CUDA is undefined and `--device cuda` reports that this
# build has no CUDA backend.
set(LOWBIT_HAVE_CUDA OFF)
if(LOWBIT_SANITIZE AND LOWBIT_CUDA STREQUAL "AUTO")
  # ASan/UBSan builds are host-only (nvcc takes no -fsanitize); GPU code has compute-sanitizer.
  message(STATUS "lowbit: LOWBIT_SANITIZE build; the CUDA backend is left out")
elseif(NOT LOWBIT_CUDA STREQUAL "OFF")
  include(CheckLanguage)
  check_language(CUDA)
  if(CMAKE_CUDA_COMPILER)
    set(LOWBIT_HAVE_CUDA ON)
  elseif(LOWBIT_CUDA STREQUAL "ON")
    message(FATAL_ERROR "LOWBIT_CUDA=ON but no CUDA compiler was found (set CMAKE_CUDA_COMPILER)")
  else()
    message(STATUS "lowbit: no CUDA compiler found; building without the CUDA backend")
  endif()
endif()

if(LOWBIT_HAVE_CUDA)
  # Ampere (sm_80), Ada (sm_89) and Hopper (sm_90a) machine code plus compute_80 PTX (for newer
  # GPUs, compiled by the driver); few targets so that CI's
  # 2-core compile stays short. Override with -DCMAKE_CUDA_ARCHITECTURES=...
  if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES)
    set(CMAKE_CUDA_ARCHITECTURES "80-real;89-real;90a-real;80-virtual")
  endif()
  enable_language(CUDA)
  set(CMAKE_CUDA_STANDARD 17)  # C++17 in .cu files (CMake < 3.26 knows no CUDA20 flags for nvcc)
  set(CMAKE_CUDA_STANDARD_REQUIRED ON)
  find_package(CUDAToolkit REQUIRED)
  message(STATUS "lowbit: CUDA backend ON (nvcc ${CMAKE_CUDA_COMPILER_VERSION}, "
                 "architectures ${CMAKE_CUDA_ARCHITECTURES})")

  file(GLOB_RECURSE LOWBIT_CUDA_SOURCES CONFIGURE_DEPENDS
       ${PROJECT_SOURCE_DIR}/src/kernels/cuda/*.cu ${PROJECT_SOURCE_DIR}/src/kernels/cuda/*.cpp
       ${PROJECT_SOURCE_DIR}/src/*_cuda.cpp)
  target_sources(lowbit_core PRIVATE ${LOWBIT_CUDA_SOURCES})
  target_link_libraries(lowbit_core PUBLIC CUDA::cudart CUDA::cublasLt)
  target_compile_definitions(lowbit_core PUBLIC LOWBIT_HAVE_CUDA=1)
  # nvcc: no host warnings flags from add_compile_options (they are GCC's, not nvcc's).
  # lowbit_core was created before CUDA was enabled: set its CUDA properties explicitly.
  set_target_properties(lowbit_core PROPERTIES CUDA_ARCHITECTURES "${CMAKE_CUDA_ARCHITECTURES}"
                        CUDA_STANDARD 17 CUDA_STANDARD_REQUIRED ON CUDA_SEPARABLE_COMPILATION OFF)
  target_compile_options(lowbit_core PRIVATE
    $<$<COMPILE_LANGUAGE:CUDA>:--expt-relaxed-constexpr -Xcompiler=-Wno-unused-parameter>)

  add_executable(gpu_decode_bench bench/gpu_decode_bench.cpp)
  target_link_libraries(gpu_decode_bench PRIVATE lowbit_core)
  add_executable(gpu_w8a8_bench bench/gpu_w8a8_bench.cpp)  # FP8/INT8 W8A8 vs bf16
  target_link_libraries(gpu_w8a8_bench PRIVATE lowbit_core)
  add_executable(gpu_wq_gemm_bench bench/gpu_wq_gemm_bench.cpp)  # W4A16/W8A16 vs bf16
  target_link_libraries(gpu_wq_gemm_bench PRIVATE lowbit_core)
endif()
