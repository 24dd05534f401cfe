"""The ten-seed study's tables (docs/science.md §9), from the committed CSVs of one run
(``results.csv``, ``victims.csv`` and ``comparisons.csv`` as ``divqat report`` writes them):
progress per stage, the verdict on each claim of the DivQAT paper (§3, §4), the victims, and
the paired comparisons of victims, methods and defenses.
"""
from pathlib import Path

from .stats import mean_sd
from .tables import ci_text, fmt, markdown_table, read_rows, signed

METRICS = {"adversary_error": "adv error", "agreement": "agreement", "victim_accuracy": "victim acc"}


def _ci(r):
    return ci_text(r["ci_low"], r["ci_high"])


def _diffs(r):
    return ", ".join(signed(float(d)) for d in str(r["diffs"]).split())


def victims_table(victims):
    groups = {}
    for v in victims:
        groups.setdefault(v["victim_label"], []).append(v)
    rows = []
    for label, vs in sorted(groups.items(), key=lambda kv: (kv[0] != "fp", kv[0] != "qat", kv[0])):
        acc = [v["int8_accuracy"] if v["int8_accuracy"] is not None else v["fp_accuracy"] for v in vs]
        kl = [v["kl_fp_q"] for v in vs if v.get("kl_fp_q") is not None]
        l1 = [v["l1_fp_q"] for v in vs if v.get("l1_fp_q") is not None]
        rows.append([label, len(vs), " ".join(str(v["seed"]) for v in sorted(vs, key=lambda v: v["seed"])),
                     fmt(*mean_sd(acc), 100), fmt(*mean_sd(kl)) if kl else "—", fmt(*mean_sd(l1)) if l1 else "—"])
    return markdown_table(["victim", "n", "seeds", "accuracy % (int8; fp: float)", "KL(f_fp ‖ f_q)", "L1(p_fp, p_q)"], rows)


def comparison_table(rows, kind, metrics=tuple(METRICS)):
    body = [[r["treatment_label"], r["victim"] or r["defense"] or "—", f"{r['attack'].split('(')[0]}@{r['budget']}"
             if r["attack"] else "—", METRICS.get(r["metric"], r["metric"]), r["n"],
             signed(r["mean_diff"]), _ci(r), r["signs"], r["verdict"], _diffs(r)]
            for r in rows if r["kind"] == kind and r["metric"] in metrics]
    return markdown_table(["treatment", "victim / defense", "attack", "metric", "n", "mean Δ", "95 % CI", "signs",
                           "verdict", "per-seed Δ (seed order)"], body)


def progress(run):
    """How many of each stage's cells (10 seeds) are finished, and which seeds each has."""
    cells = [r for r in read_rows(Path(run) / "results.csv") if r["method"] in ("qat", "divqat")
             and r.get("alpha") in (0.0, 0.5, 1.0) and r.get("direction") in (None, "forward")]
    stages = {  # name: (which cells, how many at ten seeds)
        "stage 0 (no defense, KnockoffNets 5000)":
            (lambda r: r["defense"] == "none" and r["attack"] == "knockoff" and r["budget"] == 5000, 30),
        "stage 1 (+ DCP 0.5 and 1.0, KnockoffNets 5000)": (lambda r: r["attack"] == "knockoff" and r["budget"] == 5000, 90),
        "stage 2 (Copycat 5000, no defense and DCP)": (lambda r: r["attack"] == "copycat" and r["budget"] == 5000, 90),
        "stage 3 (everything at 1000 queries)": (lambda r: r["budget"] == 1000, 180),
        "stage 4 (no defense, KnockoffNets 10000)":
            (lambda r: r["defense"] == "none" and r["attack"] == "knockoff" and r["budget"] == 10000, 30),
        "whole grid": (lambda r: True, 540)}
    rows = []
    for name, (keep, total) in stages.items():
        done = [r for r in cells if keep(r)]
        rows.append([name, f"{len(done)} of {total}", " ".join(map(str, sorted({r["seed"] for r in done})))])
    return markdown_table(["stage", "cells finished", "seeds with cells"], rows)


A05, A1 = "divqat(alpha=0.5, direction=forward)", "divqat(alpha=1.0, direction=forward)"
KNOCKOFF = "knockoff(epochs=20, momentum=0.9)"
# (claim, kind, treatment, victim or defense, attack, budget, metric, claimed direction: +1 higher,
#  -1 lower, 0 "no change")
CLAIMS = [
    ("§3 KL(f_fp‖f_q) rises with alpha", "victim", A05, None, None, None, "kl_fp_q", +1),
    ("§3 KL(f_fp‖f_q) rises with alpha", "victim", A1, None, None, None, "kl_fp_q", +1),
    ("§3 victim accuracy kept", "victim", A05, None, None, None, "int8_accuracy", 0),
    ("§3 victim accuracy kept", "victim", A1, None, None, None, "int8_accuracy", 0),
    ("§3 adversary error up (KnockoffNets)", "method", A05, "none", KNOCKOFF, 5000, "adversary_error", +1),
    ("§3 adversary error up (KnockoffNets)", "method", A1, "none", KNOCKOFF, 5000, "adversary_error", +1),
    ("§3 agreement down (KnockoffNets)", "method", A1, "none", KNOCKOFF, 5000, "agreement", -1),
    ("§4 DivQAT makes DCP 0.5 more effective", "method", A1, "dcp(beta=0.5)", KNOCKOFF, 5000, "adversary_error", +1),
    ("§4 DivQAT makes DCP 1.0 more effective", "method", A1, "dcp(beta=1.0)", KNOCKOFF, 5000, "adversary_error", +1),
    ("§4 DCP 1.0 raises adversary error (QAT victim)", "defense", "dcp(beta=1.0)", "qat", KNOCKOFF, 5000,
     "adversary_error", +1),
    ("§4 DCP 1.0 low impact on accuracy (QAT victim)", "defense", "dcp(beta=1.0)", "qat", KNOCKOFF, 5000,
     "victim_accuracy", 0),
]


def claim_verdict(row, direction):
    """reproduced / not reproduced / not separable from noise at n = N, for a claimed direction
    (0: the claim is "no change", so an established change of either sign refutes it)."""
    if row["ci_low"] is None:
        return f"n = {row['n']}: no interval"
    if row["established"]:
        moved = +1 if row["mean_diff"] > 0 else -1
        if direction == 0:
            return f"a change is established ({signed(row['mean_diff'])} {row['unit']})".replace(" )", ")")
        return "reproduced" if moved == direction else "not reproduced (opposite direction established)"
    if direction == 0:
        return f"no change established at n = {row['n']}"
    return f"not separable from noise at n = {row['n']}"


def find_claim(comps, kind, treatment, where, attack, budget, metric):
    """The comparisons row a claim of :data:`CLAIMS` is judged on, or None."""
    return next((r for r in comps if r["kind"] == kind and r["treatment_label"] == treatment
                 and r["metric"] == metric and (r["victim"] or r["defense"]) == where and r["attack"] == attack
                 and r["budget"] == budget), None)


def verdicts_table(comps, pair):
    """The verdict rows of :data:`CLAIMS` found in ``comps`` (a run's comparisons)."""
    body = []
    for claim, kind, treatment, where, attack, budget, metric, direction in CLAIMS:
        row = find_claim(comps, kind, treatment, where, attack, budget, metric)
        if row is None:
            continue
        who = treatment.replace(", direction=forward", "").replace("divqat(", "DivQAT (")
        body.append([claim, pair, who, row["n"], signed(row["mean_diff"]), _ci(row), row["signs"],
                     claim_verdict(row, direction)])
    return body


def verdict_rows(run):
    """The claims' verdicts of a run directory (:data:`CLAIMS`), one list per claim found:
    claim, pair (the directory's name), treatment, n, mean Δ, 95 % CI, signs, verdict."""
    return verdicts_table(read_rows(Path(run) / "comparisons.csv"), Path(run).name)


def table(run, part):
    """One Markdown table of a run directory: ``progress``, ``verdicts``, ``victims``,
    ``victims_vs_qat``, ``methods`` or ``defenses``."""
    run = Path(run)
    if part == "progress":
        return progress(run)
    if part == "verdicts":
        return markdown_table(["claim", "pair", "treatment", "n", "mean Δ", "95 % CI", "signs", "verdict"],
                              verdict_rows(run))
    if part == "victims":
        return victims_table(read_rows(run / "victims.csv"))
    comps = read_rows(run / "comparisons.csv")
    kinds = {"victims_vs_qat": ("victim", ("int8_accuracy", "kl_fp_q")), "methods": ("method", tuple(METRICS)),
             "defenses": ("defense", ("adversary_error", "victim_accuracy"))}
    if part not in kinds:
        raise ValueError(f"seeds10 table: unknown part {part!r} (progress, verdicts, victims, victims_vs_qat, "
                         "methods, defenses)")
    return comparison_table(comps, *kinds[part])
