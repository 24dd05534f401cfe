"""Shared machinery of the data-free attacks (DFME, MAZE): the generator, the zeroth-order
gradient estimate through the black box, and the query plan.

Generator (Fang et al., "Data-Free Adversarial Distillation", 2019; the "GeneratorA" used by
DFME and MAZE): z (nz) -> linear -> (2 ngf, s/4, s/4) -> BN -> upsample x2 -> conv 3x3 -> BN ->
LeakyReLU(0.2) -> upsample x2 -> conv 3x3 (ngf) -> BN -> LeakyReLU(0.2) -> conv 3x3 (C) ->
BN(affine=False) gives the pre-activation a; the image is x = (tanh(a) + 1) / 2 in [0, 1]
(cropped to the victim's size when it is not a multiple of 4).

Zeroth-order gradient (forward differences on random unit directions, Nesterov and Spokoiny
2017; used by DFME with m = 1, eps = 1e-3 and MAZE with ndirs = 10, mu = 1e-3): for a
per-example objective f of the pre-activation a in R^d,

    grad f(a) ~ (d / m) * sum_{i=1..m} [(f(a + eps u_i) - f(a)) / eps] u_i,   u_i uniform on the unit sphere.

Perturbing the pre-activation keeps every queried image inside [0, 1]. The estimate of one
example costs m + 1 victim queries, all counted by the black box; the estimate of the batch
mean is the per-example estimate divided by the batch size, and is back-propagated into the
generator with ``a.backward(grad)``.
"""
import math

import torch
import torch.nn as nn

from divqat.attacks.common import setup_attack
from divqat.attacks.surrogate import optimizer_step
from divqat.progress import progress_bar
from divqat.tensorboard_log import log_scalars

__all__ = ["Generator", "to_image", "zeroth_order_gradient", "generator_step", "query_generated",
           "plan_queries", "recovered_logits", "setup_data_free", "train_data_free"]


class Generator(nn.Module):
    """DFAD/DFME/MAZE generator producing pre-activations of (C, image_size, image_size) images."""

    def __init__(self, nz, in_channels, image_size, ngf=64):
        super().__init__()
        self.nz, self.image_size = nz, image_size
        self.init_size = math.ceil(image_size / 4)
        self.fc = nn.Linear(nz, 2 * ngf * self.init_size ** 2)
        self.body = nn.Sequential(
            nn.BatchNorm2d(2 * ngf),
            nn.Upsample(scale_factor=2),
            nn.Conv2d(2 * ngf, 2 * ngf, 3, padding=1),
            nn.BatchNorm2d(2 * ngf),
            nn.LeakyReLU(0.2),
            nn.Upsample(scale_factor=2),
            nn.Conv2d(2 * ngf, ngf, 3, padding=1),
            nn.BatchNorm2d(ngf),
            nn.LeakyReLU(0.2),
            nn.Conv2d(ngf, in_channels, 3, padding=1),
            nn.BatchNorm2d(in_channels, affine=False),
        )

    def forward(self, z):
        a = self.fc(z).view(len(z), -1, self.init_size, self.init_size)
        return self.body(a)[:, :, :self.image_size, :self.image_size]

    def sample(self, n):
        """Pre-activations of ``n`` images from z ~ N(0, I)."""
        return self(torch.randn(n, self.nz, device=self.fc.weight.device))


def to_image(a):
    """Pre-activation -> image in [0, 1]: (tanh(a) + 1) / 2."""
    return (torch.tanh(a) + 1) / 2


@torch.no_grad()
def zeroth_order_gradient(objective, a, ndirs, eps):
    """Forward-difference estimate of d mean_n f(a_n) / d a (see the module docstring).

    ``objective`` maps a batch of pre-activations (M, C, H, W) to per-example values (M,); it is
    called once, on the N * (ndirs + 1) points a_n and a_n + eps u_{n,i}. Returns the gradient
    estimate (shape of ``a``) and the mean objective at ``a``.
    """
    n, d = a.shape[0], a[0].numel()
    u = torch.randn(n, ndirs, d, device=a.device)
    u = u / u.norm(dim=2, keepdim=True)
    flat = a.detach().reshape(n, 1, d)
    points = torch.cat([flat, flat + eps * u], dim=1).reshape(n * (ndirs + 1), *a.shape[1:])
    values = objective(points).reshape(n, ndirs + 1)
    slopes = (values[:, 1:] - values[:, :1]) / eps
    grad = (d / ndirs) * (slopes.unsqueeze(2) * u).sum(dim=1) / n
    return grad.reshape(a.shape), values[:, 0].mean().item()


def generator_step(generator, optimizer, objective, batch_size, ndirs, eps):
    """One generator update: a = G(z) for ``batch_size`` latents, ``a.backward`` of the
    zeroth-order estimate of d mean objective / da, an optimizer step (so G *minimizes*
    ``objective``). Returns the mean objective at a."""
    a = generator.sample(batch_size)
    grad, value = zeroth_order_gradient(objective, a, ndirs, eps)
    optimizer.zero_grad(set_to_none=True)
    a.backward(grad)
    optimizer.step()
    return value


@torch.no_grad()
def query_generated(generator, blackbox, n):
    """``n`` fresh generator images x (on the generator's device) and the victim's answers V(x) there."""
    x = to_image(generator.sample(n))
    return x, blackbox.query(x.cpu()).to(x.device)


def plan_queries(budget, batch_size, cost_per_iteration):
    """How a budget is spent: ``(iterations, tail)`` where each iteration costs
    ``cost_per_iteration`` queries and ``tail`` lists the batch sizes (each <= batch_size, sizes
    differing by at most one) of the extra clone steps that spend the remainder exactly."""
    iterations, rest = divmod(budget, cost_per_iteration)
    steps = math.ceil(rest / batch_size)
    tail = [rest // steps + (1 if i < rest % steps else 0) for i in range(steps)] if steps else []
    return iterations, tail


def recovered_logits(probs, floor):
    """Logits recovered from probabilities (DFME's "logit correction"): log p - mean_k log p,
    with p clamped below at ``floor``; softmax of the result is p (up to the clamp)."""
    log_p = probs.clamp_min(floor).log()
    return log_p - log_p.mean(dim=1, keepdim=True)


def setup_data_free(blackbox, budget, arch, seed, device, nz, ngf, lr_clone, lr_generator, momentum, weight_decay):
    """The pieces both data-free attacks start from: ``(clone, generator, clone SGD, generator Adam)``.

    The clone (``arch``, default the victim's) trains with SGD (``lr_clone``, ``momentum``,
    ``weight_decay``), the generator with Adam (``lr_generator``), both on ``device``.
    """
    clone = setup_attack(blackbox, budget, arch, seed).to(device)
    channels, size, _ = blackbox.input_shape
    generator = Generator(nz, channels, size, ngf).to(device)
    opt_clone = torch.optim.SGD(clone.parameters(), lr=lr_clone, momentum=momentum, weight_decay=weight_decay)
    return clone, generator, opt_clone, torch.optim.Adam(generator.parameters(), lr=lr_generator)


def train_data_free(desc, blackbox, clone, generator, opt_clone, opt_generator, schedulers, loss, *, iterations,
                    tail, batch_size, ndirs, eps, clone_steps, replay_steps=0, device="cpu", progress=True):
    """The loop DFME and MAZE share; returns the last clone loss and the last generator objective.

    ``loss(clone_logits, victim_probs, reduction)`` is the disagreement L ("none": per example,
    "batchmean": the batch mean). Each of ``iterations`` iterations (queries in brackets):
      1. the generator step: a zeroth-order estimate of d mean(-L) / da through the black box
         with ``ndirs`` directions and step ``eps`` [B (ndirs + 1)], so G maximizes L;
      2. ``clone_steps`` clone steps on fresh generator images, minimizing L [B each];
      3. ``replay_steps`` clone steps on batches drawn from every (x, V(x)) queried so far (MAZE's
         experience replay; no queries);
      4. one step of each of ``schedulers``.
    Then one clone step per batch size in ``tail`` spends the rest of the budget.
    """
    replay_x, replay_y = [], []

    def objective(points):
        victim_probs = blackbox.query(to_image(points).cpu()).to(device)
        return -loss(clone(to_image(points)), victim_probs, reduction="none")

    def query_and_learn(n):
        x, victim_probs = query_generated(generator, blackbox, n)
        if replay_steps:
            replay_x.append(x)
            replay_y.append(victim_probs)
        return optimizer_step(clone, opt_clone, loss, x, victim_probs)

    generator.train()
    clone_loss = generator_objective = float("nan")
    per_iteration = batch_size * (ndirs + 1 + clone_steps)
    bar = progress_bar(total=iterations * per_iteration + sum(tail), desc=desc, unit="queries", enabled=progress)
    for iteration in range(iterations):
        clone.eval()
        generator_objective = generator_step(generator, opt_generator, objective, batch_size, ndirs, eps)
        for _ in range(clone_steps):
            clone_loss = query_and_learn(batch_size)
        if replay_steps:
            buffer_x, buffer_y = torch.cat(replay_x), torch.cat(replay_y)
            replay_x[:], replay_y[:] = [buffer_x], [buffer_y]
            for _ in range(replay_steps):
                idx = torch.randint(len(buffer_x), (batch_size,), device=buffer_x.device)
                optimizer_step(clone, opt_clone, loss, buffer_x[idx], buffer_y[idx])
        for scheduler in schedulers:
            scheduler.step()
        log_scalars(desc, {"clone_loss": clone_loss, "generator_objective": generator_objective}, iteration + 1)
        bar.update(per_iteration)
    for n in tail:
        clone_loss = query_and_learn(n)
        bar.update(n)
    bar.close()
    clone.eval()
    return clone_loss, generator_objective
