"""Two tiny modules that keep models quantization-friendly and torch.fx-traceable."""
from __future__ import annotations

from typing import Sequence

import torch
import torch.fx
from torch import nn

__all__ = ["Normalize", "Add", "LeafTracer", "trace"]


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


class LeafTracer(torch.fx.Tracer):
    """An fx tracer that keeps :class:`Normalize` and :class:`Add` as single ``call_module``
    nodes (plain ``symbolic_trace`` inlines them into ``sub``/``truediv``/``add``), so a
    quantization pass can find the input boundary and the residual sums by module type."""

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return isinstance(m, (Normalize, Add)) or super().is_leaf_module(m, module_qualified_name)


def trace(model: nn.Module) -> torch.fx.GraphModule:
    """``torch.fx`` trace of ``model`` with :class:`LeafTracer`; the result keeps ``.arch``/``.meta``."""
    graph_module = torch.fx.GraphModule(model, LeafTracer().trace(model), model.__class__.__name__)
    for attr in ("arch", "meta"):
        if hasattr(model, attr):
            setattr(graph_module, attr, getattr(model, attr))
    return graph_module
