"""``divqat export``: write the defended int8 model of a training run as one ONNX file.

    divqat export --victim DIR [--defense NAME --defense-arg k=v ...] --out FILE.onnx

See :mod:`divqat.serving.export` for the graph and the defenses that export.
"""
from pathlib import Path

from divqat.defenses import parse_defense_args

__all__ = ["add_arguments", "run"]


def add_arguments(parser):
    parser.add_argument("--victim", required=True, metavar="DIR", help="a quantized `divqat train --out` directory")
    parser.add_argument("--defense", metavar="NAME", help="dcp, reverse_sigmoid, rounding, topk or label_only")
    parser.add_argument("--defense-arg", action="append", default=[], metavar="KEY=VALUE",
                        help="a defense parameter, repeatable (e.g. beta=0.5)")
    parser.add_argument("--out", required=True, metavar="FILE.onnx", help="the defended model file")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out file (refused otherwise)")


def defended_model(victim, defense, defense_args):
    """The defended ModelProto of run directory ``victim`` under ``--defense``/``--defense-arg`` values."""
    from divqat.serving.export import build_exportable_defense, export_defended, load_victim_onnx

    if defense is None and defense_args:
        raise ValueError("--defense-arg given without --defense")
    name, obj = build_exportable_defense(defense, parse_defense_args(defense_args)) if defense else (None, None)
    return export_defended(load_victim_onnx(victim), name, obj)


def run(args):
    from divqat.checks import check_out
    from divqat.utils import atomic_write_bytes

    out = Path(args.out)
    if out.suffix != ".onnx":
        raise ValueError(f"--out must name a .onnx file, got {args.out!r}")
    check_out("--out", out, "export", inputs={"--victim": args.victim}, overwrite=args.overwrite, is_file=True)
    model = defended_model(args.victim, args.defense, args.defense_arg)
    atomic_write_bytes(model.SerializeToString(), out)
    print(f"divqat export: {args.victim} + defense {args.defense or 'none'} -> {out}")
    return 0
