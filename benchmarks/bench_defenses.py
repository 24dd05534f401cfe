"""Latency of the output-perturbation defenses, timed in one process against baselines timed in
the same run (random weights: latency does not depend on them).

Groups (compare medians within a group; quote ratios, not absolute times):
  dcp-overhead-lenet5    LeNet-5, 28x28, batch 256: victim alone, victim + DCP, DCP alone
  dcp-overhead-resnet20  ResNet-20, 32x32, batch 128: the same
  victim+defense         ResNet-20, batch 128, end to end: DCP, reverse sigmoid, adaptive
                         misinformation (ResNet-20 misinformation model) and MAD (ResNet-20
                         surrogate, argmax oracle, and its argmax-preserving variant)
  defense-only           the same defenses on the victim's precomputed probabilities

    OMP_NUM_THREADS=1 MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=17179869184 \
        python -m pytest benchmarks/bench_defenses.py --benchmark-min-rounds=10 --benchmark-json=bench_defenses.json
"""
import pytest
import torch
import torch.nn.functional as F

from divqat.defenses import DCP, MAD, AdaptiveMisinformation, ReverseSigmoid
from divqat.models import build_model

CIFAR = dict(num_classes=10, in_channels=3, image_size=32, mean=(0.4914, 0.4822, 0.4465), std=(0.247, 0.243, 0.261))
MNIST = dict(num_classes=10, in_channels=1, image_size=28, mean=(0.1307,), std=(0.3081,))
VICTIMS = {"lenet5": (MNIST, 256), "resnet20": (CIFAR, 128)}


def _model(arch, seed):
    torch.manual_seed(seed)
    return build_model(arch, **VICTIMS[arch][0]).eval()


def _queries(arch):
    meta, batch = VICTIMS[arch]
    return torch.rand(batch, meta["in_channels"], meta["image_size"], meta["image_size"],
                      generator=torch.Generator().manual_seed(0))


def _answer(victim, defense, x):
    with torch.no_grad():
        p = F.softmax(victim(x), dim=1)
        return p if defense is None else defense(p, x)


@pytest.mark.parametrize("arch", list(VICTIMS))
@pytest.mark.parametrize("what", ["undefended", "victim+dcp", "dcp-only"])
def test_dcp_overhead(benchmark, arch, what):
    benchmark.group = f"dcp-overhead-{arch}"
    victim, x, defense = _model(arch, 0), _queries(arch), DCP(0.5)
    if what == "dcp-only":
        p = _answer(victim, None, x)
        benchmark(defense, p)
    else:
        benchmark(_answer, victim, defense if what == "victim+dcp" else None, x)


def _defenses():
    return {
        "none": None,
        "dcp": DCP(0.5),
        "reverse_sigmoid": ReverseSigmoid(0.5, 0.5),
        "adaptive_misinformation": AdaptiveMisinformation(_model("resnet20", 1), tau=0.5),
        "mad": MAD(_model("resnet20", 2), 0.5),
        "mad_keep_argmax": MAD(_model("resnet20", 2), 0.5, keep_argmax=True),
    }


@pytest.mark.parametrize("name", list(_defenses()))
def test_victim_plus_defense(benchmark, name):
    benchmark.group = "victim+defense"
    victim, x = _model("resnet20", 0), _queries("resnet20")
    benchmark(_answer, victim, _defenses()[name], x)


@pytest.mark.parametrize("name", [name for name in _defenses() if name != "none"])
def test_defense_only(benchmark, name):
    benchmark.group = "defense-only"
    victim, x = _model("resnet20", 0), _queries("resnet20")
    p = _answer(victim, None, x)
    defense = _defenses()[name]
    benchmark(lambda: defense(p, x))
