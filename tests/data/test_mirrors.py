"""Fetching MNIST from mirrors (data/mirrors.py) without the real archives: which failures end
the fetch at once (no mirror can help) and which move on to the next mirror."""

from __future__ import annotations

import pytest

from askdagger_mnist.data import atomic
from askdagger_mnist.data.mnist import ALL_FILES, prepare_mnist, raw_folder
from askdagger_mnist.errors import UserError

MIRRORS = ["http://127.0.0.1:9/first/", "http://127.0.0.1:9/second/"]


@pytest.fixture
def tried(monkeypatch):
    """The URLs the downloader was asked for; each call raises ``tried.error``."""
    from askdagger_mnist.data import download as dl

    class Tried(list):
        error: BaseException = RuntimeError("unset")

    calls = Tried()

    def fake(url, dest, *args, **kwargs):
        calls.append(url)
        raise calls.error

    monkeypatch.setattr(dl, "download", fake)
    return calls


def test_a_full_disk_is_final_and_said_as_such_not_a_network_problem(tmp_path, tried):
    raw = raw_folder(tmp_path)
    tried.error = atomic.DiskFull(raw / ALL_FILES[0], "no space left on its disk")
    with pytest.raises(UserError) as exc:
        prepare_mnist(tmp_path, MIRRORS)
    message = str(exc.value)
    assert tried == [MIRRORS[0] + ALL_FILES[0]]  # neither the next mirror nor the next file
    assert "no space left" in message and "free space" in message, message
    assert "could not download" not in message and "network" not in message, message
    assert "\n" not in message


def test_a_folder_that_cannot_be_written_is_final_too(tmp_path, tried):
    raw = raw_folder(tmp_path)
    tried.error = atomic.NotWritable(raw / ALL_FILES[0], "Read-only file system")
    with pytest.raises(UserError, match=r"cannot write MNIST file.*Read-only file system.*writable folder"):
        prepare_mnist(tmp_path, MIRRORS)
    assert tried == [MIRRORS[0] + ALL_FILES[0]]


def test_a_failing_mirror_moves_on_to_the_next(tmp_path, tried):
    tried.error = ConnectionError("refused")
    with pytest.raises(UserError, match="could not download MNIST file"):
        prepare_mnist(tmp_path, MIRRORS)
    assert tried == [m + name for name in ALL_FILES for m in MIRRORS]


def test_without_requests_the_fetch_is_one_sentence_saying_so(tmp_path, monkeypatch):
    import sys

    for name, module in list(sys.modules.items()):  # the modules that imported requests
        if name.startswith("askdagger_mnist.") and getattr(module, "requests", None) is not None:
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "requests", None)  # import requests: ModuleNotFoundError
    with pytest.raises(UserError) as exc:
        prepare_mnist(tmp_path, MIRRORS)
    message = str(exc.value)
    assert message.startswith("cannot download MNIST file(s) " + ", ".join(ALL_FILES)), message
    assert "lacks the package requests" in message and "envs/train.yaml" in message, message
    assert "\n" not in message and list(raw_folder(tmp_path).iterdir()) == []


def test_a_mirror_gets_60_s_to_connect_and_60_s_to_answer(tmp_path, monkeypatch):
    from askdagger_mnist.data import download as dl

    seen = []
    monkeypatch.setattr(dl, "download", lambda url, dest, *a, options=None, **k: seen.append(options))
    prepare_mnist(tmp_path, MIRRORS[:1])
    assert len(seen) == len(ALL_FILES)
    assert all((o.attempts, o.connect_timeout_s, o.read_timeout_s) == (1, 60, 60) for o in seen)
