"""``divqat detect calibrate``: measure a served model on held-out in-distribution images for its monitors.

    divqat detect calibrate --model FILE.onnx --dataset NAME [--split train] [--offset K]
                            [--images 5000] [--quantile 0.05] [--out FILE]

Writes FILE.calibration.json beside the model (or --out), which ``divqat serve --monitors``
reads (:mod:`divqat.detection.calibration`). Take images the victim did not train on: for a run
trained with ``--limit N``, ``--split train --offset N``.
"""
from pathlib import Path

__all__ = ["add_arguments", "run"]


def add_arguments(parser):
    sub = parser.add_subparsers(dest="action", required=True)
    cal = sub.add_parser("calibrate", help="measure the victim's confidence and answered classes on held-out images")
    cal.add_argument("--model", required=True, metavar="FILE.onnx", help="a `divqat export` file")
    cal.add_argument("--dataset", required=True, metavar="NAME", help="the victim's dataset")
    cal.add_argument("--split", default="train", help="train or test (default train)")
    cal.add_argument("--offset", type=int, default=0, metavar="K", help="the first image taken (default 0)")
    cal.add_argument("--images", type=int, default=5000, metavar="N", help="images taken (default 5000)")
    cal.add_argument("--quantile", type=float, default=0.05, metavar="Q",
                     help="tau is this quantile of the maximum probabilities (default 0.05)")
    cal.add_argument("--out", metavar="FILE", help="default: FILE.calibration.json beside --model")
    cal.add_argument("--data-root", metavar="DIR", help="look for datasets in DIR first")


def calibration_probs(model, images, batch=1024):
    """The victim's float64 probabilities (before any defense) of ``images`` (N, C, H, W) under ``model`` (bytes)."""
    import numpy as np

    from divqat.detection.graph import expose_logits, softmax64
    from divqat.serving.app import Predictor

    predictor = Predictor(expose_logits(model))
    expected = tuple(predictor.info["input_shape"])
    if tuple(images.shape[1:]) != expected:
        raise ValueError(f"--dataset: images of shape {tuple(images.shape[1:])}, the model takes {expected}")
    x = np.ascontiguousarray(images, dtype=np.float32)
    return np.concatenate([softmax64(predictor.with_logits(x[i:i + batch])[1]) for i in range(0, len(x), batch)])


def run(args):
    from divqat.checks import check_int, check_output_file, check_real
    from divqat.data import load_tensors
    from divqat.detection.calibration import calibrate, calibration_path, save_calibration

    model = Path(args.model)
    if model.suffix != ".onnx" or not model.is_file():
        raise FileNotFoundError(f"--model {model}: no .onnx file there")
    check_int("--offset", args.offset, 0)
    check_int("--images", args.images, 2)
    check_real("--quantile", args.quantile, 0, 0.5, low_open=True)
    out = Path(args.out) if args.out else calibration_path(model)
    check_output_file("--out", out)
    images = load_tensors(args.dataset, args.split)[0]  # --data-root: applied by divqat.cli
    if args.offset + args.images > len(images):
        raise ValueError(f"--images: {args.dataset} {args.split} has {len(images)} images, "
                         f"--offset {args.offset} + --images {args.images} is more")
    probs = calibration_probs(model.read_bytes(), images[args.offset:args.offset + args.images].numpy())
    source = f"{args.dataset} {args.split}[{args.offset}:{args.offset + args.images}]"
    calibration = calibrate(probs, args.quantile, source)
    save_calibration(calibration, out)
    print(f"divqat detect calibrate: {source}: tau {calibration['tau']:.4f}, unsure rate "
          f"{calibration['unsure_rate']:.4f} -> {out}")
    return 0
