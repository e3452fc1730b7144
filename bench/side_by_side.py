"""Benchmark: a Snakemake job of the workflow at two commits, back to back on this machine.

Issue 23's targets are compared "side by side with today's main": this runs the same command
(by default the README's main job, `snakemake --cores 8 figures/mnist.pdf`) once with the code
of a baseline commit and once with the code of a candidate commit (default: this checkout's
HEAD), each in a fresh clone of its own, in the clone's folder as a user types it there, with this
Python and its packages (the clone's src/ first on the path):

    python bench/side_by_side.py --baseline COMMIT [--candidate HEAD] [--data-root DIR]
                                 [--target figures/mnist.pdf ...] [--cores 8] [--rounds 1]
                                 [--config KEY=VALUE ...] [--scratch DIR] [--json FILE]

For each run of the command: its wall time and the CPU time of the Snakemake process and every
job it ran (os.wait4 on the head: a child's rusage includes the descendants it waited for), its
exit status, whether every target was made, and the runs it trained. Rounds alternate which
commit goes first (ABBA), so that a drifting load touches both alike. After each round the runs
made by both are compared, array for array, where both commits record the same results version
(docs/spec.md §7.3); a commit with another version makes other runs by design.

Measure on a quiet machine: nothing else should run beside it (the two commits are never run at
the same time). The data folder (--data-root, MNIST/raw/*.gz) is shared; without it each
clone downloads MNIST as a user's would. CPU core slots live in a temporary folder of each run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from askdagger_mnist.data.rundir import read_arrays, read_info  # noqa: E402


def git(*args: str, cwd: Path = REPO) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"git {' '.join(args)} failed in {cwd}: {done.stderr.strip()}")
    return done.stdout.strip()


def resolve(commit: str) -> str:
    """The full hash of ``commit`` in this repository, or one sentence saying it has none."""
    done = subprocess.run(["git", "rev-parse", "--verify", "--quiet", f"{commit}^{{commit}}"],
                          cwd=REPO, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{commit!r} is no commit of {REPO}: give a hash or a branch name "
                         "that `git log` shows.")
    return done.stdout.strip()


def checkout(commit: str, dest: Path) -> Path:
    """A clone of this repository at ``commit`` (its committed files only)."""
    git("clone", "--quiet", "--no-checkout", str(REPO), str(dest))
    git("checkout", "--quiet", "--detach", commit, cwd=dest)
    return dest


def command(args) -> list[str]:
    config = ([f"mnist_root={args.data_root}"] if args.data_root else []) + list(args.config)
    return [sys.executable, "-m", "snakemake", *args.target, "--cores", str(args.cores),
            *(["--config", *config] if config else [])]


def run_once(args, label: str, commit: str, workdir: Path) -> dict:
    """The command in a fresh clone at ``commit`` (its package first on the path)."""
    checkout(commit, workdir)
    tmp = Path(tempfile.mkdtemp(prefix=f"{workdir.name}-tmp-", dir=workdir.parent))
    bindir = str(Path(sys.executable).parent)
    env = {**os.environ, "PYTHONPATH": str(workdir / "src"), "TMPDIR": str(tmp),
           "PATH": bindir + os.pathsep + os.environ.get("PATH", "")}
    log = workdir.parent / f"{workdir.name}.log"
    started = time.perf_counter()
    with open(log, "w") as out:
        proc = subprocess.Popen(command(args), cwd=workdir, env=env, stdout=out,
                                stderr=subprocess.STDOUT)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    runs = run_dirs(workdir)
    return {"commit": label, "exit_status": os.waitstatus_to_exitcode(status),
            "wall_s": round(wall, 1), "cpu_s": round(usage.ru_utime + usage.ru_stime, 1),
            "targets_made": all((workdir / t).exists() for t in args.target),
            "runs": len(runs), "log": str(log)}


def results_version(run: Path):
    return read_info(run).get("results_version")


def run_dirs(workdir: Path) -> dict[str, Path]:
    """The run directories a working folder holds (results/runs/<mode>/<variant>/s<s>/rep<N>;
    not the kept copies beside them), by their path below results/runs."""
    root = workdir / "results" / "runs"
    return {str(p.parent.relative_to(root)): p.parent for p in root.glob("*/*/*/rep*/run.json")}


def compare_runs(first: Path, second: Path) -> dict:
    """The runs both working folders made: how many, and which differ in any array."""
    a, b = run_dirs(first), run_dirs(second)
    common = sorted(a.keys() & b.keys())
    versions = {results_version(a[k]) for k in common} | {results_version(b[k]) for k in common}
    if len(versions) > 1:
        return {"compared": 0, "differing": None,
                "why_not": f"results versions differ ({sorted(map(str, versions))})"}
    differing = [k for k in common if not same_arrays(a[k], b[k])]
    return {"compared": len(common), "differing": differing}


def same_arrays(first: Path, second: Path) -> bool:
    import numpy as np

    x, y = read_arrays(first), read_arrays(second)
    return x.keys() == y.keys() and all(np.array_equal(x[k], y[k]) for k in x)


def minutes(seconds: float) -> str:
    return f"{int(seconds // 60)} min {seconds % 60:04.1f} s"


def report(rows: list[dict], comparisons: list[dict], names: dict[str, str]) -> str:
    lines = ["| round | commit | wall | CPU (s) | CPU per run (s) | runs | targets made | exit |",
             "|---|---|---|---|---|---|---|---|"]
    for row in rows:
        per_run = f"{row['cpu_s'] / row['runs']:.1f}" if row["runs"] else "—"
        lines.append(f"| {row['round']} | {names[row['commit']]} | {minutes(row['wall_s'])} | "
                     f"{row['cpu_s']:.0f} | {per_run} | {row['runs']} | "
                     f"{'yes' if row['targets_made'] else 'NO'} | {row['exit_status']} |")
    lines.append("")
    for label in ("baseline", "candidate"):
        mine = [r for r in rows if r["commit"] == label]
        lines.append(f"{label} ({names[label]}): median wall "
                     f"{minutes(statistics.median(r['wall_s'] for r in mine))}, median CPU "
                     f"{statistics.median(r['cpu_s'] for r in mine):.0f} s")
    for i, c in enumerate(comparisons, start=1):
        said = (c["why_not"] if c.get("why_not") else
                f"{c['compared']} runs made by both, {len(c['differing'])} differing")
        lines.append(f"round {i}: {said}")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--baseline", required=True, help="the commit to compare against")
    p.add_argument("--candidate", default="HEAD", help="the commit measured (default HEAD)")
    p.add_argument("--target", nargs="+", default=["figures/mnist.pdf"])
    p.add_argument("--cores", type=int, default=8, help="Snakemake's --cores (default 8, as the README)")
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--data-root", type=Path, help="MNIST folder, passed as mnist_root")
    p.add_argument("--config", nargs="*", default=[], help="more KEY=VALUE for --config")
    p.add_argument("--scratch", type=Path, help="where clones and working folders go (kept)")
    p.add_argument("--json", type=Path, help="also write the results to this JSON file")
    args = p.parse_args()
    if args.rounds < 1:
        raise SystemExit(f"--rounds must be at least 1, got {args.rounds}.")
    if args.data_root and not (args.data_root / "MNIST" / "raw").is_dir():
        raise SystemExit(f"--data-root {args.data_root} holds no MNIST/raw folder: give the "
                         "folder that holds MNIST/raw/*.gz.")
    commits = {"baseline": resolve(args.baseline), "candidate": resolve(args.candidate)}
    names = {k: f"{v[:7]} ({getattr(args, k)})" for k, v in commits.items()}
    scratch = args.scratch or Path(tempfile.mkdtemp(prefix="side-by-side-"))
    scratch.mkdir(parents=True, exist_ok=True)
    if any(scratch.iterdir()):
        raise SystemExit(f"--scratch {scratch} is not empty: give a new or empty folder.")
    rows, comparisons = [], []
    for r in range(1, args.rounds + 1):
        order = ["baseline", "candidate"] if r % 2 else ["candidate", "baseline"]
        for label in order:
            row = run_once(args, label, commits[label], scratch / f"round{r}-{label}")
            rows.append({"round": r, **row})
            print(f"round {r}, {names[label]}: {minutes(row['wall_s'])}, {row['cpu_s']:.0f} "
                  f"CPU-s, exit {row['exit_status']}", flush=True)
        comparisons.append(compare_runs(scratch / f"round{r}-baseline",
                                        scratch / f"round{r}-candidate"))
    text = report(rows, comparisons, names)
    print(text)
    if args.json:
        args.json.write_text(json.dumps({"commits": commits, "command": command(args),
                                         "rows": rows, "comparisons": comparisons}, indent=2))
    failed = [row for row in rows if row["exit_status"] != 0 or not row["targets_made"]]
    if failed:
        print(f"Failed: {', '.join(row['log'] for row in failed)} (the folders are kept).")
    elif not args.scratch:
        shutil.rmtree(scratch, ignore_errors=True)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
