"""The guide "Your own data and models" (docs/guide/own-data.md), run as written: the user module, the three commands
(train a victim on an ImageFolder of PNGs with that module's network, quantize it, attack it
with divqat) and the ART snippet, on sklearn's 8x8 digits saved as PNG files."""
import json
import re
import shlex
from pathlib import Path

import pytest
from PIL import Image

from divqat.cli import main
from divqat.data import load_tensors

pytestmark = pytest.mark.usefixtures("one_thread")

GUIDE = Path(__file__).resolve().parent.parent / "docs" / "guide" / "own-data.md"
NAMES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


def _section_blocks():
    return re.findall(r"```(\w+)\n(.*?)```", GUIDE.read_text(), flags=re.S)


def _save_pngs(root, split):
    x, y = load_tensors("digits", split)
    pixels = (x[:, 0] * 255).round().byte().numpy()
    for i, (image, label) in enumerate(zip(pixels, y.tolist())):
        folder = root / split / NAMES[label]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image, "L").save(folder / f"{i:04d}.png")


def test_readme_own_data_and_models_walkthrough(tmp_path, monkeypatch, capsys):
    blocks = _section_blocks()
    assert [lang for lang, _ in blocks] == ["python", "bash", "python"]
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "my_nets.py").write_text(blocks[0][1])
    _save_pngs(tmp_path / "shapes", "train")
    _save_pngs(tmp_path / "shapes", "test")
    for line in blocks[1][1].strip().splitlines():
        argv = shlex.split(line)
        assert argv[0] == "divqat"
        assert main(argv[1:]) == 0, line
    victim = json.loads((tmp_path / "runs" / "shapes" / "metrics.json").read_text())
    assert victim["test_accuracy"] > 0.85  # chance is 0.1; 0.95 when written
    attack = json.loads((tmp_path / "runs" / "shapes-knockoff" / "metrics.json").read_text())
    assert attack["queries_used"] == 500 and attack["agreement"] > 0.8  # 0.94 when written
    capsys.readouterr()
    exec(compile(blocks[2][1], str(GUIDE), "exec"), {})
    printed = capsys.readouterr().out.strip().splitlines()[-1]
    queries, scores = printed.split(" ", 1)
    assert queries == "500"
    agreement = float(re.search(r"'agreement': ([0-9.]+)", scores)[1])
    assert agreement > 0.8
