"""The authors' ``results.npy`` read without running any pickled code.

The authors' code saves each run's results with ``np.save`` of a dict: a pickled 0-d object
array, untrusted input when it comes from a download. ``load_results_npy`` never hands the
pickle to numpy or to a normal unpickler: only the four numpy globals that ``np.save`` of a
dict of arrays/lists/numbers produces are resolved, and each to an inert placeholder that
merely records its arguments. After unpickling, the placeholders are checked (plain numeric
dtypes, byte counts that match the shapes) and turned into arrays with ``np.frombuffer``.
Anything else, ``os.system`` included, is refused before it can run.
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


_MAX_DEPTH = 16
# Plain numeric/bool dtypes and the object dtype that wraps the dict (np.dtype(...).__reduce__
# spells them like this). Strings, structured dtypes and subarrays are not accepted.
_DTYPE_SPEC = re.compile(r"(b1|i[1248]|u[1248]|f[248]|c(8|16|32)|f16|O[48])")
_NUMPY_MODULES = ("numpy", "numpy.core.multiarray", "numpy._core.multiarray")


class _Refused(pickle.UnpicklingError):
    pass


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
        raise _Refused("a numpy scalar with extra state")


def _reconstruct(cls: Any, shape: Any = None, typecode: Any = None) -> _ArrayStub:
    if cls is not _NDARRAY:
        raise _Refused("_reconstruct of something other than numpy.ndarray")
    return _ArrayStub()


def _codecs_encode(text: Any, encoding: Any = "utf-8") -> bytes:
    """Protocol-2 pickles spell bytes as ``_codecs.encode(str, 'latin1')``."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise _Refused("_codecs.encode of something other than latin-1 text")
    return text.encode("latin-1")


_ALLOWED = {
    "_reconstruct": _reconstruct,
    "ndarray": _NDARRAY,
    "dtype": _DtypeStub,
    "scalar": _ScalarStub,
}


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("_codecs", "encode"):
            return _codecs_encode
        if module in _NUMPY_MODULES and name in _ALLOWED:
            if name in ("ndarray", "dtype") and module != "numpy":
                raise _Refused(f"global {module}.{name}")
            if name in ("_reconstruct", "scalar") and module == "numpy":
                raise _Refused(f"global {module}.{name}")
            return _ALLOWED[name]
        raise _Refused(f"global {module}.{name}")

    def persistent_load(self, pid: Any) -> Any:
        raise _Refused("persistent ids")


def _real_dtype(stub: Any) -> np.dtype:
    if not isinstance(stub, _DtypeStub) or not isinstance(stub.spec, str):
        raise _Refused("an array whose dtype is not a numpy dtype")
    if not _DTYPE_SPEC.fullmatch(stub.spec):
        raise _Refused(f"dtype {stub.spec!r}")
    st = stub.state
    if not (isinstance(st, tuple) and len(st) in (8, 9) and st[0] in (3, 4)):
        raise _Refused(f"dtype {stub.spec!r} with an unexpected state")
    byteorder, subarray, names, fields = st[1], st[2], st[3], st[4]
    if byteorder not in ("<", ">", "|", "=") or subarray is not None or names is not None:
        raise _Refused(f"dtype {stub.spec!r} with fields or subarrays")
    if fields is not None or (len(st) == 9 and st[8] is not None):
        raise _Refused(f"dtype {stub.spec!r} with fields or metadata")
    dt = np.dtype(stub.spec)
    if byteorder in "<>" and dt.kind not in "bO" and dt.itemsize > 1:
        dt = dt.newbyteorder(byteorder)
    return dt


def _finalize(obj: Any, depth: int = 0) -> Any:
    """Turn the placeholders into numpy objects, checking every piece; rejects anything else."""
    if depth > _MAX_DEPTH:
        raise _Refused("nesting deeper than a dict of arrays")
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, _ScalarStub):
        dt = _real_dtype(obj.dtype)
        if dt.kind == "O" or not isinstance(obj.data, bytes) or len(obj.data) != dt.itemsize:
            raise _Refused("a numpy scalar that is not a plain number")
        return np.frombuffer(obj.data, dtype=dt)[0]
    if isinstance(obj, _ArrayStub):
        return _finalize_array(obj, depth)
    if isinstance(obj, list):
        return [_finalize(x, depth + 1) for x in obj]
    if isinstance(obj, tuple):
        return tuple(_finalize(x, depth + 1) for x in obj)
    if isinstance(obj, dict):
        out = {}
        for key, value in obj.items():
            if not isinstance(key, (str, int)):
                raise _Refused(f"a dict key of type {type(key).__name__}")
            out[key] = _finalize(value, depth + 1)
        return out
    raise _Refused(f"an object of type {type(obj).__name__}")


def _finalize_array(stub: _ArrayStub, depth: int) -> np.ndarray:
    st = stub.state
    if isinstance(st, tuple) and len(st) == 5 and st[0] == 1:
        st = st[1:]
    if not (isinstance(st, tuple) and len(st) == 4):
        raise _Refused("an array with an unexpected state")
    shape, dtype_stub, fortran, raw = st
    if not (isinstance(shape, tuple) and all(type(n) is int and n >= 0 for n in shape)):
        raise _Refused("an array with an invalid shape")
    if len(shape) > 32 or not isinstance(fortran, bool):
        raise _Refused("an array with an invalid shape")
    dt = _real_dtype(dtype_stub)
    count = math.prod(shape)
    order = "F" if fortran else "C"
    if dt.kind == "O":
        if not isinstance(raw, list) or len(raw) != count:
            raise _Refused("an object array whose items do not match its shape")
        arr = np.empty(count, dtype=object)
        for i, item in enumerate(raw):
            arr[i] = _finalize(item, depth + 1)
        return arr.reshape(shape, order=order)
    if not isinstance(raw, bytes) or len(raw) != count * dt.itemsize:
        raise _Refused("an array whose data does not match its shape and dtype")
    return np.frombuffer(raw, dtype=dt).reshape(shape, order=order).copy()


def load_results_npy(path: Path) -> dict[str, Any]:
    """Read an authors' ``results.npy`` (np.save of a dict) without running any pickled code."""
    path = Path(path)
    bad = f"{path} is not a results.npy as the authors' code writes it"
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
        raw = _RestrictedUnpickler(io.BytesIO(payload)).load()
        value = _finalize(raw)
    except _Refused as exc:
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
