"""Reproduced experiments, one module per figure (or family of figures).

The contract every experiment module follows
--------------------------------------------
An experiment module ``syngeo.app.experiments.<module>`` defines, for each figure it reproduces:

``Config``
    A frozen dataclass whose defaults are the paper's protocol, with a ``quick()`` classmethod
    returning a preset that finishes in well under a minute on 2 CPU cores. JSON-serialisable
    fields only (it is written to the sweep manifest).
``cells(config) -> list[dict]``
    The independent units of work (e.g. one per potential x width x seed). Each cell is a dict of
    JSON-serialisable values; the sweep store keys finished work on it.
``run_cell(config, cell) -> list[dict]``
    Pure and picklable (a module-level function): the tidy rows (one per cell x measured quantity
    or per candidate) that the cell contributes. All randomness comes from seeds in the cell.
``plot(df, config) -> dict[str, matplotlib.figure.Figure]``
    Figures in the paper's layout, keyed by file stem.
``report(df, config) -> str``
    Markdown: the paper's claim next to what was measured (numbers), embedding the figures.
``summary(df, config) -> dict``
    The headline numbers (JSON-serialisable), written to ``summary.json``.

:data:`REGISTRY` maps the names accepted by ``syngeo reproduce NAME`` to ``(module, prefix)``:
the module's functions above are looked up as ``<prefix>Config``, ``<prefix>cells``, ... so one
module can hold several related figures (prefix ``""`` for a module with one figure).
:func:`run` returns the table of every cell through :func:`syngeo.app.sweep.run_sweep` (the path
``syngeo reproduce`` takes too): resumably in a folder, in a process pool or on a Dask cluster.
``run_cell`` must be a module-level function (pickled by reference for the workers).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import pandas as pd

__all__ = ["REGISTRY", "ExperimentSpec", "get", "run"]


@dataclass(frozen=True)
class ExperimentSpec:
    """Where ``syngeo reproduce NAME`` finds a figure's functions."""

    name: str
    module: str
    prefix: str
    title: str


REGISTRY: dict[str, ExperimentSpec] = {
    spec.name: spec
    for spec in (
        ExperimentSpec(
            "fig3a",
            "syngeo.app.experiments.regression",
            "fig3a_",
            "Pogodin et al. Fig. 3A: linear regression, Gaussianity and change magnitude vs width",
        ),
        ExperimentSpec(
            "fig6",
            "syngeo.app.experiments.regression",
            "fig6_",
            "Pogodin et al. Fig. 6: linear regression, both correlation powers",
        ),
        ExperimentSpec(
            "fig3b",
            "syngeo.app.experiments.robustness",
            "",
            "Pogodin et al. Fig. 3B: robustness of the inferred potential",
        ),
        ExperimentSpec(
            "surace-fig1",
            "syngeo.app.experiments.surace",
            "fig1_",
            "Surace & Brea Fig. 1: steepest descent under three metrics",
        ),
        ExperimentSpec(
            "surace-fig2",
            "syngeo.app.experiments.surace",
            "fig2_",
            "Surace & Brea Fig. 2: binomial release flow fields",
        ),
        ExperimentSpec(
            "raman-k",
            "syngeo.app.experiments.raman",
            "k_",
            "Raman et al.: predicted vs measured learning rate",
        ),
        ExperimentSpec(
            "raman-difficulty",
            "syngeo.app.experiments.raman",
            "difficulty_",
            "Raman et al.: local task difficulty and the learning condition",
        ),
        ExperimentSpec(
            "raman-size",
            "syngeo.app.experiments.raman",
            "size_",
            "Raman et al.: learning rate vs network size and the optimal size N*",
        ),
        ExperimentSpec(
            "raman-geometry",
            "syngeo.app.experiments.raman",
            "geometry_",
            "Noisy three-component plasticity under NE vs Euclidean geometry",
        ),
    )
}


def get(name: str) -> SimpleNamespace:
    """The experiment ``name`` as a namespace with Config, cells, run_cell, plot, report, summary."""
    try:
        spec = REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(REGISTRY))
        raise ValueError(f"unknown experiment {name!r}; choose one of: {known}") from None
    module = importlib.import_module(spec.module)
    parts = {}
    for attr in ("Config", "cells", "run_cell", "plot", "report", "summary"):
        parts[attr] = getattr(module, spec.prefix + attr)
    return SimpleNamespace(spec=spec, **parts)


def run(
    name: str,
    config: Any | None = None,
    *,
    out: Any | None = None,
    workers: int = 1,
    scheduler: str | None = None,
    force: bool = False,
    quiet: bool = True,
) -> pd.DataFrame:
    """Run every cell of experiment ``name`` and return the tidy table.

    The cells go through :func:`syngeo.app.sweep.run_sweep`, the same path as
    ``syngeo reproduce``: with ``out`` the finished cells are stored there (and a rerun resumes);
    without it they are stored in a temporary folder that is removed afterwards. ``workers`` and
    ``scheduler`` choose the executor (see :mod:`syngeo.app.sweep`).
    """
    import tempfile

    from syngeo.app.sweep import run_sweep

    exp = get(name)
    config = exp.Config() if config is None else config
    if out is not None:
        return run_sweep(
            exp, config, out, workers=workers, scheduler=scheduler, force=force, quiet=quiet
        ).table
    with tempfile.TemporaryDirectory(prefix=f"syngeo-{name}-") as tmp:
        return run_sweep(exp, config, tmp, workers=workers, scheduler=scheduler, quiet=quiet).table
