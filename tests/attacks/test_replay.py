"""divqat.attacks.replay: answers recorded, saved, and replayed for free in the order they were asked;
anything else is paid for, and a damaged or foreign transfer set is refused naming the file."""
import pytest
import torch

from divqat.attacks.replay import RecordingBlackBox, load_transfer
from divqat.blackbox import BlackBox

KEY = {"attack": "knockoff", "seed": 0}


def _queries(data, *starts):
    return [data[2][s:s + 5] for s in starts]


def test_replayed_in_order_then_paid(victim, data, tmp_path):
    q1, q2, q3 = _queries(data, 0, 5, 10)
    first = RecordingBlackBox(BlackBox(victim, budget=10), budget=10)
    answers = [first.query(q) for q in (q1, q2)]
    assert first.fresh_queries == first.blackbox.queries_used == 10 and first.budget_left == 0
    first.save(tmp_path / "transfer.pt", KEY)

    calls, record = load_transfer(tmp_path / "transfer.pt", KEY, 10)
    assert record is None and len(calls) == 2
    inner = BlackBox(victim, budget=10)
    again = RecordingBlackBox(inner, budget=10, calls=calls)
    assert again.budget_left == 10  # the recorded answers count as answers still to come
    assert torch.equal(again.query(q1), answers[0]) and inner.queries_used == 0  # replayed: free
    assert torch.equal(again.query(q3), BlackBox(victim).query(q3)) and inner.queries_used == 5  # another way: paid
    again.query(q2)  # after the attack went another way nothing more is replayed
    assert inner.queries_used == 10 and again.queries_used == 15 and again.fresh_queries == 10
    again.save(tmp_path / "transfer.pt", KEY, {"queries_used": 15})
    calls, record = load_transfer(tmp_path / "transfer.pt", KEY, 10)
    assert [torch.equal(c["x"], q) for c, q in zip(calls, (q1, q3, q2))] == [True] * 3 and record["queries_used"] == 15


def test_unreplayed_answers_are_kept_when_a_rerun_stops_early(victim, data, tmp_path):
    q1, q2 = _queries(data, 0, 5)
    first = RecordingBlackBox(BlackBox(victim), budget=10)
    first.query(q1)
    first.query(q2)
    first.save(tmp_path / "transfer.pt", KEY)
    rerun = RecordingBlackBox(BlackBox(victim), budget=10, calls=load_transfer(tmp_path / "transfer.pt", KEY, 10)[0])
    rerun.query(q1)
    rerun.save(tmp_path / "transfer.pt", KEY)  # failed again after one call: the second paid answer stays
    assert len(load_transfer(tmp_path / "transfer.pt", KEY, 10)[0]) == 2


def test_foreign_or_damaged_transfer_sets_refused(victim, data, tmp_path):
    box = RecordingBlackBox(BlackBox(victim), budget=10)
    box.query(_queries(data, 0)[0])
    box.save(tmp_path / "transfer.pt", KEY)
    with pytest.raises(ValueError, match=r"other options \(seed\).*--overwrite"):
        load_transfer(tmp_path / "transfer.pt", {**KEY, "seed": 1}, 10)
    stored = torch.load(tmp_path / "transfer.pt", weights_only=True)
    stored["calls"][0]["answers"][0, 0] = float("nan")
    torch.save(stored, tmp_path / "transfer.pt")
    with pytest.raises(ValueError, match="transfer.pt: holds answers that are not probabilities"):
        load_transfer(tmp_path / "transfer.pt", KEY, 10)


def test_data_free_queries_recorded_by_hash_only(victim, data, tmp_path):
    q1, q2 = _queries(data, 0, 5)
    first = RecordingBlackBox(BlackBox(victim), budget=10, keep_queries=False)
    answers = first.query(q1)
    first.save(tmp_path / "transfer.pt", KEY)
    [call] = load_transfer(tmp_path / "transfer.pt", KEY, 10)[0]
    assert call["x"] is None and torch.equal(call["answers"], answers)
    inner = BlackBox(victim)
    rerun = RecordingBlackBox(inner, budget=10, calls=[call], keep_queries=False)
    assert torch.equal(rerun.query(q1), answers) and inner.queries_used == 0
