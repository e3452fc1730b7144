"""CLI for prebuilt results: download an archive, import its runs, pick one run, pack a bundle.

    python -m askdagger_mnist.cli.fetch_results download --url URL|gdrive:ID [--sha256 HEX] \\
        --format authors|bundle --out resources/archives/NAME.zip [--max-mib N]
    python -m askdagger_mnist.cli.fetch_results import --archive ZIP --format authors|bundle \\
        --out results/imported/NAME [--url URL] [--variants JSON] [--default-mode MODE] \\
        [--batch-size N] [--update-every N] [--no-model]
    python -m askdagger_mnist.cli.fetch_results fetch --url URL [--sha256 HEX] --format F \\
        --archive ZIP --out STAGING [import options]           (download + import in one go)
    python -m askdagger_mnist.cli.fetch_results check --staging DIR [DIR ...] [--config JSON] \\
        --out results/imported.checked.json
    python -m askdagger_mnist.cli.fetch_results pick --staging DIR [DIR ...] --mode M \\
        --variant V --s-des S --rep R [--config JSON] --out results/runs/M/V/sS/repR
    python -m askdagger_mnist.cli.fetch_results pack --runs results/runs [--metrics results/metrics] \\
        [--select RUN_DIR ...] --out results/bundle.zip

A staging folder holds runs as ``{staging}/{mode}/{variant}/s{s_des}/rep{rep}/`` (our run
format) plus ``import.json`` (authors) or ``bundle.json`` (bundles) with the provenance.
``pick`` copies a run from the first staging folder that holds it into results/runs only as the
run ``--config`` (the workflow config's keys as JSON; those left out: their defaults) asks for;
``check`` checks so every configured run the staging folders hold, before any is picked
(prebuilt/picking.py).
Without --sha256 (allowed for the authors' archives, whose hashes cannot be known in advance)
the computed hash is logged and the archive's structure is checked instead. A download
larger than --max-mib (default settings.MAX_DOWNLOAD_MIB) is refused or stopped. SIGTERM and
Ctrl-C end a command with ``error: stopped by ...`` (exit 143/130) after its cleanup has run
(cli/common.py).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import zipfile
from pathlib import Path
from typing import Any

from ..data import rundir
from ..data.atomic import replace_dir
from ..prebuilt import authors_format, bundle, picking
from ..data.hashing import file_hash
from ..prebuilt.download import Options, download
from ..errors import UserError
from .common import run_command
from ..prebuilt.safe_extract import check_members, open_zip, safe_extract
from ..prebuilt.scratch import scratch_dir
from ..settings import ABLATION_MODE, MAX_DOWNLOAD_MIB, MODES, PAPER_VARIANTS

log = logging.getLogger("askdagger_mnist.fetch_results")

FORMATS = ("authors", "bundle")


def _reject_html(path: Path, source: str) -> None:
    with open(path, "rb") as fh:
        head = fh.read(512).lstrip().lower()
    if head.startswith((b"<!doctype html", b"<html", b"<head", b"<body", b"<?xml")):
        raise UserError(
            f"{source} sent an HTML page, not a zip archive (a login, quota or error page): "
            "check that the url points at the file itself and that it is public."
        )


def check_authors_structure(path: Path) -> int:
    """The zip has safe member names and at least one authors' run; returns how many."""
    with open_zip(path) as zf:
        members = check_members(zf, Path(path))
    n = 0
    for _info, rel, kind in members:
        parts = rel.parts
        if (kind == "file" and len(parts) >= 3 and parts[-1] == "results.npy"
                and parts[-2].isdigit() and authors_format.parse_run_dirname(parts[-3])):
            n += 1
    if n == 0:
        raise UserError(
            f"{path} holds no results_{{mode}}/r..._s..._u..._i..._b..._e.../{{rep}}/results.npy: "
            "it is not an archive of the authors' results; check its url and format."
        )
    return n


def _require_zip(path: Path, source: str) -> None:
    try:
        zipfile.ZipFile(path).close()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise UserError(f"{source} sent no complete zip archive ({exc}): check that the url "
                        "points at the archive itself, then run again.") from None


def verify_archive(path: Path, fmt: str, source: str) -> None:
    _reject_html(path, source)
    _require_zip(path, source)
    if fmt == "authors":
        n = check_authors_structure(path)
        log.info(f"{source}: structure ok, {n} authors' runs")
    else:
        manifest = bundle.check_structure(path)
        log.info(f"{source}: structure ok, bundle of {len(manifest['runs'])} runs")


def cmd_download(url: str, out: Path, sha256: str | None, fmt: str, attempts: int,
                 max_mib: int = MAX_DOWNLOAD_MIB) -> str:
    got = download(url, out, sha256, options=Options(attempts=attempts, max_bytes=max_mib << 20),
                   verify=lambda part: verify_archive(part, fmt, url))
    if sha256:
        log.info(f"{out}: sha256 {got} (as expected)")
    else:
        log.info(f"{out}: sha256 {got} (no sha256 configured: put it into the config to pin this archive)")
    return got


def cmd_import(archive: Path, out: Path, fmt: str, url: str | None, variants: dict,
               default_mode: str, batch_size: int | None, update_every: int | None,
               with_model: bool) -> list[Path]:
    """Import ``archive`` into the new staging folder ``out``; returns the run directories.

    All work happens in a scratch folder beside ``out`` that is removed on every exit path.
    """
    archive, out = Path(archive), Path(out)
    digest = file_hash(archive)
    provenance = {"url": url or str(archive), "archive_sha256": digest, "archive": archive.name}
    if fmt == "bundle":
        return bundle.unpack(archive, out, provenance)
    with scratch_dir(out) as work:
        extracted, ready = work / "zip", work / "staging"
        safe_extract(archive, extracted)
        ready.mkdir()
        report = authors_format.import_tree(
            extracted, ready, variants, provenance, default_mode, batch_size, update_every, with_model,
        )
        runs = [p.relative_to(ready) for p in report.runs]
        rundir.write_json_atomic(ready / "import.json", {
            "provenance": provenance,
            "runs": [str(p) for p in runs],
            "models_refused": report.models_refused,
        })
        replace_dir(ready, out, aside=work / "replaced")  # work is removed after
    refused = report.models_refused
    summary = f"imported {len(runs)} runs from {archive} into {out}"
    if refused:
        summary += (f"; {len(refused)} model file{'s' if len(refused) > 1 else ''} refused (not loaded, "
                    f"those runs have no model.pt): {', '.join(m['file'] for m in refused)}")
    log.info(summary)
    return [out / p for p in runs]


def cmd_check(stagings: list[Path], config_json: str | None, out: Path) -> list:
    """Check every configured run the staging folders hold (prebuilt/picking.py)."""
    return picking.check_all(stagings, picking.config_from_json(config_json), out)


def cmd_pick(stagings: list[Path], mode: str, variant: str, s_des: float, rep: int, out: Path,
             config_json: str | None = None) -> Path:
    """Copy one run into results/runs, if it is the run the config asks for (prebuilt/picking.py)."""
    return picking.pick_run(stagings, mode, variant, s_des, rep, out,
                            picking.config_from_json(config_json))


def _variants(text: str | None) -> dict:
    if not text:
        return PAPER_VARIANTS  # the workflow passes config["variants"] instead
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise UserError(f"--variants is not valid JSON ({exc}): pass config['variants'] as JSON.") from None
    if not isinstance(value, dict) or not all(
        isinstance(v, dict) and {"p_rand", "normalization", "imputation"} <= set(v) for v in value.values()
    ):
        raise UserError("--variants must map names to {p_rand, normalization, imputation}: check config key variants.")
    return value


def _add_download_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--url", required=True, help="http(s):// or file:// URL, or gdrive:<file id>")
    p.add_argument("--sha256")
    p.add_argument("--format", choices=FORMATS, required=True)
    p.add_argument("--attempts", type=int, default=Options.attempts)
    p.add_argument("--max-mib", type=_positive, default=MAX_DOWNLOAD_MIB, metavar="N",
                   help="refuse a download larger than N MiB (config key max_download_mib)")


def _add_import_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--variants", help="JSON of config['variants'] (default: the paper's five)")
    p.add_argument("--default-mode", default=ABLATION_MODE, choices=MODES,
                   help="mode of authors' runs whose path names none (the ablations archive)")
    p.add_argument("--batch-size", type=int, help="import only authors' runs with this batch size")
    p.add_argument("--update-every", type=int, help="import only authors' runs with this update_every")
    p.add_argument("--no-model", action="store_true", help="do not convert the .pt state dicts")


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of MiB >= 1, not {text!r}")
    return int(text)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m askdagger_mnist.cli.fetch_results", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)

    p = sub.add_parser("download", help="download and verify one archive")
    _add_download_options(p)
    p.add_argument("--out", type=Path, required=True)

    p = sub.add_parser("import", help="import a downloaded archive into a staging folder")
    p.add_argument("--archive", type=Path, required=True)
    p.add_argument("--format", choices=FORMATS, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--url", help="where the archive came from (recorded as provenance)")
    _add_import_options(p)

    p = sub.add_parser("fetch", help="download + import")
    _add_download_options(p)
    p.add_argument("--archive", type=Path, required=True, help="where to keep the downloaded zip")
    p.add_argument("--out", type=Path, required=True)
    _add_import_options(p)

    config_help = ("the workflow config's keys as JSON (those left out: their defaults): the runs "
                   "it asks for and their settings")
    p = sub.add_parser("check", help="check every configured run the staging folders hold")
    p.add_argument("--staging", type=Path, nargs="*", default=[])
    p.add_argument("--config", help=config_help)
    p.add_argument("--out", type=Path, required=True, help="the record written when all serve")

    p = sub.add_parser("pick", help="copy one run out of the staging folders (first that has it)")
    p.add_argument("--staging", type=Path, nargs="*", default=[])
    p.add_argument("--mode", required=True, choices=MODES)
    p.add_argument("--variant", required=True)
    p.add_argument("--s-des", type=float, required=True)
    p.add_argument("--rep", type=int, required=True)
    p.add_argument("--config", help=config_help)
    p.add_argument("--out", type=Path, required=True)

    p = sub.add_parser("pack", help="pack finished runs into a bundle zip")
    p.add_argument("--runs", type=Path, required=True)
    p.add_argument("--metrics", type=Path, help="a folder of aggregated metrics to include")
    p.add_argument("--select", type=Path, nargs="+",
                   help="pack only these run directories (default: every complete run below --runs)")
    p.add_argument("--out", type=Path, required=True)
    return ap


def run(args: argparse.Namespace) -> Any:
    if args.cmd in ("download", "fetch"):
        cmd_download(args.url, args.out if args.cmd == "download" else args.archive,
                     args.sha256, args.format, args.attempts, args.max_mib)
    if args.cmd in ("import", "fetch"):
        return cmd_import(args.archive, args.out, args.format, args.url, _variants(args.variants),
                          args.default_mode, args.batch_size, args.update_every, not args.no_model)
    if args.cmd == "check":
        return cmd_check(args.staging, args.config, args.out)
    if args.cmd == "pick":
        return cmd_pick(args.staging, args.mode, args.variant, args.s_des, args.rep, args.out,
                        args.config)
    if args.cmd == "pack":
        return bundle.pack(args.runs, args.out, args.metrics, args.select)
    return None


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    return run_command(lambda: run(args))


if __name__ == "__main__":
    sys.exit(main())
