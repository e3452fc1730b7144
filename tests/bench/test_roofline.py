"""The roofline benchmark (bench/roofline.py) at a tiny size: it runs, prints every promised
row, and its op census counts the multiply-accumulates the fast engine's shapes imply."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import MNIST_ROOT, REPO
from test_lockstep import bench_module

pytestmark = pytest.mark.needs_mnist

PASSES, BATCH = 16, 128  # the defaults: MC passes per query image, images per step

# MACs per query image in fast.query: conv1 in the polyphase layout (24 output channels = 4
# window positions x 6, a 12x12 map, 4 input phases x 3x3 taps), conv2 split by input channel
# (6 x 16 channels, 8x8, 5x5), each pass's channel mixing (4 window positions x 6 channels x
# 256 outputs) and its fully connected layers.
FC = 256 * 120 + 120 * 84 + 84 * 10
QUERY_MACS_PER_IMAGE = (24 * 144 * 4 * 9 + 6 * 16 * 64 * 25
                        + PASSES * (4 * 6 * 256 + FC))
# MACs per training sample in fast.backprop: forward (polyphase conv1, conv2 16 x 8x8 x 6x5x5,
# FC), backward (FC's weight and input gradients, conv2's input and weight gradients, conv1's
# weight gradient); and per SGD step the fold of conv1's polyphase gradient (150 x 864).
CONV1, CONV2 = 24 * 144 * 4 * 9, 16 * 64 * 6 * 25
TRAIN_MACS_PER_SAMPLE = CONV1 + CONV2 + FC + 2 * FC + 2 * CONV2 + CONV1
FOLD_MACS_PER_STEP = 150 * 864


@pytest.mark.slow
def test_roofline_prints_every_row_and_counts_the_engines_macs(tmp_path):
    roofline = bench_module("roofline")
    out = tmp_path / "roofline.json"
    steps = 6  # one update (at step 5) of 5 SGD steps
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / "roofline.py"), "--data-root", str(MNIST_ROOT),
         "--steps", str(steps), "--gemm-size", "128", "--bandwidth-mib", "8", "--json", str(out)],
        capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    table = done.stdout
    for row in (*roofline.PHASES, *(stage for stage, _ in roofline.JOB_STAGES)):
        assert f"\n| {row} | " in table, row
    for measure in ("fp32 GEMM rate", "copy bandwidth", "triad bandwidth"):
        assert f"| {measure}" in table, measure

    result = json.loads(out.read_text())
    work, rows = result["work"], result["roofline"]
    assert work["query images"] == steps * BATCH
    assert work["SGD steps"] == 5 and 0 < work["SGD samples"] <= 5 * BATCH
    assert rows["query"]["macs"] == work["query images"] * QUERY_MACS_PER_IMAGE
    assert rows["update"]["macs"] == (work["SGD samples"] * TRAIN_MACS_PER_SAMPLE
                                      + work["SGD steps"] * FOLD_MACS_PER_STEP)
    mask_bytes = work["query images"] * PASSES * (6 + 16 + 120 + 84) * 22
    assert rows["query"]["bytes"] > mask_bytes
    assert rows["sag"]["macs"] == rows["sag"]["bytes"] == 0  # numpy: not counted
    for phase in ("query", "update"):
        r = rows[phase]
        assert r["floor_s"] == max(r["mac_time_s"], r["byte_time_s"]) > 0
        assert r["fraction_of_floor"] == pytest.approx(r["floor_s"] / r["time_s"])
    job = result["job"]
    assert sum(job["phase_s"].values()) == pytest.approx(job["loop_s"])
    assert sum(job["stages_s"].values()) == pytest.approx(job["total_s"])
    assert all(s >= 0 for s in job["stages_s"].values())
