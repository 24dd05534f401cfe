"""`divqat demo --quick` end to end through the CLI: MNIST victim, Fashion-MNIST queries, QAT,
DivQAT and the relabelling (permute) int8 victims, undefended and behind DCP, attacked by
KnockoffNets and Copycat, the comparison table printed."""
import csv
import json

from divqat.cli import main
from divqat.data import outliers


def test_demo_quick(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(outliers, "DEFAULT_COUNT", 96)  # a small outlier set: the smoke test trains one epoch
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--no-progress", "--out", str(out), "--alpha", "2"]) == 0
    text = capsys.readouterr().out
    assert "victim acc" in text and "adv error" in text
    results = json.loads((out / "results.json").read_text())
    # QAT, DivQAT and the relabelling victim, each undefended and behind DCP beta 1, each against
    # KnockoffNets and Copycat
    relabel = "divqat(alpha=3.0, distill=1.0, objective=proxy, proxy_source=glyphs, proxy_target=permute)"
    assert sorted((c["victim_label"], c["defense_label"], c["attack"]) for c in results["cells"]) == sorted(
        (v, d, a) for v in ("divqat(alpha=2.0)", "qat", relabel) for d in ("dcp(beta=1.0)", "none")
        for a in ("copycat", "knockoff"))
    assert "permute(alpha=3.0)" in text  # the short name of the table
    assert all(c["queries_used"] == 256 for c in results["cells"])
    qat = next(c for c in results["cells"] if (c["method"], c["defense"], c["attack"]) == ("qat", "none", "knockoff"))
    # the printed table's rows are on disk, equal to the per-seed records behind them, KnockoffNets and QAT first
    assert f"{qat['adversary_error']:.2%}" in text.splitlines()[2] and text.splitlines()[2].startswith("knockoff  qat ")
    with open(out / "demo.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(r["thief"], r["victim"], r["defense"]) for r in rows[:2]] == [("knockoff", "qat", "none"),
                                                                          ("knockoff", "qat", "dcp(beta=1.0)")]
    assert float(rows[0]["adversary_error"]) == qat["adversary_error"]
    qat_victim = next(v for v in results["victims"] if v["method"] == "qat")
    assert float(rows[0]["kl_fp_q"]) == qat_victim["kl_fp_q"]
    # a second run is served from the cache
    assert main(["demo", "--quick", "--no-progress", "--out", str(out), "--alpha", "2"]) == 0
    assert "0 victims trained, 0 attacks run, 12 cached" in capsys.readouterr().out
