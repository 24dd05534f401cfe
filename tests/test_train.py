"""The shared training loop and the trainers: the DivQAT step against PyTorch's own
cross-entropy and KL, seed reproducibility, bit-exact resume, and DDP on two CPU processes."""
import os
import socket

import pytest
import torch
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch import nn
from torch.utils.data import TensorDataset

from divqat.data import ImageDataset, dataset_info
from divqat.models import build_model
from divqat.train import fit, train_divqat, train_fp
from divqat.train.checkpoint import CHECKPOINT_NAME
from divqat.train.trainers import divqat_step

OPTS = dict(device="cpu", progress=False)


pytestmark = pytest.mark.usefixtures("one_thread")


def _blobs(n, seed, dim=16, classes=4):
    """A learnable synthetic task: class means plus noise."""
    g = torch.Generator().manual_seed(seed)
    means = torch.randn(classes, dim, generator=g) * 2
    y = torch.randint(0, classes, (n,), generator=g)
    return TensorDataset(means[y] + torch.randn(n, dim, generator=g), y)


def _images(n, seed, size=12):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 3, (n,), generator=g)
    x = (torch.rand(n, 1, size, size, generator=g) * 0.5 + y.view(-1, 1, 1, 1) * 0.25).clamp(0, 1)
    return TensorDataset(x, y)


def _mlp():
    return nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4))


def _cnn():
    return build_model("smallcnn", num_classes=3, in_channels=1, image_size=12, mean=(0.5,), std=(0.3,))


def _same_state(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    return all(torch.equal(sa[k], sb[k]) if torch.is_tensor(sa[k]) else sa[k] == sb[k] for k in sa)


@pytest.mark.parametrize("direction", ["forward", "reverse"])
@pytest.mark.parametrize("kl_cap", [None, 0.05])
def test_divqat_step_matches_torch_formula(direction, kl_cap):
    torch.manual_seed(1)
    teacher, student = nn.Linear(6, 5), nn.Linear(6, 5)
    x, y = torch.randn(32, 6), torch.randint(0, 5, (32,))
    alpha, T = 0.7, 2.0
    out = divqat_step(teacher, alpha, T, direction, kl_cap)(student, x, y, 0.5)
    s, t = student(x) / T, teacher(x).detach() / T
    p, q = (t, s) if direction == "forward" else (s, t)
    kl = F.kl_div(F.log_softmax(q, 1), F.log_softmax(p, 1), log_target=True, reduction="none").sum(1) * T * T
    if kl_cap is not None:
        kl = kl.clamp(max=kl_cap)
    expected = F.cross_entropy(student(x), y) - alpha * kl.mean()
    torch.testing.assert_close(out["loss"], expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out["ce"], F.cross_entropy(student(x), y))
    grad, = torch.autograd.grad(out["loss"], student.weight)
    grad_ref, = torch.autograd.grad(expected, student.weight)
    torch.testing.assert_close(grad, grad_ref, rtol=1e-4, atol=1e-6)


def test_alpha_warmup_and_alpha_zero_skip_the_teacher():
    calls = []
    teacher = nn.Linear(6, 5)
    teacher.register_forward_hook(lambda *a: calls.append(1))
    student = nn.Linear(6, 5)
    x, y = torch.randn(8, 6), torch.randint(0, 5, (8,))
    ce = F.cross_entropy(student(x), y)
    out = divqat_step(teacher, 0.0)(student, x, y, 1.0)
    assert calls == [] and torch.equal(out["loss"], out["ce"])
    full = divqat_step(teacher, 1.0)(student, x, y, 1.0)["loss"]
    half = divqat_step(teacher, 1.0, alpha_warmup_epochs=2)(student, x, y, 1.0)["loss"]
    torch.testing.assert_close(half, (ce + full) / 2)  # alpha rises linearly: half-way after 1 of 2 epochs
    assert calls


@pytest.mark.parametrize("bad", [dict(alpha=-0.1), dict(temperature=0.0), dict(direction="sideways"),
                                 dict(kl_cap=0.0), dict(alpha_warmup_epochs=-1)])
def test_divqat_rejects_bad_options(bad):
    kwargs = dict(alpha=1.0) | bad
    name = next(iter(bad))
    with pytest.raises(ValueError, match=name):
        train_divqat(_cnn(), _images(8, 0), _images(8, 1), epochs=1, **kwargs, **OPTS)


def test_loop_rejects_bad_options():
    for bad, name in ((dict(epochs=0), "epochs"), (dict(lr=-1.0), "lr"), (dict(optimizer="rmsprop"), "optimizer")):
        with pytest.raises(ValueError, match=name):
            train_fp(_mlp(), _blobs(8, 0), _blobs(8, 1), **(dict(epochs=1) | bad), **OPTS)


def test_same_seed_same_weights_other_seed_other_weights():
    data, test = _blobs(96, 0), _blobs(32, 1)

    def run(seed):
        torch.manual_seed(seed)
        return train_fp(_mlp(), data, test, epochs=2, batch_size=16, seed=seed, **OPTS)

    a, b, c = run(3), run(3), run(4)
    assert _same_state(a.model, b.model)
    assert not _same_state(a.model, c.model)
    assert [r["loss"] for r in a.history] == [r["loss"] for r in b.history]
    assert a.history[-1]["loss"] < a.history[0]["loss"]


class _Interrupt(Exception):
    pass


@pytest.mark.parametrize("optimizer,workers", [("sgd", 0), ("adam", 2)])
def test_interrupted_and_resumed_divqat_equals_uninterrupted(tmp_path, optimizer, workers):
    torch.manual_seed(0)
    teacher = train_fp(_cnn(), _images(96, 0), _images(24, 1), epochs=1, batch_size=32, **OPTS).model
    images = _images(80, 2).tensors
    train = ImageDataset(*images, dataset_info("cifar10"), augment=True)  # random crops and flips
    test = _images(24, 3)
    opts = dict(alpha=0.5, epochs=3, batch_size=16, lr=0.01, optimizer=optimizer, seed=5, freeze_last_epochs=1,
                workers=workers, **OPTS)
    whole = train_divqat(teacher, train, test, out_dir=tmp_path / "whole", **opts)

    def stop_after_first(record):
        if record["epoch"] == 1:
            raise _Interrupt

    with pytest.raises(_Interrupt):
        train_divqat(teacher, train, test, out_dir=tmp_path / "cut", callback=stop_after_first, **opts)
    ckpt = torch.load(tmp_path / "cut" / CHECKPOINT_NAME, weights_only=True)
    assert ckpt["epoch"] == 1
    torch.manual_seed(123)  # a resumed process starts with unrelated random state
    resumed = train_divqat(teacher, train, test, out_dir=tmp_path / "cut", resume=True, **opts)
    assert _same_state(whole.model, resumed.model)
    strip = [{k: v for k, v in r.items() if k != "seconds"} for r in whole.history]
    assert strip == [{k: v for k, v in r.items() if k != "seconds"} for r in resumed.history]
    assert len((tmp_path / "cut" / "log.jsonl").read_text().splitlines()) == 3
    with pytest.raises(ValueError, match="alpha"):
        train_divqat(teacher, train, test, out_dir=tmp_path / "cut", resume=True, **(opts | dict(alpha=0.25)))


# --- DDP: two gloo processes against one process with the same global batch ---------------

def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank, world_size, port, out_path):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world_size),
                      RANK=str(rank), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    from divqat.train import distributed

    torch.manual_seed(0)
    result = train_fp(_mlp(), _blobs(128, 0), _blobs(32, 1), epochs=2, batch_size=32, lr=0.1, seed=7, **OPTS)
    if rank == 0:
        torch.save({"state": result.model.state_dict(), "history": result.history}, out_path)
    distributed.shutdown()


def test_two_process_ddp_matches_one_process(tmp_path):
    out = tmp_path / "ddp.pt"
    # fork: the children inherit the imported modules (spawn would import torch twice more)
    mp.start_processes(_ddp_worker, args=(2, _free_port(), str(out)), nprocs=2, join=True, start_method="fork")
    ddp = torch.load(out, weights_only=True)
    torch.manual_seed(0)
    single = train_fp(_mlp(), _blobs(128, 0), _blobs(32, 1), epochs=2, batch_size=32, lr=0.1, seed=7, **OPTS)
    ref = single.model.state_dict()
    for k, v in ddp["state"].items():
        torch.testing.assert_close(v, ref[k], rtol=1e-4, atol=1e-5)
    for a, b in zip(ddp["history"], single.history):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-4)
        assert a["test_accuracy"] == b["test_accuracy"]
    # the weights moved, so the comparison is not between two untrained models
    torch.manual_seed(0)
    assert not torch.allclose(_mlp()[0].weight, ref["0.weight"], atol=1e-3)


def test_fit_custom_step_logs_every_monitor(tmp_path):
    def step(model, x, y, epochs_done):
        loss = F.cross_entropy(model(x), y)
        return {"loss": loss, "double": 2 * loss.detach()}

    history = fit(_mlp(), _blobs(64, 0), step, epochs=2, batch_size=16, lr=0.05, out_dir=tmp_path, **OPTS)
    assert [r["epoch"] for r in history] == [1, 2]
    for r in history:
        assert r["double"] == pytest.approx(2 * r["loss"])
    # cosine schedule: lr_t = lr * (1 + cos(pi * t / T)) / 2, here at t = T / 2 for epoch 2
    assert [r["lr"] for r in history] == pytest.approx([0.05, 0.025])
