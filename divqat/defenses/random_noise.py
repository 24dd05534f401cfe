"""Random noise within a budget: the perturbation baseline of Orekondy et al., "Prediction
Poisoning", ICLR 2020 (MAD with a random instead of an adversarial target).

Each row moves towards a target drawn uniformly from the probability simplex
(Dirichlet(1, ..., 1): normalised standard exponentials) by at most epsilon:

    q ~ Dirichlet(1_C),   y = p + alpha (q - p),   alpha = min(1, epsilon / ||q - p||)

so y stays on the simplex and ||y - p|| = min(epsilon, ||q - p||) <= epsilon.
"""
import torch

from .base import Defense, check_int, check_real, step_towards

__all__ = ["RandomNoise", "DISTS"]

DISTS = ("l1", "l2")


class RandomNoise(Defense):
    """RandomNoise(epsilon, dist="l1", seed=0): its own generator, so a seed gives the same noise stream."""

    def __init__(self, epsilon, dist="l1", seed=0):
        self.epsilon = check_real("epsilon", epsilon, low=0.0)
        if dist not in DISTS:
            raise ValueError(f"dist must be one of {DISTS}, got {dist!r}")
        self.dist = dist
        self.seed = check_int("seed", seed, low=0, high=2**63 - 1)
        self._generator = torch.Generator().manual_seed(self.seed)

    def params(self):
        return {"epsilon": self.epsilon, "dist": self.dist, "seed": self.seed}

    def _perturb(self, p, x):
        uniform = torch.rand(p.shape, generator=self._generator, dtype=torch.float64)
        exponential = -torch.log1p(-uniform)  # in [0, inf): 1 - U > 0 for U in [0, 1)
        q = exponential / exponential.sum(dim=1, keepdim=True).clamp_min(torch.finfo(torch.float64).tiny)
        return step_towards(p, q.to(p.device), self.epsilon, self.dist)
