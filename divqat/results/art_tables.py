"""The ART cross-check's table (scripts/art_crosscheck.py, one row per victim, implementation,
attack and seed): per victim and attack, the mean ± sample standard deviation over seeds of each
implementation's agreement and accuracy, and the difference of the mean agreements divqat − ART
with its 95 % Welch interval: Δ ± t(0.975, ν)·√(s_a²/n_a + s_b²/n_b), ν the Welch–Satterthwaite
degrees of freedom (the two sides draw their query sets with different generators, so runs of
one seed are not paired). Seeds that lack either implementation are left out.
"""
import math
import statistics

from .stats import t_quantile
from .tables import markdown_table


def welch_interval(a, b, confidence=0.95):
    """(low, high) of the Welch interval of mean(a) − mean(b) (module docstring)."""
    va, vb = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
    dof = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    diff, half = statistics.mean(a) - statistics.mean(b), t_quantile(0.5 + confidence / 2, dof) * math.sqrt(va + vb)
    return diff - half, diff + half


def _difference(a, b):
    diff = statistics.mean(a) - statistics.mean(b)
    if min(len(a), len(b)) < 2:
        return f"{diff:.1f}"
    low, high = welch_interval(a, b)
    return f"{diff:.1f} [{low:.1f}, {high:.1f}]"


def _stat(values):
    sd = f" ± {statistics.stdev(values):.1f}" if len(values) > 1 else ""
    return f"{statistics.mean(values):.1f}{sd}"


def summary(rows):
    """The Markdown table (module docstring) of the cross-check's rows (CSV cells as text)."""
    out = []
    for victim, attack in sorted({(r["victim"], r["attack"]) for r in rows}):
        by = {(r["implementation"], str(r["seed"])): r for r in rows if (r["victim"], r["attack"]) == (victim, attack)}
        seeds = sorted({s for _, s in by if ("divqat", s) in by and ("art", s) in by}, key=int)
        if not seeds:
            continue
        cols = {(impl, key): [100 * float(by[impl, s][key]) for s in seeds]
                for impl in ("divqat", "art") for key in ("agreement", "adversary_accuracy")}
        out.append([victim, attack, len(seeds), _stat(cols["divqat", "agreement"]), _stat(cols["art", "agreement"]),
                    _difference(cols["divqat", "agreement"], cols["art", "agreement"]),
                    _stat(cols["divqat", "adversary_accuracy"]), _stat(cols["art", "adversary_accuracy"])])
    return markdown_table(["victim", "attack", "seeds", "divqat agreement", "ART agreement", "divqat - ART [95 % CI]",
                           "divqat accuracy", "ART accuracy"], out)
