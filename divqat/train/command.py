"""``divqat train``: train a victim and write its output directory (see divqat.train.artifacts).

    divqat train --dataset mnist --arch lenet5 --method fp --epochs 10 --out runs/fp
    divqat train --dataset mnist --arch lenet5 --method divqat --teacher runs/fp --alpha 1 --out runs/divqat
    torchrun --nproc_per_node=2 -m divqat.cli train ...     (the same run on 2 processes)

The methods and the run itself are :func:`divqat.train.victim.train_victim`'s; this module
only turns the command line into a :class:`~divqat.train.victim.VictimConfig`.
"""
from divqat.cli_options import arch_help, choices_text, dataset_help
from divqat.reference.kl_loss import DIRECTIONS
from divqat.tensorboard_log import tensorboard_log
from divqat.train import objectives
from divqat.train.loop import OPTIMIZERS
from divqat.train.victim import EPOCHS, LR, METHODS, VictimConfig, train_victim


def _per_method(values):
    """``"fp 10, qat 3, ..."``: a per-method default as a user reads it."""
    return ", ".join(f"{method} {value}" for method, value in values.items())


def add_arguments(parser):
    a = parser.add_argument
    a("--dataset", required=True, help=dataset_help("training and test set"))
    a("--arch", required=True, help=arch_help())
    a("--method", default="fp", help=f"training method: {choices_text(METHODS, 'fp')}")
    a("--teacher", metavar="DIR", help="output dir of an fp run: the model ptq/qat/divqat quantize (required for them)")
    a("--alpha", type=float, default=1.0, help="DivQAT weight of the KL term, >= 0 (default 1; 0 = plain QAT)")
    a("--temperature", type=float, default=1.0, help="DivQAT softmax temperature T (default 1)")
    a("--direction", default="forward", help=f"KL direction: {choices_text(DIRECTIONS, 'forward')}; "
      "forward is KL(f_fp||f_q), reverse KL(f_q||f_fp)")
    a("--kl-cap", type=float, default=None, help="cap on the per-sample KL term (default none)")
    a("--alpha-warmup", type=float, default=0.0, help="epochs over which alpha rises linearly from 0 (default 0)")
    objectives.add_arguments(parser)
    a("--bits", type=int, default=8, help="weight and activation bit width, 2..8 (default 8)")
    a("--lsq", action="store_true", help="learnable scale and zero point (LSQ)")
    a("--freeze-last", type=int, default=1,
      help="QAT/DivQAT: epochs at the end with observers and batch-norm statistics frozen (default 1)")
    a("--eps", type=float, default=None, help="adv-fgsm/adv-pgd: perturbation size in [0, 1] pixel units")
    a("--epochs", type=int, default=None, help=f"training epochs (default per method: {_per_method(EPOCHS)})")
    a("--batch-size", type=int, default=128, help="global batch size, split over torchrun processes (default 128)")
    a("--lr", type=float, default=None, help="peak learning rate, cosine decay (default per method, with SGD: "
      f"{_per_method(LR)}; with Adam a 50th of that)")
    a("--optimizer", default="sgd", help=f"{choices_text(OPTIMIZERS, 'sgd')}; SGD with momentum 0.9")
    a("--weight-decay", type=float, default=None, help="weight decay (default 5e-4 fp, 0 otherwise)")
    a("--limit", type=int, default=None, metavar="N", help="train on the first N training examples")
    a("--test-limit", type=int, default=None, metavar="N", help="evaluate on the first N test examples")
    a("--no-augment", action="store_true", help="no training augmentation")
    a("--seed", type=int, default=0, help="seeds python, numpy, torch and the data order (default 0)")
    a("--resume", action="store_true", help="continue from OUT/checkpoint.pt after its last finished epoch")
    a("--out", required=True, metavar="DIR", help="output directory (config.json, model.pt, log.jsonl, metrics.json)")
    a("--overwrite", action="store_true", help="replace a finished run in --out (refused otherwise)")
    a("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    a("--workers", type=int, default=0, help="DataLoader worker processes (default 0)")
    a("--no-progress", action="store_true", help="no progress bars or per-epoch lines")
    a("--tensorboard", metavar="DIR", help="also write each epoch's monitors as TensorBoard events in DIR "
      "(needs the tensorboard package)")


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
