"""DCP against docs/science.md §4's formula restated literally in float64."""
import pytest
import torch
from defense_helpers import make_probs

from divqat.defenses import DCP


def _dcp_float64(p, beta, gamma, nu, cap):
    """docs/science.md §4, restated literally in float64."""
    p = p.double()
    s = p.max(dim=1, keepdim=True).values
    a = 1.0 / (1.0 + torch.exp(nu * (s - beta)))  # exp may overflow to inf: a = 0, as intended
    odds = (p / (1.0 - p)).clamp(1e-12, 1.0 - 1e-12 if cap else 1e12)
    r = beta * (1.0 / (1.0 + torch.exp(-gamma * torch.log(odds))) - 0.5)
    y = p - a * r
    if not cap:
        y = y.clamp_min(0.0)
    return y / y.sum(dim=1, keepdim=True)


@pytest.mark.parametrize("cap", [True, False])
@pytest.mark.parametrize("c,gamma", [(10, 0.2), (100, 0.1), (3, 2.0)])
@pytest.mark.parametrize("beta", [0.0, 0.3, 0.7, 1.0, 1.5])
def test_dcp_matches_float64_formula(beta, c, gamma, cap):
    p = make_probs(16, c, seed=c).float()  # a float32 batch, as a victim returns
    defense = DCP(beta, gamma=gamma, cap_log_odds=cap)
    torch.testing.assert_close(defense(p).double(), _dcp_float64(p, beta, gamma, 1000.0, cap), rtol=0, atol=2e-6)
    p = p.double()
    torch.testing.assert_close(defense(p), _dcp_float64(p, beta, gamma, 1000.0, cap), rtol=0, atol=1e-12)


def test_dcp_gate_straddles_beta():
    """Rows just below / above beta: a ~ 1 / ~ 0 (and 1/2 at s = beta), as 1/(1+exp(nu(s-beta)))."""
    p = torch.tensor([[0.49, 0.3, 0.21], [0.5, 0.3, 0.2], [0.51, 0.3, 0.19]], dtype=torch.float64)
    y = DCP(0.5)(p)
    torch.testing.assert_close(y, _dcp_float64(p, 0.5, 0.2, 1000.0, True), rtol=0, atol=1e-12)
    assert (y[0] - p[0]).abs().sum() > 0.01  # perturbed
    torch.testing.assert_close(y[2], p[2], rtol=0, atol=1e-5)  # exp(-10) ~ 5e-5 of the perturbation


def test_dcp_is_identity_for_confident_rows_and_can_flip_low_confidence_ones():
    p = make_probs(32, 10)
    confident = p.max(dim=1).values > 0.55
    torch.testing.assert_close(DCP(0.5)(p)[confident], p[confident], rtol=0, atol=1e-9)
    # the documented counterexample: a zero class overtakes the top class of a low-confidence row
    row = torch.tensor([[0.4, 0.35, 0.25] + [0.0] * 7])
    assert DCP(1.0)(row).argmax(dim=1).item() != 0
    assert DCP(0.0)(row).argmax(dim=1).item() == 0
