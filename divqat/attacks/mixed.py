"""A mixed thief: the natural query set with a share of in-distribution images mixed in
(docs/science.md §10; reported without a goal, as the thief who holds a little of the
victim's own kind of data).

The in-distribution images come from a part of the victim's test split that the victim never
trained on and that scoring never uses: with ``thief_from`` = s (default 5,000), the thief
draws from the test images s, s + 1, ..., N - 1 (the *thief part*), and its surrogate is scored
on the test images 0, ..., s - 1 only (the *scoring part*; the first ``test_limit`` of them
when an experiment limits its test set). Every mixed-thief cell is scored on that same part,
so its comparisons stay paired across victims.

Algorithm: of the ``budget`` queries, n_in = round(in_share * budget) are images of the
thief part and budget - n_in images of the query set, both drawn at random without
replacement and sent in a random order; the surrogate trains on the argmax labels
(``soft=False``, Copycat style) or the returned vectors (KnockoffNets style).
"""
import torch

from divqat.attacks.answers import answer_targets, train_on_answers
from divqat.attacks.common import queryset_name, setup_attack
from divqat.attacks.queryset import load_queryset
from divqat.attacks.surrogate import make_train_config
from divqat.attacks.transfer import query_in_order
from divqat.checks import check_bool, check_int, check_real

__all__ = ["THIEF_FROM", "mixed", "thief_part"]

#: the first test image of the thief part (the default of ``thief_from``)
THIEF_FROM = 5000


def thief_part(victim_data, thief_from):
    """The thief part of ``victim_data``'s test split: its images ``thief_from`` onwards."""
    from divqat.data import load_tensors

    x, _ = load_tensors(victim_data, "test")
    if thief_from >= len(x):
        raise ValueError(f"thief_from {thief_from} leaves no thief part: {victim_data} has {len(x)} test images")
    return x[thief_from:]


def mixed(blackbox, queryset, budget, *, victim_data, in_share=0.1, thief_from=THIEF_FROM, soft=False, arch=None,
          train=None, seed=0, progress=True, adapt_queries=False):
    """The mixed thief (module docstring). ``victim_data`` is the victim's dataset name (its
    caller passes it: the experiment's ``data.victim``, the victim directory's dataset),
    ``in_share`` in [0, 1] the share of in-distribution queries, ``thief_from`` the first test
    image of the thief part, ``soft`` trains on the returned vectors. Other arguments as
    :func:`divqat.attacks.knockoff.knockoff` (no transfer-set cache). Returns
    ``(surrogate, record)``."""
    check_real("in_share", in_share, 0, 1)
    check_int("thief_from", thief_from, 1)
    check_bool("soft", soft)
    config = make_train_config(train).resolved(blackbox.meta)
    surrogate = setup_attack(blackbox, budget, arch, seed)
    inside = thief_part(victim_data, thief_from)
    outside, _ = load_queryset(queryset, blackbox, adapt=adapt_queries)
    if tuple(inside.shape[1:]) != blackbox.input_shape:
        raise ValueError(f"victim_data {victim_data!r} has images of shape {tuple(inside.shape[1:])}, the victim "
                         f"takes {blackbox.input_shape}: it is not the victim's dataset")
    n_in = round(in_share * budget)
    if n_in > len(inside) or budget - n_in > len(outside):
        raise ValueError(f"budget {budget} at in_share {in_share} needs {n_in} of the {len(inside)} thief-part images "
                         f"and {budget - n_in} of the {len(outside)} query-set images")
    x = torch.cat([outside[torch.randperm(len(outside))[:budget - n_in]], inside[torch.randperm(len(inside))[:n_in]]])
    order = torch.randperm(budget)
    answers, _ = query_in_order(blackbox, x, order, budget, progress=progress)
    record = train_on_answers("mixed", blackbox, surrogate, x[order], answer_targets(answers, not soft), config,
                              budget=budget, seed=seed, queries_used=budget, received=answers, progress=progress,
                              queryset=queryset_name(queryset), adapt_queries=adapt_queries, victim_data=victim_data,
                              in_share=in_share, in_distribution_queries=n_in, thief_from=thief_from, soft=soft)
    return surrogate, record
