"""The Snakemake workflow without running a job: lint, formatting, the DAG of the paper config,
config errors, and the conda environments (checked statically: no conda channel is reachable
here).

Every Snakemake call works in a temporary directory (``--directory``), so nothing lands in the
repository.
"""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

from askdagger_mnist.experiment.config import train_conda_env
from askdagger_mnist.experiment.naming import run_subdir
from askdagger_mnist.settings import MODES
from conftest import REPO

SNAKEFILE = REPO / "Snakefile"
RULE_FILES = sorted((REPO / "workflow" / "rules").glob("*.smk"))
PAPER_S_DES = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]
ABLATION_VARIANTS = {
    "reg_ablation": ["sag", "no_normalization", "no_imputation"],
    "prand_ablation": ["prand0.05", "sag", "prand0.2"],
}


def snakemake(workdir: Path, *args: str, timeout: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "snakemake",
            "-s",
            str(SNAKEFILE),
            "--directory",
            str(workdir),
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def job_counts(output: str) -> dict[str, int]:
    """The 'Job stats' table of a dry run as {rule: count}."""
    table = output.split("Job stats:", 1)[1].split("\n\n", 1)[0]
    counts = {}
    for line in table.strip().splitlines()[2:]:
        rule, count = line.split()
        counts[rule] = int(count)
    return counts


def planned_outputs(output: str, rule: str) -> set[str]:
    """Output paths of the jobs of ``rule`` in a dry run's listing."""
    outs = set()
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", output):
        if re.match(rf"(?:local)?rule {rule}:", block):
            line = re.search(r"^\s+output: (.*)$", block, re.M).group(1)
            outs.update(line.split(", "))
    return outs


def run_dirs(modes, variants, s_des, reps) -> set[str]:
    """Expected run directories, named by the package's own convention."""
    return {
        str(Path("results/runs") / run_subdir(m, v, s, r))
        for m in modes
        for v in variants
        for s in s_des
        for r in range(reps)
    }


def test_lint_is_clean(tmp_path):
    proc = snakemake(tmp_path, "--lint")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0 and "Lints for" not in out, out


def test_snakefmt_check_passes():
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "snakefmt",
            "--check",
            "--diff",
            str(SNAKEFILE),
            *map(str, RULE_FILES),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def params_sections(rule_text: str) -> list[str]:
    """The ``params:`` sections of a rule's block (snakefmt-formatted: a section is the lines
    indented deeper than its keyword)."""
    lines, sections = rule_text.splitlines(), []
    for i, line in enumerate(lines):
        if line.strip() != "params:":
            continue
        indent, body = len(line) - len(line.lstrip()), []
        for nxt in lines[i + 1 :]:
            if nxt.strip() and len(nxt) - len(nxt.lstrip()) <= indent:
                break
            body.append(nxt)
        sections.append("\n".join(body))
    return sections


def config_params_of_output(rule_text: str) -> list[str]:
    """The params of a rule that are functions of its output or input (derived params) and
    read the config: ``name=lambda wildcards, output: ...config...``."""
    found = []
    for section in params_sections(rule_text):
        for name, args, body in re.findall(r"^\s*(\w+)=lambda ([^:]*):(.*?)(?=^\s*\w+=|\Z)",
                                           section, re.M | re.S):
            if re.search(r"\b(output|input)\b", args) and re.search(r"\bconfig\b", body):
                found.append(name)
    return found


def test_no_config_value_reaches_a_rule_as_a_derived_param(tmp_path):
    """A param that is a function of output or input (a derived param) is no rerun trigger on
    the newest Snakemake, but on 9.0.1, the declared floor, it counts as changed and re-runs
    the rule (commit b47b3b2: a moved mnist_root re-ran every train job). A config value that
    must re-run nothing is a resource (a string, so that no scheduler counts it)."""
    assert config_params_of_output(
        "    params:\n        n=lambda wildcards, output: config['x'],\n"
        "        m=lambda wildcards: config['y'],\n    shell:\n        'echo'"
    ) == ["n"]  # the scan itself finds one
    found = {name: params for name, _smk, text, _runs, _env in rules_with_envs()
             if (params := config_params_of_output(text))}
    assert found == {}, found
    # max_download_mib, a resource, still reaches the download's command.
    proc = snakemake(tmp_path, "--dry-run", "--printshellcmds", "resources/archives/authors_success.zip",
                     "--config", "results_source=download", "max_download_mib=7")
    assert proc.returncode == 0 and " --max-mib 7 " in proc.stdout, (proc.stdout + proc.stderr)[-3000:]


def test_paper_config_dry_run_has_630_train_jobs_and_every_target(tmp_path):
    proc = snakemake(tmp_path, "--dry-run", "--printshellcmds")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout + proc.stderr
    counts = job_counts(out)
    assert counts == {
        "download_mnist": 1,
        "train": 630,
        "aggregate": 1,
        "aggregate_group": 3,
        "plot_main": 1,
        "plot_ablation": 2,
        "plot_sag": 1,
        "all": 1,
        "total": 640,
    }
    expected = run_dirs(MODES, ["sag"], PAPER_S_DES, 10)
    for variants in ABLATION_VARIANTS.values():
        expected |= run_dirs(["sensitivity"], variants, PAPER_S_DES, 10)
    assert len(expected) == 630
    assert planned_outputs(out, "train") == expected
    targets = {
        "figures/mnist.pdf",
        "figures/mnist_reg_ablation.pdf",
        "figures/mnist_prand_ablation.pdf",
        "figures/sag.pdf",
        "results/metrics/runs.csv",
        "results/metrics/curves.csv.gz",
        *(f"results/tables/{t}.{ext}" for t in ABLATION_VARIANTS for ext in ("csv", "md", "tex")),
    }
    inputs_of_all = re.search(r"rule all:\n\s+input: (.*)\n", out).group(1).split(", ")
    assert set(inputs_of_all) == targets
    # Every job of the paper config runs the whole stream with the paper's settings.
    shell = next(
        line
        for line in out.splitlines()
        if "askdagger_mnist.cli.train" in line
        and "--mode success" in line
        and "--s-des 0.3 " in line
        and "--rep 7 " in line
    )
    for flag in (
        "--mode success",
        "--variant sag",
        "--s-des 0.3",
        "--rep 7",
        "--p-rand 0.1",
        "--batch-size 128",
        "--update-every 5",
        "--mc-samples 16",
        "--dropout 0.4",
        "--n-min 50",
        "--n-rep 10",
        "--device auto",
        "--jobs-per-gpu 1",
        "--engine auto",
        "--threads 1",
        "--cpu-slots",
    ):
        assert f"{flag} " in shell, (flag, shell)
    assert "--max-steps" not in shell and "--no-" not in shell


@pytest.mark.parametrize(
    "target, train_jobs, expected_runs",
    [
        ("figures/mnist.pdf", 270, run_dirs(MODES, ["sag"], PAPER_S_DES, 10)),
        (
            "figures/mnist_reg_ablation.pdf",
            270,
            run_dirs(["sensitivity"], ABLATION_VARIANTS["reg_ablation"], PAPER_S_DES, 10),
        ),
    ],
)
def test_each_figure_requires_only_its_own_runs(tmp_path, target, train_jobs, expected_runs):
    proc = snakemake(tmp_path, "--dry-run", target)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout + proc.stderr
    assert job_counts(out)["train"] == train_jobs
    assert planned_outputs(out, "train") == expected_runs
    assert "aggregate:" not in out  # the all-runs tables are not needed for one figure


def test_a_run_directory_is_named_by_its_repetition_without_leading_zeros(tmp_path):
    """rep01 would be a second copy of rep 1 (the train command reads --rep 01 as 1): with
    runs_per_job > 1 its batch would train rep 1's run again. Only rep_dir_name's form is a run."""
    run = str(Path("results/runs") / run_subdir("sensitivity", "sag", 0.9, 1))
    proc = snakemake(tmp_path, "--dry-run", run)
    assert proc.returncode == 0, proc.stderr
    assert planned_outputs(proc.stdout + proc.stderr, "train") == {run}
    padded = run.replace("/rep1", "/rep01")
    proc = snakemake(tmp_path, "--dry-run", padded)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert f"No rule to produce {padded}" in out and "train:" not in out


def test_smoke_preset_is_small_and_short(tmp_path):
    proc = snakemake(
        tmp_path,
        "--dry-run",
        "--printshellcmds",
        "--configfile",
        str(REPO / "workflow/presets/smoke.yaml"),
    )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout + proc.stderr
    assert job_counts(out)["train"] == 14  # 2 s_des x 1 rep x (3 modes + 4 ablation variants)
    train_cmds = re.findall(r"python -m askdagger_mnist\.cli\.train .*", out)
    assert len(train_cmds) == 14 and all("--max-steps 40 " in c for c in train_cmds)
    assert sum("--no-normalization" in c for c in train_cmds) == 2
    assert sum("--no-imputation" in c for c in train_cmds) == 2
    assert sum("--p-rand 0.05 " in c for c in train_cmds) == 2


# One Snakemake-level case per kind of check (the wiring: Snakefile -> config.check_or_exit);
# every other bad value is checked in-process (tests/experiment/test_config_errors.py).
BAD_CONFIGS = [
    # (how it is given, the key the sentence must name, a phrase of the explanation)
    # the schema, from --config and from a --configfile
    (["--config", "modes=[sensitivity,sideways]"], "modes[1]", "'sideways' is not one of"),
    ({"variants": {"prand0.2": {"p_rand": 1.0}}}, "variants.prand0.2.p_rand", "in [0, 1)"),
    # Values the schema lets through but no run could use (config_checks.py):
    (["--config", "max_steps=469"], "max_steps and batch_size", "60,000 MNIST training images"),
    # The config file itself (tmp/bad.yaml, beside the working directory tmp/work) is a file.
    ({"mnist_root": "../bad.yaml"}, "mnist_root", "is a file, not a folder"),
    # YAML text, written as it is: a key given twice.
    ("repetitions: 3\nseed_root: 1\nrepetitions: 4\n", "repetitions twice", "silently win"),
]


@pytest.fixture(scope="module")
def bad_config_runs(tmp_path_factory):
    """Snakemake on each bad config, all started at once (each is ~2 s of Python start-up)."""

    def run(case):
        given, key, _ = case
        tmp = tmp_path_factory.mktemp("bad")
        if not isinstance(given, list):  # given as a --configfile (a dict, or YAML text)
            path = tmp / "bad.yaml"
            path.write_text(given if isinstance(given, str) else yaml.safe_dump(given))
            given = ["--configfile", str(path)]
        workdir = tmp / "work"
        workdir.mkdir()
        return key, (snakemake(workdir, "--cores", "1", *given), workdir)

    with ThreadPoolExecutor(max_workers=4) as pool:
        return dict(pool.map(run, BAD_CONFIGS))


@pytest.mark.parametrize("given, key, phrase", BAD_CONFIGS, ids=[b[1] for b in BAD_CONFIGS])
def test_bad_config_stops_before_any_job_with_one_sentence(bad_config_runs, given, key, phrase):
    proc, workdir = bad_config_runs[key]
    assert proc.returncode == 1, proc.stdout + proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1, proc.stderr
    sentence = errors[0]
    assert key in sentence and phrase in sentence, sentence
    assert sentence.endswith(".") and sentence.count(". ") == 0, sentence
    assert "Traceback" not in proc.stderr and "Building DAG" not in proc.stderr + proc.stdout
    assert sorted(p.name for p in workdir.iterdir()) in ([], [".snakemake"])  # nothing ran


def test_config_from_the_command_line_is_typed(tmp_path):
    """--config hands nested values over as strings; the workflow restores the types."""
    proc = snakemake(
        tmp_path,
        "--dry-run",
        "--printshellcmds",
        "results/runs/sensitivity/sag/s0.25/rep0",
        "--config",
        "s_des=[0.25]",
        "variants={sag: {p_rand: 0.3, normalization: false, imputation: true}}",
        "max_steps=7",
        "cpu_slots=false",
    )
    assert proc.returncode == 0, proc.stderr
    shell = re.search(r"python -m askdagger_mnist\.cli\.train .*", proc.stdout).group(0)
    assert "--p-rand 0.3 " in shell and "--no-normalization" in shell and "--max-steps 7 " in shell
    assert "--no-imputation" not in shell and "--no-cpu-slots " in shell


# ---- names, paths and flags that would fail only after the first jobs ---------------------------

SMOKE = REPO / "workflow" / "presets" / "smoke.yaml"
_ODD = {"p_rand": 0.3, "normalization": True, "imputation": True}
# Each planned (before the check): a name that splits the train command, one too long for a
# folder name (File name too long, after the download), an empty mnist_root shown as null.
# (A dry run each: before the check they planned and ran nothing.)
START_UP_REFUSALS = [
    ({"variants": {"odd\n": _ODD}, "figures": {"main": {"variant": "odd\n"}}},
     'variants = "odd\\n"', "does not match"),
    ({"variants": {"v" * 300: _ODD}, "figures": {"main": {"variant": "v" * 300}}},
     "variants names 'vvv", "(300 characters), longer than the 200 characters a name may have"),
    (["--config", "mnist_root="], 'mnist_root = ""', "should be non-empty"),
]


@pytest.mark.parametrize("given, key, phrase", START_UP_REFUSALS,
                         ids=["trailing-newline", "300-characters", "empty-mnist-root"])
def test_a_name_or_path_that_fails_later_is_refused_at_start_up(tmp_path, given, key, phrase):
    if isinstance(given, dict):
        (tmp_path / "bad.yaml").write_text(yaml.safe_dump(given))
        given = ["--configfile", str(SMOKE), str(tmp_path / "bad.yaml")]
    workdir = tmp_path / "work"
    workdir.mkdir()
    proc = snakemake(workdir, "--dry-run", *given)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert proc.returncode == 1 and len(errors) == 1, (proc.stdout + proc.stderr)[-3000:]
    assert key in errors[0] and phrase in errors[0], errors[0]
    assert "Building DAG" not in proc.stdout + proc.stderr


def test_an_mnist_root_behind_a_link_to_nothing_is_refused_at_start_up(tmp_path):
    link = tmp_path / "mnist"
    link.symlink_to(tmp_path / "unmounted")  # an external disk not mounted
    workdir = tmp_path / "work"
    workdir.mkdir()
    proc = snakemake(workdir, "--dry-run", "--configfile", str(SMOKE), "--config", f"mnist_root={link}")
    assert proc.returncode == 1, (proc.stdout + proc.stderr)[-3000:]
    assert proc.stderr.splitlines()[-1] == (
        f"error: config key mnist_root = '{link}': {link} is a link to {tmp_path / 'unmounted'}, "
        "which does not exist: create that folder (or mount its disk), or point mnist_root "
        "elsewhere.")


def test_two_configfile_flags_are_refused_and_one_flag_applies_both(tmp_path):
    """Snakemake keeps only the last --configfile flag: the smoke preset and a file of one's own
    given as two flags would plan the paper's whole grid with the file's keys, silently."""
    mine = tmp_path / "mine.yaml"
    mine.write_text("repetitions: 2\n")
    two_flags = snakemake(tmp_path, "--dry-run", "--configfile", str(SMOKE), "--configfile", str(mine))
    assert two_flags.returncode == 1, job_counts(two_flags.stdout + two_flags.stderr)
    assert two_flags.stderr.splitlines()[-1] == (
        "error: --configfile was given more than once, and Snakemake reads only the files of the "
        f"last one, so it would ignore {SMOKE}: name every file after one --configfile, in the "
        f"order they apply (--configfile {SMOKE} {mine})."
    )
    one_flag = snakemake(tmp_path, "--dry-run", "--configfile", str(SMOKE), str(mine))
    assert one_flag.returncode == 0, one_flag.stderr[-3000:]
    assert job_counts(one_flag.stdout + one_flag.stderr)["train"] == 28  # the smoke grid, 2 reps


# ---- conda environments -------------------------------------------------------------------------

# import name -> conda-forge package name (what a rule's script may import)
CONDA_NAME = {
    "torch": "pytorch",  # or pytorch-cpu, the metapackage of its CPU build
    "torchvision": "torchvision",
    "numpy": "numpy",
    "pandas": "pandas",
    "matplotlib": "matplotlib-base",
    "requests": "requests",
    "yaml": "pyyaml",
}
# conda-forge package -> the distribution pip installs here
PIP_NAME = {"pytorch": "torch", "matplotlib-base": "matplotlib", "pyyaml": "PyYAML"}
PACKAGE = REPO / "src" / "askdagger_mnist"


def rules_with_envs() -> list[tuple[str, Path, str]]:
    """(rule name, .smk file, shell/script text) of every rule, with its conda env path.

    A small parser for snakefmt-formatted rule files: a rule's block is the lines indented
    deeper than its header."""
    found = []
    for smk in [SNAKEFILE, *RULE_FILES]:
        lines = smk.read_text().splitlines()
        for i, line in enumerate(lines):
            header = re.match(r"^(\s*)(?:rule|checkpoint) (\w+):", line)
            if not header:
                continue
            indent = len(header.group(1))
            block = []
            for nxt in lines[i + 1 :]:
                if nxt.strip() and len(nxt) - len(nxt.lstrip()) <= indent:
                    break
                block.append(nxt)
            text = "\n".join(block)
            runs_something = re.search(r"^\s+(shell|script|run|notebook|wrapper):", text, re.M)
            conda = re.search(r"^\s+conda:\s*\n(?:\s+#.*\n)?\s+\"([^\"]+)\"", text, re.M)
            if re.search(r"^\s+f\"\.\./\.\./\{train_conda_env\(config\['device'\]\)\}\"", text, re.M):
                # the train rule: one env per device (config.train_conda_env), both checked
                for device in ("cpu", "cuda"):
                    found.append((header.group(2), smk, text, True,
                                  f"../../{train_conda_env(device)}"))
                continue
            found.append(
                (header.group(2), smk, text, runs_something is not None, conda and conda.group(1))
            )
    return found


def _module_file(dotted: str) -> Path | None:
    """The file of package module ``dotted`` (relative to askdagger_mnist), or None."""
    path = PACKAGE.joinpath(*dotted.split(".")) if dotted else PACKAGE
    if path.with_suffix(".py").is_file():
        return path.with_suffix(".py")
    if (path / "__init__.py").is_file():
        return path / "__init__.py"
    return None


def third_party_imports(module: str, seen: set[str] | None = None) -> set[str]:
    """Top-level third-party modules imported (anywhere, also lazily) by a package module
    (dotted, relative to askdagger_mnist: "cli.train") and, transitively, by the package
    modules it imports."""
    seen = set() if seen is None else seen
    if module in seen:
        return set()
    seen.add(module)
    path = _module_file(module)
    assert path is not None, f"askdagger_mnist.{module} does not exist"
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level > 0 or (node.module or "").startswith("askdagger_mnist"):
                if node.level > 0:
                    parts = package.split(".") if package else []
                    parts = parts[: len(parts) - (node.level - 1)]
                    base = ".".join(parts + ([node.module] if node.module else []))
                else:
                    base = node.module.removeprefix("askdagger_mnist").lstrip(".")
                for name in [a.name for a in node.names]:
                    sub = f"{base}.{name}" if base else name
                    target = sub if _module_file(sub) else base
                    if _module_file(target):
                        found |= third_party_imports(target, seen)
                continue
            names = [node.module]
        else:
            continue
        for name in names:
            top = name.split(".")[0]
            if top not in sys.stdlib_module_names and top != "askdagger_mnist":
                found.add(top)
    return found


def env_packages(env_file: Path) -> dict[str, str]:
    env = yaml.safe_load(env_file.read_text())
    assert isinstance(env, dict), f"{env_file} is not a conda environment file"
    channels = env.get("channels") or []
    assert (
        "conda-forge" in channels and "nodefaults" in channels
    ), f"{env_file}: channels {channels}"
    assert "defaults" not in channels, f"{env_file} uses the defaults channel"
    packages = {}
    for dep in env.get("dependencies") or []:
        assert isinstance(dep, str), f"{env_file}: no pip section expected, found {dep!r}"
        m = re.fullmatch(r"([A-Za-z0-9_.-]+)\s*==?\s*([0-9][0-9A-Za-z.]*)(=[A-Za-z0-9_.*]+)?",
                         dep.strip())
        assert m, f"{env_file}: {dep!r} is not pinned to a version (name =X.Y.Z)"
        assert "::" not in dep, f"{env_file}: {dep!r} names a channel"
        packages[m.group(1)] = m.group(2)
    return packages


def test_every_rule_has_a_pinned_conda_env_listing_what_its_script_imports():
    rules = rules_with_envs()
    names = {r[0] for r in rules}
    assert {
        "download_mnist",
        "train",
        "aggregate",
        "aggregate_group",
        "plot_main",
        "plot_ablation",
        "plot_sag",
    } <= names
    checked = 0
    for name, smk, text, runs_something, env_path in rules:
        if not runs_something:
            continue  # target-only rules such as all
        assert env_path, f"rule {name} ({smk.name}) has no conda: environment"
        env_file = (smk.parent / env_path).resolve()
        assert env_file.is_file(), f"rule {name}: {env_file} does not exist"
        assert env_file.parent == REPO / "envs", f"rule {name}: env {env_file} is not under envs/"
        packages = env_packages(env_file)
        assert "python" in packages, f"{env_file} does not pin python"
        modules = set(re.findall(r"python -m askdagger_mnist\.([\w.]+)", text))
        assert modules, f"rule {name} calls no askdagger_mnist CLI"
        for module in modules:
            for imported in third_party_imports(module):
                assert (
                    imported in CONDA_NAME
                ), f"askdagger_mnist.{module} imports {imported}: add it to CONDA_NAME"
                assert CONDA_NAME[imported] in packages or (
                    imported == "torch" and "pytorch-cpu" in packages), (
                    f"rule {name} runs askdagger_mnist.{module}, which imports {imported}, "
                    f"but {env_file.name} does not list {CONDA_NAME[imported]}"
                )
        checked += 1
    assert checked >= 7


def env_deps(env_file: Path) -> dict[str, str]:
    """package -> its whole pin (version and build string, e.g. '2.13.0=cuda*')."""
    deps = yaml.safe_load(env_file.read_text())["dependencies"]
    return {d.split("=", 1)[0].strip(): d.split("=", 1)[1].strip() for d in deps}


def test_torchvision_is_paired_with_its_pytorch_release():
    """conda-forge builds torchvision 0.N against pytorch 2.(N-15) only (torchvision-feedstock):
    any other pair does not solve."""
    paired = 0
    for env_file in sorted((REPO / "envs").glob("*.yaml")):
        packages = env_packages(env_file)
        torch = packages.get("pytorch") or packages.get("pytorch-cpu")
        if "torchvision" in packages:
            major, minor = (int(x) for x in torch.split(".")[:2])
            tv_major, tv_minor = (int(x) for x in packages["torchvision"].split(".")[:2])
            assert (major, tv_major, tv_minor) == (2, 0, minor + 15), (
                f"{env_file.name}: torchvision {packages['torchvision']} is not built against "
                f"pytorch {torch} (torchvision 0.N pairs with pytorch 2.(N-15))")
            paired += 1
    assert paired == 2  # train.yaml and train-cuda.yaml


def test_every_pin_names_the_conda_forge_feedstock_it_was_checked_in():
    for env_file in sorted((REPO / "envs").glob("*.yaml")):
        text = env_file.read_text()
        for package, version in env_packages(env_file).items():
            if package == "python":
                continue
            feedstock = {"pytorch": "pytorch-cpu", "pytorch-cpu": "pytorch-cpu",
                         "matplotlib-base": "matplotlib"}.get(package, package)
            assert re.search(rf"{re.escape(package)} +{re.escape(version)} .*"
                             rf"conda-forge/{feedstock}-feedstock", text), (
                f"{env_file.name} does not say in which feedstock {package} {version} was found")


def test_device_cuda_selects_the_env_that_requires_the_cuda_build():
    assert train_conda_env("cuda") == "envs/train-cuda.yaml"
    assert train_conda_env("auto") == train_conda_env("cpu") == "envs/train.yaml"
    cpu, cuda = env_deps(REPO / "envs" / "train.yaml"), env_deps(REPO / "envs" / "train-cuda.yaml")
    assert cuda["pytorch"] == cpu["pytorch"] + "=cuda*"  # the same release, CUDA build required
    assert cuda["cuda-version"] == "12.9"  # the CUDA build the docs name (CONDA_OVERRIDE_CUDA=12.9)
    assert {k: v for k, v in cuda.items() if k not in ("pytorch", "cuda-version")} == \
        {k: v for k, v in cpu.items() if k != "pytorch"}
    # results only reads state dicts: the CPU metapackage (no CUDA download on a head node)
    assert "pytorch-cpu" in env_deps(REPO / "envs" / "results.yaml")
    # the cluster profile trains with device cuda, so a CPU-only build fails loudly
    profile = yaml.safe_load((REPO / "workflow" / "profiles" / "slurm-gpu" / "config.yaml").read_text())
    assert "device=cuda" in profile["config"]


# Which rules the SLURM profile would submit: Snakemake's own answer (Workflow.is_local, as
# for an executor that is not local), read through its command line with the profile loaded.
_LOCALITY_HOOK = """
import json, os, sys
import snakemake.api  # noqa: F401 (imports snakemake.workflow in the order it needs)
from snakemake.workflow import Workflow

_check = Workflow.check


def check(self):
    _check(self)
    saved = Workflow.local_exec
    Workflow.local_exec = property(lambda workflow: False)  # as under the SLURM executor
    try:
        local = {rule.name: self.is_local(rule) for rule in self.rules}
    finally:
        Workflow.local_exec = saved
    with open(os.environ["ASKDAGGER_LOCALITY_OUT"], "w") as fh:
        json.dump(local, fh)


Workflow.check = check
from snakemake.cli import main

sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize("extra", [{}, {"results_source": "download",
                                        "compare_with": ["authors_sensitivity"]}],
                         ids=["train", "download-and-compare"])
def test_the_slurm_profile_submits_only_training_jobs(tmp_path, extra):
    """Everything but train runs where Snakemake runs (README: "downloads, aggregation and
    plots stay on the head node"): compute nodes often cannot reach the internet, so the
    archive fetches and imports (import_archive, import_comparison) must be local too."""
    config = tmp_path / "extra.yaml"
    config.write_text(yaml.safe_dump(extra))
    out = tmp_path / "locality.json"
    proc = subprocess.run(
        [sys.executable, "-c", _LOCALITY_HOOK, "-s", str(SNAKEFILE), "--directory",
         str(tmp_path), "--dry-run", "--profile", str(REPO / "workflow" / "profiles" / "slurm-gpu"),
         "--configfile", str(REPO / "workflow" / "presets" / "smoke.yaml"), str(config)],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
        env={**os.environ, "ASKDAGGER_LOCALITY_OUT": str(out)},
    )  # fmt: skip
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    assert "localrules directive specifies rules that are not present" not in proc.stderr
    local = json.loads(out.read_text())
    submitted = sorted(name for name, is_local in local.items() if not is_local)
    assert submitted == (["train"] if not extra else []), local
    if extra:
        for rule in ("fetch_archive", "import_archive", "import_comparison", "check_imports",
                     "import_run"):
            assert local[rule], f"{rule} would be submitted to a compute node"


def test_static_check_sees_the_imports_of_each_cli():
    """The import scan itself: it must find torch behind train (via loop/model) and
    matplotlib behind plots, or the env check above proves nothing."""
    assert {"torch", "numpy"} <= third_party_imports("cli.train")
    assert "matplotlib" in third_party_imports("cli.plots")
    assert "pandas" in third_party_imports("cli.aggregate")
    assert "torch" not in third_party_imports("cli.aggregate")
    # The Snakefile imports config: nothing heavy (settings imports numpy only inside the seed
    # function; tests/experiment/test_config.py checks that importing config loads no numpy).
    assert third_party_imports("experiment.config") <= {"yaml", "jsonschema", "numpy"}
