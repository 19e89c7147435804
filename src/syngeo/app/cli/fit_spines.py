"""``syngeo fit-spines [TABLE]``: which plasticity geometries explain one snapshot of synapse sizes?

Runs the cells of the ``fig5`` experiment (:mod:`syngeo.app.experiments.spines`) on a synapse
table (the bundled MICrONS table by default): the paper's two fits, maximum-likelihood fits of
every geometry and initial family, goodness of fit, the likelihood profile over p and the
connection analysis; prints the verdict and, with ``--out``, writes table, figures, summary and
report. Method: docs/spines.md.
"""

from __future__ import annotations

import dataclasses
import json
import tempfile
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from syngeo.app.cli._app import app, console
from syngeo.app.cli._options import Force, Json, OptionalOut, Quiet, Workers
from syngeo.errors import DataFileError, InputError

__all__ = ["fit_spines"]

_EPILOG = (
    "Examples:\n\n"
    "  syngeo fit-spines          # the bundled MICrONS table (Dorkenwald et al.)\n\n"
    "  syngeo fit-spines --out runs/spines --bootstrap 99\n\n"
    "  syngeo fit-spines my_synapses.csv --column head_volume \\\n"
    "      --id-column synapse_id --connection-columns pre,post\n\n"
    "  syngeo fit-spines --potentials 'ne,p=1.5:4:0.5' --json\n\n"
    "Rerunning with the same --out resumes: finished cells are kept in OUT/cells."
)

_DEFAULT_CONNECTIONS = ("pre_root_id", "post_root_id")


def _split(text: str | None) -> tuple[str, ...] | None:
    if text is None:
        return None
    return tuple(part.strip() for part in text.split(",") if part.strip())


def build_config(
    table: str | Path | None = None,
    *,
    column: str | None = None,
    id_column: str | None = None,
    connection_columns: str | None = None,
    potentials: str | None = None,
    families: str | None = None,
    n_folds: int | None = None,
    n_bootstrap: int | None = None,
    n_shuffles: int | None = None,
    drop_invalid: bool = False,
    seed: int = 0,
) -> Any:
    """The ``fig5`` Config for these options (defaults: the bundled table's columns)."""
    from syngeo.app.cli.infer import parse_candidates
    from syngeo.app.experiments.spines import Config

    base = Config()
    options: dict[str, Any] = {"drop_invalid": drop_invalid, "seed": seed}
    if table is not None:
        from syngeo.data.weights import table_columns

        path = Path(table)
        if path.is_dir():
            raise DataFileError(
                f"{path} is a folder, not a synapse table; give a .csv, .tsv or .parquet file"
            )
        columns = table_columns(path)
        options["table"] = str(path)
        options["column"] = column
        options["id_column"] = id_column
        if connection_columns is None:
            present = all(c in columns for c in _DEFAULT_CONNECTIONS)
            options["connection_columns"] = _DEFAULT_CONNECTIONS if present else ()
    else:
        if column is not None:
            options["column"] = column
        if id_column is not None:
            options["id_column"] = id_column
    if connection_columns is not None:
        options["connection_columns"] = _split(connection_columns) or ()
    if potentials is not None:
        parsed = parse_candidates(potentials, option="--potentials")
        if not parsed:
            raise InputError("--potentials is empty; give e.g. 'ne,2-norm,3-norm'")
        options["potentials"] = tuple(parsed)
    if families is not None:
        options["families"] = _split(families) or ()
    for key, value in (
        ("n_folds", n_folds),
        ("n_bootstrap", n_bootstrap),
        ("n_shuffles", n_shuffles),
    ):
        if value is not None:
            options[key] = value
    return dataclasses.replace(base, **options)


def fit_spines(
    table: str | Path | None = None,
    *,
    out: str | Path | None = None,
    force: bool = False,
    workers: int = 2,
    quiet: bool = True,
    **options: Any,
) -> dict[str, Any]:
    """Run the analysis; with ``out`` write results.parquet/csv, figures, summary.json, report.md.

    Returns ``{"summary", "files", "seconds", "config"}``. Raises InputError/OSError on bad input.
    """
    from syngeo import __version__
    from syngeo.app.experiments.spines import FIG5, load_sizes
    from syngeo.app.outputs import to_jsonable, write_outputs
    from syngeo.app.sweep import run_sweep

    config = build_config(table, **options)
    start = time.perf_counter()
    load_sizes(config)  # every input check before any work
    out = None if out is None else Path(out)
    if out is None:
        with tempfile.TemporaryDirectory(prefix="syngeo-fit-spines-") as tmp:
            swept = run_sweep(FIG5, config, tmp, workers=workers, quiet=quiet)
    else:
        swept = run_sweep(FIG5, config, out, workers=workers, force=force, quiet=quiet)
    result = swept.table
    headline = to_jsonable(FIG5.summarise(result, config))
    seconds = time.perf_counter() - start
    summary = {
        "command": "fit-spines",
        "syngeo_version": __version__,
        "config": to_jsonable(dataclasses.asdict(config)),
        "results": headline,
        "seconds": seconds,
    }
    files: dict[str, Path] = {}
    if out is not None:
        report = FIG5.report(result, config).rstrip() + (
            f"\n\n---\n\nGenerated by `syngeo fit-spines` (syngeo {__version__}) in "
            f"{seconds:.0f} s; {len(result)} rows in `results.parquet`.\n"
        )
        files = write_outputs(
            out,
            table=result,
            summary=summary,
            figures=FIG5.plot(result, config),
            report=report,
        )
    return {"summary": summary, "files": files, "seconds": seconds, "config": config}


@app.command("fit-spines", epilog=_EPILOG)
def fit_spines_command(
    table: Annotated[
        Path | None,
        typer.Argument(
            help="Synapse table (csv, tsv, parquet), one row per synapse (default: the bundled "
            "MICrONS table of Dorkenwald et al. 2022).",
            show_default=False,
        ),
    ] = None,
    column: Annotated[
        str | None,
        typer.Option(
            "--column", "-c", help="Column of sizes (bundled: spine_vol_um3).", show_default=False
        ),
    ] = None,
    id_column: Annotated[
        str | None,
        typer.Option(
            "--id-column",
            help="Column of synapse ids, checked unique (bundled: id).",
            show_default=False,
        ),
    ] = None,
    connection_columns: Annotated[
        str | None,
        typer.Option(
            "--connection-columns",
            help="Comma-separated columns naming a connection ('' to skip) (default: "
            "pre_root_id,post_root_id when present).",
            show_default=False,
        ),
    ] = None,
    potentials: Annotated[
        str | None,
        typer.Option(
            "--potentials",
            help="Geometries to fit, e.g. 'ne,2-norm,3-norm' or 'ne,p=1.5:4:0.5' (default: NE, "
            "p = 1.5, 2, 2.5, 3, 4).",
            show_default=False,
        ),
    ] = None,
    families: Annotated[
        str | None,
        typer.Option(
            "--families",
            help="Initial families: two-point, constant-lognormal (default: both).",
            show_default=False,
        ),
    ] = None,
    n_folds: Annotated[
        int | None,
        typer.Option(
            "--folds",
            help="Folds of the held-out likelihood (0: none; default 3).",
            show_default=False,
        ),
    ] = None,
    n_bootstrap: Annotated[
        int | None,
        typer.Option(
            "--bootstrap",
            "-b",
            help="Bootstrap replicates of each GOF test (0: none; default 19).",
            show_default=False,
        ),
    ] = None,
    drop_invalid: Annotated[
        bool,
        typer.Option("--drop-invalid", help="Drop rows without a size or with a non-positive one."),
    ] = False,
    seed: Annotated[int, typer.Option("--seed", help="Seed of folds, bootstrap and shuffles.")] = 0,
    workers: Workers = 2,
    out: OptionalOut = None,
    force: Force = False,
    as_json: Json = False,
    quiet: Quiet = False,
) -> None:
    """Fit every geometry to one snapshot of synapse sizes (Pogodin et al. Fig. 5).

    Maximum-likelihood fits of the final-weight density under NE and p-norms, AIC/BIC and held-out likelihood, bootstrap goodness of fit, the likelihood profile over p, the paper's two fits, and the spread within multi-synapse connections (docs/spines.md).
    """
    from syngeo.validation import as_positive_int

    as_positive_int(workers, "--workers")
    result = fit_spines(
        table,
        out=out,
        force=force,
        workers=workers,
        quiet=quiet or as_json,
        column=column,
        id_column=id_column,
        connection_columns=connection_columns,
        potentials=potentials,
        families=families,
        n_folds=n_folds,
        n_bootstrap=n_bootstrap,
        drop_invalid=drop_invalid,
        seed=seed,
    )
    if as_json:
        print(json.dumps(result["summary"], indent=2))
        return
    if quiet:
        return
    from syngeo.app.experiments.spines import verdict
    from syngeo.app.formatting import console_table, plural

    s = result["summary"]["results"]
    rows = [
        (row["potential"], row["family"], row["log_likelihood"], row["delta_aic"])
        for row in s.get("profile", [])
    ]
    console.print(
        console_table(
            ["geometry", "initial family", "log L", "ΔAIC"],
            rows,
            title=f"{plural(s.get('n_synapses') or 0, 'synapse')}: best model "
            f"{s.get('best_model')} ({result['seconds']:.0f} s)",
            spec=".1f",
        )
    )
    console.print(verdict(s), highlight=False)
    if result["files"]:
        console.print(
            f"wrote {plural(len(result['files']), 'file')} to {out}/ (see report.md)",
            highlight=False,
        )
