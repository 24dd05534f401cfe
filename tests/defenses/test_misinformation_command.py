"""`divqat train-misinformation` on tiny data: its output is a run directory `--defense am` loads."""
import json

import pytest
import torch

from divqat.cli import main
from divqat.defenses import build_defense, misinformation_loss


def test_trains_a_model_that_defense_am_loads(tmp_path, one_thread):
    out = tmp_path / "misinfo"
    argv = ["train-misinformation", "--dataset", "digits", "--arch", "smallcnn", "--epochs", "2", "--limit", "128",
            "--batch-size", "32", "--lr", "0.01", "--device", "cpu", "--no-progress", "--out", str(out)]
    assert main(argv) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["method"] == "misinformation" and config["arch"] == "smallcnn" and config["dataset"] == "digits"
    am = build_defense("am", model=str(out), tau="0.5")
    saved = torch.load(out / "model.pt", weights_only=True)
    saved = saved.get("state_dict", saved)
    for key, value in am.misinformation_model.state_dict().items():
        assert torch.equal(value, saved[key]), key
    # what it was trained for: on its training rows, the loss is below that of an untrained model
    from divqat.data import load_tensors
    from divqat.models import build_model_for

    x, y = load_tensors("digits", "train", limit=128)
    torch.manual_seed(0)
    with torch.no_grad():
        assert misinformation_loss(am.misinformation_model(x), y) < misinformation_loss(
            build_model_for("smallcnn", "digits").eval()(x), y)


@pytest.mark.parametrize("argv,match", [
    (["--dataset", "digits"], "--victim DIR, or --dataset and --arch"),
    (["--dataset", "digits", "--arch", "smallcnn", "--epochs", "0"], "--epochs must be >= 1"),
    (["--dataset", "nope", "--arch", "smallcnn"], "unknown name"),
])
def test_bad_arguments_exit_2_in_one_line(tmp_path, capsys, argv, match):
    assert main(["train-misinformation", *argv, "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert match in err and len(err.splitlines()) == 1
    assert not (tmp_path / "x").exists()


def test_defense_am_takes_it_on_the_command_line(tmp_path, capsys, one_thread):
    out = tmp_path / "misinfo"
    assert main(["train-misinformation", "--dataset", "digits", "--arch", "smallcnn", "--epochs", "1", "--limit", "64",
                 "--device", "cpu", "--no-progress", "--out", str(out)]) == 0
    victim = tmp_path / "victim"  # a misinformation model is no victim: it only serves the defense
    assert main(["train", "--dataset", "digits", "--arch", "smallcnn", "--epochs", "1", "--limit", "64",
                 "--device", "cpu", "--no-progress", "--out", str(victim)]) == 0
    assert main(["evaluate", "--victim", str(victim), "--defense", "am", "--defense-arg",
                 f"model={out}", "--defense-arg", "tau=0.5", "--test-limit", "20", "--repeats", "1", "--no-progress"]) == 0
    am = build_defense("am", model=str(out), tau=0.5)
    assert f"defense: {am!r}" in capsys.readouterr().out
