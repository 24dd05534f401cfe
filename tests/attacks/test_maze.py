"""MAZE on digits: budget spent exactly (with a tail), above chance, bad input refused."""
import pytest
from attack_helpers import check_data_free_attack, check_refused

from divqat.attacks import maze


def test_spends_budget_exactly_and_beats_chance(victim, data):
    check_data_free_attack(victim, data, maze, {"batch_size": 16, "ngf": 16, "ndirs": 4, "seed": 1}, 500)


@pytest.mark.parametrize("call,match", [
    (lambda bb, x, y: maze(bb, 10, mu=0), "mu"),
])
def test_bad_input(victim, data, call, match):
    check_refused(victim, data, call, match)
