"""Which engine a job runs: the config's or the command line's choice (settings.ENGINE_CHOICES)
resolved to an engine definition."""

from __future__ import annotations

from ..algorithm.engine import PLAIN, Engine
from ..fast.engine import FAST

ENGINE_BY_NAME = {engine.name: engine for engine in (PLAIN, FAST)}


def engine_named(name: str) -> Engine:
    return ENGINE_BY_NAME[name]


def engine_for(choice: str, device) -> Engine:
    """The engine of config/CLI value ``choice`` on ``device`` (a torch.device): ``auto`` is
    the fast engine on every device, measured faster on the CPU and on CUDA (settings.py)."""
    del device  # the same choice everywhere, since both were measured (docs/benchmarks.md)
    return engine_named("fast" if choice == "auto" else choice)
