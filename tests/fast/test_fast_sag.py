"""The fast SAG (``fast.sag``) against the plain one (``algorithm.sag``): the same gamma from
the same generator state, the same window, the same fits (docs/spec.md §4, §7.3)."""

from __future__ import annotations

import numpy as np
import pytest

from askdagger_mnist.algorithm.sag import (
    SagConfig, mode_gamma, sag_threshold, window_start,
)
from askdagger_mnist.fast.sag import (
    mode_gammas, sag_threshold_fast, window_start_tail_first,
)
from sag_oracle import make_stream


@pytest.mark.parametrize("mode", ["sensitivity", "specificity", "success"])
@pytest.mark.parametrize("impute,normalize", [(True, True), (False, True), (True, False)])
def test_fast_gamma_equals_plain_gamma_and_leaves_the_generator_alike(mode, impute, normalize):
    for seed in range(4):
        u, r, k = make_stream(seed, n_steps=60, trend=0.005, decimals=3 if seed % 2 else None)
        cfg = SagConfig(mode, [0.3, 0.6, 0.9, 0.97][seed], 0.1, normalize, impute, 50, 10)
        rng_plain, rng_fast = np.random.default_rng(seed), np.random.default_rng(seed)
        plain = sag_threshold(u, r, k, cfg, rng_plain)
        fast = sag_threshold_fast(u, r, k, cfg, rng_fast)
        assert fast == pytest.approx(plain, rel=1e-9, abs=1e-12), (seed, plain, fast)
        assert rng_plain.random() == rng_fast.random()  # the same draws were consumed


@pytest.mark.parametrize("mode", ["sensitivity", "specificity", "success"])
def test_vectorised_mode_rule_equals_the_plain_rule_per_row(mode):
    g = np.random.default_rng(5)
    scores = np.round(g.normal(0.3, 0.3, 400), 2)  # ties and negative scores
    labels = np.where(g.random((10, 400)) < 0.3, 1, -1).astype(np.int8)
    cfg = SagConfig(mode, 0.8, 0.1, True, True, 50, 10)
    expected = [mode_gamma(scores, row, cfg) for row in labels]
    np.testing.assert_allclose(mode_gammas(scores, labels, cfg), expected, rtol=1e-12)


def _window_start_brute_force(r, k, relevant, n_min):
    """Every level start, newest first; the first whose suffix qualifies."""
    starts = [i for i in range(len(k)) if i == 0 or k[i] != k[i - 1]]
    for i in reversed(starts):
        if np.sum(r[i:] == relevant) >= n_min and np.sum(r[i:] == -relevant) >= 1:
            return i
    return None


@pytest.mark.parametrize("seed", range(6))
def test_window_search_over_long_histories_matches_brute_force(seed):
    """Histories longer than the first tail the search looks at (4096 samples): the window
    may lie inside it, reach past it, need the whole history, or not exist."""
    g = np.random.default_rng(seed)
    n = int(g.integers(5000, 30000))
    k = np.sort(g.integers(0, 60, n))  # levels of uneven length, some k values absent
    r = np.zeros(n, np.int8)
    share = [0.002, 0.02, 0.3][seed % 3]  # rare labels push the window back in history
    labelled = g.random(n) < share
    r[labelled] = np.where(g.random(labelled.sum()) < 0.5, 1, -1)
    for relevant in (1, -1):
        # n_min equal to the count in a suffix starting at a tail boundary (mid-level, most
        # likely): exactly where a search that took the tail's first sample for the start
        # of its k level would stop too late.
        at_tails = [int(np.sum(r[max(0, n - t):] == relevant)) for t in (4096, 4 * 4096)]
        for n_min in (1, 20, 200, 5000, *at_tails, *(c + 1 for c in at_tails)):
            expected = _window_start_brute_force(r, k, relevant, n_min)
            assert window_start_tail_first(r, k, relevant, n_min) == expected, (n_min, relevant)
            if seed < 2:  # the plain search is slow on long histories
                assert window_start(r, k, relevant, n_min) == expected
