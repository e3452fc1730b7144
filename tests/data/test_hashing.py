"""The one hashing helper (data/hashing.py): digests as hashlib's, several in one read."""

from __future__ import annotations

import builtins
import hashlib
import os

from askdagger_mnist.data import hashing


def test_digests_equal_hashlib_s_across_chunk_boundaries(tmp_path):
    data = os.urandom(2 * hashing.CHUNK + 777)
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    got = hashing.file_hashes(path, ("sha256", "md5"))
    assert got == {"sha256": hashlib.sha256(data).hexdigest(), "md5": hashlib.md5(data).hexdigest()}
    assert hashing.file_hash(path) == got["sha256"] and hashing.file_hash(path, "md5") == got["md5"]
    (tmp_path / "empty").write_bytes(b"")
    assert hashing.file_hash(tmp_path / "empty") == hashlib.sha256(b"").hexdigest()


def test_a_download_reads_its_file_once_for_every_hash_it_checks(tmp_path, monkeypatch):
    from askdagger_mnist.data import download as dl

    data = os.urandom(3 * hashing.CHUNK + 5)
    src = tmp_path / "src.bin"
    src.write_bytes(data)
    reads = []
    real_open = builtins.open

    def counting_open(file, mode="r", *args, **kwargs):
        if mode == "rb" and str(file).endswith(".tmp"):
            reads.append(file)
        return real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", counting_open)
    got = dl.download(src.as_uri(), tmp_path / "out.bin", hashlib.sha256(data).hexdigest(),
                      md5=hashlib.md5(data).hexdigest())
    assert got == hashlib.sha256(data).hexdigest()
    assert len(reads) == 1, reads
