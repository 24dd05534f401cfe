"""divqat.utils: one seed for python/numpy/torch, atomic writes, device resolution."""
import json
import os
import random

import numpy as np
import pytest
import torch

from divqat.utils import (
    atomic_save,
    atomic_write,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    dataset_tensors,
    load_torch_file,
    model_device,
    read_json,
    remove_temporaries,
    resolve_device,
    seed_everything,
)


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


@pytest.mark.parametrize("umask, expected", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_atomic_write_respects_the_umask(tmp_path, umask, expected):
    old = os.umask(umask)
    try:
        path = atomic_write_text("x", tmp_path / "new.txt")
        with open(tmp_path / "ordinary.txt", "w") as f:  # the oracle: what an ordinary write gives
            f.write("x")
    finally:
        os.umask(old)
    assert os.stat(path).st_mode & 0o777 == expected == os.stat(tmp_path / "ordinary.txt").st_mode & 0o777


def test_atomic_write_keeps_an_existing_files_mode(tmp_path):
    path = tmp_path / "shared.json"
    path.write_text("{}")
    os.chmod(path, 0o640)
    atomic_write_json({"a": 1}, path)
    assert os.stat(path).st_mode & 0o777 == 0o640


def test_remove_temporaries_clears_what_a_killed_write_left(tmp_path):
    (tmp_path / "checkpoint.pt").write_bytes(b"ok")
    stale = [tmp_path / ".checkpoint.pt.k1l2.tmp", tmp_path / ".checkpoint.pt.x9.tmp"]
    for p in stale:
        p.write_bytes(b"half")
    other = tmp_path / ".log.jsonl.a.tmp"
    other.write_bytes(b"")
    assert sorted(remove_temporaries(tmp_path / "checkpoint.pt")) == sorted(stale)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".log.jsonl.a.tmp", "checkpoint.pt"]


class _Evil:
    def __reduce__(self):
        return (print, ("pwned",))


@pytest.mark.parametrize("content, reason", [
    (lambda p: p.write_bytes(b"not a torch file at all"), "unreadable"),
    (lambda p: (torch.save({"w": torch.ones(300)}, p), p.write_bytes(p.read_bytes()[:200])), "unreadable"),
    (lambda p: torch.save({"x": _Evil()}, p), "refused"),
    (lambda p: p.write_bytes(b""), "unreadable"),
    (lambda p: p.write_bytes(b"junk"), "unreadable"),  # a short legacy-format header: struct.error
])
def test_load_torch_file_names_the_file_and_never_suggests_unsafe_loading(tmp_path, capsys, content, reason):
    path = tmp_path / "model.pt"
    content(path)
    with pytest.raises(ValueError, match=reason) as err:
        load_torch_file(path, "model")
    message = str(err.value)
    assert str(path) in message and "weights_only" not in message and "\n" not in message
    assert "pwned" not in capsys.readouterr().out
    with pytest.raises(FileNotFoundError, match="model"):
        load_torch_file(tmp_path / "absent.pt", "model")


def test_read_json_names_a_truncated_file(tmp_path):
    path = tmp_path / "cell.json"
    path.write_text('{"key": "abc", "metrics": {"acc')
    with pytest.raises(ValueError, match="cell record .*cell.json is not valid JSON"):
        read_json(path, "cell record")
    path.write_text('{"a": [1, 2]}')
    assert read_json(path) == {"a": [1, 2]}


def test_dataset_tensors_and_model_device():
    x, y = torch.randn(5, 3), torch.arange(5)
    assert dataset_tensors((x, y))[0] is x
    xs, ys = dataset_tensors(torch.utils.data.TensorDataset(x, y))
    assert torch.equal(xs, x) and torch.equal(ys, y) and ys.dtype == torch.int64
    for bad in ((x, y[:4]), (x[:0], y[:0]), torch.utils.data.TensorDataset(x[:0], y[:0]), [1, 2, 3]):
        with pytest.raises(ValueError, match="test_set"):
            dataset_tensors(bad)
    assert model_device(torch.nn.Linear(2, 2)) == torch.device("cpu")
    assert model_device(torch.nn.ReLU()) == torch.device("cpu")
