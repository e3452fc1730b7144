// PROTOTYPE, not used by the package or the workflow: evidence for issue 23's open decision
// (a compiled extension as a dependency?). One SGD step's loss and gradients of the fast engine,
// askdagger_mnist.fast.backprop.written_out_gradients, as a hand-fused single-thread CPU kernel
// with AVX-512 intrinsics (sgd_grads; sgd_grads2 is a slower variant kept for the record:
// everything per sample, fc1's weights then stream from L2 for every sample). Built and measured
// against the fast engine by bench/fused_kernels.py (agreement: float32 rounding, about 1e-6 of
// each gradient's largest value; bound by tests/bench/test_fused_kernels.py).
// Limits of a prototype: AVX-512 CPUs only, one thread, contiguous float32 CPU tensors.
//
// Layouts (per sample b):
//   h1t[r][c][8]     pooled+gated conv1 output, 12x12, input channel i fastest (6 used, 2 zero pad)
//   win1[o][Y][16]   winner (0..3 = (dy,dx) row-major) of each conv1 pooling window (12 used per row)
//   H2[b][pos*16+o]  pooled+gated conv2 output (pos = Y*4+X), fc1 weight columns permuted to match
//   win2[b][pos][16] winner of each conv2 pooling window, per output channel o
// Forward conv: conv1 vectorised over output columns (fused_query.cpp style), conv2 vectorised over the
// 16 output channels (one zmm), pooling done in registers.  FC layers and loss: batch-wide, at::mm
// (MKL) plus hand loops for gates.  Backward conv: scatter form driven by the pooled gradients
// (only the winner of each window has a gradient): each nonzero pooled gradient g at conv2 output
// (o, y, x) adds g * W2[o] to a 5x5x8 patch of d_h1 and g * h1-patch to gW2[o] (40 contiguous
// floats per kernel row in the [r][c][i8] layout).  conv1's weight gradient: for each pooled
// position, g * 5 image rows of 8 floats into per-channel 5x8 accumulators.
#include <torch/extension.h>
#include <immintrin.h>
#include <chrono>
#include <cmath>
#include <cstring>
#include <vector>
#include <memory>

namespace {

using clk = std::chrono::steady_clock;
double g_t[8] = {0};
inline double secs(clk::time_point a, clk::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

// conv1 + 2x2 max-pool + gate for one image.  pad: 28 rows x 40 floats (zero cols 28..39).
// Writes h1 (tmp, [6][12][12]) then transposes into h1t[12][12][8]; win1[6][12][16].
inline void conv1_fwd(const float* pad, const float* w1, const float* b1, const float* ms1,
                      float* h1t, uint8_t* win1, float* tmp) {
  const __m512i ev = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
  const __m512i od = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
  const __m512 zero = _mm512_setzero_ps();
  const __m512i one = _mm512_set1_epi32(1), two = _mm512_set1_epi32(2), three = _mm512_set1_epi32(3);
  const __m512i zi = _mm512_setzero_si512();
  for (int Y = 0; Y < 12; ++Y) {
    __m512 acc[6][2][2];
    for (int o = 0; o < 6; ++o) {
      const __m512 bv = _mm512_set1_ps(b1[o]);
      acc[o][0][0] = acc[o][0][1] = acc[o][1][0] = acc[o][1][1] = bv;
    }
    for (int r = 0; r < 6; ++r) {
      const float* row = pad + (2 * Y + r) * 40;
      for (int kx = 0; kx < 5; ++kx) {
        const __m512 v0 = _mm512_loadu_ps(row + kx);
        const __m512 v1 = _mm512_loadu_ps(row + 16 + kx);
        for (int o = 0; o < 6; ++o) {
          if (r < 5) {
            const __m512 w = _mm512_set1_ps(w1[o * 25 + r * 5 + kx]);
            acc[o][0][0] = _mm512_fmadd_ps(w, v0, acc[o][0][0]);
            acc[o][0][1] = _mm512_fmadd_ps(w, v1, acc[o][0][1]);
          }
          if (r >= 1) {
            const __m512 w = _mm512_set1_ps(w1[o * 25 + (r - 1) * 5 + kx]);
            acc[o][1][0] = _mm512_fmadd_ps(w, v0, acc[o][1][0]);
            acc[o][1][1] = _mm512_fmadd_ps(w, v1, acc[o][1][1]);
          }
        }
      }
    }
    for (int o = 0; o < 6; ++o) {
      const __m512 a = _mm512_permutex2var_ps(acc[o][0][0], ev, acc[o][0][1]);
      const __m512 b = _mm512_permutex2var_ps(acc[o][0][0], od, acc[o][0][1]);
      const __m512 c = _mm512_permutex2var_ps(acc[o][1][0], ev, acc[o][1][1]);
      const __m512 d = _mm512_permutex2var_ps(acc[o][1][0], od, acc[o][1][1]);
      const __m512 top = _mm512_max_ps(a, b), bot = _mm512_max_ps(c, d);
      const __mmask16 s0 = _mm512_cmp_ps_mask(b, a, _CMP_GT_OQ);
      const __mmask16 s1 = _mm512_cmp_ps_mask(d, c, _CMP_GT_OQ);
      const __mmask16 s2 = _mm512_cmp_ps_mask(bot, top, _CMP_GT_OQ);
      const __m512 m = _mm512_max_ps(top, bot);
      const __m512i wt = _mm512_mask_blend_epi32(s0, zi, one);
      const __m512i wb = _mm512_mask_blend_epi32(s1, two, three);
      const __m512i w = _mm512_mask_blend_epi32(s2, wt, wb);
      _mm_storeu_si128((__m128i*)(win1 + (o * 12 + Y) * 16), _mm512_cvtepi32_epi8(w));
      const __m512 h = _mm512_maskz_mul_ps(_mm512_cmp_ps_mask(m, zero, _CMP_GT_OQ), m,
                                           _mm512_set1_ps(ms1[o]));
      _mm512_storeu_ps(tmp + (o * 12 + Y) * 16, h);  // [6][12][16]
    }
  }
  for (int r = 0; r < 12; ++r)
    for (int c = 0; c < 12; ++c) {
      float* d = h1t + (r * 12 + c) * 8;
      for (int o = 0; o < 6; ++o) d[o] = tmp[(o * 12 + r) * 16 + c];
      d[6] = d[7] = 0.f;
    }
}

// conv1 + 2x2 max-pool + gate for one image.  pad: 28 rows x 40 floats (zero cols 28..39).
// Writes h1 (tmp, [6][12][12]) then transposes into h1t[12][12][8]; win1[6][12][16].
template <int NA>
inline void conv1_fwd_t(const float* pad, const float* w1, const float* b1, const float* ms1,
                      float* h1t, uint16_t* off1, float* tmp, const int* act) {
  const __m512i ev = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
  const __m512i od = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
  const __m512 zero = _mm512_setzero_ps();
  const __m512i one = _mm512_set1_epi32(1), two = _mm512_set1_epi32(2), three = _mm512_set1_epi32(3);
  const __m512i zi = _mm512_setzero_si512();
  for (int Y = 0; Y < 12; ++Y) {
    __m512 acc[NA > 0 ? NA : 1][2][2];
    for (int o = 0; o < NA; ++o) {
      const __m512 bv = _mm512_set1_ps(b1[o]);
      acc[o][0][0] = acc[o][0][1] = acc[o][1][0] = acc[o][1][1] = bv;
    }
    for (int r = 0; r < 6; ++r) {
      const float* row = pad + (2 * Y + r) * 40;
      for (int kx = 0; kx < 5; ++kx) {
        const __m512 v0 = _mm512_loadu_ps(row + kx);
        const __m512 v1 = _mm512_loadu_ps(row + 16 + kx);
        for (int o = 0; o < NA; ++o) {
          if (r < 5) {
            const __m512 w = _mm512_set1_ps(w1[o * 25 + r * 5 + kx]);
            acc[o][0][0] = _mm512_fmadd_ps(w, v0, acc[o][0][0]);
            acc[o][0][1] = _mm512_fmadd_ps(w, v1, acc[o][0][1]);
          }
          if (r >= 1) {
            const __m512 w = _mm512_set1_ps(w1[o * 25 + (r - 1) * 5 + kx]);
            acc[o][1][0] = _mm512_fmadd_ps(w, v0, acc[o][1][0]);
            acc[o][1][1] = _mm512_fmadd_ps(w, v1, acc[o][1][1]);
          }
        }
      }
    }
    for (int o = 0; o < NA; ++o) {
      const __m512 a = _mm512_permutex2var_ps(acc[o][0][0], ev, acc[o][0][1]);
      const __m512 b = _mm512_permutex2var_ps(acc[o][0][0], od, acc[o][0][1]);
      const __m512 c = _mm512_permutex2var_ps(acc[o][1][0], ev, acc[o][1][1]);
      const __m512 d = _mm512_permutex2var_ps(acc[o][1][0], od, acc[o][1][1]);
      const __m512 top = _mm512_max_ps(a, b), bot = _mm512_max_ps(c, d);
      const __mmask16 s0 = _mm512_cmp_ps_mask(b, a, _CMP_GT_OQ);
      const __mmask16 s1 = _mm512_cmp_ps_mask(d, c, _CMP_GT_OQ);
      const __mmask16 s2 = _mm512_cmp_ps_mask(bot, top, _CMP_GT_OQ);
      const __m512 m = _mm512_max_ps(top, bot);
      const __m512i wt = _mm512_mask_blend_epi32(s0, zi, one);
      const __m512i wb = _mm512_mask_blend_epi32(s1, two, three);
      const __m512i w = _mm512_mask_blend_epi32(s2, wt, wb);
      // winner's offset in the 32-float-stride image: (2Y + dy) * 32 + 2X + dx
      const __m512i offv = _mm512_add_epi32(
          _mm512_add_epi32(_mm512_set1_epi32(2 * Y * 32), _mm512_slli_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15), 1)),
          _mm512_add_epi32(_mm512_slli_epi32(_mm512_srli_epi32(w, 1), 5), _mm512_and_si512(w, one)));
      _mm256_storeu_si256((__m256i*)(off1 + (act[o] * 12 + Y) * 16), _mm512_cvtepi32_epi16(offv));
      const __m512 h = _mm512_maskz_mul_ps(_mm512_cmp_ps_mask(m, zero, _CMP_GT_OQ), m,
                                           _mm512_set1_ps(ms1[o]));
      _mm512_storeu_ps(tmp + (o * 12 + Y) * 16, h);  // [6][12][16]
    }
  }
  for (int r = 0; r < 12; ++r)
    for (int c = 0; c < 12; ++c) {
      float* d = h1t + (r * 12 + c) * 8;
      _mm256_storeu_ps(d, _mm256_setzero_ps());
      for (int o = 0; o < NA; ++o) d[act[o]] = tmp[(o * 12 + r) * 16 + c];
    }
}


// Dispatch on the number of kept conv1 channels (dropped ones are all zero: not computed).
inline void conv1_fwd_act(const float* pad, const float* W1, const float* B1, const float* ms1,
                          float* h1t, uint16_t* win1, float* tmp) {
  int act[6], na = 0;
  alignas(64) float w1c[6 * 25], b1c[6], msc[6];
  for (int o = 0; o < 6; ++o)
    if (ms1[o] != 0.f) {
      std::memcpy(w1c + na * 25, W1 + o * 25, 25 * 4);
      b1c[na] = B1[o]; msc[na] = ms1[o]; act[na++] = o;
    }
  switch (na) {
    case 0: conv1_fwd_t<0>(pad, w1c, b1c, msc, h1t, win1, tmp, act); break;
    case 1: conv1_fwd_t<1>(pad, w1c, b1c, msc, h1t, win1, tmp, act); break;
    case 2: conv1_fwd_t<2>(pad, w1c, b1c, msc, h1t, win1, tmp, act); break;
    case 3: conv1_fwd_t<3>(pad, w1c, b1c, msc, h1t, win1, tmp, act); break;
    case 4: conv1_fwd_t<4>(pad, w1c, b1c, msc, h1t, win1, tmp, act); break;
    case 5: conv1_fwd_t<5>(pad, w1c, b1c, msc, h1t, win1, tmp, act); break;
    default: conv1_fwd_t<6>(pad, w1c, b1c, msc, h1t, win1, tmp, act); break;
  }
}

// conv2 (+bias) over h1t, 2x2 pool, gate -> h2 row (pos*16+o), win2[16 pos][16 o].
inline void conv2_fwd(const float* h1t, const float* w2t, const float* b2, const float* ms2,
                      const bool* act1, float* h2, uint8_t* win2) {
  const __m512 bias = _mm512_loadu_ps(b2);
  const __m512 msv = _mm512_loadu_ps(ms2);
  const __m512 zero = _mm512_setzero_ps();
  const __m512i one = _mm512_set1_epi32(1), two = _mm512_set1_epi32(2), three = _mm512_set1_epi32(3);
  const __m512i zi = _mm512_setzero_si512();
  for (int Y = 0; Y < 4; ++Y) {
    __m512 a0[8], a1[8];
    for (int x = 0; x < 8; ++x) a0[x] = a1[x] = bias;
    for (int i = 0; i < 6; ++i) {
      if (!act1[i]) continue;  // channel dropped: h1[i] == 0
      for (int ky = 0; ky < 5; ++ky) {
        const float* r0 = h1t + (2 * Y + ky) * 96 + i;
        const float* r1 = r0 + 96;
        for (int kx = 0; kx < 5; ++kx) {
          const __m512 w = _mm512_loadu_ps(w2t + ((i * 5 + ky) * 5 + kx) * 16);
          for (int x = 0; x < 8; ++x) {
            a0[x] = _mm512_fmadd_ps(_mm512_set1_ps(r0[(x + kx) * 8]), w, a0[x]);
            a1[x] = _mm512_fmadd_ps(_mm512_set1_ps(r1[(x + kx) * 8]), w, a1[x]);
          }
        }
      }
    }
    for (int X = 0; X < 4; ++X) {
      const __m512 a = a0[2 * X], b = a0[2 * X + 1], c = a1[2 * X], d = a1[2 * X + 1];
      const __m512 top = _mm512_max_ps(a, b), bot = _mm512_max_ps(c, d);
      const __mmask16 s0 = _mm512_cmp_ps_mask(b, a, _CMP_GT_OQ);
      const __mmask16 s1 = _mm512_cmp_ps_mask(d, c, _CMP_GT_OQ);
      const __mmask16 s2 = _mm512_cmp_ps_mask(bot, top, _CMP_GT_OQ);
      const __m512 m = _mm512_max_ps(top, bot);
      const __m512i wt = _mm512_mask_blend_epi32(s0, zi, one);
      const __m512i wb = _mm512_mask_blend_epi32(s1, two, three);
      const __m512i w = _mm512_mask_blend_epi32(s2, wt, wb);
      const int pos = Y * 4 + X;
      _mm_storeu_si128((__m128i*)(win2 + pos * 16), _mm512_cvtepi32_epi8(w));
      _mm512_storeu_ps(h2 + pos * 16,
                       _mm512_maskz_mul_ps(_mm512_cmp_ps_mask(m, zero, _CMP_GT_OQ), m, msv));
    }
  }
}

// 40-float (5 positions x 8 channels) axpy: dst += g * src.
inline void axpy40(float* dst, const float* src, __m512 g) {
  _mm512_storeu_ps(dst, _mm512_fmadd_ps(g, _mm512_loadu_ps(src), _mm512_loadu_ps(dst)));
  _mm512_storeu_ps(dst + 16, _mm512_fmadd_ps(g, _mm512_loadu_ps(src + 16), _mm512_loadu_ps(dst + 16)));
  const __m256 g8 = _mm512_castps512_ps256(g);
  _mm256_storeu_ps(dst + 32, _mm256_fmadd_ps(g8, _mm256_loadu_ps(src + 32), _mm256_loadu_ps(dst + 32)));
}

// Gated FC forward epilogue: h = a > 0 ? a * m * s : 0 (in place), gate kept for backward.
inline void gate_inplace(float* a, float* gate, const float* m, float s, int64_t n) {
  const __m512 sv = _mm512_set1_ps(s);
  int64_t k0 = 0;
  for (; k0 + 16 <= n; k0 += 16) {
    const __m512 av = _mm512_loadu_ps(a + k0);
    const __m512 gt = _mm512_maskz_mul_ps(_mm512_cmp_ps_mask(av, _mm512_setzero_ps(), _CMP_GT_OQ),
                                          _mm512_loadu_ps(m + k0), sv);
    _mm512_storeu_ps(gate + k0, gt);
    _mm512_storeu_ps(a + k0, _mm512_mul_ps(av, gt));
  }
  for (int64_t k = k0; k < n; ++k) {
    const float gt = (a[k] > 0.f ? 1.f : 0.f) * (m[k] * s);
    gate[k] = gt;
    a[k] = a[k] * gt;
  }
}

}  // namespace

// Returns [loss, 10 gradients in model.parameters() order].
std::vector<torch::Tensor> sgd_grads(torch::Tensor x, torch::Tensor y,
    torch::Tensor w1, torch::Tensor b1, torch::Tensor w2, torch::Tensor b2,
    torch::Tensor fw1, torch::Tensor fb1, torch::Tensor fw2, torch::Tensor fb2,
    torch::Tensor fw3, torch::Tensor fb3,
    torch::Tensor m1, torch::Tensor m2, torch::Tensor m3, torch::Tensor m4, double scale_d,
    bool timing) {
  auto T0 = clk::now();
  const int64_t B = x.size(0);
  const float s = (float)scale_d;
  x = x.contiguous();
  const float* X = x.data_ptr<float>();
  const int64_t* Yl = y.data_ptr<int64_t>();
  const float* W1 = w1.data_ptr<float>();
  const float* B1 = b1.data_ptr<float>();
  const float* W2 = w2.data_ptr<float>();  // (16,6,5,5)
  const float* M1 = m1.data_ptr<float>();
  const float* M2 = m2.data_ptr<float>();
  // Weight layouts.
  alignas(64) float w2t[6 * 25 * 16];   // [i][ky][kx][o]
  alignas(64) float w2b[16 * 25 * 8];   // [o][ky][kx][i8]
  std::memset(w2b, 0, sizeof(w2b));
  for (int o = 0; o < 16; ++o)
    for (int i = 0; i < 6; ++i)
      for (int k = 0; k < 25; ++k) {
        const float v = W2[(o * 6 + i) * 25 + k];
        w2t[(i * 25 + k) * 16 + o] = v;
        w2b[(o * 25 + k) * 8 + i] = v;
      }
  // Per-batch buffers.
  // Scratch reused across calls (avoids mmap / page faults of fresh large allocations each call).
  struct Scratch {
    float* h1t = nullptr; uint16_t* off1 = nullptr; uint8_t* win2 = nullptr; int64_t cap = 0;
    float* get() const { return h1t; }
  };
  static Scratch S;
  if (S.cap < B) {
    std::free(S.h1t); std::free(S.off1); std::free(S.win2);
    S.h1t = (float*)std::aligned_alloc(64, B * 1152 * 4);
    S.off1 = (uint16_t*)std::aligned_alloc(64, B * 192 * 6 * 2);
    S.win2 = (uint8_t*)std::aligned_alloc(64, B * 256);
    S.cap = B;
  }
  struct P1 { float* p; float* get() const { return p; } } h1t_all{S.h1t};
  struct P2 { uint16_t* p; uint16_t* get() const { return p; } } win1_all{S.off1};
  struct P3 { uint8_t* p; uint8_t* get() const { return p; } } win2_all{S.win2};
  auto opts = x.options();
  torch::Tensor H2 = torch::empty({B, 256}, opts);
  float* h2p = H2.data_ptr<float>();
  alignas(64) float pad[28 * 40 + 16];
  alignas(64) float tmp[6 * 12 * 16];
  std::memset(pad, 0, sizeof(pad));
  auto T1 = clk::now();
  // ---------------- forward convs (per sample) ----------------
  for (int64_t b = 0; b < B; ++b) {
    const float* img = X + b * 784;
    for (int r = 0; r < 28; ++r) std::memcpy(pad + r * 40, img + r * 28, 28 * sizeof(float));
    float ms1[6], ms2[16];
    bool act1[6];
    for (int o = 0; o < 6; ++o) { ms1[o] = M1[b * 6 + o] * s; act1[o] = M1[b * 6 + o] != 0.f; }
    for (int o = 0; o < 16; ++o) ms2[o] = M2[b * 16 + o] * s;
    float* h1t = h1t_all.get() + b * 1152;
    conv1_fwd_act(pad, W1, B1, ms1, h1t, win1_all.get() + b * 6 * 192, tmp);
    alignas(64) float row[256];
    conv2_fwd(h1t, w2t, b2.data_ptr<float>(), ms2, act1, row, win2_all.get() + b * 256);
    float* hd = h2p + b * 256;  // (o, pos) order, as fc1 expects
    for (int pos = 0; pos < 16; ++pos)
      for (int o = 0; o < 16; ++o) hd[o * 16 + pos] = row[pos * 16 + o];
  }
  auto T2 = clk::now();
  // ---------------- FC layers, loss, FC backward (batch) ----------------
  torch::Tensor a3 = at::addmm(fb1, H2, fw1.t());
  torch::Tensor g3 = torch::empty_like(a3);
  gate_inplace(a3.data_ptr<float>(), g3.data_ptr<float>(), m3.data_ptr<float>(), s, B * 120);
  torch::Tensor a4 = at::addmm(fb2, a3, fw2.t());
  torch::Tensor g4 = torch::empty_like(a4);
  gate_inplace(a4.data_ptr<float>(), g4.data_ptr<float>(), m4.data_ptr<float>(), s, B * 84);
  torch::Tensor logits = at::addmm(fb3, a4, fw3.t());
  auto T2a = clk::now();
  if (timing) g_t[6] += secs(T2, T2a);
  torch::Tensor dl = torch::empty_like(logits);
  double loss = 0.0;
  {
    const float* L = logits.data_ptr<float>();
    float* D = dl.data_ptr<float>();
    for (int64_t b = 0; b < B; ++b) {
      const float* l = L + b * 10;
      float mx = l[0];
      for (int k = 1; k < 10; ++k) mx = std::max(mx, l[k]);
      float se = 0.f;
      for (int k = 0; k < 10; ++k) se += std::exp(l[k] - mx);
      const float lse = std::log(se);
      for (int k = 0; k < 10; ++k) D[b * 10 + k] = std::exp(l[k] - mx - lse) / (float)B;
      D[b * 10 + Yl[b]] -= 1.f / (float)B;
      loss -= (double)(l[Yl[b]] - mx - lse);
    }
  }
  torch::Tensor gfw3 = at::mm(dl.t(), a4), gfb3 = dl.sum(0);
  torch::Tensor d4 = at::mm(dl, fw3).mul_(g4);
  torch::Tensor gfw2 = at::mm(d4.t(), a3), gfb2 = d4.sum(0);
  torch::Tensor d3 = at::mm(d4, fw2).mul_(g3);
  torch::Tensor gfw1 = at::mm(d3.t(), H2), gfb1 = d3.sum(0);
  torch::Tensor dH2 = at::mm(d3, fw1);  // d_pool2 before gate, (B, o*16+pos)
  auto T3 = clk::now();
  auto tlast = T3;
  if (timing) g_t[7] += secs(T2a, T3);
  // ---------------- backward convs (per sample) ----------------
  // Parity-shifted conv2 weights / weight-gradient accumulators: [par][o][ky][6 pos][8 i].
  alignas(64) float w2p[2 * 16 * 5 * 48], gw2p[2 * 16 * 5 * 48];
  std::memset(w2p, 0, sizeof(w2p));
  std::memset(gw2p, 0, sizeof(gw2p));
  alignas(64) float gw2b[16 * 25 * 8];
  std::memset(gw2b, 0, sizeof(gw2b));
  float gb2[16] = {0};
  for (int par = 0; par < 2; ++par)
    for (int o = 0; o < 16; ++o)
      for (int ky = 0; ky < 5; ++ky)
        for (int kx = 0; kx < 5; ++kx)
          for (int i = 0; i < 8; ++i)
            w2p[((par * 16 + o) * 5 + ky) * 48 + (kx + par) * 8 + i] = w2b[((o * 5 + ky) * 5 + kx) * 8 + i];
  alignas(64) float gw1acc[6 * 5 * 8];
  std::memset(gw1acc, 0, sizeof(gw1acc));
  __m512 gb2v = _mm512_setzero_ps();
  float gb1[6] = {0, 0, 0, 0, 0, 0};
  alignas(64) float dh1t[12 * 96 + 32];
  alignas(64) float padb[28 * 32 + 16];
  std::memset(padb, 0, sizeof(padb));
  const float* dH = dH2.data_ptr<float>();
  for (int64_t b = 0; b < B; ++b) {
    const float* h1t = h1t_all.get() + b * 1152;
    const float* hrow = h2p + b * 256;
    const uint8_t* win2 = win2_all.get() + b * 256;
    const float* drow = dH + b * 256;
    float ms2[16];
    for (int o = 0; o < 16; ++o) ms2[o] = M2[b * 16 + o] * s;
    std::memset(dh1t, 0, sizeof(dh1t));
    float ms1[6];
    bool act1[6];
    for (int o = 0; o < 6; ++o) { ms1[o] = M1[b * 6 + o] * s; act1[o] = M1[b * 6 + o] != 0.f; }
    // Loop by output channel o: its weight gradient (5 rows x 40 floats) stays in 15 registers.
    for (int o = 0; o < 16; ++o) {
      if (ms2[o] == 0.f) continue;
      const __m512 hv = _mm512_loadu_ps(hrow + o * 16);  // (o, pos) order
      const __m512 gv = _mm512_maskz_mul_ps(_mm512_cmp_ps_mask(hv, _mm512_setzero_ps(), _CMP_GT_OQ),
                                            _mm512_loadu_ps(drow + o * 16), _mm512_set1_ps(ms2[o]));
      gb2[o] += _mm512_reduce_add_ps(gv);
      alignas(64) float g[16];
      alignas(64) int nzp[16];
      _mm512_store_ps(g, gv);
      const __mmask16 nzm = _mm512_cmp_ps_mask(gv, _mm512_setzero_ps(), _CMP_NEQ_UQ);
      _mm512_mask_compressstoreu_epi32(nzp, nzm, _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15));
      const int cnt = __builtin_popcount((unsigned)nzm);
      __m512 ga[5][2];
      __m256 gc[5];
      for (int ky = 0; ky < 5; ++ky) { ga[ky][0] = ga[ky][1] = _mm512_setzero_ps(); gc[ky] = _mm256_setzero_ps(); }
      for (int j = 0; j < cnt; ++j) {
        const int pos = nzp[j];
        const int w = win2[pos * 16 + o];
        const int yy = 2 * (pos >> 2) + (w >> 1), xx = 2 * (pos & 3) + (w & 1), par = w & 1;
        const __m512 gg = _mm512_set1_ps(g[pos]);
        for (int ky = 0; ky < 5; ++ky) {
          // d_h1: 64-byte aligned 48-float (6 position) chunks, parity-shifted weights.
          const int off = (yy + ky) * 96 + (xx & ~1) * 8;
          const int wo = ((par * 16 + o) * 5 + ky) * 48;
          for (int v = 0; v < 3; ++v)
            _mm512_store_ps(dh1t + off + 16 * v, _mm512_fmadd_ps(gg, _mm512_load_ps(w2p + wo + 16 * v), _mm512_load_ps(dh1t + off + 16 * v)));
          const float* hp = h1t + (yy + ky) * 96 + xx * 8;
          ga[ky][0] = _mm512_fmadd_ps(gg, _mm512_loadu_ps(hp), ga[ky][0]);
          ga[ky][1] = _mm512_fmadd_ps(gg, _mm512_loadu_ps(hp + 16), ga[ky][1]);
          gc[ky] = _mm256_fmadd_ps(_mm512_castps512_ps256(gg), _mm256_loadu_ps(hp + 32), gc[ky]);
        }
      }
      for (int ky = 0; ky < 5; ++ky) {
        float* d = gw2b + (o * 5 + ky) * 40;
        _mm512_storeu_ps(d, _mm512_add_ps(_mm512_loadu_ps(d), ga[ky][0]));
        _mm512_storeu_ps(d + 16, _mm512_add_ps(_mm512_loadu_ps(d + 16), ga[ky][1]));
        _mm256_storeu_ps(d + 32, _mm256_add_ps(_mm256_loadu_ps(d + 32), gc[ky]));
      }
    }
    if (timing) { auto tt = clk::now(); g_t[4] += secs(tlast, tt); tlast = tt; }
    // d_pool1 = d_h1 * gate1; conv1 weight gradient through the winners.
    const float* img = X + b * 784;
    for (int r = 0; r < 28; ++r) std::memcpy(padb + r * 32, img + r * 28, 28 * sizeof(float));
    const uint16_t* off1 = win1_all.get() + b * 6 * 192;
    // d_pool1 = d_h1 * gate1, vectorised over [pos][8 channels]; bias gradient.
    alignas(64) float dp1t[1152];
    {
      alignas(64) float msv[16] = {0};
      for (int o = 0; o < 6; ++o) msv[o] = msv[o + 8] = ms1[o];
      const __m512 mv = _mm512_load_ps(msv);
      __m512 bs = _mm512_setzero_ps();
      for (int p = 0; p < 1152; p += 16) {
        const __m512 dp = _mm512_maskz_mul_ps(
            _mm512_cmp_ps_mask(_mm512_load_ps(h1t + p), _mm512_setzero_ps(), _CMP_GT_OQ),
            _mm512_load_ps(dh1t + p), mv);
        _mm512_store_ps(dp1t + p, dp);
        bs = _mm512_add_ps(bs, dp);
      }
      alignas(64) float bsa[16];
      _mm512_store_ps(bsa, bs);
      for (int o = 0; o < 6; ++o) gb1[o] += bsa[o] + bsa[o + 8];
    }
    for (int o = 0; o < 6; ++o) {
      if (!act1[o]) continue;
      __m256 acc[5], acc2[5];
      for (int k = 0; k < 5; ++k) acc[k] = acc2[k] = _mm256_setzero_ps();
      for (int Y = 0; Y < 12; ++Y)
        for (int Xp = 0; Xp < 12; Xp += 2) {
          const int pp = Y * 12 + Xp;
          const float* src = padb + off1[(o * 12 + Y) * 16 + Xp];
          const float* src2 = padb + off1[(o * 12 + Y) * 16 + Xp + 1];
          const __m256 gg = _mm256_broadcast_ss(dp1t + pp * 8 + o), gg2 = _mm256_broadcast_ss(dp1t + pp * 8 + 8 + o);
          for (int k = 0; k < 5; ++k) acc[k] = _mm256_fmadd_ps(gg, _mm256_loadu_ps(src + k * 32), acc[k]);
          for (int k = 0; k < 5; ++k) acc2[k] = _mm256_fmadd_ps(gg2, _mm256_loadu_ps(src2 + k * 32), acc2[k]);
        }
      for (int k = 0; k < 5; ++k) acc[k] = _mm256_add_ps(acc[k], acc2[k]);
      for (int k = 0; k < 5; ++k)
        _mm256_storeu_ps(gw1acc + (o * 5 + k) * 8,
                         _mm256_add_ps(_mm256_loadu_ps(gw1acc + (o * 5 + k) * 8), acc[k]));
    }
    if (timing) { auto tt = clk::now(); g_t[5] += secs(tlast, tt); tlast = tt; }
  }
  auto T4 = clk::now();
  torch::Tensor gw1 = torch::empty({6, 1, 5, 5}, opts), gb1t = torch::empty({6}, opts);
  torch::Tensor gw2 = torch::empty({16, 6, 5, 5}, opts), gb2t = torch::empty({16}, opts);
  float* pg1 = gw1.data_ptr<float>();
  for (int o = 0; o < 6; ++o) {
    for (int ky = 0; ky < 5; ++ky)
      for (int kx = 0; kx < 5; ++kx) pg1[o * 25 + ky * 5 + kx] = gw1acc[(o * 5 + ky) * 8 + kx];
    gb1t.data_ptr<float>()[o] = gb1[o];
  }
  float* pg2 = gw2.data_ptr<float>();
  for (int o = 0; o < 16; ++o)
    for (int i = 0; i < 6; ++i)
      for (int ky = 0; ky < 5; ++ky)
        for (int kx = 0; kx < 5; ++kx)
          pg2[(o * 6 + i) * 25 + ky * 5 + kx] = gw2b[(o * 25 + ky * 5 + kx) * 8 + i];
  std::memcpy(gb2t.data_ptr<float>(), gb2, 64);
  torch::Tensor lt = torch::full({}, (float)(loss / (double)B), opts);
  auto T5 = clk::now();
  if (timing) {
    g_t[0] += secs(T0, T1) + secs(T4, T5);
    g_t[1] += secs(T1, T2);
    g_t[2] += secs(T2, T3);
    g_t[3] += secs(T3, T4);
  }
  return {lt, gw1, gb1t, gw2, gb2t, gfw1, gfb1, gfw2, gfb2, gfw3, gfb3};
}


namespace {
// Indices of the nonzero entries of v[0..n) (n multiple of 16) -> idx, returns the count.
inline int nz_indices(const float* v, int n, int* idx) {
  int cnt = 0;
  const __m512i iota = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  for (int k = 0; k < n; k += 16) {
    const __mmask16 m = _mm512_cmp_ps_mask(_mm512_loadu_ps(v + k), _mm512_setzero_ps(), _CMP_NEQ_UQ);
    _mm512_mask_compressstoreu_epi32(idx + cnt, m, _mm512_add_epi32(iota, _mm512_set1_epi32(k)));
    cnt += __builtin_popcount((unsigned)m);
  }
  return cnt;
}
// acc[0..NV) += s * row[0..16*NV)
template <int NV>
inline void axpy_row(__m512* acc, const float* row, float s) {
  const __m512 g = _mm512_set1_ps(s);
  for (int v = 0; v < NV; ++v) acc[v] = _mm512_fmadd_ps(g, _mm512_loadu_ps(row + 16 * v), acc[v]);
}
template <int NV>
inline void axpy_mem(float* dst, const float* src, float s) {
  const __m512 g = _mm512_set1_ps(s);
  for (int v = 0; v < NV; ++v)
    _mm512_storeu_ps(dst + 16 * v, _mm512_fmadd_ps(g, _mm512_loadu_ps(src + 16 * v), _mm512_loadu_ps(dst + 16 * v)));
}
// Sparse gated dense layer forward: acc = bias + sum_{k in nz} x[k] * Wt[k]; then gate.
template <int NV>
inline void fc_fwd(const float* x, const int* nz, int cnt, const float* Wt, const float* bias,
                   const float* msk, float s, float* h, float* gate) {
  __m512 acc[NV], acc2[NV];
  for (int v = 0; v < NV; ++v) { acc[v] = _mm512_loadu_ps(bias + 16 * v); acc2[v] = _mm512_setzero_ps(); }
  int j = 0;
  for (; j + 1 < cnt; j += 2) {
    axpy_row<NV>(acc, Wt + nz[j] * 16 * NV, x[nz[j]]);
    axpy_row<NV>(acc2, Wt + nz[j + 1] * 16 * NV, x[nz[j + 1]]);
  }
  if (j < cnt) axpy_row<NV>(acc, Wt + nz[j] * 16 * NV, x[nz[j]]);
  const __m512 sv = _mm512_set1_ps(s);
  for (int v = 0; v < NV; ++v) {
    // Note: (a + a2) differs from a dense sum only in rounding order.
    const __m512 a = _mm512_add_ps(acc[v], acc2[v]);
    const __m512 gt = _mm512_maskz_mul_ps(_mm512_cmp_ps_mask(a, _mm512_setzero_ps(), _CMP_GT_OQ),
                                          _mm512_loadu_ps(msk + 16 * v), sv);
    _mm512_storeu_ps(gate + 16 * v, gt);
    _mm512_storeu_ps(h + 16 * v, _mm512_mul_ps(a, gt));
  }
}
}  // namespace

// Fully per-sample fused version: conv fwd -> sparse FC fwd -> loss -> FC bwd -> conv bwd.
std::vector<torch::Tensor> sgd_grads2(torch::Tensor x, torch::Tensor y,
    torch::Tensor w1, torch::Tensor b1, torch::Tensor w2, torch::Tensor b2,
    torch::Tensor fw1, torch::Tensor fb1, torch::Tensor fw2, torch::Tensor fb2,
    torch::Tensor fw3, torch::Tensor fb3,
    torch::Tensor m1, torch::Tensor m2, torch::Tensor m3, torch::Tensor m4, double scale_d,
    bool timing) {
  auto T0 = clk::now();
  const int64_t B = x.size(0);
  const float s = (float)scale_d;
  const float invB = 1.0f / (float)B;  // reference divides by B; we multiply by fl(1/B) (B = 2^k exact)
  x = x.contiguous();
  const float* X = x.data_ptr<float>();
  const int64_t* Yl = y.data_ptr<int64_t>();
  const float* W1 = w1.data_ptr<float>();
  const float* B1 = b1.data_ptr<float>();
  const float* W2 = w2.data_ptr<float>();
  const float* M1 = m1.data_ptr<float>();
  const float* M2 = m2.data_ptr<float>();
  const float* M3 = m3.data_ptr<float>();
  const float* M4 = m4.data_ptr<float>();
  const float* F1 = fw1.data_ptr<float>();  // (120, 256): [n][c*16+pos]
  const float* F2 = fw2.data_ptr<float>();  // (84, 120)
  const float* F3 = fw3.data_ptr<float>();  // (10, 84)
  alignas(64) float w2t[6 * 25 * 16];
  alignas(64) float w2b[16 * 25 * 8];
  std::memset(w2b, 0, sizeof(w2b));
  for (int o = 0; o < 16; ++o)
    for (int i = 0; i < 6; ++i)
      for (int k = 0; k < 25; ++k) {
        const float v = W2[(o * 6 + i) * 25 + k];
        w2t[(i * 25 + k) * 16 + o] = v;
        w2b[(o * 25 + k) * 8 + i] = v;
      }
  // FC weight layouts (zero padded): Wt1[pos*16+c][128], W1r[n][256] (permuted cols),
  // Wt2[k][96], W2r[j][128], Wt3[k][16], W3r[c][96]; biases and masks padded.
  std::vector<float> buf(256 * 128 + 120 * 256 + 120 * 96 + 84 * 128 + 84 * 16 + 10 * 96, 0.f);
  float* Wt1 = buf.data();
  float* W1r = Wt1 + 256 * 128;
  float* Wt2 = W1r + 120 * 256;
  float* W2r = Wt2 + 120 * 96;
  float* Wt3 = W2r + 84 * 128;
  float* W3r = Wt3 + 84 * 16;
  for (int n = 0; n < 120; ++n)
    for (int c = 0; c < 16; ++c)
      for (int pos = 0; pos < 16; ++pos) {
        const float v = F1[n * 256 + c * 16 + pos];
        Wt1[(pos * 16 + c) * 128 + n] = v;
        W1r[n * 256 + pos * 16 + c] = v;
      }
  for (int j = 0; j < 84; ++j)
    for (int k = 0; k < 120; ++k) {
      const float v = F2[j * 120 + k];
      Wt2[k * 96 + j] = v;
      W2r[j * 128 + k] = v;
    }
  for (int c = 0; c < 10; ++c)
    for (int k = 0; k < 84; ++k) {
      const float v = F3[c * 84 + k];
      Wt3[k * 16 + c] = v;
      W3r[c * 96 + k] = v;
    }
  alignas(64) float fb1p[128] = {0}, fb2p[96] = {0}, fb3p[16] = {0};
  std::memcpy(fb1p, fb1.data_ptr<float>(), 120 * 4);
  std::memcpy(fb2p, fb2.data_ptr<float>(), 84 * 4);
  std::memcpy(fb3p, fb3.data_ptr<float>(), 10 * 4);
  // Gradient accumulators.
  std::vector<float> gbuf(256 * 128 + 120 * 96 + 84 * 16, 0.f);
  float* gWt1 = gbuf.data();
  float* gWt2 = gWt1 + 256 * 128;
  float* gWt3 = gWt2 + 120 * 96;
  alignas(64) float gfb1p[128] = {0}, gfb2p[96] = {0}, gfb3p[16] = {0};
  alignas(64) float gw2b[16 * 25 * 8];
  std::memset(gw2b, 0, sizeof(gw2b));
  alignas(64) float gw1acc[6 * 5 * 8];
  std::memset(gw1acc, 0, sizeof(gw1acc));
  __m512 gb2v = _mm512_setzero_ps();
  float gb1[6] = {0, 0, 0, 0, 0, 0};
  double loss = 0.0;
  // Per-sample scratch.
  alignas(64) float pad[28 * 40 + 16];
  alignas(64) float padb[28 * 32 + 16];
  alignas(64) float tmp[6 * 12 * 16];
  alignas(64) float h1t[1152];
  alignas(64) float dh1t[12 * 96 + 32];
  alignas(64) uint8_t win1[6 * 12 * 16];
  alignas(64) uint8_t win2[256];
  alignas(64) float h2[256], dh2[256], h3[128], g3[128], d3[128], h4[96], g4[96], d4[96];
  alignas(64) float m3p[128] = {0}, m4p[96] = {0}, lg[16], dl[16];
  alignas(64) int nz2[256], nz3[128], nz4[96], nzo[16];
  std::memset(pad, 0, sizeof(pad));
  std::memset(padb, 0, sizeof(padb));
  double tc = 0, tf = 0, tb = 0;
  auto T1 = clk::now();
  for (int64_t b = 0; b < B; ++b) {
    auto t0 = clk::now();
    const float* img = X + b * 784;
    for (int r = 0; r < 28; ++r) {
      std::memcpy(pad + r * 40, img + r * 28, 28 * sizeof(float));
      std::memcpy(padb + r * 32, img + r * 28, 28 * sizeof(float));
    }
    alignas(64) float ms2[16];
    float ms1[6];
    bool act1[6];
    for (int o = 0; o < 6; ++o) { ms1[o] = M1[b * 6 + o] * s; act1[o] = M1[b * 6 + o] != 0.f; }
    for (int o = 0; o < 16; ++o) ms2[o] = M2[b * 16 + o] * s;
    conv1_fwd(pad, W1, B1, ms1, h1t, win1, tmp);
    conv2_fwd(h1t, w2t, b2.data_ptr<float>(), ms2, act1, h2, win2);
    auto t1 = clk::now();
    // FC forward (sparse in the gated activations).
    std::memcpy(m3p, M3 + b * 120, 120 * 4);
    std::memcpy(m4p, M4 + b * 84, 84 * 4);
    const int c2 = nz_indices(h2, 256, nz2);
    fc_fwd<8>(h2, nz2, c2, Wt1, fb1p, m3p, s, h3, g3);
    const int c3 = nz_indices(h3, 128, nz3);
    fc_fwd<6>(h3, nz3, c3, Wt2, fb2p, m4p, s, h4, g4);
    const int c4 = nz_indices(h4, 96, nz4);
    {
      __m512 acc[1] = {_mm512_loadu_ps(fb3p)};
      for (int j = 0; j < c4; ++j) axpy_row<1>(acc, Wt3 + nz4[j] * 16, h4[nz4[j]]);
      _mm512_storeu_ps(lg, acc[0]);
    }
    // Loss and dlogits = (softmax - onehot) / B.
    {
      float mx = lg[0];
      for (int k = 1; k < 10; ++k) mx = std::max(mx, lg[k]);
      float se = 0.f;
      for (int k = 0; k < 10; ++k) se += std::exp(lg[k] - mx);
      const float lse = std::log(se);
      for (int k = 0; k < 16; ++k) dl[k] = 0.f;
      for (int k = 0; k < 10; ++k) dl[k] = std::exp(lg[k] - mx - lse);
      const int yb = (int)Yl[b];
      loss -= (double)(lg[yb] - mx - lse);
      dl[yb] -= 1.f;
      for (int k = 0; k < 10; ++k) dl[k] *= invB;
    }
    // fc3 backward.
    _mm512_storeu_ps(gfb3p, _mm512_add_ps(_mm512_loadu_ps(gfb3p), _mm512_loadu_ps(dl)));
    for (int j = 0; j < c4; ++j) axpy_mem<1>(gWt3 + nz4[j] * 16, dl, h4[nz4[j]]);
    {
      __m512 acc[6];
      for (int v = 0; v < 6; ++v) acc[v] = _mm512_setzero_ps();
      for (int c = 0; c < 10; ++c) axpy_row<6>(acc, W3r + c * 96, dl[c]);
      for (int v = 0; v < 6; ++v) {
        const __m512 d = _mm512_mul_ps(acc[v], _mm512_loadu_ps(g4 + 16 * v));
        _mm512_storeu_ps(d4 + 16 * v, d);
        _mm512_storeu_ps(gfb2p + 16 * v, _mm512_add_ps(_mm512_loadu_ps(gfb2p + 16 * v), d));
      }
    }
    // fc2 backward (d4 nonzero only where h4 is).
    for (int j = 0; j < c3; ++j) axpy_mem<6>(gWt2 + nz3[j] * 96, d4, h3[nz3[j]]);
    {
      __m512 acc[8];
      for (int v = 0; v < 8; ++v) acc[v] = _mm512_setzero_ps();
      for (int j = 0; j < c4; ++j) axpy_row<8>(acc, W2r + nz4[j] * 128, d4[nz4[j]]);
      for (int v = 0; v < 8; ++v) {
        const __m512 d = _mm512_mul_ps(acc[v], _mm512_loadu_ps(g3 + 16 * v));
        _mm512_storeu_ps(d3 + 16 * v, d);
        _mm512_storeu_ps(gfb1p + 16 * v, _mm512_add_ps(_mm512_loadu_ps(gfb1p + 16 * v), d));
      }
    }
    // fc1 backward.
    for (int j = 0; j < c2; ++j) axpy_mem<8>(gWt1 + nz2[j] * 128, d3, h2[nz2[j]]);
    {
      __m512 acc[16];
      for (int v = 0; v < 16; ++v) acc[v] = _mm512_setzero_ps();
      for (int j = 0; j < c3; ++j) axpy_row<16>(acc, W1r + nz3[j] * 256, d3[nz3[j]]);
      for (int v = 0; v < 16; ++v) {  // d_pool2 = dH2 * gate2
        const __m512 hv = _mm512_loadu_ps(h2 + 16 * v);
        _mm512_storeu_ps(dh2 + 16 * v, _mm512_maskz_mul_ps(
            _mm512_cmp_ps_mask(hv, _mm512_setzero_ps(), _CMP_GT_OQ), acc[v], _mm512_loadu_ps(ms2)));
      }
    }
    auto t2 = clk::now();
    // conv2 backward (scatter over nonzero pooled gradients).
    std::memset(dh1t, 0, sizeof(dh1t));
    const __m512i iota = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    for (int pos = 0; pos < 16; ++pos) {
      const int Y = pos >> 2, Xp = pos & 3;
      const __m512 gv = _mm512_loadu_ps(dh2 + pos * 16);
      gb2v = _mm512_add_ps(gb2v, gv);
      const __mmask16 nzm = _mm512_cmp_ps_mask(gv, _mm512_setzero_ps(), _CMP_NEQ_UQ);
      _mm512_mask_compressstoreu_epi32(nzo, nzm, iota);
      const int cnt = __builtin_popcount((unsigned)nzm);
      for (int j = 0; j < cnt; ++j) {
        const int o = nzo[j];
        const int w = win2[pos * 16 + o];
        const int yy = 2 * Y + (w >> 1), xx = 2 * Xp + (w & 1);
        const __m512 gg = _mm512_set1_ps(dh2[pos * 16 + o]);
        for (int ky = 0; ky < 5; ++ky) {
          const int off = (yy + ky) * 96 + xx * 8;
          axpy40(dh1t + off, w2b + (o * 5 + ky) * 40, gg);
          axpy40(gw2b + (o * 5 + ky) * 40, h1t + off, gg);
        }
      }
    }
    // conv1 backward.
    for (int o = 0; o < 6; ++o) {
      if (!act1[o]) continue;
      const float mso = ms1[o];
      __m256 acc[5];
      for (int k = 0; k < 5; ++k) acc[k] = _mm256_setzero_ps();
      float bsum = 0.f;
      for (int Y = 0; Y < 12; ++Y)
        for (int Xp = 0; Xp < 12; ++Xp) {
          const float hv = h1t[(Y * 12 + Xp) * 8 + o];
          const float gs = hv > 0.f ? dh1t[(Y * 12 + Xp) * 8 + o] * mso : 0.f;
          bsum += gs;
          const int w = win1[(o * 12 + Y) * 16 + Xp];
          const float* src = padb + (2 * Y + (w >> 1)) * 32 + 2 * Xp + (w & 1);
          const __m256 gg = _mm256_set1_ps(gs);
          for (int k = 0; k < 5; ++k) acc[k] = _mm256_fmadd_ps(gg, _mm256_loadu_ps(src + k * 32), acc[k]);
        }
      for (int k = 0; k < 5; ++k)
        _mm256_storeu_ps(gw1acc + (o * 5 + k) * 8,
                         _mm256_add_ps(_mm256_loadu_ps(gw1acc + (o * 5 + k) * 8), acc[k]));
      gb1[o] += bsum;
    }
    if (timing) {
      auto t3 = clk::now();
      tc += secs(t0, t1); tf += secs(t1, t2); tb += secs(t2, t3);
    }
  }
  auto T4 = clk::now();
  auto opts = x.options();
  torch::Tensor gw1 = torch::empty({6, 1, 5, 5}, opts), gb1t = torch::empty({6}, opts);
  torch::Tensor gw2 = torch::empty({16, 6, 5, 5}, opts), gb2t = torch::empty({16}, opts);
  float* pg1 = gw1.data_ptr<float>();
  for (int o = 0; o < 6; ++o) {
    for (int ky = 0; ky < 5; ++ky)
      for (int kx = 0; kx < 5; ++kx) pg1[o * 25 + ky * 5 + kx] = gw1acc[(o * 5 + ky) * 8 + kx];
    gb1t.data_ptr<float>()[o] = gb1[o];
  }
  float* pg2 = gw2.data_ptr<float>();
  for (int o = 0; o < 16; ++o)
    for (int i = 0; i < 6; ++i)
      for (int k = 0; k < 25; ++k) pg2[(o * 6 + i) * 25 + k] = gw2b[(o * 25 + k) * 8 + i];
  _mm512_storeu_ps(gb2t.data_ptr<float>(), gb2v);
  torch::Tensor gfw1 = torch::empty({120, 256}, opts), gfw2 = torch::empty({84, 120}, opts),
                gfw3 = torch::empty({10, 84}, opts);
  float* q1 = gfw1.data_ptr<float>();
  for (int n = 0; n < 120; ++n)
    for (int c = 0; c < 16; ++c)
      for (int pos = 0; pos < 16; ++pos) q1[n * 256 + c * 16 + pos] = gWt1[(pos * 16 + c) * 128 + n];
  float* q2 = gfw2.data_ptr<float>();
  for (int j = 0; j < 84; ++j)
    for (int k = 0; k < 120; ++k) q2[j * 120 + k] = gWt2[k * 96 + j];
  float* q3 = gfw3.data_ptr<float>();
  for (int c = 0; c < 10; ++c)
    for (int k = 0; k < 84; ++k) q3[c * 84 + k] = gWt3[k * 16 + c];
  torch::Tensor gfb1 = torch::from_blob(gfb1p, {120}, opts).clone();
  torch::Tensor gfb2 = torch::from_blob(gfb2p, {84}, opts).clone();
  torch::Tensor gfb3 = torch::from_blob(gfb3p, {10}, opts).clone();
  torch::Tensor lt = torch::full({}, (float)(loss / (double)B), opts);
  auto T5 = clk::now();
  if (timing) {
    g_t[0] += secs(T0, T1) + secs(T4, T5);
    g_t[1] += tc; g_t[2] += tf; g_t[3] += tb;
  }
  return {lt, gw1, gb1t, gw2, gb2t, gfw1, gfb1, gfw2, gfb2, gfw3, gfb3};
}

std::vector<double> get_times(bool reset) {
  std::vector<double> r(g_t, g_t + 8);
  if (reset) std::memset(g_t, 0, sizeof(g_t));
  return r;
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("sgd_grads", &sgd_grads);
  m.def("sgd_grads2", &sgd_grads2);
  m.def("get_times", &get_times);
}
