"""Two tiny modules that keep models quantization-friendly and torch.fx-traceable."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

__all__ = ["Normalize", "Add"]


class Normalize(nn.Module):
    """Per-channel standardisation ``y = (x - mean) / std`` with ``mean``/``std`` as buffers,
    so a model takes images in [0, 1] pixel space and its checkpoint carries the statistics."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]):
        super().__init__()
        mean_t = torch.as_tensor(mean, dtype=torch.float32).reshape(1, -1, 1, 1)
        std_t = torch.as_tensor(std, dtype=torch.float32).reshape(1, -1, 1, 1)
        if mean_t.numel() != std_t.numel():
            raise ValueError(f"mean ({mean_t.numel()}) and std ({std_t.numel()}) differ in length")
        if not bool((std_t > 0).all()):
            raise ValueError(f"std must be > 0, got {list(std)}")
        self.register_buffer("mean", mean_t)
        self.register_buffer("std", std_t)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def extra_repr(self) -> str:
        return f"mean={self.mean.flatten().tolist()}, std={self.std.flatten().tolist()}"


class Add(nn.Module):
    """``a + b`` as a module, so a quantization pass can observe and quantize a residual sum."""

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return a + b
