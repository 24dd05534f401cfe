"""Every extraction attack end to end on sklearn's 8x8 digits against a small trained victim:
the budget is honoured exactly (a black box whose budget equals the attack's refuses any extra
query), the surrogate beats chance (10%), the transfer-set cache reuses one query pass, and bad
input is refused. Plus the `divqat attack` command on a victim directory."""
import json

import pytest
import torch
import torch.nn.functional as F

from divqat.attacks import ATTACKS, TrainConfig, copycat, dfme, jbda, knockoff, knockoff_adaptive, maze
from divqat.attacks.data_free import plan_queries, zeroth_order_gradient
from divqat.blackbox import BlackBox
from divqat.data import load_tensors
from divqat.metrics import agreement, evaluate_surrogate, predict_logits
from divqat.models import build_model, build_model_for

FAST = TrainConfig(epochs=4, lr=0.05, momentum=0.9)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def data():
    x, y = load_tensors("digits", "train")
    xt, yt = load_tensors("digits", "test")
    return x, y, xt, yt


@pytest.fixture(scope="module")
def victim(data):
    """A smallcnn trained a few epochs on digits (test accuracy > 80%)."""
    x, y, xt, yt = data
    gen = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    model = build_model_for("smallcnn", "digits")
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(6):
        order = torch.randperm(len(x), generator=gen)
        for i in range(0, len(x), 64):
            idx = order[i:i + 64]
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    assert (predict_logits(model, xt).argmax(1) == yt).float().mean() > 0.8
    return model


def _agreement(surrogate, victim, xt):
    return agreement(predict_logits(surrogate, xt), predict_logits(victim, xt))


@pytest.mark.parametrize("attack,kw", [
    (knockoff, {}),
    (copycat, {}),
    (knockoff_adaptive, {"reward": "all"}),
    (knockoff_adaptive, {"reward": "cert"}),
])
def test_sampling_attacks_spend_budget_exactly_and_beat_chance(victim, data, attack, kw):
    x, y, xt, _ = data
    bb = BlackBox(victim, budget=700)
    surrogate, record = attack(bb, (x, y), 700, train=FAST, seed=1, progress=False, **kw)
    assert bb.queries_used == 700 == record["queries_used"] and bb.budget_left == 0
    assert _agreement(surrogate, victim, xt) > 0.6
    assert record["train"]["epochs"] == 4 and record["seed"] == 1 and record["arch"] == "smallcnn"


def test_jbda_budget_exact_and_capped(victim, data):
    x, _, xt, _ = data
    bb = BlackBox(victim, budget=250)
    surrogate, record = jbda(bb, x, 250, seeds=40, rounds=3, round_epochs=2, train=FAST, progress=False)
    assert bb.queries_used == 250 == record["queries_used"]  # 40 + 40 + 80, then 90 of the next 160
    assert record["rounds_done"] == 3
    assert _agreement(surrogate, victim, xt) > 0.3
    # a budget larger than seeds * 2**rounds: the attack stops at what the schedule can spend
    bb = BlackBox(victim, budget=100)
    _, record = jbda(bb, x, 100, seeds=10, rounds=2, round_epochs=1, train=TrainConfig(epochs=1), progress=False)
    assert bb.queries_used == record["queries_used"] == 40


def test_jbda_step_is_signed_gradient_clipped(victim, data):
    from divqat.attacks.jbda import jacobian_step

    x = data[0][:5]
    labels = torch.tensor([0, 1, 2, 3, 4])
    x_req = x.clone().requires_grad_(True)
    F.softmax(victim(x_req), dim=1).gather(1, labels[:, None]).sum().backward()
    expected = (x + 0.1 * x_req.grad.sign()).clamp(0, 1)
    torch.testing.assert_close(jacobian_step(victim, x, labels, 0.1), expected)


@pytest.mark.parametrize("attack,kw,budget", [
    (dfme, {"batch_size": 16, "ngf": 16, "lr_generator": 1e-3}, 3000),
    (maze, {"batch_size": 16, "ngf": 16, "ndirs": 4, "seed": 1}, 500),
])
def test_data_free_attacks_spend_budget_exactly_and_beat_chance(victim, data, attack, kw, budget):
    xt = data[2]
    bb = BlackBox(victim, budget=budget)
    surrogate, record = attack(bb, budget, progress=False, **kw)
    assert bb.queries_used == budget == record["queries_used"]
    assert record["tail_steps"] > 0  # the budget is not a multiple of the iteration cost: the tail spends the rest
    assert _agreement(surrogate, victim, xt) > 0.2


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
    (lambda bb, x, y: knockoff_adaptive(bb, x, 10), "classes"),
    (lambda bb, x, y: knockoff_adaptive(bb, (x, y), 10, reward="fun"), "reward"),
    (lambda bb, x, y: jbda(bb, x, 10, lam=0), "lam"),
    (lambda bb, x, y: dfme(bb, 10, grad_m=0), "grad_m"),
    (lambda bb, x, y: maze(bb, 10, mu=0), "mu"),
    (lambda bb, x, y: knockoff(bb, x, 10, cache_dir="/tmp"), "victim_id"),
])
def test_bad_input(victim, data, call, match):
    x, y = data[0][:200], data[1][:200]
    bb = BlackBox(victim, budget=50)
    with pytest.raises(ValueError, match=match):
        call(bb, x, y)
    assert bb.queries_used == 0


def test_adapt_queries_resizes(victim, data):
    bb = BlackBox(victim, budget=30)
    big = F.interpolate(data[0][:40], size=(28, 28), mode="bilinear").repeat(1, 3, 1, 1)
    _, record = knockoff(bb, big, 30, adapt_queries=True, train=TrainConfig(epochs=1), progress=False)
    assert bb.queries_used == 30 and record["adapt_queries"] is True


def test_attacks_never_use_the_uncounted_path(victim, data, monkeypatch):
    def forbidden(self, x):
        raise AssertionError("an attack called uncounted_query")

    monkeypatch.setattr(BlackBox, "uncounted_query", forbidden)
    x, y = data[0], data[1]
    fast = TrainConfig(epochs=1)
    for name, fn in ATTACKS.items():
        bb = BlackBox(victim, budget=300)
        if name in ("dfme", "maze"):
            fn(bb, 300, batch_size=8, progress=False)
        elif name == "jbda":
            fn(bb, x, 300, seeds=20, rounds=1, round_epochs=1, train=fast, progress=False)
        else:
            fn(bb, (x, y), 300, train=fast, progress=False)
        assert bb.queries_used <= 300


# ---------------------------------------------------------------- the `divqat attack` command

@pytest.fixture(scope="module")
def victim_dir(victim, tmp_path_factory):
    """A `divqat train --out` directory (config.json + model.pt) holding the digits victim."""
    from divqat.train.artifacts import write_config, write_results

    out = tmp_path_factory.mktemp("victim")
    write_config(out, {"arch": "smallcnn", "dataset": "digits", "method": "fp", "quantized": False,
                       "meta": dict(victim.meta)})
    write_results(out, victim, {"test_accuracy": None})
    return out


def _cli(*argv):
    from divqat.cli import main

    return main(["attack", *map(str, argv)])


def test_cli_writes_metrics_and_surrogate(victim_dir, data, tmp_path):
    out = tmp_path / "run"
    rc = _cli("--victim", victim_dir, "--attack", "knockoff", "--queryset", "digits", "--budget", 400,
              "--epochs", 15, "--seed", 2, "--device", "cpu", "--no-progress", "--out", out)
    assert rc == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["queries_used"] == 400 == metrics["fresh_queries"] and metrics["attack"] == "knockoff"
    # the numbers are those of the saved surrogate against the victim on the test set
    saved = torch.load(out / "surrogate.pt", weights_only=True)
    surrogate = build_model(saved["arch"], **saved["meta"])
    surrogate.load_state_dict(saved["state_dict"])
    bb = BlackBox.from_dir(victim_dir)
    expected = evaluate_surrogate(surrogate, bb, (data[2], data[3]))
    for key, value in expected.items():
        assert metrics[key] == pytest.approx(value)
    assert metrics["agreement"] > 0.5 and metrics["train"]["epochs"] == 15
    assert sorted(p.name for p in out.iterdir()) == ["metrics.json", "surrogate.pt"]  # no temporary files left


def test_cli_defense_and_output(victim_dir, tmp_path):
    rc = _cli("--victim", victim_dir, "--attack", "copycat", "--queryset", "digits", "--budget", 100, "--epochs", 1,
              "--defense", "topk", "--defense-arg", "k=1", "--output", "rounded", "--decimals", 1,
              "--no-progress", "--out", tmp_path)
    assert rc == 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["defense"].lower().startswith("topk") and metrics["output"] == "rounded"


@pytest.mark.parametrize("args,match", [
    (["--attack", "stealer", "--queryset", "digits", "--budget", 10], "unknown attack"),
    (["--attack", "knockoff", "--queryset", "digits", "--budget", 0], "--budget"),
    (["--attack", "knockoff", "--queryset", "fashion-mnist", "--budget", 10], "adapt"),
    (["--attack", "knockoff", "--budget", 10], "--queryset"),
    (["--attack", "dfme", "--queryset", "digits", "--budget", 10], "data-free"),
    (["--attack", "maze", "--epochs", 2, "--budget", 10], "--epochs"),
    (["--attack", "jbda", "--queryset", "digits", "--budget", 10, "--cache-dir", "/tmp"], "--cache-dir"),
    (["--attack", "knockoff", "--queryset", "digits", "--budget", 10, "--defense-arg", "k=1"], "--defense"),
    (["--attack", "knockoff", "--queryset", "digits", "--budget", 10, "--defense", "topk", "--defense-arg", "k"],
     "KEY=VALUE"),
    (["--attack", "knockoff", "--queryset", "digits", "--budget", 10, "--output", "logits"], "output"),
])
def test_cli_user_errors_one_line_exit_2(victim_dir, tmp_path, capsys, args, match):
    rc = _cli("--victim", victim_dir, "--out", tmp_path / "x", *args)
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and match in err
    assert not (tmp_path / "x").exists()


def test_cli_adapt_queries(victim_dir, tmp_path):
    rc = _cli("--victim", victim_dir, "--attack", "knockoff", "--queryset", "fashion-mnist", "--adapt-queries",
              "--budget", 50, "--epochs", 1, "--no-progress", "--out", tmp_path)
    assert rc == 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["adapt_queries"] is True and metrics["queries_used"] == 50


@pytest.mark.parametrize("targets", [
    torch.softmax(torch.randn(6, 5, generator=torch.Generator().manual_seed(1)), dim=1),  # soft
    F.one_hot(torch.tensor([0, 1, 2, 3, 4, 0]), 5).float(),  # labels: zeros must not give NaN
    torch.tensor([[0.5, 0.5, 0, 0, 0]] * 6),  # top-k style zeros
])
def test_soft_label_loss_has_the_soft_cross_entropy_gradient(targets):
    """KL(y || softmax(s)) and PyTorch's soft-target cross-entropy differ by H(y), a constant:
    their gradients in the student's logits agree (up to the 1e-8 clamp of zero entries)."""
    from divqat.attacks.surrogate import soft_label_loss

    s = torch.randn(6, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(2)).requires_grad_(True)
    (grad,) = torch.autograd.grad(soft_label_loss(s.float(), targets), s)
    (expected,) = torch.autograd.grad(F.cross_entropy(s, targets.double()), s)
    torch.testing.assert_close(grad, expected, atol=1e-6, rtol=1e-4)
    entropy = -(torch.xlogy(targets.double(), targets.double())).sum(1).mean()
    torch.testing.assert_close(soft_label_loss(s.float(), targets).double() + entropy,
                               F.cross_entropy(s, targets.double()), atol=1e-5, rtol=1e-5)


def test_recovered_logits_give_back_the_probabilities():
    from divqat.attacks.data_free import recovered_logits

    p = torch.softmax(torch.randn(4, 10), dim=1)
    logits = recovered_logits(p, 1e-8)
    torch.testing.assert_close(torch.softmax(logits, dim=1), p)
    torch.testing.assert_close(logits.mean(dim=1), torch.zeros(4), atol=1e-6, rtol=0)
