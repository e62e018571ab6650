// The GGUF block formats as packed structs, field for field in file order (ggml-common.h;
// FORMATS.md §8.5). fp16 fields are IEEE half bit patterns (uint16_t), Q8_K's d is fp32.
// sizeof matches the on-disk block size (checked below against core/dtype's table). Blocks
// of a row are not aligned: read fields through these packed structs or memcpy.
//
// Element order within a block (QK_K = 256 for the "K"/IQ/TQ super-blocks):
//   Q4_0..Q8_1, IQ4_NL, MXFP4: 32 elements; byte j holds elements j (low nibble) and j+16.
//   Q2_K..Q6_K, IQ*, TQ*: 256 elements in sub-blocks of 16 or 32 with small integer scales.
// The reference decoders (dequantize.cpp / gguf_dequantize.cpp) spell each layout out.
#pragma once

#include <cstdint>

#include "core/dtype.h"

namespace lowbit::kernels::cpu {

inline constexpr int kQK = 32;     // elements per block of the 32-element formats
inline constexpr int kQK_K = 256;  // elements per super-block

#pragma pack(push, 1)
// ---- 32-element blocks ----
struct BlockQ4_0 {
  uint16_t d;
  uint8_t qs[16];
};
struct BlockQ4_1 {
  uint16_t d, m;
  uint8_t qs[16];
};
struct BlockQ5_0 {
  uint16_t d;
  uint8_t qh[4];  // 5th bits, u32 little-endian: bit j -> element j
  uint8_t qs[16];
};
struct BlockQ5_1 {
  uint16_t d, m;
  uint8_t qh[4];
  uint8_t qs[16];
};
struct BlockQ8_0 {
  uint16_t d;
  int8_t qs[32];
};
struct BlockQ8_1 {
  uint16_t d, s;  // fp16: d = amax/127, s = d·Σ qs
  int8_t qs[32];
};
struct BlockIQ4_NL {
  uint16_t d;
  uint8_t qs[16];  // indices into kIq4nlValues
};
struct BlockMXFP4 {
  uint8_t e;       // E8M0 shared exponent
  uint8_t qs[16];  // indices into kMxfp4Values (e2m1, doubled; hence the "half" scale)
};

// ---- 256-element super-blocks: K-quants ----
struct BlockQ2_K {
  uint8_t scales[16];  // low nibble scale, high nibble min, per 16 elements
  uint8_t qs[64];      // 2-bit quants
  uint16_t d, dmin;
};
struct BlockQ3_K {
  uint8_t hmask[32];   // 3rd bit (set: no -4 offset)
  uint8_t qs[64];      // low 2 bits
  uint8_t scales[12];  // 16 6-bit signed scales (biased by 32)
  uint16_t d;
};
struct BlockQ4_K {
  uint16_t d, dmin;
  uint8_t scales[12];  // 8 6-bit scales and 8 6-bit mins
  uint8_t qs[128];
};
struct BlockQ5_K {
  uint16_t d, dmin;
  uint8_t scales[12];
  uint8_t qh[32];
  uint8_t qs[128];
};
struct BlockQ6_K {
  uint8_t ql[128];    // low 4 bits
  uint8_t qh[64];     // high 2 bits
  int8_t scales[16];  // per 16 elements
  uint16_t d;
};
struct BlockQ8_K {
  float d;
  int8_t qs[256];
  int16_t bsums[16];  // sums of qs per 16 elements
};

// ---- 256-element super-blocks: i-quants ----
struct BlockIQ2_XXS {
  uint16_t d;
  uint16_t qs[32];  // per 32 elements: 4 grid bytes, then u32 = 4×7 sign bits | 4-bit scale
};
struct BlockIQ2_XS {
  uint16_t d;
  uint16_t qs[32];    // 9-bit grid index | 7-bit sign index << 9
  uint8_t scales[8];  // two 4-bit scales per 32 elements
};
struct BlockIQ2_S {
  uint16_t d;
  uint8_t qs[64];  // [0,32): low 8 bits of the grid indices; [32,64): sign bits
  uint8_t qh[8];   // high 2 bits of the grid indices
  uint8_t scales[8];
};
struct BlockIQ3_XXS {
  uint16_t d;
  uint8_t qs[96];  // [0,64): grid indices; [64,96): per 32 elements u32 signs | scale
};
struct BlockIQ3_S {
  uint16_t d;
  uint8_t qs[64];  // low 8 bits of the grid indices
  uint8_t qh[8];   // 9th bits
  uint8_t signs[32];
  uint8_t scales[4];
};
struct BlockIQ1_S {
  uint16_t d;
  uint8_t qs[32];  // low 8 bits of the grid indices
  uint16_t qh[8];  // per 32: 4×3 high index bits, 3-bit scale, delta sign (bit 15)
};
struct BlockIQ1_M {
  uint8_t qs[32];
  uint8_t qh[16];     // per 8 elements: 3 high index bits + delta sign, two per byte
  uint8_t scales[8];  // 4 u16: 3-bit scales; the fp16 d is spread over their top nibbles
};
struct BlockIQ4_XS {
  uint16_t d;
  uint16_t scales_h;    // high 2 bits of 8 6-bit scales
  uint8_t scales_l[4];  // low 4 bits
  uint8_t qs[128];
};

// ---- ternary ----
struct BlockTQ1_0 {
  uint8_t qs[48];  // 5 trits per byte (base-3, fixed-point)
  uint8_t qh[4];   // 4 trits per byte
  uint16_t d;
};
struct BlockTQ2_0 {
  uint8_t qs[64];  // 2 bits per element (0, 1, 2 -> -1, 0, 1)
  uint16_t d;
};
#pragma pack(pop)

// The block struct of each GGUF block format, for generic code: BlockOf<DType::Q4_K>::type.
template <DType T>
struct BlockOf;
#define LOWBIT_BLOCK_OF(T, S) \
  template <>                 \
  struct BlockOf<DType::T> {  \
    using type = S;           \
  };
LOWBIT_BLOCK_OF(Q4_0, BlockQ4_0)
LOWBIT_BLOCK_OF(Q4_1, BlockQ4_1)
LOWBIT_BLOCK_OF(Q5_0, BlockQ5_0)
LOWBIT_BLOCK_OF(Q5_1, BlockQ5_1)
LOWBIT_BLOCK_OF(Q8_0, BlockQ8_0)
LOWBIT_BLOCK_OF(Q8_1, BlockQ8_1)
LOWBIT_BLOCK_OF(Q2_K, BlockQ2_K)
LOWBIT_BLOCK_OF(Q3_K, BlockQ3_K)
LOWBIT_BLOCK_OF(Q4_K, BlockQ4_K)
LOWBIT_BLOCK_OF(Q5_K, BlockQ5_K)
LOWBIT_BLOCK_OF(Q6_K, BlockQ6_K)
LOWBIT_BLOCK_OF(Q8_K, BlockQ8_K)
LOWBIT_BLOCK_OF(IQ2_XXS, BlockIQ2_XXS)
LOWBIT_BLOCK_OF(IQ2_XS, BlockIQ2_XS)
LOWBIT_BLOCK_OF(IQ3_XXS, BlockIQ3_XXS)
LOWBIT_BLOCK_OF(IQ1_S, BlockIQ1_S)
LOWBIT_BLOCK_OF(IQ4_NL, BlockIQ4_NL)
LOWBIT_BLOCK_OF(IQ3_S, BlockIQ3_S)
LOWBIT_BLOCK_OF(IQ2_S, BlockIQ2_S)
LOWBIT_BLOCK_OF(IQ4_XS, BlockIQ4_XS)
LOWBIT_BLOCK_OF(IQ1_M, BlockIQ1_M)
LOWBIT_BLOCK_OF(TQ1_0, BlockTQ1_0)
LOWBIT_BLOCK_OF(TQ2_0, BlockTQ2_0)
LOWBIT_BLOCK_OF(MXFP4, BlockMXFP4)
#undef LOWBIT_BLOCK_OF

// On-disk sizes (ggml-common.h); core/dtype's table has the same numbers (gguf_types_test
// checks sizeof(BlockOf<T>) == traits(T).block_bytes for every T at run time).
static_assert(sizeof(BlockQ4_0) == 18 && sizeof(BlockQ4_1) == 20 && sizeof(BlockQ5_0) == 22 &&
              sizeof(BlockQ5_1) == 24 && sizeof(BlockQ8_0) == 34 && sizeof(BlockQ8_1) == 36 &&
              sizeof(BlockIQ4_NL) == 18 && sizeof(BlockMXFP4) == 17);
static_assert(sizeof(BlockQ2_K) == 84 && sizeof(BlockQ3_K) == 110 && sizeof(BlockQ4_K) == 144 &&
              sizeof(BlockQ5_K) == 176 && sizeof(BlockQ6_K) == 210 && sizeof(BlockQ8_K) == 292);
static_assert(sizeof(BlockIQ2_XXS) == 66 && sizeof(BlockIQ2_XS) == 74 && sizeof(BlockIQ2_S) == 82 &&
              sizeof(BlockIQ3_XXS) == 98 && sizeof(BlockIQ3_S) == 110 && sizeof(BlockIQ1_S) == 50 &&
              sizeof(BlockIQ1_M) == 56 && sizeof(BlockIQ4_XS) == 136);
static_assert(sizeof(BlockTQ1_0) == 54 && sizeof(BlockTQ2_0) == 66);

}  // namespace lowbit::kernels::cpu
