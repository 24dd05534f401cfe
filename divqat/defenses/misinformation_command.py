"""``divqat train-misinformation``: train the misinformation model of adaptive misinformation
(Kariyappa and Qureshi, CVPR 2020) and write it as a run directory that ``--defense am`` takes.

    divqat train-misinformation --dataset mnist --arch lenet5 --out runs/misinfo
    divqat evaluate --victim runs/fp --defense am --defense-arg model=runs/misinfo --defense-arg tau=0.5

The model (``--arch``, default the one of ``--victim`` when given) is trained on the victim's
training set to minimise the misinformation loss -log(1 - softmax(f(x))_y)
(:func:`divqat.defenses.misinformation.train_misinformation_model`), with Adam and a cosine
learning rate. OUT holds config.json, model.pt, log.jsonl and metrics.json, as ``divqat train``.
"""
from divqat.cli_options import arch_help, choices_text, dataset_help
from divqat.train.loop import OPTIMIZERS

from .misinformation import train_misinformation_model

__all__ = ["add_arguments", "run"]


def add_arguments(parser):
    a = parser.add_argument
    a("--victim", metavar="DIR", help="a `divqat train --out` directory: take its dataset and architecture")
    a("--dataset", help=dataset_help("the victim's training set") + " (default: --victim's)")
    a("--arch", help=arch_help("architecture of the misinformation model", "--victim's"))
    a("--epochs", type=int, default=5, help="training epochs (default 5)")
    a("--batch-size", type=int, default=128, help="batch size (default 128)")
    a("--lr", type=float, default=1e-3, help="peak learning rate, cosine decay (default 1e-3)")
    a("--optimizer", default="adam", choices=OPTIMIZERS, help=f"optimizer: {choices_text(OPTIMIZERS, 'adam')}")
    a("--limit", type=int, default=None, metavar="N", help="train on the first N training examples")
    a("--seed", type=int, default=0, help="seeds python, numpy, torch and the data order (default 0)")
    a("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    a("--no-progress", action="store_true", help="no progress bar")
    a("--out", required=True, metavar="DIR", help="output directory (give it to --defense-arg model=DIR)")
    a("--overwrite", action="store_true", help="replace a finished misinformation model in --out (refused otherwise)")


def _dataset_and_arch(args):
    dataset, arch = args.dataset, args.arch
    if args.victim is not None:
        from divqat.train import load_config

        config = load_config(args.victim)
        dataset, arch = dataset or config["dataset"], arch or config["arch"]
    if dataset is None or arch is None:
        raise ValueError("name the training set and architecture: --victim DIR, or --dataset and --arch")
    return dataset, arch


def run(args):
    from divqat.checks import check_out, output_dir_claimed
    from divqat.data import load_dataset
    from divqat.models import build_model_for
    from divqat.utils import resolve_device, seed_everything

    rule = {"inputs": {"--victim": args.victim}, "overwrite": args.overwrite}
    check_out("--out", args.out, "train-misinformation", **rule)
    dataset, arch = _dataset_and_arch(args)
    for name in ("epochs", "batch_size", "limit"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {value}")
    if not args.lr > 0:
        raise ValueError(f"--lr must be > 0, got {args.lr}")
    device = resolve_device(args.device)
    seed_everything(args.seed)
    model = build_model_for(arch, dataset)
    train_set = load_dataset(dataset, "train", limit=args.limit)
    with output_dir_claimed("--out", args.out, "train-misinformation", **rule) as out:
        train_misinformation_model(model, train_set, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                                   optimizer=args.optimizer, seed=args.seed, device=device,
                                   progress=not args.no_progress, out_dir=out, dataset=dataset)
    print(f"misinformation model ({arch} on {dataset}) -> {args.out}; use it with "
          f"--defense am --defense-arg model={args.out}")
    return 0
