"""Options that several commands share, each declared once.

A command uses an alias as the annotation of its parameter and gives the default in its own
signature (defaults differ between commands: ``--workers`` is 2 for ``fit-spines`` and 1
elsewhere), so the option's name, short form and help text read the same in every ``--help``::

    def command(force: Force = False, as_json: Json = False, quiet: Quiet = False) -> None: ...

Where two commands' options share a name but not a meaning, there are two aliases:
``--force`` of a one-shot command replaces whatever ``--out`` holds (:data:`Force`); in a
resumable sweep a rerun of the same command already reuses the finished cells, so ``--force``
is needed only when ``--out`` holds a different run (:data:`ForceSweep`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

__all__ = [
    "Bootstrap",
    "Estimator",
    "Force",
    "ForceSweep",
    "Json",
    "OptionalOut",
    "Out",
    "Quiet",
    "Workers",
]

#: ``--out``/``-o`` with a default folder (given by the command).
Out = Annotated[Path, typer.Option("--out", "-o", help="Output folder.")]

#: ``--out``/``-o`` of a command that writes files only when asked (default ``None``).
OptionalOut = Annotated[
    Path | None,
    typer.Option(
        "--out", "-o", help="Write table, summary, figures and report here.", show_default=False
    ),
]

#: ``--force`` of a one-shot command: the results in ``--out`` are replaced.
Force = Annotated[bool, typer.Option("--force", help="Replace earlier results in --out.")]

#: ``--force`` of a resumable sweep: rerunning the same command resumes without it.
ForceSweep = Annotated[
    bool, typer.Option("--force", help="Replace the results of a different run in --out.")
]

#: ``--json``: the command's summary on stdout; progress and warnings stay on stderr.
Json = Annotated[
    bool, typer.Option("--json", help="Print the summary as JSON on stdout (nothing else).")
]

#: ``--quiet``/``-q``: no progress bar, no table; errors are still reported.
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="Print nothing on success.")]

#: ``--workers``/``-j``: processes on this machine that compute the cells of a sweep.
Workers = Annotated[int, typer.Option("--workers", "-j", help="Local worker processes.")]

#: ``--bootstrap``/``-b`` of the geometry ranking (:func:`syngeo.infer_geometry`).
Bootstrap = Annotated[
    int, typer.Option("--bootstrap", "-b", help="Bootstrap resamples of the synapses (0: none).")
]

#: ``--estimator`` of the geometry ranking (:data:`syngeo.inference.ESTIMATORS`).
Estimator = Annotated[
    str, typer.Option("--estimator", help="likelihood (AIC of the dual-Gaussian model) or cdf.")
]
