"""Zip extraction refuses hostile members before writing anything."""

from __future__ import annotations

import stat
import warnings
import zipfile
from pathlib import Path

import pytest

from askdagger_mnist.errors import UserError
from askdagger_mnist.prebuilt.safe_extract import Limits, safe_extract


def _zip(path: Path, members: list[tuple]) -> Path:
    """members: (name, data) or (ZipInfo, data)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about duplicate names
        with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for name, data in members:
                zf.writestr(name, data)
    return path


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def _symlink(name: str, target: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.create_system = 3
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info


def _fifo(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.create_system = 3
    info.external_attr = (stat.S_IFIFO | 0o644) << 16
    return info


def test_regular_archive_is_extracted_atomically(tmp_path):
    members = [
        ("results_sensitivity/", b""),
        ("results_sensitivity/r0.1_s0.9_uTrue_iTrue_b128_e5/0/results.npy", b"abc" * 1000),
        ("results_sensitivity/r0.1_s0.9_uTrue_iTrue_b128_e5/0/model.pt", b"\x00\x01" * 10),
        ("./notes.txt", b"hello"),
    ]
    archive = _zip(tmp_path / "a.zip", members)
    dest = tmp_path / "out" / "x"
    files = safe_extract(archive, dest)
    assert sorted(p.relative_to(dest).as_posix() for p in files) == [
        "notes.txt",
        "results_sensitivity/r0.1_s0.9_uTrue_iTrue_b128_e5/0/model.pt",
        "results_sensitivity/r0.1_s0.9_uTrue_iTrue_b128_e5/0/results.npy",
    ]
    assert (dest / "results_sensitivity/r0.1_s0.9_uTrue_iTrue_b128_e5/0/results.npy").read_bytes() == b"abc" * 1000
    assert sorted(p.name for p in dest.parent.iterdir()) == ["x"]  # no temp dir left
    with pytest.raises(UserError, match="already exists"):
        safe_extract(archive, dest)


HOSTILE = {
    "parent traversal": ([("ok.txt", b"1"), ("../../x", b"pwned")], r"'\.\.' component"),
    "nested traversal": ([("a/../../../x", b"pwned")], r"'\.\.' component"),
    "absolute path": ([("ok.txt", b"1"), ("/tmp/askdagger-abs-x", b"pwned")], "absolute path"),
    "drive letter": ([("C:/x", b"pwned")], "absolute path"),
    "backslash": ([("..\\..\\x", b"pwned")], "backslash"),
    "symlink": ([(_symlink("link", "/etc/passwd"), b"/etc/passwd"), ("link/x", b"1")], "symbolic link"),
    "fifo": ([(_fifo("pipe"), b"")], "not a regular file"),
    "duplicate": ([("a/results.npy", b"1"), ("a/results.npy", b"2")], "more than once"),
    "case clash": ([("a/R.npy", b"1"), ("a/r.npy", b"2")], "more than once"),
    "file and dir": ([("a/b", b"1"), ("a/b/c", b"2")], "both as a file and as a directory"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_members_are_refused_before_writing(tmp_path, case):
    members, message = HOSTILE[case]
    work = tmp_path / "work"
    work.mkdir()
    archive = _zip(work / "evil.zip", members)
    dest = work / "inner" / "dest"
    before = _tree(tmp_path)
    with pytest.raises(UserError, match=message):
        safe_extract(archive, dest)
    assert _tree(tmp_path) == before  # nothing written anywhere, not even the destination
    assert not Path("/tmp/askdagger-abs-x").exists()


def test_oversized_member_is_refused(tmp_path):
    archive = _zip(tmp_path / "big.zip", [("small", b"x" * 100), ("big", b"y" * 5000)])
    before = _tree(tmp_path)
    with pytest.raises(UserError, match="'big' unpacks to 5000 bytes, above the limit of 4096"):
        safe_extract(archive, tmp_path / "d", Limits(max_member_bytes=4096))
    with pytest.raises(UserError, match="unpacks to more than 4000 bytes"):
        safe_extract(archive, tmp_path / "d", Limits(max_total_bytes=4000))
    with pytest.raises(UserError, match="2 members, more than the limit of 1"):
        safe_extract(archive, tmp_path / "d", Limits(max_members=1))
    assert _tree(tmp_path) == before


def test_zip_bomb_ratio_is_refused(tmp_path):
    archive = _zip(tmp_path / "bomb.zip", [("zeros", bytes(8 << 20))])  # 8 MiB -> ~8 KiB
    with pytest.raises(UserError, match="zip bomb"):
        safe_extract(archive, tmp_path / "d")
    assert not (tmp_path / "d").exists()


def test_truncated_zip_is_refused(tmp_path):
    archive = _zip(tmp_path / "a.zip", [("a/results.npy", bytes(range(256)) * 400)])
    data = archive.read_bytes()
    archive.write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match="not a complete zip archive.*download it again"):
        safe_extract(archive, tmp_path / "d")
    assert not (tmp_path / "d").exists()


def test_corrupt_member_leaves_nothing(tmp_path):
    # A bit flip in the compressed data: the names pass, the CRC check fails while copying.
    payload = bytes(range(256)) * 400
    archive = _zip(tmp_path / "a.zip", [("a/first.bin", b"fine"), ("a/second.bin", payload)])
    data = bytearray(archive.read_bytes())
    pos = data.find(b"a/second.bin") + len("a/second.bin") + 40
    data[pos] ^= 0xFF
    archive.write_bytes(bytes(data))
    with pytest.raises(UserError, match="second.bin.*corrupt"):
        safe_extract(archive, tmp_path / "d")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.zip"]
