"""The whole workflow, for real: the smoke preset on real MNIST downloaded from a local mirror.

One uninterrupted smoke sweep (module fixture) is checked for every figure and table, a second
invocation, the report, and that only a changed *setting* re-runs anything. Then a copy of it
loses some runs, is killed with SIGKILL in the middle of a training job and recovered as the
docs say (--unlock, --rerun-incomplete): the killed run resumes from its checkpoint, no
finished run is retrained, and the tables equal those of the uninterrupted sweep.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from askdagger_mnist.data.kept_runs import kept_copy_of

from conftest import MNIST_RAW, MNIST_ROOT, REPO, FileServer

pytestmark = [pytest.mark.slow, pytest.mark.needs_mnist]

SNAKEFILE = REPO / "Snakefile"
SMOKE = REPO / "workflow" / "presets" / "smoke.yaml"
PROFILE = REPO / "workflow" / "profiles" / "default"
FIGURES = ["mnist.pdf", "mnist_reg_ablation.pdf", "mnist_prand_ablation.pdf", "sag.pdf"]
TABLES = [f"{t}.{ext}" for t in ("reg_ablation", "prand_ablation") for ext in ("csv", "md", "tex")]
SMOKE_RUNS = 14  # 2 s_des x 1 rep x (3 modes + 4 ablation variants)


def smk_args(workdir: Path, *extra: str, targets: tuple[str, ...] = ()) -> list[str]:
    # Targets first: --configfile and --config take every word that follows them.
    return [
        sys.executable, "-m", "snakemake", *targets, "-s", str(SNAKEFILE), "--directory", str(workdir),
        "--workflow-profile", str(PROFILE), "--cores", "2",
        "--configfile", str(SMOKE), str(workdir.parent / "mirror.yaml"), *extra,
    ]  # fmt: skip


def snakemake(
    workdir: Path, *extra: str, targets=(), timeout: int = 400
) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        smk_args(workdir, *extra, targets=targets), capture_output=True, text=True, timeout=timeout
    )
    proc.output = proc.stdout + proc.stderr
    return proc


def run_dirs(workdir: Path) -> list[Path]:
    return sorted(p.parent for p in (workdir / "results" / "runs").glob("*/*/*/*/run.json"))


def stamp(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_ino, st.st_mtime_ns


@pytest.fixture(scope="module")
def mirror():
    server = FileServer(MNIST_RAW)  # the real MNIST files over HTTP, as a remote mirror
    yield server.url
    server.close()


@pytest.fixture(scope="module")
def smoke(tmp_path_factory, mirror):
    """The smoke preset run once, uninterrupted, from an empty directory."""
    base = tmp_path_factory.mktemp("smoke")
    (base / "mirror.yaml").write_text(yaml.safe_dump({"mnist_mirrors": [mirror]}))
    workdir = base / "work"
    workdir.mkdir()
    started = time.perf_counter()
    proc = snakemake(workdir)
    proc.elapsed = time.perf_counter() - started
    assert proc.returncode == 0, proc.output[-6000:]
    return workdir, proc


def assert_valid_pdf(path: Path) -> None:
    data = path.read_bytes()
    assert data.startswith(b"%PDF-1."), f"{path} is not a PDF"
    assert data.rstrip().endswith(b"%%EOF"), f"{path} is truncated"
    xref = int(re.findall(rb"startxref\s+(\d+)", data)[-1])
    assert data[xref : xref + 4] == b"xref", f"{path}: startxref does not point at the xref table"
    if shutil.which("pdftoppm"):  # render page 1 and check that something is drawn
        png = path.with_suffix(".check")
        subprocess.run(["pdftoppm", "-png", "-r", "20", "-f", "1", "-l", "1", "-singlefile", str(path), str(png)],
                       check=True, timeout=60)  # fmt: skip
        import matplotlib.image

        pixels = matplotlib.image.imread(str(png) + ".png")
        Path(str(png) + ".png").unlink()
        assert (
            pixels.shape[0] > 50 and pixels.shape[1] > 50 and pixels.std() > 0.02
        ), f"{path} renders blank"
    if shutil.which("pdffonts"):  # fonts embedded (pdf.fonttype 42)
        rows = subprocess.run(
            ["pdffonts", str(path)], capture_output=True, text=True, check=True
        ).stdout
        fonts = rows.strip().splitlines()[2:]
        assert fonts and all(line.split()[-5] == "yes" for line in fonts), rows


def test_smoke_sweep_downloads_mnist_and_produces_every_figure_and_table(smoke):
    workdir, proc = smoke
    print(f"smoke sweep: {proc.elapsed:.0f} s")
    # The download rule really downloaded from the mirror, and the files pass MD5.
    log = (workdir / "results/logs/download_mnist.log").read_text()
    assert "downloaded and verified" in log, log[-500:]
    raw = workdir / "resources/mnist/MNIST/raw"
    for name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                 "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):  # fmt: skip
        ours = hashlib.md5((raw / name).read_bytes()).hexdigest()
        assert ours == hashlib.md5((MNIST_RAW / name).read_bytes()).hexdigest(), name

    runs = run_dirs(workdir)
    assert len(runs) == SMOKE_RUNS
    for run in runs:
        info = json.loads((run / "run.json").read_text())
        assert info["n_steps"] == 40 and info["threads"] == 1 and info["resumed_at_steps"] == []
        assert run.relative_to(workdir / "results/runs").as_posix() == (
            f"{info['settings']['mode']}/{info['settings']['variant']}/"
            f"s{info['settings']['s_des']:g}/rep{info['settings']['rep']}"
        )
    assert not list((workdir / "results/runs").rglob("*.checkpoint.pt"))  # removed when done

    import pandas as pd

    table = pd.read_csv(workdir / "results/metrics/runs.csv")
    assert len(table) == SMOKE_RUNS and set(table["s_des"]) == {0.5, 0.9}
    assert (table["n_steps"] == 40).all() and (table["n_samples"] == 40 * 128).all()
    for group, n in (("main", 6), ("reg_ablation", 6), ("prand_ablation", 6)):
        assert len(pd.read_csv(workdir / f"results/metrics/{group}/runs.csv")) == n, group
    curves = pd.read_csv(workdir / "results/metrics/curves.csv.gz")
    assert len(curves) == SMOKE_RUNS * 40

    for name in FIGURES:
        assert_valid_pdf(workdir / "figures" / name)
    for name in TABLES:
        text = (workdir / "results/tables" / name).read_text()
        assert "0.5" in text and "0.9" in text, (name, text)
    reg = pd.read_csv(workdir / "results/tables/reg_ablation.csv")
    assert len(reg) >= 2

    # Every job left a log and a benchmark.
    assert len(list((workdir / "results/logs/train").rglob("*.log"))) == SMOKE_RUNS
    assert len(list((workdir / "results/benchmarks/train").rglob("*.tsv"))) == SMOKE_RUNS
    assert (workdir / "results/benchmarks/plots/sag.tsv").is_file()


def test_second_invocation_has_nothing_to_do(smoke):
    workdir, _ = smoke
    proc = snakemake(workdir)
    assert proc.returncode == 0, proc.output
    assert "Nothing to be done" in proc.output, proc.output[-3000:]


def test_a_changed_setting_reruns_what_it_affects_and_execution_choices_rerun_nothing(smoke):
    workdir, _ = smoke
    proc = snakemake(
        workdir, "--dry-run", "--config", "device=cpu", "threads=2", "checkpoint_every=7"
    )
    assert proc.returncode == 0 and "Nothing to be done" in proc.output, proc.output[-3000:]
    proc = snakemake(workdir, "--dry-run", "--config", "variants={prand0.2: {p_rand: 0.25}}")
    assert proc.returncode == 0, proc.output
    train = re.findall(
        r"rule train:\n(?:\s+.*\n)*?\s+output: (\S+)\n(?:\s+.*\n)*?\s+reason: (.*)", proc.output
    )
    assert sorted(out for out, _ in train) == [
        "results/runs/sensitivity/prand0.2/s0.5/rep0",
        "results/runs/sensitivity/prand0.2/s0.9/rep0",
    ]
    assert all("Params have changed" in reason for _, reason in train), train
    assert "rule plot_main:" not in proc.output  # the main figure does not use prand0.2


def test_report_collects_figures_and_tables(smoke):
    workdir, _ = smoke
    report = workdir.parent / "report.html"
    proc = snakemake(workdir, "--report", str(report))
    assert proc.returncode == 0, proc.output[-3000:]
    html = report.read_text()
    for name in ("mnist.pdf", "mnist_reg_ablation.pdf", "mnist_prand_ablation.pdf", "sag.pdf",
                 "reg_ablation.csv", "prand_ablation.csv", "runs.csv"):  # fmt: skip
        assert name in html, name
    assert "Regularisation ablation (sensitivity mode)" in html  # the captions were rendered
    report.unlink()


def test_resume_after_sigkill_retrains_nothing_finished_and_matches_the_uninterrupted_sweep(
    smoke, tmp_path
):
    done, _ = smoke
    shutil.copy(done.parent / "mirror.yaml", tmp_path / "mirror.yaml")
    workdir = tmp_path / "work"
    shutil.copytree(done, workdir, symlinks=True)  # keeps mtimes; Snakemake's metadata comes along
    lost = [
        workdir / f"results/runs/sensitivity/{v}/s{s}/rep0"
        for v in ("prand0.05", "prand0.2")
        for s in ("0.5", "0.9")
    ]
    for run in lost:  # never made: neither the run nor its kept copy exists
        shutil.rmtree(run)
        shutil.rmtree(kept_copy_of(run))
    # ... and what is made from them, as if the sweep had been cut off before they existed
    # (Snakemake does not rebuild outputs that are up to date just because an input is gone).
    shutil.rmtree(workdir / "results/metrics/prand_ablation")
    for name in [
        "metrics/runs.csv",
        "metrics/curves.csv.gz",
        *[f"tables/{t}" for t in TABLES if "prand" in t],
    ]:
        (workdir / "results" / name).unlink()
    (workdir / "figures/mnist_prand_ablation.pdf").unlink()
    kept = {run: stamp(run / "run.json") for run in run_dirs(workdir)}
    assert len(kept) == SMOKE_RUNS - len(lost)
    untouched = [workdir / f"results/metrics/{g}/runs.csv" for g in ("main", "reg_ablation")]
    untouched += [workdir / "figures/mnist.pdf", workdir / "figures/mnist_reg_ablation.pdf"]
    untouched_stamps = {p: stamp(p) for p in untouched}

    # Start the sweep and SIGKILL Snakemake as soon as a training job has written a checkpoint,
    # together with its running jobs (as when the machine or the session dies).
    head = subprocess.Popen(smk_args(workdir), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)  # fmt: skip
    deadline = time.monotonic() + 300
    try:
        while not (
            checkpoints := list((workdir / "results/runs").glob("*/*/*/rep*.checkpoint.pt"))
        ):
            assert head.poll() is None, "the sweep ended before any checkpoint was written"
            assert time.monotonic() < deadline, "no checkpoint within 300 s"
            time.sleep(0.02)
        os.kill(head.pid, signal.SIGKILL)
    finally:
        try:  # the jobs it started (same process group); also when the test failed above
            os.killpg(head.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        head.wait()
    time.sleep(0.5)
    killed = [c.with_name(c.name.removesuffix(".checkpoint.pt")) for c in checkpoints]
    assert not any(k.exists() for k in killed), "the killed job finished after all"
    finished_before_kill = {
        run: stamp(run / "run.json") for run in run_dirs(workdir) if run not in kept
    }

    # As docs/workflow.md says: the directory is still locked ...
    proc = snakemake(workdir)
    assert proc.returncode != 0 and "--unlock" in proc.output, proc.output[-3000:]
    proc = snakemake(workdir, "--unlock")
    assert proc.returncode == 0, proc.output[-3000:]
    # ... and the sweep completes with --rerun-incomplete.
    proc = snakemake(workdir, "--rerun-incomplete")
    assert proc.returncode == 0, proc.output[-6000:]

    for run in killed:  # resumed from its checkpoint, not from step 0
        info = json.loads((run / "run.json").read_text())
        assert info["resumed_at_steps"] and info["resumed_at_steps"][0] > 0, info[
            "resumed_at_steps"
        ]
        assert (
            "resuming from checkpoint"
            in (workdir / "results/logs/train" / run.relative_to(workdir / "results/runs"))
            .with_suffix(".log")
            .read_text()
        )
    for run, before in {**kept, **finished_before_kill}.items():
        assert stamp(run / "run.json") == before, f"{run} was retrained"
    for path, before in untouched_stamps.items():
        assert stamp(path) == before, f"{path} was rebuilt"
    assert len(run_dirs(workdir)) == SMOKE_RUNS
    assert not list((workdir / "results/runs").rglob("*.checkpoint.pt"))
    for name in [f"tables/{t}" for t in TABLES] + [
        "metrics/runs.csv",
        "metrics/prand_ablation/runs.csv",
    ]:
        assert (workdir / "results" / name).read_bytes() == (
            done / "results" / name
        ).read_bytes(), name
    with (
        gzip.open(workdir / "results/metrics/curves.csv.gz") as a,
        gzip.open(done / "results/metrics/curves.csv.gz") as b,
    ):
        assert a.read() == b.read()
    assert_valid_pdf(workdir / "figures/mnist_prand_ablation.pdf")


def test_read_only_mnist_root_is_used_as_is(tmp_path):
    """mnist_root pointing at a folder that already holds valid files: the download job only
    verifies them (its manifest lands in the workflow's results/), nothing is downloaded or
    written there, and training reads from it."""

    def listing():
        return sorted((p.relative_to(MNIST_ROOT).as_posix(), p.stat().st_size, p.stat().st_mtime_ns)
                      for p in MNIST_ROOT.rglob("*"))  # fmt: skip

    before = listing()
    (tmp_path / "mirror.yaml").write_text(
        yaml.safe_dump({"mnist_mirrors": ["http://127.0.0.1:9/"]})
    )
    workdir = tmp_path / "work"
    workdir.mkdir()
    target = "results/runs/success/sag/s0.9/rep0"
    proc = snakemake(
        workdir, "--config", f"mnist_root={MNIST_ROOT}", "max_steps=6", targets=(target,)
    )
    assert proc.returncode == 0, proc.output[-4000:]
    log = (workdir / "results/logs/download_mnist.log").read_text()
    assert "MNIST already present and verified" in log and "nothing downloaded" in log, log
    manifest = json.loads((workdir / "results/mnist.verified.json").read_text())
    assert manifest["root"] == str(MNIST_ROOT) and len(manifest["files"]) == 4
    assert f"--data-root {MNIST_ROOT}" in proc.output
    assert json.loads((workdir / target / "run.json").read_text())["n_steps"] == 6
    assert listing() == before
    assert not (workdir / "resources").exists()
