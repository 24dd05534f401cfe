"""Tensor-only image transforms (no torchvision): training augmentation and shape adaptation."""
from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["random_crop_flip", "resize_to"]


def random_crop_flip(x: torch.Tensor, padding: int, hflip: bool,
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """Zero-pad by ``padding`` pixels, crop back to the original size at a uniformly random
    offset, and mirror left-right with probability 1/2 when ``hflip`` (the CIFAR augmentation of
    He et al. 2016, "Deep Residual Learning for Image Recognition", sec. 4.2).

    ``x`` is one image (C, H, W) or a batch (N, C, H, W); every image gets its own offset and
    flip. The result has the input's shape, dtype and value range.
    """
    if x.dim() not in (3, 4):
        raise ValueError(f"x must be (C, H, W) or (N, C, H, W), got shape {tuple(x.shape)}")
    if padding < 0:
        raise ValueError(f"padding must be >= 0, got {padding}")
    batch = x if x.dim() == 4 else x.unsqueeze(0)
    n, _, h, w = batch.shape
    out = batch
    if padding > 0:
        padded = F.pad(batch, (padding, padding, padding, padding))
        dy = torch.randint(0, 2 * padding + 1, (n,), generator=generator)
        dx = torch.randint(0, 2 * padding + 1, (n,), generator=generator)
        rows = (dy[:, None] + torch.arange(h))[:, None, :, None]   # (N, 1, H, 1)
        cols = (dx[:, None] + torch.arange(w))[:, None, None, :]   # (N, 1, 1, W)
        out = padded[torch.arange(n)[:, None, None, None], torch.arange(batch.shape[1])[None, :, None, None],
                     rows, cols]
    if hflip:
        flip = torch.rand(n, generator=generator) < 0.5
        out = torch.where(flip[:, None, None, None], out.flip(-1), out)
    return out if x.dim() == 4 else out[0]


def resize_to(x: torch.Tensor, in_channels: int, image_size: int) -> torch.Tensor:
    """Adapt images from one dataset to a model trained on another (cross-dataset queries, e.g.
    Fashion-MNIST queries to a CIFAR model): grey -> colour by repeating the channel, colour ->
    grey by the channel mean, then bilinear resizing (``align_corners=False``) to
    ``image_size`` x ``image_size``. Values stay in the input's range. Accepts (C, H, W) or
    (N, C, H, W); returns the input unchanged when it already fits. A
    :class:`~divqat.data.LazyImages` is mapped lazily (each image when it is read).
    """
    if hasattr(x, "resized"):  # LazyImages: the mapping is applied as images are decoded
        return x.resized(in_channels, image_size)
    if x.dim() not in (3, 4):
        raise ValueError(f"x must be (C, H, W) or (N, C, H, W), got shape {tuple(x.shape)}")
    if in_channels < 1 or image_size < 1:
        raise ValueError(f"in_channels and image_size must be >= 1, got {in_channels}, {image_size}")
    batch = x if x.dim() == 4 else x.unsqueeze(0)
    c = batch.shape[1]
    if c != in_channels:
        if c == 1:
            batch = batch.expand(-1, in_channels, -1, -1)
        elif in_channels == 1:
            batch = batch.mean(dim=1, keepdim=True)
        else:
            raise ValueError(f"in_channels: cannot map {c} channels to {in_channels}")
    if batch.shape[-2:] != (image_size, image_size):
        batch = F.interpolate(batch, size=(image_size, image_size), mode="bilinear", align_corners=False)
    batch = batch.contiguous()
    return batch if x.dim() == 4 else batch[0]
