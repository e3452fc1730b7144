"""MNIST download (from local mirrors over HTTP and file://), MD5 checks and loading.

Whatever goes wrong during a download (bad bytes, a connection dying mid-file, a file://
mirror lacking a file, an exception of any type, SIGTERM), nothing partial may be left under
the user's root, and a valid file already there is never touched.
"""

import hashlib
import http.server
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time

import pytest
import requests

from askdagger_mnist.data.mnist import RESOURCES, ensure_mnist, load_mnist_train, raw_folder
from askdagger_mnist.errors import UserError
from conftest import MNIST_RAW, MNIST_ROOT

pytestmark = pytest.mark.needs_mnist

NAMES = [name for name, _ in RESOURCES]


def test_download_from_local_mirror_then_nothing_to_do(tmp_path, mnist_mirror):
    got = ensure_mnist(tmp_path, [mnist_mirror])
    assert sorted(got) == sorted(NAMES)
    for name in NAMES:
        assert (raw_folder(tmp_path) / name).read_bytes() == (MNIST_RAW / name).read_bytes()
    stamps = {n: (raw_folder(tmp_path) / n).stat().st_mtime_ns for n in NAMES}
    assert ensure_mnist(tmp_path, ["http://127.0.0.1:9/unreachable/"]) == []  # valid: no download
    assert stamps == {n: (raw_folder(tmp_path) / n).stat().st_mtime_ns for n in NAMES}
    images, labels = load_mnist_train(tmp_path)
    assert images.shape == (60000, 28, 28) and labels.shape == (60000,)


def test_downloads_only_missing_files_and_falls_back_to_next_mirror(tmp_path, mnist_mirror, serve_dir):
    raw = raw_folder(tmp_path)
    raw.mkdir(parents=True)
    for name in NAMES[1:]:
        shutil.copy(MNIST_RAW / name, raw / name)
    empty_mirror = serve_dir(tmp_path / "nothing-here")  # 404 for everything
    assert ensure_mnist(tmp_path, [empty_mirror, mnist_mirror]) == [NAMES[0]]


def test_read_only_folder_with_the_archives_is_used_as_is():
    assert ensure_mnist(MNIST_ROOT, ["http://127.0.0.1:9/never-used/"]) == []
    images, labels = load_mnist_train(MNIST_ROOT)
    assert images.dtype.is_floating_point is False and int(labels[0]) == 5


def test_corrupt_file_is_named_with_what_to_do_and_kept(tmp_path, mnist_mirror):
    raw = raw_folder(tmp_path)
    raw.mkdir(parents=True)
    for name in NAMES:
        shutil.copy(MNIST_RAW / name, raw / name)
    data = bytearray((raw / NAMES[1]).read_bytes())
    data[100] ^= 0xFF
    (raw / NAMES[1]).write_bytes(bytes(data))
    with pytest.raises(UserError, match=r"train-labels-idx1-ubyte\.gz is corrupt .*delete it"):
        ensure_mnist(tmp_path, [mnist_mirror])  # a working mirror: still, the user's file stays
    assert (raw / NAMES[1]).read_bytes() == bytes(data)
    with pytest.raises(UserError, match="train-labels-idx1-ubyte.gz is corrupt"):
        load_mnist_train(tmp_path)
    (raw / NAMES[1]).unlink()  # the advice: delete it and download again
    assert ensure_mnist(tmp_path, [mnist_mirror]) == [NAMES[1]]
    assert (raw / NAMES[1]).read_bytes() == (MNIST_RAW / NAMES[1]).read_bytes()


def test_missing_file_on_load_names_it_and_the_command(tmp_path):
    with pytest.raises(
        UserError,
        match=r"train-images-idx3-ubyte\.gz is missing: .*python -m askdagger_mnist\.cli\.download_mnist",
    ):
        load_mnist_train(tmp_path)


def test_mirror_serving_bad_bytes_leaves_nothing_behind(tmp_path, serve_dir):
    bad = tmp_path / "bad-mirror"
    bad.mkdir()
    for name in NAMES:
        (bad / name).write_bytes(b"not mnist at all")
    root = tmp_path / "root"
    with pytest.raises(UserError, match="could not download MNIST file"):
        ensure_mnist(root, [serve_dir(bad)])
    assert list(raw_folder(root).iterdir()) == []


def test_mirror_serving_bad_bytes_falls_back_to_the_next_one(tmp_path, serve_dir, mnist_mirror):
    bad = tmp_path / "bad-mirror"
    bad.mkdir()
    for name in NAMES:
        (bad / name).write_bytes(b"not mnist at all")
    root = tmp_path / "root"
    assert sorted(ensure_mnist(root, [serve_dir(bad), mnist_mirror])) == sorted(NAMES)
    assert sorted(p.name for p in raw_folder(root).iterdir()) == sorted(NAMES)


def file_url(folder) -> str:
    return folder.resolve().as_uri() + "/"


def test_file_url_mirror_is_copied_and_md5_checked(tmp_path):
    got = ensure_mnist(tmp_path / "root", [file_url(MNIST_RAW)])
    assert sorted(got) == sorted(NAMES)
    raw = raw_folder(tmp_path / "root")
    assert sorted(p.name for p in raw.iterdir()) == sorted(NAMES)
    umask = os.umask(0)
    os.umask(umask)
    for name in NAMES:
        assert (raw / name).read_bytes() == (MNIST_RAW / name).read_bytes()
        # Permissions as any new file gets them (a shared root stays readable by others).
        assert (raw / name).stat().st_mode & 0o777 == 0o666 & ~umask


def test_file_url_mirror_lacking_a_file_keeps_what_it_got_and_leaves_nothing_partial(tmp_path):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    has = [NAMES[0], NAMES[3]]
    for name in has:
        shutil.copy(MNIST_RAW / name, mirror / name)
    root = tmp_path / "root"
    with pytest.raises(UserError, match=r"could not download MNIST file\(s\) train-labels-idx1-ubyte\.gz, "
                                        r"t10k-images-idx3-ubyte\.gz into .*no such file"):  # fmt: skip
        ensure_mnist(root, [file_url(mirror)])
    raw = raw_folder(root)
    assert sorted(p.name for p in raw.iterdir()) == sorted(has)  # complete and verified: kept
    for name in has:
        assert (raw / name).read_bytes() == (MNIST_RAW / name).read_bytes()
    # The next run fetches only the two that are still missing.
    assert ensure_mnist(root, [file_url(mirror), file_url(MNIST_RAW)]) == [NAMES[1], NAMES[2]]


class _DyingHandler(http.server.BaseHTTPRequestHandler):
    """Announces the real file's length, sends half of it, then closes (or stalls first)."""

    stall = threading.Event()  # set: stall after the first half until released
    release = threading.Event()

    def do_GET(self):
        data = (MNIST_RAW / self.path.lstrip("/")).read_bytes()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data[: len(data) // 2])
        self.wfile.flush()
        if self.stall.is_set():
            self.release.wait(30)
        self.close_connection = True

    def log_message(self, *args):
        pass


@pytest.fixture
def dying_mirror():
    _DyingHandler.stall.clear()
    _DyingHandler.release.clear()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _DyingHandler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    _DyingHandler.release.set()
    httpd.shutdown()
    httpd.server_close()


def test_mirror_dying_mid_file_leaves_nothing_partial(tmp_path, dying_mirror, mnist_mirror):
    root = tmp_path / "root"
    with pytest.raises(UserError, match="could not download MNIST file"):
        ensure_mnist(root, [dying_mirror])
    assert list(raw_folder(root).iterdir()) == []
    assert sorted(ensure_mnist(root, [dying_mirror, mnist_mirror])) == sorted(NAMES)
    assert sorted(p.name for p in raw_folder(root).iterdir()) == sorted(NAMES)


class _Exploding:
    """A response (requests') that hands out one chunk of a real file, then raises ``exc``."""

    def __init__(self, exc, url):
        self.exc, self.url = exc, url
        self.status_code, self.reason = 200, "OK"
        self.headers = {"Content-Length": "9912422"}

    def iter_content(self, *args):
        yield (MNIST_RAW / NAMES[0]).read_bytes()[:65536]
        raise self.exc

    def __enter__(self):
        return self

    def __exit__(self, *args):
        return False

    def close(self):
        pass


@pytest.mark.parametrize("exc", [ValueError("odd bytes"), MemoryError(), KeyboardInterrupt()],
                         ids=["ValueError", "MemoryError", "KeyboardInterrupt"])  # fmt: skip
def test_no_partial_file_whatever_the_exception(tmp_path, monkeypatch, exc):
    monkeypatch.setattr(requests.Session, "get", lambda session, url, *a, **k: _Exploding(exc, url))
    root = tmp_path / "root"
    if isinstance(exc, Exception):  # one sentence naming it, not a traceback
        with pytest.raises(UserError, match=rf"could not download MNIST file.*{type(exc).__name__}"):
            ensure_mnist(root, ["http://mirror.invalid/"])
    else:  # Ctrl-C stays Ctrl-C
        with pytest.raises(KeyboardInterrupt):
            ensure_mnist(root, ["http://mirror.invalid/"])
    assert list(raw_folder(root).iterdir()) == []


def test_sigterm_mid_download_leaves_nothing_partial(tmp_path, dying_mirror):
    _DyingHandler.stall.set()
    raw = raw_folder(tmp_path)
    proc = subprocess.Popen(
        [sys.executable, "-m", "askdagger_mnist.cli.download_mnist", "--root", str(tmp_path),
         "--mirror", dying_mirror],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while not (raw.is_dir() and any(p.stat().st_size > 0 for p in raw.iterdir())):
        assert proc.poll() is None and time.monotonic() < deadline, "the download never started"
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode != 0
    assert list(raw.iterdir()) == [], err


def test_training_files_only_when_the_test_files_cannot_be_had(tmp_path):
    from askdagger_mnist.data.mnist import TRAIN_FILES, prepare_mnist

    raw = raw_folder(tmp_path)
    raw.mkdir(parents=True)
    for name in TRAIN_FILES:
        shutil.copy(MNIST_RAW / name, raw / name)
    with pytest.raises(UserError, match="could not download MNIST file.*t10k-images"):
        ensure_mnist(tmp_path, ["http://127.0.0.1:9/"])  # all four wanted
    state = prepare_mnist(tmp_path, ["http://127.0.0.1:9/"], required=TRAIN_FILES)
    assert state.downloaded == [] and state.absent == [NAMES[2], NAMES[3]]
    assert any("t10k-images-idx3-ubyte.gz" in note for note in state.notes)
    assert sorted(p.name for p in raw.iterdir()) == sorted(TRAIN_FILES)


def test_cli_writes_a_verified_manifest(tmp_path, mnist_mirror):
    raw = raw_folder(tmp_path / "root")
    raw.mkdir(parents=True)
    shutil.copy(MNIST_RAW / NAMES[1], raw / NAMES[1])
    manifest = tmp_path / "results" / "mnist.verified.json"
    proc = subprocess.run(
        [sys.executable, "-m", "askdagger_mnist.cli.download_mnist", "--root", str(tmp_path / "root"),
         "--mirror", mnist_mirror, "--require", "train", "--manifest", str(manifest)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "downloaded and verified" in proc.stderr
    info = json.loads(manifest.read_text())
    assert info["root"] == str(tmp_path / "root")
    assert sorted(info["files"]) == sorted(NAMES)
    for name in NAMES:
        real = (MNIST_RAW / name).read_bytes()
        assert info["files"][name] == {"size": len(real), "md5": hashlib.md5(real).hexdigest()}
    assert info["absent"] == []
    assert [p.name for p in manifest.parent.iterdir()] == [manifest.name]  # no temporary left


def test_cli_reports_failure_in_one_sentence(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "askdagger_mnist.cli.download_mnist", "--root", str(tmp_path),
         "--mirror", "http://127.0.0.1:9/"],
        capture_output=True, text=True,
    )
    assert proc.returncode == 1
    assert proc.stderr.startswith("error: could not download MNIST file(s)")
    assert "Traceback" not in proc.stderr


def test_restated_checksums_and_mirrors_are_torchvision_s():
    from torchvision.datasets import MNIST

    from askdagger_mnist.settings import MNIST_MIRRORS

    assert list(RESOURCES) == [tuple(r) for r in MNIST.resources]
    assert list(MNIST_MIRRORS) == list(MNIST.mirrors)
