"""An independent SAG oracle built from scikit-learn and plain loops (docs/spec.md §4), and
plausible seen histories to feed it (used by tests/algorithm/test_sag.py and
tests/fast/test_fast_sag.py).

The oracle is fed the same random draws: it draws one row of n_unknown uniforms per
imputation from a generator in the same state as the one given to the SAG under test.
"""

from __future__ import annotations

import numpy as np
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.metrics import roc_curve



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


def unpenalised_logistic_regression(**solver) -> LogisticRegression:
    """The authors' fit, LogisticRegression(penalty=None), at its default solver settings
    (lbfgs, tol 1e-4, max_iter 100), which stop before the maximum likelihood when the scores
    are bunched; ``solver`` overrides them (e.g. a fit to convergence). Spelled C=inf, the
    same objective (no penalty) in every release, since sklearn 1.8 deprecates penalty=None."""
    return LogisticRegression(C=np.inf, **solver)


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
    if cfg.normalization:
        lr = LinearRegression().fit(kw[:, None], uw)
        un = uw - lr.predict(kw[:, None]) + lr.predict(np.array([[k_last]], float))[0]
    else:
        un = uw
    f = -rw.astype(int)
    known = f != 0
    if cfg.imputation:
        clf = unpenalised_logistic_regression()
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


