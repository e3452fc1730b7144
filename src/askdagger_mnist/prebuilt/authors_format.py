"""The authors' published results: a restricted reader and the conversion into our run format.

The authors' code writes each run as

    results_{mode}/r{p_rand}_s{s_des}_u{normalization}_i{impute}_b{batch}_e{update_every}/{rep}/
        results.npy       np.save of a dict -> a pickled 0-d object array (untrusted input)
        r..._e5.pt        LeNet state dict, keys core_model.{conv1,conv2,fc1,fc2,fc3}.{weight,bias}

``load_results_npy`` never hands the pickle to numpy or to a normal unpickler: only the four
numpy globals that ``np.save`` of a dict of arrays/lists/numbers produces are resolved, and each
to an inert placeholder that merely records its arguments. After unpickling, the placeholders
are checked (plain numeric dtypes, byte counts that match the shapes) and turned into arrays
with ``np.frombuffer``. Anything else, ``os.system`` included, is refused before it can run.
"""

from __future__ import annotations

import io
import logging
import math
import pickle
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Mapping

import numpy as np

from . import runio
from .errors import UserError
from .metrics import whole_run_metrics
from .settings import MODES, RunSettings, run_subdir

log = logging.getLogger(__name__)

# --- restricted reader of results.npy ------------------------------------------------------

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


# --- run directory names and layout ----------------------------------------------------------

_RUN_DIR = re.compile(
    r"r(?P<p_rand>[0-9.eE+-]+)_s(?P<s_des>[0-9.eE+-]+)_u(?P<normalization>True|False)"
    r"_i(?P<imputation>True|False)_b(?P<batch_size>\d+)_e(?P<update_every>\d+)"
)
_MODE_DIR = re.compile(r"(?:results_)?(?P<mode>" + "|".join(MODES) + r")")


def parse_run_dirname(name: str) -> dict[str, Any] | None:
    """Settings encoded in an authors' run directory name, or None if it is not one."""
    m = _RUN_DIR.fullmatch(name)
    if not m:
        return None
    try:
        return {
            "p_rand": float(m["p_rand"]),
            "s_des": float(m["s_des"]),
            "normalization": m["normalization"] == "True",
            "imputation": m["imputation"] == "True",
            "batch_size": int(m["batch_size"]),
            "update_every": int(m["update_every"]),
        }
    except ValueError:
        return None


@dataclass(frozen=True)
class AuthorsRun:
    mode: str
    rep: int
    settings: dict  # parsed from the directory name
    results: Path  # .../{rep}/results.npy
    rel: str  # path inside the archive, for provenance


def find_runs(root: Path, default_mode: str = "sensitivity") -> list[AuthorsRun]:
    """All ``.../{run dir}/{rep}/results.npy`` below ``root`` (an extracted archive).

    The mode is the nearest path component ``results_{mode}`` or ``{mode}`` above the run dir;
    the ablations archive has none (``results/r.../{rep}``): those runs get ``default_mode``.
    """
    root = Path(root)
    runs = []
    for path in sorted(root.rglob("results.npy")):
        rel = PurePosixPath(path.relative_to(root).as_posix())
        parts = rel.parts
        if "__MACOSX" in parts or len(parts) < 3 or not parts[-2].isdigit():
            continue
        settings = parse_run_dirname(parts[-3])
        if settings is None:
            continue
        mode = default_mode
        for part in reversed(parts[:-3]):
            m = _MODE_DIR.fullmatch(part)
            if m:
                mode = m["mode"]
                break
        runs.append(AuthorsRun(mode, int(parts[-2]), settings, path, str(rel)))
    return runs


def match_variant(settings: Mapping[str, Any], variants: Mapping[str, Mapping[str, Any]]) -> str | None:
    """The configured variant with this run's (p_rand, normalization, imputation), if any."""
    found = [
        name
        for name, v in variants.items()
        if math.isclose(float(v["p_rand"]), settings["p_rand"], rel_tol=0, abs_tol=1e-9)
        and bool(v["normalization"]) == settings["normalization"]
        and bool(v["imputation"]) == settings["imputation"]
    ]
    if len(found) > 1:
        raise UserError(
            f"config key variants has {', '.join(found)} with the same p_rand, normalization and "
            "imputation: give each variant distinct settings."
        )
    return found[0] if found else None


# --- conversion ------------------------------------------------------------------------------

STREAM_KEYS = ("u", "k", "g", "c", "r", "q", "q_a")
LENET_SHAPES = {
    "conv1.weight": (6, 1, 5, 5),
    "conv1.bias": (6,),
    "conv2.weight": (16, 6, 5, 5),
    "conv2.bias": (16,),
    "fc1.weight": (120, 256),
    "fc1.bias": (120,),
    "fc2.weight": (84, 120),
    "fc2.bias": (84,),
    "fc3.weight": (10, 84),
    "fc3.bias": (10,),
}
AUTHORS_PREFIX = "core_model."


def _exact_ints(name: str, values: np.ndarray, allowed: tuple[int, ...] | None, where: Path) -> np.ndarray:
    v = np.asarray(values)
    if v.dtype.kind not in "biuf" or v.ndim != 1:
        raise UserError(f"{where}: array {name!r} is not a 1-d numeric array; the archive is corrupt.")
    if v.dtype.kind == "f" and not np.all(np.isfinite(v) & (v == np.round(v))):
        raise UserError(f"{where}: array {name!r} holds non-integer values; the archive is corrupt.")
    ints = v.astype(np.int64)
    if allowed is not None and not np.all(np.isin(ints, allowed)):
        raise UserError(f"{where}: array {name!r} holds values outside {allowed}; the archive is corrupt.")
    if allowed is None and ints.size and ints.min() < 0:
        raise UserError(f"{where}: array {name!r} holds negative values; the archive is corrupt.")
    return ints


def convert_arrays(raw: Mapping[str, Any], where: Path) -> dict[str, np.ndarray]:
    """The authors' dict -> our arrays (``train_subset`` -> ``train_idx``; no ``stream_idx``)."""
    missing = [k for k in (*STREAM_KEYS, "train_subset") if k not in raw]
    if missing:
        raise UserError(f"{where} lacks {', '.join(missing)}: it is not a complete authors' run.")
    n = len(np.asarray(raw["u"]))
    out: dict[str, np.ndarray] = {}
    for key in ("u", "g"):
        v = np.asarray(raw[key])
        if v.dtype.kind not in "biuf" or v.shape != (n,):
            raise UserError(f"{where}: array {key!r} does not have {n} numbers; the archive is corrupt.")
        out[key] = v.astype(np.float64)
    out["k"] = _exact_ints("k", raw["k"], None, where)
    for key in ("c", "q", "q_a"):
        out[key] = _exact_ints(key, raw[key], (0, 1), where)
    out["r"] = _exact_ints("r", raw["r"], (-1, 0, 1), where)
    for key in STREAM_KEYS:
        if out[key].shape != (n,):
            raise UserError(f"{where}: array {key!r} has {len(out[key])} entries, not {n}; the archive is corrupt.")
    subset = raw["train_subset"]
    subset = np.asarray(subset if len(subset) else np.zeros(0, dtype=np.int64))
    out["train_idx"] = _exact_ints("train_subset", subset.reshape(-1), None, where)
    return out


def convert_state_dict(pt_path: Path) -> tuple[dict | None, str]:
    """Load the authors' state dict safely and rename ``core_model.X`` -> ``X``.

    Returns (state dict or None, a note for the provenance saying what was done or why not).
    """
    import torch  # only needed here; keeps the rest of the import fast

    try:
        sd = torch.load(pt_path, map_location="cpu", weights_only=True)
    except Exception as exc:  # weights_only refuses anything but tensors and containers
        return None, f"not converted: {pt_path.name} could not be loaded safely ({type(exc).__name__})"
    if not isinstance(sd, Mapping):
        return None, f"not converted: {pt_path.name} does not hold a state dict"
    renamed = {}
    for key, value in sd.items():
        if not isinstance(key, str) or not key.startswith(AUTHORS_PREFIX):
            return None, f"not converted: unexpected key {key!r} in {pt_path.name}"
        renamed[key[len(AUTHORS_PREFIX) :]] = value
    if set(renamed) != set(LENET_SHAPES):
        return None, f"not converted: {pt_path.name} keys do not match our LeNet"
    for key, shape in LENET_SHAPES.items():
        if not isinstance(renamed[key], torch.Tensor) or tuple(renamed[key].shape) != shape:
            return None, f"not converted: {pt_path.name} {key} does not have shape {shape}"
    return {k: renamed[k] for k in LENET_SHAPES}, f"converted from {pt_path.name} (core_model.* -> *)"


def _package_versions() -> dict[str, str]:
    from importlib import metadata

    out = {}
    for name in ("askdagger-mnist", "numpy", "torch"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


def import_run(
    run: AuthorsRun,
    variant: str,
    out_dir: Path,
    provenance: Mapping[str, Any],
    with_model: bool = True,
) -> Path:
    """Convert one authors' run into our run directory ``out_dir`` (written atomically)."""
    raw = load_results_npy(run.results)
    arrays = convert_arrays(raw, run.results)
    s = run.settings
    n = len(arrays["u"])
    try:
        settings = RunSettings(
            mode=run.mode,
            s_des=s["s_des"],
            rep=run.rep,
            p_rand=s["p_rand"],
            normalization=s["normalization"],
            imputation=s["imputation"],
            batch_size=s["batch_size"],
            update_every=s["update_every"],
            steps=max(n // s["batch_size"], 1),
        )
    except ValueError as exc:
        raise UserError(f"{run.rel} names invalid settings ({exc}); the archive is corrupt.") from None
    model, model_note = None, "no .pt state dict beside results.npy"
    pts = sorted(run.results.parent.glob("*.pt"))
    if with_model and len(pts) == 1:
        model, model_note = convert_state_dict(pts[0])
    elif len(pts) > 1:
        model_note = "not converted: more than one .pt beside results.npy"
    metrics = whole_run_metrics(arrays["c"], arrays["q"])
    metrics["train_set_size"] = int(len(arrays["train_idx"]))
    info = {
        "settings": {**settings.to_dict(), "variant": variant},
        "seed": None,  # the authors seeded with seed + rep; not recorded in their files
        "versions": _package_versions(),
        "device": "unknown (authors' run)",
        "threads": None,
        "n_steps": -(-n // s["batch_size"]),
        "wall_time_s": None,
        "metrics": metrics,
        "source": "authors",
        "provenance": {**provenance, "original_path": run.rel, "model": model_note},
        "slurm": None,
    }

    def fill(tmp: Path) -> None:
        runio.write_run_files(tmp, arrays, info)
        if model is not None:
            import torch

            torch.save(model, tmp / runio.MODEL_FILE)

    return runio.atomic_dir(out_dir, fill)


def import_tree(
    root: Path,
    staging: Path,
    variants: Mapping[str, Mapping[str, Any]],
    provenance: Mapping[str, Any],
    default_mode: str = "sensitivity",
    batch_size: int | None = None,
    update_every: int | None = None,
    with_model: bool = True,
) -> list[Path]:
    """Import every authors' run below ``root`` into ``staging/{mode}/{variant}/s{s}/rep{r}``."""
    runs = find_runs(root, default_mode)
    if not runs:
        raise UserError(
            f"{provenance.get('url', root)} holds no results_{{mode}}/r..._s..._u..._i..._b..._e.../"
            "{rep}/results.npy: it is not an archive of the authors' results; check its url and format."
        )
    targets: dict[Path, AuthorsRun] = {}
    skipped: dict[str, int] = {}
    for run in runs:
        s = run.settings
        variant = match_variant(s, variants)
        reason = None
        if variant is None:
            reason = f"p_rand {s['p_rand']:g}, normalization {s['normalization']}, imputation {s['imputation']} matches no configured variant"
        elif batch_size is not None and s["batch_size"] != batch_size:
            reason = f"batch size {s['batch_size']} is not the configured {batch_size}"
        elif update_every is not None and s["update_every"] != update_every:
            reason = f"update_every {s['update_every']} is not the configured {update_every}"
        if reason:
            skipped[reason] = skipped.get(reason, 0) + 1
            continue
        target = Path(staging) / run_subdir(run.mode, variant, s["s_des"], run.rep)
        if target in targets:
            raise UserError(
                f"{targets[target].rel} and {run.rel} would both become run {target.relative_to(staging)}: "
                "set batch_size/update_every to pick one."
            )
        targets[target] = run
    for reason, count in skipped.items():
        log.info(f"skipped {count} run(s): {reason}")
    done = []
    for target, run in sorted(targets.items()):
        import_run(run, target.relative_to(staging).parts[1], target, provenance, with_model)
        log.info(f"imported {run.rel} -> {target.relative_to(staging)}")
        done.append(target)
    return done
