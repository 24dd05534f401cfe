"""MAD (maximizing angular deviation): Orekondy, Schiele and Fritz, "Prediction Poisoning:
Towards Defenses Against DNN Model Stealing Attacks", ICLR 2020.

The defender imagines the attacker's surrogate F (here a model the defender holds) trained on
its answers. Training on an answer y moves F's last-layer weights W along a(y) = -G^T y, where
G (C, D) stacks the per-class gradients G_k = d(-log F_k(x)) / dW. MAD answers with the
vector ŷ of the feasible set that turns that step furthest from the honest one:

    max_ŷ || a(ŷ)/||a(ŷ)|| - a(y)/||a(y)|| ||^2   s.t.  ŷ on the simplex, ||ŷ - y||_1 <= epsilon

Last-layer Jacobian (the paper's choice for speed): with logits z = W h + b,
G_k = (F - e_k) h^T, so for any ŷ on the simplex G^T ŷ = (F - ŷ) h^T, and the angle between
a(ŷ) and a(y) equals the angle between (ŷ - F) and (y - F) in R^C. The objective is
therefore 2 - 2 cos(ŷ - F, y - F): it needs only F = softmax(surrogate(x)), one batched
forward pass, with no per-class backward passes; exact for any surrogate whose logits come
from a final linear layer (every divqat architecture). When y = F (the surrogate is the
victim itself) the honest step is zero, the angle is undefined and every candidate scores
alike (the first wins): use a surrogate other than the victim, as the paper does (a model of
the attacker's architecture trained on other data).

Solver (the authors' heuristic, batched over rows):
  1. oracle "argmax": the objective is convex in ŷ, so its maximum over the simplex is at a
     vertex; pick y* = e_j maximizing it. With ``keep_argmax=True`` the candidates are instead
     the uniform vectors on subsets S of classes containing m = argmax y, with e_m upweighted by
     1e-5 so m stays the strict argmax: all 2^(C-1) subsets for C <= 10, a greedy growth of S
     (add the class that maximizes the objective, C - 1 steps, keep the best) above.
  2. line search towards y* within the budget: ŷ = y + alpha (y* - y),
     alpha = min(1, epsilon / ||y* - y||), which is on the simplex (a convex combination) and
     within epsilon of y exactly (:func:`divqat.defenses.base.step_towards`). With
     ``keep_argmax``, y and y* share the argmax m, so ŷ does too.
"""
import torch
import torch.nn.functional as F

from .base import Defense, model_device, step_towards
from .params import Param

__all__ = ["MAD", "YDISTS", "ORACLES", "EXHAUSTIVE_MAX_CLASSES"]

YDISTS = ("l1", "l2")
ORACLES = ("argmax",)
#: above this many classes the argmax-preserving search is greedy instead of exhaustive
EXHAUSTIVE_MAX_CLASSES = 10
_ARGMAX_BONUS = 1e-5


def _cosine(s_dot_v, s_dot_f, size, f, v, top, bonus):
    """cos(u - f, v) for every candidate u = (1_S + bonus e_top) / (|S| + bonus), from set sums.

    ``s_dot_v``, ``s_dot_f`` and ``size`` (N, M) hold sum_{k in S} v_k, sum_{k in S} f_k and |S|
    for M candidate sets S per row (S must contain ``top`` when bonus > 0); f, v are (N, C):

        <u, v> = (S.v + bonus v_top) / W,  |u|^2 = (|S| + 2 bonus + bonus^2) / W^2,  W = |S| + bonus
        cos = (<u, v> - <f, v>) / sqrt((|u|^2 - 2 <u, f> + |f|^2) |v|^2)

    so no (N, M, C) tensor is formed. Clamped to [-1, 1] (a candidate equal to f scores 0).
    """
    v_top, f_top = v.gather(1, top.unsqueeze(1)), f.gather(1, top.unsqueeze(1))
    w = size + bonus
    u_dot_v = (s_dot_v + bonus * v_top) / w
    u_dot_f = (s_dot_f + bonus * f_top) / w
    u_dot_u = (size + 2 * bonus + bonus ** 2) / w ** 2
    d_dot_d = (u_dot_u - 2 * u_dot_f + (f * f).sum(dim=1, keepdim=True)).clamp_min(0.0)
    den = (d_dot_d * (v * v).sum(dim=1, keepdim=True)).sqrt().clamp_min(torch.finfo(v.dtype).tiny)
    return ((u_dot_v - (f * v).sum(dim=1, keepdim=True)) / den).clamp(-1.0, 1.0)


def _uniform_on(mask, top, bonus):
    """The candidate vectors (1_S + bonus e_top) / (|S| + bonus) of 0/1 masks (N, C)."""
    weights = mask + bonus * F.one_hot(top, mask.shape[1]).to(mask.dtype)
    return weights / weights.sum(dim=1, keepdim=True)


def _vertex_target(p, f):
    """The vertex e_j (S = {j}) of largest angular deviation, per row."""
    v = p - f
    pick = _cosine(v, f, torch.ones_like(v), f, v, p.argmax(dim=1), 0.0).argmin(dim=1)
    return F.one_hot(pick, p.shape[1]).to(p.dtype)


def _exhaustive_target(p, f):
    """Best uniform vector on S + {top} over every subset S of classes (each set met twice)."""
    n, c = p.shape
    v, top, rows = p - f, p.argmax(dim=1), torch.arange(n, device=p.device)
    codes = torch.arange(2 ** c, device=p.device).unsqueeze(1)
    subsets = ((codes >> torch.arange(c, device=p.device)) & 1).to(p.dtype)  # (2^C, C)
    missing_top = 1.0 - subsets[:, top].T  # (N, 2^C): 1 where the subset lacks the top class
    s_dot_v = v @ subsets.T + missing_top * v[rows, top].unsqueeze(1)
    s_dot_f = f @ subsets.T + missing_top * f[rows, top].unsqueeze(1)
    size = subsets.sum(dim=1) + missing_top
    pick = _cosine(s_dot_v, s_dot_f, size, f, v, top, _ARGMAX_BONUS).argmin(dim=1)
    return _uniform_on(subsets[pick].index_put((rows, top), p.new_ones(n)), top, _ARGMAX_BONUS)


def _greedy_target(p, f):
    """Grow S from {top} one class at a time (the one maximizing the objective); keep the best S."""
    n, c = p.shape
    v, top, rows = p - f, p.argmax(dim=1), torch.arange(n, device=p.device)
    mask = F.one_hot(top, c).to(p.dtype)
    s_dot_v, s_dot_f = v[rows, top].unsqueeze(1), f[rows, top].unsqueeze(1)
    best_mask = mask
    best_cos = _cosine(s_dot_v, s_dot_f, p.new_ones(n, 1), f, v, top, _ARGMAX_BONUS).squeeze(1)
    for size in range(2, c + 1):
        cos = _cosine(s_dot_v + v, s_dot_f + f, torch.full_like(v, float(size)), f, v, top, _ARGMAX_BONUS)
        cos = cos.masked_fill(mask.bool(), float("inf"))  # candidate j adds class j, not yet in S
        pick = cos.argmin(dim=1)
        step_cos = cos[rows, pick]
        mask = mask.index_put((rows, pick), p.new_ones(n))
        s_dot_v, s_dot_f = s_dot_v + v[rows, pick].unsqueeze(1), s_dot_f + f[rows, pick].unsqueeze(1)
        improved = step_cos < best_cos
        best_mask = torch.where(improved.unsqueeze(1), mask, best_mask)
        best_cos = torch.where(improved, step_cos, best_cos)
    return _uniform_on(best_mask, top, _ARGMAX_BONUS)


class MAD(Defense):
    """MAD(surrogate, epsilon, ydist="l1", oracle="argmax", keep_argmax=False); call as ``defense(probs, x)``.

    ``surrogate``: the defender's stand-in for the attacker's model, ``forward(x) -> logits``
    ending in a linear layer (put in eval mode); the other parameters: see ``PARAMS``.
    """

    NAME = "mad"
    PARAMS = (
        Param("surrogate", "model", aliases=("model",), victim_default=True,
              help="the defender's stand-in for the attacker's model, ending in a linear layer",
              source="Orekondy et al. 2020 use a randomly initialised model of the attacker's architecture"),
        Param("epsilon", "real", low=0.0, help="perturbation budget ||y_hat - y|| <= epsilon, 0 returns y "
              "(0.5 in docs/results/output-defenses.md)",
              source="no published default: Orekondy et al. 2020 sweep it"),
        Param("ydist", "choice", "l1", choices=YDISTS, help="norm of the budget", source="Orekondy et al. 2020"),
        Param("oracle", "choice", "argmax", choices=ORACLES, help="the vertex search of the paper",
              source="Orekondy et al. 2020"),
        Param("keep_argmax", "bool", False, help="search only answers that keep the top class (MAD-argmax)",
              source="Orekondy et al. 2020 (MAD; MAD-argmax is their variant)"),
    )
    needs_input = True

    def surrogate_probs(self, x, like):
        """F = softmax(surrogate(x)), on ``like``'s device and dtype."""
        logits = self.surrogate(x.to(model_device(self.surrogate), torch.float32))
        if logits.shape != like.shape:
            raise ValueError(f"surrogate returned shape {tuple(logits.shape)} for probs of shape "
                             f"{tuple(like.shape)}: it must classify the same {like.shape[1]} classes")
        return F.softmax(logits.to(like.device, like.dtype), dim=1)

    def target(self, p, f):
        """y* of the oracle for victim probabilities p and surrogate probabilities f (N, C), in float64."""
        p, f = p.double(), f.double()
        if not self.keep_argmax:
            return _vertex_target(p, f)
        if p.shape[1] <= EXHAUSTIVE_MAX_CLASSES:
            return _exhaustive_target(p, f)
        return _greedy_target(p, f)

    def _perturb(self, p, x):
        if self.epsilon == 0.0:
            return p.clone()
        f = self.surrogate_probs(x, p)
        return step_towards(p, self.target(p, f), self.epsilon, self.ydist)
