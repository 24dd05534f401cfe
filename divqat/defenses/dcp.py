"""DCP: the training-free output perturbation of "Efficient Defense Against Model Stealing
Attacks on Convolutional Neural Networks" (arXiv 2309.01838, ICMLA 2023).

With p = softmax(f(x)) and s = max_k p_k (docs/science.md §4):

    a = 1 / (1 + exp(nu * (s - beta)))            ~1 for low-confidence queries (s < beta), ~0 else
    r = beta * (sigmoid(gamma * log(clamp(p / (1 - p), 1e-12, 1 - 1e-12))) - 1/2)
    y = (p - a * r) / sum_k (p - a * r)_k

The authors' clamp caps the odds at 1 - 1e-12, so the log-odds are <= 0, r <= 0 and
y >= p before normalisation: mass moves towards the unlikely classes of low-confidence
queries. ``cap_log_odds=False`` lifts the cap (odds clamped to [1e-12, 1e12]), which makes
r > 0 for classes with p > 1/2; negative entries are then clipped to 0 before normalising.

``a`` is computed as sigmoid(nu * (beta - s)), the same number without overflow of
exp(nu * (s - beta)) for nu = 1000.

DCP does not preserve the argmax in general: in a low-confidence row (s < beta) a class with
p_k ~ 0 receives about beta * (1/2 - sigmoid(gamma * log 1e-12)) ~ beta / 2, which can exceed
the top class (e.g. p = (0.4, 0.35, 0.25, 0, ...) and beta = 1 puts the argmax on a zero
class). Rows with s well above beta (s - beta >> 1/nu) are returned unchanged (a ~ 0).
"""
import torch

from .base import ODDS_MAX, Defense, log_odds
from .params import Param

__all__ = ["DCP", "CAPPED_ODDS_MAX"]

#: the DCP authors' upper clamp on p / (1 - p)
CAPPED_ODDS_MAX = 1.0 - 1e-12


class DCP(Defense):
    """DCP(beta, gamma=0.2, nu=1000, cap_log_odds=True); see the module docstring and ``PARAMS``."""

    NAME = "dcp"
    PARAMS = (
        Param("beta", "real", low=0.0, help="confidence threshold and perturbation strength (1.0 in "
              "docs/results/divqat-vs-qat.md's headline runs)",
              source="no published default: the paper sweeps 0 to 1.5 (docs/science.md §4)"),
        Param("gamma", "real", 0.2, low=0.0, help="slope on the log-odds (0.1 for 100-class sets)",
              source="the paper (arXiv 2309.01838), docs/science.md §4"),
        Param("nu", "real", 1000.0, low=0.0, help="sharpness of the low-confidence gate a",
              source="the paper (arXiv 2309.01838), docs/science.md §4"),
        Param("cap_log_odds", "bool", True, help="keep the authors' clamp of the odds at 1 - 1e-12 (r <= 0)",
              source="the authors' code, docs/science.md §4"),
    )

    def _perturb(self, p, x):
        s = p.amax(dim=1, keepdim=True)  # not max(dim).values: its value+index kernel is far slower on CPU
        a = torch.sigmoid(self.nu * (self.beta - s))
        z = log_odds(p, CAPPED_ODDS_MAX if self.cap_log_odds else ODDS_MAX)
        r = self.beta * (torch.sigmoid(self.gamma * z) - 0.5)
        y = p - a * r
        if not self.cap_log_odds:
            y = y.clamp_min(0.0)
        return y / y.sum(dim=1, keepdim=True)
