"""The :class:`Experiment` object: everything ``syngeo reproduce NAME`` needs about one figure."""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from syngeo.errors import InputError, InputTypeError

__all__ = ["Experiment"]


@dataclass(frozen=True)
class Experiment:
    """One reproduced figure (or table), as explicit functions.

    Attributes
    ----------
    name : str
        What ``syngeo reproduce NAME`` accepts (exact match).
    title : str
        One line: paper, figure, what it shows.
    Config : type
        A frozen dataclass whose defaults are the paper's protocol; JSON-serialisable fields
        only (it is written to the sweep manifest).
    quick : callable () -> Config
        A preset that finishes in well under a minute on 2 CPU cores.
    cells : callable (config) -> list[dict]
        The independent units of work; each a dict of JSON values (the sweep keys on it).
    run_cell : callable (config, cell) -> list[dict]
        The tidy rows of one cell. A module-level function (pickled by reference for worker
        processes); all randomness comes from seeds in the cell and the config.
    summarise : callable (table, config) -> dict
        The headline numbers (JSON-serialisable), written to ``summary.json``.
    plot : callable (table, config) -> dict[str, Figure]
        Figures in the paper's layout, keyed by file stem (one of ``figures``).
    report : callable (table, config) -> str
        Markdown: the paper's claims next to the measured numbers, embedding the figures.
    figures : tuple[str, ...]
        The file stems ``plot`` returns.
    modules : tuple[str, ...]
        Further modules whose code computes the cells (beyond those defining ``Config``,
        ``cells`` and ``run_cell``); part of :meth:`definition_hash`.
    data_field : str or None
        The ``Config`` field (``str | None``, a folder path) that ``syngeo reproduce NAME
        --data DIR`` sets (:meth:`with_data`); ``None``: the experiment reads no dataset folder.

    Files shared by cells (a network pretrained once, a downloaded dataset) may be kept in the
    sweep's cache folder, ``OUT/cache``: inside ``run_cell``, :func:`syngeo.app.sweep.cache_dir`
    returns it (``None`` outside a sweep). Name each file by everything that determines its
    content and write it all-or-nothing (:func:`syngeo.app.outputs.atomic_write`); ``--force``
    empties the folder with the cells.
    """

    name: str
    title: str
    Config: type
    quick: Callable[[], Any]
    cells: Callable[[Any], list[dict]]
    run_cell: Callable[[Any, dict], list[dict]]
    summarise: Callable[[Any, Any], dict]
    plot: Callable[[Any, Any], dict]
    report: Callable[[Any, Any], str]
    figures: tuple[str, ...] = ()
    modules: tuple[str, ...] = ()
    data_field: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise InputError(f"an experiment needs a non-empty name, got {self.name!r}")
        if not (isinstance(self.Config, type) and dataclasses.is_dataclass(self.Config)):
            raise InputTypeError(
                f"Config of {self.name!r} must be a dataclass, got {self.Config!r}"
            )
        for attr in ("quick", "cells", "run_cell", "summarise", "plot", "report"):
            if not callable(getattr(self, attr)):
                raise InputTypeError(f"{attr} of experiment {self.name!r} must be callable")
        fields = {f.name for f in dataclasses.fields(self.Config)}
        if self.data_field is not None and self.data_field not in fields:
            raise InputError(
                f"data_field {self.data_field!r} of {self.name!r} is not a field of "
                f"{self.Config.__name__}"
            )
        object.__setattr__(self, "figures", tuple(self.figures))
        object.__setattr__(self, "modules", tuple(self.modules))

    def config(self, *, quick: bool = False) -> Any:
        """The paper's configuration, or the quick preset."""
        config = self.quick() if quick else self.Config()
        if not isinstance(config, self.Config):
            raise InputTypeError(
                f"quick() of {self.name!r} returned a {type(config).__name__}, not a "
                f"{self.Config.__name__}"
            )
        return config

    def with_data(self, config: Any, folder: str | Path) -> Any:
        """``config`` reading its dataset from ``folder`` (``syngeo reproduce NAME --data DIR``).

        The folder is stored as an absolute path (it is part of the sweep's config, so a rerun
        from another working folder resumes the same sweep). Raises :class:`syngeo.InputError`
        when the experiment reads no dataset folder, or ``folder`` is missing, a file or empty.
        """
        from syngeo.errors import DataFileError

        if self.data_field is None:
            raise InputError(
                f"experiment {self.name!r} reads no dataset folder, so it takes no --data; it "
                "runs on data that ship with syngeo or are generated"
            )
        path = Path(folder).expanduser()
        if not path.exists():
            raise DataFileError(f"--data {path}: no such folder")
        if not path.is_dir():
            raise DataFileError(f"--data {path} is a file; give the folder that holds the dataset")
        if not any(path.iterdir()):
            raise DataFileError(f"--data {path}: the folder is empty")
        return dataclasses.replace(config, **{self.data_field: str(path.resolve())})

    @property
    def source_modules(self) -> tuple[str, ...]:
        """The modules whose source defines the cells' computation (sorted)."""
        names = {self.Config.__module__, self.cells.__module__, self.run_cell.__module__}
        return tuple(sorted(names | set(self.modules)))

    def definition_hash(self) -> str:
        """16 hex digits identifying the code that computes the cells.

        SHA-256 over the name, the Config's field names and the source text of
        :attr:`source_modules`: editing any of them (or installing another version of the file)
        changes the hash, so a stored sweep is never resumed with different code.
        """
        digest = hashlib.sha256()
        fields = [f.name for f in dataclasses.fields(self.Config)]
        digest.update(json.dumps([self.name, fields]).encode("utf-8"))
        for module_name in self.source_modules:
            module = importlib.import_module(module_name)
            path = getattr(module, "__file__", None)
            digest.update(module_name.encode("utf-8") + b"\0")
            if path is not None:
                digest.update(Path(path).read_bytes())
        return digest.hexdigest()[:16]

    def __repr__(self) -> str:
        return f"Experiment({self.name!r}, {self.title!r})"
