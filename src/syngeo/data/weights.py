"""Reading synaptic weights measured (or saved) before and after learning.

One entry point per use: :func:`load_weights` reads one file into a flat float64 vector and says
which tensors (or which column) it came from; :func:`load_pair` reads BEFORE and AFTER with the
same options and checks that they describe the same synapses in the same order.

Formats, chosen by the file's suffix
------------------------------------
=====================  =========================================================================
suffix                 what is read
=====================  =========================================================================
``.csv``, ``.tsv``     one numeric column (``column=`` picks it; a lone numeric column is taken
                       automatically; a file of bare numbers without a header works too)
``.parquet``           like CSV
``.npy``               one array, flattened
``.npz``               named arrays, selected like the tensors of a state dict (``column=`` is an
                       exact key, ``layer=``/``exclude=`` are globs)
``.safetensors``       named tensors (loaded with ``safetensors.torch``, never executing code)
``.pt .pth .bin .ckpt`` a torch ``state_dict`` loaded with ``torch.load(weights_only=True)``;
                       checkpoints that wrap it (``{"state_dict": ...}``, ``{"model": ...}``) are
                       unwrapped
=====================  =========================================================================

Which tensors are analysed
--------------------------
As in Pogodin et al. (§4.3), the default analysis leaves out, for named tensors:

* biases (``*.bias``, ``*_bias``);
* normalisation parameters: tensors of modules named ``bn``/``norm``/``ln``/``gn``..., the 1-D
  ``*.weight`` of any module (a convolution or linear weight is never 1-D), running statistics and
  ``num_batches_tracked``;
* the readout layer: weights of a module called ``fc``, ``classifier``, ``head``, ``readout``,
  ``lm_head``, ``output`` or ``out``, or else the last weight matrix of the file;
* tensors that are not floating point (integer counters, masks).

``layer=`` globs (``fnmatch`` on the tensor names) restrict the selection; a name given without
wildcards is kept even when a default rule would skip it (an explicit request wins).
``exclude=`` globs remove tensors. ``include_default_skips=True`` turns the default rules off.
Every :class:`WeightSet` records the tensors it used and the ones it skipped, with the reason.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from syngeo.errors import DataFileError, InputError, InputTypeError

__all__ = [
    "SUFFIXES",
    "SkippedTensor",
    "WeightPair",
    "WeightSegment",
    "WeightSet",
    "load_pair",
    "load_weights",
    "select_tensors",
]

_TABLE_SUFFIXES = {".csv": "csv", ".tsv": "tsv", ".parquet": "parquet", ".pq": "parquet"}
_ARRAY_SUFFIXES = {".npy": "npy", ".npz": "npz"}
_TENSOR_SUFFIXES = {
    ".safetensors": "safetensors",
    ".pt": "torch",
    ".pth": "torch",
    ".bin": "torch",
    ".ckpt": "torch",
}
#: Every suffix :func:`load_weights` understands, mapped to the format name it reports.
SUFFIXES: dict[str, str] = {**_TABLE_SUFFIXES, **_ARRAY_SUFFIXES, **_TENSOR_SUFFIXES}

# Keys under which checkpoints commonly store the model's state dict, most specific first.
_CONTAINER_KEYS = (
    "state_dict",
    "model_state_dict",
    "model_state",
    "model",
    "module",
    "net",
    "network",
    "weights",
    "params",
)
# Parts of a checkpoint that are not model weights.
_NON_MODEL_KEYS = {"optimizer", "optimizer_state_dict", "optim", "scheduler", "lr_scheduler"}

_NORM_MODULE = re.compile(r"(bn|ln|gn)(_?[0-9a-z])?[0-9]*")
_NORM_STAT_SUFFIXES = ("running_mean", "running_var", "num_batches_tracked")
_READOUT_MODULES = {"fc", "classifier", "head", "readout", "lm_head", "output", "out", "logits"}


@dataclass(frozen=True)
class WeightSegment:
    """Where one tensor's entries lie in the concatenated vector.

    Attributes
    ----------
    name : str
        Tensor name (state-dict key, NPZ key, or the column of a table).
    shape : tuple of int
        The tensor's original shape.
    start, stop : int
        Slice ``values[start:stop]`` holding its entries (row-major order).
    """

    name: str
    shape: tuple[int, ...]
    start: int
    stop: int

    @property
    def size(self) -> int:
        """Number of entries."""
        return self.stop - self.start

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "shape": list(self.shape), "size": self.size}


@dataclass(frozen=True)
class SkippedTensor:
    """A tensor of the file left out of the analysis, and why."""

    name: str
    shape: tuple[int, ...]
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "shape": list(self.shape), "reason": self.reason}


@dataclass(frozen=True, eq=False)
class WeightSet:
    """Weights read from one file, flattened to one float64 vector.

    Attributes
    ----------
    values : ndarray, shape=[n]
        All selected entries, concatenated in the order of :attr:`segments` (float64, finite).
    segments : tuple of WeightSegment
        Which tensor (or column) each slice of ``values`` came from.
    skipped : tuple of SkippedTensor
        Tensors present in the file but left out, with the reason.
    source : Path
        The file read.
    format : str
        ``"csv"``, ``"tsv"``, ``"parquet"``, ``"npy"``, ``"npz"``, ``"safetensors"`` or ``"torch"``.
    """

    values: np.ndarray
    segments: tuple[WeightSegment, ...]
    skipped: tuple[SkippedTensor, ...] = field(default=())
    source: Path = field(default=Path())
    format: str = ""

    @property
    def names(self) -> tuple[str, ...]:
        """Names of the tensors (or the column) used, in order."""
        return tuple(s.name for s in self.segments)

    @property
    def n_synapses(self) -> int:
        """Number of weights (synapses) read."""
        return int(self.values.size)

    def __len__(self) -> int:
        return self.n_synapses

    def __repr__(self) -> str:
        used = ", ".join(self.names[:4]) + (", ..." if len(self.segments) > 4 else "")
        return (
            f"WeightSet(source={str(self.source)!r}, format={self.format!r}, "
            f"n_synapses={self.n_synapses}, tensors=[{used}], skipped={len(self.skipped)})"
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready description (without the values)."""
        return {
            "source": str(self.source),
            "format": self.format,
            "n_synapses": self.n_synapses,
            "used": [s.to_dict() for s in self.segments],
            "skipped": [s.to_dict() for s in self.skipped],
        }


@dataclass(frozen=True, eq=False)
class WeightPair:
    """Aligned weights before and after learning (same synapses, same order).

    Attributes
    ----------
    before, after : WeightSet
        The two files as read; ``before.values[i]`` and ``after.values[i]`` are the same synapse.
    """

    before: WeightSet
    after: WeightSet

    @property
    def n_synapses(self) -> int:
        return self.before.n_synapses

    def __repr__(self) -> str:
        return (
            f"WeightPair(n_synapses={self.n_synapses}, tensors={len(self.before.segments)}, "
            f"before={str(self.before.source)!r}, after={str(self.after.source)!r})"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "n_synapses": self.n_synapses,
            "before": self.before.to_dict(),
            "after": self.after.to_dict(),
        }


# --------------------------------------------------------------------------------------------
# Public entry points
# --------------------------------------------------------------------------------------------


def load_weights(
    path: str | Path,
    *,
    column: str | None = None,
    layer: str | Sequence[str] | None = None,
    exclude: str | Sequence[str] | None = None,
    include_default_skips: bool = False,
) -> WeightSet:
    """Read the weights of one file into a flat float64 vector.

    Parameters
    ----------
    path : str or Path
        The file; its suffix picks the format (see the module docstring).
    column : str, optional
        Tables: the column to read (required when the table has several numeric columns).
        NPZ, safetensors, state dict: the exact name of the one array or tensor to read
        (default rules do not apply to it).
    layer : str or sequence of str, optional
        Named tensors (state dict, safetensors, NPZ): keep only tensors whose name matches one of
        these ``fnmatch`` globs (e.g. ``"layer1.*"``). A name without wildcards is kept even if a
        default rule would skip it.
    exclude : str or sequence of str, optional
        Globs of tensor names to leave out.
    include_default_skips : bool
        Keep the tensors the default rules skip (biases, normalisation, readout).

    Returns
    -------
    WeightSet

    Raises
    ------
    DataFileError
        Unknown suffix, unreadable or empty file, missing column or key, non-numeric data,
        NaN or infinite values, no tensor left after selection. The message names the file.
    InputError
        Options that do not apply to the format (``layer=`` on a table, ``column=`` on ``.npy``).
    InputTypeError
        ``layer``/``exclude`` patterns that are not strings.
    FileNotFoundError
        If ``path`` does not exist.

    Examples
    --------
    >>> ws = load_weights("resnet_before.pt", layer="layer1.*")  # doctest: +SKIP
    >>> ws.names, ws.skipped  # doctest: +SKIP
    """
    path = Path(path)
    fmt = _format_of(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file; check the path")
    if path.is_dir():
        raise DataFileError(f"{path} is a folder; give a weight or synapse-table file")
    layer_globs = _as_globs(layer, "layer")
    exclude_globs = _as_globs(exclude, "exclude")

    if fmt in ("csv", "tsv", "parquet"):
        if layer_globs or exclude_globs:
            raise InputError(
                f"{path}: --layer/--exclude select named tensors, but a {fmt} table has columns; "
                "use --column"
            )
        name, values = _read_table(path, fmt, column)
        array = _numeric(values, path, name)
        _check_finite(array, path, name)
        segments = (WeightSegment(name, array.shape, 0, array.size),)
        return _finish(path, fmt, [array.ravel()], segments, ())

    if fmt == "npy":
        if layer_globs or exclude_globs or column is not None:
            raise InputError(
                f"{path}: a .npy file holds one array; --column/--layer/--exclude do not apply"
            )
        array = _numeric(_read_npy(path), path, "array")
        _check_finite(array, path, "array")
        segments = (WeightSegment("array", tuple(array.shape), 0, array.size),)
        return _finish(path, fmt, [array.ravel()], segments, ())

    tensors = _read_named(path, fmt)
    if column is not None:
        if column not in tensors:
            raise DataFileError(
                f"{path}: no array named {column!r}; available: {_listing(tensors)}"
            )
        tensors = {column: tensors[column]}
        chosen, skipped = [column], []
    else:
        chosen, skipped = select_tensors(
            {k: tuple(np.shape(v)) for k, v in tensors.items()},
            dtypes={k: _kind(v) for k, v in tensors.items()},
            layer=layer_globs,
            exclude=exclude_globs,
            include_default_skips=include_default_skips,
        )
    if not chosen:
        reasons = "; ".join(f"{s.name} ({s.reason})" for s in skipped[:6])
        raise DataFileError(
            f"{path}: no tensor left to analyse after selection (skipped: {reasons}); "
            "adjust --layer/--exclude or pass --all-tensors"
        )
    arrays, segments, start = [], [], 0
    for name in chosen:
        array = _numeric(_to_numpy(tensors[name]), path, name)
        _check_finite(array, path, name)
        arrays.append(array.ravel())
        segments.append(WeightSegment(name, tuple(array.shape), start, start + array.size))
        start += array.size
    return _finish(path, fmt, arrays, tuple(segments), tuple(skipped))


def load_pair(
    before: str | Path,
    after: str | Path,
    *,
    column: str | None = None,
    after_column: str | None = None,
    layer: str | Sequence[str] | None = None,
    exclude: str | Sequence[str] | None = None,
    include_default_skips: bool = False,
) -> WeightPair:
    """Read weights before and after learning and check that they align.

    Both files are read with the same options (``after_column`` overrides ``column`` for the
    AFTER file, e.g. for one table holding both snapshots). They must hold the same tensors with
    the same shapes, or columns of the same length.

    Raises
    ------
    DataFileError, InputError, FileNotFoundError
        Everything :func:`load_weights` raises; :class:`~syngeo.errors.InputError` when the two
        files do not describe the same synapses (tensors, shapes or lengths differ).

    Examples
    --------
    >>> pair = load_pair("w0.npy", "w1.npy")  # doctest: +SKIP
    >>> pair.before.values.shape == pair.after.values.shape  # doctest: +SKIP
    True
    """
    options = {"layer": layer, "exclude": exclude, "include_default_skips": include_default_skips}
    w_before = load_weights(before, column=column, **options)
    w_after = load_weights(
        after, column=after_column if after_column is not None else column, **options
    )
    _check_aligned(w_before, w_after)
    return WeightPair(w_before, w_after)


def select_tensors(
    shapes: Mapping[str, tuple[int, ...]],
    *,
    dtypes: Mapping[str, str] | None = None,
    layer: Sequence[str] = (),
    exclude: Sequence[str] = (),
    include_default_skips: bool = False,
) -> tuple[list[str], list[SkippedTensor]]:
    """Decide which named tensors are analysed (see the module docstring for the rules).

    Parameters
    ----------
    shapes : mapping name -> shape
        In the file's order.
    dtypes : mapping name -> str, optional
        ``"float"`` for floating-point tensors; anything else is skipped.

    Returns
    -------
    (used names in order, skipped tensors with reasons)
    """
    dtypes = dtypes or {}
    readout = set() if include_default_skips else _readout_names(shapes, dtypes)
    explicit = {g for g in layer if not any(c in g for c in "*?[")}
    used: list[str] = []
    skipped: list[SkippedTensor] = []
    for name, shape in shapes.items():
        if dtypes.get(name, "float") != "float":
            skipped.append(SkippedTensor(name, shape, f"not floating point: {dtypes[name]}"))
            continue
        if layer and not any(fnmatch.fnmatchcase(name, g) for g in layer):
            skipped.append(SkippedTensor(name, shape, "not matched by --layer"))
            continue
        if any(fnmatch.fnmatchcase(name, g) for g in exclude):
            skipped.append(SkippedTensor(name, shape, "matched by --exclude"))
            continue
        if not include_default_skips and name not in explicit:
            reason = _default_skip_reason(name, shape)
            if reason is None and name in readout:
                reason = "readout layer"
            if reason is not None:
                skipped.append(SkippedTensor(name, shape, reason))
                continue
        if int(np.prod(shape, dtype=np.int64)) == 0:
            skipped.append(SkippedTensor(name, shape, "empty"))
            continue
        used.append(name)
    return used, skipped


# --------------------------------------------------------------------------------------------
# Default skip rules
# --------------------------------------------------------------------------------------------


def _default_skip_reason(name: str, shape: tuple[int, ...]) -> str | None:
    lower = name.lower()
    last = re.split(r"[./]", lower)[-1]
    if last in _NORM_STAT_SUFFIXES or lower.endswith(_NORM_STAT_SUFFIXES):
        return "normalisation statistics"
    if last == "bias" or lower.endswith("_bias") or last.startswith("bias"):
        return "bias"
    if any("norm" in part or _NORM_MODULE.fullmatch(part) for part in _module_parts(name)):
        return "normalisation parameter"
    if len(shape) == 1 and last in ("weight", "gamma", "beta", "scale"):
        # Convolution and linear weights are never 1-D; a 1-D weight is a norm's scale.
        return "normalisation parameter"
    return None


def _module_parts(name: str) -> list[str]:
    parts = re.split(r"[./]", name.lower())
    return parts[:-1] if len(parts) > 1 else parts


def _readout_names(shapes: Mapping[str, tuple[int, ...]], dtypes: Mapping[str, str]) -> set[str]:
    """The readout layer's weights: named like a readout, else the last weight matrix."""
    matrices = [
        n
        for n, s in shapes.items()
        if len(s) >= 2 and dtypes.get(n, "float") == "float" and _default_skip_reason(n, s) is None
    ]
    named = {n for n in matrices if any(p in _READOUT_MODULES for p in _module_parts(n))}
    if named:
        return named
    # With a single matrix there is nothing else to analyse: it is not treated as a readout.
    if len(matrices) >= 2:
        return {matrices[-1]}
    return set()


# --------------------------------------------------------------------------------------------
# Readers
# --------------------------------------------------------------------------------------------


def _format_of(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        known = " ".join(sorted(SUFFIXES))
        raise DataFileError(
            f"{path}: unknown file type {suffix or '(no suffix)'!r}; use one of: {known}"
        )
    return SUFFIXES[suffix]


def _read_table(path: Path, fmt: str, column: str | None) -> tuple[str, Any]:
    import pandas as pd

    try:
        if fmt == "parquet":
            frame = pd.read_parquet(path)
        else:
            sep = "\t" if fmt == "tsv" else ","
            frame = pd.read_csv(path, sep=sep)
            if len(frame.columns) and all(_is_number(c) for c in frame.columns):
                # A file of bare numbers: the first row is data, not a header.
                frame = pd.read_csv(path, sep=sep, header=None)
                frame.columns = [f"column {i}" for i in range(len(frame.columns))]
    except pd.errors.EmptyDataError:
        raise DataFileError(f"{path}: the file is empty; it needs one number per synapse") from None
    except (ValueError, OSError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        raise DataFileError(f"{path}: cannot read it as {fmt}: {_first_line(exc)}") from None
    except Exception as exc:  # pyarrow raises its own error types for corrupt files
        raise DataFileError(f"{path}: cannot read it as {fmt}: {_first_line(exc)}") from None
    if frame.shape[0] == 0:
        raise DataFileError(f"{path}: the table has no rows; it needs one row per synapse")
    columns = [str(c) for c in frame.columns]
    frame.columns = columns
    if column is not None:
        if column not in columns:
            raise DataFileError(
                f"{path}: no column {column!r}; available columns: {', '.join(columns)}"
            )
        return column, frame[column].to_numpy()
    numeric = [c for c in columns if pd.api.types.is_numeric_dtype(frame[c])]
    numeric = [c for c in numeric if not pd.api.types.is_bool_dtype(frame[c])]
    # A row index written by DataFrame.to_csv() is not a weight column.
    numeric = [c for c in numeric if not c.startswith("Unnamed: ")]
    if len(columns) == 1:
        return columns[0], frame[columns[0]].to_numpy()
    if len(numeric) == 1:
        return numeric[0], frame[numeric[0]].to_numpy()
    if not numeric:
        raise DataFileError(
            f"{path}: no numeric column; available columns: {', '.join(columns)}; "
            "pick one with --column"
        )
    raise DataFileError(
        f"{path}: several numeric columns ({', '.join(numeric)}); pick one with --column"
    )


def _read_npy(path: Path) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except ValueError as exc:
        if "pickle" in str(exc).lower():
            raise DataFileError(
                f"{path}: the array holds Python objects, which are not loaded (it would run "
                "code from the file); save a numeric array"
            ) from None
        raise DataFileError(f"{path}: cannot read it as .npy: {_first_line(exc)}") from None
    except (OSError, EOFError) as exc:
        raise DataFileError(f"{path}: cannot read it as .npy: {_first_line(exc)}") from None


def _read_named(path: Path, fmt: str) -> dict[str, Any]:
    if fmt == "npz":
        tensors = _read_npz(path)
    elif fmt == "safetensors":
        tensors = _read_safetensors(path)
    else:
        tensors = _read_torch(path)
    if not tensors:
        raise DataFileError(f"{path}: the file holds no arrays or tensors")
    return tensors


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {k: archive[k] for k in archive.files}
    except ValueError as exc:
        if "pickle" in str(exc).lower():
            raise DataFileError(
                f"{path}: an array holds Python objects, which are not loaded (it would run "
                "code from the file); save numeric arrays"
            ) from None
        raise DataFileError(f"{path}: cannot read it as .npz: {_first_line(exc)}") from None
    except Exception as exc:  # zipfile.BadZipFile, OSError, EOFError
        raise DataFileError(f"{path}: cannot read it as .npz: {_first_line(exc)}") from None


def _read_safetensors(path: Path) -> dict[str, Any]:
    from safetensors import safe_open

    try:
        tensors: dict[str, Any] = {}
        with safe_open(str(path), framework="pt") as handle:
            for name in handle.keys():
                tensors[name] = handle.get_tensor(name)
        return tensors
    except Exception as exc:  # safetensors_rust.SafetensorError and friends
        raise DataFileError(f"{path}: cannot read it as safetensors: {_first_line(exc)}") from None


def _read_torch(path: Path) -> dict[str, Any]:
    import pickle

    import torch

    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(exc))
        if found:
            raise DataFileError(
                f"{path}: refused to load: it holds a Python object ({found.group(1)}) and "
                "loading it could run code from the file; save model.state_dict() instead, or "
                "convert it to safetensors"
            ) from None
        raise DataFileError(
            f"{path}: cannot read it as a torch state dict (not a file written by torch.save "
            "with plain tensors); save model.state_dict() with torch.save, or use safetensors"
        ) from None
    except Exception as exc:  # RuntimeError for a non-zip file, EOFError, ...
        raise DataFileError(
            f"{path}: cannot read it as a torch state dict: {_first_line(exc)}"
        ) from None
    tensors = _flatten_checkpoint(obj)
    if not tensors:
        raise DataFileError(
            f"{path}: no tensors found (top-level type {type(obj).__name__}); save "
            "model.state_dict()"
        )
    return tensors


def _flatten_checkpoint(obj: Any, prefix: str = "") -> dict[str, Any]:
    """Tensors of a state dict, unwrapping checkpoint containers; names joined with dots."""
    import torch

    if isinstance(obj, torch.Tensor):
        return {prefix or "tensor": obj}
    if isinstance(obj, Mapping):
        if not prefix:
            for key in _CONTAINER_KEYS:
                inner = obj.get(key)
                if isinstance(inner, Mapping) and _has_tensor(inner):
                    return _flatten_checkpoint(inner)
        out: dict[str, Any] = {}
        for key, value in obj.items():
            if str(key) in _NON_MODEL_KEYS:
                continue
            out.update(_flatten_checkpoint(value, f"{prefix}.{key}" if prefix else str(key)))
        return out
    if isinstance(obj, (list, tuple)):
        out = {}
        for i, value in enumerate(obj):
            out.update(_flatten_checkpoint(value, f"{prefix}.{i}" if prefix else str(i)))
        return out
    return {}


def _has_tensor(obj: Any) -> bool:
    import torch

    if isinstance(obj, torch.Tensor):
        return True
    if isinstance(obj, Mapping):
        return any(_has_tensor(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return any(_has_tensor(v) for v in obj)
    return False


# --------------------------------------------------------------------------------------------
# Conversion and checks
# --------------------------------------------------------------------------------------------


def _kind(value: Any) -> str:
    try:
        import torch

        if isinstance(value, torch.Tensor):
            return "float" if value.is_floating_point() else str(value.dtype).replace("torch.", "")
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
    dtype = np.asarray(value).dtype
    return "float" if np.issubdtype(dtype, np.floating) else str(dtype)


def _to_numpy(value: Any) -> np.ndarray:
    import torch

    if isinstance(value, torch.Tensor):
        return value.detach().to(device="cpu", dtype=torch.float64).numpy()
    return np.asarray(value)


def _numeric(values: Any, path: Path, name: str) -> np.ndarray:
    array = np.asarray(values)
    if array.dtype == object:
        import pandas as pd

        converted = pd.to_numeric(pd.Series(array.ravel()), errors="coerce").to_numpy(
            dtype=np.float64
        )
        bad = np.isnan(converted) & ~pd.isna(pd.Series(array.ravel())).to_numpy()
        if bad.any():
            example = array.ravel()[np.flatnonzero(bad)[0]]
            raise DataFileError(
                f"{path}: {name} is not numeric ({int(bad.sum())} entries such as {example!r}); "
                "give a column of numbers"
            )
        array = converted.reshape(array.shape)
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == np.bool_):
        raise DataFileError(
            f"{path}: {name} is not numeric (dtype {array.dtype}); give a column of numbers"
        )
    if np.iscomplexobj(array):
        raise DataFileError(f"{path}: {name} holds complex numbers; weights must be real")
    return array.astype(np.float64, copy=False)


def _check_finite(array: np.ndarray, path: Path, name: str) -> None:
    if array.size == 0:
        raise DataFileError(f"{path}: {name} is empty; it needs one number per synapse")
    finite = np.isfinite(array)
    if not finite.all():
        n_nan = int(np.isnan(array).sum())
        n_inf = int(array.size - finite.sum() - n_nan)
        first = int(np.flatnonzero(~finite.ravel())[0])
        raise DataFileError(
            f"{path}: {name} has {n_nan} NaN and {n_inf} infinite values (first at position "
            f"{first}); drop or fill those synapses in both files"
        )


def _finish(
    path: Path,
    fmt: str,
    arrays: list[np.ndarray],
    segments: tuple[WeightSegment, ...],
    skipped: tuple[SkippedTensor, ...],
) -> WeightSet:
    values = np.ascontiguousarray(np.concatenate(arrays), dtype=np.float64)
    values.setflags(write=False)
    return WeightSet(values, segments, skipped, path, fmt)


def _check_aligned(before: WeightSet, after: WeightSet) -> None:
    b, a = before.source, after.source
    named = {"npz", "safetensors", "torch"}
    # Tables and single arrays are matched by length only (their columns may be named apart).
    if before.format in named and after.format in named and before.names != after.names:
        only_b = [n for n in before.names if n not in set(after.names)]
        only_a = [n for n in after.names if n not in set(before.names)]
        if not only_b and not only_a:
            raise InputError(
                f"BEFORE ({b}) and AFTER ({a}) hold the same tensors in a different order; "
                "save both from the same model"
            )
        parts = []
        if only_b:
            parts.append(f"only in BEFORE: {_short_list(only_b)}")
        if only_a:
            parts.append(f"only in AFTER: {_short_list(only_a)}")
        raise InputError(
            f"BEFORE ({b}) and AFTER ({a}) do not hold the same tensors ({'; '.join(parts)}); "
            "save both from the same model or select common ones with --layer"
        )
    if before.format in named and after.format in named:
        for sb, sa in zip(before.segments, after.segments, strict=True):
            if sb.shape != sa.shape:
                raise InputError(
                    f"tensor {sb.name} has shape {list(sb.shape)} in BEFORE ({b}) but "
                    f"{list(sa.shape)} in AFTER ({a}); save both from the same model"
                )
    if before.n_synapses != after.n_synapses:
        raise InputError(
            f"BEFORE ({b}) has {before.n_synapses} weights but AFTER ({a}) has "
            f"{after.n_synapses}; both must list the same synapses in the same order"
        )


# --------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------


def _as_globs(value: str | Iterable[str] | None, what: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    globs = []
    for item in value:
        if not isinstance(item, str):
            raise InputTypeError(f"{what} patterns must be strings, got {type(item).__name__}")
        globs.extend(part.strip() for part in item.split(",") if part.strip())
    return tuple(globs)


def _is_number(text: Any) -> bool:
    try:
        float(str(text))
    except ValueError:
        return False
    return True


def _listing(tensors: Mapping[str, Any]) -> str:
    return _short_list(list(tensors))


def _short_list(names: Sequence[str], limit: int = 8) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names) - limit} more)" if len(names) > limit else "")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return " ".join(text.splitlines()[0].split())
