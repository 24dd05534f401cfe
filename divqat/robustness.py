"""White-box adversarial examples on [0, 1] inputs and accuracy under attack.

FGSM (Goodfellow, Shlens & Szegedy, "Explaining and Harnessing Adversarial Examples", ICLR 2015):

    x_adv = clip_[0,1]( x + eps * sign(grad_x CE(f(x), y)) )

PGD (Madry et al., "Towards Deep Learning Models Resistant to Adversarial Attacks", ICLR 2018),
from x_0 = x (or x + U(-eps, eps) with ``random_start``), for t = 1..steps:

    x_t = clip_[0,1]( Proj_{||. - x||_inf <= eps}( x_{t-1} + step * sign(grad_x CE(f(x_{t-1}), y)) ) )

Robustness is reported as in "Careful What You Wish For: on the Extraction of Adversarially
Trained Models" (arXiv 2207.10561): accuracy under FGSM/PGD at eps in EPS_LIST (docs/science.md §7).
Attacks run with the model in eval mode (no batch-norm statistics move) and restore its mode.
"""
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from divqat.checks import check_choice, check_int, check_real
from divqat.progress import progress_bar
from divqat.utils import dataset_tensors, model_device

EPS_LIST = (0.0, 0.01, 0.03, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3)
PGD_STEP = 2 / 255
PGD_STEPS = 4


class _EvalMode:
    """Context manager: model in eval mode inside, its previous mode restored after."""

    def __init__(self, model):
        self.model = model

    def __enter__(self):
        self.was_training = self.model.training
        self.model.eval()
        return self.model

    def __exit__(self, *exc):
        self.model.train(self.was_training)


def input_gradient(model, x, y):
    """grad_x of the summed cross-entropy CE(f(x), y); the model's parameters get no gradient."""
    x = x.detach().requires_grad_(True)
    loss = F.cross_entropy(model(x), y, reduction="sum")
    (grad,) = torch.autograd.grad(loss, x)
    return grad


def fgsm(model, x, y, eps):
    """One signed-gradient step of size eps, clipped to [0, 1] (Goodfellow et al. 2015)."""
    check_real("eps", eps, 0)
    if eps == 0:
        return x.detach().clone()
    with _EvalMode(model):
        grad = input_gradient(model, x, y)
    return (x.detach() + eps * grad.sign()).clamp_(0.0, 1.0)


def pgd(model, x, y, eps, step_size=PGD_STEP, steps=PGD_STEPS, random_start=True, generator=None):
    """L-inf projected gradient descent (Madry et al. 2018): ``steps`` signed steps of
    ``step_size``, each projected back onto the eps ball around x and onto [0, 1].
    ``step_size=None`` uses Madry's rule 2.5 * eps / steps (for evaluation at large eps)."""
    check_real("eps", eps, 0)
    check_int("steps", steps, 1)
    if step_size is None:
        step_size = 2.5 * eps / steps
    if not step_size > 0 and eps > 0:
        raise ValueError(f"step_size must be > 0, got {step_size}")
    x = x.detach()
    if eps == 0:
        return x.clone()
    lo, hi = (x - eps).clamp(min=0.0), (x + eps).clamp(max=1.0)
    adv = x.clone()
    if random_start:
        noise = torch.rand(x.shape, generator=generator, dtype=x.dtype).to(x.device)
        adv = torch.max(torch.min(x + (2 * noise - 1) * eps, hi), lo)
    with _EvalMode(model):
        for _ in range(steps):
            adv = adv + step_size * input_gradient(model, adv, y).sign()
            adv = torch.max(torch.min(adv, hi), lo)
    return adv


EVASION_ATTACKS = {"fgsm": fgsm, "pgd": pgd}


def get_attack(attack):
    """An attack by name ("fgsm" | "pgd") or a callable (model, x, y, eps) -> x_adv."""
    if callable(attack):
        return attack
    return EVASION_ATTACKS[check_choice("attack", attack, sorted(EVASION_ATTACKS))]


def robust_accuracy(model, test_set, attack="fgsm", eps_list=EPS_LIST, batch_size=256,
                    source_model=None, progress=True, **attack_kwargs):
    """Accuracy of ``model`` on ``test_set`` (a Dataset of (x, y) or a tensor pair (X, Y)) under
    ``attack`` at each eps in ``eps_list``; returns {eps: accuracy}.

    The adversarial examples are crafted on ``source_model`` when given (a transfer attack, e.g.
    crafted on the float model and evaluated on the integer model, which has no gradients),
    otherwise on ``model`` itself (white box). ``attack_kwargs`` go to the attack (PGD's
    step_size, steps, random_start)."""
    attack_fn = get_attack(attack)
    eps_list = [float(e) for e in eps_list]
    if not eps_list:
        raise ValueError("eps_list must not be empty")
    for eps in eps_list:
        check_real("eps", eps, 0)
    source = model if source_model is None else source_model
    device = model_device(source)
    loader = DataLoader(TensorDataset(*dataset_tensors(test_set)), batch_size=batch_size, shuffle=False)
    correct = {eps: 0 for eps in eps_list}
    total = 0
    with _EvalMode(model), _EvalMode(source):
        for x, y in progress_bar(loader, desc=f"robust accuracy ({getattr(attack, '__name__', attack)})",
                                 total=len(loader.dataset), unit="images", size=lambda b: len(b[1]), enabled=progress):
            x, y = x.to(device), y.to(device)
            total += len(y)
            for eps in eps_list:
                adv = attack_fn(source, x, y, eps, **attack_kwargs)
                with torch.no_grad():
                    pred = model(adv).argmax(dim=1)
                correct[eps] += int((pred.cpu() == y.cpu()).sum())
    if total == 0:
        raise ValueError("test_set is empty")
    return {eps: correct[eps] / total for eps in eps_list}
