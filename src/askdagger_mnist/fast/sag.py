"""S-Aware Gating (SAG): the query threshold gamma (spec section 4). Pure numpy.

``sag_threshold(u, r, k, config, rng)`` is a pure function of its inputs and the generator's
state. The n_rep imputations are vectorised: the scores are the same in every repetition, so
the window is sorted once and only the labels differ per repetition.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from .settings import MODES


@dataclass(frozen=True)
class SagConfig:
    mode: str = "sensitivity"
    s_des: float = 0.9
    p_rand: float = 0.1
    normalize: bool = True
    impute: bool = True
    n_min: int = 50
    n_rep: int = 10

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"SAG mode must be one of {', '.join(MODES)}, not {self.mode!r}")


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


# --------------------------------------------------------------------------- window


def window_start(r: np.ndarray, k: np.ndarray, relevant: int, n_min: int) -> Optional[int]:
    """Start index of the smallest window W(w) = {i: k_i >= k_last - w} holding at least
    ``n_min`` samples with r = relevant and one with r = -relevant; None if no w does.

    k is non-decreasing along the stream, so every window is a suffix of the arrays, and a
    suffix that qualifies still does when it grows. The search therefore looks at a tail of
    the history first and widens it only while no window inside it qualifies: a late-run call
    costs what the window costs, not what the whole history does.
    """
    n = len(k)
    if n == 0:
        return None
    r, k = np.asarray(r), np.asarray(k)
    tail = 4096
    while True:
        lo = max(0, n - tail)
        found = _latest_qualifying_start(r[lo:], k[lo:], lo == 0 or k[lo - 1] != k[lo],
                                         relevant, n_min)
        if found is not None:
            return lo + found
        if lo == 0:
            return None
        tail *= 4


def _latest_qualifying_start(r, k, first_is_level_start: bool, relevant: int, n_min: int):
    """Within the arrays given: the latest start of a k level whose suffix qualifies."""
    # Window candidates start where k changes (each distinct k value, newest first).
    starts = np.flatnonzero(np.r_[first_is_level_start, k[1:] != k[:-1]])
    if len(starts) == 0:
        return None
    rel = np.cumsum((r == relevant)[::-1])[::-1]  # rel[i]: count in the suffix from i
    oth = np.cumsum((r == -relevant)[::-1])[::-1]
    # Smallest w = the latest start that is ok. w counts k units, and levels are the k values
    # present; a k value absent from the stream adds no samples, so the latest ok start is
    # the window of the smallest w.
    hits = np.flatnonzero((rel[starts] >= n_min) & (oth[starts] >= 1))
    return int(starts[hits[-1]]) if len(hits) else None


# --------------------------------------------------------------------------- fits


def linear_fit(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Least squares y ~ a + b x; b = 0 when x is constant."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    xm = x.mean()
    dx = x - xm
    sxx = float(dx @ dx)
    b = float(dx @ (y - y.mean())) / sxx if sxx > 0 else 0.0
    return float(y.mean() - b * xm), b


def logistic_fit(x: np.ndarray, y: np.ndarray, max_iter: int = 100, tol: float = 1e-10):
    """Unpenalised 1-D logistic regression P(y=1|x) = sigmoid(a + b x) by Newton (IRLS) with
    step halving. ``y`` in {0, 1}. Returns (a, b).

    Written with scalar 2x2 algebra and the sufficient statistics sum(y), sum(x y): one SAG
    call per step fits a few hundred points, where numpy's per-call overhead is the cost."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    n = len(x)
    sum_y, sum_xy = float(y.sum()), float(x @ y)
    a, b = 0.0, 0.0
    if 0.0 < sum_y < n:
        a = float(np.log(sum_y / (n - sum_y)))

    def nll(a: float, b: float) -> tuple[float, np.ndarray]:
        z = b * x + a
        return float(np.logaddexp(0.0, z).sum()) - (a * sum_y + b * sum_xy), z

    cur, z = nll(a, b)
    for _ in range(max_iter):
        p = np.tanh(0.5 * z)
        p += 1.0
        p *= 0.5  # stable sigmoid
        g0, g1 = float(p.sum()) - sum_y, float(p @ x) - sum_xy
        w = p * (1.0 - p)
        wx = w * x
        h00, h01, h11 = float(w.sum()) + 1e-12, float(wx.sum()), float(wx @ x) + 1e-12
        det = h00 * h11 - h01 * h01
        if not det > 0.0:
            break
        s0, s1 = (h11 * g0 - h01 * g1) / det, (h00 * g1 - h01 * g0) / det  # Newton step
        t = 1.0
        while t > 1e-8:
            val, z_cand = nll(a - t * s0, b - t * s1)
            if val <= cur:
                break
            t *= 0.5
        else:
            break
        move = max(abs(t * s0), abs(t * s1))
        converged = abs(cur - val) <= tol * max(1.0, abs(cur)) and move < 1e-8
        a, b, cur, z = a - t * s0, b - t * s1, val, z_cand
        if converged or move < 1e-12:
            break
    return a, b


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(z, dtype=np.float64)))


# --------------------------------------------------------------------------- mode rules


def _group_ends(sorted_scores: np.ndarray) -> np.ndarray:
    """Index of the last element of each run of equal values in a sorted array."""
    n = len(sorted_scores)
    return np.r_[np.flatnonzero(sorted_scores[1:] != sorted_scores[:-1]), n - 1]


def _roc_counts(scores: np.ndarray, labels: np.ndarray):
    """Thresholds t = [+inf, distinct scores descending] and, per label row, the counts of
    failures (f = +1) and successes (f = -1) with s >= t (as sklearn's roc_curve,
    drop_intermediate=False). Labels are all +1 or -1."""
    order = np.argsort(-scores, kind="mergesort")
    s = scores[order]
    ends = _group_ends(s)
    thresholds = np.r_[np.inf, s[ends]]
    pos = np.cumsum(labels[:, order] == 1, axis=1, dtype=np.int32)[:, ends]
    neg = (ends + 1)[None, :] - pos
    zeros = np.zeros((labels.shape[0], 1), dtype=pos.dtype)
    return thresholds, np.hstack([zeros, pos]), np.hstack([zeros, neg])


def _success_curves(scores: np.ndarray, labels: np.ndarray):
    """The success curve as the original code builds it (spec 4.5, with its quirk), for each
    label row. Returns (thresholds, success) in reversed (descending-walk) order."""
    n = len(scores)
    order = np.argsort(scores, kind="mergesort")
    s = scores[order]
    ends = _group_ends(s)
    fn = np.cumsum(labels[:, order] == 1, axis=1, dtype=np.int32)[:, ends]  # failures passed, incl. ties
    success = 1.0 - fn / n
    distinct = s[ends]
    if distinct[0] == 0.0:
        # The first sample's score equals the initial entry's threshold 0.0: overwritten.
        thresholds = distinct
    else:
        # The (0.0, 1.0) entry stays first in walk order, even for negative scores (quirk).
        thresholds = np.r_[0.0, distinct]
        success = np.hstack([np.ones((labels.shape[0], 1)), success])
    return thresholds[::-1], success[:, ::-1]


def mode_gammas(scores: np.ndarray, labels: np.ndarray, config: SagConfig) -> np.ndarray:
    """gamma per label row by the mode rule; scores (n,), labels (m, n) in {+1, -1}."""
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.atleast_2d(labels)
    p, s_des = config.p_rand, config.s_des
    out = np.empty(labels.shape[0])
    if config.mode == "success":
        thresholds, success = _success_curves(scores, labels)
        for j in range(labels.shape[0]):
            out[j] = np.interp(s_des, success[j] + p * (1.0 - success[j]), thresholds)
        return out
    thresholds, pos, neg = _roc_counts(scores, labels)
    with np.errstate(invalid="ignore", divide="ignore"):
        for j in range(labels.shape[0]):
            if config.mode == "sensitivity":
                tpr = pos[j] / pos[j, -1]
                out[j] = np.interp(s_des, tpr + p * (1.0 - tpr), thresholds)
            else:
                tnr = 1.0 - neg[j] / neg[j, -1]
                out[j] = np.interp(s_des, ((1.0 - p) * tnr)[::-1], thresholds[::-1])
    return out


# --------------------------------------------------------------------------- SAG


def sag_details(
    u: np.ndarray, r: np.ndarray, k: np.ndarray, config: SagConfig, rng: np.random.Generator
) -> SagDetails:
    """One SAG call over all seen samples (u, r, k; the current batch included with r = 0)."""
    u = np.asarray(u, dtype=np.float64)
    r = np.asarray(r)
    k = np.asarray(k)
    relevant = 1 if config.mode == "specificity" else -1
    start = window_start(r, k, relevant, config.n_min)
    k_last = float(k[-1]) if len(k) else 0.0
    if start is None:
        q = 1.0 - config.s_des if config.mode != "specificity" else config.s_des
        gamma = float(np.quantile(u, q))
        empty = np.empty(0)
        return SagDetails(
            gamma, True, len(u), k_last, empty, empty, empty, (0.0, 0.0), None,
            np.empty(0, bool), np.empty((0, 0)), np.array([gamma]),
        )
    u_w, k_w, r_w = u[start:], k[start:].astype(np.float64), r[start:]
    if config.normalize:
        a, b = linear_fit(k_w, u_w)
        u_n = u_w - (a + b * k_w) + (a + b * k_last)
    else:
        a, b = 0.0, 0.0
        u_n = u_w
    f = -r_w.astype(np.int8)  # +1 failure, -1 success, 0 unknown
    known = f != 0
    logit = None
    if config.impute:
        logit = logistic_fit(u_n[known], (f[known] == 1).astype(np.float64))
        unknown = np.flatnonzero(~known)
        p_fail = sigmoid(logit[0] + logit[1] * u_n[unknown])
        draws = rng.random((config.n_rep, len(unknown)))
        labels = np.broadcast_to(f, (config.n_rep, len(f))).copy()
        labels[:, unknown] = np.where(p_fail > draws, np.int8(1), np.int8(-1))
        gammas = mode_gammas(u_n, labels, config)
        gamma = float(np.median(gammas))
    else:
        labels = f[known][None, :]
        gammas = mode_gammas(u_n[known], labels, config)
        gamma = float(gammas[0])
    if np.isnan(gamma):
        gamma = float(np.nanmin(u_n))
    return SagDetails(
        gamma, False, start, k_last, u_w, k_w, u_n, (a, b), logit, known, labels, gammas
    )


def sag_threshold(
    u: np.ndarray, r: np.ndarray, k: np.ndarray, config: SagConfig, rng: np.random.Generator
) -> float:
    """The SAG threshold gamma (may be +inf: no active queries)."""
    return sag_details(u, r, k, config, rng).gamma
