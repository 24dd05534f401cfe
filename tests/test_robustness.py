"""FGSM / PGD and robust accuracy against hand-checkable facts (linear models, closed-form
gradients computed in float64)."""
import pytest
import torch
from torch import nn

from divqat.robustness import EPS_LIST, fgsm, pgd, robust_accuracy


def _linear(in_features=12, classes=3, seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(in_features, classes))


def _closed_form_grad(model, x, y):
    """grad_x CE(Wx + b, y) = W^T (softmax(Wx + b) - onehot(y)), in float64."""
    lin = model[1]
    W, b = lin.weight.double(), lin.bias.double()
    p = torch.softmax(x.flatten(1).double() @ W.T + b, dim=1)
    onehot = torch.nn.functional.one_hot(y, W.shape[0]).double()
    return ((p - onehot) @ W).reshape(x.shape)


def test_fgsm_on_linear_model_moves_exactly_eps_sign_grad():
    model = _linear()
    eps = 0.05
    x = 0.1 + 0.8 * torch.rand(16, 1, 3, 4)  # inside [eps, 1 - eps]: no clipping
    y = torch.randint(0, 3, (16,))
    adv = fgsm(model, x, y, eps)
    expected = x.double() + eps * _closed_form_grad(model, x, y).sign()
    torch.testing.assert_close(adv.double(), expected, rtol=0, atol=1e-6)


def test_fgsm_clips_to_unit_interval():
    model = _linear()
    x = torch.cat([torch.zeros(8, 1, 3, 4), torch.ones(8, 1, 3, 4)])
    y = torch.randint(0, 3, (16,))
    adv = fgsm(model, x, y, 0.3)
    assert adv.min() >= 0 and adv.max() <= 1
    step = (adv - x).abs()
    assert torch.all((step == 0) | ((step - 0.3).abs() < 1e-6))


@pytest.mark.parametrize("random_start", [True, False])
def test_pgd_stays_in_eps_ball_and_unit_interval(random_start):
    model = _linear()
    x = torch.rand(32, 1, 3, 4)
    y = torch.randint(0, 3, (32,))
    eps = 0.1
    adv = pgd(model, x, y, eps, step_size=0.04, steps=6, random_start=random_start)
    assert (adv - x).abs().max() <= eps + 1e-6
    assert adv.min() >= 0 and adv.max() <= 1
    assert (adv - x).abs().max() > eps / 2  # it did move


def test_pgd_one_step_no_random_start_equals_fgsm_with_that_step():
    model = _linear()
    x = 0.2 + 0.6 * torch.rand(8, 1, 3, 4)
    y = torch.randint(0, 3, (8,))
    a = pgd(model, x, y, eps=0.05, step_size=0.05, steps=1, random_start=False)
    torch.testing.assert_close(a, fgsm(model, x, y, 0.05))


def test_pgd_raises_linear_loss_at_least_as_much_as_a_random_point():
    model = _linear()
    x = torch.rand(64, 1, 3, 4)
    y = torch.randint(0, 3, (64,))
    ce = nn.CrossEntropyLoss()
    adv = pgd(model, x, y, 0.1, step_size=0.03, steps=8, random_start=False)
    noise = (x + 0.1 * (2 * torch.rand_like(x) - 1)).clamp(0, 1)
    with torch.no_grad():
        assert ce(model(adv), y) > ce(model(noise), y) > 0


def test_robust_accuracy_at_eps_zero_is_clean_accuracy_and_mode_restored():
    model = _linear(seed=1)
    X = torch.rand(50, 1, 3, 4)
    Y = torch.randint(0, 3, (50,))
    with torch.no_grad():
        clean = (model(X).argmax(1) == Y).float().mean().item()
    model.train()
    acc = robust_accuracy(model, (X, Y), "fgsm", eps_list=EPS_LIST, batch_size=7, progress=False)
    assert list(acc) == list(EPS_LIST)
    assert acc[0.0] == pytest.approx(clean)
    assert model.training
    # a linear model: FGSM at eps moves every logit margin the worst way, accuracy cannot rise
    assert acc[0.3] <= acc[0.0]


def test_robust_accuracy_transfer_uses_source_gradients():
    target = _linear(seed=2)
    source = _linear(seed=3)
    X = torch.rand(20, 1, 3, 4) * 0.5 + 0.25
    Y = torch.randint(0, 3, (20,))
    got = robust_accuracy(target, (X, Y), "fgsm", eps_list=(0.1,), source_model=source, progress=False)
    adv = X + 0.1 * _closed_form_grad(source, X, Y).sign().float()
    with torch.no_grad():
        expected = (target(adv).argmax(1) == Y).float().mean().item()
    assert got[0.1] == pytest.approx(expected)


def test_bad_arguments():
    model = _linear()
    x, y = torch.rand(2, 1, 3, 4), torch.zeros(2, dtype=torch.long)
    with pytest.raises(ValueError, match="eps"):
        fgsm(model, x, y, -0.1)
    with pytest.raises(ValueError, match="steps"):
        pgd(model, x, y, 0.1, steps=0)
    with pytest.raises(ValueError, match="attack"):
        robust_accuracy(model, (x, y), "cw")
    with pytest.raises(ValueError, match="eps_list"):
        robust_accuracy(model, (x, y), "fgsm", eps_list=())
