"""The label-only goal (docs/science.md §10), checked on the frontier's rows of victims trained
as deployed.

A trained-in defense reaches the goal on a dataset pair when, at ``budget`` queries, paired by
seed against plain QAT (no output defense) on the same victim setting:

- its victim top-1 is within ``top1_cost`` of QAT's (paired mean of the differences);
- against each of ``thieves`` it at least halves what the thief steals above chance on at least
  ``share`` of n >= ``min_n`` seeds:

      agreement_defense(s) - chance <= (agreement_QAT(s) - chance) / 2      (chance = 1 / classes)

  (on the MNIST victim, Copycat at 75 % must fall to 42.5 % or below);
- no setting of the reference output defenses (DCP, adaptive misinformation) on the QAT victim
  dominates it on any of those thieves it was tried against (mean top-1 at least as high and
  mean agreement at least as low, one strictly).

It reaches the goal when it does on every pair of its victim setting. Fewer seeds than
``min_n``, or a thief not run, is reported as undecided, never as reached, unless a thief was
already not halved on more seeds than the goal allows (:func:`allowed_misses`): then the goal
is not reached whatever the missing seeds show.
"""
import math
from dataclasses import dataclass

from .frontier import BASELINE, TRAINED, by_cell, dominates, paired_difference, seed_mean
from .tables import markdown_table, points
from .words import setting_words, victim_words_of

__all__ = ["LabelGoal", "LABEL_GOAL", "allowed_misses", "check_label_goal", "halving_bar", "halving_bars",
           "label_goal_markdown", "halved"]


@dataclass(frozen=True)
class LabelGoal:
    """The thresholds of the label-only goal (fractions, not points)."""

    budget: int = 5000
    thieves: tuple = ("copycat-20ep", "knockoff-20ep", "sink-aware(max_share=0.3,mode=drop)-20ep",
                      "smoothing(aggregate=vote,k=4)-20ep")  # frontier attack names
    chance: float = 0.1
    top1_cost: float = 0.005
    share: float = 0.9
    min_n: int = 10
    references: tuple = ("dcp", "am")


LABEL_GOAL = LabelGoal()


def halving_bar(base, chance):
    """The most agreement a defense may let a thief reach to halve what it steals above chance
    from the baseline: chance + (``base`` - chance) / 2."""
    return chance + (base - chance) / 2


def halved(mine, base, chance):
    """Whether ``mine`` <= :func:`halving_bar` (to 1e-9, so that a tie in decimal is a tie in
    binary floating point)."""
    return mine <= halving_bar(base, chance) + 1e-9


def _thief_check(mine, base, goal):
    seeds = sorted(set(mine) & set(base))
    hits = sum(halved(mine[s]["agreement"], base[s]["agreement"], goal.chance) for s in seeds)
    n = len(seeds)
    ok = n >= goal.min_n and hits >= math.ceil(goal.share * n)
    return {"d": paired_difference(mine, base, "agreement"), "n": n, "halved": hits, "ok": ok,
            "decided": n >= goal.min_n or n - hits > allowed_misses(goal)}


def allowed_misses(goal):
    """The seeds of ``min_n`` on which a defense may fail to halve a thief and still reach the goal
    (1 of 10): more misses decide the goal before all seeds are in."""
    return goal.min_n - math.ceil(goal.share * goal.min_n)


def _dominators(groups, where, mine_by_thief, goal):
    """The reference output-defense settings that dominate the defense, as ``name setting (thief)``."""
    out = []
    for (pair, vset, attack, budget, defense, setting), ref in sorted(groups.items(), key=lambda kv: str(kv[0])):
        mine = mine_by_thief.get(attack)
        if (pair, vset) != where or budget != goal.budget or defense not in goal.references or not mine:
            continue
        point = lambda rows: (seed_mean(rows, "victim_accuracy"), seed_mean(rows, "agreement"))  # noqa: E731
        if dominates(point(ref), point(mine)):
            out.append(f"{setting_words(defense, setting)} ({attack})")
    return out


def _check_pair(groups, where, defense, setting, goal):
    mine_by_thief = {t: groups.get(where + (t, goal.budget, defense, setting), {}) for t in goal.thieves}
    cell = {"thieves": {}}
    for thief, mine in mine_by_thief.items():
        base = groups.get(where + (thief, goal.budget) + BASELINE, {})
        cell["thieves"][thief] = _thief_check(mine, base, goal) if mine and base else None
    first = next((t for t in goal.thieves if cell["thieves"][t]), None)
    top1 = None
    if first:
        top1 = paired_difference(mine_by_thief[first], groups[where + (first, goal.budget) + BASELINE],
                                 "victim_accuracy")
    cell["top1"] = top1
    cell["dominated"] = _dominators(groups, where, mine_by_thief, goal)
    checks = list(cell["thieves"].values())
    cell["ok"] = (all(c and c["ok"] for c in checks) and top1.mean_diff >= -goal.top1_cost
                  and not cell["dominated"])
    missed = any(c and c["decided"] and not c["ok"] for c in checks)  # too many seeds not halved already
    cell["decided"] = cell["ok"] or missed or all(c and c["decided"] for c in checks)
    return cell


def check_label_goal(rows, goal=LABEL_GOAL):
    """Per trained-in (defense, setting) and victim setting: the goal's checks on each pair
    (``{"defense", "setting", "victim_setting", "pairs": {(pair, victim setting): checks},
    "decided", "ok"}``); only settings run against at least one of the goal's thieves."""
    groups = by_cell(rows)
    wheres = sorted({(r["pair"], r["victim_setting"]) for r in rows})
    trained = sorted({(r["defense"], r["setting"], r["victim_setting"]) for r in rows
                      if r["defense"] in TRAINED and r["attack"] in goal.thieves and r["budget"] == goal.budget})
    out = []
    for defense, setting, vset in trained:
        checks = {w: _check_pair(groups, w, defense, setting, goal) for w in wheres if w[1] == vset}
        out.append({"defense": defense, "setting": setting, "victim_setting": vset, "pairs": checks,
                    "decided": all(c["decided"] for c in checks.values()) or any(
                        c["decided"] and not c["ok"] for c in checks.values()),
                    "ok": all(c["ok"] for c in checks.values())})
    return out


def halving_bars(rows, goal=LABEL_GOAL):
    """Markdown: per victim setting and goal thief, plain QAT's agreement on each seed and, in
    parentheses, the most a defense may let the thief reach there to halve what it steals above
    chance (:func:`halving_bar`), in %."""
    groups = by_cell(rows)
    cells = {k[:3]: seeds for k, seeds in groups.items()
             if k[2] in goal.thieves and k[3] == goal.budget and k[4:] == BASELINE}
    seeds = sorted({s for by_seed in cells.values() for s in by_seed})
    table = []
    for (pair, vset, thief), by_seed in sorted(cells.items(), key=lambda c: (c[0][:2], goal.thieves.index(c[0][2]))):
        agreement = {s: row["agreement"] for s, row in by_seed.items()}
        table.append([victim_words_of(pair, vset), thief] + [
            f"{100 * agreement[s]:.1f} (≤ {100 * halving_bar(agreement[s], goal.chance):.1f})"
            if s in agreement else "" for s in seeds])
    return markdown_table(["victim", "thief", *(f"seed {s}" for s in seeds)], table)


def _thief_text(c, goal):
    if c is None:
        return "not run"
    return f"{c['halved']}/{c['n']} halved; {points(c['d'])}" + ("" if c["n"] >= goal.min_n else f" (n < {goal.min_n})")


def _verdict(check_or_pair):
    if check_or_pair["ok"]:
        return "reached"
    return "**not reached**" if check_or_pair["decided"] else "undecided"


def _not_run(pair_check):
    return not any(pair_check["thieves"].values())


def _overall(check):
    """The goal column: the verdict, or, for a setting not run on some pair (a setting chosen per
    victim), where it was reached and where it was not run."""
    not_run = [", ".join(w) for w, c in sorted(check["pairs"].items()) if _not_run(c)]
    if check["ok"] or check["decided"] or not not_run:
        return _verdict(check)
    reached = [", ".join(w) for w, c in sorted(check["pairs"].items()) if c["ok"]]
    return "; ".join(([f"reached on {' and '.join(reached)}"] if reached else []) + [f"not run on {' and '.join(not_run)}"])


def label_goal_markdown(checks, goal=LABEL_GOAL):
    """The goal checks as Markdown: the rule, then one row per trained-in setting and pair."""
    rule = (f"Budget {goal.budget:,}; per thief: seeds where the defense at least halves the agreement above "
            f"chance ({100 * goal.chance:g} %) / paired seeds, then Δ agreement against plain QAT in points, "
            f"mean [95 % CI]. Goal: on ≥ {goal.share:.0%} of n ≥ {goal.min_n} seeds against every thief, "
            f"Δ top-1 ≥ −{100 * goal.top1_cost:g}, not dominated by {' or '.join(goal.references)} on any "
            "thief they were tried against, on every pair.")
    header = ["defense", "pair", "Δ top-1"] + [t.split("(")[0].removesuffix("-20ep") for t in goal.thieves] + [
        "dominated by", "pair", "goal"]
    rows = []
    for check in checks:
        for i, (where, c) in enumerate(sorted(check["pairs"].items())):
            rows.append([setting_words(check["defense"], check["setting"]) if i == 0 else "", ", ".join(where),
                         points(c["top1"]) if c["top1"] else "not run"]
                        + [_thief_text(c["thieves"][t], goal) for t in goal.thieves]
                        + [", ".join(c["dominated"]) or "no", "not run" if _not_run(c) else _verdict(c),
                           _overall(check) if i == 0 else ""])
    return rule + "\n\n" + markdown_table(header, rows)
