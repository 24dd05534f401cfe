"""The shape every divqat model shares: ``head(features(Normalize(x)))`` with ``.arch``/``.meta``,
plus the building block ``conv_bn_relu`` written as consecutive modules, so that a graph pass
(torch.fx) sees the Conv2d -> BatchNorm2d -> ReLU pattern it folds for quantization
(Jacob et al. 2018, "Quantization and Training of Neural Networks for Efficient
Integer-Arithmetic-Only Inference", sec. 3.2)."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from .layers import Normalize

__all__ = ["ImageClassifier", "conv_bn_relu", "conv_bn"]


def conv_bn(in_ch: int, out_ch: int, kernel_size: int, stride: int = 1, padding: int | None = None) -> nn.Sequential:
    """Bias-free Conv2d followed by BatchNorm2d (the BN shift makes a conv bias redundant);
    ``padding`` defaults to ``kernel_size // 2`` ("same" for odd kernels at stride 1)."""
    pad = kernel_size // 2 if padding is None else padding
    return nn.Sequential(nn.Conv2d(in_ch, out_ch, kernel_size, stride=stride, padding=pad, bias=False),
                         nn.BatchNorm2d(out_ch))


def conv_bn_relu(in_ch: int, out_ch: int, kernel_size: int = 3, stride: int = 1,
                 padding: int | None = None) -> nn.Sequential:
    """Conv2d -> BatchNorm2d -> ReLU as one ``nn.Sequential`` of three consecutive modules."""
    return nn.Sequential(*conv_bn(in_ch, out_ch, kernel_size, stride, padding), nn.ReLU(inplace=False))


class ImageClassifier(nn.Module):
    """``logits = head(features(normalize(x)))`` for ``x`` in [0, 1], shape (N, C, H, W).

    ``arch`` is the canonical architecture name (``build_model(model.arch, **model.meta)``
    rebuilds the same network); ``meta`` holds num_classes, in_channels, image_size, mean, std.
    Convolutions get He-normal initialisation (He et al. 2015, "Delving Deep into Rectifiers"),
    BatchNorm scale 1 and shift 0; Linear layers keep PyTorch's default.
    """

    def __init__(self, arch: str, num_classes: int, in_channels: int, image_size: int,
                 mean: Sequence[float], std: Sequence[float], features: nn.Module, head: nn.Module):
        super().__init__()
        self.normalize = Normalize(mean, std)
        self.features = features
        self.head = head
        self.arch = arch
        self.meta = {"num_classes": num_classes, "in_channels": in_channels, "image_size": image_size,
                     "mean": tuple(float(m) for m in mean), "std": tuple(float(s) for s in std)}
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(self.normalize(x)))

    def extra_repr(self) -> str:
        return f"arch={self.arch!r}"
