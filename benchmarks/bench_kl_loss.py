"""Speed of div_kl_loss and divqat_loss (forward + backward) against PyTorch, timed in one run.

Implementations (divqat.bench builds the cases, so `divqat bench` times the same work):
  divqat   the fused op (DIVQAT_BACKEND picks compiled C++/CUDA, triton or torch)
  eager    T^2 * F.kl_div(log_softmax(s/T), log_softmax(t/T)) (+ F.cross_entropy for divqat_loss)
  compile  torch.compile (inductor) of that same eager expression
  copy     a plain copy of one logits tensor: the machine's copy bandwidth, for GB/s

Each group is one op and size; compare medians within it (pytest-benchmark prints the ratio
to the fastest in parentheses); extra_info "GB/s" counts the minimal bytes (read both logits,
write the gradient, read and rescale it in the backward; a copy reads and writes once).
CPU, 2 threads:

    MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=17179869184 python -m pytest benchmarks/bench_kl_loss.py \\
        -k cpu --benchmark-columns=median,iqr,rounds --benchmark-group-by=group

CPU targets: div_kl_loss >= 3x eager and >= 1.3x compile; divqat_loss >= 3x eager. The CUDA
groups (skipped without a GPU; 16384x32000 and 8192x131072, fp32 and bf16) first check the
fused ops against eager on the GPU, then time with CUDA events after an L2 flush (median, in
extra_info "cuda_event_ms", which GB/s uses) besides pytest-benchmark's synchronized clock.
"""
import os

import pytest
import torch

from divqat import bench

CPU_SIZE = (8192, 1000)
CUDA_SIZES = [(16384, 32000), (8192, 131072)]
CUDA_DTYPES = [torch.float32, torch.bfloat16]
IMPLS = ["divqat", "eager", "compile", "copy"]
OPS = ["div_kl_loss", "divqat_loss"]


@pytest.fixture(scope="module", autouse=True)
def two_threads():
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    if "MALLOC_MMAP_MAX_" not in os.environ:
        print("\nbench_kl_loss: set MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=17179869184 (page faults dominate)")
    yield
    torch.set_num_threads(threads)


def _step(op, impl, s, t, y):
    """(step, minimal bytes per step) of one implementation of one op."""
    if impl == "copy":
        out = torch.empty_like(s)
        return (lambda: out.copy_(s)), 2 * s.numel() * s.element_size()
    cases, nbytes = bench.kl_cases(s, t, y, compile=impl == "compile")
    return cases[op][impl], nbytes


def _group(device, op, s):
    rows, cols = s.shape
    return f"{device} {op} fwd+bwd {rows}x{cols} {str(s.dtype).split('.')[-1]}"


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("op", OPS)
def test_cpu(benchmark, op, impl):
    s, t, y = bench.kl_inputs(*CPU_SIZE, "cpu")
    benchmark.group = _group("cpu", op, s)
    step, nbytes = _step(op, impl, s, t, y)
    benchmark.pedantic(step, rounds=15, warmup_rounds=2, iterations=1)
    benchmark.extra_info["GB/s"] = round(nbytes / benchmark.stats.stats.median / 1e9, 2)


def _check_on_gpu(s, t, y):
    """The fused ops match eager PyTorch (float32) on the first rows of the GPU inputs."""
    from divqat.ops import div_kl_loss, divqat_loss

    s32, t32, y32 = s[:64].float().requires_grad_(), t[:64].float(), y[:64]
    pairs = [
        (div_kl_loss(s32, t32), bench.eager_div_kl(s32, t32)),
        (divqat_loss(s32, t32, y32, 0.5), bench.eager_divqat(s32, t32, y32, 0.5)),
    ]
    for fused, eager in pairs:
        torch.testing.assert_close(fused, eager, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(torch.autograd.grad(fused, s32)[0], torch.autograd.grad(eager, s32)[0])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("dtype", CUDA_DTYPES, ids=str)
@pytest.mark.parametrize("size", CUDA_SIZES, ids=lambda rc: f"{rc[0]}x{rc[1]}")
@pytest.mark.parametrize("op", OPS)
def test_cuda(benchmark, op, size, dtype, impl):
    device = torch.device("cuda")
    s, t, y = bench.kl_inputs(*size, device, dtype)
    benchmark.group = _group("cuda", op, s)
    if impl == "divqat":
        _check_on_gpu(s, t, y)
    step, nbytes = _step(op, impl, s, t, y)
    event_ms = bench.median_ms(step, device, repeat=10)

    def synced():
        step()
        torch.cuda.synchronize()

    benchmark.pedantic(synced, rounds=10, warmup_rounds=1, iterations=1)
    benchmark.extra_info["cuda_event_ms"] = round(event_ms, 3)
    benchmark.extra_info["GB/s"] = round(nbytes / event_ms / 1e6, 1)
