"""S-Aware Gating: the query threshold gamma of one step (docs/spec.md §4). Pure numpy.

``sag_details(u, r, k, config, rng)`` follows §4 step by step and returns everything it
computed (the figure ``sag.pdf`` draws it); ``sag_threshold`` returns only gamma. Both are pure
functions of their inputs and the generator's state. The fast engine computes the same gamma
with ``fast.sag.sag_threshold_fast`` (bound by tests/fast/test_fast_sag.py); tests/algorithm/test_sag.py
checks this module against an oracle built from scikit-learn.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from ..settings import MODES, RunSettings
from .logistic import logistic_fit


@dataclass(frozen=True)
class SagConfig:
    """The settings SAG reads (§4.1); ``from_settings`` takes them from a run's settings."""

    mode: str
    s_des: float
    p_rand: float
    normalization: bool
    imputation: bool
    n_min: int
    n_rep: int

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"SAG mode must be one of {', '.join(MODES)}, not {self.mode!r}")

    @classmethod
    def from_settings(cls, settings: RunSettings) -> "SagConfig":
        return cls(settings.mode, settings.s_des, settings.p_rand, settings.normalization,
                   settings.imputation, settings.n_min, settings.n_rep)


@dataclass
class SagDetails:
    """Everything one SAG call computed (for plots and tests)."""

    gamma: float
    fallback: bool
    window_start: int  # index of the first window sample in the seen arrays
    k_last: float
    u_window: np.ndarray
    k_window: np.ndarray
    u_norm: np.ndarray
    lin_coef: tuple[float, float]  # (a, b) of u ~ a + b k
    logit_coef: Optional[tuple[float, float]]  # (a, b) of P(f=+1|u') = sigmoid(a + b u')
    f_known_mask: np.ndarray  # window samples with a known label (r != 0)
    labels: np.ndarray  # (n_rep, n) imputed labels in {+1, -1} (known-only without imputation)
    gammas: np.ndarray  # (n_rep,) one gamma per imputation (length 1 without imputation)


def relevant_label(mode: str) -> int:
    """§4.1: the reward the window must hold n_min of: a known success (+1) in specificity
    mode, a known failure (-1) otherwise."""
    return 1 if mode == "specificity" else -1


def fallback_gamma(u: np.ndarray, config: SagConfig) -> float:
    """§4.2: without a window, a quantile of every seen u."""
    q = config.s_des if config.mode == "specificity" else 1.0 - config.s_des
    return float(np.quantile(u, q))


# --------------------------------------------------------------------------- §4.2 window


def window_start(r: np.ndarray, k: np.ndarray, relevant: int, n_min: int) -> Optional[int]:
    """Start index of the smallest window W(w) = {i: k_i >= k_last - w}, w = 0, 1, 2, ...,
    holding at least ``n_min`` samples with r = relevant and one with r = -relevant; None if
    no w does. (k never decreases along the stream, so a window is a suffix of the arrays.)"""
    if len(k) == 0:
        return None
    r, k = np.asarray(r), np.asarray(k)
    k_last = int(k[-1])
    for w in range(k_last - int(k[0]) + 1):
        inside = k >= k_last - w
        if np.sum(r[inside] == relevant) >= n_min and np.sum(r[inside] == -relevant) >= 1:
            return int(np.argmax(inside))
    return None


# --------------------------------------------------------------------------- §4.3-4.4 fits


def linear_fit(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """§4.3: least squares y ~ a + b x; b = 0 when x is constant."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    dx = x - x.mean()
    sxx = float(dx @ dx)
    b = float(dx @ (y - y.mean())) / sxx if sxx > 0 else 0.0
    return float(y.mean() - b * x.mean()), b


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(z, dtype=np.float64)))


# --------------------------------------------------------------------------- §4.5 mode rules


def roc_curve(scores: np.ndarray, f: np.ndarray):
    """Thresholds t = [+inf, distinct scores descending] and, at each t, the number of
    failures (f = +1) and of successes (f = -1) with score >= t (sklearn's roc_curve with
    drop_intermediate=False, as counts)."""
    order = np.argsort(-scores, kind="stable")
    s, failure = scores[order], f[order] == 1
    last_of_value = np.r_[s[1:] != s[:-1], True]  # the last sample of each distinct score
    failures = np.cumsum(failure)[last_of_value]
    queried = np.flatnonzero(last_of_value) + 1
    return (np.r_[np.inf, s[last_of_value]], np.r_[0, failures],
            np.r_[0, queried - failures])


def success_curve(scores: np.ndarray, f: np.ndarray):
    """§4.5 success mode: the curve built as the original code builds it, quirks included.
    Walk the samples by ascending score from the entry (threshold 0.0, success 1.0), counting
    the failures passed; a sample whose score equals the last entry's threshold overwrites its
    success, any other appends (score, 1 - failures / n). Returned reversed."""
    thresholds, success = [0.0], [1.0]
    passed, n = 0, len(scores)
    for i in np.argsort(scores, kind="stable"):
        passed += int(f[i] == 1)
        if scores[i] == thresholds[-1]:
            success[-1] = 1.0 - passed / n
        else:
            thresholds.append(float(scores[i]))
            success.append(1.0 - passed / n)
    return np.array(thresholds[::-1]), np.array(success[::-1])


def mode_gamma(scores: np.ndarray, f: np.ndarray, config: SagConfig) -> float:
    """§4.5: gamma for labels f in {+1, -1} and scores, by the rule of the mode."""
    scores = np.asarray(scores, dtype=np.float64)
    p, s_des = config.p_rand, config.s_des
    if config.mode == "success":
        thresholds, success = success_curve(scores, f)
        return float(np.interp(s_des, success + p * (1.0 - success), thresholds))
    thresholds, failures, successes = roc_curve(scores, f)
    with np.errstate(invalid="ignore", divide="ignore"):
        if config.mode == "sensitivity":
            tpr = failures / failures[-1]
            return float(np.interp(s_des, tpr + p * (1.0 - tpr), thresholds))
        tnr = 1.0 - successes / successes[-1]
        return float(np.interp(s_des, ((1.0 - p) * tnr)[::-1], thresholds[::-1]))


# --------------------------------------------------------------------------- SAG


def sag_details(u: np.ndarray, r: np.ndarray, k: np.ndarray, config: SagConfig,
                rng: np.random.Generator) -> SagDetails:
    """One SAG call over all seen samples (u, r, k; the current batch included with r = 0)."""
    u, r, k = np.asarray(u, dtype=np.float64), np.asarray(r), np.asarray(k)
    k_last = float(k[-1]) if len(k) else 0.0
    # §4.1-4.2: the window, or the fallback quantile when there is none.
    start = window_start(r, k, relevant_label(config.mode), config.n_min)
    if start is None:
        gamma = fallback_gamma(u, config)
        empty = np.empty(0)
        return SagDetails(gamma, True, len(u), k_last, empty, empty, empty, (0.0, 0.0), None,
                          np.empty(0, bool), np.empty((0, 0)), np.array([gamma]))
    u_w, k_w, r_w = u[start:], k[start:].astype(np.float64), r[start:]
    # §4.3: normalization, u' = u - (a + b k) + (a + b k_last).
    a, b = linear_fit(k_w, u_w) if config.normalization else (0.0, 0.0)
    u_n = u_w - (a + b * k_w) + (a + b * k_last) if config.normalization else u_w
    # §4.4: failure labels; imputed n_rep times where unknown, or only the known ones.
    f = -r_w.astype(np.int8)  # +1 failure, -1 success, 0 unknown
    known = f != 0
    logit = None
    if config.imputation:
        logit = logistic_fit(u_n[known], (f[known] == 1).astype(np.float64))
        unknown = np.flatnonzero(~known)
        p_fail = sigmoid(logit[0] + logit[1] * u_n[unknown])
        labels = np.empty((config.n_rep, len(f)), dtype=np.int8)
        for j in range(config.n_rep):
            labels[j] = f
            labels[j, unknown] = np.where(p_fail > rng.random(len(unknown)), 1, -1)
        gammas = np.array([mode_gamma(u_n, row, config) for row in labels])  # §4.5
        gamma = float(np.median(gammas))
    else:
        labels = f[known][None, :]
        gammas = np.array([mode_gamma(u_n[known], labels[0], config)])  # §4.5
        gamma = float(gammas[0])
    if np.isnan(gamma):  # §4.6
        gamma = float(np.nanmin(u_n))
    return SagDetails(gamma, False, start, k_last, u_w, k_w, u_n, (a, b), logit, known,
                      labels, gammas)


def sag_threshold(u: np.ndarray, r: np.ndarray, k: np.ndarray, config: SagConfig,
                  rng: np.random.Generator) -> float:
    """The SAG threshold gamma (may be +inf: no active queries, §4.6)."""
    return sag_details(u, r, k, config, rng).gamma
