"""The accuracy-fidelity frontier of every defense (docs/science.md §8 and §9).

    python -m divqat.experiments.frontier run CONFIG.toml [CONFIG.toml ...] --out runs/frontier_mnist --seeds 0 1 2
    python -m divqat.experiments.frontier table runs/frontier_mnist runs/frontier_fmnist --out docs/reproduction

``run`` runs experiment configs into one output directory seed by seed (every config for seed
0, then every config for seed 1, ...), so an interrupted run leaves whole seeds of every
config, the configs share their cached victims, and a rerun resumes. ``table`` reads the finished attack cells of experiment output directories (``DIR/cells/*.json``, one
directory per dataset pair: the pair is read from ``DIR/configs/*.json``) and writes

- ``frontier.csv``: one row per (pair, defense, setting, attack, budget, seed) with
  ``victim_accuracy`` (top-1 of the answers honest users get, i.e. under the output defense),
  ``agreement`` and ``adversary_error`` of the surrogate (docs/science.md §6);
- ``frontier.md``: per (pair, attack, budget) and defense, the means and the paired
  differences against the baseline (plain QAT, no output defense) on the same seeds: mean,
  95 % Student-t interval (n - 1 degrees of freedom) and the count of seeds where the
  defense's agreement is lower; then the same paired differences of every stacked defense
  against its output defense alone, and of every trained-in defense against DCP beta 0.5;
  then the goal of every trained-in setting, checked (:mod:`divqat.experiments.frontier_goal`);
- ``frontier_<pair>_<attack>_<budget>.png``: agreement against victim accuracy, one point per
  (defense, setting) at the baseline's mean plus its paired mean difference (:func:`frontier_point`),
  the Pareto front (higher accuracy, lower agreement) drawn as a line.

A defense is named by what the victim was trained with (``qat``; ``divqat`` as published, with
its alpha, T and direction in the setting; ``nonlabel``, ``proxy-kl``, ``proxy-entropy``, the
objectives of :mod:`divqat.train.objectives`) and the output defense it answers through
(``dcp``, ``reverse_sigmoid``, ``mad``, ...): an output defense on a QAT victim is named by the
output defense alone, a trained-in defense behind one by both (``nonlabel+dcp``).
"""
import argparse
import csv
import dataclasses
import io
import json
import math
import sys
from collections import defaultdict
from pathlib import Path

from divqat.train.victim import VictimConfig
from divqat.utils import atomic_write_text

from . import stats

COLUMNS = ("pair", "defense", "setting", "attack", "budget", "seed", "victim_accuracy", "agreement",
           "adversary_error")
BASELINE = ("qat", "")
SURROGATE_EPOCHS = 10  # the frontier configs' surrogate training; other lengths are named in the attack
_TRAINED = ("divqat", "nonlabel", "proxy-kl", "proxy-entropy")
_TRAIN_KEYS = ("alpha", "temperature", "direction", "kl_cap", "margin", "margin_weight", "distill", "proxy_transforms")
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
    """The attack's name, with ``-sharpen<tau>`` for sharpened KnockoffNets answers and
    ``-<E>ep`` for a surrogate trained for E epochs other than :data:`SURROGATE_EPOCHS`."""
    attack = record["attack"]
    sharpen = attack.get("sharpen")
    epochs = attack.get("epochs", SURROGATE_EPOCHS)
    return (attack["name"] + (f"-sharpen{_fmt(sharpen)}" if sharpen is not None else "")
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


def frontier_rows(run_dirs):
    """The frontier rows (dicts with :data:`COLUMNS`) of the finished cells of ``run_dirs``.

    One row per (pair, defense, setting, attack, budget, seed): the same cell computed twice
    (e.g. by two code versions into one directory) is kept once when its metrics agree and
    refused, naming both files, when they differ, so no seed is counted twice."""
    rows, seen = [], {}
    for run_dir in run_dirs:
        pair = pair_of(run_dir)
        for path in sorted(Path(run_dir, "cells").glob("*.json")):
            record = json.loads(path.read_text())
            defense, setting = defense_of(record)
            m = record["metrics"]
            row = {"pair": pair, "defense": defense, "setting": setting, "attack": attack_of(record),
                   "budget": record["attack"]["budget"], "seed": record["seed"],
                   "victim_accuracy": m["victim_accuracy"], "agreement": m["agreement"],
                   "adversary_error": m["adversary_error"]}
            identity = tuple(row[c] for c in COLUMNS[:6])
            if identity in seen:
                first, kept = seen[identity]
                if any(kept[c] != row[c] for c in COLUMNS[6:]):
                    raise ValueError(f"{first} and {path}: the same frontier cell {identity} with different "
                                     "metrics; remove one")
                continue
            seen[identity] = (path, row)
            rows.append(row)
    rows.sort(key=lambda r: tuple(str(r[c]) if c not in ("budget", "seed") else r[c] for c in COLUMNS[:6]))
    return rows


def paired_interval(differences, level=0.95):
    """(mean, low, high) of paired differences: the Student-t interval of
    :func:`divqat.experiments.stats.t_interval` (n - 1 degrees of freedom, docs/science.md §9);
    low and high are NaN for n = 1 (no interval)."""
    mean, _ = stats.mean_sd(differences)
    low, high = stats.t_interval(differences, confidence=level)
    return (mean, math.nan, math.nan) if low is None else (mean, low, high)


def _by_cell(rows):
    groups = defaultdict(dict)
    for r in rows:
        groups[(r["pair"], r["attack"], r["budget"], r["defense"], r["setting"])][r["seed"]] = r
    return groups


def seed_mean(by_seed, metric):
    """The mean of ``metric`` over the rows of ``by_seed`` (seed -> row)."""
    return sum(r[metric] for r in by_seed.values()) / len(by_seed)


def paired_difference(by_seed, base, metric):
    """(mean, low, high) of ``metric`` in ``by_seed`` minus ``base`` (seed -> row) on the seeds
    both have (:func:`paired_interval`; None without a common seed), the count of those seeds
    where it is lower, and their number."""
    seeds = sorted(set(by_seed) & set(base))
    diffs = [by_seed[s][metric] - base[s][metric] for s in seeds]
    return (paired_interval(diffs) if diffs else None), sum(d < 0 for d in diffs), len(seeds)


def _paired(summary, by_seed, base):
    """Add the paired differences of ``by_seed`` minus ``base`` (seed -> row) to ``summary``."""
    for metric in ("victim_accuracy", "agreement", "adversary_error"):
        d, lower, summary["paired_n"] = paired_difference(by_seed, base, metric)
        if d is not None:
            summary[f"d_{metric}"] = d
            if metric == "agreement":
                summary["lower_agreement_seeds"] = lower
    return summary


def summarize(rows):
    """Per (pair, attack, budget, defense, setting): n, means, and paired differences against
    the baseline (plain QAT, no output defense) on the seeds both have."""
    groups = _by_cell(rows)
    out = []
    for (pair, attack, budget, defense, setting), by_seed in sorted(groups.items(), key=lambda kv: str(kv[0])):
        summary = {"pair": pair, "attack": attack, "budget": budget, "defense": defense, "setting": setting,
                   "n": len(by_seed)}
        for metric in ("victim_accuracy", "agreement", "adversary_error"):
            summary[metric] = seed_mean(by_seed, metric)
        out.append(_paired(summary, by_seed, groups.get((pair, attack, budget) + BASELINE, {})))
    return out


def comparisons(rows, reference=("dcp", "beta=0.5")):
    """The goal's other paired comparisons (docs/science.md §9), per pair, attack and budget:
    every stacked defense ``X+D`` (setting ``x; d``) against the output defense ``D`` (setting
    ``d``) alone on the QAT victim, and every trained-in defense against ``reference``."""
    groups = _by_cell(rows)
    out = []
    for (pair, attack, budget, defense, setting), by_seed in sorted(groups.items(), key=lambda kv: str(kv[0])):
        if "+" in defense:
            against = (defense.split("+", 1)[1], setting.split("; ", 1)[-1])
        elif defense in _TRAINED:
            against = reference
        else:
            continue
        base = groups.get((pair, attack, budget) + against)
        if base:
            out.append(_paired({"pair": pair, "attack": attack, "budget": budget, "defense": defense,
                                "setting": setting, "against": " ".join(against)}, by_seed, base))
    return out


def dominates(a, b):
    """Whether point ``a`` (accuracy, agreement, ...) dominates ``b``: accuracy at least as high
    and agreement at least as low, one of them strictly."""
    return a[0] >= b[0] and a[1] <= b[1] and (a[0], a[1]) != (b[0], b[1])


def pareto(points):
    """The points (accuracy, agreement, ...) no other one :func:`dominates`, sorted by accuracy."""
    return sorted(p for p in points if not any(dominates(q, p) for q in points))


def _interval(d, scale=100.0):
    mean, low, high = d
    if math.isnan(low):
        return f"{scale * mean:+.2f} (n = 1)"
    return f"{scale * mean:+.2f} [{scale * low:+.2f}, {scale * high:+.2f}]"


def markdown(summaries):
    """The frontier tables (one per pair, attack and budget) as Markdown."""
    lines = []
    key = None
    for s in summaries:
        if (s["pair"], s["attack"], s["budget"]) != key:
            key = (s["pair"], s["attack"], s["budget"])
            lines += ["", f"### {s['pair']}, {s['attack']}, {s['budget']} queries", "",
                      "| defense | setting | n | victim acc. | agreement | Δ acc. (pts, 95 % CI) | "
                      "Δ agreement (pts, 95 % CI) | lower agr. |", "|---|---|---|---|---|---|---|---|"]
        paired = "d_agreement" in s and (s["defense"], s["setting"]) != BASELINE
        lines.append(f"| {s['defense']} | {s['setting']} | {s['n']} | {100 * s['victim_accuracy']:.2f} | "
                     f"{100 * s['agreement']:.2f} | {_interval(s['d_victim_accuracy']) if paired else ''} | "
                     f"{_interval(s['d_agreement']) if paired else ''} | "
                     f"{str(s['lower_agreement_seeds']) + '/' + str(s['paired_n']) if paired else ''} |")
    return "\n".join(lines).lstrip() + "\n"


def comparisons_markdown(items):
    """The stacked and reference comparisons as one Markdown table."""
    lines = ["| pair | attack | budget | defense | setting | against | n | Δ acc. (pts, 95 % CI) | "
             "Δ agreement (pts, 95 % CI) | lower agr. |", "|---|---|---|---|---|---|---|---|---|---|"]
    for c in items:
        if c["paired_n"]:
            lines.append(f"| {c['pair']} | {c['attack']} | {c['budget']} | {c['defense']} | {c['setting']} | "
                         f"{c['against']} | {c['paired_n']} | {_interval(c['d_victim_accuracy'])} | "
                         f"{_interval(c['d_agreement'])} | {c['lower_agreement_seeds']}/{c['paired_n']} |")
    return "\n".join(lines) + "\n"


def frontier_point(summary, baseline):
    """(accuracy, agreement) in percent at which a defense is drawn: the baseline's mean over
    all its seeds plus the defense's paired mean difference from it (its own means when it has
    no seed in common with the baseline), so that settings run on a subset of the seeds sit
    where they would on the baseline's seeds instead of where those seeds happen to lie."""
    if baseline is not None and summary.get("paired_n") and (summary["defense"], summary["setting"]) != BASELINE:
        return (100 * (baseline["victim_accuracy"] + summary["d_victim_accuracy"][0]),
                100 * (baseline["agreement"] + summary["d_agreement"][0]))
    return 100 * summary["victim_accuracy"], 100 * summary["agreement"]


def plot(summaries, out_dir):
    """One Pareto plot per (pair, attack, budget) of :func:`frontier_point`, the marker area
    growing with the number of seeds; returns the written paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = defaultdict(list)
    for s in summaries:
        groups[(s["pair"], s["attack"], s["budget"])].append(s)
    paths = []
    for (pair, attack, budget), items in sorted(groups.items(), key=lambda kv: str(kv[0])):
        fig, ax = plt.subplots(figsize=(7, 5))
        families = sorted({s["defense"] for s in items})
        colors = {f: plt.cm.tab20(i % 20) for i, f in enumerate(families)}
        baseline = next((s for s in items if (s["defense"], s["setting"]) == BASELINE), None)
        points = [frontier_point(s, baseline) for s in items]
        for s, (x, y) in zip(items, points):
            ax.scatter(x, y, color=colors[s["defense"]], label=s["defense"], s=12 + 4 * s["n"])
        front = pareto(points)
        ax.plot([p[0] for p in front], [p[1] for p in front], "k--", lw=0.8, label="Pareto front")
        handles, labels = ax.get_legend_handles_labels()
        unique = dict(zip(labels, handles))
        ax.legend(unique.values(), unique.keys(), fontsize=7, loc="best")
        ax.set_xlabel("victim top-1 accuracy under the defense (%)")
        ax.set_ylabel("surrogate agreement with the victim (%)")
        ax.set_title(f"{pair}, {attack}, {budget} queries\n(QAT mean over its seeds + paired Δ; marker area ∝ seeds)",
                     fontsize=9)
        fig.tight_layout()
        name = f"frontier_{pair.replace('<-', '_from_')}_{attack}_{budget}.png"
        fig.savefig(Path(out_dir) / name, dpi=110)
        plt.close(fig)
        paths.append(Path(out_dir) / name)
    return paths


def write_frontier(run_dirs, out_dir, plots=True):
    """Write frontier.csv, frontier.md and (``plots``) the Pareto plots into ``out_dir``."""
    from .frontier_goal import check_goal, goal_markdown  # it builds on this module

    for run_dir in run_dirs:
        if not Path(run_dir, "cells").is_dir():
            raise FileNotFoundError(f"{run_dir}: no cells/ directory (not an experiment output directory)")
    rows = frontier_rows(run_dirs)
    if not rows:
        raise ValueError(f"no finished attack cells in {', '.join(map(str, run_dirs))}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    table = io.StringIO()
    writer = csv.DictWriter(table, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(table.getvalue(), out_dir / "frontier.csv")
    summaries = summarize(rows)
    text = ("## Against plain QAT (no output defense), paired by seed\n\n" + markdown(summaries)
            + "\n## Stacked against the output defense alone; trained-in against DCP beta 0.5\n\n"
            + comparisons_markdown(comparisons(rows))
            + "\n## The trained-in defense goal, checked (divqat.experiments.frontier_goal)\n\n"
            + goal_markdown(check_goal(rows)))
    atomic_write_text(text, out_dir / "frontier.md")
    if plots:
        plot(summaries, out_dir)
    return rows, summaries


def run_seed_major(config_paths, out_dir, seeds, progress=False):
    """Run every config for each seed in turn into ``out_dir`` (module docstring); returns the
    summed work counts of :func:`divqat.experiments.runner.run_experiment`."""
    from divqat.checks import check_output_dir

    from .config import load_experiment_config
    from .runner import run_experiment

    check_output_dir("--out", out_dir)
    configs = [load_experiment_config(path) for path in config_paths]  # all validated before any work
    totals = defaultdict(int)
    for seed in seeds:
        for config in configs:
            counts = run_experiment(dataclasses.replace(config, seeds=[seed]), out_dir, progress=progress, report=False)
            for key, value in counts.items():
                totals[key] += value
            print(f"frontier run: seed {seed} {config.name}: {counts}", flush=True)
    return dict(totals)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m divqat.experiments.frontier", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run experiment configs seed by seed into one directory")
    run.add_argument("configs", nargs="+", help="experiment TOML files (one dataset pair)")
    run.add_argument("--out", required=True, help="experiment output directory (re-running resumes it)")
    run.add_argument("--seeds", type=int, nargs="+", required=True, help="seeds, in the order to run them")
    table = sub.add_parser("table", help="write frontier.csv, frontier.md and the plots")
    table.add_argument("runs", nargs="+", help="experiment output directories (one per dataset pair)")
    table.add_argument("--out", required=True, help="directory for frontier.csv, frontier.md and the plots")
    table.add_argument("--no-plots", action="store_true", help="tables only")
    args = parser.parse_args(argv)
    try:
        if args.command == "run":
            print(f"frontier run: {run_seed_major(args.configs, args.out, args.seeds)}")
            return 0
        rows, _ = write_frontier(args.runs, args.out, plots=not args.no_plots)
    except (ValueError, FileNotFoundError) as exc:
        print(f"frontier: error: {exc}", file=sys.stderr)
        return 2
    print(f"frontier: {len(rows)} rows -> {args.out}/frontier.csv")
    return 0


if __name__ == "__main__":
    sys.exit(main())
