// PROTOTYPE, not used by the package or the workflow: evidence for issue 23's open decision
// (a compiled extension as a dependency?). The fast engine's Monte-Carlo query pass,
// askdagger_mnist.fast.query.mc_probs_shared, as one hand-fused single-thread CPU kernel with
// AVX-512 intrinsics; built and measured against it by bench/fused_kernels.py (agreement: float32
// rounding, about 2e-8 in a probability; bound by tests/bench/test_fused_kernels.py).
// Limits of a prototype: AVX-512 CPUs only, one thread (static buffers), contiguous float32 CPU
// tensors, C (passes) even, and a multiple of 8 for the hand-written FC modes.
//
// Layout choices:
//   h1[i][12][12]           conv1 -> pool -> relu, per image
//   P[i][w][pos][o]         conv2 split by input channel i, window position w = (y&1)*2+(x&1),
//                           pooled position pos = (y>>1)*4+(x>>1), output channel o fastest (16 = 1 zmm)
//   H[row][pos*16+o]        per-pass conv2 output (row = b*C + c); fc1 weight columns permuted to match
#include <torch/extension.h>
#include <immintrin.h>
#include <chrono>
#include <cmath>
#include <cstring>
#include <vector>

namespace {

using clk = std::chrono::steady_clock;
double g_t[8] = {0};  // breakdown accumulators, seconds

inline double secs(clk::time_point a, clk::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

// conv1 (1->6, 5x5) on 28x28, 2x2 max-pool, relu -> h1[6][12][12].
// The image is copied into a 28 x 40 zero-padded buffer (so 16-wide loads at kx..kx+31 stay in range).
// Per pooled row Y: the 6 input rows 2Y..2Y+5 are loaded once (5 shifts x 2 halves) and feed
// 6 channels x 2 conv rows x 2 halves = 24 accumulators; then vertical max, even/odd lane max, relu.
inline void conv1_pool_relu(const float* img, const float* w1, const float* b1, float* h1, float* pad) {
  for (int y = 0; y < 28; ++y) std::memcpy(pad + y * 40, img + y * 28, 28 * sizeof(float));
  const __m512i ev = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
  const __m512i od = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
  const __m512 zero = _mm512_setzero_ps();
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
      const __m512 a = _mm512_max_ps(acc[o][0][0], acc[o][1][0]);  // x 0..15
      const __m512 b = _mm512_max_ps(acc[o][0][1], acc[o][1][1]);  // x 16..31 (24.. invalid)
      __m512 m = _mm512_max_ps(_mm512_permutex2var_ps(a, ev, b), _mm512_permutex2var_ps(a, od, b));
      m = _mm512_max_ps(m, zero);
      _mm512_mask_storeu_ps(h1 + o * 144 + Y * 12, (__mmask16)0x0FFF, m);
    }
  }
}

// conv2 split by input channel: P[i][w][pos][o] = sum_{ky,kx} W2[o][i][ky][kx] * h1[i][y+ky][x+kx].
// w2t[i][ky][kx][16] (o fastest). No bias (added after pooling).
inline void conv2_parts(const float* h1, const float* w2t, float* P) {
  for (int i = 0; i < 6; ++i) {
    const float* hi = h1 + i * 144;
    float* Pi = P + i * 4 * 256;
    for (int y = 0; y < 8; ++y) {
      __m512 acc[8];
      for (int x = 0; x < 8; ++x) acc[x] = _mm512_setzero_ps();
      for (int ky = 0; ky < 5; ++ky) {
        const float* r = hi + (y + ky) * 12;
        for (int kx = 0; kx < 5; ++kx) {
          const __m512 wv = _mm512_loadu_ps(w2t + ((i * 5 + ky) * 5 + kx) * 16);
          for (int x = 0; x < 8; ++x)
            acc[x] = _mm512_fmadd_ps(_mm512_set1_ps(r[x + kx]), wv, acc[x]);
        }
      }
      for (int x = 0; x < 8; ++x) {
        const int w = (y & 1) * 2 + (x & 1);
        const int pos = (y >> 1) * 4 + (x >> 1);
        _mm512_storeu_ps(Pi + (w * 16 + pos) * 16, acc[x]);
      }
    }
  }
}

// Per pass: mix the 6 input channels with the scaled conv1 mask, max over the 4 window
// positions, + bias, relu, * conv2 mask (0/1; its scale is folded into fc1). Writes 256 floats.
// Two passes at a time (rows m1, m1+6 / m2, m2+16 / out, out+256) share the loads of P.
inline void mix_pass2(const float* P, const float* m1, float s, const __m512 bias2, const float* m2,
                      float* out) {
  __m512 mix[2][6];
  for (int q = 0; q < 2; ++q)
    for (int i = 0; i < 6; ++i) mix[q][i] = _mm512_set1_ps(m1[q * 6 + i] * s);
  const __m512 m2v0 = _mm512_loadu_ps(m2), m2v1 = _mm512_loadu_ps(m2 + 16);
  const __m512 zero = _mm512_setzero_ps();
  for (int pos = 0; pos < 16; ++pos) {
    __m512 mx0, mx1;
    for (int w = 0; w < 4; ++w) {
      const float* p = P + (w * 16 + pos) * 16;
      __m512 pv = _mm512_loadu_ps(p);
      __m512 a0 = _mm512_mul_ps(mix[0][0], pv);
      __m512 a1 = _mm512_mul_ps(mix[1][0], pv);
      for (int i = 1; i < 6; ++i) {
        pv = _mm512_loadu_ps(p + i * 1024);
        a0 = _mm512_fmadd_ps(mix[0][i], pv, a0);
        a1 = _mm512_fmadd_ps(mix[1][i], pv, a1);
      }
      if (w == 0) { mx0 = a0; mx1 = a1; } else { mx0 = _mm512_max_ps(mx0, a0); mx1 = _mm512_max_ps(mx1, a1); }
    }
    _mm512_storeu_ps(out + pos * 16, _mm512_mul_ps(_mm512_max_ps(_mm512_add_ps(mx0, bias2), zero), m2v0));
    _mm512_storeu_ps(out + 256 + pos * 16, _mm512_mul_ps(_mm512_max_ps(_mm512_add_ps(mx1, bias2), zero), m2v1));
  }
}

// Small register-blocked GEMM: C[r][0:16*NV] (+)= A[r][0:K] @ Bt[0:K][ldb], for rows r0..r0+MR.
template <int MR, int NV>
inline void micro(const float* A, int lda, const float* Bt, int ldb, int K, const float* bias,
                  float* Cm, int ldc) {
  __m512 acc[MR][NV];
  for (int v = 0; v < NV; ++v) {
    const __m512 bv = _mm512_loadu_ps(bias + 16 * v);
    for (int r = 0; r < MR; ++r) acc[r][v] = bv;
  }
  for (int k = 0; k < K; ++k) {
    __m512 b[NV];
    for (int v = 0; v < NV; ++v) b[v] = _mm512_loadu_ps(Bt + k * ldb + 16 * v);
    for (int r = 0; r < MR; ++r) {
      const __m512 a = _mm512_set1_ps(A[r * lda + k]);
      for (int v = 0; v < NV; ++v) acc[r][v] = _mm512_fmadd_ps(a, b[v], acc[r][v]);
    }
  }
  for (int r = 0; r < MR; ++r)
    for (int v = 0; v < NV; ++v) _mm512_storeu_ps(Cm + r * ldc + 16 * v, acc[r][v]);
}

// Tiles of micro<MR,NV> over rows [0,R) and nvec column vectors (column blocks outer).
template <int MR, int NV>
inline void fc_tiles(const float* A, int lda, const float* Bt, int ldb, int K, const float* bias,
                     float* Cm, int ldc, int R, int nvec) {
  int v0 = 0;
  for (; v0 + NV <= nvec; v0 += NV)
    for (int r0 = 0; r0 < R; r0 += MR)
      micro<MR, NV>(A + r0 * lda, lda, Bt + 16 * v0, ldb, K, bias + 16 * v0, Cm + r0 * ldc + 16 * v0, ldc);
  for (; v0 < nvec; ++v0)  // leftover vectors
    for (int r0 = 0; r0 < R; r0 += MR)
      micro<MR, 1>(A + r0 * lda, lda, Bt + 16 * v0, ldb, K, bias + 16 * v0, Cm + r0 * ldc + 16 * v0, ldc);
}

// relu then multiply by the 0/1 mask, over n (padded cols beyond n stay 0: bias and weight pads are 0).
inline void relu_mask(float* h, const float* m, int n) {
  for (int j = 0; j < n; ++j) {
    float v = h[j] > 0.f ? h[j] : 0.f;
    h[j] = v * m[j];
  }
}

// mean over C rows of softmax of 10 logits each (row stride ld).
inline void softmax_mean(const float* L, int ld, int C, float* out) {
  float acc[10] = {0};
  for (int c = 0; c < C; ++c) {
    const float* l = L + c * ld;
    float mx = l[0];
    for (int j = 1; j < 10; ++j) mx = std::max(mx, l[j]);
    float e[10], sum = 0.f;
    for (int j = 0; j < 10; ++j) { e[j] = std::exp(l[j] - mx); sum += e[j]; }
    for (int j = 0; j < 10; ++j) acc[j] += e[j] / sum;
  }
  for (int j = 0; j < 10; ++j) out[j] = acc[j] / C;
}

struct Prep {
  std::vector<float> w2t, w1p, b1p, w2p, b2p, w3p, b3p;
};

// Weight prep (per call; cheap): transposed, scaled by s, zero-padded to multiples of 16.
Prep prep(const torch::Tensor& c2w, const torch::Tensor& f1w, const torch::Tensor& f1b,
          const torch::Tensor& f2w, const torch::Tensor& f2b, const torch::Tensor& f3w,
          const torch::Tensor& f3b, float s) {
  Prep p;
  const float* W2 = c2w.data_ptr<float>();  // (16, 6, 5, 5)
  p.w2t.assign(6 * 25 * 16, 0.f);
  for (int o = 0; o < 16; ++o)
    for (int i = 0; i < 6; ++i)
      for (int k = 0; k < 25; ++k) p.w2t[(i * 25 + k) * 16 + o] = W2[(o * 6 + i) * 25 + k];
  // fc1: (120, 256), input index o*16+pos -> our index pos*16+o; out padded to 128.
  const float* F1 = f1w.data_ptr<float>();
  p.w1p.assign(256 * 128, 0.f);
  for (int n = 0; n < 120; ++n)
    for (int o = 0; o < 16; ++o)
      for (int pos = 0; pos < 16; ++pos)
        p.w1p[(pos * 16 + o) * 128 + n] = F1[n * 256 + o * 16 + pos] * s;
  p.b1p.assign(128, 0.f);
  std::memcpy(p.b1p.data(), f1b.data_ptr<float>(), 120 * 4);
  // fc2: (84, 120) -> K 128 x N 96
  const float* F2 = f2w.data_ptr<float>();
  p.w2p.assign(128 * 96, 0.f);
  for (int n = 0; n < 84; ++n)
    for (int k = 0; k < 120; ++k) p.w2p[k * 96 + n] = F2[n * 120 + k] * s;
  p.b2p.assign(96, 0.f);
  std::memcpy(p.b2p.data(), f2b.data_ptr<float>(), 84 * 4);
  // fc3: (10, 84) -> K 96 x N 16
  const float* F3 = f3w.data_ptr<float>();
  p.w3p.assign(96 * 16, 0.f);
  for (int n = 0; n < 10; ++n)
    for (int k = 0; k < 84; ++k) p.w3p[k * 16 + n] = F3[n * 84 + k] * s;
  p.b3p.assign(16, 0.f);
  std::memcpy(p.b3p.data(), f3b.data_ptr<float>(), 10 * 4);
  return p;
}

}  // namespace

// mode 0: FC via at::addmm (MKL) on all B*C rows; mode 1: hand micro-kernels, fused per image.
// timing: accumulate a breakdown into g_t (conv1, conv2, mix, fc, softmax).
torch::Tensor mc_probs_fused(torch::Tensor x, torch::Tensor c1w, torch::Tensor c1b, torch::Tensor c2w,
                             torch::Tensor c2b, torch::Tensor f1w, torch::Tensor f1b, torch::Tensor f2w,
                             torch::Tensor f2b, torch::Tensor f3w, torch::Tensor f3b, torch::Tensor m1,
                             torch::Tensor m2, torch::Tensor mf1, torch::Tensor mf2, double scale,
                             int64_t mode, bool timing) {
  const int B = m1.size(0), C = m1.size(1);
  const float s = (float)scale;
  TORCH_CHECK(mode == 0 || C % 8 == 0, "hand FC modes need C % 8 == 0");
  TORCH_CHECK(C % 2 == 0, "C must be even");
  for (const auto& t : {x, c1w, c1b, c2w, c2b, f1w, f1b, f2w, f2b, f3w, f3b, m1, m2, mf1, mf2})
    TORCH_CHECK(t.device().is_cpu() && t.scalar_type() == torch::kFloat32 && t.is_contiguous(),
                "every tensor must be a contiguous float32 CPU tensor");
  auto t0 = clk::now();
  Prep p = prep(c2w, f1w, f1b, f2w, f2b, f3w, f3b, s);
  auto out = torch::empty({B, 10}, torch::kFloat32);
  const float* X = x.data_ptr<float>();
  const float* W1 = c1w.data_ptr<float>();
  const float* B1 = c1b.data_ptr<float>();
  const float* M1 = m1.data_ptr<float>();
  const float* M2 = m2.data_ptr<float>();
  const float* MF1 = mf1.data_ptr<float>();
  const float* MF2 = mf2.data_ptr<float>();
  const __m512 bias2 = _mm512_loadu_ps(c2b.data_ptr<float>());
  float* O = out.data_ptr<float>();

  alignas(64) static float pad[34 * 40];
  alignas(64) static float h1[6 * 144];
  alignas(64) static float P[6 * 4 * 256];
  std::memset(pad, 0, sizeof(pad));
  if (timing) g_t[5] += secs(t0, clk::now());

  if (mode == 0) {
    auto H = torch::empty({(int64_t)B * C, 256}, torch::kFloat32);
    float* Hp = H.data_ptr<float>();
    for (int b = 0; b < B; ++b) {
      auto ta = clk::now();
      conv1_pool_relu(X + b * 784, W1, B1, h1, pad);
      auto tb = clk::now();
      conv2_parts(h1, p.w2t.data(), P);
      auto tc = clk::now();
      for (int c = 0; c < C; c += 2) {
        const int r = b * C + c;
        mix_pass2(P, M1 + r * 6, s, bias2, M2 + r * 16, Hp + (int64_t)r * 256);
      }
      auto td = clk::now();
      if (timing) { g_t[0] += secs(ta, tb); g_t[1] += secs(tb, tc); g_t[2] += secs(tc, td); }
    }
    auto te = clk::now();
    auto W1t = torch::from_blob(p.w1p.data(), {256, 128});
    auto Bb1 = torch::from_blob(p.b1p.data(), {128});
    auto h = torch::addmm(Bb1, H, W1t);  // (BC, 128)
    float* hp = h.data_ptr<float>();
    for (int r = 0; r < B * C; ++r) relu_mask(hp + r * 128, MF1 + r * 120, 120);
    auto W2t = torch::from_blob(p.w2p.data(), {128, 96});
    auto Bb2 = torch::from_blob(p.b2p.data(), {96});
    auto g = torch::addmm(Bb2, h, W2t);  // (BC, 96)
    float* gp = g.data_ptr<float>();
    for (int r = 0; r < B * C; ++r) relu_mask(gp + r * 96, MF2 + r * 84, 84);
    auto W3t = torch::from_blob(p.w3p.data(), {96, 16});
    auto Bb3 = torch::from_blob(p.b3p.data(), {16});
    auto L = torch::addmm(Bb3, g, W3t);  // (BC, 16)
    auto tf = clk::now();
    const float* Lp = L.data_ptr<float>();
    for (int b = 0; b < B; ++b) softmax_mean(Lp + b * C * 16, 16, C, O + b * 10);
    auto tg = clk::now();
    if (timing) { g_t[3] += secs(te, tf); g_t[4] += secs(tf, tg); }
  } else {
    // fused per image: 16 rows (C must be a multiple of 4)
    std::vector<float> Hb(C * 256), h(C * 128), g(C * 96), L(C * 16);
    for (int b = 0; b < B; ++b) {
      auto ta = clk::now();
      conv1_pool_relu(X + b * 784, W1, B1, h1, pad);
      auto tb = clk::now();
      conv2_parts(h1, p.w2t.data(), P);
      auto tc = clk::now();
      for (int c = 0; c < C; c += 2) {
        const int r = b * C + c;
        mix_pass2(P, M1 + r * 6, s, bias2, M2 + r * 16, Hb.data() + c * 256);
      }
      auto td = clk::now();
      switch (mode) {
        case 1: fc_tiles<4, 4>(Hb.data(), 256, p.w1p.data(), 128, 256, p.b1p.data(), h.data(), 128, C, 8); break;
        case 2: fc_tiles<8, 2>(Hb.data(), 256, p.w1p.data(), 128, 256, p.b1p.data(), h.data(), 128, C, 8); break;
        case 3: fc_tiles<16, 1>(Hb.data(), 256, p.w1p.data(), 128, 256, p.b1p.data(), h.data(), 128, C, 8); break;
        case 4: fc_tiles<2, 8>(Hb.data(), 256, p.w1p.data(), 128, 256, p.b1p.data(), h.data(), 128, C, 8); break;
        default: fc_tiles<8, 3>(Hb.data(), 256, p.w1p.data(), 128, 256, p.b1p.data(), h.data(), 128, C, 8); break;
      }
      for (int c = 0; c < C; ++c) relu_mask(h.data() + c * 128, MF1 + (b * C + c) * 120, 120);
      for (int r0 = 0; r0 < C; r0 += 4)
        micro<4, 6>(h.data() + r0 * 128, 128, p.w2p.data(), 96, 128, p.b2p.data(), g.data() + r0 * 96, 96);
      for (int c = 0; c < C; ++c) relu_mask(g.data() + c * 96, MF2 + (b * C + c) * 84, 84);
      for (int r0 = 0; r0 < C; r0 += 8)
        micro<8, 1>(g.data() + r0 * 96, 96, p.w3p.data(), 16, 96, p.b3p.data(), L.data() + r0 * 16, 16);
      auto te = clk::now();
      softmax_mean(L.data(), 16, C, O + b * 10);
      auto tf = clk::now();
      if (timing) {
        g_t[0] += secs(ta, tb); g_t[1] += secs(tb, tc); g_t[2] += secs(tc, td);
        g_t[3] += secs(td, te); g_t[4] += secs(te, tf);
      }
    }
  }
  return out;
}

std::vector<double> get_times(bool reset) {
  std::vector<double> v(g_t, g_t + 6);
  if (reset) for (double& t : g_t) t = 0;
  return v;
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("mc_probs_fused", &mc_probs_fused);
  m.def("get_times", &get_times);
}
