"""Fixtures of the attack tests: sklearn's 8x8 digits, a small victim trained on them (once per
session), and that victim as a `divqat train --out` directory. Every attack test module runs
with one intra-op thread (the ``one_thread`` fixture of tests/conftest.py)."""
import pytest
import torch
import torch.nn.functional as F

from divqat.data import load_tensors
from divqat.metrics import predict_logits
from divqat.models import build_model_for


@pytest.fixture(scope="module", autouse=True)
def _one_intra_op_thread(one_thread):
    yield


@pytest.fixture(scope="session")
def data():
    x, y = load_tensors("digits", "train")
    xt, yt = load_tensors("digits", "test")
    return x, y, xt, yt


@pytest.fixture(scope="session")
def victim(data):
    """A smallcnn trained a few epochs on digits (test accuracy > 80%)."""
    x, y, xt, yt = data
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # trained as in one test module with one thread (see tests/conftest.py)
    gen = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    model = build_model_for("smallcnn", "digits")
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(6):
        order = torch.randperm(len(x), generator=gen)
        for i in range(0, len(x), 64):
            idx = order[i:i + 64]
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    torch.set_num_threads(threads)
    model.eval()
    assert (predict_logits(model, xt).argmax(1) == yt).float().mean() > 0.8
    return model


@pytest.fixture(scope="session")
def victim_dir(victim, tmp_path_factory):
    """A `divqat train --out` directory (config.json + model.pt) holding the digits victim."""
    from divqat.train.artifacts import start_run, write_run_results

    out = tmp_path_factory.mktemp("victim")
    start_run(out, {"arch": "smallcnn", "dataset": "digits", "method": "fp", "quantized": False,
                       "meta": dict(victim.meta)})
    write_run_results(out, victim, {"test_accuracy": None})
    return out
