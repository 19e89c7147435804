"""Figures, table, summary and a markdown report for one geometry inference.

Shared by ``syngeo infer`` and ``syngeo demo``: given the weights and the
:class:`~syngeo.inference.GeometryFit` of :func:`~syngeo.inference.infer_geometry`,

* :func:`inference_figures` draws the standardised dual-change histograms of the best
  candidates and of a rejected one with N(0, 1), their detrended normal QQ plots with the band of
  a Gaussian sample of the same size, and the scores against p;
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

from syngeo.app.formatting import fmt, frame_to_markdown
from syngeo.app.plotting import geometry_style, paper_style, subplots
from syngeo.diagnostics import NE_OR_P_TO_1, ne_limit
from syngeo.gaussianity import dual_change
from syngeo.potentials import potential
from syngeo.validation import as_positive_int

__all__ = [
    "FIGURE_TITLES",
    "REJECTED_DELTA_AIC",
    "inference_figures",
    "inference_report",
    "inference_summary",
    "inference_table",
    "qq_band",
]

#: File stem of each figure and the caption used in ``report.md``.
FIGURE_TITLES = {
    "dual_change_histograms": (
        "Standardised dual change of the best candidates and of a rejected one, with N(0, 1)"
    ),
    "qq_plots": "Detrended normal QQ plots of the standardised dual change, with a 95 % band",
    "score_vs_p": "Scores against p (NE as its own point at p = 1)",
}

#: ΔAIC from which a candidate counts as rejected in the figures ("essentially no support",
#: Burnham & Anderson 2002, §2.6): the histogram's contrast candidate is picked above it.
REJECTED_DELTA_AIC = 10.0

# QQ plots use at most this many order statistics (evenly spaced in normal quantile: the tails
# are drawn point by point, the PDFs stay small).
_QQ_MAX_POINTS = 2000
# Histograms span ±5 standard deviations of the standardised dual change.
_HIST_RANGE = 5.0
# NE is the p -> 1 limit of the p-norms (docs/inference.md): drawn at p = 1 in score_vs_p.
_NE_POSITION = 1.0


def _ranked(fit: Any) -> pd.DataFrame:
    """Rows of candidates that were scored (excluded ones, e.g. a ruled-out NE, dropped)."""
    ranking = fit.ranking
    return ranking[ranking["rank"].notna()].sort_values("rank", kind="stable")


def _label(name: str) -> str:
    return "NE (negative entropy)" if name == "NE" else name


def _hidden_name(truth: Any) -> str | None:
    """Canonical name of the generating geometry (``None`` when unknown)."""
    if truth is None:
        return None
    return potential(truth).name


def _shown_candidates(fit: Any, top: int) -> tuple[list[str], str | None]:
    """The ``top - 1`` best ranked candidates and one candidate for contrast (``None`` if none).

    The contrast is a candidate outside the best ones, preferably rejected (ΔAIC ≥
    :data:`REJECTED_DELTA_AIC`): the Euclidean 2-norm (the geometry a reader assumes by default),
    else NE, else the lowest-ranked rejected one; with nothing rejected, the lowest-ranked one.
    """
    top = as_positive_int(top, "top")
    ranked = _ranked(fit)
    names = list(ranked["candidate"])
    if top == 1 or len(names) == 1:
        return names[:top], None
    best = names[: top - 1]
    rest = ranked[~ranked["candidate"].isin(best)]
    grid = rest[~rest["refined"].astype(bool)]
    pool = grid if len(grid) else rest
    if not len(pool):
        return best, None
    rejected = pool[pool["delta_aic"] >= REJECTED_DELTA_AIC]
    for preferred in ("2-norm", "NE"):
        if preferred in set(rejected["candidate"]):
            return best, preferred
    chosen = rejected if len(rejected) else pool
    return best, str(chosen["candidate"].iloc[-1])


def _role(name: str, rows: pd.DataFrame, contrast: str | None, hidden: str | None) -> str:
    """Short description of a shown candidate: rank or rejection, and whether it is the truth."""
    rank = int(rows.loc[name, "rank"])
    daic = float(rows.loc[name, "delta_aic"])
    if rank == 1:
        text = "best"
    elif name == contrast:
        rejected = math.isfinite(daic) and daic >= REJECTED_DELTA_AIC
        text = f"{'rejected' if rejected else 'lowest ranked'}, ΔAIC {fmt(daic, '.3g')}"
    else:
        rejected = math.isfinite(daic) and daic >= REJECTED_DELTA_AIC
        text = f"#{rank}{', rejected' if rejected else ''}, ΔAIC {fmt(daic, '.3g')}"
    if hidden is not None and name == hidden:
        text += "; hidden"
    return text


def inference_figures(
    before: Any, after: Any, fit: Any, top: int = 3, *, truth: Any = None
) -> dict[str, Any]:
    """Diagnostic figures of an inference, keyed by file stem (see :data:`FIGURE_TITLES`).

    Notation (docs/inference.md): a candidate potential is ψ and its dual change is
    Δ_ψ = ∇ψ(w) − ∇ψ(w0); the potential that generated the weights, when known, is φ.

    Parameters
    ----------
    before, after : array-like, shape=[n]
        The weights the fit was computed from.
    fit : GeometryFit
        Result of :func:`syngeo.inference.infer_geometry`.
    top : int
        Panels of the histogram and QQ figures: the ``top - 1`` best candidates and one
        candidate for contrast, rejected when one is (ΔAIC ≥ :data:`REJECTED_DELTA_AIC`; the
        2-norm when it is rejected). ``top = 1`` draws the best candidate only.
    truth : Potential or str or float, optional
        The geometry φ that generated the weights when it is known (``syngeo demo``); marked
        in every figure.

    Returns
    -------
    dict of str -> matplotlib.figure.Figure
        ``dual_change_histograms``: density of the standardised dual change (Δ_ψ − μ̂)/σ̂ of each
        shown candidate (μ̂, σ̂ fitted), with N(0, 1) overlaid, on shared axes.
        ``qq_plots``: detrended normal QQ plots (ordered (Δ_ψ − μ̂)/σ̂ minus the normal quantile),
        with the pointwise 95 % band of n Gaussian draws, on a shared y axis.
        ``score_vs_p``: CDF distance and ΔAIC against p for the p-norms, NE as its own point at
        p = 1 (omitted with a note when ruled out), a star at each panel's lowest score, the
        interval for p and the hidden p.
    """
    hidden = _hidden_name(truth)
    best, contrast = _shown_candidates(fit, top)
    names = best + ([contrast] if contrast is not None else [])
    rows = _ranked(fit).set_index("candidate")
    duals = {name: _standardised(before, after, name, rows) for name in names}
    note = _ne_note(fit)
    return {
        "dual_change_histograms": _histograms(duals, rows, contrast, hidden, note),
        "qq_plots": _qq_plots(duals, rows, contrast, hidden, note),
        "score_vs_p": _score_vs_p(fit, hidden, note),
    }


def _standardised(before: Any, after: Any, name: str, rows: pd.DataFrame) -> np.ndarray:
    """(Δ_ψ − μ̂)/σ̂ with the ranking's fitted mean and std (sample ones if those are unusable)."""
    delta = dual_change(before, after, potential(name))
    mean = float(rows.loc[name, "mean"]) if "mean" in rows else math.nan
    std = float(rows.loc[name, "std"]) if "std" in rows else math.nan
    if not (math.isfinite(mean) and math.isfinite(std) and std > 0):
        mean, std = float(np.mean(delta)), float(np.std(delta))
    return (delta - mean) / std


def _figure_legend(fig: Any, handles: list, ncols: int, note: str | None = None) -> None:
    """One legend for the whole figure, below the panels (never on the data); ``note`` is a
    last entry of text only."""
    if note is not None:
        handles = [*handles, _note_handle(note)]
    fig.legend(handles=handles, loc="outside lower center", ncols=ncols, frameon=False)


def _histograms(
    duals: Mapping[str, np.ndarray],
    rows: pd.DataFrame,
    contrast: str | None,
    hidden: str | None,
    note: str | None = None,
) -> Any:
    fig, axes = subplots(1, len(duals), width=3.0, height=2.7, squeeze=False, sharey=True)
    lo, hi = -_HIST_RANGE, _HIST_RANGE
    handles = []
    with paper_style():
        for i, (ax, (name, z)) in enumerate(zip(axes[0], duals.items(), strict=True)):
            style = geometry_style(name)
            inside = z[(z >= lo) & (z <= hi)]
            bins = int(np.clip(np.sqrt(z.size), 20, 120))
            counts, edges = np.histogram(inside, bins=bins, range=(lo, hi))
            density = counts / (z.size * (edges[1] - edges[0]))
            # One filled step patch instead of one rectangle per bin: much faster to save.
            role = _role(name, rows, contrast, hidden)
            handles.append(
                ax.stairs(
                    density,
                    edges,
                    fill=True,
                    color=style.color,
                    alpha=0.6,
                    label=f"ψ = {name} ({role})",
                )
            )
            grid = np.linspace(lo, hi, 400)
            (gauss,) = ax.plot(
                grid, scipy.stats.norm.pdf(grid), color="black", lw=1.1, label="N(0, 1)"
            )
            ax.set_title(f"{_label(name)}\n{role}")
            ax.set_xlabel(r"$z = (\Delta_\psi - \hat\mu)\,/\,\hat\sigma$")
            ax.set_xlim(lo, hi)
            if i == 0:
                ax.set_ylabel("density")
        _figure_legend(fig, [*handles, gauss], ncols=2, note=note)
    return fig


def _qq_ranks(n: int) -> np.ndarray:
    """At most :data:`_QQ_MAX_POINTS` ranks (1-based), evenly spaced in normal-quantile space
    so that the tails, where candidates differ most, are drawn point by point."""
    if n <= _QQ_MAX_POINTS:
        return np.arange(1, n + 1)
    q = np.linspace(scipy.stats.norm.ppf(0.5 / n), -scipy.stats.norm.ppf(0.5 / n), _QQ_MAX_POINTS)
    ranks = np.round(n * scipy.stats.norm.cdf(q) + 0.5).astype(np.int64)
    return np.unique(np.clip(ranks, 1, n))


def qq_band(n: int, ranks: np.ndarray, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Pointwise ``level`` band of the detrended QQ plot of ``n`` standard normal draws.

    The i-th of n ordered uniforms is Beta(i, n + 1 − i), so the ordered normal z_(i) lies in
    Φ⁻¹ of that Beta's quantiles; minus the plotting position q_i = Φ⁻¹((i − ½)/n). (With the
    mean and std fitted, the centre of a Gaussian sample varies less: the band is conservative.)

    >>> low, high = qq_band(1000, np.array([500]))
    >>> bool(low[0] < 0 < high[0])
    True
    """
    ranks = np.asarray(ranks, dtype=float)
    q = scipy.stats.norm.ppf((ranks - 0.5) / n)
    tail = (1.0 - level) / 2
    a, b = ranks, n + 1.0 - ranks
    low = scipy.stats.norm.ppf(scipy.stats.beta.ppf(tail, a, b)) - q
    high = scipy.stats.norm.ppf(scipy.stats.beta.ppf(1.0 - tail, a, b)) - q
    return low, high


def _qq_plots(
    duals: Mapping[str, np.ndarray],
    rows: pd.DataFrame,
    contrast: str | None,
    hidden: str | None,
    note: str | None = None,
) -> Any:
    fig, axes = subplots(1, len(duals), width=3.0, height=2.7, squeeze=False, sharey=True)
    handles = []
    band_handle = None
    with paper_style():
        for i, (ax, (name, z)) in enumerate(zip(axes[0], duals.items(), strict=True)):
            style = geometry_style(name)
            n = z.size
            ranks = _qq_ranks(n)
            q = scipy.stats.norm.ppf((ranks - 0.5) / n)
            ordered = np.sort(z)[ranks - 1]
            low, high = qq_band(n, ranks)
            band_handle = ax.fill_between(
                q, low, high, color="0.8", lw=0, label="95 % band of n Gaussian draws"
            )
            ax.axhline(0.0, color="black", lw=0.8)
            outside = float(np.mean((ordered - q < low) | (ordered - q > high)))
            role = _role(name, rows, contrast, hidden)
            (points,) = ax.plot(
                q,
                ordered - q,
                ls="none",
                marker=".",
                ms=2.5,
                color=style.color,
                label=f"ψ = {name} ({role})",
            )
            handles.append(points)
            ax.set_title(f"{_label(name)}\n{outside:.0%} of the points outside the band")
            ax.set_xlabel("normal quantile $q_i$")
            if i == 0:
                ax.set_ylabel(r"$z_{(i)} - q_i$ (detrended QQ)")
        _figure_legend(fig, [*handles, band_handle], ncols=2, note=note)
    return fig


def _note_handle(text: str) -> Any:
    """A legend entry that is only text (an invisible handle)."""
    from matplotlib.lines import Line2D

    return Line2D([], [], ls="none", marker="none", label=text)


def _score_vs_p(fit: Any, hidden: str | None, note: str | None = None) -> Any:
    ranking = fit.ranking
    fig, axes = subplots(1, 2, width=3.5, height=2.8, squeeze=False)
    pnorms = ranking[ranking["p"].notna() & ranking["rank"].notna()].sort_values("p")
    grid_rows = pnorms[~pnorms["refined"].astype(bool)]
    refined = pnorms[pnorms["refined"].astype(bool)]
    ne_rows = ranking[ranking["candidate"] == "NE"]
    ne = ne_rows[ne_rows["rank"].notna()]
    hidden_p = None if hidden is None else potential(hidden).parameter
    panels = (
        ("cdf_distance", "CDF distance (lower is better)"),
        ("delta_aic", "ΔAIC to the best (≥ 0)"),
    )
    handles: dict[str, Any] = {}
    with paper_style():
        for ax, (column, ylabel) in zip(axes[0], panels, strict=True):
            handles["grid"] = ax.plot(
                grid_rows["p"], grid_rows[column], "-", color="0.6", lw=1.0, label="p-norm grid"
            )[0]
            colors = [geometry_style(name).color for name in grid_rows["candidate"]]
            ax.scatter(grid_rows["p"], grid_rows[column], s=12, c=colors, zorder=3)
            if len(refined):
                handles["refined"] = ax.plot(
                    refined["p"],
                    refined[column],
                    "D",
                    ms=5,
                    mfc="none",
                    mec="black",
                    label=f"refined p ({fit.estimator})",
                )[0]
            xs = list(pnorms["p"])
            ys = list(pnorms[column])
            if len(ne) and math.isfinite(float(ne[column].iloc[0])):
                ne_style = geometry_style("NE")
                handles["ne"] = ax.plot(
                    [_NE_POSITION],
                    [float(ne[column].iloc[0])],
                    ls="none",
                    marker=ne_style.marker,
                    ms=6,
                    color=ne_style.color,
                    label="NE (drawn at p = 1, its limit)",
                )[0]
                xs.append(_NE_POSITION)
                ys.append(float(ne[column].iloc[0]))
            values = np.asarray(ys, dtype=float)
            if np.isfinite(values).any():
                k = int(np.nanargmin(np.where(np.isfinite(values), values, np.nan)))
                handles[f"star_{column}"] = ax.plot(
                    [xs[k]],
                    [values[k]],
                    "*",
                    ms=11,
                    color="black",
                    zorder=4,
                    label="lowest score of each panel",
                    gid=f"optimum_{column}",
                )[0]
            if fit.p_interval is not None:
                handles["interval"] = ax.axvspan(
                    fit.p_interval.low,
                    fit.p_interval.high,
                    color="grey",
                    alpha=0.2,
                    lw=0,
                    label=f"{fit.p_interval.level:.0%} interval for p",
                )
            if hidden_p is not None:
                handles["hidden"] = ax.axvline(
                    float(hidden_p),
                    color="black",
                    ls="--",
                    lw=1.0,
                    label=f"hidden p = {hidden_p:g}",
                )
            elif hidden is not None and hidden == "NE":
                handles["hidden"] = ax.axvline(
                    _NE_POSITION, color="black", ls="--", lw=1.0, label="hidden: NE"
                )
            ax.set_xlabel("p of the p-norm (NE at p = 1)")
            ax.set_ylabel(ylabel)
            if column == "delta_aic":
                ax.axhline(REJECTED_DELTA_AIC, color="0.4", ls=":", lw=1.0)
                handles["rejected"] = ax.lines[-1]
                handles["rejected"].set_label(f"ΔAIC = {REJECTED_DELTA_AIC:g} (rejected above)")
                ax.set_yscale("symlog", linthresh=10)
                top_value = np.nanmax(np.asarray([*ys, REJECTED_DELTA_AIC], dtype=float))
                ax.set_ylim(0.0, max(top_value, REJECTED_DELTA_AIC) * 2.0)
            else:
                ax.set_ylim(bottom=0.0)
        legend = [h for key, h in handles.items() if not key.startswith("star")]
        legend += [handles[k] for k in ("star_cdf_distance", "star_delta_aic") if k in handles][:1]
        fig.suptitle(f"best: {_label(fit.best)} ({fit.estimator} estimator)", fontsize=10)
        _figure_legend(fig, legend, ncols=2, note=note)
    return fig


def _ne_note(fit: Any) -> str | None:
    """Why NE is not drawn, when it was a candidate and is not."""
    ne_rows = fit.ranking[fit.ranking["candidate"] == "NE"]
    if not len(ne_rows) or ne_rows["rank"].notna().any():
        return None
    if fit.ne_ruled_out:
        return (
            f"NE not drawn: ruled out ({fit.n_sign_flips} synapses change sign, "
            f"{fit.n_zero_weights} are zero)"
        )
    return "NE not drawn: not scored"


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
    limit = ne_limit(fit)
    best = NE_OR_P_TO_1 if limit.applies else _label(fit.best)
    lines.append(
        f"Best geometry: **{best}** ({fit.estimator} estimator, {fit.n_synapses} synapses, "
        f"{fit.n_bootstrap} bootstrap resamples)."
    )
    if limit.applies:
        # one answer: an interval pinned at the search bound and a margin to NE say nothing more
        lines.append(f"The {limit.sentence()}.")
    else:
        if fit.p_interval is not None:
            lines.append(f"Interval for p: {fit.p_interval}.")
        if getattr(fit, "p_interval_bootstrap", None) is not None and (
            fit.p_interval_bootstrap != fit.p_interval
        ):
            lines.append(f"Bootstrap interval for p: {fit.p_interval_bootstrap}.")
        score = "ΔAIC" if fit.estimator == "likelihood" else "CDF distance"
        if math.isfinite(fit.margin):
            lines.append(
                f"Margin to the runner-up on the candidate grid ({score}): {fit.margin:.4g}."
            )
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
