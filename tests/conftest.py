"""Shared test fixtures: paths to the real data (resolved once, by data_sources.py) and a
local HTTP file server on 127.0.0.1.

Tests marked ``needs_mnist`` or ``needs_reference`` skip, with one line saying what is missing
and how to provide it, when data_sources finds no MNIST or no runs of the original code;
the floor test skips when the package index cannot be reached.
"""

from __future__ import annotations

import functools
import http.server
import threading
from pathlib import Path

import pytest

from data_sources import REPO, index_reachable, resolve_mnist, resolve_reference
from snakemake_floor import install_floor

MNIST_SOURCE = resolve_mnist()
REFERENCE_SOURCE = resolve_reference()
_NOWHERE = REPO / "tests" / "data-not-available"  # a path that never exists (tests then skip)
MNIST_ROOT = MNIST_SOURCE.root or _NOWHERE  # holds MNIST/raw/*.gz, as torchvision lays it out
MNIST_RAW = MNIST_ROOT / "MNIST" / "raw"
REFERENCE_RESULTS = (REFERENCE_SOURCE.root or _NOWHERE) / "original_results"
# Four more runs of the original (sensitivity, s_des 0.9, reps 2-5): six in that configuration.
EXTRA_REFERENCE_RESULTS = (REFERENCE_SOURCE.root or _NOWHERE) / "extra_original_results"


def pytest_report_header(config):
    return [f"MNIST: {MNIST_SOURCE.how}", f"original's reference runs: {REFERENCE_SOURCE.how}"]


def pytest_collection_modifyitems(config, items):
    """Markers by path: every test under tests/workflow/ starts Snakemake (``workflow``); the
    floor and SLURM tests install from the package index or as root (``system``)."""
    for item in items:
        path = Path(str(item.fspath))
        if "workflow" in path.parent.parts[-1:]:
            item.add_marker(pytest.mark.workflow)
        if path.name in ("test_floors.py", "test_slurm.py"):
            item.add_marker(pytest.mark.system)


def pytest_runtest_setup(item):
    if item.get_closest_marker("needs_mnist") and MNIST_SOURCE.root is None:
        pytest.skip(MNIST_SOURCE.how)
    if item.get_closest_marker("needs_reference") and REFERENCE_SOURCE.root is None:
        pytest.skip(REFERENCE_SOURCE.how)
ALL_MODES = ("sensitivity", "specificity", "success")


def assert_same_run(a_dir: Path, b_dir: Path, info_keys=("metrics",)) -> None:
    """Two run directories hold the same run: every array and model tensor equal, bit for
    bit, and run.json's ``info_keys`` entries equal."""
    import numpy as np
    import torch

    from askdagger_mnist.data.rundir import read_arrays, read_info

    a, b = read_arrays(a_dir), read_arrays(b_dir)
    assert a.keys() == b.keys()
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)
    sa = torch.load(Path(a_dir) / "model.pt", weights_only=True)
    sb = torch.load(Path(b_dir) / "model.pt", weights_only=True)
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    for key in info_keys:
        assert read_info(a_dir)[key] == read_info(b_dir)[key], key


def authors_zip(path: Path, roots=(REFERENCE_RESULTS, EXTRA_REFERENCE_RESULTS), modes=ALL_MODES) -> Path:
    """The reference runs of the original code under ``roots`` (results.npy only), zipped in
    the authors' archive layout ``results_{mode}/r.._s.._u.._i.._b.._e../{rep}/results.npy``."""
    import zipfile

    with zipfile.ZipFile(path, "w") as zf:
        for root in roots:
            for npy in sorted(Path(root).glob("results_*/*/*/results.npy")):
                rel = npy.relative_to(root)
                if rel.parts[0].removeprefix("results_") in modes:
                    zf.write(npy, rel.as_posix())
    return path


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep pytest output clean
        pass


class FileServer:
    """Serves a directory over HTTP on 127.0.0.1 (a random free port) in a thread."""

    def __init__(self, directory: Path):
        handler = functools.partial(_QuietHandler, directory=str(directory))
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def serve_dir():
    """Factory: ``serve_dir(path)`` -> base URL (ends with '/'), stopped after the test."""
    servers: list[FileServer] = []

    def start(directory: Path) -> str:
        server = FileServer(Path(directory))
        servers.append(server)
        return server.url

    yield start
    for server in servers:
        server.close()


@pytest.fixture
def mnist_mirror(serve_dir):
    """A local MNIST mirror serving the real raw .gz files (data_sources.resolve_mnist)."""
    if MNIST_SOURCE.root is None:
        pytest.skip(MNIST_SOURCE.how)
    return serve_dir(MNIST_RAW)


@pytest.fixture(scope="session")
def floor_venv(tmp_path_factory) -> Path:
    """A virtualenv holding the floors of Snakemake and its SLURM plugin (snakemake_floor.py),
    installed once per session; skips, saying why, when the package index cannot be reached."""
    reachable, why = index_reachable()
    if not reachable:
        pytest.skip(why)
    venv = tmp_path_factory.mktemp("floor") / "venv"
    install_floor(venv)
    return venv
