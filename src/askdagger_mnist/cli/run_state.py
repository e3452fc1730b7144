"""What lies where a run goes, as the train command finds it: a finished run of today's
results version, the temporaries a killed process left, a checkpoint left beside a finished run.
Everything that removes something runs under the run's lock (cli/run_lock.py)."""

from __future__ import annotations

from pathlib import Path

from ..data.atomic import left_temporaries
from ..data.kept_runs import kept_copy_of
from ..data.rundir import holds_run, read_info
from ..errors import UserError
from ..settings import RESULTS_VERSION, RunSettings


def default_checkpoint(out: Path) -> Path:
    return out.with_name(out.name + ".checkpoint.pt")


def holds_current_run(out: Path, recorded: dict) -> bool:
    """Whether ``out`` already holds this run, finished (``rundir.holds_run``), made by code of
    today's results version; a finished run of another version is refused in one sentence."""
    if not holds_run(out, recorded):
        return False
    made_by = read_info(out).get("results_version")
    if made_by != RESULTS_VERSION:
        raise UserError(
            f"--out {out} holds a finished run made by code whose results differ from this "
            f"version's (results_version {made_by}, now {RESULTS_VERSION}): delete it to train "
            "it again."
        )
    return True


def run_temporaries(out: Path, checkpoint: Path) -> list[Path]:
    """What processes of this run killed outright left: data/atomic.py's temporaries of its run
    directory, its kept copy and its checkpoint; no other run's. Removed only under the run's
    lock, which every process writing this run holds."""
    return [p for path in (out, kept_copy_of(out), checkpoint) for p in left_temporaries(path)]


def remove_left_checkpoint(out: Path, checkpoint: Path, settings: RunSettings) -> None:
    """The checkpoint beside this run, finished (left by a process killed after publishing it,
    or by code whose checkpoints cannot resume it): under its own name ``<out>.checkpoint.pt``
    whatever it holds; named with --checkpoint (it may be a file of yours) only when it is this
    run's. The caller holds the run's lock."""
    if Path(checkpoint).is_file():
        if Path(checkpoint) != default_checkpoint(out):
            from ..data.checkpoint import is_checkpoint_of  # torch: only for a file named by hand

            if not is_checkpoint_of(checkpoint, settings):
                return
        Path(checkpoint).unlink()
