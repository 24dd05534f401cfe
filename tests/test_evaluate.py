"""`divqat evaluate` on a tiny victim written in the `divqat train --out` format."""
import argparse
import json

import pytest
import torch
import torch.nn.functional as F

from divqat import evaluate, evaluate_command
from divqat.data import load_tensors
from divqat.defenses import DCP, MAD, defense_from_args
from divqat.models import build_model_for
from divqat.train.artifacts import start_run, write_run_results


def _write_victim(directory, seed):
    torch.manual_seed(seed)
    model = build_model_for("smallcnn", "digits").eval()
    start_run(directory, {"method": "fp", "quantized": False, "arch": "smallcnn", "dataset": "digits",
                             "meta": dict(model.meta), "qconfig": None})
    write_run_results(directory, model, {"test_accuracy": None})
    return model


@pytest.fixture(scope="module")
def victim(tmp_path_factory):
    directory = tmp_path_factory.mktemp("victim")
    return directory, _write_victim(directory, seed=0)


def _run(argv):
    parser = argparse.ArgumentParser()
    evaluate_command.add_arguments(parser)
    return evaluate_command.run(parser.parse_args(argv))


def test_evaluate_without_defense(victim, tmp_path, capsys):
    directory, model = victim
    out = tmp_path / "sub" / "result.json"
    assert _run(["--victim", str(directory), "--test-limit", "40", "--out", str(out), "--no-progress"]) == 0
    result = json.loads(out.read_text())
    x, y = load_tensors("digits", "test", limit=40)
    with torch.no_grad():
        expected = (model(x).argmax(dim=1) == y).double().mean().item()
    assert result["accuracy"] == pytest.approx(expected)
    assert result["num_test"] == 40 and result["dataset"] == "digits" and "defense" not in result
    assert f"accuracy: {expected:.6g}" in capsys.readouterr().out
    assert [p.name for p in out.parent.iterdir()] == ["result.json"]  # no temporary file left


def test_evaluate_with_defense(victim, tmp_path):
    directory, model = victim
    out = tmp_path / "dcp.json"
    assert _run(["--victim", str(directory), "--victim-kind", "float", "--defense", "dcp", "--defense-arg", "beta=0.9",
                 "--test-limit", "60", "--batch-size", "25", "--repeats", "1", "--out", str(out), "--no-progress"]) == 0
    result = json.loads(out.read_text())
    x, y = load_tensors("digits", "test", limit=60)
    with torch.no_grad():
        p = F.softmax(model(x), dim=1)
    returned = DCP(0.9)(p)
    assert result["defense"] == repr(DCP(0.9))
    assert result["victim_accuracy"] == pytest.approx((returned.argmax(1) == y).double().mean().item())
    assert result["mean_l1"] == pytest.approx((p - returned).abs().sum(1).double().mean().item(), abs=1e-6)
    assert result["latency_per_query_s"] > 0


def test_evaluate_mad_loads_its_surrogate_from_a_run_directory(victim, tmp_path):
    directory, _ = victim
    surrogate = _write_victim(tmp_path / "surrogate", seed=1)
    result = evaluate.evaluate_victim(directory, defense=defense_from_args(argparse.Namespace(
        defense="mad", defense_arg=[f"surrogate={tmp_path / 'surrogate'}", "epsilon=0.3"])), limit=20, repeats=1,
        progress=False)
    assert result["defense"] == repr(MAD(surrogate, 0.3))
    assert result["mean_l1"] <= 0.3 + 1e-6


@pytest.mark.parametrize("argv,match", [
    (["--test-limit", "0"], "limit"),
    (["--batch-size", "0"], "batch_size"),
    (["--victim-kind", "int9"], "kind"),
    (["--victim-kind", "int8"], "float model"),
    (["--defense", "dcp"], "beta"),
    (["--defense", "topk", "--defense-arg", "k=11"], "k must be <= the number of classes 10"),
    (["--defense-arg", "beta=1"], "without --defense"),
])
def test_evaluate_bad_arguments(victim, argv, match):
    directory, _ = victim
    with pytest.raises(ValueError, match=match):
        _run(["--victim", str(directory), "--no-progress", "--test-limit", "8"] + argv)


def test_evaluate_missing_victim(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json"):
        _run(["--victim", str(tmp_path / "nothing")])


def test_misinformation_model_saved_as_a_run_directory_serves_the_cli(victim, tmp_path):
    from divqat.data import load_dataset
    from divqat.defenses import AdaptiveMisinformation, train_misinformation_model

    directory, _ = victim
    torch.manual_seed(2)
    misinformation = build_model_for("smallcnn", "digits")
    train_misinformation_model(misinformation, load_dataset("digits", "train", limit=64), epochs=1, batch_size=32,
                               progress=False, out_dir=tmp_path / "misinfo", dataset="digits")
    out = tmp_path / "am.json"
    assert _run(["--victim", str(directory), "--defense", "am", "--defense-arg", f"model={tmp_path / 'misinfo'}",
                 "--defense-arg", "tau=0.99", "--test-limit", "16", "--repeats", "1", "--out", str(out),
                 "--no-progress"]) == 0
    result = json.loads(out.read_text())
    assert result["defense"] == repr(AdaptiveMisinformation(misinformation, tau=0.99))  # the same weights
    assert result["mean_l1"] > 0


def test_cli_reports_bad_defense_arguments_in_one_line(victim, capsys):
    from divqat.cli import main

    directory, _ = victim
    assert main(["evaluate", "--victim", str(directory), "--defense", "dcp", "--defense-arg", "beta=-1"]) == 2
    err = capsys.readouterr().err
    assert err == "divqat evaluate: error: beta must be >= 0.0, got -1.0\n"
