"""The lock-step proof (bench/lockstep.py) as a test: the authors' original, recorded from
inside, replayed through our plain engine component by component.

Needs the original's environment (bench/original/make_env.sh) and an unedited clone of the
authors' repository, named by ASKDAGGER_ORIGINAL_PYTHON (default
~/.cache/askdagger-mnist/original-venv/bin/python) and ASKDAGGER_ORIGINAL_SOURCE; skips with
one line otherwise. The original runs at full float32 matmul precision here (their train.py
sets "medium", which on CPUs with bfloat16 units computes training matmuls in bfloat16:
docs/reproduction.md, "Lock-step"), so every component must agree to float32 rounding.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import MNIST_ROOT, REPO

pytestmark = pytest.mark.needs_mnist

ORIGINAL_PYTHON = Path(os.environ.get(
    "ASKDAGGER_ORIGINAL_PYTHON",
    Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "askdagger-mnist"
    / "original-venv" / "bin" / "python"))
ORIGINAL_SOURCE = os.environ.get("ASKDAGGER_ORIGINAL_SOURCE")


def bench_module(name: str):
    """bench/<name>.py, imported (bench/ is not a package)."""
    spec = importlib.util.spec_from_file_location(name, REPO / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def skip_without_the_original() -> None:
    """Skip, with one line saying what to provide, unless the original's environment, a clone
    of the authors' code and MNIST are all at hand."""
    if not ORIGINAL_PYTHON.is_file():
        pytest.skip(f"the original's environment is not installed ({ORIGINAL_PYTHON}): "
                    "bash bench/original/make_env.sh, or set ASKDAGGER_ORIGINAL_PYTHON")
    if not ORIGINAL_SOURCE or not (Path(ORIGINAL_SOURCE) / "src" / "askdagger_mnist" / "train.py").is_file():
        pytest.skip("no clone of the authors' code: set ASKDAGGER_ORIGINAL_SOURCE to a clone of "
                    "https://github.com/pouyan-asg/askdagger_mnist")
    if not (MNIST_ROOT / "MNIST" / "raw").is_dir():
        pytest.skip(f"MNIST is not at {MNIST_ROOT}")


@pytest.mark.slow
def test_the_original_and_our_plain_engine_agree_component_by_component(tmp_path):
    skip_without_the_original()
    lockstep = bench_module("lockstep")
    record = tmp_path / "record"
    subprocess.run([str(ORIGINAL_PYTHON), str(REPO / "bench" / "original" / "record_lockstep.py"),
                    "--source", ORIGINAL_SOURCE, "--mnist-raw", str(MNIST_ROOT / "MNIST" / "raw"),
                    "--work", str(tmp_path / "work"), "--out", str(record), "--updates", "4",
                    "--matmul-precision", "highest"], check=True, capture_output=True)
    table = lockstep.replay(record, MNIST_ROOT).rows
    exact = ("query input (normalised batch)", "query prediction", "training set at the update",
             "learning rate", "training input (crops, normalised)", "training targets",
             "mini-batch sizes", "mini-batch passes (each a permutation of the set)")
    for name in exact:
        assert table[name].count > 0 and table[name].max_abs == 0, name
    assert table["query input (normalised batch)"].count == 22  # steps 0..21: 4 updates and one more
    assert table["learning rate"].count == 4 * 5
    for name in ("query probabilities (mean of 16 passes)", "query u",
                 "SGD step: weights after (from their state)", "chain: weights after each SGD step"):
        assert table[name].max_abs < 1e-6, (name, table[name].max_abs)
