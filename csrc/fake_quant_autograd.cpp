// Autograd kernel of divqat::fake_quant, for every device (the CPU kernels of fake_quant_cpu.cpp,
// the CUDA kernels of fake_quant_cuda.cu): the formula of divqat/ops/fake_quant.py's Python
// registration, which the Triton ops keep, without a Python call per quantizer and step.
//
//   forward:  y = fake_quant(x, s, z, ...)                       (x, s, z saved)
//   backward: dx = fake_quant_backward(dy, x, s, z, ...)         straight-through (Bengio et al. 2013)
//             or, when s (or a floating z) requires grad,
//             (dx, ds, dz) = fake_quant_lsq_backward(dy, x, s, z, ..., grad_factor)   LSQ (Esser et al., ICLR 2020)
//
// and the autograd kernels of the two backward ops, for a double backward (create_graph=True):
//   fake_quant_backward: dx = dy * mask(x) is linear in dy, so d/d(dy) is the same op applied to
//                        the incoming gradient, and piecewise constant in x, so d/dx = 0;
//   fake_quant_lsq_backward: not supported (a clear error when it is reached), as PyTorch's
//                        _fake_quantize_learnable ops.
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

class StraightThroughFunction : public torch::autograd::Function<StraightThroughFunction> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& grad, const at::Tensor& x, const at::Tensor& scale,
                            const at::Tensor& zero_point, int64_t qmin, int64_t qmax, c10::optional<int64_t> axis) {
    ctx->save_for_backward({x, scale, zero_point});
    ctx->saved_data["qmin"] = qmin;
    ctx->saved_data["qmax"] = qmax;
    ctx->saved_data["axis"] = axis.has_value() ? c10::IValue(*axis) : c10::IValue();
    at::AutoDispatchBelowADInplaceOrView guard;
    return call_backward(grad, x, scale, zero_point, qmin, qmax, axis);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const c10::IValue& axis_value = ctx->saved_data["axis"];
    const c10::optional<int64_t> axis = axis_value.isNone() ? c10::nullopt : c10::optional<int64_t>(axis_value.toInt());
    at::Tensor dgrad;
    if (ctx->needs_input_grad(0) && grads[0].defined())
      dgrad = call_backward(grads[0], saved[0], saved[1], saved[2], ctx->saved_data["qmin"].toInt(),
                            ctx->saved_data["qmax"].toInt(), axis);
    return {dgrad, at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

class LsqBackwardFunction : public torch::autograd::Function<LsqBackwardFunction> {
 public:
  static variable_list forward(AutogradContext* ctx, const at::Tensor& grad, const at::Tensor& x,
                               const at::Tensor& scale, const at::Tensor& zero_point, int64_t qmin, int64_t qmax,
                               c10::optional<int64_t> axis, double grad_factor) {
    at::AutoDispatchBelowADInplaceOrView guard;
    auto [dx, dscale, dzero] = call_lsq_backward(grad, x, scale, zero_point, qmin, qmax, axis, grad_factor);
    return {dx, dscale, dzero};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    TORCH_CHECK(false,
                "divqat.fake_quant: the second derivative of the LSQ gradients (scale or a floating zero_point "
                "requiring grad, with create_graph=True) is not supported, as in PyTorch's _fake_quantize_learnable "
                "ops; detach the scale and zero point for the double backward");
  }
};

at::Tensor straight_through_autograd(const at::Tensor& grad, const at::Tensor& x, const at::Tensor& scale,
                                     const at::Tensor& zero_point, int64_t qmin, int64_t qmax,
                                     c10::optional<int64_t> axis) {
  return StraightThroughFunction::apply(grad, x, scale, zero_point, qmin, qmax, axis);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> lsq_backward_autograd(const at::Tensor& grad, const at::Tensor& x,
                                                                     const at::Tensor& scale,
                                                                     const at::Tensor& zero_point, int64_t qmin,
                                                                     int64_t qmax, c10::optional<int64_t> axis,
                                                                     double grad_factor) {
  auto out = LsqBackwardFunction::apply(grad, x, scale, zero_point, qmin, qmax, axis, grad_factor);
  return {out[0], out[1], out[2]};
}

at::Tensor fake_quant_autograd(const at::Tensor& x, const at::Tensor& scale, const at::Tensor& zero_point,
                               int64_t qmin, int64_t qmax, c10::optional<int64_t> axis, double grad_factor) {
  return FakeQuantFunction::apply(x, scale, zero_point, qmin, qmax, axis, grad_factor);
}

}  // namespace

TORCH_LIBRARY_IMPL(divqat, Autograd, m) {
  m.impl("fake_quant", &fake_quant_autograd);
  m.impl("fake_quant_backward", &straight_through_autograd);
  m.impl("fake_quant_lsq_backward", &lsq_backward_autograd);
}

}  // namespace divqat
