"""The Markdown report of an experiment directory: tables (mean ± std over seeds) and plots.

Sections: which code computed the cells, the victims (accuracy, int8 agreement, KL/L1 between
f_fp and f_q), the paired comparisons (docs/science.md §9: each method against its baseline and
each defense against none, per-seed Δ, 95 % Student-t interval, sign count and verdict, from
:mod:`divqat.results.comparisons`; the DivQAT-versus-QAT rows are the quantity of the DivQAT
paper's headline claim, §3), every attack cell, robustness (§7) when measured, then the plots of
:mod:`divqat.results.plots`.
"""
import json
from pathlib import Path

from divqat.experiments.cells import current_code
from divqat.utils import atomic_write_text

from .aggregate import write_results
from .plots import write_plots
from .tables import ci_text, fmt, markdown_table, signed

VICTIM_COLUMNS = (("test_accuracy", "test acc %", 100), ("int8_test_accuracy", "int8 acc %", 100),
                  ("int8_agreement", "int8 agree %", 100), ("kl_fp_q", "KL(fp‖q)", 1),
                  ("l1_fp_q", "L1(fp,q)", 1), ("time_s", "train s", 1))
CELL_COLUMNS = (("victim_accuracy", "victim acc %", 100), ("adversary_accuracy", "adv acc %", 100),
                ("adversary_error", "adv error %", 100), ("agreement", "agreement %", 100),
                ("defense_l1", "defense L1", 1), ("queries_used", "queries", 1), ("time_s", "s", 1))


def _label(row):
    """The victim label, marked † when some of its seeds are stale (reused from other code)."""
    return f"{row['victim_label']} †" if row.get("n_stale") else row["victim_label"]


def _present(rows, columns):
    return [c for c in columns if any(f"{c[0]}_mean" in r for r in rows)]


def victims_section(tables):
    rows = sorted(tables["victims_summary"], key=lambda r: (r["method"], str(r["victim_label"])))
    cols = _present(rows, VICTIM_COLUMNS)
    body = [[_label(r), r["n"], *[fmt(r.get(f"{c}_mean"), r.get(f"{c}_std"), s) for c, _, s in cols]]
            for r in rows]
    return "## Victims\n\n" + markdown_table(["victim", "seeds", *[h for _, h, _ in cols]], body)


COMPARISON_TITLES = {
    "victim": "Victims against their baseline (QAT for ptq/DivQAT, fp for adversarial training)",
    "method": "Methods against their baseline victim, same defense, attack and budget",
    "defense": "Defenses against no defense, same victim, attack and budget",
}


def comparisons_section(tables):
    """Every paired comparison (comparisons.csv): per-seed differences, n, mean Δ, its 95 %
    Student-t interval, the sign count and the verdict in words."""
    rows = tables.get("comparisons") or []
    if not rows:
        return ""
    parts = ["## Paired comparisons (95 % Student-t intervals over seeds)\n\n"
             "Δ = treatment − baseline per seed (rates in percentage points). An effect is "
             "*established* only when its interval excludes 0; otherwise it is not separable from "
             "the seed noise at that n. Positive Δ adversary error means the defender wins. Every "
             "row is in comparisons.csv."]
    for kind, title in COMPARISON_TITLES.items():
        sub = [r for r in rows if r["kind"] == kind]
        if not sub:
            continue
        body = [[r["treatment_label"] + (" †" if r["stale"] else ""), r["baseline_label"],
                 r["victim"] or r["defense"] or "", r["attack"] or "", r["budget"] or "", r["metric"], r["n"],
                 signed(r["mean_diff"]), ci_text(r['ci_low'], r['ci_high'], r.get('boot_low'), r.get('boot_high')),
                 r["signs"], r["verdict"], " ".join(signed(float(d)) for d in r["diffs"].split())] for r in sub]
        parts.append(f"### {title}\n\n" + markdown_table(
            ["treatment", "baseline", "victim / defense", "attack", "budget", "metric", "n", "mean Δ",
             "95 % CI", "signs", "verdict", "per-seed Δ"], body))
    return "\n\n".join(parts)


def cells_section(tables):
    rows = sorted(tables["cells_summary"], key=lambda r: (str(r["attack_label"]), str(r["defense_label"]),
                                                          str(r["victim_label"]), r["budget"] or 0))
    if not rows:
        return ""
    cols = _present(rows, CELL_COLUMNS)
    body = [[_label(r), r["defense_label"], r["attack_label"], r["budget"], r["n"],
             *[fmt(r.get(f"{c}_mean"), r.get(f"{c}_std"), s) for c, _, s in cols]] for r in rows]
    return "## Attack cells\n\n" + markdown_table(["victim", "defense", "attack", "budget", "seeds",
                                           *[h for _, h, _ in cols]], body)


def robustness_section(tables):
    lines = []
    for kind, rows in (("victim", tables["victims_summary"]), ("surrogate", tables["cells_summary"])):
        for r in rows:
            cols = sorted(k[: -len("_mean")] for k in r if k.endswith("_mean") and
                          k.startswith("robust_" if kind == "victim" else "surrogate_robust_"))
            if not cols:
                continue
            name = r["victim_label"] if kind == "victim" else f"{r['attack_label']}@{r['budget']} of {r['victim_label']} ({r['defense_label']})"
            lines.append([kind, name, "; ".join(f"{c.split('robust_')[1]}: {fmt(r[c + '_mean'], r[c + '_std'], 100)}"
                                                 for c in cols)])
    if not lines:
        return ""
    return ("## Robustness (accuracy % under attack at each eps)\n\n"
            + markdown_table(["model", "which", "attack_eps: accuracy"], lines))


def provenance_line(tables):
    """Which code computed the cells (fingerprints with their counts), and how many are stale:
    computed by other code and kept with ``--reuse-stale``; table rows with a stale seed are
    marked †."""
    rows = tables["victims"] + tables["cells"]
    counts = {}
    for r in rows:
        counts[str(r.get("code"))] = counts.get(str(r.get("code")), 0) + 1
    line = (f"Code: cells computed by {', '.join(f'{c} ({n})' for c, n in sorted(counts.items())) or '—'}; "
            f"this report by {current_code()}.")
    stale = sum(bool(r.get("stale")) for r in rows)
    if stale:
        line += (f" **{stale} of {len(rows)} cells are stale** (computed by other code, reused with "
                 "`--reuse-stale`); rows with stale seeds are marked †.")
    return line


def build_report(tables, plots, configs=None):
    """The Markdown text of a report; ``configs`` maps each config name run into the
    directory to its raw config."""
    configs = configs or {}
    parts = [f"# Experiment report: {', '.join(configs)}".rstrip(": "),
             f"{len(tables['victims'])} victims, {len(tables['cells'])} attack cells; mean ± std over "
             "seeds (sample std; the mean alone for one seed). Tables: results.csv (per cell and seed), "
             "victims.csv (per victim and seed), summary.csv, comparisons.csv (paired comparisons), "
             "results.json."]
    parts.append(provenance_line(tables))
    parts += [s for s in (victims_section(tables), comparisons_section(tables), cells_section(tables),
                          robustness_section(tables)) if s]
    if plots:
        parts.append("## Plots\n\n" + "\n\n".join(f"![{p}]({p})" for p in plots))
    for name, raw in configs.items():
        parts.append(f"## Configuration {name}\n\n```json\n" + json.dumps(raw, indent=1) + "\n```")
    return "\n\n".join(parts) + "\n"


def write_report(out_dir, bootstrap=0, plots=True):
    """(Re)write results.*, comparisons.csv, the plots (unless not ``plots``) and report.md of an
    experiment directory from its cells (``bootstrap`` > 0: also a bootstrap interval from that
    many resamples); returns the report's path."""
    out_dir = Path(out_dir)
    if not (out_dir / "cells").is_dir():
        raise FileNotFoundError(f"{out_dir} is not an experiment directory (no cells/ inside)")
    tables = write_results(out_dir, bootstrap)
    plots = write_plots(tables, out_dir) if plots else []
    configs = {p.stem: json.loads(p.read_text()) for p in sorted((out_dir / "configs").glob("*.json"))}
    return atomic_write_text(build_report(tables, plots, configs), out_dir / "report.md")
