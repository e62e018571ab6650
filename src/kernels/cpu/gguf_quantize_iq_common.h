// Internal to the IQ2_* / IQ3_* quantizers (gguf_quantize_iq2.cpp, gguf_quantize_iq3.cpp): the
// steps ggml's quantize_row_iq{2_xxs,2_xs,2_s,3_xxs,3_s}_impl share, each with ggml's fp32
// expressions in ggml's order (the chosen grid points depend on every rounding). Files using
// them must be compiled without FMA contraction (see gguf_quantize.h).
//
// A block (16 or 32 elements) is quantized as |x| on a lattice grid (gguf_iq_grid_index.h)
// times one positive scale, with the signs stored apart:
//   1. signs and magnitudes xval (iq_signs_*), importance weights (iq_block_weights);
//   2. iq_search_block: try a range of inverse scales, round each group of 4/8 magnitudes to
//      levels, snap groups that are off the grid to their best neighbour, keep the scale with
//      the best weighted fit; then refit the scale once with the chosen points.
#pragma once

#include <cstdint>

#include "kernels/cpu/gguf_iq_grid_index.h"

namespace lowbit::kernels::cpu::gguf_detail {

inline constexpr int kQK_K_IQ = 256;  // super-block elements

// MAX(a, b) of ggml: a when a > b, else b (keeps ggml's choice between equal values).
inline float ggml_max(float a, float b) { return a > b ? a : b; }

// Σ x² over one 256-element super-block, summed in order.
float iq_sum_x2(const float* xbl);

// Per-element importance: qw·sqrt(sigma2 + x²) with an importance matrix, else
// `no_imatrix_bias` + x² (ggml uses 0 for IQ3_*, sigma2/4 for IQ2_S). waux = sqrt(weight).
void iq_block_weights(int n, const float* xb, const float* qw, float sigma2, float no_imatrix_bias,
                      float* weight, float* waux);

// Signs of 8 elements: xval = |x|, bit i set for x[i] < 0 (IQ2_S, IQ3_S store all 8 bits).
uint8_t iq_signs_plain(const float* x8, float* xval8);
// The same with an even number of negatives (IQ2_XXS, IQ2_XS, IQ3_XXS store 7 sign bits and
// derive the 8th): when the count is odd the element of least weight·x² keeps the wrong sign,
// its xval becoming negative. Returns the 7 stored bits.
uint8_t iq_signs_even(const float* x8, const float* weight8, float* xval8);
// iq_signs_even over each group of 8 of an n-element block: signs[n / 8].
void iq_block_signs_even(int n, const float* xb, const float* weight, float* xval, uint8_t* signs);

// ggml's running MAX over xval[0..n) in order (the first of equal values wins).
float iq_max(int n, const float* xval);

// When the refit of step 2 runs and which groups it re-rounds.
enum class IqRefit {
  kAllGroups,                // IQ2_XXS: always (scale > 0), every group
  kOffGridGroups,            // IQ2_XS, IQ2_S, IQ3_XXS: when a group was off the grid, those
  kAllGroupsWhenAnyOffGrid,  // IQ3_S: when a group was off the grid, every group
};

struct IqSearch {
  const IqGridIndex* grid;
  int kmax_q;  // levels 0 .. kmax_q-1: 3 (IQ2) or 8 (IQ3)
  int n_try;   // inverse scales (2·kmax_q - 1 + is·step) / denom, is = -n_try..n_try
  float step;
  IqRefit refit;
  bool assume_on_grid;  // the groups' on-grid flags before any try improves the fit
};

// Step 2 for one block of n elements (a multiple of the grid's group). `denom` and `scale` are
// the trial denominator and the scale kept when no trial improves on best = 0. L receives the
// levels of the chosen grid points (or zeros when none was chosen); returns the scale.
float iq_search_block(const IqSearch& p, int n, const float* xval, const float* weight,
                      const float* waux, float denom, float scale, int8_t* L);

// Grid index of the group of levels L[0..group) (which must be a grid point).
int iq_grid_index_of(const IqGridIndex& g, const int8_t* L);

// The 4-bit block scale of ggml's IQ2/IQ3 formats: nearest_int(0.5·(id·scale - 1)) in [0, 15].
int iq_scale_nibble(float id, float scale);

}  // namespace lowbit::kernels::cpu::gguf_detail
