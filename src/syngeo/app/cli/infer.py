"""``syngeo infer BEFORE AFTER``: which plasticity geometry turned BEFORE into AFTER?

Reads the two weight files (:mod:`syngeo.data.weights`: CSV/TSV, Parquet, NPY/NPZ, safetensors,
torch state dicts), ranks the candidate geometries with
:func:`syngeo.inference.infer_geometry`, prints the ranking and, with ``--out``, writes the
table, summary, figures and report (:mod:`syngeo.app.report`).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer

from syngeo.app.cli._app import app, console, err_console
from syngeo.app.cli._options import Bootstrap, Estimator, Force, Json, OptionalOut, Quiet
from syngeo.app.formatting import fmt
from syngeo.app.formatting import plural as _count
from syngeo.errors import InputError
from syngeo.validation import as_choice, as_nonnegative_int, as_seed

__all__ = [
    "CheckedFit",
    "InferResult",
    "fit_and_check",
    "parse_candidates",
    "print_ranking",
    "print_summary",
    "run_infer",
]

#: The estimators ``--estimator`` accepts (those of :data:`syngeo.inference.ESTIMATORS`, named
#: here so that ``--help`` does not import the inference stack).
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
    "  syngeo infer w0.npy w1.npy --drop-outliers --drop-zeros\n\n"
    "  syngeo infer w0.npy w1.npy --candidates 'ne,p=1.1:3.0:0.1' --estimator cdf\n\n"
    "By default biases, normalisation parameters and the readout layer of a state dict are left "
    "out (as in Pogodin et al.); the tensors used and skipped are listed in summary.json. "
    "With --candidates, only the candidates given are ranked unless --refine is given; the "
    "summary says whether p was refined."
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
    checked : CheckedFit
        The fit with its diagnostics and the synapses dropped.
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
    checked: Any = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "summary": self.summary,
            "out": None if self.out is None else str(self.out),
            "files": {k: str(v) for k, v in self.files.items()},
            "seconds": self.seconds,
        }


def parse_candidates(
    text: str | Sequence[str] | None, option: str = "--candidates"
) -> list[str] | None:
    """Parse ``--candidates``: names separated by commas, and ranges ``p=START:STOP:STEP``.

    ``"ne,2-norm,3-norm"`` → ``["ne", "2-norm", "3-norm"]``; ``"p=1.1:3.0:0.1"`` → the p-norms
    p = 1.1, 1.2, ..., 3.0 (STOP included). ``None`` (the option not given) means the default
    candidates; an empty list (``""``, ``" , "``) is an error, as are an unknown name and a
    malformed range (:class:`syngeo.InputError`; ``option`` names the flag in the message).
    """
    from syngeo.potentials import potential

    if text is None:
        return None
    parts: list[str] = []
    for item in [text] if isinstance(text, str) else list(text):
        parts.extend(p.strip() for p in str(item).split(",") if p.strip())
    if not parts:
        raise InputError(
            f"{option} is empty: give at least one potential, e.g. 'ne,2-norm,3-norm', or leave "
            f"{option} out for the defaults (NE and p = 1.1, 1.2, ..., 3.0)"
        )
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


@dataclass(frozen=True, eq=False)
class CheckedFit:
    """A fit, its diagnostics (:func:`syngeo.diagnostics.diagnose`) and what was dropped first.

    Attributes
    ----------
    fit : GeometryFit
    diagnostics : FitDiagnostics
    kept : numpy.ndarray of int
        Positions (in the weights given) of the synapses the fit used.
    dropped : dict of str -> numpy.ndarray of int
        Positions of the synapses left out, by reason (``"zero weight"``, ``"dual overflows"``,
        ``"influential"``).
    refined : bool
        Whether p was refined between the candidates.
    """

    fit: Any
    diagnostics: Any
    kept: np.ndarray
    dropped: dict[str, np.ndarray]
    refined: bool

    @property
    def n_dropped(self) -> int:
        return int(sum(v.size for v in self.dropped.values()))

    def to_dict(self) -> dict[str, Any]:
        return {
            "answer": self.diagnostics.answer,
            "refined": self.refined,
            "dropped": {k: [int(i) for i in v] for k, v in self.dropped.items()},
            "diagnostics": self.diagnostics.to_dict(),
        }


def fit_and_check(
    before: Any,
    after: Any,
    candidates: list[str] | None = None,
    *,
    estimator: str = "likelihood",
    n_bootstrap: int = 200,
    refine: bool | None = None,
    seed: int = 0,
    noise: Any = None,
    drop_outliers: bool = False,
    drop_zeros: bool = False,
) -> CheckedFit:
    """Infer the geometry and diagnose the answer, dropping zeros and outliers when asked.

    ``refine=None`` refines p only with the default candidates (a grid); with candidates given,
    only those are ranked. Synapses whose duals overflow float64 under a candidate are an
    :class:`~syngeo.InputError` unless ``drop_outliers``, which leaves them out first and, after
    a first fit, the synapses :func:`syngeo.diagnostics.influential_synapses` flags (one round;
    the refit is diagnosed again and says whether more stand out).
    """
    from syngeo.diagnostics import diagnose, overflowing_synapses
    from syngeo.inference import default_candidates, infer_geometry
    from syngeo.potentials import potential

    b = np.asarray(before, dtype=np.float64).ravel()
    a = np.asarray(after, dtype=np.float64).ravel()
    refine = candidates is None if refine is None else bool(refine)
    cands = default_candidates() if candidates is None else [potential(c) for c in candidates]
    kept = np.arange(b.size)
    dropped: dict[str, np.ndarray] = {}

    def drop(mask: np.ndarray, reason: str) -> None:
        nonlocal kept
        if mask.any():
            dropped[reason] = kept[mask]
            kept = kept[~mask]

    if b.size == a.size:  # a length mismatch is reported by infer_geometry
        if drop_zeros:
            drop((b == 0) | (a == 0), "zero weight")
        if drop_outliers:
            bad = overflowing_synapses(b[kept], a[kept], cands)
            if bad:
                mask = np.zeros(kept.size, bool)
                mask[np.concatenate(list(bad.values()))] = True
                drop(mask, "dual overflows")

    def run() -> tuple[Any, Any]:
        bk, ak = (b, a) if b.size != a.size else (b[kept], a[kept])
        fit = infer_geometry(
            bk,
            ak,
            candidates,
            estimator=estimator,
            n_bootstrap=n_bootstrap,
            refine=refine,
            rng=seed,
            noise=noise,
        )
        return fit, diagnose(fit, bk, ak, candidates=cands, rng=seed)

    fit, diag = run()
    if drop_outliers and diag.influential:
        mask = np.zeros(kept.size, bool)
        mask[list(diag.influential)] = True
        drop(mask, "influential")
        fit, diag = run()
    return CheckedFit(fit, diag, kept, dropped, refine)


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
    refine: bool | None = None,
    seed: int = 0,
    out: str | Path | None = None,
    force: bool = False,
    id_column: str | None = None,
    sizes: bool = False,
    drop_invalid: bool = False,
    units: str | None = None,
    noise: Any = None,
    drop_outliers: bool = False,
    drop_zeros: bool = False,
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
    checked = fit_and_check(
        pair.before.values,
        pair.after.values,
        parsed,
        estimator=estimator,
        n_bootstrap=n_bootstrap,
        refine=refine,
        seed=seed,
        noise=noise,
        drop_outliers=drop_outliers,
        drop_zeros=drop_zeros,
    )
    fit = checked.fit
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
            "refine": checked.refined,
            "drop_outliers": drop_outliers,
            "drop_zeros": drop_zeros,
            "seed": seed,
            **({} if noise is None else {"noise": noise.to_dict()}),
        },
        **checked.to_dict(),
        "seconds": seconds,
    }
    summary = inference_summary(fit, context)
    files: dict[str, Path] = {}
    if out is not None:
        used_before = pair.before.values.ravel()[checked.kept]
        used_after = pair.after.values.ravel()[checked.kept]
        figures = inference_figures(used_before, used_after, fit)
        report = inference_report(
            fit,
            figures,
            {
                "title": "Which plasticity geometry fits the weights?",
                "intro": (
                    f"`syngeo infer {before} {after}`: {pair.n_synapses} synapses from "
                    f"{_count(len(pair.before.segments), 'tensor or column', 'tensors or columns')}; "
                    f"{_count(len(pair.before.skipped), 'tensor')} skipped (listed in "
                    "`summary.json`). " + checked_paragraph(checked)
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
    return InferResult(
        pair=pair,
        fit=fit,
        summary=summary,
        out=out,
        files=files,
        seconds=seconds,
        checked=checked,
    )


def checked_paragraph(checked: CheckedFit) -> str:
    """The answer, the synapses dropped and every diagnostic sentence, as one paragraph."""
    d = checked.diagnostics
    parts = [f"Answer: **{d.answer}**."]
    for reason, idx in checked.dropped.items():
        parts.append(f"Left out ({reason}): {_count(idx.size, 'synapse')} ({_index_list(idx)}).")
    parts += [f"Warning: {w}." for w in d.warnings]
    parts += [f"{n[0].upper()}{n[1:]}." for n in d.notes]
    return " ".join(parts)


def _index_list(idx: Any, limit: int = 10) -> str:
    idx = [int(i) for i in idx]
    more = f", … ({len(idx) - limit} more)" if len(idx) > limit else ""
    return "index " + ", ".join(str(i) for i in idx[:limit]) + more


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


def _is_bound_warning(text: str) -> bool:
    return "search bound" in text


def summary_rows(checked: CheckedFit) -> list[tuple[str, str]]:
    """The final summary as (what, value) rows: answer, interval, margin, every check."""
    fit, d = checked.fit, checked.diagnostics
    rows = [("geometry", d.answer)]
    rows.append(("estimator", f"{fit.estimator}, {_count(fit.n_synapses, 'synapse')}"))
    noise = getattr(fit, "noise", None)
    if noise is not None:
        rows.append(("measurement noise", f"{noise} (latent weights integrated out)"))
    lim = d.ne_limit
    if lim.applies:
        rows.append(
            (
                "NE vs p → 1",
                f"log-likelihoods differ by {fmt(abs(lim.ne_delta_loglik), '.2f')} "
                f"(≤ {fmt(lim.threshold, '.2f')}: one answer)",
            )
        )
    else:
        of = "" if fit.best_p is not None else " of the p-norms"  # the winner has no p (NE)
        if fit.p_interval is not None:
            rows.append((f"interval for p{of}", str(fit.p_interval)))
        boot = getattr(fit, "p_interval_bootstrap", None)
        if boot is not None and boot != fit.p_interval:
            # the bootstrap over synapses does not rely on the Gaussian model's curvature for
            # its width; neither interval covers a bias of the model itself (docs/inference.md)
            rows.append((f"interval for p{of} (bootstrap)", str(boot)))
        if math.isfinite(fit.margin):
            unit = "ΔAIC" if fit.estimator == "likelihood" else "CDF distance"
            spec = ".1f" if fit.estimator == "likelihood" else ".3g"
            rows.append(
                ("margin to the runner-up on the candidate grid", f"{fmt(fit.margin, spec)} {unit}")
            )
    if fit.p_interval is not None or fit.best_p is not None or checked.refined:
        if not checked.refined:
            refined = "no: only the candidates given are ranked (--refine to fit p)"
        elif bool(fit.ranking["refined"].fillna(False).astype(bool).any()):
            refined = "yes, between the candidates (row marked refined)"
        else:
            refined = "yes; no p between the candidates did better"
        rows.append(("p refined", refined))
    gof = d.gof
    if gof is not None:
        name = "KS" if gof.statistic == "ks" else "CDF distance"
        verdict = {
            "fits": "fits",
            "winner does not fit": f"does not fit; {gof.closest} is closer",
            "departs slightly": f"departs slightly ({fmt(gof.best_ratio, '.2g')}× the 99%)",
            "no candidate fits": f"no candidate fits ({fmt(gof.ratio, '.2g')}× the 99%)",
        }[gof.verdict]
        rows.append(
            (
                "goodness of fit",
                f"{name} {fmt(gof.values[gof.best], '.3g')} vs Gaussian "
                f"{fmt(gof.null_median, '.3g')} (99%: {fmt(gof.null_q99, '.3g')}): {verdict}",
            )
        )
    if d.influence is not None:
        infl = d.influence
        if infl.indices:
            after = (
                f"without: {infl.best_without} first"
                if infl.best_without != fit.best
                else f"without: {fit.best} still first"
            )
            value = f"{_index_list(infl.indices)} ({after})"
        else:
            value = "none"
        rows.append(("dominating synapses", value))
    n_zero = int(fit.n_zero_weights)
    rows.append(("zero weights", "none" if n_zero == 0 else _count(n_zero, "synapse")))
    for reason, idx in checked.dropped.items():
        rows.append((f"left out ({reason})", f"{_count(idx.size, 'synapse')}: {_index_list(idx)}"))
    ne_listed = bool((fit.ranking["candidate"] == "NE").any())
    if fit.ne_ruled_out and ne_listed:
        rows.append(("NE ruled out", str(fit.ne_ruled_out_reason)))
    return rows


def summary_warnings(checked: CheckedFit) -> list[str]:
    """The fit's warnings and the failed checks, each once."""
    fit, d = checked.fit, checked.diagnostics
    out = []
    for warning in fit.warnings:
        if fit.ne_ruled_out and warning.startswith("NE ruled out"):
            continue  # in the summary table
        if d.ne_limit.applies and _is_bound_warning(warning):
            continue  # p at the bound is the NE limit, said once as the answer
        out.append(warning)
    return out + list(d.warnings)


def print_summary(checked: CheckedFit, *, title: str = "summary") -> None:
    """The final summary as a table on stdout, then the warnings on stderr."""
    from rich.table import Table

    table = Table(title=title, show_edge=False, show_header=False, title_justify="left")
    table.add_column("", style="bold", no_wrap=True)
    table.add_column("")
    for key, value in summary_rows(checked):
        table.add_row(key, value)
    console.print(table)
    for warning in summary_warnings(checked):
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
    estimator: Estimator = "likelihood",
    n_bootstrap: Bootstrap = 200,
    refine: Annotated[
        bool | None,
        typer.Option(
            "--refine/--no-refine",
            help="Fit p between the candidates near the best one (default: only with the "
            "default candidates; with --candidates, only those are ranked).",
            show_default=False,
        ),
    ] = None,
    drop_outliers: Annotated[
        bool,
        typer.Option(
            "--drop-outliers",
            help="Leave out synapses whose duals overflow, and those that dominate the "
            "likelihood (listed in the summary), then fit again.",
        ),
    ] = False,
    drop_zeros: Annotated[
        bool,
        typer.Option(
            "--drop-zeros",
            help="Leave out synapses that are 0 before or after (NE needs non-zero weights).",
        ),
    ] = False,
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
    out: OptionalOut = None,
    force: Force = False,
    as_json: Json = False,
    quiet: Quiet = False,
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
            drop_outliers=drop_outliers,
            drop_zeros=drop_zeros,
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
    print_summary(result.checked)
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
