"""The SAG threshold, faster: the fast twin of ``algorithm.sag.sag_threshold`` (the same gamma
from the same generator state; bound by tests/fast/test_fast_sag.py).

* the window search looks at a tail of the history first and widens it only while no window
  inside it qualifies (a late-run call costs what the window costs, not the whole history);
* the n_rep imputations are scored together: the scores are the same in every repetition,
  so the window is sorted once and only the labels differ per repetition.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from ..algorithm.logistic import logistic_fit  # the plain engine's fit: no fast twin
from ..algorithm.sag import SagConfig, fallback_gamma, linear_fit, relevant_label, sigmoid


# --------------------------------------------------------------------------- window


def window_start_tail_first(r: np.ndarray, k: np.ndarray, relevant: int,
                            n_min: int) -> Optional[int]:
    """As ``algorithm.sag.window_start``.

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
    """``algorithm.sag.success_curve`` for each label row, vectorised. Returns (thresholds, success) in reversed (descending-walk) order."""
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
    """``algorithm.sag.mode_gamma`` per label row; scores (n,), labels (m, n) in {+1, -1}."""
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


def sag_threshold_fast(u: np.ndarray, r: np.ndarray, k: np.ndarray, config: SagConfig,
                       rng: np.random.Generator) -> float:
    """The SAG threshold gamma, as ``algorithm.sag.sag_threshold`` (docs/spec.md §4)."""
    u, r, k = np.asarray(u, dtype=np.float64), np.asarray(r), np.asarray(k)
    start = window_start_tail_first(r, k, relevant_label(config.mode), config.n_min)
    if start is None:
        return fallback_gamma(u, config)
    k_last = float(k[-1])
    u_w, k_w, r_w = u[start:], k[start:].astype(np.float64), r[start:]
    if config.normalization:
        a, b = linear_fit(k_w, u_w)
        u_n = u_w - (a + b * k_w) + (a + b * k_last)
    else:
        u_n = u_w
    f = -r_w.astype(np.int8)  # +1 failure, -1 success, 0 unknown
    known = f != 0
    if config.imputation:
        logit = logistic_fit(u_n[known], (f[known] == 1).astype(np.float64))
        unknown = np.flatnonzero(~known)
        p_fail = sigmoid(logit[0] + logit[1] * u_n[unknown])
        draws = rng.random((config.n_rep, len(unknown)))  # the plain loop's draws, row by row
        labels = np.broadcast_to(f, (config.n_rep, len(f))).copy()
        labels[:, unknown] = np.where(p_fail > draws, np.int8(1), np.int8(-1))
        gamma = float(np.median(mode_gammas(u_n, labels, config)))
    else:
        gamma = float(mode_gammas(u_n[known], f[known][None, :], config)[0])
    if np.isnan(gamma):
        gamma = float(np.nanmin(u_n))
    return gamma
