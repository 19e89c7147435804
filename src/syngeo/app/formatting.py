"""Numbers and tables in the text that syngeo writes (reports, terminal tables): one formatter.

:func:`fmt` turns one value into text: numbers with a format spec (``".3g"`` by default), a fixed
placeholder for missing values (``None``, NaN, ±inf), ``yes``/``no`` for booleans, integers
without a decimal point. :func:`markdown_table` writes a GitHub-flavoured Markdown table of rows
of such values, escaping the ``|`` that would break a cell.

:func:`plural` writes a count with its noun (``1 cell``, ``3 cells``). On the terminal,
:func:`console_table` and :func:`summary_table` build the Rich tables that end a command's output
(values through :func:`fmt`, so a summary never shows a 16-digit float).

Examples
--------
>>> fmt(0.012345), fmt(float("nan")), fmt(None, missing="–"), fmt(3), fmt(True)
('0.0123', 'n/a', '–', '3', 'yes')
>>> plural(1, "cell"), plural(3, "cell"), plural(0, "synapse"), plural(2, "was", "were")
('1 cell', '3 cells', '0 synapses', '2 were')
>>> print(markdown_table(["x", "y"], [[1, 0.5], ["a|b", None]]))
| x | y |
| --- | --- |
| 1 | 0.5 |
| a\\|b | n/a |
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

__all__ = [
    "console_table",
    "fmt",
    "frame_to_markdown",
    "markdown_table",
    "plural",
    "summary_table",
]


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


def plural(count: int, singular: str, plural_form: str | None = None) -> str:
    """``count`` and the noun in the form that agrees with it: ``1 cell``, ``0 cells``, ``2 cells``.

    ``plural_form`` defaults to ``singular + "s"``; give it for irregular nouns.
    """
    word = singular if count == 1 else (plural_form or singular + "s")
    return f"{fmt(count)} {word}"


def console_table(
    header: Sequence[Any],
    rows: Iterable[Sequence[Any]],
    *,
    title: str | None = None,
    spec: str = ".4g",
    missing: str = "n/a",
) -> Any:
    """A ``rich.table.Table`` of ``rows`` under ``header``, every value through :func:`fmt`.

    Numbers are right-aligned. Print it with a Rich console (``console.print(table)``).
    """
    from rich import box
    from rich.table import Table

    rows = [list(r) for r in rows]
    table = Table(title=title, box=box.SIMPLE_HEAD, title_justify="left", highlight=False)
    for j, name in enumerate(header):
        numeric = bool(rows) and all(
            isinstance(r[j], numbers.Real) and not isinstance(r[j], bool) for r in rows
        )
        table.add_column(str(name), justify="right" if numeric else "left", overflow="fold")
    for row in rows:
        if len(row) != len(header):
            raise ValueError(f"a row has {len(row)} values but the header has {len(header)}")
        table.add_row(*(fmt(v, spec, missing=missing) for v in row))
    return table


def summary_table(
    items: Mapping[str, Any] | Iterable[tuple[str, Any]],
    *,
    title: str | None = None,
    spec: str = ".4g",
) -> Any:
    """A two-column Rich table (quantity, value) of a command's headline numbers.

    ``items`` maps a label to a value; labels written as identifiers (``best_model``) are shown
    with spaces. Values that are not scalars (lists, dicts) are left out: they belong in a table
    of their own or in ``summary.json``.
    """
    pairs = items.items() if isinstance(items, Mapping) else items
    rows = [
        (str(key).replace("_", " "), value)
        for key, value in pairs
        if value is None
        or isinstance(value, (str, numbers.Number))
        or type(value).__name__ == "bool_"
    ]
    table = console_table(["quantity", "value"], rows, title=title, spec=spec)
    table.columns[1].justify = "right"
    return table
