"""Trained-in defense objectives (divqat.train.objectives, docs/science.md §3 and §8): values and
gradients against float64 references written from the formulas, the T = 1 identity of the
paper's loss, top-1 protection of the non-label objective, the entropy composition, and the
answer sharpening of the adaptive attacker."""
import math

import pytest
import torch
import torch.nn.functional as F

from divqat.attacks.answers import sharpen_answers
from divqat.ops import divqat_loss
from divqat.train.objectives import (
    Objective,
    entropy,
    keep_sink_order,
    label_margin,
    mask_label,
    nonlabel_loss,
    proxy_loss,
    swap_top2,
)

N, C = 12, 10


def _batch(seed=0, scale=3.0):
    g = torch.Generator().manual_seed(seed)
    s = torch.randn(N, C, generator=g, dtype=torch.float64) * scale
    t = torch.randn(N, C, generator=g, dtype=torch.float64) * scale
    y = torch.randint(C, (N,), generator=g)
    return s, t, y


def _ref_kl_rows(s, t, temperature, direction):
    """T^2 KL per row, float64, from log_softmax."""
    lp, lq = F.log_softmax(t / temperature, -1), F.log_softmax(s / temperature, -1)
    if direction == "reverse":
        lp, lq = lq, lp
    return temperature**2 * (lp.exp() * (lp - lq)).sum(-1)


def _drop_label(x, y):
    """Rows of x without their label column: (N, C - 1)."""
    keep = ~F.one_hot(y, x.shape[-1]).bool()
    return x[keep].reshape(len(x), -1)


def _ref_nonlabel(s, t, y, alpha, temperature, direction, kl_cap, margin, margin_weight):
    ce = F.cross_entropy(s, y)
    rows = _ref_kl_rows(_drop_label(s, y), _drop_label(t, y), temperature, direction)
    if kl_cap is not None:
        rows = rows.clamp(max=kl_cap)
    s_y = s.gather(1, y[:, None]).squeeze(1)
    gap = s_y - _drop_label(s, y).max(1).values
    return ce - alpha * rows.mean() + margin_weight * (margin - gap).clamp(min=0).mean()


def _value_and_grad(fn, s, *args):
    s = s.detach().clone().requires_grad_(True)
    value = fn(s, *args)
    (grad,) = torch.autograd.grad(value, s)
    return value.detach(), grad


def test_paper_loss_at_t1_is_the_reweighted_cross_entropy():
    """CE(y, q) - a KL(p || q) = -(1 - a p_y) log q_y + a sum_{k != y} p_k log q_k + a H(p)."""
    s, t, y = _batch()
    for alpha in (0.3, 1.0, 1.5):
        p, log_q = F.softmax(t, 1), F.log_softmax(s, 1)
        p_y, log_q_y = p.gather(1, y[:, None]).squeeze(1), log_q.gather(1, y[:, None]).squeeze(1)
        others = (_drop_label(p, y) * _drop_label(log_q, y)).sum(1)
        h = -(p * p.log()).sum(1)
        identity = (-(1 - alpha * p_y) * log_q_y + alpha * others + alpha * h).mean()
        got = divqat_loss(s.float(), t.float(), y, alpha)
        assert got.item() == pytest.approx(identity.item(), abs=2e-5)
        assert divqat_loss(s, t, y, alpha).item() == pytest.approx(identity.item(), abs=1e-10)


@pytest.mark.parametrize("temperature,direction,kl_cap", [(1.0, "forward", None), (4.0, "reverse", None),
                                                          (4.0, "forward", 0.5), (1.0, "reverse", 2.0)])
def test_nonlabel_loss_value_and_gradient_match_float64(temperature, direction, kl_cap):
    s, t, y = _batch(1)
    args = (t, y, 0.7, temperature, direction, kl_cap, 1.5, 0.8)
    ref, ref_grad = _value_and_grad(_ref_nonlabel, s, *args)
    got, grad = _value_and_grad(nonlabel_loss, s.float(), t.float(), *args[1:])
    assert got.item() == pytest.approx(ref.item(), abs=1e-4)
    torch.testing.assert_close(grad.double(), ref_grad, atol=1e-5, rtol=1e-4)
    got64, grad64 = _value_and_grad(nonlabel_loss, s, *args)
    assert got64.item() == pytest.approx(ref.item(), abs=1e-10)
    torch.testing.assert_close(grad64, ref_grad, atol=1e-10, rtol=1e-8)


def test_nonlabel_divergence_gives_the_label_logit_no_gradient():
    s, t, y = _batch(2)
    _, grad = _value_and_grad(nonlabel_loss, s, t, y, 1.0, 1.0, "forward", None, 0.0, 0.0)
    _, ce_grad = _value_and_grad(lambda z: F.cross_entropy(z, y), s)
    torch.testing.assert_close((grad - ce_grad).gather(1, y[:, None]), torch.zeros(N, 1, dtype=torch.float64),
                               atol=1e-12, rtol=0)
    assert (grad - ce_grad).abs().sum() > 0.1  # the divergence does act on the other logits
    masked = mask_label(s, y)
    assert (masked.gather(1, y[:, None]) <= -1e4).all() and torch.equal(_drop_label(masked, y), _drop_label(s, y))


def _optimise_logits(loss_fn, steps=300):
    """Free student logits started uniform (all zero), moved by Adam on ``loss_fn(s)``."""
    s = torch.zeros(N, C, requires_grad=True)
    opt = torch.optim.Adam([s], lr=0.1)
    for _ in range(steps):
        opt.zero_grad()
        loss_fn(s).backward()
        opt.step()
    return s.detach()


def test_margin_hinge_protects_top1_where_the_paper_loss_flips_it():
    """A confident teacher batch (p_y ~ 0.99), students started uniform: maximising the
    divergence at alpha 3 (alpha p_y > 1, the true-label weight of the T = 1 identity is negative)
    flips the paper objective's top-1 on most rows, while the non-label objective keeps every row's top-1,
    the hinge holds the margin m = 8 (CE alone stops near 5) and the non-label distribution still
    moves far from the teacher's."""
    g = torch.Generator().manual_seed(3)
    y = torch.arange(N) % C
    teacher = torch.randn(N, C, generator=g) + 7.0 * F.one_hot(y, C)
    paper = _optimise_logits(lambda s: divqat_loss(s, teacher, y, 3.0, kl_cap=10.0))
    assert (paper.argmax(1) != y).float().mean() > 0.5
    without_hinge, protected = (_optimise_logits(lambda s: nonlabel_loss(s, teacher, y, 3.0, kl_cap=10.0, margin=8.0,
                                                                         margin_weight=w)) for w in (0.0, 5.0))
    assert torch.equal(protected.argmax(1), y) and torch.equal(without_hinge.argmax(1), y)
    assert label_margin(without_hinge, y).min() < 7.0
    assert (label_margin(protected, y) >= 7.9).all()
    moved = _ref_kl_rows(_drop_label(protected, y).double(), _drop_label(teacher, y).double(), 1.0, "forward")
    assert moved.mean() > 3.0


@pytest.mark.parametrize("target,distill", [("kl", 0.0), ("kl", 0.5), ("entropy", 0.0), ("shift", 0.5),
                                            ("permute", 0.5), ("swap", 0.5), ("keep_sink", 0.5)])
def test_proxy_loss_value_and_gradient_match_float64(target, distill):
    s, t, y = _batch(4)
    ps, pt, _ = _batch(5)
    temperature, direction, cap, alpha = 2.0, "forward", 1.5, 0.6

    def ref(s, ps):
        loss = F.cross_entropy(s, y) + distill * _ref_kl_rows(s, t, temperature, direction).mean()
        if target == "shift":
            shifted = (pt.argmax(1) + 1) % C
            return loss - alpha * (F.log_softmax(ps, 1).gather(1, shifted[:, None]).mean())
        if target == "permute":  # f_fp's probability of class k asked of class (k + 1) mod C
            renamed = torch.cat([pt[:, -1:], pt[:, :-1]], 1)
            return loss + alpha * _ref_kl_rows(ps, renamed, temperature, direction).mean()
        if target == "keep_sink":  # class 3 kept; the others' probabilities each asked of the next other class
            others = [k for k in range(C) if k != 3]
            renamed = pt.clone()
            for i, k in enumerate(others):
                renamed[:, others[(i + 1) % len(others)]] = pt[:, k]
            return loss + alpha * _ref_kl_rows(ps, renamed, temperature, direction).mean()
        if target == "swap":  # f_fp's two largest logits exchanged, row by row
            swapped = pt.clone()
            for row, logits in zip(swapped, pt.tolist()):
                first, second = sorted(range(C), key=lambda k: -logits[k])[:2]
                row[first], row[second] = logits[second], logits[first]
            return loss + alpha * _ref_kl_rows(ps, swapped, temperature, direction).mean()
        if target == "kl":
            spread = _ref_kl_rows(ps, pt, temperature, direction)
        else:
            spread = -(F.softmax(ps, 1) * F.log_softmax(ps, 1)).sum(1)
        return loss - alpha * spread.clamp(max=cap).mean()

    s_, ps_ = s.clone().requires_grad_(True), ps.clone().requires_grad_(True)
    expected = ref(s_, ps_)
    expected.backward()
    s32, ps32 = s.float().requires_grad_(True), ps.float().requires_grad_(True)
    got = proxy_loss(s32, t.float(), y, ps32, pt.float() if target != "entropy" else None, alpha, temperature,
                     direction, cap, target, distill, sink=3)
    got.backward()
    assert got.item() == pytest.approx(expected.item(), abs=1e-4)
    torch.testing.assert_close(s32.grad.double(), s_.grad, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(ps32.grad.double(), ps_.grad, atol=1e-5, rtol=1e-4)


def test_entropy_is_the_shannon_entropy():
    s, _, _ = _batch(6)
    expected = -(F.softmax(s, 1) * F.log_softmax(s, 1)).sum(1)
    torch.testing.assert_close(entropy(s), expected, atol=1e-10, rtol=0)
    assert entropy(torch.zeros(3, C, dtype=torch.float64)).allclose(torch.full((3,), math.log(C), dtype=torch.float64))


def test_objective_checks_and_signature():
    with pytest.raises(ValueError, match="objective"):
        Objective("bogus")
    with pytest.raises(ValueError, match="proxy_target"):
        Objective("proxy", proxy_target="labels")
    with pytest.raises(ValueError, match="margin"):
        Objective("nonlabel", margin=-1.0)
    assert Objective("nonlabel", margin=2.0).signature() == {"objective": "nonlabel", "margin": 2.0,
                                                             "margin_weight": 1.0}
    assert Objective("proxy", proxy_target="entropy").signature() == {"objective": "proxy",
                                                                      "proxy_target": "entropy", "distill": 0.0}


def test_sharpened_answers_are_the_renormalised_power():
    y = torch.tensor([[0.6, 0.3, 0.1, 0.0], [0.25, 0.25, 0.25, 0.25]], dtype=torch.float64)
    for tau in (0.25, 0.5, 1.0, 2.0):
        power = y ** (1 / tau)
        torch.testing.assert_close(sharpen_answers(y, tau), power / power.sum(1, keepdim=True))


@pytest.mark.parametrize("direction", ["forward", "reverse"])
def test_paper_loss_at_high_temperature_is_ce_minus_t2_kl(direction):
    """Nasty Teacher's setting (T = 4, weight 0.04, reverse KL): CE at T = 1 minus
    alpha T^2 KL at temperature T, value and gradient against float64."""
    s, t, y = _batch(7)

    def ref(z):
        return F.cross_entropy(z, y) - 0.04 * _ref_kl_rows(z, t, 4.0, direction).mean()

    expected, expected_grad = _value_and_grad(ref, s)
    got, grad = _value_and_grad(lambda z: divqat_loss(z, t.float(), y, 0.04, 4.0, direction), s.float())
    assert got.item() == pytest.approx(expected.item(), abs=1e-5)
    torch.testing.assert_close(grad.double(), expected_grad, atol=1e-6, rtol=1e-4)


def test_knockoff_trains_on_sharpened_answers_and_refuses_a_bad_temperature():
    from divqat.attacks import knockoff
    from divqat.blackbox import BlackBox
    from divqat.models import build_model_for

    torch.manual_seed(0)
    victim = build_model_for("smallcnn", "digits").eval()
    queries = torch.rand(40, 1, 8, 8)
    with pytest.raises(ValueError, match="sharpen"):
        knockoff(BlackBox(victim, budget=40), queries, 40, sharpen=0.0, progress=False)
    train = {"epochs": 1, "batch_size": 40, "device": "cpu"}
    plain, sharp = (knockoff(BlackBox(victim, budget=40), queries, 40, sharpen=tau, train=train, seed=0,
                             progress=False) for tau in (None, 0.25))
    assert plain[1]["sharpen"] is None and sharp[1]["sharpen"] == 0.25
    assert plain[1]["final_train_loss"] != pytest.approx(sharp[1]["final_train_loss"])


def _counting_teacher_setup():
    """A student, a linear teacher that records how many rows it is run on, and a batch (seed 0)."""
    torch.manual_seed(0)
    model, linear = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, C)), torch.nn.Linear(64, C)
    seen = []

    def teacher(x):
        seen.append(len(x))
        return linear(x.flatten(1))

    return model, linear, teacher, seen, torch.rand(N, 1, 8, 8), torch.randint(C, (N,))


@pytest.mark.parametrize("target,distill", [("kl", 0.0), ("kl", 0.5), ("entropy", 0.0), ("entropy", 0.5),
                                            ("shift", 0.0), ("permute", 0.5), ("swap", 0.0)])
def test_proxy_step_is_proxy_loss_and_runs_the_teacher_only_where_read(target, distill):
    """The proxy training step equals proxy_loss on the same proxies, and the frozen teacher sees
    the real images only with distill > 0 and the proxies only for kl, shift, permute and swap."""
    from divqat.train.proxies import synthesize_proxies

    model, linear, teacher, seen, x, y = _counting_teacher_setup()
    step = Objective("proxy", proxy_target=target, distill=distill).make_step(teacher, 0.3, 2.0, "forward", 1.5)
    torch.manual_seed(1)
    got = step(model, x, y, 1.0)["loss"]
    torch.manual_seed(1)
    proxies = synthesize_proxies(x, y)
    with torch.no_grad():
        expected = proxy_loss(model(x), linear(x.flatten(1)), y, model(proxies), linear(proxies.flatten(1)), 0.3,
                              2.0, "forward", 1.5, target, distill)
    assert got.item() == pytest.approx(expected.item(), rel=1e-5, abs=1e-6)
    assert sum(seen) == N * (bool(distill) + (target != "entropy"))


def test_the_papers_objective_steps_as_divqat_step():
    """Objective("divqat") trains with the DivQAT trainer's own step: the same loss, and at
    alpha = 0 the teacher is never run."""
    from divqat.train.trainers import divqat_step

    model, linear, teacher, seen, x, y = _counting_teacher_setup()
    got = Objective().make_step(teacher, 0.3, 2.0, "reverse", 1.5, 2)(model, x, y, 1.0)
    expected = divqat_step(teacher, 0.3, 2.0, "reverse", 1.5, 2)(model, x, y, 1.0)
    assert got["loss"].item() == pytest.approx(expected["loss"].item(), rel=1e-6)
    seen.clear()
    Objective().make_step(teacher, 0.0)(model, x, y, 1.0)
    assert seen == []


def test_swap_top2_exchanges_the_two_largest_logits_only():
    logits = torch.tensor([[0.1, 3.0, -1.0, 2.5], [5.0, 4.0, 6.0, -2.0]], dtype=torch.float64)
    expected = torch.tensor([[0.1, 2.5, -1.0, 3.0], [6.0, 4.0, 5.0, -2.0]], dtype=torch.float64)
    torch.testing.assert_close(swap_top2(logits), expected, atol=0, rtol=0)
    assert swap_top2(logits).argmax(-1).tolist() == [3, 0]  # the runner-up class is now the answer
    assert torch.equal(logits[1], torch.tensor([5.0, 4.0, 6.0, -2.0], dtype=torch.float64))  # out of place


def test_keep_sink_order_renames_every_class_but_the_sink_one_along():
    assert keep_sink_order(4, 1).tolist() == [3, 1, 0, 2]  # 0 -> 2 -> 3 -> 0 among the others, 1 stays
    teacher = torch.eye(4)  # f_fp answers class k on row k
    assert teacher[:, keep_sink_order(4, 1)].argmax(-1).tolist() == [2, 1, 3, 0]
    assert keep_sink_order(C, C - 1).tolist()[:C - 1] == torch.arange(C - 1).roll(1).tolist()


def test_keep_sink_without_its_sink_is_refused():
    s, t, y = _batch(4)
    with pytest.raises(ValueError, match="sink"):
        proxy_loss(s, t, y, s, t, 0.5, proxy_target="keep_sink")
