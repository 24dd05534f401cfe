"""MAZE: data-free model stealing with zeroth-order gradient estimation (Kariyappa, Prakash
and Qureshi, "MAZE: Data-Free Model Stealing Attack Using Zeroth-Order Gradient Estimation",
CVPR 2021).

A generator G proposes images on which the clone C disagrees with the victim V, measured by

    L(x) = KL( V(x) || softmax(C(x)) ),

and C minimizes the same divergence through :func:`divqat.ops.div_kl_loss` (teacher logits
log V(x), clamped as in :mod:`divqat.attacks.surrogate`). Each iteration (queries in brackets,
B the batch size):
    1. generator step: a = G(z); estimate d(-L)/da by forward differences through the black box
       with ``ndirs`` = 10 random directions and step ``mu`` = 1e-3 [B (ndirs + 1)]; back-propagate
       it into G, Adam step (lr 1e-4), so G maximizes L;
    2. ``clone_steps`` = 5 clone steps: x = G(z) (detached), query V(x) [5 B], SGD step on
       L(x) (lr 0.1, momentum 0.9, weight decay 5e-4); (x, V(x)) join the replay buffer;
    3. ``replay_steps`` = 10 experience-replay steps: SGD on L over batches drawn from every
       (x, V(x)) collected so far (no queries).

Clone and generator learning rates follow a cosine annealing over the iterations. The budget is
planned exactly: whole iterations, then extra clone steps on generator samples spend the
remainder. Paper settings: budget 30M queries for CIFAR-10, batch 128.
"""
import torch

from divqat.attacks.common import attack_record, check_ints, check_positive
from divqat.attacks.data_free import plan_queries, setup_data_free, train_data_free
from divqat.attacks.surrogate import soft_label_loss

__all__ = ["maze"]


def maze(blackbox, budget, *, arch=None, batch_size=128, lr_clone=0.1, lr_generator=1e-4, momentum=0.9,
         weight_decay=5e-4, ndirs=10, mu=1e-3, clone_steps=5, replay_steps=10, nz=100, ngf=64, seed=0,
         device="cpu", progress=True):
    """MAZE (see the module docstring); spends exactly ``budget`` queries. Returns ``(clone, record)``.

    ``arch``: the clone (default: the victim's); ``nz``/``ngf``: the generator's latent size and
    width (100 and 64 in the authors' code); ``device``: where clone and generator train. The
    replay buffer keeps every queried (x, V(x)) in memory on ``device``.
    """
    check_ints(1, batch_size=batch_size, ndirs=ndirs, clone_steps=clone_steps, nz=nz, ngf=ngf)
    check_ints(0, replay_steps=replay_steps)
    check_positive(lr_clone=lr_clone, lr_generator=lr_generator, mu=mu)
    clone, generator, opt_c, opt_g = setup_data_free(blackbox, budget, arch, seed, device, nz, ngf, lr_clone,
                                                     lr_generator, momentum, weight_decay)
    iterations, tail = plan_queries(budget, batch_size, batch_size * (ndirs + 1 + clone_steps))
    sch_c = torch.optim.lr_scheduler.CosineAnnealingLR(opt_c, max(iterations, 1))
    sch_g = torch.optim.lr_scheduler.CosineAnnealingLR(opt_g, max(iterations, 1))
    start = blackbox.queries_used
    clone_loss, generator_objective = train_data_free(
        "maze", blackbox, clone, generator, opt_c, opt_g, (sch_c, sch_g), soft_label_loss, iterations=iterations,
        tail=tail, batch_size=batch_size, ndirs=ndirs, eps=mu, clone_steps=clone_steps, replay_steps=replay_steps,
        device=device, progress=progress)
    record = attack_record("maze", blackbox, clone, budget, seed, blackbox.queries_used - start,
                           iterations=iterations, tail_steps=len(tail), batch_size=batch_size, lr_clone=lr_clone,
                           lr_generator=lr_generator, momentum=momentum, weight_decay=weight_decay, ndirs=ndirs, mu=mu,
                           clone_steps=clone_steps, replay_steps=replay_steps, nz=nz, ngf=ngf,
                           final_clone_loss=clone_loss, final_generator_objective=generator_objective)
    return clone, record
