"""DFME on digits: budget spent exactly (with a tail), above chance, bad input refused."""
import pytest
from attack_helpers import check_data_free_attack, check_refused

from divqat.attacks import dfme


def test_spends_budget_exactly_and_beats_chance(victim, data):
    check_data_free_attack(victim, data, dfme, {"batch_size": 16, "ngf": 16, "lr_generator": 1e-3}, 3000)


@pytest.mark.parametrize("call,match", [
    (lambda bb, x, y: dfme(bb, 10, grad_m=0), "grad_m"),
])
def test_bad_input(victim, data, call, match):
    check_refused(victim, data, call, match)


def test_progress_counts_queries(victim, capsys, monkeypatch):
    """The plain progress lines count queries against the budget (not generator iterations)."""
    from divqat.blackbox import BlackBox

    monkeypatch.setenv("DIVQAT_PROGRESS_INTERVAL", "0")
    bb = BlackBox(victim, budget=700)
    dfme(bb, 700, batch_size=16, ngf=8, grad_m=1, progress=True)
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("dfme:")]
    assert lines and all("/700 queries" in line for line in lines)
    assert lines[-1].startswith(f"dfme: {bb.queries_used}/700 queries (100%)") and bb.queries_used == 700
