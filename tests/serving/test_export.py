"""`divqat export`: the defended ONNX file answers, under ONNX Runtime alone, what the Python
defense answers on the same int8 victim and inputs (oracle: torch softmax of the victim's
logits in float64, then the divqat.defenses object; tolerance 1e-6 on probabilities), and the
defenses that cannot be exported are refused with a one-line reason."""
import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F

from divqat.blackbox import BlackBox
from divqat.cli import main
from divqat.data import load_tensors
from divqat.serving.export import REFUSED, build_exportable_defense, export_defended
from divqat.serving.metadata import serving_info
from divqat.train import load_victim

EXPORTABLE = [
    (None, {}),
    ("dcp", {"beta": "0.5"}),
    ("dcp", {"beta": "0.9", "gamma": "0.1", "cap_log_odds": "false"}),
    ("reverse_sigmoid", {"beta": "0.3", "gamma": "0.5"}),
    ("rounding", {"decimals": "2"}),
    ("rounding", {"decimals": "0"}),
    ("topk", {"k": "3"}),
    ("label_only", {}),
]


@pytest.fixture(scope="module")
def inputs():
    """The digits test images plus 64 uniform-noise images (low-confidence rows, where DCP acts)."""
    x, _ = load_tensors("digits", "test")
    return torch.cat([x, torch.rand(64, *x.shape[1:], generator=torch.Generator().manual_seed(0))])


@pytest.fixture(scope="module")
def victim_logits(inputs, victim_dir):
    return load_victim(victim_dir, kind="int8")(inputs)


def _run(model, x):
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]


def _defense(name, args):
    return build_exportable_defense(name, args) if name else (None, None)


@pytest.mark.parametrize("name, args", EXPORTABLE)
def test_onnx_answers_equal_the_python_defense(name, args, inputs, victim_logits, victim_dir):
    key, defense = _defense(name, args)
    answers = _run(export_defended(victim_dir, key, defense), inputs)
    p = F.softmax(victim_logits.double(), dim=1)
    expected = (defense(p) if defense else p).float().numpy()
    assert answers.dtype == np.float32 and answers.shape == expected.shape
    if name == "topk":  # torch.topk's choice among tied classes is unspecified; ONNX TopK keeps the lowest index
        np.testing.assert_allclose(np.sort(answers, 1), np.sort(expected, 1), rtol=0, atol=1e-6)
        kept = np.argsort(-answers, 1, kind="stable")[:, :3]
        tied_order = np.argsort(-F.softmax(victim_logits.double(), 1).numpy(), 1, kind="stable")[:, :3]
        np.testing.assert_array_equal(np.sort(kept, 1), np.sort(tied_order, 1))
    else:
        np.testing.assert_allclose(answers, expected, rtol=0, atol=1e-6)
    if name in ("rounding", "label_only", None):  # no float32-sensitive gate: the float32 BlackBox agrees too
        blackbox = BlackBox.from_dir(victim_dir, defense=defense).query(inputs).numpy()
        np.testing.assert_allclose(answers, blackbox, rtol=0, atol=1e-6)


def test_dcp_acts_on_the_exported_rows(inputs, victim_logits, victim_dir):
    """The DCP comparison is not vacuous: its answers move away from p on some rows."""
    _, defense = _defense("dcp", {"beta": "0.5"})
    answers = _run(export_defended(victim_dir, "dcp", defense), inputs)
    p = F.softmax(victim_logits.double(), dim=1).numpy()
    assert np.abs(answers - p).max() > 0.05


def test_metadata_names_the_defense_not_its_parameters(victim_dir):
    key, defense = _defense("dcp", {"beta": "0.625", "gamma": "0.3125"})
    model = export_defended(victim_dir, key, defense)
    info = serving_info(model)
    assert info["defense"] == "dcp" and info["answers"] == "probabilities"
    assert info["input_shape"] == [1, 8, 8] and info["num_classes"] == 10
    text = json.dumps([(p.key, p.value) for p in model.metadata_props])
    assert "0.625" not in text and "0.3125" not in text


def _export(capsys, *argv):
    """`divqat export ARGV` in-process: (exit status, stderr)."""
    rc = main(["export", *map(str, argv)])
    return rc, capsys.readouterr().err


def test_cli_writes_a_file_onnx_runtime_runs(tmp_path, inputs, victim_logits, capsys, victim_dir):
    out = tmp_path / "label.onnx"
    assert _export(capsys, "--victim", victim_dir, "--defense", "label", "--out", out) == (0, "")
    answers = _run(onnx.load(str(out)), inputs)
    np.testing.assert_array_equal(answers.argmax(1), victim_logits.argmax(1).numpy())
    np.testing.assert_array_equal(answers.sum(1), np.ones(len(inputs), np.float32))


@pytest.mark.parametrize("name, reason", [("mad", "surrogate network"), ("am", "second (misinformation) network"),
                                          ("random-noise", "random stream")])
def test_unexportable_defenses_refused_with_the_reason(name, reason, tmp_path, capsys, victim_dir):
    rc, err = _export(capsys, "--victim", victim_dir, "--defense", name, "--out", tmp_path / "m.onnx")
    assert rc == 2 and not (tmp_path / "m.onnx").exists()
    assert err.count("\n") == 1 and "cannot be exported to ONNX" in err and reason in err
    assert set(REFUSED) == {"mad", "adaptive_misinformation", "random_noise"}


@pytest.mark.parametrize("argv, match", [
    (["--defense", "topk", "--defense-arg", "k=11"], "k: must be <= the victim's 10 classes"),
    (["--defense", "dcp", "--defense-arg", "beta=-1"], "beta"),
    (["--defense-arg", "beta=1"], "--defense-arg given without --defense"),
    (["--defense", "nope"], "unknown defense"),
])
def test_cli_bad_arguments_one_line_exit_2(argv, match, tmp_path, capsys, victim_dir):
    rc, err = _export(capsys, "--victim", victim_dir, *argv, "--out", tmp_path / "m.onnx")
    assert rc == 2 and err.count("\n") == 1 and match in err, err
    assert not (tmp_path / "m.onnx").exists()


def test_float_victim_refused(tmp_path, capsys, victim_dir):
    rc, err = _export(capsys, "--victim", victim_dir.parent / "fp", "--out", tmp_path / "m.onnx")
    assert rc == 2 and "needs a quantized run" in err
