"""Public loaders: float images in [0, 1] (C, H, W) and int64 labels, from the cached raw bytes
of a built-in dataset or, decoded when read, from an ``imagefolder:PATH`` (see imagefolder)."""
from __future__ import annotations

import os

import torch
from torch.utils.data import Dataset

from .imagefolder import folder_images, is_imagefolder
from .registry import DatasetInfo, dataset_info
from .sources import load_raw
from .transforms import random_crop_flip

__all__ = ["ImageDataset", "load_dataset", "load_images", "load_tensors", "SPLITS"]

SPLITS = ("train", "test")


def _check(name: str, split: str, limit: int | None) -> None:
    dataset_info(name)
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValueError(f"limit must be a positive int or None, got {limit!r}")


def load_images(name: str, split: str = "train", root: str | os.PathLike | None = None,
                limit: int | None = None):
    """Like :func:`load_tensors`, but an ``imagefolder:PATH`` gives its images as a
    :class:`~divqat.data.imagefolder.LazyImages` (decoded when indexed) instead of one tensor."""
    _check(name, split, limit)
    if is_imagefolder(name):
        return folder_images(name, split, limit)
    return load_tensors(name, split, root, limit)


def load_tensors(name: str, split: str = "train", root: str | os.PathLike | None = None,
                 limit: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Return ``(X, Y)``: X float32 (N, C, H, W) in [0, 1] (pixel = byte / 255, or value / 16
    for digits), Y int64 (N,). ``limit`` keeps the first ``limit`` examples. Each call returns
    fresh tensors; the decoded bytes are cached, so repeated calls are cheap. An
    ``imagefolder:PATH`` is decoded whole here (``root`` does not apply to it): use
    :func:`load_dataset` or :func:`load_images` to read a large folder lazily."""
    _check(name, split, limit)
    if is_imagefolder(name):
        images, labels = folder_images(name, split, limit)
        return images[:], labels
    raw = load_raw(name, split, root)
    images = torch.from_numpy(raw.images[:limit].copy()).to(torch.float32).div_(raw.max_value)
    labels = torch.from_numpy(raw.labels[:limit].copy())
    return images, labels


class ImageDataset(Dataset):
    """``(image, label)`` dataset; with ``augment`` each access draws a random crop (and flip
    where the dataset allows it) from torch's global generator, see
    :func:`divqat.data.transforms.random_crop_flip`.

    Attributes: ``images`` (N, C, H, W) float32 (a tensor, or a ``LazyImages`` that decodes
    each image when it is read), ``labels`` (N,) int64, ``info``, ``augment``.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, info: DatasetInfo, augment: bool = False):
        if len(images) != len(labels):
            raise ValueError(f"images ({len(images)}) and labels ({len(labels)}) differ in length")
        self.images, self.labels, self.info, self.augment = images, labels, info, augment

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.images[index]
        if self.augment:
            x = random_crop_flip(x, self.info.crop_padding, self.info.hflip)
        return x, self.labels[index]


def load_dataset(name: str, split: str = "train", root: str | os.PathLike | None = None,
                 augment: bool = False, limit: int | None = None) -> ImageDataset:
    """Load ``name``/``split`` as an :class:`ImageDataset` (see :func:`load_tensors`); the
    images of an ``imagefolder:PATH`` are decoded when read, never all at once."""
    images, labels = load_images(name, split, root=root, limit=limit)
    return ImageDataset(images, labels, dataset_info(name), augment=augment)
