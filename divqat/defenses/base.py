"""The contract every output-perturbation defense keeps, and the pieces several of them share.

A defense maps a batch of probability vectors p (N, C) to a batch y (N, C) of the same shape
and dtype whose rows are nonnegative and sum to 1. Every row is handled on its own: the
answer to one query never depends on the other queries of its batch. Defenses that consult a
model of their own (adaptive misinformation, MAD) also need the query inputs x (N, ...):
``defense(p, x)``; the others ignore x, so ``defense(p)`` is enough for them.
"""
import abc
import hashlib

import torch

from divqat.utils import model_device

from .params import bind

__all__ = ["Defense", "log_odds", "step_towards", "model_fingerprint", "model_device"]

# log-odds are clamped to odds in [ODDS_MIN, ODDS_MAX] (|logit| <= log(1e12) ~ 27.6), so a
# probability of exactly 0 or 1 gives a finite value (0 * inf would be NaN).
ODDS_MIN = 1e-12
ODDS_MAX = 1e12


def log_odds(p, odds_max=ODDS_MAX):
    """log(clamp(p / (1 - p), ODDS_MIN, odds_max)): the logit of p, clamped.

    ``odds_max=1 - 1e-12`` is the clamp of the DCP authors, which caps the log-odds at about 0.
    """
    p = p.clamp(0.0, 1.0)
    return torch.log((p / (1.0 - p)).clamp(ODDS_MIN, odds_max))


def step_towards(p, target, epsilon, dist="l1"):
    """Move each row of ``p`` towards ``target`` by at most ``epsilon`` in the ``dist`` norm.

        y = p + alpha * (target - p),   alpha = min(1, epsilon / ||target - p||)

    (the closed-form line search of Orekondy et al. 2020, used by MAD and random noise). When
    ``p`` and ``target`` are on the simplex, so is y (a convex combination), and
    ||y - p|| = min(epsilon, ||target - p||). Computed in float64, returned in ``p``'s dtype.
    """
    delta = target.double() - p.double()
    norm = delta.abs().sum(dim=1, keepdim=True) if dist == "l1" else delta.norm(dim=1, keepdim=True)
    alpha = (epsilon / norm.clamp_min(torch.finfo(torch.float64).tiny)).clamp(max=1.0)
    return (p.double() + alpha * delta).to(p.dtype)


def model_fingerprint(model):
    """A short stable name for a model's weights: ``arch@<12 hex digits of sha256(state_dict)>``."""
    digest = hashlib.sha256()
    for key, value in model.state_dict().items():
        if torch.is_tensor(value):
            value = value.detach().cpu()
            value = value.int_repr() if value.is_quantized else value
            digest.update(key.encode())
            digest.update(value.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return f"{getattr(model, 'arch', type(model).__name__)}@{digest.hexdigest()[:12]}"


class Defense(abc.ABC):
    """Base class: ``defense(probs, x=None) -> (N, C)`` probabilities, computed without gradient.

    ``probs`` must be a 2-D floating tensor with at least 2 columns whose rows are probability
    vectors (they are not re-checked, to keep the defense cheap). The work is done in at least
    float32 and returned in ``probs``' dtype and device. Subclasses set ``NAME`` (the name
    :func:`divqat.defenses.build_defense` knows them by), ``ALIASES`` (other accepted names),
    ``PARAMS`` (their parameter table, :class:`divqat.defenses.params.Param`: the constructor
    binds, checks and stores each as an attribute) and implement ``_perturb(p, x)``.
    ``params()`` and ``repr`` list the parameters (models by :func:`model_fingerprint`), stable
    across runs, so they can key caches.
    """

    NAME = None
    ALIASES = ()
    PARAMS = ()
    #: True for defenses that run a model on the query inputs x (they need ``defense(p, x)``).
    needs_input = False

    def __init__(self, *args, **kwargs):
        values = bind(type(self).__name__, self.PARAMS, args, kwargs)
        for name, value in values.items():
            setattr(self, name, value)
        self._fingerprints = {p.name: model_fingerprint(values[p.name]) for p in self.PARAMS if p.type == "model"}

    def __call__(self, probs, x=None):
        if not torch.is_tensor(probs) or not probs.is_floating_point() or probs.dim() != 2:
            raise ValueError("probs must be a floating-point tensor of shape (N, C), got "
                             + (f"{probs.dtype} of shape {tuple(probs.shape)}" if torch.is_tensor(probs)
                                else type(probs).__name__))
        if probs.shape[1] < 2:
            raise ValueError(f"probs must have at least 2 classes, got shape {tuple(probs.shape)}")
        if self.needs_input:
            if not torch.is_tensor(x) or x.dim() == 0 or x.shape[0] != probs.shape[0]:
                raise ValueError(f"x: {type(self).__name__} runs a model on the queries, so call it as "
                                 f"defense(probs, x) with x holding the {probs.shape[0]} query inputs")
        if probs.shape[0] == 0:
            return probs.detach().clone()
        work = probs.detach().to(torch.promote_types(probs.dtype, torch.float32))
        with torch.no_grad():
            return self._perturb(work, x).to(probs.dtype)

    @abc.abstractmethod
    def _perturb(self, p, x):
        """The defense on a nonempty batch ``p`` (N, C) in float32 or float64."""

    def params(self):
        """The defense's parameters as a dict, in table order (models shown by :func:`model_fingerprint`)."""
        return {p.name: self._fingerprints.get(p.name, getattr(self, p.name)) for p in self.PARAMS}

    def __repr__(self):
        args = ", ".join(f"{key}={value!r}" for key, value in self.params().items())
        return f"{type(self).__name__}({args})"
