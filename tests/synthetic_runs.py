"""Finished runs of ours made up for tests of imports: arrays that keep every invariant of a run
(data.invariants), a run.json with the settings asked for, written as workflows write them."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from askdagger_mnist.algorithm.metrics import whole_run_metrics
from askdagger_mnist.data import rundir
from askdagger_mnist.data.atomic import atomic_dir
from askdagger_mnist.experiment.naming import run_subdir
from askdagger_mnist.settings import RESULTS_VERSION, STREAM_STEPS, RunSettings

B = 128  # the paper's batch size
RUN = ("sensitivity", "sag", 0.9, 0)  # (mode, variant, s_des, rep)


def consistent_arrays(steps: int, seed: int) -> dict:
    """The arrays of a run of ``steps`` steps that keep every invariant (data.invariants)."""
    rng = np.random.default_rng(seed)
    n = B * steps
    c = (rng.random(n) < 0.7).astype(np.int8)
    q_a = (rng.random(n) < 0.3).astype(np.int8)
    q = np.maximum(q_a, (rng.random(n) < 0.1).astype(np.int8))
    stream = rng.permutation(60_000)[:n]
    return {"u": rng.random(n) * 0.9, "k": np.repeat(np.arange(steps) // 5, B),
            "g": np.full(n, 0.5), "c": c, "q": q, "q_a": q_a, "r": np.where(q == 1, 2 * c - 1, 0),
            "stream_idx": stream, "train_idx": stream[q == 1]}


def write_run(runs: Path, key=RUN, steps: int = STREAM_STEPS, array_steps: int | None = None,
              info_changes: dict | None = None, **setting_changes) -> Path:
    """A finished run of ours under ``runs``: ``steps`` in its run.json, ``array_steps`` (default
    the same) in its arrays, the paper's settings but ``setting_changes``."""
    mode, variant, s_des, rep = key
    settings = {**RunSettings(mode=mode, s_des=s_des, rep=rep, steps=steps).to_dict(),
                **setting_changes, "variant": variant}
    arrays = consistent_arrays(array_steps or steps, seed=rep + 1)
    info = {"settings": settings, "results_version": RESULTS_VERSION, "source": "train",
            "n_steps": steps, "metrics": whole_run_metrics(arrays["c"], arrays["q"]),
            **(info_changes or {})}

    def fill(tmp: Path) -> None:
        rundir.write_run_files(tmp, arrays, info)
        (tmp / rundir.MODEL_FILE).write_bytes(b"a model")

    return atomic_dir(runs / run_subdir(*key), fill)
