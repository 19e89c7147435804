r"""Power analysis of a planned experiment (``syngeo power``): the :class:`Experiment` :data:`POWER`.

One cell = one (true geometry, relative noise, number of synapses): ``runs`` simulated experiments
fitted with the estimator the analysis will use (:func:`syngeo.design.power_runs`; the
errors-in-variables likelihood with the noise known, docs/inference.md "Planning an experiment").
The grid is the planned truth over ``n`` × ``noise``, plus every candidate as the truth at the
planned (``planned_n``, ``planned_noise``) for the confusion matrix.

Seeds: cell (truth, noise, n) uses ``[seed, candidate index of truth, n, round(1000·noise)]``,
run r appends r.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from syngeo.app.experiments.base import Experiment
from syngeo.app.formatting import fmt, markdown_table
from syngeo.design import (
    DEFAULT_DESIGN_CANDIDATES,
    confusion_matrix,
    power_runs,
    power_table,
    synapses_for_power,
)
from syngeo.errors import InputError
from syngeo.potentials import potential as as_potential
from syngeo.validation import as_choice

__all__ = ["POWER", "Config", "cells", "plot", "report", "run_cell", "summarise"]


@dataclass(frozen=True)
class Config:
    """A planned experiment and the grid to evaluate it on.

    Attributes
    ----------
    truth : str
        The geometry the experiment should identify.
    candidates : tuple of str
        The candidate set of the analysis.
    n : tuple of int
        Numbers of synapses.
    noise : tuple of float
        Relative measurement noise levels (both snapshots).
    runs : int
        Simulated experiments per cell.
    init : str
        ``"normal"``, ``"lognormal"`` or ``"both"`` (alternating).
    relative_change, scale : float
        Change magnitude and weight scale (:func:`syngeo.simulate_change`).
    alpha : float
        Level of the test ruling out the Euclidean geometry.
    target : float
        Power wanted (0.8).
    planned_n, planned_noise
        Where the confusion matrix is computed.
    seed : int
    """

    truth: str = "3-norm"
    candidates: tuple[str, ...] = DEFAULT_DESIGN_CANDIDATES
    n: tuple[int, ...] = (50, 100, 200, 400, 800, 1600)
    noise: tuple[float, ...] = (0.0, 0.05, 0.1, 0.2)
    runs: int = 20
    init: str = "both"
    relative_change: float = 0.1
    scale: float = 0.1
    alpha: float = 0.05
    target: float = 0.8
    planned_n: int = 200
    planned_noise: float = 0.1
    seed: int = 0

    def __post_init__(self) -> None:
        names = [as_potential(c).name for c in self.candidates]
        object.__setattr__(self, "candidates", tuple(names))
        truth = as_potential(self.truth).name
        if truth not in names:
            raise InputError(f"the truth {truth} is not among the candidates {', '.join(names)}")
        object.__setattr__(self, "truth", truth)
        object.__setattr__(self, "n", tuple(sorted({int(x) for x in self.n})))
        object.__setattr__(self, "noise", tuple(sorted({float(x) for x in self.noise})))
        as_choice(self.init, "init", ("normal", "lognormal", "both"))
        if not self.n or min(self.n) < 50:
            raise InputError("every n must be at least 50 synapses (the inference minimum)")


def quick() -> Config:
    """A small grid (well under a minute)."""
    return Config(n=(100, 400), noise=(0.0, 0.1), runs=4, planned_n=100, planned_noise=0.1)


def cells(config: Config) -> list[dict]:
    out = [
        {"kind": "power", "truth": config.truth, "n": n, "noise": s}
        for s in config.noise
        for n in config.n
    ]
    out += [
        {
            "kind": "confusion",
            "truth": c,
            "n": int(config.planned_n),
            "noise": float(config.planned_noise),
        }
        for c in config.candidates
    ]
    return out


def run_cell(config: Config, cell: dict) -> list[dict]:
    index = config.candidates.index(cell["truth"])
    rows = power_runs(
        cell["truth"],
        int(cell["n"]),
        float(cell["noise"]),
        runs=config.runs,
        candidates=config.candidates,
        init=config.init,
        relative_change=config.relative_change,
        scale=config.scale,
        alpha=config.alpha,
        rng=[config.seed, index, int(cell["n"]), round(1000 * float(cell["noise"]))],
    )
    return [r | {"kind": cell["kind"]} for r in rows]


def _needed(table: pd.DataFrame, config: Config) -> pd.DataFrame:
    power = power_table(table[table["kind"] == "power"])
    ident = synapses_for_power(power, config.target, "identified")
    eu = synapses_for_power(power, config.target, "euclidean_ruled_out")
    return ident.merge(
        eu[["truth", "noise", "n_needed", "at_smallest"]],
        on=["truth", "noise"],
        suffixes=("", "_euclidean"),
    )


def _needed_text(value: float, at_smallest: bool, smallest: float, largest: float) -> str:
    if at_smallest:
        return f"≤ {smallest:.0f}"
    return fmt(value, ".0f", missing=f"> {largest:.0f}")


def summarise(table: pd.DataFrame, config: Config) -> dict:
    if not len(table):
        return {"n_rows": 0}
    power = power_table(table[table["kind"] == "power"])
    needed = _needed(table, config)
    conf = confusion_matrix(table[table["kind"] == "confusion"], config.candidates)
    return {
        "truth": config.truth,
        "target": config.target,
        "power": power.to_dict(orient="records"),
        "synapses_needed": needed.to_dict(orient="records"),
        "confusion": {t: conf.loc[t].to_dict() for t in conf.index},
        "confusion_at": {"n": config.planned_n, "noise": config.planned_noise},
    }


def plot(table: pd.DataFrame, config: Config) -> dict:
    """``power``: power against n per noise level, and the synapses needed for the target power
    against noise; ``confusion``: the confusion matrix at the planned experiment."""
    from syngeo.app.plotting import geometry_style, noise_color, subplots

    fig, axes = subplots(1, 2, width=3.8, height=3.0)
    power = power_table(table[table["kind"] == "power"]) if len(table) else None
    ax = axes[0]
    if power is not None:
        for s in config.noise:
            part = power[power["noise"] == s]
            ax.errorbar(
                part["n"],
                part["identified"],
                yerr=part["identified_se"],
                marker="o",
                markersize=3,
                capsize=2,
                label=f"noise {100 * s:.0f} %",
                color=noise_color(s),
            )
    ax.axhline(config.target, color="0.5", linestyle=":", linewidth=1)
    ax.set_xscale("log")
    ax.set_xlabel("synapses n")
    ax.set_ylabel(f"P(identify {config.truth})")
    ax.set_ylim(-0.03, 1.03)
    ax.legend(fontsize=7)
    ax = axes[1]
    if power is not None:
        needed = _needed(table, config)
        big = max(config.n)
        for col, label, geometry in (
            ("n_needed", f"identify {config.truth}", config.truth),
            ("n_needed_euclidean", "rule out the 2-norm", "2-norm"),
        ):
            if col == "n_needed_euclidean" and config.truth == "2-norm":
                continue
            x = 100 * needed["noise"].to_numpy()
            y = needed[col].to_numpy(dtype=float)
            style = geometry_style(geometry)
            ax.plot(x, y, marker=style.marker, markersize=4, color=style.color, label=label)
            miss = np.isnan(y)
            if miss.any():
                ax.plot(
                    x[miss],
                    np.full(miss.sum(), big),
                    marker="^",
                    linestyle="none",
                    color="k",
                    markersize=6,
                )
            low = needed["at_smallest" if col == "n_needed" else "at_smallest_euclidean"]
            low = low.to_numpy(dtype=bool)
            if low.any():
                ax.plot(
                    x[low],
                    np.full(low.sum(), min(config.n)),
                    marker="v",
                    linestyle="none",
                    color="k",
                    markersize=6,
                )
        ax.set_yscale("log")
        ax.text(
            0.02,
            0.97,
            f"▲: > {big} synapses; ▼: ≤ {min(config.n)}",
            transform=ax.transAxes,
            fontsize=7,
            va="top",
        )
    ax.set_xlabel("relative measurement noise (%)")
    ax.set_ylabel(f"synapses for {100 * config.target:.0f} % power")
    ax.legend(fontsize=7, loc="lower right")
    figs = {"power": fig}
    fig2, ax2 = subplots(1, 1, width=4.2, height=3.4)
    conf = table[table["kind"] == "confusion"] if len(table) else table
    if len(conf):
        m = confusion_matrix(conf, config.candidates)
        im = ax2.imshow(m.to_numpy(), vmin=0, vmax=1, cmap="Blues")
        ax2.set_xticks(range(len(m.columns)), m.columns, rotation=45, ha="right")
        ax2.set_yticks(range(len(m.index)), m.index)
        for (i, j), v in np.ndenumerate(m.to_numpy()):
            ax2.text(
                j,
                i,
                f"{v:.2f}",
                ha="center",
                va="center",
                color="w" if v > 0.6 else "k",
                fontsize=7,
            )
        fig2.colorbar(im, ax=ax2, shrink=0.8)
    ax2.set_xlabel("winning candidate")
    ax2.set_ylabel("true geometry")
    ax2.set_title(f"n = {config.planned_n}, noise {100 * config.planned_noise:.0f} %")
    figs["confusion"] = fig2
    return figs


def report(table: pd.DataFrame, config: Config) -> str:
    title = "# How many synapses does the experiment need?"
    if not len(table):
        return f"{title}\n\nNo cells were run.\n"
    power = power_table(table[table["kind"] == "power"])
    needed = _needed(table, config)
    lines = [
        title,
        "",
        f"Planned experiment: true geometry **{config.truth}**, candidates "
        f"{', '.join(config.candidates)}; initial weights `{config.init}` (scale {config.scale:g}), "
        f"dual change {config.relative_change:g}·|∇φ(scale)|; relative measurement noise on both "
        f"snapshots, taken as known by the errors-in-variables likelihood; {config.runs} "
        'simulated experiments per cell (docs/inference.md, "Planning an experiment"). '
        "*Identified*: the winner by AIC is the true candidate. *2-norm ruled out*: the "
        f"likelihood-ratio test of the 2-norm against the winner rejects it at α = {config.alpha:g}.",
        "",
        "![power](power.png)",
        "",
        f"## Synapses needed for {100 * config.target:.0f} % power",
        "",
    ]
    rows = []
    for r in needed.itertuples(index=False):
        rows.append(
            [
                f"{100 * r.noise:.0f} %",
                _needed_text(r.n_needed, r.at_smallest, r.smallest_n, r.largest_n),
                _needed_text(
                    r.n_needed_euclidean, r.at_smallest_euclidean, r.smallest_n, r.largest_n
                ),
            ]
        )
    lines.append(
        markdown_table(
            ["noise", f"identify {config.truth}", "rule out the 2-norm"], rows, missing="—"
        )
    )
    lines.append("")
    ident = needed["n_needed"].to_numpy(dtype=float)
    if needed["at_smallest"].all():
        lines.append(
            f"At every noise level {100 * config.target:.0f} % power is reached already with the "
            f"smallest n ({min(config.n)}): extend --n downwards, or plan a smaller change "
            "(--change), to see where it fails."
        )
    elif len(ident) >= 2:
        first, last = needed.iloc[0], needed.iloc[-1]

        def text(r):
            return _needed_text(r.n_needed, r.at_smallest, r.smallest_n, r.largest_n)

        lines.append(
            f"To identify {config.truth} with {100 * config.target:.0f} % power the experiment "
            f"needs {text(first)} synapses at {100 * first.noise:.0f} % noise; at "
            f"{100 * last.noise:.0f} % noise it needs {text(last)}."
        )
    lines += ["", "## Power by cell", ""]
    lines.append(
        markdown_table(
            ["noise", "n", "runs", "P(identify)", "P(2-norm ruled out)"],
            [
                [
                    f"{100 * r.noise:.0f} %",
                    int(r.n),
                    int(r.runs),
                    f"{r.identified:.2f} ± {r.identified_se:.2f}",
                    fmt(r.euclidean_ruled_out, ".2f", missing="—"),
                ]
                for r in power.itertuples(index=False)
            ],
        )
    )
    conf_runs = table[table["kind"] == "confusion"]
    if len(conf_runs):
        m = confusion_matrix(conf_runs, config.candidates)
        lines += [
            "",
            f"## Confusion matrix at n = {config.planned_n}, noise "
            f"{100 * config.planned_noise:.0f} %",
            "",
            "Rows: the true geometry; columns: the fraction of runs each candidate wins.",
            "",
            "![confusion](confusion.png)",
            "",
            markdown_table(
                ["truth", *m.columns], [[t, *m.loc[t].tolist()] for t in m.index], spec=".2f"
            ),
            "",
        ]
        diag = {t: float(m.loc[t, t]) for t in m.index}
        worst = min(diag, key=diag.get)
        lines.append(
            f"The truth is recovered in {min(diag.values()):.0%}–{max(diag.values()):.0%} of runs; "
            f"hardest: {worst} (most often confused with "
            f"{m.loc[worst].drop(worst).idxmax()}, {m.loc[worst].drop(worst).max():.0%})."
        )
    lines += [
        "",
        "Caveats: power is for the simulated protocol (Gaussian dual change, the stated initial "
        "distribution, noise of known size); a real experiment with unmodelled variability needs "
        "more synapses. Each power is a fraction of "
        f"{config.runs} runs (binomial standard error shown).",
    ]
    return "\n".join(lines) + "\n"


POWER = Experiment(
    name="power",
    title="Power analysis: synapses needed to identify the plasticity geometry",
    Config=Config,
    quick=quick,
    cells=cells,
    run_cell=run_cell,
    summarise=summarise,
    plot=plot,
    report=report,
    figures=("power", "confusion"),
    modules=("syngeo.design", "syngeo.inference", "syngeo.noise", "syngeo.simulate"),
)
