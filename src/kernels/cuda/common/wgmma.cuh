// Hopper warpgroup MMA (wgmma, sm_90a only) with the A operand in registers and B in shared
// memory: the wrappers the mixed-input GEMM (wq_gemm_wide.cu) needs. A warpgroup is 4
// consecutive warps starting at a warp index divisible by 4; every wrapper here must be
// reached by all 128 threads of the warpgroup together.
//
// Register A (m64 × k16, bf16 / f16): warp w of the warpgroup holds rows 16w .. 16w + 15 in
// the mma.m16n8k16 A-fragment layout (g = lane / 4, t = lane % 4): a[0] = (row g, k 2t, 2t+1),
// a[1] = (row g + 8, k 2t, 2t+1), a[2] = (row g, k 2t+8, 2t+9), a[3] = (row g + 8, k 2t+8, 2t+9).
// Accumulators (m64 × nN, fp32, N / 2 per thread): d[4j + e] = row 16w + g + 8·(e / 2),
// column 8j + 2t + (e % 2).
// B (k16 × nN) is K-major in shared memory, described by smem_desc_k_sw128: rows of 64
// 16-bit values (128 bytes) in 8-row atoms of 1024 bytes, the 16-byte chunk c of row r stored
// at chunk c ^ (r % 8) (the 128-byte swizzle); the atom base must be 1024-byte aligned, and the
// k16 slice kk of a 64-wide row starts 32·kk bytes in.
#pragma once

#include <cstdint>

namespace lowbit::kernels::cuda::wgmma {

// Compiled only for sm_90a: elsewhere the wrappers are empty and must not be reached.
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900 && defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define LOWBIT_WGMMA_ENABLED 1
#else
#define LOWBIT_WGMMA_ENABLED 0
#endif

// Shared-memory matrix descriptor: start address, stride between 8-row atoms (1024 bytes),
// 128-byte swizzle (layout type 1 in bits 62..63); the leading offset is unused for
// swizzled K-major layouts (encoded as 1).
__device__ __forceinline__ uint64_t smem_desc_k_sw128(const void* p) {
  const uint32_t addr = static_cast<uint32_t>(__cvta_generic_to_shared(p));
  uint64_t desc = (addr & 0x3FFFFu) >> 4;
  desc |= uint64_t(1) << 16;          // leading byte offset (unused) >> 4
  desc |= uint64_t(1024 >> 4) << 32;  // stride byte offset >> 4
  desc |= uint64_t(1) << 62;          // 128-byte swizzle
  return desc;
}

// Orders this thread's register writes (A fragments, accumulators) before the next wgmma.
__device__ __forceinline__ void fence() {
#if LOWBIT_WGMMA_ENABLED
  asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
#endif
}
__device__ __forceinline__ void commit_group() {
#if LOWBIT_WGMMA_ENABLED
  asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
#endif
}
// Waits until at most N committed groups are still running.
template <int N>
__device__ __forceinline__ void wait_group() {
#if LOWBIT_WGMMA_ENABLED
  asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
#endif
}
// Makes this thread's generic-proxy shared-memory writes (cp.async, st.shared) visible to the
// async proxy that wgmma reads B through; then a barrier.
__device__ __forceinline__ void fence_proxy_async_shared() {
#if LOWBIT_WGMMA_ENABLED
  asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
#endif
}

// The wgmma.mma_async of one shape, TYPE "f16" or "bf16" (operands: d, a, desc_b, scale_d).
#define LOWBIT_WGMMA_RS_N32(TYPE)                                                               \
  asm volatile(                                                                                 \
      "{\n.reg .pred p;\nsetp.ne.b32 p, %21, 0;\n"                                              \
      "wgmma.mma_async.sync.aligned.m64n32k16.f32." TYPE "." TYPE                               \
      " {"                                                                                      \
      "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15"                    \
      "}, {%16, %17, %18, %19}, %20, p, 1, 1, 0;\n}\n"                                          \
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]),     \
        "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), \
        "+f"(d[14]), "+f"(d[15])                                                                \
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc_b), "r"(scale_d))

#define LOWBIT_WGMMA_RS_N64(TYPE)                                                                  \
  asm volatile(                                                                                    \
      "{\n.reg .pred p;\nsetp.ne.b32 p, %37, 0;\n"                                                 \
      "wgmma.mma_async.sync.aligned.m64n64k16.f32." TYPE "." TYPE                                  \
      " {"                                                                                         \
      "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "                     \
      "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31"             \
      "}, {%32, %33, %34, %35}, %36, p, 1, 1, 0;\n}\n"                                             \
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]),        \
        "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]),    \
        "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), \
        "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), \
        "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])                                         \
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc_b), "r"(scale_d))

#define LOWBIT_WGMMA_RS_N128(TYPE)                                                                 \
  asm volatile(                                                                                    \
      "{\n.reg .pred p;\nsetp.ne.b32 p, %69, 0;\n"                                                 \
      "wgmma.mma_async.sync.aligned.m64n128k16.f32." TYPE "." TYPE                                 \
      " {"                                                                                         \
      "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "                     \
      "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, "           \
      "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, "           \
      "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63"             \
      "}, {%64, %65, %66, %67}, %68, p, 1, 1, 0;\n}\n"                                             \
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]),        \
        "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]),    \
        "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), \
        "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), \
        "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), \
        "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), \
        "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), \
        "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), \
        "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), \
        "+f"(d[63])                                                                                \
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc_b), "r"(scale_d))

// d (+)= A · B for one m64 × nN × k16 tile: A from registers, B through desc_b; scale_d = 0
// overwrites d instead of accumulating.
template <int N, bool kF16>
__device__ __forceinline__ void mma_rs(float (&d)[N / 2], const uint32_t (&a)[4], uint64_t desc_b,
                                       int scale_d = 1) {
  static_assert(N == 32 || N == 64 || N == 128, "mma_rs: N must be 32, 64 or 128");
#if LOWBIT_WGMMA_ENABLED
  if constexpr (N == 32) {
    if constexpr (kF16)
      LOWBIT_WGMMA_RS_N32("f16");
    else
      LOWBIT_WGMMA_RS_N32("bf16");
  } else if constexpr (N == 64) {
    if constexpr (kF16)
      LOWBIT_WGMMA_RS_N64("f16");
    else
      LOWBIT_WGMMA_RS_N64("bf16");
  } else {
    if constexpr (kF16)
      LOWBIT_WGMMA_RS_N128("f16");
    else
      LOWBIT_WGMMA_RS_N128("bf16");
  }
#endif
}

#undef LOWBIT_WGMMA_RS_N32
#undef LOWBIT_WGMMA_RS_N64
#undef LOWBIT_WGMMA_RS_N128

}  // namespace lowbit::kernels::cuda::wgmma
