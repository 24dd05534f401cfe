"""Statistics of seeded experiments (docs/science.md §9): mean ± sample standard deviation, and
paired comparisons with a Student-t confidence interval, an optional bootstrap interval and the
sign count.

A comparison pairs a treatment with its baseline on the same seeds (the same teacher, query
sample and surrogate initialisation). With per-seed differences d_i = treatment_i - baseline_i,
i = 1..n, the paired mean difference is d̄ = (1/n) Σ d_i, its sample standard deviation
s = sqrt(Σ (d_i - d̄)² / (n - 1)), and the 95 % interval is

    d̄ ± t_{0.975, n-1} · s / sqrt(n)

(Student 1908; the t quantile is computed here, :func:`t_quantile`, from the regularized
incomplete beta function, Numerical Recipes §6.4). An effect is *established* when the
interval excludes 0; otherwise it is *not separable from noise at n = N*. The sign count is
how many seeds have d_i > 0, < 0 and = 0. The bootstrap interval (Efron and Tibshirani 1993,
percentile method) resamples the n differences with replacement.
"""
import math
import random
from dataclasses import asdict, dataclass

CONFIDENCE = 0.95


def mean_sd(values):
    """(mean, sample standard deviation with n - 1 in the denominator); the deviation is None
    for a single value (it is undefined, not 0)."""
    n = len(values)
    if n == 0:
        raise ValueError("mean_sd: no values")
    mean = math.fsum(values) / n
    if n == 1:
        return mean, None
    return mean, math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1))


def _betacf(a, b, x):
    """Continued fraction of the incomplete beta function (modified Lentz, Numerical Recipes §6.4)."""
    tiny, qab, qap, qam = 1e-300, a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 1000):
        m2 = 2 * m
        for aa in (m * (b - m) * x / ((qam + m2) * (a + m2)), -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))):
            d = 1.0 + aa * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + aa / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < 1e-15:
            break
    return h


def betainc(a, b, x):
    """The regularized incomplete beta function I_x(a, b), 0 <= x <= 1."""
    if not 0.0 <= x <= 1.0:
        raise ValueError(f"betainc: x must be in [0, 1], got {x}")
    if x in (0.0, 1.0):
        return x
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def t_cdf(t, dof):
    """P(T <= t) for Student's t with ``dof`` degrees of freedom:
    1 - I_{dof/(dof+t²)}(dof/2, 1/2) / 2 for t >= 0, by symmetry below."""
    if dof <= 0:
        raise ValueError(f"t_cdf: dof must be > 0, got {dof}")
    tail = 0.5 * betainc(dof / 2.0, 0.5, dof / (dof + t * t))
    return 1.0 - tail if t >= 0 else tail


def t_quantile(p, dof):
    """The p-quantile of Student's t with ``dof`` degrees of freedom (bisection on :func:`t_cdf`
    to 1e-12)."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"t_quantile: p must be in (0, 1), got {p}")
    if p < 0.5:
        return -t_quantile(1.0 - p, dof)
    lo, hi = 0.0, 1.0
    while t_cdf(hi, dof) < p:
        lo, hi = hi, 2.0 * hi
    while hi - lo > 1e-12 * max(1.0, hi):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if t_cdf(mid, dof) < p else (lo, mid)
    return 0.5 * (lo + hi)


def t_interval(diffs, confidence=CONFIDENCE):
    """(low, high) of the Student-t interval of the mean of ``diffs`` (n - 1 dof), or
    (None, None) for fewer than two values."""
    mean, sd = mean_sd(diffs)
    if sd is None:
        return None, None
    half = t_quantile(0.5 + confidence / 2.0, len(diffs) - 1) * sd / math.sqrt(len(diffs))
    return mean - half, mean + half


def bootstrap_interval(diffs, resamples=10000, confidence=CONFIDENCE, seed=0):
    """Percentile bootstrap interval of the mean of ``diffs``: ``resamples`` means of n draws
    with replacement (Python's ``random`` seeded with ``seed``), cut at the (1 ± confidence)/2
    quantiles."""
    if resamples < 1:
        raise ValueError(f"bootstrap_interval: resamples must be >= 1, got {resamples}")
    rng, n = random.Random(seed), len(diffs)
    means = sorted(math.fsum(rng.choices(diffs, k=n)) / n for _ in range(resamples))
    lo_q, hi_q = (1.0 - confidence) / 2.0, (1.0 + confidence) / 2.0
    return means[int(lo_q * (resamples - 1))], means[int(math.ceil(hi_q * (resamples - 1)))]


def sign_count(diffs):
    """(number > 0, number < 0, number == 0) of ``diffs``."""
    return sum(d > 0 for d in diffs), sum(d < 0 for d in diffs), sum(d == 0 for d in diffs)


@dataclass
class Paired:
    """One paired comparison: per-seed values, differences and their statistics."""

    seeds: list
    treatment: list
    baseline: list
    diffs: list
    n: int
    mean_diff: float
    sd_diff: float
    ci_low: float
    ci_high: float
    higher: int
    lower: int
    ties: int
    boot_low: float = None
    boot_high: float = None

    @property
    def established(self):
        """True when the t interval excludes 0 (needs n >= 2)."""
        return self.ci_low is not None and (self.ci_low > 0 or self.ci_high < 0)

    def verdict(self):
        """``established (higher|lower)``, ``not separable from noise at n = N``, ``no
        difference in any of N seeds``, or, for one seed, ``n = 1: no interval``."""
        if self.ci_low is None:
            return "n = 1: no interval"
        if self.ties == self.n:
            return f"no difference in any of {self.n} seeds"
        if self.established:
            return f"established ({'higher' if self.mean_diff > 0 else 'lower'})"
        return f"not separable from noise at n = {self.n}"

    def signs(self):
        """e.g. ``9 of 10 seeds higher`` (the majority side), ``1 of 3 seeds higher, 1 equal``
        with ties, ``all 10 seeds equal`` when no seed moves."""
        if self.ties == self.n:
            return f"all {self.n} seeds equal"
        word, count = ("higher", self.higher) if self.higher >= self.lower else ("lower", self.lower)
        return f"{count} of {self.n} seeds {word}" + (f", {self.ties} equal" if self.ties else "")

    def as_dict(self):
        return {**asdict(self), "established": self.established, "verdict": self.verdict(), "signs": self.signs()}


def paired(seeds, treatment, baseline, bootstrap=0, confidence=CONFIDENCE):
    """The :class:`Paired` comparison of ``treatment`` and ``baseline`` values listed in the
    order of ``seeds`` (one of each per seed); ``bootstrap`` > 0 adds a percentile bootstrap
    interval from that many resamples."""
    if not (len(seeds) == len(treatment) == len(baseline)) or not seeds:
        raise ValueError(f"paired: need one treatment and one baseline value per seed, got "
                         f"{len(seeds)} seeds, {len(treatment)} and {len(baseline)} values")
    diffs = [t - b for t, b in zip(treatment, baseline)]
    mean, sd = mean_sd(diffs)
    low, high = t_interval(diffs, confidence)
    higher, lower, ties = sign_count(diffs)
    out = Paired(list(seeds), list(treatment), list(baseline), diffs, len(diffs), mean, sd, low, high,
                 higher, lower, ties)
    if bootstrap and len(diffs) > 1:
        out.boot_low, out.boot_high = bootstrap_interval(diffs, bootstrap, confidence)
    return out
