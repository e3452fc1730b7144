"""Does it reproduce? The verdict, configuration by configuration, between two sides of runs
(docs/reproduction.md). Pure numpy and pandas: two ``sides.Side`` in, one table out.

For every configuration both sides have and every whole-run metric: n, mean and standard
deviation per side, the difference of means (ours - theirs) with a 95% Welch interval
(``intervals.welch_interval``), and a verdict at a margin m:

* ``equivalent``: the interval lies inside [-m, m] (any difference is smaller than m);
* ``different``: the interval excludes 0 and does not lie inside [-m, m] (a difference is
  detected, and it is not shown to be smaller than m);
* ``inconclusive``: otherwise (the reason says about how many runs a side would decide it),
  and always when a side has fewer than ``min_runs`` runs;

except that two sides whose runs all have one and the same value (no difference, no spread,
measured from two runs a side) are ``equivalent`` at any number of runs: no run of either
side differs from any other, so more runs could not widen the zero-width interval.

Margins lie strictly between 0 and 1 (the metrics are rates); others are refused.

``min_runs`` defaults to settings.MIN_RUNS_CALIBRATED, chosen from what
bench/calibrate_verdict.py measured (docs/reproduction.md, the calibration table); smaller
values are refused.

Configurations on one side only are rows with the verdict ``unmatched``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
import pandas as pd

from ..experiment.naming import format_s_des
from ..errors import UserError
from ..settings import MIN_RUNS_CALIBRATED, REPRODUCTION_DEFAULTS, TRACKED, RunSettings
from .intervals import t_quantile, welch_interval
from .sides import (CONFIG_COLUMNS, VERDICT_METRICS, Side, common_steps, config_order,
                    largest_curve_gap, mean_curves, whole_run_values)

VERDICT_COLUMNS = (
    *CONFIG_COLUMNS, "variant", "metric", "tracked", "steps", "n_ours", "n_theirs",
    "mean_ours", "std_ours", "mean_theirs", "std_theirs", "diff", "ci_low", "ci_high",
    "margin", "verdict", "reason", "max_curve_diff",
)


@dataclass(frozen=True)
class VerdictSettings:
    margin_tracked: float
    margin_others: float
    min_runs: int
    curve_after_step: int

    def __post_init__(self):
        for which, margin in (("tracked", self.margin_tracked), ("others", self.margin_others)):
            if not 0.0 < margin < 1.0:
                raise UserError(
                    f"reproduction.margins.{which} (--margin-{which}) is {margin:g}: a margin must "
                    f"lie strictly between 0 and 1 (the metrics are rates); set it to, e.g., the "
                    f"default {REPRODUCTION_DEFAULTS['margins'][which]}.")
        if self.min_runs < MIN_RUNS_CALIBRATED:
            raise UserError(
                f"reproduction.min_runs is {self.min_runs}, below {MIN_RUNS_CALIBRATED}, the "
                f"calibrated floor (docs/reproduction.md: fewer runs a side decide almost "
                f"nothing); set it to {MIN_RUNS_CALIBRATED} or more.")

    @classmethod
    def from_config(cls, section: Mapping[str, Any] | None = None) -> "VerdictSettings":
        """From the config's ``reproduction`` section (settings.REPRODUCTION_DEFAULTS fill in
        what it leaves out)."""
        merged = {**REPRODUCTION_DEFAULTS, **(section or {})}
        margins = {**REPRODUCTION_DEFAULTS["margins"], **merged["margins"]}
        return cls(float(margins["tracked"]), float(margins["others"]), int(merged["min_runs"]),
                   int(merged["curve_after_step"]))

    def margin(self, mode: str, metric: str) -> float:
        return self.margin_tracked if TRACKED.get(mode) == metric else self.margin_others


def runs_to_decide(x: np.ndarray, y: np.ndarray, margin: float) -> int | None:
    """About how many runs a side would make the 95% interval fit inside +-margin, if the means
    and spreads stay as they are (Student's t with 2n - 2 degrees of freedom); more than either
    side has now. None when the difference is at or beyond the margin (more runs then decide
    between different and equivalent, not how many) or would need more than 100,000."""
    gap = margin - abs(float(x.mean() - y.mean()))
    spread = math.sqrt((np.var(x, ddof=1) + np.var(y, ddof=1)) / 2)
    if not gap > 0:
        return None
    n = max(len(x), len(y)) + 1
    while t_quantile(0.975, 2 * n - 2) * spread * math.sqrt(2 / n) > gap:
        n = n + 1 if n < 100 else int(n * 1.1)
        if n > 100_000:
            return None
    return n


# The reason of an equivalent verdict on sides without any spread or difference.
SAME_VALUE = "every run on both sides has the same value"
# The reason of an equivalent verdict whose interval excludes 0: a difference smaller than the
# margin, which the verdict's table marks, and which a reproduction still has to explain.
EXCLUDES_ZERO = "interval inside the margin, but it excludes 0: a difference smaller than the margin"


def judge(lo: float, hi: float, margin: float, n_ours: int, n_theirs: int,
          min_runs: int, needed: int | None = None) -> tuple[str, str]:
    """(verdict, reason) for a 95% interval [lo, hi] on the difference of means. ``needed``:
    runs_to_decide's estimate, quoted when the verdict is inconclusive."""
    if min(n_ours, n_theirs) < min_runs:
        fewest = min(n_ours, n_theirs)
        return "inconclusive", (f"{fewest} run{'s' * (fewest != 1)} on a side; the verdict "
                                f"needs {min_runs} a side")
    if -margin <= lo and hi <= margin:
        if lo > 0 or hi < 0:  # equivalent does not rule out a difference inside the margin
            return "equivalent", EXCLUDES_ZERO
        return "equivalent", "interval inside the margin"
    if lo > 0 or hi < 0:
        return "different", "interval excludes 0 and reaches beyond the margin"
    if needed is None:
        return "inconclusive", "interval crosses the margin; the difference is near the margin"
    return "inconclusive", f"interval crosses the margin; about {needed} runs a side would decide"


def verdict_of(x: np.ndarray, y: np.ndarray, margin: float,
               min_runs: int) -> tuple[str, str, float, float]:
    """(verdict, reason, ci_low, ci_high) for one metric: ours ``x`` against theirs ``y``.
    The interval is shown from two values a side on; below ``min_runs`` it decides nothing.
    Values that are not finite (a metric undefined in a run) are left out."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    x, y = x[np.isfinite(x)], y[np.isfinite(y)]
    if min(len(x), len(y)) < 2:
        return (*judge(math.nan, math.nan, margin, len(x), len(y), max(min_runs, 2)),
                math.nan, math.nan)
    if len(set(x) | set(y)) == 1:
        return "equivalent", SAME_VALUE, 0.0, 0.0
    lo, hi = welch_interval(x, y)
    return (*judge(lo, hi, margin, len(x), len(y), min_runs, runs_to_decide(x, y, margin)),
            lo, hi)


def _std(values: np.ndarray) -> float:
    return float(np.std(values, ddof=1)) if len(values) > 1 else float("nan")


def compare_sides(ours: Side, theirs: Side, settings: VerdictSettings) -> pd.DataFrame:
    """The verdict table: one row per (matched configuration, metric), then one row per
    configuration on one side only."""
    rows = []
    for config in sorted(set(ours.runs) & set(theirs.runs), key=config_order):
        a, b = ours.runs[config], theirs.runs[config]
        steps = common_steps(a, b)
        mode = config[0]
        values_a, values_b = whole_run_values(a, steps), whole_run_values(b, steps)
        curves_a, curves_b = mean_curves(a, steps), mean_curves(b, steps)
        for metric in VERDICT_METRICS:
            x, y = values_a[metric], values_b[metric]
            x, y = x[np.isfinite(x)], y[np.isfinite(y)]
            margin = settings.margin(mode, metric)
            row = {**dict(zip(CONFIG_COLUMNS, config)), "variant": a[0].variant,
                   "metric": metric, "tracked": TRACKED[mode] == metric, "steps": steps,
                   "n_ours": len(x), "n_theirs": len(y), "margin": margin}
            if len(x) and len(y):
                verdict, reason, lo, hi = verdict_of(x, y, margin, settings.min_runs)
                row.update(mean_ours=float(x.mean()), std_ours=_std(x),
                           mean_theirs=float(y.mean()), std_theirs=_std(y),
                           diff=float(x.mean() - y.mean()), ci_low=lo, ci_high=hi)
            else:
                verdict, reason = "inconclusive", "the metric is undefined on a side"
            row["max_curve_diff"] = largest_curve_gap(curves_a[metric], curves_b[metric],
                                                      settings.curve_after_step)
            rows.append({**row, "verdict": verdict, "reason": reason})
    for side, other, reason in ((ours, theirs, "ours only"), (theirs, ours, "theirs only")):
        for config in sorted(set(side.runs) - set(other.runs), key=config_order):
            runs = side.runs[config]
            n = {"n_ours": len(runs), "n_theirs": 0} if side is ours else \
                {"n_ours": 0, "n_theirs": len(runs)}
            rows.append({**dict(zip(CONFIG_COLUMNS, config)), "variant": runs[0].variant,
                         **n, "verdict": "unmatched", "reason": reason})
    return pd.DataFrame(rows, columns=list(VERDICT_COLUMNS))


def summary_line(table: pd.DataFrame) -> str:
    """The first line of the report: k of n matched configurations equivalent on the tracked
    metric (with the other outcomes and the unmatched ones)."""
    tracked = table[table["tracked"] == True]  # noqa: E712 (a column of objects)
    counts = tracked["verdict"].value_counts()
    unmatched = table[table["verdict"] == "unmatched"]
    line = (f"{counts.get('equivalent', 0)} of {len(tracked)} configurations equivalent on the "
            f"tracked metric ({counts.get('different', 0)} different, "
            f"{counts.get('inconclusive', 0)} inconclusive)")
    if len(unmatched):
        mine = int((unmatched["reason"] == "ours only").sum())
        line += (f"; {len(unmatched)} configuration(s) on one side only ({mine} ours only, "
                 f"{len(unmatched) - mine} theirs only)")
    return line + "."


def _fmt(value: Any, spec: str = ".3f") -> str:
    try:
        return "" if value is None or not np.isfinite(value) else format(value, spec)
    except TypeError:
        return ""


def _label(row: Mapping[str, Any]) -> str:
    regs = ("" if row["normalization"] else ", no normalization") + \
           ("" if row["imputation"] else ", no imputation")
    default = RunSettings()
    other = "".join(f", {name} {row[name]:g}" for name in ("mc_samples", "dropout", "n_min", "n_rep")
                    if row[name] != getattr(default, name))  # shown where not the default
    return (f"{row['mode']}, p_rand {row['p_rand']:g}{regs}, s_des {format_s_des(row['s_des'])}"
            f" (batch {row['batch_size']}, update every {row['update_every']}{other})")


def _verdict_cell(row: Mapping[str, Any]) -> str:
    """The verdict, with its reason where it is inconclusive (what would decide it)."""
    if row["verdict"] == "inconclusive":
        return f"{row['verdict']} ({row['reason']})"
    if row["reason"] == EXCLUDES_ZERO:
        return "equivalent (interval excludes 0)"
    if row["reason"] == SAME_VALUE:
        return "equivalent (the same value in every run)"
    return row["verdict"]


def to_markdown(table: pd.DataFrame, ours: str, theirs: str, settings: VerdictSettings) -> str:
    """The verdict as a Markdown document a reader can paste: summary, method, table."""
    lines = [
        summary_line(table), "",
        f"Ours: {ours}. Theirs: {theirs}. Difference = mean(ours) - mean(theirs), with a 95% "
        f"Welch interval. equivalent: the interval lies inside +-margin "
        f"({settings.margin_tracked} on the mode's tracked metric, {settings.margin_others} on "
        f"the others): it rules out a difference beyond the margin, not a smaller one, and where "
        f"its interval excludes 0 the cell says so (a difference to explain); different: it "
        f"excludes 0 and does not lie inside the margin; "
        f"inconclusive: otherwise, or fewer than {settings.min_runs} runs on a side. Measured "
        f"on one pool of runs at the default margins, this verdict calls 'different' in at "
        f"most 5% of draws (docs/reproduction.md). Curve gap: the largest |difference| of the "
        f"mean windowed curves after step {settings.curve_after_step}.", "",
        "| configuration | metric | steps | n ours | n theirs | ours mean (std) | theirs mean "
        "(std) | difference [95% CI] | margin | verdict | curve gap |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    for row in table[table["verdict"] != "unmatched"].to_dict("records"):
        metric = f"**{row['metric']}**" if row["tracked"] else row["metric"]
        lines.append(
            f"| {_label(row)} | {metric} | {row['steps']} | {row['n_ours']} | {row['n_theirs']} "
            f"| {_fmt(row['mean_ours'])} ({_fmt(row['std_ours'])}) "
            f"| {_fmt(row['mean_theirs'])} ({_fmt(row['std_theirs'])}) "
            f"| {_fmt(row['diff'], '+.3f')} [{_fmt(row['ci_low'], '+.3f')}, "
            f"{_fmt(row['ci_high'], '+.3f')}] | {row['margin']:g} | {_verdict_cell(row)} "
            f"| {_fmt(row['max_curve_diff'])} |")
    unmatched = table[table["verdict"] == "unmatched"]
    if len(unmatched):
        lines += ["", "Configurations on one side only (no verdict):", ""]
        lines += [f"- {_label(row)}: {row['reason']} ({row['n_ours'] or row['n_theirs']} runs)"
                  for row in unmatched.to_dict("records")]
    return "\n".join(lines) + "\n"
