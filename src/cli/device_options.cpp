#include "cli/device_options.h"

namespace lowbit::cli {

void add_device_options(CLI::App& cmd, DeviceOptions& o) {
  cmd.add_option("--device", o.device,
                 "cpu, cuda, or auto (cuda when a usable GPU exists); default cpu")
      ->check(CLI::IsMember({"cpu", "cuda", "auto"}));
  cmd.add_option("--kv-cache-dtype", o.cuda.kv_cache_dtype,
                 "KV cache: auto (CUDA: bf16, or fp8 with checkpoint scales; CPU: f32), bf16, "
                 "fp8, fp8_e4m3, fp8_e5m2 (scales from the first prompt when the checkpoint has "
                 "none); the CPU rounds its fp32 cache through the same types; f16 (CPU only): "
                 "llama.cpp's default F16 cache with its CPU flash-attention arithmetic")
      ->check(CLI::IsMember({"auto", "f16", "bf16", "fp8", "fp8_e4m3", "fp8_e5m2"}));
  cmd.add_option("--kv-cache-scales", o.cuda.kv_cache_scales,
                 "FP8 KV scales computed from the first prompt: tensor (one key and one value "
                 "scale per layer; auto, the default) or head (one per layer and KV head); "
                 "scales stored in the checkpoint are used as they are")
      ->check(CLI::IsMember({"auto", "tensor", "head"}));
  cmd.add_option("--gpu-memory-utilization", o.cuda.gpu_memory_utilization,
                 "share of GPU memory for weights + KV cache (default 0.9)")
      ->check(CLI::Range(0.01, 1.0));
  cmd.add_flag("!--no-cuda-graphs", o.cuda.cuda_graphs, "run decode steps without CUDA graphs");
}

}  // namespace lowbit::cli
