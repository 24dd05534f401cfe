"""Adversarial training on clean plus adversarial examples (docs/science.md §7).

Each step crafts x_adv = attack(f, x, y, eps) with FGSM (Goodfellow et al., ICLR 2015) or PGD
(Madry et al., ICLR 2018; step 2/255, 4 steps, random start by default) on [0, 1] inputs,
then minimises the mixed loss of Goodfellow et al. (their alpha = 0.5 by default)

    L(x, y) = (1 - w) * CE(f(x), y) + w * CE(f(x_adv), y)          w = ``adv_weight``

with clean and adversarial images in one forward pass. Victims trained this way are the
"robust" victims of "Careful What You Wish For: on the Extraction of Adversarially Trained
Models" (arXiv 2207.10561), reported easier to extract than naturally trained ones.
The examples are crafted with the model in eval mode (batch-norm statistics untouched by the
attack) and the gradient of the parameters comes from the mixed loss only. The loop, schedule,
checkpoints and logs are those of :func:`divqat.train.loop.fit`.
"""
import torch
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel

from divqat.checks import check_choice, check_real
from divqat.robustness import EVASION_ATTACKS, PGD_STEP, PGD_STEPS
from divqat.train.loop import fit
from divqat.train.monitors import Evaluator
from divqat.train.trainers import TrainResult
from divqat.utils import resolve_device


def check_adversarial_options(attack, eps, adv_weight):
    """ValueError naming the first adversarial-training option out of range (eps is in [0, 1]
    pixel units, the inputs' range)."""
    check_choice("attack", attack, sorted(EVASION_ATTACKS))
    check_real("eps", eps, 0, 1, low_open=True)
    check_real("adv_weight", adv_weight, 0, 1, low_open=True)


def adversarial_step(attack, eps, adv_weight=0.5, **attack_kwargs):
    """The training step for :func:`divqat.train.loop.fit` (loss in the module docstring);
    logs loss, ce (clean) and ce_adv."""
    craft = EVASION_ATTACKS[attack]

    def step(model, x, y, epochs_done):
        net = model.module if isinstance(model, DistributedDataParallel) else model
        x_adv = craft(net, x, y, eps, **attack_kwargs)
        logits = model(torch.cat([x, x_adv]))
        ce_clean = F.cross_entropy(logits[: len(y)], y)
        ce_adv = F.cross_entropy(logits[len(y):], y)
        loss = (1 - adv_weight) * ce_clean + adv_weight * ce_adv
        return {"loss": loss, "ce": ce_clean.detach(), "ce_adv": ce_adv.detach()}

    return step


def train_adversarial(model, train_set, test_set, attack="fgsm", eps=0.03, *, adv_weight=0.5,
                      step_size=PGD_STEP, steps=PGD_STEPS, random_start=True, epochs=10, batch_size=128,
                      lr=0.05, weight_decay=5e-4, eval_batch_size=512, **options):
    """Train ``model`` (in place, from its current weights) on clean plus ``attack`` examples
    ("fgsm" | "pgd") at ``eps``; PGD takes ``step_size``, ``steps``, ``random_start``.

    Loop options (``optimizer``, ``seed``, ``device``, ``workers``, ``progress``, ``out_dir``,
    ``resume``, ``callback``) are those of :func:`divqat.train.loop.fit`. Each epoch logs loss,
    ce, ce_adv, lr and test_accuracy (clean). Returns a :class:`TrainResult`.
    """
    check_adversarial_options(attack, eps, adv_weight)
    attack_kwargs = {"step_size": step_size, "steps": steps, "random_start": random_start} if attack == "pgd" else {}
    device = resolve_device(options.get("device", "cpu"))
    evaluator = Evaluator(test_set, batch_size=eval_batch_size, device=device)
    signature = {"method": f"adv-{attack}", "eps": eps, "adv_weight": adv_weight, **attack_kwargs}
    history = fit(model, train_set, adversarial_step(attack, eps, adv_weight, **attack_kwargs), evaluate=evaluator,
                  epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=weight_decay, signature=signature,
                  desc=f"adv-{attack}", **options)
    return TrainResult(model, history)
