#include "kernels/cpu/cpu_features.h"

#include <cstdio>
#include <cstdlib>
#include <string>

#include "core/error.h"

namespace lowbit::kernels::cpu {
namespace {

CpuFeatures detect() {
  CpuFeatures f;
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  f.avx2 = __builtin_cpu_supports("avx2");
  f.fma = __builtin_cpu_supports("fma");
  // GCC 12 has no "f16c" name for __builtin_cpu_supports; every CPU with AVX2 + FMA has F16C
  // (Haswell / Piledriver onwards), and the AVX-512 level implies it too.
  f.f16c = f.avx2 && f.fma;
  f.avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
             __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
  f.avx512_vnni = __builtin_cpu_supports("avx512vnni");
  f.avx512_bf16 = __builtin_cpu_supports("avx512bf16");
#endif
  return f;
}

Isa detect_max() {
  const CpuFeatures& f = cpu_features();
  if (f.avx512 && f.avx2 && f.fma && f.f16c && f.avx512_vnni && f.avx512_bf16) return Isa::kAvx512;
  if (f.avx2 && f.fma && f.f16c) return Isa::kAvx2;
  return Isa::kScalar;
}

Isa detect_active() {
  Isa best = max_isa();
  const char* env = std::getenv("LOWBIT_CPU_ISA");
  if (!env || !*env) return best;
  std::string v = env;
  Isa want;
  if (v == "scalar") {
    want = Isa::kScalar;
  } else if (v == "avx2") {
    want = Isa::kAvx2;
  } else if (v == "avx512") {
    want = Isa::kAvx512;
  } else {
    std::fprintf(stderr, "lowbit: LOWBIT_CPU_ISA='%s' is not one of scalar|avx2|avx512; using %s\n",
                 env, isa_name(best));
    return best;
  }
  if (int(want) > int(best)) {
    std::fprintf(stderr, "lowbit: LOWBIT_CPU_ISA=%s is not supported by this CPU; using %s\n", env,
                 isa_name(best));
    return best;
  }
  return want;
}

}  // namespace

const CpuFeatures& cpu_features() {
  static const CpuFeatures features = detect();
  return features;
}

Isa max_isa() {
  static const Isa isa = detect_max();
  return isa;
}

Isa active_isa() {
  static const Isa isa = detect_active();
  return isa;
}

bool isa_supported(Isa isa) { return int(isa) <= int(max_isa()); }

void require_isa(Isa isa) {
  if (!isa_supported(isa))
    fail("kernels: SIMD level {} requested but this CPU supports at most {}", isa_name(isa),
         isa_name(max_isa()));
}

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::kScalar:
      return "scalar";
    case Isa::kAvx2:
      return "avx2";
    case Isa::kAvx512:
      return "avx512";
  }
  return "unknown";
}

}  // namespace lowbit::kernels::cpu
