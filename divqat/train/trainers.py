"""The trainers: full precision, post-training quantization, QAT and DivQAT.

DivQAT (arXiv 2512.23948; docs/science.md §3) fine-tunes a fake-quantized copy f_q of a trained
full-precision model f_fp while pushing their output distributions apart:

    L(x, y) = CE(y, f_q(x)) - alpha_t * min( T^2 * KL( softmax(f_fp(x)/T) || softmax(f_q(x)/T) ), cap )

f_fp is frozen (eval mode, no gradient); f_q = prepare_qat(copy of f_fp). Options the paper
leaves open, with their defaults: direction "forward" (as above) or "reverse"
(KL(f_q || f_fp)); temperature T = 1; no cap; no alpha warm-up (with ``alpha_warmup_epochs=W``,
alpha rises linearly per step, alpha_t = alpha * min(1, e_t / W) where e_t is the number of
epochs completed after step t, fractions included).
alpha = 0 is plain QAT: the step then is CE alone and never runs the teacher.

Every trainer returns a :class:`TrainResult` (the trained model in eval mode, the per-epoch
history); :func:`ptq` returns the calibrated model.
"""
import copy
from dataclasses import dataclass

import torch
import torch.nn as nn
from torch.fx.experimental.optimization import fuse

from divqat import quant
from divqat.checks import check_choice, check_int, check_real
from divqat.progress import progress_bar
from divqat.reference.kl_loss import DIRECTIONS
from divqat.train.loop import fit
from divqat.train.monitors import Evaluator
from divqat.train.objectives import ce_only, divqat_step
from divqat.train.options import DEFAULTS, EPOCHS, LR, WEIGHT_DECAY
from divqat.utils import resolve_device


@dataclass
class TrainResult:
    """A trained model (eval mode) and its per-epoch history (the lines of log.jsonl)."""

    model: nn.Module
    history: list


def _ce_step(model, x, y, epochs_done):
    return ce_only(model(x), y)


def train_fp(model, train_set, test_set, *, epochs=EPOCHS["fp"], batch_size=DEFAULTS.batch_size, lr=LR["fp"],
             weight_decay=WEIGHT_DECAY["fp"], eval_batch_size=512, **options):
    """Train a full-precision classifier with cross-entropy.

    Loop options (``optimizer``, ``seed``, ``device``, ``workers``, ``progress``, ``out_dir``,
    ``resume``, ``callback``) are those of :func:`divqat.train.loop.fit`. Each epoch logs
    loss, ce, lr and test_accuracy.
    """
    device = resolve_device(options.get("device", "cpu"))
    evaluator = Evaluator(test_set, batch_size=eval_batch_size, device=device)
    history = fit(model, train_set, _ce_step, evaluate=evaluator, epochs=epochs, batch_size=batch_size, lr=lr,
                  weight_decay=weight_decay, signature={"method": "fp"}, desc="fp", **options)
    return TrainResult(model, history)


def freeze_schedule(epochs, freeze_last_epochs):
    """``before_epoch`` hook: observers and batch-norm statistics frozen in the last
    ``freeze_last_epochs`` epochs (never the first, so observers see data first), as PyTorch's
    QAT recipe recommends. Earlier epochs leave the observer switches as they are (LSQ
    quantizers switch their own observer off after initialising the scale)."""
    check_int("freeze_last_epochs", freeze_last_epochs, 0)
    first_frozen = max(1, epochs - freeze_last_epochs)

    def before_epoch(model, epoch):
        if freeze_last_epochs and epoch >= first_frozen:
            quant.freeze_observers(model)
            quant.freeze_bn(model)

    return before_epoch


def frozen_teacher(model, device):
    """f_fp: a copy of ``model`` in eval mode without gradients, on ``device``, with each
    conv-bn pair folded into one convolution and channels-last weights (the same function up
    to float rounding, and faster: the teacher's forward pass is the only extra work of a DivQAT
    step over a QAT step; benchmarks/bench_train_step.py times it)."""
    teacher = fuse(copy.deepcopy(model).eval(), inplace=True).to(device, memory_format=torch.channels_last)
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher


def check_divqat_options(alpha, temperature, direction, kl_cap, alpha_warmup_epochs):
    """ValueError naming the first DivQAT option out of range."""
    check_real("alpha", alpha, 0)
    check_real("temperature", temperature, 0, low_open=True)
    check_choice("direction", direction, DIRECTIONS)
    check_real("kl_cap", kl_cap, 0, low_open=True, optional=True)
    check_real("alpha_warmup_epochs", alpha_warmup_epochs, 0)


def train_divqat(teacher, train_set, test_set, alpha, temperature=DEFAULTS.temperature,
                 direction=DEFAULTS.direction, kl_cap=DEFAULTS.kl_cap, alpha_warmup_epochs=DEFAULTS.alpha_warmup,
                 *, qconfig=None, freeze_last_epochs=DEFAULTS.freeze_last, epochs=EPOCHS["divqat"],
                 batch_size=DEFAULTS.batch_size, lr=LR["divqat"], weight_decay=WEIGHT_DECAY["divqat"],
                 eval_batch_size=512, objective=None, **options):
    """DivQAT: fine-tune ``prepare_qat(copy of teacher, qconfig)`` with the DivQAT loss.

    ``teacher`` is left untouched. Each epoch logs loss, ce, lr, test_accuracy, kl_fp_q and
    l1_fp_q (test set, against the teacher). The last ``freeze_last_epochs`` epochs run with
    observers and batch-norm statistics frozen. Loop options as :func:`divqat.train.loop.fit`.
    ``objective``: a :class:`divqat.train.objectives.Objective` to train with instead of the
    paper's loss (None: the paper's).
    """
    check_divqat_options(alpha, temperature, direction, kl_cap, alpha_warmup_epochs)
    device = resolve_device(options.get("device", "cpu"))
    f_fp = frozen_teacher(teacher, device)
    student = quant.prepare_qat(copy.deepcopy(teacher).cpu(), qconfig)
    step = (divqat_step if objective is None else objective.make_step)(
        f_fp, alpha, temperature, direction, kl_cap, alpha_warmup_epochs)
    evaluator = Evaluator(test_set, reference=f_fp, batch_size=eval_batch_size, device=device)
    signature = {"method": "divqat", "alpha": alpha, "temperature": temperature, "direction": direction,
                 "kl_cap": kl_cap, "alpha_warmup_epochs": alpha_warmup_epochs, "freeze_last_epochs": freeze_last_epochs,
                 **(objective.signature() if objective is not None else {})}
    history = fit(student, train_set, step, evaluate=evaluator, before_epoch=freeze_schedule(epochs, freeze_last_epochs),
                  epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=weight_decay, signature=signature,
                  desc="divqat" if alpha else "qat", **options)
    return TrainResult(student, history)


def train_qat(model, train_set, test_set, **options):
    """Plain QAT: :func:`train_divqat` with alpha = 0 (cross-entropy only, the teacher only
    serves as the fp reference of the kl_fp_q / l1_fp_q monitors)."""
    return train_divqat(model, train_set, test_set, 0.0, **options)


def ptq(model, calibration_set, qconfig=None, *, batch_size=256, device="cpu", progress=True):
    """Post-training quantization: ``prepare_qat(copy of model)``, observers calibrated on
    ``calibration_set`` in eval mode (batch norm folded with its running statistics,
    :func:`divqat.quant.calibrate`), then frozen. No training; returns the model in eval mode.
    """
    if len(calibration_set) == 0:
        raise ValueError("calibration_set is empty")
    device = resolve_device(device)
    prepared = quant.prepare_qat(copy.deepcopy(model).cpu(), qconfig).to(device)
    loader = torch.utils.data.DataLoader(calibration_set, batch_size=batch_size, shuffle=False)
    batches = (x.to(device) for x, _ in progress_bar(loader, desc="ptq calibration", total=len(calibration_set),
                                                     unit="images", size=lambda b: len(b[1]), enabled=progress))
    quant.calibrate(prepared, batches)
    return quant.freeze_observers(prepared).eval()
