"""The reproduction verdict (analysis.sides, analysis.verdict, cli.reproduction) on the real
runs of the authors' code in ../shared/reference, imported as the workflow imports them."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from askdagger_mnist.algorithm.metrics import whole_run_metrics
from askdagger_mnist.analysis.sides import read_side, run_dirs_under
from askdagger_mnist.analysis.verdict import (VerdictSettings, compare_sides, difference_interval,
                                              judge, summary_line, to_markdown)
from askdagger_mnist.cli import reproduction
from askdagger_mnist.cli.fetch_results import DEFAULT_VARIANTS, cmd_import
from askdagger_mnist.data.rundir import read_arrays, read_info, write_run_files
from conftest import authors_zip

DEFAULTS = VerdictSettings.from_config()


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """The 10 reference runs (sensitivity 6, specificity 2, success 2), imported."""
    base = tmp_path_factory.mktemp("reference")
    archive = authors_zip(base / "reference.zip")
    cmd_import(archive, base / "imported", "authors", None, {"sag": DEFAULT_VARIANTS["sag"]},
               "sensitivity", 128, 5, False)
    return base / "imported"


def copy_runs(src: Path, dst: Path, edit=None) -> Path:
    """A copy of an imported tree; ``edit(settings, arrays)`` may change each run's arrays."""
    shutil.copytree(src, dst)
    for run in run_dirs_under(dst):
        if edit is not None:
            info, arrays = read_info(run), dict(read_arrays(run))
            edit(info["settings"], arrays)
            for f in run.iterdir():
                f.unlink()
            write_run_files(run, arrays, info)
    return dst


def verdicts(table: pd.DataFrame, metric=None) -> dict:
    rows = table if metric is None else table[table["metric"] == metric]
    return {(r["mode"], r["metric"]): r["verdict"] for r in rows.to_dict("records")}


def test_reference_runs_import_into_their_configurations(reference):
    side = read_side("theirs", run_dirs_under(reference))
    assert {c[0]: len(r) for c, r in side.runs.items()} == {
        "sensitivity": 6, "specificity": 2, "success": 2}
    assert all(c[1:] == (0.1, True, True, 0.9, 128, 5, 16, 0.4, 50, 10) for c in side.runs)


def test_a_source_compared_with_itself_is_equivalent_everywhere(reference):
    side = read_side("same", run_dirs_under(reference))
    table = compare_sides(side, side, VerdictSettings(0.02, 0.05, 2, 10_000, 50))
    assert len(table) == 3 * 6 and set(table["verdict"]) == {"equivalent"}
    assert np.allclose(table["diff"], 0) and (table["max_curve_diff"].fillna(0) == 0).all()
    assert summary_line(table).startswith("3 of 3 configurations equivalent on the tracked metric")


def test_a_copy_with_its_tracked_metric_shifted_beyond_the_margin_is_different(reference, tmp_path):
    def query_more_failures(settings, arrays):
        if settings["mode"] == "sensitivity":  # query 40% of the unqueried failures
            c, q = arrays["c"], arrays["q"].copy()
            missed = np.flatnonzero((c == 0) & (q == 0))
            q[missed[: int(0.4 * len(missed))]] = 1
            arrays["q"] = q

    shifted = copy_runs(reference, tmp_path / "shifted", query_more_failures)
    ours = read_side("ours", run_dirs_under(shifted))
    theirs = read_side("theirs", run_dirs_under(reference))
    table = compare_sides(ours, theirs, DEFAULTS)
    row = table[(table["mode"] == "sensitivity") & (table["metric"] == "sensitivity")].iloc[0]
    assert row["diff"] > 0.02 and row["ci_low"] > 0.02 and row["verdict"] == "different"
    assert row["n_ours"] == row["n_theirs"] == 6
    # the whole-run metric is that of the edited arrays
    run = run_dirs_under(shifted)[0]
    a = read_arrays(run)
    expected = np.mean([whole_run_metrics(read_arrays(r)["c"], read_arrays(r)["q"])["sensitivity"]
                        for r in run_dirs_under(shifted) if "sensitivity/" in r.as_posix()])
    assert row["mean_ours"] == pytest.approx(expected) and len(a["c"]) == 468 * 128
    # modes whose runs were not edited: no difference; with 2 runs a side, no verdict
    assert verdicts(table, "specificity")[("specificity", "specificity")] == "inconclusive"


def test_one_run_per_side_is_inconclusive_and_one_sided_configurations_are_listed(reference, tmp_path):
    one = tmp_path / "one"
    for run in run_dirs_under(reference):
        if run.name == "rep0" and "success" not in run.as_posix():
            shutil.copytree(run, one / run.relative_to(reference))
    ours = read_side("ours", run_dirs_under(one))
    theirs = read_side("theirs", [r for r in run_dirs_under(reference) if r.name == "rep1"])
    table = compare_sides(ours, theirs, DEFAULTS)
    matched = table[table["verdict"] != "unmatched"]
    assert set(matched["verdict"]) == {"inconclusive"}
    assert set(matched["reason"]) == {"fewer than 3 runs on a side"}
    unmatched = table[table["verdict"] == "unmatched"]
    assert unmatched[["mode", "reason", "n_ours", "n_theirs"]].values.tolist() == [
        ["success", "theirs only", 0, 1]]
    md = to_markdown(table, "ours", "theirs", DEFAULTS)
    assert "success, p_rand 0.1, s_des 0.9 (batch 128, update every 5): theirs only (1 runs)" in md
    assert "; 1 configuration(s) on one side only (0 ours only, 1 theirs only)." in md.splitlines()[0]


def test_short_runs_are_compared_over_the_steps_both_sides_have(reference, tmp_path):
    def cut(settings, arrays):
        n = len(arrays["c"])
        for name, values in arrays.items():  # every array over the stream
            if values.ndim == 1 and len(values) == n:
                arrays[name] = values[: 60 * 128]
        settings["steps"] = 60

    short = copy_runs(reference, tmp_path / "short", cut)
    table = compare_sides(read_side("a", run_dirs_under(short)),
                          read_side("b", run_dirs_under(reference)), DEFAULTS)
    assert set(table["steps"]) == {60}
    assert np.allclose(table["diff"], 0) and set(table["max_curve_diff"].dropna()) == {0.0}


def test_the_bootstrap_interval_is_stable_and_exact_where_it_must_be():
    rng = np.random.default_rng(7)
    x, y = rng.normal(0.90, 0.01, 10), rng.normal(0.89, 0.01, 6)
    lo1, hi1 = difference_interval(x, y, 10_000, np.random.default_rng(1))
    lo2, hi2 = difference_interval(x, y, 10_000, np.random.default_rng(2))
    assert abs(lo1 - lo2) < 1e-3 and abs(hi1 - hi2) < 1e-3  # resampling noise well below margins
    assert lo1 < x.mean() - y.mean() < hi1
    # no spread: the interval is the difference itself
    assert difference_interval(np.full(4, 0.5), np.full(3, 0.25), 1000, rng) == (0.25, 0.25)


@pytest.mark.parametrize("lo, hi, n, expected", [
    (-0.01, 0.015, 5, "equivalent"), (-0.02, 0.02, 5, "equivalent"), (0.021, 0.05, 5, "different"),
    (-0.09, -0.03, 5, "different"), (-0.01, 0.03, 5, "inconclusive"), (0.0, 0.0, 2, "inconclusive"),
])
def test_judge(lo, hi, n, expected):
    assert judge(lo, hi, 0.02, n, 10, 3)[0] == expected


def test_cli_writes_csv_and_markdown_and_refuses_an_archive_with_nothing_of_ours(reference, tmp_path, capsys):
    ours = [str(r) for r in run_dirs_under(reference) if "success" not in r.as_posix()]
    only_success = tmp_path / "authors_success"
    shutil.copytree(reference / "success", only_success / "success")
    out = tmp_path / "v"
    args = ["verdict", "--ours", *ours, "--theirs", str(reference), "--out-csv", f"{out}.csv",
            "--out-md", f"{out}.md"]
    assert reproduction.main(args) == 0
    table = pd.read_csv(f"{out}.csv")
    assert len(table) == 2 * 6 + 1 and table["verdict"].iloc[-1] == "unmatched"
    assert Path(f"{out}.md").read_text().startswith("1 of 2 configurations equivalent")
    args[args.index("--theirs") + 1] = str(only_success)
    assert reproduction.main(args) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {only_success} holds no configuration that ours has (it has "
                          "success p_rand 0.1 s_des 0.9; ours: sensitivity p_rand 0.1 s_des 0.9, "
                          "specificity p_rand 0.1 s_des 0.9)") and err.count("\n") == 0
    figure = ["figure", "--ours", *ours, "--theirs", str(reference), "--out"]
    assert reproduction.main([*figure, str(tmp_path / "f.txt")]) == 1
    assert "must end with .pdf, .png or .svg" in capsys.readouterr().err
    assert reproduction.main([*figure, str(tmp_path / "f.pdf")]) == 0
    assert (tmp_path / "f.pdf").read_bytes().startswith(b"%PDF-1.")
