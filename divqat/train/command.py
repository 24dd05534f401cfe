"""``divqat train``: train a victim and write its output directory (see divqat.train.artifacts).

    divqat train --dataset mnist --arch lenet5 --method fp --epochs 10 --out runs/fp
    divqat train --dataset mnist --arch lenet5 --method divqat --teacher runs/fp --alpha 1 --out runs/divqat
    torchrun --nproc_per_node=2 -m divqat.cli train ...     (the same run on 2 processes)

Methods: fp (cross-entropy), ptq (calibrate a quantized copy of the teacher, no training),
qat (fine-tune a quantized copy with cross-entropy), divqat (DivQAT, arXiv 2512.23948:
CE - alpha * T^2 * KL(f_fp || f_q)), adv-fgsm / adv-pgd (adversarial training, float).
"""
import platform
from pathlib import Path

import torch

import divqat
from divqat import quant
from divqat.data import dataset_info, load_dataset
from divqat.models import build_model_for
from divqat.train import distributed
from divqat.train.artifacts import load_config, load_victim, write_config, write_results
from divqat.train.evaluate import Evaluator, quantized_metrics
from divqat.train.loop import LOG_NAME, OPTIMIZERS, check_options, write_log
from divqat.train.trainers import check_divqat_options, ptq, train_divqat, train_fp
from divqat.utils import resolve_device, seed_everything

QUANTIZED = ("ptq", "qat", "divqat")
ADVERSARIAL = {"adv-fgsm": "fgsm", "adv-pgd": "pgd"}
METHODS = ("fp",) + QUANTIZED + tuple(ADVERSARIAL)
# default epochs and SGD learning rate per method (Adam: lr / 50)
EPOCHS = {"fp": 10, "qat": 3, "divqat": 3, "adv-fgsm": 10, "adv-pgd": 10}
LR = {"fp": 0.05, "qat": 0.005, "divqat": 0.005, "adv-fgsm": 0.05, "adv-pgd": 0.05}


def add_arguments(parser):
    a = parser.add_argument
    a("--dataset", required=True, help="dataset name (divqat.data.DATASETS)")
    a("--arch", required=True, help="architecture (divqat.models.ARCHITECTURES)")
    a("--method", default="fp", help=f"one of {', '.join(METHODS)} (default fp)")
    a("--teacher", help="output dir of an fp run: the model ptq/qat/divqat quantize (required for them)")
    a("--alpha", type=float, default=1.0, help="DivQAT weight of the KL term, >= 0 (default 1; 0 = plain QAT)")
    a("--temperature", type=float, default=1.0, help="DivQAT softmax temperature T (default 1)")
    a("--direction", default="forward", help="KL direction: forward KL(f_fp||f_q) or reverse (default forward)")
    a("--kl-cap", type=float, default=None, help="cap on the per-sample KL term (default none)")
    a("--alpha-warmup", type=float, default=0.0, help="epochs over which alpha rises linearly from 0 (default 0)")
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
    a("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    a("--workers", type=int, default=0, help="DataLoader worker processes (default 0)")
    a("--no-progress", action="store_true", help="no progress bars or per-epoch lines")


def check_args(args):
    """ValueError (one line, naming the option) for arguments that cannot make a run."""
    if args.method not in METHODS:
        raise ValueError(f"--method must be one of {', '.join(METHODS)}, got {args.method!r}")
    dataset_info(args.dataset)  # ValueError naming the dataset
    build_model_for(args.arch, args.dataset)  # ValueError naming the architecture
    check_divqat_options(args.alpha, args.temperature, args.direction, args.kl_cap, args.alpha_warmup)
    if args.optimizer not in OPTIMIZERS:
        raise ValueError(f"--optimizer must be one of {', '.join(OPTIMIZERS)}, got {args.optimizer!r}")
    if args.method != "ptq":
        o = _loop_options(args, "cpu")
        check_options(o["epochs"], o["batch_size"], o["lr"], o.get("weight_decay", 0.0), o["workers"])
    for name in ("limit", "test_limit"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {value}")
    try:
        quant.get_qconfig(args.bits, args.bits)
    except ValueError as exc:
        raise ValueError(f"--bits {args.bits}: {exc}") from None
    if args.method in QUANTIZED and args.teacher is None:
        raise ValueError(f"--method {args.method} needs --teacher DIR (the output directory of an fp run)")
    if args.method in ADVERSARIAL and args.eps is None:
        raise ValueError(f"--method {args.method} needs --eps")


def check_teacher(args, teacher_config):
    """ValueError unless the teacher run is a float model of the same architecture and dataset."""
    if teacher_config["quantized"]:
        raise ValueError(f"--teacher {args.teacher} is a quantized ({teacher_config['method']}) run; "
                         "give the output directory of a float (fp) run")
    for key in ("arch", "dataset"):
        if teacher_config[key] != getattr(args, key):
            raise ValueError(f"--teacher {args.teacher} was trained with {key} {teacher_config[key]!r}, "
                             f"not --{key} {getattr(args, key)!r}")


def _loop_options(args, device):
    lr = args.lr if args.lr is not None else LR[args.method] / (50 if args.optimizer == "adam" else 1)
    epochs = EPOCHS[args.method] if args.epochs is None else args.epochs
    options = {"epochs": epochs, "batch_size": args.batch_size, "lr": lr,
               "optimizer": args.optimizer, "seed": args.seed, "device": device, "workers": args.workers,
               "progress": not args.no_progress, "out_dir": args.out, "resume": args.resume}
    if args.weight_decay is not None:
        options["weight_decay"] = args.weight_decay
    return options


def _train(args, model, teacher, qconfig, train_set, test_set, ctx):
    """Dispatch to the method's trainer; returns the trained model."""
    if args.method == "ptq":
        student = ptq(teacher, train_set, qconfig, batch_size=args.batch_size, device=ctx.device,
                      progress=not args.no_progress)
        record = {"epoch": 0, "calibration_examples": len(train_set),
                  **Evaluator(test_set, reference=teacher, device=ctx.device)(student)}
        if ctx.is_main:
            write_log(Path(args.out) / LOG_NAME, [record])
        return student
    options = _loop_options(args, ctx.device)
    if args.method == "fp":
        return train_fp(model, train_set, test_set, **options).model
    if args.method in ("qat", "divqat"):
        alpha = args.alpha if args.method == "divqat" else 0.0
        return train_divqat(teacher, train_set, test_set, alpha, args.temperature, args.direction, args.kl_cap,
                            args.alpha_warmup, qconfig=qconfig, freeze_last_epochs=args.freeze_last, **options).model
    from divqat.train.adversarial import train_adversarial  # the experiments engineer's module

    return train_adversarial(model, train_set, test_set, attack=ADVERSARIAL[args.method], eps=args.eps,
                             **options).model


def run(args):
    """Train, evaluate and write the output directory; returns 0."""
    check_args(args)
    teacher_config = teacher = None
    if args.method in QUANTIZED:
        teacher_config = load_config(args.teacher)
        check_teacher(args, teacher_config)
    ctx = distributed.context(resolve_device(args.device))
    try:
        seed_everything(args.seed)
        model = build_model_for(args.arch, args.dataset)
        if teacher_config is not None:
            teacher = load_victim(args.teacher, kind="float", device=ctx.device)
        qconfig = quant.get_qconfig(args.bits, args.bits, learnable=args.lsq) if args.method in QUANTIZED else None
        train_set = load_dataset(args.dataset, "train", augment=not args.no_augment and args.method != "ptq",
                                 limit=args.limit)
        test_set = load_dataset(args.dataset, "test", limit=args.test_limit)
        config = {k: v for k, v in vars(args).items() if not k.startswith("_") and k != "command"}
        config.update(meta=dict(model.meta), quantized=args.method in QUANTIZED,
                      qconfig=qconfig.to_dict() if qconfig is not None else None,
                      teacher_config=teacher_config, world_size=distributed.world_size_from_env(),
                      loop=_loop_options(args, str(ctx.device)) if args.method != "ptq" else None, versions={
                          "divqat": divqat.__version__, "torch": torch.__version__, "python": platform.python_version()})
        if ctx.is_main:
            Path(args.out).mkdir(parents=True, exist_ok=True)
            write_config(args.out, config)
        distributed.barrier(ctx)
        trained = _train(args, model, teacher, qconfig, train_set, test_set, ctx)
        if ctx.is_main:
            int8_model = None
            if args.method in QUANTIZED:
                example = test_set[0][0].unsqueeze(0)
                int8_model = quant.convert(trained, example)
                metrics = quantized_metrics(trained, teacher, int8_model, test_set, device=ctx.device)
            else:
                metrics = Evaluator(test_set, device=ctx.device)(trained)
            write_results(args.out, trained, metrics, int8_model)
            print(f"divqat train: {args.method} -> {args.out}: "
                  + " ".join(f"{k}={v:.4f}" for k, v in sorted(metrics.items())))
        distributed.barrier(ctx)
    finally:
        distributed.shutdown()
    return 0
