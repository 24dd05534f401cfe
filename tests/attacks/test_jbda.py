"""JBDA on digits: budget exact and capped by its schedule, the Jacobian step, bad input."""
import pytest
import torch
import torch.nn.functional as F
from attack_helpers import FAST, agreement_with, check_refused

from divqat.attacks import TrainConfig, jbda
from divqat.blackbox import BlackBox


def test_jbda_budget_exact_and_capped(victim, data):
    x, _, xt, _ = data
    bb = BlackBox(victim, budget=250)
    surrogate, record = jbda(bb, x, 250, seeds=40, rounds=3, round_epochs=2, train=FAST, progress=False)
    assert bb.queries_used == 250 == record["queries_used"]  # 40 + 40 + 80, then 90 of the next 160
    assert record["rounds_done"] == 3
    assert agreement_with(surrogate, victim, xt) > 0.3
    # a budget larger than seeds * 2**rounds: the attack stops at what the schedule can spend
    bb = BlackBox(victim, budget=100)
    _, record = jbda(bb, x, 100, seeds=10, rounds=2, round_epochs=1, train=TrainConfig(epochs=1), progress=False)
    assert bb.queries_used == record["queries_used"] == 40


def test_jbda_step_is_signed_gradient_clipped(victim, data):
    from divqat.attacks.jbda import jacobian_step

    x = data[0][:5]
    labels = torch.tensor([0, 1, 2, 3, 4])
    x_req = x.clone().requires_grad_(True)
    F.softmax(victim(x_req), dim=1).gather(1, labels[:, None]).sum().backward()
    expected = (x + 0.1 * x_req.grad.sign()).clamp(0, 1)
    torch.testing.assert_close(jacobian_step(victim, x, labels, 0.1), expected)


@pytest.mark.parametrize("call,match", [
    (lambda bb, x, y: jbda(bb, x, 10, lam=0), "lam"),
])
def test_bad_input(victim, data, call, match):
    check_refused(victim, data, call, match)
