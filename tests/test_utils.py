"""divqat.utils: one seed for python/numpy/torch, atomic writes, device resolution."""
import json
import os
import random

import numpy as np
import pytest
import torch

from divqat.utils import (atomic_save, atomic_write, atomic_write_bytes, atomic_write_json,
                          atomic_write_text, resolve_device, seed_everything)


def _draw(generator):
    return (random.random(), float(np.random.rand()), torch.rand(3).tolist(),
            torch.rand(2, generator=generator).tolist())


def test_seed_everything_reproduces_all_three_libraries():
    first = _draw(seed_everything(123))
    second = _draw(seed_everything(123))
    other = _draw(seed_everything(124))
    assert first == second
    assert all(a != b for a, b in zip(first, other))


@pytest.mark.parametrize("bad", [-1, 2**32, 1.5, True, "7"])
def test_seed_everything_rejects_bad_seed(bad):
    with pytest.raises(ValueError, match="seed"):
        seed_everything(bad)


def test_atomic_save_round_trip_weights_only(tmp_path):
    state = {"w": torch.randn(4, 3), "step": torch.tensor(7)}
    path = atomic_save(state, tmp_path / "sub" / "model.pt")
    loaded = torch.load(path, weights_only=True)
    assert torch.equal(loaded["w"], state["w"]) and int(loaded["step"]) == 7
    assert os.listdir(tmp_path / "sub") == ["model.pt"]


def test_atomic_write_text_bytes_json(tmp_path):
    atomic_write_text("héllo\n", tmp_path / "a.txt")
    atomic_write_bytes(b"\x00\x01", tmp_path / "b.bin")
    atomic_write_json({"b": [1, 2.5], "a": None}, tmp_path / "c.json")
    assert (tmp_path / "a.txt").read_text(encoding="utf-8") == "héllo\n"
    assert (tmp_path / "b.bin").read_bytes() == b"\x00\x01"
    assert json.loads((tmp_path / "c.json").read_text()) == {"a": None, "b": [1, 2.5]}


def test_failed_write_leaves_old_file_and_no_temp(tmp_path):
    path = tmp_path / "metrics.json"
    atomic_write_json({"ok": 1}, path)

    def half_write(f):
        f.write(b"{\"partial\": ")
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError, match="interrupted"):
        atomic_write(path, half_write)
    with pytest.raises(TypeError):
        atomic_write_json({"x": object()}, path)
    assert json.loads(path.read_text()) == {"ok": 1}
    assert os.listdir(tmp_path) == ["metrics.json"]


def test_resolve_device():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device().type == expected
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    for bad in ("bogus", "meta", 3):
        with pytest.raises(ValueError, match="device"):
            resolve_device(bad)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_resolve_device_cuda_absent():
    with pytest.raises(ValueError, match="CUDA is not available"):
        resolve_device("cuda")
