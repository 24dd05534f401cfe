"""Triton kernels of ``fake_quant`` (forward, straight-through backward, LSQ backward) and their
launch wrappers, registered as ``torch.ops.divqat_triton.fake_quant*`` custom ops (fake
implementations and autograd: :mod:`divqat.ops.fake_quant`).

Formula and numerics: :mod:`divqat.reference.fake_quant` (docs/science.md §2)::

    q = round_half_even(x * (1 / s)) + z,  y = (clamp(q, qmin, qmax) - z) * s,  dx = dy * [qmin <= q <= qmax]

A tensor (made contiguous) is viewed as [outer, C, inner], C = x.shape[axis] (per tensor: C = 1);
element i belongs to channel (i // inner) % C, whose scale and zero point are read from device
memory (no host sync). Compute in fp32 (float64 for float64 tensors).

LSQ reduces deterministically in two passes: pass 1 writes one partial per program (per
[row, block] for long channel rows, per [row block, position] for short ones, each a tl.sum
over a fixed tile), pass 2 sums each channel's partials in a fixed order. No atomics.

Runs under ``TRITON_INTERPRET=1`` on CPU tensors (one config, no libdevice: rounding is
``(|v| + 2^23) - 2^23`` with the sign restored, exact for every float since |v| >= 2^23 is
already an integer).
"""
from typing import Optional

import torch
import triton
import triton.language as tl

__all__ = ["fake_quant", "fake_quant_backward", "fake_quant_lsq_backward"]

BLOCK = 1024  # elements per program of the elementwise kernels and of long-row LSQ partials
TILE_ROWS, TILE_COLS = 16, 128  # short-row LSQ tile
REDUCE_ROWS, REDUCE_COLS = 64, 64  # pass-2 reduction tile
MIN_INNER = 64  # channel rows shorter than this use the short-row LSQ tiles


@triton.jit
def _round_half_even(v, MAGIC: tl.constexpr):
    a = tl.abs(v)
    r = tl.where(a < MAGIC, (a + MAGIC) - MAGIC, a)
    return tl.where(v < 0, -r, tl.where(v > 0, r, v))


@triton.jit
def _cast_out(v, ptr, BF16_RNE: tl.constexpr):
    """v cast to the element type of ptr. The interpreter truncates fp32 -> bf16, so bf16 is
    rounded to nearest even by hand (NaN kept quiet), which is also what the GPU cast does."""
    if BF16_RNE:
        bits = v.to(tl.uint32, bitcast=True)
        rounded = bits + 0x7FFF + ((bits >> 16) & 1)
        hi = tl.where(v != v, 0x7FC00000, rounded) >> 16
        return hi.to(tl.uint16).to(tl.bfloat16, bitcast=True)
    return v.to(ptr.dtype.element_ty)


@triton.jit
def _qparams(s_ptr, z_ptr, c, m, qmin, qmax, MAGIC: tl.constexpr, COMPUTE: tl.constexpr):
    """Scale, its correctly rounded reciprocal (fp32 `/` may be approximate on the GPU) and the
    rounded, clamped zero point of each element's channel."""
    s = tl.load(s_ptr + c, mask=m, other=1.0)
    if COMPUTE == tl.float32:
        inv = tl.math.div_rn(tl.full(s.shape, 1.0, tl.float32), s)
    else:
        inv = 1.0 / s
    z = _round_half_even(tl.load(z_ptr + c, mask=m, other=0.0), MAGIC)
    z = tl.where(z < qmin, qmin, tl.where(z > qmax, qmax, z))
    return s, inv, z


@triton.jit
def _quantize(x, inv, z, MAGIC: tl.constexpr):
    return _round_half_even(x * inv, MAGIC) + z


@triton.jit
def _clamp(q, qmin, qmax):
    c = tl.where(q < qmin, qmin, q)
    return tl.where(c > qmax, qmax, c)


@triton.jit
def _elementwise_kernel(x_ptr, g_ptr, out_ptr, s_ptr, z_ptr, n, C, inner, qmin, qmax, BACKWARD: tl.constexpr,
                        MAGIC: tl.constexpr, COMPUTE: tl.constexpr, BF16_RNE: tl.constexpr, BLOCK: tl.constexpr):
    """y = fake_quant(x), or with BACKWARD dx = dy * [qmin <= q <= qmax] (g_ptr: dy)."""
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    m = offs < n
    c = (offs // inner) % C
    s, inv, z = _qparams(s_ptr, z_ptr, c, m, qmin, qmax, MAGIC, COMPUTE)
    x = tl.load(x_ptr + offs, mask=m, other=0.0).to(COMPUTE)
    q = _quantize(x, inv, z, MAGIC)
    if BACKWARD:
        dy = tl.load(g_ptr + offs, mask=m, other=0.0).to(COMPUTE)
        out = dy * tl.where((q >= qmin) & (q <= qmax), 1.0, 0.0).to(COMPUTE)
    else:
        out = (_clamp(q, qmin, qmax) - z) * s
    tl.store(out_ptr + offs, _cast_out(out, out_ptr, BF16_RNE), mask=m)


@triton.jit
def _lsq_terms(g_ptr, x_ptr, dx_ptr, s_ptr, z_ptr, offs, c, m, qmin, qmax, grad_factor,
               MAGIC: tl.constexpr, COMPUTE: tl.constexpr, BF16_RNE: tl.constexpr):
    """Write dx at offs; return the LSQ terms (dscale_i, dzero_i), zero where masked off."""
    s, inv, z = _qparams(s_ptr, z_ptr, c, m, qmin, qmax, MAGIC, COMPUTE)
    x = tl.load(x_ptr + offs, mask=m, other=0.0).to(COMPUTE)
    dy = tl.load(g_ptr + offs, mask=m, other=0.0).to(COMPUTE)
    q = _quantize(x, inv, z, MAGIC)
    lo = q < qmin
    out = lo | (q > qmax)
    inside = (q >= qmin) & (q <= qmax)
    tl.store(dx_ptr + offs, _cast_out(dy * tl.where(inside, 1.0, 0.0).to(COMPUTE), dx_ptr, BF16_RNE), mask=m)
    y = (_clamp(q, qmin, qmax) - z) * s
    ds_in = ((dy * (y - x)) * inv) * grad_factor
    ds_out = (dy * (tl.where(lo, qmin, qmax) - z)) * grad_factor
    dz_out = ((dy * -1.0) * s) * grad_factor
    ds = tl.where(m, tl.where(out, ds_out, ds_in), 0.0)
    dz = tl.where(m & ~inside, dz_out, 0.0)
    return ds, dz


@triton.jit
def _lsq_long_kernel(g_ptr, x_ptr, dx_ptr, s_ptr, z_ptr, ps_ptr, pz_ptr, C, inner, nblocks, qmin, qmax,
                     grad_factor, MAGIC: tl.constexpr, COMPUTE: tl.constexpr, BF16_RNE: tl.constexpr,
                     BLOCK: tl.constexpr):
    """Program (row r, block b) of a long row (one channel, c = r % C): one partial each."""
    r = tl.program_id(0).to(tl.int64)
    b = tl.program_id(1).to(tl.int64)
    pos = b * BLOCK + tl.arange(0, BLOCK)
    m = pos < inner
    c = r % C + tl.zeros([BLOCK], dtype=tl.int64)
    ds, dz = _lsq_terms(g_ptr, x_ptr, dx_ptr, s_ptr, z_ptr, r * inner + pos, c, m, qmin, qmax, grad_factor,
                        MAGIC, COMPUTE, BF16_RNE)
    tl.store(ps_ptr + r * nblocks + b, tl.sum(ds, axis=0))
    tl.store(pz_ptr + r * nblocks + b, tl.sum(dz, axis=0))


@triton.jit
def _lsq_short_kernel(g_ptr, x_ptr, dx_ptr, s_ptr, z_ptr, ps_ptr, pz_ptr, outer, width, inner, qmin, qmax,
                      grad_factor, MAGIC: tl.constexpr, COMPUTE: tl.constexpr, BF16_RNE: tl.constexpr,
                      TILE_ROWS: tl.constexpr, TILE_COLS: tl.constexpr):
    """Tile (row block rb, column block cb) of short rows of length width = C * inner: the
    terms summed over the tile's rows, one partial per position."""
    rb = tl.program_id(0).to(tl.int64)
    cb = tl.program_id(1).to(tl.int64)
    rows = rb * TILE_ROWS + tl.arange(0, TILE_ROWS)
    cols = cb * TILE_COLS + tl.arange(0, TILE_COLS)
    m = (rows[:, None] < outer) & (cols[None, :] < width)
    c = (cols[None, :] // inner) + tl.zeros([TILE_ROWS, TILE_COLS], dtype=tl.int64)
    offs = rows[:, None] * width + cols[None, :]
    ds, dz = _lsq_terms(g_ptr, x_ptr, dx_ptr, s_ptr, z_ptr, offs, c, m, qmin, qmax, grad_factor, MAGIC, COMPUTE,
                        BF16_RNE)
    mc = cols < width
    tl.store(ps_ptr + rb * width + cols, tl.sum(ds, axis=0), mask=mc)
    tl.store(pz_ptr + rb * width + cols, tl.sum(dz, axis=0), mask=mc)


@triton.jit
def _reduce_kernel(ps_ptr, pz_ptr, os_ptr, oz_ptr, R, W, G, ROWS: tl.constexpr, COLS: tl.constexpr):
    """Pass 2: channel c sums columns [c*G, (c+1)*G) of the [R, W] partials, tile by tile in a
    fixed order, then the tile accumulator."""
    c = tl.program_id(0).to(tl.int64)
    acc_s = tl.zeros([ROWS, COLS], dtype=ps_ptr.dtype.element_ty)
    acc_z = tl.zeros([ROWS, COLS], dtype=pz_ptr.dtype.element_ty)
    for r0 in range(0, R, ROWS):
        rows = (r0 + tl.arange(0, ROWS)).to(tl.int64)
        for g0 in range(0, G, COLS):
            cols = g0 + tl.arange(0, COLS)
            m = (rows[:, None] < R) & (cols[None, :] < G)
            offs = rows[:, None] * W + c * G + cols[None, :]
            acc_s += tl.load(ps_ptr + offs, mask=m, other=0.0)
            acc_z += tl.load(pz_ptr + offs, mask=m, other=0.0)
    tl.store(os_ptr + c, tl.sum(tl.sum(acc_s, axis=1), axis=0))
    tl.store(oz_ptr + c, tl.sum(tl.sum(acc_z, axis=1), axis=0))


def _prepare(x, scale, zero_point, axis):
    """Contiguous x, flat scale / zero point in the compute dtype, the [outer, C, inner] view and
    the kernels' dtype constants."""
    compute = torch.float64 if x.dtype == torch.float64 else torch.float32
    s = scale.to(compute).reshape(-1).contiguous()  # fp16/bf16/fp32 x: scale rounded to fp32
    z = zero_point.to(compute).reshape(-1).contiguous()
    if axis is None:
        outer, channels, inner = 1, 1, x.numel()
    else:
        outer = x.shape[:axis].numel()
        channels = x.shape[axis]
        inner = x.shape[axis + 1:].numel()
    magic = 4503599627370496.0 if compute == torch.float64 else 8388608.0
    tl_compute = tl.float64 if compute == torch.float64 else tl.float32
    # enable_fp_fusion=False: every product rounded on its own (no FMA), as in PyTorch's kernels.
    consts = dict(MAGIC=magic, COMPUTE=tl_compute, BF16_RNE=x.dtype == torch.bfloat16, enable_fp_fusion=False)
    return x.contiguous(), s, z, (outer, channels, inner), consts


def _elementwise(x, grad, scale, zero_point, quant_min, quant_max, axis):
    """y = fake_quant(x) (grad None) or the straight-through dx."""
    xc, s, z, (_, channels, inner), consts = _prepare(x, scale, zero_point, axis)
    dy = xc if grad is None else grad.to(x.dtype).contiguous()
    out = torch.empty(x.shape, dtype=x.dtype, device=x.device)
    n = xc.numel()
    if n:
        _elementwise_kernel[(triton.cdiv(n, BLOCK),)](xc, dy, out, s, z, n, channels, inner, float(quant_min),
                                                      float(quant_max), BACKWARD=grad is not None, BLOCK=BLOCK,
                                                      **consts)
    return out


@torch.library.custom_op("divqat_triton::fake_quant", mutates_args=())
def fake_quant(x: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor, quant_min: int, quant_max: int,
               axis: Optional[int], grad_factor: float) -> torch.Tensor:
    """y = (clamp(round(x / s) + z, qmin, qmax) - z) * s (``grad_factor`` is for the backward)."""
    return _elementwise(x, None, scale, zero_point, quant_min, quant_max, axis)


@torch.library.custom_op("divqat_triton::fake_quant_backward", mutates_args=())
def fake_quant_backward(grad: torch.Tensor, x: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor,
                        quant_min: int, quant_max: int, axis: Optional[int]) -> torch.Tensor:
    """Straight-through: dx = dy * [qmin <= q <= qmax], the mask recomputed from x."""
    return _elementwise(x, grad, scale, zero_point, quant_min, quant_max, axis)


@torch.library.custom_op("divqat_triton::fake_quant_lsq_backward", mutates_args=())
def fake_quant_lsq_backward(grad: torch.Tensor, x: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor,
                            quant_min: int, quant_max: int, axis: Optional[int],
                            grad_factor: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """dx (straight-through) and the LSQ gradients of scale and zero point, reduced per tensor or
    per channel in two deterministic passes."""
    xc, s, z, (outer, channels, inner), consts = _prepare(x, scale, zero_point, axis)
    dy = grad.to(x.dtype).contiguous()
    dx = torch.empty(x.shape, dtype=x.dtype, device=x.device)
    acc = s.dtype
    args = (float(quant_min), float(quant_max), float(grad_factor))
    if xc.numel() == 0:
        ps = pz = torch.zeros((1, channels), dtype=acc, device=x.device)
        rows, width, group = 1, channels, 1
    elif channels > 1 and inner < MIN_INNER:
        width = channels * inner
        rows = triton.cdiv(outer, TILE_ROWS)
        ps = torch.empty((rows, width), dtype=acc, device=x.device)
        pz = torch.empty_like(ps)
        _lsq_short_kernel[(rows, triton.cdiv(width, TILE_COLS))](
            dy, xc, dx, s, z, ps, pz, outer, width, inner, *args,
            TILE_ROWS=TILE_ROWS, TILE_COLS=TILE_COLS, **consts)
        group = inner
    else:
        nblocks = triton.cdiv(inner, BLOCK)
        ps = torch.empty((outer, channels * nblocks), dtype=acc, device=x.device)
        pz = torch.empty_like(ps)
        _lsq_long_kernel[(outer * channels, nblocks)](
            dy, xc, dx, s, z, ps, pz, channels, inner, nblocks, *args, BLOCK=BLOCK, **consts)
        rows, width, group = outer, channels * nblocks, nblocks
    out_s = torch.empty(channels, dtype=acc, device=x.device)
    out_z = torch.empty_like(out_s)
    _reduce_kernel[(channels,)](ps, pz, out_s, out_z, rows, width, group, ROWS=REDUCE_ROWS, COLS=REDUCE_COLS)
    zdt = zero_point.dtype if zero_point.is_floating_point() else torch.float32
    return dx, out_s.to(scale.dtype).reshape(scale.shape), out_z.to(zdt).reshape(zero_point.shape)
