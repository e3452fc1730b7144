"""The workflow's config check (askdagger_mnist.config), called directly: no Snakemake.

tests/test_workflow_static.py checks the same sentences end to end through Snakemake.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import yaml

from askdagger_mnist import config as cfg
from conftest import REPO

SCHEMA_PATH = REPO / "workflow" / "schemas" / "config.schema.yaml"


@pytest.fixture(scope="module")
def schema():
    return cfg.load_schema(SCHEMA_PATH)


def problem(config: dict) -> str:
    """The one sentence ``check`` refuses ``config`` with."""
    with pytest.raises(cfg.ConfigProblem) as info:
        cfg.check(config, SCHEMA_PATH)
    sentence = str(info.value)
    assert sentence.endswith(".") and ". " not in sentence and "\n" not in sentence, sentence
    return sentence


# ---- coercion of --config strings ---------------------------------------------------------------


def test_scalars_from_the_command_line_get_their_schema_types(schema):
    given = {
        "repetitions": "3",
        "seed_root": "+7",
        "dropout": "0.25",
        "max_steps": "null",
        "results_source": "download",
        "device": " cuda ",
    }
    out = cfg.coerce(given, schema)
    assert out["repetitions"] == 3 and type(out["repetitions"]) is int
    assert out["seed_root"] == 7 and type(out["seed_root"]) is int
    assert out["dropout"] == 0.25 and type(out["dropout"]) is float
    assert out["max_steps"] is None
    assert out["results_source"] == "download" and out["device"] == " cuda "  # enums: as given
    assert given["repetitions"] == "3"  # a new object: the input is not changed


@pytest.mark.parametrize("text", ["null", "None", "~", ""])
def test_null_spellings(schema, text):
    assert cfg.coerce({"max_steps": text}, schema) == {"max_steps": None}


def test_integers_stay_strings_where_only_a_number_would_be_wrong(schema):
    # max_steps is [integer, null]: "7.5" is neither, so the schema check sees the string.
    assert cfg.coerce({"max_steps": "7.5"}, schema) == {"max_steps": "7.5"}
    assert cfg.coerce({"repetitions": "ten"}, schema) == {"repetitions": "ten"}


def test_a_single_value_becomes_a_list_and_list_items_are_typed(schema):
    out = cfg.coerce({"s_des": "0.25", "modes": "success"}, schema)
    assert out == {"s_des": [0.25], "modes": ["success"]}
    assert cfg.coerce({"s_des": ["0.5", "0.9"]}, schema) == {"s_des": [0.5, 0.9]}


def test_nested_maps_are_typed(schema):
    given = {
        "variants": {"sag": {"p_rand": "0.3", "normalization": "false", "imputation": "TRUE"}},
        "train_resources": {"gpu": "0", "mem_mb": "8000"},
        "figures": {"reg_ablation": {"variants": "sag"}},
        "results_archives": [{"name": "a", "url": "gdrive:x", "sha256": "none", "format": "bundle"}],
    }
    out = cfg.coerce(given, schema)
    assert out["variants"] == {"sag": {"p_rand": 0.3, "normalization": False, "imputation": True}}
    assert out["train_resources"] == {"gpu": 0, "mem_mb": 8000}
    assert out["figures"] == {"reg_ablation": {"variants": ["sag"]}}
    assert out["results_archives"][0]["sha256"] is None


def test_check_types_the_config_in_place():
    # config.yaml, then --config 's_des=0.25' 'variants={sag: {...}}' (Snakemake merges maps).
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    config["s_des"] = "0.25"
    config["variants"]["sag"] = {"p_rand": "0.3", "normalization": "false", "imputation": "true"}
    cfg.check(config, SCHEMA_PATH)
    assert config["s_des"] == [0.25]
    assert config["variants"]["sag"] == {"p_rand": 0.3, "normalization": False, "imputation": True}


# ---- defaults -----------------------------------------------------------------------------------


def test_an_empty_config_gets_every_default_the_same_as_config_yaml():
    config = {}
    cfg.check(config, SCHEMA_PATH)
    assert config == yaml.safe_load((REPO / "config.yaml").read_text())


def test_nested_defaults_are_filled_where_a_parent_is_given():
    config = {
        "figures": {"main": {}},
        "train_resources": {"mem_mb": 8000},
        "results_archives": [{"name": "mine", "url": "https://example.org/r.zip", "format": "bundle"}],
    }
    cfg.check(config, SCHEMA_PATH)
    assert config["figures"]["main"] == {"variant": "sag"}
    assert config["figures"]["sag"] == {"variant": "sag"}
    assert config["train_resources"] == {"mem_mb": 8000, "gpu": 1, "runtime": 30}
    assert config["results_archives"] == [
        {"name": "mine", "url": "https://example.org/r.zip", "format": "bundle", "sha256": None}
    ]


def test_defaults_are_copies_not_shared_with_the_schema(schema):
    a, b = {}, {}
    cfg.fill_defaults(a, schema)
    a["s_des"].append(0.95)
    a["figures"]["main"]["variant"] = "other"
    cfg.fill_defaults(b, schema)
    assert 0.95 not in b["s_des"] and b["figures"]["main"]["variant"] == "sag"


# ---- one-sentence errors ------------------------------------------------------------------------


def test_unknown_key_with_a_did_you_mean_hint():
    sentence = problem({"reptitions": 3})
    assert sentence.startswith("unknown config key 'reptitions' (did you mean 'repetitions'?)")
    assert "config.yaml" in sentence


def test_unknown_nested_key_names_where_it_is():
    sentence = problem({"variants": {"sag": {"p_rand": 0.1, "normalization": True,
                                             "imputation": True, "normalisation": False}}})
    assert "'normalisation' (did you mean 'normalization'?) in variants.sag" in sentence


def test_out_of_range_value_names_its_key_path_and_what_is_expected():
    sentence = problem({"variants": {"sag": {"p_rand": 1.5, "normalization": True,
                                             "imputation": True}}})
    assert sentence.startswith("invalid config value variants.sag.p_rand = 1.5: ")
    assert "(p_rand is the random query rate, in [0, 1))" in sentence
    assert sentence.endswith("fix it in config.yaml, your --configfile or --config.")


def test_list_item_out_of_range_names_its_index():
    sentence = problem({"s_des": ["0.5", "1.5"]})
    assert sentence.startswith("invalid config value s_des[1] = 1.5: ")
    assert "strictly between 0 and 1" in sentence


def test_bad_enum_value_names_the_choices():
    assert "(device is auto, cpu or cuda)" in problem({"device": "tpu"})
    assert "invalid config value modes[1] = \"sideways\"" in problem({"modes": ["success",
                                                                               "sideways"]})


def test_a_long_value_is_shortened():
    sentence = problem({"mnist_root": ["x" * 200]})
    # The value shown after the key is cut to 80 characters (json: '["' + 75 x + '...').
    assert sentence.startswith('invalid config value mnist_root = ["' + "x" * 75 + "...: ")


def test_a_figure_naming_an_undefined_variant():
    sentence = problem({"figures": {"reg_ablation": {"variants": ["sag", "no_norm"]}}})
    assert sentence == (
        "config key figures.reg_ablation.variants names variant 'no_norm', which is not "
        "defined under variants (known: sag, no_normalization, no_imputation, prand0.05, "
        "prand0.2): add it there or fix the name."
    )
    only_sag = {"sag": {"p_rand": 0.1, "normalization": True, "imputation": True}}
    # The default figures name variants this config no longer defines.
    assert "config key figures.reg_ablation.variants names variant 'no_normalization'" in problem(
        {"variants": only_sag, "figures": {"main": {"variant": "sag"}}}
    )
    assert "config key figures.main.variant names variant 'paper'" in problem(
        {"figures": {"main": {"variant": "paper"}}}
    )


def test_two_s_des_that_name_the_same_run_directory():
    # 0.9 and 0.90 (also as --config strings) are the same number: the schema's uniqueItems.
    sentence = problem({"s_des": ["0.9", "0.90"]})
    assert sentence.startswith("invalid config value s_des = [0.9, 0.9]: ")
    assert "has non-unique elements" in sentence
    # Different numbers that format alike (naming.format_s_des, 6 significant digits) would
    # share run directory s0.9: the cross-check.
    sentence = problem({"s_des": [0.5, 0.9, 0.90000000001]})
    assert sentence == (
        "config key s_des has values that name the same run directory (0.5, 0.9, 0.9): "
        "list each value once."
    )


def test_check_or_exit_prints_one_error_line_and_exits_1(capsys):
    with pytest.raises(SystemExit) as info:
        cfg.check_or_exit({"batch_size": 0}, SCHEMA_PATH)
    assert info.value.code == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: invalid config value batch_size = 0")
    assert "integer >= 1" in err


def test_check_or_exit_is_silent_on_a_good_config(capsys):
    config = {"repetitions": "2"}
    cfg.check_or_exit(config, SCHEMA_PATH)
    assert config["repetitions"] == 2 and capsys.readouterr() == ("", "")


# ---- imports ------------------------------------------------------------------------------------


def test_the_module_imports_neither_torch_nor_numpy():
    """Snakemake's own environment may lack them (--use-conda)."""
    code = (
        "import sys; import askdagger_mnist.config; "
        "bad = sorted(m for m in ('numpy', 'torch', 'snakemake') if m in sys.modules); "
        "assert not bad, bad"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
