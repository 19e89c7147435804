"""Figures, table, summary and a markdown report for one geometry inference.

Shared by ``syngeo infer`` and ``syngeo demo``: given the weights and the
:class:`~syngeo.inference.GeometryFit` of :func:`~syngeo.inference.infer_geometry`,

* :func:`inference_figures` draws the dual-change histograms of the top candidates with the
  fitted Gaussian, their normal QQ plots, and the scores against p;
* :func:`inference_table` is the ranking as the tidy table written to ``results.parquet``;
* :func:`inference_summary` is the JSON-ready headline (``summary.json``, ``--json``);
* :func:`inference_report` is ``report.md``: verdict, interval, ranking, checks, warnings and the
  figures.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import scipy.stats

from syngeo.app.formatting import frame_to_markdown
from syngeo.app.plotting import color_for, paper_style, subplots
from syngeo.gaussianity import dual_change
from syngeo.potentials import potential
from syngeo.validation import as_positive_int

__all__ = [
    "FIGURE_TITLES",
    "inference_figures",
    "inference_report",
    "inference_summary",
    "inference_table",
]

#: File stem of each figure and the caption used in ``report.md``.
FIGURE_TITLES = {
    "dual_change_histograms": "Dual change of the best candidates, with the fitted Gaussian",
    "qq_plots": "Normal QQ plots of the standardised dual change",
    "score_vs_p": "Scores against p (NE drawn separately)",
}

# QQ plots use at most this many order statistics (evenly spaced ranks: same shape, small PDFs).
_QQ_MAX_POINTS = 2000


def _ranked(fit: Any) -> pd.DataFrame:
    """Rows of candidates that were scored (excluded ones, e.g. a ruled-out NE, dropped)."""
    ranking = fit.ranking
    return ranking[ranking["rank"].notna()].sort_values("rank", kind="stable")


def _top_candidates(fit: Any, top: int) -> list[str]:
    return list(_ranked(fit)["candidate"].head(as_positive_int(top, "top")))


def _label(name: str) -> str:
    return "NE (negative entropy)" if name == "NE" else name


def _colour(name: str, index: int) -> str:
    p = potential(name)
    key = name if name == "NE" else f"{round(float(p.p), 1):g}-norm"
    return color_for(key, index)


def inference_figures(before: Any, after: Any, fit: Any, top: int = 3) -> dict[str, Any]:
    """Diagnostic figures of an inference, keyed by file stem (see :data:`FIGURE_TITLES`).

    Parameters
    ----------
    before, after : array-like, shape=[n]
        The weights the fit was computed from.
    fit : GeometryFit
        Result of :func:`syngeo.inference.infer_geometry`.
    top : int
        How many of the best candidates get a histogram and a QQ plot.

    Returns
    -------
    dict of str -> matplotlib.figure.Figure
        ``dual_change_histograms``: density of Δ_ψ = ∇ψ(after) − ∇ψ(before) for each of the
        ``top`` candidates with the Gaussian N(mean, std) of the ranking overlaid.
        ``qq_plots``: ``scipy.stats.probplot`` of Δ_ψ / std against the normal quantiles.
        ``score_vs_p``: CDF distance and ΔAIC against p for the p-norms, NE as a horizontal line.
    """
    names = _top_candidates(fit, top)
    rows = _ranked(fit).set_index("candidate")
    duals = {name: dual_change(before, after, potential(name)) for name in names}
    return {
        "dual_change_histograms": _histograms(duals, rows),
        "qq_plots": _qq_plots(duals),
        "score_vs_p": _score_vs_p(fit),
    }


def _histograms(duals: Mapping[str, np.ndarray], rows: pd.DataFrame) -> Any:
    fig, axes = subplots(1, len(duals), width=3.0, height=2.5, squeeze=False)
    with paper_style():
        for i, (ax, (name, delta)) in enumerate(zip(axes[0], duals.items(), strict=True)):
            mean = float(rows.loc[name, "mean"]) if "mean" in rows else float(np.mean(delta))
            std = float(rows.loc[name, "std"]) if "std" in rows else float(np.std(delta))
            if not (math.isfinite(mean) and math.isfinite(std) and std > 0):
                mean, std = float(np.mean(delta)), float(np.std(delta))
            lo, hi = mean - 5 * std, mean + 5 * std
            inside = delta[(delta >= lo) & (delta <= hi)]
            bins = int(np.clip(np.sqrt(delta.size), 20, 120))
            counts, edges = np.histogram(inside, bins=bins, range=(lo, hi))
            density = counts / (delta.size * (edges[1] - edges[0]))
            # One filled step patch instead of one rectangle per bin: much faster to save.
            ax.stairs(
                density, edges, fill=True, color=_colour(name, i), alpha=0.55, label="dual change"
            )
            grid = np.linspace(lo, hi, 400)
            ax.plot(
                grid,
                scipy.stats.norm.pdf(grid, mean, std),
                color="black",
                lw=1.2,
                label="fitted Gaussian",
            )
            rank = int(rows.loc[name, "rank"])
            ax.set_title(f"#{rank} {_label(name)}")
            ax.set_xlabel(r"$\nabla\psi(w) - \nabla\psi(w_0)$")
            if i == 0:
                ax.set_ylabel("density")
                ax.legend(loc="upper right")
    return fig


def _qq_plots(duals: Mapping[str, np.ndarray]) -> Any:
    fig, axes = subplots(1, len(duals), width=2.8, height=2.6, squeeze=False)
    with paper_style():
        for i, (ax, (name, delta)) in enumerate(zip(axes[0], duals.items(), strict=True)):
            z = np.sort(delta / np.std(delta))
            if z.size > _QQ_MAX_POINTS:
                z = z[np.linspace(0, z.size - 1, _QQ_MAX_POINTS).round().astype(np.intp)]
            (theory, ordered), (_slope, _intercept, r) = scipy.stats.probplot(z, dist="norm")
            ax.plot(theory, ordered, ".", ms=2.5, color=_colour(name, i))
            ax.plot(theory, theory, color="black", lw=1.0, label="Gaussian")
            ax.set_title(f"{_label(name)} (r = {r:.4f})")
            ax.set_xlabel("normal quantile")
            if i == 0:
                ax.set_ylabel("standardised dual change")
                ax.legend(loc="upper left")
    return fig


def _score_vs_p(fit: Any) -> Any:
    ranking = fit.ranking
    fig, axes = subplots(1, 2, width=3.4, height=2.6, squeeze=False)
    pnorms = ranking[ranking["p"].notna()].sort_values("p")
    grid_rows = pnorms[~pnorms["refined"].astype(bool)]
    refined = pnorms[pnorms["refined"].astype(bool)]
    ne = ranking[(ranking["candidate"] == "NE") & ranking["rank"].notna()]
    panels = (
        ("cdf_distance", "CDF distance (lower is better)"),
        ("delta_aic", "ΔAIC (lower is better)"),
    )
    with paper_style():
        for ax, (column, ylabel) in zip(axes[0], panels, strict=True):
            ax.plot(
                grid_rows["p"],
                grid_rows[column],
                "o-",
                ms=3,
                color=color_for("3-norm"),
                label="p-norms",
            )
            if len(refined):
                ax.plot(refined["p"], refined[column], "*", ms=9, color="black", label="refined p")
            if len(ne) and math.isfinite(float(ne[column].iloc[0])):
                ax.axhline(float(ne[column].iloc[0]), ls="--", color=color_for("NE"), label="NE")
            if fit.p_interval is not None:
                ax.axvspan(
                    fit.p_interval.low,
                    fit.p_interval.high,
                    color="grey",
                    alpha=0.2,
                    lw=0,
                    label=f"{fit.p_interval.level:.0%} interval",
                )
            ax.set_xlabel("p of the candidate p-norm")
            ax.set_ylabel(ylabel)
            if column == "delta_aic" and grid_rows[column].notna().any():
                ax.set_yscale("symlog", linthresh=10)
        axes[0][0].legend(loc="best")
        axes[0][0].set_title(f"best: {_label(fit.best)} ({fit.estimator})")
    return fig


def inference_table(fit: Any) -> pd.DataFrame:
    """The ranking as a tidy table (one row per candidate) for ``results.parquet``.

    The columns of ``fit.ranking`` plus ``estimator`` and ``is_best``.
    """
    table = fit.ranking.copy().reset_index(drop=True)
    table.insert(0, "estimator", fit.estimator)
    table["is_best"] = table["candidate"] == fit.best
    table["refined"] = table["refined"].astype(bool)
    table["note"] = table["note"].fillna("").astype(str)
    return table


def inference_summary(fit: Any, context: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """JSON-ready headline of an inference: ``fit.to_dict()`` plus ``context`` entries.

    ``context`` (inputs, simulation settings, verdict, ...) is merged at the top level; its keys
    win over the fit's.
    """
    from syngeo.app.outputs import to_jsonable

    summary = to_jsonable(fit.to_dict())
    for key, value in (context or {}).items():
        if key in ("title", "intro"):
            continue
        summary[key] = to_jsonable(value)
    return summary


_REPORT_COLUMNS = (
    "rank",
    "candidate",
    "delta_aic",
    "log_likelihood",
    "cdf_distance",
    "ks_statistic",
    "change_magnitude",
    "bootstrap_win_fraction",
    "note",
)


def inference_report(
    fit: Any,
    figures: Mapping[str, Any] | None = None,
    context: Mapping[str, Any] | None = None,
    *,
    top: int = 10,
) -> str:
    """``report.md`` for an inference.

    Parameters
    ----------
    fit : GeometryFit
    figures : mapping of file stem -> Figure, optional
        Embedded as ``![caption](stem.png)`` (the files :func:`syngeo.app.outputs.write_outputs`
        writes next to the report).
    context : mapping, optional
        ``title`` (heading), ``intro`` (a paragraph), and any other entries, listed as a
        "Setting" table (e.g. the input files, or the simulated learning).
    top : int
        Rows of the ranking shown (a candidate ruled out is always listed).
    """
    context = dict(context or {})
    title = context.pop("title", "Which plasticity geometry fits the weights?")
    intro = context.pop("intro", None)
    lines = [f"# {title}", ""]
    if intro:
        lines += [str(intro), ""]
    lines += ["## Verdict", ""]
    best = _label(fit.best)
    lines.append(
        f"Best geometry: **{best}** ({fit.estimator} estimator, {fit.n_synapses} synapses, "
        f"{fit.n_bootstrap} bootstrap resamples)."
    )
    if fit.p_interval is not None:
        lines.append(f"Interval for p: {fit.p_interval}.")
    if getattr(fit, "p_interval_bootstrap", None) is not None and (
        fit.p_interval_bootstrap != fit.p_interval
    ):
        lines.append(f"Bootstrap interval for p: {fit.p_interval_bootstrap}.")
    score = "ΔAIC" if fit.estimator == "likelihood" else "CDF distance"
    if math.isfinite(fit.margin):
        lines.append(f"Margin to the runner-up on the candidate grid ({score}): {fit.margin:.4g}.")
    lines.append("")
    lines += ["## Checks", ""]
    if fit.ne_ruled_out:
        lines.append(
            f"* Sign flips: {fit.n_sign_flips} synapses change sign, "
            f"{fit.n_zero_weights} are zero before or after, so negative entropy (which never "
            "changes a sign) is ruled out."
        )
    else:
        lines.append(
            "* Sign flips: none, and no zero weights: negative entropy (which never changes a "
            "sign) is allowed."
        )
    best_row = fit.ranking[fit.ranking["candidate"] == fit.best]
    if len(best_row):
        mag = float(best_row["change_magnitude"].iloc[0])
        lazy = "lazy (below 0.2)" if mag < 0.2 else "large: the theory may not apply"
        lines.append(f"* Change magnitude under {best}: {mag:.3g}, {lazy}.")
    lines.append("")
    if fit.warnings:
        lines += ["## Warnings", ""]
        lines += [f"* {w}" for w in fit.warnings]
        lines.append("")
    lines += ["## Ranking", ""]
    ranking = fit.ranking
    shown = ranking[ranking["rank"].notna()].head(top)
    excluded = ranking[ranking["rank"].isna()]
    shown = pd.concat([shown, excluded]) if len(excluded) else shown
    columns = [c for c in _REPORT_COLUMNS if c in shown.columns]
    lines += [frame_to_markdown(shown[columns]), ""]
    lines.append(
        "Scores: ΔAIC of the dual-Gaussian likelihood (lower is better), the paper's CDF "
        "distance of the standardised dual change to a Gaussian (lower is better), the "
        "Kolmogorov–Smirnov statistic, and the fraction of bootstrap resamples each grid "
        "candidate wins. The full table is in `results.parquet` / `results.csv`."
    )
    lines.append("")
    if context:
        lines += ["## Setting", ""]
        frame = pd.DataFrame(
            {"": list(context.keys()), "value": pd.Series(list(context.values()), dtype=object)}
        )
        lines += [frame_to_markdown(frame), ""]
    if figures:
        lines += ["## Figures", ""]
        for stem in figures:
            caption = FIGURE_TITLES.get(stem, stem.replace("_", " "))
            lines += [f"### {caption}", "", f"![{caption}]({stem}.png)", ""]
    return "\n".join(lines).rstrip() + "\n"
