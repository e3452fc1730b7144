"""The figure and table stage: figures/mnist.pdf, the two ablations and their tables, sag.pdf.

Real data: the authors' six reference runs (converted by test_aggregate's fixture) render the
main figure and the SAG illustration, whose recomputed SAG call must agree with the threshold
the run recorded. Synthetic runs check the plotted means, the tables and the refusals.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from askdagger_mnist.cli import aggregate
from askdagger_mnist.cli import plots
from askdagger_mnist.data import rundir
from askdagger_mnist.analysis.figures import main_figure, s_des_colour
from askdagger_mnist.analysis.inputs import MissingRunsError, curve_stats, load_for_figure
from askdagger_mnist.experiment.naming import run_label
from askdagger_mnist.analysis.sag_figure import recompute_call, sag_inputs
from askdagger_mnist.algorithm.sag import SagConfig, sag_details
from askdagger_mnist.settings import RunSettings
from test_aggregate import convert_reference_runs, make_synthetic_runs, synthetic_arrays, write_run

S_VALUES = [0.3, 0.9]


# --------------------------------------------------------------------------- helpers


def check_pdf(path: Path, tmp_path: Path) -> None:
    """A valid one-page PDF with TrueType (not Type 3) fonts embedded, that renders."""
    data = path.read_bytes()
    assert data.startswith(b"%PDF-") and data.rstrip().endswith(b"%%EOF")
    assert len(re.findall(rb"/Type\s*/Page\b(?!s)", data)) == 1
    assert b"/Type3" not in data and b"/Subtype /Type3" not in data
    assert b"/FontFile2" in data  # embedded TrueType (pdf.fonttype 42)
    assert not list(path.parent.glob(f".{path.name}.*"))  # no temp file left behind
    pdftoppm = shutil.which("pdftoppm")
    if pdftoppm:  # render the page back (poppler-utils)
        out = tmp_path / f"{path.stem}_render"
        subprocess.run([pdftoppm, "-png", "-r", "30", "-f", "1", "-l", "1", str(path), str(out)], check=True,
                       capture_output=True, timeout=60)
        import matplotlib.image

        img = matplotlib.image.imread(next(tmp_path.glob(f"{path.stem}_render*.png")))
        assert img.shape[0] > 100 and img.shape[1] > 100
        assert img[..., :3].std() > 0.05  # not a blank page
    pdffonts = shutil.which("pdffonts")
    if pdffonts:
        fonts = subprocess.run([pdffonts, str(path)], capture_output=True, text=True, check=True).stdout
        assert "Type 3" not in fonts and "TrueType" in fonts


def run_plots(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "askdagger_mnist.cli.plots", *map(str, args)],
                          capture_output=True, text=True, timeout=120)


def aggregated(tmp_path: Path, dirs) -> tuple[Path, Path]:
    runs_csv, curves = tmp_path / "m" / "runs.csv", tmp_path / "m" / "curves.csv.gz"
    assert aggregate.main(["--runs", *map(str, dirs), "--out-runs", str(runs_csv), "--out-curves", str(curves)]) == 0
    return runs_csv, curves


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    root = tmp_path_factory.mktemp("ref")
    dirs = convert_reference_runs(root / "runs")
    return dirs, *aggregated(root, dirs)


@pytest.fixture(scope="module")
def main_grid(tmp_path_factory):
    """3 modes x sag x 2 s_des x 4 repetitions (the figures will ask for 3)."""
    root = tmp_path_factory.mktemp("grid")
    dirs = make_synthetic_runs(root / "runs", ["sensitivity", "specificity", "success"], ["sag"], S_VALUES, 4,
                               n_steps=24, batch=64)
    return aggregated(root, dirs)


@pytest.fixture(scope="module")
def ablation_grid(tmp_path_factory):
    root = tmp_path_factory.mktemp("abl")
    dirs = []
    for seed, (variant, p_rand) in enumerate(
        [("sag", 0.1), ("no_normalization", 0.1), ("no_imputation", 0.1), ("lowrand", 0.05), ("prand0.2", 0.2)]
    ):
        dirs += make_synthetic_runs(root / "runs", ["sensitivity"], [variant], S_VALUES, 3, n_steps=20, batch=64,
                                    p_rand=p_rand, seed=seed + 10)
    return aggregated(root, dirs)


# --------------------------------------------------------------------------- main figure


@pytest.mark.needs_reference
def test_main_figure_from_reference_runs(reference, tmp_path):
    _, runs_csv, curves = reference
    out = tmp_path / "figures" / "mnist.pdf"
    assert plots.main(["main", "--runs-csv", str(runs_csv), "--curves", str(curves), "--modes", "sensitivity",
                       "specificity", "success", "--s-des", "0.9", "--reps", "2", "--out", str(out)]) == 0
    check_pdf(out, tmp_path)


def test_main_figure_plots_mean_band_and_desired_values(main_grid):
    runs_csv, curves_csv = main_grid
    modes = ["sensitivity", "specificity", "success"]
    _, curves = load_for_figure(runs_csv, curves_csv, modes, ["sag"], S_VALUES, 3, "test")
    assert sorted(set(curves.rep)) == [0, 1, 2]  # repetition 3 exists but was not asked for
    raw = pd.read_csv(curves_csv)
    raw.loc[(raw["mode"] == "sensitivity") & (raw.rep == 1) & (raw.step < 5), "sensitivity"] = np.nan
    tmp = runs_csv.parent / "curves_nan.csv.gz"
    raw.to_csv(tmp, index=False)
    _, curves = load_for_figure(runs_csv, tmp, modes, ["sag"], S_VALUES, 3, "test")
    fig = main_figure(curve_stats(curves, ["sensitivity", "specificity", "system_success", "query_rate",
                                           "novice_success"]), modes, S_VALUES, 3)
    assert "3 repetitions" in fig._suptitle.get_text()
    axes = np.array(fig.axes[:9]).reshape(3, 3)
    tracked = {"sensitivity": "sensitivity", "specificity": "specificity", "success": "system_success"}
    for col, mode in enumerate(modes):
        for s in S_VALUES:
            # Independent oracle: a (rep x step) matrix, NaN-ignoring mean, population std.
            def matrix(metric):
                sel = raw[(raw["mode"] == mode) & (raw.s_des == s) & (raw.rep < 3)]
                return sel.pivot(index="rep", columns="step", values=metric).to_numpy()

            for row, metric in enumerate([tracked[mode], "query_rate", "novice_success"]):
                ax = axes[row, col]
                solid = [ln for ln in ax.lines if ln.get_linestyle() == "-" and ln.get_color() == s_des_colour(s)]
                assert len(solid) == 1
                m = matrix(metric)
                np.testing.assert_allclose(solid[0].get_ydata(), np.nanmean(m, axis=0), rtol=1e-7)
                # The band is mean +- population std (ddof 0), NaN points ignored.
                band = [c for c in ax.collections if np.allclose(c.get_facecolor()[0][:3], s_des_colour(s)[:3])]
                verts = band[0].get_paths()[0].vertices
                upper = np.nanmean(m, axis=0) + np.nanstd(m, axis=0)
                assert np.allclose(np.max(verts[:, 1]), np.max(upper), rtol=1e-7)
            dashed = [ln for ln in axes[0, col].lines
                      if ln.get_linestyle() == "--" and ln.get_color() == s_des_colour(s)]
            assert len(dashed) == 1
            want = (np.clip(np.nanmean(matrix("novice_success"), axis=0), s, 1) if mode == "success"
                    else np.array([s, s]))
            np.testing.assert_allclose(dashed[0].get_ydata(), want, rtol=1e-7)
    import matplotlib.pyplot as plt

    plt.close(fig)


def test_missing_runs_are_refused_and_listed_exactly(main_grid, tmp_path, capsys):
    runs_csv, curves_csv = main_grid
    runs = pd.read_csv(runs_csv)
    drop = [("specificity", 0.3, 2), ("success", 0.9, 0), ("sensitivity", 0.9, 1)]
    keep = ~pd.Series(False, index=runs.index)
    for mode, s, rep in drop:
        keep &= ~((runs["mode"] == mode) & (runs.s_des == s) & (runs.rep == rep))
    runs[keep].to_csv(tmp_path / "runs.csv", index=False)
    out = tmp_path / "mnist.pdf"
    args = ["main", "--runs-csv", tmp_path / "runs.csv", "--curves", curves_csv, "--s-des", *S_VALUES,
            "--reps", "3", "--out", out]
    proc = run_plots(*args)
    assert proc.returncode == 1 and proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1
    listed = re.search(r"\(([^)]*)\)", proc.stderr).group(1).split(", ")
    assert sorted(listed) == sorted(run_label(m, "sag", s, r) for m, s, r in drop)
    assert "3 of the 18 runs" in proc.stderr
    assert not out.exists()
    with pytest.raises(MissingRunsError) as err:
        load_for_figure(tmp_path / "runs.csv", curves_csv, ["sensitivity", "specificity", "success"], ["sag"],
                        S_VALUES, 3, "x")
    assert sorted(err.value.missing) == sorted(("%s" % m, "sag", s, r) for m, s, r in drop)
    # Asking for more repetitions than were run lists the absent ones.
    assert plots.main([str(a) for a in ("main", "--runs-csv", runs_csv, "--curves", curves_csv, "--modes", "success",
                                        "--s-des", "0.3", "--reps", "5", "--out", out)]) == 1
    assert "(success/sag/s0.3/rep4)" in capsys.readouterr().err
    # runs.csv complete but curves.csv.gz lacking a run: refused too, naming the curves file.
    curves = pd.read_csv(curves_csv)
    curves[~((curves["mode"] == "success") & (curves.rep == 0) & (curves.s_des == 0.3))].to_csv(
        tmp_path / "curves.csv.gz", index=False)
    assert plots.main([str(a) for a in ("main", "--runs-csv", runs_csv, "--curves", tmp_path / "curves.csv.gz",
                                        "--s-des", *S_VALUES, "--reps", "3", "--out", out)]) == 1
    err = capsys.readouterr().err
    assert "curves.csv.gz" in err and "(success/sag/s0.3/rep0)" in err
    assert not out.exists()


def test_bad_requests_give_one_line_errors(main_grid, tmp_path, capsys):
    runs_csv, curves_csv = main_grid
    base = ["--runs-csv", runs_csv, "--curves", curves_csv]
    cases = [
        (["main", *base, "--s-des", "1.2", "--reps", "3", "--out", tmp_path / "a.pdf"], "--s-des"),
        (["main", *base, "--s-des", "0.3", "--reps", "0", "--out", tmp_path / "a.pdf"], "--reps"),
        (["main", *base, "--modes", "sensitive", "--s-des", "0.3", "--reps", "1", "--out", tmp_path / "a.pdf"],
         "sensitive"),
        (["main", *base, "--s-des", "0.3", "--reps", "1", "--out", tmp_path / "a.txt"], "a.txt"),
        (["main", "--runs-csv", tmp_path / "none.csv", "--curves", curves_csv, "--s-des", "0.3", "--reps", "1",
          "--out", tmp_path / "a.pdf"], "none.csv"),
        (["sag", "--run", tmp_path / "no_run", "--out", tmp_path / "s.pdf"], "no_run"),
    ]
    pd.read_csv(runs_csv).drop(columns="sensitivity").to_csv(tmp_path / "bad.csv", index=False)
    cases.append((["main", "--runs-csv", tmp_path / "bad.csv", "--curves", curves_csv, "--s-des", "0.3", "--reps",
                   "1", "--out", tmp_path / "a.pdf"], "sensitivity"))
    for args, needle in cases:
        assert plots.main([str(a) for a in args]) == 1, args
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1 and needle in err, (needle, err)
    proc = run_plots(*cases[0][0])  # the module entry point too
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1 and "--s-des" in proc.stderr
    assert not list(tmp_path.glob("a.*")) and not (tmp_path / "s.pdf").exists()


# --------------------------------------------------------------------------- ablations


def _expected_table(runs_csv: Path, variants, metric: str) -> pd.DataFrame:
    runs = pd.read_csv(runs_csv)
    runs = runs[(runs["mode"] == "sensitivity") & runs.variant.isin(variants) & (runs.rep < 3)]
    return runs.groupby(["variant", "s_des"])[metric].agg(["mean", lambda x: x.std(ddof=0), "count"])


def test_reg_ablation_tables_equal_groupby_and_figure_renders(ablation_grid, tmp_path):
    runs_csv, curves_csv = ablation_grid
    variants = ["sag", "no_normalization", "no_imputation"]
    fig, prefix = tmp_path / "fig" / "reg.pdf", tmp_path / "tables" / "reg_ablation"
    args = ["reg-ablation", "--runs-csv", runs_csv, "--curves", curves_csv, "--s-des", *S_VALUES, "--reps", "3",
            "--variants", *variants, "--out-figure", fig, "--out-tables", prefix]
    assert plots.main([str(a) for a in args]) == 0
    check_pdf(fig, tmp_path)
    table = pd.read_csv(f"{prefix}.csv")
    assert list(table.columns) == ["metric", "variant", "label", "p_rand", "s_des", "n_reps", "mean", "std"]
    want = _expected_table(runs_csv, variants, "sensitivity")
    assert len(table) == len(want) == 6
    md, tex = Path(f"{prefix}.md").read_text(), Path(f"{prefix}.tex").read_text()
    for row in table.itertuples():
        mean, std, count = want.loc[(row.variant, row.s_des)]
        assert row.metric == "sensitivity" and row.n_reps == count == 3
        assert row.mean == pytest.approx(mean, abs=1e-12) and row.std == pytest.approx(std, abs=1e-12)
        assert f"{mean:.3f} ± {std:.3f}" in md and f"{mean:.3f} $\\pm$ {std:.3f}" in tex
    assert "3 repetitions" in md and "\\begin{tabular}" in tex and "without normalization" in md
    # Same inputs, same bytes (no timestamps in the PDF).
    first = fig.read_bytes()
    assert plots.main([str(a) for a in args]) == 0
    assert fig.read_bytes() == first


def test_prand_ablation_labels_from_runs_csv(ablation_grid, tmp_path, capsys):
    runs_csv, curves_csv = ablation_grid
    variants = ["lowrand", "sag", "prand0.2"]  # 'lowrand' has p_rand 0.05: read, not parsed
    fig, prefix = tmp_path / "prand.pdf", tmp_path / "prand_ablation"
    args = ["prand-ablation", "--runs-csv", runs_csv, "--curves", curves_csv, "--s-des", *S_VALUES, "--reps", "3",
            "--variants", *variants, "--out-figure", fig, "--out-tables", prefix]
    assert plots.main([str(a) for a in args]) == 0
    check_pdf(fig, tmp_path)
    table = pd.read_csv(f"{prefix}.csv")
    assert sorted(set(table.metric)) == ["informedness", "sensitivity"]
    assert dict(zip(table.variant, table.label)) == {
        "lowrand": "p_rand = 0.05", "sag": "p_rand = 0.1", "prand0.2": "p_rand = 0.2"}
    for metric in ("sensitivity", "informedness"):
        want = _expected_table(runs_csv, variants, metric)
        for row in table[table.metric == metric].itertuples():
            mean, std, _ = want.loc[(row.variant, row.s_des)]
            assert row.mean == pytest.approx(mean, abs=1e-12) and row.std == pytest.approx(std, abs=1e-12)
    assert "$p_{\\mathrm{rand}} = 0.05$" in Path(f"{prefix}.tex").read_text()
    # One variant with two p_rand values cannot be labelled: refused.
    runs = pd.read_csv(runs_csv)
    runs.loc[(runs.variant == "sag") & (runs.rep == 0), "p_rand"] = 0.3
    runs.to_csv(tmp_path / "runs.csv", index=False)
    args[2] = tmp_path / "runs.csv"
    assert plots.main([str(a) for a in args]) == 1
    err = capsys.readouterr().err
    assert "variant sag" in err and "0.1, 0.3" in err


# --------------------------------------------------------------------------- sag.pdf


@pytest.mark.needs_reference
def test_sag_call_recomputation_matches_the_recorded_thresholds(reference):
    dirs = reference[0]
    run = dirs[0]  # sensitivity, rep 0
    arrays = rundir.read_arrays(run)
    u, r, k = sag_inputs(arrays, 128, 300)
    assert len(u) == 301 * 128 and not r[300 * 128:].any() and r[: 300 * 128].any()
    np.testing.assert_array_equal(r[: 300 * 128], arrays["r"][: 300 * 128])
    diffs = []
    cfg = SagConfig.from_settings(RunSettings(mode="sensitivity", s_des=0.9))
    for step in range(250, 468, 12):
        call = recompute_call(run, step)
        assert call.n_seen == (step + 1) * 128 and not call.details.fallback
        diffs.append(call.details.gamma - call.recorded_gamma)
        u, r, k = sag_inputs(arrays, 128, step)
        assert call.details.gamma == sag_details(u, r, k, cfg, np.random.default_rng(0)).gamma
    # Only the imputation draws differ from the run's own: the gammas agree closely (feeding
    # the current batch's rewards, or leaving the batch out, misses by about twice as much).
    assert np.mean(np.abs(diffs)) < 0.011 and np.max(np.abs(diffs)) < 0.03
    from askdagger_mnist.errors import UserError

    with pytest.raises(UserError, match="fell back"):
        recompute_call(run, 0)
    with pytest.raises(UserError, match="steps 0 to 467"):
        recompute_call(run, 468)


@pytest.mark.needs_reference
def test_sag_figure_renders_for_real_and_ablated_runs(reference, tmp_path):
    dirs = reference[0]
    out = tmp_path / "figures" / "sag.pdf"
    assert plots.main(["sag", "--run", str(dirs[0]), "--out", str(out)]) == 0
    check_pdf(out, tmp_path)
    assert out.stat().st_size < 2_000_000  # scatter layers are rasterised
    # Specificity at s_des 0.9 with p_rand 0.1: gamma is +inf (no active queries).
    assert plots.main(["sag", "--run", str(dirs[2]), "--out", str(tmp_path / "spec.png"), "--step", "300"]) == 0
    # Without normalization and without imputation (a synthetic run): still four panels.
    rng = np.random.default_rng(3)
    run = write_run(tmp_path / "runs", synthetic_arrays(rng, 0.8, 40, 64), "sensitivity", "plain", 0.8, 0,
                    batch_size=64, steps=40, normalization=False, imputation=False)
    call = recompute_call(run)
    assert call.details.logit_coef is None and call.details.lin_coef == (0.0, 0.0)
    assert plots.main(["sag", "--run", str(run), "--out", str(tmp_path / "plain.png")]) == 0


def test_a_sag_figure_of_a_damaged_run_stops_in_one_sentence(tmp_path):
    rng = np.random.default_rng(3)
    run = write_run(tmp_path / "runs", synthetic_arrays(rng, 0.8, 40, 64), "sensitivity", "sag", 0.8, 0,
                    batch_size=64, steps=40)
    arrays = run / "arrays.npz"
    arrays.write_bytes(arrays.read_bytes()[:1000])  # cut short
    proc = run_plots("sag", "--run", run, "--out", tmp_path / "sag.png")
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1, proc.stderr  # no traceback
    assert proc.stderr.startswith(f"error: {arrays} is damaged (BadZipFile: "), proc.stderr
    assert f"delete the run directory {run} and rerun the workflow" in proc.stderr
    assert not (tmp_path / "sag.png").exists()


@pytest.mark.parametrize("normalization", [True, False])
def test_sag_panels_b_to_d_name_the_score_alike(tmp_path, normalization):
    """Panels (b), (c) and (d) share one x axis, the score u' SAG fits and thresholds."""
    import matplotlib.pyplot as plt

    from askdagger_mnist.analysis.sag_figure import sag_figure

    rng = np.random.default_rng(3)
    run = write_run(tmp_path / "runs", synthetic_arrays(rng, 0.8, 40, 64), "sensitivity", "v", 0.8, 0,
                    batch_size=64, steps=40, normalization=normalization)
    fig = sag_figure(recompute_call(run), "t")
    try:
        b, c, d = (ax.get_xlabel() for ax in fig.axes[1:4])
    finally:
        plt.close(fig)
    assert b == c and d.startswith(b + " (queried when"), (b, c, d)
    assert ("Normalized" in b) is normalization and "u'" in b
