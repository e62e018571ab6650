// AVX-512 VNNI variant of the int8-activation products (q8_activation.h).
// Two weight blocks at a time: their 64 unsigned weight bytes, decoded as
// [lo16(b0) lo16(b1) hi16(b0) hi16(b1)], meet the pair-interleaved activation bytes in one
// vpdpbusd (u8 × s8 → 16 int32 lanes; lanes 0–3, 8–11 belong to b0, 4–7, 12–15 to b1). The
// accumulator starts from the activation's bias lanes (−offset·Σ q_x over the lane's 4 bytes),
// so each lane holds the exact Σ (q_w − offset)·q_x of its 4 elements; lanes are converted to
// fp32 and scaled by d_w·d_x (exact integers; only the fp32 summation order differs from ggml).
// m == 1: 4 weight rows per step (rows split across threads in static contiguous chunks).
// m > 1: the same 4 rows are reused (from L1) for every activation row.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <type_traits>

#include "kernels/cpu/q8_activation.h"

namespace lowbit::kernels::cpu::avx512 {
namespace {

inline uint16_t u16(const uint8_t* p) {
  uint16_t v;
  std::memcpy(&v, p, 2);
  return v;
}
inline uint32_t u32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}
inline float hsum512(__m512 v) {
  const __m256 h = _mm256_add_ps(_mm512_castps512_ps256(v), _mm512_extractf32x8_ps(v, 1));
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}
inline float hsum256(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// ---- Weight formats: pair() → 64 u8 in pair layout; one() → 32 u8 [lo16 | hi16]. --------

template <int kB, int kQs>
struct Nibbles {
  static constexpr int kBytes = kB;
  // [qs0 qs1 qs0 qs1] from two broadcast loads (load ports, not the shuffle port), then the
  // upper half shifted down a nibble: [lo0 lo1 hi0 hi1].
  static __m512i pair(const uint8_t* b0) {
    __m512i r = _mm512_broadcast_i32x4(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b0 + kQs)));
    r = _mm512_mask_broadcast_i32x4(
        r, 0xF0F0, _mm_loadu_si128(reinterpret_cast<const __m128i*>(b0 + kB + kQs)));
    r = _mm512_mask_srli_epi16(r, 0xFFFF0000u, r, 4);
    return _mm512_and_si512(r, _mm512_set1_epi8(15));
  }
  static __m256i one(const uint8_t* b) {
    const __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b + kQs));
    const __m128i m = _mm_set1_epi8(15);
    return _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(raw, 4), m), _mm_and_si128(raw, m));
  }
};
template <int kB, int kQh>
struct Fives {
  static constexpr int kBytes = kB;
  static __m512i pair(const uint8_t* b0) {
    const uint64_t h0 = u32(b0 + kQh), h1 = u32(b0 + kB + kQh);
    const __mmask64 mask =
        (h0 & 0xFFFF) | (h1 & 0xFFFF) << 16 | (h0 >> 16) << 32 | (h1 >> 16) << 48;
    const __m512i w = Nibbles<kB, kQh + 4>::pair(b0);
    return _mm512_mask_add_epi8(w, mask, w, _mm512_set1_epi8(16));
  }
  static __m256i one(const uint8_t* b) {
    const __m256i w = Nibbles<kB, kQh + 4>::one(b);
    return _mm256_mask_add_epi8(w, __mmask32(u32(b + kQh)), w, _mm256_set1_epi8(16));
  }
};

template <class W>
struct Unsigned : W {
  static __m512i dot(__m512i acc, __m512i w, __m512i x) { return _mm512_dpbusd_epi32(acc, w, x); }
  static __m256i dot1(__m256i acc, __m256i w, __m256i x) { return _mm256_dpbusd_epi32(acc, w, x); }
};

// Q8_0: signed weights; |w| (≤ 128 as u8) times x with w's sign moved onto it.
struct Q8w {
  static constexpr int kBytes = 34;
  static __m512i pair(const uint8_t* b0) {
    const __m256i w0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b0 + 2));
    const __m256i w1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b0 + 34 + 2));
    const __m512i z = _mm512_inserti64x4(_mm512_castsi256_si512(w0), w1, 1);
    return _mm512_shuffle_i64x2(z, z, _MM_SHUFFLE(3, 1, 2, 0));
  }
  static __m256i one(const uint8_t* b) {
    return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + 2));
  }
  static __m512i dot(__m512i acc, __m512i w, __m512i x) {
    const __m512i sx = _mm512_mask_sub_epi8(x, _mm512_movepi8_mask(w), _mm512_setzero_si512(), x);
    return _mm512_dpbusd_epi32(acc, _mm512_abs_epi8(w), sx);
  }
  static __m256i dot1(__m256i acc, __m256i w, __m256i x) {
    return _mm256_dpbusd_epi32(acc, _mm256_abs_epi8(w), _mm256_sign_epi8(x, w));
  }
};

// fp16 → fp32 table: a memory-operand broadcast of table[h] costs only a load, where
// converting a scalar and broadcasting it would compete with the weight unpacking for the
// shuffle port (the bottleneck of this loop). 256 KiB, L2-resident in practice.
const float* f16_table() {
  static const float* table = [] {
    static float t[65536];
    for (uint32_t h = 0; h < 65536; ++h) t[h] = _cvtsh_ss(uint16_t(h));
    return t;
  }();
  return table;
}

// Prefetch distance in bytes: measured on SmolLM2-135M generation (k = 576 rows of 360–612
// bytes, 2 threads), 4 KiB ahead beat 0.75 and 2 KiB clearly; hardware prefetch alone ramps up
// too slowly for these short per-call streams.
constexpr int kPrefetch = 4096;

// out[r] = Σ blocks for R weight rows from w0 against one activation row.
template <class W, bool kMin, int R>
void rows_dot(const uint8_t* w0, size_t row_bytes, const int8_t* qs, const float* ds,
              const float* lanes, const int32_t* bias, int64_t nb, float* out) {
  const float* f16 = f16_table();
  __m512 acc[R], accm[R];
  for (int r = 0; r < R; ++r) acc[r] = accm[r] = _mm512_setzero_ps();
  const int64_t full = nb / 2;
  for (int64_t p = 0; p < full; ++p) {
    const __m512i x = _mm512_loadu_si512(qs + 64 * p);
    const __m512i bi = _mm512_loadu_si512(bias + 16 * p);
    const __m512 dx = _mm512_loadu_ps(lanes + 32 * p);
    for (int r = 0; r < R; ++r) {
      const uint8_t* b0 = w0 + r * row_bytes + 2 * p * W::kBytes;
      _mm_prefetch(reinterpret_cast<const char*>(b0) + kPrefetch, _MM_HINT_T0);
      const __m512i isum = W::dot(bi, W::pair(b0), x);
      const __m512 f = _mm512_mul_ps(_mm512_cvtepi32_ps(isum), dx);
      acc[r] = _mm512_mask3_fmadd_ps(f, _mm512_set1_ps(f16[u16(b0)]), acc[r], 0x0F0F);
      acc[r] = _mm512_mask3_fmadd_ps(f, _mm512_set1_ps(f16[u16(b0 + W::kBytes)]), acc[r], 0xF0F0);
      if constexpr (kMin) {
        const __m512 sx = _mm512_loadu_ps(lanes + 32 * p + 16);
        accm[r] = _mm512_mask3_fmadd_ps(sx, _mm512_set1_ps(f16[u16(b0 + 2)]), accm[r], 0x000F);
        accm[r] = _mm512_mask3_fmadd_ps(sx, _mm512_set1_ps(f16[u16(b0 + W::kBytes + 2)]), accm[r],
                                        0x00F0);
      }
    }
  }
  for (int r = 0; r < R; ++r) {
    float s = hsum512(kMin ? _mm512_add_ps(acc[r], accm[r]) : acc[r]);
    if (nb & 1) {  // lone last block: 32 bytes [lo | hi], bias lanes 0..7
      const int64_t p = full;
      const uint8_t* b = w0 + r * row_bytes + 2 * p * W::kBytes;
      const __m256i x = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(qs + 64 * p));
      const __m256i bi = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(bias + 16 * p));
      const __m256i isum = W::dot1(bi, W::one(b), x);
      const float dw = _cvtsh_ss(u16(b));
      s += hsum256(_mm256_mul_ps(_mm256_cvtepi32_ps(isum), _mm256_set1_ps(dw * ds[4 * p])));
      if constexpr (kMin) s += _cvtsh_ss(u16(b + 2)) * ds[4 * p + 2];
    }
    out[r] = s;
  }
}

// 4/5-bit formats: one 64-byte load holds a whole pair of blocks (2·kB ≤ 48 bytes), so the
// scales come from it too (vcvtph2ps + vpermps) instead of per-block scalar loads: this loop
// is otherwise bound by load-port throughput. All qs offsets are even, so vpermw (AVX-512 BW)
// gathers [qs0 qs1 qs0 qs1] from the same register.
template <int kB, int kQs, int kQh, bool kMin>
struct Packed {
  static constexpr int kBytes = kB, kQhOff = kQh;
  static constexpr bool kMinT = kMin;
  // vpermw indices: words 0–7 / 16–23 ← qs of block 0, 8–15 / 24–31 ← qs of block 1.
  static __m512i perm() {
    constexpr short a = kQs / 2, b = (kB + kQs) / 2;
    return _mm512_set_epi16(b + 7, b + 6, b + 5, b + 4, b + 3, b + 2, b + 1, b, a + 7, a + 6, a + 5,
                            a + 4, a + 3, a + 2, a + 1, a, b + 7, b + 6, b + 5, b + 4, b + 3, b + 2,
                            b + 1, b, a + 7, a + 6, a + 5, a + 4, a + 3, a + 2, a + 1, a);
  }
};

template <class P, bool kMasked>
inline void packed_step(const uint8_t* b0, __m512i x, __m512i bi, __m512 dx, __m512 sx,
                        __m512i perm, __m512i didx, __m512i midx, __m512& acc, __m512& accm) {
  const __m512i raw = kMasked ? _mm512_maskz_loadu_epi8((uint64_t(1) << (2 * P::kBytes)) - 1, b0)
                              : _mm512_loadu_si512(b0);
  __m512i w = _mm512_permutexvar_epi16(perm, raw);
  w = _mm512_mask_srli_epi16(w, 0xFFFF0000u, w, 4);
  w = _mm512_and_si512(w, _mm512_set1_epi8(15));
  if constexpr (P::kQhOff >= 0) {
    const uint64_t h0 = u32(b0 + P::kQhOff), h1 = u32(b0 + P::kBytes + P::kQhOff);
    const __mmask64 mask =
        (h0 & 0xFFFF) | (h1 & 0xFFFF) << 16 | (h0 >> 16) << 32 | (h1 >> 16) << 48;
    w = _mm512_mask_add_epi8(w, mask, w, _mm512_set1_epi8(16));
  }
  const __m512 sc = _mm512_cvtph_ps(_mm512_castsi512_si256(raw));  // words 0..15 as floats
  const __m512i isum = _mm512_dpbusd_epi32(bi, w, x);
  acc = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(isum), dx),
                        _mm512_permutexvar_ps(didx, sc), acc);
  if constexpr (P::kMinT) accm = _mm512_fmadd_ps(_mm512_permutexvar_ps(midx, sc), sx, accm);
}

template <class P, class W, bool kMin, int R>
void rows_dot_packed(const uint8_t* w0, size_t row_bytes, const int8_t* qs, const float* ds,
                     const float* lanes, const int32_t* bias, int64_t nb, float* out) {
  const __m512i perm = P::perm();
  const __m512i didx = _mm512_setr_epi32(
      0, 0, 0, 0, (P::kBytes / 2), (P::kBytes / 2), (P::kBytes / 2), (P::kBytes / 2), 0, 0, 0, 0,
      (P::kBytes / 2), (P::kBytes / 2), (P::kBytes / 2), (P::kBytes / 2));
  const __m512i midx = _mm512_add_epi32(didx, _mm512_set1_epi32(1));
  __m512 acc[R], accm[R];
  for (int r = 0; r < R; ++r) acc[r] = accm[r] = _mm512_setzero_ps();
  const int64_t full = nb / 2;
  // Pairs whose 64-byte window stays inside the row load unmasked; the row's last one or two
  // use a masked load (never touching bytes past the weight buffer).
  const int64_t safe = std::min<int64_t>(full, (int64_t(row_bytes) - 64) / (2 * P::kBytes) + 1);
  for (int64_t p = 0; p < full; ++p) {
    const __m512i x = _mm512_loadu_si512(qs + 64 * p);
    const __m512i bi = _mm512_loadu_si512(bias + 16 * p);
    const __m512 dx = _mm512_loadu_ps(lanes + 32 * p);
    const __m512 sx = kMin ? _mm512_loadu_ps(lanes + 32 * p + 16) : _mm512_setzero_ps();
    for (int r = 0; r < R; ++r) {
      const uint8_t* b0 = w0 + r * row_bytes + 2 * p * P::kBytes;
      _mm_prefetch(reinterpret_cast<const char*>(b0) + kPrefetch, _MM_HINT_T0);
      if (p < safe) {
        packed_step<P, false>(b0, x, bi, dx, sx, perm, didx, midx, acc[r], accm[r]);
      } else {
        packed_step<P, true>(b0, x, bi, dx, sx, perm, didx, midx, acc[r], accm[r]);
      }
    }
  }
  for (int r = 0; r < R; ++r) {
    float s = hsum512(kMin ? _mm512_add_ps(acc[r], accm[r]) : acc[r]);
    if (nb & 1) {  // lone last block: 32 bytes [lo | hi], bias lanes 0..7
      const int64_t p = full;
      const uint8_t* b = w0 + r * row_bytes + 2 * p * W::kBytes;
      const __m256i x = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(qs + 64 * p));
      const __m256i bi = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(bias + 16 * p));
      const __m256i isum = W::dot1(bi, W::one(b), x);
      const float dw = _cvtsh_ss(u16(b));
      s += hsum256(_mm256_mul_ps(_mm256_cvtepi32_ps(isum), _mm256_set1_ps(dw * ds[4 * p])));
      if constexpr (kMin) s += _cvtsh_ss(u16(b + 2)) * ds[4 * p + 2];
    }
    out[r] = s;
  }
}

// m > 1: R weight rows × M activation rows register-blocked; each weight pair is unpacked once
// per M activation rows and each activation pair is loaded once per R weight rows.
template <class P, class W, bool kMin, int R, int M>
void tile_packed(const uint8_t* w0, size_t row_bytes, bool last_rows, const Q8Activations& a,
                 int64_t i0, int64_t p_begin, int64_t p_end, float* y, int64_t ldy) {
  constexpr bool kBias = P::kBytes == 18 || P::kBytes == 22;  // Q4_0, Q5_0: offset 8 / 16
  const __m512i perm = P::perm();
  const __m512i didx =
      _mm512_setr_epi32(0, 0, 0, 0, P::kBytes / 2, P::kBytes / 2, P::kBytes / 2, P::kBytes / 2, 0,
                        0, 0, 0, P::kBytes / 2, P::kBytes / 2, P::kBytes / 2, P::kBytes / 2);
  const __m512i midx = _mm512_add_epi32(didx, _mm512_set1_epi32(1));
  const int64_t nb = a.nb, full = nb / 2;
  // Unmasked 64-byte loads must stay inside the buffer: only the last rows' tail pairs mask.
  const int64_t safe =
      last_rows ? std::min<int64_t>(full, (int64_t(row_bytes) - 64) / (2 * P::kBytes) + 1) : full;
  __m512 acc[R][M];
  for (int r = 0; r < R; ++r)
    for (int i = 0; i < M; ++i) acc[r][i] = _mm512_setzero_ps();
  for (int64_t p = p_begin; p < p_end; ++p) {
    __m512i w[R];
    __m512 dw[R], mw[R];
    for (int r = 0; r < R; ++r) {
      const uint8_t* b0 = w0 + r * row_bytes + 2 * p * P::kBytes;
      const __m512i raw = p < safe
                              ? _mm512_loadu_si512(b0)
                              : _mm512_maskz_loadu_epi8((uint64_t(1) << (2 * P::kBytes)) - 1, b0);
      w[r] = _mm512_permutexvar_epi16(perm, raw);
      w[r] = _mm512_mask_srli_epi16(w[r], 0xFFFF0000u, w[r], 4);
      w[r] = _mm512_and_si512(w[r], _mm512_set1_epi8(15));
      if constexpr (P::kQhOff >= 0) {
        const uint64_t h0 = u32(b0 + P::kQhOff), h1 = u32(b0 + P::kBytes + P::kQhOff);
        const __mmask64 mask =
            (h0 & 0xFFFF) | (h1 & 0xFFFF) << 16 | (h0 >> 16) << 32 | (h1 >> 16) << 48;
        w[r] = _mm512_mask_add_epi8(w[r], mask, w[r], _mm512_set1_epi8(16));
      }
      const __m512 sc = _mm512_cvtph_ps(_mm512_castsi512_si256(raw));
      dw[r] = _mm512_permutexvar_ps(didx, sc);
      if constexpr (kMin) mw[r] = _mm512_permutexvar_ps(midx, sc);
    }
    for (int i = 0; i < M; ++i) {
      const int64_t row = i0 + i;
      const __m512i x = _mm512_loadu_si512(a.qs.data() + row * a.k + 64 * p);
      const __m512i bi = kBias ? _mm512_loadu_si512(a.bias.data() + (row * a.pairs + p) * 16)
                               : _mm512_setzero_si512();
      const float* lanes = a.lanes.data() + (row * a.pairs + p) * 32;
      const __m512 dx = _mm512_loadu_ps(lanes);
      const __m512 sx = kMin ? _mm512_loadu_ps(lanes + 16) : _mm512_setzero_ps();
      for (int r = 0; r < R; ++r) {
        const __m512i isum = _mm512_dpbusd_epi32(bi, w[r], x);
        acc[r][i] = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(isum), dx), dw[r], acc[r][i]);
        if constexpr (kMin) acc[r][i] = _mm512_fmadd_ps(mw[r], sx, acc[r][i]);
      }
    }
  }
  for (int r = 0; r < R; ++r)
    for (int i = 0; i < M; ++i) {
      float s = hsum512(acc[r][i]);
      if ((nb & 1) && p_end == full) {  // lone last block, with the last chunk
        const int64_t row = i0 + i, p = full;
        const uint8_t* b = w0 + r * row_bytes + 2 * p * W::kBytes;
        const int8_t* qs = a.qs.data() + row * a.k;
        const float* ds = a.ds.data() + row * a.pairs * 4;
        const int32_t* bias = a.bias.data() + row * a.pairs * 16;
        const __m256i x = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(qs + 64 * p));
        const __m256i bi = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(bias + 16 * p));
        const __m256i isum = W::dot1(bi, W::one(b), x);
        s += hsum256(
            _mm256_mul_ps(_mm256_cvtepi32_ps(isum), _mm256_set1_ps(_cvtsh_ss(u16(b)) * ds[4 * p])));
        if constexpr (kMin) s += _cvtsh_ss(u16(b + 2)) * ds[4 * p + 2];
      }
      float& out = y[i * ldy + r];
      out = p_begin == 0 ? s : out + s;
    }
}

template <class P, class W, bool kMin, int R>
void tile_rows(const uint8_t* w0, size_t row_bytes, bool last_rows, const Q8Activations& a,
               int64_t i0, int64_t mcount, int64_t p0, int64_t p1, float* y, int64_t ldy) {
  switch (mcount) {
    case 4:
      return tile_packed<P, W, kMin, R, 4>(w0, row_bytes, last_rows, a, i0, p0, p1, y, ldy);
    case 3:
      return tile_packed<P, W, kMin, R, 3>(w0, row_bytes, last_rows, a, i0, p0, p1, y, ldy);
    case 2:
      return tile_packed<P, W, kMin, R, 2>(w0, row_bytes, last_rows, a, i0, p0, p1, y, ldy);
    default:
      return tile_packed<P, W, kMin, R, 1>(w0, row_bytes, last_rows, a, i0, p0, p1, y, ldy);
  }
}

template <class W, bool kMin, class P, int R>
inline void dot_rows(const uint8_t* w0, size_t row_bytes, const int8_t* qs, const float* ds,
                     const float* lanes, const int32_t* bias, int64_t nb, float* out) {
  if constexpr (std::is_void_v<P>) {
    rows_dot<W, kMin, R>(w0, row_bytes, qs, ds, lanes, bias, nb, out);
  } else {
    rows_dot_packed<P, W, kMin, R>(w0, row_bytes, qs, ds, lanes, bias, nb, out);
  }
}

// m > 1 with a packed format: GEMM-style blocking. A panel of kMC activation rows × kPC block
// pairs (≤ 64 × 16 × 256 B of qs + bias + lanes = 256 KiB, L2) is reused by every weight row;
// each weight row's slice (≤ 16 × 48 B) is unpacked once per 8 activation rows, from L1.
// Static scheduling with the same trip count in every pass gives each thread the same rows of
// y, so the partial sums of later k-chunks add without a race.
template <class W, bool kMin, class P>
void run_multi(const WeightMatrix& w, const Q8Activations& a, float* y) {
  constexpr int64_t kPC = 16, kMC = 64;
  const size_t row_bytes = *dtype_bytes(w.dtype, uint64_t(w.k));
  const auto* base = static_cast<const uint8_t*>(w.data);
  const int64_t full = a.nb / 2;
#pragma omp parallel if (w.n * w.k * a.m > (int64_t(1) << 16))
  for (int64_t m0 = 0; m0 < a.m; m0 += kMC) {
    const int64_t mc = std::min(kMC, a.m - m0);
    // At least one pass (full may be 0 with a single lone block).
    for (int64_t p0 = 0; p0 < std::max<int64_t>(full, 1); p0 += kPC) {
      const int64_t p1 = std::min(full, p0 + kPC);
#pragma omp for schedule(static) nowait
      for (int64_t g = 0; g < (w.n + 3) / 4; ++g) {
        const int64_t r0 = 4 * g;
        const uint8_t* wr = base + size_t(r0) * row_bytes;
        const bool last = r0 + 4 >= w.n;
        for (int64_t i0 = m0; i0 < m0 + mc; i0 += 4) {
          const int64_t mcount = std::min<int64_t>(4, m0 + mc - i0);
          float* out = y + i0 * w.n + r0;
          if (r0 + 4 <= w.n) {
            tile_rows<P, W, kMin, 4>(wr, row_bytes, last, a, i0, mcount, p0, p1, out, w.n);
          } else {
            for (int64_t r = r0; r < w.n; ++r)
              tile_rows<P, W, kMin, 1>(wr + (r - r0) * row_bytes, row_bytes, r + 1 == w.n, a, i0,
                                       mcount, p0, p1, out + (r - r0), w.n);
          }
        }
      }
    }
  }
}

template <class W, bool kMin, class P = void>
void run(const WeightMatrix& w, const Q8Activations& a, float* y) {
  if constexpr (!std::is_void_v<P>) {
    if (a.m > 1) return run_multi<W, kMin, P>(w, a, y);
  }
  const size_t row_bytes = *dtype_bytes(w.dtype, uint64_t(w.k));
  const auto* base = static_cast<const uint8_t*>(w.data);
  const int64_t groups = (w.n + 3) / 4;
#pragma omp parallel for schedule(static) if (w.n * w.k * a.m > (int64_t(1) << 16))
  for (int64_t g = 0; g < groups; ++g) {
    const int64_t r0 = 4 * g;
    const uint8_t* p = base + size_t(r0) * row_bytes;
    const int rows = int(std::min<int64_t>(4, w.n - r0));
    for (int64_t i = 0; i < a.m; ++i) {
      const int8_t* qs = a.qs.data() + i * a.k;
      const float* ds = a.ds.data() + i * a.pairs * 4;
      const int32_t* bias = a.bias.data() + i * a.pairs * 16;
      const float* lanes = a.lanes.data() + i * a.pairs * 32;
      float* out = y + i * w.n + r0;
      switch (rows) {
        case 4:
          dot_rows<W, kMin, P, 4>(p, row_bytes, qs, ds, lanes, bias, a.nb, out);
          break;
        case 3:
          dot_rows<W, kMin, P, 3>(p, row_bytes, qs, ds, lanes, bias, a.nb, out);
          break;
        case 2:
          dot_rows<W, kMin, P, 2>(p, row_bytes, qs, ds, lanes, bias, a.nb, out);
          break;
        default:
          dot_rows<W, kMin, P, 1>(p, row_bytes, qs, ds, lanes, bias, a.nb, out);
          break;
      }
    }
  }
}

inline __m512 round_even(__m512 v) {
  return _mm512_roundscale_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
}

}  // namespace

void quantize_blocks(const float* x, int64_t nb, int8_t* qs, float* d, int32_t* sums) {
  for (int64_t b = 0; b < nb; ++b) {
    const __m512 v0 = _mm512_loadu_ps(x + 32 * b), v1 = _mm512_loadu_ps(x + 32 * b + 16);
    int64_t lo, hi;
    q8_half_offsets(b, nb, &lo, &hi);
    const int bad = _mm512_fpclass_ps_mask(v0, 0x99) | _mm512_fpclass_ps_mask(v1, 0x99);
    if (bad) {
      std::memset(qs + lo, 0, 16);
      std::memset(qs + hi, 0, 16);
      sums[b] = 0;
      d[b] = NAN;
      continue;
    }
    const float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(v0), _mm512_abs_ps(v1)));
    // ggml's x86 quantize_row_q8_0: id = 127/amax, round to nearest even.
    const float db = amax / 127.0f;
    float id = amax != 0.0f ? 127.0f / amax : 0.0f;
    if (!std::isfinite(id)) id = 0.0f;
    const __m512 vid = _mm512_set1_ps(id), lim = _mm512_set1_ps(127.0f);
    const __m512 q0 = _mm512_min_ps(lim, _mm512_max_ps(-lim, round_even(_mm512_mul_ps(v0, vid))));
    const __m512 q1 = _mm512_min_ps(lim, _mm512_max_ps(-lim, round_even(_mm512_mul_ps(v1, vid))));
    const __m512i i0 = _mm512_cvtps_epi32(q0), i1 = _mm512_cvtps_epi32(q1);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(qs + lo), _mm512_cvtepi32_epi8(i0));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(qs + hi), _mm512_cvtepi32_epi8(i1));
    sums[b] = _mm512_reduce_add_epi32(_mm512_add_epi32(i0, i1));
    d[b] = db;
  }
}

void q8_linear(const WeightMatrix& w, const Q8Activations& a, float* y) {
  switch (w.dtype) {
    case DType::Q4_0:
      return run<Unsigned<Nibbles<18, 2>>, false, Packed<18, 2, -1, false>>(w, a, y);
    case DType::Q4_1:
      return run<Unsigned<Nibbles<20, 4>>, true, Packed<20, 4, -1, true>>(w, a, y);
    case DType::Q5_0:
      return run<Unsigned<Fives<22, 2>>, false, Packed<22, 6, 2, false>>(w, a, y);
    case DType::Q5_1:
      return run<Unsigned<Fives<24, 4>>, true, Packed<24, 8, 4, true>>(w, a, y);
    default:
      return run<Q8w, false>(w, a, y);
  }
}

}  // namespace lowbit::kernels::cpu::avx512
