"""Downloaded data cannot make a reader take unbounded memory or time: a hostile results.npy or
zip archive is refused with a sentence, quickly. Each hostile pickle is read in a child process
with a capped address space and a timeout, so that a regression fails the test instead of
taking the machine down."""

from __future__ import annotations

import codecs
import os
import pickle
import struct
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from numpy._core.multiarray import _reconstruct

from askdagger_mnist.errors import UserError
from askdagger_mnist.prebuilt.safe_extract import safe_extract

AS_LIMIT = 768 << 20  # bytes of address space for the child; importing numpy needs ~150 MiB

_CHILD = """
import resource, sys, time
resource.setrlimit(resource.RLIMIT_AS, ({limit}, {limit}))
from askdagger_mnist.errors import UserError
from askdagger_mnist.prebuilt.authors_pickle import load_results_npy
start = time.perf_counter()
try:
    load_results_npy(sys.argv[1])
    print("LOADED")
except UserError as exc:
    print(f"REFUSED in {{time.perf_counter() - start:.2f}} s: {{exc}}")
"""


def npy_with_payload(path: Path, payload: bytes) -> Path:
    """A .npy file whose header says 'pickled 0-d object array' and whose pickle is ``payload``."""
    with open(path, "wb") as fh:
        np.lib.format.write_array_header_1_0(fh, {"descr": "|O", "fortran_order": False, "shape": ()})
        fh.write(payload)
    return path


def shared_list_bomb() -> bytes:
    """About 300 bytes: twelve levels of one list referenced ten times, 10**12 numbers expanded."""
    level = [0] * 10
    for _ in range(11):
        level = [level] * 10
    return pickle.dumps({"u": level}, protocol=2)


def read_in_child(path: Path) -> tuple[str, float]:
    """load_results_npy(path) in a child with 768 MiB of address space; (its line, wall time)."""
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", _CHILD.format(limit=AS_LIMIT), str(path)], check=False,
                          capture_output=True, text=True, timeout=60, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout.strip(), time.perf_counter() - start


class _Encode:
    """Protocol-2 bytes: ``_codecs.encode(text, 'latin1')``; one text, many calls."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __reduce__(self):
        return codecs.encode, (self.text, "latin1")


class _SharedData:
    """An array whose data is one bytes object shared with every other such array."""

    def __init__(self, raw: bytes) -> None:
        self.raw = raw

    def __reduce__(self):
        state = (1, (len(self.raw) // 8,), np.dtype("f8"), False, self.raw)
        return _reconstruct, (np.ndarray, (0,), b"b"), state


def _hostile(kind: str) -> bytes:
    if kind == "nested shared lists":
        return shared_list_bomb()
    if kind == "memo slot 2**31":  # the C unpickler would size its memo for 2**32 entries
        return b"\x80\x02}r" + struct.pack("<I", 2**31) + b"."
    if kind == "one text encoded 4096 times":
        text = "x" * (256 << 10)
        return pickle.dumps({"u": [_Encode(text) for _ in range(4096)]}, protocol=2)
    if kind == "one array buffer shared 4096 times":
        raw = bytes(256 << 10)
        return pickle.dumps({"u": [_SharedData(raw) for _ in range(4096)]}, protocol=4)
    raise AssertionError(kind)


@pytest.mark.parametrize("kind, reason", [
    ("nested shared lists", "shared"),
    ("memo slot 2**31", "memo"),
    ("one text encoded 4096 times", "from a file of"),
    ("one array buffer shared 4096 times", "from a file of"),
])
def test_hostile_pickle_is_refused_quickly_in_bounded_memory(tmp_path, kind, reason):
    payload = _hostile(kind)
    path = npy_with_payload(tmp_path / "results.npy", payload)
    line, wall = read_in_child(path)
    assert line.startswith("REFUSED"), line[:300]
    assert str(path) in line and "refused" in line and "do not use it" in line, line[:300]
    assert reason in line, line[:300]
    assert wall < 20, wall  # a few seconds on a busy machine; the refusal itself takes < 1 s
    if kind == "nested shared lists":
        assert len(payload) < 400


def test_results_npy_above_the_size_cap_is_refused_before_reading(tmp_path):
    path = npy_with_payload(tmp_path / "results.npy", b"")
    with open(path, "r+b") as fh:
        fh.truncate(65 << 20)  # sparse: no disk space used
    from askdagger_mnist.prebuilt.authors_pickle import load_results_npy

    with pytest.raises(UserError, match=r"results\.npy is 68157440 bytes, more than"):
        load_results_npy(path)


# --- zip archives: work bounded by what the archive holds ----------------------------------------


def test_deeply_nested_member_name_is_refused(tmp_path):
    archive = tmp_path / "deep.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("a/" * 4000 + "x", b"1")  # its parent folders cost O(depth**2) to list
    start = time.perf_counter()
    with pytest.raises(UserError, match="folders deep"):
        safe_extract(archive, tmp_path / "d")
    assert time.perf_counter() - start < 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["deep.zip"]


def test_many_small_bombs_are_refused_by_the_archive_ratio(tmp_path):
    """Each member stays at the per-member ratio floor; together they are a bomb."""
    archive = tmp_path / "bombs.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_BZIP2) as zf:
        for i in range(10):
            zf.writestr(f"m{i}", bytes(4 << 20))
    assert archive.stat().st_size < 4096
    with pytest.raises(UserError, match="zip bomb"):
        safe_extract(archive, tmp_path / "d")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bombs.zip"]
