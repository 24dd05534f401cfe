"""A smoothing thief: every query sent as k augmented copies, the answers aggregated (the
adaptive attacker of EDM, Kariyappa, Prakash and Qureshi, ICLR 2021, and of InI, arXiv
2308.00958, against defenses whose answers jump between nearby inputs; docs/science.md §10).

Algorithm (one seeded sample, as KnockoffNets random):
    1. draw n = budget // k distinct images of the query set;
    2. send each as k copies, copy j shifted by (dy_j, dx_j) pixels drawn uniformly from
       {-shift, ..., shift} (zeros shifted in) plus Gaussian noise of std ``noise``, clipped to
       [0, 1]: n k queries, every copy counted (a budget of 5,000 buys 1,250 images at k = 4;
       the budget - n k left over is not spent);
    3. aggregate the k answers of each image: "mean", the mean of the returned vectors (trained
       on as soft labels), or "vote", the label most of the k answers' argmaxes name (ties to
       the lowest class; trained on as one-hot labels);
    4. train a fresh surrogate on the n original images and their aggregated answers.
"""
import torch
import torch.nn.functional as F

from divqat.attacks.answers import train_on_answers
from divqat.attacks.common import check_ints, queryset_name, setup_attack
from divqat.attacks.queryset import load_queryset
from divqat.attacks.surrogate import make_train_config
from divqat.attacks.transfer import query_in_order
from divqat.checks import check_choice, check_real

__all__ = ["AGGREGATES", "smoothing", "augmented_copies", "aggregate_answers"]

AGGREGATES = ("mean", "vote")


def augmented_copies(x, k, shift, noise):
    """(n k, C, H, W): ``k`` copies of each image of ``x`` (n, C, H, W), copy j of image i at row
    i k + j, shifted by integer offsets uniform in [-shift, shift] (zero fill) plus N(0, noise^2)
    noise, clipped to [0, 1]. Draws from torch's global generator."""
    copies = x.repeat_interleave(k, dim=0)
    offsets = torch.randint(-shift, shift + 1, (len(copies), 2))
    h, w = x.shape[2:]
    padded = F.pad(copies, (shift, shift, shift, shift))
    shifted = torch.empty_like(copies)
    for dy, dx in torch.unique(offsets, dim=0).tolist():
        rows = torch.nonzero((offsets[:, 0] == dy) & (offsets[:, 1] == dx)).flatten()
        shifted[rows] = padded[rows, :, shift - dy:shift - dy + h, shift - dx:shift - dx + w]
    return (shifted + noise * torch.randn_like(shifted)).clamp(0, 1)


def aggregate_answers(answers, k, aggregate):
    """The target of each image from its ``k`` consecutive answers (n k, K) -> (n, K): their mean
    ("mean") or the one-hot majority of their argmaxes, ties to the lowest class ("vote")."""
    grouped = answers.view(-1, k, answers.shape[1])
    if aggregate == "mean":
        return grouped.mean(dim=1)
    votes = F.one_hot(grouped.argmax(dim=2), answers.shape[1]).sum(dim=1)
    return F.one_hot(votes.argmax(dim=1), answers.shape[1]).float()


def smoothing(blackbox, queryset, budget, *, k=4, shift=2, noise=0.05, aggregate="mean", arch=None, train=None,
              seed=0, progress=True, adapt_queries=False):
    """The smoothing thief (module docstring): ``k`` >= 1 copies per image, ``shift`` >= 0 pixels,
    ``noise`` >= 0 (std on [0, 1] pixels), ``aggregate`` "mean" or "vote". Other arguments as
    :func:`divqat.attacks.knockoff.knockoff` (no transfer-set cache: the copies are drawn
    afresh). Returns ``(surrogate, record)``; ``record["distinct_images"]`` is n."""
    check_ints(1, k=k)
    check_ints(0, shift=shift)
    check_real("noise", noise, 0)
    check_choice("aggregate", aggregate, AGGREGATES)
    if budget < k:
        raise ValueError(f"budget {budget} buys no image at k = {k} copies per image")
    config = make_train_config(train).resolved(blackbox.meta)
    surrogate = setup_attack(blackbox, budget, arch, seed)
    x, _ = load_queryset(queryset, blackbox, adapt=adapt_queries)
    n = budget // k
    if n > len(x):
        raise ValueError(f"budget {budget} at k = {k} needs {n} images; the query set has {len(x)}")
    x = x[torch.randperm(len(x))[:n]]
    copies = augmented_copies(x, k, shift, noise)
    answers, _ = query_in_order(blackbox, copies, torch.arange(n * k), n * k, progress=progress)
    record = train_on_answers("smoothing", blackbox, surrogate, x, aggregate_answers(answers, k, aggregate), config,
                              budget=budget, seed=seed, queries_used=n * k, received=answers, progress=progress,
                              queryset=queryset_name(queryset), adapt_queries=adapt_queries, k=k, shift=shift,
                              noise=noise, aggregate=aggregate, distinct_images=n)
    return surrogate, record
