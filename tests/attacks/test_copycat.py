"""Copycat end to end on digits: budget spent exactly, above chance."""
from attack_helpers import check_sampling_attack

from divqat.attacks import copycat


def test_spends_budget_exactly_and_beats_chance(victim, data):
    check_sampling_attack(victim, data, copycat, {})
