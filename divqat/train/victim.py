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
import types
from dataclasses import dataclass
from pathlib import Path

import torch

import divqat
from divqat import quant
from divqat.checks import check_choice, check_int, check_real, claim_output_dir
from divqat.checks import check_out as check_out_rule
from divqat.data import canonical_name, dataset_info, load_dataset
from divqat.models import build_model_for
from divqat.train import distributed, objectives
from divqat.train.artifacts import load_config, load_victim, start_run, write_run_results
from divqat.train.loop import LOG_NAME, OPTIMIZERS, check_options, write_log
from divqat.train.monitors import Evaluator, quantized_metrics
from divqat.train.trainers import check_divqat_options, ptq, train_divqat, train_fp
from divqat.utils import resolve_device, seed_everything

QUANTIZED_METHODS = ("ptq", "qat", "divqat")  # built from a trained full-precision teacher
ADVERSARIAL = {"adv-fgsm": "fgsm", "adv-pgd": "pgd"}
METHODS = ("fp",) + QUANTIZED_METHODS + tuple(ADVERSARIAL)
# default epochs and SGD learning rate per method (Adam: lr / 50)
EPOCHS = {"fp": 10, "qat": 3, "divqat": 3, "adv-fgsm": 10, "adv-pgd": 10}
LR = {"fp": 0.05, "qat": 0.005, "divqat": 0.005, "adv-fgsm": 0.05, "adv-pgd": 0.05}


@dataclass
class VictimConfig:
    """Everything a victim's training run depends on; the fields are ``divqat train``'s options
    (``--kl-cap`` is ``kl_cap``), and config.json records them all."""

    dataset: str
    arch: str
    out: str
    method: str = "fp"
    teacher: str | None = None
    alpha: float = 1.0
    temperature: float = 1.0
    direction: str = "forward"
    kl_cap: float | None = None
    alpha_warmup: float = 0.0
    objective: str = "divqat"  # the trained-in objectives of divqat.train.objectives
    margin: float = 1.0
    margin_weight: float = 1.0
    proxy_target: str = "kl"
    distill: float = 0.0
    proxy_transforms: str = "mixup,shuffle,noise,blur"
    bits: int = 8
    lsq: bool = False
    freeze_last: int = 1
    eps: float | None = None
    epochs: int | None = None
    batch_size: int = 128
    lr: float | None = None
    optimizer: str = "sgd"
    weight_decay: float | None = None
    limit: int | None = None
    test_limit: int | None = None
    no_augment: bool = False
    seed: int = 0
    resume: bool = False
    device: str = "auto"
    workers: int = 0
    no_progress: bool = False

    @classmethod
    def from_options(cls, options, where="options"):
        """A config from a dict of option values (e.g. a TOML table); ValueError naming
        ``where`` and the option for an unknown option or a value of the wrong type."""
        known = {f.name: f.type for f in dataclasses.fields(cls)}
        unknown = sorted(set(options) - set(known))
        if unknown:
            raise ValueError(f"{where}: options unknown to `divqat train`: {', '.join(unknown)}")
        values = {k: _coerce(k, v, known[k], where) for k, v in options.items()}
        try:
            return cls(**values)
        except TypeError as err:  # a required option missing
            raise ValueError(f"{where}: {err}") from None

    @property
    def quantized(self):
        return self.method in QUANTIZED_METHODS


def _coerce(name, value, annotation, where):
    """``value`` as the field's type (an int is a valid float); ValueError otherwise."""
    allowed = annotation.__args__ if isinstance(annotation, types.UnionType) else (annotation,)
    if value is None and type(None) in allowed:
        return None
    if float in allowed and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    kinds = [t for t in allowed if t is not type(None)]
    if isinstance(value, bool) and bool not in kinds or not isinstance(value, tuple(kinds)):
        expected = " or ".join("None" if t is type(None) else t.__name__ for t in allowed)
        raise ValueError(f"{where}: bad `divqat train` option {name}: expected {expected}, got {value!r}")
    return value


def loop_options(config, device):
    """The keyword arguments of :func:`divqat.train.loop.fit` for a run of ``config``."""
    lr = config.lr if config.lr is not None else LR[config.method] / (50 if config.optimizer == "adam" else 1)
    epochs = EPOCHS[config.method] if config.epochs is None else config.epochs
    options = {"epochs": epochs, "batch_size": config.batch_size, "lr": lr,
               "optimizer": config.optimizer, "seed": config.seed, "device": device, "workers": config.workers,
               "progress": not config.no_progress, "out_dir": config.out, "resume": config.resume}
    if config.weight_decay is not None:
        options["weight_decay"] = config.weight_decay
    return options


def check_model(config):
    """ValueError naming the dataset or architecture unless the model can be built for the data."""
    dataset_info(config.dataset)  # ValueError naming the dataset
    build_model_for(config.arch, config.dataset)  # ValueError naming the architecture


def check_config(config):
    """ValueError (one line, naming the option) for option values that cannot make a run
    (the dataset and architecture: :func:`check_model`)."""
    check_choice("--method", config.method, METHODS)
    check_divqat_options(config.alpha, config.temperature, config.direction, config.kl_cap, config.alpha_warmup)
    objectives.objective_from_args(config)
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
    if not config.quantized and config.teacher is not None:
        raise ValueError(f"--teacher applies to {', '.join(QUANTIZED_METHODS)} only, not --method {config.method}")
    if config.method in ADVERSARIAL:
        if config.eps is None:
            raise ValueError(f"--method {config.method} needs --eps")
        check_real("--eps", config.eps, 0, 1, low_open=True)
    elif config.eps is not None:
        raise ValueError(f"--eps applies to {', '.join(ADVERSARIAL)} only, not --method {config.method}")


def check_out(config, overwrite=False):
    """ValueError unless ``config.out`` can be written and holds no finished run (unless
    ``overwrite``)."""
    check_out_rule("--out", config.out, "train", inputs={"--teacher": config.teacher}, overwrite=overwrite)


def check_teacher(config, teacher_config):
    """ValueError unless the teacher run is a float model of the same architecture and dataset."""
    if teacher_config["quantized"]:
        raise ValueError(f"--teacher {config.teacher} is a quantized ({teacher_config['method']}) run; "
                         "give the output directory of a float (fp) run")
    for key in ("arch", "dataset"):
        if teacher_config[key] != getattr(config, key):
            raise ValueError(f"--teacher {config.teacher} was trained with {key} {teacher_config[key]!r}, "
                             f"not --{key} {getattr(config, key)!r}")


def _objective(config):
    """The trained-in objective of a divqat run (None: the paper's loss, or a qat run)."""
    objective = objectives.objective_from_args(config)
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
    ctx = distributed.context(resolve_device(config.device))
    metrics = None
    try:
        seed_everything(config.seed)
        model = build_model_for(config.arch, config.dataset)
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
