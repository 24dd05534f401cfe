"""The answered-class histogram test: the key's answered classes against the prior.

With counts n_k of the classes the victim answered to the key (n queries) and the prior pi_k,
the victim's answered-class frequencies on held-out in-distribution data (:mod:`.calibration`,
Laplace-smoothed so no class has probability 0), the statistic is

    KL(n / n || pi) = sum_k (n_k / n) log((n_k / n) / pi_k)

checked at every query once n >= ``min_count``; the alarm is KL > ``threshold``. The
G-statistic 2 n KL is asymptotically chi^2 with C - 1 degrees of freedom while the key's
classes follow pi (Wilks 1938), so a fixed KL threshold eps has a false-alarm probability at
n queries of about P(chi^2_{C-1} > 2 n eps), largest at n = min_count (10 classes, eps = 0.2,
min_count = 200: 1e-12), and unlike a fixed p-value it does not flag an honest client for
small deviations that become significant over a long stream.
"""
import numpy as np

from divqat.checks import check_int, check_real
from divqat.detection.base import Monitor

__all__ = ["ClassHistogram", "histogram_kl"]


def histogram_kl(counts, prior):
    """KL(counts / sum(counts) || prior) in nats (0 log 0 = 0)."""
    q = np.asarray(counts, dtype=np.float64)
    q = q / q.sum()
    nz = q > 0
    return float((q[nz] * np.log(q[nz] / np.asarray(prior, dtype=np.float64)[nz])).sum())


class ClassHistogram(Monitor):
    """KL of the answered-class histogram from ``prior`` (see the module docstring)."""

    name = "classes"

    def __init__(self, prior, threshold=0.2, min_count=200):
        self.prior = np.asarray(prior, dtype=np.float64)
        if self.prior.ndim != 1 or not (self.prior > 0).all() or abs(self.prior.sum() - 1) > 1e-6:
            raise ValueError("calibration prior must be a probability vector with no zero entry")
        self.threshold = check_real("--classes-kl", threshold, 0, low_open=True)
        self.min_count = check_int("--classes-min-count", min_count, 1)

    def _initial(self):
        return {"counts": np.zeros(len(self.prior), np.int64)}

    def observe(self, state, x, probs):
        state["counts"][int(np.argmax(probs))] += 1
        if int(state["n"]) < self.min_count:
            return None
        kl = histogram_kl(state["counts"], self.prior)
        return kl if kl > self.threshold else None
