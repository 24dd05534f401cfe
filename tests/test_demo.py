"""`divqat demo --quick` end to end through the CLI: MNIST victim, Fashion-MNIST queries, QAT
and DivQAT int8 victims attacked by KnockoffNets, the comparison table printed."""
import csv
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
    # the printed table's rows are on disk, equal to the per-seed records behind them
    with open(out / "demo.csv") as f:
        rows = {r["victim"]: r for r in csv.DictReader(f)}
    assert float(rows["qat"]["adversary_error"]) == qat["adversary_error"]
    qat_victim = next(v for v in results["victims"] if v["method"] == "qat")
    assert float(rows["qat"]["kl_fp_q"]) == qat_victim["kl_fp_q"]
    # a second run is served from the cache
    assert main(["demo", "--quick", "--no-progress", "--out", str(out), "--alpha", "2"]) == 0
    assert "0 victims trained, 0 attacks run, 2 cached" in capsys.readouterr().out
