"""The downloader (data/download.py, data/transfer.py; prebuilt/download.py adds gdrive:) against
a local fault-injecting HTTP server (127.0.0.1, no internet)."""

from __future__ import annotations

import hashlib
import http.server
import io
import logging
import os
import threading
import time
import urllib.parse
import zipfile
from pathlib import Path

import pytest

from askdagger_mnist.data.transfer import CHUNK
from askdagger_mnist.prebuilt import download as dl
from askdagger_mnist.prebuilt.gdrive import gdrive_confirmation_url
from askdagger_mnist.cli import fetch_results
from askdagger_mnist.errors import UserError

STREAM_CAP = 32 << 20  # an "endless" stream of the test server ends here
FAST = dl.Options(attempts=4, backoff_s=0.01, connect_timeout_s=5, read_timeout_s=5)


class FaultServer:
    """Serves ``files[path] = bytes`` with Range support; ``faults[path]`` is a list of
    behaviours consumed one per request: 'drop' (send half the body, close), '503',
    'ignore_range' (answer 200 with the whole body whatever Range says, for all later
    requests), 'stall' (send half, then hang)."""

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.faults: dict[str, list[str]] = {}
        self.pages: dict[str, callable] = {}  # path -> fn(query dict) -> (status, ctype, body)
        # path -> the Content-Length it announces (None: none) while it streams zeros until the
        # client goes away, or STREAM_CAP bytes (so that a downloader without a limit ends)
        self.streams: dict[str, int | None] = {}
        self.streamed: dict[str, int] = {}  # path -> bytes the last stream of it sent
        self.log: list[tuple[str, str | None, int]] = []  # (path?query, Range, status)
        self.ignore_range = False
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def handle(self):
                try:
                    super().handle()
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client went away (a download stopped early): not the server's error

            def do_GET(self):
                parts = urllib.parse.urlsplit(self.path)
                rng = self.headers.get("Range")
                if parts.path in server.streams:
                    server.log.append((self.path, rng, 200))
                    return self._stream(parts.path, server.streams[parts.path])
                if parts.path in server.pages:
                    status, ctype, body = server.pages[parts.path](urllib.parse.parse_qs(parts.query))
                    server.log.append((self.path, rng, status))
                    return self._send(status, body, ctype)
                data = server.files.get(parts.path)
                if data is None:
                    server.log.append((self.path, rng, 404))
                    return self._send(404, b"not found", "text/plain")
                faults = server.faults.get(parts.path, [])
                fault = faults.pop(0) if faults else None
                if fault == "ignore_range":
                    server.ignore_range = True
                    fault = None
                if fault == "503":
                    server.log.append((self.path, rng, 503))
                    return self._send(503, b"busy", "text/plain")
                start = 0
                if rng and not server.ignore_range:
                    start = int(rng.split("=")[1].split("-")[0])
                status = 206 if start else 200
                server.log.append((self.path, rng, status))
                body = data[start:]
                self.send_response(status)
                self.send_header("Content-Type", "application/zip")
                self.send_header("Content-Length", str(len(body)))
                self.send_header("ETag", '"v1"')
                if status == 206:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.end_headers()
                if fault in ("drop", "stall"):
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    if fault == "stall":
                        time.sleep(1.5)
                    self.close_connection = True
                    return
                self.wfile.write(body)

            def _stream(self, path, announced):
                self.send_response(200)
                self.send_header("Content-Type", "application/zip")
                if announced is not None:
                    self.send_header("Content-Length", str(announced))
                self.send_header("Connection", "close")  # no length: the body ends with it
                self.end_headers()
                self.close_connection = True
                sent, block = 0, bytes(64 * 1024)
                server.streamed[path] = 0
                try:
                    while sent < STREAM_CAP:
                        self.wfile.write(block)
                        sent += len(block)
                        server.streamed[path] = sent
                except OSError:
                    pass  # the client stopped reading

            def _send(self, status, body, ctype):
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = FaultServer()
    yield s
    s.close()


@pytest.fixture(scope="module")
def payload() -> bytes:
    # Real bytes, not a pattern: a resume at the wrong offset would change the hash.
    return os.urandom(3 * CHUNK + 12345)


def _sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def _leftovers(d: Path) -> list[str]:
    return sorted(p.name for p in d.iterdir())


def test_plain_download_verifies_and_logs_progress(serve_dir, tmp_path, payload, caplog):
    src = tmp_path / "srv"
    src.mkdir()
    (src / "a.bin").write_bytes(payload)
    dest = tmp_path / "out" / "a.bin"
    with caplog.at_level(logging.INFO, logger="askdagger_mnist.data"):
        got = dl.download(serve_dir(src) + "a.bin", dest, _sha(payload), options=FAST)
    assert got == _sha(payload)
    assert dest.read_bytes() == payload
    assert _leftovers(dest.parent) == ["a.bin"]
    line = caplog.messages[-1]
    assert "3.0 MiB of 3.0 MiB (100.0%)" in line and "/s" in line


def test_dropped_connection_resumes_with_range(server, tmp_path, payload):
    server.files["/f.zip"] = payload
    server.faults["/f.zip"] = ["drop"]
    dest = tmp_path / "f.zip"
    dl.download(server.url + "/f.zip", dest, _sha(payload), options=FAST)
    assert dest.read_bytes() == payload
    (_, r1, s1), (_, r2, s2) = server.log
    assert (r1, s1) == (None, 200)
    # resumed from what had been written (whole chunks), not restarted
    offset = int(r2.removeprefix("bytes=").removesuffix("-"))
    assert 0 < offset <= len(payload) // 2 and s2 == 206
    assert _leftovers(tmp_path) == ["f.zip"]


def test_read_timeout_is_retried_and_resumed(server, tmp_path, payload):
    server.files["/f.zip"] = payload
    server.faults["/f.zip"] = ["stall"]
    opts = dl.Options(attempts=3, backoff_s=0.01, connect_timeout_s=5, read_timeout_s=0.3)
    dl.download(server.url + "/f.zip", tmp_path / "f.zip", _sha(payload), options=opts)
    assert (tmp_path / "f.zip").read_bytes() == payload
    assert [s for _, _, s in server.log] == [200, 206]


def test_503_twice_then_200_is_retried(server, tmp_path, payload):
    server.files["/f.zip"] = payload
    server.faults["/f.zip"] = ["503", "503"]
    dl.download(server.url + "/f.zip", tmp_path / "f.zip", _sha(payload), options=FAST)
    assert (tmp_path / "f.zip").read_bytes() == payload
    assert [s for _, _, s in server.log] == [503, 503, 200]


def test_ignored_range_restarts_from_zero(server, tmp_path, payload):
    server.files["/f.zip"] = payload
    server.faults["/f.zip"] = ["drop", "ignore_range"]
    dl.download(server.url + "/f.zip", tmp_path / "f.zip", _sha(payload), options=FAST)
    assert (tmp_path / "f.zip").read_bytes() == payload
    (_, r1, s1), (_, r2, s2) = server.log
    assert r2 is not None and s2 == 200  # asked to resume, got the whole file, started over


def test_wrong_sha256_fails_clearly_and_leaves_nothing(server, tmp_path, payload):
    server.files["/f.zip"] = payload
    with pytest.raises(UserError, match=r"sha256 .*expects 0{64}.*check the url and sha256"):
        dl.download(server.url + "/f.zip", tmp_path / "f.zip", "0" * 64, options=FAST)
    assert _leftovers(tmp_path) == []


def test_persistent_5xx_gives_up_naming_url_attempts_and_error(server, tmp_path, payload):
    server.files["/f.zip"] = payload
    server.faults["/f.zip"] = ["503"] * 10
    url = server.url + "/f.zip"
    with pytest.raises(UserError) as err:
        dl.download(url, tmp_path / "f.zip", options=dl.Options(attempts=3, backoff_s=0.01))
    msg = str(err.value)
    assert url in msg and "after 3 attempts" in msg and "HTTP 503" in msg and "run again" in msg
    assert len(server.log) == 3
    assert _leftovers(tmp_path) == []


def test_repeated_drops_exhaust_attempts_and_remove_part(server, tmp_path, payload):
    server.files["/f.zip"] = payload
    server.faults["/f.zip"] = ["drop"] * 10
    with pytest.raises(UserError, match="connection lost"):
        dl.download(server.url + "/f.zip", tmp_path / "f.zip", options=dl.Options(attempts=2, backoff_s=0.01))
    assert _leftovers(tmp_path) == []


def test_404_is_not_retried(server, tmp_path):
    with pytest.raises(UserError, match="HTTP 404"):
        dl.download(server.url + "/missing.zip", tmp_path / "m.zip", options=FAST)
    assert len(server.log) == 1
    assert _leftovers(tmp_path) == []


def test_bad_sources_are_refused():
    for bad in ("ftp://example.org/x.zip", "results.zip", "gdrive:../../etc"):
        with pytest.raises(UserError, match="url"):
            dl.resolve_source(bad)


# --- Google Drive's confirmation page, imitated ------------------------------------------------

DRIVE_PAGE = """<!DOCTYPE html><html><head><title>Google Drive - Virus scan warning</title></head>
<body><p>Google Drive can't scan this file for viruses.</p>
<form id="download-form" action="{action}" method="get">
<input type="submit" value="Download anyway"/>
<input type="hidden" name="id" value="{id}"><input type="hidden" name="export" value="download">
<input type="hidden" name="confirm" value="t"><input type="hidden" name="uuid" value="{uuid}">
</form></body></html>"""


def _drive(server: FaultServer, payload: bytes, file_id: str, page: str | None):
    uuid = "3f2a-77"

    def endpoint(q):
        if q.get("id") != [file_id]:
            return 404, "text/html", b"<html>no such file</html>"
        if q.get("confirm") == ["t"] and q.get("uuid") == [uuid]:
            return 200, "application/octet-stream", payload
        body = (page or DRIVE_PAGE).format(action=server.url + "/download", id=file_id, uuid=uuid)
        return 200, "text/html; charset=utf-8", body.encode()

    server.pages["/download"] = endpoint


def test_gdrive_large_file_confirmation(server, tmp_path, payload, monkeypatch):
    file_id = "1UhF13-qpdfFpXOlIPGdpeuwLAWfV98bt"
    _drive(server, payload, file_id, None)
    monkeypatch.setenv("ASKDAGGER_GDRIVE_BASE", server.url + "/download")
    dl.download(f"gdrive:{file_id}", tmp_path / "a.zip", _sha(payload), options=FAST)
    assert (tmp_path / "a.zip").read_bytes() == payload
    first, second = server.log
    assert "confirm" not in first[0] and "confirm=t" in second[0] and "uuid=3f2a-77" in second[0]


def test_gdrive_page_without_form_says_what_to_do(server, tmp_path, payload, monkeypatch):
    file_id = "1-pBiUDs3jmx1hV80obPptZdoyBFybkIn"
    _drive(server, payload, file_id, "<html><body>Quota exceeded</body></html>")
    monkeypatch.setenv("ASKDAGGER_GDRIVE_BASE", server.url + "/download")
    with pytest.raises(UserError, match=f"drive.google.com/file/d/{file_id}/view"):
        dl.download(f"gdrive:{file_id}", tmp_path / "a.zip", options=FAST)
    assert _leftovers(tmp_path) == []


def test_gdrive_old_style_confirm_link():
    page = b'<html><a id="uc-download-link" href="/uc?export=download&amp;confirm=AbC1&amp;id=XYZ">Download anyway</a></html>'
    url = gdrive_confirmation_url("https://drive.google.com/uc?export=download&id=XYZ", page)
    assert url == "https://drive.google.com/uc?export=download&confirm=AbC1&id=XYZ"
    assert gdrive_confirmation_url("https://x/", b"<html><p>hello</p></html>") is None


# --- archives: the checks before a download is accepted ---------------------------------------


def _authors_zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("results_success/r0.1_s0.5_uTrue_iTrue_b128_e5/0/results.npy", os.urandom(5000))
    return buf.getvalue()


def test_truncated_zip_is_rejected_and_nothing_left(server, tmp_path, capsys):
    data = _authors_zip()
    server.files["/results_success.zip"] = data[: len(data) * 2 // 3]
    out = tmp_path / "archives" / "a.zip"
    rc = fetch_results.main(["download", "--url", server.url + "/results_success.zip",
                             "--format", "authors", "--out", str(out), "--attempts", "1"])
    assert rc == 1
    assert "error:" in capsys.readouterr().err
    assert _leftovers(out.parent) == []
    # the complete archive passes the same checks
    server.files["/results_success.zip"] = data
    assert fetch_results.main(["download", "--url", server.url + "/results_success.zip",
                               "--format", "authors", "--out", str(out)]) == 0
    assert out.read_bytes() == data


def test_html_instead_of_zip_is_rejected(server, tmp_path, capsys):
    server.pages["/results.zip"] = lambda q: (200, "text/html", b"<!DOCTYPE html><html>Sign in</html>")
    out = tmp_path / "a.zip"
    rc = fetch_results.main(["download", "--url", server.url + "/results.zip",
                             "--format", "authors", "--out", str(out)])
    assert rc == 1
    err = capsys.readouterr().err
    assert err.startswith("error:") and "HTML page, not a zip archive" in err
    assert _leftovers(tmp_path) == []


def test_zip_without_authors_runs_is_rejected(server, tmp_path):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("README.txt", "nothing here")
    server.files["/x.zip"] = buf.getvalue()
    with pytest.raises(UserError, match="not an archive of the authors' results"):
        fetch_results.cmd_download(server.url + "/x.zip", tmp_path / "x.zip", None, "authors", 2)
    assert _leftovers(tmp_path) == []


def test_file_url_is_copied_and_checked_like_a_download(tmp_path, payload):
    src = tmp_path / "by hand" / "results.zip"
    src.parent.mkdir()
    src.write_bytes(payload)
    url = "file://" + urllib.parse.quote(str(src))
    assert dl.download(url, tmp_path / "out" / "a.zip", _sha(payload)) == _sha(payload)
    assert (tmp_path / "out" / "a.zip").read_bytes() == payload
    with pytest.raises(UserError, match="sha256"):
        dl.download(url, tmp_path / "out" / "b.zip", "f" * 64)
    with pytest.raises(UserError, match="does not exist"):
        dl.download("file:///nonexistent/x.zip", tmp_path / "out" / "c.zip")
    assert _leftovers(tmp_path / "out") == ["a.zip"]


def test_a_killed_download_s_partial_file_is_removed_by_the_next_one_and_a_live_one_s_kept(
        server, tmp_path, payload):
    """SIGKILL leaves the temporary (maybe hundreds of MB) that no finally could remove: the
    next download of the same file removes it, and the partial files of earlier versions,
    but never a live download's, nor any other file."""
    import signal
    import subprocess
    import sys

    from askdagger_mnist.data import atomic

    server.files["/f.zip"] = payload
    server.faults["/f.zip"] = ["stall"] * 100  # half the file, then a pause: it keeps retrying
    dest = tmp_path / "f.zip"
    proc = subprocess.Popen([sys.executable, "-c", (
        "from askdagger_mnist.data.download import Options, download\n"
        f"download({server.url + '/f.zip'!r}, {str(dest)!r}, "
        "options=Options(attempts=100, backoff_s=0.01, read_timeout_s=30))\n")])
    try:
        deadline = time.monotonic() + 30
        while not [p for p in tmp_path.glob(".f.zip.*.tmp") if p.stat().st_size]:
            assert time.monotonic() < deadline and proc.poll() is None, "no partial file appeared"
            time.sleep(0.05)
        (part,) = tmp_path.glob(".f.zip.*.tmp")
        os.utime(part, (time.time() - 600, time.time() - 600))
        assert atomic.remove_stale_temporaries(dest) == [] and part.exists()  # live: kept
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert part.exists()  # what a killed download leaves
    os.utime(part, (time.time() - 600, time.time() - 600))
    others = [".f.zip.notes.tmp", ".g.zip.0123abcd.tmp", "f.zip.partial"]
    for name in [*others, "f.zip.part", ".f.zip.4242-0badcafe.part"]:  # then earlier versions'
        (tmp_path / name).write_bytes(b"x")
    server.faults["/f.zip"] = []
    assert dl.download(server.url + "/f.zip", dest, _sha(payload), options=FAST) == _sha(payload)
    assert _leftovers(tmp_path) == sorted([*others, "f.zip"])


# --- every download is bounded (issue 25) ---------------------------------------------------------


def test_an_endless_stream_is_stopped_at_the_limit_in_one_sentence_and_nothing_is_left(
        server, tmp_path, capsys):
    server.streams["/endless.zip"] = None  # no Content-Length: the size is known at the end only
    out = tmp_path / "archives" / "a.zip"
    url = server.url + "/endless.zip"
    rc = fetch_results.main(["download", "--url", url, "--format", "authors", "--out", str(out),
                             "--max-mib", "1"])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert rc == 1
    assert err.startswith(f"error: {url} sent more than the download limit of 1.0 MiB"), err
    assert "max_download_mib" in err and "--max-mib" in err and err.count(". ") == 0, err
    assert _leftovers(out.parent) == []
    assert server.streamed["/endless.zip"] < STREAM_CAP  # the downloader stopped reading


def test_a_content_length_over_the_limit_is_refused_before_anything_is_streamed(
        server, tmp_path, monkeypatch):
    from askdagger_mnist.data import transfer

    written = []
    monkeypatch.setattr(transfer, "_write_body", lambda *args: written.append(args))
    server.streams["/big.zip"] = 5 << 30  # announces 5 GiB
    url = server.url + "/big.zip"
    with pytest.raises(dl.DownloadFailed) as exc:
        dl.download(url, tmp_path / "big.zip", options=dl.Options(attempts=3, max_bytes=1 << 20))
    assert str(exc.value).startswith(f"{url} announces 5.0 GiB, more than the download limit of "
                                     "1.0 MiB"), exc.value
    assert written == [] and len(server.log) == 1  # refused at the headers, never retried
    assert _leftovers(tmp_path) == []


def test_a_local_file_over_the_limit_is_refused_before_it_is_copied(tmp_path, payload):
    src = tmp_path / "by hand.zip"
    src.write_bytes(payload)
    out = tmp_path / "out"
    with pytest.raises(dl.DownloadFailed, match=r"is 3\.0 MiB, more than the download limit of 1\.0 MiB"):
        dl.download(src.as_uri(), out / "a.zip", options=dl.Options(max_bytes=1 << 20))
    assert _leftovers(out) == []


def test_the_default_limit_is_the_settings_one_and_above_any_archive_the_workflow_fetches():
    from askdagger_mnist.settings import CONFIG_DEFAULTS, MAX_DOWNLOAD_MIB

    assert dl.Options().max_bytes == MAX_DOWNLOAD_MIB << 20 == CONFIG_DEFAULTS["max_download_mib"] << 20
    assert fetch_results.build_parser().parse_args(
        ["download", "--url", "x", "--format", "bundle", "--out", "x"]).max_mib == MAX_DOWNLOAD_MIB


def test_a_full_disk_during_a_download_is_one_sentence_naming_the_file_and_nothing_is_left(
        server, tmp_path, payload, monkeypatch, capsys):
    """ENOSPC halfway: not retried as a network failure, not a traceback."""
    import errno

    from askdagger_mnist.data import transfer

    class FillsUp(io.FileIO):
        def write(self, data):
            if self.tell() + len(data) > CHUNK:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return super().write(data)

    monkeypatch.setattr(transfer, "open", lambda path, mode: FillsUp(path, mode.replace("b", "")),
                        raising=False)
    server.files["/f.zip"] = payload
    out = tmp_path / "archives" / "f.zip"
    rc = fetch_results.main(["download", "--url", server.url + "/f.zip", "--format", "authors",
                             "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(server.log) == 1
    assert err[-1] == (f"error: {out} could not be written: no space left on its disk (nothing "
                       "half-written was kept); free space there and rerun."), err
    assert [line for line in err if "error" in line.lower() or "Traceback" in line] == err[-1:]
    assert _leftovers(out.parent) == []


@pytest.mark.parametrize("archive", ["no authors' runs", "truncated"])
def test_a_refused_archive_s_error_names_no_file_that_does_not_exist(server, tmp_path, capsys, archive):
    """The checks run on the temporary file, removed when they fail: the sentence must name the
    URL (and files that exist), never that temporary."""
    data = _authors_zip()
    if archive == "truncated":
        data = data[: len(data) * 2 // 3]
    else:
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            zf.writestr("README.txt", "nothing here")
        data = buf.getvalue()
    server.files["/x.zip"] = data
    out = tmp_path / "archives" / "x.zip"
    url = server.url + "/x.zip"
    rc = fetch_results.main(["download", "--url", url, "--format", "authors", "--out", str(out),
                             "--attempts", "1"])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert rc == 1 and err.startswith(f"error: {url} "), err  # the URL, not a file
    named = [w.strip("'\",:;()") for w in err.split() if str(tmp_path) in w]
    assert all(Path(p).exists() for p in named), named
    assert ".tmp" not in err and _leftovers(out.parent) == []
