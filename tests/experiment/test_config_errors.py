"""Bad config values, checked in-process as the Snakefile checks them (experiment.config.check
on config.yaml with the value given): one sentence naming the key and what is wrong. The
Snakemake-level wiring is tested once per kind of check in tests/workflow/test_workflow_static.py."""

from __future__ import annotations

import pytest
import yaml

from askdagger_mnist.experiment import config as cfg
from conftest import REPO

SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"

BAD_VALUES = [
    # (the values, as --config's YAML gives them; the key the sentence names; a phrase)
    ({"s_des": "[0.5,1.5]"}, "s_des[1]", "strictly between 0 and 1"),
    ({"repetitions": "-2"}, "repetitions", "an integer from 1 to 1000"),
    ({"batch_size": "0"}, "batch_size", "integer >= 1"),
    ({"reptitions": 3}, "'reptitions'", "did you mean 'repetitions'?"),
    ({"figures": {"reg_ablation": {"variants": ["sag", "no_norm"]}}},
     "figures.reg_ablation.variants", "'no_norm'"),
    ({"device": "tpu"}, "device", "auto, cpu or cuda"),
    ({"jobs_per_gpu": "0"}, "jobs_per_gpu", "an integer from 1 to 256"),
    ({"dropout": "nan"}, "dropout", "not a finite number"),
]  # fmt: skip


@pytest.mark.parametrize("given, key, phrase", BAD_VALUES, ids=[b[1] for b in BAD_VALUES])
def test_a_bad_value_is_one_sentence_naming_its_key(given, key, phrase):
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    for name, value in given.items():  # --config hands values over as YAML text
        config[name] = yaml.safe_load(value) if isinstance(value, str) else value
    with pytest.raises(cfg.ConfigProblem) as caught:
        cfg.check(config, SCHEMA)
    sentence = str(caught.value)
    assert key in sentence and phrase in sentence, sentence
    assert sentence.endswith(".") and sentence.count(". ") == 0, sentence
