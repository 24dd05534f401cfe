"""Random noise within a budget: the perturbation baseline of Orekondy et al., "Prediction
Poisoning", ICLR 2020 (MAD with a random instead of an adversarial target).

Each row moves towards a target drawn uniformly from the probability simplex
(Dirichlet(1, ..., 1): normalised standard exponentials) by at most epsilon:

    q ~ Dirichlet(1_C),   y = p + alpha (q - p),   alpha = min(1, epsilon / ||q - p||)

so y stays on the simplex and ||y - p|| = min(epsilon, ||q - p||) <= epsilon.
"""
import torch

from .base import Defense, step_towards
from .params import Param

__all__ = ["RandomNoise", "DISTS"]

DISTS = ("l1", "l2")


class RandomNoise(Defense):
    """RandomNoise(epsilon, dist="l1", seed=0): its own generator, so a seed gives the same noise stream."""

    NAME = "random_noise"
    PARAMS = (
        Param("epsilon", "real", low=0.0, help="perturbation budget ||y - p|| <= epsilon",
              source="no published default: as MAD's epsilon, Orekondy et al. 2020 sweep it"),
        Param("dist", "choice", "l1", choices=DISTS, help="norm of the budget",
              source="Orekondy et al. 2020 (L1)"),
        Param("seed", "int", 0, low=0, high=2**63 - 1, help="seed of the defense's own noise generator",
              source="this repository"),
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._generator = torch.Generator().manual_seed(self.seed)

    def _perturb(self, p, x):
        uniform = torch.rand(p.shape, generator=self._generator, dtype=torch.float64)
        exponential = -torch.log1p(-uniform)  # in [0, inf): 1 - U > 0 for U in [0, 1)
        q = exponential / exponential.sum(dim=1, keepdim=True).clamp_min(torch.finfo(torch.float64).tiny)
        return step_towards(p, q.to(p.device), self.epsilon, self.dist)
