"""Reverse sigmoid: Lee, Edwards, Molloy and Srivastava, "Defending Against NN Model Stealing
Attacks Using Deceptive Perturbations", IEEE S&P Workshops 2019.

    y_k ∝ max(0, p_k - beta * (sigmoid(gamma * logit(p_k)) - 1/2))

with logit(p) = log(p / (1 - p)) clamped to |logit| <= log(1e12) so that p in {0, 1} stays
finite, and the row renormalised to sum to 1. Entries with p_k < 1/2 grow, entries with
p_k > 1/2 shrink: the perturbation is small in probability space but large in the logit
space an attacker would train on. The row sum stays positive: with C >= 2 some p_k <= 1/2,
and those entries are >= p_k (> 0 when p_k = 0, beta > 0 and gamma > 0). The argmax is not
preserved in general (a large beta can push a confident top class below the others).
"""
from .base import Defense, log_odds
from .params import Param

__all__ = ["ReverseSigmoid"]


class ReverseSigmoid(Defense):
    """ReverseSigmoid(beta=1.0, gamma=0.1): beta >= 0 is the perturbation size, gamma >= 0 its slope."""

    NAME = "reverse_sigmoid"
    PARAMS = (
        Param("beta", "real", 1.0, low=0.0, help="perturbation size",
              source="Lee et al. 2019 (arXiv 1806.00054), as ART's ReverseSigmoid default"),
        Param("gamma", "real", 0.1, low=0.0, help="slope of the sigmoid on the log-odds",
              source="Lee et al. 2019 (arXiv 1806.00054), as ART's ReverseSigmoid default"),
    )

    def _perturb(self, p, x):
        y = (p - self.beta * (log_odds(p).mul(self.gamma).sigmoid() - 0.5)).clamp_min(0.0)
        return y / y.sum(dim=1, keepdim=True)
