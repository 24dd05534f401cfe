"""KnockoffNets (adaptive) end to end on digits: budget spent exactly, above chance, bad input refused."""
import pytest
from attack_helpers import check_refused, check_sampling_attack

from divqat.attacks import knockoff_adaptive


@pytest.mark.parametrize("reward", ["all", "cert"])
def test_spends_budget_exactly_and_beats_chance(victim, data, reward):
    check_sampling_attack(victim, data, knockoff_adaptive, {"reward": reward})


@pytest.mark.parametrize("call,match", [
    (lambda bb, x, y: knockoff_adaptive(bb, x, 10), "classes"),
    (lambda bb, x, y: knockoff_adaptive(bb, (x, y), 10, reward="fun"), "reward"),
])
def test_bad_input(victim, data, call, match):
    check_refused(victim, data, call, match)
