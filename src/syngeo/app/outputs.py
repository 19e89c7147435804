"""Writing a command's results to an output folder, never overwriting without ``force``.

Layout of ``OUT``: ``results.parquet`` and ``results.csv`` (the tidy table), ``summary.json``,
one PNG and one PDF per figure, and ``report.md`` embedding the PNGs.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "OWN_NAMES",
    "atomic_write",
    "atomic_write_text",
    "make_out_dir",
    "own_outputs",
    "prepare_out_dir",
    "to_jsonable",
    "write_outputs",
]

_OUTPUT_NAMES = ("results.parquet", "results.csv", "summary.json", "report.md")

#: What syngeo writes in an output folder: a folder holding any of these (or a figure the
#: caller names) already holds results. Any other file in it is left alone and does not count.
OWN_NAMES = (*_OUTPUT_NAMES, "manifest.json", "cells", "log.csv", "initial.safetensors")


def own_outputs(path: str | os.PathLike, figures: Iterable[str] = ()) -> list[str]:
    """The names in folder ``path`` that syngeo writes (:data:`OWN_NAMES`, ``<figure>.png/.pdf``).

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     _ = (Path(tmp) / "notes.txt").write_text("mine")
    ...     before = own_outputs(tmp)
    ...     _ = (Path(tmp) / "report.md").write_text("# old")
    ...     after = own_outputs(tmp)
    >>> before, after
    ([], ['report.md'])
    """
    path = Path(path)
    if not path.is_dir():
        return []
    names = list(OWN_NAMES) + [f"{stem}.{ext}" for stem in figures for ext in ("png", "pdf")]
    return [name for name in names if (path / name).exists()]


def make_out_dir(path: str | os.PathLike) -> Path:
    """Create folder ``path`` (and parents) and check that it can be written in.

    A folder that cannot be created or written is an ``OSError`` naming ``path`` itself (not a
    temporary file inside it), so the one-line error says which folder to fix.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise FileExistsError(f"--out {path} exists and is not a folder; choose another path")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except PermissionError:
        raise PermissionError(
            f"--out {path}: permission denied when creating the folder; choose a folder you "
            "can write in"
        ) from None
    except OSError as exc:
        raise OSError(f"--out {path}: cannot create the folder ({exc.strerror or exc})") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise PermissionError(
            f"--out {path}: permission denied (the folder is not writable); choose a folder "
            "you can write in"
        )
    return path


def prepare_out_dir(
    out: str | os.PathLike,
    *,
    force: bool = False,
    allow_resume: bool = False,
    figures: Iterable[str] = (),
) -> Path:
    """Create ``out`` (and parents) and return it.

    A folder already holding syngeo's outputs (:func:`own_outputs`: results, summary, report,
    a sweep, the named ``figures``) is an error unless ``force`` (its previous results are then
    replaced file by file) or ``allow_resume`` (a sweep folder that is continued). Other files
    in it do not count and are never touched.
    """
    path = Path(out)
    if path.exists() and not path.is_dir():
        raise FileExistsError(f"--out {path} exists and is not a folder; choose another path")
    found = own_outputs(path, figures)
    if found and not (force or allow_resume):
        shown = ", ".join(found[:3]) + (f" and {len(found) - 3} more" if len(found) > 3 else "")
        raise FileExistsError(
            f"--out {path} already holds results ({shown}); pass --force to replace them or "
            "choose another folder"
        )
    return make_out_dir(path)


def to_jsonable(obj: Any) -> Any:
    """Convert NumPy/pandas scalars and arrays, Paths and dataclass-likes to JSON values.

    Non-finite floats become ``None`` (JSON has no NaN).
    """
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return [to_jsonable(v) for v in obj.tolist()]
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        x = float(obj)
        return x if math.isfinite(x) else None
    if isinstance(obj, (np.bool_,)):
        return bool(obj)
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "to_dict") and callable(obj.to_dict):
        return to_jsonable(obj.to_dict())
    return obj


def _default_file_mode() -> int:
    """0o666 minus the umask, the mode ``open()`` gives (``mkstemp`` would leave 0o600)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def atomic_write(path: str | os.PathLike, writer: Callable[[str], Any]) -> None:
    """Write ``path`` all or nothing: ``writer(tmp)`` fills a temporary file in the same folder,
    which is then moved into place with ``os.replace`` (removed if ``writer`` fails)."""
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except PermissionError:  # name the folder, not the temporary file that could not be made
        raise PermissionError(
            f"cannot write {path.name} in {path.parent}: permission denied; choose a folder "
            "you can write in"
        ) from None
    os.close(fd)
    try:
        os.chmod(tmp, _default_file_mode())
        writer(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` via a temporary file and ``os.replace`` (all or nothing)."""
    atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def write_outputs(
    out: str | os.PathLike,
    *,
    table: pd.DataFrame | None = None,
    summary: Mapping[str, Any] | None = None,
    figures: Mapping[str, Any] | None = None,
    report: str | None = None,
) -> dict[str, Path]:
    """Write the standard outputs into the (already prepared) folder ``out``.

    Returns the paths written, keyed by a short name. Figures are saved as ``<stem>.png`` (200 dpi)
    and ``<stem>.pdf`` and closed afterwards.
    """
    out = Path(out)
    written: dict[str, Path] = {}
    if table is not None:
        atomic_write(out / "results.parquet", lambda p: table.to_parquet(p, index=False))
        atomic_write(out / "results.csv", lambda p: table.to_csv(p, index=False))
        written["parquet"] = out / "results.parquet"
        written["csv"] = out / "results.csv"
    if summary is not None:
        atomic_write_text(out / "summary.json", json.dumps(to_jsonable(summary), indent=2) + "\n")
        written["summary"] = out / "summary.json"
    if figures:
        import matplotlib.pyplot as plt

        for stem, fig in figures.items():
            for ext in ("png", "pdf"):
                target = out / f"{stem}.{ext}"
                atomic_write(
                    target,
                    lambda p, fig=fig, ext=ext: fig.savefig(
                        p, format=ext, dpi=200, bbox_inches="tight"
                    ),
                )
                written[f"{stem}.{ext}"] = target
            plt.close(fig)
    if report is not None:
        atomic_write_text(out / "report.md", report)
        written["report"] = out / "report.md"
    return written


def remove_tree_contents(path: Path, names: tuple[str, ...] = _OUTPUT_NAMES) -> None:
    """Remove the standard output files (used by ``--force``); other files are left alone."""
    for name in names:
        target = path / name
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
