"""K heads on one backbone, one answer: the model of the ``diverse`` objective (docs/science.md
§8, "Aimed at labels"), after EDM (Kariyappa, Prakash & Qureshi, "Protecting DNNs from Theft using an Ensemble
of Diverse Models", ICLR 2021).

:func:`with_heads` replaces a classifier's last Linear(d, C) by one Linear(d, K C), K copies of
the last layer side by side (per-output-channel weight quantization keeps them apart in the
int8 model), followed by :class:`HeadSelect`, which answers with the logits of one head,
chosen per input by a hash of head 0's answer (EDM's selection):

    p = softmax(s_0),   b = max(floor((10 max_j p_j - 1) * 2 / 9), 0),
    h = (2 argmax_j s_0j + b) mod K,   output = s_h

so the answer is a deterministic but discontinuous function of the input, and every consumer
(the BlackBox, evaluation, attacks, int8 conversion and the ONNX graph, where the selection is
exported as ArgMax, Softmax, ReduceMax, arithmetic, Floor, Mod and GatherElements) sees one
model. Ties in the argmax go to the first class (torch and ONNX alike).
"""
from __future__ import annotations

import contextlib
import copy

import torch
from torch import nn

from divqat.checks import check_int

__all__ = ["HeadSelect", "with_heads", "capture_heads", "MIN_HEADS"]

MIN_HEADS = 3
INIT_NOISE = 0.5  # heads 1.. start as the last layer plus N(0, (0.5 std of its weights)^2)


class HeadSelect(nn.Module):
    """(N, K C) logits of K heads -> (N, C) logits of head h(x) (module docstring)."""

    def __init__(self, heads: int, num_classes: int):
        super().__init__()
        self.heads, self.num_classes = heads, num_classes

    def head_index(self, first: torch.Tensor) -> torch.Tensor:
        """h per row of head 0's logits ``first`` (N, C), int64 (N,)."""
        confidence = torch.softmax(first, dim=-1).amax(dim=-1)
        bucket = torch.relu(torch.floor((confidence * 10 - 1) * 2 / 9)).long()
        return (2 * first.argmax(dim=-1) + bucket) % self.heads

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        heads = x.unflatten(-1, (self.heads, self.num_classes))
        index = self.head_index(heads[:, 0])
        return heads.gather(1, index[:, None, None].expand(-1, 1, self.num_classes)).squeeze(1)

    def extra_repr(self) -> str:
        return f"heads={self.heads}, num_classes={self.num_classes}"


def with_heads(model: nn.Module, heads: int) -> nn.Module:
    """A copy of ``model`` (an ImageClassifier whose ``head`` is a Sequential ending in a Linear)
    with K = ``heads`` >= 3 heads, each a copy of the last layer, heads 1.. plus Gaussian noise of
    ``INIT_NOISE`` times the std of its weights (torch's global generator; identical heads would
    get no gradient from the coherence term), then :class:`HeadSelect`. ``meta`` gains ``heads``, so ``build_model(arch, **meta)`` rebuilds it."""
    check_int("heads", heads, MIN_HEADS)
    head = getattr(model, "head", None)
    if not isinstance(head, nn.Sequential) or not isinstance(head[-1], nn.Linear):
        raise ValueError("heads: only a divqat classifier whose head ends in a Linear layer takes heads")
    if "heads" in model.meta:
        raise ValueError(f"heads: the model already has {model.meta['heads']} heads")
    last = head[-1]
    wide = nn.Linear(last.in_features, heads * last.out_features, bias=last.bias is not None)
    wide.to(last.weight.device, last.weight.dtype)
    with torch.no_grad():  # every head starts as the last layer, heads 1.. perturbed so they can move apart
        noise = torch.randn_like(wide.weight) * (INIT_NOISE * last.weight.std())
        noise[:last.out_features] = 0
        wide.weight.copy_(last.weight.repeat(heads, 1) + noise)
        if last.bias is not None:
            wide.bias.copy_(last.bias.repeat(heads))
    out = copy.deepcopy(model)
    out.head = nn.Sequential(*copy.deepcopy(list(head)[:-1]), wide, HeadSelect(heads, last.out_features))
    out.meta = dict(model.meta, heads=heads)
    return out


@contextlib.contextmanager
def capture_heads(model: nn.Module):
    """Inside the block, each forward pass of ``model`` appends every head's logits, (N, K, C)
    with their gradient, to the list the block gets; ValueError when it has no heads."""
    captured = []
    hooks = [m.register_forward_hook(lambda mod, inputs, _: captured.append(
        inputs[0].unflatten(-1, (mod.heads, mod.num_classes)))) for m in model.modules() if isinstance(m, HeadSelect)]
    if not hooks:
        raise ValueError("model: no HeadSelect layer (build it with divqat.models.multihead.with_heads)")
    try:
        yield captured
    finally:
        for hook in hooks:
            hook.remove()
