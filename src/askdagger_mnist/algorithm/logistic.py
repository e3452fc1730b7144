"""SAG's logistic fit as the authors' code computes it (docs/spec.md §4.4). Pure numpy.

Their ``sag()`` fits ``LogisticRegression(penalty=None)`` of scikit-learn: the mean log-loss of
an unpenalised logistic regression with intercept, minimised by scipy's L-BFGS-B from zero with
scikit-learn's options (projected-gradient tolerance ``tol`` = 1e-4, relative-reduction tolerance
64 machine epsilons, at most 100 iterations and 50 evaluations per line search, 10 correction
pairs). That solver stops long before the maximum of the likelihood when the scores are
bunched (the first steps of a run: the fit then stops after 3-7 iterations with slopes near 1,
where the maximum lies at slopes of +-100 and more), so a fit to convergence is a different
rule for SAG (docs/reproduction.md, "SAG in lock-step"). This module computes their iterates:

* ``mean_log_loss``: scikit-learn's objective and gradient (its ``HalfBinomialLoss`` formulas,
  divided by the number of samples), parameters ordered (slope, intercept) as theirs;
* ``minimise``: L-BFGS-B (Byrd, Lu, Nocedal and Zhu; scipy's ``setulb``) for a problem without
  bounds, where its generalised Cauchy point and subspace minimisation reduce to the
  quasi-Newton direction ``-H g`` of the two-loop recursion with ``H0 = I / theta``, its step
  rules (first step ``1 / |d|``, then 1), its pair-skipping rule, its restarts and its stopping
  tests;
* ``line_search`` with ``_step``: the Moré-Thuente search of MINPACK-2 (``dcsrch`` and
  ``dcstep``) that L-BFGS-B calls with ftol 1e-3, gtol 0.9, xtol 0.1.

tests/algorithm/test_logistic.py binds ``logistic_fit`` to scikit-learn's fit on recorded and
synthetic inputs; bench/sag_lockstep.py to the original's fits inside running originals.
"""

from __future__ import annotations

import math

import numpy as np

EPS = float(np.finfo(float).eps)
TOL = 1e-4  # scikit-learn's LogisticRegression tol, passed to L-BFGS-B as pgtol
FTOL = 64 * EPS  # scikit-learn's ftol option: factr * epsmch
MAX_ITER = 100  # scikit-learn's max_iter
MAX_LS = 50  # scikit-learn's maxls
MEMORY = 10  # L-BFGS-B's m (scipy's default maxcor)
STEP_MAX = 1e10  # L-BFGS-B's stpmx for variables without bounds


def mean_log_loss(w: np.ndarray, x: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean log-loss of P(y=1|x) = sigmoid(w[0] x + w[1]) and its gradient, with the
    branches scikit-learn's HalfBinomialLoss uses for numerical stability."""
    raw = x * w[0] + w[1]
    low = raw <= 0
    e = np.exp(np.where(low, raw, -raw))
    loss = np.where(low,
                    np.where(raw <= -37, e, np.log1p(e)) - y * raw,
                    np.where(raw <= 18, np.log1p(e), e) + (1 - y) * raw)
    grad = np.where(low, ((1 - y) * e - y) / (1 + e), ((1 - y) - y * e) / (1 + e))
    n = len(x)
    grad = grad / n
    return float(loss.sum() / n), np.array([float(x @ grad), float(grad.sum())])


def _cubic(f_a: float, f_b: float, t_a: float, t_b: float, d_a: float, d_b: float,
           clip: bool = False) -> tuple[float, float]:
    """dcstep's cubic through (t_a, f_a, slope d_a) and (t_b, f_b, slope d_b): its theta and
    the magnitude of its gamma (the radicand clipped at 0 where dcstep clips it)."""
    theta = 3 * (f_a - f_b) / (t_b - t_a) + d_a + d_b
    s = max(abs(theta), abs(d_a), abs(d_b))
    radicand = (theta / s) ** 2 - (d_a / s) * (d_b / s)
    return theta, s * math.sqrt(max(0.0, radicand) if clip else radicand)


def _cubic_step_toward(stp: float, fp: float, dp: float, t: float, ft: float, dt: float) -> float:
    """dcstep's cubic step from ``stp`` toward ``t`` (cases 2 and 4): the minimiser of the
    cubic through (stp, fp, slope dp) and (t, ft, slope dt)."""
    theta, gamma = _cubic(ft, fp, t, stp, dt, dp)
    if stp > t:
        gamma = -gamma
    p = (gamma - dp) + theta
    q = ((gamma - dp) + gamma) + dt
    return stp + (p / q) * (t - stp)


def _step(stx, fx, dx, sty, fy, dy, stp, fp, dp, brackt, stpmin, stpmax):
    """MINPACK-2's dcstep: a safeguarded step for the Moré-Thuente search and the updated
    interval of uncertainty. Returns (stx, fx, dx, sty, fy, dy, stp, brackt)."""
    sgnd = dp * (dx / abs(dx))
    if fp > fx:  # higher function value: the minimum is bracketed
        theta, gamma = _cubic(fx, fp, stx, stp, dx, dp)
        if stp < stx:
            gamma = -gamma
        p = (gamma - dx) + theta
        q = ((gamma - dx) + gamma) + dp
        stpc = stx + (p / q) * (stp - stx)
        stpq = stx + ((dx / ((fx - fp) / (stp - stx) + dx)) / 2) * (stp - stx)
        stpf = stpc if abs(stpc - stx) < abs(stpq - stx) else stpc + (stpq - stpc) / 2
        brackt = True
    elif sgnd < 0:  # derivatives of opposite sign: bracketed
        stpc = _cubic_step_toward(stp, fp, dp, stx, fx, dx)
        stpq = stp + (dp / (dp - dx)) * (stx - stp)
        stpf = stpc if abs(stpc - stp) > abs(stpq - stp) else stpq
        brackt = True
    elif abs(dp) < abs(dx):  # same sign, the derivative's magnitude decreases
        theta, gamma = _cubic(fx, fp, stx, stp, dx, dp, clip=True)
        if stp > stx:
            gamma = -gamma
        p = (gamma - dp) + theta
        q = (gamma + (dx - dp)) + gamma
        r = p / q
        if r < 0 and gamma != 0:
            stpc = stp + r * (stx - stp)
        elif stp > stx:
            stpc = stpmax
        else:
            stpc = stpmin
        stpq = stp + (dp / (dp - dx)) * (stx - stp)
        if brackt:
            stpf = stpc if abs(stpc - stp) < abs(stpq - stp) else stpq
            if stp > stx:
                stpf = min(stp + 0.66 * (sty - stp), stpf)
            else:
                stpf = max(stp + 0.66 * (sty - stp), stpf)
        else:
            stpf = stpc if abs(stpc - stp) > abs(stpq - stp) else stpq
            stpf = max(stpmin, min(stpmax, stpf))
    else:  # same sign, the derivative's magnitude does not decrease
        if brackt:
            stpf = _cubic_step_toward(stp, fp, dp, sty, fy, dy)
        elif stp > stx:
            stpf = stpmax
        else:
            stpf = stpmin
    if fp > fx:
        sty, fy, dy = stp, fp, dp
    else:
        if sgnd < 0:
            sty, fy, dy = stx, fx, dx
        stx, fx, dx = stp, fp, dp
    return stx, fx, dx, sty, fy, dy, stpf, brackt


def line_search(phi, f0: float, g0: float, stp: float, stpmax: float, max_evals: int,
                ftol: float = 1e-3, gtol: float = 0.9, xtol: float = 0.1):
    """MINPACK-2's dcsrch driven to its end: ``phi(stp)`` returns (f, directional derivative,
    payload) at a trial step. Returns (stp, f, payload) of the accepted step, or None when the
    search needs more than ``max_evals`` evaluations (L-BFGS-B's maxls)."""
    stpmin = 0.0
    brackt, stage = False, 1
    gtest = ftol * g0
    width = stpmax - stpmin
    width1 = width / 0.5
    stx, fx, gx = 0.0, f0, g0
    sty, fy, gy = 0.0, f0, g0
    stmin, stmax = 0.0, stp + 4.0 * stp
    for _ in range(max_evals):
        f, g, payload = phi(stp)
        ftest = f0 + stp * gtest
        if stage == 1 and f <= ftest and g >= 0:
            stage = 2
        if ((brackt and (stp <= stmin or stp >= stmax))  # rounding errors prevent progress
                or (brackt and stmax - stmin <= xtol * stmax)  # xtol test satisfied
                or (stp == stpmax and f <= ftest and g <= gtest)
                or (stp == stpmin and (f > ftest or g >= gtest))
                or (f <= ftest and abs(g) <= gtol * (-g0))):  # convergence
            return stp, f, payload
        if stage == 1 and f <= fx and f > ftest:  # the modified function of stage 1
            stx, fxm, gxm, sty, fym, gym, stp, brackt = _step(
                stx, fx - stx * gtest, gx - gtest, sty, fy - sty * gtest, gy - gtest,
                stp, f - stp * gtest, g - gtest, brackt, stmin, stmax)
            fx, fy, gx, gy = fxm + stx * gtest, fym + sty * gtest, gxm + gtest, gym + gtest
        else:
            stx, fx, gx, sty, fy, gy, stp, brackt = _step(
                stx, fx, gx, sty, fy, gy, stp, f, g, brackt, stmin, stmax)
        if brackt:  # bisect when the interval does not shrink enough
            if abs(sty - stx) >= 0.66 * width1:
                stp = stx + 0.5 * (sty - stx)
            width1, width = width, abs(sty - stx)
        if brackt:
            stmin, stmax = min(stx, sty), max(stx, sty)
        else:
            stmin, stmax = stp + 1.1 * (stp - stx), stp + 4.0 * (stp - stx)
        stp = min(max(stp, stpmin), stpmax)
        if (brackt and (stp <= stmin or stp >= stmax)) or (brackt and stmax - stmin <= xtol * stmax):
            stp = stx
    return None


def _direction(g: np.ndarray, pairs: list, theta: float) -> np.ndarray:
    """-H g by the two-loop recursion over the stored (s, y) pairs, H0 = I / theta."""
    q = g.copy()
    alphas = []
    for s, y in reversed(pairs):
        alpha = (s @ q) / (y @ s)
        q -= alpha * y
        alphas.append(alpha)
    q /= theta
    for (s, y), alpha in zip(pairs, reversed(alphas)):
        q += (alpha - (y @ q) / (y @ s)) * s
    return -q


def minimise(fun, w0: np.ndarray, gtol: float = TOL, ftol: float = FTOL, max_iter: int = MAX_ITER,
             max_ls: int = MAX_LS, memory: int = MEMORY) -> tuple[np.ndarray, int]:
    """L-BFGS-B without bounds, as scipy runs it: returns (w, iterations)."""
    w = np.asarray(w0, dtype=np.float64).copy()
    f, g = fun(w)
    iterations = 0
    if np.max(np.abs(g)) <= gtol:
        return w, iterations
    pairs: list = []
    theta = 1.0
    while True:
        d = _direction(g, pairs, theta) if pairs else -g / theta
        gd0 = float(g @ d)
        step0 = min(1.0 / math.sqrt(d @ d), STEP_MAX) if iterations == 0 else 1.0

        def phi(stp, w=w, d=d):
            trial = w + stp * d
            ft, gt = fun(trial)
            return ft, float(gt @ d), (trial, gt)

        found = line_search(phi, f, gd0, step0, STEP_MAX, max_ls) if gd0 < 0 else None
        if found is None:  # L-BFGS-B keeps the last iterate, then restarts or gives up
            if not pairs:
                return w, iterations + 1
            pairs, theta = [], 1.0
            continue
        stp, f_new, (w_new, g_new) = found
        iterations += 1
        f_old, g_old = f, g
        w, f, g = w_new, f_new, g_new
        if iterations >= max_iter or np.max(np.abs(g)) <= gtol:
            return w, iterations
        if f_old - f <= ftol * max(abs(f_old), abs(f), 1.0):
            return w, iterations
        y = g - g_old
        gd = float(g @ d)
        dr = (gd - gd0) * stp
        if dr <= EPS * (-gd0 * stp):  # curvature too small: the pair is skipped
            continue
        pairs.append((stp * d, y))
        if len(pairs) > memory:
            pairs.pop(0)
        theta = float(y @ y) / dr


def logistic_fit(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """§4.4: P(y=1|x) = sigmoid(a + b x) as scikit-learn's ``LogisticRegression(penalty=None)``
    fits it (lbfgs from zero, its default tolerances). ``y`` in {0, 1}. Returns (a, b)."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    (b, a), _ = minimise(lambda w: mean_log_loss(w, x, y), np.zeros(2))
    return float(a), float(b)
