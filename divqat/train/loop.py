"""The one training loop every trainer shares: epochs, optimizer, cosine schedule, progress
bar, per-epoch log and evaluation, checkpoints with resume, and data parallel training.

A trainer supplies a ``step(model, x, y, epochs_done) -> {"loss": ..., other monitors}``
(``epochs_done``: epochs completed once this step is done, ``epoch + (i + 1) / S`` for batch ``i``
of ``S``; ``loss`` is back-propagated; every value is averaged over the epoch's examples and logged),
an ``evaluate(model) -> dict`` run at the end of each epoch, and optionally
``before_epoch(model, epoch)`` (e.g. to freeze observers and batch-norm statistics), which
must depend on ``epoch`` only, so a resumed run sets the same state.

Learning rate: ``lr_t = lr * (1 + cos(pi * t / (E * S))) / 2`` at global step ``t`` of ``E``
epochs of ``S`` steps (cosine annealing to 0, stepped per batch). Optimizers: SGD with momentum
0.9 or Adam. Data: a :class:`~torch.utils.data.DistributedSampler` (one replica when not
distributed) shuffles with ``seed + epoch``, so the same examples form global batch ``b`` in
every run, however many processes share it.
"""
import json
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler

from divqat import progress as progress_lines
from divqat.checks import check_choice, check_int, check_real
from divqat.tensorboard_log import log_scalars
from divqat.train import distributed
from divqat.train.checkpoint import CHECKPOINT_NAME, load_checkpoint, save_checkpoint, set_rng_state
from divqat.train.curves import CURVES_NAME, write_curves
from divqat.train.options import DEFAULTS, EPOCHS, LR
from divqat.utils import atomic_write_text, remove_temporaries, resolve_device, seed_everything

OPTIMIZERS = ("sgd", "adam")
LOG_NAME = "log.jsonl"


def make_optimizer(name, params, lr, weight_decay):
    """SGD (momentum 0.9) or Adam over ``params``."""
    check_choice("optimizer", name, OPTIMIZERS)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=weight_decay)
    return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)


def check_options(epochs, batch_size, lr, weight_decay, workers):
    """ValueError naming the first loop option out of range."""
    check_int("epochs", epochs, 1)
    check_int("batch_size", batch_size, 1)
    check_real("lr", lr, 0, low_open=True)
    check_real("weight_decay", weight_decay, 0)
    check_int("workers", workers, 0)


def _seed_worker(worker_id):
    """Seed NumPy and Python in a DataLoader worker from the seed torch gave it."""
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def _loader(dataset, ctx, batch_size, seed, epoch, workers):
    sampler = DistributedSampler(dataset, num_replicas=ctx.world_size, rank=ctx.rank, shuffle=True, seed=seed)
    sampler.set_epoch(epoch)
    generator = torch.Generator()  # seeds the workers; per epoch and rank, so resume needs no state
    generator.manual_seed((seed * 1_000_003 + epoch * 1_009 + ctx.rank) % 2**63)
    return DataLoader(dataset, batch_size=batch_size // ctx.world_size, sampler=sampler, num_workers=workers,
                      generator=generator, worker_init_fn=_seed_worker, pin_memory=ctx.device.type == "cuda")


def write_log(path, history):
    """Atomically (re)write ``path`` with one JSON line per record of ``history``."""
    atomic_write_text("".join(json.dumps(rec, sort_keys=True) + "\n" for rec in history), path)


class DivergedError(ValueError):
    """Training diverged: an epoch's loss (or another monitor) is not finite."""


@dataclass
class _Run:
    """What the epochs of one :func:`fit` call share."""

    ctx: object
    model: object
    wrapped: object  # the model, or its DistributedDataParallel wrapper
    optimizer: object
    scheduler: object
    steps_per_epoch: int
    signature: dict
    checkpoint: Path | None
    log: Path | None


def fit(model, train_set, step, *, evaluate=None, before_epoch=None, epochs=EPOCHS["fp"],
        batch_size=DEFAULTS.batch_size, lr=LR["fp"], optimizer=DEFAULTS.optimizer, weight_decay=0.0,
        seed=DEFAULTS.seed, device="cpu", workers=DEFAULTS.workers, progress=True, out_dir=None, resume=False,
        callback=None, signature=None, desc="train"):
    """Train ``model`` in place with ``step`` and return the per-epoch history (list of dicts:
    epoch, lr at the epoch's first step, the step's monitors averaged over the epoch, the
    ``evaluate`` results, seconds).

    - ``batch_size`` is the global batch; under torchrun each of N processes takes
      ``batch_size / N`` of it (it must divide) and DDP averages their gradients.
    - ``seed`` seeds Python, NumPy and torch before training (the data order depends on it too).
    - ``out_dir``: rank 0 rewrites ``out_dir/log.jsonl`` (one JSON line per epoch), its curves
      ``out_dir/curves.png`` (:mod:`divqat.train.curves`) and ``out_dir/checkpoint.pt``
      atomically after every epoch; ``resume=True`` continues from
      that checkpoint's last finished epoch (refused when ``signature`` or the loop options
      differ), and the result equals an uninterrupted run bit for bit.
    - inside a :func:`divqat.tensorboard_log.tensorboard_log` block, each epoch's record is also
      written as TensorBoard scalars ``desc/<monitor>``.
    - ``callback(record)`` is called on every rank after each epoch's checkpoint is written.
    - ``progress=False`` silences the progress of the epoch's images (:mod:`divqat.progress`) and
      the per-epoch line.
    - an epoch whose averaged monitors are not finite (a diverged run) raises
      :class:`DivergedError` before its checkpoint is written.
    """
    check_options(epochs, batch_size, lr, weight_decay, workers)
    if len(train_set) == 0:
        raise ValueError("train_set is empty")
    ctx = distributed.context(resolve_device(device))
    if batch_size % ctx.world_size:
        raise ValueError(f"batch_size {batch_size} is not divisible by the {ctx.world_size} processes")
    seed_everything(seed)
    signature = dict(signature or {}, epochs=epochs, batch_size=batch_size, lr=lr, optimizer=optimizer,
                     weight_decay=weight_decay, seed=seed, world_size=ctx.world_size)
    run = _start(model, train_set, ctx, optimizer, lr, weight_decay, epochs, batch_size, seed, signature, out_dir)
    history = _resume(run) if resume and run.checkpoint is not None and run.checkpoint.exists() else []
    if ctx.distributed:
        run.wrapped = DistributedDataParallel(model, device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None)
    for epoch in range(len(history), epochs):
        tic, epoch_lr = time.perf_counter(), run.optimizer.param_groups[0]["lr"]
        model.train()
        if before_epoch is not None:
            before_epoch(model, epoch)
        loader = _loader(train_set, ctx, batch_size, seed, epoch, workers)
        monitors = _train_epoch(run, step, loader, epoch, f"{desc} epoch {epoch + 1}/{epochs}", progress)
        record = {"epoch": epoch + 1, "lr": epoch_lr, **monitors}
        if evaluate is not None:
            record.update(evaluate(model))
        record["seconds"] = time.perf_counter() - tic
        history.append(record)
        _end_epoch(run, history, out_dir, desc, f"{desc} epoch {epoch + 1}/{epochs}", progress)
        if callback is not None:
            callback(record)
    model.eval()
    return history


def _start(model, train_set, ctx, optimizer, lr, weight_decay, epochs, batch_size, seed, signature, out_dir):
    """The model on its device, its optimizer and cosine schedule, and where its files go
    (interrupted writes of a killed run removed)."""
    model.to(ctx.device)
    opt = make_optimizer(optimizer, [p for p in model.parameters() if p.requires_grad], lr, weight_decay)
    steps_per_epoch = len(_loader(train_set, ctx, batch_size, seed, 0, 0))
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs * steps_per_epoch)
    checkpoint = log = None
    if out_dir is not None:
        checkpoint, log = Path(out_dir) / CHECKPOINT_NAME, Path(out_dir) / LOG_NAME
        if ctx.is_main:
            remove_temporaries(checkpoint)
            remove_temporaries(log)
    return _Run(ctx, model, model, opt, scheduler, steps_per_epoch, signature, checkpoint, log)


def _resume(run):
    """Restore model, optimizer, schedule and RNG from the checkpoint; its history (one record
    per finished epoch)."""
    state = load_checkpoint(run.checkpoint, run.signature, run.ctx.device)
    run.model.load_state_dict(state["model"])
    run.optimizer.load_state_dict(state["optimizer"])
    run.scheduler.load_state_dict(state["scheduler"])
    set_rng_state(state["rng"])
    return list(state["history"])


def _train_epoch(run, step, loader, epoch, label, progress):
    """One epoch of optimizer steps; the step's monitors averaged over all processes' examples.
    DivergedError when they are not finite."""
    ctx, sums = run.ctx, None
    count = torch.zeros((), dtype=torch.float64, device=ctx.device)
    bar = progress_lines.progress_bar(loader, desc=label, total=len(loader.sampler), unit="images",
                                      size=lambda batch: len(batch[1]), enabled=progress and ctx.is_main)
    for i, (x, y) in enumerate(bar):
        x, y = x.to(ctx.device, non_blocking=True), y.to(ctx.device, non_blocking=True)
        out = step(run.wrapped, x, y, epoch + (i + 1) / run.steps_per_epoch)
        run.optimizer.zero_grad(set_to_none=True)
        out["loss"].backward()
        run.optimizer.step()
        run.scheduler.step()
        values = torch.stack([v.detach().double() for v in out.values()]) * len(y)
        sums = values if sums is None else sums + values
        count += len(y)
        if i % 20 == 0 and bar.enabled:
            bar.set_postfix(loss=f"{out['loss'].item():.4f}", refresh=False)  # shown by the update
    distributed.all_reduce_sum(sums, ctx)
    distributed.all_reduce_sum(count, ctx)
    monitors = {k: (s / count).item() for k, s in zip(out, sums)}
    bad = [k for k, v in monitors.items() if not math.isfinite(v)]
    if bad:
        raise DivergedError(f"training diverged in epoch {epoch + 1}: {', '.join(f'{k}={monitors[k]}' for k in bad)} "
                            "(a smaller --lr may help); the last finished epoch's checkpoint is kept")
    return monitors


def _end_epoch(run, history, out_dir, desc, label, progress):
    """The epoch's checkpoint, log and curves (rank 0), TensorBoard scalars and progress line;
    then every process waits for the others."""
    record, ctx = history[-1], run.ctx
    if ctx.is_main and out_dir is not None:
        save_checkpoint(run.checkpoint, epoch=record["epoch"], model=run.model, optimizer=run.optimizer,
                        scheduler=run.scheduler, history=history, signature=run.signature)
        write_log(run.log, history)
        write_curves(history, Path(out_dir) / CURVES_NAME, title=desc)
    if ctx.is_main:
        log_scalars(desc, {k: v for k, v in record.items() if k != "epoch"}, record["epoch"])
    if progress and ctx.is_main:
        progress_lines.write(f"{label}: " + " ".join(f"{k}={v:.4g}" for k, v in record.items()
                                                     if k not in ("epoch", "seconds")))
    distributed.barrier(ctx)
