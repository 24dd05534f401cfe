// Schemas and CPU kernels of divqat::fake_quant, fake_quant_backward, fake_quant_lsq_backward.
//
// The per-element math is in fake_quant.h. A tensor (made contiguous) is viewed as
// [outer, C, inner] with C = x.shape[axis] (per tensor: C = 1). Long channel rows
// (inner >= kMinInner) run with one scalar set of parameters; short ones (e.g. axis = last dim)
// run along outer rows of length C * inner with per-position parameter arrays. The loops are
// plain enough for the compiler to vectorize them (x86-64-v3/v4 clones picked at load time).
//
// Straight-through backward recomputes the mask from x instead of reading a mask saved by the
// forward: no byte per element is held from forward to backward, and on the 2-core CPU it ran
// faster than `dy * mask` on PyTorch's saved bool mask (BENCHMARKS.md, "fake_quant").
// A gradient expanded from one value (the backward of a sum or mean) is read in place.
//
// LSQ backward writes dx and reduces dscale / dzero inside the kernel, deterministically: every
// fixed-size block of a row (its boundaries depend on the shape only, never on the thread count)
// sums its terms in kLanes fp32 lanes; the block sums are added in float64, in block order and
// then per channel in row order.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <vector>

// no-trapping-math lets the compiler if-convert the LSQ selects (no FP trap is ever enabled);
// fp-contract=off keeps every product rounded on its own, as in PyTorch's kernels (GCC would
// otherwise fuse (c - z) * s - x into an FMA in the x86-64-v3/v4 clones).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("no-trapping-math", "fp-contract=off")
#endif
#include "fake_quant.h"

namespace divqat {
namespace {

using fq::QParams;

constexpr int64_t kBlock = 16384;    // elements per parallel task / per LSQ partial sum
constexpr int64_t kLanes = 16;       // fp32 accumulator lanes of an LSQ block sum
constexpr int64_t kTile = 512;       // LSQ terms buffered per tile before lane sums
constexpr int64_t kChunks = 64;      // row groups of the short-row LSQ reduction

// Parameters of a span: one set (stride 0) or one per position (stride 1), structure of arrays.
template <typename A>
struct Params {
  const A* scale;
  const A* inv;
  const A* zero;
  int64_t stride;
  A qmin, qmax;
};

// Run f(i, params of i) for i < n: with the parameters hoisted out of the loop when they are
// shared (stride 0), so that both loops vectorize without gathers.
template <typename A, typename F>
DIVQAT_INLINE void for_each_element(const Params<A>& p, int64_t n, F f) {
  if (p.stride == 0) {
    const QParams<A> q{p.scale[0], p.inv[0], p.zero[0]};
    for (int64_t i = 0; i < n; ++i) f(i, q);
  } else {
    for (int64_t i = 0; i < n; ++i) f(i, QParams<A>{p.scale[i], p.inv[i], p.zero[i]});
  }
}

// The elementwise span loops (compiled per dtype with target clones below).
template <typename S, typename A>
DIVQAT_INLINE void forward_span(const S* __restrict__ x, S* __restrict__ y, int64_t n, const Params<A>& p) {
  for_each_element(p, n, [&](int64_t i, const QParams<A>& q) DIVQAT_LAMBDA_INLINE {
    y[i] = static_cast<S>(fq::fake_quant_value(static_cast<A>(x[i]), q, p.qmin, p.qmax));
  });
}

// DY_STEP is 1 for a gradient array, 0 for one value broadcast to every element (the backward of
// a sum or mean hands over an expanded scalar, read in place instead of materialized).
template <int DY_STEP, typename S, typename A>
DIVQAT_INLINE void backward_span(const S* __restrict__ x, const S* __restrict__ dy, S* __restrict__ dx, int64_t n,
                                    const Params<A>& p) {
  for_each_element(p, n, [&](int64_t i, const QParams<A>& q) DIVQAT_LAMBDA_INLINE {
    dx[i] = static_cast<S>(
        fq::straight_through(static_cast<A>(x[i]), static_cast<A>(dy[i * DY_STEP]), q, p.qmin, p.qmax));
  });
}

// dx and the LSQ terms of n <= kTile elements.
template <int DY_STEP, typename S, typename A>
DIVQAT_INLINE void lsq_tile(const S* __restrict__ x, const S* __restrict__ dy, S* __restrict__ dx, int64_t n,
                               const Params<A>& p, A g, A* __restrict__ ts, A* __restrict__ tz) {
  for_each_element(p, n, [&](int64_t i, const QParams<A>& q) DIVQAT_LAMBDA_INLINE {
    A dxi;
    fq::lsq_terms(static_cast<A>(x[i]), static_cast<A>(dy[i * DY_STEP]), q, p.qmin, p.qmax, g, dxi, ts[i], tz[i]);
    dx[i] = static_cast<S>(dxi);
  });
}

// dx for the span; the LSQ terms are added into ds[i] / dz[i] per position (per_position), or
// summed through kLanes fp32 lanes into ds[0] / dz[0] (the lanes, then their sum, in a fixed order).
template <int DY_STEP, typename S, typename A>
DIVQAT_INLINE void lsq_span(const S* x, const S* dy, S* dx, int64_t n, const Params<A>& p, A g, A* ds, A* dz,
                               bool per_position) {
  alignas(64) A ts[kTile], tz[kTile];
  alignas(64) A ls[kLanes] = {}, lz[kLanes] = {};
  for (int64_t b = 0; b < n; b += kTile) {
    const int64_t m = std::min(kTile, n - b);
    Params<A> pb = p;
    if (p.stride) pb = Params<A>{p.scale + b, p.inv + b, p.zero + b, 1, p.qmin, p.qmax};
    lsq_tile<DY_STEP>(x + b, dy + b * DY_STEP, dx + b, m, pb, g, ts, tz);
    if (per_position) {
      A* __restrict__ os = ds + b;
      A* __restrict__ oz = dz + b;
      for (int64_t i = 0; i < m; ++i) {
        os[i] += ts[i];
        oz[i] += tz[i];
      }
      continue;
    }
    for (int64_t i = m; i < kTile; ++i) ts[i] = tz[i] = A(0);  // a short last tile
    for (int64_t t = 0; t < kTile; t += kLanes) {
      for (int64_t j = 0; j < kLanes; ++j) {
        ls[j] += ts[t + j];
        lz[j] += tz[t + j];
      }
    }
  }
  if (per_position) return;
  A s = 0, z = 0;
  for (int64_t j = 0; j < kLanes; ++j) {
    s += ls[j];
    z += lz[j];
  }
  ds[0] = s;
  dz[0] = z;
}

// dy_scalar: dy points to one value that stands for every element's gradient.
#define DIVQAT_FQ_SPANS(S, A)                                                                                      \
  DIVQAT_TARGET_CLONES void forward_kernel(const S* x, S* y, int64_t n, const Params<A>& p) { forward_span(x, y, n, p); } \
  DIVQAT_TARGET_CLONES void backward_kernel(const S* x, const S* dy, bool dy_scalar, S* dx, int64_t n,                  \
                                        const Params<A>& p) {                                                       \
    if (dy_scalar)                                                                                                  \
      backward_span<0>(x, dy, dx, n, p);                                                                            \
    else                                                                                                            \
      backward_span<1>(x, dy, dx, n, p);                                                                            \
  }                                                                                                                 \
  DIVQAT_TARGET_CLONES void lsq_kernel(const S* x, const S* dy, bool dy_scalar, S* dx, int64_t n, const Params<A>& p,  \
                                   A g, A* ds, A* dz, bool per_position) {                                          \
    if (dy_scalar)                                                                                                  \
      lsq_span<0>(x, dy, dx, n, p, g, ds, dz, per_position);                                                        \
    else                                                                                                            \
      lsq_span<1>(x, dy, dx, n, p, g, ds, dz, per_position);                                                        \
  }
DIVQAT_FQ_SPANS(float, float)
DIVQAT_FQ_SPANS(c10::Half, float)
DIVQAT_FQ_SPANS(c10::BFloat16, float)
DIVQAT_FQ_SPANS(double, double)
#undef DIVQAT_FQ_SPANS

// ---------------------------------------------------------------------------------------------
// Host side: shapes, parameters, work split.

using fq::Layout;

// Per-channel parameters in the compute type, expanded to one set per row position for short rows.
template <typename A>
struct ParamStore {
  std::vector<A> scale, inv, zero;
  A qmin, qmax;
  Layout layout;

  ParamStore(const at::Tensor& s_in, const at::Tensor& z_in, int64_t qmin_, int64_t qmax_, const Layout& l)
      : qmin(static_cast<A>(qmin_)), qmax(static_cast<A>(qmax_)), layout(l) {
    // fp16/bf16/fp32 tensors: the scale is rounded to fp32, as PyTorch's kernels take it.
    const at::Tensor s = s_in.to(std::is_same_v<A, double> ? at::kDouble : at::kFloat).contiguous();
    const at::Tensor z = z_in.to(std::is_same_v<A, double> ? at::kDouble : at::kFloat).contiguous();
    const A* sp = s.const_data_ptr<A>();
    const A* zp = z.const_data_ptr<A>();
    const int64_t rep = l.short_rows() ? l.inner : 1;
    const int64_t n = l.channels * rep;
    scale.resize(n);
    inv.resize(n);
    zero.resize(n);
    for (int64_t c = 0; c < l.channels; ++c) {
      const QParams<A> q = fq::make_qparams<A>(sp[c], zp[c], qmin, qmax);
      for (int64_t r = 0; r < rep; ++r) {
        scale[c * rep + r] = q.scale;
        inv[c * rep + r] = q.inv;
        zero[c * rep + r] = q.zero;
      }
    }
  }

  // Parameters of the span of row r that starts at position start (long rows: one set for the
  // row's channel; short rows: one per position).
  Params<A> span(int64_t r, int64_t start) const {
    if (layout.short_rows())
      return Params<A>{scale.data() + start, inv.data() + start, zero.data() + start, 1, qmin, qmax};
    const int64_t c = r % layout.channels;
    return Params<A>{scale.data() + c, inv.data() + c, zero.data() + c, 0, qmin, qmax};
  }
};

// Visit every (row, block) of the layout in parallel: f(task index, row, start, length).
template <typename F>
void for_each_block(const Layout& l, F f) {
  const int64_t len = l.row_len();
  const int64_t blocks_per_row = std::max<int64_t>(1, (len + kBlock - 1) / kBlock);
  const int64_t total = l.rows() * blocks_per_row;
  const int64_t grain = std::max<int64_t>(1, kBlock / std::max<int64_t>(1, std::min(len, kBlock)));
  at::parallel_for(0, total, grain, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      const int64_t r = t / blocks_per_row;
      const int64_t start = (t % blocks_per_row) * kBlock;
      f(t, r, start, std::min(kBlock, len - start));
    }
  });
}

// The value checks of fake_quant, made by the forward (the Python wrapper leaves them to this
// kernel in eager mode, which reads scale and zero point on the host anyway): ValueError naming
// the argument, as divqat.reference.fake_quant.check_fake_quant_values raises.
void check_values(const at::Tensor& s_in, const at::Tensor& z_in, int64_t qmin, int64_t qmax, double grad_factor) {
  TORCH_CHECK_VALUE(std::isfinite(grad_factor), "grad_factor must be a finite number, got ", grad_factor);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, s_in.scalar_type(), "divqat_fake_quant_scale", [&] {
    const at::Tensor s = s_in.contiguous();
    const scalar_t* sp = s.const_data_ptr<scalar_t>();
    for (int64_t c = 0; c < s.numel(); ++c) {
      const double v = static_cast<double>(sp[c]);
      TORCH_CHECK_VALUE(v > 0.0 && v < INFINITY, "scale must be > 0 and finite (not NaN or inf) everywhere");
    }
  });
  if (z_in.is_floating_point()) {
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, z_in.scalar_type(), "divqat_fake_quant_zero", [&] {
      const at::Tensor z = z_in.contiguous();
      const scalar_t* zp = z.const_data_ptr<scalar_t>();
      for (int64_t c = 0; c < z.numel(); ++c)
        TORCH_CHECK_VALUE(!std::isnan(static_cast<double>(zp[c])), "zero_point must not be NaN");
    });
    return;
  }
  AT_DISPATCH_INTEGRAL_TYPES(z_in.scalar_type(), "divqat_fake_quant_zero_point", [&] {
    const at::Tensor z = z_in.contiguous();
    const scalar_t* zp = z.const_data_ptr<scalar_t>();
    for (int64_t c = 0; c < z.numel(); ++c)
      TORCH_CHECK_VALUE(static_cast<int64_t>(zp[c]) >= qmin && static_cast<int64_t>(zp[c]) <= qmax,
                        "zero_point must lie in [quant_min, quant_max] = [", qmin, ", ", qmax, "]");
  });
}

at::Tensor fake_quant_cpu(const at::Tensor& x_in, const at::Tensor& scale, const at::Tensor& zero_point,
                          int64_t quant_min, int64_t quant_max, c10::optional<int64_t> axis, double grad_factor) {
  const Layout l = fq::check_and_layout(x_in, scale, zero_point, quant_min, quant_max, axis);
  check_values(scale, zero_point, quant_min, quant_max, grad_factor);
  const at::Tensor x = x_in.contiguous();
  at::Tensor y = at::empty(x.sizes(), x.options());
  if (x.numel() == 0) return y;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "divqat_fake_quant_cpu", [&] {
    using A = acc_t<scalar_t>;
    const ParamStore<A> ps(scale, zero_point, quant_min, quant_max, l);
    const scalar_t* xp = x.const_data_ptr<scalar_t>();
    scalar_t* yp = y.mutable_data_ptr<scalar_t>();
    const int64_t len = l.row_len();
    for_each_block(l, [&](int64_t, int64_t r, int64_t start, int64_t n) {
      const int64_t off = r * len + start;
      forward_kernel(xp + off, yp + off, n, ps.span(r, start));
    });
  });
  return y;
}

at::Tensor fake_quant_backward_cpu(const at::Tensor& grad_in, const at::Tensor& x_in, const at::Tensor& scale,
                                   const at::Tensor& zero_point, int64_t quant_min, int64_t quant_max,
                                   c10::optional<int64_t> axis) {
  const Layout l = fq::check_and_layout(x_in, scale, zero_point, quant_min, quant_max, axis);
  const at::Tensor x = x_in.contiguous();
  const bool dy_scalar = fq::expanded_scalar(grad_in);
  const at::Tensor dy = fq::gradient_values(grad_in, x, dy_scalar);
  at::Tensor dx = at::empty(x.sizes(), x.options());
  if (x.numel() == 0) return dx;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "divqat_fake_quant_backward_cpu", [&] {
    using A = acc_t<scalar_t>;
    const ParamStore<A> ps(scale, zero_point, quant_min, quant_max, l);
    const scalar_t* xp = x.const_data_ptr<scalar_t>();
    const scalar_t* gp = dy.const_data_ptr<scalar_t>();
    scalar_t* dp = dx.mutable_data_ptr<scalar_t>();
    const int64_t len = l.row_len();
    for_each_block(l, [&](int64_t, int64_t r, int64_t start, int64_t n) {
      const int64_t off = r * len + start;
      backward_kernel(xp + off, dy_scalar ? gp : gp + off, dy_scalar, dp + off, n, ps.span(r, start));
    });
  });
  return dx;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> fake_quant_lsq_backward_cpu(
    const at::Tensor& grad_in, const at::Tensor& x_in, const at::Tensor& scale, const at::Tensor& zero_point,
    int64_t quant_min, int64_t quant_max, c10::optional<int64_t> axis, double grad_factor) {
  const Layout l = fq::check_and_layout(x_in, scale, zero_point, quant_min, quant_max, axis);
  const at::Tensor x = x_in.contiguous();
  const bool dy_scalar = fq::expanded_scalar(grad_in);
  const at::Tensor dy = fq::gradient_values(grad_in, x, dy_scalar);
  at::Tensor dx = at::empty(x.sizes(), x.options());
  const auto zdt = zero_point.is_floating_point() ? zero_point.scalar_type() : at::kFloat;
  std::vector<double> ch_s(l.channels, 0.0), ch_z(l.channels, 0.0);
  if (x.numel() > 0) {
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "divqat_fake_quant_lsq_cpu", [&] {
      using A = acc_t<scalar_t>;
      const ParamStore<A> ps(scale, zero_point, quant_min, quant_max, l);
      const scalar_t* xp = x.const_data_ptr<scalar_t>();
      const scalar_t* gp = dy.const_data_ptr<scalar_t>();
      scalar_t* dp = dx.mutable_data_ptr<scalar_t>();
      const A g = static_cast<A>(grad_factor);
      const int64_t len = l.row_len();
      if (!l.short_rows()) {
        // One lane-summed partial per (row, block); then blocks, then rows of a channel, in order.
        const int64_t blocks_per_row = std::max<int64_t>(1, (len + kBlock - 1) / kBlock);
        std::vector<A> part_s(l.rows() * blocks_per_row), part_z(part_s.size());
        for_each_block(l, [&](int64_t t, int64_t r, int64_t start, int64_t n) {
          const int64_t off = r * len + start;
          lsq_kernel(xp + off, dy_scalar ? gp : gp + off, dy_scalar, dp + off, n, ps.span(r, start), g, &part_s[t],
                     &part_z[t], false);
        });
        for (int64_t t = 0; t < static_cast<int64_t>(part_s.size()); ++t) {
          const int64_t c = (t / blocks_per_row) % l.channels;
          ch_s[c] += static_cast<double>(part_s[t]);
          ch_z[c] += static_cast<double>(part_z[t]);
        }
        return;
      }
      // Short rows: kChunks fixed groups of rows, each summing per row position; then the groups
      // in order, then the positions of a channel.
      const int64_t rows = l.rows();
      const int64_t chunks = std::min(rows, kChunks);
      std::vector<A> part_s(chunks * len, A(0)), part_z(part_s.size(), A(0));
      const Params<A> p = ps.span(0, 0);
      at::parallel_for(0, chunks, 1, [&](int64_t begin, int64_t end) {
        for (int64_t k = begin; k < end; ++k) {
          for (int64_t r = k * rows / chunks; r < (k + 1) * rows / chunks; ++r) {
            const int64_t off = r * len;
            lsq_kernel(xp + off, dy_scalar ? gp : gp + off, dy_scalar, dp + off, len, p, g, &part_s[k * len],
                       &part_z[k * len], true);
          }
        }
      });
      for (int64_t k = 0; k < chunks; ++k) {
        for (int64_t i = 0; i < len; ++i) {
          ch_s[i / l.inner] += static_cast<double>(part_s[k * len + i]);
          ch_z[i / l.inner] += static_cast<double>(part_z[k * len + i]);
        }
      }
    });
  }
  const auto dopt = at::TensorOptions().dtype(at::kDouble);
  at::Tensor dscale = at::from_blob(ch_s.data(), {l.channels}, dopt).to(scale.scalar_type()).reshape(scale.sizes());
  at::Tensor dzero = at::from_blob(ch_z.data(), {l.channels}, dopt).to(zdt).reshape(zero_point.sizes());
  return {dx, dscale.clone(), dzero.clone()};
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(divqat, m) {
  m.def(
      "fake_quant(Tensor x, Tensor scale, Tensor zero_point, int quant_min, int quant_max, int? axis, "
      "float grad_factor) -> Tensor");
  m.def(
      "fake_quant_backward(Tensor grad, Tensor x, Tensor scale, Tensor zero_point, int quant_min, int quant_max, "
      "int? axis) -> Tensor");
  m.def(
      "fake_quant_lsq_backward(Tensor grad, Tensor x, Tensor scale, Tensor zero_point, int quant_min, "
      "int quant_max, int? axis, float grad_factor) -> (Tensor, Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(divqat, CPU, m) {
  m.impl("fake_quant", &fake_quant_cpu);
  m.impl("fake_quant_backward", &fake_quant_backward_cpu);
  m.impl("fake_quant_lsq_backward", &fake_quant_lsq_backward_cpu);
}

}  // namespace divqat
