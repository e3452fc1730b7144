"""Run directories: ``arrays.npz`` + ``run.json`` (+ ``model.pt``), written atomically.

A run directory is complete exactly when it exists under its final name: writers build it
with ``data.atomic.atomic_dir`` (a sibling temporary directory, flushed to the disk and
renamed into place as the last step). A write that fails for a full disk or quota is one
sentence (``DiskFull``) naming the path, and leaves nothing half-written behind.
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ..errors import UserError
from ..experiment.grid import COMPARE, IMPORTED
from .atomic import write_bytes_atomic

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
# The folders that hold imported archives, one folder each (``<tree>/<name>``, grid.py).
_IMPORT_TREES = {Path(COMPARE).parts, Path(IMPORTED).parts}
# Optional arrays: stream_idx is absent in runs imported from the authors' format.
INDEX_ARRAYS = {"stream_idx": np.int64, "train_idx": np.int64}


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


class DamagedArrays(UserError, ValueError):
    """A run's arrays.npz that cannot be read (``reason``). A ValueError too, as numpy's own
    errors for such a file are, for the readers that catch those."""

    def __init__(self, run_dir: Path, reason: str):
        self.path, self.reason = Path(run_dir) / ARRAYS_FILE, reason
        super().__init__(f"{self.path} is damaged ({reason}): {remake_advice(run_dir)}")


def remake_advice(run_dir: Path) -> str:
    """What to do about a run directory whose content cannot be used. A run of an imported
    archive (``results/compare/<name>/...``, ``results/imported/<name>/...``) is made again
    only with its whole archive: the workflow imports each archive as one output."""
    archive = imported_archive_of(run_dir)
    if archive is not None:
        return (f"delete {archive} (the whole imported archive: a run folder deleted in it is "
                "imported by nothing) and rerun the same command, which imports the archive again.")
    return (f"delete the run directory {run_dir} and rerun the workflow (or the command that made "
            "the run), which makes it again.")


def imported_archive_of(run_dir: Path) -> Path | None:
    """The imported archive's folder (``results/compare/<name>`` or ``results/imported/<name>``)
    that ``run_dir`` lies in, or None."""
    parts = Path(run_dir).parts
    for at in range(len(parts) - 2, 1, -1):  # the innermost
        if parts[at - 2 : at] in _IMPORT_TREES:
            return Path(*parts[: at + 1])
    return None


def read_arrays(run_dir: Path) -> dict[str, np.ndarray]:
    path = Path(run_dir) / ARRAYS_FILE
    if not path.is_file():
        raise UserError(f"{path} is missing: the run is incomplete; re-run its train job.")
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {name: npz[name] for name in npz.files}
    except (OSError, MemoryError):
        raise  # the disk's, the permissions' or the machine's fault, not the file's
    except Exception as exc:
        # A cut or bit-flipped zip fails in many ways: BadZipFile, zlib.error, ValueError,
        # EOFError, tokenize.TokenError (a garbled .npy header), NotImplementedError, ...
        first_line = (str(exc).splitlines() or [""])[0][:200]
        raise DamagedArrays(run_dir, f"{type(exc).__name__}: {first_line}".rstrip(": ")) from exc


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
