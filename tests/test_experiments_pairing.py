"""docs/science.md §9: one seed pairs what is compared. Two different victims attacked with the
same seed receive the same query sample in the same order, and their surrogates start from the
same weights; the grid gives every victim of a seed the same seed (tests/test_experiments_cache.py
checks the teacher and the cells' seeds)."""
import pytest
import torch

from divqat.attacks import TrainConfig, copycat, knockoff
from divqat.attacks.common import setup_attack
from divqat.blackbox import BlackBox
from divqat.data import load_tensors
from divqat.models import build_model_for

pytestmark = pytest.mark.usefixtures("one_thread")


class RecordQueries:
    """An identity defense that keeps every query batch it sees (a real BlackBox defense hook)."""

    needs_input = True

    def __init__(self):
        self.batches = []

    def __call__(self, p, x):
        self.batches.append(x.clone())
        return p


def _victim(seed):
    torch.manual_seed(seed)
    return build_model_for("smallcnn", "digits").eval()


@pytest.mark.parametrize("attack", [knockoff, copycat])
def test_one_seed_gives_different_victims_the_same_queries_and_surrogate_start(attack):
    queries = load_tensors("digits", "train", limit=200)[0]
    victims = [_victim(1), _victim(2)]
    assert not torch.equal(next(victims[0].parameters()), next(victims[1].parameters()))
    seen, starts = [], []
    for victim in victims:
        hook = RecordQueries()
        bb = BlackBox(victim, defense=hook, defense_id="record", budget=64)
        starts.append(setup_attack(bb, 64, None, seed=5).state_dict())  # what the attack does first
        attack(bb, queries, 64, train=TrainConfig(epochs=1), seed=5, progress=False)
        seen.append(torch.cat(hook.batches))
    assert seen[0].shape == (64, *queries.shape[1:])
    assert torch.equal(seen[0], seen[1])
    assert all(torch.equal(starts[0][k], starts[1][k]) for k in starts[0])
    # another seed draws another sample
    hook = RecordQueries()
    attack(BlackBox(victims[0], defense=hook, defense_id="record", budget=64), queries, 64,
           train=TrainConfig(epochs=1), seed=6, progress=False)
    assert not torch.equal(torch.cat(hook.batches), seen[0])
