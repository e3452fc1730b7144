"""The learning-rate schedule (docs/spec.md §3.5): the authors' MultiStepLR, stepped once per
completed training epoch. Pure functions of the standard library."""

from __future__ import annotations

# §3.5: the base rate, multiplied by LR_FACTOR each time the count of completed training
# epochs reaches a milestone.
LEARNING_RATE = 0.1
LR_MILESTONES, LR_FACTOR = (25, 50), 0.1


def learning_rate(epochs_completed: int) -> float:
    """docs/spec.md §3.5: the rate after ``epochs_completed`` completed epochs, multiplied by
    LR_FACTOR once per milestone reached, as MultiStepLR does (0.1, then 0.01, then 0.001)."""
    lr = LEARNING_RATE
    for milestone in LR_MILESTONES:
        if epochs_completed >= milestone:
            lr *= LR_FACTOR
    return lr


def epoch_ends(n_train: int, n_steps: int, batch_size: int) -> list[int]:
    """§3.5: the SGD steps (1-based) of one update after which a training epoch is complete:
    every ``nb``-th, ``nb`` being the mini-batches of one pass over ``n_train`` samples. With
    ``nb > n_steps`` no pass ends within the update, and a pass cut short does not count."""
    nb = -(-n_train // batch_size)  # ceil
    return [] if nb == 0 else list(range(nb, n_steps + 1, nb))


def milestones_reached(epochs_before: int, epochs_after: int) -> list[int]:
    """The milestones an update reached that took the completed-epoch count from
    ``epochs_before`` to ``epochs_after``: each dropped the rate (the run records its step)."""
    return [m for m in LR_MILESTONES if epochs_before < m <= epochs_after]


def lr_schedule_record(epochs_completed: int, lr_changed_at_steps: list) -> dict:
    """§3.5: the schedule as run.json records it."""
    return {"milestones_epochs": list(LR_MILESTONES), "factor": LR_FACTOR,
            "epochs_completed": epochs_completed, "lr_changed_at_steps": list(lr_changed_at_steps),
            "final_lr": learning_rate(epochs_completed)}
