"""SAG against an independent oracle built from scikit-learn and plain loops (spec section 4).

The oracle is fed the same random draws: it draws one row of n_unknown uniforms per
imputation from a generator in the same state as the one given to ``sag_threshold``.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.metrics import roc_curve

from askdagger_mnist.sag import SagConfig, logistic_fit, sag_details, sag_threshold, window_start

# sklearn >= 1.8 deprecates penalty=None (still the unpenalised fit we want as the oracle).
pytestmark = pytest.mark.filterwarnings("ignore:'penalty' was deprecated:FutureWarning")

# ----------------------------------------------------------------------------- the oracle


def oracle_success_curve(scores, f):
    """The original's success curve, written as the plain loop of spec 4.5."""
    order = np.argsort(scores, kind="stable")
    thresholds, success = [0.0], [1.0]
    fn, n = 0, len(scores)
    for i in order:
        if f[i] == 1:
            fn += 1
        if scores[i] == thresholds[-1]:
            success[-1] = 1 - fn / n
        else:
            thresholds.append(scores[i])
            success.append(1 - fn / n)
    return np.array(thresholds[::-1]), np.array(success[::-1])


def oracle_rule(scores, f, cfg):
    p = cfg.p_rand
    if cfg.mode == "success":
        thr, suc = oracle_success_curve(scores, f)
        return np.interp(cfg.s_des, suc + p * (1 - suc), thr)
    with np.errstate(invalid="ignore", divide="ignore"):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fpr, tpr, thr = roc_curve(f, scores, pos_label=1, drop_intermediate=False)
    if cfg.mode == "sensitivity":
        return np.interp(cfg.s_des, tpr + p * (1 - tpr), thr)
    tnr = 1 - fpr
    return np.interp(cfg.s_des, ((1 - p) * tnr)[::-1], thr[::-1])


def oracle_gamma(u, r, k, cfg, rng):
    L = 1 if cfg.mode == "specificity" else -1
    k_last = k[-1]
    mask = None
    for w in range(int(k_last) + 1):
        m = k >= k_last - w
        if np.sum(r[m] == L) >= cfg.n_min and np.sum(r[m] == -L) >= 1:
            mask = m
            break
    if mask is None:
        q = cfg.s_des if cfg.mode == "specificity" else 1 - cfg.s_des
        return float(np.quantile(u, q))
    uw, kw, rw = u[mask], k[mask].astype(float), r[mask]
    if cfg.normalize:
        lr = LinearRegression().fit(kw[:, None], uw)
        un = uw - lr.predict(kw[:, None]) + lr.predict(np.array([[k_last]], float))[0]
    else:
        un = uw
    f = -rw.astype(int)
    known = f != 0
    if cfg.impute:
        clf = LogisticRegression(penalty=None, tol=1e-12, max_iter=10_000)
        clf.fit(un[known][:, None], f[known] == 1)
        p_fail = clf.predict_proba(un[~known][:, None])[:, 1]
        gammas = []
        for _ in range(cfg.n_rep):
            draws = rng.random(int(np.sum(~known)))
            fj = f.copy()
            fj[~known] = np.where(p_fail > draws, 1, -1)
            gammas.append(oracle_rule(un, fj, cfg))
        gamma = float(np.median(gammas))
    else:
        gamma = float(oracle_rule(un[known], f[known], cfg))
    if np.isnan(gamma):
        gamma = float(np.nanmin(un))
    return gamma


# ----------------------------------------------------------------------------- inputs


def make_stream(seed, n_steps=40, batch=32, update_every=5, trend=0.0, decimals=None,
                query_rate=0.5, fail_rate=0.4):
    """A plausible seen history: k increments every update; failures have higher u; the
    newest batch is unlabelled (r = 0)."""
    g = np.random.default_rng(seed)
    n = n_steps * batch
    step = np.arange(n) // batch
    k = np.maximum(0, (step - 1) // update_every)
    fail = g.random(n) < fail_rate
    u = np.clip(0.3 + 0.3 * fail + 0.2 * g.standard_normal(n), 0, 1) - trend * k
    if decimals is not None:
        u = np.round(u, decimals)
    q = g.random(n) < query_rate
    r = np.where(q, np.where(fail, -1, 1), 0).astype(np.int8)
    r[-batch:] = 0
    return u, r, k


CASES = list(
    itertools.product(
        ["sensitivity", "specificity", "success"],
        [True, False],  # impute
        [True, False],  # normalize
        [0.0, 0.1],  # p_rand
        [0.3, 0.9],  # s_des
    )
)


@pytest.mark.parametrize("mode,impute,normalize,p_rand,s_des", CASES)
def test_gamma_matches_oracle_on_random_streams(mode, impute, normalize, p_rand, s_des):
    cfg = SagConfig(mode, s_des, p_rand, normalize, impute, n_min=50, n_rep=10)
    for seed in range(3):
        u, r, k = make_stream(1000 * seed + hash((mode, impute, normalize)) % 997, trend=0.01)
        ours = sag_threshold(u, r, k, cfg, np.random.default_rng(seed))
        ref = oracle_gamma(u, r, k, cfg, np.random.default_rng(seed))
        assert ours == pytest.approx(ref, abs=1e-6, rel=1e-6), (seed, ours, ref)


@pytest.mark.parametrize("mode", ["sensitivity", "specificity", "success"])
def test_ties_in_scores(mode):
    u, r, k = make_stream(7, decimals=2)  # many equal scores
    for normalize in (False, True):
        cfg = SagConfig(mode, 0.7, 0.1, normalize, True, 50, 10)
        ours = sag_threshold(u, r, k, cfg, np.random.default_rng(1))
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
    from askdagger_mnist.sag import _success_curves

    scores = np.array([-0.2, -0.1, 0.0, 0.3, 0.3, 0.5])
    f = np.array([1, -1, 1, 1, -1, 1])
    thr, suc = _success_curves(scores, f[None, :])
    ref_thr, ref_suc = oracle_success_curve(scores, f)
    np.testing.assert_array_equal(thr, ref_thr)
    np.testing.assert_allclose(suc[0], ref_suc)
    assert thr[-1] == 0.0 and suc[0, -1] == 1.0  # the initial (0.0, 1.0) entry survives
    # A first score of exactly 0.0 overwrites the initial entry instead.
    thr0, suc0 = _success_curves(np.array([0.0, 0.2]), np.array([[1, -1]]))
    r_thr0, r_suc0 = oracle_success_curve(np.array([0.0, 0.2]), np.array([1, -1]))
    np.testing.assert_array_equal(thr0, r_thr0)
    np.testing.assert_allclose(suc0[0], r_suc0)


@pytest.mark.parametrize("mode,q", [("sensitivity", 1 - 0.9), ("success", 1 - 0.9), ("specificity", 0.9)])
def test_too_few_labels_falls_back_to_quantile(mode, q):
    u, r, k = make_stream(3, n_steps=6, query_rate=0.05)  # far fewer than n_min labels
    cfg = SagConfig(mode, 0.9, 0.1, True, True, n_min=50, n_rep=10)
    d = sag_details(u, r, k, cfg, np.random.default_rng(0))
    assert d.fallback
    assert d.gamma == np.quantile(u, q)


def test_no_failures_yet_falls_back():
    u, r, k = make_stream(5)
    r[r == -1] = 1  # only successes known
    cfg = SagConfig("sensitivity", 0.9, 0.1, True, True, 50, 10)
    assert sag_threshold(u, r, k, cfg, np.random.default_rng(0)) == np.quantile(u, 1 - 0.9)
    # Specificity mode needs one failure too.
    cfg = SagConfig("specificity", 0.9, 0.1, True, True, 50, 10)
    assert sag_threshold(u, r, k, cfg, np.random.default_rng(0)) == np.quantile(u, 0.9)


def test_gamma_inf_when_random_queries_already_meet_the_target():
    u, r, k = make_stream(9)
    cfg = SagConfig("sensitivity", 0.05, 0.1, True, True, 50, 10)  # s_des below p_rand
    gamma = sag_threshold(u, r, k, cfg, np.random.default_rng(0))
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
            assert window_start(r, k, relevant, n_min) == \
                _window_start_brute_force(r, k, relevant, n_min), (n_min, relevant)


def test_logistic_fit_matches_sklearn():
    g = np.random.default_rng(0)
    x = g.random(500)
    y = (g.random(500) < 1 / (1 + np.exp(-(4 * x - 2)))).astype(float)
    a, b = logistic_fit(x, y)
    clf = LogisticRegression(penalty=None, tol=1e-12, max_iter=10_000).fit(x[:, None], y)
    assert a == pytest.approx(clf.intercept_[0], abs=1e-5)
    assert b == pytest.approx(clf.coef_[0, 0], abs=1e-5)


def test_sag_is_pure_given_the_generator_state():
    u, r, k = make_stream(2)
    cfg = SagConfig("success", 0.8, 0.1, True, True, 50, 10)
    u0, r0, k0 = u.copy(), r.copy(), k.copy()
    g1 = sag_threshold(u, r, k, cfg, np.random.default_rng(42))
    g2 = sag_threshold(u, r, k, cfg, np.random.default_rng(42))
    assert g1 == g2
    np.testing.assert_array_equal(u, u0)
    np.testing.assert_array_equal(r, r0)
    np.testing.assert_array_equal(k, k0)
