"""Runs trained together by one job (config key ``runs_per_job``; docs/workflow.md).

With ``runs_per_job`` N > 1 the repetitions 0..R-1 of each configuration (R: ``repetitions``)
form batches of N consecutive ones (0..N-1, N..2N-1, ...; the last may be shorter). The train
job of a batch's first repetition, its *leader*, trains every run of the batch, one after
another in one process (the train script's ``--and-next``), so that start-up is paid once per
batch: its own run into its run directory, the others into their kept copies only (their run
directories are their own jobs' outputs). The job of each other repetition of the batch has the
leader's run directory as an input, so it starts once the leader's job has finished, and the
train script restores its run from the kept copy in well under a second, without torch. So the DAG
keeps one job per run: every run has its own job, log, benchmark and provenance, and asking for
one run directory builds its batch. A repetition at or beyond R (asked for by name) runs alone.

Standard library only (the Snakefile imports it).
"""

from __future__ import annotations


def leader(rep: int, repetitions: int, runs_per_job: int) -> int:
    """The repetition whose job trains repetition ``rep``: the first of its batch (``rep``
    itself when it leads a batch or runs alone)."""
    if runs_per_job <= 1 or rep >= repetitions:
        return rep
    return rep - rep % runs_per_job


def led_by(rep: int, repetitions: int, runs_per_job: int) -> list[int]:
    """The repetitions that the job of ``rep`` trains: its whole batch when it leads one, else
    ``rep`` alone (a follower's job only restores its run, made by its leader's job)."""
    if rep >= repetitions or leader(rep, repetitions, runs_per_job) != rep:
        return [rep]
    return list(range(rep, min(rep + runs_per_job, repetitions)))
