// Autograd kernel of divqat::fake_quant, for every device (the CPU kernels of fake_quant_cpu.cpp,
// the CUDA kernels of fake_quant_cuda.cu): the formula of divqat/ops/fake_quant.py's Python
// registration, which the Triton ops keep, without a Python call per quantizer and step.
//
//   forward:  y = fake_quant(x, s, z, ...)                       (x, s, z saved)
//   backward: dx = fake_quant_backward(dy, x, s, z, ...)         straight-through (Bengio et al. 2013)
//             or, when s (or a floating z) requires grad,
//             (dx, ds, dz) = fake_quant_lsq_backward(dy, x, s, z, ..., grad_factor)   LSQ (Esser et al., ICLR 2020)
#include <ATen/ATen.h>
#include <torch/autograd.h>
#include <torch/library.h>

namespace divqat {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

at::Tensor call_forward(const at::Tensor& x, const at::Tensor& scale, const at::Tensor& zero_point, int64_t qmin,
                        int64_t qmax, c10::optional<int64_t> axis, double grad_factor) {
  static auto op = c10::Dispatcher::singleton().findSchemaOrThrow("divqat::fake_quant", "").typed<decltype(call_forward)>();
  return op.call(x, scale, zero_point, qmin, qmax, axis, grad_factor);
}

at::Tensor call_backward(const at::Tensor& grad, const at::Tensor& x, const at::Tensor& scale,
                         const at::Tensor& zero_point, int64_t qmin, int64_t qmax, c10::optional<int64_t> axis) {
  static auto op =
      c10::Dispatcher::singleton().findSchemaOrThrow("divqat::fake_quant_backward", "").typed<decltype(call_backward)>();
  return op.call(grad, x, scale, zero_point, qmin, qmax, axis);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> call_lsq_backward(const at::Tensor& grad, const at::Tensor& x,
                                                                 const at::Tensor& scale, const at::Tensor& zero_point,
                                                                 int64_t qmin, int64_t qmax,
                                                                 c10::optional<int64_t> axis, double grad_factor) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("divqat::fake_quant_lsq_backward", "")
                       .typed<decltype(call_lsq_backward)>();
  return op.call(grad, x, scale, zero_point, qmin, qmax, axis, grad_factor);
}

class FakeQuantFunction : public torch::autograd::Function<FakeQuantFunction> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& scale,
                            const at::Tensor& zero_point, int64_t qmin, int64_t qmax, c10::optional<int64_t> axis,
                            double grad_factor) {
    ctx->save_for_backward({x, scale, zero_point});
    ctx->saved_data["qmin"] = qmin;
    ctx->saved_data["qmax"] = qmax;
    ctx->saved_data["axis"] = axis.has_value() ? c10::IValue(*axis) : c10::IValue();
    ctx->saved_data["grad_factor"] = grad_factor;
    at::AutoDispatchBelowADInplaceOrView guard;
    return call_forward(x, scale, zero_point, qmin, qmax, axis, grad_factor);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor &x = saved[0], &scale = saved[1], &zero_point = saved[2];
    const int64_t qmin = ctx->saved_data["qmin"].toInt(), qmax = ctx->saved_data["qmax"].toInt();
    const c10::IValue& axis_value = ctx->saved_data["axis"];
    const c10::optional<int64_t> axis = axis_value.isNone() ? c10::nullopt : c10::optional<int64_t>(axis_value.toInt());
    const at::Tensor& grad = grads[0];
    if (!(ctx->needs_input_grad(1) || ctx->needs_input_grad(2))) {
      return {call_backward(grad, x, scale, zero_point, qmin, qmax, axis), at::Tensor(), at::Tensor(), at::Tensor(),
              at::Tensor(), at::Tensor(), at::Tensor()};
    }
    auto [dx, dscale, dzero] =
        call_lsq_backward(grad, x, scale, zero_point, qmin, qmax, axis, ctx->saved_data["grad_factor"].toDouble());
    return {dx,           dscale,       zero_point.is_floating_point() ? dzero : at::Tensor(),
            at::Tensor(), at::Tensor(), at::Tensor(),
            at::Tensor()};
  }
};

at::Tensor fake_quant_autograd(const at::Tensor& x, const at::Tensor& scale, const at::Tensor& zero_point,
                               int64_t qmin, int64_t qmax, c10::optional<int64_t> axis, double grad_factor) {
  return FakeQuantFunction::apply(x, scale, zero_point, qmin, qmax, axis, grad_factor);
}

}  // namespace

TORCH_LIBRARY_IMPL(divqat, Autograd, m) { m.impl("fake_quant", &fake_quant_autograd); }

}  // namespace divqat
