"""A tiny, deliberately slow experiment that exercises the sweep machinery (not a paper figure).

Each cell ``{"index": i}`` waits ``delay`` seconds, optionally appends one line to
``<log_dir>/cell-<i>.log`` (so a test can count how often each cell was computed), and returns
two rows with deterministic values drawn from ``numpy.random.default_rng(seed + i)``. A cell whose
index is in ``fail_on`` raises ``ValueError``.

:data:`EXPERIMENT` is its :class:`~syngeo.app.experiments.base.Experiment` object (name
``"_testing"``); it is not listed in :data:`syngeo.app.experiments.EXPERIMENTS`.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from syngeo.app.experiments.base import Experiment

__all__ = ["EXPERIMENT", "Config", "cells", "plot", "report", "run_cell", "summarise"]


@dataclass(frozen=True)
class Config:
    """Settings of the test experiment.

    Attributes
    ----------
    n_cells : int
        Number of cells.
    delay : float
        Seconds each cell sleeps (makes interruptions land mid-sweep).
    seed : int
        Base seed of the rows' random values.
    log_dir : str
        Folder where each computed cell appends a line (``""``: no log).
    fail_on : tuple[int, ...]
        Cell indices that raise ``ValueError``.
    crash_on : tuple[int, ...]
        Cell indices whose process exits at once (``os._exit``), like a worker killed by the
        system; only meaningful with worker processes.
    """

    n_cells: int = 8
    delay: float = 0.2
    seed: int = 0
    log_dir: str = ""
    fail_on: tuple[int, ...] = ()
    crash_on: tuple[int, ...] = ()

    @classmethod
    def quick(cls) -> Config:
        return cls(n_cells=4, delay=0.0)


def cells(config: Config) -> list[dict]:
    return [{"index": i} for i in range(config.n_cells)]


def run_cell(config: Config, cell: dict) -> list[dict]:
    index = int(cell["index"])
    time.sleep(config.delay)
    if index in config.fail_on:
        raise ValueError(f"cell {index} fails on purpose")
    if index in config.crash_on:
        os._exit(3)
    rng = np.random.default_rng(config.seed + index)
    values = rng.normal(size=2)
    if config.log_dir:
        with open(Path(config.log_dir) / f"cell-{index}.log", "a", encoding="utf-8") as fh:
            fh.write("computed\n")
    return [
        {"index": index, "quantity": name, "value": float(v)}
        for name, v in zip(("a", "b"), values, strict=True)
    ]


def plot(df: pd.DataFrame, config: Config) -> dict:
    from syngeo.app.plotting import subplots

    fig, ax = subplots()
    for name, group in df.groupby("quantity"):
        ax.plot(group["index"], group["value"], marker="o", label=name)
    ax.set_xlabel("cell")
    ax.set_ylabel("value")
    ax.legend()
    return {"testing": fig}


def report(df: pd.DataFrame, config: Config) -> str:
    return f"# Test experiment\n\n{len(df)} rows.\n\n![values](testing.png)\n"


def summarise(df: pd.DataFrame, config: Config) -> dict:
    return {"n_rows": len(df), "mean_value": float(df["value"].mean()) if len(df) else None}


EXPERIMENT = Experiment(
    name="_testing",
    title="Sweep machinery test experiment",
    Config=Config,
    quick=Config.quick,
    cells=cells,
    run_cell=run_cell,
    summarise=summarise,
    plot=plot,
    report=report,
    figures=("testing",),
)
