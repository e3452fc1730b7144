"""Metrics of a run, as the paper's figures compute them (docs/spec.md §5.1-§5.2). Pure numpy.

Positives are queries, negatives autonomous actions; a novice failure is a sample with c = 0.
"""

from __future__ import annotations

import numpy as np

WINDOW = 1000  # samples (or failures / successes) in the windowed curves
CURVE_COLUMNS = ("sensitivity", "specificity", "query_rate", "novice_success", "system_success")


def _ratio(num: float, den: float) -> float:
    return float(num) / float(den) if den else float("nan")


def whole_run_metrics(c: np.ndarray, q: np.ndarray) -> dict[str, float]:
    """Cumulative confusion counts and rates over the whole stream."""
    c = np.asarray(c).astype(bool)
    q = np.asarray(q).astype(bool)
    tp = int(np.sum(q & ~c))
    fn = int(np.sum(~q & ~c))
    fp = int(np.sum(q & c))
    tn = int(np.sum(~q & c))
    sens = _ratio(tp, tp + fn)
    spec = _ratio(tn, tn + fp)
    n = len(c)
    return {
        "n_samples": n,
        "tp": tp,
        "fn": fn,
        "fp": fp,
        "tn": tn,
        "sensitivity": sens,
        "specificity": spec,
        "informedness": sens + spec - 1.0,
        "query_rate": _ratio(tp + fp, n),
        "novice_success": _ratio(int(c.sum()), n),
        "system_success": _ratio(int(np.sum(c | q)), n),
    }


def _windowed_share(mask: np.ndarray, hit: np.ndarray, ends: np.ndarray, window: int) -> np.ndarray:
    """Share of ``hit`` among the last ``window`` samples with ``mask`` before each end index."""
    idx = np.flatnonzero(mask)
    cum = np.concatenate([[0], np.cumsum(hit[idx])])
    n_upto = np.searchsorted(idx, ends, side="left")  # members with index < end
    lo = np.maximum(n_upto - window, 0)
    count = n_upto - lo
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, (cum[n_upto] - cum[lo]) / np.maximum(count, 1), np.nan)


def windowed_curves(
    c: np.ndarray, q: np.ndarray, batch_size: int, window: int = WINDOW
) -> dict[str, np.ndarray]:
    """Per-step curves: one point per step j, over the stream up to the end of step j.

    sensitivity: share queried among the last ``window`` failures; specificity: share not
    queried among the last ``window`` successes; query rate, novice and system success over
    the last ``window`` samples. Points with nothing to average are NaN.
    """
    c = np.asarray(c).astype(bool)
    q = np.asarray(q).astype(bool)
    n = len(c)
    n_steps = -(-n // batch_size)
    ends = np.minimum((np.arange(n_steps) + 1) * batch_size, n)
    all_mask = np.ones(n, dtype=bool)
    return {
        "step": np.arange(n_steps),
        "sensitivity": _windowed_share(~c, q, ends, window),
        "specificity": _windowed_share(c, ~q, ends, window),
        "query_rate": _windowed_share(all_mask, q, ends, window),
        "novice_success": _windowed_share(all_mask, c, ends, window),
        "system_success": _windowed_share(all_mask, c | q, ends, window),
    }
