#include "kernels/cpu/flash_attn_f16.h"

#include <cmath>
#include <limits>
#include <vector>

#include "core/half.h"

namespace lowbit::kernels::cpu {
namespace {

inline float round_f16(float x) { return f16_to_f32(f32_to_f16(x)); }

}  // namespace

void attend_f16_online(const float* q, const float* keys, const float* vals, int64_t len,
                       int64_t hd, float scale, float* out) {
  thread_local std::vector<float> q16, acc;
  q16.resize(size_t(hd));
  acc.assign(size_t(hd), 0.0f);  // VKQ16: F16 values held in fp32
  for (int64_t d = 0; d < hd; ++d) q16[size_t(d)] = round_f16(q[d]);
  float M = -std::numeric_limits<float>::infinity(), S = 0.0f;
  for (int64_t p = 0; p < len; ++p) {
    const float* k = keys + p * hd;
    const float* v = vals + p * hd;
    float s = 0.0f;  // products of two F16 values are exact in fp32
    for (int64_t d = 0; d < hd; ++d) s += q16[size_t(d)] * k[d];
    s *= scale;
    float ms = 1.0f, vs = 1.0f;
    if (s > M) {  // new maximum: rescale the accumulator, this position weighs expf(0) = 1
      const float m_old = M;
      M = s;
      ms = std::exp(m_old - M);
      for (int64_t d = 0; d < hd; ++d) acc[size_t(d)] = round_f16(acc[size_t(d)] * ms);
    } else {
      vs = std::exp(s - M);
    }
    for (int64_t d = 0; d < hd; ++d) acc[size_t(d)] = round_f16(std::fma(v[d], vs, acc[size_t(d)]));
    S = S * ms + vs;
  }
  const float s_inv = S == 0.0f ? 0.0f : 1.0f / S;
  for (int64_t d = 0; d < hd; ++d) out[d] = acc[size_t(d)] * s_inv;
}

}  // namespace lowbit::kernels::cpu
