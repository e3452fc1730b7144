"""The verdict's rules that need no runs (analysis.verdict): margins outside (0, 1) refused, at
start-up (the config schema), by the verdict command and by VerdictSettings, each in one
sentence naming the config key; two sides that agree exactly, without spread, are equivalent."""

from __future__ import annotations

import numpy as np
import pytest

from askdagger_mnist.analysis.verdict import SAME_VALUE, VerdictSettings, _verdict_cell, verdict_of
from askdagger_mnist.cli import reproduction
from askdagger_mnist.errors import UserError
from askdagger_mnist.experiment import config as cfg
from conftest import REPO

SCHEMA_PATH = REPO / "workflow" / "schemas" / "config.schema.yaml"
BAD_MARGINS = [0, 0.0, 1.5, -0.1, 1]


@pytest.mark.parametrize("margin", BAD_MARGINS)
@pytest.mark.parametrize("which", ["tracked", "others"])
def test_a_margin_outside_0_1_is_refused_at_start_up_naming_the_key(margin, which):
    with pytest.raises(cfg.ConfigProblem) as exc:
        cfg.check({"reproduction": {"margins": {which: margin}}}, SCHEMA_PATH)
    message = str(exc.value)
    assert message.startswith(f"invalid config value reproduction.margins.{which} = {margin}: ")
    assert "strictly between 0 and 1" in message and "\n" not in message, message


@pytest.mark.parametrize("margin", BAD_MARGINS)
def test_a_margin_outside_0_1_is_refused_by_the_verdict_and_its_command(margin, tmp_path, capsys):
    shown = f"{float(margin):g}"
    with pytest.raises(UserError, match=rf"^reproduction\.margins\.others \(--margin-others\) is "
                                        rf"{shown}: a margin must lie strictly between 0 and 1"):
        VerdictSettings(0.02, margin, 3, 50)
    rc = reproduction.main(["verdict", "--ours", str(tmp_path), "--theirs", str(tmp_path),
                            "--margin-tracked", str(margin), "--out-csv", str(tmp_path / "v.csv"),
                            "--out-md", str(tmp_path / "v.md")])
    err = capsys.readouterr().err.strip()
    assert rc == 1 and err.count("\n") == 0, err
    assert err.startswith(f"error: reproduction.margins.tracked (--margin-tracked) is {shown}: "
                          "a margin must lie strictly between 0 and 1"), err
    assert not (tmp_path / "v.csv").exists()


@pytest.mark.parametrize("n", [2, 3, 10])
def test_sides_that_agree_exactly_without_spread_are_equivalent(n):
    """Our own runs compared with themselves where a metric has one value in every run (say,
    sensitivity 1.0 in short runs): no difference and no spread, at any number of runs a side
    from two on (where spread is measured)."""
    x = np.full(n, 0.8125)
    verdict, reason, lo, hi = verdict_of(x, x.copy(), 0.02, 3)
    assert (verdict, reason, lo, hi) == ("equivalent", SAME_VALUE, 0.0, 0.0)
    assert _verdict_cell({"verdict": verdict, "reason": reason}) == \
        "equivalent (the same value in every run)"
    # spread, or a difference, on either side: the rules as before
    assert verdict_of(x, np.full(n, 0.8), 0.02, 3)[0] == ("equivalent" if n >= 3 else "inconclusive")
    assert verdict_of(np.array([0.8125, 0.8125, 0.9]), x, 0.02, 3)[0] == "inconclusive"
    assert verdict_of(x[:1], x[:1], 0.02, 3)[0] == "inconclusive"  # one run: no spread measured
