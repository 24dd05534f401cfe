"""Build any divqat model by name: ``build_model(arch, ...)`` / ``build_model_for(arch, dataset)``."""
from __future__ import annotations

import re
from typing import Sequence

from torch import nn

from ..data.registry import dataset_info
from .base import ImageClassifier
from .custom import build_custom, is_callable_ref, load_weights, wrap_module
from .resnet import parse_resnet_arch, resnet_layers
from .small import lenet5_layers, lenet_caffe_layers, smallcnn_layers
from .vgg import vgg_layers

__all__ = ["ARCHITECTURES", "build_model", "build_model_for"]

#: Canonical names. Also accepted: any ``resnet<6n+2>`` and ``wrn<6n+4>_<k>``, and
#: ``build_model("wrn16_4", ..., width=k)`` (which builds, and names, ``wrn16_<k>``).
ARCHITECTURES: tuple[str, ...] = ("lenet5", "lenet_caffe", "smallcnn", "resnet20", "resnet32", "vgg11_bn", "vgg16_bn", "wrn16_4")

_PLAIN = {
    "lenet5": lenet5_layers,
    "lenet_caffe": lenet_caffe_layers,
    "smallcnn": smallcnn_layers,
    "vgg11_bn": lambda *a: vgg_layers(11, *a),
    "vgg16_bn": lambda *a: vgg_layers(16, *a),
}


def _positive_int(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return value


def build_model(arch, num_classes: int, in_channels: int, image_size: int,
                mean: Sequence[float], std: Sequence[float], **kw) -> nn.Module:
    """Build ``arch`` for inputs (N, in_channels, image_size, image_size) in [0, 1].

    ``arch`` is a built-in name (:data:`ARCHITECTURES`, ``resnet<6n+2>``, ``wrn<6n+4>_<k>``),
    a ``package.module:callable`` that builds your network, or an ``nn.Module`` (copied; see
    :mod:`divqat.models.custom`). Extra keywords: ``width`` (wide ResNets) and ``weights`` (a
    state-dict file to start from, :func:`~divqat.models.custom.load_weights`). ``ValueError``
    names the bad argument: unknown arch, non-positive sizes, mean/std of the wrong length or
    std <= 0, an input too small for the architecture, an unexpected keyword.
    """
    _positive_int("num_classes", num_classes, 2)
    _positive_int("in_channels", in_channels, 1)
    _positive_int("image_size", image_size, 1)
    if len(mean) != in_channels or len(std) != in_channels:
        raise ValueError(f"mean and std need {in_channels} entries (in_channels), got {len(mean)} and {len(std)}")
    if min(std) <= 0:
        raise ValueError(f"std must be > 0, got {list(std)}")
    width, weights = kw.pop("width", None), kw.pop("weights", None)
    if kw:
        raise ValueError(f"build_model: unexpected keyword argument(s) {sorted(kw)}")
    meta = {"num_classes": num_classes, "in_channels": in_channels, "image_size": image_size,
            "mean": tuple(float(m) for m in mean), "std": tuple(float(s) for s in std)}
    if width is not None and (not isinstance(arch, str) or is_callable_ref(arch)):
        raise ValueError("width: only wide ResNets (wrn<d>_<k>) take a width")
    if isinstance(arch, nn.Module):
        model = wrap_module(arch, meta)
    elif is_callable_ref(arch):
        model = build_custom(arch, meta)
    elif isinstance(arch, str):
        model = _build_builtin(arch, width, meta)
    else:
        raise ValueError(f"arch must be a name, package.module:callable or an nn.Module, got {type(arch).__name__}")
    return model if weights is None else load_weights(model, weights)


def _build_builtin(arch: str, width, meta: dict) -> ImageClassifier:
    if width is not None:
        m = re.fullmatch(r"wrn(\d+)(_\d+)?", arch)
        if m is None:
            raise ValueError(f"width: only wide ResNets (wrn<d>_<k>) take a width, not {arch!r}")
        arch = f"wrn{m[1]}_{_positive_int('width', width, 1)}"
    args = (meta["num_classes"], meta["in_channels"], meta["image_size"])
    if arch in _PLAIN:
        features, head = _PLAIN[arch](*args)
    elif (parsed := parse_resnet_arch(arch)) is not None:
        features, head = resnet_layers(*parsed, *args)
    else:
        raise ValueError(f"arch: unknown architecture {arch!r}; choose one of {', '.join(ARCHITECTURES)} "
                         "(or resnet<6n+2>, wrn<6n+4>_<k>), or give package.module:callable")
    return ImageClassifier(arch, *args, meta["mean"], meta["std"], features, head)


def build_model_for(arch, dataset_name: str, **kw) -> nn.Module:
    """``build_model`` with the class count, input shape and normalisation of ``dataset_name``."""
    info = dataset_info(dataset_name)
    return build_model(arch, info.num_classes, info.in_channels, info.image_size, info.mean, info.std, **kw)
