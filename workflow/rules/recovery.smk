# Finished runs survive a killed Snakemake (docs/workflow.md, "Interruptions and resume").
#
# Snakemake marks a job's output incomplete when the job starts and clears the mark when it
# records the job as finished. A head killed with SIGKILL records nothing more, so a run that
# finished a moment before the kill, or afterwards in a job that outlived the head, keeps its
# mark, and --rerun-incomplete would delete it and train it again. A run directory, however,
# appears in one rename, complete, and its run.json records the settings it was made with.
# So, once at the head's start (here, before Snakemake builds the DAG): every marked run
# directory that is complete and whose run.json settings are exactly those this config's train
# job would pass is recorded as Snakemake records a finished job (the rule, its params, shell
# code and inputs, so that a changed setting still re-runs it) and its mark cleared. Anything
# else is left to Snakemake: a run of other settings, a missing or half-made one is trained.
# The same holds for a finished run recorded with another wording of the train command (an
# older version of this workflow): its settings decide, not the command's text.


import dataclasses
import fcntl
import json
import re
import shlex
import sys
from types import SimpleNamespace

from askdagger_mnist.settings import RunSettings

RENAMED_FLAGS = {"max_steps": "steps"}  # train CLI flag -> RunSettings field
WILDCARDS = ("mode", "variant", "s_des", "rep")  # of the train rule's output


def settings_passed(mode, variant, s_des, rep):
    """run.json's "settings" of the run the train job of these wildcards makes: the flags
    the rule passes (train_settings) read back as RunSettings; None if one is not understood.
    """
    fields = {f.name for f in dataclasses.fields(RunSettings)}
    values = {"mode": mode, "s_des": float(s_des), "rep": int(rep)}
    wildcards = SimpleNamespace(mode=mode, variant=variant, s_des=s_des, rep=rep)
    words = shlex.split(train_settings(wildcards))  # the rule's own flags
    while words:
        flag = words.pop(0).removeprefix("--").replace("-", "_")
        name = RENAMED_FLAGS.get(flag, flag)
        if flag.startswith("no_") and flag[3:] in fields:
            values[flag[3:]] = False
        elif name in fields and words:
            values[name] = type(getattr(RunSettings(), name))(words.pop(0))
        else:
            return None
    try:
        return {**RunSettings(**values).to_dict(), "variant": variant}
    except (TypeError, ValueError):
        return None


def finished_runs():
    """{output path: wildcards} of the complete run directories of this config's grid."""
    s_des = {fmt_s(s) for s in config["s_des"]}
    runs = {}
    for path in sorted(Path(RUNS).glob("*/*/s*/rep*")):
        mode, variant, s, rep = path.parts[-4:]
        if (
            mode in MODES
            and variant in config["variants"]
            and s[1:] in s_des
            and re.fullmatch(r"rep\d+", rep)
            and (path / "run.json").is_file()
            and (path / "arrays.npz").is_file()
        ):
            runs[path.as_posix()] = (mode, variant, s[1:], rep[3:])
    return runs


def made_as_configured(path, wildcards):
    try:
        info = json.loads((Path(path) / "run.json").read_text())
        recorded = info["settings"]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return recorded == settings_passed(*wildcards) and rate_as_today(path, info)


def rate_as_today(path, info):
    """Whether the run's learning rate followed today's schedule (docs/spec.md §3.5): always
    for a run whose run.json records it; a run made before the schedule was emulated (rate
    0.1 throughout) only if its epoch count stayed below the first milestone, where the two
    agree. Counted with numpy; without numpy here, such a run is trained again."""
    if "lr_schedule" in info:
        return True
    try:
        import numpy as np

        from askdagger_mnist.algorithm.schedule import LR_MILESTONES, epochs_before_step

        s = info["settings"]
        with np.load(Path(path) / "arrays.npz") as arrays:
            q = arrays["q"]
        epochs = epochs_before_step(q, s["steps"], s["batch_size"], s["update_every"])
    except Exception:
        return False
    return epochs < LR_MILESTONES[0]


def snakemakes_persistence():
    """The store of Snakemake's records and incomplete marks, opened as Snakemake opens it."""
    from snakemake.settings.enums import PersistenceBackend

    settings = workflow.workflow_settings
    if settings.persistence_backend == PersistenceBackend.FILE:
        from snakemake.persistence.file import FilePersistence

        return FilePersistence(nolock=True)
    from snakemake.persistence.db import DbPersistence

    return DbPersistence(nolock=True, db_url=settings.persistence_backend_db_url)


def record_as_finished(persistence, key, wildcards):
    """Record the train job of ``key`` as Snakemake records a finished job (its params, shell
    code and inputs expanded from the rule as a job expands them; what only a running job
    knows, such as its software environment, stays unknown), then clear its mark."""
    from snakemake.persistence import (
        RECORD_FORMAT_VERSION,
        UNREPRESENTABLE,
        MetadataRecord,
    )

    train = workflow.get_rule("train")
    wildcards = dict(zip(WILDCARDS, wildcards))
    inputs = train.expand_input(wildcards)[0]
    outputs = train.expand_output(wildcards)[0]
    if list(outputs) != [key]:
        raise ValueError(f"the train rule makes {list(outputs)}, not {key}")
    params = train.expand_params(wildcards, inputs, outputs, None)[1]  # the non-derived
    params = (persistence._serialize_param(value) for value in params)
    end = (Path(key) / "run.json").stat().st_mtime
    info = json.loads((Path(key) / "run.json").read_text())
    record = {
        "rule": "train",
        "record_format_version": RECORD_FORMAT_VERSION,
        "params": sorted(p for p in params if p is not UNREPRESENTABLE),
        "code": persistence._code(train),
        "input": sorted(str(f) for f in inputs),
        "log": sorted(str(f) for f in train.expand_log(wildcards)[0]),
        "starttime": end - float(info.get("wall_time_s") or 0),
        "endtime": end,
        "incomplete": False,
    }
    persistence._write_record(key, MetadataRecord(**record))
    persistence._unmark_incomplete(key)


def remove_left_checkpoint(key):
    """The checkpoint of a run killed between publishing and removing it, unless a live
    process still holds its lock."""
    left, lock = Path(f"{key}.checkpoint.pt"), Path(f"{key}.checkpoint.pt.lock")
    if not (left.exists() or lock.exists()):
        return
    with open(lock, "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return
        left.unlink(missing_ok=True)
        lock.unlink(missing_ok=True)


def keep_finished_runs():
    from snakemake_interface_executor_plugins.settings import ExecMode, SharedFSUsage

    if workflow.exec_mode != ExecMode.DEFAULT or not Path(".snakemake").is_dir():
        return  # a job's own Snakemake, or nothing ever ran here
    if SharedFSUsage.PERSISTENCE not in workflow.storage_settings.shared_fs_usage:
        return  # Snakemake keeps its records elsewhere then
    runs = finished_runs()
    if not runs:
        return
    persistence = snakemakes_persistence()
    incomplete = persistence._filter_incomplete_keys(runs)
    kept = [key for key in sorted(incomplete) if made_as_configured(key, runs[key])]
    for key in kept:
        record_as_finished(persistence, key, runs[key])
        remove_left_checkpoint(key)
    if kept:
        more = f" and {len(kept) - 3} more" if len(kept) > 3 else ""
        print(
            f"Kept {len(kept)} finished run(s) whose job a stopped Snakemake had not recorded "
            f"(complete, made with these settings): {', '.join(kept[:3])}{more}.",
            file=sys.stderr,
        )
    # A new version of the workflow may word the train command differently (a new execution
    # flag): Snakemake's code trigger would then retrain every finished run. What a run's
    # result depends on is its settings, which its params and run.json record: a complete
    # run made with this config's settings is recorded with the current command instead.
    current = persistence._code(workflow.get_rule("train"))
    recoded = [
        key
        for key in sorted(set(runs) - incomplete)
        if getattr(persistence._read_record(key), "code", None) not in (None, current)
        and made_as_configured(key, runs[key])
    ]
    for key in recoded:
        record_as_finished(persistence, key, runs[key])
    if recoded:
        print(
            f"{len(recoded)} finished run(s) were made with another wording of the train "
            "command (an older version of this workflow) and with these settings: recorded "
            "as finished, not trained again.",
            file=sys.stderr,
        )


if config["results_source"] == "train":
    # Never a reason to stop the workflow: Snakemake's own handling of the marks remains.
    try:
        keep_finished_runs()
    except Exception as exc:
        why = (
            "this Snakemake lacks the records it needs"
            if isinstance(exc, ImportError) and (exc.name or "").startswith("snakemake")
            else f"{type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0]}"
        )
        note_once(
            f"Note: finished runs a stopped Snakemake had not recorded were not checked "
            f"({why}); --rerun-incomplete trains such runs again."
        )
