"""The shape of a config as YAML gave it, checked before anything walks it (standard library
only; ``config.check`` calls ``shape_problem`` first): a config that aliases make stand for
more values than any real one has, or a name (a mapping key) that is not text; and, from the
config files themselves, a key written twice (YAML keeps the last, silently).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml


class ConfigProblem(Exception):
    """A config value a user must fix; its message is one sentence."""


def key_path(path) -> str:
    """A jsonschema error path as the user writes the key: ``variants.sag.p_rand``, ``s_des[1]``."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


# A config is a few hundred values; YAML aliases can make a file of a few hundred bytes stand for
# billions (each alias of a list of aliases ...), which any walk over it would take hours to
# expand. Counted with each shared node once, so the count itself is cheap.
MAX_CONFIG_VALUES = 100_000


def _expanded_size(value: Any, memo: dict, busy: set, limit: int) -> int:
    """How many values ``value`` stands for once every alias is expanded (stops past limit)."""
    if not isinstance(value, (dict, list)):
        return 1
    key = id(value)
    if key in memo:
        return memo[key]
    if key in busy:
        raise ConfigProblem("the config refers to itself through a YAML alias (a value that "
                            "contains itself): write the value out instead.")
    busy.add(key)
    children = value.values() if isinstance(value, dict) else value
    total = 1
    for child in children:
        total += _expanded_size(child, memo, busy, limit)
        if total > limit:
            break
    busy.discard(key)
    memo[key] = total
    return total


def shape_problem(config: Mapping) -> str | None:
    """A config too large once its aliases are expanded, or a name that is not text."""
    if _expanded_size(dict(config), {}, set(), MAX_CONFIG_VALUES) > MAX_CONFIG_VALUES:
        return (f"the config stands for more than {MAX_CONFIG_VALUES:,} values once its YAML "
                "aliases (*name) are expanded: write the values out, without aliases of aliases.")
    return _non_text_key(config, ())


def _non_text_key(value: Any, path: tuple) -> str | None:
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str):
                where = f"config key {key_path(path)}" if path else "the config"
                return (f"{where} has the name {k!r} ({type(k).__name__}), but names are text: "
                        f"quote it ('{k}').")
            found = _non_text_key(v, (*path, k))
            if found:
                return found
    elif isinstance(value, list):
        for i, v in enumerate(value):
            found = _non_text_key(v, (*path, i))
            if found:
                return found
    return None


def duplicate_keys(paths: Iterable[str | Path]) -> str | None:
    """The first key written twice in one of the config files ``paths``, as one sentence."""
    for path in paths:
        try:
            node = yaml.compose(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError, yaml.YAMLError):
            continue  # Snakemake itself reports a file it cannot read
        key = _twice(node, "", set())
        if key:
            return (
                f"config file {path} gives key {key} twice (the last would silently win): "
                "keep one."
            )
    return None


def _twice(node, where: str, visited: set) -> str | None:
    """The path of the first key given twice below ``node``, in the order of the text."""
    if id(node) in visited:  # an alias: walked already
        return None
    visited.add(id(node))
    if isinstance(node, yaml.SequenceNode):
        children = [(f"{where}[{i}]", item) for i, item in enumerate(node.value)]
    elif isinstance(node, yaml.MappingNode):
        children = [(f"{where}.{k.value}" if where else str(k.value), v) for k, v in node.value]
    else:
        return None
    keys = set()
    for path, child in children:
        if isinstance(node, yaml.MappingNode) and path in keys:
            return path
        keys.add(path)
        found = _twice(child, path, visited)
        if found:
            return found
    return None
