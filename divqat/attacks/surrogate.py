"""The adversary's model: building a surrogate and training it on a transfer set of victim answers.

Soft-label training (Orekondy et al., "Knockoff Nets", CVPR 2019; Hinton et al. 2015) minimizes
the soft cross-entropy between the victim's returned vector y and the surrogate's softmax,

    CE(y, s) = -sum_k y_k log softmax(s)_k = KL(y || softmax(s)) + H(y),

and H(y) does not depend on the surrogate, so the gradient is that of KL(y || softmax(s)),
which :func:`divqat.ops.div_kl_loss` computes (fused kernels where built) when given log(y) as
the teacher's logits (log-probabilities are valid logits: softmax(log y) = y). Answers with
zero entries (top-k, label-only, rounding) would give log 0 = -inf, so y is clamped below at
``PROB_FLOOR`` = 1e-8 before the log; the teacher distribution softmax(log clamp(y)) then
differs from y by at most C * 1e-8 per entry, and a one-hot y gives the ordinary cross-entropy
up to that amount. Hard labels (Copycat) are trained as one-hot vectors through the same loss.

Schedule (Knockoff Nets' defaults, docs/science.md §5): SGD, lr 0.01, momentum 0.5, weight
decay 5e-4, batch 64, the learning rate multiplied by 0.1 every 60 epochs, 100 epochs (50 for
the 28x28 grey MNIST family).
"""
from dataclasses import asdict, dataclass, fields

import torch

from divqat.ops import div_kl_loss
from divqat.progress import progress_bar
from divqat.tensorboard_log import log_scalars

__all__ = ["PROB_FLOOR", "TrainConfig", "make_train_config", "build_surrogate", "soft_label_loss", "optimizer_step",
           "weighted_label_loss", "train_surrogate"]

PROB_FLOOR = 1e-8


@dataclass(frozen=True)
class TrainConfig:
    """Surrogate training hyperparameters; ``epochs=None`` means the docs/science.md §5 default for the victim."""

    epochs: int = None
    lr: float = 0.01
    momentum: float = 0.5
    weight_decay: float = 5e-4
    batch_size: int = 64
    lr_step: int = 60
    lr_gamma: float = 0.1
    device: str = "cpu"

    def __post_init__(self):
        for name, ok in (("epochs", self.epochs is None or self.epochs >= 1), ("lr", self.lr > 0),
                         ("momentum", 0 <= self.momentum < 1), ("weight_decay", self.weight_decay >= 0),
                         ("batch_size", self.batch_size >= 1), ("lr_step", self.lr_step >= 1),
                         ("lr_gamma", 0 < self.lr_gamma <= 1)):
            if not ok:
                raise ValueError(f"train.{name} out of range: {getattr(self, name)!r}")

    def sgd(self, model):
        """The SGD optimizer of ``model``'s parameters with this config's lr, momentum and weight decay."""
        return torch.optim.SGD(model.parameters(), lr=self.lr, momentum=self.momentum, weight_decay=self.weight_decay)

    def resolved(self, meta):
        """This config with ``epochs`` filled in: 50 for 1-channel 28x28 victims (MNIST family), else 100."""
        if self.epochs is not None:
            return self
        mnist_like = int(meta["in_channels"]) == 1 and meta["image_size"] == 28
        return TrainConfig(**{**asdict(self), "epochs": 50 if mnist_like else 100})


def make_train_config(train):
    """Accept a TrainConfig, a dict of its fields, or None (all defaults)."""
    if train is None:
        return TrainConfig()
    if isinstance(train, TrainConfig):
        return train
    if isinstance(train, dict):
        unknown = set(train) - {f.name for f in fields(TrainConfig)}
        if unknown:
            raise ValueError(f"train: unknown options {sorted(unknown)}")
        return TrainConfig(**train)
    raise ValueError(f"train must be a TrainConfig, a dict or None, got {type(train).__name__}")


def build_surrogate(blackbox, arch=None, weights=None):
    """A fresh surrogate for ``blackbox``'s task: ``arch`` (default: the architecture the black
    box publishes; a name, ``package.module:callable`` or an nn.Module, see
    :func:`divqat.models.build_model`), normalising with the victim's statistics, taking its
    input shape, starting from the state dict in the file ``weights`` when given."""
    from divqat.models import build_model

    arch = arch or blackbox.arch
    if arch is None:
        raise ValueError("arch: the black box publishes no architecture; name the surrogate's arch")
    return build_model(arch, **{key: blackbox.meta[key] for key in
                                ("num_classes", "in_channels", "image_size", "mean", "std")}, weights=weights)


def soft_label_loss(student_logits, victim_probs, reduction="batchmean"):
    """KL(y || softmax(s)) per row, averaged over the batch by default ("none": per row): the
    soft cross-entropy minus H(y), with y clamped at PROB_FLOOR (see the module docstring)."""
    return div_kl_loss(student_logits, victim_probs.clamp_min(PROB_FLOOR).log(), reduction=reduction)


def optimizer_step(model, optimizer, loss_fn, x, target):
    """One training step: ``model`` in train mode, ``loss_fn(model(x), target)`` back-propagated,
    one ``optimizer`` step. Returns the loss value."""
    model.train()
    loss = loss_fn(model(x), target)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.item()


def weighted_label_loss(weights):
    """The loss ``(s, (y, idx)) -> mean_i weights[idx_i] * KL(y_i || softmax(s_i))``: per-example
    weights on :func:`soft_label_loss`, averaged over the batch (weights of mean 1 keep the
    unweighted loss's scale)."""
    def loss(student_logits, target):
        probs, idx = target
        return (soft_label_loss(student_logits, probs, reduction="none") * weights[idx]).mean()
    return loss


def train_surrogate(model, x, targets, config, progress=True, desc="surrogate", weights=None):
    """Train ``model`` in place on inputs ``x`` (N, C, H, W) and target vectors ``targets`` (N, K)
    with :func:`soft_label_loss` (or, given per-example ``weights`` (N,), with
    :func:`weighted_label_loss`) and ``config`` (a resolved :class:`TrainConfig`); returns the
    mean loss of each epoch (also TensorBoard scalars ``desc/loss`` inside a
    :func:`divqat.tensorboard_log.tensorboard_log` block). Batches are drawn from torch's global
    generator; a trailing batch of one example is skipped (batch norm cannot train on it)."""
    if len(x) != len(targets) or len(x) == 0:
        raise ValueError(f"x and targets must be non-empty and of one length, got {len(x)} and {len(targets)}")
    if weights is not None and tuple(weights.shape) != (len(x),):
        raise ValueError(f"weights must have shape ({len(x)},), got {tuple(weights.shape)}")
    device = torch.device(config.device)
    model.to(device)
    optimizer = config.sgd(model)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=config.lr_step, gamma=config.lr_gamma)
    x, targets = x.to(device), targets.to(device)
    loss_fn = soft_label_loss if weights is None else weighted_label_loss(weights.to(device, torch.float32))
    history = []
    for _ in progress_bar(range(config.epochs), desc=desc, unit="epochs", enabled=progress):
        order = torch.randperm(len(x)).to(device)
        total = 0.0
        for i in range(0, len(x), config.batch_size):
            idx = order[i:i + config.batch_size]
            if len(idx) == 1 < len(x):  # a lone trailing example would break batch norm's statistics
                continue
            target = targets[idx] if weights is None else (targets[idx], idx)
            total += optimizer_step(model, optimizer, loss_fn, x[idx], target) * len(idx)
        scheduler.step()
        history.append(total / len(x))
        log_scalars(desc, {"loss": history[-1]}, len(history))
    model.eval()
    return history
