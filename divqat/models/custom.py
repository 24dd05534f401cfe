"""Your own networks: ``arch="package.module:callable"`` or an ``nn.Module``, and initial weights.

A *callable reference* ``package.module:callable`` names a function or class that builds the
network. It is called with the keyword arguments it accepts among ``num_classes``,
``in_channels``, ``image_size``, ``mean`` and ``std`` (all of them if it takes ``**kwargs``)
and must return an ``nn.Module`` mapping (N, in_channels, image_size, image_size) to
(N, num_classes) logits. The module is imported as ``python -m`` would: from ``sys.path``,
then from the working directory.

A user network is wrapped as ``logits = net(Normalize(x))`` (:class:`CustomClassifier`), so
like every built-in network it takes images in [0, 1] and sees them standardised with the
dataset's (or the victim's) mean and std; its own initialisation is kept. Its ``arch`` is the
reference, so ``build_model(model.arch, **model.meta)`` rebuilds it (checkpoints store both).
To be quantized (``prepare_qat``) it must trace with torch.fx and use the layers that
``divqat.quant.prepare`` lists.
"""
from __future__ import annotations

import copy
import importlib
import inspect
import os
import re
import sys
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from divqat.checks import error_line
from divqat.utils import load_torch_file

from .layers import Normalize

__all__ = ["is_callable_ref", "import_callable", "CustomClassifier", "build_custom", "wrap_module",
           "load_weights"]

_REF = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")
_BUILD_ARGS = ("num_classes", "in_channels", "image_size", "mean", "std")


def is_callable_ref(arch) -> bool:
    """True for a string of the form ``package.module:callable``."""
    return isinstance(arch, str) and _REF.fullmatch(arch) is not None


def _import_module(ref: str, module_name: str):
    """``importlib.import_module(module_name)``, then from the working directory as ``python -m``
    would; ValueError naming ``ref`` when it is missing or its import raises."""
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        cwd = os.getcwd()
        if exc.name != module_name.split(".")[0] or cwd in sys.path:
            raise ValueError(f"arch {ref!r}: cannot import {module_name} ({exc}); put it on PYTHONPATH "
                             "or in the working directory") from None
        sys.path.append(cwd)  # as `python -m` does: modules of the working directory
        return _import_module(ref, module_name)
    except Exception as exc:  # the user's module may raise anything while it is imported
        raise ValueError(f"arch {ref!r}: importing {module_name} failed ({error_line(exc, with_type=True)})") from None


def import_callable(ref: str) -> Callable:
    """The object ``ref`` = ``package.module:attr.path`` names; ``ValueError`` naming what is missing."""
    module_name, attr_path = ref.split(":")
    module = _import_module(ref, module_name)
    obj = module
    for part in attr_path.split("."):
        if not hasattr(obj, part):
            raise ValueError(f"arch {ref!r}: {module_name} has no attribute {attr_path!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ValueError(f"arch {ref!r}: {attr_path} is not callable")
    return obj


class CustomClassifier(nn.Module):
    """``logits = net(normalize(x))`` for a user network ``net``, with ``.arch`` and ``.meta``
    as the built-in :class:`~divqat.models.ImageClassifier`."""

    def __init__(self, arch: str, meta: dict, net: nn.Module):
        super().__init__()
        self.normalize = Normalize(meta["mean"], meta["std"])
        self.net = net
        self.arch = arch
        self.meta = dict(meta)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.normalize(x))

    def extra_repr(self) -> str:
        return f"arch={self.arch!r}"


def _check_output(model: nn.Module, meta: dict) -> nn.Module:
    """A forward pass of two blank images: ValueError unless the logits are (2, num_classes)."""
    shape = (2, meta["in_channels"], meta["image_size"], meta["image_size"])
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(torch.zeros(shape))
    except Exception as exc:  # the user's forward may raise anything; its message names the cause
        raise ValueError(f"arch {model.arch!r}: the network fails on a {shape} batch ({error_line(exc, with_type=True)})") from None
    finally:
        model.train(was_training)
    if not torch.is_tensor(out) or tuple(out.shape) != (2, meta["num_classes"]):
        got = tuple(out.shape) if torch.is_tensor(out) else type(out).__name__
        raise ValueError(f"arch {model.arch!r}: the network maps a {shape} batch to {got}, "
                         f"expected logits of shape (2, {meta['num_classes']})")
    return model


def build_custom(ref: str, meta: dict) -> CustomClassifier:
    """Call the network builder ``ref`` with the arguments of ``meta`` it accepts and wrap it."""
    builder = import_callable(ref)
    try:
        params = inspect.signature(builder).parameters.values()
    except (TypeError, ValueError):
        params = ()
    if any(p.kind is p.VAR_KEYWORD for p in params):
        names = _BUILD_ARGS
    else:
        names = [p.name for p in params if p.name in _BUILD_ARGS]
    try:
        net = builder(**{name: meta[name] for name in names})
    except TypeError as exc:  # a parameter divqat cannot fill
        raise ValueError(f"arch {ref!r}: cannot call it with {names} ({exc}); it may take "
                         f"{', '.join(_BUILD_ARGS)}") from None
    except Exception as exc:  # the user's builder may raise anything; its message names the cause
        raise ValueError(f"arch {ref!r}: building the network failed ({error_line(exc, with_type=True)})") from None
    if not isinstance(net, nn.Module):
        raise ValueError(f"arch {ref!r}: returned {type(net).__name__}, not an nn.Module")
    return _check_output(CustomClassifier(ref, meta, net), meta)


def wrap_module(module: nn.Module, meta: dict) -> nn.Module:
    """A copy of ``module`` for inputs described by ``meta``: a divqat model (it has ``.arch``
    and ``.meta``) must match ``meta`` and is copied as it is; any other network is wrapped in
    :class:`CustomClassifier`, named by its class (``package.module:Class``)."""
    if hasattr(module, "arch") and isinstance(getattr(module, "meta", None), dict):
        ours = {k: module.meta.get(k) for k in ("num_classes", "in_channels", "image_size")}
        want = {k: meta[k] for k in ours}
        if ours != want:
            raise ValueError(f"arch: the given {module.arch!r} model is built for {ours}, the data needs {want}")
        return copy.deepcopy(module)
    cls = type(module)
    return _check_output(CustomClassifier(f"{cls.__module__}:{cls.__qualname__}", meta, copy.deepcopy(module)), meta)


def load_weights(model: nn.Module, path: str | os.PathLike) -> nn.Module:
    """Load ``path`` into ``model`` in place and return it. The file is a state dict saved with
    ``torch.save`` (read with ``weights_only=True``), or a dict holding one under
    ``"state_dict"`` (a divqat ``surrogate.pt``); it must fit the whole model or, for a
    :class:`CustomClassifier`, the user's network alone (``model.net``), key for key."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"weights {path}: no such file")
    state = load_torch_file(path, "weights")
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(f"weights {path}: expected a state dict, got {type(state).__name__}")
    target = model
    if isinstance(model, CustomClassifier) and set(state) != set(model.state_dict()):
        target = model.net
    try:
        target.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[1:3]
        raise ValueError(f"weights {path}: do not fit arch {getattr(model, 'arch', '?')!r}: "
                         + " ".join(line.strip() for line in first)[:400]) from None
    return model
