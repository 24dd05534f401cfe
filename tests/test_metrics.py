"""divqat.metrics against hand-computed values (docs/science.md section 6)."""
import math

import pytest
import torch
import torch.nn as nn

from divqat.blackbox import BlackBox
from divqat.metrics import (
    accuracy,
    adversary_error,
    agreement,
    evaluate_surrogate,
    mean_kl,
    mean_l1,
    normalized_accuracy,
)


def test_accuracy_and_agreement_hand_values():
    scores = torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]])  # predicts 0, 1, 0, 1
    labels = torch.tensor([0, 1, 1, 1])
    assert accuracy(scores, labels) == pytest.approx(3 / 4)
    assert accuracy(torch.tensor([0, 1, 0, 1]), labels) == pytest.approx(3 / 4)  # labels instead of scores
    other = torch.tensor([[5.0, 1.0], [5.0, 1.0], [5.0, 1.0], [1.0, 5.0]])  # predicts 0, 0, 0, 1
    assert agreement(scores, other) == pytest.approx(3 / 4)
    assert agreement(other, other) == 1.0


def test_error_and_normalized_accuracy():
    assert adversary_error(0.75) == pytest.approx(0.25)
    assert normalized_accuracy(0.45, 0.9) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="victim_accuracy"):
        normalized_accuracy(0.5, 0.0)


def test_mean_l1_and_kl_hand_values():
    p = torch.tensor([[0.5, 0.5, 0.0], [0.2, 0.3, 0.5]])
    q = torch.tensor([[0.25, 0.25, 0.5], [0.2, 0.3, 0.5]])
    assert mean_l1(p, q) == pytest.approx((0.25 + 0.25 + 0.5 + 0.0) / 2)
    # row 1: 0.5 log(0.5/0.25) * 2 (the 0 entry contributes 0); row 2: identical -> 0
    assert mean_kl(p, q) == pytest.approx((2 * 0.5 * math.log(2.0)) / 2)
    # zero mass in q where p has mass: exact KL is infinite, the clamped one finite and large
    assert mean_kl(q, p, eps=0) == math.inf
    clamped = mean_kl(q, p, eps=1e-12)
    row1 = 0.25 * math.log(0.25 / 0.5) * 2 + 0.5 * math.log(0.5 / 1e-12)
    assert clamped == pytest.approx(row1 / 2)


@pytest.mark.parametrize("fn", [accuracy, agreement])
def test_shape_mismatch_and_empty(fn):
    with pytest.raises(ValueError, match="must match"):
        fn(torch.zeros(3, 2), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="empty"):
        fn(torch.zeros(0, 2), torch.zeros(0, dtype=torch.long))
    with pytest.raises(ValueError, match="shape"):
        fn(torch.zeros(2, 2, 2), torch.zeros(2, dtype=torch.long))


def test_prob_metrics_bad_shapes():
    with pytest.raises(ValueError, match="p and q"):
        mean_l1(torch.zeros(2, 3), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="p and q"):
        mean_kl(torch.zeros(3), torch.zeros(3))


class _Fixed(nn.Module):
    """logits = x.flatten(1) @ W: a model whose outputs the test knows by hand."""

    def __init__(self, weight):
        super().__init__()
        self.register_buffer("weight", weight)
        self.meta = dict(num_classes=weight.shape[1], in_channels=1, image_size=1, mean=(0.0,), std=(1.0,))

    def forward(self, x):
        return x.flatten(1) @ self.weight


def test_evaluate_surrogate_hand_values_and_no_budget_spent():
    x = torch.tensor([0.1, 0.4, 0.6, 0.9]).view(4, 1, 1, 1)
    y = torch.tensor([0, 0, 1, 1])
    victim = _Fixed(torch.tensor([[-1.0, 1.0]]))  # logits (-x, x): predicts 1 for every x > 0
    victim_as_threshold = _Fixed(torch.tensor([[1.0, -1.0]]))  # predicts 0 for every x > 0
    surrogate = _Fixed(torch.tensor([[-1.0, 1.0]]))
    # victim predicts 1,1,1,1 -> accuracy 2/4; surrogate identical -> agreement 1
    got = evaluate_surrogate(surrogate, victim, (x, y))
    assert got == pytest.approx({"victim_accuracy": 0.5, "adversary_accuracy": 0.5, "adversary_error": 0.5,
                                 "agreement": 1.0, "normalized_accuracy": 1.0})
    from_dataset = evaluate_surrogate(surrogate, victim, torch.utils.data.TensorDataset(x, y))
    assert from_dataset == got
    blackbox = BlackBox(victim_as_threshold, budget=1)
    got = evaluate_surrogate(surrogate, blackbox, (x, y))
    assert got["agreement"] == 0.0 and got["victim_accuracy"] == 0.5
    assert blackbox.queries_used == 0  # evaluation never spends the adversary's budget


def test_evaluate_surrogate_against_a_victim_that_is_never_right():
    """Behind a defense that flips every answer the victim's accuracy is 0: the normalized
    accuracy is undefined (None), the other metrics are still measured."""
    x = torch.tensor([0.1, 0.4, 0.6, 0.9]).view(4, 1, 1, 1)
    y = torch.zeros(4, dtype=torch.int64)
    victim = _Fixed(torch.tensor([[-1.0, 1.0]]))  # predicts 1 everywhere: never right
    surrogate = _Fixed(torch.tensor([[1.0, -1.0]]))  # predicts 0 everywhere: always right
    got = evaluate_surrogate(surrogate, victim, (x, y))
    assert got == {"victim_accuracy": 0.0, "adversary_accuracy": 1.0, "adversary_error": 0.0,
                   "agreement": 0.0, "normalized_accuracy": None}
