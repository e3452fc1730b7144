"""Every command the documents show works as written, and builds what their text says.

The commands are taken from README.md and docs/*.md themselves:
- every line of a shell block (```bash, or an untagged block whose lines all start with a
  command), with its `\\` continuations, split at `&&`, comments dropped;
- every inline `snakemake ...` span of the prose that is a whole command (not a synopsis with
  <placeholders> or "..."), and every inline `python -m askdagger_mnist.cli.<stage> --help`.

Each one is then checked offline, in seconds:
- `snakemake ...` runs exactly as written, in a fresh directory laid out like a checkout (its
  files linked, no results), with HOME in the test's temporary folder (so `--profile mysite`
  finds the site profile that cluster.md's own `mkdir` and `sed` lines make there), as a dry
  run the way Snakemake's API offers it (`pseudo_executor="dryrun"`): every argument is checked
  against the executor the command would really use (a build without `--cores` fails, as it
  does for a user), and nothing is executed. It must plan without error, and where the text
  says what it builds (EXPECT), the planned jobs must be those. `--unlock` and `--report` run
  for real: the report commands in a directory holding the main job's figure, as after it;
- `python -m askdagger_mnist.cli.<stage> ...`: parsed by the stage's own argument parser
  (every flag and choice must exist); `... --help` runs;
- a benchmark script of the original code (`bench/...`): every `--flag` the document gives
  must be one that the script's `--help` lists;
- the small shell commands (`mkdir`, `sed`, `pgrep`, the process loop) run with bash.
What cannot run offline in seconds is in SKIP, each with the reason. A command that is neither
handled nor in SKIP fails: so a renamed config key, target, profile or flag in a document, or a
new command nobody checked, fails here.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import shlex
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from conftest import REPO
from test_workflow_static import job_counts

DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
COMMAND_WORDS = ("snakemake", "python", "pip", "bash", "git", "mkdir", "sed", "pgrep", "for")

# Commands that cannot run offline in seconds, each with the reason. Keys: the command as the
# document writes it (comments dropped, whitespace collapsed); a key no document holds any more
# fails test_skip_list_names_only_commands_of_the_documents.
SKIP = {
    # installs from the package index; the test environment is that very install
    'pip install -e .': "installs from the package index",
    'pip install -e ".[test,slurm]"': "installs from the package index",
    'pip install -e ".[test]"': "installs from the package index",
    'pip install -e ".[slurm]"': "installs from the package index",
    # the test suite itself
    "python -m pytest": "the test suite itself",
    # conda: no channel is reachable from the machines this is tested on (README, 'Not verified')
    "snakemake --sdm conda --cores 8": "needs conda and a reachable conda channel",
    "CONDA_OVERRIDE_CUDA=12.9 snakemake --profile my-slurm-profile --sdm conda "
    "--conda-create-envs-only": "needs conda and a reachable conda channel",
    # fragments of a sentence, completed by it
    "snakemake --touch": "a fragment: the sentence says to add the sweep's own targets and "
                         "config (the bare form would mark outputs that do not exist)",
    "snakemake --report": "a fragment of reproduction.md; needs a verdict already built "
                          "(tests/workflow/test_reproduction_workflow.py builds its report)",
    # the authors' original code: downloads their pinned environment and their repository
    "bash bench/gpu_session.sh /path/to/mnist 16 1 5 10":
        "needs a GPU (tests/bench/test_gpu_sweep.py runs the script on the CPU)",
    "bash bench/original/make_env.sh /path/to/original-venv":
        "installs the authors' pinned environment from the package index",
    "git clone https://github.com/pouyan-asg/askdagger_mnist /path/to/authors":
        "needs the network",
}

# Where the text says what a command builds: the jobs its dry run must plan ({rule: count};
# None: at least one), rules it must not plan (count 0), and words its planned commands or
# resources must show. Keys: the command as written, or (document name, command) where the
# same words mean something else in one document.
MAIN_RUNS = 3 * 9 * 10  # modes x s_des x repetitions of the main figure
ALL_RUNS = 630
EXPECT = {
    # README "Two commands"; workflow.md "Running it"; resuming with the main job's command
    "snakemake --cores 8 figures/mnist.pdf": {"train": MAIN_RUNS, "plot_main": 1, "aggregate": 0},
    "snakemake --cores 8": {"train": ALL_RUNS, "total": 640},
    "snakemake -n": {"train": ALL_RUNS, "total": 640},
    "snakemake --cores 2 --configfile workflow/presets/smoke.yaml": {"train": 14, "plot_sag": 1},
    # README "Resuming": another command is another sweep
    "snakemake --cores 8 --rerun-incomplete": {"train": ALL_RUNS, "total": 640},
    "snakemake --cores 8 figures/mnist.pdf --config repetitions=1 's_des=[0.5,0.9]' max_steps=20":
        {"train": 6, "total": 9, "_shell": ["--max-steps 20 "]},
    # README "Choosing what to run"
    "snakemake --cores 8 --config repetitions=3 'modes=[sensitivity]'":
        {"train": 1 * 9 * 3 + 4 * 9 * 3, "_shell": ["--mode sensitivity"],
         "_not_shell": ["--mode success", "--mode specificity"]},
    "snakemake --cores 8 figures/mnist.pdf --config 's_des=[0.5,0.9]'": {"train": 3 * 2 * 10},
    "snakemake --cores 8 --configfile my.yaml": {"train": None},
    # README and workflow.md: the preset, then my.yaml's repetitions: 3 (both files apply)
    "snakemake --cores 2 --configfile workflow/presets/smoke.yaml my.yaml":
        {"train": 2 * 3 * 7, "_shell": ["--max-steps 40 "]},
    "snakemake --cores 8 results/runs/success/sag/s0.9/rep0": {"train": 1, "total": 2},
    # workflow.md "Runs per job": still one train job per run, a batch's first training it
    "snakemake --cores 8 figures/mnist.pdf --config runs_per_job=10":
        {"train": MAIN_RUNS},
    # ... and one run of a batch plans its batch's first job and its own
    "snakemake --cores 2 results/runs/sensitivity/sag/s0.9/rep3 --config runs_per_job=5":
        {"train": 2, "total": 3},  # (which flags each gets: tests/workflow/test_runs_per_job.py)
    "snakemake --cores 8 figures/mnist.pdf --config engine=plain":
        {"train": MAIN_RUNS, "_shell": ["--engine plain "]},
    "snakemake -n figures/mnist.pdf": {"train": MAIN_RUNS},
    # workflow.md "Running only a part"
    "snakemake --cores 8 figures/mnist.pdf --config 'modes=[sensitivity]' 's_des=[0.5,0.9]' "
    "repetitions=3": {"train": 1 * 2 * 3},
    "snakemake --cores 1 results/mnist.verified.json": {"download_mnist": 1, "total": 1},
    # prebuilt results: not a single training job; a bundle packs (and first trains) every run
    "snakemake --cores 1 --config results_source=download -- figures/mnist.pdf":
        {"train": 0, "import_run": MAIN_RUNS, "check_imports": 1, "fetch_archive": None,
         "import_archive": None},
    "snakemake --cores 1 results/bundle.zip": {"bundle": 1, "train": ALL_RUNS},
    # README "Does it reproduce?": imports first; which runs of ours follow from the archive
    "snakemake --cores 8 --config 'compare_with=[authors_sensitivity]' -- "
    "results/reproduction/verdict.md": {"fetch_archive": 1, "import_comparison": 1,
                                        "comparable_configurations": 1, "train": 0},
    ("reproduction.md", "snakemake --cores 8 results/reproduction/verdict.md "
     "figures/reproduction.pdf"): {"import_comparison": 1, "reproduction_verdict": 1,
                                   "plot_reproduction": 1},
    ("reproduction.md", "snakemake --cores 8"): {"import_comparison": 1,
                                                 "reproduction_verdict": 1, "train": ALL_RUNS},
    # GPUs: each training job carries the tag gpu=1 with device cuda
    "snakemake --cores 16 --resources gpu=2 --config device=cuda":
        {"train": ALL_RUNS, "_resources": ["gpu=1", "device=cuda"]},
    "snakemake --cores 16 --resources gpu=4 --config device=cuda jobs_per_gpu=2":
        {"train": ALL_RUNS, "_resources": ["gpu=1", "device=cuda"], "_shell": ["--jobs-per-gpu 2 "]},
    "snakemake --profile workflow/profiles/gpu-workstation":
        {"train": ALL_RUNS, "_resources": ["gpu=1", "device=cuda"]},
    "snakemake --profile workflow/profiles/gpu-workstation figures/mnist.pdf":
        {"train": MAIN_RUNS, "_resources": ["gpu=1", "device=cuda"]},
    "snakemake --profile workflow/profiles/gpu-workstation --resources gpu=4 --config device=cuda "
    "jobs_per_gpu=2": {"train": ALL_RUNS, "_resources": ["gpu=1", "device=cuda"],
                       "_shell": ["--jobs-per-gpu 2 "]},
    # SLURM: every train job asks for one GPU in the GPU partition
    "snakemake --profile workflow/profiles/slurm-gpu":
        {"train": ALL_RUNS, "_resources": ["gpu=1", "slurm_partition=<gpu-partition>"]},
    "snakemake --profile mysite figures/mnist.pdf":
        {"train": MAIN_RUNS, "_resources": ["gpu=1", "slurm_partition=gpu-a100"]},
    "snakemake --profile my-slurm-profile figures/mnist.pdf": {"train": MAIN_RUNS},
    "snakemake --profile my-slurm-profile -n": {"train": ALL_RUNS},
    "snakemake --profile workflow/profiles/slurm-gpu figures/mnist.pdf --default-resources "
    "slurm_partition=standard mem_mb=2000 runtime=30 --set-resources "
    "train:slurm_partition=gpu-a100 train:gpu=1 train:tasks_per_gpu=0 train:cpus_per_gpu=threads "
    "train:mem_mb=4000 train:runtime=5": {"train": MAIN_RUNS,
                          "_resources": ["gpu=1", "slurm_partition=gpu-a100", "mem_mb=4000"]},
    # --unlock and --report run for real (see _snakemake)
    "snakemake --unlock": {"_output": ["Unlock"]},
    "snakemake --profile my-slurm-profile --unlock": {"_output": ["Unlock"]},
    "snakemake --report report.html -- figures/mnist.pdf": {"_report": True},
    "snakemake --report report.html":
        {"_report": False, "_output": ["results/metrics/runs.csv marked for report but does not exist"]},
}
# Commands whose document gives their config in the YAML block just above them.
YAML_ABOVE = {("reproduction.md", "snakemake --cores 8 results/reproduction/verdict.md "
               "figures/reproduction.pdf"), ("reproduction.md", "snakemake --cores 8")}
# The site profiles the documents name: cluster.md makes ~/.config/snakemake/mysite with its own
# mkdir and sed lines (run first, below); "my-slurm-profile" is "your own copy", made the same way.
SITE_PROFILES = ("mysite", "my-slurm-profile")


@dataclass
class Command:
    doc: str
    line: int
    text: str  # as written, comments dropped, whitespace collapsed
    raw: str  # as written, for bash
    inline: bool
    yaml_above: str | None = None
    result: dict = field(default_factory=dict)

    @property
    def id(self) -> str:
        return f"{self.doc}:{self.line}:{self.text[:60]}"


def _strip_comment(line: str) -> str:
    """``line`` without a trailing ``# comment`` outside quotes."""
    quote = None
    for i, ch in enumerate(line):
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i].rstrip()
    return line.rstrip()


def _split_and(line: str) -> list[str]:
    """``a && b`` -> [a, b], outside quotes."""
    parts, quote, start, i = [], None, 0, 0
    while i < len(line):
        ch = line[i]
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif line.startswith("&&", i):
            parts.append(line[start:i].strip())
            start, i = i + 2, i + 2
            continue
        i += 1
    return [p for p in [*parts, line[start:].strip()] if p]


def _is_command(line: str) -> bool:
    word = line.split()[0] if line.split() else ""
    word = word if "=" not in word else (line.split()[1] if len(line.split()) > 1 else "")
    return word in COMMAND_WORDS or word.endswith("/python")


def extract_commands() -> list[Command]:
    commands = []
    for path in DOCS:
        text, name = path.read_text(), path.name
        yaml_above = None
        for m in re.finditer(r"^( *)```(\w*)\n(.*?)^\1```", text, re.S | re.M):
            lang, body = m.group(2), m.group(3)
            first = text[: m.start()].count("\n") + 2
            if lang == "yaml":
                yaml_above = body
            lines = [ln.strip() for ln in body.splitlines()]
            if lang not in ("bash", "sh", "shell") and not (
                lang == "" and any(lines) and all(_is_command(ln) for ln in lines if ln)
            ):
                continue
            logical, start = "", None
            for offset, ln in enumerate(lines):
                start = first + offset if start is None else start
                ln = _strip_comment(ln)
                if ln.endswith("\\"):
                    logical += ln[:-1] + " "
                    continue
                logical += ln
                # a loop stays whole (its `&&` is inside it); other lines split at `&&`
                for part in [logical] if logical.startswith("for ") else _split_and(logical):
                    commands.append(Command(name, start, " ".join(part.split()), part, False,
                                            yaml_above))
                logical, start = "", None
        # inline spans of the prose (code blocks blanked out, line breaks kept for numbering)
        prose = re.sub(r"^( *)```.*?^\1```", lambda b: "\n" * b.group(0).count("\n"), text,
                       flags=re.S | re.M)
        for m in re.finditer(r"`([^`]+)`", prose):
            span = " ".join(m.group(1).split())
            if "<" in span or "..." in span or "|" in span:
                continue  # a synopsis, not a command
            if span.startswith("snakemake ") or re.fullmatch(
                    r"python -m askdagger_mnist\.cli\.\w+ --help", span):
                line = prose[: m.start()].count("\n") + 1
                commands.append(Command(name, line, span, span, True, yaml_above))
    return commands


COMMANDS = extract_commands()


def _expectation(cmd: Command):
    return EXPECT.get((cmd.doc, cmd.text), EXPECT.get(cmd.text))


def _kind(cmd: Command) -> str:
    if cmd.text in SKIP:
        return "skip"
    words = shlex.split(cmd.raw)
    while words and re.fullmatch(r"[A-Z_]+=\S*", words[0]):
        words = words[1:]
    if words[0] == "snakemake":
        return "snakemake"
    if words[:2] == ["python", "-m"] and words[2].startswith("askdagger_mnist.cli."):
        return "cli"
    if words[0].endswith("python") and len(words) > 1 and words[1].startswith("bench/"):
        return "bench"
    if words[0] in ("mkdir", "sed", "pgrep", "for"):
        return "bash"
    return "unknown"


# ---- running them -----------------------------------------------------------------------------

_LINKED = ("Snakefile", "config.yaml", "workflow", "profiles", "src", "envs", "bench", "pyproject.toml")


def _checkout(directory: Path) -> Path:
    """A directory laid out like a checkout (the files linked, no results), to run commands in."""
    directory.mkdir(parents=True)
    for name in _LINKED:
        (directory / name).symlink_to(REPO / name)
    return directory


def _env(home: Path) -> dict:
    return {**os.environ, "HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"),
            "XDG_CACHE_HOME": str(home / ".cache")}


def _job_counts(output: str) -> dict[str, int]:
    return job_counts(output) if "Job stats:" in output else {}


def _snakemake_job(cmd: Command, workdir: Path, home: Path) -> dict:
    """How to run ``cmd``: its arguments as written, its directory and environment."""
    words = shlex.split(cmd.raw)
    env = _env(home)
    while re.fullmatch(r"[A-Z_]+=\S*", words[0]):
        key, value = words.pop(0).split("=", 1)
        env[key] = value
    args = words[1:]
    if cmd.yaml_above is not None and (cmd.doc, cmd.text) in YAML_ABOVE:
        (workdir / "doc-config.yaml").write_text(cmd.yaml_above)
        args = ["--configfile", "doc-config.yaml", *args]
    if "--configfile" in args and "my.yaml" in args:
        (workdir / "my.yaml").write_text("repetitions: 3\n")  # "only the keys that change"
    if "--report" in args:
        (workdir / "figures").mkdir()
        (workdir / "figures" / "mnist.pdf").write_bytes(b"%PDF-1.4\n%%EOF\n")  # as after the main job
    return {"args": args, "cwd": str(workdir), "env": env, "out": str(workdir / "snakemake.out"),
            "rc": str(workdir / "snakemake.rc")}


# Runs the `snakemake` command line (snakemake.cli.main, what the `snakemake` executable calls)
# for each job in a child forked from one process that imported Snakemake once: the same
# commands at half the CPU of a fresh interpreter each (most of a dry run is that import).
# Execution is Snakemake's own pseudo dry run: DAGApi.execute_workflow validates everything
# against the executor the command names (local: --cores required; slurm: --jobs), then runs
# the "dryrun" executor instead of it. A command given with -n is a dry run already.
_RUNNER = """
import json, os, sys
import snakemake.api
import snakemake.cli

import inspect

_execute = snakemake.api.DAGApi.execute_workflow
_PSEUDO = "pseudo_executor" in inspect.signature(_execute).parameters  # Snakemake >= 9.2x


def execute_workflow(self, executor="local", *args, **kwargs):
    if executor not in ("dryrun", "touch") and kwargs.get("pseudo_executor") is None:
        if _PSEUDO:
            kwargs["pseudo_executor"] = "dryrun"
        else:  # an older Snakemake: a plain dry run (as -n), without the executor's checks
            executor = "dryrun"
    return _execute(self, executor, *args, **kwargs)


snakemake.api.DAGApi.execute_workflow = execute_workflow

jobs, parallel = json.load(open(sys.argv[1])), int(sys.argv[2])
running = {}


def reap():
    pid, status = os.wait()
    with open(jobs[running.pop(pid)]["rc"], "w") as fh:
        fh.write(str(os.waitstatus_to_exitcode(status)))


for i, job in enumerate(jobs):
    while len(running) >= parallel:
        reap()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.chdir(job["cwd"])
            os.environ.clear()
            os.environ.update(job["env"])
            fd = os.open(job["out"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
            os.dup2(fd, 1)
            os.dup2(fd, 2)
            sys.argv = ["snakemake", *job["args"]]
            code = snakemake.cli.main(job["args"]) or 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        except BaseException:
            import traceback
            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    running[pid] = i
while running:
    reap()
"""


def _run_snakemake_jobs(jobs: list[dict], base: Path) -> list[dict]:
    (base / "jobs.json").write_text(json.dumps(jobs))
    parallel = max(1, min(3, os.cpu_count() or 1))
    subprocess.run([sys.executable, "-c", _RUNNER, str(base / "jobs.json"), str(parallel)],
                   cwd=base, check=True, timeout=600)
    results = []
    for job in jobs:
        rc = Path(job["rc"])
        report = Path(job["cwd"]) / "report.html"
        results.append({"args": job["args"], "rc": int(rc.read_text()) if rc.is_file() else -1,
                        "out": Path(job["out"]).read_text(errors="replace"),
                        "report": report.is_file()})
    return results


def _cli(cmd: Command) -> dict:
    words = shlex.split(cmd.raw)
    module = importlib.import_module(words[2])
    if words[3:] == ["--help"]:
        proc = subprocess.run([sys.executable, "-m", words[2], "--help"], capture_output=True,
                              text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(REPO / "src")})
        return {"rc": proc.returncode, "out": proc.stdout + proc.stderr}
    try:
        module.build_parser().parse_args(words[3:])
    except SystemExit as exc:
        return {"rc": exc.code, "out": f"{words[2]} refuses {words[3:]}"}
    return {"rc": 0, "out": ""}


def _bench(cmd: Command) -> dict:
    words = shlex.split(cmd.raw)
    proc = subprocess.run([sys.executable, str(REPO / words[1]), "--help"], capture_output=True,
                          text=True, timeout=120, cwd=REPO)
    unknown = [w.split("=")[0] for w in words[2:]
               if w.startswith("--") and w.split("=")[0] not in proc.stdout]
    return {"rc": proc.returncode or (2 if unknown else 0),
            "out": f"flags its --help does not list: {unknown}\n{proc.stdout[-2000:]}{proc.stderr}"}


def _bash(cmd: Command, workdir: Path, home: Path) -> dict:
    # From a script file, as if typed: a `bash -c '<the loop>'` would hold the pattern that the
    # process loop looks for in its own command line, and list itself.
    script = workdir.parent / f"{workdir.name}.sh"
    script.write_text(cmd.raw + "\n")
    proc = subprocess.run(["bash", str(script)], cwd=workdir, env=_env(home),
                          capture_output=True, text=True, timeout=60)
    return {"rc": proc.returncode, "out": proc.stdout + proc.stderr, "stdout": proc.stdout}


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """Every command run once (the same words in two documents once), a few at a time."""
    base = tmp_path_factory.mktemp("doc-commands")
    home = base / "home"
    home.mkdir()
    # The shell lines first, in document order: cluster.md's mkdir/sed make the site profile.
    shell = [c for c in COMMANDS if _kind(c) == "bash"]
    for i, cmd in enumerate(shell):
        cmd.result = _bash(cmd, _checkout(base / f"bash{i}"), home)
    made = home / ".config" / "snakemake" / SITE_PROFILES[0] / "config.yaml"
    if made.is_file():
        for name in SITE_PROFILES[1:]:
            (made.parent.parent / name).mkdir(exist_ok=True)
            (made.parent.parent / name / "config.yaml").write_text(made.read_text())

    distinct: dict[tuple, list[Command]] = {}
    for cmd in COMMANDS:
        kind = _kind(cmd)
        if kind in ("snakemake", "cli", "bench"):
            context = cmd.doc if (cmd.doc, cmd.text) in YAML_ABOVE else None
            distinct.setdefault((kind, context, cmd.text), []).append(cmd)
    groups = list(distinct.items())
    snakemake_groups = [cmds for (kind, _, _), cmds in groups if kind == "snakemake"]
    other_groups = [cmds for (kind, _, _), cmds in groups if kind != "snakemake"]

    def check_other(cmds):
        return cmds, (_cli(cmds[0]) if _kind(cmds[0]) == "cli" else _bench(cmds[0]))

    jobs = [_snakemake_job(cmds[0], _checkout(base / f"run{i}"), home)
            for i, cmds in enumerate(snakemake_groups)]
    with ThreadPoolExecutor(max_workers=1) as pool:  # beside the Snakemake runs
        others = pool.map(check_other, other_groups)
        for cmds, result in zip(snakemake_groups, _run_snakemake_jobs(jobs, base)):
            for cmd in cmds:
                cmd.result = result
        for cmds, result in others:
            for cmd in cmds:
                cmd.result = result
    return {cmd.id: cmd for cmd in COMMANDS}


def _check_plan(cmd: Command, result: dict) -> None:
    out, expect = result["out"], _expectation(cmd) or {}
    where = f"{cmd.doc}:{cmd.line}: `{cmd.text}`"
    if "_report" in expect:
        assert (result["rc"] == 0) == expect["_report"] == result["report"], f"{where}\n{out[-3000:]}"
    else:
        assert result["rc"] == 0, f"{where} failed:\n{out[-3000:]}"
    for phrase in expect.get("_output", []):
        assert phrase in out, f"{where}: its output lacks {phrase!r}:\n{out[-3000:]}"
    if "_report" in expect or "--unlock" in result["args"]:
        return
    counts = _job_counts(out)
    assert counts and "This was a dry-run" in out, f"{where} planned nothing:\n{out[-3000:]}"
    for rule, count in expect.items():
        if rule.startswith("_"):
            continue
        got = counts.get(rule, 0)
        assert (got > 0 if count is None else got == count), (
            f"{where}: the document says what it builds, but it plans {rule} x {got} "
            f"(expected {'some' if count is None else count}); planned: {counts}")
    shells = re.findall(r"python -m askdagger_mnist\.cli\.train .*", out)
    for phrase in expect.get("_shell", []):
        assert shells and all(phrase in s for s in shells), f"{where}: train commands lack {phrase!r}"
    for phrase in expect.get("_not_shell", []):
        assert not any(phrase in s for s in shells), f"{where}: a train command has {phrase!r}"
    train_resources = [ln for ln in out.splitlines() if "resources:" in ln and "gpu=" in ln
                       or "resources:" in ln and "checkpoint_every=" in ln]
    phrases = list(expect.get("_resources", []))
    if any(a.startswith("gpu=") for a in result["args"]):
        # --resources gpu=N throttles the jobs that carry the GPU tag: a document that sets it
        # must plan train jobs that carry it (a --config without device=cuda drops the tag)
        phrases.append("gpu=1")
    for phrase in phrases:
        assert train_resources and all(phrase in ln for ln in train_resources), (
            f"{where}: train jobs' resources lack {phrase!r}: {train_resources[:1]}")


@pytest.mark.parametrize("cmd_id", [c.id for c in COMMANDS])
def test_every_documented_command_works_as_written(results, cmd_id):
    cmd = results[cmd_id]
    kind = _kind(cmd)
    assert kind != "unknown", (
        f"{cmd.doc}:{cmd.line}: `{cmd.text}` is a command this test cannot check: teach it, or "
        "add it to SKIP with the reason it cannot run offline in seconds")
    if kind == "skip":
        pytest.skip(f"{cmd.doc}:{cmd.line}: {SKIP[cmd.text]}")
    result = cmd.result
    if kind == "snakemake":
        _check_plan(cmd, result)
    elif kind == "bash":
        assert result["rc"] == 0 or cmd.text.startswith(("pgrep", "for ")), result["out"]
        if cmd.text.startswith("for "):  # "nothing printed: none" (a fresh directory)
            assert result["stdout"] == "", result["out"]
    else:
        assert result["rc"] == 0, f"{cmd.doc}:{cmd.line}: `{cmd.text}`: {result['out'][-3000:]}"


def test_the_documents_show_the_commands_this_test_expects():
    """Each EXPECT and SKIP entry is a command some document still shows (else a renamed
    command would silently lose its check), and the extraction finds the main ones."""
    texts = {c.text for c in COMMANDS} | {(c.doc, c.text) for c in COMMANDS}
    stale = [k for k in [*EXPECT, *SKIP] if k not in texts]
    assert not stale, f"no document shows these commands any more: {stale}"
    assert len({c.text for c in COMMANDS if _kind(c) == "snakemake"}) >= 30
