// Schema and CPU kernel of divqat::observe_qparams_: one range observation of a FakeQuantize in a
// single call (the role of torch.fused_moving_avg_obs_fake_quant's observer half).
//
// Per channel c along axis (per tensor: one channel holding all of x):
//
//   lo_c, hi_c = min, max of x over the channel           (NaN if the channel holds a NaN)
//   running:         m_c <- min(m_c, lo_c),  M_c <- max(M_c, hi_c)
//   moving average:  m_c <- m_c + a * (lo_c - m_c),  M_c <- M_c + a * (hi_c - M_c)
//                    (the first observation, m = +inf and M = -inf, takes lo_c, hi_c)
//
// then the scale and zero point of divqat.quant.observers.calculate_qparams (PyTorch's
// _calculate_qparams; Jacob et al., CVPR 2018), written in place:
//
//   m- = min(m, 0),  M+ = max(M, 0)
//   affine:    s = max((M+ - m-) / (qmax - qmin), eps),  z = clamp(qmin - round_half_even(m- / s), qmin, qmax)
//   symmetric: s = max(max(-m-, M+) / ((qmax - qmin) / 2), eps),  z = 0
//   never observed (m = +inf, M = -inf): s = 1, z = 0
//
// in float32, each operation rounded on its own in PyTorch's order, so the results equal the
// Python observers' bit for bit (the observer tests compare them). An empty x updates nothing
// and still writes the qparams of the current statistics, as the Python path does.
#include <ATen/ATen.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("fp-contract=off")  // each product of the moving average rounded on its own
#endif

namespace divqat {
namespace {

// (min, max) per channel of x as float32 (C,) tensors: ATen's vectorized aminmax, the same
// reduction (NaN propagating) as the Python observers.
std::tuple<at::Tensor, at::Tensor> channel_extremes(const at::Tensor& x, c10::optional<int64_t> axis,
                                                    int64_t channels) {
  const at::Tensor xf = x.scalar_type() == at::kFloat ? x : x.to(at::kFloat);
  if (!axis.has_value()) return at::aminmax(xf);  // 0-d: one channel
  return at::aminmax(xf.movedim(*axis, 0).reshape({channels, -1}), 1);
}

bool is_nan(float v) { return v != v; }
// torch.minimum / torch.maximum / clamp semantics: NaN in, NaN out.
float nan_min(float a, float b) { return is_nan(a) || is_nan(b) ? std::numeric_limits<float>::quiet_NaN() : std::min(a, b); }
float nan_max(float a, float b) { return is_nan(a) || is_nan(b) ? std::numeric_limits<float>::quiet_NaN() : std::max(a, b); }

// The running or moving-average update of the statistics with this batch's extremes.
void update_statistics(const float* lo, const float* hi, float* min_val, float* max_val, int64_t channels,
                       c10::optional<double> averaging_constant) {
  const float inf = std::numeric_limits<float>::infinity();
  for (int64_t c = 0; c < channels; ++c) {
    if (!averaging_constant.has_value()) {
      min_val[c] = nan_min(lo[c], min_val[c]);
      max_val[c] = nan_max(hi[c], max_val[c]);
    } else if (min_val[c] == inf && max_val[c] == -inf) {
      min_val[c] = lo[c];
      max_val[c] = hi[c];
    } else {
      const float a = static_cast<float>(*averaging_constant);
      min_val[c] = min_val[c] + a * (lo[c] - min_val[c]);
      max_val[c] = max_val[c] + a * (hi[c] - max_val[c]);
    }
  }
}

// (scale, zero point) of one channel from its statistics.
void channel_qparams(float m, float M, int64_t qmin, int64_t qmax, bool symmetric, float& scale, int32_t& zero) {
  const float inf = std::numeric_limits<float>::infinity();
  const float eps = std::numeric_limits<float>::epsilon();
  if (m == inf && M == -inf) {
    scale = 1.0f;
    zero = 0;
    return;
  }
  const float min_neg = nan_min(m, 0.0f), max_pos = nan_max(M, 0.0f);
  if (symmetric) {
    scale = nan_max(nan_max(-min_neg, max_pos) / static_cast<float>(static_cast<double>(qmax - qmin) / 2), eps);
    zero = 0;
    return;
  }
  scale = nan_max((max_pos - min_neg) / static_cast<float>(qmax - qmin), eps);
  const float r = std::nearbyint(min_neg / scale);
  const int64_t z = is_nan(r) ? qmin : qmin - static_cast<int64_t>(r);
  zero = static_cast<int32_t>(std::min(std::max(z, qmin), qmax));
}

void observe_qparams_cpu(const at::Tensor& x_in, const at::Tensor& min_val, const at::Tensor& max_val,
                         const at::Tensor& scale, const at::Tensor& zero_point,
                         c10::optional<double> averaging_constant, int64_t quant_min, int64_t quant_max,
                         bool symmetric, c10::optional<int64_t> axis) {
  TORCH_CHECK_VALUE(at::isFloatingType(x_in.scalar_type()), "observe_qparams_: x must be a floating tensor, got ",
                    x_in.scalar_type());
  TORCH_CHECK_VALUE(quant_min < quant_max, "observe_qparams_: quant_min must be < quant_max");
  if (averaging_constant.has_value())
    TORCH_CHECK_VALUE(*averaging_constant > 0.0 && *averaging_constant <= 1.0,
                      "observe_qparams_: averaging_constant must lie in (0, 1], got ", *averaging_constant);
  int64_t channels = 1;
  if (axis.has_value()) {
    TORCH_CHECK_VALUE(*axis >= 0 && *axis < x_in.dim(), "observe_qparams_: axis ", *axis, " out of range for ",
                      x_in.dim(), "-d x");
    channels = x_in.size(*axis);
  }
  for (const at::Tensor* t : {&min_val, &max_val, &scale}) {
    TORCH_CHECK_VALUE(t->scalar_type() == at::kFloat && t->is_contiguous() && t->device().is_cpu(),
                      "observe_qparams_: min_val, max_val and scale must be contiguous float32 CPU tensors");
    TORCH_CHECK_VALUE(t->numel() == channels, "observe_qparams_: the statistics must have one element per channel (",
                      channels, "), got ", t->numel());
  }
  TORCH_CHECK_VALUE(zero_point.numel() == channels && zero_point.device().is_cpu(),
                    "observe_qparams_: zero_point must have one element per channel (", channels, ")");

  float* mn = min_val.mutable_data_ptr<float>();
  float* mx = max_val.mutable_data_ptr<float>();
  if (x_in.numel() > 0) {
    const auto [lo, hi] = channel_extremes(x_in, axis, channels);
    update_statistics(lo.const_data_ptr<float>(), hi.const_data_ptr<float>(), mn, mx, channels, averaging_constant);
  }
  float* s = scale.mutable_data_ptr<float>();
  std::vector<int32_t> z(channels);
  for (int64_t c = 0; c < channels; ++c) channel_qparams(mn[c], mx[c], quant_min, quant_max, symmetric, s[c], z[c]);
  if (zero_point.scalar_type() == at::kInt && zero_point.is_contiguous()) {
    std::copy(z.begin(), z.end(), zero_point.mutable_data_ptr<int32_t>());
  } else {
    zero_point.copy_(at::from_blob(z.data(), zero_point.sizes(), at::TensorOptions().dtype(at::kInt)));
  }
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(divqat, m) {
  m.def(
      "observe_qparams_(Tensor x, Tensor(a!) min_val, Tensor(b!) max_val, Tensor(c!) scale, Tensor(d!) zero_point, "
      "float? averaging_constant, int quant_min, int quant_max, bool symmetric, int? axis) -> ()");
}

TORCH_LIBRARY_IMPL(divqat, CPU, m) { m.impl("observe_qparams_", &observe_qparams_cpu); }

}  // namespace divqat
