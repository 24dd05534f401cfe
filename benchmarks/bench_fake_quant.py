"""Speed of fake_quant (forward + backward) against PyTorch, timed in one run.

Cases (built by divqat.bench.fake_quant_cases, so `divqat bench` times the same work): fp32
weights-like input, per tensor (0..255), per channel along axis 0 (-128..127), LSQ per tensor
(learnable scale and zero point); each step is a forward, ``.sum()`` and a backward.

Implementations, one pytest-benchmark group per case (compare medians within a group):
  divqat   divqat.ops.fake_quant (DIVQAT_BACKEND picks compiled C++/CUDA, triton or torch)
  native   torch.fake_quantize_per_tensor_affine / _per_channel_affine /
           torch._fake_quantize_learnable_per_tensor_affine
  compile  torch.compile (inductor) of that same native step
  copy     x.clone(): the machine's copy bandwidth, for reading GB/s
extra_info "GB/s" counts the minimal bytes of a step (read x, write y, read the gradient,
write dx: 16 bytes per fp32 element; a copy moves 8).

Group "ste-backward" answers a design question: the straight-through backward recomputes the
mask from x (reads x and dy) instead of reading a mask saved by the forward; "mask" times the
cheapest form of the alternative's backward alone (dy * saved bool mask, ATen's vectorized mul),
which still has to write the mask in the forward.

CPU (2 threads):

    MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=17179869184 python -m pytest benchmarks/bench_fake_quant.py \\
        -k cpu --benchmark-columns=median,iqr,rounds --benchmark-group-by=group

Targets on the 2-core CPU: per channel >= 2x native, per tensor >= 1.5x, LSQ per tensor >= 3x.
The CUDA groups (skipped without a GPU; 8192x8192 and ResNet-sized 512x4608 weights) first check
the kernels against the native ops on the GPU, then time with CUDA events after an L2 flush
(median, extra_info "cuda_event_ms", which GB/s uses).
"""
import pytest
import torch

from divqat import bench

cpu_threads_count = 2
CPU_SIZE = (4096, 4096)
CUDA_SIZES = [(8192, 8192), (512, 4608)]
CASES = ["fake_quant per-tensor", "fake_quant per-channel", "fake_quant LSQ per-tensor"]
IMPLS = ["divqat", "native", "compile", "copy"]
ROUNDS = dict(rounds=7, warmup_rounds=1, iterations=1)

_cache = {}


def _cases(device, rows, cols):
    """The case closures for one device and size, built once (compiled steps compile once)."""
    key = (str(device), rows, cols)
    if key not in _cache:
        cases, nbytes = bench.fake_quant_cases(rows, cols, device)
        for fns in cases.values():
            fns["native"] = fns.pop("eager")
            fns["compile"] = torch.compile(fns["native"])
        x = torch.randn(rows, cols, device=device)
        copy = (lambda: x.clone(), 2 * x.numel() * x.element_size())
        _cache[key] = (cases, nbytes, copy)
    return _cache[key]


def _record_gbps(benchmark, nbytes, ms):
    benchmark.extra_info["GB/s"] = round(nbytes / ms / 1e6, 2)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("case", CASES)
def test_cpu(benchmark, cpu_threads, monkeypatch, case, impl):
    monkeypatch.delenv("DIVQAT_BACKEND", raising=False)
    benchmark.group = f"cpu {case} {CPU_SIZE[0]}x{CPU_SIZE[1]}"
    cases, nbytes, (copy, copy_bytes) = _cases(torch.device("cpu"), *CPU_SIZE)
    fn, moved = (copy, copy_bytes) if impl == "copy" else (cases[case][impl], nbytes)
    benchmark.pedantic(fn, **ROUNDS)
    _record_gbps(benchmark, moved, benchmark.stats.stats.median * 1e3)


@pytest.mark.parametrize("impl", ["recompute", "mask"])
def test_cpu_ste_backward(benchmark, cpu_threads, impl):
    """The straight-through backward alone: divqat's recompute from x vs dy * saved mask."""
    import divqat.ops  # noqa: F401  (loads torch.ops.divqat)

    benchmark.group = f"cpu ste-backward {CPU_SIZE[0]}x{CPU_SIZE[1]}"
    x = torch.randn(CPU_SIZE)
    dy = torch.randn(CPU_SIZE)
    scale, zero = torch.tensor(0.02), torch.tensor(3, dtype=torch.int32)
    if impl == "recompute":
        fn = lambda: torch.ops.divqat.fake_quant_backward(dy, x, scale, zero, 0, 255, None)  # noqa: E731
    else:
        _, mask = torch.ops.aten.fake_quantize_per_tensor_affine_cachemask(x, 0.02, 3, 0, 255)
        fn = lambda: dy * mask  # noqa: E731
    benchmark.pedantic(fn, **ROUNDS)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("impl", ["divqat", "triton", "native", "compile", "copy"])
@pytest.mark.parametrize("size", CUDA_SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("case", CASES)
def test_cuda(benchmark, monkeypatch, case, size, impl):
    from divqat import _backend

    device = torch.device("cuda")
    benchmark.group = f"cuda {case} {size[0]}x{size[1]}"
    if impl == "triton":
        monkeypatch.setenv("DIVQAT_BACKEND", "triton")
    else:
        monkeypatch.delenv("DIVQAT_BACKEND", raising=False)
    if impl in ("divqat", "triton"):
        assert _backend.select(device) == ("triton" if impl == "triton" else "compiled")
        _check_on_gpu(device, size)
    cases, nbytes, (copy, copy_bytes) = _cases(device, *size)
    fn, moved = (copy, copy_bytes) if impl == "copy" else (cases[case]["divqat" if impl == "triton" else impl], nbytes)
    event_ms = bench.median_ms(fn, device)
    benchmark.extra_info["cuda_event_ms"] = round(event_ms, 4)
    _record_gbps(benchmark, moved, event_ms)

    def synced():
        fn()
        torch.cuda.synchronize()

    benchmark.pedantic(synced, rounds=20, warmup_rounds=2, iterations=1)


def _check_on_gpu(device, size):
    """The GPU kernels agree with PyTorch's native ops bit for bit (forward and dx) before timing."""
    from divqat.ops import fake_quant

    x = torch.randn(size, device=device).requires_grad_()
    dy = torch.randn(size, device=device)
    s = torch.rand(size[0], device=device) * 0.02 + 0.01
    z = torch.randint(-128, 128, (size[0],), device=device, dtype=torch.int32)
    y = fake_quant(x, s, z, -128, 127, axis=0)
    (dx,) = torch.autograd.grad(y, x, dy)
    xr = x.detach().requires_grad_()
    yr = torch.fake_quantize_per_channel_affine(xr, s, z, 0, -128, 127)
    (dxr,) = torch.autograd.grad(yr, xr, dy)
    assert torch.equal(y, yr) and torch.equal(dx, dxr)
