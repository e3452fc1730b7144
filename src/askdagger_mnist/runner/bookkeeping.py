"""What a run reports while it runs, kept out of the loop body: wall time, time by phase,
progress lines, mid-run checkpoints and the test-only crash hook (an ``Observer`` of
``algorithm.loop``)."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Callable, Optional

from ..algorithm.loop import Observer, Run
from ..algorithm.metrics import whole_run_metrics
from ..data.checkpoint import load_checkpoint, save_checkpoint
from ..errors import stderr_line
from ..settings import TRACKED


def progress_line(run: Run) -> str:
    settings, state = run.settings, run.state
    n = state.step * settings.batch_size
    m = whole_run_metrics(state.arrays["c"][:n], state.arrays["q"][:n])
    tracked = TRACKED[settings.mode]
    return (
        f"step {state.step}/{settings.steps}  elapsed {state.elapsed_s:.1f}s  "
        f"query rate {m['query_rate']:.3f}  novice acc {m['novice_success']:.3f}  "
        f"{tracked} {m[tracked]:.3f} (target {settings.s_des:g})"
    )


class Bookkeeping(Observer):
    """Wall time (carried across resumes), time by phase, a progress line every
    ``progress_every`` steps, a checkpoint every ``checkpoint_every`` steps (loaded at the
    start when it exists) and, for tests, ``halt_after``: exit with code 3 right after the
    checkpoint of that step, as a crash would."""

    def __init__(self, checkpoint: Optional[Path] = None, checkpoint_every: int = 50,
                 progress_every: int = 50, halt_after: Optional[int] = None,
                 log: Callable[[str], None] = stderr_line):
        self.checkpoint = None if checkpoint is None else Path(checkpoint)
        self.checkpoint_every, self.progress_every = checkpoint_every, progress_every
        self.halt_after, self.log = halt_after, log
        self.phase_s = {"query": 0.0, "sag": 0.0, "update": 0.0}
        self._started = time.perf_counter()

    def started(self, run: Run) -> None:
        if self.checkpoint is not None and self.checkpoint.is_file():
            load_checkpoint(self.checkpoint, run)
            self.log(f"resuming from checkpoint at step {run.state.step} ({self.checkpoint})")
        self._started = time.perf_counter() - run.state.elapsed_s

    @contextlib.contextmanager
    def timer(self, phase: str):
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.phase_s[phase] += time.perf_counter() - t0

    def step_done(self, run: Run) -> None:
        state, steps = run.state, run.settings.steps
        state.elapsed_s = time.perf_counter() - self._started
        if self.progress_every and (state.step % self.progress_every == 0 or state.step == steps):
            self.log(progress_line(run))
        if (self.checkpoint is not None and self.checkpoint_every
                and state.step % self.checkpoint_every == 0 and state.step < steps):
            save_checkpoint(self.checkpoint, run)
            if self.halt_after is not None and state.step >= self.halt_after:
                raise SystemExit(3)

    def finished(self, run: Run) -> None:
        if self.progress_every:
            self.log("time by phase (this process): " + ", ".join(
                f"{name} {secs:.1f}s" for name, secs in self.phase_s.items()))
