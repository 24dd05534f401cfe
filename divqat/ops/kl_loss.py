"""Public softmax-KL ops of DivQAT: ``div_kl_loss`` and ``divqat_loss``.

Formulas (see ``divqat.reference.kl_loss`` for the full statement): per row r,
KL_r = T^2 * KL(softmax(t_r/T) || softmax(s_r/T)) ("forward") or with the two swapped
("reverse"), and the DivQAT objective (arXiv 2512.23948)
L = mean_r CE(y_r, s_r) - alpha * mean_r min(KL_r, kl_cap).

The fused kernels (``torch.ops.divqat.*`` in C++/CUDA, ``torch.ops.divqat_triton.*`` in
Triton) read both logit rows once and return ``(loss, grad_student, grad_teacher)``: the
gradients of the reduced loss written during the forward pass (empty when not needed), so the
backward declared here (``_backend.register_op``, for both namespaces) is a scale by the
upstream gradient. Those saved gradients are constants, so under ``create_graph=True`` (a double
backward, e.g. a gradient penalty) the backward recomputes them through the reference's
differentiable formula instead, from the saved logits. ``divqat._backend.select`` picks the
backend per call; "reference" runs the pure-PyTorch reference.
"""
import torch

from divqat import _backend
from divqat.reference import kl_loss as reference


def _div_kl_fake(student, teacher, temperature, reduction, direction, student_grad, teacher_grad):
    loss_shape = student.shape[:-1] if reduction == "none" else ()
    return (
        student.new_empty(loss_shape),
        student.new_empty(student.shape if student_grad else (0,)),
        teacher.new_empty(teacher.shape if teacher_grad else (0,)),
    )


def _divqat_fake(student, teacher, target, alpha, temperature, direction, kl_cap, student_grad, teacher_grad):
    return (
        student.new_empty(()),
        student.new_empty(student.shape if student_grad else (0,)),
        teacher.new_empty(teacher.shape if teacher_grad else (0,)),
    )


def _setup_context(ctx, inputs, output):
    _, grad_student, grad_teacher = output
    ctx.mark_non_differentiable(grad_student, grad_teacher)
    # the gradient outputs never get an upstream gradient: do not fill zeros of their size
    ctx.set_materialize_grads(False)
    # the logits (and target) too, for a double backward; saving them copies nothing
    ctx.save_for_backward(grad_student, grad_teacher, *[x for x in inputs if isinstance(x, torch.Tensor)])
    ctx.args = [x for x in inputs if not isinstance(x, torch.Tensor)][:-2]  # without the two grad flags


def _scale(grad, grad_loss):
    """The saved gradient of the reduced loss times the upstream gradient (per row for "none")."""
    if grad_loss.dim() > 0:
        grad_loss = grad_loss.unsqueeze(-1)
    return grad * grad_loss


def _differentiable_grads(ctx, grad_loss, reference_loss):
    """The gradients recomputed through the reference's autograd with create_graph=True: the
    fused kernels' saved gradients are constants, so a double backward (a gradient penalty) goes
    through the reference's differentiable formula instead."""
    student, teacher, *rest = ctx.saved_tensors[2:]
    loss = reference_loss(student, teacher, *rest, *ctx.args)
    wanted = [x for x, needed in zip((student, teacher), ctx.needs_input_grad[:2]) if needed]
    grads = iter(torch.autograd.grad(loss, wanted, grad_loss, create_graph=True))
    return [next(grads) if needed else None for needed in ctx.needs_input_grad[:2]]


def _backward_for(name, num_inputs):
    """The backward of op ``name`` with ``num_inputs`` inputs, the logits first: scale the saved
    gradients by the upstream one (or, under create_graph=True, recompute them differentiably);
    the other inputs (flags, numbers, target) get None."""

    def backward(ctx, grad_loss, _grad_of_grad_student, _grad_of_grad_teacher):
        rest = [None] * (num_inputs - 2)
        if grad_loss is None:  # the loss got no upstream gradient (grads are not materialized)
            return None, None, *rest
        if torch.is_grad_enabled():
            return *_differentiable_grads(ctx, grad_loss, getattr(reference, name)), *rest
        grad_student, grad_teacher = ctx.saved_tensors[:2]
        return (
            _scale(grad_student, grad_loss) if ctx.needs_input_grad[0] else None,
            _scale(grad_teacher, grad_loss) if ctx.needs_input_grad[1] else None,
            *rest,
        )

    return backward


_backend.register_op("div_kl_loss", _div_kl_fake, _backward_for("div_kl_loss", 7), _setup_context)
_backend.register_op("divqat_loss", _divqat_fake, _backward_for("divqat_loss", 9), _setup_context)


def _fused_ops(device):
    """The op namespace serving ``device``, or None for the pure-PyTorch reference."""
    backend = _backend.select(device)
    return None if backend == "reference" else _backend.ops(backend)


def _needs_grad(x):
    return torch.is_grad_enabled() and x.requires_grad


def _common_dtype(student_logits, teacher_logits):
    dtype = torch.promote_types(student_logits.dtype, teacher_logits.dtype)
    return student_logits.to(dtype), teacher_logits.to(dtype)


def div_kl_loss(student_logits, teacher_logits, temperature=1.0, reduction="batchmean", direction="forward"):
    """T^2 * KL(softmax(teacher/T) || softmax(student/T)) per row of (..., C) logits.

    Args:
        student_logits, teacher_logits: floating tensors of the same shape (..., C).
        temperature: T > 0 (Python number).
        reduction: "batchmean" (sum over rows / number of rows), "sum", or "none" (shape (...)).
        direction: "forward" = KL(teacher || student), "reverse" = KL(student || teacher).
    Returns the loss in the logits' (promoted) dtype. Differentiable in both arguments.
    """
    reference.check_div_kl_args(student_logits, teacher_logits, temperature, reduction, direction)
    ops = _fused_ops(student_logits.device)
    if ops is None:
        return reference.div_kl_loss(student_logits, teacher_logits, temperature, reduction, direction)
    student, teacher = _common_dtype(student_logits, teacher_logits)
    loss, _, _ = ops.div_kl_loss(
        student, teacher, float(temperature), reduction, direction, _needs_grad(student), _needs_grad(teacher)
    )
    return loss


def divqat_loss(student_logits, teacher_logits, target, alpha, temperature=1.0, direction="forward", kl_cap=None):
    """The DivQAT objective mean_r CE(y_r, s_r) - alpha * mean_r min(KL_r, kl_cap).

    CE is at temperature 1, KL_r = T^2 KL(softmax(t_r/T) || softmax(s_r/T)) (or reversed);
    ``kl_cap`` (None = no cap) bounds that T^2-scaled row KL, and capped rows get no KL
    gradient. ``target`` holds int64 class indices of shape ``student_logits.shape[:-1]``.
    Returns a 0-d tensor in the logits' (promoted) dtype.
    """
    reference.check_divqat_args(student_logits, teacher_logits, target, alpha, temperature, direction, kl_cap)
    ops = _fused_ops(student_logits.device)
    if ops is None:
        return reference.divqat_loss(student_logits, teacher_logits, target, alpha, temperature, direction, kl_cap)
    student, teacher = _common_dtype(student_logits, teacher_logits)
    loss, _, _ = ops.divqat_loss(
        student,
        teacher,
        target,
        float(alpha),
        float(temperature),
        direction,
        None if kl_cap is None else float(kl_cap),
        _needs_grad(student),
        _needs_grad(teacher),
    )
    return loss
