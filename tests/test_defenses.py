"""divqat.defenses against independent oracles: float64 restatements of each formula, the
autograd last-layer Jacobian of MAD's objective, per-row loops and brute-force searches."""
import argparse
import itertools
from fractions import Fraction

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from divqat.defenses import (DCP, DEFENSES, MAD, AdaptiveMisinformation, LabelOnly, RandomNoise, ReverseSigmoid,
                             Rounding, TopK, add_defense_arguments, build_defense, defense_cost, defense_from_args,
                             misinformation_loss, parse_defense_args, train_misinformation_model)


def _mlp(n_in, n_classes, hidden=16, seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(n_in, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, n_classes))


def _probs(n, c, seed=0):
    """Rows near one-hot, uniform, in between, and with exact zeros and a 1, shuffled columns."""
    g = torch.Generator().manual_seed(seed)
    rows = [
        F.softmax(torch.randn(n, c, generator=g) * 12.0, dim=1),  # near one-hot
        torch.full((n, c), 1.0 / c),  # uniform
        F.softmax(torch.randn(n, c, generator=g) * 1.5, dim=1),  # in between
        F.softmax(torch.randn(n, c, generator=g) * 0.3, dim=1),  # nearly uniform
        F.one_hot(torch.randint(0, c, (n,), generator=g), c).float(),  # exact 0s and a 1
    ]
    mixed = F.softmax(torch.randn(n, c, generator=g) * 3, dim=1)
    mixed[:, 0] = 0.0  # exact zeros next to nonzeros
    rows.append(mixed)
    p = torch.cat(rows).double()
    return p / p.sum(dim=1, keepdim=True)  # float64 rows summing to 1


# --------------------------------------------------------------------------------------------- DCP
def _dcp_float64(p, beta, gamma, nu, cap):
    """SCIENCE.md section 4, restated literally in float64."""
    p = p.double()
    s = p.max(dim=1, keepdim=True).values
    a = 1.0 / (1.0 + torch.exp(nu * (s - beta)))  # exp may overflow to inf: a = 0, as intended
    odds = (p / (1.0 - p)).clamp(1e-12, 1.0 - 1e-12 if cap else 1e12)
    r = beta * (1.0 / (1.0 + torch.exp(-gamma * torch.log(odds))) - 0.5)
    y = p - a * r
    if not cap:
        y = y.clamp_min(0.0)
    return y / y.sum(dim=1, keepdim=True)


@pytest.mark.parametrize("cap", [True, False])
@pytest.mark.parametrize("c,gamma", [(10, 0.2), (100, 0.1), (3, 2.0)])
@pytest.mark.parametrize("beta", [0.0, 0.3, 0.7, 1.0, 1.5])
def test_dcp_matches_float64_formula(beta, c, gamma, cap):
    p = _probs(16, c, seed=c).float()  # a float32 batch, as a victim returns
    defense = DCP(beta, gamma=gamma, cap_log_odds=cap)
    torch.testing.assert_close(defense(p).double(), _dcp_float64(p, beta, gamma, 1000.0, cap), rtol=0, atol=2e-6)
    p = p.double()
    torch.testing.assert_close(defense(p), _dcp_float64(p, beta, gamma, 1000.0, cap), rtol=0, atol=1e-12)


def test_dcp_gate_straddles_beta():
    """Rows just below / above beta: a ~ 1 / ~ 0 (and 1/2 at s = beta), as 1/(1+exp(nu(s-beta)))."""
    p = torch.tensor([[0.49, 0.3, 0.21], [0.5, 0.3, 0.2], [0.51, 0.3, 0.19]], dtype=torch.float64)
    y = DCP(0.5)(p)
    torch.testing.assert_close(y, _dcp_float64(p, 0.5, 0.2, 1000.0, True), rtol=0, atol=1e-12)
    assert (y[0] - p[0]).abs().sum() > 0.01  # perturbed
    torch.testing.assert_close(y[2], p[2], rtol=0, atol=1e-5)  # exp(-10) ~ 5e-5 of the perturbation


def test_dcp_is_identity_for_confident_rows_and_can_flip_low_confidence_ones():
    p = _probs(32, 10)
    confident = p.max(dim=1).values > 0.55
    torch.testing.assert_close(DCP(0.5)(p)[confident], p[confident], rtol=0, atol=1e-9)
    # the documented counterexample: a zero class overtakes the top class of a low-confidence row
    row = torch.tensor([[0.4, 0.35, 0.25] + [0.0] * 7])
    assert DCP(1.0)(row).argmax(dim=1).item() != 0
    assert DCP(0.0)(row).argmax(dim=1).item() == 0


# ------------------------------------------------------------------------------ reverse sigmoid
@pytest.mark.parametrize("beta,gamma", [(0.0, 1.0), (0.3, 0.5), (0.7, 0.2), (2.0, 1.0), (0.5, 0.0)])
def test_reverse_sigmoid_matches_float64_formula(beta, gamma):
    p = _probs(8, 10)
    logit = torch.log((p / (1 - p)).clamp(1e-12, 1e12))
    y = (p - beta * (1 / (1 + torch.exp(-gamma * logit)) - 0.5)).clamp_min(0)
    torch.testing.assert_close(ReverseSigmoid(beta, gamma)(p), y / y.sum(dim=1, keepdim=True), rtol=0, atol=1e-12)


# -------------------------------------------------------------------------- common properties
def _all_defenses(n_in, c):
    """One instance of every defense (several settings of some), with the model they need."""
    model = _mlp(n_in, c, seed=1)
    return {
        "dcp": DCP(0.7), "dcp_uncapped": DCP(1.2, gamma=1.0, cap_log_odds=False),
        "reverse_sigmoid": ReverseSigmoid(0.7, 0.5),
        "adaptive_misinformation": AdaptiveMisinformation(model, tau=0.5),
        "mad": MAD(model, 0.5), "mad_keep": MAD(model, 0.5, keep_argmax=True), "mad_l2": MAD(model, 0.3, ydist="l2"),
        "random_noise": RandomNoise(0.4, seed=3), "random_noise_l2": RandomNoise(0.2, dist="l2"),
        "rounding": Rounding(1), "rounding0": Rounding(0), "topk": TopK(3), "label_only": LabelOnly(),
    }


def test_every_registered_defense_is_covered():
    covered = {type(d) for d in _all_defenses(5, 4).values()}
    assert covered == set(DEFENSES.values())


@pytest.mark.parametrize("c", [4, 12])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_rows_nonnegative_and_sum_to_one(c, dtype):
    p = _probs(6, c).to(dtype)  # (float32 rows sum to 1 up to rounding)
    x = torch.randn(p.shape[0], 5)
    for name, defense in _all_defenses(5, c).items():
        y = defense(p, x)
        assert y.shape == p.shape and y.dtype == dtype, name
        assert bool((y >= 0).all()) and bool(torch.isfinite(y).all()), name
        torch.testing.assert_close(y.double().sum(dim=1), torch.ones(len(p), dtype=torch.float64),
                                   rtol=0, atol=1e-6, msg=name)


@settings(max_examples=15, deadline=None)
@given(n=st.integers(0, 9), c=st.integers(2, 17), scale=st.sampled_from([0.0, 0.5, 3.0, 30.0]),
       seed=st.integers(0, 2**16))
def test_any_shape_and_non_contiguous_views(n, c, scale, seed):
    """Odd sizes, empty batches and transposed (non-contiguous) views give the contiguous answer."""
    g = torch.Generator().manual_seed(seed)
    p = F.softmax(torch.randn(c, n, generator=g, dtype=torch.float64) * scale, dim=0).T  # a (n, c) view
    x = torch.randn(n, 5, generator=g)
    for name, defense in _all_defenses(5, c).items():
        if name == "topk" and c < 3 or name.startswith("random_noise"):
            continue  # TopK(3) needs 3 classes; the noise stream differs between the two calls
        y = defense(p, x)
        assert bool((y >= 0).all()), name
        torch.testing.assert_close(y.sum(dim=1), torch.ones(n, dtype=torch.float64), rtol=0, atol=1e-9, msg=name)
        torch.testing.assert_close(y, defense(p.contiguous(), x), rtol=0, atol=1e-12, msg=name)


def test_empty_batch():
    p, x = torch.empty(0, 5), torch.empty(0, 3)
    for name, defense in _all_defenses(3, 5).items():
        assert defense(p, x).shape == (0, 5), name


def test_rows_are_independent_in_mixed_batches():
    """A batch whose rows predict different classes gives each row what it would get alone."""
    c = 6
    p = _probs(3, c, seed=7)
    assert len(set(p.argmax(dim=1).tolist())) > 1  # mixed predictions
    x = torch.randn(len(p), 5)
    for name, defense in _all_defenses(5, c).items():
        if name.startswith("random_noise"):
            continue  # its noise stream advances with each row drawn
        alone = torch.cat([defense(p[i:i + 1], x[i:i + 1]) for i in range(len(p))])
        torch.testing.assert_close(defense(p, x), alone, rtol=0, atol=1e-6, msg=name)


def test_label_only_and_topk_per_row():
    p = torch.tensor([[0.1, 0.7, 0.2, 0.0], [0.5, 0.1, 0.15, 0.25], [0.05, 0.05, 0.1, 0.8]])
    torch.testing.assert_close(LabelOnly()(p), torch.tensor([[0., 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 1]]))
    torch.testing.assert_close(TopK(2)(p), torch.tensor([[0., 0.7, 0.2, 0], [0.5, 0, 0, 0.25], [0, 0, 0.1, 0.8]])
                               / torch.tensor([[0.9], [0.75], [0.9]]))


@pytest.mark.parametrize("c", [6, 12])  # 12: MAD's argmax-preserving search is greedy
def test_label_preserving_defenses_keep_the_argmax(c):
    p = _probs(8, c, seed=11)
    p = p[(p.topk(2, dim=1).values[:, 0] > p.topk(2, dim=1).values[:, 1])]  # a unique top class
    x = torch.randn(len(p), 5)
    model = _mlp(5, c, seed=2)
    for defense in (TopK(1), TopK(3), TopK(c), LabelOnly(), MAD(model, 2.0, keep_argmax=True),
                    MAD(model, 0.3, ydist="l2", keep_argmax=True)):
        assert torch.equal(defense(p, x).argmax(dim=1), p.argmax(dim=1)), repr(defense)
    for decimals in (0, 1, 2):  # weakly: the top class stays a top class
        y = Rounding(decimals)(p)
        assert torch.equal(y.gather(1, p.argmax(dim=1, keepdim=True)).squeeze(1), y.max(dim=1).values)


# ----------------------------------------------------------------------------------------- MAD
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
    model = _mlp(7, c, seed=5)
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
    model = _mlp(5, c, seed=3)
    p, x = _probs(4, c, seed=4), torch.randn(24, 5)
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


# -------------------------------------------------------------------- adaptive misinformation
def test_adaptive_misinformation_blends_as_the_formula_says():
    c, tau, nu = 5, 0.6, 20.0  # a soft gate, so both terms matter
    model = _mlp(4, c, seed=6)
    x = torch.randn(12, 4)
    p = _probs(2, c, seed=8)
    y = AdaptiveMisinformation(model, tau=tau, nu=nu)(p, x)
    with torch.no_grad():
        p_mis = F.softmax(model(x).double(), dim=1)
    a = 1.0 / (1.0 + torch.exp(nu * (p.max(dim=1, keepdim=True).values - tau)))
    torch.testing.assert_close(y, (1 - a) * p + a * p_mis, rtol=0, atol=1e-7)
    sharp = AdaptiveMisinformation(model, tau=tau)(p, x)  # nu = 1000: all or nothing
    low = p.max(dim=1).values < tau - 0.05
    high = p.max(dim=1).values > tau + 0.05
    torch.testing.assert_close(sharp[high], p[high], rtol=0, atol=1e-6)
    torch.testing.assert_close(sharp[low], p_mis[low], rtol=0, atol=1e-6)


def test_misinformation_loss_matches_its_definition():
    logits = torch.randn(9, 7, dtype=torch.float64) * 3
    target = torch.randint(0, 7, (9,))
    expected = -torch.log(1 - F.softmax(logits, dim=1)[torch.arange(9), target]).mean()
    torch.testing.assert_close(misinformation_loss(logits, target), expected, rtol=1e-12, atol=1e-12)


def test_train_misinformation_model_lowers_true_class_probability():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(128, 6, generator=g)
    y = (x[:, 0] > 0).long() + 2 * (x[:, 1] > 0).long()  # 4 learnable classes
    data = torch.utils.data.TensorDataset(x, y)
    model = _mlp(6, 4, seed=9)

    def true_class_prob():
        with torch.no_grad():
            return F.softmax(model(x), dim=1)[torch.arange(len(y)), y].mean().item()

    before = true_class_prob()
    trained = train_misinformation_model(model, data, epochs=4, batch_size=16, lr=3e-2, progress=False)
    assert trained is model and not model.training
    assert true_class_prob() < before / 3


# ------------------------------------------------------------------ random noise and rounding
@pytest.mark.parametrize("dist", ["l1", "l2"])
def test_random_noise_spends_its_budget_and_is_seeded(dist):
    p = _probs(5, 10, seed=12)
    y = RandomNoise(0.05, dist=dist, seed=1)(p)
    d = (y - p).abs().sum(dim=1) if dist == "l1" else (y - p).norm(dim=1)
    # a uniform draw on the simplex is almost surely further than 0.05 away: the whole budget
    torch.testing.assert_close(d, torch.full_like(d, 0.05), rtol=0, atol=1e-12)
    assert torch.equal(RandomNoise(0.3, seed=4)(p), RandomNoise(0.3, seed=4)(p))
    assert not torch.equal(RandomNoise(0.3, seed=4)(p), RandomNoise(0.3, seed=5)(p))
    torch.testing.assert_close(RandomNoise(0.0)(p), p, rtol=0, atol=0)


def _largest_remainder(row, decimals):
    """Exact rational largest-remainder rounding of one row (ties to the lower index)."""
    scale = 10 ** decimals
    fracs = [Fraction(v) for v in row]
    total = sum(fracs)
    units = [f / total * scale for f in fracs]
    base = [int(u) for u in units]
    order = sorted(range(len(units)), key=lambda k: (-(units[k] - base[k]), k))
    for k in order[:scale - sum(base)]:
        base[k] += 1
    return [b / scale for b in base]


@pytest.mark.parametrize("decimals", [0, 1, 2, 4])
def test_rounding_is_largest_remainder_rounding(decimals):
    p = _probs(3, 7, seed=decimals)
    y = Rounding(decimals)(p)
    expected = torch.tensor([_largest_remainder(row.tolist(), decimals) for row in p], dtype=torch.float64)
    torch.testing.assert_close(y, expected, rtol=0, atol=1e-15)
    assert float((y - p).abs().max()) < 10.0 ** -decimals
    if decimals == 0:
        torch.testing.assert_close(y, LabelOnly()(p))


# --------------------------------------------------------------------------- bad parameters
@pytest.mark.parametrize("make,name", [
    (lambda: DCP(-0.1), "beta"), (lambda: DCP(0.5, gamma=-1), "gamma"), (lambda: DCP(0.5, nu=-1), "nu"),
    (lambda: DCP(float("nan")), "beta"), (lambda: DCP(0.5, cap_log_odds="yes"), "cap_log_odds"),
    (lambda: ReverseSigmoid(-1, 0.5), "beta"), (lambda: ReverseSigmoid(0.5, -0.5), "gamma"),
    (lambda: TopK(0), "k"), (lambda: TopK(1.5), "k"), (lambda: Rounding(-1), "decimals"), (lambda: Rounding(16), "decimals"),
    (lambda: RandomNoise(-0.1), "epsilon"), (lambda: RandomNoise(0.1, dist="kl"), "dist"),
    (lambda: MAD(_mlp(2, 3), -0.5), "epsilon"), (lambda: MAD(_mlp(2, 3), 0.5, ydist="kl"), "ydist"),
    (lambda: MAD(_mlp(2, 3), 0.5, oracle="random"), "oracle"), (lambda: MAD("model", 0.5), "surrogate"),
    (lambda: AdaptiveMisinformation(_mlp(2, 3), tau=1.5), "tau"),
    (lambda: AdaptiveMisinformation(_mlp(2, 3), tau=0.5, nu=-1), "nu"),
    (lambda: build_defense("nope"), "unknown defense"), (lambda: build_defense("dcp"), "beta"),
    (lambda: build_defense("dcp", beta="high"), "beta"), (lambda: build_defense("dcp", beta=1, k=2), "k"),
    (lambda: build_defense("topk", k="2.5"), "k"), (lambda: build_defense("mad", surrogate="/nonexistent", epsilon=1),
                                                     "surrogate"),
])
def test_bad_parameters_raise_value_error_naming_them(make, name):
    with pytest.raises(ValueError, match=name):
        make()


def test_bad_calls_raise_value_error():
    p = _probs(1, 4)
    with pytest.raises(ValueError, match="k must be <= the number of classes 4"):
        TopK(5)(p)
    with pytest.raises(ValueError, match="probs"):
        DCP(0.5)(p[0])
    with pytest.raises(ValueError, match="probs"):
        DCP(0.5)(p.long())
    with pytest.raises(ValueError, match="x"):
        MAD(_mlp(2, 4), 0.5)(p)
    with pytest.raises(ValueError, match="x"):
        AdaptiveMisinformation(_mlp(2, 4), 0.5)(p, torch.randn(len(p) + 1, 2))
    with pytest.raises(ValueError, match="same 4 classes"):
        MAD(_mlp(2, 3), 0.5)(p, torch.randn(len(p), 2))


# ------------------------------------------------------------------------------- the registry
def test_build_defense_parses_cli_strings():
    assert repr(build_defense("DCP", beta="0.5", cap_log_odds="false")) == \
        "DCP(beta=0.5, gamma=0.2, nu=1000.0, cap_log_odds=False)"
    assert repr(build_defense("top-k", k="3")) == "TopK(k=3)"
    assert repr(build_defense("label")) == "LabelOnly()"
    assert repr(build_defense("random-noise", epsilon="0.2", dist="l2", seed="7")) == \
        "RandomNoise(epsilon=0.2, dist='l2', seed=7)"
    model = _mlp(2, 3)
    am = build_defense("am", model=model, tau="0.4")
    assert isinstance(am, AdaptiveMisinformation) and am.misinformation_model is model and am.tau == 0.4
    mad = build_defense("mad", model=model, epsilon="1", keep_argmax="yes")
    assert mad.surrogate is model and mad.keep_argmax and mad.epsilon == 1.0
    assert repr(mad) == repr(build_defense("mad", surrogate=_mlp(2, 3), epsilon=1.0, keep_argmax=True))  # same weights


def test_defense_arguments_from_argparse():
    parser = argparse.ArgumentParser()
    add_defense_arguments(parser)
    args = parser.parse_args(["--defense", "dcp", "--defense-arg", "beta=0.5", "--defense-arg", "gamma = 0.1"])
    assert repr(defense_from_args(args)) == "DCP(beta=0.5, gamma=0.1, nu=1000.0, cap_log_odds=True)"
    assert defense_from_args(parser.parse_args([])) is None
    with pytest.raises(ValueError, match="without --defense"):
        defense_from_args(parser.parse_args(["--defense-arg", "beta=1"]))
    with pytest.raises(ValueError, match="KEY=VALUE"):
        parse_defense_args(["beta"])
    with pytest.raises(ValueError, match="twice"):
        parse_defense_args(["beta=1", "beta=2"])


# --------------------------------------------------------------------------------- the cost
def test_defense_cost_against_direct_computation():
    c = 5
    victim = _mlp(4, c, seed=13).eval()
    x = torch.randn(70, 4)
    y = torch.randint(0, c, (70,))
    defense = DCP(0.9)
    cost = defense_cost(victim, defense, (x, y), batch_size=32, repeats=2)
    with torch.no_grad():
        p = F.softmax(victim(x), dim=1).double()
    returned = defense(p)
    assert cost["num_queries"] == 70
    assert cost["victim_accuracy"] == pytest.approx((returned.argmax(1) == y).double().mean().item())
    assert cost["victim_accuracy_clean"] == pytest.approx((p.argmax(1) == y).double().mean().item())
    assert cost["argmax_changed"] == pytest.approx((returned.argmax(1) != p.argmax(1)).double().mean().item())
    assert cost["mean_l1"] == pytest.approx((p - returned).abs().sum(1).mean().item(), abs=1e-6)
    assert cost["mean_kl"] == pytest.approx((p * (p / returned).log()).sum(1).mean().item(), abs=1e-6)
    assert cost["latency_per_query_s"] > 0 and cost["victim_latency_per_query_s"] > 0
    assert cost["latency_overhead"] == pytest.approx(cost["latency_per_query_s"] / cost["victim_latency_per_query_s"])
    label = defense_cost(victim, LabelOnly(), torch.utils.data.TensorDataset(x, y), batch_size=64, repeats=1)
    assert label["victim_accuracy"] == label["victim_accuracy_clean"] and label["argmax_changed"] == 0


def test_defenses_compose_with_the_blackbox():
    from divqat.blackbox import BlackBox

    victim = _mlp(3, 4, seed=14)
    meta = dict(num_classes=4, in_channels=1, image_size=(1, 3), mean=(0.5,), std=(0.5,))
    x = torch.rand(10, 1, 1, 3)
    for defense in (DCP(0.8), ReverseSigmoid(0.5, 0.5), TopK(2), Rounding(1), LabelOnly()):
        box = BlackBox(torch.nn.Sequential(torch.nn.Flatten(), victim), defense=defense, meta=meta)
        with torch.no_grad():
            expected = defense(F.softmax(victim(x.flatten(1)), dim=1))
        torch.testing.assert_close(box.query(x), expected, msg=repr(defense))
        assert box.defense_id == repr(defense)
