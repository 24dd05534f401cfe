"""MAD against the autograd last-layer Jacobian of its objective and brute-force searches."""
import itertools

import pytest
import torch
import torch.nn.functional as F
from defense_helpers import make_mlp, make_probs

from divqat.defenses import MAD


def _mad_objective_autograd(model, x, y_true, y_tilde):
    """||a(ŷ)/|a(ŷ)| - a(y)/|a(y)|||^2 with a(y) = G^T y, G the per-class gradients of -log F
    w.r.t. the last layer's weight, by autograd (the reference implementation's way)."""
    weight = model[-1].weight
    nll = -F.log_softmax(model(x.unsqueeze(0)), dim=1)[0]
    g = torch.stack([torch.autograd.grad(nll[k], weight, retain_graph=True)[0].flatten()
                     for k in range(len(nll))]).double()
    u, v = g.T @ y_tilde.double(), g.T @ y_true.double()
    return ((u / u.norm() - v / v.norm()).norm() ** 2).item()


@pytest.mark.parametrize("keep_argmax", [False, True])
def test_mad_target_maximizes_the_autograd_objective(keep_argmax):
    c = 6
    model = make_mlp(7, c, seed=5)
    x = torch.randn(6, 7)
    p = F.softmax(torch.randn(6, c) * 2, dim=1)
    mad = MAD(model, 0.5, keep_argmax=keep_argmax)
    with torch.no_grad():
        targets = mad.target(p, F.softmax(model(x), dim=1))
    for i in range(len(p)):
        m = p[i].argmax().item()
        if keep_argmax:  # uniform on every subset with the top class (upweighted by 1e-5)
            candidates = []
            for bits in itertools.product((0.0, 1.0), repeat=c):
                w = torch.tensor(bits, dtype=torch.float64)
                w[m] = 1.0 + 1e-5
                candidates.append(w / w.sum())
        else:
            candidates = list(torch.eye(c, dtype=torch.float64))
        best = max(_mad_objective_autograd(model, x[i], p[i], cand) for cand in candidates)
        assert _mad_objective_autograd(model, x[i], p[i], targets[i]) == pytest.approx(best, rel=1e-9, abs=1e-9)
        if keep_argmax:
            assert targets[i].argmax().item() == m


@pytest.mark.parametrize("ydist,c,keep", [("l1", 10, False), ("l1", 12, True), ("l2", 10, False), ("l1", 5, True)])
@pytest.mark.parametrize("epsilon", [0.0, 0.05, 0.5, 1.5, 2.0])
def test_mad_stays_within_epsilon_on_the_simplex(ydist, c, keep, epsilon):
    model = make_mlp(5, c, seed=3)
    p, x = make_probs(4, c, seed=4), torch.randn(24, 5)
    mad = MAD(model, epsilon, ydist=ydist, keep_argmax=keep)
    y = mad(p, x)
    dist = (y - p).abs().sum(dim=1) if ydist == "l1" else (y - p).norm(dim=1)
    assert float(dist.max()) <= epsilon + 1e-12
    assert bool((y >= 0).all())
    torch.testing.assert_close(y.sum(dim=1), torch.ones(len(p), dtype=torch.float64), rtol=0, atol=1e-12)
    with torch.no_grad():
        target = mad.target(p, F.softmax(model(x).double(), dim=1))
    full = (target - p).abs().sum(dim=1) if ydist == "l1" else (target - p).norm(dim=1)
    torch.testing.assert_close(dist, full.clamp(max=epsilon), rtol=0, atol=1e-12)  # the whole budget, if needed
