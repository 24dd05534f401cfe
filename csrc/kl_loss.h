// Shared math of div_kl_loss and divqat_loss (host and device inline functions).
//
// A row holds the logits a of P and b of Q (forward direction: a = teacher, b = student;
// reverse: a = student, b = teacher), temperature T. With the row maxima ma, mb:
//
//   ca_j = (a_j - ma) / T,  cb_j = (b_j - mb) / T,  ea_j = exp(ca_j),  eb_j = exp(cb_j)
//   Sa = sum_j ea_j,  Sb = sum_j eb_j,  X = sum_j ea_j (ca_j - cb_j)
//   kl = KL(P || Q) = X / Sa - log Sa + log Sb                 (all terms O(range), finite at +-1e4)
//   loss = T^2 kl
//   d loss / d b_j = T (q_j - p_j)                             ("Q side")
//   d loss / d a_j = T p_j (ca_j - cb_j - log Sa + log Sb - kl) ("P side")
//
// with p_j = ea_j / Sa, q_j = eb_j / Sb. The cross-entropy of DivQAT (arXiv 2512.23948) at
// temperature 1 on the student logits s with max ms and target y:
//   ce = log S1 - (s_y - ms),  S1 = sum_j exp(s_j - ms),  d ce / d s_j = exp(s_j - ms) / S1 - [j == y].
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#ifdef __CUDACC__
#define DIVQAT_HD __host__ __device__ __forceinline__
#elif defined(__GNUC__)
// always_inline: the CPU kernels are compiled for several instruction sets (target_clones),
// and GCC only inlines a function into a clone of another -march when forced to.
#define DIVQAT_HD inline __attribute__((always_inline))
#else
#define DIVQAT_HD inline
#endif

namespace divqat {
namespace kl {

using std::exp;
using std::log;

// exp(x) for x <= 0 (logits minus their row maximum). On the host a Cody-Waite reduction and
// the Cephes expf polynomial (about 1 ulp), written without calls so that loops vectorize;
// arguments below the fp32 range give 0.
DIVQAT_HD float exp_nonpos(float x) {
#ifdef __CUDA_ARCH__
  return __expf(x);
#else
  const float xc = x < -87.0f ? -87.0f : x;
  const float n = (xc * 1.44269504088896341f + 12582912.0f) - 12582912.0f;  // round(x / ln 2)
  const float r = (xc - n * 0.693359375f) + n * 2.12194440e-4f;              // x - n ln 2
  float y = 1.9875691500e-4f;
  y = y * r + 1.3981999507e-3f;
  y = y * r + 8.3334519073e-3f;
  y = y * r + 4.1665795894e-2f;
  y = y * r + 1.6666665459e-1f;
  y = y * r + 5.0000001201e-1f;
  y = y * r * r + r + 1.0f;
  const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;  // 2^n, n in [-126, 0]
  float scale;
  std::memcpy(&scale, &bits, sizeof(scale));
  return x < -87.0f ? 0.0f : y * scale;
#endif
}

DIVQAT_HD double exp_nonpos(double x) { return exp(x); }

// KL(P || Q) of a row from its partial sums (see the top of this file).
template <typename A>
DIVQAT_HD A kl_from_partials(A cross, A sum_a, A sum_b) {
  return cross / sum_a - log(sum_a) + log(sum_b);
}

// The constant of the P-side gradient: -log Sa + log Sb - kl.
template <typename A>
DIVQAT_HD A p_side_shift(A sum_a, A sum_b, A kl) {
  return log(sum_b) - log(sum_a) - kl;
}

// coef * d(T^2 kl)/d a_j with ra = coef * T / Sa: ra * ea_j * (ca_j - cb_j + shift).
template <typename A>
DIVQAT_HD A p_side_grad(A ra, A ea, A ca, A cb, A shift) {
  return ra * ea * (ca - cb + shift);
}

// coef * d(T^2 kl)/d b_j with ra = coef * T / Sa, rb = coef * T / Sb: rb * eb_j - ra * ea_j.
template <typename A>
DIVQAT_HD A q_side_grad(A ra, A ea, A rb, A eb) {
  return rb * eb - ra * ea;
}

// Cross-entropy of a row from S1 = sum exp(s - ms) and the centered target logit s_y - ms.
template <typename A>
DIVQAT_HD A ce_from_partials(A sum_1, A target_centered) {
  return log(sum_1) - target_centered;
}

// The weight of a row's KL gradient: coef, or 0 when the hinge min(loss, cap) is capped.
template <typename A>
DIVQAT_HD A capped_coef(A loss, A cap, A coef) {
  return loss > cap ? A(0) : coef;
}

}  // namespace kl
}  // namespace divqat
