"""``divqat train``: train a victim and write its output directory (see divqat.train.artifacts).

    divqat train --dataset mnist --arch lenet5 --method fp --epochs 10 --out runs/fp
    divqat train --dataset mnist --arch lenet5 --method divqat --teacher runs/fp --alpha 1 --out runs/divqat
    torchrun --nproc_per_node=2 -m divqat.cli train ...     (the same run on 2 processes)

The methods and the run itself are :func:`divqat.train.victim.train_victim`'s; this module
only turns the command line into a :class:`~divqat.train.victim.VictimConfig`.
"""
from divqat.train import objectives
from divqat.train.loop import OPTIMIZERS
from divqat.train.victim import EPOCHS, LR, METHODS, VictimConfig, train_victim


def add_arguments(parser):
    a = parser.add_argument
    a("--dataset", required=True, help="dataset name (divqat.data.DATASETS) or imagefolder:PATH (your images)")
    a("--arch", required=True, help="architecture (divqat.models.ARCHITECTURES) or package.module:callable")
    a("--method", default="fp", help=f"one of {', '.join(METHODS)} (default fp)")
    a("--teacher", help="output dir of an fp run: the model ptq/qat/divqat quantize (required for them)")
    a("--alpha", type=float, default=1.0, help="DivQAT weight of the KL term, >= 0 (default 1; 0 = plain QAT)")
    a("--temperature", type=float, default=1.0, help="DivQAT softmax temperature T (default 1)")
    a("--direction", default="forward", help="KL direction: forward KL(f_fp||f_q) or reverse (default forward)")
    a("--kl-cap", type=float, default=None, help="cap on the per-sample KL term (default none)")
    a("--alpha-warmup", type=float, default=0.0, help="epochs over which alpha rises linearly from 0 (default 0)")
    objectives.add_arguments(parser)
    a("--bits", type=int, default=8, help="weight and activation bit width, 2..8 (default 8)")
    a("--lsq", action="store_true", help="learnable scale and zero point (LSQ)")
    a("--freeze-last", type=int, default=1,
      help="QAT/DivQAT: epochs at the end with observers and batch-norm statistics frozen (default 1)")
    a("--eps", type=float, default=None, help="adv-fgsm/adv-pgd: perturbation size in [0, 1] pixel units")
    a("--epochs", type=int, default=None, help=f"training epochs (default {EPOCHS})")
    a("--batch-size", type=int, default=128, help="global batch size (split over torchrun processes)")
    a("--lr", type=float, default=None, help=f"peak learning rate, cosine decay (default SGD {LR}, Adam /50)")
    a("--optimizer", default="sgd", help=f"one of {', '.join(OPTIMIZERS)} (default sgd, momentum 0.9)")
    a("--weight-decay", type=float, default=None, help="weight decay (default 5e-4 fp, 0 otherwise)")
    a("--limit", type=int, default=None, help="train on the first N training examples")
    a("--test-limit", type=int, default=None, help="evaluate on the first N test examples")
    a("--no-augment", action="store_true", help="no training augmentation")
    a("--seed", type=int, default=0, help="seeds python, numpy, torch and the data order (default 0)")
    a("--resume", action="store_true", help="continue from OUT/checkpoint.pt after its last finished epoch")
    a("--out", required=True, help="output directory")
    a("--overwrite", action="store_true", help="replace a finished run in --out (refused otherwise)")
    a("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    a("--workers", type=int, default=0, help="DataLoader worker processes (default 0)")
    a("--no-progress", action="store_true", help="no progress bars or per-epoch lines")


# parsed arguments that steer the command rather than describe the run
_NOT_CONFIG = ("command", "_module", "overwrite", "data_root")  # --data-root: where data is, not what is trained


def config_from_args(args):
    """The :class:`VictimConfig` of parsed ``divqat train`` arguments (every option is a field
    of it: a new option needs a new field, or this raises TypeError)."""
    return VictimConfig(**{k: v for k, v in vars(args).items() if k not in _NOT_CONFIG})


def run(args):
    """Train, evaluate and write the output directory; returns 0."""
    config = config_from_args(args)
    metrics = train_victim(config, overwrite=args.overwrite)
    if metrics is not None:
        print(f"divqat train: {config.method} -> {config.out}: "
              + " ".join(f"{k}={v:.4f}" for k, v in sorted(metrics.items())))
    return 0
