"""``figures/sag.pdf``: the four-panel illustration of one SAG call late in a run.

The call is recomputed from the run's arrays with ``askdagger_mnist.sag``: the inputs are u, r
and k of everything seen up to the end of the chosen step, with r of that step's batch set to
zero (the call happens before the teacher answers, docs/spec.md §3.3). The imputation draws
come from a fixed generator, so the recomputed gamma may differ slightly from the one the run
recorded; the figure shows both.

Panels (analysis/sag_panels.py draws each): (a) uncertainty vs update count with the
least-squares fit (normalization); (b) negated reward vs normalized uncertainty; (c) the
logistic fit P(failure | u'); (d) the labels of one imputation with the gammas of all
imputations and their median.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ..errors import UserError
from ..data.invariants import read_consistent_arrays
from ..data.rundir import read_info
from ..algorithm.sag import SagConfig, SagDetails, sag_details
from ..settings import RunSettings

DEFAULTS = RunSettings()


@dataclass
class SagCall:
    """One recomputed SAG call and what is needed to show it."""

    step: int
    n_seen: int
    u: np.ndarray
    r: np.ndarray
    k: np.ndarray
    config: SagConfig
    details: SagDetails
    recorded_gamma: float | None
    settings: Mapping[str, Any]


def sag_inputs(arrays: Mapping[str, np.ndarray], batch_size: int, step: int):
    """u, r, k as the SAG call of ``step`` saw them: everything up to the end of that step's
    batch, with the batch's rewards still zero."""
    n = min((step + 1) * batch_size, len(arrays["u"]))
    u = np.asarray(arrays["u"][:n], dtype=np.float64)
    r = np.asarray(arrays["r"][:n]).astype(np.int64)
    r[step * batch_size :] = 0
    k = np.asarray(arrays["k"][:n])
    return u, r, k


def recompute_call(run_dir: Path, step: int | None = None, seed: int = 0) -> SagCall:
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UserError(f"run directory {run_dir} does not exist: pass a finished run with --run.")
    info = read_info(run_dir)
    settings = info.get("settings", {})
    for name in ("mode", "s_des", "p_rand", "normalization", "imputation", "batch_size"):
        if name not in settings:
            raise UserError(f"{run_dir / 'run.json'} lacks the setting {name!r}: re-run its train job.")
    batch = int(settings["batch_size"])
    arrays = read_consistent_arrays(run_dir, batch)
    n_steps = -(-len(arrays["u"]) // batch)
    if step is None:
        step = n_steps - 1
    if not 0 <= step < n_steps:
        raise UserError(f"--step {step} is outside the run {run_dir}: it has steps 0 to {n_steps - 1}.")
    config = SagConfig(
        mode=str(settings["mode"]),
        s_des=float(settings["s_des"]),
        p_rand=float(settings["p_rand"]),
        normalization=bool(settings["normalization"]),
        imputation=bool(settings["imputation"]),
        # Runs imported from the authors' format record no n_min or n_rep: the defaults.
        n_min=int(settings.get("n_min", DEFAULTS.n_min)),
        n_rep=int(settings.get("n_rep", DEFAULTS.n_rep)),
    )
    u, r, k = sag_inputs(arrays, batch, step)
    details = sag_details(u, r, k, config, np.random.default_rng(seed))
    if details.fallback:
        raise UserError(
            f"the SAG call at step {step} of {run_dir} fell back to the uncertainty quantile "
            "(too few labelled samples), so there are no fits to show: pick a later --step (in "
            "the workflow, the last step of the run: raise the config key max_steps)."
        )
    recorded = None
    if "g" in arrays and len(arrays["g"]) > step * batch:
        recorded = float(arrays["g"][step * batch])
    return SagCall(step, len(u), u, r, k, config, details, recorded, settings)


def sag_figure(call: SagCall, title: str):
    """The four panels of one SAG call, (a) to (d), under ``title``."""
    import matplotlib.pyplot as plt

    from .figures import style
    from .sag_panels import (panel_logistic_fit, panel_normalization, panel_rewards,
                             panel_threshold)

    rng = np.random.default_rng(12345)  # jitter only; the panels draw from it in order
    # Samples of the window in drawing order: unknown first, labelled on top.
    order = np.argsort(call.r[call.details.window_start:] != 0, kind="stable")
    with style():
        fig, axes = plt.subplots(2, 2, figsize=(10.5, 8.0), layout="constrained")
        (ax_a, ax_b), (ax_c, ax_d) = axes
        panel_normalization(ax_a, call, order, rng)
        panel_rewards(ax_b, call, order, rng)
        panel_logistic_fit(ax_c, call, rng)
        panel_threshold(ax_d, call)
        fig.suptitle(title, fontsize=10.5)
    return fig


def sag_figure_for_run(run_dir: Path, out: Path, step: int | None = None, seed: int = 0) -> SagCall:
    from .figures import save_figure_atomic
    from ..experiment.naming import format_s_des

    call = recompute_call(run_dir, step, seed)
    st = call.settings
    d = call.details
    title = (
        f"One SAG call: {st['mode']}-aware gating, $s_{{\\mathrm{{des}}}}$ = {format_s_des(st['s_des'])}, "
        f"$p_{{\\mathrm{{rand}}}}$ = {float(st['p_rand']):g}, step {call.step} "
        f"({call.n_seen} samples seen; window of {len(d.u_window)} with $k \\geq {d.k_window.min():g}$)\n"
        f"a single run ({st.get('variant', '?')}, repetition {st.get('rep', '?')}), not an average over repetitions"
    )
    save_figure_atomic(sag_figure(call, title), out)
    return call
