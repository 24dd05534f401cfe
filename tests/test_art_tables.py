"""The ART cross-check's table (divqat.results.art_tables, the ``art_crosscheck`` block): means,
sample standard deviations and the Welch interval of the difference, against scipy."""
import statistics

from scipy.stats import ttest_ind

from divqat.results.art_tables import welch_interval
from divqat.results.docs_blocks import update_text

DIVQAT, ART = [0.80, 0.84, 0.90], [0.70, 0.78]


def test_welch_interval_matches_scipy():
    ci = ttest_ind(DIVQAT, ART, equal_var=False).confidence_interval(0.95)
    low, high = welch_interval(DIVQAT, ART)
    assert abs(low - ci.low) < 1e-9 and abs(high - ci.high) < 1e-9


def test_block(tmp_path):
    rows = [f"fp,{impl},knockoff,{seed},5000,20,5000,0.97,{agr - 0.01:.4f},{agr:.4f},1"
            for impl, values in (("divqat", DIVQAT), ("art", ART + [None])) for seed, agr in enumerate(values)
            if agr is not None]  # seed 2 has no ART run: left out
    (tmp_path / "art.csv").write_text("victim,implementation,attack,seed,budget,epochs,queries_used,victim_accuracy,"
                                      "adversary_accuracy,agreement,seconds\n" + "\n".join(rows) + "\n")
    text, _ = update_text("<!-- art_crosscheck art.csv -->\n<!-- /art_crosscheck -->\n", tmp_path)
    a, b = [100 * v for v in DIVQAT[:2]], [100 * v for v in ART]
    ci = ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    assert text.splitlines()[3] == (
        f"| fp | knockoff | 2 | {statistics.mean(a):.1f} ± {statistics.stdev(a):.1f} | "
        f"{statistics.mean(b):.1f} ± {statistics.stdev(b):.1f} | {statistics.mean(a) - statistics.mean(b):.1f} "
        f"[{ci.low:.1f}, {ci.high:.1f}] | {statistics.mean(a) - 1:.1f} ± {statistics.stdev(a):.1f} | "
        f"{statistics.mean(b) - 1:.1f} ± {statistics.stdev(b):.1f} |")
