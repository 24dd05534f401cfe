"""Small plain CNNs for 28x28 (and 32x32 / 8x8) inputs: LeNet-5, Caffe's wider LeNet and a tiny
test/demo CNN."""
from __future__ import annotations

from torch import nn

from .base import conv_bn_relu

__all__ = ["lenet5_layers", "lenet_caffe_layers", "smallcnn_layers"]


def lenet5_layers(num_classes: int, in_channels: int, image_size: int) -> tuple[nn.Module, nn.Module]:
    """LeNet-5 (LeCun et al. 1998, "Gradient-Based Learning Applied to Document Recognition"):
    conv5x5(6) -> pool -> conv5x5(16) -> pool -> fc120 -> fc84 -> fc(num_classes).

    Modern, quantization-ready deviations from the 1998 network: ReLU instead of scaled tanh,
    2x2 max-pooling instead of trainable subsampling, full C3 connectivity, a plain linear
    output instead of RBF units, and BatchNorm after each convolution (bias-free convs) so the
    conv-bn-relu triples fold. Inputs smaller than 32x32 (MNIST's 28x28) are zero-padded by 2
    in the first convolution, reproducing the paper's 32x32 field: 16x5x5 features for both.
    """
    pad = 2 if image_size < 32 else 0
    side = ((image_size + 2 * pad - 4) // 2 - 4) // 2
    if side < 1:
        raise ValueError(f"image_size: lenet5 needs at least 20x20 inputs, got {image_size}")
    features = nn.Sequential(
        conv_bn_relu(in_channels, 6, 5, padding=pad), nn.MaxPool2d(2),
        conv_bn_relu(6, 16, 5, padding=0), nn.MaxPool2d(2),
    )
    head = nn.Sequential(
        nn.Flatten(),
        nn.Linear(16 * side * side, 120), nn.ReLU(),
        nn.Linear(120, 84), nn.ReLU(),
        nn.Linear(84, num_classes),
    )
    return features, head


def lenet_caffe_layers(num_classes: int, in_channels: int, image_size: int) -> tuple[nn.Module, nn.Module]:
    """The wider LeNet of Caffe's MNIST example (Jia et al. 2014, examples/mnist/lenet_train_test.prototxt),
    a surrogate architecture other than LeNet-5 for the MNIST family (about 431k parameters,
    2.3 MMAC at 28x28): conv5x5(20) -> pool -> conv5x5(50) -> pool -> fc500 -> fc(num_classes),
    no padding. As in :func:`lenet5_layers`, BatchNorm follows each (bias-free) convolution."""
    side = ((image_size - 4) // 2 - 4) // 2
    if side < 1:
        raise ValueError(f"image_size: lenet_caffe needs at least 16x16 inputs, got {image_size}")
    features = nn.Sequential(
        conv_bn_relu(in_channels, 20, 5, padding=0), nn.MaxPool2d(2),
        conv_bn_relu(20, 50, 5, padding=0), nn.MaxPool2d(2),
    )
    head = nn.Sequential(nn.Flatten(), nn.Linear(50 * side * side, 500), nn.ReLU(), nn.Linear(500, num_classes))
    return features, head


def smallcnn_layers(num_classes: int, in_channels: int, image_size: int) -> tuple[nn.Module, nn.Module]:
    """A tiny fast CNN for tests and demos (about 9k parameters and 0.3 MMAC at 28x28):
    conv3x3(8) -> pool -> conv3x3(16) -> pool -> fc(num_classes)."""
    side = image_size // 4
    if side < 1:
        raise ValueError(f"image_size: smallcnn needs at least 4x4 inputs, got {image_size}")
    features = nn.Sequential(
        conv_bn_relu(in_channels, 8), nn.MaxPool2d(2),
        conv_bn_relu(8, 16), nn.MaxPool2d(2),
    )
    head = nn.Sequential(nn.Flatten(), nn.Linear(16 * side * side, num_classes))
    return features, head
