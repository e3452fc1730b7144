"""How Snakemake was started, read from its command line (``sys.argv``) at start-up (standard
library only; ``config.check_or_exit`` calls these):

- Snakemake keeps only the last ``--configfile`` flag's files and the last ``--config`` flag's
  values: ``--configfile a.yaml --configfile b.yaml`` applies b.yaml alone, without a word.
  Several files after one flag (``--configfile a.yaml b.yaml``) all apply, in order.
- ``--config key=`` (an empty value) reaches the config as null; the check's sentence should
  show the empty text that was typed.
- ``--unlock`` while a head or job of a Snakemake run is alive in this directory on this host,
  whose lock is then not stale (docs/workflow.md): a warning.
"""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path
from typing import Sequence

CONFIGFILE_FLAGS = ("--configfile", "--configfiles")
CONFIG_FLAGS = ("--config", "-C")


def flag_groups(argv: Sequence[str], flags: Sequence[str]) -> list[list[str]]:
    """The words after each occurrence of one of ``flags`` in ``argv`` (the program first), in
    order: ``--flag a b`` takes the words up to the next one that starts with ``-``, and
    ``--flag=a`` takes ``a`` alone."""
    groups: list[list[str]] = []
    current: list[str] | None = None
    for word in argv[1:]:
        if word.startswith("-"):
            name, eq, value = word.partition("=")
            current = None
            if name in flags:
                groups.append([value] if eq else [])
                current = None if eq else groups[-1]
        elif current is not None:
            current.append(word)
    return groups


def ignored_words(argv: Sequence[str], flags: Sequence[str]) -> list[str]:
    """The words of every occurrence of ``flags`` but the last that the last does not repeat:
    what Snakemake ignores, each once, in order."""
    groups = flag_groups(argv, flags)
    last = groups[-1] if groups else []
    return list(dict.fromkeys(w for group in groups[:-1] for w in group if w not in last))


def repeated_flag_problem(argv: Sequence[str]) -> str | None:
    """One sentence when a repeated ``--configfile`` or ``--config`` flag would make Snakemake
    ignore some of the files or values given, saying how to give them all; else None."""
    for flags, what, example in ((CONFIGFILE_FLAGS, "files", "name every file after one "
                                  "--configfile, in the order they apply"),
                                 (CONFIG_FLAGS, "values", "give every key=value after one --config")):
        ignored = ignored_words(argv, flags)
        if ignored:
            every = list(dict.fromkeys(w for group in flag_groups(argv, flags) for w in group))
            return (
                f"{flags[0]} was given more than once, and Snakemake reads only the {what} of "
                f"the last one, so it would ignore {', '.join(ignored)}: {example} "
                f"({shlex.join([flags[0], *every])})."
            )
    return None


def empty_config_keys(argv: Sequence[str]) -> list[str]:
    """The keys that the (last) ``--config`` flag gives an empty value (``key=``)."""
    groups = flag_groups(argv, CONFIG_FLAGS)
    words = groups[-1] if groups else []
    return [key for key, eq, value in (w.partition("=") for w in words) if eq and value == ""]


# ---- --unlock while a run is alive here ------------------------------------------------------


def unlock_warning(argv: list[str] | None = None, directory=None) -> str | None:
    """When ``argv`` asks for ``--unlock`` and a process of a Snakemake run works in
    ``directory`` on this host, the sentence that says its lock is not stale."""
    if "--unlock" not in (sys.argv if argv is None else argv):
        return None
    running = running_here(os.getcwd() if directory is None else directory)
    if not running:
        return None
    pid, command = running[0]
    command = command if len(command) <= 100 else command[:97] + "..."
    more = f", and {len(running) - 1} more" if len(running) > 1 else ""
    ended = "those processes have" if more else "that process has"
    return (
        f"a Snakemake run is still active in this directory (process {pid}: {command}{more}), "
        f"so its lock was not stale: start no other Snakemake here until {ended} ended, or it "
        "may delete the results of the jobs still running."
    )


def running_here(directory: str | Path) -> list[tuple[int, str]]:
    """(pid, command line) of each Snakemake head or job of this workflow working in
    ``directory`` on this host, from Linux's /proc (elsewhere: none), this process and its
    parents left out. Another user's processes cannot be seen."""
    here, mine = os.path.realpath(directory), _self_and_parents()
    found = []
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else ():
        if not entry.isdigit() or int(entry) in mine:
            continue
        try:
            cwd = os.readlink(f"/proc/{entry}/cwd")
            argv = [a for a in Path(f"/proc/{entry}/cmdline").read_bytes().decode(
                errors="replace").split("\0") if a]
        except OSError:
            continue
        if cwd == here and _of_a_run(argv):
            found.append((int(entry), " ".join(argv)))
    return sorted(found)


def _of_a_run(argv: list[str]) -> bool:
    """A Snakemake head (``snakemake ...``, ``python -m snakemake ...``) or a job's command."""
    module = argv[argv.index("-m") + 1] if "-m" in argv[:-1] else ""
    return ("snakemake" in (os.path.basename(a) for a in argv[:2]) or module == "snakemake"
            or module.startswith("askdagger_mnist."))


def _self_and_parents() -> set[int]:
    pids, pid = set(), os.getpid()
    while pid > 1 and pid not in pids:
        pids.add(pid)
        try:  # /proc/<pid>/stat: "pid (name) state ppid ..."
            pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            break
    return pids
