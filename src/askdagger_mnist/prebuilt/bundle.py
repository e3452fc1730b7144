"""Result bundles: a finished sweep packed into one zip that others can download and reuse.

Layout of ``bundle.zip``::

    manifest.json                 format, package versions, runs (path, settings, source),
                                  files (path, size, sha256) of everything else in the zip
    runs/{mode}/{variant}/s{s_des}/rep{rep}/arrays.npz, run.json[, model.pt]
    metrics/...                   (if results/metrics existed when packing)

Packing is deterministic (sorted members, fixed timestamps): the same runs give the same
bytes. Unpacking extracts safely, then checks every file against the manifest and refuses
files the manifest does not list; the run directories come out byte-identical. The manifest
is downloaded data too: at most 16 MiB, each file listed once, no more entries than members.
"""

from __future__ import annotations

import json
import logging
import os
import zipfile
import zlib
from pathlib import Path, PurePosixPath
from typing import Any

from ..data import rundir
from ..data.atomic import atomic_file, replace_dir
from ..data.hashing import file_hash
from ..data.invariants import InconsistentRun, read_consistent_arrays
from ..errors import UserError
from .safe_extract import DEFAULT_LIMITS, Limits, check_members, open_zip, safe_extract
from .scratch import scratch_dir

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
METRICS_DIR = "_metrics"  # where unpack puts the bundle's metrics/ inside the staging folder
FORMAT = "askdagger-mnist-bundle"
FORMAT_VERSION = 1
MAX_MANIFEST_BYTES = 16 << 20  # the paper's sweep (630 runs, 1,900 files) needs about 1 MB
_EPOCH = (1980, 1, 1, 0, 0, 0)
_PACKAGES = ("askdagger-mnist", "numpy", "torch", "torchvision", "pandas", "matplotlib", "snakemake", "requests")


def find_run_dirs(runs_root: Path) -> list[Path]:
    """Complete run directories ``{mode}/{variant}/s{s}/rep{r}`` below ``runs_root``, sorted."""
    runs_root = Path(runs_root)
    return sorted(
        p
        for p in runs_root.glob("*/*/s*/rep*")
        if p.is_dir() and not p.name.startswith(".") and rundir.is_complete_run(p)
    )


def pack(runs_root: Path, out: Path, metrics_dir: Path | None = None,
         select: list[Path] | None = None) -> dict[str, Any]:
    """Pack the complete runs below ``runs_root`` (only those in ``select``, if given) and the
    files of ``metrics_dir`` into ``out``; returns the manifest."""
    runs_root = Path(runs_root)
    run_dirs = find_run_dirs(runs_root)
    if select is not None:
        wanted = {Path(p).resolve() for p in select}
        missing = wanted - {p.resolve() for p in run_dirs}
        if missing:
            raise UserError(f"{sorted(missing)[0]} is not a complete run below {runs_root}: "
                            "finish the sweep (or drop it from the selection) before packing.")
        run_dirs = [p for p in run_dirs if p.resolve() in wanted]
    if not run_dirs:
        raise UserError(f"{runs_root} holds no complete runs ({{mode}}/{{variant}}/s{{s}}/rep{{r}} with "
                        "arrays.npz and run.json): run the sweep first.")
    members: list[tuple[str, Path]] = []
    runs = []
    for run_dir in run_dirs:
        rel = PurePosixPath("runs", run_dir.relative_to(runs_root).as_posix())
        info = rundir.read_info(run_dir)
        runs.append({"path": str(rel), "settings": info.get("settings"), "source": info.get("source")})
        for f in sorted(run_dir.iterdir()):
            if f.is_file() and not f.name.startswith("."):
                members.append((str(rel / f.name), f))
    if metrics_dir is not None and Path(metrics_dir).is_dir():
        for f in sorted(Path(metrics_dir).rglob("*")):
            if f.is_file() and not f.name.startswith("."):
                members.append((str(PurePosixPath("metrics", f.relative_to(metrics_dir).as_posix())), f))
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "package_versions": rundir.installed_versions(_PACKAGES),
        "runs": runs,
        "files": [{"path": name, "size": f.stat().st_size, "sha256": file_hash(f)} for name, f in members],
    }
    out = Path(out)
    with atomic_file(out) as tmp, zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        _write(zf, MANIFEST, json.dumps(manifest, indent=2, sort_keys=True).encode() + b"\n")
        for name, f in members:
            _write(zf, name, f.read_bytes())
    log.info(f"packed {len(runs)} runs ({len(members)} files) into {out}")
    return manifest


def _write(zf: zipfile.ZipFile, name: str, data: bytes) -> None:
    info = zipfile.ZipInfo(name, date_time=_EPOCH)
    info.external_attr = 0o100644 << 16  # a regular file, rw-r--r--
    info.create_system = 3
    info.compress_type = zipfile.ZIP_STORED if name.endswith((".npz", ".gz")) else zipfile.ZIP_DEFLATED
    zf.writestr(info, data)


def read_manifest(zf: zipfile.ZipFile, archive: Path, limits: Limits = DEFAULT_LIMITS) -> dict[str, Any]:
    """The manifest, checked: bounded in size, one entry per file, at most as many as members."""
    corrupt = f"{archive}: {MANIFEST} has no valid file list; the bundle is corrupt."
    try:
        info = zf.getinfo(MANIFEST)
    except KeyError:
        raise UserError(f"{archive} has no {MANIFEST}: it is not a results bundle; check the format of this archive.") from None
    if info.file_size > MAX_MANIFEST_BYTES:
        raise UserError(f"{archive}: {MANIFEST} is {info.file_size} bytes, more than the {MAX_MANIFEST_BYTES} "
                        "a bundle of even thousands of runs needs: the bundle is corrupt or hostile.")
    try:
        with zf.open(info) as fh:
            manifest = json.loads(fh.read(MAX_MANIFEST_BYTES + 1))
    except (ValueError, RecursionError, zipfile.BadZipFile, OSError, EOFError, zlib.error) as exc:
        reason = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)[:200]
        raise UserError(f"{archive} has an unreadable {MANIFEST} ({reason}): the bundle is corrupt.") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise UserError(f"{archive}: {MANIFEST} is not a {FORMAT} manifest; check the format of this archive.")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise UserError(
            f"{archive} is bundle format version {manifest.get('format_version')}, this code reads "
            f"version {FORMAT_VERSION}: update askdagger-mnist."
        )
    files = manifest.get("files")
    if not isinstance(files, list) or len(files) > limits.max_members or not all(
        isinstance(f, dict) and isinstance(f.get("path"), str) and type(f.get("size")) is int
        and 0 <= f["size"] <= limits.max_member_bytes and isinstance(f.get("sha256"), str) for f in files
    ):
        raise UserError(corrupt)
    listed: set[str] = set()
    for f in files:  # each entry is hashed: a repeated one would be hashed again and again
        if f["path"] in listed:
            raise UserError(f"{archive}: {MANIFEST} lists {f['path'][:200]!r} more than once; the "
                            "bundle is corrupt or hostile.")
        listed.add(f["path"])
    runs = manifest.get("runs")
    if not isinstance(runs, list) or not all(isinstance(r, dict) for r in runs):
        raise UserError(f"{archive}: {MANIFEST} has no valid run list; the bundle is corrupt.")
    return manifest


def check_structure(archive: Path, limits: Limits = DEFAULT_LIMITS) -> dict[str, Any]:
    """Cheap check of a downloaded bundle (safe member names, a manifest that lists its files)."""
    with open_zip(archive) as zf:
        members = check_members(zf, Path(archive), limits)
        manifest = read_manifest(zf, Path(archive), limits)
        names = {str(rel) for _i, rel, kind in members if kind == "file"}
    listed = {f["path"] for f in manifest["files"]}
    if listed | {MANIFEST} != names:
        extra = sorted(names - listed - {MANIFEST})[:3]
        missing = sorted(listed - names)[:3]
        raise UserError(
            f"{archive} does not match its manifest (unlisted: {extra}, missing: {missing}): the "
            "bundle is corrupt or was altered."
        )
    return manifest


def check_invariants(run: Path, where: str) -> None:
    """A bundled run must satisfy what every run of ours does (data.invariants)."""
    try:
        read_consistent_arrays(run, int(rundir.read_info(run)["settings"]["batch_size"]))
        return
    except InconsistentRun as exc:
        broken = exc.problem
    except (OSError, ValueError, KeyError, TypeError) as exc:  # DamagedArrays is a ValueError
        broken = f"its run.json or arrays.npz cannot be read ({type(exc).__name__})"
    raise UserError(f"{where}: the run breaks an invariant every run satisfies: {broken}; "
                    "nothing was imported (the bundle is corrupt or was altered).")


def unpack(archive: Path, staging: Path, provenance: dict[str, Any] | None = None,
           limits: Limits = DEFAULT_LIMITS) -> list[Path]:
    """Verify ``archive`` and place its runs as ``staging/{mode}/{variant}/s{s}/rep{r}``.

    ``staging`` is created atomically (a folder there must be empty). Run files come out byte-identical;
    ``staging/bundle.json`` records the manifest and the provenance (url, sha256).
    """
    archive, staging = Path(archive), Path(staging)
    if staging.is_dir() and any(staging.iterdir()):  # (a file in its place is replaced)
        raise UserError(f"{staging} already exists and is not empty: remove it before unpacking {archive}.")
    manifest = check_structure(archive, limits)
    with scratch_dir(staging) as work:
        extracted = work / "zip"
        safe_extract(archive, extracted, limits, durable=True)  # its files are published as they are
        for entry in manifest["files"]:
            path = extracted / entry["path"]
            if path.stat().st_size != entry["size"] or file_hash(path) != entry["sha256"]:
                raise UserError(
                    f"{archive}: {entry['path']} does not match the sha256/size in {MANIFEST}: the "
                    "bundle is corrupt or was altered; download it again."
                )
        out = work / "staging"
        runs_dir = extracted / "runs"
        if runs_dir.is_dir():
            os.replace(runs_dir, out)
        else:
            out.mkdir()
        run_dirs = find_run_dirs(out)
        if not run_dirs:
            raise UserError(f"{archive} holds no complete runs: the bundle is empty.")
        for run in run_dirs:
            check_invariants(run, f"{run.relative_to(out)} in {archive}")
        record = {"provenance": provenance or {}, "manifest": manifest}
        rundir.write_json_atomic(out / "bundle.json", record)
        if (extracted / "metrics").is_dir():
            os.replace(extracted / "metrics", out / METRICS_DIR)
        replace_dir(out, staging, aside=work / "replaced")  # work is removed after
    log.info(f"unpacked {len(run_dirs)} runs from {archive} into {staging}")
    return [staging / p.relative_to(out) for p in run_dirs]
