"""The transfer-set cache: one query pass shared by budgets and by KnockoffNets and Copycat."""
import torch

from divqat.attacks import TrainConfig, copycat, knockoff
from divqat.blackbox import BlackBox


def test_transfer_cache_reuses_one_query_pass(victim, data, tmp_path):
    x = data[0]
    one = dict(train=TrainConfig(epochs=1), progress=False, cache_dir=tmp_path, seed=3)
    bb = BlackBox(victim, budget=600, victim_id="v")
    knockoff(bb, x, 600, **one)
    assert bb.queries_used == 600
    bb = BlackBox(victim, budget=300, victim_id="v")
    _, record = knockoff(bb, x, 300, **one)
    assert bb.queries_used == 0 and record["fresh_queries"] == 0 and record["queries_used"] == 300
    bb = BlackBox(victim, budget=300, victim_id="v")
    _, record = copycat(bb, x, 300, **one)  # same black box settings, same order: shared answers
    assert bb.queries_used == 0
    bb = BlackBox(victim, victim_id="v")
    _, record = knockoff(bb, x, 800, **one)
    assert record["fresh_queries"] == 200 == bb.queries_used  # only the images beyond the cached prefix
    assert torch.load(next(tmp_path.iterdir()), weights_only=True)["answers"].shape == (800, 10)
    bb = BlackBox(victim, victim_id="v", output="label")  # other answers: another cache entry
    knockoff(bb, x, 100, **one)
    assert bb.queries_used == 100 and len(list(tmp_path.iterdir())) == 2


def test_cached_answers_equal_fresh_answers(victim, data, tmp_path):
    x = data[0]
    kw = dict(train=TrainConfig(epochs=1), progress=False, seed=5)
    torch.manual_seed(0)
    fresh, _ = knockoff(BlackBox(victim, victim_id="v"), x, 200, **kw)
    knockoff(BlackBox(victim, victim_id="v"), x, 400, cache_dir=tmp_path, **kw)
    cached, record = knockoff(BlackBox(victim, victim_id="v"), x, 200, cache_dir=tmp_path, **kw)
    assert record["fresh_queries"] == 0
    for a, b in zip(fresh.state_dict().values(), cached.state_dict().values()):
        torch.testing.assert_close(a, b)  # same seed, same answers -> the same surrogate
