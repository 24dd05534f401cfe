"""VGG with BatchNorm for 32x32 inputs (Simonyan & Zisserman 2015, "Very Deep Convolutional
Networks for Large-Scale Image Recognition", configurations A = VGG-11 and D = VGG-16; BN
after every convolution, Ioffe & Szegedy 2015). As in the usual CIFAR adaptations, the three
4096-wide fully connected layers are replaced by global average pooling and one linear layer
on the 512 final channels."""
from __future__ import annotations

from torch import nn

from .base import conv_bn_relu

__all__ = ["VGG_CONFIGS", "vgg_layers"]

# Output channels of each 3x3 conv; "M" is a 2x2 max-pool.
VGG_CONFIGS = {
    11: (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    16: (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"),
}


def vgg_layers(depth: int, num_classes: int, in_channels: int, image_size: int) -> tuple[nn.Module, nn.Module]:
    """Features and head of VGG-``depth``-BN (``depth`` in 11, 16); needs inputs >= 32x32."""
    if image_size < 32:
        raise ValueError(f"image_size: vgg needs at least 32x32 inputs (5 poolings), got {image_size}")
    layers, ch = [], in_channels
    for item in VGG_CONFIGS[depth]:
        if item == "M":
            layers.append(nn.MaxPool2d(2))
        else:
            layers.append(conv_bn_relu(ch, item))
            ch = item
    head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(ch, num_classes))
    return nn.Sequential(*layers), head
