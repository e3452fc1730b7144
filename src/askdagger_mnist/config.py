"""The workflow's config check: types restored, checked against the schema, defaults filled in.

The Snakefile calls ``check_or_exit(config, schema_path)`` before any rule is defined. A bad
value stops the workflow with one sentence on stderr (``error: <sentence>``) that names the
key, the value and what is expected, and exits 1, like every CLI of the package.

Imports only the standard library, PyYAML, jsonschema and the package's standard-library
modules (``naming``, ``settings``): under ``--use-conda`` the environment running Snakemake
itself may lack torch and numpy (tests/test_config.py checks this).

The steps, in order:

1. ``coerce``: values given with ``--config`` arrive as strings, also inside lists and maps
   (``--config 'variants={sag: {p_rand: 0.3, ...}}'``); they get back the type the schema
   asks for, and a single value is accepted where a list is expected.
2. The schema (``workflow/schemas/config.schema.yaml``) is checked; the most relevant error
   becomes one sentence (``describe``): an unknown key with a did-you-mean hint, or a bad
   value with its key path (``variants.sag.p_rand``, ``s_des[1]``) and the description of
   the key it belongs to.
3. ``fill_defaults``: every key the schema gives a ``default`` is set where it is missing,
   nested ones included (``figures.main.variant``, ``train_resources.gpu``, ``sha256`` of each
   ``results_archives`` item), as Snakemake's ``snakemake.utils.validate`` would.
4. Cross-checks the schema cannot express: every variant a figure names is defined under
   ``variants``, and no two ``s_des`` values name the same run directory
   (``naming.format_s_des``: 0.9 and 0.90 are both ``s0.9``).
"""

from __future__ import annotations

import copy
import difflib
import json
import re
import sys
from pathlib import Path
from typing import Any, Iterator, Mapping, MutableMapping

import jsonschema
import yaml
from jsonschema import validators

from askdagger_mnist.naming import format_s_des

# The figures that compare variants in sensitivity mode (keys under ``figures``, each a list).
ABLATIONS = ("reg_ablation", "prand_ablation")
# The figures that show one variant (keys under ``figures``, each a single name).
SINGLE_VARIANT_FIGURES = ("main", "sag")


class ConfigProblem(Exception):
    """A config value a user must fix; its message is one sentence."""


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
    the schema expects an array. Anything else is returned unchanged, for the schema check to
    refuse.
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


def key_path(path) -> str:
    """A jsonschema error path as the user writes the key: ``variants.sag.p_rand``, ``s_des[1]``."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _description(error: jsonschema.ValidationError, schema: Mapping) -> str | None:
    """The innermost ``description`` on the way from the schema's root to the error's key."""
    description = None
    sub = schema
    for part in error.absolute_path:
        if isinstance(part, int):
            sub = sub.get("items", {})
        elif part in sub.get("properties", {}):
            sub = sub["properties"][part]
        else:
            extra = sub.get("additionalProperties")
            sub = extra if isinstance(extra, dict) else {}
        description = sub.get("description", description)
    return description or error.schema.get("description")


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
    description = _description(error, schema)
    value = json.dumps(error.instance, default=str)
    if len(value) > 80:
        value = value[:77] + "..."
    expected = f" ({description})" if description else ""
    return (
        f"invalid config value {where} = {value}: {error.message}{expected}; fix it in "
        f"config.yaml, your --configfile or --config."
    )


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


# ---- 4. cross-checks ---------------------------------------------------------------------------


def _cross_check(config: Mapping) -> None:
    known = config["variants"]
    figures = config["figures"]
    used = [(f"figures.{f}.variant", figures[f]["variant"]) for f in SINGLE_VARIANT_FIGURES]
    for group in ABLATIONS:
        used += [(f"figures.{group}.variants", v) for v in figures[group]["variants"]]
    for key, name in used:
        if name not in known:
            raise ConfigProblem(
                f"config key {key} names variant {name!r}, which is not defined under "
                f"variants (known: {', '.join(known)}): add it there or fix the name."
            )
    formatted = [format_s_des(s) for s in config["s_des"]]
    if len(set(formatted)) != len(formatted):
        raise ConfigProblem(
            f"config key s_des has values that name the same run directory "
            f"({', '.join(formatted)}): list each value once."
        )


# ---- the whole check ---------------------------------------------------------------------------


def check(config: MutableMapping, schema_path: str | Path) -> None:
    """Coerce, validate, fill in the defaults and cross-check ``config``, in place.

    Raises ``ConfigProblem`` (a one-sentence message naming the key and what to do) for the
    first problem found; on success ``config`` holds every key of the schema, typed.
    """
    schema = load_schema(schema_path)
    config.update(coerce(dict(config), schema))
    problem = first_problem(config, schema)
    if problem:
        raise ConfigProblem(problem)
    fill_defaults(config, schema)
    _cross_check(config)


def check_or_exit(config: MutableMapping, schema_path: str | Path) -> None:
    """``check``, but a problem prints ``error: <sentence>`` to stderr and exits 1.

    What the Snakefile calls: the workflow stops before any job, without a traceback.
    """
    try:
        check(config, schema_path)
    except ConfigProblem as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
