"""A sink-aware thief: KnockoffNets random / Copycat that rebalances its transfer set by the
classes the victim answered (docs/science.md §10, "thieves that know the defense").

A defense that relabels out-of-distribution queries tends to pile its answers onto one or two
*sink* classes; a surrogate trained on such a transfer set learns the sink mapping (and carries
it back to the victim's own data). This thief queries exactly as KnockoffNets random does (same
seeded sample, same transfer-set cache), counts n_c, the queries answered with class c (argmax
of the answer), over its N = ``budget`` answers, and then, by ``mode``:

    "reweight"  example i, answered c_i, weighs w_i = N / (C n_(c_i)) in the surrogate's loss
                (C: the classes answered at least once), so each answered class carries the
                same total weight N / C and the weights average 1 (inverse class frequency,
                the usual correction for class imbalance);
    "drop"      if the most answered class takes more than ``max_share`` of the N answers,
                its examples leave the training set (they were paid for all the same); else
                nothing changes.

``soft=False`` trains on the argmax labels (Copycat style), ``soft=True`` on the returned
vectors (KnockoffNets style). The record logs the dropped class (or None) and the examples kept.
"""
import torch

from divqat.attacks.knockoff import random_transfer_attack
from divqat.checks import check_bool, check_choice, check_real

__all__ = ["MODES", "sink_aware", "inverse_frequency_weights", "drop_dominant"]

MODES = ("reweight", "drop")


def inverse_frequency_weights(labels, num_classes):
    """w_i = N / (C n_(labels_i)) for labels (N,) (module docstring): float32 (N,), mean 1."""
    counts = torch.bincount(labels, minlength=num_classes).double()
    answered = int((counts > 0).sum())
    return (len(labels) / (answered * counts[labels])).float()


def drop_dominant(labels, num_classes, max_share):
    """``(keep, dropped)``: the indices of ``labels`` outside the most frequent class when that
    class takes more than ``max_share`` of them (``dropped``: that class), else all (None).
    Ties go to the lowest class."""
    counts = torch.bincount(labels, minlength=num_classes)
    top = int(counts.argmax())
    if counts[top] <= max_share * len(labels):
        return torch.arange(len(labels)), None
    return torch.nonzero(labels != top).flatten(), top


def sink_aware(blackbox, queryset, budget, *, mode="reweight", max_share=0.5, soft=False, arch=None, train=None,
               seed=0, progress=True, cache_dir=None, adapt_queries=False):
    """The sink-aware thief (module docstring): ``mode`` "reweight" or "drop", ``max_share`` in
    (0, 1] the share above which "drop" drops the dominant class, ``soft`` trains on the returned
    vectors instead of their argmax; other arguments and the return value as
    :func:`divqat.attacks.knockoff.knockoff`."""
    check_choice("mode", mode, MODES)
    check_real("max_share", max_share, 0, 1, low_open=True)
    check_bool("soft", soft)

    def rebalance(labels, num_classes):
        if mode == "reweight":
            kept, weights, dropped = torch.arange(len(labels)), inverse_frequency_weights(labels, num_classes), None
        else:
            (kept, dropped), weights = drop_dominant(labels, num_classes, max_share), None
            if len(kept) == 0:
                raise ValueError(f"sink-aware: class {dropped} answered every query; nothing is left to train on")
        return kept, weights, {"dropped_class": dropped, "kept_examples": len(kept)}

    return random_transfer_attack("sink-aware", not soft, blackbox, queryset, budget, arch=arch, train=train,
                                  seed=seed, progress=progress, cache_dir=cache_dir, adapt_queries=adapt_queries,
                                  rebalance=rebalance, mode=mode, max_share=max_share)
