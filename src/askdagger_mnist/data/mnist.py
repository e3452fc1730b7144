"""MNIST: make sure the archives are present and valid (downloading what is missing); load them.

The data root is a folder holding ``MNIST/raw/*.gz``, as torchvision lays it out: the user's
folder, where nothing is ever deleted or rewritten. A present file is only read (MD5-checked;
a corrupt one is named and left as is). A missing one is fetched from the mirrors (http(s):// or
file:// base URLs, in order) into a temporary name beside it, MD5-checked, then renamed into
place (data/mirrors.py, with the package's one downloader): the root gets a complete, verified
file or none, whatever fails (bad bytes, a connection dying mid-file, a mirror lacking the
file, any exception, Ctrl-C; SIGTERM under the CLI). Training reads only the two train-*
files: ``prepare_mnist(..., required=TRAIN_FILES)`` notes, instead of failing, why a t10k-*
file could not be had (a read-only root, no mirror). Checking uses the standard library only
(the Snakefile imports this module); loading reads the .gz files directly.
"""

from __future__ import annotations

import gzip
import json
import os
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Optional, Sequence

from ..errors import UserError
from ..settings import MNIST_MIRRORS
from .atomic import write_bytes_atomic
from .hashing import file_hash
from .mirrors import CannotFetch, NotFetched, fetch_verified, one_fetcher

if TYPE_CHECKING:  # imported where used: downloading and checking need neither
    import numpy as np
    import torch

# torchvision.datasets.MNIST's (file, MD5) list (and its mirrors: settings.MNIST_MIRRORS),
# restated so that neither loading nor downloading imports torchvision (seconds per job);
# tests/data/test_mnist.py checks they equal torchvision's.
RESOURCES: tuple[tuple[str, str], ...] = (
    ("train-images-idx3-ubyte.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
    ("train-labels-idx1-ubyte.gz", "d53e105ee54ea40749a09fcbcd1e9432"),
    ("t10k-images-idx3-ubyte.gz", "9fb629c4189551a2d022fa330f9573f3"),
    ("t10k-labels-idx1-ubyte.gz", "ec29112dd5afa0611ce80d1b7f02629c"),
)
ALL_FILES: tuple[str, ...] = tuple(name for name, _ in RESOURCES)
_MD5 = dict(RESOURCES)
TRAIN_IMAGES, TRAIN_LABELS = "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"
TRAIN_FILES: tuple[str, ...] = (TRAIN_IMAGES, TRAIN_LABELS)  # all that training reads


def raw_folder(root: Path) -> Path:
    return Path(root) / "MNIST" / "raw"


def check_md5(path: str, md5: str) -> bool:
    """As torchvision.datasets.utils.check_md5."""
    return file_hash(path, "md5") == md5


def download_command(root: Path) -> str:
    """The command that fetches what is missing under ``root`` (for error messages)."""
    return f"python -m askdagger_mnist.cli.download_mnist --root {shlex.quote(str(root))}"


def _corrupt(path: Path, root: Path) -> UserError:
    return UserError(
        f"{path} is corrupt (its MD5 does not match torchvision's checksum): delete it and "
        f"download a fresh copy with `{download_command(root)}` (it fetches only what is "
        "missing), or copy a good one there."
    )


def missing_files(root: Path, names: Optional[Iterable[str]] = None) -> list[str]:
    """Names of MNIST archives absent from ``root``; raises UserError for a corrupt one."""
    raw = raw_folder(root)
    missing = []
    for name in names or ALL_FILES:
        path = raw / name
        if not path.is_file():
            missing.append(name)
        elif not check_md5(str(path), _MD5[name]):
            raise _corrupt(path, root)
    return missing


@dataclass
class MnistState:
    """What ``prepare_mnist`` found and did under a root (names in RESOURCES order)."""

    root: Path
    present: list[str] = field(default_factory=list)  # valid, and there before
    downloaded: list[str] = field(default_factory=list)  # fetched and verified now
    absent: list[str] = field(default_factory=list)  # not required, and not there after all
    notes: list[str] = field(default_factory=list)  # one sentence per absent file: why


def prepare_mnist(
    root: Path, mirrors: Sequence[str] = MNIST_MIRRORS, required: Iterable[str] = ALL_FILES
) -> MnistState:
    """Check every archive under ``root``, fetch the missing ones; UserError when a ``required``
    one is corrupt or not had (the others are then listed in ``absent``, with a note)."""
    root, required = Path(root), set(required)
    raw, state, missing = raw_folder(root), MnistState(root=root), []
    for name in ALL_FILES:
        path = raw / name
        if not path.is_file():
            missing.append(name)
        elif check_md5(str(path), _MD5[name]):
            state.present.append(name)
        elif name in required:
            raise _corrupt(path, root)
        else:
            state.absent.append(name)
            state.notes.append(f"{path} is corrupt and left as is (training does not read it; "
                               "delete it to have it downloaded again)")  # fmt: skip
    mirrors = [m if m.endswith("/") else m + "/" for m in mirrors]
    if missing and not mirrors:
        raise UserError("no MNIST mirror is configured (mnist_mirrors): add at least one base URL.")
    failed: dict[str, str] = {}  # name -> why (the last mirror's error)
    final = None  # a CannotFetch: no other file is tried
    for name in missing:
        try:
            if final is not None:
                raise final
            with one_fetcher(raw):  # another workflow sharing this root may be fetching it
                if (raw / name).is_file() and check_md5(str(raw / name), _MD5[name]):
                    state.present.append(name)  # it did: its verified file is kept as it is
                    continue
                fetch_verified(raw, name, _MD5[name], mirrors)
            state.downloaded.append(name)
        except NotFetched as exc:
            failed[name] = str(exc)
            final = exc if isinstance(exc, CannotFetch) else final
    lost = [name for name in failed if name in required]
    for name in failed:
        if name not in required:
            state.absent.append(name)
            state.notes.append(f"{raw / name} is missing and was not downloaded ({failed[name]}); "
                               "training does not read it")  # fmt: skip
    state.absent.sort(key=ALL_FILES.index)
    state.present.sort(key=ALL_FILES.index)  # those another process fetched meanwhile too
    if lost and final is not None and failed[lost[-1]] == str(final):
        raise UserError(
            f"cannot {final.verb} MNIST file(s) {', '.join(lost)} into {raw} ({final}): "
            f"{final.remedy}"
        )
    if lost:
        raise UserError(
            f"could not download MNIST file(s) {', '.join(lost)} into {raw} from "
            f"{', '.join(mirrors)} (last error: {failed[lost[-1]]}); check the network and the "
            "mnist_mirrors setting, or copy the .gz files there yourself."
        )
    return state


def ensure_mnist(root: Path, mirrors: Sequence[str] = MNIST_MIRRORS) -> list[str]:
    """The four archives under ``root``, valid (missing ones downloaded); the names fetched."""
    return prepare_mnist(root, mirrors, required=ALL_FILES).downloaded


def write_manifest(path: Path, state: MnistState) -> None:
    """Record the verified archives (size, MD5) and the root in ``path``, atomically: what the
    download_mnist rule produces, in the workflow's own tree."""
    raw = raw_folder(state.root)
    record = {
        "what": "MNIST archives verified by askdagger_mnist.cli.download_mnist",
        "root": os.path.abspath(state.root),
        "files": {
            n: {"size": (raw / n).stat().st_size, "md5": _MD5[n]}
            for n in ALL_FILES
            if n in state.present or n in state.downloaded
        },
        "absent": list(state.absent),
    }
    write_bytes_atomic(path, (json.dumps(record, indent=2) + "\n").encode())


def _read_idx(path: Path, expected_magic: int, root: Path) -> "np.ndarray":
    import numpy as np

    with gzip.open(path, "rb") as fh:
        data = fh.read()
    magic = int.from_bytes(data[0:4], "big")
    if magic != expected_magic:
        raise UserError(
            f"{path} is not an MNIST idx file (magic {magic}): delete it and download a fresh "
            f"copy with `{download_command(root)}`."
        )
    ndim = magic & 0xFF
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    array = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if array.size != int(np.prod(dims)):
        raise _corrupt(path, root)
    return array.reshape(dims)


def load_mnist_train(root: Path) -> tuple["torch.Tensor", "torch.Tensor"]:
    """The 60,000 MNIST training images (uint8, N x 28 x 28) and labels (int64)."""
    import numpy as np
    import torch

    raw = raw_folder(root)
    missing = missing_files(root, TRAIN_FILES)
    if missing:
        raise UserError(
            f"{raw / missing[0]} is missing: download it with `{download_command(root)}` (it "
            "fetches only what is missing), or point --data-root (mnist_root) at a folder "
            "holding MNIST/raw/*.gz."
        )
    images = _read_idx(raw / TRAIN_IMAGES, 2051, root)
    labels = _read_idx(raw / TRAIN_LABELS, 2049, root)
    if len(images) != len(labels):
        raise _corrupt(raw / TRAIN_LABELS, root)
    return torch.from_numpy(images.copy()), torch.from_numpy(labels.astype(np.int64))
