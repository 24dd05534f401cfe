"""Jacobian-based dataset augmentation, JBDA (Papernot, McDaniel, Goodfellow, Jha, Celik and
Swami, "Practical Black-Box Attacks against Machine Learning", AsiaCCS 2017, Algorithm 1).

Algorithm, with the surrogate F and the victim's answers O:
    S_0 = ``seeds`` images from the query set, labelled by the victim
    for rho = 0 .. rounds-1:
        train F on (S_rho, O(S_rho)) for ``round_epochs`` epochs
        S_{rho+1} = S_rho  U  { clip(x + lambda * sign(d F(x)[c(x)] / dx), 0, 1) : x in S_rho }
        query the victim on the new points only
    train F on (S_rounds, O(S_rounds)) with the full schedule (``train.epochs``)

where c(x) = argmax O(x) and F(x)[c] is the surrogate's softmax probability of class c (the
Jacobian row of the victim's label). Every round doubles the set, so the attack spends at most
``seeds * 2**rounds`` queries (6400 with the paper's 100 seeds and 6 rounds); a smaller budget
keeps a random subset of the last round's new points so that exactly ``budget`` are queried.
The surrogate trains on the vectors the black box returns (soft labels when it returns
probabilities; Papernot et al.'s label-only oracle is ``output="label"``), continuing from its
weights of the previous round.
"""
from dataclasses import asdict, replace

import torch
import torch.nn.functional as F

from divqat.attacks.common import attack_record, check_ints, check_positive, queryset_name, setup_attack
from divqat.attacks.queryset import load_queryset
from divqat.attacks.surrogate import make_train_config, train_surrogate

__all__ = ["jbda", "jacobian_step"]


def jacobian_step(surrogate, x, labels, lam, device="cpu"):
    """clip(x + lam * sign(d softmax(F(x))[label] / dx), 0, 1), computed in batches of 256."""
    surrogate.eval()
    out = []
    for i in range(0, len(x), 256):
        xb = x[i:i + 256].to(device).requires_grad_(True)
        p = F.softmax(surrogate(xb), dim=1).gather(1, labels[i:i + 256].to(device).unsqueeze(1)).sum()
        (grad,) = torch.autograd.grad(p, xb)
        out.append((xb.detach() + lam * grad.sign()).clamp(0, 1).cpu())
    return torch.cat(out)


def jbda(blackbox, queryset, budget, *, seeds=100, rounds=6, lam=0.1, round_epochs=10, arch=None, train=None,
         seed=0, progress=True, adapt_queries=False):
    """JBDA (see the module docstring); spends ``min(budget, seeds * 2**rounds)`` queries.

    ``seeds`` initial images (random, from ``queryset``), ``rounds`` augmentation rounds, step
    ``lam`` in [0, 1] pixel units, ``round_epochs`` epochs per intermediate round. Other arguments as
    :func:`divqat.attacks.knockoff.knockoff`. Returns ``(surrogate, record)``.
    """
    check_ints(1, seeds=seeds, round_epochs=round_epochs)
    check_ints(0, rounds=rounds)
    check_positive(lam=lam)
    config = make_train_config(train).resolved(blackbox.meta)
    surrogate = setup_attack(blackbox, budget, arch, seed)
    x, _ = load_queryset(queryset, blackbox, adapt=adapt_queries)
    if min(seeds, budget) > len(x):
        raise ValueError(f"seeds: the query set has only {len(x)} images")
    start = blackbox.queries_used
    points = x[torch.randperm(len(x))[:min(seeds, budget)]]
    answers = blackbox.query(points)
    round_config = replace(config, epochs=round_epochs)
    rounds_done = 0
    for rho in range(rounds):
        left = budget - len(points)
        if left == 0:
            break
        train_surrogate(surrogate, points, answers, round_config, progress=progress, desc=f"jbda round {rho}")
        new = jacobian_step(surrogate, points, answers.argmax(dim=1), lam, config.device)
        if len(new) > left:
            new = new[torch.randperm(len(new))[:left]]
        points, answers = torch.cat([points, new]), torch.cat([answers, blackbox.query(new)])
        rounds_done += 1
    history = train_surrogate(surrogate, points, answers, config, progress=progress, desc="jbda final")
    record = attack_record("jbda", blackbox, surrogate, budget, seed, blackbox.queries_used - start,
                           train=asdict(config),
                           seeds=seeds, rounds=rounds, rounds_done=rounds_done, lam=lam, round_epochs=round_epochs,
                           queryset=queryset_name(queryset),
                           adapt_queries=adapt_queries, final_train_loss=history[-1])
    return surrogate, record
