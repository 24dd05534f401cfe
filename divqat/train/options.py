"""The options of a victim's training run, in one table: :class:`VictimConfig`.

Each field is one ``divqat train`` option (``kl_cap`` is ``--kl-cap``) with its default, its help
text and which methods (and, for method divqat, which trained-in objectives) read it. Everything
else is built from this table: the command line (:mod:`divqat.train.command`), the defaults of
:class:`~divqat.train.objectives.Objective` and of the trainers, and the refusal of an option
that the chosen method or objective would ignore (:func:`unused_option`).

A new option is a new field here; a new trained-in objective lists its own options with
``objectives=("name",)`` (and is registered in :data:`divqat.train.objectives.STEPS`).
"""
import dataclasses
import types
from dataclasses import dataclass, field

from divqat.train.proxies import TRANSFORMS

QUANTIZED_METHODS = ("ptq", "qat", "divqat")  # built from a trained full-precision teacher
ADVERSARIAL = {"adv-fgsm": "fgsm", "adv-pgd": "pgd"}
METHODS = ("fp",) + QUANTIZED_METHODS + tuple(ADVERSARIAL)
TRAINED = tuple(m for m in METHODS if m != "ptq")  # ptq calibrates, it does not train
# default epochs, SGD learning rate (Adam: lr / 50) and weight decay per method
EPOCHS = {"fp": 10, "qat": 3, "divqat": 3, "adv-fgsm": 10, "adv-pgd": 10}
LR = {"fp": 0.05, "qat": 0.005, "divqat": 0.005, "adv-fgsm": 0.05, "adv-pgd": 0.05}
WEIGHT_DECAY = {"fp": 5e-4, "qat": 0.0, "divqat": 0.0, "adv-fgsm": 5e-4, "adv-pgd": 5e-4}
ADAM_LR_DIVISOR = 50


def option(default, help, *, methods=METHODS, objectives=None, metavar=None):
    """A field of :class:`VictimConfig`: its default, help text (without the default, which the
    command line adds), the methods that read it and, for the divqat method, the objectives."""
    return field(default=default, metadata={"help": help, "methods": methods, "objectives": objectives,
                                            "metavar": metavar})


def required(help, metavar=None):
    """A field without a default: an option every run must give."""
    return field(metadata={"help": help, "methods": METHODS, "objectives": None, "metavar": metavar})


@dataclass
class VictimConfig:
    """Everything a victim's training run depends on; the fields are ``divqat train``'s options
    (``--kl-cap`` is ``kl_cap``), and config.json records them all."""

    dataset: str = required("training and test set")
    arch: str = required("architecture")
    out: str = required("output directory (config.json, model.pt, log.jsonl, metrics.json)", "DIR")
    method: str = option("fp", "training method")
    teacher: str | None = option(None, "output dir of an fp run, the model to quantize (required)",
                                 methods=QUANTIZED_METHODS, metavar="DIR")
    alpha: float = option(1.0, "DivQAT weight of the KL term, >= 0 (0 = plain QAT)", methods=("divqat",))
    temperature: float = option(1.0, "DivQAT softmax temperature T", methods=("divqat",))
    direction: str = option("forward", "KL direction (forward: KL(f_fp||f_q), reverse: KL(f_q||f_fp))",
                            methods=("divqat",))
    kl_cap: float | None = option(None, "cap on the per-sample KL term (default: no cap)", methods=("divqat",))
    alpha_warmup: float = option(0.0, "epochs over which alpha rises linearly from 0", methods=("divqat",))
    objective: str = option("divqat", "trained-in objective (divqat: the paper's)", methods=("divqat",))
    margin: float = option(1.0, "nonlabel: margin m of the top-1 hinge", methods=("divqat",),
                           objectives=("nonlabel",))
    margin_weight: float = option(1.0, "nonlabel: weight of the top-1 hinge", methods=("divqat",),
                                  objectives=("nonlabel",))
    proxy_target: str = option("kl", "proxy: what is pushed on the proxies", methods=("divqat",),
                               objectives=("proxy",))
    distill: float = option(0.0, "proxy: weight of KL(f_fp || f_q) on real images", methods=("divqat",),
                            objectives=("proxy",))
    proxy_transforms: str = option(",".join(TRANSFORMS), "proxy: comma-separated proxy transforms, a subset "
                                   f"of {','.join(TRANSFORMS)}", methods=("divqat",), objectives=("proxy",))
    bits: int = option(8, "weight and activation bit width, 2..8", methods=QUANTIZED_METHODS)
    lsq: bool = option(False, "learnable scale and zero point (LSQ)", methods=QUANTIZED_METHODS)
    freeze_last: int = option(1, "epochs at the end with observers and batch-norm statistics frozen",
                              methods=("qat", "divqat"))
    eps: float | None = option(None, "adversarial perturbation size in [0, 1] pixel units (required)",
                               methods=tuple(ADVERSARIAL))
    epochs: int | None = option(None, "training epochs", methods=TRAINED)
    batch_size: int = option(128, "global batch size, split over torchrun processes")
    lr: float | None = option(None, "peak learning rate, cosine decay", methods=TRAINED)
    optimizer: str = option("sgd", "optimizer (SGD with momentum 0.9, or Adam)", methods=TRAINED)
    weight_decay: float | None = option(None, "weight decay", methods=TRAINED)
    limit: int | None = option(None, "train on the first N training examples", metavar="N")
    test_limit: int | None = option(None, "evaluate on the first N test examples", metavar="N")
    no_augment: bool = option(False, "no training augmentation", methods=TRAINED)
    seed: int = option(0, "seeds python, numpy, torch and the data order")
    resume: bool = option(False, "continue from OUT/checkpoint.pt after its last finished epoch")
    device: str = option("auto", "auto, cpu, cuda or cuda:N")
    workers: int = option(0, "DataLoader worker processes")
    no_progress: bool = option(False, "no progress bars or per-epoch lines")

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


FIELDS = {f.name: f for f in dataclasses.fields(VictimConfig)}
#: the default of every option that has one: ``DEFAULTS.temperature``
DEFAULTS = types.SimpleNamespace(**{n: f.default for n, f in FIELDS.items() if f.default is not dataclasses.MISSING})


def flag(name):
    """The command-line spelling of the option ``name``: ``--kl-cap`` for ``kl_cap``."""
    return "--" + name.replace("_", "-")


def reads(name, method, objective):
    """Whether a run of ``method`` (for divqat: with ``objective``) reads the option ``name``."""
    spec = FIELDS[name]
    methods, objectives = spec.metadata["methods"], spec.metadata["objectives"]
    return method in methods and (objectives is None or objective in objectives)


def unused_option(config):
    """``(option, reason)`` for the first option set to other than its default that the run of
    ``config`` would not read (its method, or for method divqat its objective, ignores it);
    None when every option given is read."""
    for f in dataclasses.fields(VictimConfig):
        if f.default is dataclasses.MISSING or getattr(config, f.name) == f.default:
            continue
        if not reads(f.name, config.method, config.objective):
            methods, objectives = f.metadata["methods"], f.metadata["objectives"]
            if config.method not in methods:
                return f.name, f"applies to --method {', '.join(methods)} only, not --method {config.method}"
            return f.name, f"applies to --objective {', '.join(objectives)} only, not --objective {config.objective}"
    return None
