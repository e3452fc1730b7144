"""bench/fused_query.py and its prototype kernel (bench/prototypes/fused_query.cpp): built with
torch's extension loader, the fused query pass gives the fast engine's probabilities to float32
rounding, on the loop's shape and on a small one, and the benchmark reports both times; without
the tools it says in one sentence what the build lacks."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from conftest import REPO
from test_lockstep import bench_module

SCRIPT = REPO / "bench" / "fused_query.py"
LACKING = bench_module("fused_query").missing_tools()


@pytest.mark.slow
@pytest.mark.skipif(LACKING is not None, reason=f"building the prototype needs {LACKING}")
def test_the_fused_query_gives_the_fast_engines_probabilities_and_both_times(tmp_path):
    out = tmp_path / "fused.json"
    done = subprocess.run([sys.executable, str(SCRIPT), "--rounds", "3", "--build-dir",
                           str(tmp_path / "build"), "--json", str(out)],
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text())
    worst = result["max_abs_difference"]
    assert worst["fused vs fast"] <= 1e-6 and worst["fused vs plain"] <= 1e-6, worst
    assert set(result["ms"]) == {"fast engine (mc_probs_shared)",
                                 "fused prototype, FC by torch.addmm",
                                 "fused prototype, FC hand-written, 8x2 tiles"}
    assert all(ms > 0 for ms in result["ms"].values())
    assert "| fused prototype, FC by torch.addmm |" in done.stdout


def test_without_a_compiler_it_says_what_the_build_lacks(tmp_path):
    env = {**os.environ, "PATH": str(tmp_path), "CXX": "no-such-compiler"}
    done = subprocess.run([sys.executable, str(SCRIPT), "--rounds", "1"], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert done.stderr == "error: building the prototype needs a C++ compiler (c++ or g++ on PATH).\n"
