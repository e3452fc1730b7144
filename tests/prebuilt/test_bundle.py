"""Result bundles: pack finished runs, serve, download into a fresh folder, unpack, compare."""

from __future__ import annotations

import filecmp
import hashlib
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from askdagger_mnist.cli import fetch_results
from askdagger_mnist.data import rundir
from askdagger_mnist.data.atomic import atomic_dir
from askdagger_mnist.prebuilt import bundle
from askdagger_mnist.errors import UserError
from askdagger_mnist.algorithm.metrics import whole_run_metrics
from askdagger_mnist.experiment.naming import run_subdir
from askdagger_mnist.settings import RESULTS_VERSION, RunSettings


def _write_run(runs: Path, mode: str, variant: str, s_des: float, rep: int, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    n = 128 * 6
    c = (rng.random(n) < 0.7).astype(np.int8)
    q = (rng.random(n) < 0.3).astype(np.int8)
    stream = rng.permutation(60000)[:n]
    arrays = {  # a consistent run (data.invariants): the training set is the queried stream
        "u": rng.random(n), "k": np.repeat(np.arange(6), 128), "g": rng.random(n),
        "c": c, "q": q, "q_a": q, "r": np.where(q == 1, 2 * c - 1, 0),
        "stream_idx": stream, "train_idx": stream[q == 1],
    }
    settings = RunSettings(mode=mode, s_des=s_des, rep=rep, steps=6)
    info = {"settings": {**settings.to_dict(), "variant": variant}, "source": "train",
            "results_version": RESULTS_VERSION,  # as every run of ours records it
            "metrics": {**whole_run_metrics(c, q), "train_set_size": int(q.sum())}}

    def fill(tmp: Path) -> None:
        rundir.write_run_files(tmp, arrays, info)
        torch.save({"fc3.bias": torch.arange(10.0) * seed}, tmp / rundir.MODEL_FILE)

    return atomic_dir(runs / run_subdir(mode, variant, s_des, rep), fill)


@pytest.fixture
def results(tmp_path) -> Path:
    res = tmp_path / "results"
    for i, (mode, variant, s_des, rep) in enumerate([
        ("sensitivity", "sag", 0.9, 0), ("sensitivity", "sag", 0.9, 1),
        ("specificity", "sag", 0.5, 0), ("sensitivity", "no_imputation", 0.1, 0),
    ]):
        _write_run(res / "runs", mode, variant, s_des, rep, seed=i + 1)
    # an unfinished run (temp dir of atomic_dir) must not be packed
    (res / "runs" / "success" / "sag" / "s0.9" / ".rep0.abc.tmp").mkdir(parents=True)
    (res / "metrics").mkdir()
    (res / "metrics" / "runs.csv").write_text("mode,variant\nsensitivity,sag\n")
    return res


def _files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def test_pack_serve_download_unpack_identical(results, tmp_path, serve_dir):
    out = results / "bundle.zip"
    assert fetch_results.main(["pack", "--runs", str(results / "runs"), "--metrics",
                               str(results / "metrics"), "--out", str(out)]) == 0
    manifest = json.loads(zipfile.ZipFile(out).read("manifest.json"))
    assert [r["path"] for r in manifest["runs"]] == [
        "runs/sensitivity/no_imputation/s0.1/rep0", "runs/sensitivity/sag/s0.9/rep0",
        "runs/sensitivity/sag/s0.9/rep1", "runs/specificity/sag/s0.5/rep0"]
    assert manifest["runs"][3]["settings"]["s_des"] == 0.5
    assert {"numpy", "torch", "askdagger-mnist"} <= set(manifest["package_versions"])
    entry = next(f for f in manifest["files"] if f["path"] == "runs/sensitivity/sag/s0.9/rep1/arrays.npz")
    src = results / "runs/sensitivity/sag/s0.9/rep1/arrays.npz"
    assert entry["size"] == src.stat().st_size
    assert entry["sha256"] == hashlib.sha256(src.read_bytes()).hexdigest()
    # packing is deterministic
    bundle.pack(results / "runs", tmp_path / "again.zip", results / "metrics")
    assert (tmp_path / "again.zip").read_bytes() == out.read_bytes()

    digest = hashlib.sha256(out.read_bytes()).hexdigest()
    fresh = tmp_path / "fresh"
    url = serve_dir(results) + "bundle.zip"
    assert fetch_results.main(["fetch", "--url", url, "--sha256", digest, "--format", "bundle",
                               "--archive", str(fresh / "resources/archives/mine.zip"),
                               "--out", str(fresh / "results/imported/mine")]) == 0
    staging = fresh / "results/imported/mine"
    for run in manifest["runs"]:
        rel = run["path"].removeprefix("runs/")
        a, b = results / "runs" / rel, staging / rel
        assert _files(a) == _files(b) == ["arrays.npz", "model.pt", "run.json"]
        assert filecmp.cmpfiles(a, b, _files(a), shallow=False)[0] == _files(a)
    assert (staging / "_metrics/runs.csv").read_text() == (results / "metrics/runs.csv").read_text()
    record = json.loads((staging / "bundle.json").read_text())
    assert record["provenance"]["url"] == url and record["provenance"]["archive_sha256"] == digest
    # and the pick step puts a run where the workflow expects it, unchanged
    dest = fresh / "results/runs/specificity/sag/s0.5/rep0"
    fetch_results.cmd_pick([staging], "specificity", "sag", 0.5, 0, dest, '{"max_steps": 6}')
    assert filecmp.cmpfiles(results / "runs/specificity/sag/s0.5/rep0", dest, _files(dest), shallow=False)[0] == [
        "arrays.npz", "model.pt", "run.json"]


def _rewrite(src: Path, dst: Path, change) -> Path:
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            data = change(info.filename, zin.read(info))
            if data is not None:
                zout.writestr(info, data)
        extra = change("<extra>", b"")
        if extra is not None:
            zout.writestr(*extra)
    return dst


def test_altered_bundles_are_refused(results, tmp_path):
    good = bundle.pack(results / "runs", tmp_path / "b.zip") and tmp_path / "b.zip"
    target = "runs/sensitivity/sag/s0.9/rep0/run.json"

    def tamper(name, data):
        return data.replace(b'"train"', b'"trian"') if name == target else (None if name == "<extra>" else data)

    cases = {
        "tampered": (_rewrite(good, tmp_path / "t.zip", tamper), "does not match the sha256"),
        "unlisted": (_rewrite(good, tmp_path / "u.zip", lambda n, d: ("runs/evil.sh", b"rm -rf /") if n == "<extra>" else d),
                     "does not match its manifest"),
        "missing": (_rewrite(good, tmp_path / "m.zip", lambda n, d: None if n in (target, "<extra>") else d),
                    "does not match its manifest"),
        "traversal": (_rewrite(good, tmp_path / "e.zip", lambda n, d: ("../../escape", b"x") if n == "<extra>" else d),
                      r"'\.\.' component"),
        "no manifest": (_rewrite(good, tmp_path / "n.zip", lambda n, d: None if n in ("manifest.json", "<extra>") else d),
                        "no manifest.json"),
    }
    for name, (archive, message) in cases.items():
        staging = tmp_path / "staging" / name
        with pytest.raises(UserError, match=message):
            bundle.unpack(archive, staging)
        assert not staging.exists(), name
    root = tmp_path / "staging"
    assert not root.exists() or list(root.iterdir()) == []  # no temporary folders left behind
    assert not (tmp_path.parent / "escape").exists()


def test_pack_without_runs_says_so(tmp_path, capsys):
    (tmp_path / "runs").mkdir()
    assert fetch_results.main(["pack", "--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "b.zip")]) == 1
    assert "holds no complete runs" in capsys.readouterr().err
    assert not (tmp_path / "b.zip").exists()


def test_pack_only_selected_runs(results, tmp_path):
    runs = results / "runs"
    pick = [runs / "sensitivity/sag/s0.9/rep1", runs / "specificity/sag/s0.5/rep0"]
    manifest = bundle.pack(runs, tmp_path / "b.zip", select=pick)
    assert [r["path"] for r in manifest["runs"]] == ["runs/sensitivity/sag/s0.9/rep1", "runs/specificity/sag/s0.5/rep0"]
    assert sorted(zipfile.ZipFile(tmp_path / "b.zip").namelist())[0] == "manifest.json"
    with pytest.raises(UserError, match="rep7 is not a complete run"):
        bundle.pack(runs, tmp_path / "c.zip", select=[*pick, runs / "success/sag/s0.9/rep7"])
    assert not (tmp_path / "c.zip").exists()


def test_manifest_bombs_are_refused_with_a_sentence(results, tmp_path):
    """manifest.json is downloaded data too: bounded in size and depth, each file listed once."""
    good = bundle.pack(results / "runs", tmp_path / "b.zip") and tmp_path / "b.zip"
    manifest = json.loads(zipfile.ZipFile(good).read("manifest.json"))

    def with_manifest(name: str, data: bytes) -> Path:
        return _rewrite(good, tmp_path / f"{name}.zip",
                        lambda n, d: None if n == "<extra>" else (data if n == "manifest.json" else d))

    repeated = {**manifest, "files": manifest["files"] + [manifest["files"][0]] * 1000}
    cases = {
        "deeply nested": (b"[" * 100_000, "unreadable manifest.json"),
        "huge": (json.dumps(manifest).encode() + b" " * (17 << 20), "more than"),
        "repeated": (json.dumps(repeated).encode(), "more than once"),
        "runs not a list": (json.dumps({**manifest, "runs": 5}).encode(), "no valid run list"),
    }
    for name, (data, message) in cases.items():
        archive = with_manifest(name, data)
        staging = tmp_path / "staging" / name
        with pytest.raises(UserError, match=message):
            bundle.unpack(archive, staging)
        with pytest.raises(UserError, match=message):
            fetch_results.verify_archive(archive, "bundle", str(archive))
        assert not staging.exists(), name
    root = tmp_path / "staging"
    assert not root.exists() or list(root.iterdir()) == []  # no scratch folders left behind


def test_unpack_replaces_a_file_at_its_staging_folder(results, tmp_path):
    out = tmp_path / "b.zip"
    bundle.pack(results / "runs", out)
    staging = tmp_path / "imported" / "mine"
    staging.parent.mkdir()
    staging.write_text("left here by hand")
    runs = bundle.unpack(out, staging)
    assert len(runs) == 4 and staging.is_dir()
    assert [p.name for p in staging.parent.iterdir()] == ["mine"]


def test_unpack_flushes_the_files_it_publishes_to_the_disk(results, tmp_path, monkeypatch):
    """A bundle's files are moved into the staging folder as they were extracted: unflushed,
    a machine dying soon after could leave empty or torn files under their final names."""
    from askdagger_mnist.data import atomic

    out = tmp_path / "b.zip"
    bundle.pack(results / "runs", out)
    flushed = []
    real_fsync = atomic.fsync_path

    def spy(path, **kwargs):
        flushed.append(Path(path).name)
        return real_fsync(path, **kwargs)

    monkeypatch.setattr(atomic, "fsync_path", spy)
    runs = bundle.unpack(out, tmp_path / "staging")
    for name in ("arrays.npz", "model.pt", "run.json"):
        assert flushed.count(name) == len(runs) == 4, name
