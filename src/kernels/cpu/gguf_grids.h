// Lookup tables of the GGUF IQ and MXFP4 block formats (format constants, ggml-common.h).
// Defined in gguf_grids.cpp, which tools/gen_gguf_grids.py generates from the PyPI `gguf`
// package. Each grid row holds the 8 (IQ2_*, IQ1_*) or 4 (IQ3_*) magnitudes one index
// selects, in ggml's in-memory order, so a row may be read as one little-endian u64/u32.
#pragma once

#include <cstdint>

namespace lowbit::kernels::cpu {

extern const uint8_t kIq2xxsGrid[256][8];  // values 8, 25, 43
extern const uint8_t kIq2xsGrid[512][8];   // values 8, 25, 43
extern const uint8_t kIq2sGrid[1024][8];   // values 8, 25, 43
extern const uint8_t kIq3xxsGrid[256][4];  // values 4, 12, ..., 62
extern const uint8_t kIq3sGrid[512][4];    // values 1, 3, ..., 15
extern const int8_t kIq1sGrid[2048][8];    // values -1, 0, 1 (IQ1_S and IQ1_M)

// 7-bit sign index -> 8 sign bits (bit j set: element j negative; the 8th bit makes the
// number of negative signs even). Used by IQ2_XXS, IQ2_XS and IQ3_XXS.
extern const uint8_t kKsignsIq2xs[128];

extern const int8_t kIq4nlValues[16];  // IQ4_NL / IQ4_XS non-linear 4-bit values
extern const int8_t kMxfp4Values[16];  // e2m1 values, doubled (0, 1, 2, 3, 4, 6, 8, 12, -0, ...)

// IQ1_S / IQ1_M: every grid value is shifted by ±kIq1sDelta (sign chosen per group).
inline constexpr float kIq1sDelta = 0.125f;

}  // namespace lowbit::kernels::cpu
