"""bench/gpu_sweep.py, the paper's runs without Snakemake: its plan is the workflow's (630 runs at
the train rule's paths, each with the rule's flags), a tiny sweep on the CPU leaves complete run
directories, their logs where the workflow keeps them and a summary, the same command again
skips them, and a run that fails is listed with its log and its error."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
import yaml

from askdagger_mnist.cli.train import build_parser, settings_from_args
from askdagger_mnist.data.rundir import is_complete_run, read_info
from askdagger_mnist.experiment import config as cfg
from askdagger_mnist.experiment.grid import all_run_keys, run_dir
from askdagger_mnist.experiment.run_settings import run_settings
from conftest import MNIST_ROOT, REPO
from test_lockstep import bench_module

SCRIPT = REPO / "bench" / "gpu_sweep.py"
SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"
TRAIN = [sys.executable, "-m", "askdagger_mnist.cli.train"]


def sweep(*args: str) -> subprocess.CompletedProcess:
    """The script as the GPU machine runs it, from the repository root."""
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True,
                          cwd=REPO)


def test_dry_run_plans_the_papers_630_runs_with_the_train_rules_flags(tmp_path):
    plan_file = tmp_path / "plan.json"
    done = sweep("--dry-run", "--parallel", "3", "--json", str(plan_file))
    assert done.returncode == 0, done.stderr
    assert "630 runs planned" in done.stdout
    plan = json.loads(plan_file.read_text())
    assert plan["planned"] == plan["grid"] == 630

    config = yaml.safe_load((REPO / "config.yaml").read_text())
    cfg.check(config, SCHEMA)
    wanted = {run_dir(*key): key for key in all_run_keys(config)}
    commands = [entry["command"] for entry in plan["commands"]]
    assert len(commands) == 630
    seen = set()
    for command in commands:
        assert command[:3] == TRAIN
        args = build_parser().parse_args(command[3:])
        key = wanted[str(args.out)]  # the train rule's output path, as the Snakefile names it
        seen.add(str(args.out))
        assert (args.mode, args.variant, args.s_des, args.rep) == (key[0], key[1], key[2], key[3])
        assert settings_from_args(args) == run_settings(config, *key)
        assert str(args.data_root) == config["mnist_root"]  # the config's, no other default
        assert (args.device, args.engine, args.threads, args.cpu_slots) == ("auto", "auto", 1, True)
        assert (args.checkpoint_every, args.matmul_precision) == (50, "highest")
        assert args.jobs_per_gpu == 3  # one GPU slot for each process at once
    assert seen == set(wanted)
    log = plan["commands"][0]["log"]
    assert log == "results/logs/train/sensitivity/sag/s0.1/rep0.log"


def test_dry_run_follows_config_overrides_and_limit(tmp_path):
    plan_file = tmp_path / "plan.json"
    done = sweep("--dry-run", "--config", "modes=[success]", "s_des=[0.9]", "repetitions=2",
                 "--max-steps", "7", "--device", "cpu", "--limit", "3", "--out",
                 str(tmp_path / "runs"), "--json", str(plan_file))
    assert done.returncode == 0, done.stderr
    plan = json.loads(plan_file.read_text())
    # main: success x sag x 0.9 x 2 reps; both ablations: sensitivity x 5 variants x 0.9 x 2 reps
    assert plan["grid"] == 2 + 10 and plan["planned"] == 3
    first = build_parser().parse_args(plan["commands"][0]["command"][3:])
    assert (first.mode, first.s_des, first.rep, first.max_steps, first.device) == (
        "success", 0.9, 0, 7, "cpu")
    assert first.out == tmp_path / "runs" / "success" / "sag" / "s0.9" / "rep0"
    assert not (tmp_path / "runs").exists()  # a dry run writes nothing


def test_without_jsonschema_the_plan_is_the_same(tmp_path):
    """The GPU machine has no Snakemake and so maybe no jsonschema: the script then plans the
    same runs (the config cross-checked only) and says what it did not check."""
    plans = {}
    for name, block in (("full", ""), ("bare", "sys.modules['jsonschema'] = None; ")):
        argv = [str(SCRIPT), "--dry-run", "--config", "repetitions=2", "--json",
                str(tmp_path / f"{name}.json")]
        done = subprocess.run(
            [sys.executable, "-c", f"import runpy, sys; {block}sys.argv = {argv!r}; "
             f"runpy.run_path({str(SCRIPT)!r}, run_name='__main__')"],
            capture_output=True, text=True, cwd=REPO)
        assert done.returncode == 0, done.stderr
        assert ("jsonschema is not installed" in done.stderr) == (name == "bare")
        plans[name] = json.loads((tmp_path / f"{name}.json").read_text())
    assert plans["bare"] == plans["full"] and plans["full"]["planned"] == 126


def test_a_bad_config_value_stops_in_one_sentence():
    done = sweep("--dry-run", "--config", "repetitions=0")
    assert done.returncode == 1
    assert done.stderr.startswith("error: invalid config value repetitions = 0")
    assert len(done.stderr.strip().splitlines()) == 1


@pytest.mark.needs_mnist
def test_a_failed_run_is_listed_with_its_log_and_error(tmp_path):
    out = tmp_path / "results" / "runs"
    blocker = out / "sensitivity" / "sag" / "s0.1" / "rep0"
    blocker.parent.mkdir(parents=True)
    blocker.write_text("not a run")  # the train CLI refuses it before importing torch
    summary_file = tmp_path / "summary.json"
    done = sweep("--limit", "1", "--device", "cpu", "--data-root", str(MNIST_ROOT), "--out",
                 str(out), "--json", str(summary_file))
    assert done.returncode == 1, done.stderr
    summary = json.loads(summary_file.read_text())
    assert summary["trained"] == 0 and len(summary["failed"]) == 1
    failure = summary["failed"][0]
    log = tmp_path / "results" / "logs" / "train" / "sensitivity" / "sag" / "s0.1" / "rep0.log"
    assert failure["run"] == "sensitivity/sag/s0.1/rep0" and failure["log"] == str(log)
    assert "is an existing file or link, not a run directory" in failure["error"]
    assert failure["error"] in log.read_text()
    assert str(log) in done.stdout and blocker.read_text() == "not a run"


def test_no_mnist_stops_before_any_run(tmp_path):
    done = sweep("--limit", "1", "--data-root", str(tmp_path / "empty"), "--out",
                 str(tmp_path / "runs"))
    assert done.returncode == 1
    assert done.stderr.startswith(f"error: --data-root {tmp_path / 'empty'} lacks MNIST/raw/")
    assert not (tmp_path / "runs").exists() and not (tmp_path / "logs").exists()


@pytest.mark.slow
@pytest.mark.needs_mnist
def test_a_tiny_cpu_sweep_makes_complete_runs_and_the_same_command_skips_them(tmp_path):
    out = tmp_path / "results" / "runs"
    args = ["--device", "cpu", "--max-steps", "2", "--limit", "2", "--parallel", "2",
            "--config", "cpu_slots=false", "--data-root", str(MNIST_ROOT), "--out", str(out)]
    first = sweep(*args, "--json", str(tmp_path / "first.json"))
    assert first.returncode == 0, first.stderr
    summary = json.loads((tmp_path / "first.json").read_text())
    assert (summary["trained"], summary["skipped"], summary["failed"]) == (2, 0, [])
    runs = [out / "sensitivity" / "sag" / "s0.1" / f"rep{rep}" for rep in (0, 1)]
    logs = tmp_path / "results" / "logs" / "train" / "sensitivity" / "sag" / "s0.1"
    finished = {}
    for rep, run in enumerate(runs):
        assert is_complete_run(run)
        info = read_info(run)
        assert info["n_steps"] == 2 and info["device"].startswith("cpu")
        assert info["cpu_placement"] is None  # --config cpu_slots=false reached the command
        assert "run written to" in (logs / f"rep{rep}.log").read_text()
        finished[run] = info["finished_at"]
    rows = {row["run"]: row for row in summary["runs"]}
    for rep in (0, 1):
        row = rows[f"sensitivity/sag/s0.1/rep{rep}"]
        assert row["how"] == "trained"
        assert row["in_run_s"] == read_info(runs[rep])["wall_time_s"]
        assert row["startup_s"] == pytest.approx(row["process_wall_s"] - row["in_run_s"], abs=2e-3)
    assert summary["median_in_run_s"] > 0 and summary["median_startup_s"] > 0
    assert summary["runs_per_minute"] > 0 and summary["wall_s"] > 0
    for measure in ("runs per minute", "median in-run time", "start-up overhead"):
        assert measure in first.stdout

    second = sweep(*args, "--json", str(tmp_path / "second.json"))
    assert second.returncode == 0, second.stderr
    again = json.loads((tmp_path / "second.json").read_text())
    assert (again["trained"], again["skipped"], again["failed"]) == (0, 2, [])
    assert {run: read_info(run)["finished_at"] for run in runs} == finished


def test_runs_per_process_puts_consecutive_runs_of_one_configuration_together(tmp_path):
    done = sweep("--dry-run", "--runs-per-process", "4", "--config", "repetitions=6",
                 "--out", str(tmp_path / "runs"), "--json", str(tmp_path / "plan.json"))
    assert done.returncode == 0, done.stderr
    plan = json.loads((tmp_path / "plan.json").read_text())
    config_runs = plan["to_run"] // 6  # runs per configuration: 6 repetitions
    assert len(plan["commands"]) == 2 * config_runs  # 4 + 2 of each configuration
    first, second = plan["commands"][:2]
    assert first["run"] == "sensitivity/sag/s0.1/rep0-3" and second["run"] == "sensitivity/sag/s0.1/rep4-5"
    assert first["log"].endswith("sensitivity/sag/s0.1/rep0-3.log")
    # The train CLI reads the pairs back as the runs it was asked for, in order.
    from askdagger_mnist.cli.train import runs_asked

    args = build_parser(several=True).parse_args(first["command"][3:])
    runs = runs_asked(args)
    assert [(r.rep, r.out.name) for r in runs] == [(rep, f"rep{rep}") for rep in range(4)]
    assert {settings_from_args(r).mode for r in runs} == {"sensitivity"}
    # The config's runs_per_job is the default, as the workflow's batches.
    done = sweep("--dry-run", "--config", "repetitions=6", "runs_per_job=4", "--out",
                 str(tmp_path / "runs"), "--json", str(tmp_path / "plan2.json"))
    assert done.returncode == 0, done.stderr
    assert json.loads((tmp_path / "plan2.json").read_text())["commands"] == plan["commands"]


@pytest.mark.slow
@pytest.mark.needs_mnist
def test_a_process_of_several_runs_reports_each_with_its_share_of_the_start_up(tmp_path):
    out = tmp_path / "results" / "runs"
    args = ["--device", "cpu", "--max-steps", "2", "--limit", "3", "--runs-per-process", "2",
            "--parallel", "1", "--config", "cpu_slots=false", "--data-root", str(MNIST_ROOT),
            "--out", str(out), "--json", str(tmp_path / "sweep.json")]
    done = sweep(*args)
    assert done.returncode == 0, done.stderr
    summary = json.loads((tmp_path / "sweep.json").read_text())
    assert (summary["trained"], summary["failed"], summary["runs_per_process"]) == (3, [], 2)
    rows = {row["run"]: row for row in summary["runs"]}
    pair = [rows[f"sensitivity/sag/s0.1/rep{rep}"] for rep in (0, 1)]
    assert pair[0]["process_wall_s"] == pair[1]["process_wall_s"]
    assert pair[0]["runs_in_process"] == 2 and rows["sensitivity/sag/s0.1/rep2"]["runs_in_process"] == 1
    shared = (pair[0]["process_wall_s"] - pair[0]["in_run_s"] - pair[1]["in_run_s"]) / 2
    assert pair[0]["startup_s"] == pair[1]["startup_s"] == pytest.approx(shared, abs=2e-3)
    log = tmp_path / "results" / "logs" / "train" / "sensitivity" / "sag" / "s0.1" / "rep0-1.log"
    assert log.read_text().count("run written to") == 2


def test_a_process_with_a_run_it_did_not_train_gives_no_start_up_share(monkeypatch):
    """A failed or restored run's time in a process is no start-up: such a process gives its
    trained runs no share, and the summary's median is over the processes that trained all."""
    gpu_sweep = bench_module("gpu_sweep")
    ending = {}  # run label -> what outcome() reports for it

    def fake_outcome(run, done):
        return {"run": run.label, "how": ending[run.label], "in_run_s": 4.0,
                "slot_wait_s": 0.0, "device": "cpu", "engine": "fast", "torch": "x"} \
            if ending[run.label] in ("trained", "resumed") \
            else {"run": run.label, "how": ending[run.label]}

    monkeypatch.setattr(gpu_sweep, "outcome", fake_outcome)

    def planned(rep):
        return gpu_sweep.PlannedRun(("sensitivity", "sag", 0.9, rep), None, None, [], {})

    def finished(*reps):
        process = gpu_sweep.PlannedProcess(tuple(planned(rep) for rep in reps))
        return gpu_sweep.Finished(process, 0, 20.0, 0.0)

    ending.update({"sensitivity/sag/s0.9/rep0": "trained", "sensitivity/sag/s0.9/rep1": "trained"})
    both = gpu_sweep.outcomes(finished(0, 1))
    assert [row["startup_s"] for row in both] == [6.0, 6.0]  # (20 - 4 - 4) / 2
    for how in ("failed", "restored", "resumed"):  # resumed: its in-run time holds another's
        ending.update({"sensitivity/sag/s0.9/rep2": "trained", "sensitivity/sag/s0.9/rep3": how})
        rows = gpu_sweep.outcomes(finished(2, 3))
        assert not any("startup_s" in row for row in rows), how
    summary = gpu_sweep.summarize(both + rows, 40.0, 4, 630, 0, {})
    assert summary["median_startup_s"] == 6.0 and summary["trained"] == 3


@pytest.mark.needs_mnist
def test_a_run_the_cli_refuses_gets_a_process_of_its_own_and_is_reported_failed(tmp_path):
    """A run directory holding what the train CLI refuses (here another run's) stops the CLI
    before its first run: planned with the next runs of its configuration, it would take them
    down on every rerun, and its old run.json read as "restored". It runs alone and fails with
    the CLI's sentence; the others of its configuration are trained."""
    out = tmp_path / "results" / "runs"
    args = ["--device", "cpu", "--max-steps", "2", "--limit", "2", "--runs-per-process", "2",
            "--parallel", "1", "--config", "cpu_slots=false", "--data-root", str(MNIST_ROOT),
            "--out", str(out)]
    assert sweep(*args, "--json", str(tmp_path / "first.json")).returncode == 0
    rep0, rep1 = (out / "sensitivity" / "sag" / "s0.1" / f"rep{rep}" for rep in (0, 1))
    info = json.loads((rep0 / "run.json").read_text())
    info["settings"]["s_des"] = 0.2  # now the run of another configuration
    (rep0 / "run.json").write_text(json.dumps(info))
    shutil.rmtree(rep1)  # and its kept copy: rep1 must be trained again
    shutil.rmtree(rep1.parent / ".kept" / "rep1")
    plan = sweep(*args, "--dry-run", "--json", str(tmp_path / "plan.json"))
    assert [c["run"] for c in json.loads((tmp_path / "plan.json").read_text())["commands"]] == [
        "sensitivity/sag/s0.1/rep0", "sensitivity/sag/s0.1/rep1"], plan.stderr
    done = sweep(*args, "--json", str(tmp_path / "second.json"))
    assert done.returncode == 1, done.stderr
    summary = json.loads((tmp_path / "second.json").read_text())
    rows = {row["run"]: row for row in summary["runs"]}
    assert rows["sensitivity/sag/s0.1/rep0"]["how"] == "failed"
    assert "holds a finished run with other settings" in rows["sensitivity/sag/s0.1/rep0"]["error"]
    assert rows["sensitivity/sag/s0.1/rep1"]["how"] == "trained" and is_complete_run(rep1)
    assert (summary["processes"], summary["processes_at_once"]) == (2, 1)


@pytest.mark.slow
@pytest.mark.needs_mnist
def test_the_gpu_session_script_keeps_a_report_per_setting(tmp_path):
    """bench/gpu_session.sh, the one call for a lent GPU, tried on the CPU: a report per runs-per-
    process setting under $OUT, the runs themselves not kept."""
    out = tmp_path / "out"
    env = {**os.environ, "OUT": str(out), "DEVICE": "cpu", "MAX_STEPS": "2",
           "PYTHON": sys.executable}
    done = subprocess.run(["bash", str(REPO / "bench" / "gpu_session.sh"), str(MNIST_ROOT), "2",
                           "1", "2"], cwd=REPO, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (out / "summary.txt").read_text().splitlines() == [
        "runs per process 1: exit 0", "runs per process 2: exit 0"]
    for n in (1, 2):  # PROCESSES x n runs: two processes of n runs each, both at once
        report = json.loads((out / f"sweep-runs-per-process-{n}.json").read_text())
        assert (report["trained"], report["failed"], report["runs_per_process"]) == (2 * n, [], n)
        assert (report["parallel"], report["processes"], report["processes_at_once"]) == (2, 2, 2)
    assert "torch" in (out / "torch.txt").read_text()
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["nvidia-smi.txt", "torch.txt", "summary.txt"]
        + [f"sweep-runs-per-process-{n}.{ext}" for n in (1, 2) for ext in ("json", "txt")])


def test_the_gpu_session_script_says_how_to_call_it(tmp_path):
    done = subprocess.run(["bash", str(REPO / "bench" / "gpu_session.sh")], cwd=REPO,
                          capture_output=True, text=True)
    assert done.returncode == 2 and done.stderr.startswith("usage: bash bench/gpu_session.sh")
    (tmp_path / "MNIST" / "raw").mkdir(parents=True)
    done = subprocess.run(["bash", str(REPO / "bench" / "gpu_session.sh"), str(tmp_path), "4",
                           "1", "x5"], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 2 and "'x5' is not a positive whole number" in done.stderr
