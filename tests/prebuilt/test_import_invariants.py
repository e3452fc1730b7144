"""Imported runs satisfy what every run of ours satisfies (data.invariants), or nothing is
imported: one sentence names the run and the invariant. Runs are made here, consistent, in the
authors' format and as a bundle, then broken one invariant at a time."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest

from askdagger_mnist.cli import fetch_results
from askdagger_mnist.data.invariants import run_problem
from askdagger_mnist.prebuilt.authors_format import convert_arrays
from askdagger_mnist.settings import PAPER_VARIANTS

RUN_DIR = "r0.1_s0.9_uTrue_iTrue_b128_e5"
B, STEPS = 128, 3


def consistent_run(seed: int = 0) -> dict:
    """An authors' results dict that keeps every invariant (3 steps of 128)."""
    rng = np.random.default_rng(seed)
    n = B * STEPS
    stream = rng.choice(60_000, n, replace=False)
    c = (rng.random(n) < 0.7).astype(float)
    q_a = (rng.random(n) < 0.3).astype(float)
    q = np.maximum(q_a, (rng.random(n) < 0.1).astype(float))
    return {"u": rng.random(n) * 0.9, "k": np.repeat(np.arange(STEPS), B).astype(float),
            "g": np.repeat([np.inf, 0.4, 0.5], B), "c": c, "q": q, "q_a": q_a,
            "r": np.where(q == 1, 2 * c - 1, 0.0), "train_subset": list(stream[q == 1])}


def breaks(name: str, raw: dict) -> dict:
    raw = {k: (v.copy() if isinstance(v, np.ndarray) else list(v)) for k, v in raw.items()}
    if name == "stream not whole steps":
        for k in ("u", "k", "g", "c", "q", "q_a", "r"):
            raw[k] = raw[k][:-5]
        raw["train_subset"] = list(np.asarray(raw["train_subset"])[: int(raw["q"].sum())])
    elif name == "more training indices than queries":
        raw["train_subset"] = raw["train_subset"] + [59_999]
    elif name == "all u NaN":
        raw["u"][:] = np.nan
    elif name == "gamma NaN":
        raw["g"][3] = np.nan
    elif name == "rewards not from q and c":
        raw["r"][np.flatnonzero(raw["q"] == 1)[0]] *= -1
    elif name == "active query not a query":
        i = np.flatnonzero(raw["q"] == 0)[0]
        raw["q_a"][i] = 1
    elif name == "index twice":
        raw["train_subset"][1] = raw["train_subset"][0]
    elif name == "index out of range":
        raw["train_subset"][0] = 60_000
    elif name == "k decreasing":
        raw["k"][-1] = 0
    return raw


BROKEN = {
    "stream not whole steps": "not a positive multiple of its batch size 128",
    "more training indices than queries": "its training set holds",
    "all u NaN": "its uncertainties u are not all finite numbers in [0, 1]",
    "gamma NaN": "its thresholds g include NaN",
    "rewards not from q and c": "its rewards r do not follow from q and c",
    "active query not a query": "active queries q_a that are not queries q",
    "index twice": "holds an MNIST index twice",
    "index out of range": "indices outside 0..59999",
    "k decreasing": "its update counts k decrease",
}


def authors_archive(folder: Path, raw: dict) -> Path:
    run = folder / "src" / "results_sensitivity" / RUN_DIR / "0"
    run.mkdir(parents=True)
    np.save(run / "results.npy", raw, allow_pickle=True)  # the authors' format (a test fixture)
    good = folder / "src" / "results_sensitivity" / RUN_DIR / "1"  # a good run beside it
    good.mkdir()
    np.save(good / "results.npy", consistent_run(1), allow_pickle=True)
    archive = folder / "a.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for p in sorted((folder / "src").rglob("*.npy")):
            zf.write(p, p.relative_to(folder / "src").as_posix())
    return archive


def test_a_consistent_run_passes_and_imports(tmp_path):
    assert run_problem(convert_arrays(consistent_run(), "x"), B) is None
    archive = authors_archive(tmp_path, consistent_run())
    runs = fetch_results.cmd_import(archive, tmp_path / "out", "authors", None,
                                    PAPER_VARIANTS, "sensitivity", None, None, False)
    assert len(runs) == 2


@pytest.mark.parametrize("name", list(BROKEN))
def test_an_authors_run_that_breaks_an_invariant_imports_nothing(tmp_path, name, capsys):
    archive = authors_archive(tmp_path, breaks(name, consistent_run()))
    out = tmp_path / "imported" / "a"
    out.parent.mkdir()
    assert fetch_results.main(["import", "--archive", str(archive), "--format", "authors",
                               "--out", str(out)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: results_sensitivity/{RUN_DIR}/0/results.npy in a.zip: the run "
                          "breaks an invariant every run satisfies: ") and err.count("\n") == 0, err
    assert BROKEN[name] in err and "nothing was imported" in err
    assert list(out.parent.iterdir()) == []  # not even the good run beside it


@pytest.mark.parametrize("name", ["rewards not from q and c", "index twice", "k decreasing"])
def test_a_bundled_run_that_breaks_an_invariant_imports_nothing(tmp_path, name, capsys):
    from askdagger_mnist.prebuilt import bundle

    good = fetch_results.cmd_import(authors_archive(tmp_path / "a", consistent_run()), tmp_path / "runs",
                                    "authors", None, PAPER_VARIANTS, "sensitivity",
                                    None, None, False)
    from askdagger_mnist.data import rundir
    arrays = dict(rundir.read_arrays(good[0]))
    raw = breaks(name, {**{k: arrays[k].astype(float) for k in ("u", "k", "g", "c", "q", "q_a", "r")},
                        "train_subset": list(arrays["train_idx"])})
    info = rundir.read_info(good[0])
    for f in good[0].iterdir():
        f.unlink()
    rundir.write_run_files(good[0], {**{k: np.asarray(raw[k]) for k in ("u", "k", "g")},
                                     **{k: np.asarray(raw[k]).astype(np.int8) for k in ("c", "q", "q_a", "r")},
                                     "train_idx": np.asarray(raw["train_subset"], dtype=np.int64)}, info)
    packed = tmp_path / "bundle.zip"
    bundle.pack(tmp_path / "runs", packed)
    out = tmp_path / "unpacked"
    assert fetch_results.main(["import", "--archive", str(packed), "--format", "bundle",
                               "--out", str(out)]) == 1
    err = capsys.readouterr().err.strip()
    assert "the run breaks an invariant every run satisfies" in err and BROKEN[name] in err, err
    assert not out.exists()
