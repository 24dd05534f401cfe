"""Top-k: return only the k largest probabilities of each row, renormalised to sum to 1
(Orekondy et al., "Knockoff Nets", CVPR 2019, section 6; Tramer et al. 2016):

    y_k = p_k [k in topk(p)] / sum_{j in topk(p)} p_j

k = 1 is label only; k = C returns p (renormalised). The argmax is kept.
"""
import torch

from .base import Defense, check_int

__all__ = ["TopK"]


class TopK(Defense):
    """TopK(k): 1 <= k, and k <= C, the number of classes, checked when called."""

    def __init__(self, k):
        self.k = check_int("k", k, low=1)

    def params(self):
        return {"k": self.k}

    def _perturb(self, p, x):
        if self.k > p.shape[1]:
            raise ValueError(f"k must be <= the number of classes {p.shape[1]}, got {self.k}")
        values, index = p.topk(self.k, dim=1)
        kept = torch.zeros_like(p).scatter_(1, index, values)
        return kept / kept.sum(dim=1, keepdim=True).clamp_min(torch.finfo(p.dtype).tiny)
