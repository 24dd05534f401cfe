"""PRADA (Juuti et al., "PRADA: Protecting against DNN Model Stealing Attacks", EuroS&P 2019).

Per key and predicted class c, a growing set G_c of earlier queries. Each new query x of class c:

    d = min_{g in G_c} ||x - g||_2          (pixel space, inputs in [0, 1]); appended to D
    if d > T_c: x joins G_c, d joins D_c, T_c = max(T_c, mean(D_c) - std(D_c))

(the first query of a class only starts G_c). Every ``every`` (10) queries, once D holds more
than ``min_distances`` (100) values, D without its outliers (beyond 3 standard deviations of
its mean) is tested with the Shapiro-Wilk statistic W (scipy.stats.shapiro); the alarm is
W < delta. Natural images give roughly normal distances; synthetic queries (JBDA's small
perturbations of a few seeds, generator samples) do not.

Bounds (the paper keeps everything): G (all classes together) stores at most ``max_stored``
queries, as float16 (1,000 28x28 queries: 1.5 MB per key); once full, no query joins it and
distances are taken to what it holds. D keeps the last ``window`` (5,000) distances, the most
scipy's W is computed for without a warning.

D pools the classes, as in the paper. Where one class's distances sit far below the others'
(the digit 1 of MNIST), the pooled D of an honest client is a mixture whose W drifts with that
class's share: hence the long window and delta's default of 0.90 (docs/guide/detection.md).
"""
import numpy as np
from scipy.stats import shapiro

from divqat.checks import check_int, check_real
from divqat.detection.base import Monitor

__all__ = ["Prada", "prada_w"]


def prada_w(distances):
    """Shapiro-Wilk W of ``distances`` after removing those beyond 3 standard deviations of the mean."""
    d = np.asarray(distances, dtype=np.float64)
    kept = d[np.abs(d - d.mean()) <= 3 * d.std()]
    if len(kept) < 3 or np.ptp(kept) == 0:
        return 0.0  # a constant stream (a burst of duplicates) is as far from normal as it gets
    return float(shapiro(kept).statistic)


class Prada(Monitor):
    """PRADA's distance test (see the module docstring); ``num_classes`` of the victim."""

    name = "prada"

    def __init__(self, num_classes, dim, delta=0.90, max_stored=1000, window=5000, min_distances=100, every=10):
        self.num_classes, self.dim = num_classes, dim
        self.delta = check_real("--prada-delta", delta, 0, 1, low_open=True)
        self.max_stored = check_int("--prada-stored", max_stored, 1)
        self.window = check_int("--prada-window", window, min_distances + 1)
        self.min_distances, self.every = min_distances, every

    def _initial(self):
        return {"stored": np.zeros((0, self.dim), np.float16), "stored_class": np.zeros(0, np.int16),
                "class_distances": np.zeros(0, np.float32), "thresholds": np.zeros(self.num_classes),
                "distances": np.zeros(0, np.float32)}

    def observe(self, state, x, probs):
        c = int(np.argmax(probs))
        mine = state["stored_class"] == c
        if not mine.any():
            self._store(state, x, c, None)
        else:
            d = float(np.sqrt(((state["stored"][mine].astype(np.float32) - x) ** 2).sum(axis=1)).min())
            state["distances"] = np.append(state["distances"], np.float32(d))[-self.window:]
            if d > state["thresholds"][c]:
                self._store(state, x, c, d)
        if int(state["n"]) % self.every or len(state["distances"]) <= self.min_distances:
            return None
        w = prada_w(state["distances"])
        return w if w < self.delta else None

    def _store(self, state, x, c, d):
        if len(state["stored"]) >= self.max_stored:
            return
        state["stored"] = np.concatenate([state["stored"], x[None].astype(np.float16)])
        state["stored_class"] = np.append(state["stored_class"], np.int16(c))
        state["class_distances"] = np.append(state["class_distances"], np.float32(np.nan if d is None else d))
        if d is not None:
            mine = state["class_distances"][state["stored_class"] == c]
            mine = mine[~np.isnan(mine)].astype(np.float64)
            state["thresholds"][c] = max(state["thresholds"][c], float(mine.mean() - mine.std()))
