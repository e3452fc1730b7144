"""One source of every default: ``askdagger_mnist.settings`` (``RunSettings``, ``MODES``,
``ENGINES``, ``EXECUTION_DEFAULTS``, ``CONFIG_DEFAULTS``). The workflow's schema and config.yaml
restate them for users to read, and the commands' flags default to them; these tests keep
every copy equal to the source: any default that drifts fails here.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect

import pytest
import yaml

from askdagger_mnist.cli import download_mnist, fetch_results, plots, reproduction, train
from askdagger_mnist.data import mnist
from askdagger_mnist.experiment.config import fill_defaults
from askdagger_mnist.prebuilt import authors_format
from askdagger_mnist.settings import (
    ABLATION_MODE,
    CONFIG_DEFAULTS,
    ENGINE_CHOICES,
    ENGINES,
    EXECUTION_DEFAULTS,
    FIGURE_VARIANTS,
    MNIST_MIRRORS,
    MODES,
    PAPER_VARIANTS,
    REPRODUCTION_DEFAULTS,
    SAG_VARIANT,
    STREAM_STEPS,
    RunSettings,
)
from conftest import REPO

SCHEMA = yaml.safe_load((REPO / "workflow" / "schemas" / "config.schema.yaml").read_text())
PROPS = SCHEMA["properties"]
CONFIG = yaml.safe_load((REPO / "config.yaml").read_text())
DEFAULTS = RunSettings()

# Algorithm settings shared by every run: top-level keys of the config, fields of RunSettings.
SHARED_KEYS = ["batch_size", "update_every", "mc_samples", "dropout", "n_min", "n_rep", "seed_root"]
# What a variant sets: keys of each variants.<name> entry, fields of RunSettings.
VARIANT_KEYS = ["p_rand", "normalization", "imputation"]


def test_the_keys_compared_are_fields_of_run_settings():
    fields = {f.name for f in dataclasses.fields(RunSettings)}
    assert set(SHARED_KEYS + VARIANT_KEYS) <= fields


@pytest.mark.parametrize("key", SHARED_KEYS)
def test_schema_and_config_yaml_defaults_of_shared_settings_are_run_settings(key):
    expected = getattr(DEFAULTS, key)
    assert PROPS[key]["default"] == expected, f"schema default of {key}"
    assert CONFIG[key] == expected, f"config.yaml value of {key}"
    assert type(PROPS[key]["default"]) is type(expected) and type(CONFIG[key]) is type(expected)


def test_the_sag_variant_is_run_settings():
    expected = {k: getattr(DEFAULTS, k) for k in VARIANT_KEYS}
    assert PROPS["variants"]["default"]["sag"] == expected
    assert CONFIG["variants"]["sag"] == expected
    # And the figures use it where the paper does.
    assert CONFIG["figures"]["main"]["variant"] == "sag"
    assert PROPS["figures"]["properties"]["main"]["properties"]["variant"]["default"] == "sag"


def test_the_ablation_variants_differ_from_sag_in_one_setting_only():
    sag = PROPS["variants"]["default"]["sag"]
    for name, variant in PROPS["variants"]["default"].items():
        if name != "sag":
            assert sum(variant[k] != sag[k] for k in VARIANT_KEYS) == 1, name
    assert CONFIG["variants"] == PROPS["variants"]["default"]


@pytest.mark.parametrize("key", sorted(EXECUTION_DEFAULTS))
def test_execution_defaults(key):
    assert key in PROPS, f"the schema has no key {key}"
    assert PROPS[key]["default"] == EXECUTION_DEFAULTS[key], f"schema default of {key}"
    assert CONFIG[key] == EXECUTION_DEFAULTS[key], f"config.yaml value of {key}"


def test_reproduction_defaults():
    section = PROPS["reproduction"]
    assert section["default"] == REPRODUCTION_DEFAULTS == CONFIG["reproduction"]
    props = section["properties"]
    for key, value in REPRODUCTION_DEFAULTS.items():
        if key == "margins":
            assert {k: v["default"] for k, v in props[key]["properties"].items()} == value
        else:
            assert props[key]["default"] == value, key
    assert PROPS["compare_with"]["default"] == [] == CONFIG["compare_with"]


def test_engine_choices_are_the_settings_engines():
    assert PROPS["engine"]["enum"] == list(ENGINE_CHOICES) == ["auto", *ENGINES]
    assert EXECUTION_DEFAULTS["engine"] in ENGINE_CHOICES


def test_modes_are_the_settings_modes():
    modes = PROPS["modes"]
    assert modes["items"]["enum"] == list(MODES)
    assert modes["default"] == list(MODES)
    assert CONFIG["modes"] == list(MODES)
    assert modes["description"].endswith(", ".join(MODES))
    assert DEFAULTS.mode in MODES


def test_the_whole_stream_is_stream_steps():
    assert DEFAULTS.steps == STREAM_STEPS
    assert f"{STREAM_STEPS} steps" in PROPS["max_steps"]["description"]
    assert PROPS["max_steps"]["default"] is None and CONFIG["max_steps"] is None


def test_config_yaml_documents_every_schema_key_in_the_schemas_order():
    """(That config.yaml holds exactly the schema's defaults: tests/experiment/test_config.py.)"""
    assert list(CONFIG) == list(PROPS)


# ---- every default of the schema, and of the commands' flags, against settings ----------------


def _schema_defaults(properties: dict, path: tuple = ()):
    """(path, property schema) of every property below ``properties`` that has a default;
    the defaults inside a list's items as (path + ("[]", key), property schema)."""
    for key, node in properties.items():
        here = (*path, key)
        if "default" in node:
            yield here, node
        yield from _schema_defaults(node.get("properties", {}), here)
        yield from _schema_defaults(node.get("items", {}).get("properties", {}), (*here, "[]"))


def _effective_default(key: str, node: dict):
    """The value the config check gives a missing ``key``: its default, filled in turn."""
    holder: dict = {}
    fill_defaults(holder, {"type": "object", "properties": {key: node}})
    return holder[key]


def _settings_values(path: tuple) -> list:
    """The values at ``path`` in settings.CONFIG_DEFAULTS ("[]": each item of a list)."""
    values = [CONFIG_DEFAULTS]
    for key in path:
        values = [item for v in values for item in v] if key == "[]" else [v[key] for v in values]
    return values


def test_every_config_key_has_its_default_in_settings():
    assert sorted(CONFIG_DEFAULTS) == sorted(PROPS)


def test_every_schema_default_is_the_settings_default():
    found = list(_schema_defaults(PROPS))
    assert len(found) > len(PROPS)  # nested defaults are compared too
    drifted = [f"{'.'.join(path)}: schema {_effective_default(path[-1], node)!r}, settings {value!r}"
               for path, node in found for value in _settings_values(path)
               if _effective_default(path[-1], node) != value]
    assert not drifted, drifted


def _flag_defaults(parser: argparse.ArgumentParser, *subcommand: str) -> dict:
    """dest -> default of the flags of ``parser`` (of its ``subcommand``, if given)."""
    for name in subcommand:
        choices = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = choices.choices[name]
    return {a.dest: a.default for a in parser._actions}


def test_the_train_commands_flags_default_to_settings():
    flags = _flag_defaults(train.build_parser())
    run = RunSettings()
    for field in dataclasses.fields(RunSettings):
        dest = {"steps": "max_steps", "normalization": "no_normalization",
                "imputation": "no_imputation"}.get(field.name, field.name)
        if field.name in ("normalization", "imputation"):
            assert flags[dest] is (not getattr(run, field.name)), dest
        elif field.name not in ("mode", "s_des"):  # required flags
            assert flags[dest] == getattr(run, field.name), dest
    for key, value in EXECUTION_DEFAULTS.items():
        if key == "runs_per_job":  # the workflow's; a train job trains its run and --and-next
            assert flags["and_next"] == value - 1, key
        else:
            assert flags[key] == value, key
    assert flags["variant"] == SAG_VARIANT in PAPER_VARIANTS


def test_the_figure_commands_flags_default_to_settings():
    main = _flag_defaults(plots.build_parser(), "main")
    assert main["variant"] == FIGURE_VARIANTS["main"]["variant"] and main["modes"] == list(MODES)
    for command, group in (("reg-ablation", "reg_ablation"), ("prand-ablation", "prand_ablation")):
        assert _flag_defaults(plots.build_parser(), command)["variants"] == FIGURE_VARIANTS[group]["variants"]


def test_the_figure_functions_default_to_settings():
    from askdagger_mnist.analysis import figures

    assert inspect.signature(figures.main_figure).parameters["variant"].default == SAG_VARIANT
    assert inspect.signature(figures.ablation_figure).parameters["mode"].default == ABLATION_MODE
    assert SAG_VARIANT in figures.VARIANT_TITLES


def test_the_import_and_verdict_commands_flags_default_to_settings():
    for command in ("import", "fetch"):
        assert _flag_defaults(fetch_results.build_parser(), command)["default_mode"] == ABLATION_MODE
    assert fetch_results._variants(None) == PAPER_VARIANTS
    for function in (authors_format.find_runs, authors_format.import_tree):
        assert inspect.signature(function).parameters["default_mode"].default == ABLATION_MODE
    assert ABLATION_MODE in MODES
    verdict = _flag_defaults(reproduction.build_parser(), "verdict")
    assert {"tracked": verdict["margin_tracked"], "others": verdict["margin_others"]} == \
        REPRODUCTION_DEFAULTS["margins"]
    assert (verdict["min_runs"], verdict["curve_after_step"]) == (
        REPRODUCTION_DEFAULTS["min_runs"], REPRODUCTION_DEFAULTS["curve_after_step"])


def test_the_mnist_mirrors_default_to_settings():
    assert _flag_defaults(download_mnist.build_parser())["mirrors"] is None  # then MNIST_MIRRORS
    for function in (mnist.prepare_mnist, mnist.ensure_mnist):
        assert inspect.signature(function).parameters["mirrors"].default == MNIST_MIRRORS
    assert CONFIG_DEFAULTS["mnist_mirrors"] == list(MNIST_MIRRORS)
