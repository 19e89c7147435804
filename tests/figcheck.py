"""Image-level checks of the figures syngeo draws (imported by the figure tests).

A figure passes when its rendered PNG is not blank (enough non-background pixels, more than one
colour) and it has the expected number of panels (visible axes that draw something).
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np


def _pixels(figure_or_png) -> np.ndarray:
    import matplotlib.image

    if isinstance(figure_or_png, (str, Path)):
        return np.asarray(matplotlib.image.imread(str(figure_or_png)))
    buffer = io.BytesIO()
    figure_or_png.savefig(buffer, format="png", dpi=60)
    buffer.seek(0)
    return np.asarray(matplotlib.image.imread(buffer))


def data_panels(fig) -> list:
    """The visible axes of ``fig`` that draw data (lines, collections, images or patches).

    Colour bars count as panels only if they are not colour bars: axes created by
    ``fig.colorbar`` are skipped.
    """
    panels = []
    for ax in fig.axes:
        if not ax.get_visible() or not ax.axison:
            continue
        if getattr(ax, "_colorbar", None) is not None or ax.get_label() == "<colorbar>":
            continue
        if ax.lines or ax.collections or ax.images or ax.patches:
            panels.append(ax)
    return panels


def assert_figure(fig, *, panels: int | None = None, min_ink: float = 0.01) -> None:
    """Fail unless ``fig`` renders non-blank and has ``panels`` data panels.

    ``min_ink`` is the least fraction of pixels that differ from the background (white).
    """
    rgb = _pixels(fig)[..., :3].astype(float)
    if rgb.max() > 1.0:
        rgb = rgb / 255.0
    ink = np.mean(np.any(np.abs(rgb - 1.0) > 0.05, axis=-1))
    assert ink >= min_ink, f"figure looks blank: {ink:.4f} of the pixels are not background"
    colours = np.unique((rgb * 31).round().reshape(-1, 3), axis=0)
    assert len(colours) > 2, "figure has a single colour besides the background"
    if panels is not None:
        found = len(data_panels(fig))
        assert found == panels, f"expected {panels} data panels, found {found}"


def assert_png(path, *, min_ink: float = 0.01, min_dpi_width: int | None = None) -> None:
    """Fail unless the PNG at ``path`` is not blank (and, optionally, at least that wide)."""
    rgb = _pixels(path)[..., :3].astype(float)
    ink = np.mean(np.any(np.abs(rgb - 1.0) > 0.05, axis=-1))
    assert ink >= min_ink, f"{path} looks blank: {ink:.4f} of the pixels are not background"
    if min_dpi_width is not None:
        assert rgb.shape[1] >= min_dpi_width, f"{path} is {rgb.shape[1]} px wide"
