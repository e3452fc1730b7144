"""A finished run's kept copy (data/kept_runs.py): published before the run directory, as hard
links to the same files; used to restore the run only when made with the same settings by code
of today's results version; never half-made."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest

from askdagger_mnist.data import kept_runs
from askdagger_mnist.data.kept_runs import kept_copy_of, publish_run, restore_kept_run
from askdagger_mnist.settings import RESULTS_VERSION, RunSettings

SETTINGS = {**RunSettings(steps=3).to_dict(), "variant": "sag"}


def fill_with(info: dict):
    def fill(folder: Path) -> None:
        (folder / "arrays.npz").write_bytes(b"arrays")
        (folder / "run.json").write_text(json.dumps(info))
        (folder / "model.pt").write_bytes(b"model")

    return fill


def files(folder: Path) -> dict[str, tuple[int, bytes]]:
    return {p.name: (p.stat().st_ino, p.read_bytes()) for p in sorted(folder.iterdir())}


def test_the_kept_copy_is_published_first_as_links_to_the_same_files(tmp_path):
    run = tmp_path / "runs" / "rep0"
    kept = kept_copy_of(run)
    assert kept == tmp_path / "runs" / ".kept" / "rep0"
    publish_run(run, fill_with({"settings": SETTINGS, "results_version": RESULTS_VERSION}))
    assert files(run) == files(kept) and len(files(run)) == 3
    assert all(p.stat().st_nlink == 2 for p in run.iterdir())
    # Not seen by globs over run directories.
    assert sorted(tmp_path.glob("*/*/run.json")) == [run / "run.json"]
    assert sorted(tmp_path.glob("runs/rep*")) == [run]


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
def test_restored_only_when_made_with_these_settings_by_todays_code(tmp_path, claims, restored):
    run = tmp_path / "rep0"
    info = {"settings": SETTINGS, "results_version": RESULTS_VERSION, **claims}
    publish_run(run, fill_with(info))
    kept = files(kept_copy_of(run))
    for p in run.iterdir():
        p.unlink()
    run.rmdir()
    assert (restore_kept_run(run, SETTINGS) == info) is restored
    assert run.is_dir() is restored
    if restored:
        assert files(run) == kept


def test_an_incomplete_or_unreadable_kept_copy_is_not_used(tmp_path):
    run = tmp_path / "rep0"
    kept = kept_copy_of(run)
    kept.mkdir(parents=True)
    (kept / "run.json").write_text(json.dumps({"settings": SETTINGS,
                                               "results_version": RESULTS_VERSION}))
    assert restore_kept_run(run, SETTINGS) is None  # no arrays.npz
    (kept / "arrays.npz").write_bytes(b"arrays")
    (kept / "run.json").write_text("{torn")
    assert restore_kept_run(run, SETTINGS) is None and not run.exists()


def test_where_the_file_system_cannot_link_the_kept_copy_is_a_copy(tmp_path, monkeypatch):
    def no_links(src, dst):
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(kept_runs.os, "link", no_links)
    run = tmp_path / "rep0"
    publish_run(run, fill_with({"settings": SETTINGS, "results_version": RESULTS_VERSION}))
    ours, theirs = files(run), files(kept_copy_of(run))
    assert {k: v[1] for k, v in ours.items()} == {k: v[1] for k, v in theirs.items()}
    assert all(ours[k][0] != theirs[k][0] for k in ours)  # separate files
