"""CIFAR ResNets (He et al. 2016, "Deep Residual Learning for Image Recognition", sec. 4.2)
and Wide ResNets (Zagoruyko & Komodakis 2016, "Wide Residual Networks") from one block.

ResNet-(6n+2): a 3x3 conv with 16 channels, three stages of n basic blocks with 16, 32, 64
channels (stride 2 at the start of stages 2 and 3), global average pooling, one linear layer.
Shortcuts are identities where shapes match and 1x1 conv + BN projections where they do not
(the paper's option B instead of option A's zero-padding), so every path is a plain
conv/bn/add that quantizes cleanly; this adds 2.7k parameters to ResNet-20 (0.27M in the paper).

WRN-d-k: the same network with stage widths 16k, 32k, 64k and n = (d - 4) / 6 blocks per
stage. Deviation from the paper: post-activation blocks (conv-bn-relu, as in ResNet) rather
than pre-activation (bn-relu-conv), so conv-bn-relu folding applies, and no dropout.
"""
from __future__ import annotations

import re

import torch
from torch import nn

from .base import conv_bn, conv_bn_relu
from .layers import Add

__all__ = ["BasicBlock", "resnet_layers", "parse_resnet_arch"]


class BasicBlock(nn.Module):
    """``relu(bn(conv(relu(bn(conv(x))))) + shortcut(x))``, the residual sum an ``Add`` module."""

    def __init__(self, in_ch: int, out_ch: int, stride: int):
        super().__init__()
        self.conv1 = conv_bn_relu(in_ch, out_ch, 3, stride=stride)
        self.conv2 = conv_bn(out_ch, out_ch, 3)
        self.shortcut = conv_bn(in_ch, out_ch, 1, stride=stride) if stride != 1 or in_ch != out_ch else None
        self.add = Add()
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.shortcut is None else self.shortcut(x)
        return self.relu(self.add(self.conv2(self.conv1(x)), identity))


def resnet_layers(blocks_per_stage: int, width: int, num_classes: int, in_channels: int,
                  image_size: int) -> tuple[nn.Module, nn.Module]:
    """Features and head of a CIFAR ResNet with ``blocks_per_stage`` blocks and width factor ``width``."""
    if image_size < 4:
        raise ValueError(f"image_size: resnet needs at least 4x4 inputs, got {image_size}")
    layers, ch = [conv_bn_relu(in_channels, 16, 3)], 16
    for stage, base in enumerate((16, 32, 64)):
        for i in range(blocks_per_stage):
            out = base * width
            layers.append(BasicBlock(ch, out, stride=2 if stage > 0 and i == 0 else 1))
            ch = out
    head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(ch, num_classes))
    return nn.Sequential(*layers), head


def parse_resnet_arch(arch: str) -> tuple[int, int] | None:
    """``"resnet<6n+2>"`` -> (n, 1); ``"wrn<6n+4>_<k>"`` -> (n, k); anything else -> None."""
    m = re.fullmatch(r"resnet(\d+)", arch)
    if m and int(m[1]) >= 8 and (int(m[1]) - 2) % 6 == 0:
        return (int(m[1]) - 2) // 6, 1
    m = re.fullmatch(r"wrn(\d+)_(\d+)", arch)
    if m and int(m[1]) >= 10 and (int(m[1]) - 4) % 6 == 0 and int(m[2]) >= 1:
        return (int(m[1]) - 4) // 6, int(m[2])
    return None
