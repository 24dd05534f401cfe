"""The frontier's sentences (divqat.results.frontier_verdicts, the ``frontier_verdicts``,
``frontier_effects`` and ``frontier_seeds`` blocks) on ten constructed seeds whose paired
differences and Student-t intervals are computed here with scipy."""
import statistics

from scipy import stats

from divqat.results.docs_blocks import update_text
from divqat.results.frontier import COLUMNS
from divqat.results.tables import to_csv

PAIR, VSET, SEEDS = "mnist<-fashion-mnist", "train10000", range(10)
VICTIM = "MNIST victim (trained on 10,000 training images) ← Fashion-MNIST queries"


def _rows(copycat_drop):
    """QAT at 90 % top-1 and 60 % agreement; proxy-kl 0.2 points of top-1 lower, KnockoffNets
    agreement 20 + s points lower on seed s, Copycat ``copycat_drop`` lower; DCP beta 0.5 10
    points lower against KnockoffNets; the stack 15 below DCP alone."""
    cells = {("qat", ""): (0.90, 0.60, 0.60), ("proxy-kl", "alpha=0.3"): (0.898, None, 0.60 - copycat_drop),
             ("dcp", "beta=0.5"): (0.90, 0.50, 0.60), ("proxy-kl+dcp", "alpha=0.3; beta=0.5"): (0.898, 0.35, None)}
    rows = []
    for (defense, setting), (acc, knockoff, copycat) in cells.items():
        for seed in SEEDS:
            agreement = {"knockoff": 0.40 - 0.01 * seed if knockoff is None else knockoff, "copycat": copycat}
            rows += [dict(zip(COLUMNS, (PAIR, VSET, defense, setting, attack, 5000, seed, acc, agr, 1 - agr)))
                     for attack, agr in agreement.items() if agr is not None]
    return rows


def _block(tmp_path, rows, marker):
    (tmp_path / "frontier.csv").write_text(to_csv(rows, COLUMNS))
    name = marker.split()[0]
    text, count = update_text(f"<!-- {name} frontier.csv{marker[len(name):]} -->\n<!-- /{name} -->\n", tmp_path)
    assert count == 1
    return text.splitlines()[1:-1]


def _points(diffs):
    """``mean [low, high]`` in points, the 95 % Student-t interval with n - 1 degrees of freedom."""
    mean, half = statistics.mean(diffs), stats.t.ppf(0.975, len(diffs) - 1) * stats.sem(diffs)
    return f"{mean:+.2f} [{mean - half:+.2f}, {mean + half:+.2f}]"


KNOCKOFF = _points([-20.0 - s for s in SEEDS])  # -24.50 [-26.67, -22.33]


def test_trained_verdict_reached(tmp_path):
    assert _block(tmp_path, _rows(0.12), "frontier_verdicts") == [
        f"- *proxy-kl (α=0.3), {VICTIM}*: top-1 -0.20 [-0.20, -0.20]; agreement knockoff {KNOCKOFF}, 10/10 lower, "
        "copycat -12.00 [-12.00, -12.00], 10/10 lower. Goal against the 10-epoch attacker: reached on this pair; "
        "stacked, against dcp beta=0.5 alone: -15.00 [-15.00, -15.00], 10/10 lower (knockoff)."]
    assert KNOCKOFF == "-24.50 [-26.67, -22.33]"


def test_trained_verdict_names_what_fails(tmp_path):
    line, = _block(tmp_path, _rows(0.05), "frontier_verdicts")
    assert "copycat -5.00 [-5.00, -5.00], 10/10 lower. Goal against the 10-epoch attacker: not reached " \
           "(copycat drop short of 10); stacked" in line


def test_output_effects(tmp_path):
    assert _block(tmp_path, _rows(0.12), "frontier_effects 5000 10") == [
        f"- *dcp (β=0.5), {VICTIM}*: top-1 +0.00 [+0.00, +0.00]; agreement knockoff -10.00 [-10.00, -10.00], "
        "10/10 lower, copycat +0.00 [+0.00, +0.00], 0/10 lower."]
    assert _block(tmp_path, _rows(0.12), "frontier_effects 5000 11") == [""]  # fewer seeds than asked: an empty block


def test_seed_table(tmp_path):
    lines = _block(tmp_path, _rows(0.12), "frontier_seeds knockoff 5000 proxy-kl")
    assert lines[0] == "| victim | defense | " + " | ".join(f"seed {s}" for s in SEEDS) + " |"
    assert lines[2:] == [f"| {VICTIM} | proxy-kl (α=0.3) | " + " | ".join(f"-{20 + s}" for s in SEEDS) + " |"]


def test_epoch_gains(tmp_path):
    longer = [dict(zip(COLUMNS, (PAIR, VSET, "qat", "", "knockoff-20ep", 5000, s, 0.90, 0.70 - 0.01 * s, 0.30)))
              for s in SEEDS]  # 10 - s points above the 10-epoch thief's 60 %
    assert _block(tmp_path, _rows(0.12) + longer, "frontier_epochs 5000") == [
        f"- *{VICTIM}*: knockoff-20ep − knockoff {_points([10.0 - s for s in SEEDS])}, 10/10 higher."]
