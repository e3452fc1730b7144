"""The workflow never deletes or rewrites a user's MNIST file.

mnist_root is the user's folder: the download_mnist rule may add a missing file to it
(complete and MD5-checked, or nothing), but it must never remove or rewrite one that is there,
whether the mirror answers or not, whether a file is corrupt, whether the folder is read-only.
Each test runs real Snakemake on a copy of real MNIST with some files missing, targeting the
download rule (or one short training run), against the local mirror or an unreachable one.
"""

from __future__ import annotations

import concurrent.futures as cf
import hashlib
import http.server
import json
import shutil
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
import yaml

from askdagger_mnist.data.mnist import raw_folder
from conftest import MNIST_RAW, REPO
from test_workflow_static import job_counts

pytestmark = pytest.mark.needs_mnist

SNAKEFILE = REPO / "Snakefile"
SMOKE = REPO / "workflow" / "presets" / "smoke.yaml"
OFFLINE = "http://127.0.0.1:9/"  # nothing listens there: connection refused
NAMES = [
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
]
MANIFEST = "results/mnist.verified.json"


NEWEST = [sys.executable, "-m", "snakemake"]


def snakemake(tmp_path: Path, root: Path, mirror: str, *targets: str, extra=(), head=NEWEST,
              workflow_profile: tuple[str, ...] = ("--workflow-profile", "none")) -> subprocess.CompletedProcess:
    (tmp_path / "mirror.yaml").write_text(yaml.safe_dump({"mnist_mirrors": [mirror], "mnist_root": str(root)}))
    workdir = tmp_path / "work"
    workdir.mkdir(exist_ok=True)
    proc = subprocess.run(
        [*head, *targets, "--snakefile", str(SNAKEFILE), "--directory", str(workdir),
         "--cores", "1", *workflow_profile, "--show-failed-logs",
         "--configfile", str(SMOKE), str(tmp_path / "mirror.yaml"), *extra],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    proc.output = proc.stdout + proc.stderr
    proc.workdir = workdir
    return proc


def user_root(tmp_path: Path, names) -> Path:
    root = tmp_path / "my mnist"  # a space, as users' folders have
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in names:
        shutil.copy2(MNIST_RAW / name, raw / name)
    return root


def snapshot(root: Path) -> dict[str, tuple[int, int, str]]:
    """Every file under root: inode, mtime and MD5 (a rewrite changes one of them)."""
    return {
        p.relative_to(root).as_posix(): (
            p.stat().st_ino,
            p.stat().st_mtime_ns,
            hashlib.md5(p.read_bytes()).hexdigest(),
        )
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def real_md5(name: str) -> str:
    return hashlib.md5((MNIST_RAW / name).read_bytes()).hexdigest()


@pytest.mark.parametrize(
    "missing",
    [NAMES[:1], [NAMES[1], NAMES[2]], [NAMES[0], NAMES[1], NAMES[3]]],
    ids=["one", "two", "three"],
)
def test_missing_files_offline_then_served_never_touch_the_present_ones(tmp_path, mnist_mirror, missing):
    root = user_root(tmp_path, [n for n in NAMES if n not in missing])
    before = snapshot(root)

    offline = snakemake(tmp_path, root, OFFLINE, "download_mnist")
    assert offline.returncode == 1, offline.output[-3000:]
    needed = [n for n in missing if n.startswith("train")]  # what training reads
    assert f"error: could not download MNIST file(s) {', '.join(needed)} into" in offline.output
    assert snapshot(root) == before  # every present file still there, untouched; nothing partial
    assert not (offline.workdir / MANIFEST).exists()

    served = snakemake(tmp_path, root, mnist_mirror, "download_mnist")
    assert served.returncode == 0, served.output[-3000:]
    after = snapshot(root)
    assert {k: v for k, v in after.items() if k in before} == before
    assert sorted(after) == sorted(f"MNIST/raw/{n}" for n in NAMES)
    for name in missing:
        assert after[f"MNIST/raw/{name}"][2] == real_md5(name)
    log = (served.workdir / "results/logs/download_mnist.log").read_text()
    assert f"downloaded and verified {', '.join(missing)}" in log
    manifest = json.loads((served.workdir / MANIFEST).read_text())
    assert {n: f["md5"] for n, f in manifest["files"].items()} == {n: real_md5(n) for n in NAMES}


def test_corrupt_file_is_named_kept_and_replaced_only_once_deleted(tmp_path, mnist_mirror):
    root = user_root(tmp_path, NAMES)
    bad = root / "MNIST" / "raw" / NAMES[1]
    data = bytearray(bad.read_bytes())
    data[100] ^= 0xFF
    bad.write_bytes(bytes(data))
    before = snapshot(root)

    proc = snakemake(tmp_path, root, mnist_mirror, "download_mnist")
    assert proc.returncode == 1
    assert f"error: {bad} is corrupt" in proc.output and "delete it" in proc.output
    assert snapshot(root) == before

    bad.unlink()  # following the advice
    del before[f"MNIST/raw/{NAMES[1]}"]
    proc = snakemake(tmp_path, root, mnist_mirror, "download_mnist")
    assert proc.returncode == 0, proc.output[-3000:]
    after = snapshot(root)
    assert after[f"MNIST/raw/{NAMES[1]}"][2] == real_md5(NAMES[1])
    del after[f"MNIST/raw/{NAMES[1]}"]
    assert after == before


@pytest.fixture
def make_read_only():
    """Makes a folder tree read-only, also for root (chattr +i where chmod is not enough)."""
    done: list[Path] = []

    def writable(folder: Path) -> bool:
        probe = folder / f".probe-{uuid.uuid4().hex}"
        try:
            probe.touch()
        except OSError:
            return False
        probe.unlink()
        return True

    def make(root: Path) -> None:
        paths = [root, *sorted(root.rglob("*"))]
        for p in reversed(paths):
            p.chmod(0o555 if p.is_dir() else 0o444)
        done.append(root)
        if any(writable(p) for p in paths if p.is_dir()) and shutil.which("chattr"):
            subprocess.run(["chattr", "+i", *map(str, paths)], capture_output=True)
        if any(writable(p) for p in paths if p.is_dir()):
            pytest.skip("cannot make a folder read-only here (root, and chattr +i is refused)")

    yield make
    for root in done:
        paths = [root, *root.rglob("*")]
        if shutil.which("chattr"):
            subprocess.run(["chattr", "-i", *map(str, paths)], capture_output=True)
        for p in paths:
            p.chmod(0o755 if p.is_dir() else 0o644)


def test_read_only_root_with_only_the_training_files_trains(tmp_path, mnist_mirror, make_read_only):
    root = user_root(tmp_path, NAMES[:2])
    make_read_only(root)
    before = snapshot(root)

    target = "results/runs/success/sag/s0.9/rep0"
    proc = snakemake(tmp_path, root, mnist_mirror, target, extra=("--config", "max_steps=2"))
    assert proc.returncode == 0, proc.output[-3000:]
    assert snapshot(root) == before
    log = (proc.workdir / "results/logs/download_mnist.log").read_text()
    assert "t10k-images-idx3-ubyte.gz" in log and "training does not read" in log, log
    manifest = json.loads((proc.workdir / MANIFEST).read_text())
    assert sorted(manifest["files"]) == sorted(NAMES[:2])
    assert json.loads((proc.workdir / target / "run.json").read_text())["n_steps"] == 2


def test_a_moved_root_retrains_nothing_and_a_root_without_the_files_is_named(tmp_path, mnist_mirror):
    """The manifest vouches for the bytes, not the folder: pointing mnist_root at another copy
    re-runs nothing; a root that lacks the training files is named before any job starts."""
    first = user_root(tmp_path / "a", NAMES)
    target = "results/runs/success/sag/s0.9/rep0"
    proc = snakemake(tmp_path, first, OFFLINE, target, extra=("--config", "max_steps=2"))
    assert proc.returncode == 0, proc.output[-3000:]
    run = proc.workdir / target / "run.json"
    stamp = run.stat().st_mtime_ns

    moved = user_root(tmp_path / "b", NAMES[:2])
    dry = snakemake(tmp_path, moved, OFFLINE, target, extra=("--config", "max_steps=2", "--dry-run"))
    assert dry.returncode == 0 and "Nothing to be done" in dry.output, dry.output[-3000:]

    empty = tmp_path / "c"
    empty.mkdir()
    dry = snakemake(tmp_path, empty, OFFLINE, target, extra=("--config", "max_steps=2", "--dry-run"))
    assert "Traceback" not in dry.output
    assert f"{empty}/MNIST/raw/train-images-idx3-ubyte.gz" in dry.output
    assert "python -m askdagger_mnist.cli.download_mnist" in dry.output
    assert run.stat().st_mtime_ns == stamp


@pytest.fixture(params=["newest", pytest.param("floor", marks=[pytest.mark.system, pytest.mark.slow])])
def head(request) -> list[str]:
    """The Snakemake that runs the workflow: the installed one, or the declared floor."""
    if request.param == "newest":
        return NEWEST
    return [str(request.getfixturevalue("floor_venv") / "bin" / "snakemake")]


def test_a_moved_root_and_other_execution_choices_rerun_nothing_and_miss_no_run(tmp_path, head):
    """What docs/workflow.md promises, on the declared floor as on the newest Snakemake, under
    the workflow profile users run with: after mnist_root points at another copy, and engine,
    threads, checkpoints and matmul precision change, a finished run is not run again, and the
    first invocation makes the run still missing. (On 9.0.1 a changed mnist_root was a changed
    param of the download and of every train job: the download re-ran, and that invocation
    ended, exit 0, without the missing run.)"""
    def smk(root: Path, *targets: str, extra=()) -> subprocess.CompletedProcess:
        return snakemake(tmp_path, root, OFFLINE, *targets, extra=extra, head=head,
                         workflow_profile=())  # profiles/default, loaded by itself

    done, missing = "results/runs/success/sag/s0.9/rep0", "results/runs/sensitivity/sag/s0.9/rep0"
    proc = smk(user_root(tmp_path / "a", NAMES), done, extra=("--config", "max_steps=2"))
    assert proc.returncode == 0, proc.output[-3000:]
    finished = proc.workdir / done / "run.json"
    stamp = finished.stat().st_mtime_ns

    moved = user_root(tmp_path / "b", NAMES[:2])
    changed = ("--config", "max_steps=2", "engine=plain", "threads=2", "checkpoint_every=1",
               "matmul_precision=high")
    dry = smk(moved, done, missing, extra=(*changed, "--dry-run"))
    assert dry.returncode == 0, dry.output[-3000:]
    assert job_counts(dry.output) == {"train": 1, "total": 1}, dry.output[-3000:]
    assert f"output: {missing}" in dry.output and "Params have changed" not in dry.output

    proc = smk(moved, done, missing, extra=changed)
    assert proc.returncode == 0, proc.output[-3000:]
    assert json.loads((proc.workdir / missing / "run.json").read_text())["n_steps"] == 2
    assert finished.stat().st_mtime_ns == stamp
    again = smk(moved, done, missing, extra=(*changed, "--dry-run"))
    assert "Nothing to be done" in again.output, again.output[-3000:]


class _SlowCountingMirror(http.server.SimpleHTTPRequestHandler):
    """Serves the real MNIST files slowly (each download takes over a second), counting GETs."""

    gets: dict = {}
    lock = threading.Lock()

    def do_GET(self):
        name = self.path.lstrip("/")
        with self.lock:
            self.gets[name] = self.gets.get(name, 0) + 1
        path = MNIST_RAW / name
        if not path.is_file():
            self.send_error(404)
            return
        data = path.read_bytes()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        step = -(-len(data) // 8)
        for i in range(0, len(data), step):
            self.wfile.write(data[i:i + step])
            time.sleep(0.15)

    def log_message(self, *args):
        pass


def test_two_workflows_sharing_one_root_fetch_each_file_once_and_replace_nothing(tmp_path):
    _SlowCountingMirror.gets = {}
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _SlowCountingMirror)
    threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    mirror = f"http://127.0.0.1:{httpd.server_address[1]}/"
    root = tmp_path / "shared root"
    for i in (1, 2):
        (tmp_path / f"w{i}").mkdir()
    try:
        with cf.ThreadPoolExecutor(2) as pool:
            runs = [pool.submit(snakemake, tmp_path / f"w{i}", root, mirror, "download_mnist")
                    for i in (1, 2)]
            procs = [r.result() for r in runs]
    finally:
        httpd.shutdown()
        httpd.server_close()
    for proc in procs:
        assert proc.returncode == 0, proc.output[-3000:]
        assert (proc.workdir / MANIFEST).is_file()
    # Each archive was fetched once in all: the second workflow waited, found it verified and
    # kept it (a second fetch would have renamed a new copy over the first's file).
    assert _SlowCountingMirror.gets == {name: 1 for name in NAMES}
    assert sorted(p.name for p in raw_folder(root).iterdir()) == sorted(NAMES)
    for name in NAMES:
        assert (raw_folder(root) / name).read_bytes() == (MNIST_RAW / name).read_bytes()
