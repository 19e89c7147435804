"""``syngeo infer BEFORE AFTER``: which plasticity geometry turned BEFORE into AFTER?

Reads the two weight files (:mod:`syngeo.data.weights`: CSV/TSV, Parquet, NPY/NPZ, safetensors,
torch state dicts), ranks the candidate geometries with
:func:`syngeo.inference.infer_geometry`, prints the ranking and, with ``--out``, writes the
table, summary, figures and report (:mod:`syngeo.app.report`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer

from syngeo.app.cli._app import app, console, err_console
from syngeo.app.formatting import fmt
from syngeo.errors import InputError
from syngeo.validation import as_choice, as_nonnegative_int, as_seed

__all__ = ["InferResult", "parse_candidates", "print_ranking", "run_infer"]

#: The estimators ``--estimator`` accepts (see :func:`syngeo.inference.infer_geometry`).
ESTIMATORS = ("likelihood", "cdf")

_EPILOG = (
    "Examples:\n\n"
    "  syngeo infer spines_before.csv spines_after.csv --column volume\n\n"
    "  syngeo infer table.parquet table.parquet --column size_day0 --after-column size_day7\n\n"
    "  syngeo infer day0.csv day7.csv --column spine_vol --id-column synapse_id --sizes "
    "--drop-invalid --units um3\n\n"
    "  syngeo infer init.pt finetuned.pt --layer 'layer1.*' --exclude '*.downsample.*' "
    "--out runs/resnet\n\n"
    "  syngeo infer w0.npy w1.npy --candidates 'ne,2-norm,3-norm' --json\n\n"
    "  syngeo infer w0.npy w1.npy --candidates 'ne,p=1.1:3.0:0.1' --estimator cdf\n\n"
    "By default biases, normalisation parameters and the readout layer of a state dict are left "
    "out (as in Pogodin et al.); the tensors used and skipped are listed in summary.json."
)


@dataclass(frozen=True, eq=False)
class InferResult:
    """What :func:`run_infer` computed and wrote.

    Attributes
    ----------
    pair : WeightPair
        The weights read (with the tensors used and skipped).
    fit : GeometryFit
    summary : dict
        The JSON summary (also ``summary.json`` with ``out``).
    out : Path or None
    files : dict of str -> Path
        Files written (empty without ``out``).
    seconds : float
        Wall-clock time of reading and inference.
    """

    pair: Any
    fit: Any
    summary: dict[str, Any]
    out: Path | None = None
    files: dict[str, Path] = field(default_factory=dict)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "summary": self.summary,
            "out": None if self.out is None else str(self.out),
            "files": {k: str(v) for k, v in self.files.items()},
            "seconds": self.seconds,
        }


def parse_candidates(text: str | Sequence[str] | None) -> list[str] | None:
    """Parse ``--candidates``: names separated by commas, and ranges ``p=START:STOP:STEP``.

    ``"ne,2-norm,3-norm"`` → ``["ne", "2-norm", "3-norm"]``; ``"p=1.1:3.0:0.1"`` → the p-norms
    p = 1.1, 1.2, ..., 3.0 (STOP included). ``None`` or ``""`` means the default candidates.
    Each name is checked by :func:`syngeo.potentials.potential`; an unknown name or a malformed
    range raises :class:`syngeo.InputError`.
    """
    from syngeo.potentials import potential

    if text is None:
        return None
    parts: list[str] = []
    for item in [text] if isinstance(text, str) else list(text):
        parts.extend(p.strip() for p in str(item).split(",") if p.strip())
    if not parts:
        return None
    out: list[str] = []
    for part in parts:
        if ":" in part:
            out.extend(_p_range(part))
        else:
            potential(part)  # raises InputError with the accepted forms
            out.append(part)
    return out


def _p_range(part: str) -> list[str]:
    spec = part.split("=", 1)[1] if "=" in part else part
    pieces = spec.split(":")
    try:
        if len(pieces) != 3 or not part.lower().startswith("p"):
            raise ValueError(part)
        start, stop, step = (float(x) for x in pieces)
    except ValueError:
        raise InputError(
            f"bad candidate range {part!r}: write p=START:STOP:STEP, e.g. p=1.1:3.0:0.1"
        ) from None
    if not (step > 0 and stop >= start > 1.0):
        raise InputError(
            f"bad candidate range {part!r}: needs 1 < START <= STOP and STEP > 0 (p-norms need p > 1)"
        )
    count = int(np.floor((stop - start) / step + 1e-9)) + 1
    if count > 1000:
        raise InputError(f"candidate range {part!r} gives {count} values; use at most 1000")
    return [f"p={round(start + i * step, 10):g}" for i in range(count)]


def check_out_dir(out: Path | None, force: bool) -> None:
    """Fail early (before any work) when ``out`` holds results and ``force`` is not set."""
    from syngeo.app.outputs import prepare_out_dir

    if out is not None and Path(out).exists():
        prepare_out_dir(out, force=force)  # creates nothing: the path exists


def run_infer(
    before: str | Path,
    after: str | Path,
    *,
    column: str | None = None,
    after_column: str | None = None,
    layer: Sequence[str] | None = None,
    exclude: Sequence[str] | None = None,
    all_tensors: bool = False,
    candidates: str | Sequence[str] | None = None,
    estimator: str = "likelihood",
    n_bootstrap: int = 200,
    refine: bool = True,
    seed: int = 0,
    out: str | Path | None = None,
    force: bool = False,
    id_column: str | None = None,
    sizes: bool = False,
    drop_invalid: bool = False,
    units: str | None = None,
    noise: Any = None,
) -> InferResult:
    """Read BEFORE and AFTER, infer the geometry and (with ``out``) write the outputs.

    Raises :class:`syngeo.InputError` or ``OSError`` for bad input (the CLI turns them into
    one-line errors, exit code 2); any other exception is a bug.
    """
    from syngeo.app.outputs import prepare_out_dir, write_outputs
    from syngeo.app.report import (
        inference_figures,
        inference_report,
        inference_summary,
        inference_table,
    )
    from syngeo.data.weights import load_pair
    from syngeo.inference import infer_geometry

    out = None if out is None else Path(out)
    check_out_dir(out, force)
    parsed = parse_candidates(candidates)
    start = time.perf_counter()
    pair = load_pair(
        before,
        after,
        column=column,
        after_column=after_column,
        layer=list(layer or []) or None,
        exclude=list(exclude or []) or None,
        include_default_skips=all_tensors,
        id_column=id_column,
        positive=sizes,
        drop_invalid=drop_invalid,
        units=units,
    )
    fit = infer_geometry(
        pair.before.values,
        pair.after.values,
        parsed,
        estimator=estimator,
        n_bootstrap=n_bootstrap,
        refine=refine,
        rng=seed,
        noise=noise,
    )
    seconds = time.perf_counter() - start
    inputs = {
        "before": str(before),
        "after": str(after),
        "format": pair.before.format,
        "used": describe_used(pair.before),
        "skipped": describe_skipped(pair.before) or "none",
    }
    if column is not None:
        inputs["column"] = column
    if after_column is not None:
        inputs["after_column"] = after_column
    matching = pair.matching
    if id_column is not None:
        inputs["joined by"] = (
            f"synapse id ({id_column}): {matching['n_matched']} matched, "
            f"{matching['n_only_before']} only in BEFORE, {matching['n_only_after']} only in "
            "AFTER (listed in `summary.json`)"
        )
    if drop_invalid:
        inputs["dropped rows"] = (
            f"BEFORE {matching['dropped_before']}, AFTER {matching['dropped_after']}"
        )
    if units:
        inputs["units"] = units
    context = {
        "command": "infer",
        "inputs": pair.to_dict(),
        "settings": {
            "candidates": parsed or "default (NE, p = 1.1 ... 3.0)",
            "estimator": estimator,
            "n_bootstrap": n_bootstrap,
            "refine": refine,
            "seed": seed,
            **({} if noise is None else {"noise": noise.to_dict()}),
        },
        "seconds": seconds,
    }
    summary = inference_summary(fit, context)
    files: dict[str, Path] = {}
    if out is not None:
        figures = inference_figures(pair.before.values, pair.after.values, fit)
        report = inference_report(
            fit,
            figures,
            {
                "title": "Which plasticity geometry fits the weights?",
                "intro": (
                    f"`syngeo infer {before} {after}`: {pair.n_synapses} synapses from "
                    f"{len(pair.before.segments)} tensor(s) or column(s); "
                    f"{len(pair.before.skipped)} tensor(s) skipped (listed in `summary.json`)."
                ),
                **inputs,
                "estimator": estimator,
                "bootstrap resamples": n_bootstrap,
                "seed": seed,
            },
        )
        prepare_out_dir(out, force=force)
        files = write_outputs(
            out, table=inference_table(fit), summary=summary, figures=figures, report=report
        )
    return InferResult(pair=pair, fit=fit, summary=summary, out=out, files=files, seconds=seconds)


def describe_used(weights: Any, limit: int = 8) -> str:
    """``conv1.weight [64x3x7x7], ...``: the tensors (or the column) a WeightSet holds."""
    parts = [
        f"{seg.name} [{'x'.join(str(d) for d in seg.shape)}]" if len(seg.shape) > 1 else seg.name
        for seg in weights.segments
    ]
    return _shorten(parts, limit)


def describe_skipped(weights: Any, limit: int = 8) -> str:
    """``fc.weight (readout layer), bn1.weight (normalisation parameter), ...``."""
    return _shorten([f"{s.name} ({s.reason})" for s in weights.skipped], limit)


def _shorten(parts: list[str], limit: int) -> str:
    more = f", ... ({len(parts) - limit} more)" if len(parts) > limit else ""
    return ", ".join(parts[:limit]) + more


def print_ranking(fit: Any, *, top: int = 8, title: str | None = None) -> None:
    """Print the ranking of a fit as a rich table on stdout."""
    from rich.table import Table

    ranking = fit.ranking
    shown = ranking[ranking["rank"].notna()].head(top)
    excluded = ranking[ranking["rank"].isna()]
    table = Table(title=title, show_edge=False, header_style="bold")
    for name, justify in (
        ("rank", "right"),
        ("candidate", "left"),
        ("ΔAIC", "right"),
        ("CDF dist.", "right"),
        ("magnitude", "right"),
        ("bootstrap wins", "right"),
    ):
        table.add_column(name, justify=justify)

    for row in shown.itertuples(index=False):
        style = "bold green" if row.candidate == fit.best else None
        table.add_row(
            f"{int(row.rank)}",
            f"{row.candidate}{' (refined)' if row.refined else ''}",
            fmt(row.delta_aic, ".1f", missing="–"),
            fmt(row.cdf_distance, ".4f", missing="–"),
            fmt(row.change_magnitude, ".3g", missing="–"),
            fmt(row.bootstrap_win_fraction, ".0%", missing="–"),
            style=style,
        )
    for row in excluded.itertuples(index=False):
        table.add_row("–", str(row.candidate), "", "", "", "", style="dim")
    console.print(table)


def print_fit(fit: Any) -> None:
    """Verdict lines after the table: best geometry, interval, sign flips, warnings."""
    console.print(
        f"best geometry: [bold]{fit.best}[/] ({fit.estimator}, {fit.n_synapses} synapses)",
        highlight=False,
    )
    noise = getattr(fit, "noise", None)
    if noise is not None:
        console.print(
            f"measurement noise modelled: {noise} (latent weights integrated out)", highlight=False
        )
    if fit.p_interval is not None:
        console.print(f"interval for p: {fit.p_interval}", highlight=False)
    boot = getattr(fit, "p_interval_bootstrap", None)
    if boot is not None and boot != fit.p_interval:
        # The bootstrap over synapses does not rely on the Gaussian model's curvature for its
        # width; neither interval covers a bias of the model itself (see docs/inference.md).
        console.print(f"interval for p (bootstrap over synapses): {boot}", highlight=False)
    ne_listed = bool((fit.ranking["candidate"] == "NE").any())
    if fit.ne_ruled_out and ne_listed:
        console.print(f"NE ruled out: {fit.ne_ruled_out_reason}", highlight=False)
    for warning in fit.warnings:
        if fit.ne_ruled_out and warning.startswith("NE ruled out"):
            continue  # already said above
        err_console.print(f"[yellow]warning:[/] {warning}", highlight=False)


@app.command("infer", epilog=_EPILOG)
def infer_command(
    before: Annotated[
        Path,
        typer.Argument(
            help="Weights before learning (csv, tsv, parquet, npy, npz, safetensors, pt/pth/bin).",
            show_default=False,
        ),
    ],
    after: Annotated[
        Path,
        typer.Argument(
            help="Weights after learning, same synapses in the same order.", show_default=False
        ),
    ],
    column: Annotated[
        str | None,
        typer.Option("--column", "-c", help="Table column (or NPZ key) holding the weights."),
    ] = None,
    after_column: Annotated[
        str | None,
        typer.Option("--after-column", help="Column of AFTER, when it differs from --column."),
    ] = None,
    layer: Annotated[
        list[str] | None,
        typer.Option("--layer", "-l", help="Glob of tensor names to analyse (repeatable)."),
    ] = None,
    exclude: Annotated[
        list[str] | None,
        typer.Option("--exclude", "-x", help="Glob of tensor names to leave out (repeatable)."),
    ] = None,
    all_tensors: Annotated[
        bool,
        typer.Option("--all-tensors", help="Keep biases, normalisation and readout tensors."),
    ] = False,
    candidates: Annotated[
        str | None,
        typer.Option(
            "--candidates",
            help="Comma-separated potentials and ranges, e.g. 'ne,2-norm,3-norm' or "
            "'ne,p=1.1:3.0:0.1' (default: NE and p = 1.1, 1.2, ..., 3.0).",
            show_default=False,
        ),
    ] = None,
    estimator: Annotated[
        str, typer.Option("--estimator", help="likelihood (AIC of the dual-Gaussian model) or cdf.")
    ] = "likelihood",
    n_bootstrap: Annotated[
        int,
        typer.Option("--bootstrap", "-b", help="Bootstrap resamples of the synapses (0: none)."),
    ] = 200,
    refine: Annotated[
        bool, typer.Option("--refine/--no-refine", help="Refine p near the best grid value.")
    ] = True,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the bootstrap.")] = 0,
    id_column: Annotated[
        str | None,
        typer.Option(
            "--id-column",
            help="Tables: column of synapse ids; BEFORE and AFTER are joined on it (not by row "
            "order) and ids found in only one table are reported.",
            show_default=False,
        ),
    ] = None,
    sizes: Annotated[
        bool,
        typer.Option(
            "--sizes", help="Tables: the values are synapse sizes, so they must be positive."
        ),
    ] = False,
    drop_invalid: Annotated[
        bool,
        typer.Option(
            "--drop-invalid",
            help="Tables: drop rows without a value (and non-positive ones with --sizes), "
            "counted in summary.json, instead of failing (needs --id-column).",
        ),
    ] = False,
    units: Annotated[
        str | None,
        typer.Option(
            "--units",
            help="Tables: unit of the column (e.g. um3), recorded in the outputs; the inference "
            "does not depend on it.",
            show_default=False,
        ),
    ] = None,
    # -- measurement noise (errors-in-variables likelihood, docs/inference.md) --
    noise: Annotated[
        str | None,
        typer.Option("--noise", help="Relative measurement noise on both snapshots, e.g. 8%."),
    ] = None,
    noise_abs: Annotated[
        str | None,
        typer.Option("--noise-abs", help="Absolute measurement noise (weight units), e.g. 0.002."),
    ] = None,
    replicates: Annotated[
        Path | None,
        typer.Option(
            "--replicates",
            help="Table of two measurements per synapse: estimate the noise from it "
            "(relative; with --noise-abs est: absolute).",
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", "-o", help="Write table, summary, figures and report here.", show_default=False
        ),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Replace earlier results in --out.")
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the summary as JSON on stdout (nothing else).")
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print nothing on success.")] = False,
) -> None:
    """Infer the plasticity geometry from weights BEFORE and AFTER learning.

    Ranks negative entropy and the p-norms by how Gaussian the change is in each one's dual space (docs/theory.md §3), with a bootstrap over synapses and a sign-flip check that rules NE out.
    """
    as_nonnegative_int(n_bootstrap, "--bootstrap")
    as_seed(seed, "--seed")
    as_choice(estimator, "--estimator", ESTIMATORS)
    from syngeo.noise import noise_from_options

    show_status = not (quiet or as_json)
    with _status("reading weights and ranking geometries", show_status):
        result = run_infer(
            before,
            after,
            column=column,
            after_column=after_column,
            layer=layer,
            exclude=exclude,
            all_tensors=all_tensors,
            candidates=candidates,
            estimator=estimator,
            n_bootstrap=n_bootstrap,
            refine=refine,
            seed=seed,
            out=out,
            force=force,
            id_column=id_column,
            sizes=sizes,
            drop_invalid=drop_invalid,
            units=units,
            noise=noise_from_options(noise, noise_abs, replicates),
        )
    if as_json:
        print(json.dumps(result.summary, indent=2))
        return
    if quiet:
        return
    pair = result.pair
    console.print(
        f"{pair.n_synapses} synapses from {pair.before.source}: {describe_used(pair.before)}",
        highlight=False,
    )
    if pair.before.skipped:
        console.print(f"[dim]skipped: {describe_skipped(pair.before)}[/]", highlight=False)
    matching = pair.matching
    if "n_matched" in matching:
        console.print(
            f"joined by {matching['id_column']}: {matching['n_matched']} synapses matched, "
            f"{matching['n_only_before']} ids only in BEFORE, {matching['n_only_after']} only "
            "in AFTER",
            highlight=False,
        )
    for side in ("before", "after"):
        dropped = matching.get(f"dropped_{side}", {})
        if sum(dropped.values()):
            console.print(f"dropped from {side.upper()}: {dropped}", highlight=False)
    print_ranking(result.fit)
    print_fit(result.fit)
    if result.out is not None:
        console.print(
            f"wrote {len(result.files)} files to {result.out}/ (see report.md)", highlight=False
        )


class _status:
    """A rich spinner on stderr (or nothing)."""

    def __init__(self, message: str, enabled: bool) -> None:
        self._cm = err_console.status(message) if enabled and err_console.is_terminal else None

    def __enter__(self) -> None:
        if self._cm is not None:
            self._cm.__enter__()

    def __exit__(self, *exc: Any) -> None:
        if self._cm is not None:
            self._cm.__exit__(*exc)
