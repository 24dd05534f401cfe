"""Build any divqat model by name: ``build_model(arch, ...)`` / ``build_model_for(arch, dataset)``."""
from __future__ import annotations

import re
from typing import Sequence

from ..data.registry import dataset_info
from .base import ImageClassifier
from .resnet import parse_resnet_arch, resnet_layers
from .small import lenet5_layers, smallcnn_layers
from .vgg import vgg_layers

__all__ = ["ARCHITECTURES", "build_model", "build_model_for"]

#: Canonical names. Also accepted: any ``resnet<6n+2>`` and ``wrn<6n+4>_<k>``, and
#: ``build_model("wrn16_4", ..., width=k)`` (which builds, and names, ``wrn16_<k>``).
ARCHITECTURES: tuple[str, ...] = ("lenet5", "smallcnn", "resnet20", "resnet32", "vgg11_bn", "vgg16_bn", "wrn16_4")

_PLAIN = {
    "lenet5": lenet5_layers,
    "smallcnn": smallcnn_layers,
    "vgg11_bn": lambda *a: vgg_layers(11, *a),
    "vgg16_bn": lambda *a: vgg_layers(16, *a),
}


def _positive_int(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return value


def build_model(arch: str, num_classes: int, in_channels: int, image_size: int,
                mean: Sequence[float], std: Sequence[float], **kw) -> ImageClassifier:
    """Build ``arch`` for inputs (N, in_channels, image_size, image_size) in [0, 1].

    The only extra keyword is ``width`` (wide ResNets). ``ValueError`` names the bad argument:
    unknown arch, non-positive sizes, mean/std of the wrong length or std <= 0, an input too
    small for the architecture, an unexpected keyword.
    """
    _positive_int("num_classes", num_classes, 2)
    _positive_int("in_channels", in_channels, 1)
    _positive_int("image_size", image_size, 1)
    if len(mean) != in_channels or len(std) != in_channels:
        raise ValueError(f"mean and std need {in_channels} entries (in_channels), got {len(mean)} and {len(std)}")
    if min(std) <= 0:
        raise ValueError(f"std must be > 0, got {list(std)}")
    if not isinstance(arch, str):
        raise ValueError(f"arch must be a str, got {type(arch).__name__}")
    width = kw.pop("width", None)
    if kw:
        raise ValueError(f"build_model: unexpected keyword argument(s) {sorted(kw)}")
    if width is not None:
        m = re.fullmatch(r"wrn(\d+)(_\d+)?", arch)
        if m is None:
            raise ValueError(f"width: only wide ResNets (wrn<d>_<k>) take a width, not {arch!r}")
        arch = f"wrn{m[1]}_{_positive_int('width', width, 1)}"
    args = (num_classes, in_channels, image_size)
    if arch in _PLAIN:
        features, head = _PLAIN[arch](*args)
    elif (parsed := parse_resnet_arch(arch)) is not None:
        features, head = resnet_layers(*parsed, *args)
    else:
        raise ValueError(f"arch: unknown architecture {arch!r}; choose one of {', '.join(ARCHITECTURES)} "
                         "(or resnet<6n+2>, wrn<6n+4>_<k>)")
    return ImageClassifier(arch, num_classes, in_channels, image_size, mean, std, features, head)


def build_model_for(arch: str, dataset_name: str, **kw) -> ImageClassifier:
    """``build_model`` with the class count, input shape and normalisation of ``dataset_name``."""
    info = dataset_info(dataset_name)
    return build_model(arch, info.num_classes, info.in_channels, info.image_size, info.mean, info.std, **kw)
