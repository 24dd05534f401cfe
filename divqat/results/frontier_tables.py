"""The frontier's Markdown (docs/science.md §8 and §9), from its rows (:mod:`divqat.results.frontier`):

- :func:`frontier_markdown`: per (pair, victim setting, attack, budget) and defense, the means
  and the paired differences against the baseline (plain QAT, no output defense) on the same
  seeds: mean, 95 % Student-t interval (n - 1 degrees of freedom) and the count of seeds where
  the defense's agreement is lower; then the same paired differences of every stacked defense
  against its output defense alone and of every trained-in defense against DCP beta 0.5; then
  the goal of every trained-in setting, checked (:mod:`divqat.results.goal`);
- :func:`summary_tables`: one table per pair and victim setting at one budget: per defense and
  setting, n and the paired differences against plain QAT of victim top-1 and of surrogate
  agreement under each attack;
- :func:`goal_tables`: the goal check against the frontier's 10-epoch surrogates and against
  20-epoch ones, for the settings with enough seeds for a verdict;
- :func:`answered_label_table`: where the thieves' answers went (the labels a victim gave on the
  thief's queries), per cell over its seeds; :func:`answered_label_shares`: the whole histogram
  of one thief's answers, per victim and defense.

Differences are in points: mean [95 % CI], then the seeds with lower agreement.
"""
from collections import defaultdict

from .frontier import BASELINE, by_cell, comparisons, paired_difference, seed_mean, summarize
from .goal import Goal, check_goal, goal_markdown
from .tables import markdown_table, points
from .words import setting_words, victim_words_of

# the summary's first columns, in this order; any other thief of the rows follows, sorted
ATTACKS = ("knockoff", "copycat", "knockoff-adaptive", "knockoff-sharpen0.5", "knockoff-20ep", "copycat-20ep")


def _where(pair, victim_setting):
    return f"{pair}, {victim_setting} victims"


def _per_budget_markdown(summaries):
    lines = []
    key = None
    for s in summaries:
        if (s["pair"], s["victim_setting"], s["attack"], s["budget"]) != key:
            key = (s["pair"], s["victim_setting"], s["attack"], s["budget"])
            lines += ["", f"### {_where(s['pair'], s['victim_setting'])}, {s['attack']}, {s['budget']} queries", "",
                      "| defense | setting | n | victim acc. | agreement | Δ acc. (pts, 95 % CI) | "
                      "Δ agreement (pts, 95 % CI) | lower agr. |", "|---|---|---|---|---|---|---|---|"]
        paired = "d_agreement" in s and (s["defense"], s["setting"]) != BASELINE
        lines.append(f"| {s['defense']} | {s['setting']} | {s['n']} | {100 * s['victim_accuracy']:.2f} | "
                     f"{100 * s['agreement']:.2f} | {points(s['d_victim_accuracy']) if paired else ''} | "
                     f"{points(s['d_agreement']) if paired else ''} | "
                     f"{str(s['d_agreement'].lower) + '/' + str(s['paired_n']) if paired else ''} |")
    return "\n".join(lines).lstrip() + "\n"


def _comparisons_markdown(items):
    lines = ["| pair | attack | budget | defense | setting | against | n | Δ acc. (pts, 95 % CI) | "
             "Δ agreement (pts, 95 % CI) | lower agr. |", "|---|---|---|---|---|---|---|---|---|---|"]
    for c in items:
        if c["paired_n"]:
            lines.append(f"| {_where(c['pair'], c['victim_setting'])} | {c['attack']} | {c['budget']} | "
                         f"{c['defense']} | {c['setting']} | {c['against']} | {c['paired_n']} | "
                         f"{points(c['d_victim_accuracy'])} | {points(c['d_agreement'])} | "
                         f"{c['d_agreement'].lower}/{c['paired_n']} |")
    return "\n".join(lines) + "\n"


def frontier_markdown(rows):
    """Every frontier table of ``rows`` (module docstring) as one Markdown text."""
    return ("## Against plain QAT (no output defense), paired by seed\n\n" + _per_budget_markdown(summarize(rows))
            + "\n## Stacked against the output defense alone; trained-in against DCP beta 0.5\n\n"
            + _comparisons_markdown(comparisons(rows))
            + "\n## The trained-in defense goal, checked (divqat.results.goal)\n\n"
            + goal_markdown(check_goal(rows)))


def _cell(groups, key, metric):
    mine = groups.get(key)
    if not mine:
        return ""
    base = groups.get(key[:4] + BASELINE, {})
    if key[4:] == BASELINE:
        return f"{100 * seed_mean(mine, metric):.2f} %"
    d = paired_difference(mine, base, metric)
    if d is None:
        return "no paired seeds"
    return points(d) + (f", {d.lower}/{d.n}" if metric == "agreement" else "")


def summary_tables(rows, budget=5000):
    """The Markdown summary tables at ``budget`` queries (module docstring); the QAT row holds
    absolute values."""
    groups = by_cell(rows)
    out = []
    for pair, vset in sorted({(r["pair"], r["victim_setting"]) for r in rows}):
        present = {k[2] for k in groups if k[:2] == (pair, vset) and k[3] == budget}
        attacks = [a for a in ATTACKS if a in present] + sorted(present - set(ATTACKS))
        settings = sorted({k[4:] for k in groups if k[:2] == (pair, vset) and k[3] == budget},
                          key=lambda ds: (ds != BASELINE, ds))
        if not settings:
            continue
        out += [f"**{_where(pair, vset)}, {budget} queries** (QAT row: absolute values)", "",
                "| defense | setting | n | Δ top-1 | " + " | ".join(f"Δ agr. {a}" for a in attacks) + " |",
                "|---|---|---|---|" + "---|" * len(attacks)]
        for defense, setting in settings:
            keys = {a: (pair, vset, a, budget, defense, setting) for a in attacks}
            n = max(len(groups.get(k, {})) for k in keys.values())
            first = max(attacks, key=lambda a: len(groups.get(keys[a], {})))
            cells = [_cell(groups, keys[a], "agreement") for a in attacks]
            out.append(f"| {defense} | {setting} | {n} | {_cell(groups, keys[first], 'victim_accuracy')} | "
                       + " | ".join(cells) + " |")
        out.append("")
    return "\n".join(out)


def goal_tables(rows):
    """The goal check against the 10-epoch and the 20-epoch attacker (Markdown), for the
    trained-in settings with enough seeds for a verdict on some pair (the others are frontier
    points: the summary tables list them)."""
    out = []
    for goal in (Goal(), Goal(knockoff="knockoff-20ep", copycat="copycat-20ep")):  # 20 epochs: the better-trained attacker
        checks = [c for c in check_goal(rows, goal)
                  if any(p["knockoff"]["n"] >= goal.min_n for p in c["pairs"].values())]
        out.append(goal_markdown(checks, goal))
    return "\n".join(out)


def answered_label_table(rows):
    """Markdown: per cell (pair, victim setting, defense and setting, thief, budget), over its
    seeds, the class answered most often on the thief's queries (the most frequent per-seed top
    class), the mean share of answers that went to each seed's top class, and the mean number of
    classes given at least 5 % of the answers (rows of
    :func:`divqat.results.frontier.answered_label_rows`)."""
    groups = defaultdict(list)
    for r in rows:
        groups[(r["pair"], r["victim_setting"], r["defense"], r["setting"], r["attack"], r["budget"])].append(
            _class_counts(r))
    table = []
    for (pair, vset, defense, setting, attack, budget), hists in sorted(groups.items(), key=lambda g: str(g[0])):
        tops = [max(range(len(h)), key=h.__getitem__) for h in hists]
        shares = [max(h) / sum(h) for h in hists]
        spread = [sum(n >= 0.05 * sum(h) for n in h) for h in hists]
        table.append([pair, vset, setting_words(defense, setting), attack, f"{budget:,}", len(hists),
                      max(set(tops), key=tops.count), f"{100 * sum(shares) / len(shares):.1f}",
                      f"{sum(spread) / len(spread):.1f}"])
    return markdown_table(["pair", "victims", "defense", "thief", "budget", "n", "top class", "top share %",
                           "classes ≥ 5 %"], table)


def _class_counts(row):
    """The answered-label histogram of an answered_labels.csv row, class 0 first."""
    return [row[k] for k in sorted((k for k in row if k.startswith("class_")), key=lambda k: int(k[6:]))]


def _qat_first(key):
    """Sort key of (pair, victim setting, defense, setting): per victim, plain QAT first (a CSV's
    empty setting reads as None), then the rest by name."""
    pair, vset, defense, setting = key
    return pair, vset, (defense, setting or "") != BASELINE, defense, str(setting)


def answered_label_shares(rows, attack, budget):
    """Markdown: per pair, victim setting, defense and setting, the share of ``attack``'s answers
    (at ``budget`` queries) that went to each class, in %, the mean over seeds of each seed's
    shares; plain QAT first on each pair."""
    groups = defaultdict(list)
    for r in rows:
        if r["attack"] == attack and r["budget"] == budget:
            counts = _class_counts(r)
            groups[(r["pair"], r["victim_setting"], r["defense"], r["setting"])].append(
                [n / sum(counts) for n in counts])
    classes = max((len(h[0]) for h in groups.values()), default=0)
    table = []
    for (pair, vset, defense, setting), shares in sorted(groups.items(), key=lambda g: _qat_first(g[0])):
        means = [100 * sum(s[k] for s in shares) / len(shares) for k in range(classes)]
        table.append([victim_words_of(pair, vset), setting_words(defense, setting), len(shares),
                      *(f"{m:.0f}" for m in means)])
    return markdown_table(["victim", "defense", "n", *(f"class {k}" for k in range(classes))], table)
