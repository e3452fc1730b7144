"""The four panels of ``figures/sag.pdf`` (analysis/sag_figure.py recomputes the SAG call
they show and lays them out): one function per panel, each drawing on the axes it is given.

(a) uncertainty vs update count with the least-squares fit (normalization);
(b) negated reward vs normalized uncertainty; (c) the logistic fit P(failure | u');
(d) the labels of one imputation with the gammas of all imputations and their median.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..algorithm.sag import SagConfig, sigmoid

if TYPE_CHECKING:
    from .sag_figure import SagCall

FAIL_COLOUR = "#d62728"
SUCCESS_COLOUR = "#1f77b4"
UNKNOWN_COLOUR = "0.65"


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


def panel_normalization(ax, call: SagCall, order: np.ndarray, rng: np.random.Generator) -> None:
    """(a) uncertainty vs update count, the window highlighted, the least-squares line."""
    d = call.details
    start, r_w = d.window_start, call.r[d.window_start:]
    a_lin, b_lin = d.lin_coef
    kj = d.k_window + rng.uniform(-0.3, 0.3, len(d.k_window))
    # Zoom on the window and a few update counts before it (late in a run the window
    # spans only the last updates; the whole history would hide it).
    k_lo = float(d.k_window.min())
    x_lo = max(float(call.k.min()), k_lo - max(4.0, 2.0 * (d.k_last - k_lo + 1)))
    pre = np.flatnonzero(call.k[:start] >= x_lo)
    if len(pre):
        pre_k = call.k[pre] + rng.uniform(-0.3, 0.3, len(pre))
        ax.scatter(pre_k, call.u[pre], s=2, color="0.85", rasterized=True, linewidths=0,
                   label="before the window")
    ax.scatter(kj[order], d.u_window[order], s=3, c=_colours(r_w[order]), rasterized=True, linewidths=0)
    ks = np.array([d.k_window.min(), d.k_window.max()])
    if call.config.normalization:
        ax.plot(ks, a_lin + b_lin * ks, color="k", linewidth=1.5,
                label=f"least squares: $u = {a_lin:.3f} {b_lin:+.4f}\\,k$")
    ax.axvline(d.k_window.min() - 0.5, color="0.3", linestyle=":", linewidth=1,
               label=f"window start ($k \\geq {d.k_window.min():g}$)")
    ax.set_xlabel("Update count $k$ when the sample was seen")
    ax.set_ylabel("Uncertainty $u = 1 - \\max_c \\bar p_c$")
    ax.set_xlim(x_lo - 0.6, d.k_last + 0.6)
    u_shown = np.concatenate([d.u_window, call.u[pre]])
    u_lo, u_hi = float(u_shown.min()), float(u_shown.max())
    ax.set_ylim(u_lo - 0.03, u_hi + 0.6 * (u_hi - u_lo) + 0.03)  # room for the legend
    norm_note = "" if call.config.normalization else " (normalization off: not used)"
    ax.set_title(f"(a) Uncertainty vs update count{norm_note}")
    ax.legend(handles=_legend_handles() + ax.get_legend_handles_labels()[0], loc="upper right",
              fontsize=7, framealpha=0.9)


def _score_label(call: SagCall) -> str:
    """The x axis of panels (b) to (d): the score u' that SAG fits and thresholds (u itself
    without normalization)."""
    return "Normalized uncertainty $u'$" if call.config.normalization else "Uncertainty $u'=u$"


def panel_rewards(ax, call: SagCall, order: np.ndarray, rng: np.random.Generator) -> None:
    """(b) negated reward vs normalized uncertainty of the window's samples."""
    d = call.details
    r_w = call.r[d.window_start:]
    f = -r_w
    jitter = rng.uniform(-0.12, 0.12, len(f))
    ax.scatter(d.u_norm[order], (f + jitter)[order], s=3, c=_colours(r_w[order]), rasterized=True,
               linewidths=0)
    ax.set_yticks([-1, 0, 1], ["success\n($-r=-1$)", "unknown\n($-r=0$)", "failure\n($-r=+1$)"])
    ax.set_xlabel(_score_label(call))
    ax.set_ylabel("Negated reward $-r$ (jittered)")
    ax.set_title(f"(b) Labels in the window: {len(f)} samples, {int(np.sum(f != 0))} labelled")


def panel_logistic_fit(ax, call: SagCall, rng: np.random.Generator) -> None:
    """(c) the labelled window samples, their share of failures and the logistic fit."""
    d = call.details
    known = d.f_known_mask
    x_known = d.u_norm[known]
    y_known = (-call.r[d.window_start:][known] == 1).astype(float)
    ax.scatter(x_known, y_known + rng.uniform(-0.03, 0.03, len(y_known)), s=3,
               c=np.where(y_known > 0, FAIL_COLOUR, SUCCESS_COLOUR), rasterized=True, linewidths=0)
    edges = np.quantile(x_known, np.linspace(0, 1, 13))
    idx = np.clip(np.searchsorted(edges, x_known, side="right") - 1, 0, len(edges) - 2)
    bins = [i for i in range(len(edges) - 1) if np.any(idx == i)]
    centres = np.array([x_known[idx == i].mean() for i in bins])
    rates = np.array([y_known[idx == i].mean() for i in bins])
    ax.plot(centres, rates, "o", color="k", markersize=4, markerfacecolor="white",
            label="share of failures (12 quantile bins)")
    xs = np.linspace(d.u_norm.min(), d.u_norm.max(), 300)
    if d.logit_coef is not None:
        a, b = d.logit_coef
        ax.plot(xs, sigmoid(a + b * xs), color="k", linewidth=1.5,
                label=f"logistic fit: $\\sigma({a:.2f} {b:+.2f}\\,u')$")
        ax.set_title("(c) Logistic fit $P(\\mathrm{failure} \\mid u')$")
    else:
        ax.set_title("(c) Labelled samples (imputation off: no logistic fit)")
    ax.set_xlabel(_score_label(call))
    ax.set_ylabel("Failure (1) / success (0)")
    ax.set_ylim(-0.08, 1.08)
    ax.legend(loc="center right", fontsize=7, framealpha=0.9)


def panel_threshold(ax, call: SagCall) -> None:
    """(d) the labels of the imputation whose gamma is nearest the median, stacked by kind,
    with every imputation's gamma, their median and the gamma the run recorded."""
    d = call.details
    known = d.f_known_mask
    gammas = np.asarray(d.gammas, dtype=float)
    finite = np.isfinite(gammas)
    j = int(np.nanargmin(np.abs(np.where(finite, gammas, np.nan) - d.gamma))) if finite.any() else 0
    labels = d.labels[j]
    scores = d.u_norm if call.config.imputation else d.u_norm[known]
    was_known = known if call.config.imputation else np.ones(len(scores), bool)
    top = _stacked_labels(ax, scores, labels, was_known)
    _gamma_lines(ax, call, gammas)
    ax.set_ylim(0, 1.45 * top)  # room for the legend and the note
    # An infinite gamma queries nothing actively; the note holds all the same.
    ax.text(0.98, 0.97, _achieved_note(call.config, scores, labels, d.gamma), transform=ax.transAxes,
            ha="right", va="top", fontsize=7.5, bbox={"facecolor": "white", "alpha": 0.9, "linewidth": 0.5})
    ax.set_xlabel(f"{_score_label(call)} (queried when $u' \\geq \\gamma$)")
    ax.set_ylabel("Window samples")
    which = f"imputation {j + 1} of {len(gammas)}" if call.config.imputation else "labelled samples only"
    ax.set_title(f"(d) Labels ({which}) and the threshold")
    ax.legend(loc="upper left", fontsize=7, framealpha=0.9)


def _stacked_labels(ax, scores: np.ndarray, labels: np.ndarray, was_known: np.ndarray) -> float:
    """A histogram of the scores stacked by label (labelled or imputed); returns its top."""
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
        ax.bar(bins[:-1], counts, width=np.diff(bins), bottom=bottom, align="edge", color=colour,
               alpha=alpha, linewidth=0, label=label)
        bottom += counts
    return float(bottom.max())


def _gamma_lines(ax, call: SagCall, gammas: np.ndarray) -> None:
    """Every imputation's gamma (grey), their median (dashed) and the run's recorded one."""
    gamma, gamma_tex = call.details.gamma, r"$\gamma$"
    for g in gammas[np.isfinite(gammas)]:
        ax.axvline(g, color="0.5", linewidth=0.6, alpha=0.7)
    if len(gammas) > 1:
        ax.plot([], [], color="0.5", linewidth=0.6, label=f"{gamma_tex} of each of {len(gammas)} imputations")
    median_note = " (median)" if len(gammas) > 1 else ""
    if np.isfinite(gamma):
        ax.axvline(gamma, color="k", linestyle="--", linewidth=1.6,
                   label=f"{gamma_tex} = {gamma:.3f}{median_note}")
    else:
        ax.plot([], [], color="k", linestyle="--", linewidth=1.6,
                label=f"{gamma_tex} = $+\\infty${median_note}: no active queries")
    if call.recorded_gamma is not None:
        rec = call.recorded_gamma
        rec_text = f"{rec:.3f}" if np.isfinite(rec) else "$+\\infty$"
        style_kw = {"color": "tab:green", "linestyle": ":", "linewidth": 1.6,
                    "label": f"{gamma_tex} the run recorded = {rec_text}"}
        if np.isfinite(rec):
            ax.axvline(rec, **style_kw)
        else:
            ax.plot([], [], **style_kw)  # legend entry only
