"""The one source of every default: the run settings (docs/spec.md §3.6), the execution's,
the verdict's and the rest of the workflow config's (``CONFIG_DEFAULTS``); and the seed of each
run (§6.1).

Standard library only at import time (numpy is imported where a seed is made). The commands'
flags, ``SagConfig`` and the figures read these defaults. The workflow does not: it fills a
missing config key from the schema's ``default:`` (experiment/config.fill_defaults), and those
``default:`` keys, like config.yaml's values, are copies of ``CONFIG_DEFAULTS`` that
tests/test_defaults.py pins: change a default here, then the copies, or that test fails.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass

MODES = ("sensitivity", "specificity", "success")
# The metric each mode's s_des targets (docs/spec.md §4.1 and §5.1).
TRACKED = {"sensitivity": "sensitivity", "specificity": "specificity", "success": "system_success"}
MNIST_TRAIN_IMAGES = 60_000  # the stream draws its batches from these without replacement
STREAM_STEPS = 468  # 468 x 128 = 59,904 of the 60,000 MNIST training images
ENGINES = ("plain", "fast")  # docs/spec.md §7: the same algorithm, readable or fast
# The engine choices of config and CLI: auto is the fast engine, on the CPU and on CUDA alike,
# where it was measured faster with results in line (docs/benchmarks.md: one NVIDIA H200,
# 8.1 s against 12.8 s a run alone, 58.9 against 43.9 runs a minute with 16 at once).
ENGINE_CHOICES = ("auto", *ENGINES)

# The version of what a run's results are: raise it with any change that alters the results of
# some run made with unchanged settings (a fix to the algorithm, a new draw of a seed). Every
# run.json and checkpoint records it; the train rule passes it as a parameter, so that raising
# it re-runs every training job, and no run or checkpoint of another version is reused
# (data/kept_runs.py, data/checkpoint.py). Execution choices (engine, device, threads) are not
# results: a run's run.json records them, and docs/spec.md §7 says what they may change.
# 1: the first release. 2: SAG's logistic fit as the authors' code computes it (scikit-learn's
# lbfgs at its default tolerance, docs/spec.md §4.4), where 1 fitted to convergence.
RESULTS_VERSION = 2

# Execution defaults (how a run is carried out; they never change its results). jobs_per_gpu:
# training jobs that may share one GPU of a workstation (docs/cluster.md, gpu_slots.py).
# cpu_slots: each training job holds `threads` CPU cores of its own, pinned, and waits while
# none is free, so that more jobs than cores never time-share one (cpu_slots.py).
# runs_per_job: the runs of a configuration that one train job trains in one process, paying
# start-up once (experiment/batches.py); 1: one process per run, the shape asked for.
EXECUTION_DEFAULTS = {"engine": "auto", "device": "auto", "jobs_per_gpu": 1, "threads": 1,
                      "cpu_slots": True, "checkpoint_every": 50, "matmul_precision": "highest",
                      "runs_per_job": 1}
# torch.set_float32_matmul_precision's choices. highest: float32 throughout (ours, on every
# device). medium: what the authors' train.py sets; on hardware with a faster format (TF32 on
# NVIDIA Ampere and later, bfloat16 on CPUs with AMX/AVX-512 BF16) it computes float32 matrix
# products in that format (docs/spec.md §8).
MATMUL_PRECISIONS = ("highest", "high", "medium")

# The reproduction verdict (docs/reproduction.md): margins on the difference of means (the
# mode's tracked metric, every other metric), the fewest runs per side for a verdict other
# than inconclusive, and the step after which curve gaps are measured.
#
# The fewest runs a side at which the verdict may call "different". bench/calibrate_verdict.py
# measured its false-positive rate (two samples of one pool of runs, every pool and metric) at
# 5% or less from 2 runs a side on; 3, because 2 runs decide almost nothing (the known shift was
# found in 30% of draws at 2, 83% at 3): docs/reproduction.md, the calibration table.
MIN_RUNS_CALIBRATED = 3
REPRODUCTION_DEFAULTS = {
    "margins": {"tracked": 0.02, "others": 0.05},
    "min_runs": MIN_RUNS_CALIBRATED,
    "curve_after_step": 50,
}


@dataclass(frozen=True)
class RunSettings:
    mode: str = "sensitivity"
    s_des: float = 0.9
    rep: int = 0
    p_rand: float = 0.1
    normalization: bool = True
    imputation: bool = True
    batch_size: int = 128
    update_every: int = 5
    mc_samples: int = 16
    dropout: float = 0.4
    n_min: int = 50
    n_rep: int = 10
    steps: int = STREAM_STEPS
    seed_root: int = 0

    def __post_init__(self) -> None:
        problems = []
        if self.mode not in MODES:
            problems.append(f"mode must be one of {', '.join(MODES)}, not {self.mode!r}")
        if not 0.0 < self.s_des < 1.0:
            problems.append(f"s_des must lie strictly between 0 and 1, not {self.s_des}")
        if self.rep < 0:
            problems.append(f"rep must be >= 0, not {self.rep}")
        if not 0.0 <= self.p_rand < 1.0:
            problems.append(f"p_rand must lie in [0, 1), not {self.p_rand}")
        if not 0.0 <= self.dropout < 1.0:
            problems.append(f"dropout must lie in [0, 1), not {self.dropout}")
        for name in ("batch_size", "update_every", "mc_samples", "n_min", "n_rep", "steps"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be >= 1, not {getattr(self, name)}")
        if problems:
            raise ValueError("; ".join(problems))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def variant_key(self) -> str:
        """What distinguishes a variant of the algorithm (not the stream length or seed)."""
        return (
            f"p_rand={self.p_rand:g},normalization={int(self.normalization)},"
            f"imputation={int(self.imputation)},batch_size={self.batch_size},"
            f"update_every={self.update_every},mc_samples={self.mc_samples},"
            f"dropout={self.dropout:g},n_min={self.n_min},n_rep={self.n_rep}"
        )

    def seed_sequence(self):
        """The run's ``numpy.random.SeedSequence`` (see ``run_seed_sequence``)."""
        return run_seed_sequence(self.mode, self.s_des, self.variant_key(), self.rep, self.seed_root)


def run_seed_sequence(mode: str, s_des: float, variant_key: str, rep: int, seed_root: int = 0):
    """A SeedSequence derived stably from (mode, s_des, variant, repetition).

    The identifying string is hashed to 128-bit words, so every run has its own independent
    stream (the original code's seeds ``seed + rep`` overlap between settings) and the seed
    never depends on Python's hash randomisation or on the order runs are scheduled.
    """
    ident = f"askdagger-mnist|{mode}|{s_des:.6g}|{variant_key}|rep={rep}"
    import numpy as np

    digest = hashlib.sha256(ident.encode()).digest()
    words = [int.from_bytes(digest[i : i + 4], "little") for i in range(0, 16, 4)]
    return np.random.SeedSequence([int(seed_root), *words])


# What a run's result may depend on besides its seed: runs with equal keys are repetitions of
# one experiment (the reproduction verdict matches runs by it; docs/reproduction.md).
CONFIGURATION_FIELDS = ("mode", "p_rand", "normalization", "imputation", "s_des", "batch_size",
                        "update_every", "mc_samples", "dropout", "n_min", "n_rep")


def setting_float(value) -> float:
    """A float setting as runs are compared by it: rounded to 12 digits, so that a JSON round
    trip (or a value typed in the config) keeps it."""
    return round(float(value), 12)


def configuration_key(settings) -> tuple:
    """A run's configuration (CONFIGURATION_FIELDS) from its settings (run.json's, or the
    workflow's for a planned run); a setting they lack is the default (RunSettings), as in a
    bundle of an older version. Floats by ``setting_float``."""
    default = RunSettings()
    value = {name: settings.get(name, getattr(default, name)) for name in CONFIGURATION_FIELDS}
    return (str(value["mode"]), setting_float(value["p_rand"]), bool(value["normalization"]),
            bool(value["imputation"]), setting_float(value["s_des"]),
            int(value["batch_size"]), int(value["update_every"]), int(value["mc_samples"]),
            setting_float(value["dropout"]), int(value["n_min"]), int(value["n_rep"]))


# ---- the workflow config's defaults --------------------------------------------------------------
# The source of the workflow config's defaults. The workflow does not read CONFIG_DEFAULTS: it
# fills missing keys from workflow/schemas/config.schema.yaml's ``default:`` keys, which are
# copies of these (as config.yaml's values are), kept equal by tests/test_defaults.py. The
# commands read it where they take config keys as JSON (prebuilt.picking.config_from_json,
# fetch_results --config): a key left out is its default.
SAG_VARIANT = "sag"  # the paper's S-Aware Gating, as the config's variants name it
# The paper's variants: SAG, and four that each change one of its settings (the ablations).
PAPER_VARIANTS = {
    SAG_VARIANT: {"p_rand": 0.1, "normalization": True, "imputation": True},
    "no_normalization": {"p_rand": 0.1, "normalization": False, "imputation": True},
    "no_imputation": {"p_rand": 0.1, "normalization": True, "imputation": False},
    "prand0.05": {"p_rand": 0.05, "normalization": True, "imputation": True},
    "prand0.2": {"p_rand": 0.2, "normalization": True, "imputation": True},
}
ABLATION_MODE = "sensitivity"  # the ablation figures (and the authors' ablation runs) track it
# The variants each figure shows (config key figures).
FIGURE_VARIANTS = {
    "main": {"variant": SAG_VARIANT},
    "reg_ablation": {"variants": [SAG_VARIANT, "no_normalization", "no_imputation"]},
    "prand_ablation": {"variants": ["prand0.05", SAG_VARIANT, "prand0.2"]},
    "sag": {"variant": SAG_VARIANT},
}
# torchvision.datasets.MNIST's mirrors (tests/data/test_mnist.py checks they are torchvision's).
MNIST_MIRRORS = ("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/")
# The most a download may bring (config key max_download_mib; fetch_results --max-mib), so that
# a server streaming without end, or announcing an absurd size, cannot fill the disk: in MiB.
# Far above anything the workflow fetches (MNIST's largest file is 9.9 MB; an authors' archive
# holds runs of about 4 MB each, a few hundred MB in all; a bundle of every configured run is
# smaller), and small enough that a runaway stream stops long before most disks are full.
MAX_DOWNLOAD_MIB = 4096
# The authors' published results, used when results_source is download (their sha256 is not
# known in advance: each archive's structure is checked and its hash logged instead).
AUTHORS_ARCHIVES = [
    {"name": f"authors_{name}", "url": f"gdrive:{file_id}", "sha256": None, "format": "authors"}
    for name, file_id in (("sensitivity", "1UhF13-qpdfFpXOlIPGdpeuwLAWfV98bt"),
                          ("specificity", "1-pBiUDs3jmx1hV80obPptZdoyBFybkIn"),
                          ("success", "1HYqBYuwPfHmzS_NoSLQGIE6BrF_ZJJiK"),
                          ("ablations", "1f5CnucnTgGZkiSKs7-S2f18grWMIdoIC"))
]
CONFIG_DEFAULTS = {
    "mnist_root": "resources/mnist",
    "mnist_mirrors": list(MNIST_MIRRORS),
    "results_source": "train",
    "results_archives": AUTHORS_ARCHIVES,
    "max_download_mib": MAX_DOWNLOAD_MIB,
    "compare_with": [],
    "reproduction": REPRODUCTION_DEFAULTS,
    "modes": list(MODES),
    "s_des": [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9],
    "repetitions": 10,
    "variants": PAPER_VARIANTS,
    "figures": FIGURE_VARIANTS,
    **{key: value for key, value in RunSettings().to_dict().items()
       if key in ("seed_root", "batch_size", "update_every", "mc_samples", "dropout", "n_min",
                  "n_rep")},
    "max_steps": None,  # the whole stream: STREAM_STEPS
    **EXECUTION_DEFAULTS,
    # The train rule's resources; gpu None: 1 when device is cuda, else 0.
    "train_resources": {"gpu": None, "mem_mb": 4000, "runtime": 30},
}
