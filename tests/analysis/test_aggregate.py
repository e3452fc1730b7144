"""The aggregate stage: run directories -> runs.csv and curves.csv.gz.

Real data: the six runs of the authors' code (pickled; converted once here, as a trusted local
fixture, into our run-directory format) must reproduce the table of the reference README.
Synthetic runs check the curves against a plain-loop reimplementation of spec section 5.
"""

from __future__ import annotations

import gzip
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from askdagger_mnist.analysis.aggregate import CURVES_COLUMNS, RUNS_COLUMNS
from askdagger_mnist.cli import aggregate
from askdagger_mnist.data import rundir
from askdagger_mnist.data.atomic import atomic_dir
from askdagger_mnist.experiment.naming import run_subdir
from askdagger_mnist.settings import MODES, RunSettings
from conftest import REFERENCE_RESULTS

REFERENCE_README = REFERENCE_RESULTS.parent / "README.md"


# --------------------------------------------------------------------------- run builders
# (also used by test_plots.py)


def write_run(root: Path, arrays: dict, mode: str, variant: str, s_des: float, rep: int, source="train", **settings):
    """Write one run directory under ``root`` with runio, as the train stage does."""
    st = RunSettings(mode=mode, s_des=s_des, rep=rep, **settings).to_dict()
    st["variant"] = variant
    info = {"settings": st, "source": source, "metrics": {}}
    run_dir = root / run_subdir(mode, variant, s_des, rep)
    atomic_dir(run_dir, lambda tmp: rundir.write_run_files(tmp, arrays, info))
    return run_dir


def synthetic_arrays(rng: np.random.Generator, s_des: float, n_steps: int, batch: int, p_rand: float = 0.1):
    """A structured stream: the novice improves over time, failures are queried with
    probability about s_des, successes less and less often."""
    n = n_steps * batch
    t = np.repeat(np.arange(n_steps), batch) / n_steps
    p_correct = 0.15 + 0.8 * (1 - np.exp(-4 * t))
    c = rng.random(n) < p_correct
    u = np.clip(1 - p_correct + rng.normal(0, 0.1, n) + 0.2 * ~c, 0, 1)
    q_a = np.where(c, rng.random(n) < 0.6 * (1 - t), rng.random(n) < s_des)
    q = q_a | (rng.random(n) < p_rand)
    r = np.where(q, np.where(c, 1, -1), 0)
    k = np.repeat(np.arange(n_steps) // 5, batch)
    return {
        "u": u, "k": k, "g": np.full(n, 0.5), "c": c, "r": r, "q": q, "q_a": q_a,
        "stream_idx": (stream := rng.permutation(n)), "train_idx": stream[q],
    }


def make_synthetic_runs(root: Path, modes, variants, s_values, reps, n_steps=30, batch=64, p_rand=None, seed=0):
    """One run dir per combination; variant 'prandX' gets p_rand X unless p_rand is given."""
    dirs = []
    for mode in modes:
        for vi, variant in enumerate(variants):
            pr = p_rand if p_rand is not None else (float(variant[5:]) if variant.startswith("prand") else 0.1)
            for si, s in enumerate(s_values):
                for rep in range(reps):
                    rng = np.random.default_rng([seed, MODES.index(mode), vi, si, rep])
                    arrays = synthetic_arrays(rng, s, n_steps, batch, pr)
                    dirs.append(
                        write_run(root, arrays, mode, variant, s, rep, p_rand=pr, batch_size=batch, steps=n_steps,
                                  normalization=variant != "no_normalization", imputation=variant != "no_imputation")
                    )
    return dirs


def convert_reference_runs(root: Path) -> list[Path]:
    """The six pickled reference runs -> run directories (variant sag, s_des 0.9, reps 0/1).

    Loading with allow_pickle is acceptable only here: a trusted fixture of this project."""
    dirs = []
    for mode in MODES:
        for rep in (0, 1):
            path = REFERENCE_RESULTS / f"results_{mode}" / "r0.1_s0.9_uTrue_iTrue_b128_e5" / str(rep) / "results.npy"
            data = np.load(path, allow_pickle=True).item()
            arrays = {name: np.asarray(data[name]) for name in rundir.STREAM_ARRAYS}
            arrays["train_idx"] = np.asarray(data["train_subset"])
            dirs.append(write_run(root, arrays, mode, "sag", 0.9, rep, source="authors"))
    return dirs


@pytest.fixture(scope="module")
def reference_runs(tmp_path_factory):
    return convert_reference_runs(tmp_path_factory.mktemp("reference_runs"))


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "askdagger_mnist.cli.aggregate", *map(str, args)],
        capture_output=True, text=True, timeout=120,
    )


# --------------------------------------------------------------------------- plain-loop oracle


def plain_curves(c, q, batch):
    """Spec section 5, written as literally as possible."""
    c = [bool(x) for x in c]
    q = [bool(x) for x in q]
    out = {k: [] for k in ("sensitivity", "specificity", "query_rate", "novice_success", "system_success")}
    failures, successes, samples = [], [], []
    for j in range(-(-len(c) // batch)):
        for i in range(j * batch, min((j + 1) * batch, len(c))):
            samples.append(i)
            (successes if c[i] else failures).append(i)
        last_f, last_s, last = failures[-1000:], successes[-1000:], samples[-1000:]
        mean = lambda xs: sum(xs) / len(xs) if xs else float("nan")  # noqa: E731
        out["sensitivity"].append(mean([q[i] for i in last_f]))
        out["specificity"].append(mean([not q[i] for i in last_s]))
        out["query_rate"].append(mean([q[i] for i in last]))
        out["novice_success"].append(mean([c[i] for i in last]))
        out["system_success"].append(mean([c[i] or q[i] for i in last]))
    return out


def parse_reference_table():
    rows = {}
    for line in REFERENCE_README.read_text().splitlines():
        m = re.match(r"\|\s*(sensitivity|specificity|success)\s*\|\s*(\d)\s*\|(.*)\|\s*$", line)
        if m:
            rows[(m.group(1), int(m.group(2)))] = [float(x) for x in m.group(3).split("|")]
    return rows


# --------------------------------------------------------------------------- tests


@pytest.mark.needs_reference
def test_reference_runs_reproduce_readme_table(reference_runs, tmp_path):
    out_runs, out_curves = tmp_path / "m" / "runs.csv", tmp_path / "m" / "curves.csv.gz"
    assert aggregate.main(["--runs", *map(str, reference_runs), "--out-runs", str(out_runs),
                           "--out-curves", str(out_curves)]) == 0
    runs = pd.read_csv(out_runs)
    expected = parse_reference_table()
    assert len(expected) == 6 and len(runs) == 6
    cols = ["sensitivity", "specificity", "query_rate", "novice_success", "system_success"]
    for row in runs.itertuples():
        want = expected[(row.mode, row.rep)]
        got = [getattr(row, col) for col in cols]
        assert np.allclose(np.round(got, 3), want, atol=1e-9), (row.mode, row.rep, got, want)
        assert row.tp + row.fp + row.tn + row.fn == row.n_samples == 59904
        assert row.n_steps == 468 and row.source == "authors" and row.variant == "sag"
        assert row.informedness == pytest.approx(row.sensitivity + row.specificity - 1)
        # The authors' train_subset holds exactly the queried samples.
        assert row.train_set_size == row.tp + row.fp
    curves = pd.read_csv(out_curves)
    assert len(curves) == 6 * 468
    assert list(curves.columns) == list(CURVES_COLUMNS)
    # Late in the run the tracked metric sits near s_des = 0.9 (the paper's claim).
    last = curves[curves.step >= 368].groupby("mode")[["sensitivity", "specificity"]].mean()
    assert abs(last.loc["sensitivity", "sensitivity"] - 0.9) < 0.03
    assert abs(last.loc["specificity", "specificity"] - 0.9) < 0.03
    # A reference run's curves equal the plain loop too (real data, window really full).
    one = curves[(curves["mode"] == "success") & (curves.rep == 1)]
    arrays = rundir.read_arrays(reference_runs[-1])
    oracle = plain_curves(arrays["c"], arrays["q"], 128)
    for col in cols:
        np.testing.assert_allclose(one[col].to_numpy(), oracle[col], rtol=1e-8, equal_nan=True)


def test_synthetic_runs_settings_metrics_and_curves(tmp_path):
    dirs = make_synthetic_runs(tmp_path / "runs", ["specificity", "sensitivity"], ["sag", "prand0.2"], [0.3, 0.8],
                               2, n_steps=25, batch=48)
    dirs += [write_run(tmp_path / "runs", synthetic_arrays(np.random.default_rng(9), 0.5, 7, 50), "success",
                       "no_imputation", 0.5, 4, batch_size=50, steps=7, imputation=False, update_every=3)]
    out_runs, out_curves = tmp_path / "runs.csv", tmp_path / "curves.csv.gz"
    # A shuffled argument order gives the same (sorted) tables.
    order = np.random.default_rng(1).permutation(len(dirs))
    assert aggregate.main(["--runs", *[str(dirs[i]) for i in order], "--out-runs", str(out_runs),
                           "--out-curves", str(out_curves)]) == 0
    runs = pd.read_csv(out_runs)
    curves = pd.read_csv(out_curves)
    assert list(runs.columns) == list(RUNS_COLUMNS)
    assert list(runs["mode"]) == ["sensitivity"] * 8 + ["specificity"] * 8 + ["success"]
    assert len(runs) == 17 and len(curves) == 16 * 25 + 7
    for run_dir in dirs:
        info = rundir.read_info(run_dir)
        arrays = rundir.read_arrays(run_dir)
        st = info["settings"]
        row = runs[(runs["mode"] == st["mode"]) & (runs.variant == st["variant"]) & (runs.s_des == st["s_des"])
                   & (runs.rep == st["rep"])]
        assert len(row) == 1
        row = row.iloc[0]
        for key in ("p_rand", "normalization", "imputation", "batch_size", "update_every", "steps"):
            assert row[key] == st[key], key
        c, q = arrays["c"].astype(bool), arrays["q"].astype(bool)
        assert (row.tp, row.fp, row.tn, row.fn) == ((q & ~c).sum(), (q & c).sum(), (~q & c).sum(), (~q & ~c).sum())
        assert row.sensitivity == pytest.approx((q & ~c).sum() / (~c).sum())
        assert row.specificity == pytest.approx((~q & c).sum() / c.sum())
        assert row.query_rate == pytest.approx(q.mean())
        assert row.novice_success == pytest.approx(c.mean())
        assert row.system_success == pytest.approx((c | q).mean())
        assert row.train_set_size == len(arrays["train_idx"])
        assert Path(row.run_dir) == run_dir
        cur = curves[(curves["mode"] == st["mode"]) & (curves.variant == st["variant"])
                     & (curves.s_des == st["s_des"]) & (curves.rep == st["rep"])]
        assert list(cur.step) == list(range(len(c) // st["batch_size"]))
        oracle = plain_curves(c, q, st["batch_size"])
        for col, values in oracle.items():
            np.testing.assert_allclose(cur[col].to_numpy(), values, rtol=1e-8, equal_nan=True)
    assert runs.loc[runs.variant == "prand0.2", "p_rand"].eq(0.2).all()
    assert not runs.loc[runs.variant == "no_imputation", "imputation"].any()


def test_outputs_are_reproducible_and_atomic(tmp_path):
    dirs = make_synthetic_runs(tmp_path / "runs", ["sensitivity"], ["sag"], [0.5], 2, n_steps=10, batch=32)
    out = tmp_path / "out"
    args = ["--runs", *map(str, dirs), "--out-runs", str(out / "runs.csv"), "--out-curves", str(out / "curves.csv.gz")]
    assert aggregate.main(args) == 0
    first = {p.name: p.read_bytes() for p in out.iterdir()}
    assert sorted(first) == ["curves.csv.gz", "runs.csv"]  # no temp files left behind
    with gzip.open(out / "curves.csv.gz", "rt") as fh:
        assert fh.readline().startswith("mode,variant,s_des,rep,step,")
    assert aggregate.main(args) == 0
    assert {p.name: p.read_bytes() for p in out.iterdir()} == first  # byte-identical rerun
    # A failing aggregation leaves the finished outputs untouched and writes nothing else.
    assert aggregate.main(args[:-4] + [str(tmp_path / "nope"), *args[-4:]]) == 1
    assert {p.name: p.read_bytes() for p in out.iterdir()} == first


def test_missing_incomplete_and_duplicate_runs_are_named(tmp_path):
    good = make_synthetic_runs(tmp_path / "runs", ["sensitivity"], ["sag"], [0.5], 1, n_steps=4, batch=16)[0]
    out = ["--out-runs", str(tmp_path / "o" / "runs.csv"), "--out-curves", str(tmp_path / "o" / "curves.csv.gz")]

    missing = tmp_path / "runs" / "sensitivity" / "sag" / "s0.7" / "rep0"
    proc = run_cli("--runs", good, missing, *out)
    assert proc.returncode == 1
    assert proc.stderr.startswith("error: ") and str(missing) in proc.stderr
    assert proc.stderr.count("\n") == 1  # one line, no traceback

    incomplete = tmp_path / "incomplete"
    incomplete.mkdir()
    (incomplete / "run.json").write_text((good / "run.json").read_text())
    proc = run_cli("--runs", good, incomplete, *out)
    assert proc.returncode == 1 and str(incomplete / "arrays.npz") in proc.stderr

    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "run.json").write_text((good / "run.json").read_text())
    (corrupt / "arrays.npz").write_bytes((good / "arrays.npz").read_bytes()[:100])
    proc = run_cli("--runs", corrupt, *out)
    assert proc.returncode == 1 and str(corrupt) in proc.stderr and "Traceback" not in proc.stderr

    copy = tmp_path / "copy"
    copy.mkdir()
    for name in ("run.json", "arrays.npz"):
        (copy / name).write_bytes((good / name).read_bytes())
    proc = run_cli("--runs", good, copy, *out)
    assert proc.returncode == 1 and str(good) in proc.stderr and str(copy) in proc.stderr
    assert not (tmp_path / "o").exists()


def break_the_first_deflate_block(path: Path) -> None:
    """A flipped bit in arrays.npz's compressed data (zlib: "invalid block type")."""
    import zipfile

    with zipfile.ZipFile(path) as zf:
        at = zf.infolist()[0].header_offset
    data = bytearray(path.read_bytes())
    at += 30 + int.from_bytes(data[at + 26:at + 28], "little") + int.from_bytes(data[at + 28:at + 30], "little")
    data[at] |= 0b110
    path.write_bytes(bytes(data))


def negate_the_rewards(run: Path) -> None:
    """Arrays that load but are not a run's: rewards that contradict the queries (§3.4)."""
    arrays, info = dict(rundir.read_arrays(run)), rundir.read_info(run)
    arrays["r"] = -arrays["r"]
    atomic_dir(run, lambda tmp: rundir.write_run_files(tmp, arrays, info))


@pytest.mark.parametrize("damage, says", [
    (lambda run: break_the_first_deflate_block(run / "arrays.npz"), "is damaged (error: Error -3 "
     "while decompressing data: invalid block type)"),
    (negate_the_rewards, "does not hold a consistent run: its rewards r do not follow from q and c"),
])  # fmt: skip
def test_a_damaged_or_inconsistent_run_stops_the_aggregation_in_one_sentence(tmp_path, damage, says):
    good, run = make_synthetic_runs(tmp_path / "runs", ["sensitivity"], ["sag"], [0.5], 2, n_steps=4, batch=16)
    damage(run)
    out = ["--out-runs", str(tmp_path / "o" / "runs.csv"), "--out-curves", str(tmp_path / "o" / "curves.csv.gz")]
    proc = run_cli("--runs", good, run, *out)
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1, proc.stderr  # no traceback
    assert proc.stderr.startswith(f"error: {run / 'arrays.npz'} {says}"), proc.stderr
    assert proc.stderr.rstrip().endswith(f"delete the run directory {run} and rerun the workflow (or the "
                                         "command that made the run), which makes it again.")
    assert not (tmp_path / "o").exists()


def test_provenance_travels_with_each_run_and_a_mix_is_said_in_one_line(tmp_path, capsys):
    dirs = make_synthetic_runs(tmp_path / "runs", ["sensitivity"], ["sag"], [0.5], 3, n_steps=4, batch=16)
    made = [("fast", "cpu (x86_64)", "0.2.0"), ("plain", "cuda:0 (NVIDIA H200)", "0.2.0"),
            ("fast", "cpu (x86_64)", "0.3.0")]
    for run_dir, (engine, device, version) in zip(dirs, made):
        info = rundir.read_info(run_dir)
        info.update(engine=engine, device=device, versions={"askdagger_mnist": version})
        rundir.write_json_atomic(run_dir / "run.json", info)
    out = ["--out-runs", str(tmp_path / "runs.csv"), "--out-curves", str(tmp_path / "curves.csv.gz")]
    assert aggregate.main(["--runs", *map(str, dirs), *out]) == 0
    table = pd.read_csv(tmp_path / "runs.csv")
    assert table[["engine", "device", "version"]].values.tolist() == [
        ["fast", "cpu", "0.2.0"], ["plain", "cuda", "0.2.0"], ["fast", "cpu", "0.3.0"]]
    err = capsys.readouterr().err.strip()
    assert err == ("warning: these 3 runs mix engines (fast: 2, plain: 1) and devices (cpu: 2, "
                   "cuda: 1) and versions (0.2.0: 2, 0.3.0: 1); engines and devices agree step for "
                   "step only for a few dozen steps, so compare such tables as samples (runs.csv "
                   "says which made each run).")
    assert aggregate.main(["--runs", *map(str, dirs[:1]), *out]) == 0
    assert capsys.readouterr().err == ""  # one engine, device and version: nothing to say


def test_a_figure_of_mixed_runs_says_so_in_a_footnote():
    import matplotlib.pyplot as plt

    from askdagger_mnist.analysis.figures import note_provenance

    runs = pd.DataFrame({"engine": ["fast", "plain"], "device": ["cpu", "cpu"],
                         "version": ["0.2.0", "0.2.0"]})
    fig = plt.figure()
    note_provenance(fig, runs)
    assert [t.get_text() for t in fig.texts] == ["These runs mix engines (fast: 1, plain: 1)."]
    plain = plt.figure()
    note_provenance(plain, runs.assign(engine="fast"))
    note_provenance(plain, runs.drop(columns=["engine", "device", "version"]))  # an older runs.csv
    assert plain.texts == []
    plt.close("all")
