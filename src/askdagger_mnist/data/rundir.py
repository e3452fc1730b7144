"""Run directories: ``arrays.npz`` + ``run.json`` (+ ``model.pt``), written atomically.

A run directory is complete exactly when it exists under its final name: writers build it
in a sibling temporary directory, flush it to the disk (fsync) and rename it into place as
the last step. A write that fails for a full disk or quota is one sentence (``DiskFull``)
naming the path, and leaves nothing half-written behind.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import numpy as np

from ..errors import UserError

ARRAYS_FILE = "arrays.npz"
RUN_FILE = "run.json"
MODEL_FILE = "model.pt"

# Arrays over the stream (one entry per seen sample) and their on-disk dtypes.
STREAM_ARRAYS = {
    "u": np.float64,  # uncertainty 1 - max mean prob
    "k": np.int64,  # update count when the sample was seen
    "g": np.float64,  # SAG threshold used for the sample's step (may be +inf)
    "c": np.int8,  # novice correct (0/1)
    "r": np.int8,  # teacher reward: +1 queried & correct, -1 queried & wrong, 0 not queried
    "q": np.int8,  # queried (random or active)
    "q_a": np.int8,  # queried actively (u >= gamma)
}
# Optional arrays: stream_idx is absent in runs imported from the authors' format.
INDEX_ARRAYS = {"stream_idx": np.int64, "train_idx": np.int64}


# A write that failed for want of space: the errno, or torch.save's C++ writer ("unexpected
# pos", no errno) when it was handed a file name instead of a Python file object.
_NO_SPACE = {errno.ENOSPC: "no space left on its disk", errno.EDQUOT: "your disk quota is used up"}
_TORCH_WRITE_FAILED = ("unexpected pos", "PytorchStreamWriter failed writing", "iostream error")


class DiskFull(UserError):
    """A file or run directory could not be written for want of space (nothing was kept)."""

    def __init__(self, path: Path, reason: str):
        self.path, self.reason = Path(path), reason
        super().__init__(
            f"{path} could not be written: {reason} (nothing half-written was kept); free space "
            "there and rerun."
        )


def no_space_reason(exc: BaseException) -> str | None:
    """Why ``exc`` says a write failed for want of space, or None when it says something else."""
    for e in (exc, exc.__cause__, exc.__context__):
        if isinstance(e, DiskFull):
            return e.reason
        if isinstance(e, OSError) and e.errno in _NO_SPACE:
            return _NO_SPACE[e.errno]
    if isinstance(exc, RuntimeError) and any(m in str(exc) for m in _TORCH_WRITE_FAILED):
        return _NO_SPACE[errno.ENOSPC]
    return None


@contextlib.contextmanager
def reporting_no_space(path: Path) -> Iterator[None]:
    """Turn a write that fails for want of space into ``DiskFull`` naming ``path``."""
    try:
        yield
    except (OSError, RuntimeError, DiskFull) as exc:  # a nested DiskFull: renamed to path
        reason = no_space_reason(exc)
        if reason is None or (isinstance(exc, DiskFull) and exc.path == Path(path)):
            raise
        raise DiskFull(path, reason) from exc


def fsync_path(path: Path, *, directory: bool = False) -> None:
    """Flush a file's data (or, where the file system allows it, a directory's entries) to the
    disk: a rename after it never publishes an empty or torn file, even if the machine dies."""
    try:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        if not directory or exc.errno in _NO_SPACE:
            raise


@contextlib.contextmanager
def atomic_file(path: Path) -> Iterator[Path]:
    """Yield a temporary sibling of ``path`` to write; on success it becomes ``path`` (mode
    0644) in one rename, on error it is removed. Readers never see a half-written file; a
    full disk is ``DiskFull`` naming ``path``."""
    path = Path(path)
    with reporting_no_space(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        try:
            yield Path(tmp)
            fsync_path(tmp)
            os.chmod(tmp, 0o644)  # mkstemp makes 0600; results are for every reader
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        fsync_path(path.parent, directory=True)


def write_bytes_atomic(path: Path, data: bytes) -> None:
    with atomic_file(path) as tmp:
        tmp.write_bytes(data)


def json_text(data: Mapping[str, Any]) -> str:
    return json.dumps(data, indent=2, sort_keys=True, default=_json_default) + "\n"


def write_json_atomic(path: Path, data: Mapping[str, Any]) -> None:
    write_bytes_atomic(path, json_text(data).encode())


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def installed_versions(names) -> dict[str, str]:
    """Installed versions of the named distributions (those not installed are left out), for
    the provenance a run, an import or a bundle records."""
    from importlib import metadata

    out = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


def atomic_dir(final: Path, fill: Callable[[Path], None]) -> Path:
    """Create directory ``final`` atomically: ``fill(tmpdir)`` writes the files, then rename.

    An existing ``final`` directory is replaced. If ``fill`` raises, nothing is left behind
    and an existing ``final`` stays as it was; a full disk is ``DiskFull`` naming ``final``.
    """
    final = Path(final)
    with reporting_no_space(final):
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
        try:
            os.chmod(tmp, 0o755)  # mkdtemp makes 0700
            fill(tmp)
            for sub, _, files in os.walk(tmp):
                for name in files:
                    fsync_path(Path(sub) / name)
                fsync_path(Path(sub), directory=True)
            _publish(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        fsync_path(final.parent, directory=True)
    return final


def _publish(tmp: Path, final: Path) -> None:
    """Rename ``tmp`` to ``final``; an existing ``final`` directory is moved aside first and
    put back if the rename fails. Anything else in the way is left as it is."""
    if final.is_symlink() or (final.exists() and not final.is_dir()):
        raise UserError(f"{final} exists and is not a directory: move it away (or choose "
                        "another place for the output) and rerun.")
    if not final.exists():
        os.replace(tmp, final)
        return
    old = final.with_name(f".{final.name}.old")
    if old.exists():
        shutil.rmtree(old)
    os.replace(final, old)
    try:
        os.replace(tmp, final)
    except BaseException:
        os.replace(old, final)
        raise
    shutil.rmtree(old)


def pack_arrays(arrays: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Cast the run arrays to their on-disk dtypes; checks that stream arrays agree in length."""
    out: dict[str, np.ndarray] = {}
    for name, dtype in STREAM_ARRAYS.items():
        if name not in arrays:
            raise ValueError(f"run arrays lack {name!r}")
        out[name] = np.asarray(arrays[name]).astype(dtype, copy=False)
    n = len(out["u"])
    for name in STREAM_ARRAYS:
        if out[name].shape != (n,):
            raise ValueError(f"run array {name!r} has shape {out[name].shape}, expected ({n},)")
    for name, dtype in INDEX_ARRAYS.items():
        if arrays.get(name) is not None:
            out[name] = np.asarray(arrays[name]).astype(dtype, copy=False)
    return out


def save_npz(path: Path, arrays: Mapping[str, np.ndarray]) -> None:
    """An .npz (a zip of .npy files, as np.savez_compressed writes and np.load reads) with
    the fastest deflate level: ~6x quicker than numpy's level 6 on run arrays, ~7% larger."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        for name, array in arrays.items():
            with zf.open(f"{name}.npy", "w", force_zip64=True) as fh:
                np.lib.format.write_array(fh, np.asanyarray(array), allow_pickle=False)


def write_run_files(directory: Path, arrays: Mapping[str, Any], info: Mapping[str, Any]) -> None:
    """Write arrays.npz and run.json into an (unpublished) directory: ``atomic_dir``'s
    ``fill`` (which flushes and publishes them, or removes them all)."""
    directory = Path(directory)
    save_npz(directory / ARRAYS_FILE, pack_arrays(arrays))
    (directory / RUN_FILE).write_text(json_text(info))


def read_arrays(run_dir: Path) -> dict[str, np.ndarray]:
    path = Path(run_dir) / ARRAYS_FILE
    if not path.is_file():
        raise UserError(f"{path} is missing: the run is incomplete; re-run its train job.")
    with np.load(path, allow_pickle=False) as npz:
        return {name: npz[name] for name in npz.files}


def read_info(run_dir: Path) -> dict[str, Any]:
    path = Path(run_dir) / RUN_FILE
    if not path.is_file():
        raise UserError(f"{path} is missing: the run is incomplete; re-run its train job.")
    with open(path) as fh:
        return json.load(fh)


def is_complete_run(run_dir: Path) -> bool:
    run_dir = Path(run_dir)
    return (run_dir / ARRAYS_FILE).is_file() and (run_dir / RUN_FILE).is_file()


def check_creatable(path: Path, name: str) -> None:
    """Refuse in one sentence (``name``: how the user gave it) a path that cannot be created:
    its nearest existing parent must be a folder this process may write in."""
    for parent in Path(path).absolute().parents:
        if parent.exists() or parent.is_symlink():
            if not parent.is_dir():
                raise UserError(f"{name} {path} cannot be created: {parent} is a file, not a "
                                f"folder; choose another {name}.")
            if not os.access(parent, os.W_OK | os.X_OK):
                raise UserError(f"{name} {path} cannot be created: you may not write in {parent} "
                                f"(read-only or not yours); choose another {name}.")
            return


def holds_run(out: Path, settings: Mapping[str, Any], name: str = "--out") -> bool:
    """Whether ``out`` already holds the finished run of ``settings`` (its run.json's
    "settings"); False when nothing, or an empty folder, is there. Anything else there is
    refused in one sentence (``name`` is how the user gave ``out``) and left as it is."""
    out = Path(out)
    if not out.exists() and not out.is_symlink():
        return False
    if out.is_symlink() or not out.is_dir():
        raise UserError(f"{name} {out} is an existing file or link, not a run directory: choose "
                        f"another {name} (it is left as it is).")
    if not is_complete_run(out):
        if not any(out.iterdir()):
            return False
        raise UserError(f"{name} {out} is a folder holding something other than a finished run: "
                        f"choose another {name} (the run directory is created there), or empty it.")
    try:
        recorded = read_info(out).get("settings")
    except (OSError, ValueError, AttributeError):
        recorded = None
    if recorded != dict(settings):
        raise UserError(f"{name} {out} holds a finished run with other settings: delete it to "
                        f"train this run there, or choose another {name}.")
    return True
