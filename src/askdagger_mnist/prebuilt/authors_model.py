"""The authors' ``.pt`` state dicts: bounded, read without running pickled code, renamed.

Each run of the authors holds ``r..._e5.pt``, LeNet's state dict with keys
``core_model.{conv1,conv2,fc1,fc2,fc3}.{weight,bias}`` in torch's zip format (16 records,
182,437 bytes). Before torch reads one it is checked to be a zip of at most 64 records and
``MAX_STATE_DICT_BYTES`` (in the file and unpacked): torch's legacy format is refused, because
its loader sizes each storage from a number inside the pickle, so a few bytes could ask for any
amount of memory. ``torch.load(weights_only=True)`` then refuses every global but tensors and
containers. A file that fails any check is left out (the model is optional: no figure needs
it); the returned note says which file and why.
"""

from __future__ import annotations

import zipfile
from pathlib import Path, PurePosixPath
from typing import Any, Mapping

LENET_SHAPES = {
    "conv1.weight": (6, 1, 5, 5),
    "conv1.bias": (6,),
    "conv2.weight": (16, 6, 5, 5),
    "conv2.bias": (16,),
    "fc1.weight": (120, 256),
    "fc1.bias": (120,),
    "fc2.weight": (84, 120),
    "fc2.bias": (84,),
    "fc3.weight": (10, 84),
    "fc3.bias": (10,),
}
AUTHORS_PREFIX = "core_model."
MAX_STATE_DICT_BYTES = 16 << 20  # LeNet's parameters take 178 KiB; 90 times that is plenty
MAX_RECORDS = 64


def _size_problem(pt_path: Path) -> str | None:
    """Why ``pt_path`` is not a LeNet-sized state dict in torch's zip format, or None."""
    size = pt_path.stat().st_size
    if size > MAX_STATE_DICT_BYTES:
        return f"it is {size} bytes, more than the {MAX_STATE_DICT_BYTES} a LeNet state dict can take"
    with open(pt_path, "rb") as fh:  # torch picks its loader by these first bytes
        starts_as_zip = fh.read(4) == b"PK\x03\x04"
    if not (starts_as_zip and zipfile.is_zipfile(pt_path)):
        return "it is not in torch's zip format (torch.save since 1.6; the legacy format is refused)"
    try:
        with zipfile.ZipFile(pt_path) as zf:
            infos = zf.infolist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        return f"it is not a readable zip ({exc})"
    unpacked = sum(i.file_size for i in infos)
    if len(infos) > MAX_RECORDS or unpacked > MAX_STATE_DICT_BYTES:
        return f"it holds {len(infos)} records of {unpacked} bytes, more than a LeNet state dict"
    return None


def _why(exc: Exception) -> str:
    """The informative line of torch's (long, multi-line) refusal."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    detail = next((line for line in lines if "GLOBAL" in line or "nsupported" in line),
                  lines[0] if lines else "")
    return f"{type(exc).__name__}: {detail[:200]}"


def _load(pt_path: Path) -> tuple[dict | None, str]:
    """(state dict, "") or (None, why not: a predicate of the file's name)."""
    import torch  # only needed here; keeps the rest of the import fast

    problem = _size_problem(pt_path)
    if problem:
        return None, f"was not loaded: {problem}"
    try:
        sd = torch.load(pt_path, map_location="cpu", weights_only=True)
    except Exception as exc:  # weights_only refuses anything but tensors and containers
        return None, f"could not be loaded safely ({_why(exc)})"
    if not isinstance(sd, Mapping):
        return None, "does not hold a state dict"
    renamed: dict[str, Any] = {}
    for key, value in sd.items():
        if not isinstance(key, str) or not key.startswith(AUTHORS_PREFIX):
            return None, f"has the unexpected key {str(key)[:80]!r}"
        renamed[key[len(AUTHORS_PREFIX) :]] = value
    if set(renamed) != set(LENET_SHAPES):
        return None, "has keys that do not match our LeNet"
    for key, shape in LENET_SHAPES.items():
        if not isinstance(renamed[key], torch.Tensor) or tuple(renamed[key].shape) != shape:
            return None, f"has a {key} that does not have shape {shape}"
    return {k: renamed[k] for k in LENET_SHAPES}, ""


def convert_state_dict(pt_path: Path) -> tuple[dict | None, str]:
    """Load the authors' state dict safely and rename ``core_model.X`` -> ``X``.

    Returns (state dict or None, a note for the provenance saying what was done or why not).
    """
    pt_path = Path(pt_path)
    state, why = _load(pt_path)
    if state is None:
        return None, f"not converted: {pt_path.name} {why}"
    return state, f"converted from {pt_path.name} (core_model.* -> *)"


def run_model(results: Path, rel: str, with_model: bool) -> tuple[dict | None, str, dict | None]:
    """The model of the run whose ``results.npy`` is ``results`` (``rel`` inside the archive).

    Returns (state dict or None, the provenance note, None or the refused file: ``file``
    inside the archive and ``reason``). No ``.pt`` at all, or ``--no-model``, is no refusal.
    """
    pts = sorted(Path(results).parent.glob("*.pt"))
    if not pts:
        return None, "no .pt state dict beside results.npy", None
    if not with_model:
        return None, "not converted: left out on request (--no-model)", None
    folder = PurePosixPath(rel).parent
    if len(pts) > 1:
        why = "matches more than one file beside results.npy"
        return None, f"not converted: *.pt {why}", {"file": str(folder / "*.pt"), "reason": why}
    state, why = _load(pts[0])
    if state is None:
        return None, f"not converted: {pts[0].name} {why}", {"file": str(folder / pts[0].name), "reason": why}
    return state, f"converted from {pts[0].name} (core_model.* -> *)", None
