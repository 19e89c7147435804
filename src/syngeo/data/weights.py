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

Synapse tables
--------------
Measured synapses come as tables, one row per synapse (docs/spines.md).
:func:`read_synapse_table` reads one column of sizes with, optionally, a column of synapse ids,
and checks what such tables get wrong: a missing column, rows without a value, sizes that are
zero or negative (``positive=True``), duplicated ids, too few synapses. Each is an error naming
the count and the first offending rows; ``drop_invalid=True`` drops the rows without a value or
with a non-positive size instead (and counts them). :func:`load_pair` with ``id_column=`` joins
BEFORE and AFTER by synapse id, not by row order, and reports the ids found in only one file.
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
from syngeo.validation import as_positive_int

__all__ = [
    "SUFFIXES",
    "SkippedTensor",
    "SynapseTable",
    "WeightPair",
    "WeightSegment",
    "WeightSet",
    "load_pair",
    "load_weights",
    "read_synapse_table",
    "read_tensors",
    "select_tensors",
    "table_columns",
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
    matching: dict[str, Any] = field(default_factory=dict)

    @property
    def n_synapses(self) -> int:
        return self.before.n_synapses

    def __repr__(self) -> str:
        return (
            f"WeightPair(n_synapses={self.n_synapses}, tensors={len(self.before.segments)}, "
            f"before={str(self.before.source)!r}, after={str(self.after.source)!r})"
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "n_synapses": self.n_synapses,
            "before": self.before.to_dict(),
            "after": self.after.to_dict(),
        }
        if self.matching:
            out["matching"] = dict(self.matching)
        return out


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
    id_column: str | None = None,
    positive: bool = False,
    drop_invalid: bool = False,
    units: str | None = None,
) -> WeightPair:
    """Read weights before and after learning and check that they align.

    Synapse tables (CSV, TSV, Parquet) take three more options: ``id_column`` joins the two
    tables by synapse id (an inner join; the ids found in only one table are counted and listed
    in :attr:`WeightPair.matching`); ``positive`` requires positive sizes; ``drop_invalid`` drops
    rows without a value or with a non-positive size (``positive``) instead of failing, in both
    tables (the synapse is left out of the pair). ``units`` is recorded in ``matching`` (the
    inference does not depend on the unit: the geometries are closed under rescaling).

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
    table_options = id_column is not None or positive or drop_invalid
    if table_options:
        if layer or exclude or include_default_skips:
            raise InputError(
                "--id-column/--sizes/--drop-invalid read synapse tables; --layer/--exclude/"
                "--all-tensors select tensors of a model file: use one kind or the other"
            )
        return _table_pair(
            Path(before),
            Path(after),
            column=column,
            after_column=after_column if after_column is not None else column,
            id_column=id_column,
            positive=positive,
            drop_invalid=drop_invalid,
            units=units,
        )
    options = {"layer": layer, "exclude": exclude, "include_default_skips": include_default_skips}
    w_before = load_weights(before, column=column, **options)
    w_after = load_weights(
        after, column=after_column if after_column is not None else column, **options
    )
    _check_aligned(w_before, w_after)
    return WeightPair(w_before, w_after, {"units": units} if units else {})


@dataclass(frozen=True, eq=False)
class SynapseTable:
    """One column of synapse sizes read from a table, with the rows kept.

    Attributes
    ----------
    values : ndarray, shape=[n]
        The sizes (float64, finite; positive if read with ``positive=True``).
    ids : ndarray or None
        The synapse ids of the rows kept (``id_column``), else None.
    frame : pandas.DataFrame
        The rows kept, all columns (for connection labels, positions ...).
    source : Path
    column : str
    dropped : dict of str -> int
        Rows dropped with ``drop_invalid``: ``"missing"`` (no value), ``"non_positive"``.
    n_rows : int
        Rows in the file.
    """

    values: np.ndarray
    ids: np.ndarray | None
    frame: Any
    source: Path
    column: str
    dropped: dict[str, int]
    n_rows: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": str(self.source),
            "column": self.column,
            "n_rows": self.n_rows,
            "n_synapses": int(self.values.size),
            "dropped": dict(self.dropped),
        }


def read_synapse_table(
    path: str | Path,
    *,
    column: str | None = None,
    id_column: str | None = None,
    positive: bool = True,
    drop_invalid: bool = False,
    min_synapses: int = 1,
    frame: Any = None,
) -> SynapseTable:
    """Read a column of synapse sizes from a CSV/TSV/Parquet table, with the checks of real data.

    Parameters
    ----------
    path : str or Path
        The table (``frame`` given: only used in messages).
    column : str, optional
        The sizes (required when the table has several numeric columns).
    id_column : str, optional
        Synapse ids: must be present in every row and unique.
    positive : bool
        Sizes must be > 0 (spine volumes, PSD areas); zero or negative ones are an error.
    drop_invalid : bool
        Drop rows without a size or (with ``positive``) with a non-positive one, and count them.
    min_synapses : int
        Fewer synapses left than this is an error.
    frame : pandas.DataFrame, optional
        An already loaded table (e.g. :func:`syngeo.datasets.dorkenwald2022`).

    Raises
    ------
    DataFileError
        Missing column, non-numeric sizes, rows without a size or non-positive sizes (unless
        ``drop_invalid``), missing or duplicated ids. One line naming the file and the count.
    InputError
        Fewer than ``min_synapses`` synapses left.

    Examples
    --------
    >>> from syngeo.datasets import dorkenwald2022, dorkenwald2022_path
    >>> t = read_synapse_table(dorkenwald2022_path(), column="spine_vol_um3", id_column="id")
    >>> t.values.size, t.dropped
    (1961, {'missing': 0, 'non_positive': 0})
    """
    import pandas as pd

    path = Path(path)
    min_synapses = as_positive_int(min_synapses, "min_synapses")
    if frame is None:
        fmt = _format_of(path)
        if fmt not in ("csv", "tsv", "parquet"):
            raise DataFileError(f"{path}: a synapse table must be .csv, .tsv or .parquet")
        if not path.exists():
            raise FileNotFoundError(f"{path}: no such file; check the path")
        frame = _read_frame(path, fmt)
    else:
        frame = frame.copy()
        frame.columns = [str(c) for c in frame.columns]
    n_rows = len(frame)
    if n_rows == 0:
        raise DataFileError(f"{path}: the table has no rows; it needs one row per synapse")
    columns = list(frame.columns)
    if column is None:
        column, _ = _pick_column(frame, path)
    for name, what in ((column, "--column"), (id_column, "--id-column")):
        if name is not None and name not in columns:
            raise DataFileError(
                f"{path}: no column {name!r} ({what}); available columns: {', '.join(columns)}"
            )
    values = _numeric(frame[column].to_numpy(), path, f"column {column!r}")
    row_label = _row_labels(frame, id_column)
    missing = np.isnan(values)
    infinite = np.isinf(values)
    if infinite.any():
        raise DataFileError(
            f"{path}: column {column!r} has {int(infinite.sum())} infinite values (first at "
            f"{row_label(np.flatnonzero(infinite)[0])}); fix or remove those rows"
        )
    non_positive = ~missing & (values <= 0) if positive else np.zeros(n_rows, bool)
    if not drop_invalid:
        for mask, what in (
            (missing, "no value (NaN or empty)"),
            (non_positive, "a zero or negative size"),
        ):
            if mask.any():
                raise DataFileError(
                    f"{path}: {int(mask.sum())} of {n_rows} rows have {what} in column "
                    f"{column!r} (first at {row_label(np.flatnonzero(mask)[0])}); fix them, or "
                    "pass --drop-invalid to leave those synapses out"
                )
    keep = ~(missing | non_positive)
    ids = None
    if id_column is not None:
        id_series = frame[id_column]
        no_id = id_series.isna().to_numpy()
        if no_id.any():
            raise DataFileError(
                f"{path}: {int(no_id.sum())} rows have no synapse id in column {id_column!r} "
                f"(first at row {int(np.flatnonzero(no_id)[0]) + 2} of the file); every synapse "
                "needs an id"
            )
        dup = id_series.duplicated(keep=False).to_numpy()
        if dup.any():
            examples = ", ".join(str(x) for x in pd.unique(id_series[dup])[:3])
            raise DataFileError(
                f"{path}: {int(id_series[dup].nunique())} synapse ids occur more than once in "
                f"column {id_column!r} ({int(dup.sum())} rows; e.g. {examples}); ids must be unique"
            )
        ids = id_series.to_numpy()[keep]
    kept = frame.loc[keep].reset_index(drop=True)
    out = np.ascontiguousarray(values[keep], dtype=np.float64)
    if out.size < min_synapses:
        raise InputError(
            f"{path}: only {out.size} synapses with a valid size in column {column!r} "
            f"({int(missing.sum())} without a value, {int(non_positive.sum())} non-positive "
            f"dropped); the analysis needs at least {min_synapses}"
        )
    out.setflags(write=False)
    dropped = {"missing": int(missing.sum()), "non_positive": int(non_positive.sum())}
    return SynapseTable(out, ids, kept, path, column, dropped, n_rows)


def table_columns(path: str | Path) -> list[str]:
    """The column names of a CSV/TSV/Parquet synapse table (DataFileError if unreadable)."""
    path = Path(path)
    fmt = _format_of(path)
    if fmt not in ("csv", "tsv", "parquet"):
        raise DataFileError(f"{path}: a synapse table must be .csv, .tsv or .parquet")
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file; check the path")
    return list(_read_frame(path, fmt).columns)


def _row_labels(frame: Any, id_column: str | None):
    """A function: row index -> 'row 7 of the file (id 123)'."""

    def label(i: int) -> str:
        text = f"row {int(i) + 2} of the file"  # +1 for the header, +1 for counting from 1
        if id_column is not None:
            text += f", id {frame[id_column].iloc[int(i)]}"
        return text

    return label


def _table_pair(
    before: Path,
    after: Path,
    *,
    column: str | None,
    after_column: str | None,
    id_column: str | None,
    positive: bool,
    drop_invalid: bool,
    units: str | None,
) -> WeightPair:
    tb = read_synapse_table(
        before, column=column, id_column=id_column, positive=positive, drop_invalid=drop_invalid
    )
    ta = read_synapse_table(
        after,
        column=after_column,
        id_column=id_column,
        positive=positive,
        drop_invalid=drop_invalid,
    )
    matching: dict[str, Any] = {"dropped_before": tb.dropped, "dropped_after": ta.dropped}
    if units:
        matching["units"] = units
    if id_column is None:
        if tb.n_rows != ta.n_rows:
            raise InputError(
                f"BEFORE ({before}) has {tb.n_rows} rows but AFTER ({after}) has {ta.n_rows}; "
                "without --id-column both must list the same synapses in the same order"
            )
        if drop_invalid and (sum(tb.dropped.values()) or sum(ta.dropped.values())):
            raise InputError(
                "--drop-invalid drops rows, after which row order no longer pairs the synapses; "
                "give --id-column to join BEFORE and AFTER by synapse id"
            )
        vb, va = tb.values, ta.values
    else:
        pos_b = {k: i for i, k in enumerate(tb.ids.tolist())}
        pos_a = {k: i for i, k in enumerate(ta.ids.tolist())}
        common = [k for k in tb.ids.tolist() if k in pos_a]
        only_b = [k for k in tb.ids.tolist() if k not in pos_a]
        only_a = [k for k in ta.ids.tolist() if k not in pos_b]
        if not common:
            raise InputError(
                f"no synapse id of BEFORE ({before}) occurs in AFTER ({after}) (column "
                f"{id_column!r}; e.g. {_short_list([str(x) for x in tb.ids[:3].tolist()])} vs "
                f"{_short_list([str(x) for x in ta.ids[:3].tolist()])}); check the id column"
            )
        vb = tb.values[[pos_b[k] for k in common]]
        va = ta.values[[pos_a[k] for k in common]]
        matching.update(
            {
                "id_column": id_column,
                "n_matched": len(common),
                "n_only_before": len(only_b),
                "n_only_after": len(only_a),
                "only_before": [str(x) for x in only_b[:20]],
                "only_after": [str(x) for x in only_a[:20]],
            }
        )
    ws_b = _finish(
        before, _format_of(before), [vb], (WeightSegment(tb.column, vb.shape, 0, vb.size),), ()
    )
    ws_a = _finish(
        after, _format_of(after), [va], (WeightSegment(ta.column, va.shape, 0, va.size),), ()
    )
    return WeightPair(ws_b, ws_a, matching)


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
    known = " ".join(sorted(SUFFIXES))
    if path.is_dir():
        raise DataFileError(f"{path} is a folder, not a weight file; give one of: {known}")
    if suffix not in SUFFIXES:
        raise DataFileError(
            f"{path}: unknown file type {suffix or '(no suffix)'!r}; use one of: {known}"
        )
    return SUFFIXES[suffix]


def _read_table(path: Path, fmt: str, column: str | None) -> tuple[str, Any]:
    frame = _read_frame(path, fmt)
    if frame.shape[0] == 0:
        raise DataFileError(f"{path}: the table has no rows; it needs one row per synapse")
    columns = list(frame.columns)
    if column is not None:
        if column not in columns:
            raise DataFileError(
                f"{path}: no column {column!r}; available columns: {', '.join(columns)}"
            )
        return column, frame[column].to_numpy()
    return _pick_column(frame, path)


def _read_frame(path: Path, fmt: str) -> Any:
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
    frame.columns = [str(c) for c in frame.columns]
    return frame


def _pick_column(frame: Any, path: Path) -> tuple[str, Any]:
    """The one weight column of a table without --column (or an error naming the candidates)."""
    import pandas as pd

    columns = list(frame.columns)
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


def read_tensors(path: str | Path) -> dict[str, Any]:
    """Every named array or tensor of a weight file, read without executing code from it.

    ``.npz`` (NumPy arrays, no pickles), ``.safetensors``, and ``.pt``/``.pth``/``.bin``/``.ckpt``
    (``torch.load(weights_only=True)``); the names are as stored (checkpoint containers are not
    unwrapped here). A missing file raises ``FileNotFoundError``; an unreadable one, or one with
    no arrays, :class:`~syngeo.errors.DataFileError`.
    """
    path = Path(path)
    fmt = {**_ARRAY_SUFFIXES, **_TENSOR_SUFFIXES}.get(path.suffix.lower())
    if fmt is None or fmt == "npy":
        known = ", ".join(s for s in SUFFIXES if s not in _TABLE_SUFFIXES and s != ".npy")
        raise DataFileError(f"{path}: not a file of named tensors; use one of {known}")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    return _read_named(path, fmt)


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
