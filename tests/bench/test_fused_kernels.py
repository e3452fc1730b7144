"""bench/fused_kernels.py and its two prototype kernels (bench/prototypes/*.cpp): built with
torch's extension loader, the fused query gives the fast engine's probabilities and the fused
SGD step its loss and gradients, to float32 rounding, and the benchmark reports every time;
without the tools it says in one sentence what the build lacks."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from conftest import REPO
from test_lockstep import bench_module

SCRIPT = REPO / "bench" / "fused_kernels.py"
LACKING = bench_module("fused_kernels").missing_tools()


@pytest.mark.slow
@pytest.mark.skipif(LACKING is not None, reason=f"building the prototypes needs {LACKING}")
def test_the_fused_kernels_compute_what_the_fast_engine_does_and_are_timed(tmp_path):
    out = tmp_path / "fused.json"
    done = subprocess.run([sys.executable, str(SCRIPT), "--rounds", "3", "--build-dir",
                           str(tmp_path / "build"), "--json", str(out)],
                          capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text())
    query = result["query"]["max_abs_difference"]
    assert query["fused vs fast"] <= 1e-6 and query["fused vs plain"] <= 1e-6, query
    step = result["sgd_step"]["max_relative_difference"]
    assert step["loss"] <= 1e-5 and step["gradients"] <= 1e-4, step  # measured: 1e-7, 1.4e-6
    assert set(result["query"]["ms"]) == {"fast engine (mc_probs_shared)",
                                          "fused prototype, FC by torch.addmm",
                                          "fused prototype, FC hand-written, 8x2 tiles"}
    assert set(result["sgd_step"]["ms"]) == {"fast engine (written_out_gradients)",
                                             "fused prototype"}
    assert all(ms > 0 for part in ("query", "sgd_step") for ms in result[part]["ms"].values())
    assert "| fused prototype |" in done.stdout


def test_without_a_compiler_it_says_what_the_build_lacks(tmp_path):
    env = {**os.environ, "PATH": str(tmp_path), "CXX": "no-such-compiler"}
    done = subprocess.run([sys.executable, str(SCRIPT), "--rounds", "1"], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert done.stderr == "error: building the prototypes needs a C++ compiler (c++ or g++ on PATH).\n"
