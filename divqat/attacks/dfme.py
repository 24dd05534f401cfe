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
import torch.nn.functional as F
from tqdm.auto import tqdm

from divqat.attacks.common import attack_record, setup_attack
from divqat.attacks.data_free import Generator, plan_queries, recovered_logits, to_image, zeroth_order_gradient
from divqat.attacks.surrogate import PROB_FLOOR

__all__ = ["dfme"]


def _disagreement(student_logits, victim_probs):
    """Per-example L1 between the student's logits and the victim's recovered logits (mean over classes)."""
    return (student_logits - recovered_logits(victim_probs, PROB_FLOOR)).abs().mean(dim=1)


def dfme(blackbox, budget, *, arch=None, batch_size=256, lr_student=0.1, lr_generator=1e-4, momentum=0.9,
         weight_decay=5e-4, grad_m=1, grad_eps=1e-3, student_steps=5, nz=256, ngf=64, seed=0, device="cpu", progress=True):
    """DFME (see the module docstring); spends exactly ``budget`` queries. Returns ``(student, record)``."""
    for name, value in (("batch_size", batch_size), ("grad_m", grad_m), ("student_steps", student_steps), ("nz", nz), ("ngf", ngf)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    for name, value in (("lr_student", lr_student), ("lr_generator", lr_generator), ("grad_eps", grad_eps)):
        if not value > 0:
            raise ValueError(f"{name} must be > 0, got {value!r}")
    student = setup_attack(blackbox, budget, arch, seed).to(device)
    channels, size, _ = blackbox.input_shape
    generator = Generator(nz, channels, size, ngf).to(device)
    opt_s = torch.optim.SGD(student.parameters(), lr=lr_student, momentum=momentum, weight_decay=weight_decay)
    opt_g = torch.optim.Adam(generator.parameters(), lr=lr_generator)
    iterations, tail = plan_queries(budget, batch_size, batch_size * (grad_m + 1 + student_steps))
    milestones = sorted({max(1, int(iterations * f)) for f in (0.1, 0.3, 0.5)})
    sch_s = torch.optim.lr_scheduler.MultiStepLR(opt_s, milestones, gamma=0.3)
    sch_g = torch.optim.lr_scheduler.MultiStepLR(opt_g, milestones, gamma=0.3)
    start = blackbox.queries_used

    def generator_objective(points):
        victim_probs = blackbox.query(to_image(points).cpu()).to(device)
        return -_disagreement(student(to_image(points)), victim_probs)

    def student_step(n):
        with torch.no_grad():
            x = to_image(generator.sample(n))
        victim_probs = blackbox.query(x.cpu()).to(device)
        student.train()
        loss = _disagreement(student(x), victim_probs).mean()
        opt_s.zero_grad(set_to_none=True)
        loss.backward()
        opt_s.step()
        return loss.item()

    generator.train()
    losses = {"student": float("nan"), "generator": float("nan")}
    for _ in tqdm(range(iterations), desc="dfme", disable=not progress, leave=False):
        student.eval()
        a = generator.sample(batch_size)
        grad, losses["generator"] = zeroth_order_gradient(generator_objective, a, grad_m, grad_eps)
        opt_g.zero_grad(set_to_none=True)
        a.backward(grad)
        opt_g.step()
        for _ in range(student_steps):
            losses["student"] = student_step(batch_size)
        sch_s.step()
        sch_g.step()
    for n in tail:
        losses["student"] = student_step(n)
    student.eval()
    record = attack_record("dfme", blackbox, student, budget, seed, blackbox.queries_used - start,
                           iterations=iterations, tail_steps=len(tail), batch_size=batch_size, lr_student=lr_student,
                           lr_generator=lr_generator, momentum=momentum, weight_decay=weight_decay, grad_m=grad_m,
                           grad_eps=grad_eps, student_steps=student_steps, nz=nz, ngf=ngf,
                           final_student_loss=losses["student"], final_generator_objective=losses["generator"])
    return student, record
