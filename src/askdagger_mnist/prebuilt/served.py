"""An imported run enters results/runs only as the run the config asks for.

The download route takes each configured run ``{mode}/{variant}/s{s_des}/rep{rep}`` from the
first imported archive that holds a run at that path (``find_staging``). The path picks it; what
it is decides whether it serves (``check_served``), against the settings the config asks for
(``experiment.run_settings.run_settings``):

* its arrays keep every invariant of a run (``data.invariants``) and hold the steps its
  run.json records;
* its results version is this code's (``settings.RESULTS_VERSION``); a run of ours that records
  none was made by an older version. Only the authors' runs record none and serve;
* every setting of ``RunSettings`` but the stream length is the config's; a setting a run.json
  lacks is its default, as ``settings.configuration_key`` reads a bundle of an older version.
  The authors' runs record the settings their archive layout names and the defaults for those
  their code never varied (``prebuilt.authors_format``);
* it has at least the steps the config asks for. A longer run serves with its first steps
  (``first_steps``), by the rule the reproduction verdict compares runs of different lengths by
  (``analysis.sides``): the loop is causal and the seed does not depend on the stream length, so
  the first N steps of a longer run are an N-step run.

Anything else is one sentence naming the archive, the run and the setting.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np

from ..algorithm.metrics import whole_run_metrics
from ..data import rundir
from ..data.atomic import atomic_dir
from ..data.invariants import STREAM, InconsistentRun, read_consistent_arrays
from ..errors import UserError
from ..settings import RESULTS_VERSION, RunSettings, setting_float

log = logging.getLogger(__name__)

NOTHING_IMPORTED = "nothing was imported"
# What to do about a run made with other settings than the config's.
_SETTINGS_ADVICE = ("take these runs from an archive made with the config's settings, change the "
                    "config to the archive's, or set results_source: train")
# The settings the authors' archive layout does not name: their code fixed them.
_AUTHORS_FIXED = ("mc_samples", "dropout", "n_min", "n_rep", "seed_root")
_DEFAULTS = RunSettings()


@dataclass(frozen=True)
class Served:
    """A staged run that serves a configured run: where it is, which archive it came from and
    how many of its steps the config uses."""

    run_dir: Path
    archive: str
    label: str  # the run's {mode}/{variant}/s{s_des}/rep{rep}
    steps: int  # the steps it holds
    steps_used: int  # the config's

    def describe(self) -> str:
        return f"archive {self.archive}: run {self.label}"


def find_staging(stagings: Iterable[Path], sub: str) -> Path | None:
    """The first staging folder (an imported archive, ``results/imported/{name}``) that holds a
    run at ``sub``; the archive's name is the folder's."""
    for staging in stagings:
        if rundir.is_complete_run(Path(staging) / sub):
            return Path(staging)
    return None


def _show(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _same(recorded: Any, wanted: Any) -> bool:
    """Whether a recorded setting is the wanted one (floats by settings.setting_float, as
    settings.configuration_key compares them)."""
    if isinstance(wanted, bool):
        return recorded is wanted
    if isinstance(wanted, float):
        return (isinstance(recorded, (int, float)) and not isinstance(recorded, bool)
                and math.isfinite(recorded) and setting_float(recorded) == setting_float(wanted))
    if isinstance(wanted, int):
        return isinstance(recorded, (int, float)) and not isinstance(recorded, bool) and recorded == wanted
    return recorded == wanted


def _config_key(name: str, variant: str) -> str:
    if name in ("p_rand", "normalization", "imputation"):
        return f"config key variants.{variant}.{name}"
    if name in ("mode", "s_des", "rep"):
        return "the run's folder name"
    return f"config key {name}"


def setting_problem(recorded: Mapping[str, Any], wanted: RunSettings, variant: str,
                    authors: bool) -> str | None:
    """The first setting but steps in which ``recorded`` (a run.json's "settings") differs from
    ``wanted``, in words, or None."""
    for field in dataclasses.fields(RunSettings):
        name = field.name
        if name == "steps":
            continue
        value, asked = recorded.get(name, getattr(_DEFAULTS, name)), getattr(wanted, name)
        if not _same(value, asked):
            fixed = (f"; the authors' code always used {_show(value)}"
                     if authors and name in _AUTHORS_FIXED else "")
            return (f"was made with {name} {_show(value)}, but the config asks for {_show(asked)} "
                    f"({_config_key(name, variant)}{fixed})")
    return None


def _unreadable(where: str, exc: Exception) -> UserError:
    return UserError(f"{where} cannot be read ({type(exc).__name__}: its run.json or arrays.npz "
                     f"is not a run's); {NOTHING_IMPORTED}: import the archive again.")


def _read_info(run_dir: Path, where: str) -> tuple[dict, int, int]:
    """run.json, the batch size and the steps recorded, or one sentence."""
    try:
        info = rundir.read_info(run_dir)
        recorded = info["settings"]
        batch_size = recorded.get("batch_size", _DEFAULTS.batch_size)
        steps = recorded.get("steps", _DEFAULTS.steps)
        if type(batch_size) is not int or type(steps) is not int or batch_size < 1:
            raise ValueError("batch_size and steps are not positive whole numbers")
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise _unreadable(where, exc) from None
    return info, batch_size, steps


def _read_arrays(run_dir: Path, where: str, batch_size: int) -> dict[str, np.ndarray]:
    """The arrays, read and checked (data.invariants), or one sentence."""
    try:
        return read_consistent_arrays(run_dir, batch_size)
    except InconsistentRun as exc:
        raise UserError(f"{where} breaks an invariant every run satisfies: {exc.problem}; "
                        f"{NOTHING_IMPORTED} (the archive is corrupt or was altered).") from None
    except (OSError, ValueError) as exc:  # DamagedArrays is a ValueError
        raise _unreadable(where, exc) from None


def check_served(run_dir: Path, archive: str, label: str, wanted: RunSettings) -> Served:
    """The staged run ``run_dir`` of ``archive``, checked as the run of ``wanted`` (``label``
    names it); a run that does not serve it is one sentence (UserError)."""
    where = f"archive {archive}: run {label}"
    info, batch_size, steps = _read_info(run_dir, where)
    authors = info.get("source") == "authors"
    made_by = info.get("results_version")
    if made_by != RESULTS_VERSION and not (authors and made_by is None):
        made_with = (f"results version {made_by}" if made_by is not None
                     else "an older results version (its run.json records none)")
        raise UserError(
            f"{where} was made with {made_with}, but this code's is "
            f"{RESULTS_VERSION} (settings.RESULTS_VERSION: results of unchanged settings have "
            f"changed since); {NOTHING_IMPORTED}: use a bundle made by this version, or set "
            "results_source: train.")
    arrays = _read_arrays(run_dir, where, batch_size)
    held = len(arrays["u"]) // batch_size
    if held != steps:
        raise UserError(f"{where} holds {held} steps in its arrays where its run.json says {steps}: "
                        f"the archive is corrupt or was altered; {NOTHING_IMPORTED}.")
    variant = str(info["settings"].get("variant", label.split("/")[1]))
    mismatch = setting_problem(info["settings"], wanted, variant, authors)
    if mismatch:
        raise UserError(f"{where} {mismatch}; {NOTHING_IMPORTED}: {_SETTINGS_ADVICE}.")
    if steps < wanted.steps:
        raise UserError(
            f"{where} has {steps} steps, but the config asks for {wanted.steps} (max_steps); "
            f"{NOTHING_IMPORTED}: set max_steps to {steps} or fewer, take these runs from an "
            "archive with longer runs, or set results_source: train.")
    return Served(Path(run_dir), archive, label, steps, wanted.steps)


def first_steps_lines(runs: Iterable[Served]) -> list[str]:
    """The lines saying of which longer runs only the first steps are used: one per archive and
    stream length, naming the run where it is one."""
    groups: dict[tuple[str, int, int], list[Served]] = {}
    for r in runs:
        if r.steps_used != r.steps:
            groups.setdefault((r.archive, r.steps, r.steps_used), []).append(r)
    lines = []
    for (archive, steps, used), group in sorted(groups.items()):
        if len(group) == 1:
            what = f"{group[0].describe()} has {steps} steps; its first {used} are used"
        else:
            what = (f"archive {archive}: {len(group)} runs of {steps} steps; the first {used} "
                    "steps of each are used")
        lines.append(f"{what} (the config's max_steps), as the reproduction verdict compares runs "
                     "of different lengths (docs/prebuilt-results.md)")
    return lines


def first_steps(arrays: Mapping[str, np.ndarray], steps: int, batch_size: int) -> dict[str, np.ndarray]:
    """The arrays of the first ``steps`` steps of a run. Its training set is its queried samples
    in stream order (data.invariants; the authors' code extends it step by step too), so the
    first steps' training set is its first ``count(q)`` entries."""
    n = steps * batch_size
    out = {name: np.asarray(arrays[name])[:n] for name in (*STREAM, "stream_idx") if name in arrays}
    out["train_idx"] = np.asarray(arrays["train_idx"])[: int(np.count_nonzero(out["q"]))]
    return out


def _first_steps_info(info: Mapping[str, Any], arrays: Mapping[str, np.ndarray],
                      served: Served) -> dict[str, Any]:
    metrics = whole_run_metrics(arrays["c"], arrays["q"])
    metrics["train_set_size"] = int(len(arrays["train_idx"]))
    return {
        **info,
        "settings": {**info["settings"], "steps": served.steps_used},
        "n_steps": served.steps_used,
        "metrics": metrics,
        "first_steps_of": {
            "archive": served.archive, "run": served.label, "steps": served.steps,
            "model": f"not kept: {rundir.MODEL_FILE} is the model after all {served.steps} steps",
        },
    }


def publish(served: Served, out: Path) -> Path:
    """Write ``served`` as the run directory ``out`` (atomically): its files as they are, or,
    for the first steps of a longer run, those steps' arrays and run.json without its model."""
    src = served.run_dir

    def copy(tmp: Path) -> None:
        for f in sorted(src.iterdir()):
            if f.is_file():
                shutil.copy2(f, tmp / f.name)

    def cut(tmp: Path) -> None:
        info = rundir.read_info(src)
        batch_size = info["settings"].get("batch_size", _DEFAULTS.batch_size)
        arrays = first_steps(rundir.read_arrays(src), served.steps_used, batch_size)
        rundir.write_run_files(tmp, arrays, _first_steps_info(info, arrays, served))

    return atomic_dir(Path(out), copy if served.steps_used == served.steps else cut)
