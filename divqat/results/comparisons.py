"""The paired comparisons of an experiment directory (docs/science.md §9), from its tables.

Every comparison pairs a treatment with its baseline on the seeds both have:

- ``method``: a victim against its baseline victim, under the same defense, attack and budget
  (ptq and DivQAT against plain QAT, docs/science.md §3; adversarially trained victims against
  the naturally trained fp victim, §7), on adversary_error, agreement and victim_accuracy, and
  on the surrogate's accuracy under attack (``surrogate_robust_*``, §7) where measured;
- ``defense``: a defense against no defense, for the same victim, attack and budget (§4);
- ``victim``: the victims themselves, method against baseline, on int8 accuracy, KL(f_fp‖f_q)
  and L1 (accuracy of the float model for adversarially trained victims).

Rates are compared in percentage points. Each row holds the per-seed values and differences,
n, the mean difference with its 95 % Student-t interval (optionally a bootstrap interval), the
sign count and the verdict (:mod:`divqat.results.stats`);
:func:`divqat.results.aggregate.write_results` writes them to ``comparisons.csv``.
"""
import csv

from .stats import paired
from .tables import read_rows, signed

BASELINE = {"ptq": "qat", "divqat": "qat", "adv-fgsm": "fp", "adv-pgd": "fp"}
CELL_METRICS = ("adversary_error", "agreement", "victim_accuracy")
VICTIM_METRICS = ("int8_accuracy", "kl_fp_q", "l1_fp_q", "test_accuracy")
ROBUST = "surrogate_robust_"
POINTS = {"adversary_error", "agreement", "victim_accuracy", "adversary_accuracy", "int8_accuracy",
          "test_accuracy", "fp_accuracy", "int8_agreement"}


def _unit(metric):
    return (100.0, "points") if metric in POINTS or metric.startswith(ROBUST) else (1.0, "")


def _by_seed(rows):
    return {r["seed"]: r for r in rows}


def _compare(kind, metric, treatment_rows, baseline_rows, context, bootstrap):
    """One comparison row, or None when no seed has both values."""
    t, b = _by_seed(treatment_rows), _by_seed(baseline_rows)
    seeds = sorted(s for s in t if s in b and t[s].get(metric) is not None and b[s].get(metric) is not None)
    if not seeds:
        return None
    scale, unit = _unit(metric)
    p = paired(seeds, [t[s][metric] * scale for s in seeds], [b[s][metric] * scale for s in seeds],
               bootstrap=bootstrap)
    row = {"kind": kind, "metric": metric, "unit": unit, **context, **p.as_dict(),
           "stale": any(t[s].get("stale") or b[s].get("stale") for s in seeds)}
    for key in ("seeds", "treatment", "baseline", "diffs"):
        row[key] = " ".join(f"{v:g}" if key == "seeds" else f"{v:.6g}" for v in row[key])
    row["sentence"] = sentence(row)
    return row


def sentence(row):
    """The comparison in words, e.g. ``divqat(alpha=1.0) vs qat, knockoff@5000, none:
    adversary_error +3.10 points (n = 10, 95 % CI +1.20 to +5.00; 9 of 10 seeds higher): established (higher).``"""
    attack = f"{row['attack']}@{row['budget']}" if row.get("budget") is not None else row.get("attack")
    where = ", ".join(str(v) for v in (row.get("victim"), attack, row.get("defense")) if v not in (None, ""))
    ci = "no interval" if row["ci_low"] is None else f"95 % CI {signed(row['ci_low'])} to {signed(row['ci_high'])}"
    ci = f"n = {row['n']}, {ci}"
    unit = f" {row['unit']}" if row["unit"] else ""
    return (f"{row['treatment_label']} vs {row['baseline_label']}{', ' + where if where else ''}: {row['metric']} "
            f"{signed(row['mean_diff'])}{unit} ({ci}; {row['signs']}): {row['verdict']}.")


def _group(rows, keys):
    out = {}
    for r in rows:
        out.setdefault(tuple(r.get(k) for k in keys), []).append(r)
    return out


def _attack_context(r):
    return {"attack": r["attack_label"], "budget": r["budget"]}


def method_comparisons(cells, bootstrap=0):
    groups = _group(cells, ("victim_label", "method", "defense_label", "attack_label", "budget"))
    victims = {k[0]: k[1] for k in groups}
    out = []
    for (victim, method, defense, attack, budget), rows in groups.items():
        base = BASELINE.get(method)
        base_label = next((v for v, m in victims.items() if m == base), None)
        if base_label is None:
            continue
        base_rows = groups.get((base_label, base, defense, attack, budget))
        if not base_rows:
            continue
        context = {"treatment_label": victim, "baseline_label": base_label, "victim": None,
                   "defense": defense, **_attack_context(rows[0])}
        robust = sorted({k for r in rows for k in r if k.startswith(ROBUST) and r[k] is not None})
        out += [_compare("method", m, rows, base_rows, context, bootstrap) for m in CELL_METRICS + tuple(robust)]
    return [r for r in out if r is not None]


def defense_comparisons(cells, bootstrap=0):
    groups = _group(cells, ("victim_label", "defense_label", "attack_label", "budget"))
    out = []
    for (victim, defense, attack, budget), rows in groups.items():
        base_rows = groups.get((victim, "none", attack, budget))
        if defense == "none" or not base_rows:
            continue
        context = {"treatment_label": defense, "baseline_label": "none", "victim": victim, "defense": None,
                   **_attack_context(rows[0])}
        out += [_compare("defense", m, rows, base_rows, context, bootstrap) for m in CELL_METRICS]
    return [r for r in out if r is not None]


def victim_comparisons(victims, bootstrap=0):
    groups = _group(victims, ("victim_label", "method"))
    labels = {m: v for v, m in groups}
    out = []
    for (victim, method), rows in groups.items():
        base = BASELINE.get(method)
        if base not in labels:
            continue
        context = {"treatment_label": victim, "baseline_label": labels[base], "victim": None, "defense": None,
                   "attack": None, "budget": None}
        metrics = ("test_accuracy",) if base == "fp" else VICTIM_METRICS[:3]
        out += [_compare("victim", m, rows, groups[(labels[base], base)], context, bootstrap) for m in metrics]
    return [r for r in out if r is not None]


def comparisons(tables, bootstrap=0):
    """Every paired comparison of ``tables`` (:func:`divqat.results.aggregate.collect`):
    victims, methods, then defenses, as flat rows (see the module docstring), sorted by
    treatment, context and metric."""
    order = {m: i for i, m in enumerate(CELL_METRICS + VICTIM_METRICS)}

    def key(r):
        return (str(r["treatment_label"]), str(r["victim"] or r["defense"] or ""), str(r["attack"] or ""),
                r["budget"] or 0, order.get(r["metric"], len(order)), r["metric"])

    return (sorted(victim_comparisons(tables["victims"], bootstrap), key=key)
            + sorted(method_comparisons(tables["cells"], bootstrap), key=key)
            + sorted(defense_comparisons(tables["cells"], bootstrap), key=key))



#: the columns the comparisons of a results.csv and of a victims.csv read
RESULTS_COLUMNS = ("victim_label", "method", "defense_label", "attack_label", "budget", "seed")
VICTIMS_COLUMNS = ("victim_label", "method", "seed")


def _read_table(path, columns, what):
    """:func:`read_rows` of ``path``; ValueError naming ``what`` and the file when it is no CSV
    text or lacks one of ``columns``."""
    try:
        with open(path, newline="") as f:
            header = next(csv.reader(f), [])
        rows = read_rows(path)
    except (csv.Error, UnicodeDecodeError) as err:
        raise ValueError(f"{what} {path} is not a CSV file ({err})") from None
    missing = [c for c in columns if c not in header]
    if missing:
        raise ValueError(f"{what} {path} lacks the columns {', '.join(missing)} "
                         "(is it a results.csv or victims.csv of `divqat experiment`?)")
    return rows


def csv_comparisons(results_csv, victims_csv=None, bootstrap=0):
    """:func:`comparisons` of committed per-seed CSV files (results.csv, optionally victims.csv)."""
    cells = _read_table(results_csv, RESULTS_COLUMNS, "results CSV")
    victims = _read_table(victims_csv, VICTIMS_COLUMNS, "--victims") if victims_csv else []
    return comparisons({"cells": cells, "victims": victims}, bootstrap)
