"""The frontier's plots (docs/science.md §8 and §9): one PNG per (pair, victim setting, attack,
budget), agreement against victim accuracy.

Each (defense, setting) is one numbered point at :func:`frontier_point`, with the paired 95 %
Student-t intervals of its differences from plain QAT as horizontal (accuracy) and vertical
(agreement) error bars; the list beside the axes names every number's formulation and setting
(α, β, ...). Markers are hollow and numbers are offset in turn, so points that coincide stay
visible. The Pareto front (higher accuracy, lower agreement: lower right is better for the
defender, as the axis labels say) is a dashed line. Titles say in words who the victim and the thief are, what the
thief sees (probabilities or labels only) and its budget.
"""
import re
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from divqat.utils import atomic_write  # noqa: E402

from .frontier import BASELINE, pareto, summarize  # noqa: E402
from .words import OFFSETS, setting_words, title  # noqa: E402

ZOOM = 10.0  # points of top-1 below plain QAT that the axes show


def frontier_point(summary, baseline):
    """(accuracy, agreement) in percent at which a defense is drawn: the baseline's mean over
    all its seeds plus the defense's paired mean difference from it (its own means when it has
    no seed in common with the baseline), so that settings run on a subset of the seeds sit
    where they would on the baseline's seeds instead of where those seeds happen to lie."""
    if baseline is not None and summary.get("paired_n") and (summary["defense"], summary["setting"]) != BASELINE:
        return (100 * (baseline["victim_accuracy"] + summary["d_victim_accuracy"].mean_diff),
                100 * (baseline["agreement"] + summary["d_agreement"].mean_diff))
    return 100 * summary["victim_accuracy"], 100 * summary["agreement"]


def error_bar(summary, metric):
    """(below, above) in points of the paired 95 % interval of ``metric``'s difference, (0, 0)
    without one (the baseline, one seed, no common seed)."""
    d = summary.get(f"d_{metric}")
    if d is None or d.ci_low is None or (summary["defense"], summary["setting"]) == BASELINE:
        return 0.0, 0.0
    return 100 * (d.mean_diff - d.ci_low), 100 * (d.ci_high - d.mean_diff)


def plot_group(items, path):
    """The plot of one (pair, victim setting, attack, budget)'s summaries into ``path``. Points
    more than :data:`ZOOM` points of top-1 below plain QAT are listed, not drawn, so that the
    axes show the settings a defender could choose between; error bars run off the axes where
    they are wider than them."""
    fig, ax = plt.subplots(figsize=(14, 7))
    families = sorted({s["defense"] for s in items})
    colors = {f: plt.cm.tab20(i % 20) for i, f in enumerate(families)}
    baseline = next((s for s in items if (s["defense"], s["setting"]) == BASELINE), None)
    points = [frontier_point(s, baseline) for s in items]
    floor = (points[items.index(baseline)][0] if baseline else max(p[0] for p in points)) - ZOOM
    legend, drawn = [], []
    for i, (s, (x, y)) in enumerate(zip(items, points), start=1):
        words = f"{i:>2}  {setting_words(s['defense'], s['setting'])}, n = {s['n']}"
        if x < floor:
            legend.append(f"{words}: off the axes at {x:.1f} %, {y:.1f} %")
            continue
        drawn.append((x, y))
        legend.append(words)
        xerr, yerr = error_bar(s, "victim_accuracy"), error_bar(s, "agreement")
        ax.errorbar(x, y, xerr=[[xerr[0]], [xerr[1]]], yerr=[[yerr[0]], [yerr[1]]], fmt="none",
                    ecolor=colors[s["defense"]], alpha=0.45, capsize=2, lw=0.7)
        ax.plot(x, y, "o", mfc="none", color=colors[s["defense"]], ms=6)
        ax.annotate(str(i), (x, y), xytext=OFFSETS[i % len(OFFSETS)], textcoords="offset points", fontsize=7,
                    color=colors[s["defense"]])
    xs, ys = [p[0] for p in drawn], [p[1] for p in drawn]
    pad_x, pad_y = max(0.5, 0.08 * (max(xs) - min(xs))), max(2.0, 0.08 * (max(ys) - min(ys)))
    ax.set_xlim(min(xs) - pad_x, min(100.0, max(xs) + pad_x))
    ax.set_ylim(max(0.0, min(ys) - pad_y), min(100.0, max(ys) + pad_y))
    front = pareto(points)
    ax.plot([p[0] for p in front], [p[1] for p in front], "k--", lw=0.8, label="Pareto front")
    ax.legend(fontsize=7, loc="upper left")
    ax.set_xlabel("victim top-1 accuracy under the defense (%)  →  better for honest users")
    ax.set_ylabel("thief's surrogate agreement with the victim (%)  ↓  better for the defender")
    ax.set_title(title(items[0]["pair"], items[0]["victim_setting"], items[0]["attack"], items[0]["budget"]),
                 fontsize=9)
    fig.text(0.57, 0.95, "\n".join(legend), va="top", ha="left", fontsize=6.5, family="monospace")
    fig.text(0.01, 0.005, "Each point: plain QAT's mean over its seeds plus the defense's paired mean difference; "
             "bars: paired 95 % intervals (Student t), cut at the axes. Lower right is better for the defender.", fontsize=7)
    fig.subplots_adjust(left=0.05, right=0.55, top=0.9, bottom=0.09)
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=110))
    plt.close(fig)


def plot_frontier(rows, out_dir):
    """One plot per (pair, victim setting, attack, budget) of frontier ``rows`` into
    ``out_dir``; returns the written paths."""
    groups = defaultdict(list)
    for s in summarize(rows):
        groups[(s["pair"], s["victim_setting"], s["attack"], s["budget"])].append(s)
    paths = []
    for (pair, vset, attack, budget), items in sorted(groups.items(), key=lambda kv: str(kv[0])):
        name = re.sub(r"[^A-Za-z0-9._-]+", "_", f"{pair.replace('<-', '_from_')}_{vset}_{attack}_{budget}").strip("_")
        path = Path(out_dir) / f"frontier_{name}.png"
        plot_group(items, path)
        paths.append(path)
    return paths
