// Run-time CPU feature detection and the SIMD level the CPU kernels use.
// The level is the best the CPU supports, lowered (never raised) by the environment variable
// LOWBIT_CPU_ISA=scalar|avx2|avx512 so that tests and benchmarks can compare variants.
#pragma once

#include <string_view>

namespace lowbit::kernels::cpu {

struct CpuFeatures {
  bool avx2 = false;
  bool fma = false;
  bool f16c = false;
  bool avx512 = false;  // AVX-512 F + BW + VL + DQ (what the *_avx512.cpp files are built for)
  bool avx512_vnni = false;
  bool avx512_bf16 = false;
};

// Ordered: a higher level needs everything a lower one needs.
enum class Isa { kScalar = 0, kAvx2 = 1, kAvx512 = 2 };

// Detected once (cpuid via __builtin_cpu_supports); does not read the environment.
const CpuFeatures& cpu_features();

// The best level the CPU supports.
Isa max_isa();

// max_isa() lowered by LOWBIT_CPU_ISA (read once). An unknown value or one above max_isa() is
// ignored with a one-line warning on stderr: a forced level must never crash the process.
Isa active_isa();

// Whether this CPU can run kernels of level `isa`.
bool isa_supported(Isa isa);
// Throws lowbit::Error naming `isa` and max_isa() when this CPU cannot run `isa`.
void require_isa(Isa isa);

const char* isa_name(Isa isa);  // "scalar", "avx2", "avx512"

}  // namespace lowbit::kernels::cpu
