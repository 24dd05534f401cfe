"""Pure-PyTorch softmax-KL losses of DivQAT: the fallback backend and the tests' oracle.

For student logits s and teacher logits t of shape (..., C), temperature T > 0 and
P = softmax(t / T), Q = softmax(s / T), each row r gets

    forward:  KL_r = T^2 * sum_c P_c * (log P_c - log Q_c)      = T^2 KL(P || Q)
    reverse:  KL_r = T^2 * sum_c Q_c * (log Q_c - log P_c)      = T^2 KL(Q || P)

(Hinton et al. 2015 for the T^2 factor). ``div_kl_loss`` reduces the rows with
"batchmean" (sum over rows / number of rows), "sum" or "none" (shape ``s.shape[:-1]``).
For (..., C) inputs the number of rows is the product of the leading dimensions (F.kl_div's
"batchmean" divides by ``size(0)`` instead); for (N, C) the two agree. An empty batch gives
NaN for "batchmean" (0 / 0) and 0 for "sum".

``divqat_loss`` is the DivQAT objective (arXiv 2512.23948, docs/science.md §3):

    L = mean_r CE(y_r, s_r)  -  alpha * mean_r min(KL_r, kl_cap)

with the cross-entropy at temperature 1 and KL_r the T^2-scaled row KL above. The cap
applies to that T^2-scaled row KL; a capped row (KL_r > kl_cap) contributes the constant
kl_cap, so its KL gradient is zero (a hinge), while rows with KL_r <= kl_cap keep theirs.

Zero probabilities follow 0 * log 0 = 0 (as ``F.kl_div`` with probabilities does), in every
backend: a teacher logit of -inf (forward direction) leaves the KL finite; a class at -inf (or so
far below the row maximum that exp underflows) in both logits contributes 0 and gets a zero
gradient. A zero teacher probability where the student's is positive in the reverse direction
makes KL(student || teacher) = +inf, as it is mathematically (its gradients are then NaN).

This module also holds the argument checks every backend runs (``check_div_kl_args``,
``check_divqat_args``, ``check_target_values``), so all of them fail the same way.
"""
import torch

REDUCTIONS = ("batchmean", "sum", "none")
DIRECTIONS = ("forward", "reverse")


def _check_logits(student_logits, teacher_logits):
    for name, x in (("student_logits", student_logits), ("teacher_logits", teacher_logits)):
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
        if not x.is_floating_point():
            raise ValueError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
        if x.dim() < 1:
            raise ValueError(f"{name} must have shape (..., C), got a 0-d tensor")
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(
            "teacher_logits must have the shape of student_logits, got "
            f"{tuple(teacher_logits.shape)} vs {tuple(student_logits.shape)}"
        )
    if student_logits.shape[-1] < 1:
        raise ValueError("student_logits must have at least one class (last dimension C >= 1)")
    if student_logits.device != teacher_logits.device:
        raise ValueError(
            f"teacher_logits must be on the device of student_logits, got "
            f"{teacher_logits.device} vs {student_logits.device}"
        )


def _check_temperature_direction(temperature, direction):
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)):
        raise TypeError(f"temperature must be a Python number, got {type(temperature).__name__}")
    if not temperature > 0 or temperature == float("inf"):
        raise ValueError(f"temperature must be a finite number > 0, got {temperature}")
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")


def check_div_kl_args(student_logits, teacher_logits, temperature, reduction, direction):
    """Raise a ValueError/TypeError naming the bad argument of ``div_kl_loss``."""
    _check_logits(student_logits, teacher_logits)
    _check_temperature_direction(temperature, direction)
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")


def check_divqat_args(student_logits, teacher_logits, target, alpha, temperature, direction, kl_cap):
    """Raise a ValueError/TypeError naming the bad argument of ``divqat_loss``.

    Checks metadata only (no host sync); the class indices themselves are checked by each
    backend while it reads them (``check_target_values`` on CPU).
    """
    _check_logits(student_logits, teacher_logits)
    _check_temperature_direction(temperature, direction)
    if not isinstance(target, torch.Tensor):
        raise TypeError(f"target must be a torch.Tensor of class indices, got {type(target).__name__}")
    if target.dtype != torch.int64:
        raise ValueError(f"target must have dtype torch.int64 (class indices), got {target.dtype}")
    if target.shape != student_logits.shape[:-1]:
        raise ValueError(
            f"target must have shape {tuple(student_logits.shape[:-1])} (student_logits without "
            f"its last dimension), got {tuple(target.shape)}"
        )
    if target.device != student_logits.device:
        raise ValueError(f"target must be on {student_logits.device}, got {target.device}")
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)):
        raise TypeError(f"alpha must be a Python number, got {type(alpha).__name__}")
    if not 0 <= alpha < float("inf"):
        raise ValueError(f"alpha must be a finite number >= 0, got {alpha}")
    if kl_cap is not None:
        if isinstance(kl_cap, bool) or not isinstance(kl_cap, (int, float)):
            raise TypeError(f"kl_cap must be None or a Python number, got {type(kl_cap).__name__}")
        if not kl_cap > 0:
            raise ValueError(f"kl_cap must be None or a number > 0, got {kl_cap}")


def check_target_values(target, num_classes):
    """Raise a ValueError when a CPU target holds an index outside [0, num_classes).

    CUDA targets are not read back here (that would synchronize); the CUDA and Triton
    kernels assert on the device instead. Under torch.compile the check is left to the
    compiled code's own index bounds assertion (reading values would break the graph).
    """
    if torch.compiler.is_compiling():
        return
    if target.device.type == "cpu" and target.numel() > 0:
        lo, hi = int(target.min()), int(target.max())
        if lo < 0 or hi >= num_classes:
            bad = lo if lo < 0 else hi
            raise ValueError(f"target holds class index {bad}, outside [0, {num_classes})")


def _row_kl(student_logits, teacher_logits, temperature, direction):
    """T^2-scaled KL of every row, in at least float32."""
    acc = torch.promote_types(torch.promote_types(student_logits.dtype, teacher_logits.dtype), torch.float32)
    log_q = torch.log_softmax(student_logits.to(acc) / temperature, dim=-1)
    log_p = torch.log_softmax(teacher_logits.to(acc) / temperature, dim=-1)
    if direction == "reverse":
        log_p, log_q = log_q, log_p
    p = log_p.exp()
    # 0 * log 0 = 0: classes with p = 0 contribute nothing, and (the where before the product)
    # get a zero gradient rather than 0 * NaN
    diff = torch.where(p > 0, log_p - log_q, torch.zeros_like(log_p))
    return temperature**2 * (p * diff).sum(dim=-1)


def div_kl_loss(student_logits, teacher_logits, temperature=1.0, reduction="batchmean", direction="forward"):
    """T^2 * KL(softmax(t/T) || softmax(s/T)) per row (``direction="reverse"`` swaps the two),
    reduced by "batchmean" (sum / rows), "sum" or "none"; result in the logits' (promoted) dtype."""
    check_div_kl_args(student_logits, teacher_logits, temperature, reduction, direction)
    out_dtype = torch.promote_types(student_logits.dtype, teacher_logits.dtype)
    kl = _row_kl(student_logits, teacher_logits, temperature, direction)
    if reduction == "sum":
        kl = kl.sum()
    elif reduction == "batchmean":
        kl = kl.sum() / kl.numel()
    return kl.to(out_dtype)


def divqat_loss(student_logits, teacher_logits, target, alpha, temperature=1.0, direction="forward", kl_cap=None):
    """mean CE(target, s) - alpha * mean_r min(T^2 KL_r, kl_cap): the DivQAT objective."""
    check_divqat_args(student_logits, teacher_logits, target, alpha, temperature, direction, kl_cap)
    num_classes = student_logits.shape[-1]
    check_target_values(target, num_classes)
    out_dtype = torch.promote_types(student_logits.dtype, teacher_logits.dtype)
    acc = torch.promote_types(out_dtype, torch.float32)
    ce = torch.nn.functional.cross_entropy(
        student_logits.to(acc).reshape(-1, num_classes), target.reshape(-1), reduction="sum"
    )
    kl = _row_kl(student_logits, teacher_logits, temperature, direction)
    if kl_cap is not None:
        kl = kl.clamp(max=kl_cap)
    rows = kl.numel()
    return ((ce - alpha * kl.sum()) / rows).to(out_dtype)
