"""`divqat demo --quick` end to end through the CLI: MNIST victim, Fashion-MNIST queries, QAT
and DivQAT int8 victims attacked by KnockoffNets, the comparison table printed."""
import json

from divqat.cli import main


def test_demo_quick(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--no-progress", "--out", str(out), "--alpha", "2"]) == 0
    text = capsys.readouterr().out
    assert "victim acc" in text and "adv error" in text
    results = json.loads((out / "results.json").read_text())
    assert sorted(c["victim_label"] for c in results["cells"]) == ["divqat(alpha=2.0)", "qat"]
    qat = next(c for c in results["cells"] if c["method"] == "qat")
    assert f"{qat['adversary_error']:.2%}" in next(ln for ln in text.splitlines() if ln.startswith("qat "))
    assert all(c["queries_used"] == 256 for c in results["cells"])
    # a second run is served from the cache
    assert main(["demo", "--quick", "--no-progress", "--out", str(out), "--alpha", "2"]) == 0
    assert "0 victims trained, 0 attacks run, 2 cached" in capsys.readouterr().out
