"""Reverse sigmoid against its formula in float64."""
import pytest
import torch
from defense_helpers import make_probs

from divqat.defenses import ReverseSigmoid


@pytest.mark.parametrize("beta,gamma", [(0.0, 1.0), (0.3, 0.5), (0.7, 0.2), (2.0, 1.0), (0.5, 0.0)])
def test_reverse_sigmoid_matches_float64_formula(beta, gamma):
    p = make_probs(8, 10)
    logit = torch.log((p / (1 - p)).clamp(1e-12, 1e12))
    y = (p - beta * (1 / (1 + torch.exp(-gamma * logit)) - 0.5)).clamp_min(0)
    torch.testing.assert_close(ReverseSigmoid(beta, gamma)(p), y / y.sum(dim=1, keepdim=True), rtol=0, atol=1e-12)
