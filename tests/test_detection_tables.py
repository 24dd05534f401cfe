"""The detection tables and per-monitor sentences (divqat.results.detection_tables, the
``detection_tables`` and ``detection_verdicts`` blocks) on a small detection CSV whose counts,
medians and rates are worked out by hand below."""
import pytest

from divqat.results.detection_tables import PARTS, read_detection_csv, table
from divqat.results.docs_blocks import update_text
from divqat.results.tables import to_csv

FIELDS = ("kind", "client", "share", "pair", "seed", "monitor", "queries", "alarm_query", "answered",
          "agreement_log", "agreement_block", "agreement_labels")


def _row(kind, client, share, seed, monitor, queries, alarm, answered, log=None, block=None, labels=None):
    return dict(zip(FIELDS, (kind, client, share, "a<-b", seed, monitor, queries, alarm, answered, log, block, labels)))


ROWS = [
    # one attack, two seeds, 1,000 queries; m1 flags both seeds (100, 300), m2 one (900)
    _row("attack", "knockoff", 0, 0, "m1", 1000, 100, 64, 0.5, 0.2, 0.4),
    _row("attack", "knockoff", 0, 0, "m2", 1000, None, 1000, 0.5, 0.5, 0.5),
    _row("attack", "knockoff", 0, 1, "m1", 1000, 300, 256, 0.7, 0.3, 0.6),
    _row("attack", "knockoff", 0, 1, "m2", 1000, 900, 896, 0.7, 0.6, 0.7),
    # the adaptive thief at shares 0 and 0.5
    _row("mixed", "knockoff", 0, 0, "m1", 1000, 20, 0), _row("mixed", "knockoff", 0, 0, "m2", 1000, None, 1000),
    _row("mixed", "knockoff", 0, 1, "m1", 1000, 30, 0), _row("mixed", "knockoff", 0, 1, "m2", 1000, None, 1000),
    _row("mixed", "knockoff", 0.5, 0, "m1", 1000, 40, 0), _row("mixed", "knockoff", 0.5, 0, "m2", 1000, None, 1000),
    _row("mixed", "knockoff", 0.5, 1, "m1", 1000, None, 1000), _row("mixed", "knockoff", 0.5, 1, "m2", 1000, None, 1000),
    # honest clients of 2,000 queries: m1 flags one burst of duplicates, m2 one random client and both bursts
    _row("honest", "random", 0, 0, "m1", 2000, None, 2000), _row("honest", "random", 0, 0, "m2", 2000, None, 2000),
    _row("honest", "random", 0, 1, "m1", 2000, None, 2000), _row("honest", "random", 0, 1, "m2", 2000, 50, 2000),
    _row("honest", "dup", 0, 0, "m1", 2000, 10, 2000), _row("honest", "dup", 0, 0, "m2", 2000, 5, 2000),
    _row("honest", "dup", 0, 1, "m1", 2000, None, 2000), _row("honest", "dup", 0, 1, "m2", 2000, 5, 2000),
]


@pytest.fixture
def csv_dir(tmp_path):
    (tmp_path / "detection.csv").write_text(to_csv(ROWS, FIELDS))
    return tmp_path


def _block(doc_dir, marker):
    name = marker.split()[0]
    text, count = update_text(f"<!-- {marker} -->\n<!-- /{name} -->\n", doc_dir)
    assert count == 1
    return text.splitlines()[1:-1]


def test_attack_table(csv_dir):
    lines = _block(csv_dir, "detection_tables detection.csv attacks")
    # m1: delays 100, 300; answered 64/1000, 256/1000 -> median 0.16; log 0.6, block 0.25, labels 0.5;
    # kept (0.25 - 0.1) / (0.6 - 0.1) = 0.3. m2: one delay 900; answered 1, 0.896 -> 0.948; block 0.55 -> kept 0.9
    assert lines[2:] == ["| a<-b | knockoff | m1 | 2/2 | 200 | 300 | 0.16 | 0.60 | 0.25 | 0.50 | 0.30 |",
                         "| a<-b | knockoff | m2 | 1/2 | 900 | 900 | 0.95 | 0.60 | 0.55 | 0.60 | 0.90 |"]


def test_honest_table(csv_dir):
    lines = _block(csv_dir, "detection_tables detection.csv honest")
    # false alarms per 10,000 queries = 10^4 * flagged / queries: 1/4000, 1/8000, 2/4000, 3/8000
    assert lines[2:] == ["| m1 | random | 0/2 | 4000 | 0.00 |", "| m1 | dup | 1/2 | 4000 | 2.50 |",
                         "| m1 | all | 1/4 | 8000 | 1.25 |", "| m2 | random | 1/2 | 4000 | 2.50 |",
                         "| m2 | dup | 2/2 | 4000 | 5.00 |", "| m2 | all | 3/4 | 8000 | 3.75 |"]


def test_mixed_table(csv_dir):
    lines = _block(csv_dir, "detection_tables detection.csv mixed")
    assert lines[2:] == ["| a<-b | 0 | m1 | 2/2 | 25 | 30 |", "| a<-b | 0 | m2 | 0/2 | - | - |",
                         "| a<-b | 0.5 | m1 | 1/2 | 40 | 40 |", "| a<-b | 0.5 | m2 | 0/2 | - | - |"]


def test_verdicts(csv_dir):
    # m1: median over seeds 200 <= 1,000; m2: median of 900 and never is never
    assert _block(csv_dir, "detection_verdicts detection.csv") == [
        "- `m1`: flags every attack within 1,000 queries on every pair; a thief blocked at its alarm keeps at "
        "most 0.30 of its agreement above chance (goal: ≤ 0.5); false alarms on 1 of 4 honest clients (1.25 per "
        "10,000 queries: dup 1/2); the thief mixing in-distribution images into its queries is flagged on at "
        "least half the seeds on a<-b at shares 0, 0.5.",
        "- `m2`: late or missing (median alarm past 1,000 queries, a missed seed counting as never) on a<-b: "
        "knockoff (median delay 900 over the flagged seeds, 1/2 flagged); a thief blocked at its alarm keeps at "
        "most 0.90 of its agreement above chance (goal: ≤ 0.5); false alarms on 3 of 4 honest clients (3.75 per "
        "10,000 queries: random 1/2, dup 2/2); the thief mixing in-distribution images into its queries is "
        "flagged on at least half the seeds on a<-b at no share."]


def test_unknown_part_is_refused(csv_dir):
    with pytest.raises(ValueError, match="part: 'delays' is not one of attacks, honest, mixed"):
        table(read_detection_csv(csv_dir / "detection.csv"), "delays")
    assert PARTS == ("attacks", "honest", "mixed")
