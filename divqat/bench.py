"""Timing every fused op of divqat.ops against eager PyTorch on one device (what ``divqat bench``,
:mod:`divqat.bench_command`, prints).

Each case runs forward + backward over fixed inputs:

- div_kl_loss: divqat vs T^2 * F.kl_div(log_softmax(s/T), log_softmax(t/T)) (eager);
- divqat_loss: divqat vs F.cross_entropy(s, y) - alpha * that KL (the DivQAT objective,
  arXiv 2512.23948);
- fake_quant per tensor, per channel and LSQ per tensor: divqat vs PyTorch's native
  torch.fake_quantize_per_tensor_affine / _per_channel_affine /
  torch._fake_quantize_learnable_per_tensor_affine.

Medians of repeated runs (CUDA events with the L2 cache flushed on GPU, wall clock on CPU). The
case builders and ``median_ms`` are also what benchmarks/ time with pytest-benchmark, so the CLI
and the benchmarks measure the same thing.
"""
import statistics
import time

import torch
import torch.nn.functional as F

L2_FLUSH_BYTES = 256 * 2**20


def eager_div_kl(student, teacher, temperature=1.0):
    """T^2 KL(softmax(t/T) || softmax(s/T)), batchmean, as PyTorch users write it."""
    log_q = F.log_softmax(student / temperature, dim=-1)
    log_p = F.log_softmax(teacher / temperature, dim=-1)
    return temperature**2 * F.kl_div(log_q, log_p, log_target=True, reduction="batchmean")


def eager_divqat(student, teacher, target, alpha, temperature=1.0):
    """mean CE(y, s) - alpha * T^2 KL: the DivQAT objective in eager PyTorch."""
    return F.cross_entropy(student, target) - alpha * eager_div_kl(student, teacher, temperature)


def _fwd_bwd(loss_fn, x):
    """A closure running loss_fn on a fresh leaf copy of x, then backward."""

    def step():
        leaf = x.detach().requires_grad_()
        loss_fn(leaf).backward()

    return step


def kl_inputs(rows, cols, device, dtype=torch.float32, seed=0):
    """Student and teacher logits (rows, cols) and class indices, the same on every device."""
    g = torch.Generator().manual_seed(seed)
    s = (torch.randn(rows, cols, generator=g) * 2).to(device, dtype)
    t = (torch.randn(rows, cols, generator=g) * 2).to(device, dtype)
    y = torch.randint(0, cols, (rows,), generator=g).to(device)
    return s, t, y


def kl_cases(s, t, y, alpha=0.5, temperature=1.0, compile=False):
    """{op: {"divqat": step, "eager": step[, "compile": step]}} for div_kl_loss and divqat_loss,
    each step a forward+backward; with ``compile``, also torch.compile of the eager expression.

    Also returns the bytes each step moves at least (read both logits, write the gradient in
    the forward, read and write it in the backward), for GB/s.
    """
    from divqat.ops import div_kl_loss, divqat_loss

    losses = {
        "div_kl_loss": (
            lambda x: div_kl_loss(x, t, temperature),
            lambda x: eager_div_kl(x, t, temperature),
        ),
        "divqat_loss": (
            lambda x: divqat_loss(x, t, y, alpha, temperature),
            lambda x: eager_divqat(x, t, y, alpha, temperature),
        ),
    }
    cases = {}
    for name, (fused, eager) in losses.items():
        cases[name] = {"divqat": _fwd_bwd(fused, s), "eager": _fwd_bwd(eager, s)}
        if compile:
            cases[name]["compile"] = _fwd_bwd(torch.compile(eager), s)
    return cases, 5 * s.numel() * s.element_size()


def fake_quant_cases(rows, cols, device):
    """{case: {"divqat": step, "eager": step}} for fake_quant, forward+backward, fp32 (rows, cols)
    weights-like input: per tensor (uint8 range), per channel along axis 0 (int8 symmetric),
    and LSQ per tensor (learnable scale and zero point). Also the minimal bytes per step."""
    from divqat.ops import fake_quant

    g = torch.Generator().manual_seed(0)
    x = torch.randn(rows, cols, generator=g).to(device)
    scale = torch.tensor([0.02], device=device)
    zero = torch.tensor([3], dtype=torch.int32, device=device)
    ch_scale = (torch.rand(rows, generator=g) * 0.02 + 0.01).to(device)
    ch_zero = torch.zeros(rows, dtype=torch.int32, device=device)

    def lsq(fn):
        def step():
            leaf = x.detach().requires_grad_()
            s = scale.detach().requires_grad_()
            z = zero.float().requires_grad_()
            fn(leaf, s, z).sum().backward()

        return step

    cases = {
        "fake_quant per-tensor": {
            "divqat": _fwd_bwd(lambda v: fake_quant(v, scale, zero, 0, 255).sum(), x),
            "eager": _fwd_bwd(lambda v: torch.fake_quantize_per_tensor_affine(v, scale, zero, 0, 255).sum(), x),
        },
        "fake_quant per-channel": {
            "divqat": _fwd_bwd(lambda v: fake_quant(v, ch_scale, ch_zero, -128, 127, axis=0).sum(), x),
            "eager": _fwd_bwd(
                lambda v: torch.fake_quantize_per_channel_affine(v, ch_scale, ch_zero, 0, -128, 127).sum(), x
            ),
        },
        "fake_quant LSQ per-tensor": {
            "divqat": lsq(lambda v, s, z: fake_quant(v, s, z, 0, 255)),
            "eager": lsq(lambda v, s, z: torch._fake_quantize_learnable_per_tensor_affine(v, s, z, 0, 255, 1.0)),
        },
    }
    return cases, 4 * x.numel() * x.element_size()


def median_ms(fn, device, repeat=20, warmup=3):
    """Median milliseconds of ``fn()`` over ``repeat`` runs after ``warmup`` untimed ones: the one
    timing helper of divqat (the benchmarks, ``divqat bench``, defense costs).

    On a CUDA ``device`` the work is asynchronous, so a host clock alone would time the launches:
    the device is synchronized after the warm-up, each run is timed by CUDA events on the current
    stream (which include the gaps where the GPU waits for the host), with the L2 cache flushed
    before it, and the device is synchronized again before the events are read. On the CPU, the
    wall clock.
    """
    for _ in range(warmup):
        fn()
    times = []
    if device.type == "cuda":
        flush = torch.empty(L2_FLUSH_BYTES, dtype=torch.uint8, device=device)
        torch.cuda.synchronize(device)
        events = []
        for _ in range(repeat):
            flush.zero_()
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            events.append((start, end))
        torch.cuda.synchronize(device)
        times = [start.elapsed_time(end) for start, end in events]
    else:
        for _ in range(repeat):
            begin = time.perf_counter()
            fn()
            times.append((time.perf_counter() - begin) * 1e3)
    return statistics.median(times)
