"""Images per second of a DivQAT training step (arXiv 2512.23948: CE(y, f_q) - alpha * T^2 *
KL(f_fp || f_q), f_q fake-quantized) against baselines timed in the same run (random weights:
speed does not depend on them). One step = student forward, frozen teacher forward, loss,
backward, SGD update.

Each test times two variants in alternation, one step of each per round (their order flips
every round), so both see the same machine load: on a shared machine, load drifts between
tests far more than the effects measured here. pytest-benchmark's own statistics time the pair;
``extra_info`` holds each variant's median seconds (wall clock and process CPU time) and images/s,
``ratio`` (wall clock) and ``cpu_ratio`` (CPU time).

  divqat-vs-torch-<arch>  divqat's step (divqat.quant.prepare_qat + divqat.ops.divqat_loss, the
                          step of divqat.train.train_divqat) vs the same step written with
                          PyTorch's own fake quantization (torch.ao prepare_qat_fx, x86 QAT
                          qconfig: FusedMovingAvgObsFakeQuantize) and F.cross_entropy - F.kl_div.
                          ratio = torch time / divqat time (speed-up; target >= 1.3).
  divqat-vs-qat-<arch>    divqat's DivQAT step vs its plain QAT step (alpha = 0: cross-entropy,
                          no teacher). ratio = DivQAT time / QAT time (target <= 1.35).
  arch: lenet5 (28x28, batch 256), resnet20 (32x32, batch 128).

    MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=17179869184 \
        python -m pytest benchmarks/bench_train_step.py --benchmark-json=bench_train_step.json
"""
import copy
import statistics
import time
import warnings

import pytest
import torch
import torch.nn.functional as F

from divqat import quant
from divqat.models import build_model
from divqat.train import divqat_step
from divqat.train.trainers import frozen_teacher

CIFAR = dict(num_classes=10, in_channels=3, image_size=32, mean=(0.4914, 0.4822, 0.4465), std=(0.247, 0.243, 0.261))
MNIST = dict(num_classes=10, in_channels=1, image_size=28, mean=(0.1307,), std=(0.3081,))
SETUPS = {"lenet5": (MNIST, 256), "resnet20": (CIFAR, 128)}
ALPHA, T = 0.5, 1.0


def _batch(arch):
    meta, batch = SETUPS[arch]
    g = torch.Generator().manual_seed(0)
    x = torch.rand(batch, meta["in_channels"], meta["image_size"], meta["image_size"], generator=g)
    return x, torch.randint(0, meta["num_classes"], (batch,), generator=g)


def _models(arch):
    """(float model, its frozen copy: the teacher f_fp)."""
    torch.manual_seed(0)
    model = build_model(arch, **SETUPS[arch][0])
    return model, frozen_teacher(model, "cpu")


def _torch_student(model, x):
    """The student with PyTorch's own QAT (fx prepare, x86 qconfig)."""
    from torch.ao.quantization import get_default_qat_qconfig_mapping
    from torch.ao.quantization.quantize_fx import prepare_qat_fx

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return prepare_qat_fx(copy.deepcopy(model).train(), get_default_qat_qconfig_mapping("x86"), example_inputs=(x,))


def _torch_divqat_step(teacher):
    def step(model, x, y, epochs_done):
        logits = model(x)
        with torch.no_grad():
            teacher_logits = teacher(x)
        kl = F.kl_div(F.log_softmax(logits / T, 1), F.log_softmax(teacher_logits / T, 1), log_target=True,
                      reduction="batchmean")
        return {"loss": F.cross_entropy(logits, y) - ALPHA * T * T * kl}

    return step


def _train_step(model, step, x, y):
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)

    def run():
        loss = step(model, x, y, 1.0)["loss"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    run()  # warm-up: observers initialised, allocator primed
    return run


def _paired(benchmark, runs, batch, rounds=15):
    """Time ``runs`` ({name: step}) in alternation; ratio = time of the second / the first.

    Wall-clock medians give images/s and ``ratio``; the medians of the process CPU time give
    ``cpu_ratio``, which time spent descheduled by other jobs on a shared machine does not
    inflate (with 1 thread the two agree on an idle machine)."""
    wall = {name: [] for name in runs}
    cpu = {name: [] for name in runs}
    order = list(runs)

    def one_round():
        for name in order:
            tic, cpu_tic = time.perf_counter(), time.process_time()
            runs[name]()
            wall[name].append(time.perf_counter() - tic)
            cpu[name].append(time.process_time() - cpu_tic)
        order.reverse()

    benchmark.pedantic(one_round, rounds=rounds)
    median = {name: statistics.median(t) for name, t in wall.items()}
    cpu_median = {name: statistics.median(t) for name, t in cpu.items()}
    for name, seconds in median.items():
        benchmark.extra_info[f"{name}_median_s"] = seconds
        benchmark.extra_info[f"{name}_cpu_median_s"] = cpu_median[name]
        benchmark.extra_info[f"{name}_images_per_second"] = batch / seconds
    first, second = runs
    benchmark.extra_info["ratio"] = median[second] / median[first]
    benchmark.extra_info["cpu_ratio"] = cpu_median[second] / cpu_median[first]


@pytest.mark.parametrize("arch", list(SETUPS))
def test_divqat_vs_torch(benchmark, arch):
    benchmark.group = f"divqat-vs-torch-{arch}"
    x, y = _batch(arch)
    model, teacher = _models(arch)
    runs = {"divqat": _train_step(quant.prepare_qat(model).train(), divqat_step(teacher, ALPHA, T), x, y),
            "torch": _train_step(_torch_student(model, x), _torch_divqat_step(teacher), x, y)}
    _paired(benchmark, runs, len(x))


@pytest.mark.parametrize("arch", list(SETUPS))
def test_divqat_vs_qat(benchmark, arch):
    benchmark.group = f"divqat-vs-qat-{arch}"
    x, y = _batch(arch)
    model, teacher = _models(arch)
    runs = {"qat": _train_step(quant.prepare_qat(model).train(), divqat_step(teacher, 0.0, T), x, y),
            "divqat": _train_step(quant.prepare_qat(model).train(), divqat_step(teacher, ALPHA, T), x, y)}
    _paired(benchmark, runs, len(x))
