"""``divqat serve``: answer queries to a defended int8 model over HTTP, with per-key budgets.

    divqat serve --victim DIR|FILE.onnx [--defense NAME --defense-arg k=v ...] --db FILE
                 [--host 127.0.0.1] [--port 8000] [--max-batch 1024] [--threads 1] [--workers 1]
                 [--sync full|normal] [--monitors prada,ood,classes --on-alarm log|labels|block ...]

DIR (a quantized `divqat train --out` directory) is exported with the defense in memory, as
``divqat export`` would write it; FILE.onnx is a file ``divqat export`` wrote (its defense is
inside it, so --defense is refused). The key database must exist (``divqat keys add``).
Everything is validated before the server starts. With ``--workers N`` uvicorn runs N
processes, each rebuilding the model from the same arguments; they share the key database,
whose write lock keeps the counts exact (see :mod:`divqat.serving.keys`). The detection
options are :mod:`divqat.detection.options`'s.
"""
import json
import os
from pathlib import Path

__all__ = ["add_arguments", "run", "served_model", "app_from_environment"]

_ENV = "DIVQAT_SERVE_CONFIG"


def add_arguments(parser):
    parser.add_argument("--victim", required=True, metavar="DIR|FILE.onnx",
                        help="a quantized `divqat train --out` directory or a `divqat export` file")
    parser.add_argument("--defense", metavar="NAME",
                        help="with a DIR: dcp, reverse_sigmoid, rounding, topk or label_only")
    parser.add_argument("--defense-arg", action="append", default=[], metavar="KEY=VALUE",
                        help="a defense parameter, repeatable")
    parser.add_argument("--db", required=True, metavar="FILE", help="the key database (`divqat keys add`)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    parser.add_argument("--max-batch", type=int, default=1024, help="most rows per request (default 1024)")
    parser.add_argument("--threads", type=int, default=1, help="ONNX Runtime threads per request (default 1)")
    parser.add_argument("--workers", type=int, default=1, help="server processes (default 1)")
    parser.add_argument("--sync", default="full", metavar="full|normal",
                        help="key database durability: full (fsync every count; survives power loss, the "
                             "default) or normal (survives a crash of the server process, not of the machine)")
    from divqat.detection import options as detection_options

    detection_options.add_arguments(parser)


def served_model(config):
    """The defended model of a serve configuration: a DIR exported in memory with its --defense,
    or the bytes of an exported file (which must not be given a --defense)."""
    from divqat.serving.export_command import defended_model

    victim = Path(config["victim"])
    if victim.is_dir():
        return defended_model(victim, config["defense"], config["defense_arg"])
    if config["defense"] or config["defense_arg"]:
        raise ValueError(f"--defense: {victim} is an exported file and already holds its defense; "
                         "give a run directory to choose one")
    if victim.suffix != ".onnx" or not victim.is_file():
        raise FileNotFoundError(f"--victim {victim}: neither a run directory nor an .onnx file")
    return victim.read_bytes()


def _app(config):
    from divqat.serving.app import create_app

    return create_app(served_model(config), config["db"], max_batch=config["max_batch"], threads=config["threads"],
                      synchronous=config["sync"].upper(), detection=config.get("detection"))


def app_from_environment():
    """The app of the configuration the parent `divqat serve` put in the environment (uvicorn workers)."""
    return _app(json.loads(os.environ[_ENV]))


def run(args):
    import uvicorn

    from divqat.checks import check_choice, check_int

    check_int("--port", args.port, 0, 65535)
    for option in ("max_batch", "threads", "workers"):
        check_int(f"--{option.replace('_', '-')}", getattr(args, option), 1)
    check_choice("--sync", args.sync, ("full", "normal"))
    config = {"victim": args.victim, "defense": args.defense, "defense_arg": args.defense_arg,
              "db": str(Path(args.db).resolve()), "max_batch": args.max_batch, "threads": args.threads,
              "sync": args.sync}
    from divqat.detection.options import detection_config

    config["detection"] = detection_config(args)
    app = _app(config)  # validates the model, defense and database before listening
    print(f"divqat serve: {args.victim} on http://{args.host}:{args.port} (max batch {args.max_batch}, "
          f"{args.workers} worker{'s' if args.workers > 1 else ''}, keys in {args.db})", flush=True)
    if config["detection"] is not None:
        print(f"divqat serve: monitors {','.join(config['detection']['monitors'])} on every key, on alarm "
              f"{config['detection']['on_alarm']}", flush=True)
    if args.workers == 1:
        uvicorn.run(app, host=args.host, port=args.port, access_log=False, log_level="warning")
    else:
        os.environ[_ENV] = json.dumps(config)
        uvicorn.run("divqat.serving.serve_command:app_from_environment", factory=True, workers=args.workers,
                    host=args.host, port=args.port, access_log=False, log_level="warning")
    return 0
