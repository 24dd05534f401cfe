"""Adaptive misinformation: the blend, the misinformation loss and its training."""
import torch
import torch.nn.functional as F
from defense_helpers import make_mlp, make_probs

from divqat.defenses import AdaptiveMisinformation, misinformation_loss, train_misinformation_model


def test_adaptive_misinformation_blends_as_the_formula_says():
    c, tau, nu = 5, 0.6, 20.0  # a soft gate, so both terms matter
    model = make_mlp(4, c, seed=6)
    x = torch.randn(12, 4)
    p = make_probs(2, c, seed=8)
    y = AdaptiveMisinformation(model, tau=tau, nu=nu)(p, x)
    with torch.no_grad():
        p_mis = F.softmax(model(x).double(), dim=1)
    a = 1.0 / (1.0 + torch.exp(nu * (p.max(dim=1, keepdim=True).values - tau)))
    torch.testing.assert_close(y, (1 - a) * p + a * p_mis, rtol=0, atol=1e-7)
    sharp = AdaptiveMisinformation(model, tau=tau)(p, x)  # nu = 1000: all or nothing
    low = p.max(dim=1).values < tau - 0.05
    high = p.max(dim=1).values > tau + 0.05
    torch.testing.assert_close(sharp[high], p[high], rtol=0, atol=1e-6)
    torch.testing.assert_close(sharp[low], p_mis[low], rtol=0, atol=1e-6)


def test_misinformation_loss_matches_its_definition():
    logits = torch.randn(9, 7, dtype=torch.float64) * 3
    target = torch.randint(0, 7, (9,))
    expected = -torch.log(1 - F.softmax(logits, dim=1)[torch.arange(9), target]).mean()
    torch.testing.assert_close(misinformation_loss(logits, target), expected, rtol=1e-12, atol=1e-12)


def test_train_misinformation_model_lowers_true_class_probability():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(128, 6, generator=g)
    y = (x[:, 0] > 0).long() + 2 * (x[:, 1] > 0).long()  # 4 learnable classes
    data = torch.utils.data.TensorDataset(x, y)
    model = make_mlp(6, 4, seed=9)

    def true_class_prob():
        with torch.no_grad():
            return F.softmax(model(x), dim=1)[torch.arange(len(y)), y].mean().item()

    before = true_class_prob()
    trained = train_misinformation_model(model, data, epochs=4, batch_size=16, lr=3e-2, progress=False)
    assert trained is model and not model.training
    assert true_class_prob() < before / 3
