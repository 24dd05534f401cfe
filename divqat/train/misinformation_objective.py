"""Trained-in misinformation on an offline outlier set (the ``misinform`` objective of
``divqat train --method divqat``; docs/science.md §8, "Aimed at labels").

Adaptive misinformation (Kariyappa & Qureshi, "Defending Against Model Stealing Attacks with
Adaptive Misinformation", CVPR 2020) trains a separate misinformation model with the loss
-log(1 - p_k(x)), k the true class, which moves probability mass away from the correct answer,
and serves it on low-confidence queries. Here the quantized model itself learns it, on an
outlier set and against f_fp's own answer, so one int8 graph answers in-distribution inputs
like f_fp and out-of-distribution ones elsewhere, input-dependently. With s = f_q(x),
t = f_fp(x) on the real batch (x, y), s~ = f_q(x~), t~ = f_fp(x~) on an equally large batch of
outliers x~ (:mod:`divqat.data.outliers`), q~ = softmax(s~), k = argmax t~:

    L = CE(y, s) + distill * KL_T(t, s) + alpha * mean_x~ [ -log(1 - q~_k) ]

-log(1 - q~_k) = logsumexp_j s~_j - logsumexp_{j != k} s~_j, computed in that form (no
cancellation when q~_k is near 1). KL_T is the DivQAT trainer's (temperature and direction).
"""
import torch.nn.functional as F

from divqat.ops import div_kl_loss
from divqat.train.exposure import forward_pair, proxy_batch

__all__ = ["away_loss", "misinformation_loss", "misinform_step"]


def away_loss(logits, cls):
    """-log(1 - softmax(logits)[cls]) per row: the loss that moves mass away from class ``cls``."""
    others = logits.masked_fill(F.one_hot(cls, logits.shape[-1]).bool(), float("-inf"))
    return logits.logsumexp(-1) - others.logsumexp(-1)


def misinformation_loss(student_logits, teacher_logits, target, outlier_student, outlier_teacher, alpha,
                        temperature=1.0, direction="forward", distill=0.0):
    """The ``misinform`` objective (module docstring) from the logits of the real batch and of
    the outliers (``teacher_logits`` may be None for ``distill=0``). Returns a 0-d tensor."""
    loss = F.cross_entropy(student_logits, target)
    if distill:
        loss = loss + distill * div_kl_loss(student_logits, teacher_logits, temperature, "batchmean", direction)
    return loss + alpha * away_loss(outlier_student, outlier_teacher.argmax(-1)).mean()


def misinform_step(objective, teacher, alpha_at, temperature, direction):
    """A :func:`divqat.train.loop.fit` step minimising the ``misinform`` objective; outliers
    from ``objective.extra_source``, ``alpha_at(epochs_done)`` the (warmed) weight."""

    def step(model, x, y, epochs_done):
        outliers = proxy_batch(x, y, objective.proxy_transforms, objective.extra_source)
        logits, outlier_logits, t_real, t_outlier = forward_pair(model, teacher, x, outliers,
                                                                 teach_real=bool(objective.distill))
        loss = misinformation_loss(logits, t_real, y, outlier_logits, t_outlier, alpha_at(epochs_done), temperature,
                                   direction, objective.distill)
        return {"loss": loss, "ce": F.cross_entropy(logits.detach(), y)}

    return step
