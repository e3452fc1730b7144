"""How runs are named on disk (standard library only: the Snakefile imports it too).

A run lives in ``{mode}/{variant}/s{s_des}/rep{rep}`` under the runs folder, s_des written
with ``:g`` (0.9 -> ``s0.9``, 0.90 -> ``s0.9``): two s_des values that format alike name the
same directory, which the config check refuses.
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath
from typing import Iterable

RUNS_DIR = "results/runs"

# A folder or file name may hold at most 255 bytes (Linux, macOS, Windows). The workflow names
# folders and files after variants and archives, adding at most 18 bytes around a name (an
# archive's temporary, ``.{name}.zip.<8 hex digits>.tmp``): names are held to 200 characters
# (letters, digits, ``_ . -``: one byte each), which leaves room to spare.
NAME_MAX_BYTES = 255
MAX_NAME_LENGTH = 200


def format_s_des(s_des: float) -> str:
    """s_des as it appears in run directory names and figure labels: 0.9 -> '0.9'."""
    return f"{float(s_des):g}"


# A repetition as rep_dir_name writes it: decimal without leading zeros. The workflow's rep
# wildcard takes only these, so that ``rep01`` names no run (it would be a second copy of rep 1).
REP_NUMBER_PATTERN = r"0|[1-9][0-9]*"


def rep_dir_name(rep: int) -> str:
    """The last part of a run's directory: ``rep{rep}``."""
    return f"rep{int(rep)}"


def run_subdir(mode: str, variant: str, s_des: float, rep: int) -> PurePosixPath:
    """Relative path of a run inside the runs folder: ``{mode}/{variant}/s{s_des}/rep{rep}``."""
    return PurePosixPath(mode) / variant / f"s{format_s_des(s_des)}" / rep_dir_name(rep)


def run_label(mode: str, variant: str, s_des: float, rep: int) -> str:
    """The run's name in messages and tables (its sub-directory, as text)."""
    return str(run_subdir(mode, variant, s_des, rep))


def wildcard_alternatives(names: Iterable) -> str:
    """A wildcard constraint matching exactly these names (their text, dots literal), so that
    a rule's {mode}, {variant}, {s_des} ... cannot match a folder of another name."""
    return "|".join(re.escape(str(n)) for n in names)
