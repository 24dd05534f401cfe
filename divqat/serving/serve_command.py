"""``divqat serve``: answer queries to a defended int8 model over HTTP, with per-key budgets.

    divqat serve --victim DIR|FILE.onnx [--defense NAME --defense-arg k=v ...] --db FILE|URL
                 [--host 127.0.0.1] [--port 8000] [--max-batch 1024] [--threads 1] [--workers 1]
                 [--sync full|normal] [--model-name divqat]
                 [--monitors prada,ood,classes --on-alarm log|labels|block ...]

DIR (a quantized `divqat train --out` directory) is exported with the defense in memory, as
``divqat export`` would write it; FILE.onnx is a file ``divqat export`` wrote (its defense is
inside it, so --defense is refused). The key store must exist (``divqat keys add``): a SQLite
file, or a ``postgresql://`` URL for replicas on several machines. Everything is validated, and
the port bound, before the banner (which names the bound port, also for ``--port 0``). With
``--workers N`` uvicorn runs N processes, each rebuilding the model from the same arguments and
dying with the parent; they share the key store, which keeps the counts exact (see
:mod:`divqat.serving.keys`). The detection options are :mod:`divqat.detection.options_command`'s.
"""
import errno
import json
import os
import socket
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
    parser.add_argument("--db", required=True, metavar="FILE|URL",
                        help="the key store (`divqat keys add`): a SQLite file, or postgresql://USER@HOST/DB")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000; 0: a free one, printed)")
    parser.add_argument("--max-batch", type=int, default=1024, help="most rows per request (default 1024, "
                                                                    "at most 4096)")
    parser.add_argument("--model-name", default="divqat",
                        help="the model's name in the Open Inference Protocol routes /v2/models/NAME "
                             "(default divqat)")
    parser.add_argument("--threads", type=int, default=1, help="ONNX Runtime threads per request (default 1)")
    parser.add_argument("--workers", type=int, default=1, help="server processes (default 1)")
    parser.add_argument("--sync", default="full", metavar="full|normal",
                        help="key database durability: full (fsync every count; survives power loss, the "
                             "default) or normal (survives a crash of the server process, not of the machine)")
    from divqat.detection import options_command as detection_options

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
                      synchronous=config["sync"].upper(), model_name=config["model_name"],
                      detection=config.get("detection"))


def app_from_environment():
    """The app of the configuration the parent `divqat serve` put in the environment (uvicorn
    workers); the worker dies with its parent."""
    from divqat.serving.parent_death import die_with_parent

    config = json.loads(os.environ[_ENV])
    die_with_parent(config["parent_pid"])
    return _app(config)


def _listen(host, port):
    """A listening TCP socket on host:port (port 0: a free one), or ValueError naming --port/--host."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    except socket.gaierror as exc:
        raise ValueError(f"--host {host}: not an address to listen on ({exc.strerror})") from None
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise ValueError(f"--port {port}: address {host}:{port} is already in use") from None
        raise ValueError(f"--host {host} --port {port}: cannot listen there ({exc.strerror})") from None
    sock.set_inheritable(True)
    return sock


def run(args):
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    from divqat.checks import check_choice, check_int
    from divqat.serving.app import MAX_BATCH_CEILING, check_model_name
    from divqat.serving.keys import POSTGRES_SCHEMES, SYNCHRONOUS

    check_int("--port", args.port, 0, 65535)
    check_int("--max-batch", args.max_batch, 1, MAX_BATCH_CEILING)
    for option in ("threads", "workers"):
        check_int(f"--{option}", getattr(args, option), 1)
    check_choice("--sync", args.sync, tuple(level.lower() for level in SYNCHRONOUS))
    check_model_name(args.model_name)
    db = args.db if args.db.startswith(POSTGRES_SCHEMES) else str(Path(args.db).resolve())
    config = {"victim": args.victim, "defense": args.defense, "defense_arg": args.defense_arg, "db": db,
              "max_batch": args.max_batch, "threads": args.threads, "sync": args.sync,
              "model_name": args.model_name, "parent_pid": os.getpid()}
    from divqat.detection.options_command import detection_config

    config["detection"] = detection_config(args)
    app = _app(config)  # validates the model, defense and key store before listening
    sock = _listen(args.host, args.port)
    port = sock.getsockname()[1]
    print(f"divqat serve: {args.victim} on http://{args.host}:{port} as model {args.model_name!r} "
          f"(max batch {args.max_batch}, {args.workers} worker{'s' if args.workers > 1 else ''}, "
          f"keys in {app.state.store.location})", flush=True)
    if config["detection"] is not None:
        print(f"divqat serve: monitors {','.join(config['detection']['monitors'])} on every key, on alarm "
              f"{config['detection']['on_alarm']}", flush=True)
    options = {"host": args.host, "port": port, "access_log": False, "log_level": "warning"}
    if args.workers == 1:
        uvicorn.Server(uvicorn.Config(app, **options)).run(sockets=[sock])
    else:
        app.state.store.close()  # the workers open their own
        os.environ[_ENV] = json.dumps(config)
        workers = uvicorn.Config("divqat.serving.serve_command:app_from_environment", factory=True,
                                 workers=args.workers, **options)
        Multiprocess(workers, sockets=[sock]).run()
    return 0
