"""``divqat train``: train a victim and write its output directory (see divqat.train.artifacts).

    divqat train --dataset mnist --arch lenet5 --method fp --epochs 10 --out runs/fp
    divqat train --dataset mnist --arch lenet5 --method divqat --teacher runs/fp --alpha 1 --out runs/divqat
    torchrun --nproc_per_node=2 -m divqat.cli train ...     (the same run on 2 processes)

The methods and the run itself are :func:`divqat.train.victim.train_victim`'s; this module
only turns the command line into a :class:`~divqat.train.victim.VictimConfig`.
"""
import dataclasses

from divqat.cli_options import arch_help, choices_text, dataset_help
from divqat.reference.kl_loss import DIRECTIONS
from divqat.tensorboard_log import tensorboard_log
from divqat.train.loop import OPTIMIZERS
from divqat.train.objectives import OBJECTIVES, PROXY_TARGETS
from divqat.train.options import ADAM_LR_DIVISOR, EPOCHS, LR, METHODS, WEIGHT_DECAY, VictimConfig, flag
from divqat.train.victim import train_victim

# the values an option takes, where they are a fixed list
CHOICES = {"method": METHODS, "direction": DIRECTIONS, "objective": OBJECTIVES, "proxy_target": PROXY_TARGETS,
           "optimizer": OPTIMIZERS}
# options whose default depends on the method (None in VictimConfig)
PER_METHOD = {"epochs": EPOCHS, "lr": LR, "weight_decay": WEIGHT_DECAY}


def _per_method(values):
    """``"fp 10, qat 3, ..."``: a per-method default as a user reads it."""
    return ", ".join(f"{method} {value}" for method, value in values.items())


def _help(spec):
    """An option's help: what it is, its values, its default and which methods read it."""
    if spec.name == "dataset":
        return dataset_help(spec.metadata["help"])
    if spec.name == "arch":
        return arch_help()
    text = spec.metadata["help"]
    if spec.name in CHOICES:
        text += f": {choices_text(CHOICES[spec.name])}"
    if spec.name in PER_METHOD:
        text += f" (default per method: {_per_method(PER_METHOD[spec.name])}"
        text += f"; with Adam 1/{ADAM_LR_DIVISOR} of it)" if spec.name == "lr" else ")"
    elif spec.default not in (dataclasses.MISSING, None) and spec.type is not bool:
        text += f" (default {spec.default})"
    methods, objectives = spec.metadata["methods"], spec.metadata["objectives"]
    others = [m for m in METHODS if m not in methods]
    if objectives is not None:
        text += f"; --objective {', '.join(objectives)} only"
    elif len(others) == 1:
        text += f"; not with --method {others[0]}"
    elif others:
        text += f"; --method {', '.join(methods)} only"
    return text


def add_arguments(parser):
    """``divqat train``'s options: one per :class:`~divqat.train.options.VictimConfig` field,
    plus those that steer the command (--overwrite, --tensorboard)."""
    for spec in dataclasses.fields(VictimConfig):
        kwargs = {"help": _help(spec)}
        if spec.type is bool:
            kwargs["action"] = "store_true"
        else:
            kwargs["type"] = next(t for t in getattr(spec.type, "__args__", (spec.type,)) if t is not type(None))
            kwargs["metavar"] = spec.metadata["metavar"]
        if spec.default is dataclasses.MISSING:
            kwargs["required"] = True
        else:
            kwargs["default"] = spec.default
        parser.add_argument(flag(spec.name), **kwargs)
    parser.add_argument("--overwrite", action="store_true", help="replace a finished run in --out (refused otherwise)")
    parser.add_argument("--tensorboard", metavar="DIR", help="also write each epoch's monitors as TensorBoard "
                        "events in DIR (needs the tensorboard package)")


# parsed arguments that steer the command rather than describe the run
# --data-root: where data is, not what is trained; --tensorboard: where to log it
_NOT_CONFIG = ("command", "_module", "overwrite", "data_root", "tensorboard")


def config_from_args(args):
    """The :class:`VictimConfig` of parsed ``divqat train`` arguments (every option is a field
    of it: a new option needs a new field, or this raises TypeError)."""
    return VictimConfig(**{k: v for k, v in vars(args).items() if k not in _NOT_CONFIG})


def run(args):
    """Train, evaluate and write the output directory; returns 0."""
    config = config_from_args(args)
    with tensorboard_log(args.tensorboard):
        metrics = train_victim(config, overwrite=args.overwrite)
    if metrics is not None:
        print(f"divqat train: {config.method} -> {config.out}: "
              + " ".join(f"{k}={v:.4f}" for k, v in sorted(metrics.items())))
    return 0
