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
import json
import os
import tempfile
from pathlib import Path

import torch

from divqat import quant
from divqat.models import build_model
from divqat.utils import atomic_save, atomic_write_json

KINDS = ("auto", "float", "fake_quant", "int8")
CONFIG, MODEL, MODEL_INT8, METRICS = "config.json", "model.pt", "model_int8.onnx", "metrics.json"


def load_config(run_dir):
    """The run's config.json as a dict (FileNotFoundError naming the file when absent)."""
    path = Path(run_dir) / CONFIG
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: {run_dir} is not a divqat train output directory")
    return json.loads(path.read_text())


def qconfig_of(config):
    """The divqat.quant QConfig a quantized run was prepared with."""
    return quant.QConfig.from_dict(config["qconfig"])


def build_float_model(config):
    """A freshly initialised float model of the run's architecture and data shape."""
    return build_model(config["arch"], **config["meta"])


def load_victim(run_dir, kind="auto", device="cpu"):
    """The trained model of ``run_dir`` in eval mode.

    kind: "auto" (int8 for quantized methods, else float); "float" (the float model; for a
    quantized run the trained student with fake quantization off); "fake_quant" (the prepared
    model as trained, observers frozen); "int8" (the converted integer model, CPU only).
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    config = load_config(run_dir)
    quantized = config["quantized"]
    if kind == "auto":
        kind = "int8" if quantized else "float"
    if kind != "float" and not quantized:
        raise ValueError(f"kind={kind!r}: {run_dir} holds a float model (method {config['method']!r})")
    if kind == "int8":
        return quant.load_int8(str(Path(run_dir) / MODEL_INT8))
    model = build_float_model(config)
    if quantized:
        model = quant.prepare_qat(model, qconfig_of(config))
    model.load_state_dict(torch.load(Path(run_dir) / MODEL, map_location="cpu", weights_only=True))
    model.to(device).eval()
    if quantized:
        quant.freeze_observers(model)
        if kind == "float":
            quant.disable_fake_quant(model)
    return model


def write_config(run_dir, config):
    """Atomically write config.json."""
    atomic_write_json(config, Path(run_dir) / CONFIG)


def write_results(run_dir, model, metrics, int8_model=None):
    """Atomically write model.pt, model_int8.onnx (when given) and, last, metrics.json."""
    run_dir = Path(run_dir)
    atomic_save({k: v.cpu() if torch.is_tensor(v) else v for k, v in model.state_dict().items()}, run_dir / MODEL)
    if int8_model is not None:
        fd, tmp = tempfile.mkstemp(dir=run_dir, prefix=f".{MODEL_INT8}.", suffix=".onnx")
        os.close(fd)
        try:
            quant.save_int8(int8_model, tmp)
            os.replace(tmp, run_dir / MODEL_INT8)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    atomic_write_json(metrics, run_dir / METRICS)
