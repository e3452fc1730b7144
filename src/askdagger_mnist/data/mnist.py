"""MNIST: download through torchvision (its mirrors and MD5 checks) and load into uint8 tensors.

The data root is a folder holding ``MNIST/raw/*.gz``, as torchvision lays it out. Loading
reads the ``.gz`` files directly, so a read-only folder with only the four archives works.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
from pathlib import Path
from typing import Iterable, Optional, Sequence

import numpy as np
import torch

from ..errors import UserError

# torchvision.datasets.MNIST's mirrors and (file, MD5) list, restated so that loading does not
# import torchvision (seconds per job); tests/data/test_mnist.py checks they equal torchvision's.
DEFAULT_MIRRORS: tuple[str, ...] = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)
RESOURCES: tuple[tuple[str, str], ...] = (
    ("train-images-idx3-ubyte.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
    ("train-labels-idx1-ubyte.gz", "d53e105ee54ea40749a09fcbcd1e9432"),
    ("t10k-images-idx3-ubyte.gz", "9fb629c4189551a2d022fa330f9573f3"),
    ("t10k-labels-idx1-ubyte.gz", "ec29112dd5afa0611ce80d1b7f02629c"),
)
TRAIN_IMAGES, TRAIN_LABELS = "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"


def raw_folder(root: Path) -> Path:
    return Path(root) / "MNIST" / "raw"


def _md5_of(name: str) -> str:
    return dict(RESOURCES)[name]


def check_md5(path: str, md5: str) -> bool:
    """As torchvision.datasets.utils.check_md5."""
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest() == md5


def _corrupt(path: Path) -> UserError:
    return UserError(
        f"{path} is corrupt (its MD5 does not match torchvision's checksum): "
        "delete it and run again to download a fresh copy."
    )


def missing_files(root: Path, names: Optional[Iterable[str]] = None) -> list[str]:
    """Names of MNIST archives absent from ``root``; raises UserError for a corrupt one."""
    raw = raw_folder(root)
    missing = []
    for name in names or [n for n, _ in RESOURCES]:
        path = raw / name
        if not path.is_file():
            missing.append(name)
        elif not check_md5(str(path), _md5_of(name)):
            raise _corrupt(path)
    return missing


def ensure_mnist(root: Path, mirrors: Sequence[str] = DEFAULT_MIRRORS) -> list[str]:
    """Make sure the four MNIST archives exist under ``root`` and pass MD5.

    Downloads missing ones with torchvision from ``mirrors`` (base URLs, tried in order).
    Nothing is written when all four are present and valid. Returns the downloaded names.
    """
    root = Path(root)
    missing = missing_files(root)
    if not missing:
        return []
    mirrors = [m if m.endswith("/") else m + "/" for m in mirrors]
    if not mirrors:
        raise UserError("no MNIST mirror is configured (mnist_mirrors): add at least one base URL.")

    from torchvision.datasets import MNIST  # the download itself is torchvision's

    class ConfiguredMNIST(MNIST):
        pass

    ConfiguredMNIST.mirrors = list(mirrors)
    ConfiguredMNIST.__name__ = "MNIST"  # keeps torchvision's folder layout root/MNIST/raw
    raw = raw_folder(root)
    try:
        raw.mkdir(parents=True, exist_ok=True)
        downloader = ConfiguredMNIST.__new__(ConfiguredMNIST)
        downloader.root = str(root)
        # torchvision prints "Downloading URL to PATH" per file (kept: stdout) and a "\r..%"
        # progress tick per 32 KiB chunk to stderr, which floods a log file: dropped.
        with contextlib.redirect_stderr(io.StringIO()):
            downloader.download()
    except (RuntimeError, OSError) as exc:
        _remove_invalid(raw, missing)
        last = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise UserError(
            f"could not download MNIST file(s) {', '.join(missing)} into {raw} from "
            f"{', '.join(mirrors)} (last error: {last}); check the network and the "
            "mnist_mirrors setting, or copy the four .gz files there yourself."
        ) from exc
    still = missing_files(root)
    if still:
        raise UserError(f"MNIST download left {', '.join(still)} missing in {raw}: run again.")
    return missing


def _remove_invalid(raw: Path, names: Iterable[str]) -> None:
    """Remove half-downloaded archives (and their extracted files) that fail MD5."""
    for name in names:
        path = raw / name
        if path.is_file() and not check_md5(str(path), _md5_of(name)):
            path.unlink()
        extracted = raw / name[: -len(".gz")]
        if not path.is_file() and extracted.is_file():
            extracted.unlink()


def _read_idx(path: Path, expected_magic: int) -> np.ndarray:
    with gzip.open(path, "rb") as fh:
        data = fh.read()
    magic = int.from_bytes(data[0:4], "big")
    if magic != expected_magic:
        raise UserError(f"{path} is not an MNIST idx file (magic {magic}): delete it and run again.")
    ndim = magic & 0xFF
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    array = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if array.size != int(np.prod(dims)):
        raise _corrupt(path)
    return array.reshape(dims)


def load_mnist_train(root: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """The 60,000 MNIST training images (uint8, N x 28 x 28) and labels (int64)."""
    raw = raw_folder(root)
    missing = missing_files(root, [TRAIN_IMAGES, TRAIN_LABELS])
    if missing:
        raise UserError(
            f"{raw / missing[0]} is missing: run the download_mnist rule "
            f"(python -m askdagger_mnist.cli.download_mnist --root {root}) or point --data-root at "
            "a folder holding MNIST/raw/*.gz."
        )
    images = _read_idx(raw / TRAIN_IMAGES, 2051)
    labels = _read_idx(raw / TRAIN_LABELS, 2049)
    if len(images) != len(labels):
        raise _corrupt(raw / TRAIN_LABELS)
    return torch.from_numpy(images.copy()), torch.from_numpy(labels.astype(np.int64))
