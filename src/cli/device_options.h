// `--device`, `--kv-cache-dtype`, `--kv-cache-scales`, `--gpu-memory-utilization`: the options
// shared by commands that can run a model on the CUDA backend.
#pragma once

#include <CLI/CLI.hpp>
#include <string>

#include "engine/gpu_device.h"
#include "engine/gpu_generate.h"

namespace lowbit::cli {

struct DeviceOptions {
  std::string device = "cpu";  // cpu | cuda | auto
  engine::CudaRunOptions cuda;
};

void add_device_options(CLI::App& cmd, DeviceOptions& opts);

}  // namespace lowbit::cli
