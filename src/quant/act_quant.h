// Activation quantization of W8A8 schemes, emulated on the CPU: the CPU kernels multiply fp32
// activations, so a W8A8 layer first rounds its input rows to the grid a W8A8 GPU kernel would
// use (quantize, then dequantize in place) and then runs a weight-only / dense GEMM. The result
// equals what an exact W8A8 GEMM computes, up to fp32 accumulation order.
//   dynamic:  s = max(amax, min_amax) / qmax over each token row (group = 0) or each group of
//             `group` columns of a row (FP8 block checkpoints: 128), computed at run time
//   static:   s = the layer's stored input_scale (one per tensor)
//   fp8:      x' = e4m3(sat(x / s)) · s        (qmax 448, round to nearest even)
//   int8:     x' = clamp(rint(x / s), -128, 127) · s   (qmax 127, symmetric)
#pragma once

#include <cstdint>
#include <string>

namespace lowbit::quant {

struct ActQuant {
  enum class Kind : uint8_t { kNone, kDynamic, kStatic };
  Kind kind = Kind::kNone;
  bool fp8 = true;       // e4m3 activations, else int8
  int64_t group = 0;     // dynamic: 0 = one scale per token row, else per `group` columns
  float min_amax = 0.f;  // dynamic: amax floor (DeepSeek block FP8: 1e-4)

  bool active() const { return kind != Kind::kNone; }
  // "dynamic per-token fp8", "static per-tensor int8", "none", ... for messages.
  std::string label() const;
};

// Quantize-dequantize x [m, k] in place by `a` (`static_scale` is used for Kind::kStatic).
void fake_quantize_activations(const ActQuant& a, float static_scale, float* x, int64_t m,
                               int64_t k);

}  // namespace lowbit::quant
