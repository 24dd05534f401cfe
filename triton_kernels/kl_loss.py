"""Triton kernels of div_kl_loss and divqat_loss (the math of csrc/kl_loss.h).

One program per row. Pass 1 walks the row in blocks with an online softmax (Milakov &
Gimelshein 2018): running maxima ma, mb of the logits a of P and b of Q, the rescaled sums
Sa = sum exp((a - ma)/T), Sb, W = sum exp((a - ma)/T) (a - b)/T and, for divqat_loss, the
temperature-1 sum S1 of the student. Then

    KL(P || Q) = W / Sa - (ma - mb)/T - log Sa + log Sb,

and pass 2 writes the gradients of the reduced loss (T^2 KL, DivQAT: CE - alpha KL), so the
backward is a scale. Forward direction: P = teacher, Q = student; reverse swaps them.
Registered as ``torch.ops.divqat_triton.div_kl_loss`` / ``divqat_loss`` (custom_op; the fake
implementation and autograd are attached by ``divqat.ops.kl_loss``). Per-row losses are
reduced afterwards in float64.
"""
import torch
import triton
import triton.language as tl

from divqat.reference.kl_loss import check_div_kl_args, check_divqat_args, check_target_values

MAX_BLOCK = 4096


@triton.jit
def _centered_exp(x, m, inv_t):
    """exp((x - m) * inv_t), and 0 for x = -inf also where m = -inf (a block holding only -inf
    so far: masked classes), whose -inf - -inf would be NaN (kl::centered_exp of csrc/kl_loss.h)."""
    return tl.where(x == -float("inf"), 0.0, tl.exp((x - m) * inv_t))


@triton.jit
def _rescale(m_old, m_new, inv_t):
    """exp((m_old - m_new) * inv_t), 1 for an unchanged maximum (also -inf; kl::rescale)."""
    return tl.where(m_old == m_new, 1.0, tl.exp((m_old - m_new) * inv_t))


@triton.jit
def _kl_rows_kernel(
    a_ptr, b_ptr, y_ptr, ga_ptr, gb_ptr, kl_ptr, ce_ptr,
    C, inv_t: tl.float64, temperature: tl.float64, kl_coef: tl.float64, ce_coef: tl.float64, cap: tl.float64,
    STUDENT_IS_A: tl.constexpr, HAS_CE: tl.constexpr, GRAD_A: tl.constexpr, GRAD_B: tl.constexpr,
    ACC: tl.constexpr, BLOCK: tl.constexpr,
):
    row = tl.program_id(0).to(tl.int64)
    base = row * C
    offs = tl.arange(0, BLOCK)
    zero = tl.sum(tl.zeros([BLOCK], dtype=ACC), axis=0)
    # scalars arrive in float64 (exact for float64 logits) and are used in ACC
    inv_t = (zero + inv_t).to(ACC)
    temperature = (zero + temperature).to(ACC)
    kl_coef = (zero + kl_coef).to(ACC)
    ce_coef = (zero + ce_coef).to(ACC)
    cap = (zero + cap).to(ACC)
    ma = zero - float("inf")
    mb = zero - float("inf")
    sum_a = zero
    sum_b = zero
    w = zero
    sum_1 = zero
    # pass 1: online maxima and rescaled sums
    for start in range(0, C, BLOCK):
        cols = start + offs
        mask = cols < C
        a = tl.load(a_ptr + base + cols, mask=mask, other=0.0).to(ACC)
        b = tl.load(b_ptr + base + cols, mask=mask, other=0.0).to(ACC)
        diff = (a - b) * inv_t  # 0 on masked lanes
        a = tl.where(mask, a, -float("inf"))
        b = tl.where(mask, b, -float("inf"))
        new_ma = tl.maximum(ma, tl.max(a, axis=0))
        new_mb = tl.maximum(mb, tl.max(b, axis=0))
        ea = _centered_exp(a, new_ma, inv_t)
        eb = _centered_exp(b, new_mb, inv_t)
        scale_a = _rescale(ma, new_ma, inv_t)
        sum_a = sum_a * scale_a + tl.sum(ea, axis=0)
        sum_b = sum_b * _rescale(mb, new_mb, inv_t) + tl.sum(eb, axis=0)
        w = w * scale_a + tl.sum(tl.where(ea > 0, ea * diff, 0.0), axis=0)  # 0 log 0 = 0
        if HAS_CE:
            if STUDENT_IS_A:
                sum_1 = sum_1 * _rescale(ma, new_ma, 1.0) + tl.sum(_centered_exp(a, new_ma, 1.0), axis=0)
            else:
                sum_1 = sum_1 * _rescale(mb, new_mb, 1.0) + tl.sum(_centered_exp(b, new_mb, 1.0), axis=0)
        ma = new_ma
        mb = new_mb
    log_sa = tl.log(sum_a)
    log_sb = tl.log(sum_b)
    kl = w / sum_a - (ma - mb) * inv_t - log_sa + log_sb
    loss = temperature * temperature * kl
    tl.store(kl_ptr + row, loss)
    coef = tl.where(loss > cap, 0.0, kl_coef)
    ra = coef * temperature / sum_a
    rb = coef * temperature / sum_b
    shift = log_sb - log_sa - kl
    r1 = zero
    y = 0
    ms = ma if STUDENT_IS_A else mb
    if HAS_CE:
        y = tl.load(y_ptr + row)
        tl.device_assert((y >= 0) & (y < C), "divqat_loss: target holds a class index outside [0, C)")
        s_ptr = a_ptr if STUDENT_IS_A else b_ptr
        s_y = tl.load(s_ptr + base + y).to(ACC)
        tl.store(ce_ptr + row, tl.log(sum_1) - (s_y - ms))
        r1 = ce_coef / sum_1
    # pass 2: gradients of the reduced loss
    if GRAD_A or GRAD_B:
        for start in range(0, C, BLOCK):
            cols = start + offs
            mask = cols < C
            a = tl.load(a_ptr + base + cols, mask=mask, other=0.0).to(ACC)
            b = tl.load(b_ptr + base + cols, mask=mask, other=0.0).to(ACC)
            ca = (a - ma) * inv_t
            cb = (b - mb) * inv_t
            ea = tl.exp(ca)
            eb = tl.exp(cb)
            grad_p = tl.where(ea > 0, ra * ea * (ca - cb + shift), 0.0)
            grad_q = rb * eb - ra * ea
            if HAS_CE:
                s = a if STUDENT_IS_A else b
                ce_grad = r1 * tl.exp(s - ms) - tl.where(cols == y, ce_coef, 0.0)
                if STUDENT_IS_A:
                    grad_p += ce_grad
                else:
                    grad_q += ce_grad
            if GRAD_A:
                tl.store(ga_ptr + base + cols, grad_p.to(ga_ptr.dtype.element_ty), mask=mask)
            if GRAD_B:
                tl.store(gb_ptr + base + cols, grad_q.to(gb_ptr.dtype.element_ty), mask=mask)


def _run_rows(student, teacher, target, temperature, direction, kl_coef, ce_coef, cap, student_grad, teacher_grad):
    """Launch one program per row; return per-row T^2 KL and CE (fp32, fp64 for fp64 logits)
    and the gradients of the reduced loss (empty when not wanted)."""
    cols = student.shape[-1]
    s = student.contiguous()
    t = teacher.contiguous()
    rows = s.numel() // cols
    gs = torch.empty_like(s) if student_grad else s.new_empty(0)
    gt = torch.empty_like(t) if teacher_grad else t.new_empty(0)
    acc = torch.float64 if s.dtype == torch.float64 else torch.float32
    kl_rows = torch.empty(rows, device=s.device, dtype=acc)
    ce_rows = torch.empty(rows if target is not None else 0, device=s.device, dtype=acc)
    if rows == 0:
        return kl_rows, ce_rows, gs, gt
    reverse = direction == "reverse"
    a, b = (s, t) if reverse else (t, s)
    ga, gb = (gs, gt) if reverse else (gt, gs)
    block = min(triton.next_power_of_2(cols), MAX_BLOCK)
    _kl_rows_kernel[(rows,)](
        a, b, target.contiguous() if target is not None else kl_rows, ga, gb, kl_rows, ce_rows,
        cols, 1.0 / temperature, temperature, kl_coef, ce_coef, cap,
        STUDENT_IS_A=reverse, HAS_CE=target is not None,
        GRAD_A=ga.numel() > 0, GRAD_B=gb.numel() > 0,
        ACC=tl.float64 if acc == torch.float64 else tl.float32, BLOCK=block, num_warps=8 if block >= 2048 else 4,
    )
    return kl_rows, ce_rows, gs, gt


@torch.library.custom_op("divqat_triton::div_kl_loss", mutates_args=())
def div_kl_loss(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float, reduction: str,
    direction: str, student_grad: bool, teacher_grad: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-row T^2 KL reduced by ``reduction``, with the gradients of that reduced loss."""
    check_div_kl_args(student_logits, teacher_logits, temperature, reduction, direction)
    rows = student_logits.numel() // student_logits.shape[-1]
    kl_coef = 1.0 / rows if reduction == "batchmean" and rows else 1.0
    kl_rows, _, gs, gt = _run_rows(
        student_logits, teacher_logits, None, temperature, direction, kl_coef, 0.0, float("inf"),
        student_grad, teacher_grad,
    )
    if reduction == "none":
        loss = kl_rows.reshape(student_logits.shape[:-1])
    else:
        loss = kl_rows.double().sum()
        if reduction == "batchmean":
            loss = loss / rows
    return loss.to(student_logits.dtype), gs, gt


@torch.library.custom_op("divqat_triton::divqat_loss", mutates_args=())
def divqat_loss(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, target: torch.Tensor, alpha: float,
    temperature: float, direction: str, kl_cap: float | None, student_grad: bool, teacher_grad: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """mean CE - alpha * mean min(T^2 KL, kl_cap), with the gradients of that loss."""
    check_divqat_args(student_logits, teacher_logits, target, alpha, temperature, direction, kl_cap)
    cols = student_logits.shape[-1]
    check_target_values(target, cols)
    rows = student_logits.numel() // cols
    inv_rows = 1.0 / rows if rows else float("inf")
    cap = float("inf") if kl_cap is None else kl_cap
    kl_rows, ce_rows, gs, gt = _run_rows(
        student_logits, teacher_logits, target, temperature, direction, -alpha * inv_rows, inv_rows, cap,
        student_grad, teacher_grad,
    )
    loss = (ce_rows.double().sum() - alpha * kl_rows.double().clamp(max=cap).sum()) / rows
    return loss.to(student_logits.dtype), gs, gt
