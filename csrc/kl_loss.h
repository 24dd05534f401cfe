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
// with p_j = ea_j / Sa, q_j = eb_j / Sb. Terms with p_j = 0 (ea_j = 0: a_j = -inf, or so far
// below the maximum that exp underflows) contribute 0 to X and to the P-side gradient, the
// 0 * log 0 = 0 convention: a zero teacher probability (forward direction) gives a finite KL,
// and a class masked to -inf in both logits contributes nothing and gets a zero gradient. The cross-entropy of DivQAT (arXiv 2512.23948) at
// temperature 1 on the student logits s with max ms and target y:
//   ce = log S1 - (s_y - ms),  S1 = sum_j exp(s_j - ms),  d ce / d s_j = exp(s_j - ms) / S1 - [j == y].
#pragma once

#include <ATen/ATen.h>

#include <cmath>
#include <cstdint>
#include <cstring>

#include "common.h"

namespace divqat {
namespace kl {

using std::exp;
using std::log;

// exp(x) for x <= 0 (logits minus their row maximum). On the host a Cody-Waite reduction and
// the Cephes expf polynomial (about 1 ulp), written without calls so that loops vectorize;
// arguments below the fp32 range give 0.
DIVQAT_HOST_DEVICE float exp_nonpos(float x) {
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

DIVQAT_HOST_DEVICE double exp_nonpos(double x) { return exp(x); }

// ea_j (ca_j - cb_j), 0 where ea_j = 0 (whatever ca_j - cb_j is: -inf - -inf is NaN).
template <typename A>
DIVQAT_HOST_DEVICE A cross_term(A ea, A ca, A cb) {
  const A term = ea * (ca - cb);  // computed unconditionally: a plain select, so loops vectorize
  return ea > A(0) ? term : A(0);
}

// KL(P || Q) of a row from its partial sums (see the top of this file).
template <typename A>
DIVQAT_HOST_DEVICE A kl_from_partials(A cross, A sum_a, A sum_b) {
  return cross / sum_a - log(sum_a) + log(sum_b);
}

// The constant of the P-side gradient: -log Sa + log Sb - kl.
template <typename A>
DIVQAT_HOST_DEVICE A p_side_shift(A sum_a, A sum_b, A kl) {
  return log(sum_b) - log(sum_a) - kl;
}

// coef * d(T^2 kl)/d a_j with ra = coef * T / Sa: ra * ea_j * (ca_j - cb_j + shift), 0 where ea_j = 0.
template <typename A>
DIVQAT_HOST_DEVICE A p_side_grad(A ra, A ea, A ca, A cb, A shift) {
  const A grad = ra * ea * (ca - cb + shift);
  return ea > A(0) ? grad : A(0);
}

// coef * d(T^2 kl)/d b_j with ra = coef * T / Sa, rb = coef * T / Sb: rb * eb_j - ra * ea_j.
template <typename A>
DIVQAT_HOST_DEVICE A q_side_grad(A ra, A ea, A rb, A eb) {
  return rb * eb - ra * ea;
}

// Cross-entropy of a row from S1 = sum exp(s - ms) and the centered target logit s_y - ms.
template <typename A>
DIVQAT_HOST_DEVICE A ce_from_partials(A sum_1, A target_centered) {
  return log(sum_1) - target_centered;
}

// exp((x - m) * inv_t) for x <= m, and 0 for x = -inf also where m = -inf (a running maximum
// over values that are all -inf so far, whose -inf - -inf would be NaN).
template <typename A>
DIVQAT_HOST_DEVICE A centered_exp(A x, A m, A inv_t) {
  const A e = exp_nonpos((x - m) * inv_t);
  return x == -INFINITY ? A(0) : e;
}

// exp((m_old - m_new) * inv_t): rescales an online sum when its running maximum grows
// (1 when it did not, 0 while nothing has been summed yet: m_old = -inf).
template <typename A>
DIVQAT_HOST_DEVICE A rescale(A m_old, A m_new, A inv_t) {
  if (m_old == m_new) return A(1);
  return m_old == -INFINITY ? A(0) : exp_nonpos((m_old - m_new) * inv_t);
}

// KL(P || Q) from the online sums: W = sum ea_j (a_j - b_j) / T (terms with ea_j = 0 left out,
// cross_term), so X = W - (ma - mb) Sa / T.
template <typename A>
DIVQAT_HOST_DEVICE A kl_from_online(A w, A ma, A mb, A inv_t, A sum_a, A sum_b) {
  return w / sum_a - (ma - mb) * inv_t - log(sum_a) + log(sum_b);
}

// The weight of a row's KL gradient: coef, or 0 when the hinge min(loss, cap) is capped.
template <typename A>
DIVQAT_HOST_DEVICE A capped_coef(A loss, A cap, A coef) {
  return loss > cap ? A(0) : coef;
}

// ---- host side: the argument checks and reduction weights shared by the CPU and CUDA ops ----

// What a launch needs beyond the tensors: rows, columns, direction and the weights of each row's
// KL and CE in the reduced loss (their gradients are written scaled by these).
struct Plan {
  int64_t rows;
  int64_t cols;
  bool reverse;    // direction == "reverse": P = student, Q = teacher
  double kl_coef;  // d loss / d (row T^2 KL), before the cap
  double ce_coef;  // d loss / d (row CE)
  double cap;      // +inf: no cap
};

inline void check_logits(const at::Tensor& student, const at::Tensor& teacher, double temperature) {
  TORCH_CHECK(student.is_floating_point(), "student_logits must be floating point, got ", student.scalar_type());
  TORCH_CHECK(teacher.scalar_type() == student.scalar_type(), "teacher_logits must have the dtype of student_logits (",
              student.scalar_type(), "), got ", teacher.scalar_type());
  TORCH_CHECK(student.dim() >= 1 && student.size(-1) >= 1, "student_logits must have shape (..., C) with C >= 1");
  TORCH_CHECK(teacher.sizes() == student.sizes(), "teacher_logits must have the shape of student_logits, got ",
              teacher.sizes(), " vs ", student.sizes());
  TORCH_CHECK(teacher.device() == student.device(), "teacher_logits must be on the device of student_logits");
  TORCH_CHECK(temperature > 0, "temperature must be > 0, got ", temperature);
}

inline bool parse_direction(c10::string_view direction) {
  TORCH_CHECK(direction == "forward" || direction == "reverse",
              "direction must be 'forward' or 'reverse', got '", direction, "'");
  return direction == "reverse";
}

inline Plan plan_div_kl(const at::Tensor& student, const at::Tensor& teacher, double temperature,
                        c10::string_view reduction, c10::string_view direction) {
  check_logits(student, teacher, temperature);
  TORCH_CHECK(reduction == "batchmean" || reduction == "sum" || reduction == "none",
              "reduction must be 'batchmean', 'sum' or 'none', got '", reduction, "'");
  const int64_t cols = student.size(-1);
  const int64_t rows = student.numel() / cols;
  const double kl_coef = reduction == "batchmean" ? 1.0 / static_cast<double>(rows) : 1.0;
  return {rows, cols, parse_direction(direction), kl_coef, 0.0, INFINITY};
}

inline Plan plan_divqat(const at::Tensor& student, const at::Tensor& teacher, const at::Tensor& target, double alpha,
                        double temperature, c10::string_view direction, std::optional<double> kl_cap) {
  check_logits(student, teacher, temperature);
  TORCH_CHECK(target.scalar_type() == at::kLong, "target must have dtype int64, got ", target.scalar_type());
  TORCH_CHECK(target.sizes() == student.sizes().slice(0, student.dim() - 1),
              "target must have the shape of student_logits without its last dimension, got ", target.sizes());
  TORCH_CHECK(target.device() == student.device(), "target must be on the device of student_logits");
  TORCH_CHECK(alpha >= 0, "alpha must be >= 0, got ", alpha);
  TORCH_CHECK(!kl_cap.has_value() || *kl_cap > 0, "kl_cap must be > 0, got ", kl_cap.value_or(0));
  const int64_t cols = student.size(-1);
  const int64_t rows = student.numel() / cols;
  const double inv_rows = 1.0 / static_cast<double>(rows);
  return {rows, cols, parse_direction(direction), -alpha * inv_rows, inv_rows, kl_cap.value_or(INFINITY)};
}

// The tensors a launch reads and writes: contiguous logits, the gradient outputs (the input's
// shape when wanted, else empty), and the per-row T^2 KL (shape (...)) and CE (rows, or empty)
// kept in float (double for double logits).
struct Buffers {
  at::Tensor s, t, grad_student, grad_teacher, kl_rows, ce_rows;
};

inline Buffers make_buffers(const at::Tensor& student, const at::Tensor& teacher, bool student_grad,
                            bool teacher_grad, bool with_ce) {
  Buffers b;
  b.s = student.contiguous();
  b.t = teacher.contiguous();
  b.grad_student = student_grad ? at::empty(b.s.sizes(), b.s.options()) : at::empty({0}, b.s.options());
  b.grad_teacher = teacher_grad ? at::empty(b.t.sizes(), b.t.options()) : at::empty({0}, b.t.options());
  const auto acc = b.s.options().dtype(b.s.scalar_type() == at::kDouble ? at::kDouble : at::kFloat);
  b.kl_rows = at::empty(b.s.sizes().slice(0, b.s.dim() - 1), acc);
  b.ce_rows = at::empty({with_ce ? b.kl_rows.numel() : 0}, acc);
  return b;
}

}  // namespace kl
}  // namespace divqat
