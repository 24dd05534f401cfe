"""Your own images: ``imagefolder:PATH`` in torchvision's ImageFolder layout, decoded lazily.

Layout (as ``torchvision.datasets.ImageFolder``): one folder per class, the images inside,
classes sorted by folder name and numbered 0..K-1::

    PATH/train/<class>/<image>     PATH/test/<class>/<image>    (test may be called val)
    PATH/<class>/<image>           (a query set: one split, the "train" split only)

Every image is decoded with Pillow when it is read, converted to grey (1 channel) when the
first training image is grey and to RGB (3 channels) otherwise, and resized with bilinear
filtering to S x S, S = the larger side of the first training image (images that are already
S x S are left as they are). Pixels are byte / 255 in [0, 1], like the built-in datasets.
Extensions: those of torchvision's IMG_EXTENSIONS (.jpg .jpeg .png .ppm .bmp .pgm .tif .tiff
.webp), case-insensitive.

Normalisation statistics are the per-channel mean and standard deviation of the training
split's pixels, measured on at most ``STATS_SAMPLE`` evenly spaced training images (all of
them for smaller folders). Training augmentation: random crop after zero padding of S // 8
pixels, no horizontal flip (divqat cannot know that a mirrored image keeps its class).

torchvision is not used: its release built for torch 2.13 (0.28.0) fails to import beside
the torch 2.13 CPU wheel divqat installs ("operator torchvision::nms does not exist"), so the
reader is Pillow (a dependency of divqat, and of matplotlib).
"""
from __future__ import annotations

import functools
import hashlib
import os
import warnings
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from .info import DatasetInfo
from .transforms import resize_to

__all__ = ["PREFIX", "IMG_EXTENSIONS", "STATS_SAMPLE", "is_imagefolder", "canonical_name", "folder_split",
           "folder_info", "folder_images", "LazyImages"]

PREFIX = "imagefolder:"
IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
STATS_SAMPLE = 2000
_TEST_NAMES = ("test", "val")


def is_imagefolder(name) -> bool:
    """True for a dataset name of the form ``imagefolder:PATH``."""
    return isinstance(name, str) and name.startswith(PREFIX)


def _folder(name: str) -> Path:
    path = name[len(PREFIX):]
    if not path:
        raise ValueError(f"dataset {name!r}: give the folder, imagefolder:PATH")
    return Path(path).expanduser()


def canonical_name(name: str) -> str:
    """``imagefolder:`` + the absolute path, so a run's config still finds the folder from
    another working directory; other names are returned unchanged."""
    return f"{PREFIX}{_folder(name).resolve()}" if is_imagefolder(name) else name


class FolderSplit(NamedTuple):
    """The files of one split, their class ids, and the class names (folder names, sorted)."""

    files: tuple[Path, ...]
    labels: np.ndarray
    classes: tuple[str, ...]


def _class_dirs(root: Path) -> list[Path]:
    return sorted((d for d in root.iterdir() if d.is_dir()), key=lambda d: d.name)


def _split_root(root: Path, split: str) -> Path:
    if not root.is_dir():
        raise FileNotFoundError(f"dataset imagefolder:{root}: no such folder")
    subdirs = {d.name for d in _class_dirs(root)}
    has_splits = "train" in subdirs
    if split == "train":
        return root / "train" if has_splits else root
    test = next((root / n for n in _TEST_NAMES if n in subdirs), None)
    if test is None:
        raise FileNotFoundError(
            f"dataset imagefolder:{root}: no test split; put the test images in {root / 'test'}/<class>/ "
            f"(or val/) and the training images in {root / 'train'}/<class>/")
    return test


@functools.lru_cache(maxsize=32)
def _scan(directory: Path) -> tuple[tuple[Path, ...], tuple[int, ...], tuple[str, ...]]:
    classes = tuple(d.name for d in _class_dirs(directory))
    files, labels = [], []
    for label, cls in enumerate(classes):
        for dirpath, dirnames, filenames in os.walk(directory / cls, followlinks=True):
            dirnames.sort()
            for f in sorted(filenames):
                if f.lower().endswith(IMG_EXTENSIONS):
                    files.append(Path(dirpath) / f)
                    labels.append(label)
    return tuple(files), tuple(labels), classes


def folder_split(name: str, split: str) -> FolderSplit:
    """The files and labels of ``split`` ("train" or "test") of ``imagefolder:PATH``; class ids
    follow the training split's sorted class folders (a test class absent from training is an
    error). ``FileNotFoundError`` for a missing folder or split, ``ValueError`` for an empty one."""
    root = _folder(name).resolve()
    train_files, train_labels, classes = _scan(_split_root(root, "train"))
    if len(classes) < 2:
        raise ValueError(f"dataset {name!r}: needs at least 2 class folders, found {len(classes)} "
                         f"in {_split_root(root, 'train')}")
    if split == "train":
        files, labels = train_files, train_labels
    else:
        test_root = _split_root(root, split)
        files, test_labels, test_classes = _scan(test_root)
        unknown = sorted(set(test_classes) - set(classes))
        if unknown:
            raise ValueError(f"dataset {name!r}: test classes {unknown} have no training folder")
        index = {c: i for i, c in enumerate(classes)}
        labels = tuple(index[test_classes[t]] for t in test_labels)
    if not files:
        raise ValueError(f"dataset {name!r} ({split} split): no images ({', '.join(IMG_EXTENSIONS)})")
    return FolderSplit(files, np.asarray(labels, dtype=np.int64), classes)


def _open_image(path: Path):
    """The decoded image; ValueError naming the file when it is unreadable or would decode to more
    pixels than PIL's decompression-bomb limit (``Image.MAX_IMAGE_PIXELS``)."""
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                im.load()
                return im
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
        raise ValueError(f"{path}: refused, a possible decompression bomb ({exc})") from None
    except OSError as exc:
        raise ValueError(f"{path}: cannot read the image ({exc})") from None


def decode(path: Path, in_channels: int, image_size: int) -> torch.Tensor:
    """One image as float32 (C, S, S) in [0, 1] (see the module docstring)."""
    from PIL import Image

    im = _open_image(path).convert("L" if in_channels == 1 else "RGB")
    if im.size != (image_size, image_size):
        im = im.resize((image_size, image_size), Image.BILINEAR)
    pixels = np.array(im, dtype=np.uint8)  # a writable copy
    pixels = pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)
    return torch.from_numpy(np.ascontiguousarray(pixels)).to(torch.float32).div_(255.0)


def _first_image_shape(path: Path) -> tuple[int, int]:
    im = _open_image(path)
    grey = im.mode in ("1", "L", "LA", "I", "I;16", "F") or (im.mode == "P" and _palette_is_grey(im))
    return (1 if grey else 3), max(im.size)


def _palette_is_grey(im) -> bool:
    rgb = np.asarray(im.convert("RGB"))
    return bool((rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all())


def folder_info(name: str):
    """The :class:`~divqat.data.DatasetInfo` of ``imagefolder:PATH`` (see the module docstring):
    class count, channels and size from the first training image, mean/std measured."""
    return _measured_info(canonical_name(name))


@functools.lru_cache(maxsize=8)
def _measured_info(name: str):
    train = folder_split(name, "train")
    in_channels, size = _first_image_shape(train.files[0])
    n = len(train.files)
    sample = np.unique(np.linspace(0, n - 1, min(n, STATS_SAMPLE)).round().astype(np.int64))
    total = torch.zeros(in_channels, dtype=torch.float64)
    squares = torch.zeros(in_channels, dtype=torch.float64)
    for i in sample:
        x = decode(train.files[i], in_channels, size).to(torch.float64)
        total += x.sum(dim=(1, 2))
        squares += x.square().sum(dim=(1, 2))
    count = len(sample) * size * size
    mean = total / count
    std = (squares / count - mean.square()).clamp_min(0).sqrt().clamp_min(1e-3)
    return DatasetInfo(name, len(train.classes), in_channels, size,
                       tuple(round(float(m), 4) for m in mean), tuple(round(float(s), 4) for s in std),
                       crop_padding=size // 8, hflip=False)


class LazyImages:
    """The images of a folder split as a read-only, lazily decoded (N, C, S, S) float "tensor":
    ``len``, ``shape``, ``dim()``, ``is_floating_point()``, and indexing with an int (one
    (C, S, S) image) or with a slice, list or int64 tensor of indices (a stacked batch, decoded
    then). ``resized(c, s)`` gives the same images mapped with :func:`divqat.data.resize_to`."""

    def __init__(self, files, in_channels: int, image_size: int, adapt_to: tuple[int, int] | None = None):
        self.files = tuple(files)
        self.in_channels, self.image_size, self.adapt_to = in_channels, image_size, adapt_to
        c, s = adapt_to if adapt_to is not None else (in_channels, image_size)
        self.shape = torch.Size((len(self.files), c, s, s))
        self.dtype = torch.float32

    def __len__(self) -> int:
        return len(self.files)

    def dim(self) -> int:
        return 4

    def is_floating_point(self) -> bool:
        return True

    def _one(self, i: int) -> torch.Tensor:
        x = decode(self.files[i], self.in_channels, self.image_size)
        return resize_to(x, *self.adapt_to) if self.adapt_to is not None else x

    def __getitem__(self, index):
        if isinstance(index, (int, np.integer)) or (torch.is_tensor(index) and index.dim() == 0):
            return self._one(int(index))
        if isinstance(index, slice):
            indices = range(len(self))[index]
        else:
            indices = torch.as_tensor(index).reshape(-1).tolist()
        if not indices:
            return torch.empty((0, *self.shape[1:]))
        return torch.stack([self._one(int(i)) for i in indices])

    def resized(self, in_channels: int, image_size: int) -> "LazyImages":
        return LazyImages(self.files, self.in_channels, self.image_size, (in_channels, image_size))

    def fingerprint(self) -> str:
        """A short sha256 of the file paths, sizes, modification times and the decoding shape
        (what the transfer-set cache keys a lazily read query set by)."""
        digest = hashlib.sha256(repr((self.in_channels, self.image_size, self.adapt_to)).encode())
        for f in self.files:
            st = f.stat()
            digest.update(f"{f}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        return digest.hexdigest()[:16]


def folder_images(name: str, split: str, limit: int | None = None) -> tuple[LazyImages, torch.Tensor]:
    """``(LazyImages, labels int64)`` of ``split`` of ``imagefolder:PATH``, the first ``limit``."""
    info = folder_info(name)
    files = folder_split(name, split)
    images = LazyImages(files.files[:limit], info.in_channels, info.image_size)
    return images, torch.from_numpy(files.labels[:limit].copy())
