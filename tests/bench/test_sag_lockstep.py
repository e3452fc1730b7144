"""The SAG lock-step (bench/sag_lockstep.py) as a test: every SAG call of a running original,
recorded from inside with the uniforms it drew and the fits it made, replayed through our
plain and fast SAG. Our gamma must be theirs to float rounding, call by call, and so must every
active-query decision and both fits' coefficients.

Needs the original's environment and a clone of the authors' code, as tests/bench/test_lockstep.py
(ASKDAGGER_ORIGINAL_PYTHON, ASKDAGGER_ORIGINAL_SOURCE); skips with one line otherwise. Success
mode at s_des 0.5 is the case whose fit differed (issue 22); the first 40 steps hold the first
windows, where an untrained novice's bunched scores stop their lbfgs early.
"""

from __future__ import annotations

import subprocess

import pytest

from conftest import MNIST_ROOT, REPO
from test_lockstep import ORIGINAL_PYTHON, ORIGINAL_SOURCE, bench_module, skip_without_the_original

pytestmark = pytest.mark.needs_mnist


@pytest.mark.slow
@pytest.mark.parametrize("mode,s_des,flags", [("success", 0.5, []),
                                               ("specificity", 0.5, ["--p-rand", "0.2"])])
def test_our_sag_returns_the_originals_gamma_call_by_call(tmp_path, mode, s_des, flags):
    skip_without_the_original()
    record = tmp_path / "record"
    subprocess.run([str(ORIGINAL_PYTHON), str(REPO / "bench" / "original" / "record_sag.py"),
                    "--source", ORIGINAL_SOURCE, "--mnist-raw", str(MNIST_ROOT / "MNIST" / "raw"),
                    "--work", str(tmp_path / "work"), "--out", str(record), "--mode", mode,
                    "--s-des", str(s_des), "--steps", "40", *flags], check=True, capture_output=True)
    result = bench_module("sag_lockstep").replay_case(record)
    # The first steps fall back to the quantile (too few labelled samples); at least 3 in 4 fit.
    assert result.calls == 40 and result.fitted_calls >= 30
    for engine in ("plain", "fast"):
        assert result.gamma_max_abs[engine] < 1e-12, (engine, result.gamma_max_abs)
        assert result.decisions_differ[engine] == 0, engine
    assert result.active_ours == result.active_theirs
    assert result.uniforms_unused == 0  # ours drew exactly as many uniforms as theirs
    assert result.logit_max_abs < 1e-6 and result.lin_max_abs < 1e-12
