"""The trained-in defense goal checked on constructed frontier rows: each criterion fails alone
when its numbers miss the threshold, and passes on rows built to meet every one."""
import pytest

from divqat.results.goal import Goal, check_goal, goal_markdown

PAIRS = ("mnist<-fashion-mnist", "fashion-mnist<-mnist")
WHERE = tuple(f"{pair}, train10000" for pair in PAIRS)  # the goal's keys: pair, victim setting
T_975_9 = 2.262157162798205  # t_{0.975, 9} (scipy.stats.t.ppf)
PROXY = ("proxy-kl", "alpha=0.3")


def _rows(n=10, d_acc=-0.003, d_knockoff=-0.20, d_copycat=-0.15, d_stack=-0.05, dcp_agreement=0.55,
          higher_seed=None, pairs=PAIRS):
    """QAT at accuracy 0.97 and agreement 0.70 (+ 0.01 per seed); the proxy victim at the given
    paired differences (seed ``higher_seed`` gets agreement above QAT's), DCP beta 0.5 on QAT, and
    the stack at ``d_stack`` below DCP."""
    rows = []

    def add(pair, defense, setting, attack, seed, accuracy, agreement):
        rows.append({"pair": pair, "victim_setting": "train10000", "defense": defense, "setting": setting, "attack": attack, "budget": 5000,
                     "seed": seed, "victim_accuracy": accuracy, "agreement": agreement,
                     "adversary_error": 1 - agreement})

    for pair in pairs:
        for attack, drop in (("knockoff", d_knockoff), ("copycat", d_copycat)):
            for seed in range(n):
                base = 0.70 + 0.01 * seed
                add(pair, "qat", "", attack, seed, 0.97, base)
                mine = base + (0.05 if seed == higher_seed else drop + 0.001 * (seed % 3))
                add(pair, *PROXY, attack, seed, 0.97 + d_acc, mine)
                dcp = dcp_agreement + 0.01 * seed if attack == "knockoff" else base
                add(pair, "dcp", "beta=0.5", attack, seed, 0.97, dcp)
                if attack == "knockoff":
                    add(pair, "proxy-kl+dcp", "alpha=0.3; beta=0.5", attack, seed, 0.97 + d_acc,
                        dcp + d_stack + 0.002 * (seed % 2))
    return rows


def _check(rows):
    (check,) = check_goal(rows)
    assert (check["defense"], check["setting"]) == PROXY
    return check


def test_goal_reached_on_rows_built_to_meet_it():
    rows = _rows()
    check = _check(rows)
    assert check["ok"] and all(c["ok"] for c in check["pairs"].values())
    c = check["pairs"][WHERE[0]]
    diffs = [-0.20 + 0.001 * (s % 3) for s in range(10)]
    mean = sum(diffs) / 10
    half = T_975_9 * (sum((d - mean) ** 2 for d in diffs) / 9) ** 0.5 / 10 ** 0.5
    d = c["knockoff"]["d"]
    assert (d.mean_diff, d.ci_low, d.ci_high) == pytest.approx((mean, mean - half, mean + half), abs=1e-12)
    assert c["knockoff"]["lower"] == 10 and c["knockoff"]["n"] == 10
    assert c["top1"]["d"].mean_diff == pytest.approx(-0.003)
    assert c["stack"]["d"].mean_diff == pytest.approx(-0.05 + 0.001) and c["stack"]["d"].ci_high < 0
    assert c["dominated"] == []
    text = goal_markdown([check])
    assert "| proxy-kl | alpha=0.3 | fashion-mnist<-mnist, train10000 | -0.30 [" in text and text.count(" yes |") == 3


@pytest.mark.parametrize("kwargs,failing", [
    ({"d_acc": -0.006}, "top1"),                       # costs 0.6 points of top-1
    ({"d_knockoff": -0.14}, "knockoff"),               # KnockoffNets only 14 points lower
    ({"d_copycat": -0.09}, "copycat"),                 # Copycat only 9 points lower
    ({"d_stack": 0.0}, "stack"),                       # stacking does not beat DCP alone
    ({"n": 9}, "knockoff"),                            # fewer than ten seeds: no verdict
])
def test_each_criterion_fails_alone(kwargs, failing):
    check = _check(_rows(**kwargs))
    assert not check["ok"]
    c = check["pairs"][WHERE[1]]
    assert not c[failing]["ok"] and not c["ok"]


def test_two_seeds_higher_fail_the_sign_count():
    rows = _rows(higher_seed=3)
    assert _check(rows)["ok"]  # one seed higher: 9 of 10 lower still holds
    rows = [r for r in rows if not (r["defense"] == "proxy-kl" and r["seed"] == 4)]
    rows += [{**r, "defense": "proxy-kl", "setting": "alpha=0.3", "victim_accuracy": 0.967,
              "agreement": r["agreement"] + 0.05} for r in _rows() if r["defense"] == "qat" and r["seed"] == 4]
    check = _check(rows)
    assert check["pairs"][WHERE[0]]["knockoff"]["lower"] == 8 and not check["ok"]


def test_dominated_by_dcp_and_one_pair_failing():
    check = _check(_rows(d_acc=-0.004, d_knockoff=-0.16, dcp_agreement=0.50))  # DCP: same agreement drop, no cost
    assert not check["ok"] and check["pairs"][WHERE[0]]["dominated"] == ["knockoff"]
    rows = _rows(pairs=PAIRS[:1]) + _rows(d_copycat=-0.05, pairs=PAIRS[1:])
    check = _check(rows)
    assert check["pairs"][WHERE[0]]["ok"] and not check["pairs"][WHERE[1]]["ok"] and not check["ok"]


def test_missing_cells_are_reported_not_passed():
    rows = [r for r in _rows() if "+" not in r["defense"]]
    check = _check(rows)
    assert not check["ok"] and check["pairs"][WHERE[0]]["stack"]["d"] is None
    assert "not run" in goal_markdown([check])
    custom = Goal(knockoff_drop=0.25)
    assert not check_goal(_rows(), custom)[0]["ok"]
    renamed = [{**r, "attack": r["attack"] + "-20ep"} for r in _rows()]
    assert not check_goal(renamed)[0]["ok"]  # the default attack names are not there
    assert check_goal(renamed, Goal(knockoff="knockoff-20ep", copycat="copycat-20ep"))[0]["ok"]


def test_victims_of_other_training_data_are_judged_apart():
    full = [{**r, "victim_setting": "full"} for r in _rows(d_copycat=-0.05)]  # fails on copycat there
    checks = {c["victim_setting"]: c for c in check_goal(_rows() + full)}
    assert set(checks) == {"train10000", "full"}
    assert set(checks["train10000"]["pairs"]) == set(WHERE) and checks["train10000"]["ok"]
    assert set(checks["full"]["pairs"]) == {f"{pair}, full" for pair in PAIRS} and not checks["full"]["ok"]
    assert checks["full"]["pairs"][f"{PAIRS[0]}, full"]["copycat"]["n"] == 10
