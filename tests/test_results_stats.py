"""Paired statistics (docs/science.md §9): the t quantile, the paired interval, sign counts and
verdicts, checked against hand-computed values, closed forms and (where installed) SciPy."""
import math

import pytest

from divqat.results import stats
from divqat.results.comparisons import comparisons

# two-sided 95 % critical values t_{0.975, dof} from a printed t table
T_TABLE = {1: 12.706205, 2: 4.302653, 4: 2.776445, 9: 2.262157, 29: 2.045230, 1000: 1.962339}


@pytest.mark.parametrize("dof, value", sorted(T_TABLE.items()))
def test_t_quantile_matches_printed_table(dof, value):
    assert stats.t_quantile(0.975, dof) == pytest.approx(value, abs=2e-6)
    assert stats.t_quantile(0.025, dof) == pytest.approx(-value, abs=2e-6)


@pytest.mark.parametrize("t", [-30.0, -2.5, -0.3, 0.0, 0.7, 4.0, 100.0])
def test_t_cdf_closed_forms_for_one_and_two_dof(t):
    assert stats.t_cdf(t, 1) == pytest.approx(0.5 + math.atan(t) / math.pi, abs=1e-12)
    assert stats.t_cdf(t, 2) == pytest.approx(0.5 + t / (2 * math.sqrt(2 + t * t)), abs=1e-12)


def test_t_quantile_agrees_with_scipy():
    scipy_stats = pytest.importorskip("scipy.stats")
    for dof in (1, 2, 3, 5, 9, 19, 50, 200):
        for p in (0.6, 0.9, 0.95, 0.975, 0.995, 0.9995):
            assert stats.t_quantile(p, dof) == pytest.approx(scipy_stats.t.ppf(p, dof), rel=1e-9, abs=1e-9)


def test_bad_arguments_name_themselves():
    with pytest.raises(ValueError, match="p must be"):
        stats.t_quantile(1.0, 3)
    with pytest.raises(ValueError, match="dof"):
        stats.t_cdf(1.0, 0)
    with pytest.raises(ValueError, match="one treatment and one baseline value per seed"):
        stats.paired([0, 1], [1.0], [0.0, 1.0])


def test_mean_sd_is_sample_sd_and_undefined_for_one_value():
    assert stats.mean_sd([2.0, 4.0, 9.0]) == pytest.approx((5.0, math.sqrt((9 + 1 + 16) / 2)))
    assert stats.mean_sd([0.3]) == (0.3, None)


def test_paired_interval_by_hand():
    # differences 1..5: mean 3, s = sqrt(10 / 4) = 1.58114, s / sqrt(5) = 0.707107,
    # half width 2.776445 * 0.707107 = 1.963243
    p = stats.paired([0, 1, 2, 3, 4], [11.0, 12.0, 13.0, 14.0, 15.0], [10.0] * 5)
    assert p.diffs == [1.0, 2.0, 3.0, 4.0, 5.0] and p.n == 5
    assert p.mean_diff == pytest.approx(3.0)
    assert p.sd_diff == pytest.approx(1.581139, abs=1e-6)
    assert (p.ci_low, p.ci_high) == pytest.approx((1.036757, 4.963243), abs=1e-6)
    assert p.established and p.verdict() == "established (higher)"
    assert p.signs() == "5 of 5 seeds higher"


def test_sign_count_and_noise_verdict_on_a_constructed_table():
    # ten seeds: nine lower by 1, one higher by 8 -> mean -0.1, interval straddles 0
    diffs = [-1.0] * 9 + [8.0]
    p = stats.paired(list(range(10)), [50.0 + d for d in diffs], [50.0] * 10)
    assert (p.higher, p.lower, p.ties) == (1, 9, 0)
    assert p.signs() == "9 of 10 seeds lower"
    sd = math.sqrt((9 * 0.81 + 8.1 ** 2) / 9)
    half = 2.262157 * sd / math.sqrt(10)
    assert (p.ci_low, p.ci_high) == pytest.approx((-0.1 - half, -0.1 + half), abs=1e-5)
    assert not p.established and p.verdict() == "not separable from noise at n = 10"
    same = stats.paired([0, 1], [1.0, 1.0], [1.0, 1.0])
    assert (same.signs(), same.verdict()) == ("all 2 seeds equal", "no difference in any of 2 seeds")
    assert stats.paired([0, 1, 2], [2.0, 0.0, 1.0], [1.0, 1.0, 1.0]).signs() == "1 of 3 seeds higher, 1 equal"


def test_one_seed_has_no_interval():
    p = stats.paired([3], [0.5], [0.25])
    assert p.ci_low is None and p.sd_diff is None and not p.established
    assert p.verdict() == "n = 1: no interval"


def test_bootstrap_interval_of_two_values_by_hand():
    # resampled means of [0, 1] are 0, 0.5, 1 with probabilities 1/4, 1/2, 1/4
    low, high = stats.bootstrap_interval([0.0, 1.0], resamples=4000, seed=1)
    assert (low, high) == (0.0, 1.0)
    assert stats.bootstrap_interval([2.0, 2.0, 2.0], resamples=50) == (2.0, 2.0)
    p = stats.paired([0, 1, 2, 3], [1.0, 2.0, 3.0, 4.0], [0.0] * 4, bootstrap=2000)
    assert 1.0 <= p.boot_low < p.mean_diff < p.boot_high <= 4.0


def _cell(method, label, seed, err, defense="none", agreement=0.5, victim_acc=0.9):
    return {"seed": seed, "method": method, "victim_label": label, "defense_label": defense,
            "attack_label": "knockoff", "budget": 5000, "adversary_error": err, "agreement": agreement,
            "victim_accuracy": victim_acc, "stale": False}


def test_comparisons_pair_by_seed_in_points():
    qat_err = [0.20, 0.25, 0.18, 0.30]
    cells = [_cell("qat", "qat", s, e) for s, e in enumerate(qat_err)]
    # DivQAT: +2, +4, +3 points on seeds 0-2; its seed 3 is missing and seed 7 has no QAT partner
    cells += [_cell("divqat", "divqat(alpha=1.0)", s, qat_err[s] + d) for s, d in ((0, 0.02), (1, 0.04), (2, 0.03))]
    cells.append(_cell("divqat", "divqat(alpha=1.0)", 7, 0.9))
    cells += [_cell("qat", "qat", s, e + 0.4, defense="dcp(beta=1.0)") for s, e in enumerate(qat_err)]
    victims = [{"seed": s, "method": "qat", "victim_label": "qat", "int8_accuracy": 0.97, "kl_fp_q": 0.004,
                "l1_fp_q": 0.02} for s in range(3)]
    victims += [{"seed": s, "method": "divqat", "victim_label": "divqat(alpha=1.0)", "int8_accuracy": 0.96 - 0.01 * s,
                 "kl_fp_q": 0.05, "l1_fp_q": 0.09} for s in range(3)]
    rows = comparisons({"cells": cells, "victims": victims})
    row = next(r for r in rows if r["kind"] == "method" and r["metric"] == "adversary_error")
    assert row["seeds"] == "0 1 2" and row["n"] == 3 and row["unit"] == "points"
    assert row["diffs"] == "2 4 3"
    half = 4.302653 * 1.0 / math.sqrt(3)
    assert row["mean_diff"] == pytest.approx(3.0)
    assert (row["ci_low"], row["ci_high"]) == pytest.approx((3.0 - half, 3.0 + half), abs=1e-5)
    assert row["signs"] == "3 of 3 seeds higher" and row["verdict"] == "established (higher)"
    assert row["sentence"] == ("divqat(alpha=1.0) vs qat, knockoff@5000, none: adversary_error +3.00 points "
                               "(n = 3, 95 % CI +0.516 to +5.48; 3 of 3 seeds higher): "
                               "established (higher).")
    defense = next(r for r in rows if r["kind"] == "defense" and r["metric"] == "adversary_error")
    assert (defense["treatment_label"], defense["victim"], defense["n"]) == ("dcp(beta=1.0)", "qat", 4)
    assert defense["mean_diff"] == pytest.approx(40.0) and defense["sd_diff"] == pytest.approx(0.0, abs=1e-9)
    acc = next(r for r in rows if r["kind"] == "victim" and r["metric"] == "int8_accuracy")
    assert acc["diffs"] == "-1 -2 -3" and acc["signs"] == "3 of 3 seeds lower"
    assert not any(r["metric"].startswith("surrogate_robust") for r in rows)
    for c in cells:  # the surrogate's accuracy under attack, when measured, is compared too
        c["surrogate_robust_fgsm_0.1"] = 0.3 + (0.05 if c["method"] == "divqat" else 0.0)
    robust = [r for r in comparisons({"cells": cells, "victims": []}) if r["metric"] == "surrogate_robust_fgsm_0.1"]
    assert [(r["kind"], r["n"], r["unit"], r["diffs"]) for r in robust] == [("method", 3, "points", "5 5 5")]
    kl = next(r for r in rows if r["kind"] == "victim" and r["metric"] == "kl_fp_q")
    assert kl["unit"] == "" and kl["mean_diff"] == pytest.approx(0.046)


def test_report_command_on_a_committed_results_csv(tmp_path, capsys):
    from divqat.cli import main
    from divqat.results.tables import read_rows, to_csv

    cells = [_cell("qat", "qat", s, 0.2 + 0.01 * s) for s in range(4)]
    cells += [_cell("divqat", "divqat(alpha=1.0)", s, 0.2 + 0.01 * s - (0.01 if s else -0.05)) for s in range(4)]
    results = tmp_path / "results.csv"
    results.write_text(to_csv(cells))
    out = tmp_path / "comparisons.csv"
    assert main(["report", str(results), "--out", str(out), "--bootstrap", "200"]) == 0
    assert "3 of 4 seeds lower" in capsys.readouterr().out
    row = next(r for r in read_rows(out) if r["metric"] == "adversary_error")
    assert (row["n"], row["diffs"], row["verdict"]) == (4, "5 -1 -1 -1", "not separable from noise at n = 4")
    assert row["boot_low"] <= row["mean_diff"] <= row["boot_high"]
    assert main(["report", str(results)]) == 2
    assert "is a results CSV: --out" in capsys.readouterr().err
    assert main(["report", str(tmp_path), "--bootstrap", "-1"]) == 2
