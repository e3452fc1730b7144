"""Intervals on a difference of two means, for the reproduction verdict (docs/reproduction.md).

``welch_interval`` is the one the verdict uses. ``percentile_bootstrap_interval`` is kept only
as the comparison in the calibration bench (bench/calibrate_verdict.py), which measured it
calling ``different`` on two samples of one pool far more often than its nominal 5% at the
sample sizes reproduction studies have (3-6 runs a side).

Welch's interval needs quantiles of Student's t distribution with fractional degrees of
freedom. They are computed here from the regularized incomplete beta function (a continued
fraction), so the package needs no scipy; tests/analysis/test_intervals.py checks them against
scipy.stats.t.ppf, the test-only oracle.
"""

from __future__ import annotations

import math

import numpy as np

LEVEL = 0.95  # of every interval on a difference of means


def _beta_continued_fraction(a: float, b: float, x: float) -> float:
    """The continued fraction of the regularized incomplete beta function (modified Lentz)."""
    tiny, eps = 1e-300, 1e-15
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 10_000):
        m2 = 2 * m
        for num in (m * (b - m) * x / ((a + m2 - 1) * (a + m2)),
                    -(a + m) * (a + b + m) * x / ((a + m2) * (a + m2 + 1))):
            d = 1.0 + num * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + num / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < eps:
            return h
    return h


def regularized_beta(a: float, b: float, x: float) -> float:
    """I_x(a, b), the regularized incomplete beta function, for a, b > 0 and 0 <= x <= 1."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = (math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
                 + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _beta_continued_fraction(a, b, x) / a
    return 1.0 - math.exp(log_front) * _beta_continued_fraction(b, a, 1.0 - x) / b


def t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with ``df`` (> 0, possibly fractional) degrees of freedom."""
    tail = 0.5 * regularized_beta(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t > 0 else tail


def t_quantile(p: float, df: float) -> float:
    """The p-quantile of Student's t with ``df`` degrees of freedom (0 < p < 1), by bisection
    on ``t_cdf`` to 1e-12."""
    if not 0.0 < p < 1.0 or not df > 0:
        raise ValueError(f"t_quantile needs 0 < p < 1 and df > 0, not p={p}, df={df}")
    if p < 0.5:
        return -t_quantile(1.0 - p, df)
    lo, hi = 0.0, 1.0
    while t_cdf(hi, df) < p:
        lo, hi = hi, hi * 2.0
    while hi - lo > 1e-12 * max(1.0, hi):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if t_cdf(mid, df) < p else (lo, mid)
    return 0.5 * (lo + hi)


def welch_interval(ours: np.ndarray, theirs: np.ndarray,
                   level: float = LEVEL) -> tuple[float, float]:
    """Welch's interval for mean(ours) - mean(theirs): no equal-variance assumption, degrees
    of freedom by Welch-Satterthwaite. Needs at least two values a side. Two sides without any
    spread give the zero-width interval at their difference."""
    x, y = np.asarray(ours, float), np.asarray(theirs, float)
    if len(x) < 2 or len(y) < 2:
        raise ValueError("Welch's interval needs at least two values on each side")
    diff = float(x.mean() - y.mean())
    vx, vy = x.var(ddof=1) / len(x), y.var(ddof=1) / len(y)
    se2 = vx + vy
    if se2 == 0.0:
        return diff, diff
    df = se2 * se2 / (vx * vx / (len(x) - 1) + vy * vy / (len(y) - 1))
    half = t_quantile((1.0 + level) / 2.0, df) * math.sqrt(se2)
    return diff - half, diff + half


def percentile_bootstrap_interval(ours: np.ndarray, theirs: np.ndarray, resamples: int,
                                  rng: np.random.Generator,
                                  level: float = LEVEL) -> tuple[float, float]:
    """Percentile-bootstrap interval of mean(ours) - mean(theirs): each side resampled with
    replacement, independently. The verdict's interval before Welch's; the calibration bench
    shows why it was replaced (too narrow at small n)."""
    x, y = np.asarray(ours, float), np.asarray(theirs, float)
    a = x[rng.integers(0, len(x), (resamples, len(x)))].mean(axis=1)
    b = y[rng.integers(0, len(y), (resamples, len(y)))].mean(axis=1)
    lo, hi = np.quantile(a - b, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)
