"""The workflow's config check: types restored, checked against the schema, defaults filled in.

The Snakefile calls ``check_or_exit(config, schema_path, configfiles)`` before any rule is defined. A bad
value stops the workflow with one sentence on stderr (``error: <sentence>``) that names the
key, the value and what is expected, and exits 1, like every CLI of the package.

Imports only the standard library, PyYAML, jsonschema and the package's standard-library
modules (``naming``, ``settings``, ``config_checks``): under ``--use-conda`` the environment
running Snakemake itself may lack torch and numpy (tests/experiment/test_config.py checks this).

The steps, in order:

1. ``config_shape.shape_problem``: a config that YAML aliases make stand for more than MAX_CONFIG_VALUES
   values (refused before anything walks it), and a name (mapping key) that is not text.
2. ``coerce``: values given with ``--config`` arrive as strings, also inside lists and maps
   (``--config 'variants={sag: {p_rand: 0.3, ...}}'``); they get back the type the schema
   asks for, and a single value is accepted where a list is expected; a whole float (YAML's
   ``3.0``) becomes an integer where only an integer is allowed.
3. NaN and infinity are refused wherever a number is (JSON Schema lets NaN pass every
   bound); then the schema (``workflow/schemas/config.schema.yaml``) is checked, and its
   most relevant error becomes one sentence (``describe``): an unknown key with a
   did-you-mean hint, or a bad value with its key path (``variants.sag.p_rand``,
   ``s_des[1]``) and the description of the key it belongs to.
4. ``fill_defaults``: every key the schema gives a ``default`` is set where it is missing,
   nested ones included (``figures.main.variant``, ``train_resources.gpu``, ``sha256`` of each
   ``results_archives`` item), as Snakemake's ``snakemake.utils.validate`` would.
5. ``config_checks.cross_check``: what passes the schema but no run could use (a figure
   naming an undefined variant, an s_des its run directory would round, two variants with
   the same settings, names sharing a folder, a stream longer than MNIST, an ``mnist_root``
   that is a file, ...).

``check_or_exit`` adds the checks of how Snakemake was started: a repeated ``--configfile``
or ``--config`` flag (Snakemake would silently keep only the last), a key written twice in a
config file it loaded, and ``--unlock`` while a run is still active here (a warning); and it
shows a ``--config key=`` as the empty text typed, not as the null Snakemake makes of it.
"""

from __future__ import annotations

import copy
import difflib
import json
import math
import re
import sys
from pathlib import Path
from typing import Any, Iterator, Mapping, MutableMapping

import jsonschema
import yaml
from jsonschema import validators

from askdagger_mnist.experiment.command_line import (
    empty_config_keys,
    repeated_flag_problem,
    unlock_warning,
)
from askdagger_mnist.experiment.config_shape import ConfigProblem, duplicate_keys, key_path, shape_problem
from askdagger_mnist.experiment.config_checks import (  # noqa: F401 (the rules import ABLATIONS from here)
    ABLATIONS,
    cross_check,
)


def train_conda_env(device: str) -> str:
    """The conda environment of the train rule (relative to the repository): with device
    cuda the one that requires pytorch's CUDA build, so that a job never silently trains on
    the CPU build conda picks where it sees no GPU driver; else the one that lets conda pick."""
    return "envs/train-cuda.yaml" if device == "cuda" else "envs/train.yaml"


def train_gpu_tag(train_resources: Mapping[str, Any], device: str) -> int:
    """The train rule's ``gpu`` resource: ``train_resources.gpu`` as set, or, when it is null
    (the default), 1 for ``device: cuda`` and 0 otherwise, so that a CPU job never asks a
    scheduler for a GPU."""
    gpu = train_resources.get("gpu")
    return int(gpu) if gpu is not None else int(device == "cuda")


def load_schema(path: str | Path) -> dict:
    """The JSON schema of the config, read from its YAML file."""
    return yaml.safe_load(Path(path).read_text())


# ---- 1. types from --config --------------------------------------------------------------------


def _types(schema: Mapping) -> set[str]:
    kind = schema.get("type", [])
    return set(kind if isinstance(kind, list) else [kind])


def coerce(value: Any, schema: Mapping) -> Any:
    """``value`` with the types ``schema`` asks for restored (a new object; nothing mutated).

    Values from ``--config`` arrive as strings, also inside lists and maps: a string becomes
    null (``null``, ``none``, ``~`` or empty), a boolean (``true``/``false``), an integer or a
    number where the schema allows that type, and a single value becomes a one-item list where
    the schema expects an array. A whole float (YAML's ``3.0``) becomes an integer where only
    an integer is allowed. Anything else is returned unchanged, for the schema check to refuse.
    """
    kinds = _types(schema)
    if "array" in kinds and not isinstance(value, list):
        value = [value]
    if isinstance(value, list):
        items = schema.get("items", {})
        return [coerce(v, items) for v in value]
    if isinstance(value, dict):
        props = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        return {
            k: coerce(v, props.get(k, extra if isinstance(extra, dict) else {}))
            for k, v in value.items()
        }
    if isinstance(value, float) and value.is_integer() and "integer" in kinds - {"number"}:
        return int(value)
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


# ---- 2. one sentence per schema error ----------------------------------------------------------


def _description(path, schema: Mapping) -> str | None:
    """The innermost ``description`` on the way from the schema's root to the key ``path``."""
    description = None
    sub = schema
    for part in path:
        if isinstance(part, int):
            sub = sub.get("items", {})
        elif part in sub.get("properties", {}):
            sub = sub["properties"][part]
        else:
            extra = sub.get("additionalProperties")
            sub = extra if isinstance(extra, dict) else {}
        description = sub.get("description", description)
    return description


def describe(error: jsonschema.ValidationError, schema: Mapping) -> str:
    """One sentence for a jsonschema error: the key, the offending value, what is expected."""
    where = key_path(error.absolute_path)
    if error.validator == "additionalProperties":
        known = sorted(error.schema.get("properties", {}))
        extra = sorted(set(error.instance) - set(known))
        hints = []
        for key in extra:
            close = difflib.get_close_matches(str(key), known, n=1)
            hints.append(f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        inside = "" if not error.absolute_path else f" in {where}"
        return (
            f"unknown config key {', '.join(hints)}{inside}: fix the spelling, or see "
            f"config.yaml for the known keys."
        )
    description = _description(error.absolute_path, schema) or error.schema.get("description")
    return _invalid(where, error.instance, error.message, description)


def _invalid(where: str, instance: Any, message: str, description: str | None) -> str:
    value = json.dumps(instance, default=str)
    if len(value) > 80:
        value = value[:77] + "..."
    expected = f" ({description})" if description else ""
    return (
        f"invalid config value {where} = {value}: {message}{expected}; fix it in "
        f"config.yaml, your --configfile or --config."
    )


def _non_finite(value: Any, path: tuple = ()) -> tuple | None:
    """(key path, value) of the first NaN or infinity in ``value``, or None."""
    if isinstance(value, float) and not math.isfinite(value):
        return path, value
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(
        value, list) else ()
    for key, item in items:
        found = _non_finite(item, (*path, key))
        if found:
            return found
    return None


def _validator_class(schema: Mapping):
    return validators.validator_for(schema, default=jsonschema.Draft202012Validator)


def first_problem(config: Mapping, schema: Mapping) -> str | None:
    """The sentence for the most relevant schema error of ``config``, or None when it is valid."""
    errors = sorted(
        _validator_class(schema)(schema).iter_errors(config),
        key=lambda e: (list(map(str, e.absolute_path)), e.validator),
    )
    if not errors:
        return None
    return describe(jsonschema.exceptions.best_match(errors), schema)


# ---- 3. defaults -------------------------------------------------------------------------------


def fill_defaults(config: MutableMapping, schema: Mapping) -> None:
    """Set every missing key that has a ``default`` in the schema, nested ones included.

    Works like ``snakemake.utils.validate(..., set_default=True)``: wherever validation meets
    a ``properties`` keyword, each missing property with a default gets a copy of it, and
    validation then descends into it, so a default of ``{}`` is filled in turn
    (``figures: {}`` -> ``figures.main.variant: sag``) and so is each item of a list
    (``sha256: null`` in every ``results_archives`` item). ``config`` is changed in place.
    """
    base = _validator_class(schema)
    validate_properties = base.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, subschema) -> Iterator:
        if isinstance(instance, dict):
            for name, prop in properties.items():
                if "default" in prop:
                    instance.setdefault(name, copy.deepcopy(prop["default"]))
        yield from validate_properties(validator, properties, instance, subschema)

    filling = validators.extend(base, {"properties": set_defaults})
    error = jsonschema.exceptions.best_match(filling(schema).iter_errors(config))
    if error is not None:  # only a schema whose defaults break its own rules gets here
        raise ConfigProblem(describe(error, schema))


# ---- the whole check ---------------------------------------------------------------------------


def check(config: MutableMapping, schema_path: str | Path) -> None:
    """Coerce, validate, fill in the defaults and cross-check ``config``, in place.

    Raises ``ConfigProblem`` (a one-sentence message naming the key and what to do) for the
    first problem found; on success ``config`` holds every key of the schema, typed.
    """
    schema = load_schema(schema_path)
    problem = shape_problem(config)
    if problem:
        raise ConfigProblem(problem)
    config.update(coerce(dict(config), schema))
    found = _non_finite(config)
    if found:
        path, value = found
        raise ConfigProblem(
            _invalid(key_path(path), value, "not a finite number", _description(path, schema))
        )
    problem = first_problem(config, schema)
    if problem:
        raise ConfigProblem(problem)
    fill_defaults(config, schema)
    problem = cross_check(config)
    if problem:
        raise ConfigProblem(problem)


def check_or_exit(config: MutableMapping, schema_path: str | Path, configfiles=(),
                  argv: list[str] | None = None) -> None:
    """``check``, but a problem prints ``error: <sentence>`` to stderr and exits 1.

    What the Snakefile calls: the workflow stops before any job, without a traceback. First
    Snakemake's command line (``argv``, by default ``sys.argv``) is read for a repeated
    ``--configfile`` or ``--config`` flag, whose earlier files or values Snakemake would
    ignore, and for ``--config key=`` values, which Snakemake turns into null and which are
    put back as the empty text typed (``command_line``); then each config file Snakemake
    loaded (``configfiles``: the Snakefile passes ``workflow.configfiles``) is read for a key
    written twice; last, ``--unlock`` while a run is still active here prints a warning.
    """
    argv = sys.argv if argv is None else argv
    try:
        problem = repeated_flag_problem(argv) or duplicate_keys(configfiles)
        if problem:
            raise ConfigProblem(problem)
        for key in empty_config_keys(argv):
            if config.get(key) is None:
                config[key] = ""  # coerce makes it null again where null is allowed
        check(config, schema_path)
    except ConfigProblem as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
    warning = unlock_warning(argv)
    if warning:
        print(f"warning: {warning}", file=sys.stderr)
