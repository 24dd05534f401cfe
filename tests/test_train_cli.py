"""`divqat train` end to end on a small real MNIST subset: fp teacher, PTQ, QAT and DivQAT
runs, their output directories, load_victim of each kind, the DivQAT effect, bad arguments."""
import json
import shutil

import pytest
import torch
import torch.nn.functional as F

from divqat.cli import main
from divqat.data import load_dataset
from divqat.train import load_config, load_victim

pytestmark = pytest.mark.usefixtures("one_thread")

TEST_LIMIT = 1000
COMMON = ["--dataset", "mnist", "--arch", "lenet5", "--limit", "3000", "--test-limit", str(TEST_LIMIT),
          "--batch-size", "64", "--seed", "0", "--no-progress", "--device", "cpu"]
ALPHA = "0.5"


def _train(*argv):
    assert main(["train", *COMMON, *argv]) == 0


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    _train("--method", "fp", "--epochs", "2", "--out", str(root / "fp"))
    for method, extra in (("qat", ["--epochs", "1"]), ("divqat", ["--epochs", "1", "--alpha", ALPHA]), ("ptq", [])):
        _train("--method", method, "--teacher", str(root / "fp"), *extra, "--out", str(root / method))
    return root


@pytest.fixture(scope="module")
def test_set():
    return load_dataset("mnist", "test", limit=TEST_LIMIT)


def _metrics(run):
    return json.loads((run / "metrics.json").read_text())


@torch.no_grad()
def _logits(model, test_set):
    return torch.cat([model(test_set.images[i:i + 500]) for i in range(0, len(test_set), 500)])


def _accuracy(logits, test_set):
    return (logits.argmax(1) == test_set.labels).double().mean().item()


def test_divqat_raises_kl_and_keeps_accuracy(runs):
    qat, div = _metrics(runs / "qat"), _metrics(runs / "divqat")
    assert _metrics(runs / "fp")["test_accuracy"] > 0.9
    assert div["kl_fp_q"] > 2 * qat["kl_fp_q"]
    assert div["l1_fp_q"] > qat["l1_fp_q"]
    assert abs(div["test_accuracy"] - qat["test_accuracy"]) <= 0.02


@pytest.mark.parametrize("method", ["fp", "ptq", "qat", "divqat"])
def test_output_directory(runs, method):
    run = runs / method
    quantized = method != "fp"
    expected = {"config.json", "model.pt", "log.jsonl", "metrics.json"} | ({"model_int8.onnx"} if quantized else set())
    assert expected <= {p.name for p in run.iterdir()}
    assert not [p for p in run.iterdir() if p.name.startswith(".")]  # no temporary files left
    config = load_config(run)
    assert (config["method"], config["arch"], config["dataset"], config["quantized"]) == (method, "lenet5", "mnist", quantized)
    assert config["meta"]["num_classes"] == 10 and config["limit"] == 3000
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert len(log) == {"fp": 2, "ptq": 1}.get(method, 1)
    monitors = {"test_accuracy"} | ({"kl_fp_q", "l1_fp_q"} if quantized else set()) | ({"loss", "ce"} if method != "ptq" else set())
    assert all(monitors <= set(record) for record in log)
    assert set(torch.load(run / "model.pt", weights_only=True)) == set(load_victim(run, "float").state_dict())
    metrics = _metrics(run)
    assert {"test_accuracy"} | ({"int8_test_accuracy", "int8_agreement", "kl_fp_q", "l1_fp_q"} if quantized else set()) <= set(metrics)
    assert log[-1]["test_accuracy"] == metrics["test_accuracy"]


def test_metrics_match_a_recomputation(runs, test_set):
    teacher = load_victim(runs / "fp")
    fp_logits = _logits(teacher, test_set)
    assert _metrics(runs / "fp")["test_accuracy"] == pytest.approx(_accuracy(fp_logits, test_set), abs=1e-12)
    for method in ("ptq", "qat", "divqat"):
        metrics = _metrics(runs / method)
        q = _logits(load_victim(runs / method, "fake_quant"), test_set)
        int8 = _logits(load_victim(runs / method), test_set)  # auto = int8 for quantized methods
        assert metrics["test_accuracy"] == pytest.approx(_accuracy(q, test_set), abs=1e-12)
        assert metrics["int8_test_accuracy"] == pytest.approx(_accuracy(int8, test_set), abs=1e-12)
        assert metrics["int8_agreement"] == pytest.approx((int8.argmax(1) == q.argmax(1)).double().mean().item())
        assert metrics["int8_agreement"] >= 0.99
        kl = F.kl_div(F.log_softmax(q.double(), 1), F.log_softmax(fp_logits.double(), 1), log_target=True,
                      reduction="batchmean")
        assert metrics["kl_fp_q"] == pytest.approx(kl.item(), rel=1e-4, abs=1e-7)
        l1 = (F.softmax(q.double(), 1) - F.softmax(fp_logits.double(), 1)).abs().sum(1).mean()
        assert metrics["l1_fp_q"] == pytest.approx(l1.item(), rel=1e-4, abs=1e-7)


def test_load_victim_kinds(runs, test_set):
    fp = load_victim(runs / "fp")
    assert not fp.training and type(load_victim(runs / "fp", "auto")) is type(fp)
    q = load_victim(runs / "divqat", "fake_quant")
    f = load_victim(runs / "divqat", "float")
    ql, fl = _logits(q, test_set), _logits(f, test_set)
    assert not torch.equal(ql, fl)  # fake quantization really is off
    assert (ql.argmax(1) == fl.argmax(1)).double().mean() > 0.95
    for kind in ("fake_quant", "int8"):
        with pytest.raises(ValueError, match="float model"):
            load_victim(runs / "fp", kind)
    with pytest.raises(ValueError, match="kind"):
        load_victim(runs / "fp", "fp16")
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_victim(runs / "nowhere")


def _other_teacher(runs, tmp_path, **changes):
    """A copy of the fp run whose config.json claims other ``changes``."""
    teacher = tmp_path / "teacher"
    shutil.copytree(runs / "fp", teacher)
    config = load_config(teacher) | changes
    (teacher / "config.json").write_text(json.dumps(config))
    return str(teacher)


BAD = {  # case -> (extra arguments given a runs dir and a tmp dir, a word the error line must contain)
    "dataset": (lambda r, t: ["--dataset", "nope"], "dataset"),
    "arch": (lambda r, t: ["--arch", "lenet7"], "arch"),
    "method": (lambda r, t: ["--method", "sgd"], "--method"),
    "direction": (lambda r, t: ["--method", "divqat", "--direction", "up", "--teacher", str(r / "fp")], "direction"),
    "alpha": (lambda r, t: ["--method", "divqat", "--alpha", "-1", "--teacher", str(r / "fp")], "alpha"),
    "temperature": (lambda r, t: ["--method", "divqat", "--temperature", "0", "--teacher", str(r / "fp")],
                    "temperature"),
    "bits": (lambda r, t: ["--method", "qat", "--bits", "1", "--teacher", str(r / "fp")], "--bits"),
    "epochs": (lambda r, t: ["--epochs", "0"], "epochs"),
    "no_teacher": (lambda r, t: ["--method", "divqat"], "--teacher"),
    "teacher_arch": (lambda r, t: ["--method", "divqat", "--teacher", _other_teacher(r, t, arch="smallcnn")], "arch"),
    "teacher_dataset": (lambda r, t: ["--method", "qat", "--teacher", _other_teacher(r, t, dataset="fashion-mnist")],
                        "dataset"),
    "teacher_quantized": (lambda r, t: ["--method", "divqat", "--teacher", str(r / "qat")], "quantized"),
    "teacher_missing": (lambda r, t: ["--method", "ptq", "--teacher", str(t / "nowhere")], "config.json"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_arguments_exit_2_with_one_line(runs, tmp_path, capsys, case):
    make_args, word = BAD[case]
    out = tmp_path / "out"
    assert main(["train", *COMMON, *make_args(runs, tmp_path), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("divqat train: error:") and "Traceback" not in err[0]
    assert word in err[0]
    assert not out.exists()


def test_every_train_option_is_a_field_of_the_library_config():
    import argparse
    import dataclasses

    from divqat.train import VictimConfig
    from divqat.train.command import add_arguments, config_from_args

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--dataset", "digits", "--arch", "smallcnn", "--out", "x", "--kl-cap", "2"])
    config = config_from_args(args)
    assert {f.name for f in dataclasses.fields(VictimConfig)} == set(vars(args)) - {"overwrite", "tensorboard"}
    assert (config.dataset, config.kl_cap, config.out, config.method) == ("digits", 2.0, "x", "fp")
