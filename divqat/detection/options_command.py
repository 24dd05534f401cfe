"""The detection options of ``divqat serve`` and the deployment configuration they make.

    --monitors prada,ood,classes   the monitors of every key (default: none, no detection)
    --on-alarm log|labels|block    what an alarm does (default log)
    --calibration FILE             the victim's calibration (default FILE.calibration.json beside
                                   a served FILE.onnx; `divqat detect calibrate`)
    --prada-delta, --prada-stored, --prada-window, --ood-ratio, --ood-threshold,
    --classes-kl, --classes-min-count     thresholds (defaults in divqat.detection.registry.DEFAULTS)
"""
from pathlib import Path

from divqat.checks import check_choice
from divqat.detection.calibration import calibration_path
from divqat.detection.registry import ACTIONS, DEFAULTS, MONITORS, parse_monitors

__all__ = ["add_arguments", "detection_config"]

_HELP = {
    "prada_delta": "PRADA: alarm when Shapiro-Wilk W of the distances < DELTA",
    "prada_stored": "PRADA: most queries stored per key (float16)",
    "prada_window": "PRADA: the last N distances are tested",
    "ood_ratio": "ood: the CUSUM's attack rate of unsure answers, as a multiple of the calibrated rate",
    "ood_threshold": "ood: alarm when the CUSUM exceeds H (in-distribution mean run >= e^H queries)",
    "classes_kl": "classes: alarm when KL(answered classes || prior) > EPS nats",
    "classes_min_count": "classes: queries before the first test",
}


def add_arguments(parser):
    group = parser.add_argument_group("detection (docs/guide/detection.md)")
    group.add_argument("--monitors", metavar="NAMES", help=f"comma-separated monitors among {','.join(MONITORS)} "
                       "run on every key (default: none)")
    group.add_argument("--on-alarm", default="log", metavar="|".join(ACTIONS),
                       help="log the alarm; answer the key with labels only; or refuse it with 403 (default log)")
    group.add_argument("--calibration", metavar="FILE", help="the victim's calibration for ood and classes "
                       "(default: FILE.calibration.json beside --victim FILE.onnx)")
    for option, default in DEFAULTS.items():
        group.add_argument(f"--{option.replace('_', '-')}", type=type(default), metavar="X",
                           help=f"{_HELP[option]} (default {default:g})")


def detection_config(args):
    """The JSON-able detection configuration of parsed serve options, or None without --monitors."""
    on_alarm = check_choice("--on-alarm", args.on_alarm, ACTIONS)
    thresholds = {option: getattr(args, option) for option in DEFAULTS}
    if args.monitors is None:
        given = [f"--{o.replace('_', '-')}" for o, v in thresholds.items() if v is not None]
        if given or args.calibration or on_alarm != "log":
            raise ValueError(f"--monitors: {', '.join(given) or '--on-alarm/--calibration'} given without monitors")
        return None
    calibration = args.calibration
    victim = Path(args.victim)
    if calibration is None and victim.suffix == ".onnx" and calibration_path(victim).is_file():
        calibration = str(calibration_path(victim).resolve())
    return {"monitors": parse_monitors(args.monitors), "on_alarm": on_alarm, "thresholds": thresholds,
            "calibration": None if calibration is None else str(Path(calibration).resolve())}
