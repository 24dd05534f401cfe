"""The batch plumbing of the objectives that see inputs beside the training batch (proxies or
outliers; docs/science.md §8): where those inputs come from, and one forward pass of f_q over
the real batch and them together, so batch-norm and observer statistics see both, with f_fp
run only on the parts a loss reads."""
import torch

from divqat.data.outliers import OUTLIER_SETS, outlier_batch
from divqat.train.proxies import synthesize_proxies

PROXY_SOURCES = ("transforms",) + OUTLIER_SETS


def proxy_batch(x, y, transforms, source="transforms"):
    """One extra input per row of ``x``: a proxy synthesised from the batch (``"transforms"``,
    :func:`divqat.train.proxies.synthesize_proxies`) or an image of an offline outlier set
    (:data:`divqat.data.outliers.OUTLIER_SETS`, :func:`~divqat.data.outliers.outlier_batch`)."""
    if source == "transforms":
        return synthesize_proxies(x, y, transforms)
    return outlier_batch(x, source)


def forward_pair(model, teacher, x, extra, teach_real=True, teach_extra=True):
    """``(f_q(x), f_q(extra), f_fp(x) or None, f_fp(extra) or None)``: f_q in one batch, the
    frozen f_fp without gradient and only on the parts asked for."""
    logits, extra_logits = model(torch.cat([x, extra])).split([len(x), len(extra)])
    parts = [x] * teach_real + [extra] * teach_extra
    t_real = t_extra = None
    if parts:
        with torch.no_grad():
            t_all = teacher(torch.cat(parts)).split([len(p) for p in parts])
        t_real = t_all[0] if teach_real else None
        t_extra = t_all[-1] if teach_extra else None
    return logits, extra_logits, t_real, t_extra
