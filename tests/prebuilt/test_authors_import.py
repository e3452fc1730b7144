"""The authors' published results: round trip with the six real reference runs, and hostile input."""

from __future__ import annotations

import json
import os
import re
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from askdagger_mnist.cli import fetch_results
from askdagger_mnist.data import rundir
from askdagger_mnist.prebuilt.authors_format import (
    find_runs,
    load_results_npy,
    match_variant,
    parse_run_dirname,
)
from askdagger_mnist.errors import UserError
from askdagger_mnist.algorithm.metrics import whole_run_metrics
from askdagger_mnist.experiment.naming import run_subdir
from askdagger_mnist.settings import PAPER_VARIANTS

from conftest import REFERENCE_RESULTS

pytestmark = pytest.mark.needs_reference

RUN_DIR = "r0.1_s0.9_uTrue_iTrue_b128_e5"
MODES = ("sensitivity", "specificity", "success")
VARIANTS = json.dumps(PAPER_VARIANTS)


def _zip_dir(src_root: Path, top: str, archive: Path, rename: dict[str, str] | None = None) -> Path:
    """Zip ``src_root/top`` the way ``zip -r archive top`` would, optionally renaming parts."""
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        for path in sorted((src_root / top).rglob("*")):
            name = path.relative_to(src_root).as_posix()
            for old, new in (rename or {}).items():
                name = name.replace(old, new)
            if path.is_dir():
                zf.writestr(name + "/", b"")
            else:
                zf.write(path, name)
    return archive


def _reference_table() -> dict[tuple[str, int], dict[str, float]]:
    """The whole-run table of ../shared/reference/README.md."""
    text = (REFERENCE_RESULTS.parent / "README.md").read_text()
    rows = {}
    for m in re.finditer(r"^\| (\w+) \| (\d) \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \|$", text, re.M):
        rows[(m[1], int(m[2]))] = dict(zip(
            ("sensitivity", "specificity", "query_rate", "novice_success", "system_success"),
            map(float, m.groups()[2:]),
        ))
    assert len(rows) == 6
    return rows


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    """The six reference runs zipped per mode as the authors published them, served over HTTP,
    downloaded (no sha256: structure check and logged hash) and imported."""
    from conftest import FileServer

    work = tmp_path_factory.mktemp("authors")
    srv = work / "srv"
    srv.mkdir()
    for mode in MODES:
        _zip_dir(REFERENCE_RESULTS, f"results_{mode}", srv / f"results_{mode}.zip")
    server = FileServer(srv)
    try:
        stagings = {}
        for mode in MODES:
            staging = work / "imported" / f"authors_{mode}"
            rc = fetch_results.main([
                "fetch", "--url", f"{server.url}results_{mode}.zip", "--format", "authors",
                "--archive", str(work / "archives" / f"authors_{mode}.zip"), "--out", str(staging),
                "--variants", VARIANTS, "--batch-size", "128", "--update-every", "5",
            ])
            assert rc == 0
            stagings[mode] = staging
    finally:
        server.close()
    return work, server.url, stagings


def test_round_trip_metrics_match_reference(imported):
    work, url, stagings = imported
    table = _reference_table()
    for mode in MODES:
        staging = stagings[mode]
        assert sorted(p.relative_to(staging).as_posix() for p in staging.glob("*/*/*/*")) == [
            f"{mode}/sag/s0.9/rep0", f"{mode}/sag/s0.9/rep1"]
        for rep in (0, 1):
            run = staging / run_subdir(mode, "sag", 0.9, rep)
            original = REFERENCE_RESULTS / f"results_{mode}" / RUN_DIR / str(rep)
            raw = load_results_npy(original / "results.npy")
            info = rundir.read_info(run)
            arrays = rundir.read_arrays(run)
            # whole-run metrics: exactly those of the raw arrays, and the README table to 3 decimals
            direct = whole_run_metrics(raw["c"], raw["q"])
            assert {k: info["metrics"][k] for k in direct} == direct
            assert info["metrics"]["train_set_size"] == len(raw["train_subset"])
            recomputed = whole_run_metrics(arrays["c"], arrays["q"])
            for key, value in table[(mode, rep)].items():
                assert round(recomputed[key], 3) == value, (mode, rep, key)
            # the arrays themselves, converted without loss
            for key in ("u", "k", "g", "c", "r", "q", "q_a"):
                np.testing.assert_array_equal(arrays[key], raw[key])
            np.testing.assert_array_equal(arrays["train_idx"], np.asarray(raw["train_subset"]))
            assert "stream_idx" not in arrays
            assert arrays["c"].dtype == np.int8 and arrays["train_idx"].dtype == np.int64
            s = info["settings"]
            assert (s["mode"], s["variant"], s["s_des"], s["rep"], s["p_rand"]) == (mode, "sag", 0.9, rep, 0.1)
            assert (s["normalization"], s["imputation"], s["batch_size"], s["update_every"], s["steps"]) == (
                True, True, 128, 5, 468)
            assert info["source"] == "authors"
            prov = info["provenance"]
            assert prov["url"] == f"{url}results_{mode}.zip"
            assert prov["original_path"] == f"results_{mode}/{RUN_DIR}/{rep}/results.npy"
            import hashlib

            archive = work / "archives" / f"authors_{mode}.zip"
            assert prov["archive_sha256"] == hashlib.sha256(archive.read_bytes()).hexdigest()


def test_model_state_dict_renamed_to_our_keys(imported):
    _work, _url, stagings = imported
    run = stagings["success"] / run_subdir("success", "sag", 0.9, 1)
    ours = torch.load(run / "model.pt", weights_only=True)
    theirs = torch.load(REFERENCE_RESULTS / "results_success" / RUN_DIR / "1" / f"{RUN_DIR}.pt", weights_only=True)
    assert list(ours) == [k.removeprefix("core_model.") for k in theirs]
    for key, value in theirs.items():
        assert torch.equal(ours[key.removeprefix("core_model.")], value)


def test_pick_copies_a_run_and_names_a_missing_one(imported, tmp_path, capsys):
    _work, _url, stagings = imported
    order = [str(stagings[m]) for m in MODES]
    out = tmp_path / "results" / "runs" / "specificity" / "sag" / "s0.9" / "rep1"
    assert fetch_results.main(["pick", "--staging", *order, "--mode", "specificity", "--variant", "sag",
                               "--s-des", "0.9", "--rep", "1", "--out", str(out)]) == 0
    src = stagings["specificity"] / "specificity/sag/s0.9/rep1"
    assert sorted(p.name for p in out.iterdir()) == ["arrays.npz", "model.pt", "run.json"]
    for f in out.iterdir():
        assert f.read_bytes() == (src / f.name).read_bytes()
    missing = tmp_path / "results" / "runs" / "success" / "sag" / "s0.5" / "rep0"
    assert fetch_results.main(["pick", "--staging", *order, "--mode", "success", "--variant", "sag",
                               "--s-des", "0.5", "--rep", "0", "--out", str(missing)]) == 1
    assert "no downloaded archive provides run success/sag/s0.5/rep0" in capsys.readouterr().err
    assert not missing.exists()


def test_ablation_layout_maps_to_variants_and_sensitivity(tmp_path):
    """The ablations archive: results/r{p}_..._u{n}_i{i}_.../{rep}; no mode in the path."""
    spec = REFERENCE_RESULTS / "results_specificity" / RUN_DIR / "0"
    root = tmp_path / "x"
    for name in ("r0.1_s0.5_uFalse_iTrue_b128_e5", "r0.05_s0.7_uTrue_iTrue_b128_e5",
                 "r0.1_s0.5_uTrue_iFalse_b128_e5", "r0.3_s0.5_uTrue_iTrue_b128_e5",
                 "r0.1_s0.5_uTrue_iTrue_b64_e5"):
        d = root / "results" / name / "0"
        d.mkdir(parents=True)
        os.symlink(spec / "results.npy", d / "results.npy")  # our own test tree, not an archive
    archive = _zip_dir(root, "results", tmp_path / "results.zip")
    out = tmp_path / "staging"
    fetch_results.cmd_import(archive, out, "authors", "gdrive:1f5CnucnTgGZkiSKs7-S2f18grWMIdoIC",
                             PAPER_VARIANTS, "sensitivity", 128, 5, True)
    got = sorted(p.relative_to(out).as_posix() for p in out.glob("*/*/*/*"))
    assert got == ["sensitivity/no_imputation/s0.5/rep0", "sensitivity/no_normalization/s0.5/rep0",
                   "sensitivity/prand0.05/s0.7/rep0"]
    info = rundir.read_info(out / "sensitivity/prand0.05/s0.7/rep0")
    assert info["settings"]["p_rand"] == 0.05 and info["settings"]["mode"] == "sensitivity"
    assert "not converted" not in info["provenance"]["model"] and not (out / "sensitivity/prand0.05/s0.7/rep0/model.pt").exists()
    assert json.loads((out / "import.json").read_text())["runs"] == got


def test_run_dirname_and_variant_matching():
    s = parse_run_dirname("r0.05_s0.1_uFalse_iTrue_b128_e5")
    assert s == {"p_rand": 0.05, "s_des": 0.1, "normalization": False, "imputation": True,
                 "batch_size": 128, "update_every": 5}
    assert parse_run_dirname("r0.1_s0.9_uTrue_iTrue_b128") is None
    assert match_variant(s, PAPER_VARIANTS) is None  # no such combination
    assert match_variant({**s, "normalization": True}, PAPER_VARIANTS) == "prand0.05"
    with pytest.raises(UserError, match="variants"):
        match_variant({**s, "normalization": True}, {"a": {"p_rand": 0.05, "normalization": True, "imputation": True},
                                                     "b": {"p_rand": 0.05, "normalization": True, "imputation": True}})


# --- hostile pickles -----------------------------------------------------------------------------


class _Payload:
    """Pickles as a call of ``func(*args)``: what an attacker would put into results.npy."""

    def __init__(self, func, args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def _evil_payloads(marker: Path):
    import builtins
    import subprocess

    cmd = f"touch {marker}"
    return {
        "os.system": _Payload(os.system, (cmd,)),
        "builtins.eval": _Payload(builtins.eval, (f"__import__('os').system({cmd!r})",)),
        "subprocess.call": _Payload(subprocess.call, (["touch", str(marker)],)),
    }


@pytest.mark.parametrize("name", ["os.system", "builtins.eval", "subprocess.call"])
@pytest.mark.parametrize("where", ["value", "inside an object array"])
def test_pickle_payload_never_runs(tmp_path, name, where, capsys):
    marker = tmp_path / "PWNED"
    payload = _evil_payloads(marker)[name]
    raw = load_results_npy(REFERENCE_RESULTS / "results_specificity" / RUN_DIR / "0" / "results.npy")
    if where == "value":
        raw["u"] = payload
    else:
        raw["extra"] = np.array([1, payload], dtype=object)
    run = tmp_path / "src" / "results_sensitivity" / RUN_DIR / "0"
    run.mkdir(parents=True)
    np.save(run / "results.npy", raw, allow_pickle=True)  # pickles the payload; does not run it
    archive = _zip_dir(tmp_path / "src", "results_sensitivity", tmp_path / "evil.zip")
    with pytest.raises(UserError, match="refused"):
        load_results_npy(run / "results.npy")
    staging = tmp_path / "imported" / "evil"
    staging.parent.mkdir()  # as Snakemake makes the parent of an output
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    assert fetch_results.main(["import", "--archive", str(archive), "--format", "authors",
                               "--out", str(staging)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error:") and "refused" in err and "do not use it" in err
    assert not marker.exists()
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before  # nothing new


def test_restricted_reader_refuses_what_np_save_of_numbers_never_writes(tmp_path):
    p = tmp_path / "results.npy"
    np.save(p, {"u": np.array(["a", "b"])}, allow_pickle=True)  # a string array
    with pytest.raises(UserError, match="dtype"):
        load_results_npy(p)
    np.save(p, np.arange(3.0))  # a plain array, not a pickled dict
    with pytest.raises(UserError, match="not a pickled dict"):
        load_results_npy(p)
    p.write_bytes(p.read_bytes()[:40])
    with pytest.raises(UserError, match="corrupt"):
        load_results_npy(p)


def test_hostile_state_dict_is_not_loaded(tmp_path):
    marker = tmp_path / "PWNED"
    run = tmp_path / "src" / "results_success" / RUN_DIR / "0"
    run.mkdir(parents=True)
    raw = load_results_npy(REFERENCE_RESULTS / "results_specificity" / RUN_DIR / "0" / "results.npy")
    np.save(run / "results.npy", raw, allow_pickle=True)
    torch.save({"core_model.conv1.weight": _Payload(os.system, (f"touch {marker}",))}, run / f"{RUN_DIR}.pt")
    archive = _zip_dir(tmp_path / "src", "results_success", tmp_path / "a.zip")
    out = tmp_path / "staging"
    fetch_results.cmd_import(archive, out, "authors", None, PAPER_VARIANTS,
                             "sensitivity", None, None, True)
    run_out = out / "success/sag/s0.9/rep0"
    assert not marker.exists()
    assert not (run_out / "model.pt").exists()
    assert rundir.read_info(run_out)["provenance"]["model"].startswith("not converted")
    assert find_runs(tmp_path / "src")[0].mode == "success"


def test_refused_model_is_named_in_the_log_and_counted_in_the_summary(tmp_path, caplog):
    """The run still imports (exit 0: the model is optional), but the refusal is not silent."""
    marker = tmp_path / "PWNED"
    spec = REFERENCE_RESULTS / "results_specificity" / RUN_DIR
    src = tmp_path / "src" / "results_specificity" / RUN_DIR
    for rep in (0, 1):
        (src / str(rep)).mkdir(parents=True)
        os.symlink(spec / str(rep) / "results.npy", src / str(rep) / "results.npy")
    os.symlink(spec / "1" / f"{RUN_DIR}.pt", src / "1" / f"{RUN_DIR}.pt")  # a good model
    torch.save({"core_model.conv1.weight": _Payload(os.system, (f"touch {marker}",))},
               src / "0" / f"{RUN_DIR}.pt")
    archive = _zip_dir(tmp_path / "src", "results_specificity", tmp_path / "a.zip")
    out = tmp_path / "staging"
    with caplog.at_level("INFO"):
        assert fetch_results.main(["import", "--archive", str(archive), "--format", "authors",
                                   "--out", str(out)]) == 0
    assert not marker.exists()
    pt = f"results_specificity/{RUN_DIR}/0/{RUN_DIR}.pt"
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and pt in warnings[0] and "posix.system" in warnings[0], warnings
    summary = caplog.records[-1].getMessage()
    assert "imported 2 runs" in summary and "1 model file refused" in summary, summary
    record = json.loads((out / "import.json").read_text())
    assert [(m["file"], m["run"]) for m in record["models_refused"]] == [(pt, "specificity/sag/s0.9/rep0")]
    note = rundir.read_info(out / "specificity/sag/s0.9/rep0")["provenance"]["model"]
    assert note.startswith("not converted") and f"{RUN_DIR}.pt" in note and "posix.system" in note
    assert not (out / "specificity/sag/s0.9/rep0/model.pt").exists()
    assert (out / "specificity/sag/s0.9/rep1/model.pt").exists()


def test_state_dicts_are_bounded_before_torch_reads_them(tmp_path, monkeypatch):
    """Only torch's zip format (whose records have declared sizes) and only LeNet-sized files:
    the legacy format sizes its storages from numbers inside the pickle."""
    from askdagger_mnist.prebuilt import authors_model

    real = REFERENCE_RESULTS / "results_success" / RUN_DIR / "0" / f"{RUN_DIR}.pt"
    state, note = authors_model.convert_state_dict(real)
    assert state is not None and note.startswith("converted")
    legacy = tmp_path / "legacy.pt"
    torch.save(torch.load(real, weights_only=True), legacy, _use_new_zipfile_serialization=False)
    state, note = authors_model.convert_state_dict(legacy)
    assert state is None and note.startswith("not converted: legacy.pt") and "zip" in note
    disguised = tmp_path / "disguised.pt"  # legacy bytes first (torch's choice), a zip at the end
    with zipfile.ZipFile(tmp_path / "empty.zip", "w"):
        pass
    disguised.write_bytes(legacy.read_bytes() + (tmp_path / "empty.zip").read_bytes())
    assert zipfile.is_zipfile(disguised)
    state, note = authors_model.convert_state_dict(disguised)
    assert state is None and "zip format" in note
    monkeypatch.setattr(authors_model, "MAX_STATE_DICT_BYTES", 100_000)
    state, note = authors_model.convert_state_dict(real)
    assert state is None and "182437 bytes" in note


# --- the workflow's download entry point ---------------------------------------------------------


@pytest.mark.slow
def test_snakemake_download_entry_point_builds_figure_without_training(tmp_path, serve_dir):
    """results_source: download -> figures/mnist.pdf from the served authors' archives, no train job."""
    import subprocess
    import sys

    import yaml

    from conftest import REPO

    modes = ("success",)  # one column of the figure keeps the test short; the rest is the same
    srv = tmp_path / "srv"
    srv.mkdir()
    for mode in modes:
        _zip_dir(REFERENCE_RESULTS, f"results_{mode}", srv / f"results_{mode}.zip")
    base = serve_dir(srv)
    work = tmp_path / "work"
    work.mkdir()
    (work / "dl.yaml").write_text(yaml.safe_dump({
        "results_source": "download",
        "results_archives": [
            {"name": f"authors_{m}", "url": f"{base}results_{m}.zip", "sha256": None, "format": "authors"}
            for m in modes
        ],
        "modes": list(modes),
        "s_des": [0.9],
        "repetitions": 2,
    }))
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory", str(work),
         "--cores", "1", "--configfile", str(work / "dl.yaml"), "--", "figures/mnist.pdf"],
        capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (work / "figures" / "mnist.pdf").stat().st_size > 0
    ran = set(re.findall(r"^(?:local)?rule (\w+):", proc.stderr, re.M))
    assert ran == {"fetch_archive", "import_archive", "check_imports", "import_run", "aggregate_group",
                   "plot_main"}, ran
    table = _reference_table()
    for mode in modes:
        for rep in (0, 1):
            info = rundir.read_info(work / "results" / "runs" / run_subdir(mode, "sag", 0.9, rep))
            assert info["source"] == "authors"
            assert round(info["metrics"]["sensitivity"], 3) == table[(mode, rep)]["sensitivity"]
