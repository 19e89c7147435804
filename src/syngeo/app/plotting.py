"""Shared matplotlib style and small helpers for every figure syngeo draws.

Figures are made with the object-oriented API on a non-interactive backend (Agg), so commands work
on machines without a display.

Conventions every figure follows:

* Colours and markers: one per geometry, from :func:`geometry_style` (never from the order in
  which a figure draws its curves); quantities that are not geometries (noise levels, initial
  families, data) use greys, line styles or :func:`noise_color`, so that a hue always means a
  geometry.
* Notation for potentials (as in docs/inference.md and docs/theory.md §2): φ is the potential of
  the plasticity that produced the weights (the hidden geometry of ``syngeo demo``, the
  "trained with" potential of fig4/fig7); ψ is a candidate potential the weights are *read*
  with, and Δ_ψ = ∇ψ(w) − ∇ψ(w0) its dual change. When a figure does not distinguish the two
  (ψ = φ), it writes φ. No other letter names a potential in a figure.
"""

from __future__ import annotations

import contextlib
import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg", force=False)

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

__all__ = [
    "PNORM_CMAP",
    "POTENTIAL_COLORS",
    "GeometryStyle",
    "color_for",
    "geometry_style",
    "noise_color",
    "paper_style",
    "pnorm_exponent",
    "subplots",
]

#: Every p-norm takes the colour of its p on this map (p in [1, 4], clipped), so nearby p look alike
#: and a refined 2.97-norm looks like the 3-norm; NE keeps a green outside the map's hues.
PNORM_CMAP = "plasma"
_PNORM_RANGE = (1.0, 4.0)
_NE_COLOR = "#1b9e77"
_OTHER_COLORS = ("#e6ab02", "#a6761d", "#666666", "#e7298a", "#66a61e", "#1f78b4")

_MARKERS = {"ne": "s", "pnorm": "o", "hypentropy": "^", "tsallis": "D", "other": "X"}


@dataclass(frozen=True)
class GeometryStyle:
    """How every figure draws one geometry: ``color``, ``marker`` and legend ``label``."""

    color: str
    marker: str
    label: str

    def kwargs(self) -> dict[str, str]:
        """``color``/``marker``/``label`` keywords for ``Axes.plot`` and ``Axes.scatter``."""
        return {"color": self.color, "marker": self.marker, "label": self.label}


_PNORM_RE = re.compile(r"^\s*(?:p\s*=\s*)?([0-9]*\.?[0-9]+)(?:\s*-?\s*norm)?\s*$", re.IGNORECASE)
_NE_NAMES = {"ne", "negative entropy", "negentropy", "negative-entropy"}


def pnorm_exponent(name: str) -> float | None:
    """The p of a p-norm named like ``"3-norm"``, ``"2.5-norm"`` or ``"p = 3"``; else None."""
    match = _PNORM_RE.match(str(name))
    return float(match.group(1)) if match else None


def _pnorm_label(p: float) -> str:
    return f"{p:g}-norm"


def _pnorm_color(p: float) -> str:
    lo, hi = _PNORM_RANGE
    frac = 0.85 * (min(max(p, lo), hi) - lo) / (hi - lo)
    return str(matplotlib.colors.to_hex(matplotlib.colormaps[PNORM_CMAP](frac)))


#: The colours of the geometries most figures name (derived from :func:`geometry_style`'s rule).
POTENTIAL_COLORS = {"NE": _NE_COLOR, "2-norm": _pnorm_color(2.0), "3-norm": _pnorm_color(3.0)}


def geometry_style(name: str) -> GeometryStyle:
    """The one colour, marker and label of geometry ``name`` across all figures.

    ``name`` is a potential's name (``"NE"``, ``"3-norm"``, ``"2.967-norm"``, ``"hypentropy(β=0.1)"``
    …) or a p written as ``"p = 2.5"``. The result depends on the name only, never on the order
    in which a figure draws its curves.

    >>> geometry_style("3-norm").color == geometry_style("3-norm").color
    True
    >>> geometry_style("NE").marker, geometry_style("2.5-norm").marker
    ('s', 'o')
    """
    text = str(name).strip()
    if text.lower() in _NE_NAMES:
        return GeometryStyle(_NE_COLOR, _MARKERS["ne"], "NE")
    p = pnorm_exponent(text)
    if p is not None:
        return GeometryStyle(_pnorm_color(p), _MARKERS["pnorm"], _pnorm_label(p))
    lowered = text.lower()
    for family in ("hypentropy", "tsallis"):
        if lowered.startswith(family):
            index = 0 if family == "hypentropy" else 1
            return GeometryStyle(_OTHER_COLORS[index], _MARKERS[family], text)
    index = 2 + zlib.crc32(text.encode("utf-8")) % (len(_OTHER_COLORS) - 2)
    return GeometryStyle(_OTHER_COLORS[index], _MARKERS["other"], text)


def color_for(name: str, fallback_index: int = 0) -> str:
    """The colour of geometry ``name`` (see :func:`geometry_style`).

    ``fallback_index`` is accepted for old callers and ignored: a colour never depends on the
    order of drawing.
    """
    del fallback_index
    return geometry_style(name).color


def noise_color(level: float) -> str:
    """The grey of a relative measurement-noise level (0 black, 50 % and above light grey).

    Depends on the level only (not on how many levels a figure draws); the square root spreads
    the usual levels 0-20 % apart. Greys keep hues for the geometries.

    >>> noise_color(0.0), noise_color(0.5)
    ('#000000', '#c7c7c7')
    """
    frac = min(max(float(level), 0.0) / 0.5, 1.0) ** 0.5
    return str(matplotlib.colors.to_hex((0.78 * frac,) * 3))


_STYLE = {
    "figure.dpi": 110,
    "savefig.dpi": 200,
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
