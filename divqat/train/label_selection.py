"""Hyperparameter selection for the label-aimed objectives, on the victim's own held-out data and
on a held-out outlier split only, never on an attacker's query set (docs/guide/label-only.md):

- ``heldout_top1``: the int8 victim's top-1 on in-distribution images it was not trained on;
- ``outlier_change``: the share of held-out outliers (:mod:`divqat.data.outliers`, another seed
  than the training set's) whose int8 answer differs from f_fp's argmax;
- ``outlier_top_share``: the share of those outliers answered with the most frequent class
  (a sink a label-only thief can learn, reported, not selected on).

The rule (:func:`select_setting`): among a formulation's candidates whose held-out top-1 is at
most ``max_drop`` points below QAT's, the one with the largest ``outlier_change``, provided it
reaches ``min_change``; None when no candidate qualifies.
"""
import torch

from divqat.data.outliers import load_outliers
from divqat.train.artifacts import load_victim

__all__ = ["screen_metrics", "select_setting", "HELDOUT_OUTLIER_SEED", "HELDOUT_OUTLIERS"]

HELDOUT_OUTLIER_SEED = 1  # the training set of outliers is seed 0
HELDOUT_OUTLIERS = 2000


@torch.no_grad()
def screen_metrics(run_dir, teacher_dir, images, labels):
    """The selection metrics (module docstring) of the int8 victim in ``run_dir`` against the
    float teacher in ``teacher_dir``, on held-out ``images`` (N, C, S, S) with ``labels``."""
    victim, teacher = load_victim(run_dir, "int8"), load_victim(teacher_dir, "float")
    outliers = load_outliers("glyphs", HELDOUT_OUTLIERS, images.shape[1], images.shape[-1], HELDOUT_OUTLIER_SEED)
    answers = victim(outliers).argmax(-1)
    counts = torch.bincount(answers, minlength=int(victim.meta["num_classes"]))
    return {"heldout_top1": 100 * (victim(images).argmax(-1) == labels).double().mean().item(),
            "outlier_change": 100 * (answers != teacher(outliers).argmax(-1)).double().mean().item(),
            "outlier_top_share": 100 * counts.max().item() / len(answers)}


def select_setting(candidates, qat_top1, max_drop=0.3, min_change=50.0):
    """The candidate (a dict with ``heldout_top1`` and ``outlier_change``, in points) the rule
    picks (module docstring), or None."""
    floor = qat_top1 - max_drop - 1e-9  # a drop of exactly max_drop points qualifies despite float rounding
    eligible = [c for c in candidates if c["heldout_top1"] >= floor and c["outlier_change"] >= min_change]
    return max(eligible, key=lambda c: c["outlier_change"], default=None)
