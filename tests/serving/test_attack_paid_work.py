"""`divqat attack --victim URL` against a real `divqat serve` never loses paid queries: what would
stop the scoring is refused before the first query; a failure after them is one line naming
OUT/transfer.pt and OUT/surrogate.pt, and the same command run again pays the server nothing more."""
import itertools
import json
import sys

import httpx
import pytest
import torch
from test_http import server, store  # noqa: F401 -- the fixtures of the attack-by-URL tests

import divqat.attacks.knockoff  # noqa: F401 -- the module whose surrogate training is made to fail
import divqat.metrics
from divqat.cli import main
from divqat.models import build_model

ATTACK = ["attack", "--attack", "knockoff", "--queryset", "digits", "--budget", "120", "--epochs", "2",
          "--no-progress", "--device", "cpu"]
TEST_SET = 360  # digits' test split, scored through the evaluation key
_KEY_NAMES = (f"k{i}" for i in itertools.count())


def _one_line(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0], err
    return err[0]


@pytest.fixture
def keys(store):
    """A fresh attacker key of 120 queries and an evaluation key covering the test set."""
    name = next(_KEY_NAMES)
    return store.add(f"attacker-{name}", 120), store.add(f"evaluator-{name}", TEST_SET)


def test_scoring_problems_refused_before_the_first_query(server, store, keys, victim_dir, tmp_path,
                                                         capsys):
    attacker, _ = keys
    small = store.add("small", TEST_SET - 1)
    argv = [*ATTACK, "--victim", server.url, "--api-key", attacker]
    assert main([*argv, "--eval-api-key", small, "--eval-dataset", "digits", "--out", str(tmp_path / "a")]) == 2
    assert "--eval-api-key" in _one_line(capsys) and store.usage(attacker).used == 0
    # a local copy of another input shape (3x16x16, the served victim takes 1x8x8)
    other = tmp_path / "other"
    from divqat.train.artifacts import start_run, write_run_results

    model = build_model("smallcnn", num_classes=10, in_channels=3, image_size=16, mean=[0.5] * 3, std=[0.5] * 3)
    start_run(other, {"arch": "smallcnn", "dataset": "digits", "method": "fp", "quantized": False,
                         "meta": dict(model.meta)})
    write_run_results(other, model, {"test_accuracy": None})
    assert main([*argv, "--eval-victim", str(other), "--out", str(tmp_path / "b")]) == 2
    line = _one_line(capsys)
    assert "--eval-victim" in line and "(3, 16, 16)" in line and store.usage(attacker).used == 0


def test_scoring_failure_keeps_the_paid_work_and_a_rerun_pays_nothing(server, store, keys, tmp_path,
                                                                      monkeypatch, capsys):
    attacker, evaluator = keys
    out = tmp_path / "attack"
    argv = [*ATTACK, "--victim", server.url, "--api-key", attacker, "--eval-dataset", "digits", "--out", str(out)]
    score = divqat.metrics.evaluate_surrogate

    def spent_meanwhile(*args, **kwargs):  # another client spends the evaluation key after the check
        body = {"inputs": torch.zeros(10, 1, 8, 8).tolist()}
        assert httpx.post(server.url + "/v1/predict", json=body, timeout=60,
                          headers={"Authorization": f"Bearer {evaluator}"}).status_code == 200
        return score(*args, **kwargs)

    monkeypatch.setattr(divqat.metrics, "evaluate_surrogate", spent_meanwhile)
    assert main([*argv, "--eval-api-key", evaluator]) == 2
    line = _one_line(capsys)
    assert "scoring the surrogate failed" in line and str(out / "transfer.pt") in line
    assert str(out / "surrogate.pt") in line and not (out / "metrics.json").exists()
    assert store.usage(attacker).used == 120
    saved = torch.load(out / "transfer.pt", weights_only=True)
    assert sum(len(c["answers"]) for c in saved["calls"]) == 120 and saved["record"]["queries_used"] == 120
    assert attacker not in json.dumps(saved["key"])  # the token never reaches the disk
    monkeypatch.undo()
    # the same command with a fresh evaluation key: scored, and the attacker's key is not touched
    assert main([*argv, "--eval-api-key", store.add("evaluator-rerun", TEST_SET)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert store.usage(attacker).used == 120 and metrics["fresh_queries"] == 0 and metrics["queries_used"] == 120


def test_training_failure_keeps_the_answers_and_a_rerun_replays_them(server, store, keys, tmp_path,
                                                                     monkeypatch, capsys):
    attacker, evaluator = keys
    out = tmp_path / "attack"
    argv = [*ATTACK, "--victim", server.url, "--api-key", attacker, "--eval-api-key", evaluator,
            "--eval-dataset", "digits", "--out", str(out)]

    def crash(*args, **kwargs):
        raise RuntimeError("CUDA out of memory (simulated)")

    monkeypatch.setattr(sys.modules["divqat.attacks.knockoff"], "train_on_answers", crash)
    assert main(argv) == 2
    line = _one_line(capsys)
    assert "out of memory" in line and f"120 answers paid for are saved in {out / 'transfer.pt'}" in line
    assert store.usage(attacker).used == 120 and not (out / "surrogate.pt").exists()
    monkeypatch.undo()
    # other options than the paid answers': refused before any query, the answers kept
    assert main([*argv, "--seed", "1"]) == 2
    line = _one_line(capsys)
    assert "other options (seed)" in line and "--overwrite" in line and store.usage(attacker).used == 120
    assert main(argv) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert store.usage(attacker).used == 120 and metrics["fresh_queries"] == 0 and metrics["queries_used"] == 120
    assert metrics["server_queries_used"] == 120
