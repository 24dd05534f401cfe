"""Diverse heads in one graph (the ``diverse`` objective of ``divqat train --method divqat``;
docs/science.md §8, "Aimed at labels"), after EDM (Kariyappa, Prakash & Qureshi, "Protecting
DNNs from Theft using an Ensemble of Diverse Models", ICLR 2021).

The student is f_q with K heads on one quantized backbone (:mod:`divqat.models.multihead`;
s_k its head-k logits, the answer the head picked by a hash of head 0's answer). The heads
agree with f_fp in distribution and disagree with each other on outliers: with (x, y) the
training batch, t = f_fp(x), x~ an equally large batch of outliers (:mod:`divqat.data.outliers`),
p~_k = softmax(s_k(x~)) and CS(a, b) = a . b / (|a| |b|),

    L = 1/K sum_k [ CE(y, s_k(x)) + distill * KL_T(t, s_k(x)) ] + alpha * mean_x~ max_{a<b} CS(p~_a, p~_b)

the last term is EDM's coherence of the ensemble's outputs, minimised. KL_T is the DivQAT
trainer's (temperature and direction).
"""
import torch
import torch.nn.functional as F

from divqat.models.multihead import capture_heads
from divqat.ops import div_kl_loss
from divqat.train.exposure import forward_pair, proxy_batch

__all__ = ["coherence", "diverse_loss", "diverse_step"]


def coherence(head_logits):
    """max_{a<b} CS(softmax(s_a), softmax(s_b)) per row of ``head_logits`` (N, K, C)."""
    p = F.normalize(torch.softmax(head_logits, dim=-1), dim=-1)
    cosine = p @ p.transpose(1, 2)
    a, b = torch.triu_indices(p.shape[1], p.shape[1], offset=1, device=p.device)
    return cosine[:, a, b].amax(dim=-1)


def diverse_loss(head_logits, teacher_logits, target, outlier_head_logits, alpha, temperature=1.0,
                 direction="forward", distill=0.0):
    """The ``diverse`` objective (module docstring) from every head's logits on the real batch
    (N, K, C) and on the outliers (M, K, C) (``teacher_logits`` may be None for ``distill=0``).
    Returns a 0-d tensor."""
    n, k, c = head_logits.shape
    flat = head_logits.reshape(n * k, c)
    loss = F.cross_entropy(flat, target.repeat_interleave(k))
    if distill:
        loss = loss + distill * div_kl_loss(flat, teacher_logits.repeat_interleave(k, dim=0), temperature,
                                            "batchmean", direction)
    return loss + alpha * coherence(outlier_head_logits).mean()


def diverse_step(objective, teacher, alpha_at, temperature, direction):
    """A :func:`divqat.train.loop.fit` step minimising the ``diverse`` objective on a model
    with heads; outliers from ``objective.extra_source``, ``alpha_at(epochs_done)`` the weight."""

    def step(model, x, y, epochs_done):
        outliers = proxy_batch(x, y, objective.proxy_transforms, objective.extra_source)
        with capture_heads(model) as captured:
            logits, _, t_real, _ = forward_pair(model, teacher, x, outliers, teach_real=bool(objective.distill),
                                                teach_extra=False)
        heads, outlier_heads = captured[-1].split([len(x), len(outliers)])
        loss = diverse_loss(heads, t_real, y, outlier_heads, alpha_at(epochs_done), temperature, direction,
                            objective.distill)
        return {"loss": loss, "ce": F.cross_entropy(logits.detach(), y)}

    return step
