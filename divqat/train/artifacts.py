"""The output directory of a training run, and how victims are loaded back from it.

    DIR/config.json       every argument of the run + arch, dataset, meta (the model's
                          num_classes, in_channels, image_size, mean, std), quantized, qconfig
    DIR/model.pt          state dict: of the float model (fp and float methods), of the prepared
                          fake-quantized model (ptq, qat, divqat); rebuilt from config.json
    DIR/model_int8.onnx   the converted integer model (quantized methods)
    DIR/log.jsonl         one JSON line per epoch
    DIR/metrics.json      final test metrics (written last: its presence marks a finished run)
    DIR/checkpoint.pt     the training state for --resume

Every file is written atomically (temporary file + ``os.replace``); every ``torch.load`` uses
``weights_only=True``.
"""
from pathlib import Path

import torch

from divqat import quant
from divqat.checks import check_choice
from divqat.models import build_model
from divqat.train.checkpoint import CHECKPOINT_NAME
from divqat.train.curves import CURVES_NAME
from divqat.train.loop import LOG_NAME
from divqat.utils import atomic_save, atomic_write_json, load_torch_file, read_json, remove_temporaries

KINDS = ("auto", "float", "fake_quant", "int8")
CONFIG, MODEL, MODEL_INT8, METRICS = "config.json", "model.pt", "model_int8.onnx", "metrics.json"
REQUIRED_KEYS = ("arch", "dataset", "meta", "method", "quantized")
MISINFORMATION = "misinformation"  # the method of adaptive misinformation's model (divqat train-misinformation)


def load_config(run_dir):
    """The run's config.json as a dict: FileNotFoundError naming the file when absent,
    ValueError naming it when it is not JSON or lacks a key divqat needs to rebuild the model."""
    path = Path(run_dir) / CONFIG
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: {run_dir} is not a divqat train output directory")
    config = read_json(path, "run config")
    if not isinstance(config, dict):
        raise ValueError(f"run config {path}: expected a JSON object, got {type(config).__name__}")
    missing = [k for k in REQUIRED_KEYS + (("qconfig",) if config.get("quantized") else ()) if k not in config]
    if missing:
        raise ValueError(f"run config {path}: missing {', '.join(missing)} (not written by divqat train)")
    return config


def is_finished(run_dir):
    """Whether ``run_dir`` holds a finished run (metrics.json, written last, is its marker)."""
    return (Path(run_dir) / METRICS).is_file()


def start_run(run_dir, config, keep_checkpoint=False):
    """Make ``run_dir`` the directory of a new run of ``config``: remove the finished marker
    first, then the previous run's model files (and, unless ``keep_checkpoint`` for a resume,
    its checkpoint, log and curves) and interrupted writes, then write config.json. At every instant
    the directory is either a finished run whose files belong together or an unfinished one,
    which :func:`load_victim` refuses."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    names = [METRICS, MODEL, MODEL_INT8] + ([] if keep_checkpoint else [CHECKPOINT_NAME, LOG_NAME, CURVES_NAME])
    for name in names:
        (run_dir / name).unlink(missing_ok=True)
    for name in (CONFIG, METRICS, MODEL, MODEL_INT8, CHECKPOINT_NAME, LOG_NAME, CURVES_NAME):
        remove_temporaries(run_dir / name)
    atomic_write_json(config, run_dir / CONFIG)


def qconfig_of(config):
    """The divqat.quant QConfig a quantized run was prepared with."""
    return quant.QConfig.from_dict(config["qconfig"])


def build_float_model(config):
    """A freshly initialised float model of the run's architecture and data shape."""
    return build_model(config["arch"], **config["meta"])


def _load_state(model, run_dir, config):
    path = Path(run_dir) / MODEL
    state = load_torch_file(path, "model")
    try:
        model.load_state_dict(state)
    except (RuntimeError, TypeError, AttributeError) as err:
        detail = str(err).splitlines()[1].strip() if len(str(err).splitlines()) > 1 else type(err).__name__
        raise ValueError(f"model {path} does not fit the {config['method']} {config['arch']} model "
                         f"config.json describes ({detail})") from None


def load_victim(run_dir, kind="auto", device="cpu", *, victim_only=True):
    """The trained model of ``run_dir`` in eval mode.

    kind: "auto" (int8 for quantized methods, else float); "float" (the float model; for a
    quantized run the trained student with fake quantization off); "fake_quant" (the prepared
    model as trained, observers frozen); "int8" (the converted integer model, CPU only).
    ValueError for an unfinished run (no metrics.json), a file that does not fit config.json and,
    with ``victim_only``, a run that holds no victim (adaptive misinformation's model).
    """
    check_choice("kind", kind, KINDS)
    config = load_config(run_dir)
    if victim_only and config["method"] == MISINFORMATION:
        raise ValueError(f"{run_dir} holds adaptive misinformation's model (divqat train-misinformation), "
                         "not a victim; it serves --defense am --defense-arg model=DIR")
    if not is_finished(run_dir):
        raise ValueError(f"{run_dir} holds an unfinished run (no {METRICS}: interrupted or still training)")
    quantized = config["quantized"]
    if kind == "auto":
        kind = "int8" if quantized else "float"
    if kind != "float" and not quantized:
        raise ValueError(f"kind={kind!r}: {run_dir} holds a float model (method {config['method']!r})")
    if kind == "int8":
        return quant.load_int8(str(Path(run_dir) / MODEL_INT8))
    try:
        model = build_float_model(config)
        if quantized:
            model = quant.prepare_qat(model, qconfig_of(config))
    except (TypeError, KeyError, AttributeError) as err:
        raise ValueError(f"run config {Path(run_dir) / CONFIG}: arch, meta or qconfig describe no model "
                         f"({type(err).__name__}: {err})") from None
    _load_state(model, run_dir, config)
    model.to(device).eval()
    if quantized:
        quant.freeze_observers(model)
        if kind == "float":
            quant.disable_fake_quant(model)
    return model


def write_run_results(run_dir, model, metrics, int8_model=None):
    """Atomically write model.pt, model_int8.onnx (when given) and, last, metrics.json."""
    run_dir = Path(run_dir)
    atomic_save({k: v.cpu() if torch.is_tensor(v) else v for k, v in model.state_dict().items()}, run_dir / MODEL)
    if int8_model is not None:
        quant.save_int8(int8_model, run_dir / MODEL_INT8)
    atomic_write_json(metrics, run_dir / METRICS)
