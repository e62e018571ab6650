// `lowbit info`: CPU features, CUDA devices, registered quantization methods.
#include <omp.h>

#include <cstdio>

#include "cli/commands.h"
#include "engine/gpu_device.h"
#include "kernels/cpu/cpu_features.h"
#include "quant/registry.h"

namespace lowbit::cli {

Runner add_info(CLI::App& app) {
  app.add_subcommand("info", "hardware and registered quantization methods");
  return [] {
    const auto& f = kernels::cpu::cpu_features();
    std::printf("CPU: %d threads; SIMD:%s%s%s%s%s; kernels use %s\n", omp_get_max_threads(),
                f.avx2 ? " avx2" : "", f.fma ? " fma" : "", f.f16c ? " f16c" : "",
                f.avx512 ? " avx512(f,bw,vl)" : "", f.avx512_vnni ? " avx512-vnni" : "",
                kernels::cpu::isa_name(kernels::cpu::active_isa()));
    std::printf("%s", engine::cuda_info_text().c_str());
    std::printf("Quantization methods:\n");
    const auto registry = quant::MethodRegistry::builtin();
    for (const auto& m : registry.methods()) {
      std::string backends;
      for (const auto& b : m.backends) backends += (backends.empty() ? "" : ", ") + b;
      std::printf("  %-14s [%s] %s\n", m.name.c_str(), backends.c_str(), m.description.c_str());
    }
    return 0;
  };
}

}  // namespace lowbit::cli
