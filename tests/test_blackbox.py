"""BlackBox: every output mode against hand-computed vectors, budget enforcement, defenses, bad input."""
import math
import threading
import time

import pytest
import torch
import torch.nn as nn

from divqat.blackbox import BlackBox, QueryBudgetExceeded


class _Scaled(nn.Module):
    """logits = 10 * x.flatten(1) on (1, 2, 2) images: 4 classes whose logits the test chooses."""

    def __init__(self):
        super().__init__()
        self.meta = dict(num_classes=4, in_channels=1, image_size=2, mean=(0.0,), std=(1.0,))
        self.arch = "scaled"
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        return 10 * x.flatten(1)


def _softmax(row):
    e = [math.exp(v) for v in row]
    return [v / sum(e) for v in e]


# two rows with different predictions (class 3, class 0); logits = 10 x
X = torch.tensor([[0.1, 0.2, 0.3, 0.4], [0.4, 0.3, 0.2, 0.1]]).view(2, 1, 2, 2)
P = [_softmax([1, 2, 3, 4]), _softmax([4, 3, 2, 1])]


def _expected(mode):
    if mode == "probs":
        return P
    if mode == "topk":  # k = 2: the two largest, renormalised = softmax of their logits alone
        return [[0, 0] + _softmax([3, 4]), _softmax([4, 3]) + [0, 0]]
    if mode == "rounded":  # decimals = 2
        return [[round(v, 2) for v in row] for row in P]
    return [[0, 0, 0, 1], [1, 0, 0, 0]]


@pytest.mark.parametrize("mode,kw", [("probs", {}), ("topk", {"k": 2}), ("rounded", {"decimals": 2}), ("label", {})])
def test_output_modes_hand_values(mode, kw):
    bb = BlackBox(_Scaled(), output=mode, **kw)
    got = bb.query(X)
    assert got.dtype == torch.float32 and got.device.type == "cpu" and not got.requires_grad
    torch.testing.assert_close(got.double(), torch.tensor(_expected(mode), dtype=torch.float64), atol=1e-6, rtol=0)
    assert bb.queries_used == 2


def test_rounding_hand_digits():
    # softmax(1,2,3,4) = 0.0321, 0.0871, 0.2369, 0.6439 -> 0.03, 0.09, 0.24, 0.64
    got = BlackBox(_Scaled(), output="rounded", decimals=2).query(X[:1])
    torch.testing.assert_close(got, torch.tensor([[0.03, 0.09, 0.24, 0.64]]))


def test_batches_split_and_counted():
    model = _Scaled()
    bb = BlackBox(model, batch_size=2)
    x = X.repeat(3, 1, 1, 1)  # 6 rows -> 3 forward passes
    got = bb.query(x)
    assert model.calls == 3 and bb.queries_used == 6
    torch.testing.assert_close(got.double(), torch.tensor(P * 3, dtype=torch.float64), atol=1e-6, rtol=0)


def test_budget_refuses_whole_query_and_counts_nothing():
    bb = BlackBox(_Scaled(), budget=5)
    assert bb.budget == 5 and bb.budget_left == 5
    bb.query(X.repeat(2, 1, 1, 1)[:3])
    assert bb.queries_used == 3 and bb.budget_left == 2
    with pytest.raises(QueryBudgetExceeded, match="budget of 5"):
        bb.query(X.repeat(2, 1, 1, 1)[:3])
    assert bb.queries_used == 3  # nothing answered, nothing counted
    assert bb.query(X[:0]).shape == (0, 4)
    bb.query(X)
    assert bb.queries_used == 5 and bb.budget_left == 0
    with pytest.raises(QueryBudgetExceeded):
        bb.query(X[:1])
    assert BlackBox(_Scaled()).budget_left is None


def test_uncounted_query_matches_and_spends_nothing():
    bb = BlackBox(_Scaled(), output="topk", k=1, budget=0)
    torch.testing.assert_close(bb.uncounted_query(X), torch.tensor([[0.0, 0, 0, 1], [1, 0, 0, 0]]))
    assert bb.queries_used == 0


def test_defense_applied_before_truncation():
    reverse = lambda p: p.flip(1)  # noqa: E731  (a defense that moves the argmax)
    got = BlackBox(_Scaled(), output="label", defense=reverse).query(X)
    torch.testing.assert_close(got, torch.tensor([[1.0, 0, 0, 0], [0, 0, 0, 1]]))
    got = BlackBox(_Scaled(), output="topk", k=1, defense=reverse).query(X)
    torch.testing.assert_close(got, torch.tensor([[1.0, 0, 0, 0], [0, 0, 0, 1]]))


def test_defense_that_needs_inputs_gets_the_batch():
    seen = []

    class Uses:
        needs_input = True

        def __call__(self, p, x):
            seen.append(x.clone())
            return p

    BlackBox(_Scaled(), defense=Uses(), batch_size=1).query(X)
    assert len(seen) == 2 and torch.equal(torch.cat(seen), X)


def test_bad_defense_output_shape():
    with pytest.raises(RuntimeError, match="defense returned shape"):
        BlackBox(_Scaled(), defense=lambda p: p[:, :2]).query(X)


def test_no_gradient_and_no_public_model():
    x = X.clone().requires_grad_(True)
    bb = BlackBox(_Scaled())
    out = bb.query(x)
    assert not out.requires_grad and out.grad_fn is None
    public = {k: v for k, v in vars(bb).items() if not k.startswith("_")}
    assert not any(isinstance(v, nn.Module) for v in public.values())
    assert bb.num_classes == 4 and bb.input_shape == (1, 2, 2) and bb.arch == "scaled"


@pytest.mark.parametrize("x,match", [
    (torch.rand(2, 1, 2, 3), "shape"),
    (torch.rand(2, 3, 2, 2), "shape"),
    (torch.rand(1, 2, 2), "shape"),
    (torch.full((1, 1, 2, 2), 1.5), r"\[0, 1\]"),
    (torch.full((1, 1, 2, 2), -0.1), r"\[0, 1\]"),
    (torch.full((1, 1, 2, 2), float("nan")), r"\[0, 1\]"),
    (torch.zeros(1, 1, 2, 2, dtype=torch.uint8), "floating"),
    ([[0.0]], "floating"),
])
def test_bad_queries_name_x(x, match):
    bb = BlackBox(_Scaled(), budget=10)
    with pytest.raises(ValueError, match=match) as info:
        bb.query(x)
    assert str(info.value).startswith("x ")
    assert bb.queries_used == 0


@pytest.mark.parametrize("kw,match", [
    ({"output": "logits"}, "output"),
    ({"output": "topk"}, "k must"),
    ({"output": "topk", "k": 5}, "k must"),
    ({"output": "probs", "k": 2}, "k is only"),
    ({"output": "rounded"}, "decimals"),
    ({"output": "rounded", "decimals": -1}, "decimals"),
    ({"output": "label", "decimals": 2}, "decimals"),
    ({"budget": -1}, "budget"),
    ({"budget": 2.5}, "budget"),
    ({"batch_size": 0}, "batch_size"),
    ({"defense": "dcp"}, "defense"),
])
def test_bad_construction(kw, match):
    with pytest.raises(ValueError, match=match):
        BlackBox(_Scaled(), **kw)


def test_meta_required_and_identity():
    with pytest.raises(ValueError, match="meta"):
        BlackBox(nn.Linear(4, 4))
    model = nn.Flatten()
    bb = BlackBox(model, meta=dict(num_classes=4, in_channels=1, image_size=2, mean=(0.0,), std=(1.0,)))
    with pytest.raises(ValueError, match="victim_id"):
        bb.identity()
    bb = BlackBox(model, meta=bb.meta, victim_id="v1", defense=lambda p: p)
    with pytest.raises(ValueError, match="defense_id"):
        bb.identity()
    bb = BlackBox(model, meta=bb.meta, victim_id="v1", output="topk", k=2, defense=lambda p: p, defense_id="noop")
    assert bb.identity() == {"victim": "v1", "output": "topk", "k": 2, "decimals": None, "defense": "noop"}


class _Slow(_Scaled):
    """_Scaled with a pause in every forward pass, so concurrent queries overlap."""

    def forward(self, x):
        time.sleep(0.002)
        return super().forward(x)


@pytest.mark.parametrize("threads,rows,rounds", [(2, 60, 1), (16, 7, 4)])
def test_budget_holds_under_concurrent_threads(threads, rows, rounds):
    bb = BlackBox(_Slow(), budget=100, batch_size=4)
    answered, refused = [], []
    start = threading.Barrier(threads)

    def hammer():
        start.wait()
        for _ in range(rounds):
            try:
                answered.append(len(bb.query(X.repeat(rows, 1, 1, 1)[:rows])))
            except QueryBudgetExceeded:
                refused.append(rows)

    workers = [threading.Thread(target=hammer) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert sum(answered) <= 100 and sum(answered) == bb.queries_used
    assert len(answered) == 100 // rows  # every batch that fits is answered, the others refused whole
    assert len(answered) + len(refused) == threads * rounds


def test_failed_answer_is_not_counted():
    def broken(p):
        raise RuntimeError("defense failed")

    bb = BlackBox(_Scaled(), defense=broken, budget=5)
    with pytest.raises(RuntimeError, match="defense failed"):
        bb.query(X)
    assert bb.queries_used == 0 and bb.budget_left == 5
