"""The train CLI as an unlucky or hostile user meets it: every path and number it is given is
checked before any work starts (one sentence each, nothing created, moved or deleted), a
finished run is never trained again, and a full disk is one sentence naming the file, with
nothing half-written left behind and nothing already saved lost."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from askdagger_mnist.cli import train
from askdagger_mnist.settings import RESULTS_VERSION, RunSettings
from conftest import MNIST_ROOT

pytestmark = pytest.mark.needs_mnist


def _argv(out, *extra, data_root=MNIST_ROOT, steps="2"):
    return ["--mode", "success", "--s-des", "0.8", "--rep", "3", "--max-steps", steps,
            "--data-root", str(data_root), "--out", str(out), "--device", "cpu",
            "--threads", "1", "--progress-every", "0", *extra]  # fmt: skip


def _tree(root: Path) -> dict[str, tuple]:
    """Every path under root with its kind, size, inode and mtime: what a refusal must keep."""
    out = {}
    for p in sorted(root.rglob("*")):
        st = p.lstat()
        out[str(p.relative_to(root))] = (p.is_dir(), st.st_size, st.st_ino, st.st_mtime_ns)
    return out


def _refused(capsys, argv, root: Path) -> str:
    """Run the CLI in this process; it must refuse with one sentence and leave root as it was."""
    before = _tree(root)
    assert train.main(argv) == 1
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert _tree(root) == before, "a refused command changed the file system"
    return lines[0]


def _finished_run(path: Path, settings: RunSettings, variant: str = "sag") -> None:
    """A complete run directory (as the CLI publishes it) holding a run of ``settings``."""
    path.mkdir(parents=True)
    np.savez(path / "arrays.npz", u=np.zeros(3))
    info = {"settings": {**settings.to_dict(), "variant": variant}, "n_steps": settings.steps,
            "results_version": RESULTS_VERSION}
    (path / "run.json").write_text(json.dumps(info))


def _halt_after_a_checkpoint(out: Path, ckpt: Path) -> None:
    """A real checkpoint of the run at ``out``, as a process killed after step 1 leaves it."""
    halted = subprocess.run(
        [sys.executable, "-m", "askdagger_mnist.cli.train",
         *_argv(out, "--checkpoint-every", "1", "--halt-after", "1")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert halted.returncode == 3 and ckpt.is_file(), halted.stderr


SETTINGS = RunSettings(mode="success", s_des=0.8, rep=3, steps=2)


def test_out_naming_an_existing_file_is_refused_and_the_file_kept(tmp_path, capsys):
    out = tmp_path / "results.txt"
    out.write_text("my notes\n")
    line = _refused(capsys, _argv(out), tmp_path)
    assert str(out) in line and "file" in line
    assert out.read_text() == "my notes\n" and sorted(os.listdir(tmp_path)) == ["results.txt"]


def test_out_naming_a_folder_that_is_not_a_run_is_refused_and_kept(tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me\n")
    line = _refused(capsys, _argv(out), tmp_path)
    assert str(out) in line
    assert (out / "notes.txt").read_text() == "keep me\n"


def test_out_inside_a_file_is_refused(tmp_path, capsys):
    (tmp_path / "a_file").write_text("x")
    out = tmp_path / "a_file" / "run"
    line = _refused(capsys, _argv(out), tmp_path)
    assert str(tmp_path / "a_file") in line and "file" in line


def test_a_finished_run_with_other_settings_is_refused_not_replaced(tmp_path, capsys):
    out = tmp_path / "run"
    _finished_run(out, RunSettings(mode="success", s_des=0.7, rep=3, steps=2))
    line = _refused(capsys, _argv(out), tmp_path)
    assert str(out) in line and "other settings" in line


def test_a_finished_run_with_the_same_settings_is_kept_not_retrained(tmp_path, capsys):
    out = tmp_path / "run"
    _finished_run(out, SETTINGS)
    before = _tree(tmp_path)
    assert train.main(_argv(out)) == 0
    err = capsys.readouterr().err
    assert "already" in err and str(out) in err, err
    assert _tree(tmp_path) == before


def test_a_finished_run_of_another_results_version_is_refused_not_replaced(tmp_path, capsys):
    out = tmp_path / "run"
    _finished_run(out, SETTINGS)
    info = json.loads((out / "run.json").read_text())
    (out / "run.json").write_text(json.dumps({**info, "results_version": RESULTS_VERSION - 1}))
    line = _refused(capsys, _argv(out), tmp_path)
    assert line == (f"error: --out {out} holds a finished run made by code whose results differ "
                    f"from this version's (results_version {RESULTS_VERSION - 1}, now "
                    f"{RESULTS_VERSION}): delete it to train it again.")


def test_a_deleted_run_is_restored_from_its_kept_copy_without_importing_torch(tmp_path):
    """What a rerun of a finished train job does (Snakemake deletes a job's output before it
    runs it): the run comes back from its kept copy, the same files, torch never imported,
    and a checkpoint of the run that a killed process left goes too (by its name)."""
    out, ckpt = tmp_path / "run", tmp_path / "run.checkpoint.pt"
    _halt_after_a_checkpoint(out, ckpt)
    left = ckpt.read_bytes()
    done = subprocess.run([sys.executable, "-m", "askdagger_mnist.cli.train", *_argv(out)],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0 and not ckpt.exists(), done.stderr
    before = _tree(out)
    rerun = (f"import sys; from askdagger_mnist.cli import train; "
             f"code = train.main({_argv(out)!r}); print('torch' in sys.modules); sys.exit(code)")
    for leftover in (False, True):
        shutil.rmtree(out)
        if leftover:
            ckpt.write_bytes(left)
        proc = subprocess.run([sys.executable, "-c", rerun], capture_output=True, text=True,
                              timeout=120)  # fmt: skip
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "restored from its kept copy" in proc.stderr, proc.stderr
        assert proc.stdout.strip() == "False", proc.stdout  # not even for the checkpoint
        assert _tree(out) == before  # the same files (inodes, sizes, mtimes)
        assert not ckpt.exists()


@pytest.mark.slow
def test_beside_a_finished_run_a_leftover_checkpoint_goes_and_a_file_of_yours_stays(
    tmp_path, capsys
):
    out, ckpt = tmp_path / "run", tmp_path / "run.checkpoint.pt"
    _halt_after_a_checkpoint(out, ckpt)
    _finished_run(out, SETTINGS)
    mine = tmp_path / "mine.txt"
    mine.write_text("not a checkpoint\n")
    assert train.main(_argv(out, "--checkpoint", str(mine))) == 0
    assert mine.read_text() == "not a checkpoint\n" and ckpt.is_file()
    assert train.main(_argv(out)) == 0
    assert "already" in capsys.readouterr().err
    assert sorted(os.listdir(tmp_path)) == ["mine.txt", "run"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A run of SETTINGS as the CLI trains and publishes it (with its kept copy)."""
    out = tmp_path_factory.mktemp("trained") / "run"
    proc = subprocess.run([sys.executable, "-m", "askdagger_mnist.cli.train", *_argv(out)],
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return out


def _copy_of(trained: Path, tmp_path: Path) -> Path:
    """A copy of the trained run and its kept copy, in a folder of the test's own."""
    shutil.copytree(trained.parent, tmp_path / "runs")
    return tmp_path / "runs" / trained.name


def _contents(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def _flip_a_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def _cut_in_half(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _better_metrics(path: Path) -> None:
    info = json.loads(path.read_text())
    info["metrics"]["novice_success"] = 0.99
    path.write_text(json.dumps(info))


@pytest.mark.slow
@pytest.mark.parametrize("damage, name", [
    (_flip_a_byte, "arrays.npz"), (_cut_in_half, "model.pt"), (_better_metrics, "run.json")])
def test_a_kept_copy_that_is_not_what_was_made_is_set_aside_and_the_run_trained_again(
        trained, tmp_path, damage, name):
    """A kept copy is a hard link of the run's files: it survives their deletion, not a change
    of their content. A rerun finds the change, sets the copy aside (one line) and trains."""
    from conftest import assert_same_run

    out = _copy_of(trained, tmp_path)
    kept = out.parent / ".kept" / out.name
    shutil.rmtree(out)  # as Snakemake deletes the output of a job it runs again
    damage(kept / name)
    damaged = _contents(kept)
    proc = subprocess.run([sys.executable, "-m", "askdagger_mnist.cli.train", *_argv(out)],
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    aside = kept.with_name(f"{out.name}.rejected")
    said = [line for line in proc.stderr.splitlines() if "set aside" in line]
    assert said == [f"kept copy {kept} not restored: its {name} is not the file that was made (its "
                    "SHA-256 differs from the one recorded when the run was published); set aside "
                    f"as {aside}, the run is trained again."], proc.stderr
    assert f"run written to {out}" in proc.stderr
    assert _contents(aside) == damaged  # out of the way, as it was
    assert_same_run(out, trained)  # trained again: the same run, bit for bit
    assert sorted(os.listdir(out.parent)) == [".kept", "run"]
    assert sorted(os.listdir(kept.parent)) == ["run", "run.rejected"]


def test_the_temporaries_a_killed_process_left_go_with_the_next_run_of_its_job(trained, tmp_path):
    """data/atomic.py's temporaries of the run directory, its kept copy and its checkpoint, as
    a process killed outright (SIGKILL) leaves them; those of another run stay."""
    out = _copy_of(trained, tmp_path)
    runs, kept = out.parent, out.parent / ".kept"
    shutil.rmtree(out)
    ours = [kept / ".run.0123abcd.tmp", runs / ".run.89abcdef.tmp", kept / ".run.old"]
    theirs = [kept / ".run1.0123abcd.tmp", runs / ".run1.89abcdef.tmp", kept / ".run1.old",
              runs / ".run.notes.tmp"]
    for folder in ours + theirs:
        folder.mkdir()
        (folder / "arrays.npz").write_bytes(b"half")
    ours.append(runs / ".run.checkpoint.pt.4567cdef.tmp")
    theirs += [runs / ".run1.checkpoint.pt.4567cdef.tmp", runs / "run.checkpoint.pt.4567cdef.tmp"]
    for path in ours[-1:] + theirs[-2:]:
        path.write_bytes(b"half a checkpoint")
    proc = subprocess.run([sys.executable, "-m", "askdagger_mnist.cli.train", *_argv(out)],
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0 and "restored from its kept copy" in proc.stderr, proc.stderr
    assert [p for p in ours if p.exists()] == []
    assert [p for p in theirs if not p.exists()] == []


@pytest.mark.parametrize("left", [b"torn", "another format"])
def test_a_stale_checkpoint_beside_a_finished_run_goes(trained, tmp_path, capsys, left):
    """The file under the checkpoint's own name beside a finished run is a leftover, whatever
    it holds: a torn file, or a checkpoint of another format or version (which could resume
    nothing)."""
    out = _copy_of(trained, tmp_path)
    ckpt = out.with_name("run.checkpoint.pt")
    if left == "another format":
        import torch

        from askdagger_mnist.data.checkpoint import VERSION

        with open(ckpt, "wb") as fh:
            torch.save({"version": VERSION - 1, "settings": SETTINGS.to_dict()}, fh)
    else:
        ckpt.write_bytes(left)
    assert train.main(_argv(out)) == 0
    assert "already holds this run" in capsys.readouterr().err
    assert not ckpt.exists() and sorted(os.listdir(out.parent)) == [".kept", "run"]


def test_checkpoint_naming_a_folder_is_refused(tmp_path, capsys):
    ckpt = tmp_path / "ckpts"
    ckpt.mkdir()
    line = _refused(capsys, _argv(tmp_path / "run", "--checkpoint", str(ckpt)), tmp_path)
    assert str(ckpt) in line and "folder" in line


def test_checkpoint_inside_a_file_or_inside_the_run_directory_is_refused(tmp_path, capsys):
    (tmp_path / "a_file").write_text("x")
    ckpt = tmp_path / "a_file" / "c.pt"
    line = _refused(capsys, _argv(tmp_path / "run", "--checkpoint", str(ckpt)), tmp_path)
    assert str(tmp_path / "a_file") in line
    ckpt = tmp_path / "run" / "c.pt"
    line = _refused(capsys, _argv(tmp_path / "run", "--checkpoint", str(ckpt)), tmp_path)
    assert str(ckpt) in line and "--out" in line


@pytest.mark.parametrize(
    "flags, says",
    [
        (["--checkpoint-every", "-1"], "--checkpoint-every"),
        (["--progress-every", "-1"], "--progress-every"),
        (["--threads", "0"], "--threads"),
        (["--jobs-per-gpu", "0"], "--jobs-per-gpu must be >= 1, not 0."),
    ],
)
def test_negative_counts_are_refused(tmp_path, capsys, flags, says):
    line = _refused(capsys, _argv(tmp_path / "run", *flags), tmp_path)
    assert says in line


def test_a_stream_longer_than_mnist_is_refused_before_mnist_is_read(tmp_path, capsys):
    empty = tmp_path / "no_mnist_here"
    empty.mkdir()
    line = _refused(capsys, _argv(tmp_path / "run", data_root=empty, steps="1000"), tmp_path)
    assert "max_steps" in line or "--max-steps" in line


def test_data_root_naming_a_file_is_refused(tmp_path, capsys):
    data = tmp_path / "mnist.gz"
    data.write_bytes(b"\x1f\x8b")
    line = _refused(capsys, _argv(tmp_path / "run", data_root=data), tmp_path)
    assert f"--data-root {data} is a file" in line


def test_the_command_line_prints_one_sentence_and_no_traceback(tmp_path):
    out = tmp_path / "results.txt"
    out.write_text("my notes\n")
    proc = subprocess.run([sys.executable, "-m", "askdagger_mnist.cli.train", *_argv(out)],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.startswith("error: ") and "Traceback" not in proc.stderr, proc.stderr
    assert out.read_text() == "my notes\n" and sorted(os.listdir(tmp_path)) == ["results.txt"]


# ---- a full disk (a real, small tmpfs) ---------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path):
    """Factory: small_disk(size) -> a folder on a tmpfs of that size, unmounted afterwards."""
    mounted = []

    def mount(size: str, options: str = "") -> Path:
        where = tmp_path / f"disk{len(mounted)}"
        where.mkdir()
        proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}{options}", "tmpfs",
                               str(where)], capture_output=True, text=True)  # fmt: skip
        if proc.returncode != 0:
            pytest.skip(f"a full disk is simulated with a small tmpfs, and mounting one is not "
                        f"permitted here ({proc.stderr.strip() or proc.returncode})")  # fmt: skip
        mounted.append(where)
        return where

    yield mount
    for where in mounted:
        if subprocess.run(["umount", str(where)], capture_output=True).returncode:
            subprocess.run(["umount", "--lazy", str(where)], check=False)


def test_out_on_a_read_only_disk_is_refused_before_any_work(small_disk, capsys):
    disk = small_disk("100k", ",ro")
    line = _refused(capsys, _argv(disk / "run"), disk)
    assert str(disk / "run") in line and "may not write" in line


def _cli(out, *extra, steps="4"):
    cmd = [sys.executable, "-m", "askdagger_mnist.cli.train", *_argv(out, *extra, steps=steps)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300)


def _one_sentence_about_space(proc, path: Path) -> None:
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, proc.stderr[-3000:]
    assert str(path) in lines[0] and "space" in lines[0], lines[0]


def test_a_full_disk_while_a_checkpoint_is_written(small_disk):
    disk = small_disk("300k")  # a checkpoint of this run is ~0.7 MB
    out, ckpt = disk / "run", disk / "run.ckpt"
    proc = _cli(out, "--checkpoint", str(ckpt), "--checkpoint-every", "2")
    _one_sentence_about_space(proc, ckpt)
    assert os.listdir(disk) == [], "something half-written was left behind"


def test_a_full_disk_while_the_run_directory_is_written_keeps_the_checkpoint(small_disk):
    disk = small_disk("800k")  # room for the checkpoint of step 2, not for the run as well
    out, ckpt = disk / "run", disk / "run.ckpt"
    proc = _cli(out, "--checkpoint", str(ckpt), "--checkpoint-every", "2")
    _one_sentence_about_space(proc, out)
    assert os.listdir(disk) == ["run.ckpt"], "only the last checkpoint may stay"
    # Space freed: the same command resumes from the checkpoint and finishes.
    subprocess.run(["mount", "-o", "remount,size=8m", str(disk)], check=True)
    proc = _cli(out, "--checkpoint", str(ckpt), "--checkpoint-every", "2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    info = json.loads((out / "run.json").read_text())
    assert info["resumed_at_steps"] == [2] and info["n_steps"] == 4
    assert sorted(os.listdir(disk)) == [".kept", "run"] and sorted(os.listdir(out)) == [
        "arrays.npz", "model.pt", "run.json"]  # fmt: skip


def test_the_matmul_precision_is_set_and_recorded(tmp_path):
    """--matmul-precision (config matmul_precision) reaches torch and run.json; the default is
    float32 throughout. (In a subprocess: the setting is global to torch.)"""
    def made(out: Path, *extra: str) -> dict:
        subprocess.run([sys.executable, "-m", "askdagger_mnist.cli.train", *_argv(out, *extra)],
                       check=True, capture_output=True)
        return json.loads((out / "run.json").read_text())

    assert made(tmp_path / "medium", "--matmul-precision", "medium")["matmul_precision"] == "medium"
    assert made(tmp_path / "default")["matmul_precision"] == "highest"
