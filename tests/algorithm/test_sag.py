"""SAG (docs/spec.md §4), the plain and the fast one, against an independent oracle built from
scikit-learn and plain loops (tests/sag_oracle.py), and the plain window search and fits."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from askdagger_mnist.algorithm.sag import (
    SagConfig, sag_details, sag_threshold, success_curve, window_start,
)
from askdagger_mnist.fast.sag import sag_threshold_fast
from sag_oracle import (
    make_stream, oracle_gamma, oracle_success_curve,
)

# Both implementations answer to the same oracle.
SAG = {"plain": sag_threshold, "fast": sag_threshold_fast}


CASES = list(
    itertools.product(
        ["sensitivity", "specificity", "success"],
        [True, False],  # impute
        [True, False],  # normalize
        [0.0, 0.1],  # p_rand
        [0.3, 0.9],  # s_des
    )
)


@pytest.mark.parametrize("engine", SAG)
@pytest.mark.parametrize("mode,impute,normalize,p_rand,s_des", CASES)
def test_gamma_matches_oracle_on_random_streams(engine, mode, impute, normalize, p_rand, s_des):
    cfg = SagConfig(mode, s_des, p_rand, normalize, impute, n_min=50, n_rep=10)
    for seed in range(3):
        u, r, k = make_stream(1000 * seed + hash((mode, impute, normalize)) % 997, trend=0.01)
        ours = SAG[engine](u, r, k, cfg, np.random.default_rng(seed))
        ref = oracle_gamma(u, r, k, cfg, np.random.default_rng(seed))
        assert ours == pytest.approx(ref, abs=1e-6, rel=1e-6), (seed, ours, ref)


@pytest.mark.parametrize("engine", SAG)
@pytest.mark.parametrize("mode", ["sensitivity", "specificity", "success"])
def test_ties_in_scores(engine, mode):
    u, r, k = make_stream(7, decimals=2)  # many equal scores
    for normalize in (False, True):
        cfg = SagConfig(mode, 0.7, 0.1, normalize, True, 50, 10)
        ours = SAG[engine](u, r, k, cfg, np.random.default_rng(1))
        ref = oracle_gamma(u, r, k, cfg, np.random.default_rng(1))
        assert ours == pytest.approx(ref, abs=1e-6)


@pytest.mark.parametrize("mode", ["sensitivity", "specificity", "success"])
def test_negative_normalized_scores(mode):
    u, r, k = make_stream(11, n_steps=60, trend=0.05)  # strong drift: u' < 0 for early samples
    cfg = SagConfig(mode, 0.8, 0.1, True, True, n_min=400, n_rep=10)  # wide window
    d = sag_details(u, r, k, cfg, np.random.default_rng(3))
    assert not d.fallback and d.u_norm.min() < 0
    ref = oracle_gamma(u, r, k, cfg, np.random.default_rng(3))
    assert d.gamma == pytest.approx(ref, abs=1e-6)


def test_success_curve_keeps_zero_entry_first_with_negative_scores():
    scores = np.array([-0.2, -0.1, 0.0, 0.3, 0.3, 0.5])
    f = np.array([1, -1, 1, 1, -1, 1])
    thr, suc = success_curve(scores, f)
    ref_thr, ref_suc = oracle_success_curve(scores, f)
    np.testing.assert_array_equal(thr, ref_thr)
    np.testing.assert_allclose(suc, ref_suc)
    assert thr[-1] == 0.0 and suc[-1] == 1.0  # the initial (0.0, 1.0) entry survives
    # A first score of exactly 0.0 overwrites the initial entry instead.
    thr0, suc0 = success_curve(np.array([0.0, 0.2]), np.array([1, -1]))
    r_thr0, r_suc0 = oracle_success_curve(np.array([0.0, 0.2]), np.array([1, -1]))
    np.testing.assert_array_equal(thr0, r_thr0)
    np.testing.assert_allclose(suc0, r_suc0)


@pytest.mark.parametrize("mode,q", [("sensitivity", 1 - 0.9), ("success", 1 - 0.9), ("specificity", 0.9)])
def test_too_few_labels_falls_back_to_quantile(mode, q):
    u, r, k = make_stream(3, n_steps=6, query_rate=0.05)  # far fewer than n_min labels
    cfg = SagConfig(mode, 0.9, 0.1, True, True, n_min=50, n_rep=10)
    d = sag_details(u, r, k, cfg, np.random.default_rng(0))
    assert d.fallback
    assert d.gamma == np.quantile(u, q)


@pytest.mark.parametrize("engine", SAG)
def test_no_failures_yet_falls_back(engine):
    u, r, k = make_stream(5)
    r[r == -1] = 1  # only successes known
    cfg = SagConfig("sensitivity", 0.9, 0.1, True, True, 50, 10)
    assert SAG[engine](u, r, k, cfg, np.random.default_rng(0)) == np.quantile(u, 1 - 0.9)
    # Specificity mode needs one failure too.
    cfg = SagConfig("specificity", 0.9, 0.1, True, True, 50, 10)
    assert SAG[engine](u, r, k, cfg, np.random.default_rng(0)) == np.quantile(u, 0.9)


@pytest.mark.parametrize("engine", SAG)
def test_gamma_inf_when_random_queries_already_meet_the_target(engine):
    u, r, k = make_stream(9)
    cfg = SagConfig("sensitivity", 0.05, 0.1, True, True, 50, 10)  # s_des below p_rand
    gamma = SAG[engine](u, r, k, cfg, np.random.default_rng(0))
    assert gamma == np.inf
    assert gamma == oracle_gamma(u, r, k, cfg, np.random.default_rng(0))


def test_window_is_the_smallest_suffix_with_enough_labels():
    k = np.repeat(np.arange(5), 10)
    r = np.zeros(50, np.int8)
    r[45:] = -1  # 5 failures at k = 4
    r[30] = 1  # one success at k = 3
    r[5:10] = -1  # 5 more failures at k = 0
    assert window_start(r, k, -1, 5) == 30  # needs the success at k = 3
    assert window_start(r, k, -1, 10) == 0  # the whole history
    assert window_start(r, k, -1, 11) is None


@pytest.mark.parametrize("engine", SAG)
def test_sag_is_pure_given_the_generator_state(engine):
    u, r, k = make_stream(2)
    cfg = SagConfig("success", 0.8, 0.1, True, True, 50, 10)
    u0, r0, k0 = u.copy(), r.copy(), k.copy()
    g1 = SAG[engine](u, r, k, cfg, np.random.default_rng(42))
    g2 = SAG[engine](u, r, k, cfg, np.random.default_rng(42))
    assert g1 == g2
    np.testing.assert_array_equal(u, u0)
    np.testing.assert_array_equal(r, r0)
    np.testing.assert_array_equal(k, k0)
