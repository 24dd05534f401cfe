"""The frontier's verdicts as sentences (docs/science.md §8 and §9), from its rows
(:mod:`divqat.results.frontier`): per defense setting and victim, the paired differences against
plain QAT (no output defense) on the same seeds, in points: Δ top-1 and, per thief, Δ agreement,
each as mean [95 % Student-t interval, n − 1 degrees of freedom], then the seeds with lower
agreement out of n.

- :func:`trained_verdicts`: one bullet per trained-in setting checked against the goal
  (:mod:`divqat.results.goal`, the 10-epoch and the 20-epoch attacker, the settings with enough
  seeds for a verdict) and victim: reached or not and why, the differences, and the stack with
  the reference output defense against that defense alone;
- :func:`output_effects`: one bullet per output defense on the QAT victim with at least
  ``min_n`` seeds at a budget, and victim: the differences;
- :func:`seed_table`: the agreement differences of one defense seed by seed;
- :func:`epoch_gains`: what longer surrogate training gives the thief against plain QAT.
"""
from .frontier import BASELINE, TRAINED, by_cell, paired_difference
from .frontier_tables import ATTACKS
from .goal import Goal, check_goal
from .tables import markdown_table, points
from .words import DATASETS, setting_words, victim_words_of

GOALS = (("10-epoch", Goal()), ("20-epoch", Goal(knockoff="knockoff-20ep", copycat="copycat-20ep")))


def _victim(pair, vset):
    return f"{victim_words_of(pair, vset)} ← {DATASETS.get(pair.split('<-')[1], pair)} queries"


def _attacks(groups, where, budget, defense, setting):
    present = {k[2] for k in groups if k[:2] == where and k[3] == budget and k[4:] == (defense, setting)}
    return [a for a in ATTACKS if a in present] + sorted(present - set(ATTACKS))


def effects(groups, where, budget, defense, setting):
    """``top-1 Δ; agreement Δ per thief`` of (defense, setting) against plain QAT on ``where`` =
    (pair, victim setting) at ``budget`` (module docstring; top-1 over the thief with the most
    paired seeds, as the summary tables); None without a paired seed."""
    pairs = {}
    for attack in _attacks(groups, where, budget, defense, setting):
        mine, base = groups[where + (attack, budget, defense, setting)], groups.get(where + (attack, budget) + BASELINE, {})
        if paired_difference(mine, base, "agreement") is not None:
            pairs[attack] = (mine, base)
    if not pairs:
        return None
    top1 = paired_difference(*max(pairs.values(), key=lambda mb: len(set(mb[0]) & set(mb[1]))), "victim_accuracy")
    agreement = [(a, paired_difference(*mb, "agreement")) for a, mb in pairs.items()]
    return f"top-1 {points(top1)}; agreement " + ", ".join(f"{a} {points(d)}, {d.lower}/{d.n} lower" for a, d in agreement)


def _reasons(c, goal):
    reasons = [f"top-1 cost past {100 * goal.top1_cost:g}" if not c["top1"]["ok"] else "",
               f"{goal.knockoff} drop short of {100 * goal.knockoff_drop:g}" if not c["knockoff"]["ok"] else "",
               f"{goal.copycat} drop short of {100 * goal.copycat_drop:g}" if not c["copycat"]["ok"] else "",
               f"dominated by {' '.join(goal.reference)} on {', '.join(c['dominated'])}" if c["dominated"] else "",
               "" if c["stack"]["ok"] else "stack not run" if c["stack"]["d"] is None
               else f"stack not below {goal.reference[0]} alone"]
    return ", ".join(r for r in reasons if r)


def trained_verdicts(rows):
    """One Markdown bullet per checked trained-in setting and victim (module docstring)."""
    groups = by_cell(rows)
    lines = {}
    for label, goal in GOALS:
        for check in check_goal(rows, goal):
            if not any(p["knockoff"]["n"] >= goal.min_n for p in check["pairs"].values()):
                continue
            for where, c in sorted(check["pairs"].items()):
                key = (check["defense"], check["setting"], where)
                verdict = "reached on this pair" if c["ok"] else f"not reached ({_reasons(c, goal)})"
                stack = "" if c["stack"]["d"] is None else \
                    f"; stacked, against {' '.join(goal.reference)} alone: {points(c['stack']['d'])}, " \
                    f"{c['stack']['lower']}/{c['stack']['n']} lower ({goal.knockoff})"
                lines.setdefault(key, []).append(f"against the {label} attacker: {verdict}{stack}")
    out = []
    for (defense, setting, where), verdicts in sorted(lines.items()):
        where_key = tuple(where.split(", "))
        out.append(f"- *{setting_words(defense, setting)}, {_victim(*where_key)}*: "
                   f"{effects(groups, where_key, GOALS[0][1].budget, defense, setting)}. Goal "
                   + "; ".join(verdicts) + ".")
    return "\n".join(out)


def output_effects(rows, budget, min_n):
    """One Markdown bullet per output defense on the QAT victim with at least ``min_n`` seeds at
    ``budget`` queries, and victim (module docstring)."""
    groups = by_cell(rows)
    cells = sorted({(k[:2], k[4:]) for k, seeds in groups.items()
                    if k[3] == budget and len(seeds) >= min_n and "+" not in k[4]
                    and k[4] not in TRAINED and k[4:] != BASELINE}, key=lambda c: (c[1], c[0]))
    return "\n".join(f"- *{setting_words(*ds)}, {_victim(*where)}*: {effects(groups, where, budget, *ds)}."
                     for where, ds in cells)


def seed_table(rows, attack, budget, defense):
    """Markdown: per victim and setting of ``defense``, its agreement minus plain QAT's on each
    seed against ``attack`` at ``budget`` queries, in whole points."""
    groups = by_cell(rows)
    cells = {k[:2] + k[5:]: paired_difference(seeds, groups.get(k[:4] + BASELINE, {}), "agreement")
             for k, seeds in groups.items() if k[2:5] == (attack, budget, defense)}
    cells = {k: d for k, d in cells.items() if d is not None}
    seeds = sorted({s for d in cells.values() for s in d.seeds})
    table = [[_victim(pair, vset), setting_words(defense, setting)]
             + [f"{100 * dict(zip(d.seeds, d.diffs))[s]:+.0f}" if s in d.seeds else "" for s in seeds]
             for (pair, vset, setting), d in sorted(cells.items())]
    return markdown_table(["victim", "defense", *(f"seed {s}" for s in seeds)], table)


def epoch_gains(rows, budget):
    """One Markdown bullet per victim: plain QAT's agreement against each thief trained for
    longer (``<attack>-<E>ep``) minus against the same thief at the frontier's surrogate epochs,
    paired by seed, at ``budget`` queries."""
    groups = by_cell(rows)
    out = []
    for where in sorted({k[:2] for k in groups}):
        parts = []
        for (pair, vset, attack, b, *ds), longer in sorted(groups.items()):
            base = groups.get((pair, vset, attack.rsplit("-", 1)[0], b) + BASELINE)
            if (pair, vset, b) == where + (budget,) and tuple(ds) == BASELINE and attack.endswith("ep") and base:
                d = paired_difference(longer, base, "agreement")
                parts.append(f"{attack} − {attack.rsplit('-', 1)[0]} {points(d)}, {d.higher}/{d.n} higher")
        if parts:
            out.append(f"- *{_victim(*where)}*: " + "; ".join(parts) + ".")
    return "\n".join(out)
