"""File checksums, the package's one way to compute them: sha256 of downloads, archives and
bundle members, MD5 of the MNIST archives (torchvision's list), any set of them in one read.
Standard library only (the Snakefile's MNIST check reaches it through data/mnist.py)."""

from __future__ import annotations

import hashlib
import os
from typing import Iterable

CHUNK = 1 << 20


def file_hashes(path: str | os.PathLike, algorithms: Iterable[str]) -> dict[str, str]:
    """The hex digest of the file at ``path`` for each of ``algorithms`` (hashlib names:
    "sha256", "md5"), the file read once."""
    # Checksums, not a security measure: usedforsecurity=False lets FIPS builds compute MD5.
    digests = {name: hashlib.new(name, usedforsecurity=False) for name in algorithms}
    buffer = bytearray(CHUNK)
    view = memoryview(buffer)
    with open(path, "rb") as fh:
        while n := fh.readinto(buffer):
            for digest in digests.values():
                digest.update(view[:n])
    return {name: digest.hexdigest() for name, digest in digests.items()}


def file_hash(path: str | os.PathLike, algorithm: str = "sha256") -> str:
    """The hex digest of the file at ``path`` (sha256 unless ``algorithm`` says otherwise)."""
    return file_hashes(path, (algorithm,))[algorithm]
