"""The label-only goal (divqat.results.label_goal) on hand-made frontier rows whose verdicts are
worked out by hand: halving above chance seed by seed, nine of ten seeds, the top-1 cost, the
reference defenses' dominance, and goals decided before all seeds are in."""
import pytest

from divqat.results.label_goal import (
    LabelGoal,
    allowed_misses,
    check_label_goal,
    halved,
    halving_bars,
    label_goal_markdown,
)

PAIR = "mnist<-fashion-mnist"
THIEVES = ("copycat-20ep", "knockoff-20ep")
GOAL = LabelGoal(thieves=THIEVES)


def _rows(defense, setting, agreements, accuracy, thieves=THIEVES, pair=PAIR):
    return [{"pair": pair, "victim_setting": "full", "defense": defense, "setting": setting, "attack": thief,
             "budget": 5000, "seed": seed, "victim_accuracy": accuracy, "agreement": a, "adversary_error": 1 - a}
            for thief in thieves for seed, a in enumerate(agreements)]


QAT = [0.70] * 10  # steals 0.60 above chance: halved means agreement <= 0.40


def test_halved_is_half_of_what_is_stolen_above_chance():
    assert halved(0.40, 0.70, 0.1) and halved(0.425, 0.75, 0.1)  # 0.325 <= 0.325: the MNIST example
    assert not halved(0.41, 0.70, 0.1)
    assert allowed_misses(LabelGoal()) == 1 and allowed_misses(LabelGoal(min_n=20)) == 2


def test_nine_of_ten_seeds_halved_reaches_the_goal():
    mine = [0.40] * 9 + [0.60]
    check, = check_label_goal(_rows("qat", "", QAT, 0.990) + _rows("misinform", "alpha=0.5", mine, 0.988), GOAL)
    cell = check["pairs"][(PAIR, "full")]
    assert cell["thieves"]["copycat-20ep"]["halved"] == 9 and cell["thieves"]["copycat-20ep"]["n"] == 10
    assert cell["thieves"]["copycat-20ep"]["d"].mean_diff == pytest.approx((9 * -0.30 - 0.10) / 10)
    assert cell["top1"].mean_diff == pytest.approx(-0.002)
    assert cell["ok"] and cell["decided"] and check["ok"]


def test_eight_of_ten_or_a_top1_cost_over_half_a_point_does_not():
    eight = [0.40] * 8 + [0.60, 0.60]
    check, = check_label_goal(_rows("qat", "", QAT, 0.990) + _rows("misinform", "", eight, 0.990), GOAL)
    assert check["decided"] and not check["ok"]
    costly = [0.20] * 10
    check, = check_label_goal(_rows("qat", "", QAT, 0.990) + _rows("misinform", "", costly, 0.984), GOAL)
    assert check["pairs"][(PAIR, "full")]["top1"].mean_diff == pytest.approx(-0.006)
    assert check["decided"] and not check["ok"]


def test_two_misses_decide_before_ten_seeds_and_fewer_seeds_are_undecided():
    rows = _rows("qat", "", QAT[:4], 0.99) + _rows("misinform", "", [0.60, 0.60, 0.30, 0.30], 0.99)
    check, = check_label_goal(rows, GOAL)
    assert check["decided"] and not check["ok"]
    rows = _rows("qat", "", QAT[:4], 0.99) + _rows("misinform", "", [0.60, 0.30, 0.30, 0.30], 0.99)
    check, = check_label_goal(rows, GOAL)
    assert not check["decided"] and not check["ok"]
    assert "undecided" in label_goal_markdown([check], GOAL) and "(n < 10)" in label_goal_markdown([check], GOAL)


def test_a_thief_not_run_leaves_the_goal_undecided():
    rows = _rows("qat", "", QAT, 0.99) + _rows("misinform", "", [0.2] * 10, 0.99, thieves=THIEVES[:1])
    check, = check_label_goal(rows, GOAL)
    assert check["pairs"][(PAIR, "full")]["thieves"]["knockoff-20ep"] is None
    assert not check["decided"] and not check["ok"]
    assert "not run" in label_goal_markdown([check], GOAL)


def test_dominated_by_a_reference_output_defense_is_not_reached():
    mine = [0.30] * 10
    base = _rows("qat", "", QAT, 0.990) + _rows("misinform", "", mine, 0.988)
    # DCP on the QAT victim: same top-1 as QAT, lower agreement on KnockoffNets only
    dcp = _rows("dcp", "beta=1", [0.25] * 10, 0.990, thieves=THIEVES[1:])
    check, = check_label_goal(base + dcp, GOAL)
    assert check["pairs"][(PAIR, "full")]["dominated"] == ["dcp (β=1) (knockoff-20ep)"]
    assert check["decided"] and not check["ok"]
    reverse_sigmoid = _rows("reverse_sigmoid", "beta=0.3", [0.25] * 10, 0.990, thieves=THIEVES[1:])
    check, = check_label_goal(base + reverse_sigmoid, GOAL)  # not a reference defense
    assert check["ok"]


def test_every_pair_must_reach_it():
    other = "fashion-mnist<-mnist"
    rows = (_rows("qat", "", QAT, 0.99) + _rows("misinform", "", [0.3] * 10, 0.99)
            + _rows("qat", "", QAT, 0.90, pair=other) + _rows("misinform", "", [0.5] * 10, 0.90, pair=other))
    check, = check_label_goal(rows, GOAL)
    assert check["pairs"][(PAIR, "full")]["ok"] and not check["pairs"][(other, "full")]["ok"]
    assert check["decided"] and not check["ok"]


def test_a_setting_run_on_one_pair_only_says_where_it_reached_the_goal_and_where_it_was_not_run():
    other = "fashion-mnist<-mnist"
    rows = (_rows("qat", "", QAT, 0.99) + _rows("misinform", "", [0.3] * 10, 0.99)
            + _rows("qat", "", QAT, 0.90, pair=other))
    check, = check_label_goal(rows, GOAL)
    assert not check["decided"] and not check["ok"]
    row = next(line for line in label_goal_markdown([check], GOAL).splitlines() if line.startswith("| misinform"))
    # the first row is the pair it was not run on
    assert row.endswith(f"| not run | no | not run | reached on {PAIR}, full; not run on {other}, full |")
    # a setting not run on one pair and undecided on the other names no pair as reached
    rows = _rows("qat", "", QAT, 0.99) + _rows("misinform", "", [0.3] * 4, 0.99) + _rows("qat", "", QAT, 0.90, pair=other)
    check, = check_label_goal(rows, GOAL)
    row = next(line for line in label_goal_markdown([check], GOAL).splitlines() if line.startswith("| misinform"))
    assert row.endswith(f"| not run | not run on {other}, full |")


def test_halving_bars_give_qats_agreement_and_the_most_a_defense_may_allow_per_seed():
    rows = (_rows("qat", "", [0.70, 0.30], 0.99) + _rows("misinform", "", [0.2, 0.2], 0.99)
            + _rows("qat", "", [0.50], 0.99, thieves=("smoothing-20ep",)))  # not a goal thief
    table = halving_bars(rows, GOAL).splitlines()
    victim = "MNIST victim (trained on all its training images)"
    # 0.70 -> 0.1 + 0.6 / 2 = 0.40; 0.30 -> 0.1 + 0.2 / 2 = 0.20; in the goal's order of thieves
    assert table[2:] == [f"| {victim} | copycat-20ep | 70.0 (≤ 40.0) | 30.0 (≤ 20.0) |",
                         f"| {victim} | knockoff-20ep | 70.0 (≤ 40.0) | 30.0 (≤ 20.0) |"]
