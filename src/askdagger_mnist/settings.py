"""Run settings (the paper's defaults), per-run seeds and the run directory naming."""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

MODES = ("sensitivity", "specificity", "success")
STREAM_STEPS = 468  # 468 x 128 = 59,904 of the 60,000 MNIST training images


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

    def seed_sequence(self) -> np.random.SeedSequence:
        return run_seed_sequence(self.mode, self.s_des, self.variant_key(), self.rep, self.seed_root)


def run_seed_sequence(
    mode: str, s_des: float, variant_key: str, rep: int, seed_root: int = 0
) -> np.random.SeedSequence:
    """A SeedSequence derived stably from (mode, s_des, variant, repetition).

    The identifying string is hashed to 128-bit words, so every run has its own independent
    stream (the original code's seeds ``seed + rep`` overlap between settings) and the seed
    never depends on Python's hash randomisation or on the order runs are scheduled.
    """
    ident = f"askdagger-mnist|{mode}|{s_des:.6g}|{variant_key}|rep={rep}"
    digest = hashlib.sha256(ident.encode()).digest()
    words = [int.from_bytes(digest[i : i + 4], "little") for i in range(0, 16, 4)]
    return np.random.SeedSequence([int(seed_root), *words])


def format_s_des(s_des: float) -> str:
    return f"{float(s_des):g}"


def run_subdir(mode: str, variant: str, s_des: float, rep: int) -> Path:
    """Relative path of a run inside the runs folder: ``{mode}/{variant}/s{s_des}/rep{rep}``."""
    return Path(mode) / variant / f"s{format_s_des(s_des)}" / f"rep{int(rep)}"
