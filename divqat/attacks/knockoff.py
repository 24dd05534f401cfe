"""KnockoffNets with random sampling (Orekondy, Schiele and Fritz, "Knockoff Nets: Stealing
Functionality of Black-Box Models", CVPR 2019).

Algorithm:
    1. draw ``budget`` images uniformly without replacement from a natural query set
       (a seeded permutation of it, so budgets share prefixes: see :mod:`divqat.attacks.transfer`);
    2. query the black box once per image, keeping the returned vectors y;
    3. train a fresh surrogate on {(x, y)} with the soft cross-entropy
       (:func:`divqat.attacks.surrogate.soft_label_loss`), Knockoff's SGD schedule.

:func:`random_transfer_attack` is shared with Copycat, which differs only in training on the
argmax of y.

``sharpen=tau`` (an adaptive attacker against trained-in defenses that flatten or reshape the
soft labels; a simple counter in the spirit of "Distilling the Undistillable", Jandial et al.,
ECCV 2022, which recovers a Nasty Teacher's knowledge by reprocessing its answers) trains on
y_k^(1/tau) / sum_j y_j^(1/tau) instead of y: tau < 1 sharpens, tau = 1 is y itself.
"""
import torch

from divqat.attacks.answers import answer_targets, train_on_answers
from divqat.attacks.common import queryset_name, setup_attack
from divqat.attacks.queryset import load_queryset
from divqat.attacks.surrogate import make_train_config
from divqat.attacks.transfer import query_in_order

__all__ = ["knockoff", "random_transfer_attack"]


def random_transfer_attack(name, hard_labels, blackbox, queryset, budget, *, arch=None, train=None, seed=0,
                           progress=True, cache_dir=None, adapt_queries=False, sharpen=None, rebalance=None,
                           **params):
    """Query ``budget`` random images of ``queryset`` and train on the answers (soft, or
    one-hot argmax when ``hard_labels``). ``rebalance`` (the sink-aware thief,
    :mod:`divqat.attacks.sink_aware`) maps the answered labels (N,) to ``(keep, weights, info)``:
    the indices of the examples kept, their loss weights (None: unweighted) and what to log;
    ``params`` are logged too. Returns ``(surrogate, record)``."""
    if sharpen is not None and not sharpen > 0:
        raise ValueError(f"sharpen must be > 0, got {sharpen}")
    config = make_train_config(train).resolved(blackbox.meta)
    surrogate = setup_attack(blackbox, budget, arch, seed)
    x, _ = load_queryset(queryset, blackbox, adapt=adapt_queries)
    if budget > len(x):
        raise ValueError(f"budget {budget} exceeds the {len(x)} images of the query set")
    order = torch.randperm(len(x))
    answers, fresh = query_in_order(blackbox, x, order, budget, cache_dir=cache_dir, progress=progress)
    x, targets = x[order[:budget]], answer_targets(answers, hard_labels, sharpen)
    weights = None
    if rebalance is not None:
        keep, weights, info = rebalance(answers.argmax(dim=1), blackbox.num_classes)
        x, targets, params = x[keep], targets[keep], {**params, **info}
    record = train_on_answers(name, blackbox, surrogate, x, targets, config, budget=budget, seed=seed,
                              queries_used=budget, received=answers, progress=progress, weights=weights,
                              fresh_queries=fresh, queryset=queryset_name(queryset), adapt_queries=adapt_queries,
                              sharpen=sharpen, labels="argmax" if hard_labels else "returned vectors", **params)
    return surrogate, record


def knockoff(blackbox, queryset, budget, *, arch=None, train=None, seed=0, progress=True, cache_dir=None,
             adapt_queries=False, sharpen=None):
    """KnockoffNets, random strategy: soft labels on ``budget`` random query-set images.

    Args:
        blackbox: the :class:`~divqat.blackbox.BlackBox` victim.
        queryset: dataset name, image tensor or (X, Y) pair (see :func:`~divqat.attacks.queryset.load_queryset`).
        budget: queries to spend (exactly; at most the query set's size).
        arch: surrogate architecture (default: the victim's).
        train: :class:`~divqat.attacks.surrogate.TrainConfig`, a dict of its fields, or None.
        seed: seeds python, numpy and torch (sampling order and surrogate initialisation).
        progress: progress bars (:mod:`divqat.progress`).
        cache_dir: reuse/extend a transfer-set cache there (see :mod:`divqat.attacks.transfer`).
        adapt_queries: resize query images that do not fit the victim instead of refusing them.
        sharpen: train on the answers sharpened with temperature ``sharpen`` (module docstring;
            None: the answers as returned).

    Returns ``(surrogate, record)``; ``record["queries_used"]`` counts the answers the surrogate
    was trained on, ``record["fresh_queries"]`` those not served by the cache.
    """
    return random_transfer_attack("knockoff", False, blackbox, queryset, budget, arch=arch, train=train, seed=seed,
                                  progress=progress, cache_dir=cache_dir, adapt_queries=adapt_queries, sharpen=sharpen)
