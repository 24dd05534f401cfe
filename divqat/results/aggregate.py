"""Result tables of an experiment directory: flat rows per cell, mean ± std over seeds.

Rows come from the cell records (:mod:`divqat.experiments.cells`); each has identity columns
(method and its parameters, defense, attack, budget, seed) and metric columns (docs/science.md §6
names: victim_accuracy, adversary_accuracy, adversary_error, agreement, ...). ``alpha`` is the
DivQAT weight with plain QAT at alpha = 0 (docs/science.md §3: the baseline). Summaries group the
rows by every identity column except the seed and give ``<metric>_mean``, ``<metric>_std``
(sample standard deviation, ddof = 1; None for a single seed: :func:`divqat.results.stats.mean_sd`),
``n`` and ``n_stale`` (seeds reused from other code with ``--reuse-stale``).
"""
import math

from divqat.experiments.cells import CellCache
from divqat.experiments.config import Entry
from divqat.utils import atomic_write_json, atomic_write_text

from .comparisons import comparisons
from .stats import mean_sd
from .tables import to_csv

ROW_IDS = ("key", "victim_key", "seed", "code", "stale")


def _flatten(prefix, value, out):
    if isinstance(value, dict):
        for k, v in value.items():
            _flatten(f"{prefix}_{k}" if prefix else str(k), v, out)
    else:
        out[prefix] = value


def _method_columns(method):
    name = method["name"]
    params = {k: v for k, v in method.items() if k != "name"}
    row = {"method": name,
           "alpha": 0.0 if name == "qat" else params.get("alpha") if name == "divqat" else None,
           "direction": params.get("direction", "forward") if name == "divqat" else None}
    _flatten("method", params, row)
    return row


def _entry_columns(kind, entry, skip=()):
    params = {k: v for k, v in entry.items() if k != "name" and k not in skip}
    row = {kind: entry["name"], f"{kind}_label": Entry(entry["name"], tuple(sorted(params.items()))).label}
    _flatten(kind, params, row)
    return row


def _rows(records, identity):
    """One row per record: ``identity(record)`` then its flattened metrics and time_s;
    returns (rows, metric column names)."""
    rows, metrics = [], set()
    for r in records:
        m = {}
        _flatten("", r["metrics"], m)
        m["time_s"] = r.get("time_s")
        metrics.update(m)
        rows.append({**identity(r), **m})
    return rows, sorted(metrics)


def _victim_summary(record):
    """The columns every victims.csv row leads with: the DivQAT temperature T (1, the
    `divqat train` default, for DivQAT when unset), the full-precision teacher's accuracy and
    the int8 victim's (docs/science.md §6, on the victim's test set)."""
    m, method = record["metrics"], record["method"]
    fp_acc = m.get("teacher_test_accuracy", m.get("test_accuracy") if method["name"] == "fp" else None)
    return {"T": method.get("temperature", 1.0) if method["name"] == "divqat" else None,
            "fp_accuracy": fp_acc, "int8_accuracy": m.get("int8_test_accuracy")}  # metrics too


def _provenance(record):
    return {"code": record.get("code"), "stale": record.get("stale", False)}


def victim_rows(records):
    """One row per victim record (method, alpha, T, direction, seed, fp_accuracy,
    int8_accuracy, then every metric: int8_agreement, kl_fp_q, l1_fp_q, ...); returns
    (rows, metric column names)."""
    rows, metrics = _rows(records, lambda r: {"key": r["key"], **_provenance(r), **_method_columns(r["method"]),
                                              "seed": r["seed"], "victim_label": r["label"], **_victim_summary(r)})
    return rows, sorted({*metrics, "fp_accuracy", "int8_accuracy"})


def attack_rows(records):
    """One row per attack-cell record; returns (rows, metric column names)."""
    return _rows(records, lambda r: {
        "key": r["key"], **_provenance(r), "victim_key": r["victim_key"], "seed": r["seed"], "victim_label": r["victim_label"],
        **_method_columns(r["method"]), **_entry_columns("defense", r["defense"]), "budget": r["attack"].get("budget"),
        **_entry_columns("attack", r["attack"], skip=("budget",))})


def _is_number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool) and not math.isnan(v)


def summarize(rows, metrics):
    """Mean and sample std of each metric over the rows that differ only in seed."""
    groups = {}
    for row in rows:
        ident = tuple(sorted(((k, row[k]) for k in row if k not in metrics and k not in ROW_IDS),
                             key=lambda kv: kv[0]))
        groups.setdefault(ident, []).append(row)
    out = []
    for members in groups.values():
        s = {k: v for k, v in members[0].items() if k not in metrics and k not in ROW_IDS}
        s["n"] = len(members)
        s["n_stale"] = sum(bool(r.get("stale")) for r in members)
        for m in metrics:
            vals = [r[m] for r in members if _is_number(r.get(m))]
            if not vals:
                continue
            s[f"{m}_mean"], s[f"{m}_std"] = mean_sd(vals)
        out.append(s)
    return out


def collect(out_dir):
    """All tables of an experiment directory as a dict: victims, cells, and their summaries."""
    cache = CellCache(out_dir)
    vrows, vmetrics = victim_rows(cache.victim_records())
    arows, ametrics = attack_rows(cache.attack_records())
    return {"victims": vrows, "cells": arows,
            "victims_summary": summarize(vrows, vmetrics),
            "cells_summary": summarize(arows, ametrics)}


def write_results(out_dir, bootstrap=0):
    """Write results.json (all tables), results.csv (attack cells), victims.csv (victims),
    summary.csv (attack cells, mean ± std over seeds) and comparisons.csv (paired comparisons,
    :mod:`divqat.results.comparisons`; ``bootstrap`` resamples for a bootstrap interval),
    each atomically; returns the tables, ``comparisons`` among them."""
    tables = collect(out_dir)
    tables["comparisons"] = comparisons(tables, bootstrap)
    atomic_write_text(to_csv(tables["comparisons"]), f"{out_dir}/comparisons.csv")
    atomic_write_json(tables, f"{out_dir}/results.json")
    atomic_write_text(to_csv(tables["cells"]), f"{out_dir}/results.csv")
    atomic_write_text(to_csv(tables["victims"]), f"{out_dir}/victims.csv")
    atomic_write_text(to_csv(tables["cells_summary"]), f"{out_dir}/summary.csv")
    return tables
