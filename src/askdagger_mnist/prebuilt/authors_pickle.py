"""The authors' ``results.npy`` read without running any pickled code.

The authors' code saves each run's results with ``np.save`` of a dict: a pickled 0-d object
array, untrusted input when it comes from a download. ``load_results_npy`` never hands the
pickle to numpy or to a normal unpickler: only the four numpy globals that ``np.save`` of a
dict of arrays/lists/numbers produces are resolved, and each to an inert placeholder that
merely records its arguments. After unpickling, the placeholders are checked (plain numeric
dtypes, byte counts that match the shapes) and turned into arrays with ``np.frombuffer``.
Anything else, ``os.system`` included, is refused before it can run. The work is bounded by
the file's size (``prebuilt.pickle_bounds``), so that a few hundred bytes of shared references
cannot ask for billions of elements.
"""

from __future__ import annotations

import io
import math
import pickle
import re
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UserError
from .pickle_bounds import MAX_RESULTS_BYTES, Budget, Refused, check_opcodes


_MAX_DEPTH = 16
# Plain numeric/bool dtypes and the object dtype that wraps the dict (np.dtype(...).__reduce__
# spells them like this). Strings, structured dtypes and subarrays are not accepted.
_DTYPE_SPEC = re.compile(r"(b1|i[1248]|u[1248]|f[248]|c(8|16|32)|f16|O[48])")
_NUMPY_MODULES = ("numpy", "numpy.core.multiarray", "numpy._core.multiarray")


class _NdarrayClass:
    """Stands for ``numpy.ndarray`` (only ever passed to ``_reconstruct``)."""


_NDARRAY = _NdarrayClass()


class _DtypeStub:
    """Stands for ``numpy.dtype(spec, align, copy)``; its pickled state is kept for checking."""

    def __init__(self, spec: Any = None, align: Any = False, copy: Any = True) -> None:
        self.spec, self.state = spec, None

    def __setstate__(self, state: Any) -> None:
        self.state = state


class _ArrayStub:
    """Stands for ``numpy._core.multiarray._reconstruct(ndarray, (0,), b'b')``."""

    def __init__(self) -> None:
        self.state = None

    def __setstate__(self, state: Any) -> None:
        self.state = state


class _ScalarStub:
    """Stands for ``numpy._core.multiarray.scalar(dtype, raw_bytes)``."""

    def __init__(self, dtype: Any = None, data: Any = None) -> None:
        self.dtype, self.data = dtype, data

    def __setstate__(self, state: Any) -> None:
        raise Refused("a numpy scalar with extra state")


def _reconstruct(cls: Any, shape: Any = None, typecode: Any = None) -> _ArrayStub:
    if cls is not _NDARRAY:
        raise Refused("_reconstruct of something other than numpy.ndarray")
    return _ArrayStub()


_ALLOWED = {
    "_reconstruct": _reconstruct,
    "ndarray": _NDARRAY,
    "dtype": _DtypeStub,
    "scalar": _ScalarStub,
}


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file: io.BytesIO, budget: Budget) -> None:
        super().__init__(file)
        self.budget = budget

    def _codecs_encode(self, text: Any, encoding: Any = "utf-8") -> bytes:
        """Protocol-2 pickles spell bytes as ``_codecs.encode(str, 'latin1')``: each call copies."""
        if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
            raise Refused("_codecs.encode of something other than latin-1 text")
        self.budget.charge(nbytes=len(text))
        return text.encode("latin-1")

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("_codecs", "encode"):
            return self._codecs_encode
        if module in _NUMPY_MODULES and name in _ALLOWED:
            if name in ("ndarray", "dtype") and module != "numpy":
                raise Refused(f"global {module}.{name}")
            if name in ("_reconstruct", "scalar") and module == "numpy":
                raise Refused(f"global {module}.{name}")
            return _ALLOWED[name]
        raise Refused(f"global {module}.{name}")

    def persistent_load(self, pid: Any) -> Any:
        raise Refused("persistent ids")


def _real_dtype(stub: Any) -> np.dtype:
    if not isinstance(stub, _DtypeStub) or not isinstance(stub.spec, str):
        raise Refused("an array whose dtype is not a numpy dtype")
    if not _DTYPE_SPEC.fullmatch(stub.spec):
        raise Refused(f"dtype {stub.spec!r}")
    st = stub.state
    if not (isinstance(st, tuple) and len(st) in (8, 9) and st[0] in (3, 4)):
        raise Refused(f"dtype {stub.spec!r} with an unexpected state")
    byteorder, subarray, names, fields = st[1], st[2], st[3], st[4]
    if byteorder not in ("<", ">", "|", "=") or subarray is not None or names is not None:
        raise Refused(f"dtype {stub.spec!r} with fields or subarrays")
    if fields is not None or (len(st) == 9 and st[8] is not None):
        raise Refused(f"dtype {stub.spec!r} with fields or metadata")
    dt = np.dtype(stub.spec)
    if byteorder in "<>" and dt.kind not in "bO" and dt.itemsize > 1:
        dt = dt.newbyteorder(byteorder)
    return dt


class _Materialiser:
    """Turns the placeholders into numpy objects, checking every piece and rejecting anything
    else. A list, dict, tuple or array met twice is refused (shared references expand a small
    file into a huge tree; the authors' files never share one), and what is materialised is
    charged to the budget."""

    def __init__(self, budget: Budget) -> None:
        self.budget = budget
        self.seen: set[int] = set()
        self.dtypes: dict[int, np.dtype] = {}

    def _once(self, obj: Any) -> None:
        if id(obj) in self.seen:
            what = "an array" if isinstance(obj, _ArrayStub) else f"a {type(obj).__name__}"
            raise Refused(f"{what} shared by two places (the authors' files never share one)")
        self.seen.add(id(obj))

    def dtype(self, stub: Any) -> np.dtype:
        if id(stub) not in self.dtypes:  # the authors' files share a few dtypes ~35,000 times
            self.dtypes[id(stub)] = _real_dtype(stub)
        return self.dtypes[id(stub)]

    def value(self, obj: Any, depth: int = 0) -> Any:
        if depth > _MAX_DEPTH:
            raise Refused("nesting deeper than a dict of arrays")
        self.budget.charge(elements=1)
        if obj is None or isinstance(obj, (bool, int, float, str)):
            return obj
        if isinstance(obj, _ScalarStub):  # a leaf: may be shared, each use is charged
            dt = self.dtype(obj.dtype)
            if dt.kind == "O" or not isinstance(obj.data, bytes) or len(obj.data) != dt.itemsize:
                raise Refused("a numpy scalar that is not a plain number")
            self.budget.charge(nbytes=dt.itemsize)
            return np.frombuffer(obj.data, dtype=dt)[0]
        if isinstance(obj, (list, dict, _ArrayStub)) or (isinstance(obj, tuple) and obj):
            self._once(obj)
        if isinstance(obj, _ArrayStub):
            return self.array(obj, depth)
        if isinstance(obj, list):
            return [self.value(x, depth + 1) for x in obj]
        if isinstance(obj, tuple):
            return tuple(self.value(x, depth + 1) for x in obj)
        if isinstance(obj, dict):
            out = {}
            for key, value in obj.items():
                if not isinstance(key, (str, int)):
                    raise Refused(f"a dict key of type {type(key).__name__}")
                out[key] = self.value(value, depth + 1)
            return out
        raise Refused(f"an object of type {type(obj).__name__}")

    def array(self, stub: _ArrayStub, depth: int) -> np.ndarray:
        st = stub.state
        if isinstance(st, tuple) and len(st) == 5 and st[0] == 1:
            st = st[1:]
        if not (isinstance(st, tuple) and len(st) == 4):
            raise Refused("an array with an unexpected state")
        shape, dtype_stub, fortran, raw = st
        if not (isinstance(shape, tuple) and all(type(n) is int and n >= 0 for n in shape)):
            raise Refused("an array with an invalid shape")
        if len(shape) > 32 or not isinstance(fortran, bool):
            raise Refused("an array with an invalid shape")
        dt = self.dtype(dtype_stub)
        count = math.prod(shape)
        order = "F" if fortran else "C"
        if dt.kind == "O":
            if not isinstance(raw, list) or len(raw) != count:
                raise Refused("an object array whose items do not match its shape")
            self._once(raw)
            arr = np.empty(count, dtype=object)
            for i, item in enumerate(raw):
                arr[i] = self.value(item, depth + 1)
            return arr.reshape(shape, order=order)
        if not isinstance(raw, bytes) or len(raw) != count * dt.itemsize:
            raise Refused("an array whose data does not match its shape and dtype")
        self.budget.charge(nbytes=len(raw))  # the copy below; the data itself may be shared
        return np.frombuffer(raw, dtype=dt).reshape(shape, order=order).copy()


def load_results_npy(path: Path, where: str | None = None) -> dict[str, Any]:
    """Read an authors' ``results.npy`` (np.save of a dict) without running any pickled code.

    The work is bounded by the file's size (see ``pickle_bounds``); ``where`` names the file
    in messages (e.g. its path inside the archive) instead of ``path``.
    """
    path = Path(path)
    bad = f"{where or path} is not a results.npy as the authors' code writes it"
    size = path.stat().st_size
    if size > MAX_RESULTS_BYTES:
        raise UserError(
            f"{where or path} is {size} bytes, more than the {MAX_RESULTS_BYTES} any authors' "
            "results.npy takes (theirs hold 3.5-4 MB): the archive is corrupt or hostile; do not use it."
        )
    try:
        with open(path, "rb") as fh:
            version = np.lib.format.read_magic(fh)
            if version == (1, 0):
                shape, _fortran, dtype = np.lib.format.read_array_header_1_0(fh)
            elif version == (2, 0):
                shape, _fortran, dtype = np.lib.format.read_array_header_2_0(fh)
            else:
                raise ValueError(f".npy format version {version}")
            if shape != () or dtype != np.dtype(object):
                raise ValueError(f"it holds a {dtype} array of shape {shape}, not a pickled dict")
            payload = fh.read()
        check_opcodes(payload)
        budget = Budget(len(payload))
        raw = _RestrictedUnpickler(io.BytesIO(payload), budget).load()
        value = _Materialiser(budget).value(raw)
    except Refused as exc:
        raise UserError(
            f"{bad}: its pickle asks for {exc}, which is refused; the archive is corrupt or "
            "hostile: do not use it."
        ) from None
    except (pickle.UnpicklingError, ValueError, TypeError, AttributeError, EOFError, IndexError,
            KeyError, OverflowError, RecursionError, MemoryError, UnicodeDecodeError) as exc:
        raise UserError(f"{bad} ({type(exc).__name__}: {exc}); the archive is corrupt.") from None
    if isinstance(value, np.ndarray) and value.dtype == object and value.shape == ():
        value = value.item()
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise UserError(f"{bad}: it does not hold a dict with string keys; the archive is corrupt.")
    return value
