"""The curve figures (docs/spec.md §5.4-§5.5): the 3 x 3 paper figure and the two ablation figures.

Matplotlib only (Agg backend, mathtext, TrueType fonts embedded: ``pdf.fonttype 42``).
Each figure shows, per step, the mean across repetitions with a shaded +-1 (population) std
band, and names the number of repetitions it averages.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Sequence

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

from .inputs import series  # noqa: E402
from ..data.atomic import atomic_file  # noqa: E402
from ..experiment.naming import format_s_des  # noqa: E402
from ..settings import ABLATION_MODE, SAG_VARIANT  # noqa: E402

# fontTools warns, while subsetting matplotlib's bundled Computer Modern fonts for mathtext,
# that their header dates are "very low": harmless noise in every log.
logging.getLogger("fontTools.ttLib.tables._h_e_a_d").setLevel(logging.ERROR)

STYLE = {
    "pdf.fonttype": 42,  # embed TrueType, never Type 3
    "ps.fonttype": 42,
    "text.usetex": False,  # mathtext only: no LaTeX install needed
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "legend.fontsize": 8,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "grid.linewidth": 0.5,
    "savefig.dpi": 150,
}

COLUMN_TITLES = {
    "sensitivity": "Sensitivity-aware gating",
    "specificity": "Specificity-aware gating",
    "success": "Success-aware gating",
}
# The metric each mode tracks (row 1 of the paper figure), and its axis label.
TRACKED = {
    "sensitivity": ("sensitivity", "Sensitivity\n(last 1000 failures)"),
    "specificity": ("specificity", "Specificity\n(last 1000 successes)"),
    "success": ("system_success", "System success rate\n(last 1000 samples)"),
}
VARIANT_TITLES = {
    SAG_VARIANT: "SAG",
    "no_normalization": "SAG without normalization",
    "no_imputation": "SAG without imputation",
}
S_DES_TEX = r"$s_{\mathrm{des}}$"
P_RAND_TEX = r"$p_{\mathrm{rand}}$"


@contextmanager
def style() -> Iterator[None]:
    with plt.rc_context(STYLE):
        yield


def s_des_colour(s_des: float):
    """One rainbow colour per desired value, by value (the same s_des has the same colour in
    every figure, whatever subset of values is plotted)."""
    return plt.cm.rainbow(float(s_des))


def note_provenance(fig: plt.Figure, runs) -> None:
    """A footnote when the figure's runs (their runs.csv rows) mix engines, devices or package
    versions, which agree step for step only for a few dozen steps (docs/spec.md §7.3)."""
    from .aggregate import provenance_mix

    mix = provenance_mix(runs)
    if mix:
        fig.text(0.005, 0.002, f"These runs mix {mix}.", fontsize=5, ha="left", va="bottom")


def save_figure_atomic(fig: plt.Figure, path: Path) -> None:
    """Save via a temporary sibling and ``os.replace``; PDFs carry no creation date so that the
    same inputs give the same bytes."""
    path = Path(path)
    fmt = path.suffix.lstrip(".").lower() or "pdf"
    try:
        metadata = {"CreationDate": None} if fmt == "pdf" else None
        with atomic_file(path) as tmp, style():
            fig.savefig(tmp, format=fmt, metadata=metadata)  # constrained layout: no "tight" redraw
    finally:
        plt.close(fig)


def _plot_band(ax, x, mean, std, colour, label=None) -> None:
    ax.fill_between(x, mean - std, mean + std, color=colour, alpha=0.18, linewidth=0)
    ax.plot(x, mean, color=colour, linewidth=1.1, label=label)


def _rate_axis(ax) -> None:
    ax.set_ylim(-0.02, 1.02)
    ax.set_yticks(np.linspace(0, 1, 6))


def _s_des_legend(fig, s_des: Sequence[float], reps: int, dashed_label: str, **kwargs) -> None:
    handles = [
        Line2D([], [], color=s_des_colour(s), linewidth=1.5, label=f"{S_DES_TEX} = {format_s_des(s)}")
        for s in s_des
    ]
    handles.append(Line2D([], [], color="0.3", linestyle="--", linewidth=1.0, label=dashed_label))
    handles.append(
        Patch(facecolor="0.3", alpha=0.25, label=f"mean $\\pm$ std over {reps} repetitions")
    )
    fig.legend(handles=handles, frameon=False, **kwargs)


def main_figure(
    stats: pd.DataFrame,
    modes: Sequence[str],
    s_des: Sequence[float],
    reps: int,
    variant: str = SAG_VARIANT,
) -> plt.Figure:
    """The 3 x 3 paper figure: columns = modes; rows = tracked metric (desired value dashed),
    query rate, novice success rate; one colour per s_des."""
    with style():
        fig, axes = plt.subplots(
            3, len(modes), figsize=(3.6 * len(modes) + 2.2, 8.0), sharex=True, sharey=True,
            squeeze=False, layout="constrained",
        )
        for col, mode in enumerate(modes):
            metric, label = TRACKED[mode]
            ax_t, ax_q, ax_n = axes[:, col]
            for s in s_des:
                colour = s_des_colour(s)
                x, mean, std = series(stats, mode, variant, s, metric)
                _plot_band(ax_t, x, mean, std, colour)
                if mode == "success":
                    # Desired system success: the novice alone may already exceed s_des.
                    _, novice, _ = series(stats, mode, variant, s, "novice_success")
                    ax_t.plot(x, np.clip(novice, s, 1.0), color=colour, linestyle="--", linewidth=0.9)
                else:
                    ax_t.axhline(s, color=colour, linestyle="--", linewidth=0.9)
                x, mean, std = series(stats, mode, variant, s, "query_rate")
                _plot_band(ax_q, x, mean, std, colour)
                x, mean, std = series(stats, mode, variant, s, "novice_success")
                _plot_band(ax_n, x, mean, std, colour)
            ax_t.set_title(COLUMN_TITLES[mode], fontweight="bold")
            ax_t.set_ylabel(label)
            ax_q.set_ylabel("Query rate\n(last 1000 samples)")
            ax_n.set_ylabel("Novice success rate\n(last 1000 samples)")
            ax_n.set_xlabel("Step")
            for ax in axes[:, col]:
                _rate_axis(ax)
                ax.tick_params(labelleft=True)
        variant_note = "" if variant == SAG_VARIANT else f", variant {variant}"
        fig.suptitle(
            f"S-aware gating on MNIST{variant_note}: mean $\\pm$ std over {reps} repetitions per "
            f"{S_DES_TEX}",
            fontsize=11,
        )
        _s_des_legend(
            fig, s_des, reps, "desired value\n(success: clip(novice, $s_{\\mathrm{des}}$, 1))",
            loc="outside right center",
        )
    return fig


def ablation_figure(
    stats: pd.DataFrame,
    variants: Sequence[str],
    titles: Sequence[str],
    metrics: Sequence[tuple[str, str, bool]],
    s_des: Sequence[float],
    reps: int,
    suptitle: str,
    mode: str = ABLATION_MODE,
) -> plt.Figure:
    """Rows = metrics ``(column, axis label, dash s_des)``; columns = variants."""
    with style():
        fig, axes = plt.subplots(
            len(metrics), len(variants), figsize=(3.4 * len(variants) + 2.2, 2.8 * len(metrics) + 1.0),
            sharex=True, sharey=True, squeeze=False, layout="constrained",
        )
        for col, (variant, title) in enumerate(zip(variants, titles)):
            for row, (metric, label, dashed) in enumerate(metrics):
                ax = axes[row, col]
                for s in s_des:
                    colour = s_des_colour(s)
                    x, mean, std = series(stats, mode, variant, s, metric)
                    _plot_band(ax, x, mean, std, colour)
                    if dashed:
                        ax.axhline(s, color=colour, linestyle="--", linewidth=0.9)
                _rate_axis(ax)
                ax.tick_params(labelleft=True)
                ax.set_ylabel(label)
                if row == 0:
                    ax.set_title(title, fontweight="bold")
                if row == len(metrics) - 1:
                    ax.set_xlabel("Step")
        fig.suptitle(suptitle, fontsize=11)
        _s_des_legend(fig, s_des, reps, "desired sensitivity", loc="outside right center")
    return fig
