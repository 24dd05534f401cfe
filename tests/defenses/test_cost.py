"""defense_cost against a direct computation of each of its numbers."""
import pytest
import torch
import torch.nn.functional as F
from defense_helpers import make_mlp

from divqat.defenses import DCP, LabelOnly, defense_cost


def test_defense_cost_against_direct_computation():
    c = 5
    victim = make_mlp(4, c, seed=13).eval()
    x = torch.randn(70, 4)
    y = torch.randint(0, c, (70,))
    defense = DCP(0.9)
    cost = defense_cost(victim, defense, (x, y), batch_size=32, repeats=2)
    with torch.no_grad():
        p = F.softmax(victim(x), dim=1).double()
    returned = defense(p)
    assert cost["num_queries"] == 70
    assert cost["victim_accuracy"] == pytest.approx((returned.argmax(1) == y).double().mean().item())
    assert cost["victim_accuracy_clean"] == pytest.approx((p.argmax(1) == y).double().mean().item())
    assert cost["argmax_changed"] == pytest.approx((returned.argmax(1) != p.argmax(1)).double().mean().item())
    assert cost["mean_l1"] == pytest.approx((p - returned).abs().sum(1).mean().item(), abs=1e-6)
    assert cost["mean_kl"] == pytest.approx((p * (p / returned).log()).sum(1).mean().item(), abs=1e-6)
    assert cost["latency_per_query_s"] > 0 and cost["victim_latency_per_query_s"] > 0
    assert cost["latency_overhead"] == pytest.approx(cost["latency_per_query_s"] / cost["victim_latency_per_query_s"])
    label = defense_cost(victim, LabelOnly(), torch.utils.data.TensorDataset(x, y), batch_size=64, repeats=1)
    assert label["victim_accuracy"] == label["victim_accuracy_clean"] and label["argmax_changed"] == 0
