"""Rounding the returned probabilities to ``decimals`` decimals (Tramer et al., "Stealing
Machine Learning Models via Prediction APIs", USENIX Security 2016, section 7).

Each row is rounded to multiples of u = 10^-decimals so that it still sums to 1, by the
largest-remainder method: with n_k = p_k / u (p renormalised in float64),

    y_k = u * (floor(n_k) + [k is among the R classes with the largest n_k - floor(n_k)]),
    R = 1/u - sum_k floor(n_k)

so |y_k - p_k| < u, sum_k y_k = 1, and the order is kept weakly: p_j > p_k implies y_j >= y_k,
so the top class of p is a top class of y (ties may appear). decimals = 0 is label only.
"""
import torch

from .base import Defense
from .params import Param

__all__ = ["Rounding", "MAX_DECIMALS"]

#: beyond this, 10^decimals units are no longer exact in float64
MAX_DECIMALS = 15


class Rounding(Defense):
    """Rounding(decimals=3): entries rounded to ``decimals`` decimals (0 <= decimals <= 15), rows summing to 1."""

    NAME = "rounding"
    PARAMS = (
        Param("decimals", "int", 3, low=0, high=MAX_DECIMALS, help="decimals kept (0: label only)",
              source="Tramer et al. 2016 §7 round confidences to a few decimals; 3 is ART's Rounded default"),
    )

    def _perturb(self, p, x):
        scale = 10.0 ** self.decimals
        units = p.double() / p.double().sum(dim=1, keepdim=True) * scale
        base = units.floor()
        missing = (scale - base.sum(dim=1, keepdim=True)).round().clamp(0, p.shape[1])
        order = torch.argsort(units - base, dim=1, descending=True, stable=True)
        rank = torch.empty_like(order).scatter_(1, order, torch.arange(p.shape[1], device=p.device).expand_as(order))
        return ((base + (rank < missing).double()) / scale).to(p.dtype)
