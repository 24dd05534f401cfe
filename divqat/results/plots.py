"""PNG plots of an experiment's summaries (matplotlib, Agg backend), mean ± std over seeds.

- error_vs_alpha.png: victim and adversary classification error against alpha (QAT at 0),
  per KL direction, undefended victims, each attack at its largest budget (DivQAT, docs/science.md §3)
- kl_vs_alpha.png: KL(f_fp || f_q) and mean L1 between f_fp's and f_q's probabilities against alpha
- budget.png: adversary accuracy and agreement against the query budget, per victim
- defense_tradeoff.png: victim accuracy against adversary error along each defense's parameter
  sweep, for the QAT and DivQAT victims, each point labelled with its setting and its paired 95 %
  intervals against the victim undefended (docs/science.md §4, §9)
- robustness.png: accuracy under FGSM/PGD against eps of victims and surrogates (docs/science.md §7)

Every function takes the tables of :func:`divqat.results.aggregate.collect` and a
directory, and returns the file names it wrote (none when the tables lack the data).
"""
import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from divqat.utils import atomic_write  # noqa: E402

from .stats import paired  # noqa: E402
from .words import OFFSETS, greek, thief_words  # noqa: E402

ROBUST_COLUMN = re.compile(r"^(surrogate_)?robust_(\w+?)_([0-9.]+)_mean$")


def _save(fig, path):
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=110, bbox_inches="tight"))
    plt.close(fig)


def _panels(n, width=4.5, height=3.8):
    """A figure with n panels, at most three per row; returns (fig, flat list of n axes)."""
    cols = min(3, n)
    rows = -(-n // cols)
    # constrained layout: no title runs into the axis labels of the panel above it
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False, layout="constrained")
    flat = [ax for row in axes for ax in row]
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, flat[:n]


def _title(ax, *lines):
    ax.set_title("\n".join(lines), fontsize=8)


def _legend(ax, fontsize=7):
    """The legend under the panel, where it covers no curve."""
    ax.legend(fontsize=fontsize, loc="upper center", bbox_to_anchor=(0.5, -0.2), frameon=False)


def _figure_legend(fig, axes):
    """One legend under all the panels, for curves that every panel shares."""
    entries = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            entries.setdefault(label, handle)
    fig.legend(entries.values(), entries.keys(), loc="outside lower center", ncol=2, fontsize=8, frameon=False)


def _max_budget_rows(rows, defense="none"):
    """Rows of the given defense, each attack at its largest budget."""
    rows = [r for r in rows if r.get("defense") == defense]
    top = {}
    for r in rows:
        top[r["attack_label"]] = max(top.get(r["attack_label"], 0), r["budget"] or 0)
    return [r for r in rows if (r["budget"] or 0) == top[r["attack_label"]]]


def _line(ax, points, label, **kw):
    """points: iterable of (x, mean, std); drawn sorted by x with error bars."""
    points = sorted((p for p in points if p[0] is not None and p[1] is not None), key=lambda p: p[0])
    if not points:
        return
    xs, ms, ss = zip(*points)
    ss = [0.0 if s is None else s for s in ss]  # one seed: no deviation, no error bar
    ax.errorbar(xs, ms, yerr=ss, marker="o", capsize=3, label=label, **kw)


def _series(row):
    """What a DivQAT row's curve against alpha is: its direction and every other method
    parameter (``forward``, ``forward, kl_cap=1.0``), so runs that differ in more than alpha
    are separate curves, never joined."""
    others = sorted((k[len("method_"):], v) for k, v in row.items()
                    if k.startswith("method_") and k not in ("method_alpha", "method_direction") and v is not None)
    return ", ".join([row["direction"]] + [f"{k}={v}" for k, v in others])


def _alpha_series(rows):
    """{series: the DivQAT rows of that series plus the QAT rows (alpha 0)}, by series name."""
    qat = [r for r in rows if r.get("method") == "qat"]
    series = {}
    for r in rows:
        if r.get("method") == "divqat":
            series.setdefault(_series(r), list(qat)).append(r)
    return dict(sorted(series.items()))


def _alpha_points(rows, metric, transform=lambda v: v):
    """(alpha, mean, std) of ``metric`` in ``rows``."""
    return [(r["alpha"], transform(r[f"{metric}_mean"]), r[f"{metric}_std"]) for r in rows if f"{metric}_mean" in r]


def plot_error_vs_alpha(tables, out_dir):
    rows = [r for r in _max_budget_rows(tables["cells_summary"]) if r.get("alpha") is not None]
    if not any(r["method"] == "divqat" for r in rows):
        return []
    attacks = sorted({r["attack_label"] for r in rows})
    fig, axes = _panels(len(attacks))
    for ax, attack in zip(axes, attacks):
        sub = [r for r in rows if r["attack_label"] == attack]
        for series, series_rows in _alpha_series(sub).items():
            _line(ax, _alpha_points(series_rows, "adversary_error"), f"adversary error ({series})")
            _line(ax, _alpha_points(series_rows, "victim_accuracy", lambda v: 1 - v),
                  f"victim error ({series})", linestyle="--")
        _title(ax, attack, f"budget {sub[0]['budget']}")
        ax.set(xlabel="alpha (0 = QAT)", ylabel="error")
    _figure_legend(fig, axes)
    _save(fig, Path(out_dir) / "error_vs_alpha.png")
    return ["error_vs_alpha.png"]


def plot_kl_vs_alpha(tables, out_dir):
    rows = [r for r in tables["victims_summary"] if r.get("alpha") is not None and "kl_fp_q_mean" in r]
    if not any(r["method"] == "divqat" for r in rows):
        return []
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6), layout="constrained")
    for series, series_rows in _alpha_series(rows).items():
        _line(axes[0], _alpha_points(series_rows, "kl_fp_q"), series)
        _line(axes[1], _alpha_points(series_rows, "l1_fp_q"), series)
    axes[0].set(title="KL(f_fp || f_q) on the test set", xlabel="alpha (0 = QAT)", ylabel="nats")
    axes[1].set(title="mean L1(p_fp, p_q)", xlabel="alpha (0 = QAT)", ylabel="L1")
    for ax in axes:
        _legend(ax)
    _save(fig, Path(out_dir) / "kl_vs_alpha.png")
    return ["kl_vs_alpha.png"]


def plot_budget(tables, out_dir):
    rows = [r for r in tables["cells_summary"] if r.get("defense") == "none" and r.get("budget")]
    # only the attacks run at several budgets make a curve
    attacks = sorted(a for a in {r["attack_label"] for r in rows}
                     if len({r["budget"] for r in rows if r["attack_label"] == a}) > 1)
    if not attacks:
        return []
    fig, axes = plt.subplots(2, len(attacks), figsize=(5.5 * len(attacks), 7.5), squeeze=False)
    fig.subplots_adjust(hspace=0.35)
    for j, attack in enumerate(attacks):
        sub = [r for r in rows if r["attack_label"] == attack]
        for victim in sorted({r["victim_label"] for r in sub}):
            vr = [r for r in sub if r["victim_label"] == victim]
            for i, metric in enumerate(("adversary_accuracy", "agreement")):
                _line(axes[i][j], [(r["budget"], r.get(f"{metric}_mean"), r.get(f"{metric}_std")) for r in vr], victim)
        for i, metric in enumerate(("adversary accuracy", "agreement")):
            _title(axes[i][j], attack)
            axes[i][j].set(xlabel="queries (budget)", ylabel=metric, xscale="log")
            axes[i][j].legend(fontsize=6)
    _save(fig, Path(out_dir) / "budget.png")
    return ["budget.png"]


def tradeoff_points(cells, victim, defense, attack, budget):
    """[(setting, (error, accuracy) in %, (error, accuracy) interval half-widths (below, above))]
    of one victim along one defense's sweep: no defense at its mean over its seeds, each
    setting at that mean plus its paired mean difference from it on the same seeds, with the
    paired 95 % Student-t interval (docs/science.md §9)."""
    rows = [r for r in cells if r["victim_label"] == victim and r["attack_label"] == attack and r["budget"] == budget]
    base = {r["seed"]: r for r in rows if r["defense"] == "none"}
    if not base:
        return []
    mean = {m: 100 * sum(r[m] for r in base.values()) / len(base) for m in ("adversary_error", "victim_accuracy")}
    out = [("none", (mean["adversary_error"], mean["victim_accuracy"]), ((0, 0), (0, 0)))]
    for label in sorted({r["defense_label"] for r in rows if r["defense"] == defense}):
        mine = {r["seed"]: r for r in rows if r["defense_label"] == label}
        seeds = sorted(set(mine) & set(base))
        if not seeds:
            continue
        point, bars = [], []
        for m in ("adversary_error", "victim_accuracy"):
            p = paired(seeds, [100 * mine[s][m] for s in seeds], [100 * base[s][m] for s in seeds])
            point.append(mean[m] + p.mean_diff)
            bars.append((0, 0) if p.ci_low is None else (p.mean_diff - p.ci_low, p.ci_high - p.mean_diff))
        out.append((greek(label[len(defense):].strip("()")), tuple(point), tuple(bars)))
    return out


def plot_defense_tradeoff(tables, out_dir):
    """Victim accuracy against adversary error along each defense's parameter sweep (one panel
    per defense), one curve per QAT or DivQAT victim, each point labelled with its setting and
    drawn with its paired 95 % intervals against the same victim undefended."""
    cells = [r for r in tables["cells"] if r.get("method") in ("qat", "divqat")]
    defenses = sorted({r["defense"] for r in cells if r.get("defense") not in (None, "none")})
    if not defenses:
        return []
    defended = [r for r in cells if r["defense"] != "none"]
    reference = sorted({r["attack_label"] for r in defended})[0]  # an attack run against the defenses
    budget = max(r["budget"] for r in defended if r["attack_label"] == reference)
    sample = next(r for r in defended if r["attack_label"] == reference)
    thief = thief_words(sample["attack"], sample.get("attack_epochs"), budget)
    fig, axes = _panels(len(defenses), width=5.5, height=4.6)
    for ax, defense in zip(axes, defenses):
        for k, victim in enumerate(sorted({r["victim_label"] for r in cells})):
            points = tradeoff_points(cells, victim, defense, reference, budget)
            if len(points) < 2:
                continue
            points.sort(key=lambda p: p[1][0])
            line = ax.plot([p[1][0] for p in points], [p[1][1] for p in points], lw=0.8, label=greek(victim))[0]
            for i, (setting, (x, y), (xerr, yerr)) in enumerate(points):
                ax.errorbar(x, y, xerr=[[xerr[0]], [xerr[1]]], yerr=[[yerr[0]], [yerr[1]]], fmt="o", mfc="none",
                            color=line.get_color(), ms=5, capsize=2, lw=0.7, alpha=0.8)
                ax.annotate(setting, (x, y), xytext=OFFSETS[(i + k) % len(OFFSETS)], textcoords="offset points",
                            fontsize=6, color=line.get_color())
        _title(ax, f"{defense} along its sweep", thief)
        ax.set(xlabel="thief's error (%)  →  better for the defender",
               ylabel="victim accuracy under the defense (%)  ↑  better for users")
        _legend(ax, fontsize=6)
    fig.suptitle("Points: the undefended victim's mean plus the paired mean difference; bars: paired 95 % "
                 "intervals (Student t) against the same victim undefended, same seeds.", fontsize=7)
    _save(fig, Path(out_dir) / "defense_tradeoff.png")
    return ["defense_tradeoff.png"]


def _robust_curves(row):
    """{(who, attack): [(eps, mean, std)]} from a summary row's robust_* columns."""
    curves = {}
    for col, mean in row.items():
        m = ROBUST_COLUMN.match(col)
        if m:
            who = "surrogate" if m.group(1) else "victim"
            std = row.get(col[: -len("_mean")] + "_std")
            curves.setdefault((who, m.group(2)), []).append((float(m.group(3)), mean, std))
    return curves


def plot_robustness(tables, out_dir):
    panels = {}
    for r in tables["victims_summary"]:
        for key, pts in _robust_curves(r).items():
            panels.setdefault(key, []).append((r["victim_label"], pts))
    for r in _max_budget_rows(tables["cells_summary"]):
        for key, pts in _robust_curves(r).items():
            panels.setdefault(key, []).append((f"{r['attack_label']} of {r['victim_label']}", pts))
    if not panels:
        return []
    keys = sorted(panels)
    # room under each panel for its legend, one line per curve
    fig, axes = _panels(len(keys), height=3.8 + 0.13 * max(len(panels[k]) for k in keys))
    for ax, key in zip(axes, keys):
        for label, pts in sorted(panels[key], key=lambda entry: entry[0]):
            _line(ax, pts, label)
        _title(ax, f"{key[0]}s under {key[1].upper()}")
        ax.set(xlabel="eps", ylabel="accuracy")
        _legend(ax, fontsize=6)
    _save(fig, Path(out_dir) / "robustness.png")
    return ["robustness.png"]


PLOTS = (plot_error_vs_alpha, plot_kl_vs_alpha, plot_budget, plot_defense_tradeoff, plot_robustness)


def write_plots(tables, out_dir):
    """Every plot the tables have data for; returns the file names written."""
    return [name for plot in PLOTS for name in plot(tables, out_dir)]
