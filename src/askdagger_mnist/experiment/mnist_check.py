"""The start-up check of ``mnist_root`` against download_mnist's manifest (standard library
only: the Snakefile runs it before planning)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping

from ..data.mnist import TRAIN_FILES, raw_folder
from .flags import mnist_download_command


def mnist_root_warning(config: Mapping, manifest: str) -> str | None:
    """Once the manifest exists, the training files it lists must be under mnist_root (at the
    verified size): otherwise one sentence naming the first file missing and the command that
    fetches it. A warning, not an error: runs already made need no MNIST. None when all is well
    or when there is no manifest yet (download_mnist will check and complete the root)."""
    path = Path(manifest)
    if not path.is_file():
        return None
    try:
        files = json.loads(path.read_text())["files"]
        sizes = {name: int(files[name]["size"]) for name in TRAIN_FILES}
    except (OSError, ValueError, KeyError, TypeError):
        problem = f"{manifest} is unreadable or not download_mnist's"
    else:
        problem = None
        raw = raw_folder(config["mnist_root"])
        for name in reversed(TRAIN_FILES):  # the first one missing is named
            file = raw / name
            if not file.is_file() or file.stat().st_size != sizes[name]:
                problem = f"{file} is missing or differs from the file {manifest} verified"
    if problem is None:
        return None
    return (f"warning: {problem}, so training jobs would fail: run "
            f"`{mnist_download_command(config, manifest)}` (it downloads only what is missing "
            "and rewrites the manifest; deleting the manifest instead would retrain every run), "
            "or point mnist_root at a folder holding MNIST/raw/train-*.gz.")
