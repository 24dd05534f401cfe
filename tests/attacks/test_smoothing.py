"""The smoothing thief: its copies (shifts, noise) and aggregation against hand-made oracles,
every copy counted against the budget, refusals before any query."""
import pytest
import torch
from attack_helpers import FAST, agreement_with, check_refused

from divqat.attacks import smoothing
from divqat.attacks.smoothing import aggregate_answers, augmented_copies
from divqat.blackbox import BlackBox


def test_copies_without_shift_or_noise_are_the_images():
    x = torch.rand(3, 1, 8, 8)
    torch.testing.assert_close(augmented_copies(x, 4, 0, 0.0), x.repeat_interleave(4, dim=0), rtol=0, atol=0)


def test_copies_are_shifts_within_the_range():
    x = torch.zeros(1, 1, 9, 9)
    x[0, 0, 4, 4] = 1.0  # one lit pixel in the middle: each copy shows it moved by (dy, dx)
    torch.manual_seed(0)
    copies = augmented_copies(x, 200, 2, 0.0)
    seen = set()
    for c in copies:
        (y, xx), = torch.nonzero(c[0] == 1.0).tolist()
        assert c.sum() == 1.0 and abs(y - 4) <= 2 and abs(xx - 4) <= 2
        seen.add((y - 4, xx - 4))
    assert len(seen) == 25  # every offset of {-2..2}^2 drawn


def test_noise_has_the_given_std_and_stays_in_range():
    torch.manual_seed(0)
    copies = augmented_copies(torch.full((50, 1, 8, 8), 0.5), 4, 0, 0.1)
    assert (copies - 0.5).std().item() == pytest.approx(0.1, rel=0.05)
    assert copies.min() >= 0 and copies.max() <= 1


def test_aggregation_by_hand():
    answers = torch.tensor([[0.6, 0.4], [0.2, 0.8], [0.3, 0.7],   # image 0
                            [0.9, 0.1], [0.4, 0.6], [0.7, 0.3]])  # image 1
    torch.testing.assert_close(aggregate_answers(answers, 3, "mean"),
                               torch.tensor([[1.1 / 3, 1.9 / 3], [2.0 / 3, 1.0 / 3]]))
    torch.testing.assert_close(aggregate_answers(answers, 3, "vote"), torch.tensor([[0.0, 1.0], [1.0, 0.0]]))
    tie = torch.tensor([[0.4, 0.6], [0.9, 0.1]])  # one vote each: the lowest class wins
    torch.testing.assert_close(aggregate_answers(tie, 2, "vote"), torch.tensor([[1.0, 0.0]]))


@pytest.mark.parametrize("aggregate", ["mean", "vote"])
def test_every_copy_counted_and_beats_chance(victim, data, aggregate):
    x, y, xt, _ = data
    bb = BlackBox(victim, budget=2803)
    surrogate, record = smoothing(bb, (x, y), 2803, k=4, shift=1, noise=0.05, aggregate=aggregate, train=FAST,
                                  seed=1, progress=False)
    assert record["distinct_images"] == 700 and bb.queries_used == record["queries_used"] == 2800
    assert sum(record["answered_hist"].values()) == 2800  # every copy's answer
    assert agreement_with(surrogate, victim, xt) > 0.6


@pytest.mark.parametrize("call,match", [
    (lambda bb, x, y: smoothing(bb, x, 10, k=0), "k"),
    (lambda bb, x, y: smoothing(bb, x, 3, k=4), "buys no image"),
    (lambda bb, x, y: smoothing(bb, x, 10, shift=-1), "shift"),
    (lambda bb, x, y: smoothing(bb, x, 10, noise=-0.1), "noise"),
    (lambda bb, x, y: smoothing(bb, x, 10, aggregate="median"), "aggregate"),
    (lambda bb, x, y: smoothing(bb, x[:10], 48, k=4), "query set has 10"),
])
def test_bad_input(victim, data, call, match):
    check_refused(victim, data, call, match)
