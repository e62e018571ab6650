// Device selection on machines with and without a GPU (runs in CI, which has none).
#include "engine/gpu_device.h"

#include <gtest/gtest.h>

#include "core/error.h"

namespace lowbit::engine {
namespace {

TEST(GpuDevice, CpuAndAutoAlwaysResolve) {
  EXPECT_EQ(resolve_device("cpu"), Device::kCpu);
  Device d = resolve_device("auto");
  EXPECT_EQ(d == Device::kCuda, !cuda_devices().empty());
  EXPECT_FALSE(cuda_info_text().empty());
}

TEST(GpuDevice, CudaWithoutGpuIsAClearError) {
  if (!cuda_devices().empty()) GTEST_SKIP() << "this machine has a GPU";
  try {
    resolve_device("cuda");
    FAIL() << "expected an error";
  } catch (const Error& e) {
    std::string msg = e.what();
    EXPECT_NE(msg.find("--device cuda"), std::string::npos) << msg;
    EXPECT_NE(msg.find("--device cpu"), std::string::npos) << msg;
    if (!cuda_backend_built())
      EXPECT_NE(msg.find("built without the CUDA backend"), std::string::npos) << msg;
  }
}

TEST(GpuDevice, UnknownDeviceNameIsRefused) { EXPECT_THROW(resolve_device("tpu"), Error); }

}  // namespace
}  // namespace lowbit::engine
