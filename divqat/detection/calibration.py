"""The monitors' calibration: statistics of the victim's answers on held-out in-distribution
images (never an attacker's query set), stored as JSON next to the served model.

    tau          the ``quantile`` of the maximum probabilities (:mod:`.confidence`)
    unsure_rate  p0, the share of those images answered with maximum probability < tau
    prior        the answered-class frequencies, Laplace-smoothed: (n_k + 1) / (n + C) (:mod:`.classes`)

The images must be ones the victim did not train on: a run trained with ``--limit N`` leaves
the training split from index N on (``--offset N``); training images are answered more
confidently than new ones, which would set tau too high and flag honest clients.
"""
from pathlib import Path

import numpy as np

from divqat.checks import check_int, check_real
from divqat.utils import atomic_write_json, read_json

__all__ = ["calibrate", "calibration_path", "load_calibration", "save_calibration"]

_FIELDS = ("tau", "unsure_rate", "prior", "quantile", "images", "source")


def calibrate(probs, quantile=0.05, source=""):
    """The calibration dict of the victim's probabilities ``probs`` (N, C) on held-out images."""
    quantile = check_real("--quantile", quantile, 0, 0.5, low_open=True)
    probs = np.asarray(probs, dtype=np.float64)
    confidence = probs.max(axis=1)
    tau = float(np.quantile(confidence, quantile))
    unsure = float((confidence < tau).mean())
    if unsure == 0:
        raise ValueError(f"--quantile {quantile}: no calibration image has a maximum probability below its "
                         f"quantile {tau:.6g} (too few images, or ties): use more images or a larger quantile")
    counts = np.bincount(probs.argmax(axis=1), minlength=probs.shape[1])
    prior = (counts + 1) / (counts.sum() + len(counts))
    return {"tau": tau, "unsure_rate": unsure, "prior": prior.tolist(), "quantile": quantile,
            "images": len(probs), "source": source}


def calibration_path(model_file):
    """Where the calibration of ``model_file`` (FILE.onnx) lives: FILE.calibration.json beside it."""
    model_file = Path(model_file)
    return model_file.with_name(model_file.stem + ".calibration.json")


def save_calibration(calibration, path):
    return atomic_write_json(calibration, path)


def load_calibration(path, num_classes):
    """The calibration at ``path``, checked against a victim of ``num_classes`` classes."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"--calibration {path}: no calibration there (write one with `divqat detect calibrate`)")
    calibration = read_json(path, "--calibration")
    missing = [field for field in _FIELDS if field not in calibration]
    if missing:
        raise ValueError(f"--calibration {path}: missing {', '.join(missing)}")
    if len(calibration["prior"]) != num_classes:
        raise ValueError(f"--calibration {path}: a prior of {len(calibration['prior'])} classes for a victim of "
                         f"{num_classes}")
    check_int("--calibration images", calibration["images"], 1)
    return calibration
