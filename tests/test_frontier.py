"""The frontier (divqat.results.frontier and the `python -m divqat.experiments.frontier` entry):
naming of trained-in, output and stacked defenses and of the victim's training data, the paired
Student-t interval against hand-computed values, the Pareto front, and the files written from a
directory of runner cell records."""
import csv
import json
import math

import pytest

from divqat.experiments.frontier import main
from divqat.results.frontier import (
    COLUMNS,
    TRAINED,
    answered_label_rows,
    attack_of,
    comparisons,
    defense_of,
    frontier_rows,
    paired_difference,
    pareto,
    read_frontier_csv,
    summarize,
    trained_defense,
    victim_setting,
)
from divqat.results.frontier_files import write_frontier
from divqat.results.frontier_plots import frontier_point
from divqat.results.frontier_tables import (
    answered_label_shares,
    answered_label_table,
    frontier_markdown,
    summary_tables,
)
from divqat.results.stats import Paired, paired
from divqat.results.words import attack_words, title

T_975_3 = 3.1824463052837078  # t_{0.975, 3} (scipy.stats.t.ppf)
T_975_2 = 0.95 * math.sqrt(2 / (4 * 0.975 * 0.025))  # t_{0.975, 2} in closed form: (2p - 1) sqrt(2 / (4p(1 - p)))


def _record(seed, method, defense, attack, agreement, accuracy, victim="v10k"):
    return {"seed": seed, "method": method, "defense": defense, "attack": attack, "victim_key": victim,
            "metrics": {"agreement": agreement, "victim_accuracy": accuracy, "adversary_error": 1 - agreement}}


def _victim(run, key, data):
    folder = run / "victims" / key
    folder.mkdir(parents=True)
    (folder / "victim.json").write_text(json.dumps({"key": key, "config_key": f"c-{key}", "spec": {"data": data}}))


def _run_dir(tmp_path):
    """An empty experiment output directory of the MNIST <- Fashion-MNIST pair, with a victim of
    the 10,000-image setting (key v10k) and one of the full training set (key vfull)."""
    run = tmp_path / "run"
    (run / "cells").mkdir(parents=True)
    (run / "configs").mkdir()
    (run / "configs" / "x.json").write_text(json.dumps({"data": {"victim": "mnist", "queryset": "fashion-mnist"}}))
    _victim(run, "v10k", {"victim": "mnist", "train_limit": 10000, "test_limit": 2000})
    _victim(run, "vfull", {"victim": "mnist"})
    return run


def _interval(diffs, t):
    mean = sum(diffs) / len(diffs)
    half = t * math.sqrt(sum((d - mean) ** 2 for d in diffs) / (len(diffs) - 1)) / math.sqrt(len(diffs))
    return mean, mean - half, mean + half


def _triple(p):
    return p.mean_diff, p.ci_low, p.ci_high


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
    assert {"proxy-kl", "proxy-entropy", "proxy-shift", "proxy-permute"} <= set(TRAINED)
    shuffled = {"name": "divqat", "objective": "proxy", "alpha": 0.3, "proxy_transforms": "shuffle,blur"}
    assert defense_of({"method": shuffled, "defense": none}) == ("proxy-kl", "alpha=0.3 proxy_transforms=shuffle,blur")
    spelled = {"name": "divqat", "alpha": 1.0, "temperature": 1.0, "direction": "forward"}
    assert defense_of({"method": spelled, "defense": none}) == ("divqat", "alpha=1")  # defaults left out
    paper = {"name": "divqat", "alpha": 0.1, "temperature": 4.0, "direction": "reverse"}
    assert defense_of({"method": paper, "defense": none}) == ("divqat", "alpha=0.1 temperature=4 direction=reverse")


def test_paired_difference_is_student_t():
    diffs = [0.1, 0.3, -0.2, 0.4]
    base = {s: {"agreement": 0.5} for s in range(5)}
    mine = {s: {"agreement": 0.5 + d} for s, d in enumerate(diffs)}  # seed 4 has no treatment: not paired
    got = paired_difference(mine, base, "agreement")
    assert isinstance(got, Paired) and got.n == 4 and got.lower == 1
    assert _triple(got) == pytest.approx(_interval(diffs, T_975_3), abs=1e-12)
    one = paired_difference({0: {"agreement": 0.75}}, base, "agreement")
    assert one.mean_diff == pytest.approx(0.25) and one.ci_low is None and one.ci_high is None
    assert paired_difference({9: {"agreement": 0.1}}, base, "agreement") is None


def test_victim_setting_names_the_training_data():
    assert victim_setting({"victim": "mnist"}) == "full"
    assert victim_setting({"victim": "mnist", "train_limit": 10000, "test_limit": 2000}) == "train10000"
    assert title("mnist<-fashion-mnist", "train10000", "copycat-20ep", 5000) == (
        "MNIST victim (trained on 10,000 training images) queried with Fashion-MNIST images\n"
        "Copycat thief (sees labels only), 20-epoch surrogate, 5,000 queries")


def test_victims_of_different_training_data_never_share_a_row_or_a_comparison(tmp_path):
    run = _run_dir(tmp_path)
    knockoff = {"name": "knockoff", "budget": 5000}
    nonlabel = {"name": "divqat", "objective": "nonlabel", "alpha": 0.3}
    for seed in range(3):
        records = [_record(seed, {"name": "qat"}, {"name": "none"}, knockoff, 0.8, 0.97, "v10k"),
                   _record(seed, {"name": "qat"}, {"name": "none"}, knockoff, 0.9, 0.99, "vfull"),
                   _record(seed, nonlabel, {"name": "none"}, knockoff, 0.6 + 0.01 * seed, 0.98, "vfull")]
        for i, r in enumerate(records):
            (run / "cells" / f"{seed}-{i}.json").write_text(json.dumps(r))
    rows = frontier_rows([run])
    assert len(rows) == 9 and {r["victim_setting"] for r in rows} == {"full", "train10000"}
    by = {(s["victim_setting"], s["defense"]): s for s in summarize(rows)}
    assert set(by) == {("full", "qat"), ("train10000", "qat"), ("full", "nonlabel")}
    assert by[("train10000", "qat")]["agreement"] == pytest.approx(0.8)  # the full victims' 0.9 is not averaged in
    # nonlabel is paired with the full-data QAT victim only: -0.30, -0.29, -0.28
    assert _triple(by[("full", "nonlabel")]["d_agreement"]) == pytest.approx(
        _interval([-0.30, -0.29, -0.28], T_975_2), abs=1e-12)
    (run / "cells" / "orphan.json").write_text(json.dumps(
        _record(0, {"name": "qat"}, {"name": "none"}, knockoff, 0.8, 0.97, "nowhere")))
    with pytest.raises(ValueError, match="orphan.json"):
        frontier_rows([run])


def test_frontier_point_is_baseline_mean_plus_paired_difference():
    base = {"defense": "qat", "setting": "", "victim_accuracy": 0.97, "agreement": 0.65, "paired_n": 10}
    subset = {"defense": "nonlabel", "setting": "alpha=0.3", "victim_accuracy": 0.95, "agreement": 0.75,
              "paired_n": 3, "d_victim_accuracy": paired([0, 1], [0.0, -0.02], [0.0, 0.0]),
              "d_agreement": paired([0, 1], [-0.1, 0.0], [0.0, 0.0])}
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
    assert {(r["pair"], r["victim_setting"]) for r in rows} == {("mnist<-fashion-mnist", "train10000")}
    summaries = summarize(write_frontier([run], tmp_path / "out2", plots=False))
    nonlabel = next(s for s in summaries if s["defense"] == "nonlabel")
    assert nonlabel["paired_n"] == 3 and nonlabel["d_agreement"].lower == 3
    assert _triple(nonlabel["d_agreement"]) == pytest.approx(_interval([-0.20, -0.15, -0.25], T_975_2), abs=1e-12)
    text = (tmp_path / "out2" / "frontier.md").read_text()
    assert "| nonlabel | alpha=0.3 | 3 | 96.00 | 65.00 | -1.00" in text
    assert list((tmp_path / "out").glob("frontier_mnist_from_fashion-mnist_train10000_knockoff_5000.png"))
    again = read_frontier_csv(tmp_path / "out2" / "frontier.csv")
    assert again == frontier_rows([run])
    assert frontier_markdown(again) == text  # the committed CSV gives the same tables
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
            rows.append({"pair": "p", "victim_setting": "train10000", "defense": name, "setting": setting, "attack": "knockoff", "budget": 5000,
                         "seed": seed, "victim_accuracy": 0.9, "agreement": agreement,
                         "adversary_error": 1 - agreement})
    got = {(c["defense"], c["against"]): c for c in comparisons(rows)}
    assert set(got) == {("proxy-kl+dcp", "dcp beta=0.5"), ("proxy-kl", "dcp beta=0.5")}
    stacked = got[("proxy-kl+dcp", "dcp beta=0.5")]
    assert _triple(stacked["d_agreement"]) == pytest.approx(_interval([-0.1, -0.05, 0.01], T_975_2), abs=1e-12)
    assert stacked["d_agreement"].lower == 2 and stacked["paired_n"] == 3
    assert got[("proxy-kl", "dcp beta=0.5")]["d_agreement"].mean_diff == pytest.approx(0.1)


def test_label_only_thieves_and_objectives_are_named_apart():
    """The thieves' own options split their rows (two sink-aware modes are two attacks), the
    outlier objectives' source and heads split settings, and both read back in words."""
    drop = attack_of({"attack": {"name": "sink-aware", "budget": 5000, "mode": "drop", "max_share": 0.3,
                                 "epochs": 20, "momentum": 0.9}})
    reweight = attack_of({"attack": {"name": "sink-aware", "budget": 5000, "mode": "reweight", "epochs": 20}})
    assert drop == "sink-aware(max_share=0.3,mode=drop)-20ep" and reweight == "sink-aware(mode=reweight)-20ep"
    assert attack_of({"attack": {"name": "knockoff", "budget": 5000, "epochs": 20, "momentum": 0.9}}) == "knockoff-20ep"
    assert attack_words(drop) == ("sink-aware thief (rebalances the answered classes) (max_share=0.3, mode=drop), "
                                  "20-epoch surrogate")
    assert attack_words("knockoff-adaptive") == "KnockoffNets thief (sees probabilities), adaptive, 10-epoch surrogate"
    glyphs = {"name": "divqat", "objective": "proxy", "alpha": 0.03, "proxy_source": "glyphs"}
    assert trained_defense(glyphs) == ("proxy-kl", "alpha=0.03 proxy_source=glyphs")
    assert trained_defense({**glyphs, "proxy_source": None}) == ("proxy-kl", "alpha=0.03")
    assert trained_defense({"name": "divqat", "objective": "diverse", "alpha": 0.3, "heads": 3}) == \
        ("diverse", "alpha=0.3 heads=3")
    # a method that trains longer than [quant] says is another victim, and named so
    assert trained_defense({"name": "divqat", "objective": "proxy", "proxy_target": "permute", "alpha": 1.0,
                            "epochs": 6}) == ("proxy-permute", "alpha=1 epochs=6")


def test_answered_labels_are_collected_per_cell_and_summarised(tmp_path):
    """Cells that kept the thief's answered-label histogram give one row each (cells without one,
    from older code, none), and the table reports the top class, its mean share and the spread,
    checked by hand."""
    run = _run_dir(tmp_path)
    copycat = {"name": "copycat", "budget": 100, "epochs": 20}
    hists = {0: [70, 20, 10, 0], 1: [10, 85, 5, 0], 2: [60, 30, 6, 4]}
    for seed, hist in hists.items():
        record = _record(seed, {"name": "divqat", "objective": "misinform", "alpha": 0.5}, {"name": "none"},
                         copycat, 0.5, 0.99, victim="vfull")
        record["metrics"]["answered_hist"] = {str(k): n for k, n in enumerate(hist)}  # as cells keep it
        (run / "cells" / f"{seed}.json").write_text(json.dumps(record))
    (run / "cells" / "old.json").write_text(json.dumps(_record(3, {"name": "qat"}, {"name": "none"}, copycat, 0.6, 0.99)))
    rows = answered_label_rows([run])
    assert [(r["seed"], [r[f"class_{k}"] for k in range(4)]) for r in rows] == sorted(hists.items())
    assert {(r["defense"], r["setting"], r["attack"], r["victim_setting"]) for r in rows} == \
        {("misinform", "alpha=0.5", "copycat-20ep", "full")}
    table = answered_label_table(rows).splitlines()
    # top classes 0, 1, 0 -> 0; top shares 70, 85, 60 -> 71.7; classes >= 5 %: 3, 3, 3 -> 3.0
    assert table[2] == "| mnist<-fashion-mnist | full | misinform (α=0.5) | copycat-20ep | 100 | 3 | 0 | 71.7 | 3.0 |"


def test_answered_label_shares_average_each_seeds_histogram_per_victim_and_defense():
    """One thief's answers per class: each seed's histogram made shares, then averaged over
    seeds (not pooled counts), plain QAT's row first; other thieves and budgets left out."""
    def row(defense, setting, attack, budget, seed, counts):
        return {"pair": "mnist<-fashion-mnist", "victim_setting": "full", "defense": defense, "setting": setting,
                "attack": attack, "budget": budget, "seed": seed, **{f"class_{k}": n for k, n in enumerate(counts)}}
    rows = [row("proxy-permute", "alpha=3", "copycat-20ep", 5000, 0, [10, 30, 60]),
            row("proxy-permute", "alpha=3", "copycat-20ep", 5000, 1, [0, 900, 100]),  # pooled would give 3/83/14
            row("qat", None, "copycat-20ep", 5000, 0, [50, 50, 0]),  # read_rows gives None for an empty setting
            row("qat", "", "smoothing-20ep", 5000, 0, [0, 0, 100]),
            row("qat", "", "copycat-20ep", 20000, 0, [0, 0, 100])]
    table = answered_label_shares(rows, "copycat-20ep", 5000).splitlines()
    assert table[0] == "| victim | defense | n | class 0 | class 1 | class 2 |"
    victim = "MNIST victim (trained on all its training images)"
    assert table[2:] == [f"| {victim} | qat | 1 | 50 | 50 | 0 |",
                         f"| {victim} | proxy-permute (α=3) | 2 | 5 | 60 | 35 |"]


def test_summary_has_a_column_for_every_thief_after_the_usual_ones():
    """Thieves outside the summary's usual list get columns of their own, after the usual ones,
    with the paired difference against QAT computed by hand."""
    rows = [{"pair": "mnist<-fashion-mnist", "victim_setting": "full", "defense": defense, "setting": setting,
             "attack": attack, "budget": 5000, "seed": seed, "victim_accuracy": 0.99, "agreement": agreement,
             "adversary_error": 0.0}
            for seed in (0, 1)
            for attack, base in (("copycat-20ep", 0.5), ("smoothing(aggregate=vote,k=4)-20ep", 0.3))
            for defense, setting, agreement in (("qat", "", base), ("misinform", "alpha=0.5", base - 0.1 - 0.1 * seed))]
    table = summary_tables(rows)
    assert "| Δ agr. copycat-20ep | Δ agr. smoothing(aggregate=vote,k=4)-20ep |" in table
    # differences -10 and -20 points: mean -15, both seeds lower
    misinform = next(line for line in table.splitlines() if line.startswith("| misinform"))
    assert misinform.count("-15.00") == 2 and misinform.count("2/2") == 2
