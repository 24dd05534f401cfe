"""Top-k: return only the k largest probabilities of each row, renormalised to sum to 1
(Orekondy et al., "Knockoff Nets", CVPR 2019, section 6; Tramer et al. 2016):

    y_k = p_k [k in topk(p)] / sum_{j in topk(p)} p_j

k = 1 is label only; k = C returns p (renormalised). The argmax is kept.
"""
import torch

from .base import Defense
from .params import Param

__all__ = ["TopK"]


class TopK(Defense):
    """TopK(k=1): 1 <= k, and k <= C, the number of classes, checked when called."""

    NAME = "topk"
    ALIASES = ("top_k",)
    PARAMS = (
        Param("k", "int", 1, low=1, help="entries kept per row (at most the number of classes)",
              source="Orekondy et al. 2019 §6 truncate to the top-k; k = 1, the top-1 answer, is the "
                     "setting they and Tramer et al. 2016 report"),
    )

    def _perturb(self, p, x):
        if self.k > p.shape[1]:
            raise ValueError(f"k must be <= the number of classes {p.shape[1]}, got {self.k}")
        values, index = p.topk(self.k, dim=1)
        kept = torch.zeros_like(p).scatter_(1, index, values)
        return kept / kept.sum(dim=1, keepdim=True).clamp_min(torch.finfo(p.dtype).tiny)
