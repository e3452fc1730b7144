"""``figures/sag.pdf``: the four-panel illustration of one SAG call late in a run.

The call is recomputed from the run's arrays with ``askdagger_mnist.sag``: the inputs are u, r
and k of everything seen up to the end of the chosen step, with r of that step's batch set to
zero (the call happens before the teacher answers, docs/spec.md §3.3). The imputation draws
come from a fixed generator, so the recomputed gamma may differ slightly from the one the run
recorded; the figure shows both.

Panels: (a) uncertainty vs update count with the least-squares fit (normalization);
(b) negated reward vs normalized uncertainty; (c) the logistic fit P(failure | u');
(d) the labels of one imputation with the gammas of all imputations and their median.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ..errors import UserError
from ..data.rundir import read_arrays, read_info
from ..algorithm.sag import SagConfig, SagDetails, sag_details, sigmoid
from ..settings import RunSettings

DEFAULTS = RunSettings()

FAIL_COLOUR = "#d62728"
SUCCESS_COLOUR = "#1f77b4"
UNKNOWN_COLOUR = "0.65"


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
    arrays = read_arrays(run_dir)
    settings = info.get("settings", {})
    for name in ("mode", "s_des", "p_rand", "normalization", "imputation", "batch_size"):
        if name not in settings:
            raise UserError(f"{run_dir / 'run.json'} lacks the setting {name!r}: re-run its train job.")
    for name in ("u", "r", "k"):
        if name not in arrays:
            raise UserError(f"{run_dir / 'arrays.npz'} lacks the array {name!r}: re-run its train job.")
    batch = int(settings["batch_size"])
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


def _legend_handles():
    from matplotlib.lines import Line2D

    def dot(colour, label):
        return Line2D([], [], marker="o", linestyle="", markersize=4, color=colour, label=label)

    return [
        dot(FAIL_COLOUR, "queried, novice wrong ($r=-1$)"),
        dot(SUCCESS_COLOUR, "queried, novice right ($r=+1$)"),
        dot(UNKNOWN_COLOUR, "not queried ($r=0$)"),
    ]


def _colours(r: np.ndarray) -> np.ndarray:
    return np.where(r < 0, FAIL_COLOUR, np.where(r > 0, SUCCESS_COLOUR, UNKNOWN_COLOUR))


def _achieved_note(config: SagConfig, scores: np.ndarray, labels: np.ndarray, gamma: float) -> str:
    """What the threshold achieves on the shown labels, with random queries counted in."""
    p = config.p_rand
    queried = scores >= gamma
    if config.mode == "sensitivity":
        tpr = float(np.mean(queried[labels == 1])) if np.any(labels == 1) else float("nan")
        value, name = tpr + p * (1 - tpr), "sensitivity"
    elif config.mode == "specificity":
        tnr = float(np.mean(~queried[labels == -1])) if np.any(labels == -1) else float("nan")
        value, name = (1 - p) * tnr, "specificity"
    else:
        success = 1.0 - float(np.sum((labels == 1) & ~queried)) / len(labels)
        value, name = success + p * (1 - success), "system success"
    return (
        f"at $\\gamma$ on these labels, with random queries:\n"
        f"expected {name} {value:.3f} ($s_{{\\mathrm{{des}}}}$ = {config.s_des:g})"
    )


def sag_figure(call: SagCall, title: str):
    import matplotlib.pyplot as plt

    from .figures import style

    d = call.details
    start = d.window_start
    r_w = call.r[start:]
    rng = np.random.default_rng(12345)  # jitter only
    a_lin, b_lin = d.lin_coef
    gamma_tex = r"$\gamma$"
    with style():
        fig, axes = plt.subplots(2, 2, figsize=(10.5, 8.0), layout="constrained")
        (ax_a, ax_b), (ax_c, ax_d) = axes

        # (a) uncertainty vs update count, window highlighted, least-squares line.
        order = np.argsort(r_w != 0, kind="stable")  # unknown first, labelled on top
        kj = d.k_window + rng.uniform(-0.3, 0.3, len(d.k_window))
        # Zoom on the window and a few update counts before it (late in a run the window
        # spans only the last updates; the whole history would hide it).
        k_lo = float(d.k_window.min())
        x_lo = max(float(call.k.min()), k_lo - max(4.0, 2.0 * (d.k_last - k_lo + 1)))
        pre = np.flatnonzero(call.k[:start] >= x_lo)
        if len(pre):
            pre_k = call.k[pre] + rng.uniform(-0.3, 0.3, len(pre))
            ax_a.scatter(pre_k, call.u[pre], s=2, color="0.85", rasterized=True, linewidths=0,
                         label="before the window")
        ax_a.scatter(kj[order], d.u_window[order], s=3, c=_colours(r_w[order]), rasterized=True, linewidths=0)
        ks = np.array([d.k_window.min(), d.k_window.max()])
        if call.config.normalization:
            ax_a.plot(ks, a_lin + b_lin * ks, color="k", linewidth=1.5,
                      label=f"least squares: $u = {a_lin:.3f} {b_lin:+.4f}\\,k$")
        ax_a.axvline(d.k_window.min() - 0.5, color="0.3", linestyle=":", linewidth=1,
                     label=f"window start ($k \\geq {d.k_window.min():g}$)")
        ax_a.set_xlabel("Update count $k$ when the sample was seen")
        ax_a.set_ylabel("Uncertainty $u = 1 - \\max_c \\bar p_c$")
        ax_a.set_xlim(x_lo - 0.6, d.k_last + 0.6)
        u_shown = np.concatenate([d.u_window, call.u[pre]])
        u_lo, u_hi = float(u_shown.min()), float(u_shown.max())
        ax_a.set_ylim(u_lo - 0.03, u_hi + 0.6 * (u_hi - u_lo) + 0.03)  # room for the legend
        norm_note = "" if call.config.normalization else " (normalization off: not used)"
        ax_a.set_title(f"(a) Uncertainty vs update count{norm_note}")
        ax_a.legend(handles=_legend_handles() + ax_a.get_legend_handles_labels()[0], loc="upper right",
                    fontsize=7, framealpha=0.9)

        # (b) negated reward vs normalized uncertainty.
        f = -r_w
        jitter = rng.uniform(-0.12, 0.12, len(f))
        ax_b.scatter(d.u_norm[order], (f + jitter)[order], s=3, c=_colours(r_w[order]), rasterized=True,
                     linewidths=0)
        ax_b.set_yticks([-1, 0, 1], ["success\n($-r=-1$)", "unknown\n($-r=0$)", "failure\n($-r=+1$)"])
        ax_b.set_xlabel("Normalized uncertainty $u'$" if call.config.normalization else "Uncertainty $u$")
        ax_b.set_ylabel("Negated reward $-r$ (jittered)")
        ax_b.set_title(f"(b) Labels in the window: {len(f)} samples, {int(np.sum(f != 0))} labelled")

        # (c) logistic fit on the labelled window samples.
        known = d.f_known_mask
        x_known = d.u_norm[known]
        y_known = (f[known] == 1).astype(float)
        ax_c.scatter(x_known, y_known + rng.uniform(-0.03, 0.03, len(y_known)), s=3,
                     c=np.where(y_known > 0, FAIL_COLOUR, SUCCESS_COLOUR), rasterized=True, linewidths=0)
        edges = np.quantile(x_known, np.linspace(0, 1, 13))
        idx = np.clip(np.searchsorted(edges, x_known, side="right") - 1, 0, len(edges) - 2)
        centres = np.array([x_known[idx == i].mean() for i in range(len(edges) - 1) if np.any(idx == i)])
        rates = np.array([y_known[idx == i].mean() for i in range(len(edges) - 1) if np.any(idx == i)])
        ax_c.plot(centres, rates, "o", color="k", markersize=4, markerfacecolor="white",
                  label="share of failures (12 quantile bins)")
        xs = np.linspace(d.u_norm.min(), d.u_norm.max(), 300)
        if d.logit_coef is not None:
            a, b = d.logit_coef
            ax_c.plot(xs, sigmoid(a + b * xs), color="k", linewidth=1.5,
                      label=f"logistic fit: $\\sigma({a:.2f} {b:+.2f}\\,u')$")
            ax_c.set_title("(c) Logistic fit $P(\\mathrm{failure} \\mid u')$")
        else:
            ax_c.set_title("(c) Labelled samples (imputation off: no logistic fit)")
        ax_c.set_xlabel("Normalized uncertainty $u'$" if call.config.normalization else "Uncertainty $u$")
        ax_c.set_ylabel("Failure (1) / success (0)")
        ax_c.set_ylim(-0.08, 1.08)
        ax_c.legend(loc="center right", fontsize=7, framealpha=0.9)

        # (d) one imputation's labels with the gammas.
        gammas = np.asarray(d.gammas, dtype=float)
        finite = np.isfinite(gammas)
        j = int(np.nanargmin(np.abs(np.where(finite, gammas, np.nan) - d.gamma))) if finite.any() else 0
        labels = d.labels[j]
        scores = d.u_norm if call.config.imputation else d.u_norm[known]
        was_known = known if call.config.imputation else np.ones(len(scores), bool)
        bins = np.linspace(scores.min(), scores.max(), 41)
        groups = [
            (scores[(labels == 1) & was_known], FAIL_COLOUR, 1.0, "failure (labelled)"),
            (scores[(labels == 1) & ~was_known], FAIL_COLOUR, 0.4, "failure (imputed)"),
            (scores[(labels == -1) & was_known], SUCCESS_COLOUR, 1.0, "success (labelled)"),
            (scores[(labels == -1) & ~was_known], SUCCESS_COLOUR, 0.4, "success (imputed)"),
        ]
        bottom = np.zeros(len(bins) - 1)
        for values, colour, alpha, label in groups:
            if len(values) == 0:
                continue
            counts, _ = np.histogram(values, bins)
            ax_d.bar(bins[:-1], counts, width=np.diff(bins), bottom=bottom, align="edge", color=colour,
                     alpha=alpha, linewidth=0, label=label)
            bottom += counts
        for g in gammas[finite]:
            ax_d.axvline(g, color="0.5", linewidth=0.6, alpha=0.7)
        if len(gammas) > 1:
            ax_d.plot([], [], color="0.5", linewidth=0.6, label=f"{gamma_tex} of each of {len(gammas)} imputations")
        median_note = " (median)" if len(gammas) > 1 else ""
        if np.isfinite(d.gamma):
            ax_d.axvline(d.gamma, color="k", linestyle="--", linewidth=1.6,
                         label=f"{gamma_tex} = {d.gamma:.3f}{median_note}")
        else:
            ax_d.plot([], [], color="k", linestyle="--", linewidth=1.6,
                      label=f"{gamma_tex} = $+\\infty${median_note}: no active queries")
        if call.recorded_gamma is not None:
            rec = call.recorded_gamma
            rec_text = f"{rec:.3f}" if np.isfinite(rec) else "$+\\infty$"
            style_kw = {"color": "tab:green", "linestyle": ":", "linewidth": 1.6,
                        "label": f"{gamma_tex} the run recorded = {rec_text}"}
            if np.isfinite(rec):
                ax_d.axvline(rec, **style_kw)
            else:
                ax_d.plot([], [], **style_kw)  # legend entry only
        ax_d.set_ylim(0, 1.45 * bottom.max())  # room for the legend and the note
        # An infinite gamma queries nothing actively; the note holds all the same.
        ax_d.text(0.98, 0.97, _achieved_note(call.config, scores, labels, d.gamma), transform=ax_d.transAxes,
                  ha="right", va="top", fontsize=7.5, bbox={"facecolor": "white", "alpha": 0.9, "linewidth": 0.5})
        score_name = "Normalized uncertainty $u'$" if call.config.normalization else "Uncertainty $u'=u$"
        ax_d.set_xlabel(f"{score_name} (queried when $u' \\geq \\gamma$)")
        ax_d.set_ylabel("Window samples")
        which = f"imputation {j + 1} of {len(gammas)}" if call.config.imputation else "labelled samples only"
        ax_d.set_title(f"(d) Labels ({which}) and the threshold")
        ax_d.legend(loc="upper left", fontsize=7, framealpha=0.9)

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
