"""The two sides of a reproduction check (docs/reproduction.md): run directories -> one row
per run with its configuration and whole-run metrics, and the mean windowed curves per
configuration, both over the steps the two sides have in common.

A *configuration* is what a run's result may depend on besides its seed: mode, p_rand,
normalization, imputation, s_des, batch size, update interval, MC passes, dropout, n_min and
n_rep. Runs of one configuration
on one side are repetitions of the same experiment; the verdict (``analysis.verdict``)
compares the two samples.

Runs of a configuration are compared over the first ``steps`` steps that every run of it has,
on both sides: the loop is causal (a step never depends on later ones, and the seed does not
depend on the stream length), so the first 60 steps of a full run are exactly a 60-step run.
Full runs (468 steps) are compared whole.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from ..algorithm.metrics import whole_run_metrics, windowed_curves
from ..data.rundir import is_complete_run
from ..settings import CONFIGURATION_FIELDS, MODES, configuration_key
from .aggregate import read_run

CONFIG_COLUMNS = CONFIGURATION_FIELDS
# The whole-run metrics a verdict is given for (docs/spec.md §5.1).
VERDICT_METRICS = ("sensitivity", "specificity", "informedness", "query_rate",
                   "novice_success", "system_success")


@dataclass
class RunArrays:
    """One run as a side holds it: its configuration, name and the arrays c and q."""

    config: tuple  # values of CONFIG_COLUMNS
    variant: str
    rep: int
    run_dir: str
    c: np.ndarray
    q: np.ndarray

    @property
    def n_steps(self) -> int:
        return -(-len(self.c) // self.config[CONFIG_COLUMNS.index("batch_size")])


@dataclass
class Side:
    """The runs of one side, by configuration (repetitions in the order they were added)."""

    label: str
    runs: dict[tuple, list[RunArrays]] = field(default_factory=dict)

    def add(self, run: RunArrays) -> None:
        """Add ``run``, unless the side holds it already (the same variant and repetition in
        its configuration): the first wins, as when runs come from several archives."""
        held = self.runs.setdefault(run.config, [])
        if all((r.variant, r.rep) != (run.variant, run.rep) for r in held):
            held.append(run)

    def n_runs(self) -> int:
        return sum(len(r) for r in self.runs.values())


def config_order(config: tuple):
    """Sort key of configurations: modes in the paper's order, then the other values."""
    mode = config[0]
    return (MODES.index(mode) if mode in MODES else len(MODES), *config[1:])


def read_side(label: str, run_dirs: Iterable[Path]) -> Side:
    """The runs in ``run_dirs`` (each read and checked by ``aggregate.read_run``; a run named
    twice is kept once, see ``Side.add``)."""
    side = Side(label)
    for run_dir in run_dirs:
        settings, _, arrays = read_run(Path(run_dir))
        side.add(RunArrays(configuration_key(settings), str(settings["variant"]), int(settings["rep"]),
                           str(run_dir), np.asarray(arrays["c"]), np.asarray(arrays["q"])))
    return side


def run_dirs_under(folder: Path) -> list[Path]:
    """The complete run directories ``{mode}/{variant}/s{s_des}/rep{rep}`` of an imported
    archive (its staging folder), in sorted order."""
    found = [p for mode in MODES for p in sorted(Path(folder).glob(f"{mode}/*/s*/rep*"))]
    return [p for p in found if is_complete_run(p)]


def common_steps(*runs: Sequence[RunArrays]) -> int:
    """The number of steps every given run has."""
    return min(r.n_steps for group in runs for r in group)


def _samples(run: RunArrays, steps: int) -> tuple[np.ndarray, np.ndarray]:
    n = steps * run.config[CONFIG_COLUMNS.index("batch_size")]
    return run.c[:n], run.q[:n]


def whole_run_values(runs: Sequence[RunArrays], steps: int) -> dict[str, np.ndarray]:
    """Each verdict metric (``metrics.whole_run_metrics``) of each run over its first ``steps``
    steps: metric -> one value per run."""
    per_run = [whole_run_metrics(*_samples(r, steps)) for r in runs]
    return {m: np.array([p[m] for p in per_run], dtype=float) for m in VERDICT_METRICS}


def mean_curves(runs: Sequence[RunArrays], steps: int) -> dict[str, np.ndarray]:
    """The windowed curves (``metrics.windowed_curves``; informedness = sensitivity +
    specificity - 1) of the runs over their first ``steps`` steps, averaged step by step
    (NaN points left out): metric -> mean curve, for every verdict metric."""
    per_run = []
    for r in runs:
        w = windowed_curves(*_samples(r, steps), r.config[CONFIG_COLUMNS.index("batch_size")])
        per_run.append({**w, "informedness": w["sensitivity"] + w["specificity"] - 1.0})
    with warnings.catch_warnings():  # steps before a run's first failure are NaN: expected
        warnings.simplefilter("ignore", RuntimeWarning)
        return {m: np.nanmean(np.vstack([p[m] for p in per_run]), axis=0)
                for m in VERDICT_METRICS}


def largest_curve_gap(ours: np.ndarray, theirs: np.ndarray, after_step: int) -> float:
    """The largest absolute difference between two mean curves at the steps after
    ``after_step`` where both are defined (NaN when there are none)."""
    diff = np.abs(ours - theirs)[after_step + 1:]
    diff = diff[np.isfinite(diff)]
    return float(diff.max()) if len(diff) else float("nan")
