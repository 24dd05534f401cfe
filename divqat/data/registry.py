"""What each dataset is: class count, image shape, normalisation statistics, augmentation.

Normalisation statistics are the per-channel mean and standard deviation of the training
split in [0, 1] pixel units (the values every PyTorch reference uses; the tests recompute them
from the data for the datasets available offline):

- MNIST: 0.1307 / 0.3081;  Fashion-MNIST: 0.2860 / 0.3530
- CIFAR-10: (0.4914, 0.4822, 0.4465) / (0.2470, 0.2435, 0.2616)
- CIFAR-100: (0.5071, 0.4865, 0.4409) / (0.2673, 0.2564, 0.2762)
- SVHN: (0.4377, 0.4438, 0.4728) / (0.1980, 0.2010, 0.1970)
- digits (sklearn 8x8, our 1437/360 split): 0.3054 / 0.3759

Augmentation (training only): random crop after zero padding (4 px for 32x32 sets, as in
He et al. 2016 "Deep Residual Learning", 2 px for 28x28 sets, 1 px for 8x8 digits) and a
horizontal flip only where a mirrored image is still of the same class (CIFAR; not digits,
letters or house numbers).
"""
from __future__ import annotations

from .imagefolder import folder_info, is_imagefolder
from .info import DatasetInfo

__all__ = ["DatasetInfo", "DATASETS", "dataset_info"]


_INFOS = (
    DatasetInfo("mnist", 10, 1, 28, (0.1307,), (0.3081,), crop_padding=2),
    DatasetInfo("fashion-mnist", 10, 1, 28, (0.2860,), (0.3530,), crop_padding=2),
    DatasetInfo("cifar10", 10, 3, 32, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616),
                crop_padding=4, hflip=True),
    DatasetInfo("cifar100", 100, 3, 32, (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762),
                crop_padding=4, hflip=True),
    DatasetInfo("svhn", 10, 3, 32, (0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970),
                crop_padding=4),
    DatasetInfo("digits", 10, 1, 8, (0.3054,), (0.3759,), crop_padding=1),
)

_BY_NAME = {info.name: info for info in _INFOS}

#: Names accepted by :func:`dataset_info`, ``load_dataset`` and ``load_tensors``.
DATASETS: tuple[str, ...] = tuple(_BY_NAME)


def dataset_info(name: str) -> DatasetInfo:
    """Return the :class:`DatasetInfo` of ``name`` (a built-in name, or ``imagefolder:PATH``:
    measured from the folder, see :mod:`divqat.data.imagefolder`); ``ValueError`` for an
    unknown name."""
    if is_imagefolder(name):
        return folder_info(name)
    try:
        return _BY_NAME[name]
    except (KeyError, TypeError):
        raise ValueError(f"dataset: unknown name {name!r}; choose one of {', '.join(DATASETS)} "
                         "or imagefolder:PATH (your own images, one folder per class)") from None
