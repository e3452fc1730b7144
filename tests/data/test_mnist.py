"""MNIST download (torchvision, from a local mirror over HTTP), MD5 checks and loading."""

import shutil
import subprocess
import sys

import pytest

from askdagger_mnist.data.mnist import RESOURCES, ensure_mnist, load_mnist_train, raw_folder
from askdagger_mnist.errors import UserError
from conftest import MNIST_RAW, MNIST_ROOT

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


def test_corrupt_file_is_named_with_what_to_do(tmp_path):
    raw = raw_folder(tmp_path)
    raw.mkdir(parents=True)
    for name in NAMES:
        shutil.copy(MNIST_RAW / name, raw / name)
    data = bytearray((raw / NAMES[1]).read_bytes())
    data[100] ^= 0xFF
    (raw / NAMES[1]).write_bytes(bytes(data))
    with pytest.raises(UserError, match=r"train-labels-idx1-ubyte\.gz is corrupt .*delete it"):
        ensure_mnist(tmp_path, ["http://127.0.0.1:9/"])
    with pytest.raises(UserError, match="train-labels-idx1-ubyte.gz is corrupt"):
        load_mnist_train(tmp_path)


def test_missing_file_on_load_names_it(tmp_path):
    with pytest.raises(UserError, match=r"train-images-idx3-ubyte\.gz is missing: run the download_mnist rule"):
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

    from askdagger_mnist.data.mnist import DEFAULT_MIRRORS

    assert list(RESOURCES) == [tuple(r) for r in MNIST.resources]
    assert list(DEFAULT_MIRRORS) == list(MNIST.mirrors)
