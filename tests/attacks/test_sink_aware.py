"""The sink-aware thief: its rebalancing against hand-computed weights and drops, the weighted
loss against a float64 reference, and end to end on digits (budget, record, refusals)."""
import pytest
import torch
import torch.nn.functional as F
from attack_helpers import check_refused, check_sampling_attack

from divqat.attacks import sink_aware
from divqat.attacks.sink_aware import drop_dominant, inverse_frequency_weights
from divqat.attacks.surrogate import weighted_label_loss
from divqat.blackbox import BlackBox


def test_inverse_frequency_weights_by_hand():
    # N = 4 answers, classes 0 (3 times) and 1 (once) answered: C = 2, w = N / (C n_c)
    w = inverse_frequency_weights(torch.tensor([0, 0, 0, 1]), 3)
    torch.testing.assert_close(w, torch.tensor([2 / 3, 2 / 3, 2 / 3, 2.0]))
    assert w.mean().item() == pytest.approx(1.0)


def test_drop_dominant_by_hand():
    labels = torch.tensor([2, 2, 2, 1, 0])
    keep, dropped = drop_dominant(labels, 3, 0.5)  # class 2 takes 3/5 > 0.5
    assert keep.tolist() == [3, 4] and dropped == 2
    keep, dropped = drop_dominant(labels, 3, 0.6)  # 3/5 is not above 0.6
    assert keep.tolist() == [0, 1, 2, 3, 4] and dropped is None


def test_weighted_loss_against_float64():
    logits = torch.tensor([[1.0, 2.0, 0.5], [0.3, -1.0, 2.0]])
    y = torch.tensor([[0.0, 1.0, 0.0], [0.2, 0.3, 0.5]])
    weights = torch.tensor([2.0, 0.5])
    q = F.softmax(logits.double(), dim=1)
    kl = torch.stack([-q[0, 1].log(), (y[1].double() * (y[1].double() / q[1]).log()).sum()])
    expected = (weights.double() * kl).mean()
    got = weighted_label_loss(weights)(logits, (y, torch.tensor([0, 1])))
    assert got.item() == pytest.approx(expected.item(), rel=1e-5)


@pytest.mark.parametrize("mode", ["reweight", "drop"])
def test_spends_budget_exactly_and_beats_chance(victim, data, mode):
    check_sampling_attack(victim, data, sink_aware, {"mode": mode, "max_share": 0.15})


def test_drop_record_matches_answered_histogram(victim, data):
    x = data[0][:300]  # the whole query set is queried: the histogram is the victim's argmax counts
    bb = BlackBox(victim, budget=300)
    _, record = sink_aware(bb, x, 300, mode="drop", max_share=0.1, train={"epochs": 1}, progress=False)
    with torch.no_grad():
        counts = torch.bincount(victim(x).argmax(1), minlength=10)
    assert record["answered_hist"] == {str(k): int(n) for k, n in enumerate(counts)}
    assert record["dropped_class"] == int(counts.argmax())
    assert record["kept_examples"] == 300 - int(counts.max()) and bb.queries_used == record["queries_used"] == 300


@pytest.mark.parametrize("call,match", [
    (lambda bb, x, y: sink_aware(bb, x, 10, mode="resample"), "mode"),
    (lambda bb, x, y: sink_aware(bb, x, 10, mode="drop", max_share=0), "max_share"),
    (lambda bb, x, y: sink_aware(bb, x, 10, soft="yes"), "soft"),
    (lambda bb, x, y: sink_aware(bb, x, 51), "exceeds the 50 queries"),
])
def test_bad_input(victim, data, call, match):
    check_refused(victim, data, call, match)
