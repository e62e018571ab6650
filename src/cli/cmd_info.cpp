// `lowbit info`: CPU features, CUDA devices, registered quantization methods; with --kernels,
// which GPU kernel each method's linear layers run at which batch size.
#include <omp.h>

#include <cstdio>
#include <memory>

#include "cli/commands.h"
#include "engine/gpu_device.h"
#include "kernels/cpu/cpu_features.h"
#include "kernels/gpu_kernel_registry.h"
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

// `--kernels`: per GPU weight format (and the methods that load into it), the kernel the
// Llama-3-8B gate/up projection (n 28672, k 4096) and down projection (n 4096, k 14336; int
// groups of 128) run at m = 1 ... 4096 rows, on this machine's first GPU (sm_90 assumed
// without one), honouring LOWBIT_DISABLE_KERNELS. Per-layer shape limits are checked at load,
// not here.
void print_kernels() {
  int cc = 90;
  std::string device = "no GPU found: sm_90 assumed";
  auto devices = engine::cuda_devices();
  if (!devices.empty()) {
    cc = devices.front().cc_major * 10 + devices.front().cc_minor;
    device = devices.front().name + ", sm_" + std::to_string(cc);
  }
  const std::vector<std::string> disabled = kernels::disabled_kernels_from_env();
  using F = kernels::GpuWeightFormat;
  const std::pair<F, const char*> rows[] = {
      {F::kBf16, "unquantized, gguf (dequantized to bf16)"},
      {F::kW4A16, "awq, gptq 2/3/4-bit, compressed-tensors int4, int4"},
      {F::kW8A16, "gptq 8-bit, compressed-tensors int8, int8, bnb int8"},
      {F::kFp8Rowwise, "fp8 online; fp8 / modelopt / c-t FP8 tensor or channel"},
      {F::kFp8PerTensor, "(one scale per tensor: checkpoints run it rowwise)"},
      {F::kFp8Block, "fp8 / compressed-tensors FP8 128x128 blocks"},
      {F::kInt8W8A8, "compressed-tensors int8 W8A8"},
  };
  struct Shape {
    const char* name;
    int64_t n, k;
  };
  for (const Shape& layer : {Shape{"gate/up", 28672, 4096}, Shape{"down", 4096, 14336}}) {
    // The cost rules' estimate; at load, a wq weight's measured crossover
    // (wq_gemm_max_fast_rows) refines where W4A16/W8A16 switch to dequantize + cuBLASLt.
    std::printf("GPU kernels by batch size (m rows), Llama-3-8B %s [%lld, %lld], %s%s:\n",
                layer.name, (long long)layer.n, (long long)layer.k, device.c_str(),
                disabled.empty() ? "" : ("; LOWBIT_DISABLE_KERNELS=" + joined(disabled)).c_str());
    const std::vector<int64_t> ms = {1, 16, 64, 256, 4096};
    std::printf("  %-16s %-56s", "format", "methods");
    for (int64_t m : ms) std::printf(" %-20s", ("m=" + std::to_string(m)).c_str());
    std::printf("\n");
    for (const auto& [format, methods] : rows) {
      kernels::GpuLinearShape shape;
      shape.format = format;
      shape.n = layer.n;
      shape.k = layer.k;
      shape.group_size = format == F::kW4A16 ? 128 : format == F::kW8A16 ? layer.k : 0;
      shape.capability = cc;
      const auto plan = kernels::GpuKernelPlan::make(shape, disabled, nullptr);
      std::printf("  %-16s %-56s", kernels::gpu_weight_format_name(format), methods);
      for (int64_t m : ms) {
        const kernels::GpuKernelInfo* k = plan.choose(m);
        std::printf(" %-20s", k ? k->name : "none");
      }
      std::printf("\n");
      if (plan.empty() || !plan.choose(4096)) std::printf("      %s\n", plan.reasons().c_str());
    }
  }
}

}  // namespace

Runner add_info(CLI::App& app) {
  auto plugins = std::make_shared<std::vector<std::string>>();
  auto kernels_flag = std::make_shared<bool>(false);
  auto* cmd = app.add_subcommand("info", "hardware and registered quantization methods");
  add_plugin_option(*cmd, *plugins);
  cmd->add_flag("--kernels", *kernels_flag,
                "show which GPU kernel each method's linear layers run at m = 1 ... 4096 rows");
  return [plugins, kernels_flag] {
    const quant::MethodRegistry registry = method_registry(*plugins);  // plugin errors first
    const auto& f = kernels::cpu::cpu_features();
    std::printf("CPU: %d threads; SIMD:%s%s%s%s%s; kernels use %s\n", omp_get_max_threads(),
                f.avx2 ? " avx2" : "", f.fma ? " fma" : "", f.f16c ? " f16c" : "",
                f.avx512 ? " avx512(f,bw,vl)" : "", f.avx512_vnni ? " avx512-vnni" : "",
                kernels::cpu::isa_name(kernels::cpu::active_isa()));
    std::printf("%s", engine::cuda_info_text().c_str());
    print_methods(registry);
    if (*kernels_flag) print_kernels();
    return 0;
  };
}

}  // namespace lowbit::cli
