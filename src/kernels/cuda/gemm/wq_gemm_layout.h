// Private to wq_gemm: the packed layout wq_gemm_pack (host) writes and the kernels
// (wq_gemm.cu) read. Shapes: n columns in column groups of 32 (cg = n / 32), k in steps of
// kStep(kind) input columns (int4 32, int8 16).
//
// codes: [step][cg][lane 0..31] 16-byte words (step-major: the blocks of one launch, each on
//   its own column groups, read one contiguous stretch of memory at a time), one per lane of a
//   warp; lane (g = lane / 4, t = lane % 4) holds the mma.m16n8k16 B fragments of columns cg·32 +
//   nt·8 + g (nt = 0..3) at the step's k offsets {2t, 2t+1, 2t+8, 2t+9} (+16 for the second k16
//   half of an int4 step): int4: 32-bit word j = fragments (ks = j / 2, nt = 2·(j % 2)) "A" and
//   (ks, nt + 1) "B";
//         A's values v0..v3 in nibbles 0,4,1,5 and B's in nibbles 2,6,3,7, so
//         (word >> 4p) & 0x000F000F puts one (v0,v1) or (v2,v3) pair in the two 16-bit halves.
//   int8: 32-bit word j = fragment nt = j, bytes v0, v1, v2, v3.
// params (one array per activation type, bf16 or f16 values): [group][cg][g 0..7][nt 0..3]
//   symmetric: uint16 scale; with zeros: 2 × uint32 = (scale | zoff << 16, c), z = zi + zf with
//   zi = round(z), zoff = int4: (128 + zi) as bf16 / (1024 + zi) as f16, the exponent-bias
//   constant the kernel ORs the nibble into, so (bias | q) − zoff = q − zi exactly; int8: zi as
//   int16; c = −zf·scale (0 for integer zeros), added by the kernel's fma.
// perm (act-order only): int32 [k], packed column c holds source column perm[c].
#pragma once

#include <cstdint>

#include "kernels/cuda/common/device_buffer.h"
#include "kernels/cuda/gemm/wq_gemm.h"

namespace lowbit::kernels::cuda {

inline int wq_step_k(cpu::WqKind kind) { return kind == cpu::WqKind::kInt8 ? 16 : 32; }

struct WqGpuWeight::Impl {
  DeviceBuffer codes;      // n·k/2 (int4) or n·k (int8) bytes
  DeviceBuffer params[2];  // [ActType]: bf16, f16
  DeviceBuffer perm;       // act-order only
  bool has_zeros = false;
  bool fractional_zeros = false;  // some zero is not an integer (c != 0 in params)
  // Act-order gather scratch [rows, k] 16-bit, grown by wq_gemm (documented in wq_gemm.h).
  mutable DeviceBuffer gathered;
  // Stream-K GEMV (wq_gemv_streamk.cu): per column group, the k-steps summed so far; zero
  // between launches (the last contributor resets it).
  DeviceBuffer streamk_counts;
  uint64_t code_bytes = 0, param_bytes = 0;
};

namespace wq_device {
// Allocates the current device's stream-K partial-sum slots (wq_gemv_streamk.cu) if it has
// none yet: called at weight upload, never during a graph capture.
void reserve_streamk_workspace();
void release_streamk_workspace();  // wq_release_device_scratch
}  // namespace wq_device

}  // namespace lowbit::kernels::cuda
