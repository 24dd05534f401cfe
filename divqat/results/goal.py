"""The trained-in defense goal (docs/science.md §8), checked on the frontier's rows.

A trained-in formulation reaches the goal on a dataset pair when, at ``budget`` queries and on
at least ``min_n`` paired seeds against plain QAT (no output defense):

- its victim top-1 is within ``top1_cost`` of QAT's (paired mean of the differences);
- its surrogate agreement is at least ``knockoff_drop`` lower against KnockoffNets (soft labels)
  and ``copycat_drop`` lower against Copycat (labels only), paired means, each lower on at least
  ``lower_share`` of the seeds (9 of 10);
- the reference output defense (DCP beta 0.5 on the QAT victim) does not dominate it on the
  frontier of either attack (DCP's mean accuracy at least as high and mean agreement at least as
  low, one strictly);
- stacked with that output defense it has lower KnockoffNets agreement than the output defense
  alone: the paired 95 % interval of the difference lies below 0.

It reaches the goal when it does on every pair of the rows, for each victim setting apart. Differences are paired by seed and
their intervals are the Student t intervals of :func:`divqat.results.frontier.paired_difference`
(docs/science.md §9). A check that lacks cells (fewer seeds, a missing stack) says so instead of
passing.
"""
import math
from dataclasses import dataclass

from .frontier import BASELINE, TRAINED, by_cell, dominates, paired_difference, seed_mean
from .tables import points

__all__ = ["Goal", "GOAL", "check_goal", "goal_markdown"]


@dataclass(frozen=True)
class Goal:
    """The thresholds of the goal (fractions, not points)."""

    budget: int = 5000
    knockoff: str = "knockoff"  # the frontier's attack names (divqat.results.frontier.attack_of)
    copycat: str = "copycat"
    top1_cost: float = 0.005
    knockoff_drop: float = 0.15
    copycat_drop: float = 0.10
    lower_share: float = 0.9
    min_n: int = 10
    reference: tuple = ("dcp", "beta=0.5")


GOAL = Goal()


def _check_pair(groups, where, defense, setting, goal):
    """The goal's checks of (defense, setting) on ``where`` = (pair, victim setting)."""
    cell = {}
    ok = True
    for kind, attack, drop in (("knockoff", goal.knockoff, goal.knockoff_drop), ("copycat", goal.copycat, goal.copycat_drop)):
        mine = groups.get(where + (attack, goal.budget, defense, setting), {})
        base = groups.get(where + (attack, goal.budget) + BASELINE, {})
        d = paired_difference(mine, base, "agreement")
        n, lower = (d.n, d.lower) if d else (0, 0)
        enough = n >= goal.min_n
        passed = enough and d.mean_diff <= -drop and lower >= math.ceil(goal.lower_share * n)
        cell[kind] = {"d": d, "lower": lower, "n": n, "ok": passed}
        ok &= passed
        if kind == "knockoff":
            d_acc = paired_difference(mine, base, "victim_accuracy")
            cell["top1"] = {"d": d_acc, "ok": enough and d_acc.mean_diff >= -goal.top1_cost}
            ok &= cell["top1"]["ok"]
        reference = groups.get(where + (attack, goal.budget) + goal.reference, {})
        dominated = bool(mine and reference) and dominates(
            (seed_mean(reference, "victim_accuracy"), seed_mean(reference, "agreement")),
            (seed_mean(mine, "victim_accuracy"), seed_mean(mine, "agreement")))
        cell.setdefault("dominated", []).extend([attack] if dominated else [])
        if not (mine and reference):
            cell["dominated"].append(f"{attack}: no cells")
    ok &= not cell["dominated"]
    ref_name, ref_setting = goal.reference
    stack = groups.get(where + (goal.knockoff, goal.budget, f"{defense}+{ref_name}", f"{setting}; {ref_setting}"), {})
    reference = groups.get(where + (goal.knockoff, goal.budget) + goal.reference, {})
    d = paired_difference(stack, reference, "agreement")
    n, lower = (d.n, d.lower) if d else (0, 0)
    cell["stack"] = {"d": d, "lower": lower, "n": n, "ok": d is not None and n >= 2 and d.ci_high < 0}
    ok &= cell["stack"]["ok"]
    cell["ok"] = bool(ok)
    return cell


def where_label(where):
    """``pair, victim setting`` of a (pair, victim setting) key, as the goal table names it."""
    return ", ".join(where)


def check_goal(rows, goal=GOAL):
    """Per trained-in (defense, setting) and victim setting it was run in: the goal's checks on
    each pair of that victim setting (keyed by :func:`where_label`), and whether it reaches the
    goal there (``{"defense", "setting", "victim_setting", "pairs": {where: checks}, "ok"}``).
    Victims trained on different data are judged apart, never against each other."""
    groups = by_cell(rows)
    wheres = sorted({(r["pair"], r["victim_setting"]) for r in rows})
    trained = sorted({(r["defense"], r["setting"], r["victim_setting"]) for r in rows if r["defense"] in TRAINED})
    out = []
    for defense, setting, vset in trained:
        checks = {where_label(w): _check_pair(groups, w, defense, setting, goal) for w in wheres if w[1] == vset}
        out.append({"defense": defense, "setting": setting, "victim_setting": vset, "pairs": checks,
                    "ok": all(c["ok"] for c in checks.values())})
    return out


def _mark(ok):
    return "yes" if ok else "**no**"


def _attack(c, n_needed):
    if c["d"] is None:
        return "not run"
    text = f"{points(c['d'])}, {c['lower']}/{c['n']}"
    return text + ("" if c["n"] >= n_needed else f" (n < {n_needed})")


def goal_markdown(checks, goal=GOAL):
    """The goal checks as a Markdown table: one row per trained-in setting, pair and victim setting."""
    lines = [f"Attacks {goal.knockoff} and {goal.copycat}, budget {goal.budget}; Δ in points against plain QAT, paired by seed, mean [95 % CI], seeds lower. "
             f"Goal: Δ top-1 ≥ −{100 * goal.top1_cost:g}, Δ agreement ≤ −{100 * goal.knockoff_drop:g} "
             f"(KnockoffNets) and ≤ −{100 * goal.copycat_drop:g} (Copycat) on ≥ {goal.lower_share:.0%} of "
             f"n ≥ {goal.min_n} seeds, not dominated by {' '.join(goal.reference)}, and stacked with it "
             "below it alone (KnockoffNets, interval below 0).", "",
             "| defense | setting | pair | Δ top-1 | Δ agr. KnockoffNets | Δ agr. Copycat | dominated by "
             f"{' '.join(goal.reference)} | stack − {goal.reference[0]} alone | pair ok | goal |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for check in checks:
        for i, (pair, c) in enumerate(sorted(check["pairs"].items())):
            top1 = "not run" if c["top1"]["d"] is None else points(c["top1"]["d"])
            stack = "not run" if c["stack"]["d"] is None else f"{points(c['stack']['d'])}, " \
                                                              f"{c['stack']['lower']}/{c['stack']['n']}"
            lines.append(f"| {check['defense']} | {check['setting']} | {pair} | {top1} | "
                         f"{_attack(c['knockoff'], goal.min_n)} | {_attack(c['copycat'], goal.min_n)} | "
                         f"{', '.join(c['dominated']) or 'no'} | {stack} | {_mark(c['ok'])} | "
                         f"{_mark(check['ok']) if i == 0 else ''} |")
    return "\n".join(lines) + "\n"
