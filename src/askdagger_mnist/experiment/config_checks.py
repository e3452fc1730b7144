"""Start-up checks beyond the schema (``config`` calls them; standard library and PyYAML only).

The schema judges each value alone; these catch what passes it but no run could use, and say
so in one sentence naming the key and what to do (or return None):

- ``cross_check``: values that clash with each other or with the disk: a figure naming an
  undefined variant, an s_des its run directory's name would round, two variants with the
  same settings, names sharing a folder or too long for a file name, a stream longer than
  MNIST, a download without archives, an ``mnist_root`` that is a file, lies behind a link to
  nothing or would not mean what it says, a link to nothing where the workflow writes.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Mapping

from askdagger_mnist.experiment.naming import MAX_NAME_LENGTH, NAME_MAX_BYTES, format_s_des
from askdagger_mnist.experiment.run_settings import stream_steps
from askdagger_mnist.settings import MNIST_TRAIN_IMAGES

# The figures that compare variants in sensitivity mode (keys under ``figures``, each a list).
ABLATIONS = ("reg_ablation", "prand_ablation")
# The figures that show one variant (keys under ``figures``, each a single name).
SINGLE_VARIANT_FIGURES = ("main", "sag")


def cross_check(config: Mapping) -> str | None:
    """The first clash in a config that passed the schema and has its defaults, or None."""
    for check in (_names, _same_variants, _figure_variants, _s_des_exact, _stream, _sag_figure_step,
                  _download, _prand_titles, _mnist_root, _compare_with, _output_folders):
        sentence = check(config)
        if sentence:
            return sentence
    return None


def _figure_variants(config: Mapping) -> str | None:
    known, figures = config["variants"], config["figures"]
    used = [(f"figures.{f}.variant", figures[f]["variant"]) for f in SINGLE_VARIANT_FIGURES]
    for group in ABLATIONS:
        used += [(f"figures.{group}.variants", v) for v in figures[group]["variants"]]
    for key, name in used:
        if name not in known:
            return (
                f"config key {key} names variant {name!r}, which is not defined under "
                f"variants (known: {', '.join(known)}): add it there or fix the name."
            )
    return None


def _s_des_exact(config: Mapping) -> str | None:
    """Each s_des must survive its trip into a run directory's name (``:g``, 6 significant
    digits), since the train job reads it back from there: else it would train with another
    value than the one written (0.1234567 -> 0.123457; 0.9999999 -> 1, which fails)."""
    for s in config["s_des"]:
        named = format_s_des(s)
        if float(named) != float(s):
            return (
                f"config key s_des has {s!r}, which run directories would name s{named} and "
                f"train as {named}: write it with at most 6 significant digits."
            )
    return None


def _same_variants(config: Mapping) -> str | None:
    """Two variant names with the same settings would train the same runs twice."""
    variants = config["variants"]
    pair = _first_sharing((name, (float(v["p_rand"]), bool(v["normalization"]),
                                  bool(v["imputation"]))) for name, v in variants.items())
    if pair is None:
        return None
    first, name = pair
    v = variants[name]
    return (
        f"config key variants defines {first!r} and {name!r} with the same settings "
        f"(p_rand {v['p_rand']}, normalization {v['normalization']}, imputation "
        f"{v['imputation']}), which would train identical runs twice: remove one, or "
        "name it where a figure needs it under the other's name."
    )


def _first_sharing(keyed: Iterable[tuple[str, object]]) -> tuple[str, str] | None:
    """The first two names (earlier, later) of (name, key) pairs that share a key, or None."""
    seen: dict[object, str] = {}
    for name, key in keyed:
        if key in seen:
            return seen[key], name
        seen[key] = name
    return None


def _sag_figure_step(config: Mapping) -> str | None:
    """figures/sag.pdf recomputes the SAG call of a run's last step from the labels of the
    steps before it (docs/spec.md §5.6): a one-step stream has none, so it can never be drawn."""
    if config["max_steps"] == 1:
        return (
            "config key max_steps is 1, but figures/sag.pdf recomputes the last step's SAG call "
            "from the labels of earlier steps, which a one-step stream lacks: set max_steps to "
            "2 or more (or null, the whole stream)."
        )
    return None


def _stream(config: Mapping) -> str | None:
    """steps x batch_size images, drawn without replacement: at most MNIST's 60,000."""
    batch, max_steps, steps = config["batch_size"], config["max_steps"], stream_steps(config)
    if steps * batch <= MNIST_TRAIN_IMAGES:
        return None
    whole = " (max_steps null: the whole stream)" if max_steps is None else ""
    fixes = [f"lower batch_size to at most {MNIST_TRAIN_IMAGES // steps}"]
    if batch <= MNIST_TRAIN_IMAGES:  # then a shorter stream fits too
        verb = "set" if max_steps is None else "lower"
        fixes.insert(0, f"{verb} max_steps to at most {MNIST_TRAIN_IMAGES // batch}")
    return (
        f"config keys max_steps and batch_size ask for {steps} step{'s' * (steps > 1)}{whole} "
        f"x {batch} = {steps * batch:,} images, more than the {MNIST_TRAIN_IMAGES:,} MNIST "
        f"training images: {' or '.join(fixes)}."
    )


def _clash(key: str, names: Iterable[str], what: str) -> str | None:
    """Two names of one folder: the same name twice, or two that differ only in case."""
    pair = _first_sharing((name, name.casefold()) for name in names)
    if pair is None:
        return None
    first, name = pair
    if first == name:
        return (
            f"config key {key} names {name!r} twice, and the last would silently replace "
            f"the first: give each {what} its own name."
        )
    return (
        f"config key {key} names {first!r} and {name!r}, which differ only in case and "
        "would share files on case-insensitive filesystems (macOS, Windows): rename one."
    )


def _too_long(key: str, names: Iterable[str]) -> str | None:
    """A name longer than folder and file names named after it may be (naming.py)."""
    for name in names:
        if len(name.encode()) > MAX_NAME_LENGTH:
            shown = name if len(name) <= 40 else name[:37] + "..."
            return (
                f"config key {key} names {shown!r} ({len(name.encode())} characters), longer "
                f"than the {MAX_NAME_LENGTH} characters a name may have (folders and files are "
                f"named after it, and file systems allow {NAME_MAX_BYTES} bytes in a file name): "
                "shorten it."
            )
    return None


def _names(config: Mapping) -> str | None:
    archives = [a["name"] for a in config["results_archives"]]
    variants = list(config["variants"])
    return (_too_long("results_archives", archives) or _too_long("variants", variants)
            or _clash("results_archives", archives, "archive")
            or _clash("variants", variants, "variant"))


def _download(config: Mapping) -> str | None:
    if config["results_source"] == "download" and not config["results_archives"]:
        return (
            "config key results_archives is empty but results_source is download, so no run "
            "could be imported: list at least one archive, or set results_source to train."
        )
    return None


def _compare_with(config: Mapping) -> str | None:
    known = [a["name"] for a in config["results_archives"]]
    for name in config["compare_with"]:
        if name not in known:
            return (
                f"config key compare_with names archive {name!r}, which is not an entry of "
                f"results_archives (known: {', '.join(known) or 'none'}): add it there or fix "
                "the name."
            )
    if config["results_source"] == "download" and set(known) <= set(config["compare_with"]):
        return (
            "config key compare_with names every archive of results_archives, so with "
            "results_source download none is left to import our runs from: keep at least "
            "one archive out of compare_with, or set results_source to train."
        )
    return _clash("compare_with", config["compare_with"], "archive")


def _prand_titles(config: Mapping) -> str | None:
    """The p_rand ablation titles its columns (figure and tables) "p_rand = ...": one each."""
    title = {name: f"{config['variants'][name]['p_rand']:g}"
             for name in config["figures"]["prand_ablation"]["variants"]}
    pair = _first_sharing(title.items())
    if pair is None:
        return None
    first, name = pair
    return (
        f"config key figures.prand_ablation.variants has {first!r} and {name!r} with the "
        f"same p_rand {title[name]}, and that figure tells its variants apart by p_rand: list "
        "variants with different p_rand values."
    )


def _mnist_root(config: Mapping) -> str | None:
    """A folder (or none yet, below a folder), its path meant literally; relative to the
    working directory, which Snakemake has entered when it reads the Snakefile."""
    root = config["mnist_root"]
    head = f"config key mnist_root = {root!r}: "
    if root.startswith("~") or "$" in root:
        return head + (
            "~ and $ are not expanded in config values, so this names a folder of that very "
            "name: write the path out in full."
        )
    if "{" in root or "}" in root:
        return head + "{ and } are Snakemake wildcards in file names: choose a folder without them."
    if any(ord(c) < 32 or ord(c) == 127 for c in root):
        return head + (
            "it holds a line break or another control character, which no folder name should: "
            "write the path on one line, without them."
        )
    for part in Path(root).parts:
        if len(os.fsencode(part)) > NAME_MAX_BYTES:
            return head + (
                f"it has a folder name of {len(os.fsencode(part))} bytes, more than the "
                f"{NAME_MAX_BYTES} a file system allows: choose a folder with shorter names."
            )
    raw = Path(root) / "MNIST" / "raw"
    for path in (raw, *raw.parents):
        target = _dangling_link(path)
        if target is not None:
            return head + (
                f"{path} is a link to {target}, which does not exist: create that folder (or "
                "mount its disk), or point mnist_root elsewhere."
            )
        if path.exists():  # the nearest part that exists must be a folder
            if not path.is_dir():
                return head + (
                    f"{path} is a file, not a folder: point mnist_root at a folder that holds "
                    "(or will hold) MNIST/raw/*.gz."
                )
            break
    return None


def _dangling_link(path: Path) -> str | None:
    """Where ``path`` links to when it is a symbolic link to nothing (a folder not created or a
    disk not mounted), else None: writing through it fails, and Snakemake's message for that
    names neither the link nor its target."""
    if path.is_symlink() and not path.exists():
        return os.readlink(path)
    return None


def _output_folders(config: Mapping) -> str | None:
    """A link to nothing where the workflow writes (grid.OUTPUT_FOLDERS, or a folder above one),
    relative to the working directory."""
    from askdagger_mnist.experiment.grid import OUTPUT_FOLDERS  # (grid imports this module)

    for folder in OUTPUT_FOLDERS:
        for path in reversed((Path(folder), *Path(folder).parents[:-1])):
            target = _dangling_link(path)
            if target is not None:
                return (
                    f"{path} is a link to {target}, which does not exist, and the workflow "
                    "writes there: create that folder (or mount its disk), or remove the link."
                )
    return None
