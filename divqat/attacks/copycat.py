"""Copycat CNN (Correia-Silva, Berriel, Badue, de Souza and Oliveira-Santos, "Copycat CNN:
Stealing Knowledge by Persuading Confession with Random Non-Labeled Data", IJCNN 2018).

Algorithm: label random natural (non-problem-domain) images with the victim's top-1 class
only, hat y = argmax_k y_k, and train the surrogate on the one-hot labels with cross-entropy
(here the soft-label loss on one-hot vectors, see :mod:`divqat.attacks.surrogate`). The
probabilities the black box may return are discarded, so Copycat shows what the soft labels
of :func:`divqat.attacks.knockoff.knockoff` add. Same sampling and transfer-set cache as
KnockoffNets random: the two attacks share one query pass.
"""
from divqat.attacks.knockoff import random_transfer_attack

__all__ = ["copycat"]


def copycat(blackbox, queryset, budget, *, arch=None, train=None, seed=0, progress=True, cache_dir=None,
            adapt_queries=False):
    """Copycat: argmax labels of ``budget`` random query-set images; arguments and return value
    as :func:`divqat.attacks.knockoff.knockoff`."""
    return random_transfer_attack("copycat", True, blackbox, queryset, budget, arch=arch, train=train, seed=seed,
                                  progress=progress, cache_dir=cache_dir, adapt_queries=adapt_queries)
