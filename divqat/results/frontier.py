"""The rows of the accuracy-fidelity frontier of every defense (docs/science.md §8 and §9): what a
cell record's victim, defense and attack are called, one row per finished attack cell, and the
paired differences of each defense against plain QAT on the same seeds.

A frontier row is one (pair, victim setting, defense, setting, attack, budget, seed) with
``victim_accuracy`` (top-1 of the answers honest users get, i.e. under the output defense),
``agreement`` and ``adversary_error`` of the surrogate (docs/science.md §6). The victim setting
(:func:`victim_setting`) keeps victims trained on different data (the 10,000-image quick
setting, the full training set) in different rows, so no comparison pairs them.

A defense is named by what the victim was trained with (``qat``; ``divqat`` as published, with
its alpha, T and direction in the setting; ``nonlabel``, ``proxy-<target>`` (``proxy-kl``,
``proxy-entropy``, ``proxy-shift``, ``proxy-permute``), ``misinform``, ``diverse``, the objectives of
:mod:`divqat.train.objectives`) and the output defense it answers through
(``dcp``, ``reverse_sigmoid``, ``mad``, ...): an output defense on a QAT victim is named by the
output defense alone, a trained-in defense behind one by both (``nonlabel+dcp``).
"""
import dataclasses
import json
from collections import defaultdict
from pathlib import Path

from divqat.train.objectives import PROXY_TARGETS
from divqat.train.victim import VictimConfig

from .stats import Paired, paired
from .tables import read_rows

COLUMNS = ("pair", "victim_setting", "defense", "setting", "attack", "budget", "seed", "victim_accuracy",
           "agreement", "adversary_error")
IDENTITY = COLUMNS[:7]
METRICS = COLUMNS[7:]
BASELINE = ("qat", "")
SURROGATE_EPOCHS = 10  # the frontier configs' surrogate training; other lengths are named in the attack
TRAINED = ("divqat", "nonlabel", *(f"proxy-{target}" for target in PROXY_TARGETS), "misinform", "diverse")
_TRAIN_KEYS = ("alpha", "temperature", "direction", "kl_cap", "margin", "margin_weight", "distill", "proxy_transforms",
               "proxy_source", "heads", "epochs")  # epochs: a method's own, overriding [quant]
# the attack options every frontier attack is named by elsewhere (budget column, -sharpen, -<E>ep) or not at all
_ATTACK_NAMED = ("name", "budget", "epochs", "momentum", "sharpen")
# the published DivQAT's temperature and direction (the trainer's defaults) go unnamed
_TRAIN_DEFAULTS = {f.name: f.default for f in dataclasses.fields(VictimConfig) if f.name in ("temperature", "direction")}


def _fmt(value):
    return f"{value:g}" if isinstance(value, float) else str(value)


def trained_defense(method):
    """(name, setting) of the trained part of a victim from its method record; a key at its
    default (:data:`_TRAIN_DEFAULTS`) is left out, so a config that spells the default names the
    same victim as one that does not."""
    name = method["name"]
    if name != "divqat":
        return name, ""
    objective = method.get("objective", "divqat")
    if objective == "proxy":
        objective = f"proxy-{method.get('proxy_target', 'kl')}"
    setting = " ".join(f"{k}={_fmt(method[k])}" for k in _TRAIN_KEYS
                       if k in method and method[k] != _TRAIN_DEFAULTS.get(k))
    return objective, setting


def defense_of(record):
    """(defense, setting) of an attack cell record (module docstring)."""
    trained, trained_setting = trained_defense(record["method"])
    output = dict(record["defense"])
    out_name = output.pop("name")
    if out_name == "none":
        return trained, trained_setting
    out_setting = " ".join(f"{k}={_fmt(v)}" for k, v in sorted(output.items()))
    if trained == "qat":
        return out_name, out_setting
    return f"{trained}+{out_name}", "; ".join(s for s in (trained_setting, out_setting) if s)


def attack_of(record):
    """The attack's name, with its other options in parentheses (``sink-aware(max_share=0.3,mode=drop)``),
    ``-sharpen<tau>`` for sharpened KnockoffNets answers and ``-<E>ep`` for a surrogate trained
    for E epochs other than :data:`SURROGATE_EPOCHS`."""
    attack = record["attack"]
    sharpen = attack.get("sharpen")
    epochs = attack.get("epochs", SURROGATE_EPOCHS)
    options = ",".join(f"{k}={_fmt(v)}" for k, v in sorted(attack.items()) if k not in _ATTACK_NAMED)
    return (attack["name"] + (f"({options})" if options else "")
            + (f"-sharpen{_fmt(sharpen)}" if sharpen is not None else "")
            + (f"-{epochs}ep" if epochs != SURROGATE_EPOCHS else ""))


def pair_of(run_dir):
    """``victim<-queryset`` of an experiment output directory (from its configs/)."""
    pairs = set()
    for path in sorted(Path(run_dir, "configs").glob("*.json")):
        data = json.loads(path.read_text())["data"]
        pairs.add(f"{data['victim']}<-{data.get('queryset', 'none')}")
    if len(pairs) != 1:
        raise ValueError(f"{run_dir}: expected the configs of one dataset pair, found {sorted(pairs) or 'none'}")
    return pairs.pop()


def victim_setting(data):
    """The victim's training data in a word, from its ``[data]`` config: ``full`` (the whole
    training set) when ``train_limit`` is absent, ``train<N>`` when it is N."""
    limit = data.get("train_limit")
    return "full" if limit is None else f"train{limit}"


def victim_settings(run_dir):
    """{victim config_key and key: :func:`victim_setting`} of the victim records of ``run_dir``
    (``DIR/victims/*/victim.json``, whose ``spec`` holds the victim's data config)."""
    out = {}
    for path in sorted(Path(run_dir, "victims").glob("*/victim.json")):
        record = json.loads(path.read_text())
        if "spec" not in record:
            continue
        setting = victim_setting(record["spec"]["data"])
        out[record["key"]] = out[record.get("config_key", record["key"])] = setting
    return out


def _victim_setting_of(record, settings, path):
    """The victim setting of an attack cell record: its victim's (by config key, else by key)."""
    for key in (record.get("spec", {}).get("victim"), record.get("victim_key")):
        if key in settings:
            return settings[key]
    raise ValueError(f"{path}: its victim ({record.get('victim_key')}) has no record with a data config "
                     "in the directory's victims/")


def _cells(run_dirs):
    """(path, record, identity row) of every finished attack cell of ``run_dirs``; the identity
    row holds :data:`IDENTITY`."""
    for run_dir in run_dirs:
        pair, settings = pair_of(run_dir), victim_settings(run_dir)
        for path in sorted(Path(run_dir, "cells").glob("*.json")):
            record = json.loads(path.read_text())
            defense, setting = defense_of(record)
            yield path, record, {"pair": pair, "victim_setting": _victim_setting_of(record, settings, path),
                                 "defense": defense, "setting": setting, "attack": attack_of(record),
                                 "budget": record["attack"]["budget"], "seed": record["seed"]}


def _sorted(rows):
    return sorted(rows, key=lambda r: tuple(str(r[c]) if c not in ("budget", "seed") else r[c] for c in IDENTITY))


def frontier_rows(run_dirs):
    """The frontier rows (dicts with :data:`COLUMNS`) of the finished cells of ``run_dirs``.

    One row per :data:`IDENTITY`: the same cell computed twice (e.g. by two code versions into
    one directory) is kept once when its metrics agree and refused, naming both files, when they
    differ, so no seed is counted twice."""
    rows, seen = [], {}
    for path, record, row in _cells(run_dirs):
        row.update({metric: record["metrics"][metric] for metric in METRICS})
        identity = tuple(row[c] for c in IDENTITY)
        if identity in seen:
            first, kept = seen[identity]
            if any(kept[c] != row[c] for c in METRICS):
                raise ValueError(f"{first} and {path}: the same frontier cell {identity} with different "
                                 "metrics; remove one")
            continue
        seen[identity] = (path, row)
        rows.append(row)
    return _sorted(rows)


def answered_label_rows(run_dirs):
    """One row per attack cell that kept the histogram of the labels its thief was answered
    (argmax of every answer, on its own queries; the cell keeps it as {class: count} over every
    class, :func:`divqat.attacks.answers.answered_histogram`): :data:`IDENTITY` plus ``class_<k>``
    counts."""
    rows = {}
    for _, record, row in _cells(run_dirs):
        counts = record["metrics"].get("answered_hist")
        if counts is not None:
            hist = [counts[k] for k in sorted(counts, key=int)]
            rows[tuple(row[c] for c in IDENTITY)] = {**row, **{f"class_{k}": n for k, n in enumerate(hist)}}
    return _sorted(rows.values())


def read_frontier_csv(path):
    """The rows of a frontier.csv (numbers parsed, the rest text)."""
    return read_rows(path, types={"budget": int, "seed": int, **{m: float for m in METRICS}})


def group_key(row):
    """The cell a frontier row belongs to across seeds: (pair, victim setting, attack, budget,
    defense, setting)."""
    return (row["pair"], row["victim_setting"], row["attack"], row["budget"], row["defense"], row["setting"])


def by_cell(rows):
    """{:func:`group_key`: {seed: row}} of frontier rows."""
    groups = defaultdict(dict)
    for r in rows:
        groups[group_key(r)][r["seed"]] = r
    return groups


def seed_mean(by_seed, metric):
    """The mean of ``metric`` over the rows of ``by_seed`` (seed -> row)."""
    return sum(r[metric] for r in by_seed.values()) / len(by_seed)


def paired_difference(by_seed, base, metric) -> Paired:
    """The :class:`divqat.results.stats.Paired` comparison of ``metric`` in ``by_seed`` minus
    ``base`` (seed -> row) on the seeds both have (Student-t interval, n - 1 degrees of freedom,
    docs/science.md §9), or None without a common seed."""
    seeds = sorted(set(by_seed) & set(base))
    if not seeds:
        return None
    return paired(seeds, [by_seed[s][metric] for s in seeds], [base[s][metric] for s in seeds])


def _paired(summary, by_seed, base):
    """Add the paired differences of ``by_seed`` minus ``base`` (seed -> row) to ``summary``:
    ``d_<metric>`` (a Paired, when a seed is common) and ``paired_n``."""
    summary["paired_n"] = len(set(by_seed) & set(base))
    for metric in METRICS:
        d = paired_difference(by_seed, base, metric)
        if d is not None:
            summary[f"d_{metric}"] = d
    return summary


def summarize(rows):
    """Per :func:`group_key`: n, means, and paired differences against the baseline (plain QAT,
    no output defense) on the seeds both have."""
    groups = by_cell(rows)
    out = []
    for (pair, vset, attack, budget, defense, setting), by_seed in sorted(groups.items(), key=lambda kv: str(kv[0])):
        summary = {"pair": pair, "victim_setting": vset, "attack": attack, "budget": budget, "defense": defense,
                   "setting": setting, "n": len(by_seed)}
        for metric in METRICS:
            summary[metric] = seed_mean(by_seed, metric)
        out.append(_paired(summary, by_seed, groups.get((pair, vset, attack, budget) + BASELINE, {})))
    return out


def comparisons(rows, reference=("dcp", "beta=0.5")):
    """The goal's other paired comparisons (docs/science.md §9), per pair, victim setting, attack
    and budget: every stacked defense ``X+D`` (setting ``x; d``) against the output defense ``D``
    (setting ``d``) alone on the QAT victim, and every trained-in defense against ``reference``."""
    groups = by_cell(rows)
    out = []
    for (pair, vset, attack, budget, defense, setting), by_seed in sorted(groups.items(), key=lambda kv: str(kv[0])):
        if "+" in defense:
            against = (defense.split("+", 1)[1], setting.split("; ", 1)[-1])
        elif defense in TRAINED:
            against = reference
        else:
            continue
        base = groups.get((pair, vset, attack, budget) + against)
        if base:
            out.append(_paired({"pair": pair, "victim_setting": vset, "attack": attack, "budget": budget,
                                "defense": defense, "setting": setting, "against": " ".join(against)},
                               by_seed, base))
    return out


def dominates(a, b):
    """Whether point ``a`` (accuracy, agreement, ...) dominates ``b``: accuracy at least as high
    and agreement at least as low, one of them strictly."""
    return a[0] >= b[0] and a[1] <= b[1] and (a[0], a[1]) != (b[0], b[1])


def pareto(points):
    """The points (accuracy, agreement, ...) no other one :func:`dominates`, sorted by accuracy."""
    return sorted(p for p in points if not any(dominates(q, p) for q in points))
