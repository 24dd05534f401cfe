"""Quantization-ready CNNs: LeNet-5, a small CNN, CIFAR ResNet-20/32, VGG-11/16-BN, WRN-16-k.

Every model maps images in [0, 1] to logits, starts with :class:`layers.Normalize`, is built
only from Conv2d, BatchNorm2d, ReLU, Linear, MaxPool2d, AvgPool2d, AdaptiveAvgPool2d, Flatten,
Dropout and :class:`layers.Add`, writes conv -> bn -> relu as consecutive modules, traces with
``torch.fx.symbolic_trace`` (:func:`trace` keeps Normalize and Add as leaf modules), and
carries ``.arch`` and ``.meta``. Your own networks (``package.module:callable`` or an
``nn.Module``) are wrapped the same way: :mod:`divqat.models.custom`.
"""
from .base import ImageClassifier
from .custom import CustomClassifier, load_weights
from .factory import ARCHITECTURES, build_model, build_model_for
from .layers import Add, LeafTracer, Normalize, trace

__all__ = ["ARCHITECTURES", "build_model", "build_model_for", "ImageClassifier", "CustomClassifier",
           "load_weights", "Normalize", "Add", "LeafTracer", "trace"]
