"""A finished run's kept copy: what lets a training job that is run again restore its run
instead of training it, whatever deleted the run directory in between.

Snakemake deletes a job's output before running the job, and treats as unfinished every
output whose job it had not recorded as finished when it stopped (a head killed with
SIGKILL, a job that outlived it). So the train job publishes each run twice, as hard links
to one set of files: first the kept copy ``.kept/<run dir name>`` beside the run directory
(outside the output, like the mid-run checkpoint; in a hidden folder, one level deeper, so
that globs over run directories such as ``*/*/*/rep*/run.json`` do not see it), then the run
directory itself. A job whose run has a kept copy made with the same settings
and the same ``RESULTS_VERSION`` links it back in well under a second, byte for byte, and
trains nothing. A kept copy of other settings or of another results version is never used:
that run is trained, and its publication replaces the copy.

Standard library and numpy only: the restore must not cost the ~1.5 s of importing torch.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
from pathlib import Path
from typing import Any, Callable, Mapping

from ..settings import RESULTS_VERSION
from .atomic import atomic_dir, reporting_no_space
from .rundir import is_complete_run, read_info

# Hard links fail across file systems and on some network ones: the kept copy is then a copy.
_NO_LINK = {errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP, errno.EOPNOTSUPP}


def kept_copy_of(run_dir: Path) -> Path:
    run_dir = Path(run_dir)
    return run_dir.parent / ".kept" / run_dir.name


def made_with(info: Mapping[str, Any], recorded_settings: Mapping[str, Any]) -> bool:
    """Whether a run.json's content says the run was made with ``recorded_settings`` (run.json's
    "settings") by code whose results are today's (its ``results_version``)."""
    return (info.get("results_version") == RESULTS_VERSION
            and info.get("settings") == dict(recorded_settings))


def link_tree(source: Path, target: Path) -> None:
    """Hard-link every file of ``source`` into the (empty) folder ``target``; copy where the
    file system cannot link."""
    for folder, subfolders, files in os.walk(source):
        here = Path(target) / Path(folder).relative_to(source)
        for name in subfolders:
            (here / name).mkdir()
        for name in files:
            try:
                os.link(Path(folder) / name, here / name)
            except OSError as exc:
                if exc.errno not in _NO_LINK:
                    raise
                shutil.copy2(Path(folder) / name, here / name)


def publish_run(run_dir: Path, fill: Callable[[Path], None]) -> Path:
    """Write a finished run: ``fill(folder)`` writes its files into the kept copy, created
    atomically; then the run directory appears, atomically, as links to them. A run directory
    therefore never exists without its kept copy."""
    kept = kept_copy_of(run_dir)
    made_folder = not kept.parent.exists()
    try:
        with reporting_no_space(run_dir):  # a full disk names the run, not its copy
            atomic_dir(kept, fill)
    except BaseException:
        if made_folder:  # nothing half-made stays behind, not even the folder
            with contextlib.suppress(OSError):
                kept.parent.rmdir()
        raise
    with reporting_no_space(run_dir):
        return atomic_dir(run_dir, lambda folder: link_tree(kept, folder))


def restore_kept_run(run_dir: Path, recorded_settings: Mapping[str, Any]) -> dict | None:
    """Put the kept copy of ``run_dir`` back in its place when it holds a finished run made
    with ``recorded_settings`` and today's results version; returns its run.json, or None
    (nothing done) when there is no such copy."""
    kept = kept_copy_of(run_dir)
    if not is_complete_run(kept):
        return None
    try:
        info = read_info(kept)
    except (OSError, ValueError):
        return None
    if not isinstance(info, dict) or not made_with(info, recorded_settings):
        return None
    atomic_dir(run_dir, lambda folder: link_tree(kept, folder))
    return info
