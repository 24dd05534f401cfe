"""What a query-set thief does with the answers it bought: the training targets (the returned
vectors, their argmax, or sharpened vectors), the histogram of the labels it was answered, and
the surrogate trained on them with its record.

The answered-label histogram (docs/science.md §10) counts, for every answer the thief received,
the argmax of that answer: ``{"0": n_0, ..., "K-1": n_(K-1)}``, summing to the answers received
(cached ones included). A defense that relabels the thief's queries onto a few sink classes
shows there.
"""
from dataclasses import asdict

import torch
import torch.nn.functional as F

from divqat.attacks.common import attack_record
from divqat.attacks.surrogate import train_surrogate

__all__ = ["answered_histogram", "sharpen_answers", "answer_targets", "train_on_answers"]


def answered_histogram(answers, num_classes):
    """Per-class counts of ``answers.argmax(dim=1)``, as ``{"class": count}`` over all classes."""
    counts = torch.bincount(answers.argmax(dim=1), minlength=num_classes)
    return {str(k): int(n) for k, n in enumerate(counts.tolist())}


def sharpen_answers(answers, tau):
    """y^(1/tau) renormalised per row (computed as softmax(log y / tau), zeros stay zero)."""
    return torch.softmax(answers.clamp_min(0).log() / tau, dim=1)


def answer_targets(answers, hard_labels, sharpen=None):
    """The vectors a surrogate trains on: one-hot argmax (``hard_labels``), the answers, or the
    answers sharpened with temperature ``sharpen``."""
    if hard_labels:
        return F.one_hot(answers.argmax(dim=1), answers.shape[1]).float()
    return answers if sharpen is None else sharpen_answers(answers, sharpen)


def train_on_answers(name, blackbox, surrogate, x, targets, config, *, budget, seed, queries_used, received,
                     progress=True, weights=None, **params):
    """Train ``surrogate`` on ``(x, targets)`` (optionally weighted per example, see
    :func:`~divqat.attacks.surrogate.train_surrogate`) and return its record: the attack's
    ``params``, the training config, the final loss and the histogram of ``received`` (every
    answer the thief got, (N, K))."""
    history = train_surrogate(surrogate, x, targets, config, progress=progress, desc=name, weights=weights)
    return attack_record(name, blackbox, surrogate, budget, seed, queries_used, train=asdict(config), **params,
                         final_train_loss=history[-1],
                         answered_hist=answered_histogram(received, blackbox.num_classes))
