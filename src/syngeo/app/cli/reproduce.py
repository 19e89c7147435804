"""``syngeo reproduce``: rerun a paper figure as a resumable sweep and write table, figures, report.

Every :class:`~syngeo.app.experiments.base.Experiment` in :data:`syngeo.app.experiments.EXPERIMENTS`
works here. The cells are run by :func:`syngeo.app.sweep.run_sweep` in the output folder (so an
interrupted run continues where it stopped, with the same code), then the experiment's ``plot``,
``report`` and ``summarise`` are written next to them by :func:`syngeo.app.outputs.write_outputs`.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import typer

from syngeo.app.cli._app import app, console, fail
from syngeo.app.cli._options import ForceSweep, Json, Quiet, Workers

__all__ = ["ReproduceResult", "list_experiments", "reproduce"]

_EPILOG = (
    "Examples:\n\n"
    "  syngeo reproduce --list\n\n"
    "  syngeo reproduce fig3b --quick\n\n"
    "  syngeo reproduce fig6 --workers 2 --out runs/fig6\n\n"
    "  syngeo reproduce fig7a --data mnist/      # MNIST IDX files\n\n"
    "  syngeo reproduce fig6 --scheduler tcp://scheduler:8786\n\n"
    "--scheduler runs the cells on an existing Dask cluster. Rerunning an interrupted command "
    "continues it: finished cells are kept in OUT/cells."
)


@dataclass(frozen=True)
class ReproduceResult:
    """What :func:`reproduce` wrote.

    Attributes
    ----------
    name : str
        The experiment (``syngeo reproduce --list``).
    preset : str
        ``"quick"`` or ``"paper"``.
    out : pathlib.Path
        The output folder.
    files : dict[str, pathlib.Path]
        Files written, keyed by a short name (``parquet``, ``csv``, ``summary``, ``report``,
        ``<figure>.png``, ``<figure>.pdf``).
    sweep : dict
        ``SweepResult.to_dict()``: cells computed and reused, seconds.
    summary : dict
        The experiment's headline numbers (also in ``summary.json``).
    """

    name: str
    preset: str
    out: Path
    files: dict[str, Path] = field(default_factory=dict)
    sweep: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "experiment": self.name,
            "preset": self.preset,
            "out": str(self.out),
            "files": {k: str(v) for k, v in self.files.items()},
            "sweep": dict(self.sweep),
            "summary": self.summary,
        }


def list_experiments() -> list[dict[str, Any]]:
    """The registered experiments, in registry order.

    Each entry: name, title, figure file stems, whether ``--data`` applies, the number of cells
    of the quick and full presets, and the measured seconds of the quick preset
    (:data:`syngeo.app.experiments.QUICK_SECONDS`; ``None`` where not measured).
    """
    from syngeo.app.experiments import EXPERIMENTS, QUICK_SECONDS

    entries = []
    for e in EXPERIMENTS:
        entries.append(
            {
                "name": e.name,
                "title": e.title,
                "figures": list(e.figures),
                "data": e.data_field is not None,
                "quick_cells": len(e.cells(e.config(quick=True))),
                "full_cells": len(e.cells(e.config())),
                "quick_seconds": QUICK_SECONDS.get(e.name),
            }
        )
    return entries


def default_out(name: str, *, quick: bool) -> Path:
    """``./syngeo-NAME`` (``./syngeo-NAME-quick`` for the quick preset, so both can coexist)."""
    return Path(f"syngeo-{name}-quick" if quick else f"syngeo-{name}")


def reproduce(
    name: str,
    *,
    quick: bool = False,
    out: str | Path | None = None,
    workers: int = 1,
    scheduler: str | None = None,
    force: bool = False,
    quiet: bool = True,
    data: str | Path | None = None,
) -> ReproduceResult:
    """Run experiment ``name`` as a sweep in ``out`` and write its table, figures and report.

    ``data`` is a dataset folder for experiments that read one (``--data``; see
    :meth:`Experiment.with_data <syngeo.app.experiments.base.Experiment.with_data>`). Raises
    :class:`syngeo.InputError` for an unknown name, a ``data`` the experiment cannot take, or
    when ``out`` holds cells computed by other code, ``FileExistsError`` when ``out`` holds a
    different sweep (see ``force``).
    """
    from syngeo import __version__
    from syngeo.app.experiments import get
    from syngeo.app.formatting import plural
    from syngeo.app.outputs import to_jsonable, write_outputs
    from syngeo.app.sweep import run_sweep

    exp = get(name)
    config = exp.config(quick=quick)
    if data is not None:
        config = exp.with_data(config, data)
    preset = "quick" if quick else "paper"
    out = default_out(name, quick=quick) if out is None else Path(out)
    swept = run_sweep(
        exp, config, out, workers=workers, scheduler=scheduler, force=force, quiet=quiet
    )
    table = swept.table
    figures = exp.plot(table, config)
    report = exp.report(table, config)
    headline = to_jsonable(exp.summarise(table, config))
    command = (
        f"syngeo reproduce {name}"
        + (" --quick" if quick else "")
        + (f" --data {data}" if data is not None else "")
    )
    report = (
        report.rstrip()
        + "\n\n---\n\n"
        + f"Generated by `{command}` (syngeo {__version__}, {preset} preset): "
        + f"{plural(swept.n_cells, 'cell')} ({swept.n_computed} computed in this run, "
        + f"{swept.n_reused} reused), {plural(len(table), 'row')} in `results.parquet`.\n"
    )
    summary = {
        "experiment": name,
        "title": exp.title,
        "preset": preset,
        "syngeo_version": __version__,
        "config": to_jsonable(dataclasses.asdict(config)),
        "sweep": swept.to_dict(),
        "results": headline,
    }
    files = write_outputs(out, table=table, summary=summary, figures=figures, report=report)
    return ReproduceResult(
        name=name, preset=preset, out=out, files=files, sweep=swept.to_dict(), summary=headline
    )


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "not measured"
    if seconds < 90:
        return f"{max(1, round(seconds))} s"
    return f"{seconds / 60:.0f} min"


def _print_list(as_json: bool) -> None:
    entries = list_experiments()
    if as_json:
        print(json.dumps(entries, indent=2))
        return
    from syngeo.app.experiments import QUICK_SECONDS_MACHINE
    from syngeo.app.formatting import console_table, plural

    rows = [
        (
            e["name"] + (" (--data)" if e["data"] else ""),
            e["title"],
            _duration(e["quick_seconds"]),
            plural(e["quick_cells"], "cell"),
            plural(e["full_cells"], "cell"),
        )
        for e in entries
    ]
    console.print(
        console_table(
            ["NAME", "reproduces", "--quick time", "--quick cells", "full cells"],
            rows,
            title="syngeo reproduce NAME",
        )
    )
    console.print(
        f"--quick time: measured {QUICK_SECONDS_MACHINE}, start-up included; several times "
        "longer on a busy machine. The full preset has not been timed: it runs the cells "
        "listed, at the paper's sizes, so expect many times the quick time; spread it with "
        "--workers N or --scheduler. (--data): the experiment can read a dataset folder.",
        highlight=False,
    )


def _print_result(result: ReproduceResult) -> None:
    from syngeo.app.formatting import plural, summary_table

    sweep = result.sweep
    console.print(
        summary_table(
            result.summary,
            title=f"{result.name} ({result.preset} preset): "
            f"{plural(sweep['n_cells'], 'cell')}, {sweep['n_computed']} computed, "
            f"{sweep['n_reused']} reused, {sweep['seconds']:.1f} s",
        )
    )
    console.print(
        f"wrote {plural(len(result.files), 'file')} to {result.out}/ (see report.md)",
        highlight=False,
    )


@app.command("reproduce", epilog=_EPILOG)
def reproduce_command(
    name: Annotated[
        str | None,
        typer.Argument(
            help="Experiment to reproduce (fig3a, fig6, fig3b, ...); omit it to list them.",
            show_default=False,
        ),
    ] = None,
    quick: Annotated[
        bool, typer.Option("--quick", help="Small preset (times: syngeo reproduce --list).")
    ] = False,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            help="Output folder.",
            show_default="./syngeo-NAME, or ./syngeo-NAME-quick with --quick",
        ),
    ] = None,
    data: Annotated[
        Path | None,
        typer.Option(
            "--data",
            help="Dataset folder for experiments that read one (fig7a: the MNIST IDX files).",
            show_default="data that ship with syngeo or are generated",
        ),
    ] = None,
    workers: Workers = 1,
    scheduler: Annotated[
        str | None,
        typer.Option(
            "--scheduler", help="Address of an existing Dask scheduler (tcp://host:8786)."
        ),
    ] = None,
    force: ForceSweep = False,
    as_json: Json = False,
    quiet: Quiet = False,
    list_only: Annotated[
        bool, typer.Option("--list", help="List the experiments and exit.")
    ] = False,
) -> None:
    """Rerun a figure of the papers: tidy table, figures (PNG + PDF), summary.json, report.md.

    The work is split into cells stored in OUT/cells as they finish, so an interrupted run is
    resumed by rerunning the same command.
    """
    if list_only or name is None:
        _print_list(as_json)
        return
    try:
        result = reproduce(
            name,
            quick=quick,
            out=out,
            workers=workers,
            scheduler=scheduler,
            force=force,
            quiet=quiet or as_json,  # --json: stdout holds the JSON, stderr no progress bar
            data=data,
        )
    except ImportError as exc:
        fail(f"{name}: {exc}")
        return
    if as_json:
        print(json.dumps(result.to_dict(), indent=2))
    elif not quiet:
        _print_result(result)
