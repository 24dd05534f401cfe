"""The data-free machinery: the query plan, the zeroth-order gradient, recovered logits."""
import pytest
import torch

from divqat.attacks.data_free import plan_queries, zeroth_order_gradient


def test_plan_queries_spends_budget_exactly():
    for budget, batch, cost in [(1000, 32, 224), (224, 32, 224), (7, 32, 224), (1001, 10, 70)]:
        iterations, tail = plan_queries(budget, batch, cost)
        assert iterations * cost + sum(tail) == budget
        assert all(1 <= n <= batch for n in tail) and (not tail or max(tail) - min(tail) <= 1)


def test_zeroth_order_gradient_matches_linear_objective():
    """For a linear objective f(a) = <w, a> the forward difference is exact along each u, and with
    many directions the estimate converges to w / N (the gradient of the batch mean)."""
    torch.manual_seed(0)
    w = torch.randn(1, 2, 3, 3)
    a = torch.randn(2, 2, 3, 3)
    calls = []

    def objective(points):
        calls.append(len(points))
        return (points * w).flatten(1).sum(1)

    grad, value = zeroth_order_gradient(objective, a, ndirs=20000, eps=1e-3)
    assert calls == [2 * 20001]  # one pass over N (ndirs + 1) points
    assert value == pytest.approx((a * w).flatten(1).sum(1).mean().item(), rel=1e-5)
    torch.testing.assert_close(grad, (w / 2).expand_as(a), atol=0.05, rtol=0)


def test_recovered_logits_give_back_the_probabilities():
    from divqat.attacks.data_free import recovered_logits

    p = torch.softmax(torch.randn(4, 10), dim=1)
    logits = recovered_logits(p, 1e-8)
    torch.testing.assert_close(torch.softmax(logits, dim=1), p)
    torch.testing.assert_close(logits.mean(dim=1), torch.zeros(4), atol=1e-6, rtol=0)
