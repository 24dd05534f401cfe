"""Helpers shared by the defense tests: tiny models, probability batches with every kind of
row, and one instance of every defense."""
import torch
import torch.nn.functional as F

from divqat.defenses import DCP, MAD, AdaptiveMisinformation, LabelOnly, RandomNoise, ReverseSigmoid, Rounding, TopK


def make_mlp(n_in, n_classes, hidden=16, seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(n_in, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, n_classes))


def make_probs(n, c, seed=0):
    """Rows near one-hot, uniform, in between, and with exact zeros and a 1, shuffled columns."""
    g = torch.Generator().manual_seed(seed)
    rows = [
        F.softmax(torch.randn(n, c, generator=g) * 12.0, dim=1),  # near one-hot
        torch.full((n, c), 1.0 / c),  # uniform
        F.softmax(torch.randn(n, c, generator=g) * 1.5, dim=1),  # in between
        F.softmax(torch.randn(n, c, generator=g) * 0.3, dim=1),  # nearly uniform
        F.one_hot(torch.randint(0, c, (n,), generator=g), c).float(),  # exact 0s and a 1
    ]
    mixed = F.softmax(torch.randn(n, c, generator=g) * 3, dim=1)
    mixed[:, 0] = 0.0  # exact zeros next to nonzeros
    rows.append(mixed)
    p = torch.cat(rows).double()
    return p / p.sum(dim=1, keepdim=True)  # float64 rows summing to 1


def all_defenses(n_in, c):
    """One instance of every defense (several settings of some), with the model they need."""
    model = make_mlp(n_in, c, seed=1)
    return {
        "dcp": DCP(0.7), "dcp_uncapped": DCP(1.2, gamma=1.0, cap_log_odds=False),
        "reverse_sigmoid": ReverseSigmoid(0.7, 0.5),
        "adaptive_misinformation": AdaptiveMisinformation(model, tau=0.5),
        "mad": MAD(model, 0.5), "mad_keep": MAD(model, 0.5, keep_argmax=True), "mad_l2": MAD(model, 0.3, ydist="l2"),
        "random_noise": RandomNoise(0.4, seed=3), "random_noise_l2": RandomNoise(0.2, dist="l2"),
        "rounding": Rounding(1), "rounding0": Rounding(0), "topk": TopK(3), "label_only": LabelOnly(),
    }
