"""figures/reproduction.pdf (docs/reproduction.md): the paper figure's rows for every
configuration both sides have, ours solid and theirs dashed, one colour per s_des.

Columns are the matched (mode, variant settings); rows are the mode's tracked metric, the
query rate and the novice success rate, each the mean windowed curve over a side's runs
(``sides.mean_curves``) over the steps both sides have.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.lines import Line2D

from ..experiment.naming import format_s_des
from .figures import COLUMN_TITLES, S_DES_TEX, TRACKED, _rate_axis, s_des_colour, style
from .sides import CONFIG_COLUMNS, Side, common_steps, config_order, mean_curves

S_DES = CONFIG_COLUMNS.index("s_des")


def _column_title(setting: tuple) -> str:
    row = dict(zip((c for c in CONFIG_COLUMNS if c != "s_des"), setting))
    extra = [f"$p_{{\\mathrm{{rand}}}}$ = {row['p_rand']:g}"]
    extra += [] if row["normalization"] else ["no normalization"]
    extra += [] if row["imputation"] else ["no imputation"]
    return f"{COLUMN_TITLES.get(row['mode'], row['mode'])}\n{', '.join(extra)}"


def reproduction_figure(ours: Side, theirs: Side) -> plt.Figure:
    matched = sorted(set(ours.runs) & set(theirs.runs), key=config_order)
    settings = list(dict.fromkeys(c[:S_DES] + c[S_DES + 1:] for c in matched))
    with style():
        fig, axes = plt.subplots(
            3, len(settings), figsize=(3.6 * len(settings) + 2.4, 8.0), sharex=True,
            sharey=True, squeeze=False, layout="constrained",
        )
        for col, setting in enumerate(settings):
            mode = setting[0]
            metric, label = TRACKED.get(mode, ("sensitivity", "Sensitivity"))
            rows = ((metric, label), ("query_rate", "Query rate\n(last 1000 samples)"),
                    ("novice_success", "Novice success rate\n(last 1000 samples)"))
            for config in (c for c in matched if c[:S_DES] + c[S_DES + 1:] == setting):
                a, b = ours.runs[config], theirs.runs[config]
                steps = common_steps(a, b)
                colour = s_des_colour(config[S_DES])
                x = np.arange(steps)
                ours_curves, theirs_curves = mean_curves(a, steps), mean_curves(b, steps)
                for ax, (name, _) in zip(axes[:, col], rows):
                    ax.plot(x, ours_curves[name], color=colour, linewidth=1.2)
                    ax.plot(x, theirs_curves[name], color=colour, linewidth=1.2, linestyle="--")
            for ax, (_, ylabel) in zip(axes[:, col], rows):
                _rate_axis(ax)
                ax.tick_params(labelleft=True)
                ax.set_ylabel(ylabel)
            axes[0, col].set_title(_column_title(setting), fontweight="bold")
            axes[-1, col].set_xlabel("Step")
        fig.suptitle(f"Reproduction: {ours.label} (solid) and {theirs.label} (dashed), mean "
                     "over each side's runs", fontsize=11)
        s_values = sorted({c[S_DES] for c in matched})
        handles = [Line2D([], [], color=s_des_colour(s), linewidth=1.5,
                          label=f"{S_DES_TEX} = {format_s_des(s)}") for s in s_values]
        handles += [
            Line2D([], [], color="0.3", linewidth=1.2, label=f"{ours.label} ({ours.n_runs()} runs)"),
            Line2D([], [], color="0.3", linewidth=1.2, linestyle="--",
                   label=f"{theirs.label} ({theirs.n_runs()} runs)"),
        ]
        fig.legend(handles=handles, frameon=False, loc="outside right center")
    return fig
