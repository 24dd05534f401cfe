"""Random noise spends its budget and is seeded."""
import pytest
import torch
from defense_helpers import make_probs

from divqat.defenses import RandomNoise


@pytest.mark.parametrize("dist", ["l1", "l2"])
def test_random_noise_spends_its_budget_and_is_seeded(dist):
    p = make_probs(5, 10, seed=12)
    y = RandomNoise(0.05, dist=dist, seed=1)(p)
    d = (y - p).abs().sum(dim=1) if dist == "l1" else (y - p).norm(dim=1)
    # a uniform draw on the simplex is almost surely further than 0.05 away: the whole budget
    torch.testing.assert_close(d, torch.full_like(d, 0.05), rtol=0, atol=1e-12)
    assert torch.equal(RandomNoise(0.3, seed=4)(p), RandomNoise(0.3, seed=4)(p))
    assert not torch.equal(RandomNoise(0.3, seed=4)(p), RandomNoise(0.3, seed=5)(p))
    torch.testing.assert_close(RandomNoise(0.0)(p), p, rtol=0, atol=0)
