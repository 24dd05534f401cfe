"""Query sets: images that do not fit the victim are adapted on request."""
import torch.nn.functional as F

from divqat.attacks import TrainConfig, knockoff
from divqat.blackbox import BlackBox


def test_adapt_queries_resizes(victim, data):
    bb = BlackBox(victim, budget=30)
    big = F.interpolate(data[0][:40], size=(28, 28), mode="bilinear").repeat(1, 3, 1, 1)
    _, record = knockoff(bb, big, 30, adapt_queries=True, train=TrainConfig(epochs=1), progress=False)
    assert bb.queries_used == 30 and record["adapt_queries"] is True
