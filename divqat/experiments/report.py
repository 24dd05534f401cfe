"""The Markdown report of an experiment directory: tables (mean ± std over seeds) and plots.

Sections: the victims (accuracy, int8 agreement, KL/L1 between f_fp and f_q), DivQAT against
plain QAT (paired by seed and cell: the change in adversary error and in victim accuracy, the
quantity of the DivQAT paper's headline claim, SCIENCE.md §3), every attack cell, robustness
(SCIENCE.md §7) when measured, then the plots of :mod:`divqat.experiments.plots`.
"""
import json
import math
from pathlib import Path

from divqat.utils import atomic_write_text

from .aggregate import write_results
from .cells import current_code
from .plots import write_plots

VICTIM_COLUMNS = (("test_accuracy", "test acc %", 100), ("int8_test_accuracy", "int8 acc %", 100),
                  ("int8_agreement", "int8 agree %", 100), ("kl_fp_q", "KL(fp‖q)", 1),
                  ("l1_fp_q", "L1(fp,q)", 1), ("time_s", "train s", 1))
CELL_COLUMNS = (("victim_accuracy", "victim acc %", 100), ("adversary_accuracy", "adv acc %", 100),
                ("adversary_error", "adv error %", 100), ("agreement", "agreement %", 100),
                ("defense_l1", "defense L1", 1), ("queries_used", "queries", 1), ("time_s", "s", 1))


def fmt(mean, std, scale=1):
    """``mean ± std`` scaled (100 for percentages), or a dash when absent."""
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "—"
    digits = 2 if scale == 100 or abs(mean * scale) < 100 else 0
    if scale != 100 and abs(mean * scale) < 0.1 and mean != 0:
        return f"{mean * scale:.2g} ± {std * scale:.2g}"
    return f"{mean * scale:.{digits}f} ± {std * scale:.{digits}f}"


def _table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _present(rows, columns):
    return [c for c in columns if any(f"{c[0]}_mean" in r for r in rows)]


def victims_section(tables):
    rows = sorted(tables["victims_summary"], key=lambda r: (r["method"], str(r["victim_label"])))
    cols = _present(rows, VICTIM_COLUMNS)
    body = [[r["victim_label"], r["n"], *[fmt(r.get(f"{c}_mean"), r.get(f"{c}_std", 0.0), s) for c, _, s in cols]]
            for r in rows]
    return "## Victims\n\n" + _table(["victim", "seeds", *[h for _, h, _ in cols]], body)


def paired_deltas(cells):
    """DivQAT minus QAT per (defense, attack, budget, seed), then mean ± std over seeds:
    {(defense_label, attack_label, budget, divqat victim_label): {metric: [values]}}."""
    qat = {(r["defense_label"], r["attack_label"], r["budget"], r["seed"]): r
           for r in cells if r["method"] == "qat"}
    out = {}
    for r in cells:
        base = qat.get((r["defense_label"], r["attack_label"], r["budget"], r["seed"]))
        if r["method"] != "divqat" or base is None:
            continue
        d = out.setdefault((r["defense_label"], r["attack_label"], r["budget"], r["victim_label"]), {})
        for m in ("adversary_error", "agreement", "victim_accuracy"):
            if r.get(m) is not None and base.get(m) is not None:
                d.setdefault(m, []).append(r[m] - base[m])
    return out


def _mean_std(vals):
    mean = sum(vals) / len(vals)
    std = math.sqrt(sum((v - mean) ** 2 for v in vals) / (len(vals) - 1)) if len(vals) > 1 else 0.0
    return mean, std


def deltas_section(tables):
    deltas = paired_deltas(tables["cells"])
    if not deltas:
        return ""
    body = []
    for (defense, attack, budget, victim), d in sorted(
            deltas.items(), key=lambda kv: (kv[0][0] != "none", kv[0][0], kv[0][1], kv[0][2] or 0, kv[0][3])):
        cells = [fmt(*_mean_std(d[m]), 100) if m in d else "—"
                 for m in ("adversary_error", "agreement", "victim_accuracy")]
        body.append([victim, defense, attack, budget, *cells, len(d.get("adversary_error", []))])
    return ("## DivQAT against plain QAT (paired by seed; percentage points)\n\n"
            "Positive Δ adversary error means DivQAT's surrogate is worse (the defender wins); the "
            "DivQAT paper reports +1.30 to +11.75 points against KnockoffNets.\n\n"
            + _table(["DivQAT victim", "defense", "attack", "budget", "Δ adv error", "Δ agreement",
                      "Δ victim acc", "seeds"], body))


def cells_section(tables):
    rows = sorted(tables["cells_summary"], key=lambda r: (str(r["attack_label"]), str(r["defense_label"]),
                                                          str(r["victim_label"]), r["budget"] or 0))
    if not rows:
        return ""
    cols = _present(rows, CELL_COLUMNS)
    body = [[r["victim_label"], r["defense_label"], r["attack_label"], r["budget"], r["n"],
             *[fmt(r.get(f"{c}_mean"), r.get(f"{c}_std", 0.0), s) for c, _, s in cols]] for r in rows]
    return "## Attack cells\n\n" + _table(["victim", "defense", "attack", "budget", "seeds",
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
            + _table(["model", "which", "attack_eps: accuracy"], lines))


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
             "seeds (sample std). Tables: results.csv (per cell and seed), summary.csv, victims.csv, "
             "results.json."]
    parts.append(provenance_line(tables))
    parts += [s for s in (victims_section(tables), deltas_section(tables), cells_section(tables),
                          robustness_section(tables)) if s]
    if plots:
        parts.append("## Plots\n\n" + "\n\n".join(f"![{p}]({p})" for p in plots))
    for name, raw in configs.items():
        parts.append(f"## Configuration {name}\n\n```json\n" + json.dumps(raw, indent=1) + "\n```")
    return "\n\n".join(parts) + "\n"


def write_report(out_dir):
    """(Re)write results.*, the plots and report.md of an experiment directory from its cells;
    returns the report's path."""
    out_dir = Path(out_dir)
    if not (out_dir / "cells").is_dir():
        raise FileNotFoundError(f"{out_dir} is not an experiment directory (no cells/ inside)")
    tables = write_results(out_dir)
    plots = write_plots(tables, out_dir)
    configs = {p.stem: json.loads(p.read_text()) for p in sorted((out_dir / "configs").glob("*.json"))}
    return atomic_write_text(build_report(tables, plots, configs), out_dir / "report.md")
