"""`divqat train --method divqat --objective ...` end to end on sklearn's digits (tiny): every
trained-in formulation trains from the CLI, records its options, and moves the quantized model's
outputs away from the teacher's on the proxies or the non-label classes; bad options exit 2."""
import json

import pytest
import torch
import torch.nn.functional as F

from divqat.cli import main
from divqat.data import load_dataset
from divqat.train import load_config, load_victim
from divqat.train.objectives import label_margin, mask_label
from divqat.train.proxies import synthesize_proxies

pytestmark = pytest.mark.usefixtures("one_thread")

COMMON = ["--dataset", "digits", "--arch", "smallcnn", "--batch-size", "64", "--seed", "0", "--no-progress",
          "--device", "cpu"]
FORMULATIONS = {
    "qat": ["--method", "qat"],
    "nasty": ["--method", "divqat", "--alpha", "0.1", "--temperature", "4", "--direction", "reverse"],
    "nonlabel": ["--method", "divqat", "--objective", "nonlabel", "--alpha", "0.3", "--kl-cap", "5", "--margin", "2",
                 "--margin-weight", "5"],
    "proxy_kl": ["--method", "divqat", "--objective", "proxy", "--alpha", "1", "--kl-cap", "5",
                 "--proxy-transforms", "mixup,shuffle,noise"],
    "proxy_entropy": ["--method", "divqat", "--objective", "proxy", "--proxy-target", "entropy", "--alpha", "1",
                      "--distill", "0.5"],
    "proxy_shift": ["--method", "divqat", "--objective", "proxy", "--proxy-target", "shift", "--alpha", "1"],
}


def _train(*argv):
    assert main(["train", *COMMON, *argv]) == 0


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("objective_runs")
    _train("--method", "fp", "--epochs", "8", "--lr", "0.1", "--out", str(root / "fp"))
    for name, argv in FORMULATIONS.items():
        _train(*argv, "--teacher", str(root / "fp"), "--epochs", "3", "--out", str(root / name))
    return root


@pytest.fixture(scope="module")
def data():
    return load_dataset("digits", "test")


@torch.no_grad()
def _logits(run, kind, x):
    return load_victim(run, kind).eval()(x)


def test_every_formulation_records_its_options(runs):
    assert load_config(runs / "nonlabel")["objective"] == "nonlabel"
    assert load_config(runs / "nonlabel")["margin"] == 2.0
    assert load_config(runs / "proxy_entropy")["proxy_target"] == "entropy"
    assert load_config(runs / "nasty")["temperature"] == 4.0
    assert load_config(runs / "proxy_kl")["proxy_transforms"] == "mixup,shuffle,noise"
    for name in FORMULATIONS:
        log = [json.loads(line) for line in (runs / name / "log.jsonl").read_text().splitlines()]
        assert len(log) == 3 and all(torch.isfinite(torch.tensor(r["loss"])) for r in log)
        assert json.loads((runs / name / "metrics.json").read_text())["test_accuracy"] > 0.8


def test_nonlabel_moves_the_non_label_classes_and_keeps_top1(runs):
    """On the training images, where the hinge acts (held-out accuracy is the frontier's business)."""
    train = load_dataset("digits", "train")
    x, y = train.images, train.labels
    teacher = _logits(runs / "fp", "float", x)
    for name in ("qat", "nonlabel"):
        student = _logits(runs / name, "fake_quant", x)
        rows = F.kl_div(F.log_softmax(mask_label(student, y), 1), F.log_softmax(mask_label(teacher, y), 1),
                        reduction="none", log_target=True).sum(1)
        right = student.argmax(1) == y
        if name == "qat":
            qat_kl, qat_accuracy = rows.mean().item(), right.float().mean().item()
        else:
            assert rows.mean().item() > 5 * qat_kl
            assert right.float().mean().item() >= qat_accuracy - 0.05
            assert label_margin(student[right], y[right]).median() > 1.0


def test_proxy_objectives_move_outputs_on_proxies(runs, data):
    torch.manual_seed(0)
    proxies = synthesize_proxies(data.images, data.labels)
    teacher = F.log_softmax(_logits(runs / "fp", "float", proxies), 1)
    qat, kl_run, entropy_run, shift_run = (F.log_softmax(_logits(runs / n, "fake_quant", proxies), 1)
                                           for n in ("qat", "proxy_kl", "proxy_entropy", "proxy_shift"))

    def kl(student):
        return F.kl_div(student, teacher, reduction="batchmean", log_target=True).item()

    def ent(student):
        return -(student.exp() * student).sum(1).mean().item()

    assert kl(kl_run) > 5 * kl(qat)
    assert ent(entropy_run) > ent(qat) + 0.3
    shifted = (teacher.argmax(1) + 1) % 10
    assert (shift_run.argmax(1) == shifted).float().mean() > (qat.argmax(1) == shifted).float().mean() + 0.3


@pytest.mark.parametrize("argv,message", [
    (["--objective", "bogus"], "--objective"),
    (["--objective", "nonlabel", "--margin", "-1"], "--margin"),
    (["--objective", "proxy", "--proxy-target", "labels"], "--proxy-target"),
    (["--objective", "proxy", "--distill", "nan"], "--distill"),
    (["--objective", "proxy", "--proxy-transforms", "mixup,rotate"], "--proxy-transforms"),
])
def test_bad_objective_options_exit_2(runs, tmp_path, capsys, argv, message):
    out = tmp_path / "bad"
    assert main(["train", *COMMON, "--method", "divqat", "--teacher", str(runs / "fp"), *argv, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
    assert not out.exists()
