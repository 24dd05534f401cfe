"""The `divqat attack` command on a victim directory."""
import json

import pytest
import torch

from divqat.blackbox import BlackBox
from divqat.metrics import evaluate_surrogate
from divqat.models import build_model


def _cli(*argv):
    from divqat.cli import main

    return main(["attack", *map(str, argv)])


def test_cli_writes_metrics_and_surrogate(victim_dir, data, tmp_path):
    out = tmp_path / "run"
    rc = _cli("--victim", victim_dir, "--attack", "knockoff", "--queryset", "digits", "--budget", 400,
              "--epochs", 15, "--seed", 2, "--device", "cpu", "--no-progress", "--out", out)
    assert rc == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["queries_used"] == 400 == metrics["fresh_queries"] and metrics["attack"] == "knockoff"
    # the numbers are those of the saved surrogate against the victim on the test set
    saved = torch.load(out / "surrogate.pt", weights_only=True)
    surrogate = build_model(saved["arch"], **saved["meta"])
    surrogate.load_state_dict(saved["state_dict"])
    bb = BlackBox.from_dir(victim_dir)
    expected = evaluate_surrogate(surrogate, bb, (data[2], data[3]))
    for key, value in expected.items():
        assert metrics[key] == pytest.approx(value)
    assert metrics["agreement"] > 0.5 and metrics["train"]["epochs"] == 15
    assert sorted(p.name for p in out.iterdir()) == ["metrics.json", "surrogate.pt", "transfer.pt"]  # no temporaries
    transfer = torch.load(out / "transfer.pt", weights_only=True)  # every paid answer, as the victim gives it
    queries = torch.cat([c["x"] for c in transfer["calls"]])
    assert len(queries) == 400 and torch.equal(torch.cat([c["answers"] for c in transfer["calls"]]), bb.query(queries))


def test_cli_defense_and_output(victim_dir, tmp_path):
    rc = _cli("--victim", victim_dir, "--attack", "copycat", "--queryset", "digits", "--budget", 100, "--epochs", 1,
              "--defense", "topk", "--defense-arg", "k=1", "--output", "rounded", "--decimals", 1,
              "--no-progress", "--out", tmp_path)
    assert rc == 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["defense"].lower().startswith("topk") and metrics["output"] == "rounded"


def test_cli_mixed_thief_is_scored_on_the_scoring_part(victim_dir, data, tmp_path):
    """--attack-arg values reach the attack typed; the mixed thief queries test images 200..359
    of digits, so it is scored on images 0..199 only; metrics.json holds the answered labels."""
    rc = _cli("--victim", victim_dir, "--attack", "mixed", "--queryset", "digits", "--budget", 300, "--epochs", 1,
              "--attack-arg", "thief_from=200", "--attack-arg", "in_share=0.5", "--no-progress", "--out", tmp_path)
    assert rc == 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["thief_from"] == 200 and metrics["in_distribution_queries"] == 150
    assert metrics["scoring_images"] == 200 and sum(metrics["answered_hist"].values()) == 300
    saved = torch.load(tmp_path / "surrogate.pt", weights_only=True)
    surrogate = build_model(saved["arch"], **saved["meta"])
    surrogate.load_state_dict(saved["state_dict"])
    expected = evaluate_surrogate(surrogate, BlackBox.from_dir(victim_dir), (data[2][:200], data[3][:200]))
    assert metrics["agreement"] == pytest.approx(expected["agreement"])


@pytest.mark.parametrize("args,match", [
    (["--attack", "smoothing", "--queryset", "digits", "--budget", 10, "--attack-arg", "k"], "KEY=VALUE"),
    (["--attack", "smoothing", "--queryset", "digits", "--budget", 10, "--attack-arg", "k=0"], "k must be"),
    (["--attack", "smoothing", "--queryset", "digits", "--budget", 10, "--attack-arg", "arch=lenet5",
      "--arch", "smallcnn"], "--arch"),
    (["--attack", "copycat", "--queryset", "digits", "--budget", 10, "--attack-arg", "k=4"], "unknown parameters"),
    (["--attack", "stealer", "--queryset", "digits", "--budget", 10], "unknown attack"),
    (["--attack", "knockoff", "--queryset", "digits", "--budget", 0], "--budget"),
    (["--attack", "knockoff", "--queryset", "fashion-mnist", "--budget", 10], "adapt"),
    (["--attack", "knockoff", "--budget", 10], "--queryset"),
    (["--attack", "dfme", "--queryset", "digits", "--budget", 10], "data-free"),
    (["--attack", "maze", "--epochs", 2, "--budget", 10], "--epochs"),
    (["--attack", "jbda", "--queryset", "digits", "--budget", 10, "--cache-dir", "/tmp"], "--cache-dir"),
    (["--attack", "knockoff", "--queryset", "digits", "--budget", 10, "--defense-arg", "k=1"], "--defense"),
    (["--attack", "knockoff", "--queryset", "digits", "--budget", 10, "--defense", "topk", "--defense-arg", "k"],
     "KEY=VALUE"),
    (["--attack", "knockoff", "--queryset", "digits", "--budget", 10, "--output", "logits"], "output"),
])
def test_cli_user_errors_one_line_exit_2(victim_dir, tmp_path, capsys, args, match):
    rc = _cli("--victim", victim_dir, "--out", tmp_path / "x", *args)
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and match in err
    assert not (tmp_path / "x").exists()


def test_cli_adapt_queries(victim_dir, tmp_path):
    rc = _cli("--victim", victim_dir, "--attack", "knockoff", "--queryset", "fashion-mnist", "--adapt-queries",
              "--budget", 50, "--epochs", 1, "--no-progress", "--out", tmp_path)
    assert rc == 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["adapt_queries"] is True and metrics["queries_used"] == 50
