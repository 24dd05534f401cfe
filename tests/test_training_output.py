"""What a training run leaves to read: curves.png next to log.jsonl, and with --tensorboard DIR
an event file whose scalars are the logged numbers (train and attack, tiny digits runs)."""
import json
import sys

import pytest

from divqat.cli import main
from divqat.train.curves import curve_panels, write_curves


def _scalars(log_dir):
    """{tag: [(step, value), ...]} read back from the event files in ``log_dir`` by TensorBoard."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(log_dir))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_curve_panels_group_the_monitors():
    history = [{"epoch": 1, "lr": 0.1, "loss": 1.0, "ce": 1.2, "test_accuracy": 0.5, "kl_fp_q": 0.2,
                "l1_fp_q": 0.3, "seconds": 2.0},
               {"epoch": 2, "lr": 0.05, "loss": 0.8, "ce": 1.0, "test_accuracy": 0.6, "kl_fp_q": 0.3,
                "l1_fp_q": 0.4, "seconds": 2.0}]
    assert curve_panels(history) == [("training loss", ["loss", "ce"]),
                                     ("divergence from the float model (test set)", ["kl_fp_q", "l1_fp_q"]),
                                     ("test accuracy", ["test_accuracy"])]
    assert curve_panels([{"epoch": 1, "lr": 0.1, "loss": 1.0, "seconds": 1.0}]) == [("training loss", ["loss"])]
    assert curve_panels([{"epoch": 0, "seconds": 1.0}]) == []


def test_write_curves_draws_one_panel_per_kind(tmp_path):
    import matplotlib.image

    history = [{"epoch": e, "loss": 1.0 / e, "test_accuracy": 0.5 + e / 10} for e in (1, 2, 3)]
    path = write_curves(history, tmp_path / "curves.png", title="fp")
    height, width, _ = matplotlib.image.imread(path).shape
    assert (width, height) == (round(2 * 4.2 * 110), round(3.4 * 110))  # two panels at 110 dpi
    assert write_curves([{"epoch": 0}], tmp_path / "none.png") is None and not (tmp_path / "none.png").exists()


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory, one_thread):
    root = tmp_path_factory.mktemp("runs")
    assert main(["train", "--dataset", "digits", "--arch", "smallcnn", "--epochs", "2", "--device", "cpu",
                 "--no-progress", "--out", str(root / "fp"), "--tensorboard", str(root / "tb-train")]) == 0
    return root


def test_train_writes_curves_and_tensorboard_events(digits_run):
    run = digits_run / "fp"
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    import matplotlib.image

    assert matplotlib.image.imread(run / "curves.png").shape[1] == round(2 * 4.2 * 110)  # loss + accuracy
    scalars = _scalars(digits_run / "tb-train")
    for key in ("loss", "ce", "test_accuracy", "lr"):
        assert scalars[f"fp/{key}"] == [(r["epoch"], pytest.approx(r[key], rel=1e-6)) for r in log]
    assert "fp/seconds" in scalars and not any("epoch" == t.split("/")[1] for t in scalars)


def test_attack_writes_the_surrogate_losses(digits_run, tmp_path):
    assert main(["attack", "--victim", str(digits_run / "fp"), "--attack", "knockoff", "--queryset", "digits",
                 "--budget", "300", "--epochs", "3", "--device", "cpu", "--no-progress", "--out",
                 str(tmp_path / "attack"), "--tensorboard", str(tmp_path / "tb")]) == 0
    metrics = json.loads((tmp_path / "attack" / "metrics.json").read_text())
    losses = _scalars(tmp_path / "tb")["knockoff/loss"]
    assert [step for step, _ in losses] == [1, 2, 3]
    assert losses[-1][1] == pytest.approx(metrics["final_train_loss"], rel=1e-6)


def test_without_tensorboard_installed_a_one_line_error_before_work(digits_run, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # as if not installed: import fails
    out = tmp_path / "fp"
    assert main(["train", "--dataset", "digits", "--arch", "smallcnn", "--epochs", "1", "--device", "cpu",
                 "--out", str(out), "--tensorboard", str(tmp_path / "tb")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--tensorboard needs the tensorboard package: pip install tensorboard" in err[0]
    assert not out.exists() and not (tmp_path / "tb").exists()
