// Shared per-element math of divqat::fake_quant* (host and device inline functions), used by
// fake_quant_cpu.cpp and fake_quant_cuda.cu, so the CPU tests exercise the GPU formulas.
//
// Fake quantization (docs/science.md §2; Jacob et al., CVPR 2018) with scale s > 0, zero point z
// (rounded half to even and clamped to [qmin, qmax]) in the compute type A (fp32 for
// fp16/bf16/fp32 tensors, float64 for float64):
//
//   inv  = 1 / s                                  (once per tensor / channel)
//   q    = round_half_even(x * inv) + z
//   y    = (clamp(q, qmin, qmax) - z) * s
//   mask = qmin <= q <= qmax                      (straight-through: dx = dy * mask)
//
// LSQ (Esser et al., ICLR 2020), in PyTorch's evaluation order
// (aten/src/ATen/native/quantized/cpu/kernels/QuantizedOpKernels.cpp):
//
//   dscale_i = (dy * (qmin - z)) * g                  if q < qmin
//              (dy * (qmax - z)) * g                  if q > qmax
//              ((dy * (y - x)) * inv) * g             otherwise
//   dzero_i  = ((dy * -1) * s) * g  if q outside [qmin, qmax], else 0
//
// NaN x gives NaN y (the clamp keeps NaN) and mask 0.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>

#include "common.h"

namespace divqat {
namespace fq {

// 2^(mantissa bits): above it every float is an integer.
template <typename A>
struct RoundMagic;
template <>
struct RoundMagic<float> {
  static constexpr float value = 8388608.0f;  // 2^23
};
template <>
struct RoundMagic<double> {
  static constexpr double value = 4503599627370496.0;  // 2^52
};

// Round half to even in the current (round-to-nearest-even) mode without a libm call, so the
// CPU loops vectorize with plain SSE2: |v| + 2^23 lands in [2^23, 2^24), whose spacing is 1.
// |v| >= 2^23 is already an integer; the sign is put back (-0.3 -> -0.0); NaN stays NaN.
template <typename A>
DIVQAT_HOST_DEVICE A round_half_even(A v) {
#ifdef __CUDA_ARCH__
  return rint(v);
#else
  const A magic = RoundMagic<A>::value;
  const A a = v < A(0) ? -v : v;
  const A r = a < magic ? (a + magic) - magic : a;
  return v < A(0) ? -r : (v > A(0) ? r : v);
#endif
}

// Correctly rounded product and reciprocal. On the device they are the _rn intrinsics, which
// nvcc neither contracts into an FMA nor relaxes under --use_fast_math, so the GPU rounds
// exactly as PyTorch's kernels do.
DIVQAT_HOST_DEVICE float mul_rn(float a, float b) {
#ifdef __CUDA_ARCH__
  return __fmul_rn(a, b);
#else
  return a * b;
#endif
}
DIVQAT_HOST_DEVICE double mul_rn(double a, double b) {
#ifdef __CUDA_ARCH__
  return __dmul_rn(a, b);
#else
  return a * b;
#endif
}
DIVQAT_HOST_DEVICE float reciprocal_rn(float a) {
#ifdef __CUDA_ARCH__
  return __frcp_rn(a);
#else
  return 1.0f / a;
#endif
}
DIVQAT_HOST_DEVICE double reciprocal_rn(double a) {
#ifdef __CUDA_ARCH__
  return __drcp_rn(a);
#else
  return 1.0 / a;
#endif
}

// Quantization parameters of one tensor or channel, in the compute type A.
template <typename A>
struct QParams {
  A scale;
  A inv;
  A zero;
};

template <typename A>
DIVQAT_HOST_DEVICE QParams<A> make_qparams(A scale, A zero_point, A qmin, A qmax) {
  A z = round_half_even(zero_point);
  z = z < qmin ? qmin : (z > qmax ? qmax : z);
  return QParams<A>{scale, reciprocal_rn(scale), z};
}

// The pre-clamp quantized value q.
template <typename A>
DIVQAT_HOST_DEVICE A quantize(A x, A inv, A zero) {
  return round_half_even(mul_rn(x, inv)) + zero;
}

template <typename A>
DIVQAT_HOST_DEVICE A clamp_q(A q, A qmin, A qmax) {
  const A c = q < qmin ? qmin : q;
  return c > qmax ? qmax : c;
}

// y = (clamp(q) - z) * s.
template <typename A>
DIVQAT_HOST_DEVICE A fake_quant_value(A x, const QParams<A>& p, A qmin, A qmax) {
  return mul_rn(clamp_q(quantize(x, p.inv, p.zero), qmin, qmax) - p.zero, p.scale);
}

// dx = dy * mask (multiplied, as PyTorch does: -dy * 0 = -0, NaN * 0 = NaN).
template <typename A>
DIVQAT_HOST_DEVICE A straight_through(A x, A dy, const QParams<A>& p, A qmin, A qmax) {
  const A q = quantize(x, p.inv, p.zero);
  return dy * ((q >= qmin && q <= qmax) ? A(1) : A(0));
}

// dx and the per-element LSQ terms (dscale_i, dzero_i).
template <typename A>
DIVQAT_HOST_DEVICE void lsq_terms(A x, A dy, const QParams<A>& p, A qmin, A qmax, A grad_factor, A& dx, A& ds,
                                  A& dz) {
  const A q = quantize(x, p.inv, p.zero);
  const bool lo = q < qmin;
  const bool out = lo | (q > qmax);
  const bool inside = (q >= qmin) & (q <= qmax);
  dx = dy * (inside ? A(1) : A(0));
  const A y = mul_rn(clamp_q(q, qmin, qmax) - p.zero, p.scale);
  const A ds_in = ((dy * (y - x)) * p.inv) * grad_factor;
  const A ds_out = (dy * ((lo ? qmin : qmax) - p.zero)) * grad_factor;
  const A dz_out = ((dy * A(-1)) * p.scale) * grad_factor;
  ds = out ? ds_out : ds_in;
  dz = inside ? A(0) : dz_out;
}

// ---------------------------------------------------------------------------------------------
// Host side, shared by the CPU and CUDA launchers: shapes and the incoming gradient.

// Channel rows shorter than this are processed along whole outer rows of C * inner positions.
constexpr int64_t kMinInner = 64;

// A contiguous x viewed as [outer, C, inner], C = x.shape[axis] (per tensor: [1, 1, numel]).
struct Layout {
  int64_t outer, channels, inner;
  bool short_rows() const { return channels > 1 && inner < kMinInner; }
  int64_t row_len() const { return short_rows() ? channels * inner : inner; }
  int64_t rows() const { return short_rows() ? outer : outer * channels; }
};

// What the kernels index with is checked here too (the Python wrapper checks everything, with
// messages naming the argument), so a direct torch.ops call cannot read out of bounds.
inline Layout check_and_layout(const at::Tensor& x, const at::Tensor& scale, const at::Tensor& zero_point,
                               int64_t qmin, int64_t qmax, c10::optional<int64_t> axis) {
  TORCH_CHECK(at::isFloatingType(x.scalar_type()), "fake_quant: x must be a floating tensor, got ", x.scalar_type());
  TORCH_CHECK(qmin < qmax, "fake_quant: quant_min must be < quant_max");
  TORCH_CHECK(scale.device() == x.device() && zero_point.device() == x.device(),
              "fake_quant: scale and zero_point must be on x's device");
  if (!axis.has_value()) {
    TORCH_CHECK(scale.numel() == 1 && zero_point.numel() == 1,
                "fake_quant: per-tensor scale and zero_point must have one element");
    return Layout{1, 1, x.numel()};
  }
  const int64_t ax = *axis;
  TORCH_CHECK(ax >= 0 && ax < x.dim(), "fake_quant: axis ", ax, " out of range for ", x.dim(), "-d x");
  const int64_t c = x.size(ax);
  TORCH_CHECK(scale.dim() == 1 && scale.numel() == c && zero_point.dim() == 1 && zero_point.numel() == c,
              "fake_quant: per-channel scale and zero_point must be 1-D of length x.shape[axis]");
  int64_t outer = 1, inner = 1;
  for (int64_t d = 0; d < ax; ++d) outer *= x.size(d);
  for (int64_t d = ax + 1; d < x.dim(); ++d) inner *= x.size(d);
  return Layout{outer, c, inner};
}

// True when every element of g is the same stored value: the backward of a sum or mean hands
// over such an expanded scalar, which the kernels read in place instead of materializing.
inline bool expanded_scalar(const at::Tensor& g) {
  if (g.numel() <= 1) return false;
  for (int64_t d = 0; d < g.dim(); ++d)
    if (g.size(d) != 1 && g.stride(d) != 0) return false;
  return true;
}

// The gradient in x's dtype: its one value when expanded from a scalar, else contiguous.
inline at::Tensor gradient_values(const at::Tensor& grad, const at::Tensor& x, bool scalar) {
  TORCH_CHECK(grad.sizes() == x.sizes(), "fake_quant: grad must have x's shape");
  if (scalar) return grad.as_strided({1}, {1}).to(x.scalar_type()).contiguous();
  return grad.to(x.scalar_type()).contiguous();
}

}  // namespace fq
}  // namespace divqat
