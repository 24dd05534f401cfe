"""KnockoffNets (random) end to end on digits: budget spent exactly, above chance, bad input refused."""
import pytest
import torch
from attack_helpers import check_refused, check_sampling_attack

from divqat.attacks import TrainConfig, knockoff


def test_spends_budget_exactly_and_beats_chance(victim, data):
    check_sampling_attack(victim, data, knockoff, {})


@pytest.mark.parametrize("call,match", [
    (lambda bb, x, y: knockoff(bb, x, 0), "budget"),
    (lambda bb, x, y: knockoff(bb, x, 2.5), "budget"),
    (lambda bb, x, y: knockoff(bb, x, 51), "exceeds the 50 queries"),
    (lambda bb, x, y: knockoff(bb, x[:10], 11), "query set"),
    (lambda bb, x, y: knockoff(bb, torch.rand(20, 1, 28, 28), 10), "adapt"),
    (lambda bb, x, y: knockoff(bb, torch.rand(20, 3, 8, 8), 10), "adapt"),
    (lambda bb, x, y: knockoff(bb, "no-such-set", 10), "unknown name"),
    (lambda bb, x, y: knockoff(bb, [1, 2], 10), "queryset"),
    (lambda bb, x, y: knockoff(bb, x, 10, train={"epoch": 3}), "unknown options"),
    (lambda bb, x, y: knockoff(bb, x, 10, train=TrainConfig(lr=-1)), "lr"),
    (lambda bb, x, y: knockoff(bb, x, 10, cache_dir="/tmp"), "victim_id"),
])
def test_bad_input(victim, data, call, match):
    check_refused(victim, data, call, match)
