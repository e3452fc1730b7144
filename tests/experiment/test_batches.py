"""experiment/batches.py: which job trains which run when runs_per_job > 1."""

from __future__ import annotations

import pytest

from askdagger_mnist.experiment.batches import leader, led_by


@pytest.mark.parametrize("repetitions, per_job", [(10, 1), (10, 3), (10, 4), (10, 10), (7, 20),
                                                  (1, 5)])  # fmt: skip
def test_every_repetition_is_trained_by_exactly_one_job(repetitions, per_job):
    trained = [rep for first in range(repetitions) for rep in led_by(first, repetitions, per_job)
               if leader(first, repetitions, per_job) == first]  # fmt: skip
    assert sorted(trained) == list(range(repetitions))  # each once, none beyond
    for rep in range(repetitions):
        first = leader(rep, repetitions, per_job)
        assert first <= rep and rep in led_by(first, repetitions, per_job)
        assert len(led_by(first, repetitions, per_job)) <= per_job


def test_batches_of_consecutive_repetitions_the_last_shorter():
    assert [led_by(r, 10, 4) for r in (0, 4, 8)] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert [leader(r, 10, 4) for r in range(10)] == [0] * 4 + [4] * 4 + [8] * 2
    assert led_by(5, 10, 4) == [5]  # a follower's job: its own run only (it restores it)


def test_a_repetition_beyond_the_configured_ones_runs_alone():
    assert leader(12, 10, 4) == 12 and led_by(12, 10, 4) == [12]
