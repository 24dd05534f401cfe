"""Train a victim from a configuration: the one function behind ``divqat train`` and the
experiment pipeline (:mod:`divqat.experiments.pipeline`).

    config = VictimConfig(dataset="mnist", arch="lenet5", method="fp", epochs=10, out="runs/fp")
    metrics = train_victim(config)

Methods: fp (cross-entropy), ptq (calibrate a quantized copy of the teacher, no training),
qat (fine-tune a quantized copy with cross-entropy), divqat (DivQAT, arXiv 2512.23948:
CE - alpha * T^2 * KL(f_fp || f_q), docs/science.md §3), adv-fgsm / adv-pgd (adversarial
training, float). The output directory's format is :mod:`divqat.train.artifacts`'s.
A finished run is never overwritten unless asked (``overwrite=True``), and then its finished
marker goes first (:func:`~divqat.train.artifacts.start_run`).
"""
import dataclasses
import platform
from pathlib import Path

import torch

import divqat
from divqat import quant
from divqat.checks import check_choice, check_int, check_real, claim_output_dir
from divqat.checks import check_out as check_out_rule
from divqat.data import canonical_name, dataset_info, load_dataset
from divqat.models import build_model_for
from divqat.train import distributed, objectives
from divqat.train.artifacts import (
    MISINFORMATION,
    load_config,
    load_victim,
    start_run,
    write_run_results,
)
from divqat.train.checkpoint import CHECKPOINT_NAME
from divqat.train.loop import LOG_NAME, OPTIMIZERS, check_options, write_log
from divqat.train.monitors import Evaluator, quantized_metrics
from divqat.train.options import (
    ADAM_LR_DIVISOR,
    ADVERSARIAL,
    DEFAULTS,
    EPOCHS,
    LR,
    METHODS,
    QUANTIZED_METHODS,
    VictimConfig,
    flag,
    unused_option,
)
from divqat.train.trainers import check_divqat_options, ptq, train_divqat, train_fp
from divqat.utils import resolve_device, seed_everything

# the option table's names are also this module's (experiments and the command line import them here)
__all__ = ["VictimConfig", "METHODS", "QUANTIZED_METHODS", "ADVERSARIAL", "EPOCHS", "LR", "train_victim",
           "check_config", "check_model", "check_out", "check_teacher", "check_resume", "loop_options"]

def loop_options(config, device):
    """The keyword arguments of :func:`divqat.train.loop.fit` for a run of ``config``."""
    divisor = ADAM_LR_DIVISOR if config.optimizer == "adam" else 1
    lr = config.lr if config.lr is not None else LR[config.method] / divisor
    epochs = EPOCHS[config.method] if config.epochs is None else config.epochs
    options = {"epochs": epochs, "batch_size": config.batch_size, "lr": lr,
               "optimizer": config.optimizer, "seed": config.seed, "device": device, "workers": config.workers,
               "progress": not config.no_progress, "out_dir": config.out, "resume": config.resume}
    if config.weight_decay is not None:
        options["weight_decay"] = config.weight_decay
    return options


def check_model(config):
    """ValueError naming the dataset or architecture unless the model can be built for the data
    and answers finite logits (checked on one random input, the global RNG untouched)."""
    info = dataset_info(config.dataset)  # ValueError naming the dataset
    model = build_model_for(config.arch, config.dataset).eval()  # ValueError naming the architecture
    x = torch.rand(1, info.in_channels, info.image_size, info.image_size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        logits = model(x)
    if not torch.isfinite(logits).all():
        raise ValueError(f"--arch {config.arch}: the model's logits on an input are not finite (nan or inf)")


def check_config(config):
    """ValueError (one line, naming the option) for option values that cannot make a run, and
    for an option the method or objective would ignore (the dataset and architecture:
    :func:`check_model`)."""
    check_choice("--method", config.method, METHODS)
    objectives.objective_of(config)
    unused = unused_option(config)
    if unused is not None:
        name, reason = unused
        raise ValueError(f"{flag(name)} {reason} (it would be ignored)")
    check_divqat_options(config.alpha, config.temperature, config.direction, config.kl_cap, config.alpha_warmup)
    check_choice("--optimizer", config.optimizer, OPTIMIZERS)
    if config.method != "ptq":
        o = loop_options(config, "cpu")
        check_options(o["epochs"], o["batch_size"], o["lr"], o.get("weight_decay", 0.0), o["workers"])
    check_int("--limit", config.limit, 1, optional=True)
    check_int("--test-limit", config.test_limit, 1, optional=True)
    check_int("--freeze-last", config.freeze_last, 0)
    try:
        quant.get_qconfig(config.bits, config.bits)
    except ValueError as exc:
        raise ValueError(f"--bits {config.bits}: {exc}") from None
    if config.quantized and config.teacher is None:
        raise ValueError(f"--method {config.method} needs --teacher DIR (the output directory of an fp run)")
    if config.method in ADVERSARIAL:
        if config.eps is None:
            raise ValueError(f"--method {config.method} needs --eps")
        check_real("--eps", config.eps, 0, 1, low_open=True)


def check_out(config, overwrite=False):
    """ValueError unless ``config.out`` names a directory that the output rule
    (:func:`divqat.checks.check_out`) lets a run write: not the teacher, nor another command's
    results, nor a finished run (unless ``overwrite``)."""
    if not str(config.out).strip():
        raise ValueError(f"--out must name a directory, got {config.out!r}")
    check_out_rule("--out", config.out, "train", inputs={"--teacher": config.teacher}, overwrite=overwrite)


def check_teacher(config, teacher_config):
    """ValueError unless the teacher run is a float victim of the same architecture and dataset."""
    if teacher_config["method"] == MISINFORMATION:
        raise ValueError(f"--teacher {config.teacher} holds adaptive misinformation's model "
                         "(divqat train-misinformation), not a victim; give the output directory of an fp run")
    if teacher_config["quantized"]:
        raise ValueError(f"--teacher {config.teacher} is a quantized ({teacher_config['method']}) run; "
                         "give the output directory of a float (fp) run")
    for key in ("arch", "dataset"):
        if teacher_config[key] != getattr(config, key):
            raise ValueError(f"--teacher {config.teacher} was trained with {key} {teacher_config[key]!r}, "
                             f"not --{key} {getattr(config, key)!r}")


# options that say how a run is carried out, not what it computes: a resume may change them
_HOW = ("out", "resume", "device", "workers", "no_progress")


def check_resume(config, teacher_config):
    """ValueError naming the first option (or the teacher) that differs from the run that
    ``--resume`` would continue in ``config.out`` (nothing to check without a checkpoint)."""
    if not (config.resume and (Path(config.out) / CHECKPOINT_NAME).is_file()):
        return
    started = load_config(config.out)
    for name in (f.name for f in dataclasses.fields(VictimConfig) if f.name not in _HOW):
        if name == "teacher":
            before, now = started.get("teacher_config"), teacher_config
        else:
            before, now = started.get(name, getattr(DEFAULTS, name, None)), getattr(config, name)
        if before != now:
            shown = config.teacher if name == "teacher" else now
            raise ValueError(f"--resume: {flag(name)} {shown} differs from the run in --out {config.out} "
                             "(it would continue another run); give the same options or drop --resume")


def _objective(config):
    """The trained-in objective of a divqat run (None: the paper's loss, or a qat run)."""
    objective = objectives.objective_of(config)
    return objective if config.method == "divqat" and objective.name != "divqat" else None


def _train(config, model, teacher, qconfig, train_set, test_set, ctx):
    """Dispatch to the method's trainer; returns the trained model."""
    if config.method == "ptq":
        student = ptq(teacher, train_set, qconfig, batch_size=config.batch_size, device=ctx.device,
                      progress=not config.no_progress)
        record = {"epoch": 0, "calibration_examples": len(train_set),
                  **Evaluator(test_set, reference=teacher, device=ctx.device)(student)}
        if ctx.is_main:
            write_log(Path(config.out) / LOG_NAME, [record])
        return student
    options = loop_options(config, ctx.device)
    if config.method == "fp":
        return train_fp(model, train_set, test_set, **options).model
    if config.method in ("qat", "divqat"):
        alpha = config.alpha if config.method == "divqat" else 0.0
        return train_divqat(teacher, train_set, test_set, alpha, config.temperature, config.direction,
                            config.kl_cap, config.alpha_warmup, qconfig=qconfig,
                            freeze_last_epochs=config.freeze_last, objective=_objective(config), **options).model
    from divqat.train.adversarial import train_adversarial

    return train_adversarial(model, train_set, test_set, attack=ADVERSARIAL[config.method], eps=config.eps,
                             **options).model


def _record(config, model, qconfig, teacher_config, device):
    """config.json: every option, plus what rebuilds the model and the versions used."""
    record = dataclasses.asdict(config)
    record.update(meta=dict(model.meta), quantized=config.quantized,
                  qconfig=qconfig.to_dict() if qconfig is not None else None,
                  teacher_config=teacher_config, world_size=distributed.world_size_from_env(),
                  loop=loop_options(config, str(device)) if config.method != "ptq" else None, versions={
                      "divqat": divqat.__version__, "torch": torch.__version__, "python": platform.python_version()})
    return record


def train_victim(config, overwrite=False):
    """Train, evaluate and write the output directory of ``config`` (a :class:`VictimConfig`).

    Returns the final test metrics (also in ``config.out``/metrics.json) on the main process,
    None on the other torchrun processes. ValueError before any work for a bad configuration
    or a finished run in ``config.out`` (unless ``overwrite``).
    """
    check_config(config)
    check_model(config)
    check_out(config, overwrite)
    config = dataclasses.replace(config, dataset=canonical_name(config.dataset))  # imagefolder:PATH stored absolute
    teacher_config = teacher = None
    if config.quantized:
        teacher_config = load_config(config.teacher)
        check_teacher(config, teacher_config)
    check_resume(config, teacher_config)
    ctx = distributed.context(resolve_device(config.device))
    metrics = None
    try:
        seed_everything(config.seed)
        objective = _objective(config)
        model = build_model_for(config.arch, config.dataset, **(objective.model_options() if objective else {}))
        if teacher_config is not None:
            teacher = load_victim(config.teacher, kind="float", device=ctx.device)
        qconfig = quant.get_qconfig(config.bits, config.bits, learnable=config.lsq) if config.quantized else None
        train_set = load_dataset(config.dataset, "train", augment=not config.no_augment and config.method != "ptq",
                                 limit=config.limit)
        test_set = load_dataset(config.dataset, "test", limit=config.test_limit)
        if ctx.is_main:
            claim_output_dir("--out", config.out, "train", inputs={"--teacher": config.teacher}, overwrite=overwrite)
            start_run(config.out, _record(config, model, qconfig, teacher_config, ctx.device),
                      keep_checkpoint=config.resume)
        distributed.barrier(ctx)
        trained = _train(config, model, teacher, qconfig, train_set, test_set, ctx)
        if ctx.is_main:
            int8_model = None
            if config.quantized:
                example = test_set[0][0].unsqueeze(0)
                int8_model = quant.convert(trained, example)
                metrics = quantized_metrics(trained, teacher, int8_model, test_set, device=ctx.device)
            else:
                metrics = Evaluator(test_set, device=ctx.device)(trained)
            write_run_results(config.out, trained, metrics, int8_model)
        distributed.barrier(ctx)
    finally:
        distributed.shutdown()
    return metrics
