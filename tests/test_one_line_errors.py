"""Faults that used to end in a raw traceback, or in success reported for a failure, each end in one
line on stderr naming the argument or file and exit status 2, before any work."""
import gzip
import pickle
import struct
import zlib

import numpy as np
import pytest
import torch
from test_cli_errors import TRAIN, _fails, runs  # noqa: F401 -- its finished fp and qat runs

from divqat.cli import main
from divqat.models import build_model
from divqat.train.artifacts import start_run, write_run_results

pytestmark = pytest.mark.usefixtures("one_thread")

def _run_of_shape(directory, method="fp", in_channels=3, image_size=16):
    """A finished run directory whose model takes (in_channels, image_size, image_size) images."""
    model = build_model("smallcnn", num_classes=10, in_channels=in_channels, image_size=image_size,
                        mean=[0.5] * in_channels, std=[0.5] * in_channels)
    start_run(directory, {"arch": "smallcnn", "dataset": "digits", "method": method, "quantized": False,
                             "meta": dict(model.meta)})
    write_run_results(directory, model, {"test_accuracy": None})
    return directory


def test_experiment_without_methods_refused_at_load(tmp_path, capsys):
    config = tmp_path / "grid.toml"
    config.write_text('methods = []\n[data]\nvictim = "digits"\n[victim]\narch = "smallcnn"\nepochs = 1\n')
    _fails(capsys, ["experiment", config, "--out", tmp_path / "out", "--no-progress"], "methods")
    assert not (tmp_path / "out").exists()  # nothing trained, nothing written


def test_report_csv_of_other_columns_and_non_csv_victims(tmp_path, capsys):
    other = tmp_path / "other.csv"
    other.write_text("name,score\na,1\n")
    _fails(capsys, ["report", other, "--out", tmp_path / "c.csv"], "lacks the columns", "victim_label", "seed")
    results = tmp_path / "results.csv"
    results.write_text("victim_label,method,defense_label,attack_label,budget,seed,agreement\n")
    binary = tmp_path / "victims.csv"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe" * 8)
    _fails(capsys, ["report", results, "--victims", binary, "--out", tmp_path / "c.csv"], "--victims", binary)
    assert not (tmp_path / "c.csv").exists()


class _Payload:
    def __reduce__(self):
        return (print, ("payload ran",))


@pytest.mark.parametrize("content", [pickle.dumps(_Payload()), b"\x80\x04not a pickle at all"])
def test_malicious_or_corrupt_dataset_pickle(tmp_path, capsys, content):
    root = tmp_path / "data"
    (root / "mnist").mkdir(parents=True)
    (root / "mnist" / "mnist.pkl.gz").write_bytes(gzip.compress(content))
    line = _fails(capsys, [*TRAIN[:2], "mnist", *TRAIN[3:], "--method", "fp", "--data-root", root,
                           "--out", tmp_path / "out"], "mnist.pkl.gz")
    assert "payload ran" not in line


def _png_header_only(path, width, height):
    """A PNG that declares width x height 8-bit grey pixels and holds almost none: a bomb's header."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))


def test_decompression_bomb_in_an_imagefolder(tmp_path, capsys):
    from PIL import Image

    for split in ("train", "test"):
        for label in ("a", "b"):
            folder = tmp_path / "imgs" / split / label
            folder.mkdir(parents=True)
            Image.fromarray(np.full((8, 8), 40 if label == "a" else 200, np.uint8)).save(folder / "0.png")
    bomb = tmp_path / "imgs" / "train" / "a" / "1.png"
    _png_header_only(bomb, 100_000, 100_000)  # 10^10 pixels: over twice PIL's limit
    _fails(capsys, ["train", "--dataset", f"imagefolder:{tmp_path / 'imgs'}", "--arch", "smallcnn", "--epochs", "1",
                    "--no-progress", "--device", "cpu", "--out", tmp_path / "out"], bomb, "decompression bomb")


def test_user_arch_that_raises(tmp_path, capsys, monkeypatch):
    (tmp_path / "raising_nets.py").write_text("def build(num_classes):\n    raise RuntimeError('no GPU here')\n"
                                              "def load():\n    pass\n")
    (tmp_path / "broken_module.py").write_text("raise ImportError('a missing dependency')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    _fails(capsys, [*TRAIN, "--arch", "raising_nets:build", "--method", "fp", "--out", tmp_path / "o1"],
           "raising_nets:build", "RuntimeError: no GPU here")
    _fails(capsys, [*TRAIN, "--arch", "broken_module:net", "--method", "fp", "--out", tmp_path / "o2"],
           "broken_module", "a missing dependency")


def test_export_of_a_damaged_onnx_file(runs, tmp_path, capsys):
    import shutil

    damaged = shutil.copytree(runs / "qat", tmp_path / "qat")
    data = (damaged / "model_int8.onnx").read_bytes()
    (damaged / "model_int8.onnx").write_bytes(data[: len(data) // 2])
    _fails(capsys, ["export", "--victim", damaged, "--out", tmp_path / "m.onnx"], "--victim", "model_int8.onnx")
    assert not (tmp_path / "m.onnx").exists()


def test_misinformation_model_of_another_input_shape(runs, tmp_path, capsys):
    other = _run_of_shape(tmp_path / "misinfo", method="misinformation")
    _fails(capsys, ["evaluate", "--victim", runs / "fp", "--defense", "am", "--defense-arg", f"model={other}",
                    "--defense-arg", "tau=0.5", "--test-limit", "16"], "misinformation_model", "'image_size': 16")


def test_triton_backend_on_cpu_without_the_interpreter(monkeypatch, capsys):
    monkeypatch.setenv("DIVQAT_BACKEND", "triton")
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    _fails(capsys, ["bench", "--rows", "4", "--cols", "4", "--fq-size", "4", "--repeats", "1"],
           "DIVQAT_BACKEND=triton", "TRITON_INTERPRET=1")


def test_bench_sizes_that_do_not_fit(capsys):
    _fails(capsys, ["bench", "--rows", "10000000", "--cols", "1000000"], "--rows 10000000", "GiB")


def test_victim_url_that_does_not_parse(tmp_path, capsys):
    _fails(capsys, ["attack", "--victim", "http://::::", "--api-key", "k", "--eval-dataset", "digits",
                    "--eval-api-key", "k2", "--attack", "knockoff", "--queryset", "digits", "--budget", "10",
                    "--out", tmp_path / "out"], "--victim", "http://::::")


def test_nan_answers_of_a_damaged_transfer_cache_refused(runs, tmp_path, capsys):
    cache = tmp_path / "cache"
    argv = ["attack", "--victim", runs / "fp", "--attack", "knockoff", "--queryset", "digits", "--budget", "64",
            "--epochs", "1", "--no-progress", "--device", "cpu", "--cache-dir", cache]
    assert main([str(a) for a in argv + ["--out", tmp_path / "a"]]) == 0
    [path] = cache.glob("transfer-*.pt")
    stored = torch.load(path, weights_only=True)
    stored["answers"][3, 1] = float("nan")
    torch.save(stored, path)
    _fails(capsys, [*argv, "--out", tmp_path / "b"], path, "not probabilities")
    assert not (tmp_path / "b" / "surrogate.pt").exists()
