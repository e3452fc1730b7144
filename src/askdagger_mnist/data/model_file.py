"""A run's ``model.pt`` checked without torch: whether it is what ``torch.save`` writes for a
state dict of tensors, readable without running any code (what ``torch.load(weights_only=True)``
allows), every record intact.

For a kept copy made before digests were recorded (data/kept_runs.py), where nothing else vouches
for the file; standard library only, as that restore must not import torch. The file is a zip
(torch's format since 1.6) whose records all match their CRC-32, holding one pickle,
``<name>/data.pkl``, that builds a dict using only the opcodes and globals a state dict of
tensors needs: no other function is called when it is loaded.
"""

from __future__ import annotations

import pickletools
import re
import zipfile
import zlib
from pathlib import Path

from .rundir import MODEL_FILE

# What torch.save of {name: tensor} pickles (protocol 2): containers, numbers, strings, the
# storages (persistent ids) and the calls that rebuild a tensor from one.
_OPCODES = {
    "PROTO", "STOP", "MARK", "EMPTY_DICT", "EMPTY_TUPLE", "EMPTY_LIST", "TUPLE", "TUPLE1",
    "TUPLE2", "TUPLE3", "SETITEM", "SETITEMS", "APPEND", "APPENDS", "BINPUT", "LONG_BINPUT",
    "BINGET", "LONG_BINGET", "BININT", "BININT1", "BININT2", "LONG1", "BINFLOAT", "NONE",
    "NEWTRUE", "NEWFALSE", "BINUNICODE", "SHORT_BINUNICODE", "BINPERSID", "GLOBAL", "REDUCE",
}  # fmt: skip
_GLOBALS = {"torch._utils _rebuild_tensor_v2", "collections OrderedDict"}
_STORAGE = re.compile(r"torch [A-Z][A-Za-z0-9]*Storage")


def model_problem(folder: Path) -> str | None:
    """Why the ``model.pt`` of ``folder`` is not a state dict that loads without running code,
    in words, or None."""
    path = Path(folder) / MODEL_FILE
    if not path.is_file():
        return f"its {MODEL_FILE} is missing"
    try:
        with zipfile.ZipFile(path) as zf:
            damaged = zf.testzip()
            pickles = [name for name in zf.namelist() if name.endswith("/data.pkl")]
            data = zf.read(pickles[0]) if len(pickles) == 1 and damaged is None else b""
    except (zipfile.BadZipFile, EOFError, ValueError, NotImplementedError, zlib.error) as exc:
        return f"its {MODEL_FILE} is not a readable zip ({type(exc).__name__}), as torch.save writes"
    if damaged is not None:
        return f"its {MODEL_FILE} is damaged (its record {damaged[:80]!r} fails its CRC-32)"
    if len(pickles) != 1:
        return f"its {MODEL_FILE} is not what torch.save writes (it holds {len(pickles)} data.pkl)"
    return pickle_problem(data)


def pickle_problem(data: bytes) -> str | None:
    """Why the pickle ``data`` is not a state dict of tensors that loads without running other
    code, in words, or None."""
    try:
        ops = [(op.name, arg) for op, arg, _ in pickletools.genops(data)]
    except ValueError as exc:  # unknown opcode, cut short, garbled text
        return f"its {MODEL_FILE}'s pickle is cut short or garbled ({str(exc)[:120]})"
    if [name for name, _ in ops[:2]] != ["PROTO", "EMPTY_DICT"] and ops[1:2] != [
        ("GLOBAL", "collections OrderedDict")
    ]:
        return f"its {MODEL_FILE} does not hold a state dict (a dict of tensors)"
    for name, arg in ops:
        if name not in _OPCODES:
            return f"its {MODEL_FILE}'s pickle uses {name}, which a state dict of tensors does not"
        if name == "GLOBAL" and arg not in _GLOBALS and not _STORAGE.fullmatch(arg):
            return f"its {MODEL_FILE}'s pickle would call {arg[:80]!r}, which a state dict does not"
    return None
