"""What every run satisfies, ours by construction (docs/spec.md §3), and imported runs must too.

An imported run (the authors' format or a bundle) enters tables and verdicts only when
``run_problem`` finds nothing; otherwise its sentence names the run and the invariant, and the
import stops with nothing imported. A run directory's arrays are checked again before anything
downstream uses them (``read_consistent_arrays``: the aggregation, the SAG figure, a restore
from a kept copy, an import). The arrays are those of a run directory (``u k g c r q q_a`` over
the stream, ``train_idx``, ``stream_idx`` where the run has it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import numpy as np

from ..errors import UserError
from ..settings import MNIST_TRAIN_IMAGES
from .rundir import ARRAYS_FILE, read_arrays, remake_advice

STREAM = ("u", "k", "g", "c", "r", "q", "q_a")


class InconsistentRun(UserError):
    """A run directory whose arrays break an invariant (``problem``, in words)."""

    def __init__(self, run_dir: Path, problem: str):
        self.problem = problem
        super().__init__(f"{Path(run_dir) / ARRAYS_FILE} does not hold a consistent run: {problem}; "
                         f"{remake_advice(run_dir)}")


def read_consistent_arrays(run_dir: Path, batch_size: int) -> dict[str, np.ndarray]:
    """The arrays of the run directory ``run_dir``: ``DamagedArrays`` when they cannot be read,
    ``InconsistentRun`` when they break an invariant (the one way every reader checks a run)."""
    arrays = read_arrays(run_dir)
    check_run(run_dir, arrays, batch_size)
    return arrays


def check_run(run_dir: Path, arrays: Mapping[str, np.ndarray], batch_size: int) -> None:
    """``InconsistentRun`` when the arrays of the run directory ``run_dir`` break an invariant."""
    problem = run_problem(arrays, batch_size)
    if problem is not None:
        raise InconsistentRun(run_dir, problem)


def run_problem(arrays: Mapping[str, np.ndarray], batch_size: int) -> str | None:
    """The first invariant of §3 the arrays break, in words, or None."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        return f"its batch size {batch_size!r} is not a whole number of at least 1"
    missing = [name for name in (*STREAM, "train_idx") if name not in arrays]
    if missing:
        return f"it lacks the array(s) {', '.join(missing)}"
    n = len(arrays["u"])
    if n == 0 or n % batch_size:
        return (f"its stream holds {n} samples, not a positive multiple of its batch size "
                f"{batch_size} (§3: whole steps of batch_size samples)")
    for name in STREAM:
        if len(arrays[name]) != n:
            return f"its array {name!r} has {len(arrays[name])} entries where u has {n}"
    u, g, c, r, q, q_a, k = (np.asarray(arrays[x]) for x in ("u", "g", "c", "r", "q", "q_a", "k"))
    if not np.all(np.isfinite(u)) or u.min() < 0 or u.max() > 1:
        return "its uncertainties u are not all finite numbers in [0, 1] (§2.2: u = 1 - max P)"
    if np.isnan(g).any() or np.isneginf(g).any():
        return "its thresholds g include NaN or -inf (§4.6: a NaN gamma is replaced; +inf is the only infinity)"
    if np.any(np.diff(k) < 0):
        return "its update counts k decrease along the stream (§3.5: k only grows)"
    if np.any(q_a.astype(bool) & ~q.astype(bool)):
        return "it has active queries q_a that are not queries q (§3.4: q = q_rand or q_a)"
    expected_r = np.where(q != 0, np.where(c != 0, 1, -1), 0)
    if not np.array_equal(r, expected_r):
        return "its rewards r do not follow from q and c (§3.4: +1 queried and right, -1 queried and wrong, 0 not queried)"
    train = np.asarray(arrays["train_idx"])
    if len(train) != int(np.count_nonzero(q)):
        return (f"its training set holds {len(train)} indices but it made {int(np.count_nonzero(q))} "
                "queries (§3.4: the training set is the queried samples)")
    if len(np.unique(train)) != len(train):
        return "its training set holds an MNIST index twice (§3.1: each image is streamed once)"
    if len(train) and (train.min() < 0 or train.max() >= MNIST_TRAIN_IMAGES):
        return f"its training set holds indices outside 0..{MNIST_TRAIN_IMAGES - 1}"
    if "stream_idx" in arrays:
        stream = np.asarray(arrays["stream_idx"])
        if len(stream) != n or len(np.unique(stream)) != n:
            return "its stream positions stream_idx are not one distinct MNIST index per sample"
        if not np.array_equal(stream[q != 0], train):
            return "its training set is not its queried stream samples in stream order (§3.4)"
    return None
