"""One source of every default: ``askdagger_mnist.settings`` (``RunSettings``, ``MODES``,
``ENGINES``, ``EXECUTION_DEFAULTS``). The workflow's schema and config.yaml restate them for
users to read; these tests keep the copies equal to the source.
"""

from __future__ import annotations

import dataclasses

import pytest
import yaml

from askdagger_mnist.settings import (
    ENGINE_CHOICES,
    ENGINES,
    EXECUTION_DEFAULTS,
    MODES,
    REPRODUCTION_DEFAULTS,
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
