"""Benchmark: the paper's training runs (630 with config.yaml) on one machine, without Snakemake.

    PYTHONPATH=src python3 bench/gpu_sweep.py --data-root /path/to/mnist --device cuda \\
        [--parallel P] [--runs-per-process N] [--jobs-per-gpu K] [--limit N] [--max-steps S] \\
        [--configfile my.yaml] [--config KEY=VALUE ...] [--out results/runs] [--json sweep.json]
    PYTHONPATH=src python3 bench/gpu_sweep.py --dry-run      # the plan, nothing run

For a machine that has torch but no Snakemake (a lent GPU machine without internet). The plan
is the workflow's: config.yaml, then each --configfile, then the --config values (merged as
Snakemake merges them), checked as the Snakefile checks them (without the schema where
jsonschema is not installed), and the package's run grid (experiment/grid.py). Each run is one
process of the train CLI with exactly the flags of the train rule (workflow/rules/train.smk)
and its output at the rule's path, ``<out>/{mode}/{variant}/s{s_des}/rep{rep}``, its log at
``<out>/../logs/train/...log`` (results/logs/train/ for the default --out), so that a later
``snakemake`` on a machine with Snakemake finds the runs made. Runs already complete are
skipped: after an interruption, run the same command again (cut-off runs resume from their
checkpoints). --limit N keeps the first N runs of the plan (complete ones count).

With --runs-per-process N (default: the config's runs_per_job, as the workflow's batches), one
process trains up to N consecutive runs of one configuration
(the train CLI's ``--rep R --out DIR`` pairs), each the same run as when trained alone, sharing
the interpreter, torch, MNIST and a GPU's CUDA context: where start-up is a large share of a run.
Its log is ``rep<first>-<last>.log`` beside the runs' own.

Up to --parallel processes run at once (default: the CPU cores this process may use; on one
H200 with 16 cores throughput stopped growing past about one process per core,
docs/benchmarks.md). Each process (its run, or each of its runs in turn) takes its own GPU
slot (--jobs-per-gpu, default --parallel: every process running has one) and, as the
workflow's train jobs do with
``cpu_slots: true`` (the config's default, kept here), one CPU core of its own, pinned: a GPU
job's numpy work (SAG, bookkeeping) and its kernel launches run on the CPU, and with one
process per core pinning costs nothing and keeps a starting process off the cores of running
ones. With --parallel above the cores the processes beyond them wait for a core, asleep
(docs/cluster.md, "CPU cores"); to measure time-sharing instead, add ``--config
cpu_slots=false``. Likewise the runs checkpoint every ``checkpoint_every`` steps (50) as the
workflow's do; ``--config checkpoint_every=0`` measures without checkpoints.

The report (Markdown on stdout; --json PATH writes it as JSON): runs planned, skipped, trained
and failed (each failure with its log file and its last line), the wall time of the sweep, runs
per minute, the median in-run time (run.json's wall_time_s: the training loop) and the median
start-up overhead per run (the process's wall time minus its in-run time: interpreter, torch,
CUDA context, MNIST, slot waits, writing the run), and what the whole grid takes at that rate.
"""

from __future__ import annotations

import argparse
import datetime
import itertools
import json
import os
import queue
import re
import shlex
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Mapping

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))  # this checkout's package, as the train processes run it
from askdagger_mnist.cli.common import run_command  # noqa: E402
from askdagger_mnist.cli.train import holds_current_run  # noqa: E402
from askdagger_mnist.data.atomic import write_bytes_atomic  # noqa: E402
from askdagger_mnist.data.mnist import TRAIN_FILES, download_command, missing_files  # noqa: E402
from askdagger_mnist.data.rundir import is_complete_run, read_info  # noqa: E402
from askdagger_mnist.errors import UserError  # noqa: E402
from askdagger_mnist.experiment.config_checks import cross_check  # noqa: E402
from askdagger_mnist.experiment.config_shape import (  # noqa: E402
    ConfigProblem, duplicate_keys, shape_problem)
from askdagger_mnist.experiment.flags import settings_flags  # noqa: E402
from askdagger_mnist.experiment.grid import LOGS, RUNS, all_run_keys  # noqa: E402
from askdagger_mnist.experiment.naming import format_s_des, run_label, run_subdir  # noqa: E402
from askdagger_mnist.experiment.run_settings import run_settings  # noqa: E402
from askdagger_mnist.runner.cpu_slots import allowed_cores  # noqa: E402

CONFIG_FILE = REPO / "config.yaml"
SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"
TRAIN_MODULE = "askdagger_mnist.cli.train"
CONFIG_KEY = re.compile(r"[a-zA-Z_][\w-]*\w$")  # what Snakemake accepts as a --config key
SHOWN_COMMANDS = 3  # commands a dry run prints


@dataclass(frozen=True)
class PlannedRun:
    key: tuple[str, str, float, int]  # mode, variant, s_des, rep
    out: Path  # its run directory
    log: Path  # where its output goes, as the train rule's log
    command: list[str]  # the train CLI with the train rule's flags
    recorded: dict  # run.json's "settings" of the finished run

    @property
    def label(self) -> str:
        return run_label(*self.key)


@dataclass(frozen=True)
class PlannedProcess:
    """One train process: one run, or several consecutive runs of one configuration (the train
    CLI's ``--rep R --out DIR`` once per run), which share its start-up."""

    runs: tuple[PlannedRun, ...]

    @property
    def label(self) -> str:
        first, last = self.runs[0], self.runs[-1]
        return first.label if len(self.runs) == 1 else f"{first.label}-{last.key[3]}"

    @property
    def log(self) -> Path:
        """The run's log; for several runs one log beside theirs, ``rep<first>-<last>.log``."""
        first = self.runs[0]
        if len(self.runs) == 1:
            return first.log
        return first.log.with_name(f"rep{first.key[3]}-{self.runs[-1].key[3]}.log")

    @property
    def command(self) -> list[str]:
        more = [arg for run in self.runs[1:]
                for arg in ("--rep", str(run.key[3]), "--out", str(run.out))]
        return [*self.runs[0].command, *more]


def processes_of(runs: Iterable[PlannedRun], per_process: int,
                 alone: Callable[[PlannedRun], bool] = lambda run: False) -> list[PlannedProcess]:
    """The runs in order, consecutive runs of one configuration (mode, variant, s_des) put
    together, at most ``per_process`` to a process; a run for which ``alone`` is true (one the
    train CLI will refuse: ``run_state``) gets a process of its own, so that its refusal, which
    stops the CLI before its first run, stops no other run."""
    groups: list[list[PlannedRun]] = []
    for run in runs:
        if (groups and len(groups[-1]) < per_process and groups[-1][-1].key[:3] == run.key[:3]
                and not alone(run) and not alone(groups[-1][-1])):
            groups[-1].append(run)
        else:
            groups.append([run])
    return [PlannedProcess(tuple(group)) for group in groups]


@dataclass(frozen=True)
class Finished:
    process: PlannedProcess
    exit_status: int
    process_wall_s: float  # process start to exit, as seen from here
    started_at: float  # time.time() when it started


# ---- the config, as the workflow reads it ----------------------------------------------------


def parse_override(entry: str) -> dict:
    """``KEY=VALUE`` of --config as a one-key mapping, the value read as YAML (so that
    ``modes=[success]`` is a list and ``max_steps=100`` a number, as the workflow gets them)."""
    key, sep, text = entry.partition("=")
    if not sep or not CONFIG_KEY.match(key):
        raise UserError(f"--config {entry}: write KEY=VALUE with a config key of config.yaml "
                        "(e.g. --config repetitions=3 'modes=[sensitivity]').")
    try:
        return {key: yaml.safe_load(text)}
    except yaml.YAMLError as exc:
        raise UserError(f"--config {entry}: the value is not valid YAML ({exc.problem}); quote "
                        "it for the shell, e.g. 'modes=[sensitivity]'.") from None


def merge(config: dict, update: Mapping) -> None:
    """Merge ``update`` into ``config`` as Snakemake does (a mapping into a mapping, key by key;
    anything else replaces)."""
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(config.get(key), dict):
            merge(config[key], value)
        else:
            config[key] = value


def read_config_file(path: Path) -> dict:
    try:
        loaded = yaml.safe_load(Path(path).read_text())
    except OSError as exc:
        raise UserError(f"--configfile {path} cannot be read ({exc.strerror}): name an existing "
                        "YAML file.") from None
    except yaml.YAMLError as exc:
        raise UserError(f"--configfile {path} is not valid YAML ({exc}): fix it.") from None
    if not isinstance(loaded, dict):
        raise UserError(f"--configfile {path} holds no mapping of config keys: write one "
                        "'key: value' per line, as config.yaml does.")
    return loaded


def load_config(configfiles: list[Path], overrides: list[dict]) -> dict:
    """config.yaml, each config file and each override merged in order, then checked."""
    problem = duplicate_keys([CONFIG_FILE, *configfiles])
    if problem:
        raise UserError(problem)
    config = read_config_file(CONFIG_FILE)
    for update in [*map(read_config_file, configfiles), *overrides]:
        merge(config, update)
    check_config(config)
    return config


def check_config(config: dict) -> None:
    """The Snakefile's check (types, schema, defaults, cross-checks); where jsonschema is not
    installed (a machine without Snakemake), the cross-checks only, with a warning."""
    try:
        from askdagger_mnist.experiment.config import check
    except ModuleNotFoundError as exc:
        if exc.name != "jsonschema":
            raise
        print("warning: jsonschema is not installed: the config is cross-checked but not "
              "checked against its schema, so a value of the wrong type may fail later "
              "(pip install jsonschema for the full check).",
              file=sys.stderr)
        check = cross_check_only
    try:
        check(config, SCHEMA)
    except ConfigProblem as exc:
        raise UserError(str(exc)) from None


def cross_check_only(config: dict, _schema: Path) -> None:
    """What of the Snakefile's check needs no jsonschema: the config's shape and cross-checks."""
    problem = shape_problem(config) or cross_check(config)
    if problem:
        raise ConfigProblem(problem)


# ---- the plan --------------------------------------------------------------------------------


def train_command(config: Mapping, key, out: Path, jobs_per_gpu: int) -> list[str]:
    """The train rule's command for run ``key`` (workflow/rules/train.smk), as an argument list:
    the wildcards, the run's settings, then the execution flags from the config."""
    mode, variant, s_des, rep = key
    settings = run_settings(config, mode, variant, s_des, rep)
    return [
        sys.executable, "-m", TRAIN_MODULE, "--mode", mode, "--variant", variant,
        "--s-des", format_s_des(s_des), "--rep", str(rep), *shlex.split(settings_flags(settings)),
        "--data-root", str(config["mnist_root"]), "--out", str(out),
        "--device", config["device"], "--jobs-per-gpu", str(jobs_per_gpu),
        "--engine", config["engine"], "--threads", str(config["threads"]),
        "--cpu-slots" if config["cpu_slots"] else "--no-cpu-slots",
        "--matmul-precision", config["matmul_precision"],
        "--checkpoint-every", str(config["checkpoint_every"]),
    ]


def plan_runs(config: Mapping, keys, runs_root: Path, jobs_per_gpu: int) -> list[PlannedRun]:
    logs_root = runs_root.parent / Path(LOGS).name / "train"  # results/logs/train by results/runs
    planned = []
    for key in keys:
        sub = run_subdir(*key)
        out = runs_root / sub
        settings = run_settings(config, *key).to_dict()
        planned.append(PlannedRun(key, out, logs_root / f"{sub}.log",
                                  train_command(config, key, out, jobs_per_gpu),
                                  {**settings, "variant": key[1]}))
    return planned


def run_state(run: PlannedRun) -> str:
    """"done" where the run directory already holds this run, finished by today's code;
    "refused" where it holds something the train CLI refuses (another run, a run of another
    results version, a file), which the CLI reports in one sentence in the run's log; else
    "to train"."""
    try:
        return "done" if holds_current_run(run.out, run.recorded) else "to train"
    except UserError:
        return "refused"


def plan_processes(planned: list[PlannedRun],
                   per_process: int) -> tuple[list[PlannedRun], list[PlannedProcess]]:
    """The runs not yet done, and the processes that train them (``processes_of``, a refused
    run alone); each run directory looked at once."""
    states = {run.out: run_state(run) for run in planned}
    todo = [run for run in planned if states[run.out] != "done"]
    return todo, processes_of(todo, per_process, lambda run: states[run.out] == "refused")


def check_mnist(root: Path) -> None:
    """Stop before any run when the two files training reads are not under ``root``."""
    missing = missing_files(root, TRAIN_FILES)  # a corrupt one: its own sentence
    if missing:
        raise UserError(f"--data-root {root} lacks MNIST/raw/{missing[0]}: point --data-root at "
                        f"a folder holding MNIST/raw/*.gz, or fetch them with "
                        f"`{download_command(root)}` where there is internet.")


def shown(process: PlannedProcess) -> str:
    """The process's command as the train rule's shell line writes it."""
    return f"{shlex.join(process.command)} > {shlex.quote(str(process.log))} 2>&1"


# ---- running ---------------------------------------------------------------------------------


def child_environment() -> dict:
    """The train rule's: this checkout's src/ first on PYTHONPATH."""
    before = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": str(REPO / "src") + (f":{before}" if before else "")}


def run_all(processes: Iterable[PlannedProcess], parallel: int,
            on_finish: Callable[[Finished], None]) -> list[Finished]:
    """Run every process, up to ``parallel`` at once, in order; each process's end is
    timed by a thread waiting on it. Interrupted (Ctrl-C, SIGTERM), the running processes are
    sent SIGTERM and waited for: each keeps its checkpoint, and the same command resumes."""
    env = child_environment()
    ended: queue.Queue[Finished] = queue.Queue()
    live: dict[str, subprocess.Popen] = {}  # by label: the processes not yet reported
    pending = iter(processes)
    finished = []

    def start(process: PlannedProcess) -> None:
        process.log.parent.mkdir(parents=True, exist_ok=True)
        with open(process.log, "w") as log:
            started_at, start_s = time.time(), time.perf_counter()
            proc = subprocess.Popen(process.command, stdin=subprocess.DEVNULL, stdout=log,
                                    stderr=subprocess.STDOUT, env=env)
        live[process.label] = proc
        threading.Thread(target=lambda: ended.put(
            Finished(process, proc.wait(), time.perf_counter() - start_s, started_at)),
            daemon=True).start()

    try:
        for process in itertools.islice(pending, parallel):
            start(process)
        while live:
            done = ended.get()
            del live[done.process.label]
            finished.append(done)
            on_finish(done)
            process = next(pending, None)
            if process is not None:
                start(process)
    finally:
        for proc in live.values():
            proc.terminate()
        for proc in live.values():
            proc.wait()
    return finished


def last_line(path: Path) -> str:
    try:
        lines = path.read_text(errors="replace").strip().splitlines()
    except OSError as exc:
        return f"(its log cannot be read: {exc.strerror})"
    return lines[-1] if lines else "(its log is empty)"


def finished_before(info: Mapping, moment: float) -> bool:
    """Whether run.json says the run finished before ``moment`` (restored from its kept copy,
    not trained by this process); False when it does not say."""
    try:
        stamp = datetime.datetime.strptime(info["finished_at"], "%Y-%m-%dT%H:%M:%S%z")
    except (KeyError, TypeError, ValueError):
        return False
    return stamp.timestamp() < int(moment)  # finished_at has whole seconds


def outcomes(done: Finished) -> list[dict]:
    """The rows of the report for the runs of one process: how each ended and, for the runs
    it trained, their times. A run's start-up is its share of the process's time outside the
    runs' loops (the whole of it with one run a process), given only where the process trained
    every one of its runs from the start: a failed or restored run's time is no start-up, and a
    resumed run's in-run time includes the earlier process's."""
    rows = [outcome(run, done) for run in done.process.runs]
    made = [row for row in rows if row["how"] == "trained"]
    if made and len(made) == len(rows):
        startup = (done.process_wall_s - sum(row["in_run_s"] for row in made)) / len(made)
        for row in made:
            row["startup_s"] = round(startup, 3)
    return rows


def outcome(run: PlannedRun, done: Finished) -> dict:
    """One run's row: how it ended and, when it trained, its time in the run and waiting."""
    log = done.process.log
    row = {"run": run.label, "exit_status": done.exit_status, "log": str(log),
           "process_wall_s": round(done.process_wall_s, 3),
           "runs_in_process": len(done.process.runs)}
    if not is_complete_run(run.out) or (done.exit_status != 0 and len(done.process.runs) == 1):
        return {**row, "how": "failed", "error": last_line(log)}
    info = read_info(run.out)
    if finished_before(info, done.started_at):
        # Put back from its kept copy; or, where the process failed, possibly never touched by
        # it (a run there before, which the CLI refused): not made here, as far as one can tell.
        if done.exit_status != 0:
            return {**row, "how": "failed", "error": last_line(log)}
        return {**row, "how": "restored"}
    in_run = info["wall_time_s"]
    waited = sum((info.get(p) or {}).get("waited_s", 0) for p in ("gpu_placement", "cpu_placement"))
    return {**row, "how": "resumed" if info.get("resumed_at_steps") else "trained",
            "in_run_s": in_run, "slot_wait_s": round(waited, 3), "device": info.get("device"),
            "engine": info.get("engine"), "torch": (info.get("versions") or {}).get("torch")}


def progress_line(row: dict, count: int, total: int) -> str:
    head = f"[{count}/{total}] {row['run']}:"
    if row["how"] == "failed":
        return f"{head} FAILED (exit status {row['exit_status']}), see {row['log']}"
    process = (f"in {row['process_wall_s']:.1f} s" if row["runs_in_process"] == 1 else
               f"by a process of {row['runs_in_process']} runs, {row['process_wall_s']:.1f} s")
    if row["how"] == "restored":
        return f"{head} restored from its kept copy {process}"
    return f"{head} {row['how']} {process} (in-run {row['in_run_s']:.1f} s)"


# ---- the report ------------------------------------------------------------------------------


def median_of(rows: list[dict], field: str) -> float | None:
    values = [row[field] for row in rows]
    return round(statistics.median(values), 3) if values else None


def summarize(rows: list[dict], wall_s: float, planned: int, grid: int, skipped: int,
              settings: Mapping) -> dict:
    """The report's numbers. Times per run are over the runs trained from the start here
    (resumed and restored runs have no comparable start-up)."""
    trained = [row for row in rows if row["how"] == "trained"]
    made = [row for row in rows if row["how"] in ("trained", "resumed")]
    per_minute = round(len(made) / (wall_s / 60), 2) if made and wall_s > 0 else None
    return {
        **settings, "grid": grid, "planned": planned, "skipped": skipped,
        "trained": len(trained), "resumed": len(made) - len(trained),
        "restored": sum(row["how"] == "restored" for row in rows),
        "failed": [{k: row[k] for k in ("run", "exit_status", "log", "error")}
                   for row in rows if row["how"] == "failed"],
        "wall_s": round(wall_s, 3), "runs_per_minute": per_minute,
        "median_in_run_s": median_of(trained, "in_run_s"),
        "median_startup_s": median_of([row for row in trained if "startup_s" in row],
                                      "startup_s"),
        "median_slot_wait_s": median_of(trained, "slot_wait_s"),
        "grid_minutes_at_this_rate": round(grid / per_minute, 1) if per_minute else None,
        "devices": sorted({row["device"] for row in made}),
        "engines": sorted({row["engine"] for row in made}),
        "torch": sorted({row["torch"] for row in made if row["torch"]}),
        "runs": rows,
    }


def seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} s"


def markdown(summary: Mapping) -> str:
    s = summary
    rows = [
        ("runs planned (of the grid's)", f"{s['planned']} (of {s['grid']})"),
        ("already complete, skipped", s["skipped"]),
        ("trained now from the start; resumed from a checkpoint",
         f"{s['trained']}; {s['resumed']}"),
        ("restored from their kept copies", s["restored"]),
        ("failed", len(s["failed"])),
        ("processes at once (--parallel); runs per process; GPU slots per GPU",
         f"{s['parallel']}; {s['runs_per_process']}; {s['jobs_per_gpu']}"),
        ("processes run; the most that ran at once", f"{s['processes']}; "
                                                    f"{s['processes_at_once']}"),
        ("CPU cores this process may use; CPU slots", f"{s['cores']}; {s['cpu_slots']}"),
        ("device; engine; torch", f"{', '.join(s['devices']) or s['device']}; "
                                  f"{', '.join(s['engines']) or s['engine']}; "
                                  f"{', '.join(s['torch']) or '-'}"),
        ("wall time of the sweep", seconds(s["wall_s"])),
        ("runs per minute", "-" if s["runs_per_minute"] is None else s["runs_per_minute"]),
        ("median in-run time (run.json wall_time_s)", seconds(s["median_in_run_s"])),
        ("median start-up overhead per run (process wall - in-run times, shared by its runs)",
         seconds(s["median_startup_s"])),
        ("of which waiting for a GPU or CPU slot (median)", seconds(s["median_slot_wait_s"])),
        (f"the whole grid ({s['grid']} runs) at this rate",
         "-" if s["grid_minutes_at_this_rate"] is None
         else f"{s['grid_minutes_at_this_rate']} min"),
    ]
    commit = f", commit {s['commit']}" if s["commit"] else ""
    lines = [f"## Sweep without Snakemake, {s['date']} on {s['host']}{commit}", "",
             f"`{s['command']}`", "", "| measure | value |", "|---|---|",
             *(f"| {name} | {value} |" for name, value in rows)]
    if s["processes_at_once"] < s["parallel"]:
        lines += ["", f"Only {s['processes']} processes for {s['parallel']} at once: the "
                  f"others' lanes stayed idle, so this rate understates the setting. To compare "
                  f"runs-per-process settings, give each --parallel x its runs per process runs "
                  f"(bench/gpu_session.sh does)."]
    if s["failed"]:
        lines += ["", "Failed runs (their logs):", ""]
        lines += [f"- {f['run']} (exit status {f['exit_status']}): {f['log']}: {f['error']}"
                  for f in s["failed"]]
    return "\n".join(lines) + "\n"


def write_json(path: Path, data: Mapping) -> None:
    write_bytes_atomic(Path(path), (json.dumps(data, indent=1) + "\n").encode())


# ---- the command -----------------------------------------------------------------------------


def checkout_commit() -> str | None:
    """This checkout's commit, or None without git (a copied working tree)."""
    try:
        done = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True)
    except OSError:
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def default_parallel() -> int:
    """The CPU cores this process may use (its affinity), as the CPU slots count them."""
    cores = allowed_cores()
    return len(cores) if cores else (os.cpu_count() or 1)


def positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not at least 1")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bench/gpu_sweep.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--configfile", type=Path, action="append", default=[],
                   help="a YAML file of config keys merged over config.yaml (repeatable)")
    p.add_argument("--config", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                   help="config values, as snakemake --config takes them")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"),
                   help="the config key device (default: config.yaml's, auto)")
    p.add_argument("--max-steps", type=positive, help="the config key max_steps: a shorter stream")
    p.add_argument("--data-root", type=Path,
                   help="folder holding MNIST/raw/*.gz (default: the config's mnist_root)")
    p.add_argument("--out", type=Path, default=Path(RUNS),
                   help=f"the runs folder (default {RUNS}, the workflow's); logs go to "
                   "<out>/../logs/train")
    p.add_argument("--parallel", type=positive, default=default_parallel(),
                   help="processes at once (default: the CPU cores this process may use)")
    p.add_argument("--runs-per-process", type=positive,
                   help="consecutive runs of one configuration trained by one process, sharing "
                   "its start-up (the train CLI's --rep/--out pairs; default: the config's "
                   "runs_per_job, 1)")
    p.add_argument("--jobs-per-gpu", type=positive,
                   help="GPU slots per GPU passed to each run (default: --parallel)")
    p.add_argument("--limit", type=positive, help="only the first N runs of the plan")
    p.add_argument("--dry-run", action="store_true", help="print the plan, run nothing")
    p.add_argument("--json", type=Path, help="also write the report (or the plan) as JSON here")
    return p


def configured(args: argparse.Namespace) -> dict:
    """The checked config, with the shortcut flags (--device, --max-steps, --data-root) last."""
    overrides = [parse_override(entry) for entry in args.config]
    shortcuts = {"device": args.device, "max_steps": args.max_steps,
                 "mnist_root": None if args.data_root is None else str(args.data_root)}
    overrides.append({k: v for k, v in shortcuts.items() if v is not None})
    return load_config(args.configfile, overrides)


def dry_run(args, planned: list[PlannedRun], grid: int) -> dict:
    todo, processes = plan_processes(planned, args.runs_per_process)
    print(f"{len(planned)} runs planned (the grid has {grid}), {len(planned) - len(todo)} "
          f"already complete, {len(todo)} to run in {len(processes)} processes, "
          f"{args.parallel} at once.")
    if processes:
        print(f"The first {min(SHOWN_COMMANDS, len(processes))} commands:")
        for process in processes[:SHOWN_COMMANDS]:
            print(f"  {shown(process)}")
    return {"grid": grid, "planned": len(planned), "to_run": len(todo),
            "commands": [{"run": p.label, "command": p.command, "log": str(p.log)}
                         for p in processes]}


def sweep(args, config: Mapping, planned: list[PlannedRun], grid: int) -> dict:
    check_mnist(Path(config["mnist_root"]))
    todo, processes = plan_processes(planned, args.runs_per_process)
    print(f"{len(planned)} runs planned, {len(planned) - len(todo)} already complete: "
          f"running {len(todo)}, {args.parallel} at once.", file=sys.stderr)
    rows = []

    def report_one(done: Finished) -> None:
        for row in outcomes(done):
            rows.append(row)
            print(progress_line(row, len(rows), len(todo)), file=sys.stderr, flush=True)

    start = time.perf_counter()
    run_all(processes, args.parallel, report_one)
    wall_s = time.perf_counter() - start if todo else 0.0
    settings = {
        "command": shlex.join(["python3", "bench/gpu_sweep.py", *sys.argv[1:]]),
        "date": time.strftime("%Y-%m-%d %H:%M"), "host": os.uname().nodename,
        "commit": checkout_commit(),
        "parallel": args.parallel, "runs_per_process": args.runs_per_process,
        "processes": len(processes), "processes_at_once": min(args.parallel, len(processes)),
        "jobs_per_gpu": args.jobs_per_gpu or args.parallel,
        "cores": default_parallel(), "cpu_slots": config["cpu_slots"],
        "device": config["device"], "engine": config["engine"],
    }
    return summarize(rows, wall_s, len(planned), grid, len(planned) - len(todo), settings)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    outcome_code = {"status": 0}

    def work() -> None:
        config = configured(args)
        args.runs_per_process = args.runs_per_process or config["runs_per_job"]
        keys = all_run_keys(config)
        planned = plan_runs(config, keys[:args.limit], args.out, args.jobs_per_gpu or args.parallel)
        if args.dry_run:
            result = dry_run(args, planned, len(keys))
        else:
            result = sweep(args, config, planned, len(keys))
            print(markdown(result), end="")
            outcome_code["status"] = 1 if result["failed"] else 0
        if args.json:
            write_json(args.json, result)

    code = run_command(work, stopped=lambda by: (
        f"stopped by {by}; the runs cut off keep their checkpoints: run the same command again "
        "to resume them (finished runs are skipped)."))
    return code or outcome_code["status"]


if __name__ == "__main__":
    sys.exit(main())
