"""Where the tests find their real data: the one place that decides (conftest.py imports it).

MNIST (the four .gz files, MNIST/raw/ under a root), in this order:
1. ``$ASKDAGGER_TEST_MNIST``: a root you name (this project's CI names ../shared/data/mnist);
2. ``../shared/data/mnist`` beside the checkout, where this project's own machines keep it;
3. a cache, ``$XDG_CACHE_HOME/askdagger-mnist/test-data/mnist`` (``~/.cache/...``): filled once
   by the project's own downloader (``data.mnist.ensure_mnist``: torchvision's mirrors, each file
   MD5-checked before it is renamed into place), reused afterwards;
4. none: the tests marked ``needs_mnist`` skip, saying what is missing and how to provide it.

The original code's reference runs (``original_results/`` and ``extra_original_results/`` in
the authors' layout; the first holds the runs published in the fork pouyan-asg/askdagger_mnist,
README.md "Tests" says where to get them): ``$ASKDAGGER_TEST_REFERENCE``, else
``../shared/reference``, else the tests marked ``needs_reference`` skip with the reason.

A named folder that lacks what it should hold is not silently replaced by another source: its
tests skip, naming the folder and what it lacks.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
ENV_MNIST = "ASKDAGGER_TEST_MNIST"
ENV_REFERENCE = "ASKDAGGER_TEST_REFERENCE"
REFERENCE_FOLDERS = ("original_results", "extra_original_results")


@dataclass(frozen=True)
class Source:
    root: Path | None  # None: unavailable
    how: str  # where it came from, or why it is unavailable (one line)


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "askdagger-mnist" / "test-data"


def _complete_mnist(root: Path) -> str | None:
    """None when root holds the four MNIST archives, valid; else what is wrong, in words."""
    from askdagger_mnist.data.mnist import missing_files
    from askdagger_mnist.errors import UserError

    try:
        missing = missing_files(root)
    except UserError as exc:  # a corrupt archive
        return str(exc)
    return f"it lacks MNIST/raw/{missing[0]}" if missing else None


def resolve_mnist() -> Source:
    named = os.environ.get(ENV_MNIST)
    if named:  # resolved: the workflow records the folder it reads by its resolved path
        problem = _complete_mnist(Path(named).resolve())
        if problem:
            return Source(None, f"${ENV_MNIST} names {named}, but {problem}")
        return Source(Path(named).resolve(), f"${ENV_MNIST} ({named})")
    shared = SHARED / "data" / "mnist"
    if shared.is_dir() and _complete_mnist(shared) is None:
        return Source(shared, f"{shared}")
    cached = cache_dir() / "mnist"
    if _complete_mnist(cached) is None:
        return Source(cached, f"the cache {cached}")
    from askdagger_mnist.data.mnist import ensure_mnist

    try:
        ensure_mnist(cached)
    except Exception as exc:  # any failure: the tests that need MNIST skip with the reason
        return Source(None, f"MNIST is not available ({exc}): set ${ENV_MNIST} to a folder "
                            f"holding MNIST/raw/*.gz, or let the tests download it into {cached}")
    return Source(cached, f"downloaded into the cache {cached}")


def resolve_reference() -> Source:
    named = os.environ.get(ENV_REFERENCE)
    root = Path(named).resolve() if named else SHARED / "reference"
    missing = [f for f in REFERENCE_FOLDERS if not (root / f).is_dir()]
    if not missing:
        return Source(root, f"${ENV_REFERENCE} ({named})" if named else str(root))
    where = f"${ENV_REFERENCE} names {named}, which" if named else f"{root}"
    return Source(None, f"runs of the original code are not available: {where} lacks {missing[0]}/ "
                        f"(README.md, \"Tests\", says where they come from)")


_INDEX: list = []  # the one answer of index_reachable, once asked


def index_reachable() -> tuple[bool, str]:
    """Whether pip's package index answers (the floor tests install from it); asked once."""
    if not _INDEX:
        import urllib.request

        index = os.environ.get("PIP_INDEX_URL", "https://pypi.org/simple/").rstrip("/")
        try:
            with urllib.request.urlopen(f"{index}/snakemake/", timeout=15) as answer:
                _INDEX.append((answer.status == 200, f"the package index {index} answered {answer.status}"))
        except Exception as exc:
            _INDEX.append((False, f"the package index {index} cannot be reached ({exc}); these tests "
                                  "install Snakemake's declared floor from it"))
    return _INDEX[0]
