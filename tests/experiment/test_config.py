"""The workflow's config check (askdagger_mnist.experiment.config), called directly: no Snakemake.

tests/test_workflow_static.py checks the same sentences end to end through Snakemake.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from askdagger_mnist.experiment import config as cfg
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
    assert config["train_resources"] == {"mem_mb": 8000, "gpu": None, "runtime": 30}
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
    # share run directory s0.9: the one that does not survive the trip into the name is refused.
    sentence = problem({"s_des": [0.5, 0.9, 0.90000000001]})
    assert sentence == (
        "config key s_des has 0.90000000001, which run directories would name s0.9 and train "
        "as 0.9: write it with at most 6 significant digits."
    )


# ---- values the schema lets through but no run could use ----------------------------------------


def test_integer_valued_floats_become_integers():
    # YAML's 3.0 passes the schema's "integer" (JSON Schema counts it as one) but breaks
    # range() and the train script's --batch-size: it is typed like a --config string.
    config = {"repetitions": 3.0, "batch_size": 64.0, "max_steps": 10.0,
              "train_resources": {"mem_mb": 8000.0}}
    cfg.check(config, SCHEMA_PATH)
    assert config["repetitions"] == 3 and type(config["repetitions"]) is int
    assert type(config["batch_size"]) is int and type(config["max_steps"]) is int
    assert type(config["train_resources"]["mem_mb"]) is int
    assert problem({"repetitions": 2.5}).startswith("invalid config value repetitions = 2.5: ")


NAN = float("nan")
SAG = {"p_rand": 0.1, "normalization": True, "imputation": True}


@pytest.mark.parametrize(
    "given, key",
    [
        ({"s_des": [0.5, NAN]}, "s_des[1]"),
        ({"s_des": ["0.5", "nan"]}, "s_des[1]"),  # --config 's_des=[0.5,nan]'
        (yaml.safe_load("dropout: .nan"), "dropout"),  # YAML's spelling
        ({"dropout": "NaN"}, "dropout"),
        ({"variants": {"sag": {**SAG, "p_rand": NAN}}}, "variants.sag.p_rand"),
        ({"s_des": [float("inf")]}, "s_des[0]"),
    ],
)
def test_nan_and_infinity_are_refused_with_their_key(given, key):
    # NaN slips through every bound of JSON Schema (each comparison with it is false).
    sentence = problem(given)
    assert sentence.startswith(f"invalid config value {key} = "), sentence
    assert "not a finite number" in sentence and "fix it in config.yaml" in sentence


@pytest.mark.parametrize(
    "given",
    [
        {"max_steps": 469},  # 469 x 128 = 60,032
        {"batch_size": 129},  # max_steps null: 468 steps x 129
        {"batch_size": 60_001, "max_steps": 1},
        {"batch_size": 1_000, "max_steps": 61},
    ],
)
def test_a_stream_longer_than_mnist_is_refused(given):
    sentence = problem(given)
    assert sentence.startswith("config keys max_steps and batch_size ask for "), sentence
    assert "more than the 60,000 MNIST training images" in sentence


@pytest.mark.parametrize(
    "given",
    [{"max_steps": 468}, {"batch_size": 64}, {"batch_size": 129, "max_steps": 465},
     {"batch_size": 30_000, "max_steps": 2}, {"max_steps": 10, "checkpoint_every": 1_000}],
)
def test_streams_within_mnist_pass(given):
    cfg.check(given, SCHEMA_PATH)


def test_absurdly_many_mc_samples_are_refused():
    sentence = problem({"mc_samples": 1_000_000})
    assert sentence.startswith("invalid config value mc_samples = 1000000: ")
    assert "from 1 to 1024" in sentence


def _archive(name, **extra):
    return {"name": name, "url": "https://example.org/r.zip", "format": "bundle", **extra}


def test_two_archives_with_one_name_are_refused():
    sentence = problem({"results_archives": [_archive("mine"), _archive("theirs"),
                                             _archive("mine", url="gdrive:x")]})
    assert sentence == (
        "config key results_archives names 'mine' twice, and the last would silently replace "
        "the first: give each archive its own name."
    )
    sentence = problem({"results_archives": [_archive("Mine"), _archive("mine")]})
    assert sentence == (
        "config key results_archives names 'Mine' and 'mine', which differ only in case and "
        "would share files on case-insensitive filesystems (macOS, Windows): rename one."
    )


def test_downloading_needs_an_archive():
    sentence = problem({"results_source": "download", "results_archives": []})
    assert sentence.startswith("config key results_archives is empty but results_source is download")
    cfg.check({"results_source": "train", "results_archives": []}, SCHEMA_PATH)


def test_variant_names_that_differ_only_in_case_are_refused():
    sentence = problem({"variants": {"sag": SAG, "SAG": SAG}})
    assert sentence.startswith("config key variants names 'sag' and 'SAG', which differ only in case")
    assert sentence.endswith("rename one.")


def test_the_prand_ablation_needs_distinct_p_rand_values():
    # Its figure titles and table columns are "p_rand = ...": two variants with one p_rand
    # would share a column, the last silently winning.
    sentence = problem({"figures": {"prand_ablation": {"variants": ["sag", "no_imputation"]}}})
    assert sentence == (
        "config key figures.prand_ablation.variants has 'sag' and 'no_imputation' with the same "
        "p_rand 0.1, and that figure tells its variants apart by p_rand: list variants with "
        "different p_rand values."
    )


@pytest.mark.parametrize(
    "make, part",
    [
        (lambda root: root.write_text("x"), ""),  # mnist_root is a file
        (lambda root: (root.mkdir(), (root / "MNIST").write_text("x")), "/MNIST"),
        (lambda root: ((root / "MNIST").mkdir(parents=True), (root / "MNIST" / "raw").write_text("x")),
         "/MNIST/raw"),
    ],
)
def test_an_mnist_root_that_is_no_folder_is_refused(tmp_path, make, part):
    root = tmp_path / "mnist"
    make(root)
    sentence = problem({"mnist_root": str(root)})
    assert sentence == (
        f"config key mnist_root = '{root}': {root}{part} is a file, not a folder: point "
        "mnist_root at a folder that holds (or will hold) MNIST/raw/*.gz."
    )


def test_an_mnist_root_below_a_file_is_refused(tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    sentence = problem({"mnist_root": str(tmp_path / "notes.txt" / "mnist")})
    assert f"{tmp_path / 'notes.txt'} is a file, not a folder" in sentence


def test_an_mnist_root_that_is_or_will_be_a_folder_passes(tmp_path):
    cfg.check({"mnist_root": str(tmp_path / "new" / "mnist")}, SCHEMA_PATH)
    (tmp_path / "old" / "MNIST" / "raw").mkdir(parents=True)
    cfg.check({"mnist_root": str(tmp_path / "old")}, SCHEMA_PATH)


@pytest.mark.parametrize(
    "root, phrase",
    [("~/mnist", "~ and $ are not expanded"), ("$HOME/mnist", "~ and $ are not expanded"),
     ("data/{name}", "{ and } are Snakemake wildcards")],
)
def test_an_mnist_root_that_would_not_mean_what_it_says_is_refused(root, phrase):
    sentence = problem({"mnist_root": root})
    assert sentence.startswith(f"config key mnist_root = {root!r}: ") and phrase in sentence


def test_a_key_given_twice_in_a_config_file_is_refused(tmp_path):
    from askdagger_mnist.experiment import config_shape

    good = tmp_path / "good.yaml"
    good.write_text("repetitions: 3\nvariants:\n  sag: {p_rand: 0.1}\n  other: {p_rand: 0.1}\n")
    bad = tmp_path / "bad.yaml"
    bad.write_text("repetitions: 3\nvariants:\n  sag: {p_rand: 0.1, p_rand: 0.2}\nrepetitions: 4\n")
    assert config_shape.duplicate_keys([good, REPO / "config.yaml"]) is None
    assert config_shape.duplicate_keys([good, bad]) == (
        f"config file {bad} gives key variants.sag.p_rand twice (the last would silently win): "
        "keep one."
    )
    (tmp_path / "broken.yaml").write_text("a: [")  # Snakemake reports files it cannot read
    assert config_shape.duplicate_keys([tmp_path / "broken.yaml", tmp_path / "gone.yaml"]) is None


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


# ---- --unlock while a Snakemake still runs here -------------------------------------------------


@pytest.mark.skipif(not Path("/proc/self/cwd").exists(), reason="needs Linux's /proc")
def test_unlock_names_a_snakemake_still_running_in_this_directory(tmp_path, monkeypatch, capsys):
    from askdagger_mnist.experiment import command_line

    fake = tmp_path / "bin" / "snakemake"  # a "head": its command line names snakemake
    fake.parent.mkdir()
    fake.write_text("import time\ntime.sleep(120)\n")
    here, elsewhere = tmp_path / "work", tmp_path / "other"
    here.mkdir(), elsewhere.mkdir()
    heads = [subprocess.Popen([sys.executable, str(fake), "--cores", "8"], cwd=d)
             for d in (here, elsewhere)]
    try:
        assert [pid for pid, _ in command_line.running_here(here)] == [heads[0].pid]
        assert command_line.running_here(tmp_path) == []
        monkeypatch.chdir(here)
        monkeypatch.setattr(sys, "argv", ["snakemake", "--cores", "1"])
        cfg.check_or_exit({}, SCHEMA_PATH)  # not unlocking: nothing to say
        assert capsys.readouterr().err == ""
        monkeypatch.setattr(sys, "argv", ["snakemake", "--unlock"])
        cfg.check_or_exit({}, SCHEMA_PATH)
        err = capsys.readouterr().err
    finally:
        for head in heads:
            head.kill()
            head.wait()
    # The command line, cut to 100 characters, says which run it is.
    command = f"{sys.executable} {fake} --cores 8"
    command = command if len(command) <= 100 else command[:97] + "..."
    assert err == (
        f"warning: a Snakemake run is still active in this directory (process {heads[0].pid}: "
        f"{command}), so its lock was not stale: start no other Snakemake here until that "
        "process has ended, or it may delete the results of the jobs still running.\n"
    )


# ---- imports ------------------------------------------------------------------------------------


def test_the_module_imports_neither_torch_nor_numpy():
    """Snakemake's own environment may lack them (--use-conda)."""
    code = (
        "import sys; import askdagger_mnist.experiment.config; "
        "bad = sorted(m for m in ('numpy', 'torch', 'snakemake') if m in sys.modules); "
        "assert not bad, bad"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_the_gpu_tag_follows_the_device_unless_it_is_set():
    from askdagger_mnist.experiment.config import train_gpu_tag

    assert train_gpu_tag({"gpu": None}, "cuda") == 1
    assert train_gpu_tag({"gpu": None}, "cpu") == train_gpu_tag({"gpu": None}, "auto") == 0
    assert train_gpu_tag({"gpu": 2}, "cpu") == 2 and train_gpu_tag({"gpu": 0}, "cuda") == 0


# ---- every value used exactly as written, or refused ---------------------------------------------


@pytest.mark.parametrize("s_des, named", [(0.1234567, "0.123457"), (0.9999999, "1"),
                                          (0.30000001, "0.3"), (1.0000001e-7, "1e-07")])
def test_an_s_des_that_its_run_directory_would_round_is_refused(s_des, named):
    sentence = problem({"s_des": [0.5, s_des]})
    assert sentence.startswith(f"config key s_des has {s_des!r}, which run directories would name "
                               f"s{named} and train as {named}")
    cfg.check({"s_des": [0.5, 0.123457, 1e-06]}, SCHEMA_PATH)  # six digits survive


@pytest.mark.parametrize("second", [
    {"p_rand": 0.1, "normalization": True, "imputation": True},
    {"p_rand": 0.10, "normalization": True, "imputation": True},
])
def test_two_variants_with_the_same_settings_are_refused(second):
    variants = {"sag": {"p_rand": 0.1, "normalization": True, "imputation": True}, "copy": second}
    sentence = problem({"variants": variants, "figures": {
        "main": {"variant": "sag"}, "sag": {"variant": "sag"},
        "reg_ablation": {"variants": ["sag"]}, "prand_ablation": {"variants": ["sag"]}}})
    assert sentence.startswith("config key variants defines 'sag' and 'copy' with the same settings")


@pytest.mark.parametrize("config, where, name", [
    ({"variants": {1: {"p_rand": 0.1, "normalization": True, "imputation": True}}}, "config key variants", "1 (int)"),
    ({"variants": {True: {"p_rand": 0.1, "normalization": True, "imputation": True}}}, "config key variants", "True (bool)"),
    ({"figures": {"main": {"variant": "sag"}, None: {}}}, "config key figures", "None (NoneType)"),
    ({2: 3}, "the config", "2 (int)"),
])
def test_a_name_that_is_not_text_is_refused_in_one_sentence(config, where, name):
    assert problem(config).startswith(f"{where} has the name {name}, but names are text")


@pytest.mark.parametrize("key, value", [("repetitions", 10**9), ("n_rep", 10**6), ("n_min", 10**7),
                                        ("threads", 100_000), ("jobs_per_gpu", 10**5)])
def test_sizes_beyond_their_documented_bound_are_refused(key, value):
    assert problem({key: value}).startswith(
        f"invalid config value {key} = {value}: {value} is greater than the maximum of ")


def test_a_yaml_alias_bomb_is_refused_at_once(tmp_path):
    lines = ["a0: &a0 [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 12)]
    loaded = yaml.safe_load("\n".join(lines) + "\nextra: *a11\n")  # 10^12 values, a few kB
    import time
    start = time.monotonic()
    sentence = problem({"repetitions": 2, **loaded})
    assert time.monotonic() - start < 1.0
    assert sentence.startswith("the config stands for more than 100,000 values once its YAML aliases")
    recursive = yaml.safe_load("a: &a [1, *a]\n")
    assert problem(recursive).startswith("the config refers to itself through a YAML alias")


def test_a_stream_too_short_for_the_sag_figure_is_refused_at_start_up():
    assert problem({"max_steps": 1}).startswith(
        "config key max_steps is 1, but figures/sag.pdf recomputes the last step's SAG call")
    cfg.check({"max_steps": 2}, SCHEMA_PATH)


# ---- names and paths that become file names and shell words -------------------------------------

VARIANT = {"p_rand": 0.3, "normalization": True, "imputation": True}


@pytest.mark.parametrize("config, where", [
    ({"variants": {"sag": VARIANT, "odd\n": {**VARIANT, "p_rand": 0.4}}}, "variants"),
    ({"results_archives": [{"name": "mine\n", "url": "file:///a.zip", "format": "bundle"}]},
     "results_archives[0].name"),
    ({"results_archives": [{"name": "mine", "url": "file:///a.zip", "sha256": "0" * 64 + "\n",
                            "format": "bundle"}]}, "results_archives[0].sha256"),
])
def test_a_name_or_hash_ending_in_a_line_break_is_refused(config, where):
    # A pattern ending in $ lets one trailing line break through; the name would then split
    # the shell command that carries it.
    assert problem(config).startswith(f"invalid config value {where} = ")


@pytest.mark.parametrize("config, key", [
    ({"variants": {"sag": VARIANT, "v" * 300: {**VARIANT, "p_rand": 0.4}}}, "variants"),
    ({"results_archives": [{"name": "a" * 201, "url": "file:///a.zip", "format": "bundle"}]},
     "results_archives"),
])
def test_a_name_too_long_for_a_file_name_is_refused(config, key):
    from askdagger_mnist.experiment.naming import MAX_NAME_LENGTH

    sentence = problem(config)
    assert sentence.startswith(f"config key {key} names '") and len(sentence) < 400, sentence
    assert f"longer than the {MAX_NAME_LENGTH} characters a name may have" in sentence
    longest = {"results_archives": [{"name": "a" * MAX_NAME_LENGTH, "url": "file:///a.zip",
                                     "format": "bundle"}]}
    cfg.check(longest, SCHEMA_PATH)
    schema = cfg.load_schema(SCHEMA_PATH)["properties"]  # the limit, as the schema states it
    for key in ("variants", "results_archives"):
        assert f"name (up to {MAX_NAME_LENGTH} letters, " in schema[key]["description"]


@pytest.mark.parametrize("part", ["", "/MNIST", "/MNIST/raw"])
def test_an_mnist_root_through_a_dangling_link_is_refused(tmp_path, part):
    root = tmp_path / "mnist"
    link = Path(f"{root}{part}")
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(tmp_path / "unmounted")
    assert problem({"mnist_root": str(root)}) == (
        f"config key mnist_root = '{root}': {link} is a link to {tmp_path / 'unmounted'}, which "
        "does not exist: create that folder (or mount its disk), or point mnist_root elsewhere."
    )


@pytest.mark.parametrize("root, phrase", [
    ("data/mnist\n", "holds a line break or another control character"),
    ("data/" + "m" * 256, "has a folder name of 256 bytes, more than the 255 a file system allows"),
])
def test_an_mnist_root_no_file_system_would_take_as_written_is_refused(root, phrase):
    sentence = problem({"mnist_root": root})
    assert sentence.startswith("config key mnist_root = ") and phrase in sentence, sentence


def test_a_dangling_link_where_the_workflow_writes_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "results").symlink_to(tmp_path / "scratch-disk")
    assert problem({}) == (
        f"results is a link to {tmp_path / 'scratch-disk'}, which does not exist, and the "
        "workflow writes there: create that folder (or mount its disk), or remove the link."
    )


def test_an_empty_value_from_the_command_line_is_reported_as_empty(capsys):
    # Snakemake turns `--config mnist_root=` into null; the sentence shows what was typed.
    with pytest.raises(SystemExit):
        cfg.check_or_exit({"mnist_root": None}, SCHEMA_PATH,
                          argv=["snakemake", "-n", "--config", "max_steps=3", "mnist_root="])
    assert capsys.readouterr().err.startswith('error: invalid config value mnist_root = "": ')
    config = {"max_steps": None}  # where null is allowed, empty stays null
    cfg.check_or_exit(config, SCHEMA_PATH, argv=["snakemake", "--config", "max_steps="])
    assert config["max_steps"] is None


@pytest.mark.parametrize("argv, dropped", [
    (["--configfile", "a.yaml", "--configfile", "b.yaml"], "a.yaml"),
    (["--configfiles", "a.yaml", "c.yaml", "-n", "--configfile=b.yaml"], "a.yaml, c.yaml"),
    (["-C", "x=1", "--configfile", "a.yaml", "--cores", "1", "--configfile", "a.yaml", "b.yaml"], None),
    (["--configfile", "a.yaml", "b.yaml"], None),
])
def test_config_files_of_an_earlier_configfile_flag_are_refused(capsys, argv, dropped):
    # Snakemake keeps only the last --configfile flag's files, silently.
    config = {}
    if dropped is None:
        cfg.check_or_exit(config, SCHEMA_PATH, argv=["snakemake", *argv])
        assert capsys.readouterr().err == ""
        return
    with pytest.raises(SystemExit):
        cfg.check_or_exit(config, SCHEMA_PATH, argv=["snakemake", *argv])
    err = capsys.readouterr().err
    assert err.startswith(f"error: --configfile was given more than once, and Snakemake reads "
                          f"only the files of the last one, so it would ignore {dropped}: ")
    assert err.count("\n") == 1 and "--configfile" in err.split(": ", 2)[2]


def test_values_of_an_earlier_config_flag_are_refused(capsys):
    with pytest.raises(SystemExit):
        cfg.check_or_exit({"repetitions": 2}, SCHEMA_PATH,
                          argv=["snakemake", "--config", "max_steps=5", "--config", "repetitions=2"])
    assert capsys.readouterr().err == (
        "error: --config was given more than once, and Snakemake reads only the values of the "
        "last one, so it would ignore max_steps=5: give every key=value after one --config "
        "(--config max_steps=5 repetitions=2).\n")
