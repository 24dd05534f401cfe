// CPU kernels of divqat::div_kl_loss and divqat::divqat_loss (schemas below).
//
// One fused pass per row (the math is in kl_loss.h): the row maxima, then the exponentials,
// their sums and the KL cross term in one sweep (kept in a per-thread scratch row), then the
// gradients of the reduced loss written straight away, so the backward is a scale. Rows run in
// parallel (at::parallel_for); per-row losses are summed afterwards in row order, so results do
// not depend on the thread count. fp16/bf16 rows are widened to fp32, float64 runs in float64.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <limits>
#include <memory>

#include "kl_loss.h"

namespace divqat {
namespace {

// Everything a chunk of rows needs. Gradient pointers are null when that gradient is not wanted.
template <typename scalar_t>
struct Rows {
  using A = acc_t<scalar_t>;
  const scalar_t* student;
  const scalar_t* teacher;
  const int64_t* target;  // null: no cross-entropy term (div_kl_loss)
  scalar_t* grad_student;
  scalar_t* grad_teacher;
  A* kl_rows;  // T^2 KL of every row
  A* ce_rows;  // cross-entropy of every row (divqat_loss)
  int64_t cols;
  A temperature;
  bool reverse;
  A kl_coef;  // d(reduced loss) / d(row KL) before the cap
  A ce_coef;  // d(reduced loss) / d(row CE)
  A cap;      // +inf: no cap
};

// g = coef * d(T^2 KL)/da (the logits of P) + ce_weight * e1.
template <typename A>
DIVQAT_INLINE void p_side(A* g, const A* a, const A* b, const A* ea, const A* e1, int64_t cols, A ma, A mb,
                          A inv_t, A ra, A shift, A ce_weight) {
#pragma omp simd
  for (int64_t j = 0; j < cols; ++j)
    g[j] = kl::p_side_grad(ra, ea[j], (a[j] - ma) * inv_t, (b[j] - mb) * inv_t, shift) + ce_weight * e1[j];
}

// g = coef * d(T^2 KL)/db (the logits of Q) + ce_weight * e1.
template <typename A>
DIVQAT_INLINE void q_side(A* g, const A* ea, const A* eb, const A* e1, int64_t cols, A ra, A rb, A ce_weight) {
#pragma omp simd
  for (int64_t j = 0; j < cols; ++j) g[j] = kl::q_side_grad(ra, ea[j], rb, eb[j]) + ce_weight * e1[j];
}

// One row in accumulation type A: losses into kl_out / ce_out, gradients into gs / gt.
// scratch holds 3 * cols values.
template <typename A>
DIVQAT_INLINE void row(const A* s, const A* t, int64_t cols, int64_t y, const Rows<A>& p, A* scratch,
                       A* gs, A* gt, A& kl_out, A& ce_out) {
  const A* a = p.reverse ? s : t;  // logits of P
  const A* b = p.reverse ? t : s;  // logits of Q
  const A T = p.temperature;
  const A inv_t = A(1) / T;
  A* ea = scratch;
  A* eb = scratch + cols;
  A* e1 = scratch + 2 * cols;

  A ma = -std::numeric_limits<A>::infinity();
  A mb = ma;
#pragma omp simd reduction(max : ma, mb)
  for (int64_t j = 0; j < cols; ++j) {
    ma = a[j] > ma ? a[j] : ma;
    mb = b[j] > mb ? b[j] : mb;
  }
  A sum_a = 0, sum_b = 0, cross = 0;
#pragma omp simd reduction(+ : sum_a, sum_b, cross)
  for (int64_t j = 0; j < cols; ++j) {
    const A ca = (a[j] - ma) * inv_t;
    const A cb = (b[j] - mb) * inv_t;
    const A xa = kl::exp_nonpos(ca);
    const A xb = kl::exp_nonpos(cb);
    ea[j] = xa;
    eb[j] = xb;
    sum_a += xa;
    sum_b += xb;
    cross += kl::cross_term(xa, ca, cb);
  }
  const A kl_raw = kl::kl_from_partials(cross, sum_a, sum_b);
  kl_out = T * T * kl_raw;

  // Cross-entropy at temperature 1 (divqat_loss): reuse the student's exponentials when T = 1.
  A r1 = 0;                      // ce_coef / S1
  const A* es = p.reverse ? ea : eb;  // exponentials of the student at T
  if (y >= 0) {
    const A ms = p.reverse ? ma : mb;
    A sum_1 = 0;
    if (T == A(1)) {
      e1 = const_cast<A*>(es);
      sum_1 = p.reverse ? sum_a : sum_b;
    } else {
#pragma omp simd reduction(+ : sum_1)
      for (int64_t j = 0; j < cols; ++j) {
        e1[j] = kl::exp_nonpos(s[j] - ms);
        sum_1 += e1[j];
      }
    }
    ce_out = kl::ce_from_partials(sum_1, s[y] - ms);
    r1 = p.ce_coef / sum_1;
  } else {
    e1 = ea;  // multiplied by r1 = 0 below
  }

  const A coef = kl::capped_coef(kl_out, p.cap, p.kl_coef);
  const A ra = coef * T / sum_a;
  const A rb = coef * T / sum_b;
  const A shift = kl::p_side_shift(sum_a, sum_b, kl_raw);
  // The student's gradient also gets the CE term r1 * e1.
  if (gs) {
    p.reverse ? p_side(gs, a, b, ea, e1, cols, ma, mb, inv_t, ra, shift, r1)
              : q_side(gs, ea, eb, e1, cols, ra, rb, r1);
    if (y >= 0) gs[y] -= p.ce_coef;
  }
  if (gt) {
    p.reverse ? q_side(gt, ea, eb, e1, cols, ra, rb, A(0))
              : p_side(gt, a, b, ea, e1, cols, ma, mb, inv_t, ra, shift, A(0));
  }
}

// Rows [begin, end): widen to A where needed, run `row`, narrow the gradients.
template <typename scalar_t>
DIVQAT_INLINE void run_rows(const Rows<scalar_t>& p, int64_t begin, int64_t end) {
  using A = acc_t<scalar_t>;
  constexpr bool widen = !std::is_same_v<scalar_t, A>;
  const int64_t cols = p.cols;
  const std::unique_ptr<A[]> scratch(new A[(widen ? 7 : 3) * cols]);  // uninitialized
  A* ws = scratch.get() + 3 * cols;  // widened student, teacher and their gradients
  A* wt = ws + cols;
  A* wgs = wt + cols;
  A* wgt = wgs + cols;
  Rows<A> pa{nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, cols, p.temperature,
             p.reverse, p.kl_coef, p.ce_coef, p.cap};
  A ce_dummy = 0;
  for (int64_t r = begin; r < end; ++r) {
    const int64_t off = r * cols;
    const int64_t y = p.target ? p.target[r] : -1;
    A* ce_out = p.ce_rows ? p.ce_rows + r : &ce_dummy;
    if constexpr (widen) {
      for (int64_t j = 0; j < cols; ++j) ws[j] = static_cast<A>(p.student[off + j]);
      for (int64_t j = 0; j < cols; ++j) wt[j] = static_cast<A>(p.teacher[off + j]);
      row<A>(ws, wt, cols, y, pa, scratch.get(), p.grad_student ? wgs : nullptr,
             p.grad_teacher ? wgt : nullptr, p.kl_rows[r], *ce_out);
      if (p.grad_student)
        for (int64_t j = 0; j < cols; ++j) p.grad_student[off + j] = static_cast<scalar_t>(wgs[j]);
      if (p.grad_teacher)
        for (int64_t j = 0; j < cols; ++j) p.grad_teacher[off + j] = static_cast<scalar_t>(wgt[j]);
    } else {
      row<A>(p.student + off, p.teacher + off, cols, y, pa, scratch.get(),
             p.grad_student ? p.grad_student + off : nullptr, p.grad_teacher ? p.grad_teacher + off : nullptr,
             p.kl_rows[r], *ce_out);
    }
  }
}

// The vectorized instantiations, one per dtype, each compiled for several instruction sets.
DIVQAT_TARGET_CLONES void rows_kernel(const Rows<float>& p, int64_t begin, int64_t end) {
  run_rows(p, begin, end);
}
DIVQAT_TARGET_CLONES void rows_kernel(const Rows<c10::Half>& p, int64_t begin, int64_t end) {
  run_rows(p, begin, end);
}
DIVQAT_TARGET_CLONES void rows_kernel(const Rows<c10::BFloat16>& p, int64_t begin, int64_t end) {
  run_rows(p, begin, end);
}
void rows_kernel(const Rows<double>& p, int64_t begin, int64_t end) { run_rows(p, begin, end); }

// Runs every row: per-row T^2 KL (and CE) and the gradients into the buffers.
template <typename scalar_t>
void launch(const kl::Plan& plan, kl::Buffers& b, const int64_t* target, double temperature) {
  using A = acc_t<scalar_t>;
  Rows<scalar_t> p{b.s.const_data_ptr<scalar_t>(),
                   b.t.const_data_ptr<scalar_t>(),
                   target,
                   b.grad_student.numel() ? b.grad_student.mutable_data_ptr<scalar_t>() : nullptr,
                   b.grad_teacher.numel() ? b.grad_teacher.mutable_data_ptr<scalar_t>() : nullptr,
                   b.kl_rows.mutable_data_ptr<A>(),
                   b.ce_rows.numel() ? b.ce_rows.mutable_data_ptr<A>() : nullptr,
                   plan.cols,
                   static_cast<A>(temperature),
                   plan.reverse,
                   static_cast<A>(plan.kl_coef),
                   static_cast<A>(plan.ce_coef),
                   static_cast<A>(plan.cap)};
  const int64_t grain = std::max<int64_t>(1, 32768 / plan.cols);
  at::parallel_for(0, plan.rows, grain, [&](int64_t begin, int64_t end) { rows_kernel(p, begin, end); });
}

// sum_r min(v_r, cap) in row order, in double (NaN stays NaN).
double ordered_sum(const at::Tensor& v, double cap) {
  return AT_DISPATCH_FLOATING_TYPES(v.scalar_type(), "ordered_sum", [&] {
    const scalar_t* x = v.const_data_ptr<scalar_t>();
    double total = 0;
    for (int64_t i = 0; i < v.numel(); ++i) {
      const double value = static_cast<double>(x[i]);
      total += value > cap ? cap : value;
    }
    return total;
  });
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> div_kl_loss_cpu(const at::Tensor& student_logits,
                                                               const at::Tensor& teacher_logits, double temperature,
                                                               c10::string_view reduction, c10::string_view direction,
                                                               bool student_grad, bool teacher_grad) {
  const kl::Plan plan = kl::plan_div_kl(student_logits, teacher_logits, temperature, reduction, direction);
  kl::Buffers b = kl::make_buffers(student_logits, teacher_logits, student_grad, teacher_grad, false);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, b.s.scalar_type(), "div_kl_loss_cpu", [&] {
    launch<scalar_t>(plan, b, nullptr, temperature);
  });
  at::Tensor loss;
  if (reduction == "none") {
    loss = b.kl_rows.to(b.s.scalar_type());
  } else {
    const double total = ordered_sum(b.kl_rows, INFINITY);
    loss = at::scalar_tensor(reduction == "sum" ? total : total / static_cast<double>(plan.rows), b.s.options());
  }
  return {loss, b.grad_student, b.grad_teacher};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> divqat_loss_cpu(const at::Tensor& student_logits,
                                                               const at::Tensor& teacher_logits,
                                                               const at::Tensor& target, double alpha,
                                                               double temperature, c10::string_view direction,
                                                               std::optional<double> kl_cap, bool student_grad,
                                                               bool teacher_grad) {
  const kl::Plan plan =
      kl::plan_divqat(student_logits, teacher_logits, target, alpha, temperature, direction, kl_cap);
  const at::Tensor y = target.contiguous();
  const int64_t* yp = y.const_data_ptr<int64_t>();
  for (int64_t r = 0; r < plan.rows; ++r)
    TORCH_CHECK(yp[r] >= 0 && yp[r] < plan.cols, "target holds class index ", yp[r], ", outside [0, ", plan.cols,
                ")");
  kl::Buffers b = kl::make_buffers(student_logits, teacher_logits, student_grad, teacher_grad, true);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, b.s.scalar_type(), "divqat_loss_cpu", [&] {
    launch<scalar_t>(plan, b, yp, temperature);
  });
  // mean CE - alpha * mean min(KL, cap), both sums in row order.
  const double total = ordered_sum(b.ce_rows, INFINITY) - alpha * ordered_sum(b.kl_rows, plan.cap);
  at::Tensor loss = at::scalar_tensor(total / static_cast<double>(plan.rows), b.s.options());
  return {loss, b.grad_student, b.grad_teacher};
}

}  // namespace
}  // namespace divqat

TORCH_LIBRARY_FRAGMENT(divqat, m) {
  m.def(
      "div_kl_loss(Tensor student_logits, Tensor teacher_logits, float temperature, str reduction, str direction, "
      "bool student_grad, bool teacher_grad) -> (Tensor, Tensor, Tensor)");
  m.def(
      "divqat_loss(Tensor student_logits, Tensor teacher_logits, Tensor target, float alpha, float temperature, "
      "str direction, float? kl_cap, bool student_grad, bool teacher_grad) -> (Tensor, Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(divqat, CPU, m) {
  m.impl("div_kl_loss", &divqat::div_kl_loss_cpu);
  m.impl("divqat_loss", &divqat::divqat_loss_cpu);
}
