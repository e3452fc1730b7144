"""Does it reproduce? The verdict, configuration by configuration, between two sides of runs
(docs/reproduction.md). Pure numpy and pandas: two ``sides.Side`` in, one table out.

For every configuration both sides have and every whole-run metric: n, mean and standard
deviation per side, the difference of means (ours - theirs) with a 95% percentile-bootstrap
interval, and a verdict at a margin m:

* ``equivalent``: the interval lies inside [-m, m];
* ``different``: the interval lies entirely outside it (above m or below -m);
* ``inconclusive``: otherwise, and always when a side has fewer than ``min_runs`` runs
  (a bootstrap interval of one or two runs says nothing about the spread).

Configurations on one side only are rows with the verdict ``unmatched``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
import pandas as pd

from ..naming import format_s_des
from ..settings import REPRODUCTION_DEFAULTS, TRACKED, RunSettings
from .sides import (CONFIG_COLUMNS, VERDICT_METRICS, Side, common_steps, config_order,
                    largest_curve_gap, mean_curves, whole_run_values)

LEVEL = 0.95  # of the interval on the difference of means
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
    resamples: int
    curve_after_step: int
    seed: int = 0

    @classmethod
    def from_config(cls, section: Mapping[str, Any] | None = None) -> "VerdictSettings":
        """From the config's ``reproduction`` section (settings.REPRODUCTION_DEFAULTS fill in
        what it leaves out)."""
        merged = {**REPRODUCTION_DEFAULTS, **(section or {})}
        margins = {**REPRODUCTION_DEFAULTS["margins"], **merged["margins"]}
        return cls(float(margins["tracked"]), float(margins["others"]), int(merged["min_runs"]),
                   int(merged["bootstrap_resamples"]), int(merged["curve_after_step"]))

    def margin(self, mode: str, metric: str) -> float:
        return self.margin_tracked if TRACKED.get(mode) == metric else self.margin_others


def difference_interval(ours: np.ndarray, theirs: np.ndarray, resamples: int,
                        rng: np.random.Generator, level: float = LEVEL) -> tuple[float, float]:
    """Percentile-bootstrap interval of mean(ours) - mean(theirs): each side is resampled
    with replacement, independently, ``resamples`` times."""
    a = ours[rng.integers(0, len(ours), (resamples, len(ours)))].mean(axis=1)
    b = theirs[rng.integers(0, len(theirs), (resamples, len(theirs)))].mean(axis=1)
    lo, hi = np.quantile(a - b, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def judge(lo: float, hi: float, margin: float, n_ours: int, n_theirs: int,
          min_runs: int) -> tuple[str, str]:
    """(verdict, reason) for an interval [lo, hi] on the difference of means."""
    if min(n_ours, n_theirs) < min_runs:
        return "inconclusive", f"fewer than {min_runs} runs on a side"
    if -margin <= lo and hi <= margin:
        return "equivalent", "interval inside the margin"
    if lo > margin or hi < -margin:
        return "different", "interval outside the margin"
    return "inconclusive", "interval crosses the margin"


def row_rng(seed: int, config: tuple, metric: str) -> np.random.Generator:
    """A generator of its own for each (configuration, metric): a row's interval does not
    depend on which other rows the table has."""
    digest = hashlib.sha256(f"{config}|{metric}".encode()).digest()
    words = [int.from_bytes(digest[i: i + 4], "little") for i in range(0, 16, 4)]
    return np.random.default_rng(np.random.SeedSequence([seed, *words]))


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
                lo, hi = difference_interval(x, y, settings.resamples,
                                             row_rng(settings.seed, config, metric))
                verdict, reason = judge(lo, hi, margin, len(x), len(y), settings.min_runs)
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


def to_markdown(table: pd.DataFrame, ours: str, theirs: str, settings: VerdictSettings) -> str:
    """The verdict as a Markdown document a reader can paste: summary, method, table."""
    lines = [
        summary_line(table), "",
        f"Ours: {ours}. Theirs: {theirs}. Difference = mean(ours) - mean(theirs), with a 95% "
        f"percentile-bootstrap interval ({settings.resamples} resamples of each side). "
        f"equivalent: the interval lies inside +-margin ({settings.margin_tracked} on the "
        f"mode's tracked metric, {settings.margin_others} on the others); different: entirely "
        f"outside it; inconclusive: otherwise, or fewer than {settings.min_runs} runs on a "
        f"side. Curve gap: the largest |difference| of the mean windowed curves after step "
        f"{settings.curve_after_step}.", "",
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
            f"{_fmt(row['ci_high'], '+.3f')}] | {row['margin']:g} | {row['verdict']} "
            f"| {_fmt(row['max_curve_diff'])} |")
    unmatched = table[table["verdict"] == "unmatched"]
    if len(unmatched):
        lines += ["", "Configurations on one side only (no verdict):", ""]
        lines += [f"- {_label(row)}: {row['reason']} ({row['n_ours'] or row['n_theirs']} runs)"
                  for row in unmatched.to_dict("records")]
    return "\n".join(lines) + "\n"
