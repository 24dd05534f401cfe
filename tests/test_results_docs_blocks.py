"""The docs' generated blocks (divqat.results.docs_blocks and `divqat report --update`): a block
is rewritten from the CSV it names, the text around it is kept, a marker without its closing
one is refused, and every table block committed in README.md and docs/results/ is what the
committed CSVs give today."""
from pathlib import Path

import pytest

from divqat.cli import main
from divqat.results.docs_blocks import update_text
from divqat.results.tables import to_csv

ROOT = Path(__file__).resolve().parent.parent


def _run(tmp_path):
    """A ten-seed run directory whose comparisons.csv holds one claim row: DivQAT alpha 1 against
    QAT, KnockoffNets at 5000 queries, adversary error +12.5 points, interval +2 to +23."""
    run = tmp_path / "data" / "ten_seeds" / "mnist_fmnist"
    run.mkdir(parents=True)
    row = {"kind": "method", "metric": "adversary_error", "unit": "points",
           "treatment_label": "divqat(alpha=1.0, direction=forward)", "baseline_label": "qat", "victim": None,
           "defense": "none", "attack": "knockoff(epochs=20, momentum=0.9)", "budget": 5000, "n": 10,
           "mean_diff": 12.5, "ci_low": 2.0, "ci_high": 23.0, "established": True, "signs": "9 of 10 seeds higher",
           "verdict": "established (higher)",
           "diffs": " ".join(["12.5"] * 10)}
    (run / "comparisons.csv").write_text(to_csv([row]))
    return run


def test_a_block_is_rewritten_from_its_csv_and_the_rest_kept(tmp_path):
    _run(tmp_path)
    doc = ("# Page\n\nbefore\n\n<!-- seeds10 data/ten_seeds/mnist_fmnist verdicts -->\nstale table\n"
           "<!-- /seeds10 -->\n\nafter\n")
    text, count = update_text(doc, tmp_path)
    assert count == 1 and "stale table" not in text
    assert text.startswith("# Page\n\nbefore\n\n<!-- seeds10 data/ten_seeds/mnist_fmnist verdicts -->\n")
    assert text.endswith("<!-- /seeds10 -->\n\nafter\n")
    line = next(line for line in text.splitlines() if line.startswith("| §3 adversary error up"))
    assert line == ("| §3 adversary error up (KnockoffNets) | mnist_fmnist | DivQAT (alpha=1.0) | 10 | +12.50 | "
                    "+2.00 to +23.00 | 9 of 10 seeds higher | reproduced |")
    assert update_text(text, tmp_path) == (text, 1)  # a second pass changes nothing


def test_a_marker_without_its_closing_one_is_refused(tmp_path):
    _run(tmp_path)
    with pytest.raises(ValueError, match="no closing <!-- /seeds10 -->"):
        update_text("<!-- seeds10 data/ten_seeds/mnist_fmnist verdicts -->\n| x |\n", tmp_path)
    assert update_text("<!-- a comment, not a block -->\n", tmp_path) == ("<!-- a comment, not a block -->\n", 0)


def test_a_malformed_marker_of_a_known_block_is_refused(tmp_path):
    # two spaces before the end: the marker once went unmatched and its block stayed empty
    with pytest.raises(ValueError, match="not a block marker"):
        update_text("<!-- comparisons data/x.csv defense adversary_error  -->\n<!-- /comparisons -->\n", tmp_path)


def test_update_command(tmp_path, capsys):
    _run(tmp_path)
    page = tmp_path / "page.md"
    page.write_text("<!-- seeds10 data/ten_seeds/mnist_fmnist verdicts -->\n<!-- /seeds10 -->\n")
    assert main(["report", "--update", str(tmp_path)]) == 0
    assert "| §3 adversary error up (KnockoffNets) |" in page.read_text()
    assert "1 generated blocks in 1 files" in capsys.readouterr().out
    assert main(["report", "--update", str(tmp_path / "missing.md")]) == 2
    assert "missing.md" in capsys.readouterr().err


@pytest.mark.parametrize("page", ["README.md", *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "docs" / "results").glob("*.md"))])
def test_committed_tables_are_generated_from_the_committed_csvs(page):
    path = ROOT / page
    text = path.read_text()
    assert update_text(text, path.parent, figures=False)[0] == text, f"run: divqat report --update {page}"


def test_verdicts_block_links_each_claim_to_its_page(tmp_path):
    run = _run(tmp_path)
    other = run.parent / "fmnist_mnist"  # the other pair's run, with no comparison rows
    other.mkdir()
    (other / "comparisons.csv").write_text((run / "comparisons.csv").read_text().splitlines()[0] + "\n")
    for study in ("trained_in", "label_only"):
        (tmp_path / "data" / study).mkdir()
        (tmp_path / "data" / study / "frontier.csv").write_text(
            "pair,victim_setting,defense,setting,attack,budget,seed,victim_accuracy,agreement,adversary_error\n")
    (tmp_path / "docs").mkdir()
    text, count = update_text("<!-- verdicts ../data ../pages headline -->\n<!-- /verdicts -->\n", tmp_path / "docs")
    assert count == 1
    assert ("| adversary error up (KnockoffNets): DivQAT (alpha=1.0), MNIST victim | reproduced | "
            "+12.50 points (+2.00 to +23.00) | 10 | [DivQAT vs QAT](../pages/divqat-vs-qat.md) (§3) |") in text
    assert text.count("\n|") == 3  # header, separator, the one claim found (no goal rows without frontier rows)


def test_comparisons_block_filters_kind_metric_and_treatment(tmp_path):
    _run(tmp_path)
    block = "<!-- comparisons data/ten_seeds/mnist_fmnist/comparisons.csv method adversary_error {} -->\n<!-- /comparisons -->\n"
    text, _ = update_text(block.format("divqat"), tmp_path)
    assert ("| divqat(alpha=1.0, direction=forward) | none | knockoff@5000 | adv error | 10 | +12.50 | "
            "+2.00 to +23.00 | 9 of 10 seeds higher | established (higher) | ") in text
    for other in (block.format("adv-"), block.replace("adversary_error", "agreement").format("divqat")):
        assert update_text(other, tmp_path)[0].count("\n|") == 2  # the header alone


LABEL_ONLY_HEADER = "pair,victim_setting,defense,setting,attack,budget,seed,victim_accuracy,agreement,adversary_error\n"


def _label_only_data(tmp_path, rows):
    """The data of a verdicts block: the claim run of :func:`_run` (and the other pair's, empty),
    an empty trained-in frontier and a label-only frontier of ``rows`` (CSV lines)."""
    run = _run(tmp_path)
    other = run.parent / "fmnist_mnist"
    other.mkdir()
    (other / "comparisons.csv").write_text((run / "comparisons.csv").read_text().splitlines()[0] + "\n")
    for study, lines in (("trained_in", []), ("label_only", rows)):
        (tmp_path / "data" / study).mkdir()
        (tmp_path / "data" / study / "frontier.csv").write_text(LABEL_ONLY_HEADER + "".join(f"{r}\n" for r in lines))
    (tmp_path / "docs").mkdir()


def test_verdicts_block_lists_label_goal_rows_and_the_headline_only_ten_seed_ones(tmp_path):
    _label_only_data(tmp_path, [f"mnist<-fashion-mnist,full,{d},,copycat-20ep,5000,{s},0.99,{a},0.5"
                                for s in range(4) for d, a in (("qat", 0.70), ("misinform", (0.30, 0.50, 0.36, 0.40)[s]))])
    text, _ = update_text("<!-- verdicts ../data ../pages -->\n<!-- /verdicts -->\n", tmp_path / "docs")
    # Δ = mean(-0.40, -0.20, -0.34, -0.30) = -0.31; three thieves not run: undecided
    assert ("| label-only goal: misinform, MNIST victim (trained on all its training images) | undecided (n = 4 of 10) | "
            "agreement -31.00 points") in text
    text, _ = update_text("<!-- verdicts ../data ../pages headline -->\n<!-- /verdicts -->\n", tmp_path / "docs")
    assert "label-only goal" not in text


def test_verdicts_headline_summarises_each_goal_per_victim_by_its_best_setting(tmp_path):
    # ten seeds of Copycat only (so neither setting reaches the goal): misinform steals least but
    # costs a point of top-1, diverse keeps top-1; the best setting is the one that keeps it
    victims = (("qat", 0.99, 0.70), ("misinform", 0.98, 0.30), ("diverse", 0.99, 0.50))
    _label_only_data(tmp_path, [f"mnist<-fashion-mnist,full,{d},,copycat-20ep,5000,{s},{acc},{a},0.5"
                                for s in range(10) for d, acc, a in victims])
    text, _ = update_text("<!-- verdicts ../data ../pages headline -->\n<!-- /verdicts -->\n", tmp_path / "docs")
    goal_lines = [line for line in text.splitlines() if "goal" in line]
    assert goal_lines == ["| label-only goal, MNIST victim (trained on all its training images), best setting: diverse "
                          "| not reached by any of 2 settings | agreement -20.00 points (-20.00 to -20.00, Copycat) | 10 | "
                          "[label-only thieves](../pages/label-only.md) (§10) |"]


def test_report_table_quotes_the_table_under_a_heading(tmp_path):
    (tmp_path / "report.md").write_text(
        "# Report\n\n## Victims\n\n| victim | acc |\n|---|---|\n| fp | 97.05 |\n| qat | 97.12 |\n\n"
        "## Robustness (accuracy)\n\n| model | which |\n|---|---|\n| victim | fp |\n| surrogate | x |\n")
    text, _ = update_text("<!-- report_table report.md Victims -->\n<!-- /report_table -->\n", tmp_path)
    assert "| victim | acc |\n|---|---|\n| fp | 97.05 |\n| qat | 97.12 |\n<!-- /report_table -->" in text
    text, _ = update_text("<!-- report_table report.md Robustness_(accuracy) victim -->\n<!-- /report_table -->\n",
                          tmp_path)
    assert "| victim | fp |" in text and "surrogate" not in text
    with pytest.raises(ValueError, match="no heading starting with 'Attacks'"):
        update_text("<!-- report_table report.md Attacks -->\n<!-- /report_table -->\n", tmp_path)
