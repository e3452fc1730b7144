"""A finished run's kept copy (data/kept_runs.py): published before the run directory, as hard
links to the same files, with the SHA-256 of each file recorded; used to restore the run only
when made with the same settings by code of today's results version, and only when its files
are still the files that were made and its arrays are a run's; any other copy of the run is set
aside (never deleted) with one line saying so; never half-made."""

from __future__ import annotations

import errno
import json
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest

from askdagger_mnist.data import kept_runs
from askdagger_mnist.data.hashing import file_hash
from askdagger_mnist.data.kept_runs import kept_copy_of, publish_run, restore_kept_run
from askdagger_mnist.data.rundir import write_run_files
from askdagger_mnist.settings import RESULTS_VERSION, RunSettings

STEPS, BATCH = 3, 16
SETTINGS = {**RunSettings(steps=STEPS, batch_size=BATCH).to_dict(), "variant": "sag"}


def run_arrays(seed: int = 0) -> dict[str, np.ndarray]:
    """The arrays of a run of SETTINGS that satisfies every invariant (data/invariants.py)."""
    rng = np.random.default_rng(seed)
    n = STEPS * BATCH
    c, q = rng.random(n) < 0.7, rng.random(n) < 0.4
    stream = rng.permutation(60_000)[:n]
    return {"u": rng.random(n), "k": np.repeat(np.arange(STEPS), BATCH), "g": np.full(n, 0.5),
            "c": c, "q": q, "q_a": q & (rng.random(n) < 0.5), "r": np.where(q, np.where(c, 1, -1), 0),
            "stream_idx": stream, "train_idx": stream[q]}


def fill_with(info: dict, arrays: dict | None = None):
    def fill(folder: Path) -> None:
        write_run_files(folder, run_arrays() if arrays is None else arrays, info)
        (folder / "model.pt").write_bytes(b"model weights")

    return fill


INFO = {"settings": SETTINGS, "results_version": RESULTS_VERSION, "metrics": {"query_rate": 0.4}}


def files(folder: Path) -> dict[str, tuple[int, bytes]]:
    return {p.name: (p.stat().st_ino, p.read_bytes()) for p in sorted(folder.iterdir())}


def contents(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def published_then_deleted(run: Path, info: dict = INFO) -> Path:
    """A run published as the train job does, then its run directory deleted (as Snakemake
    deletes the output of a job it runs again): its kept copy."""
    publish_run(run, fill_with(info))
    for p in run.iterdir():
        p.unlink()
    run.rmdir()
    return kept_copy_of(run)


def test_the_kept_copy_is_published_first_as_links_to_the_same_files(tmp_path):
    run = tmp_path / "runs" / "rep0"
    kept = kept_copy_of(run)
    assert kept == tmp_path / "runs" / ".kept" / "rep0"
    publish_run(run, fill_with(INFO))
    ours, theirs = files(run), files(kept)
    assert sorted(ours) == ["arrays.npz", "model.pt", "run.json"]
    assert ours == {name: theirs[name] for name in ours}
    assert all(p.stat().st_nlink == 2 for p in run.iterdir())
    # Not seen by globs over run directories.
    assert sorted(tmp_path.glob("*/*/run.json")) == [run / "run.json"]
    assert sorted(tmp_path.glob("runs/rep*")) == [run]


def test_the_digest_of_each_file_made_is_recorded_in_the_kept_copy_as_sha256sum_writes_it(tmp_path):
    run = tmp_path / "rep0"
    publish_run(run, fill_with(INFO))
    kept = kept_copy_of(run)
    listed = (kept / "SHA256SUMS").read_text().splitlines()
    assert listed == [f"{file_hash(run / name)}  {name}"
                      for name in ("arrays.npz", "model.pt", "run.json")]
    assert sorted(os.listdir(kept)) == ["SHA256SUMS", "arrays.npz", "model.pt", "run.json"]


def test_a_failed_fill_leaves_nothing_not_even_the_folder_of_kept_copies(tmp_path):
    run = tmp_path / "runs" / "rep0"
    run.parent.mkdir()

    def fill(folder: Path) -> None:
        (folder / "arrays.npz").write_bytes(b"half")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(Exception, match=rf"^{run} could not be written: no space left"):
        publish_run(run, fill)
    assert os.listdir(run.parent) == []


@pytest.mark.parametrize("claims, restored", [
    ({}, True),
    ({"results_version": RESULTS_VERSION - 1}, False),  # made by code whose results differ
    ({"results_version": None}, False),  # a run.json without the version
    ({"settings": {**SETTINGS, "p_rand": 0.2}}, False),  # other settings
])  # fmt: skip
def test_restored_only_when_made_with_these_settings_by_todays_code(tmp_path, capsys, claims, restored):
    run = tmp_path / "rep0"
    info = {**INFO, **claims}
    kept = published_then_deleted(run, info)
    before = files(kept)
    assert (restore_kept_run(run, SETTINGS) == info) is restored
    assert run.is_dir() is restored
    if restored:
        assert files(run) == {name: before[name] for name in files(run)}
    # A copy of other settings or of another version is not this run's: left as it is (the
    # run's publication replaces it), nothing said.
    assert files(kept) == before and capsys.readouterr().err == ""


def _flip_a_bit_of_the_compressed_data(path: Path) -> None:
    with zipfile.ZipFile(path) as zf:
        member = zf.infolist()[0]
    data = bytearray(path.read_bytes())
    start = member.header_offset + 30 + len(member.filename)
    start += int.from_bytes(data[member.header_offset + 28:member.header_offset + 30], "little")
    data[start + member.compress_size // 2] ^= 0x04
    path.write_bytes(bytes(data))


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _edit_the_metrics(path: Path) -> None:
    info = json.loads(path.read_text())
    info["metrics"]["query_rate"] = 0.1
    path.write_text(json.dumps(info))


@pytest.mark.parametrize("damage, name, said", [
    (_flip_a_bit_of_the_compressed_data, "arrays.npz", "its arrays.npz is not the file that was made"),
    (_truncate, "arrays.npz", "its arrays.npz is not the file that was made"),
    (_truncate, "model.pt", "its model.pt is not the file that was made"),
    (Path.unlink, "model.pt", "its model.pt is missing"),
    (_edit_the_metrics, "run.json", "its run.json is not the file that was made"),
    (lambda path: path.write_text(""), "SHA256SUMS", "its SHA256SUMS records no digests"),
])  # fmt: skip
def test_a_kept_copy_whose_files_are_not_those_made_is_set_aside_not_restored(
        tmp_path, capsys, damage, name, said):
    run = tmp_path / "rep0"
    kept = published_then_deleted(run)
    damage(kept / name)
    damaged = contents(kept)
    assert restore_kept_run(run, SETTINGS) is None
    assert not run.exists() and not kept.exists()
    aside = kept.with_name("rep0.rejected")
    assert contents(aside) == damaged  # moved out of the way as it is, never deleted
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and said in err and str(kept) in err and str(aside) in err, err
    assert sorted(os.listdir(tmp_path)) == [".kept"]  # no temporary left behind
    # A second damaged copy goes beside the first.
    kept_again = published_then_deleted(run)
    (kept_again / "model.pt").unlink()
    assert restore_kept_run(run, SETTINGS) is None
    assert sorted(os.listdir(kept.parent)) == ["rep0.rejected", "rep0.rejected.2"]


def test_a_kept_copy_whose_arrays_are_not_a_run_s_is_set_aside(tmp_path, capsys):
    """Its files are those made, but what was made breaks an invariant every run satisfies."""
    run = tmp_path / "rep0"
    arrays = run_arrays()
    arrays["r"] = -arrays["r"]
    publish_run(run, fill_with(INFO, arrays))
    for p in run.iterdir():
        p.unlink()
    run.rmdir()
    assert restore_kept_run(run, SETTINGS) is None and not run.exists()
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "rewards r do not follow" in err, err
    assert (tmp_path / ".kept" / "rep0.rejected" / "arrays.npz").is_file()


def test_an_incomplete_or_unreadable_kept_copy_is_set_aside(tmp_path, capsys):
    run = tmp_path / "rep0"
    kept = kept_copy_of(run)
    kept.mkdir(parents=True)
    (kept / "run.json").write_text("{torn")
    assert restore_kept_run(run, SETTINGS) is None and not run.exists()
    assert os.listdir(kept.parent) == ["rep0.rejected"] and "set aside" in capsys.readouterr().err


def test_where_the_file_system_cannot_link_the_kept_copy_is_a_copy(tmp_path, monkeypatch):
    def no_links(src, dst):
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(kept_runs.os, "link", no_links)
    run = tmp_path / "rep0"
    publish_run(run, fill_with(INFO))
    ours, theirs = files(run), files(kept_copy_of(run))
    assert {k: v[1] for k, v in ours.items()} == {k: theirs[k][1] for k in ours}
    assert all(ours[k][0] != theirs[k][0] for k in ours)  # separate files
    for p in run.iterdir():
        p.unlink()
    run.rmdir()
    assert restore_kept_run(run, SETTINGS) == INFO  # restored as a copy, checked


# --- copies kept before digests were recorded (no SHA256SUMS) ---------------------------------


def torch_model(folder: Path) -> None:
    """model.pt as the train job writes it: torch.save of a dict of tensors."""
    import torch

    torch.save({"conv1.weight": torch.ones(6, 1, 5, 5), "fc3.bias": torch.zeros(10)},
               folder / "model.pt")


def kept_before_digests(run: Path, arrays: dict | None = None, model=torch_model) -> Path:
    """A kept copy as the train job left it before it recorded digests: the run's files, no
    SHA256SUMS; its run directory deleted."""
    kept = kept_copy_of(run)
    kept.mkdir(parents=True)
    write_run_files(kept, run_arrays() if arrays is None else arrays, INFO)
    model(kept)
    return kept


def test_a_sound_copy_kept_before_digests_is_restored_and_gains_them(tmp_path, capsys):
    """An upgrade does not retrain every finished run: a copy whose run.json is this run's, whose
    arrays are a run's and whose model.pt is a state dict is restored, and its digests recorded,
    so that the next restore checks them."""
    run = tmp_path / "rep0"
    kept = kept_before_digests(run)
    made = contents(kept)
    assert restore_kept_run(run, SETTINGS) == INFO
    assert contents(run) == made and capsys.readouterr().err == ""
    assert sorted(os.listdir(kept)) == ["SHA256SUMS", "arrays.npz", "model.pt", "run.json"]
    assert (kept / "SHA256SUMS").read_text().splitlines() == [
        f"{file_hash(kept / name)}  {name}" for name in ("arrays.npz", "model.pt", "run.json")]
    # The next restore checks those digests: a file changed since is caught.
    for p in run.iterdir():
        p.unlink()
    run.rmdir()
    _edit_the_metrics(kept / "run.json")
    assert restore_kept_run(run, SETTINGS) is None and not run.exists()
    assert "its run.json is not the file that was made" in capsys.readouterr().err


def _cut(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:-40])


def _code_instead_of_weights(folder: Path) -> None:
    """A model.pt whose pickle would run code when loaded (not what torch.save of tensors writes)."""
    with zipfile.ZipFile(folder / "model.pt", "w") as zf:
        zf.writestr("archive/data.pkl", b"\x80\x02}q\x00(X\x01\x00\x00\x00wcos\nsystem\nq\x01X"
                                        b"\x04\x00\x00\x00trueq\x02\x85q\x03Rq\x04u.")


def _negated_rewards() -> dict:
    arrays = run_arrays()
    arrays["r"] = -arrays["r"]
    return arrays


@pytest.mark.parametrize("arrays, damage, said", [
    (None, lambda kept: _cut(kept / "arrays.npz"), "its arrays.npz cannot be read"),
    (_negated_rewards(), None, "its arrays break an invariant: its rewards r do not follow"),
    (None, lambda kept: _cut(kept / "model.pt"), "its model.pt is not a readable zip"),
    (None, lambda kept: (kept / "model.pt").write_bytes(b"model weights"), "its model.pt is not a readable zip"),
    (None, _code_instead_of_weights, "its model.pt's pickle would call 'os system'"),
    (None, lambda kept: (kept / "model.pt").unlink(), "its model.pt is missing"),
])  # fmt: skip
def test_an_unsound_copy_kept_before_digests_is_set_aside(tmp_path, capsys, arrays, damage, said):
    run = tmp_path / "rep0"
    kept = kept_before_digests(run, arrays)
    if damage is not None:
        damage(kept)
    left = contents(kept)
    assert restore_kept_run(run, SETTINGS) is None and not run.exists()
    aside = kept.with_name("rep0.rejected")
    assert contents(aside) == left  # as it was: no digests recorded for what failed
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and said in err and str(aside) in err, err
