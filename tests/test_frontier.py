"""The frontier table (divqat.experiments.frontier): naming of trained-in, output and stacked
defenses, the paired Student-t interval against hand-computed values, the Pareto front, and the
files written from a directory of runner cell records."""
import csv
import json
import math

import pytest

from divqat.experiments.frontier import (
    COLUMNS,
    comparisons,
    defense_of,
    frontier_point,
    main,
    paired_interval,
    pareto,
    write_frontier,
)


def _record(seed, method, defense, attack, agreement, accuracy):
    return {"seed": seed, "method": method, "defense": defense, "attack": attack,
            "metrics": {"agreement": agreement, "victim_accuracy": accuracy, "adversary_error": 1 - agreement}}


def _run_dir(tmp_path):
    """An empty experiment output directory of the MNIST <- Fashion-MNIST pair."""
    run = tmp_path / "run"
    (run / "cells").mkdir(parents=True)
    (run / "configs").mkdir()
    (run / "configs" / "x.json").write_text(json.dumps({"data": {"victim": "mnist", "queryset": "fashion-mnist"}}))
    return run


def test_defense_names():
    qat, none = {"name": "qat"}, {"name": "none"}
    nonlabel = {"name": "divqat", "objective": "nonlabel", "alpha": 0.3, "margin": 2.0}
    dcp = {"name": "dcp", "beta": 0.5}
    assert defense_of({"method": qat, "defense": none}) == ("qat", "")
    assert defense_of({"method": qat, "defense": dcp}) == ("dcp", "beta=0.5")
    assert defense_of({"method": nonlabel, "defense": none}) == ("nonlabel", "alpha=0.3 margin=2")
    assert defense_of({"method": nonlabel, "defense": dcp}) == ("nonlabel+dcp", "alpha=0.3 margin=2; beta=0.5")
    proxy = {"name": "divqat", "objective": "proxy", "proxy_target": "entropy", "alpha": 1.0}
    assert defense_of({"method": proxy, "defense": none}) == ("proxy-entropy", "alpha=1")
    shuffled = {"name": "divqat", "objective": "proxy", "alpha": 0.3, "proxy_transforms": "shuffle,blur"}
    assert defense_of({"method": shuffled, "defense": none}) == ("proxy-kl", "alpha=0.3 proxy_transforms=shuffle,blur")
    spelled = {"name": "divqat", "alpha": 1.0, "temperature": 1.0, "direction": "forward"}
    assert defense_of({"method": spelled, "defense": none}) == ("divqat", "alpha=1")  # defaults left out
    paper = {"name": "divqat", "alpha": 0.1, "temperature": 4.0, "direction": "reverse"}
    assert defense_of({"method": paper, "defense": none}) == ("divqat", "alpha=0.1 temperature=4 direction=reverse")


def test_paired_interval_is_student_t():
    diffs = [0.1, 0.3, -0.2, 0.4]
    mean = sum(diffs) / 4
    sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / 3)
    half = 3.182446305284263 * sd / 2  # t_{0.975, 3}
    got = paired_interval(diffs)
    assert got == pytest.approx((mean, mean - half, mean + half), abs=1e-12)
    mean, low, high = paired_interval([0.25])
    assert mean == 0.25 and math.isnan(low) and math.isnan(high)


def test_frontier_point_is_baseline_mean_plus_paired_difference():
    base = {"defense": "qat", "setting": "", "victim_accuracy": 0.97, "agreement": 0.65, "paired_n": 10}
    subset = {"defense": "nonlabel", "setting": "alpha=0.3", "victim_accuracy": 0.95, "agreement": 0.75,
              "paired_n": 3, "d_victim_accuracy": (-0.01, -0.02, 0.0), "d_agreement": (-0.05, -0.1, 0.0)}
    assert frontier_point(subset, base) == pytest.approx((96.0, 60.0))  # not its own seeds' means (95, 75)
    assert frontier_point(base, base) == pytest.approx((97.0, 65.0))
    alone = {"defense": "dcp", "setting": "beta=1", "victim_accuracy": 0.9, "agreement": 0.3, "paired_n": 0}
    assert frontier_point(alone, base) == pytest.approx((90.0, 30.0))


def test_pareto_front():
    points = [(0.97, 0.80), (0.96, 0.50), (0.95, 0.60), (0.90, 0.20), (0.97, 0.90)]
    assert pareto(points) == [(0.90, 0.20), (0.96, 0.50), (0.97, 0.80)]


def test_write_frontier_from_cell_records(tmp_path, capsys):
    run = _run_dir(tmp_path)
    knockoff = {"name": "knockoff", "budget": 5000}
    records = []
    for seed, (base, trained) in enumerate([(0.80, 0.60), (0.85, 0.70), (0.90, 0.65)]):
        records += [_record(seed, {"name": "qat"}, {"name": "none"}, knockoff, base, 0.97),
                    _record(seed, {"name": "divqat", "objective": "nonlabel", "alpha": 0.3}, {"name": "none"},
                            knockoff, trained, 0.96),
                    _record(seed, {"name": "qat"}, {"name": "none"}, {**knockoff, "sharpen": 0.5}, base, 0.97),
                    _record(seed, {"name": "qat"}, {"name": "none"}, {**knockoff, "epochs": 20}, base, 0.97)]
    for i, r in enumerate(records):
        (run / "cells" / f"{i}.json").write_text(json.dumps(r))
    assert main(["table", str(run), "--out", str(tmp_path / "out")]) == 0
    with open(tmp_path / "out" / "frontier.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert tuple(rows[0]) == COLUMNS and len(rows) == 12
    assert {r["attack"] for r in rows} == {"knockoff", "knockoff-sharpen0.5", "knockoff-20ep"}
    assert {r["pair"] for r in rows} == {"mnist<-fashion-mnist"}
    _, summaries = write_frontier([run], tmp_path / "out2", plots=False)
    nonlabel = next(s for s in summaries if s["defense"] == "nonlabel")
    assert nonlabel["paired_n"] == 3 and nonlabel["lower_agreement_seeds"] == 3
    assert nonlabel["d_agreement"] == pytest.approx(paired_interval([-0.20, -0.15, -0.25]))
    assert "| nonlabel | alpha=0.3 | 3 | 96.00 | 65.00 | -1.00" in (tmp_path / "out2" / "frontier.md").read_text()
    assert list((tmp_path / "out").glob("frontier_mnist_from_fashion-mnist_knockoff_5000.png"))
    assert main(["table", str(tmp_path / "missing"), "--out", str(tmp_path / "o")]) == 2
    assert "no cells/" in capsys.readouterr().err


def test_duplicate_cells_are_counted_once_or_refused(tmp_path, capsys):
    run = _run_dir(tmp_path)
    knockoff = {"name": "knockoff", "budget": 5000}
    for seed, agreement in enumerate([0.8, 0.7]):
        for copy in ("a", "b"):  # the seed-0 cell twice with equal metrics (e.g. from two code versions)
            (run / "cells" / f"{copy}{seed}.json").write_text(
                json.dumps(_record(seed, {"name": "qat"}, {"name": "none"}, knockoff, agreement, 0.97)))
    assert main(["table", str(run), "--out", str(tmp_path / "out"), "--no-plots"]) == 0
    with open(tmp_path / "out" / "frontier.csv", newline="") as f:
        assert [float(r["agreement"]) for r in csv.DictReader(f)] == [0.8, 0.7]
    (run / "cells" / "b1.json").write_text(
        json.dumps(_record(1, {"name": "qat"}, {"name": "none"}, knockoff, 0.75, 0.97)))
    assert main(["table", str(run), "--out", str(tmp_path / "out2"), "--no-plots"]) == 2
    err = capsys.readouterr().err
    assert "a1.json" in err and "b1.json" in err and "different metrics" in err


def test_run_validates_every_config_before_any_work(tmp_path, capsys):
    good = tmp_path / "good.toml"
    good.write_text('name = "g"\n[data]\nvictim = "digits"\n[victim]\narch = "smallcnn"\n[[methods]]\nname = "fp"\n')
    out = tmp_path / "out"
    assert main(["run", str(good), str(tmp_path / "missing.toml"), "--out", str(out), "--seeds", "0"]) == 2
    assert "missing.toml" in capsys.readouterr().err and not out.exists()


def test_stacked_and_reference_comparisons():
    proxy = {"name": "divqat", "objective": "proxy", "alpha": 0.3}
    rows = []
    for seed, (dcp, stacked, trained) in enumerate([(0.6, 0.5, 0.7), (0.5, 0.45, 0.65), (0.55, 0.56, 0.6)]):
        for method, defense, agreement in (({"name": "qat"}, {"name": "dcp", "beta": 0.5}, dcp),
                                           (proxy, {"name": "dcp", "beta": 0.5}, stacked),
                                           (proxy, {"name": "none"}, trained)):
            name, setting = defense_of({"method": method, "defense": defense})
            rows.append({"pair": "p", "defense": name, "setting": setting, "attack": "knockoff", "budget": 5000,
                         "seed": seed, "victim_accuracy": 0.9, "agreement": agreement,
                         "adversary_error": 1 - agreement})
    got = {(c["defense"], c["against"]): c for c in comparisons(rows)}
    assert set(got) == {("proxy-kl+dcp", "dcp beta=0.5"), ("proxy-kl", "dcp beta=0.5")}
    stacked = got[("proxy-kl+dcp", "dcp beta=0.5")]
    assert stacked["d_agreement"] == pytest.approx(paired_interval([-0.1, -0.05, 0.01]))
    assert stacked["lower_agreement_seeds"] == 2 and stacked["paired_n"] == 3
    assert got[("proxy-kl", "dcp beta=0.5")]["d_agreement"][0] == pytest.approx(0.1)
