"""Label only: answer each query with the one-hot vector of its top class (the hard-label
setting of Tramer et al., USENIX Security 2016, and of Orekondy et al., "Knockoff Nets", 2019):

    y = e_{argmax_k p_k}

row by row (ties go to the lowest class index, as torch.argmax).
"""
import torch.nn.functional as F

from .base import Defense

__all__ = ["LabelOnly"]


class LabelOnly(Defense):
    """LabelOnly(): one-hot of each row's argmax."""

    NAME = "label_only"
    ALIASES = ("label",)

    def _perturb(self, p, x):
        return F.one_hot(p.argmax(dim=1), p.shape[1]).to(p.dtype)
