"""Checks shared by the attack tests (one attack module per test file)."""
import pytest

from divqat.attacks import TrainConfig
from divqat.blackbox import BlackBox
from divqat.metrics import agreement, predict_logits

FAST = TrainConfig(epochs=4, lr=0.05, momentum=0.9)


def agreement_with(surrogate, victim, xt):
    return agreement(predict_logits(surrogate, xt), predict_logits(victim, xt))


def check_sampling_attack(victim, data, attack, kw):
    """A query-set attack spends its budget exactly, beats chance, and logs its settings."""
    x, y, xt, _ = data
    bb = BlackBox(victim, budget=700)
    surrogate, record = attack(bb, (x, y), 700, train=FAST, seed=1, progress=False, **kw)
    assert bb.queries_used == 700 == record["queries_used"] and bb.budget_left == 0
    assert agreement_with(surrogate, victim, xt) > 0.6
    assert record["train"]["epochs"] == 4 and record["seed"] == 1 and record["arch"] == "smallcnn"


def check_data_free_attack(victim, data, attack, kw, budget):
    """A data-free attack spends its budget exactly (with a tail) and beats chance."""
    xt = data[2]
    bb = BlackBox(victim, budget=budget)
    surrogate, record = attack(bb, budget, progress=False, **kw)
    assert bb.queries_used == budget == record["queries_used"]
    assert record["tail_steps"] > 0  # the budget is not a multiple of the iteration cost: the tail spends the rest
    assert agreement_with(surrogate, victim, xt) > 0.2


def check_refused(victim, data, call, match):
    """``call(blackbox, x, y)`` is refused with a ValueError matching ``match`` before any query."""
    x, y = data[0][:200], data[1][:200]
    bb = BlackBox(victim, budget=50)
    with pytest.raises(ValueError, match=match):
        call(bb, x, y)
    assert bb.queries_used == 0
