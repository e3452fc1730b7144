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

Hard links guard the files against being deleted, not against being changed (a link is the
same file), so the kept copy also records what was made: the SHA-256 of each file, in
``SHA256SUMS`` (as ``sha256sum`` writes it; only in the kept copy, the run directory holds
the run's files alone). The run directory, published or restored, is checked against those
digests before it appears, and a restored run's arrays must load and satisfy every run's
invariants (data/invariants.py). A copy kept before digests were recorded (it has no
``SHA256SUMS``) is restored when what it holds passes every check that needs no digest: its
run.json of these settings and today's results version, its arrays as above, and its model.pt a
state dict that loads without running code (data/model_file.py); its digests are recorded then,
so that later restores check them. A kept copy of this run that fails (a file changed, cut
short or missing) is set aside as ``.kept/<name>.rejected`` (``.rejected.2``, ...; never
deleted) with one line saying so, and the run is trained again.

Standard library and numpy only: the restore must not cost the ~1.5 s of importing torch.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
from pathlib import Path
from typing import Any, Callable, Mapping

from ..errors import UserError, stderr_line
from ..settings import RESULTS_VERSION
from .atomic import atomic_dir, reporting_no_space, write_bytes_atomic
from .hashing import file_hash
from .invariants import InconsistentRun, read_consistent_arrays
from .model_file import model_problem
from .rundir import ARRAYS_FILE, MODEL_FILE, RUN_FILE, DamagedArrays, read_info

DIGESTS_FILE = "SHA256SUMS"  # in the kept copy: "<sha256>  <file name>" a line
REJECTED = ".rejected"  # the suffix of a kept copy set aside

# Hard links fail across file systems and on some network ones: the kept copy is then a copy.
_NO_LINK = {errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP, errno.EOPNOTSUPP}


class NotAsMade(Exception):
    """A run's files are not those that were made, or not a run's; the message says how."""


def kept_copy_of(run_dir: Path) -> Path:
    run_dir = Path(run_dir)
    return run_dir.parent / ".kept" / run_dir.name


def made_with(info: Mapping[str, Any], recorded_settings: Mapping[str, Any]) -> bool:
    """Whether a run.json's content says the run was made with ``recorded_settings`` (run.json's
    "settings") by code whose results are today's (its ``results_version``)."""
    return (info.get("results_version") == RESULTS_VERSION
            and info.get("settings") == dict(recorded_settings))


def digests_of(folder: Path) -> dict[str, str]:
    """File name -> SHA-256 of each file of ``folder`` (hidden ones, such as a temporary, left
    out)."""
    names = sorted(p.name for p in Path(folder).iterdir() if p.is_file() and p.name[0] != ".")
    return {name: file_hash(Path(folder) / name) for name in names}


def digests_text(digests: Mapping[str, str]) -> str:
    return "".join(f"{digest}  {name}\n" for name, digest in digests.items())


def record_digests(folder: Path) -> None:
    """Write ``SHA256SUMS`` into ``folder``: the SHA-256 of each of its files."""
    (Path(folder) / DIGESTS_FILE).write_text(digests_text(digests_of(folder)))


def recorded_digests(kept: Path) -> dict[str, str] | None:
    """File name -> SHA-256 as the kept copy recorded them when it was made; None for a copy
    kept before digests were recorded (it has no ``SHA256SUMS``)."""
    path = Path(kept) / DIGESTS_FILE
    if not (path.exists() or path.is_symlink()):
        return None
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError):
        text = ""
    digests = {}
    for line in text.splitlines():
        digest, _, name = line.partition("  ")
        if len(digest) == 64 and name and "/" not in name and name != DIGESTS_FILE:
            digests[name] = digest
    if not digests:
        raise NotAsMade(f"its {DIGESTS_FILE} records no digests of its files (they were lost), so "
                        "nothing vouches for its content")
    if not {ARRAYS_FILE, RUN_FILE} <= digests.keys():
        raise NotAsMade(f"its {DIGESTS_FILE} lists no {ARRAYS_FILE} or no {RUN_FILE}")
    return digests


def digest_problem(folder: Path, digests: Mapping[str, str]) -> str | None:
    """How the files of ``folder`` differ from those ``digests`` describe, or None."""
    for name, digest in digests.items():
        path = Path(folder) / name
        if not path.is_file():
            return f"its {name} is missing"
        if file_hash(path) != digest:
            return (f"its {name} is not the file that was made (its SHA-256 differs from the one "
                    "recorded when the run was published)")
    return None


def arrays_problem(folder: Path, info: Any) -> str | None:
    """Whether the arrays of the run in ``folder`` (run.json's content ``info``) load and hold
    what every run does (data/invariants.py): the problem in words, or None."""
    try:
        batch_size = int(info["settings"]["batch_size"])
    except (TypeError, KeyError, ValueError):
        return "its run.json names no batch size"
    try:
        read_consistent_arrays(folder, batch_size)
    except DamagedArrays as exc:
        return f"its {ARRAYS_FILE} cannot be read ({exc.reason})"
    except InconsistentRun as exc:
        return f"its arrays break an invariant: {exc.problem}"
    return None


def link_files(source: Path, target: Path, names) -> None:
    """Hard-link the files ``names`` of ``source`` into the folder ``target``; copy where the
    file system cannot link."""
    for name in names:
        try:
            os.link(Path(source) / name, Path(target) / name)
        except OSError as exc:
            if exc.errno not in _NO_LINK:
                raise
            shutil.copy2(Path(source) / name, Path(target) / name)


def link_as_made(kept: Path, folder: Path, digests: Mapping[str, str] | None = None) -> None:
    """Link the files of the kept copy into ``folder`` (an unpublished run directory) and check
    them there against ``digests`` (default: those the copy recorded): ``NotAsMade`` when they
    differ."""
    digests = recorded_digests(kept) if digests is None else digests
    if digests is None:
        raise NotAsMade(f"it has no {DIGESTS_FILE}")
    link_files(kept, folder, [name for name in digests if (Path(kept) / name).is_file()])
    problem = digest_problem(folder, digests)
    if problem is not None:
        raise NotAsMade(problem)


def link_legacy(kept: Path, folder: Path) -> dict[str, str]:
    """Link the files of a copy kept before digests were recorded into ``folder``, checked by
    what needs no digest: its model.pt (the arrays are the caller's). Returns their digests."""
    digests = digests_of(kept)
    missing = [name for name in (ARRAYS_FILE, RUN_FILE, MODEL_FILE) if name not in digests]
    if missing:
        raise NotAsMade(f"its {missing[0]} is missing")
    link_as_made(kept, folder, digests)  # (a file changed while linking: NotAsMade)
    problem = model_problem(folder)
    if problem is not None:
        raise NotAsMade(problem)
    return digests


def publish_run(run_dir: Path, fill: Callable[[Path], None], kept_only: bool = False) -> Path:
    """Write a finished run: ``fill(folder)`` writes its files into the kept copy, created
    atomically with the digests of those files; then the run directory appears, atomically,
    as links to them, checked against the digests. A run directory therefore never exists
    without its kept copy. ``kept_only``: the kept copy alone, for the run directory's own
    train job to restore (a run trained with its batch: experiment/batches.py)."""
    kept = kept_copy_of(run_dir)
    made_folder = not kept.parent.exists()

    def fill_and_record(folder: Path) -> None:
        fill(folder)
        record_digests(folder)

    try:
        with reporting_no_space(run_dir):  # a full disk names the run, not its copy
            atomic_dir(kept, fill_and_record)
    except BaseException:
        if made_folder:  # nothing half-made stays behind, not even the folder
            with contextlib.suppress(OSError):
                kept.parent.rmdir()
        raise
    if kept_only:
        return kept
    try:
        with reporting_no_space(run_dir):
            return atomic_dir(run_dir, lambda folder: link_as_made(kept, folder))
    except NotAsMade as exc:  # the files changed between writing and linking: a failing disk
        raise UserError(f"{run_dir} was not published: {exc}; check the disk, then run the "
                        "same command again (it trains the run again).") from exc


def kept_info(kept: Path) -> Any:
    """What the run.json of the kept copy ``kept`` holds, or None where it is missing or torn."""
    try:
        return read_info(kept)
    except (OSError, ValueError, UserError):
        return None


def kept_copy_holds(run_dir: Path, recorded_settings: Mapping[str, Any]) -> bool:
    """Whether the kept copy of ``run_dir`` says it holds the run of ``recorded_settings`` made by
    today's code (its files are checked when it is restored, ``restore_kept_run``)."""
    kept = kept_copy_of(run_dir)
    if not kept.is_dir() or kept.is_symlink():
        return False
    info = kept_info(kept)
    return isinstance(info, dict) and made_with(info, recorded_settings)


def restore_kept_run(run_dir: Path, recorded_settings: Mapping[str, Any],
                     say: Callable[[str], None] | None = None) -> dict | None:
    """Put the kept copy of ``run_dir`` back in its place when it holds a finished run made
    with ``recorded_settings`` and today's results version, its files those that were made
    and its arrays a run's (a copy kept before digests were recorded: its model.pt a state
    dict, and its digests are recorded now); returns its run.json, or None (no run directory
    made) otherwise. A copy of this run (or one whose run.json cannot say whose it is) that fails the checks is
    set aside, and ``say`` (default: stderr) gets one line saying so."""
    kept = kept_copy_of(run_dir)
    if not kept.is_dir() or kept.is_symlink():
        return None
    info = kept_info(kept)  # None where missing or torn: the digests tell which
    if isinstance(info, dict) and not made_with(info, recorded_settings):
        return None  # another run's copy: trained, and its publication replaces it

    def restore(folder: Path) -> None:
        digests = recorded_digests(kept)
        legacy = digests is None  # kept before digests were recorded
        if legacy:
            digests = link_legacy(kept, folder)
        else:
            link_as_made(kept, folder, digests)
        problem = arrays_problem(folder, info)
        if problem is not None:
            raise NotAsMade(problem)
        if legacy:  # checked: its digests are recorded before the run directory appears
            write_bytes_atomic(kept / DIGESTS_FILE, digests_text(digests).encode())

    try:
        atomic_dir(run_dir, restore)
    except NotAsMade as exc:
        aside = set_aside(kept)
        (say or stderr_line)(f"kept copy {kept} not restored: {exc}; set aside as {aside}, the run "
                         "is trained again.")
        return None
    return info


def set_aside(kept: Path) -> Path:
    """Move the kept copy out of the way, beside it as ``<name>.rejected`` (``.rejected.2``,
    ... when that is taken); returns where it went."""
    kept = Path(kept)
    n = 1
    while True:
        aside = kept.with_name(kept.name + REJECTED + (f".{n}" if n > 1 else ""))
        if not (aside.exists() or aside.is_symlink()):
            os.rename(kept, aside)
            return aside
        n += 1
