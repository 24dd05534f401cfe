"""The ``cell_means`` block (divqat.results.cell_tables): an experiment's attack cells as a pivot
of mean ± sample standard deviation over seeds, on a small results CSV worked out by hand."""
import pytest

from divqat.results.docs_blocks import update_text
from divqat.results.tables import to_csv

ROWS = [{"victim_label": victim, "defense": defense, "budget": budget, "seed": seed, "adversary_error": err}
        for victim, defense, budget, seed, err in (
            ("divqat(alpha=1.0)", "none", 1000, 0, 0.50), ("divqat(alpha=1.0)", "none", 1000, 1, 0.60),
            ("qat", "none", 1000, 0, 0.40), ("qat", "none", 1000, 1, 0.44), ("qat", "none", 1000, 2, 0.42),
            ("qat", "none", 200, 0, 0.90), ("qat", "dcp", 1000, 0, 0.99))]


def _block(tmp_path, words):
    (tmp_path / "results.csv").write_text(to_csv(ROWS))
    text, count = update_text(f"<!-- cell_means results.csv {words} -->\n<!-- /cell_means -->\n", tmp_path)
    assert count == 1
    return text.splitlines()[1:-1]


def test_pivot(tmp_path):
    # qat at 1000: mean 42, sample sd 2 (40, 44, 42); divqat: 55 ± 7.07 (50, 60); qat first, budgets in order
    assert _block(tmp_path, "adversary_error victim_label budget defense=none") == [
        "| victim_label | n | budget 200: adversary_error | budget 1000: adversary_error |", "|---|---|---|---|",
        "| qat | 3 | 90.00 | 42.00 ± 2.00 |", "| divqat(alpha=1.0) | 2 | — | 55.00 ± 7.07 |"]


def test_filters_are_checked(tmp_path):
    assert _block(tmp_path, "adversary_error victim_label budget defense=dcp")[2] == "| qat | 1 | 99.00 |"
    with pytest.raises(ValueError, match="filters: no row matches"):
        _block(tmp_path, "adversary_error victim_label budget defense=mad")
    with pytest.raises(ValueError, match="each is column=value"):
        _block(tmp_path, "adversary_error victim_label budget none")


def test_seed_ratios(tmp_path):
    (tmp_path / "results.csv").write_text(to_csv(ROWS))
    text, _ = update_text("<!-- seed_ratios results.csv adversary_error victim_label budget qat defense=none -->\n"
                          "<!-- /seed_ratios -->\n", tmp_path)
    # seeds 0 and 1 at 1000: 0.50 / 0.40, 0.60 / 0.44; divqat has no cell at 200
    assert text.splitlines()[1:-1] == ["| victim_label | budget 200 | budget 1000 |", "|---|---|---|",
                                       f"| divqat(alpha=1.0) |  | {0.50 / 0.40:.2f}, {0.60 / 0.44:.2f} |"]


def test_queries_to_reach(tmp_path):
    rows = [{"victim_label": v, "budget": b, "seed": 0, "adversary_accuracy": a}
            for v, b, a in (("fp", 1000, 0.40), ("fp", 2000, 0.60), ("robust", 1000, 0.30), ("robust", 2000, 0.50),
                            ("robust", 4000, 0.70))]
    (tmp_path / "results.csv").write_text(to_csv(rows))
    text, _ = update_text("<!-- queries_to_reach results.csv adversary_accuracy victim_label fp -->\n"
                          "<!-- /queries_to_reach -->\n", tmp_path)
    # 40 % on the robust curve: 1000 + (0.40 - 0.30) / (0.50 - 0.30) * 1000 = 1500; 60 %: 2000 + 0.5 * 2000 = 3000
    assert text.splitlines()[3:5] == ["| 1,000 | 40.00 | 1,500 (1.50×) |", "| 2,000 | 60.00 | 3,000 (1.50×) |"]
