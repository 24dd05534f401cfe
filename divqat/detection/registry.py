"""The monitors by name, the actions, and the monitors of a deployment built from its options.

    prada     PRADA's distance test (:mod:`.prada`), no calibration
    ood       the CUSUM of unsure answers (:mod:`.confidence`), calibrated
    classes   the answered-class histogram test (:mod:`.classes`), calibrated

Actions on an alarm (``--on-alarm``): ``log`` records it; ``labels`` also answers the key with
labels only from then on; ``block`` refuses the key's requests with 403 from then on.
"""
import inspect
import math

from divqat.detection.calibration import load_calibration
from divqat.detection.classes import ClassHistogram
from divqat.detection.confidence import ConfidenceCusum
from divqat.detection.prada import Prada

__all__ = ["MONITORS", "ACTIONS", "CALIBRATED", "DEFAULTS", "parse_monitors", "build_monitors"]

MONITORS = ("prada", "ood", "classes")
CALIBRATED = ("ood", "classes")
ACTIONS = ("log", "labels", "block")

#: option -> (monitor class, its parameter): the thresholds a deployment sets
_OPTIONS = {"prada_delta": (Prada, "delta"), "prada_stored": (Prada, "max_stored"), "prada_window": (Prada, "window"),
            "ood_ratio": (ConfidenceCusum, "ratio"), "ood_threshold": (ConfidenceCusum, "threshold"),
            "classes_kl": (ClassHistogram, "threshold"), "classes_min_count": (ClassHistogram, "min_count")}
#: option -> default threshold: the monitor's own default (see its module for what it means)
DEFAULTS = {option: inspect.signature(cls).parameters[name].default for option, (cls, name) in _OPTIONS.items()}


def parse_monitors(text):
    """``"prada,ood"`` -> ("prada", "ood"); ValueError naming --monitors for an unknown or repeated name."""
    names = tuple(name.strip() for name in str(text).split(",") if name.strip())
    unknown = [name for name in names if name not in MONITORS]
    if not names or unknown or len(set(names)) != len(names):
        raise ValueError(f"--monitors must be distinct names among {', '.join(MONITORS)} (comma-separated), "
                         f"got {text!r}")
    return names


def build_monitors(names, thresholds, num_classes, input_shape, calibration_file=None):
    """The monitors ``names`` of a victim with ``num_classes`` and ``input_shape`` (C, H, W) under
    ``thresholds`` (keys of :data:`DEFAULTS`, missing ones take the default); ``calibration_file``
    is required by the calibrated monitors. Every value is checked here (ValueError naming the option)."""
    t = {**DEFAULTS, **{k: v for k, v in thresholds.items() if v is not None}}
    calibration = None
    if set(names) & set(CALIBRATED):
        if calibration_file is None:
            raise ValueError(f"--calibration: monitors {', '.join(n for n in names if n in CALIBRATED)} need the "
                             "victim's calibration (`divqat detect calibrate`)")
        calibration = load_calibration(calibration_file, num_classes)
    build = {
        "prada": lambda: Prada(num_classes, math.prod(input_shape), t["prada_delta"], t["prada_stored"],
                               t["prada_window"]),
        "ood": lambda: ConfidenceCusum(calibration["tau"], calibration["unsure_rate"], t["ood_ratio"],
                                       t["ood_threshold"]),
        "classes": lambda: ClassHistogram(calibration["prior"], t["classes_kl"], t["classes_min_count"]),
    }
    return [build[name]() for name in names]
