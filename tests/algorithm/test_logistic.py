"""SAG's logistic fit (docs/spec.md §4.4, algorithm/logistic.py) as the authors' code computes
it: scikit-learn's LogisticRegression(penalty=None) at its default lbfgs settings, and the
L-BFGS-B iterates of scipy underneath it."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import minimize

from askdagger_mnist.algorithm.logistic import logistic_fit, mean_log_loss, minimise
from sag_oracle import unpenalised_logistic_regression


def bunched_scores(seed: int, n: int = 300):
    """Known samples as in a run's first steps: an untrained novice's u, all within 1e-3 of
    0.889, failures hardly more uncertain than successes (the issue-22 case)."""
    g = np.random.default_rng(seed)
    fail = g.random(n) < 0.9
    x = 0.889 + 2e-4 * g.standard_normal(n) + 5e-5 * fail
    return x, fail.astype(float)


@pytest.mark.parametrize("seed", range(6))
def test_logistic_fit_is_sklearns_default_fit(seed):
    """§4.4: the coefficients of LogisticRegression(penalty=None) as the authors' sag() calls
    it, also where its lbfgs stops far from the maximum likelihood (bunched scores)."""
    g = np.random.default_rng(100 + seed)
    x = g.random(500)
    y = (g.random(500) < 1 / (1 + np.exp(-(4 * x - 2)))).astype(float)
    for xs, ys in ((x, y), bunched_scores(seed)):
        a, b = logistic_fit(xs, ys)
        clf = unpenalised_logistic_regression().fit(xs[:, None], ys)
        scale = max(1.0, abs(clf.coef_[0, 0]))
        assert a == pytest.approx(clf.intercept_[0], abs=1e-7 * scale)
        assert b == pytest.approx(clf.coef_[0, 0], abs=1e-7 * scale)


def test_bunched_scores_separate_their_fit_from_the_maximum_likelihood():
    """The case above has teeth: there, a fit to convergence is another model, and SAG's
    gamma moves with it (what made our success-mode runs query less early on)."""
    x, y = bunched_scores(0)
    a, b = logistic_fit(x, y)
    converged = unpenalised_logistic_regression(tol=1e-12, max_iter=10_000).fit(x[:, None], y)
    assert abs(b) < 10 and abs(converged.coef_[0, 0]) > 100 * abs(b)


def rosenbrock(w: np.ndarray) -> tuple[float, np.ndarray]:
    x, y = w
    return (float((1 - x) ** 2 + 100 * (y - x * x) ** 2),
            np.array([-2 * (1 - x) - 400 * x * (y - x * x), 200 * (y - x * x)]))


@pytest.mark.parametrize("start", [(-1.2, 1.0), (2.0, -1.0), (0.0, 0.0), (-3.0, 5.0)])
def test_minimise_takes_scipys_lbfgsb_iterates(start):
    """The L-BFGS-B emulation on a function with curved valleys (many line-search branches,
    skipped pairs and a full memory) ends where scipy's ends, after as many iterations."""
    for gtol in (1e-4, 1e-8):
        ours, iterations = minimise(rosenbrock, np.array(start), gtol=gtol)
        theirs = minimize(rosenbrock, np.array(start), jac=True, method="L-BFGS-B",
                          options={"gtol": gtol, "ftol": 64 * np.finfo(float).eps, "maxls": 50})
        np.testing.assert_allclose(ours, theirs.x, rtol=1e-7, atol=1e-9)
        assert iterations == theirs.nit


def test_mean_log_loss_gradient_is_the_derivative():
    g = np.random.default_rng(3)
    x = g.random(200)
    y = (g.random(200) < 0.3).astype(float)
    for w in (np.array([2.0, -1.0]), np.array([-40.0, 30.0]), np.array([0.0, 45.0])):
        _, grad = mean_log_loss(w, x, y)
        h = 1e-6
        numeric = [(mean_log_loss(w + h * e, x, y)[0] - mean_log_loss(w - h * e, x, y)[0]) / (2 * h)
                   for e in np.eye(2)]
        np.testing.assert_allclose(grad, numeric, rtol=1e-5, atol=1e-8)
