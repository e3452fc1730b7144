"""The settings of one planned run, from the checked config: the one translation of config keys
into a ``RunSettings`` (settings.py). The train rule's flags are written from it
(flags.settings_flags), the train CLI reads them back into the same ``RunSettings``, and the
grid keys each planned run by it (grid.planned_configurations). Standard library only."""

from __future__ import annotations

from typing import Mapping

from ..settings import STREAM_STEPS, RunSettings

# The config keys run_settings reads (besides a run's mode, variant, s_des and rep).
RUN_CONFIG_KEYS = ("variants", "batch_size", "update_every", "mc_samples", "dropout", "n_min",
                   "n_rep", "max_steps", "seed_root")


def stream_steps(config: Mapping) -> int:
    """The steps of every run's stream. The config says max_steps, a cap that is null for the
    whole stream (docs/spec.md §1.1: 468 steps); a run records the length it got, as steps."""
    return STREAM_STEPS if config["max_steps"] is None else config["max_steps"]


def run_settings(config: Mapping, mode: str, variant: str, s_des, rep) -> RunSettings:
    """The settings of the run (mode, variant, s_des, rep): the variant's keys, the run-wide
    keys and the stream length. s_des and rep may be text, as in a rule's wildcards."""
    v = config["variants"][variant]
    return RunSettings(
        mode=mode, s_des=float(s_des), rep=int(rep), p_rand=v["p_rand"],
        normalization=v["normalization"], imputation=v["imputation"],
        batch_size=config["batch_size"], update_every=config["update_every"],
        mc_samples=config["mc_samples"], dropout=config["dropout"], n_min=config["n_min"],
        n_rep=config["n_rep"], steps=stream_steps(config), seed_root=config["seed_root"],
    )
