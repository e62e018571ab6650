// `lowbit info`: CPU features, CUDA devices, registered quantization methods.
#include <omp.h>

#include <cstdio>
#include <memory>

#include "cli/commands.h"
#include "engine/gpu_device.h"
#include "kernels/cpu/cpu_features.h"
#include "quant/registry.h"

namespace lowbit::cli {

namespace {

std::string joined(const std::vector<std::string>& items) {
  std::string out;
  for (const auto& s : items) out += (out.empty() ? "" : ", ") + s;
  return out;
}

// Two lines per registered method (built-in and plugin), in registration order:
//   int4                 [cpu] min capability: any, quantizes float checkpoints online
//       description
void print_methods(const quant::MethodRegistry& registry) {
  std::printf("Quantization methods (%zu):\n", registry.methods().size());
  for (const auto& m : registry.methods()) {
    std::string capability =
        m.min_capability < 0 ? "any" : "sm_" + std::to_string(m.min_capability) + "+";
    std::string flags = m.quantizes_online ? ", quantizes float checkpoints online" : "";
    std::string origin = m.origin == "built-in" ? "" : ", plugin " + m.origin;
    std::printf("  %-20s [%s] min capability: %s%s%s\n      %s\n", m.name.c_str(),
                joined(m.backends).c_str(), capability.c_str(), flags.c_str(), origin.c_str(),
                m.description.c_str());
  }
}

}  // namespace

Runner add_info(CLI::App& app) {
  auto plugins = std::make_shared<std::vector<std::string>>();
  auto* cmd = app.add_subcommand("info", "hardware and registered quantization methods");
  add_plugin_option(*cmd, *plugins);
  return [plugins] {
    const quant::MethodRegistry registry = method_registry(*plugins);  // plugin errors first
    const auto& f = kernels::cpu::cpu_features();
    std::printf("CPU: %d threads; SIMD:%s%s%s%s%s; kernels use %s\n", omp_get_max_threads(),
                f.avx2 ? " avx2" : "", f.fma ? " fma" : "", f.f16c ? " f16c" : "",
                f.avx512 ? " avx512(f,bw,vl)" : "", f.avx512_vnni ? " avx512-vnni" : "",
                kernels::cpu::isa_name(kernels::cpu::active_isa()));
    std::printf("%s", engine::cuda_info_text().c_str());
    print_methods(registry);
    return 0;
  };
}

}  // namespace lowbit::cli
