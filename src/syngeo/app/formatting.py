"""Numbers and tables in the text that syngeo writes (reports, terminal tables): one formatter.

:func:`fmt` turns one value into text: numbers with a format spec (``".3g"`` by default), a fixed
placeholder for missing values (``None``, NaN, ±inf), ``yes``/``no`` for booleans, integers
without a decimal point. :func:`markdown_table` writes a GitHub-flavoured Markdown table of rows
of such values, escaping the ``|`` that would break a cell.

Examples
--------
>>> fmt(0.012345), fmt(float("nan")), fmt(None, missing="–"), fmt(3), fmt(True)
('0.0123', 'n/a', '–', '3', 'yes')
>>> print(markdown_table(["x", "y"], [[1, 0.5], ["a|b", None]]))
| x | y |
| --- | --- |
| 1 | 0.5 |
| a\\|b | n/a |
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Sequence
from typing import Any

__all__ = ["fmt", "frame_to_markdown", "markdown_table"]


def fmt(value: Any, spec: str = ".3g", *, missing: str = "n/a") -> str:
    """``value`` as text: reals with ``spec``, ``missing`` for None/NaN/inf, ints and bools plainly.

    Anything else (strings, names) is returned as ``str(value)``.
    """
    if value is None:
        return missing
    if isinstance(value, bool) or type(value).__name__ == "bool_":
        return "yes" if value else "no"
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        x = float(value)
        return format(x, spec) if math.isfinite(x) else missing
    return str(value)


def _cell(value: Any, spec: str, missing: str) -> str:
    return fmt(value, spec, missing=missing).replace("|", "\\|")


def markdown_table(
    header: Sequence[Any],
    rows: Iterable[Sequence[Any]],
    *,
    spec: str = ".3g",
    missing: str = "n/a",
) -> str:
    """A Markdown table: ``header`` then one line per row, each value through :func:`fmt`."""
    header = [_cell(h, spec, missing) for h in header]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    for row in rows:
        row = list(row)
        if len(row) != len(header):
            raise ValueError(f"a row has {len(row)} values but the header has {len(header)}")
        lines.append("| " + " | ".join(_cell(v, spec, missing) for v in row) + " |")
    return "\n".join(lines)


def frame_to_markdown(frame: Any, *, spec: str = ".4g", missing: str = "") -> str:
    """:func:`markdown_table` of a pandas DataFrame (its columns as the header, no index)."""
    return markdown_table(
        list(frame.columns), frame.itertuples(index=False), spec=spec, missing=missing
    )
