"""Shared matplotlib style and small helpers for every figure syngeo draws.

Figures are made with the object-oriented API on a non-interactive backend (Agg), so commands work
on machines without a display.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import matplotlib

matplotlib.use("Agg", force=False)

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

__all__ = ["POTENTIAL_COLORS", "color_for", "paper_style", "subplots"]

#: One colour per potential family, used by every figure so a reader learns them once.
POTENTIAL_COLORS = {
    "NE": "#1b9e77",
    "2-norm": "#7570b3",
    "3-norm": "#d95f02",
    "1.5-norm": "#66a61e",
    "2.5-norm": "#e7298a",
}

_STYLE = {
    "figure.dpi": 110,
    "savefig.dpi": 150,
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.25,
    "legend.frameon": False,
    "legend.fontsize": 8,
    "lines.linewidth": 1.5,
}


def color_for(name: str, fallback_index: int = 0) -> str:
    """The colour of potential ``name`` (e.g. ``"3-norm"``), or a cycle colour."""
    if name in POTENTIAL_COLORS:
        return POTENTIAL_COLORS[name]
    cycle = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    return cycle[fallback_index % len(cycle)]


@contextlib.contextmanager
def paper_style() -> Iterator[None]:
    """Context manager applying syngeo's figure style."""
    with plt.rc_context(_STYLE):
        yield


def subplots(
    nrows: int = 1, ncols: int = 1, *, width: float = 3.2, height: float = 2.6, **kwargs
) -> tuple[Figure, object]:
    """``plt.subplots`` with panel-based sizing and the syngeo style applied."""
    with paper_style():
        fig, axes = plt.subplots(
            nrows, ncols, figsize=(width * ncols, height * nrows), constrained_layout=True, **kwargs
        )
    return fig, axes
