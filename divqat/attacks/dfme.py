"""Data-Free Model Extraction, DFME (Truong, Maini, Walls and Papernot, "Data-Free Model
Extraction", CVPR 2021).

A generator G proposes images on which the student S and the victim V disagree most; S learns
to imitate V on them. V returns probabilities only, so its logits are recovered as
l_V = log p - mean_k log p (see :func:`~divqat.attacks.data_free.recovered_logits`), and the
disagreement is the L1 distance

    L(x) = (1 / K) * sum_k | l_V(x)_k - S(x)_k |.

Each iteration (queries in brackets, B the batch size):
    1. generator step: a = G(z); estimate d(-L)/da by forward differences through the black box
       with ``grad_m`` random directions and step ``grad_eps`` [B (grad_m + 1)]; back-propagate
       it into G and take an Adam step (lr_G 1e-4), so G *maximizes* L;
    2. ``student_steps`` = 5 student steps: x = G(z) (detached), minimize L(x) by SGD
       (lr_S 0.1, momentum 0.9, weight decay 5e-4) [5 B].

Both learning rates are multiplied by 0.3 at 10%, 30% and 50% of the iterations (the authors'
schedule). The budget is planned exactly: whole iterations, then extra student steps on
generator samples spend the remainder (:func:`~divqat.attacks.data_free.plan_queries`).
Paper settings: 20M queries for CIFAR-10, 2M for SVHN, batch 256, nz 256.
"""
import torch

from divqat.attacks.common import attack_record, check_ints, check_positive
from divqat.attacks.data_free import plan_queries, recovered_logits, setup_data_free, train_data_free
from divqat.attacks.surrogate import PROB_FLOOR

__all__ = ["dfme"]


def _disagreement(student_logits, victim_probs, reduction="batchmean"):
    """L1 between the student's logits and the victim's recovered logits (mean over classes),
    per example ("none") or averaged over the batch."""
    per_example = (student_logits - recovered_logits(victim_probs, PROB_FLOOR)).abs().mean(dim=1)
    return per_example if reduction == "none" else per_example.mean()


def dfme(blackbox, budget, *, arch=None, batch_size=256, lr_student=0.1, lr_generator=1e-4, momentum=0.9,
         weight_decay=5e-4, grad_m=1, grad_eps=1e-3, student_steps=5, nz=256, ngf=64, seed=0, device="cpu",
         progress=True):
    """DFME (see the module docstring); spends exactly ``budget`` queries. Returns ``(student, record)``.

    ``arch``: the student (default: the victim's); ``nz``/``ngf``: the generator's latent size
    and width (256 and 64 in the paper); ``device``: where student and generator train.
    """
    check_ints(1, batch_size=batch_size, grad_m=grad_m, student_steps=student_steps, nz=nz, ngf=ngf)
    check_positive(lr_student=lr_student, lr_generator=lr_generator, grad_eps=grad_eps)
    student, generator, opt_s, opt_g = setup_data_free(blackbox, budget, arch, seed, device, nz, ngf, lr_student,
                                                       lr_generator, momentum, weight_decay)
    iterations, tail = plan_queries(budget, batch_size, batch_size * (grad_m + 1 + student_steps))
    milestones = sorted({max(1, int(iterations * f)) for f in (0.1, 0.3, 0.5)})
    sch_s = torch.optim.lr_scheduler.MultiStepLR(opt_s, milestones, gamma=0.3)
    sch_g = torch.optim.lr_scheduler.MultiStepLR(opt_g, milestones, gamma=0.3)
    start = blackbox.queries_used
    student_loss, generator_objective = train_data_free(
        "dfme", blackbox, student, generator, opt_s, opt_g, (sch_s, sch_g), _disagreement, iterations=iterations,
        tail=tail, batch_size=batch_size, ndirs=grad_m, eps=grad_eps, clone_steps=student_steps, device=device,
        progress=progress)
    record = attack_record("dfme", blackbox, student, budget, seed, blackbox.queries_used - start,
                           iterations=iterations, tail_steps=len(tail), batch_size=batch_size, lr_student=lr_student,
                           lr_generator=lr_generator, momentum=momentum, weight_decay=weight_decay, grad_m=grad_m,
                           grad_eps=grad_eps, student_steps=student_steps, nz=nz, ngf=ngf,
                           final_student_loss=student_loss, final_generator_objective=generator_objective)
    return student, record
