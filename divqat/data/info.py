"""The static description of a dataset, built-in (:mod:`divqat.data.registry`) or measured
from a folder of images (:mod:`divqat.data.imagefolder`)."""
from __future__ import annotations

from typing import NamedTuple


class DatasetInfo(NamedTuple):
    """Static description of a dataset; ``mean``/``std`` have one entry per channel."""

    name: str
    num_classes: int
    in_channels: int
    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    crop_padding: int = 0
    hflip: bool = False
