"""The summary tables of docs/reproduction.md's "Trained-in defenses" section, printed from the
committed docs/reproduction/frontier.csv, so that the document's numbers are the file's numbers:

    python docs/reproduction/frontier_summary.py docs/reproduction/frontier.csv [BUDGET]
    python docs/reproduction/frontier_summary.py docs/reproduction/frontier.csv --update docs/reproduction.md

One table per dataset pair: per defense and setting, the number of seeds and the paired
differences against plain QAT (points, mean [95 % Student-t interval], seeds with lower
agreement) of victim top-1 and of surrogate agreement under each attack at BUDGET queries
(default 5000); then the goal check of every trained-in setting
(:mod:`divqat.experiments.frontier_goal`) against the frontier's 10-epoch surrogates and
against 20-epoch ones. ``--update`` rewrites the document's generated blocks (between
``<!-- frontier_summary 5000 -->`` and ``<!-- /frontier_summary -->``, and so on) in place.
"""
import csv
import sys
from pathlib import Path

from divqat.experiments.frontier import BASELINE, _by_cell, _interval, paired_difference, seed_mean
from divqat.experiments.frontier_goal import Goal, check_goal, goal_markdown
from divqat.utils import atomic_write_text

ATTACKS = ("knockoff", "copycat", "knockoff-adaptive", "knockoff-sharpen0.5", "knockoff-20ep", "copycat-20ep")


def read_rows(path):
    """frontier.csv as frontier rows (numbers parsed)."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        r["budget"], r["seed"] = int(r["budget"]), int(r["seed"])
        for metric in ("victim_accuracy", "agreement", "adversary_error"):
            r[metric] = float(r[metric])
    return rows


def _cell(groups, pair, attack, budget, defense, setting, metric):
    mine = groups.get((pair, attack, budget, defense, setting))
    if not mine:
        return ""
    base = groups.get((pair, attack, budget) + BASELINE, {})
    if (defense, setting) == BASELINE:
        return f"{100 * seed_mean(mine, metric):.2f} %"
    d, lower, n = paired_difference(mine, base, metric)
    if d is None:
        return "no paired seeds"
    return _interval(d) + (f", {lower}/{n}" if metric == "agreement" else "")


def summary_tables(rows, budget=5000):
    """The Markdown summary tables (module docstring)."""
    groups = _by_cell(rows)
    out = []
    for pair in sorted({r["pair"] for r in rows}):
        attacks = [a for a in ATTACKS if any(k[:3] == (pair, a, budget) for k in groups)]
        settings = sorted({k[3:] for k in groups if k[0] == pair and k[2] == budget},
                          key=lambda ds: (ds != BASELINE, ds))
        out += [f"**{pair}, {budget} queries** (QAT row: absolute values)", "",
                "| defense | setting | n | Δ top-1 | " + " | ".join(f"Δ agr. {a}" for a in attacks) + " |",
                "|---|---|---|---|" + "---|" * len(attacks)]
        for defense, setting in settings:
            n = max(len(groups.get((pair, a, budget, defense, setting), {})) for a in attacks)
            first = max(attacks, key=lambda a: len(groups.get((pair, a, budget, defense, setting), {})))
            cells = [_cell(groups, pair, a, budget, defense, setting, "agreement") for a in attacks]
            out.append(f"| {defense} | {setting} | {n} | "
                       f"{_cell(groups, pair, first, budget, defense, setting, 'victim_accuracy')} | "
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


def blocks(rows):
    """The generated blocks of docs/reproduction.md, by marker."""
    return {"frontier_summary 5000": summary_tables(rows, 5000), "frontier_summary 20000": summary_tables(rows, 20000),
            "frontier_goal": goal_tables(rows)}


def update(path, rows):
    """Rewrite every ``<!-- NAME -->`` ... ``<!-- /NAME -->`` block of ``path`` (a bare
    ``<!-- NAME -->`` marker gets its closing one) with the block generated from ``rows``."""
    text = Path(path).read_text()
    for name, body in blocks(rows).items():
        opening, closing = f"<!-- {name} -->", f"<!-- /{name.split()[0]} -->"
        start = text.index(opening) + len(opening)
        end = text.find(closing, start)
        tail = text[end:] if end >= 0 else closing + text[start:]
        text = text[:start] + "\n" + body.rstrip() + "\n" + tail
    atomic_write_text(text, path)


def main(argv):
    """``CSV [BUDGET]``: print the tables; ``CSV --update FILE``: rewrite FILE's blocks."""
    rows = read_rows(argv[0])
    if len(argv) > 2 and argv[1] == "--update":
        update(argv[2], rows)
        return
    budget = int(argv[1]) if len(argv) > 1 else 5000
    print(summary_tables(rows, budget))
    if budget == 5000:
        print(goal_tables(rows))


if __name__ == "__main__":
    main(sys.argv[1:])
