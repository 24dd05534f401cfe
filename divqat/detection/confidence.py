"""The out-of-distribution rate test: a Bernoulli CUSUM (Page, Biometrika 1954) on the victim's
own confidence.

A query is *unsure* when the victim's maximum probability is below tau, the ``quantile``
(default 5 %) of the maximum probabilities on held-out in-distribution data; the rate p0 of
unsure answers there is measured by calibration (:mod:`.calibration`). Under attack the rate
is p1 = ``ratio`` * p0. With x_n = 1 for an unsure query and 0 otherwise,

    S_0 = 0,  S_n = max(0, S_{n-1} + x_n log(p1/p0) + (1 - x_n) log((1-p1)/(1-p0)))

and the alarm is S_n > h (``threshold``). Lorden (Ann. Math. Stat. 1971): while the rate is
p0, the mean number of queries before a false alarm is at least e^h (h = 12: 160,000); a
stream at rate p1 is flagged after about h / KL(p1 || p0) queries.
"""
import math

import numpy as np

from divqat.checks import check_real
from divqat.detection.base import Monitor

__all__ = ["ConfidenceCusum", "cusum_steps"]


def cusum_steps(p0, p1):
    """The CUSUM's increments ``(unsure, sure)``: log(p1/p0) and log((1-p1)/(1-p0))."""
    return math.log(p1 / p0), math.log((1 - p1) / (1 - p0))


class ConfidenceCusum(Monitor):
    """CUSUM of unsure answers (max probability < ``tau``) at in-distribution rate ``p0`` against ``ratio`` * p0."""

    name = "ood"

    def __init__(self, tau, p0, ratio=4.0, threshold=12.0):
        self.tau = check_real("calibration tau", tau, 0, 1)
        self.p0 = check_real("calibration rate", p0, 0, 1, low_open=True)
        self.ratio = check_real("--ood-ratio", ratio, 1, low_open=True)
        if self.ratio * self.p0 >= 1:
            raise ValueError(f"--ood-ratio must be < 1/p0 = {1 / self.p0:.4g} (p0 = {self.p0:.4g}, the calibrated "
                             f"in-distribution rate), got {ratio!r}")
        self.threshold = check_real("--ood-threshold", threshold, 0, low_open=True)
        self.steps = cusum_steps(self.p0, self.ratio * self.p0)

    def _initial(self):
        return {"cusum": np.float64(0.0)}

    def observe(self, state, x, probs):
        step = self.steps[0] if float(np.max(probs)) < self.tau else self.steps[1]
        state["cusum"] = np.float64(max(0.0, float(state["cusum"]) + step))
        return float(state["cusum"]) if state["cusum"] > self.threshold else None
