"""The mixed thief: its queries are the query set and the thief part of the victim's test
split, in the share asked, never the scoring part; counted; refused before any query."""
import pytest
import torch
from attack_helpers import check_refused

from divqat.attacks import attack_call, mixed
from divqat.attacks.registry import scoring_limit
from divqat.blackbox import BlackBox
from divqat.data import load_tensors


class RecordingBlackBox(BlackBox):
    """A black box that keeps every query batch it answers."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.seen = []

    def query(self, x):
        self.seen.append(x.clone())
        return super().query(x)


def _rows_in(queries, images):
    """How many of ``queries`` equal some row of ``images``."""
    return int((torch.cdist(queries.flatten(1), images.flatten(1)) == 0).any(dim=1).sum())


def test_queries_mix_the_thief_part_in_the_share_asked(victim, data):
    x = data[0]
    test = load_tensors("digits", "test")[0]  # 360 images: scoring part 0..199, thief part 200..359
    bb = RecordingBlackBox(victim, budget=300)
    _, record = mixed(bb, x, 300, victim_data="digits", in_share=0.5, thief_from=200, train={"epochs": 1},
                      progress=False)
    queries = torch.cat(bb.seen)
    assert len(queries) == bb.queries_used == record["queries_used"] == 300
    assert record["in_distribution_queries"] == 150
    assert _rows_in(queries, test[200:]) == 150 and _rows_in(queries, x) == 150
    assert _rows_in(queries, test[:200]) == 0  # the scoring part is never queried
    assert len({tuple(q.flatten().tolist()) for q in queries}) == 300  # no image twice
    assert sum(record["answered_hist"].values()) == 300


def test_scoring_limit():
    assert scoring_limit("mixed", {"thief_from": 200}) == 200
    assert scoring_limit("mixed", {}) == 5000
    assert scoring_limit("knockoff", {"thief_from": 200}) is None


def test_attack_call_needs_the_victim_dataset():
    with pytest.raises(ValueError, match="victim_data"):
        attack_call("mixed", {}, queryset="digits")
    _, kwargs = attack_call("mixed", {}, queryset="digits", victim_data="digits")
    assert kwargs["victim_data"] == "digits"


@pytest.mark.parametrize("call,match", [
    (lambda bb, x, y: mixed(bb, x, 10, victim_data="digits", in_share=1.5), "in_share"),
    (lambda bb, x, y: mixed(bb, x, 10, victim_data="digits", thief_from=360), "no thief part"),
    (lambda bb, x, y: mixed(bb, x, 42, victim_data="digits", in_share=0.5, thief_from=340), "needs 21 of the 20"),
    (lambda bb, x, y: mixed(bb, x, 10, victim_data="mnist", thief_from=9990), "not the victim's dataset"),
    (lambda bb, x, y: mixed(bb, x, 10, victim_data="digits", soft=1), "soft"),
])
def test_bad_input(victim, data, call, match):
    check_refused(victim, data, call, match)
