"""Helpers shared by the rules: config checking, paths, target lists, command-line flags.

Included first by the Snakefile. Deliberately imports nothing from askdagger_mnist: Snakemake
may run from an environment without torch (``--use-conda`` puts the package's dependencies
into per-rule environments), so the two tiny conventions shared with the package (the s_des
format and the run directory layout) are restated here and checked by the tests.
"""

import difflib
import json
import re
import shlex
import sys
from pathlib import Path

import yaml
from snakemake.utils import validate

REPO = Path(workflow.basedir)
SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"
ABLATION_MODE = "sensitivity"  # the ablation figures are defined in sensitivity mode
FIGURE_GROUPS = ("main", "reg_ablation", "prand_ablation")
ABLATIONS = ("reg_ablation", "prand_ablation")
RUNS = "results/runs"
METRICS = "results/metrics"
LOGS = "results/logs"
BENCHMARKS = "results/benchmarks"
MNIST_FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)

# Every shell command runs in bash strict mode with the repository's src/ first on
# PYTHONPATH, so `python -m askdagger_mnist.<stage>` imports this checkout's code inside any
# environment (also the --use-conda ones, where the package is not installed).
# (Snakemake formats the prefix like a shell command: literal braces are doubled.)
_SRC = shlex.quote(str(REPO / "src")).replace("{", "{{").replace("}", "}}")
shell.prefix(
    f"set -euo pipefail; export PYTHONPATH={_SRC}${{{{PYTHONPATH:+:$PYTHONPATH}}}}; "
)


# ---- config checking --------------------------------------------------------------------------


def _types(schema):
    kind = schema.get("type", [])
    return set(kind if isinstance(kind, list) else [kind])


def _coerce(value, schema):
    """Values from --config arrive as strings (also inside lists and maps): restore the
    types the schema asks for, and accept a single value where a list is expected."""
    kinds = _types(schema)
    if "array" in kinds and not isinstance(value, list):
        value = [value]
    if isinstance(value, list):
        items = schema.get("items", {})
        return [_coerce(v, items) for v in value]
    if isinstance(value, dict):
        props = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        return {
            k: _coerce(v, props.get(k, extra if isinstance(extra, dict) else {}))
            for k, v in value.items()
        }
    if isinstance(value, str):
        text = value.strip()
        if "null" in kinds and text.lower() in ("null", "none", "~", ""):
            return None
        if "boolean" in kinds and text.lower() in ("true", "false"):
            return text.lower() == "true"
        if "integer" in kinds and re.fullmatch(r"[+-]?\d+", text):
            return int(text)
        if "number" in kinds:
            try:
                return float(text)
            except ValueError:
                pass
    return value


def _key_path(path):
    out = ""
    for part in path:
        out += (
            f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
        )
    return out or "(top level)"


def _describe(error, schema):
    """One sentence for a jsonschema error: the key, the offending value, what is expected."""
    where = _key_path(error.absolute_path)
    if error.validator == "additionalProperties":
        known = sorted(error.schema.get("properties", {}))
        extra = sorted(set(error.instance) - set(known))
        hints = []
        for key in extra:
            close = difflib.get_close_matches(str(key), known, n=1)
            hints.append(
                f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else "")
            )
        inside = "" if not error.absolute_path else f" in {where}"
        return (
            f"unknown config key {', '.join(hints)}{inside}: fix the spelling, or see "
            f"config.yaml for the known keys."
        )
    description = None
    sub = schema
    for part in error.absolute_path:  # the innermost description on the way to the key
        if isinstance(part, int):
            sub = sub.get("items", {})
        elif part in sub.get("properties", {}):
            sub = sub["properties"][part]
        else:
            sub = (
                sub.get("additionalProperties")
                if isinstance(sub.get("additionalProperties"), dict)
                else {}
            )
        description = sub.get("description", description)
    description = description or error.schema.get("description")
    value = json.dumps(error.instance, default=str)
    if len(value) > 80:
        value = value[:77] + "..."
    expected = f" ({description})" if description else ""
    return (
        f"invalid config value {where} = {value}: {error.message}{expected}; fix it in "
        f"config.yaml, your --configfile or --config."
    )


class ConfigProblem(Exception):
    """A config value a user must fix; its message is one sentence."""


def check_config(config):
    """Coerce, validate against the schema (defaults filled in) and cross-check the config.

    Stops before any job: prints ``error: <one sentence naming the key and what to do>`` to
    stderr and exits 1, like every CLI of the package.
    """
    try:
        _check_config(config)
    except ConfigProblem as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)


def _check_config(config):
    import jsonschema

    schema = yaml.safe_load(SCHEMA.read_text())
    config.update(_coerce(dict(config), schema))
    errors = sorted(
        jsonschema.Draft202012Validator(schema).iter_errors(config),
        key=lambda e: (list(map(str, e.absolute_path)), e.validator),
    )
    if errors:
        raise ConfigProblem(_describe(jsonschema.exceptions.best_match(errors), schema))
    validate(config, str(SCHEMA))  # Snakemake's validator also fills in the defaults
    known = config["variants"]
    figures = config["figures"]
    used = [("figures.main.variant", figures["main"]["variant"])]
    used += [("figures.sag.variant", figures["sag"]["variant"])]
    for group in ABLATIONS:
        used += [(f"figures.{group}.variants", v) for v in figures[group]["variants"]]
    for key, name in used:
        if name not in known:
            raise ConfigProblem(
                f"config key {key} names variant {name!r}, which is not defined under "
                f"variants (known: {', '.join(known)}): add it there or fix the name."
            )
    formatted = [fmt_s(s) for s in config["s_des"]]
    if len(set(formatted)) != len(formatted):
        raise ConfigProblem(
            f"config key s_des has values that name the same run directory "
            f"({', '.join(formatted)}): list each value once."
        )


# ---- paths and targets ------------------------------------------------------------------------


def fmt_s(s_des):
    """s_des as it appears in run directory names (as settings.format_s_des: 0.9 -> '0.9')."""
    return f"{float(s_des):g}"


def run_dir(mode, variant, s_des, rep):
    """As settings.run_subdir, under results/runs."""
    return f"{RUNS}/{mode}/{variant}/s{fmt_s(s_des)}/rep{int(rep)}"


def mnist_files():
    raw = Path(config["mnist_root"]) / "MNIST" / "raw"
    return [str(raw / name) for name in MNIST_FILES]


def group_settings(group):
    """(mode, variant) pairs of a figure group."""
    if group == "main":
        return [
            (mode, config["figures"]["main"]["variant"]) for mode in config["modes"]
        ]
    return [(ABLATION_MODE, v) for v in config["figures"][group]["variants"]]


def group_runs(group):
    """Run directories a figure group averages: its settings x s_des x repetitions."""
    return [
        run_dir(mode, variant, s, rep)
        for mode, variant in group_settings(group)
        for s in config["s_des"]
        for rep in range(config["repetitions"])
    ]


def sag_figure_run():
    """figures/sag.pdf shows SAG late in one run: sensitivity, the largest s_des, rep 0."""
    variant = config["figures"]["sag"]["variant"]
    return run_dir(ABLATION_MODE, variant, max(config["s_des"]), 0)


def all_runs():
    """Every configured run, each once (the main and ablation figures share the sag runs)."""
    runs = [r for group in FIGURE_GROUPS for r in group_runs(group)]
    runs.append(sag_figure_run())
    return list(dict.fromkeys(runs))


def final_targets():
    return [
        f"{METRICS}/runs.csv",
        f"{METRICS}/curves.csv.gz",
        "figures/mnist.pdf",
        *[f"figures/mnist_{a}.pdf" for a in ABLATIONS],
        *[
            f"results/tables/{a}.{ext}"
            for a in ABLATIONS
            for ext in ("csv", "md", "tex")
        ],
        "figures/sag.pdf",
    ]


def results_archive(wildcards):
    """The results_archives entry named by the {name} wildcard (rules of results.smk)."""
    return {a["name"]: a for a in config["results_archives"]}[wildcards.name]


def wildcard_alternatives(names):
    return "|".join(re.escape(str(n)) for n in names)


# ---- command-line flags -----------------------------------------------------------------------


def train_settings(wildcards):
    """Flags of every setting that changes a run's results (besides mode, s_des, rep,
    variant). Passed as params, so a changed setting re-runs the runs it affects."""
    v = config["variants"][wildcards.variant]
    flags = [
        f"--p-rand {v['p_rand']!r}",
        *([] if v["normalization"] else ["--no-normalization"]),
        *([] if v["imputation"] else ["--no-imputation"]),
        f"--batch-size {config['batch_size']}",
        f"--update-every {config['update_every']}",
        f"--mc-samples {config['mc_samples']}",
        f"--dropout {config['dropout']!r}",
        f"--n-min {config['n_min']}",
        f"--n-rep {config['n_rep']}",
        f"--seed-root {config['seed_root']}",
    ]
    if config["max_steps"] is not None:
        flags.append(f"--max-steps {config['max_steps']}")
    return " ".join(flags)


def mirror_flags():
    return " ".join(f"--mirror {shlex.quote(url)}" for url in config["mnist_mirrors"])
