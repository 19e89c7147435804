r"""Fig. 5 of Pogodin et al.: what one snapshot of spine volumes says about the geometry.

The :class:`~syngeo.app.experiments.base.Experiment` :data:`FIG5` (``syngeo reproduce fig5``;
``syngeo fit-spines TABLE`` runs the same cells on any synapse table). The model, the density and
the fits are described in docs/spines.md; the core is :mod:`syngeo.snapshot`.

Cells (independent; ``--workers 2`` runs two at a time)
-------------------------------------------------------
* ``paper`` — the paper's two fits, evaluated on the data: negative entropy with the two-point
  initial distribution of Dorkenwald et al.'s Table 2 (the two means and weights as published,
  the dual spread the log-average of the two component standard deviations, as the paper
  describes), and the 3-norm with a constant (1e-2)-or-log-normal initial mixture (the constant
  held at 1e-2, the other parameters fitted by maximum likelihood; the paper gives no values for
  them). Rows: log-likelihood, KS and AD statistics, survival and the expected number of
  eliminated synapses.
* ``geometry`` (one per potential) — maximum-likelihood fits of every initial family
  (:func:`syngeo.snapshot.compare_snapshot_models`, K-fold held-out log-likelihood), and for the
  family with the lowest AIC a goodness-of-fit test with parametric-bootstrap p-values
  (:func:`syngeo.snapshot.goodness_of_fit`).
* ``connections`` — the spread of dual weights within connections of 2-5 synapses against
  shuffled pairs (:func:`syngeo.snapshot.connection_spread`), when the table has the
  connection columns.

The likelihood profile over p is the set of geometry fits (NE at p = 1).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

import syngeo
from syngeo.app.experiments.base import Experiment
from syngeo.app.formatting import fmt, markdown_table
from syngeo.errors import InputError, InputTypeError
from syngeo.snapshot import (
    FAMILIES,
    InitialMixture,
    LogNormal,
    PointMass,
    SnapshotModel,
    compare_snapshot_models,
    connection_spread,
    fit_snapshot,
    goodness_of_fit,
    ks_ad_statistics,
)
from syngeo.validation import as_nonnegative_int, as_positive_float, as_positive_int, as_seed

__all__ = [
    "FIG5",
    "Config",
    "cells",
    "load_sizes",
    "model_from_row",
    "paper_ne_model",
    "plot",
    "report",
    "run_cell",
    "summarise",
]

#: ΔAIC above which a model is "ruled out" against the best one (Burnham & Anderson's scale:
#: above 10, essentially no support).
RULED_OUT_DELTA_AIC = 10.0
#: Bootstrap p-value below which a goodness-of-fit test rejects the model.
GOF_LEVEL = 0.05


@dataclass(frozen=True)
class Config:
    """Settings of the Fig. 5 analysis (defaults: the bundled MICrONS table).

    Attributes
    ----------
    table : str or None
        A CSV/TSV/Parquet synapse table; None: the bundled Dorkenwald et al. (2022) table.
    column : str or None
        Column of sizes (``spine_vol_um3``; None: the table's one numeric column).
    id_column : str or None
        Column of synapse ids (checked unique).
    connection_columns : tuple of str
        Columns naming a connection (pre- and post-synaptic cell); empty: no connection analysis.
    drop_invalid : bool
        Drop rows without a size or with a non-positive one instead of failing.
    potentials : tuple of str
        The geometries fitted (NE and p-norms; their p values are the likelihood profile).
    families : tuple of str
        Initial-distribution families (:data:`syngeo.snapshot.FAMILIES`).
    n_folds : int
        Folds of the held-out log-likelihood (0: none).
    n_bootstrap : int
        Parametric-bootstrap replicates of each goodness-of-fit test (0: statistics only).
    n_shuffles : int
        Shuffled-pair draws of the connection control.
    paper_constant : float
        The constant of the paper's 3-norm initial mixture (1e-2, in the table's unit).
    seed : int
    """

    table: str | None = None
    column: str | None = "spine_vol_um3"
    id_column: str | None = "id"
    connection_columns: tuple[str, ...] = ("pre_root_id", "post_root_id")
    drop_invalid: bool = False
    potentials: tuple[str, ...] = ("NE", "1.5-norm", "2-norm", "2.5-norm", "3-norm", "4-norm")
    families: tuple[str, ...] = FAMILIES
    n_folds: int = 3
    n_bootstrap: int = 19
    n_shuffles: int = 200
    paper_constant: float = 0.01
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("potentials", "families", "connection_columns"):
            value = getattr(self, name)
            if isinstance(value, str) or not hasattr(value, "__iter__"):
                raise InputTypeError(f"{name} must be a sequence of names, got {value!r}")
            object.__setattr__(self, name, tuple(str(v) for v in value))
        if not self.potentials or not self.families:
            raise InputError("fit-spines needs at least one potential and one family")
        names = tuple(syngeo.potential(p).name for p in self.potentials)
        if len(set(names)) != len(names):
            raise InputError(f"potentials must be distinct, got {self.potentials!r}")
        object.__setattr__(self, "potentials", names)
        unknown = [f for f in self.families if f not in FAMILIES]
        if unknown:
            raise InputError(f"unknown families {unknown}; choose from {', '.join(FAMILIES)}")
        if self.n_folds == 1:
            raise InputError("n_folds must be 0 (no held-out likelihood) or at least 2")
        as_nonnegative_int(self.n_folds, "n_folds")
        as_nonnegative_int(self.n_bootstrap, "n_bootstrap")
        as_positive_int(self.n_shuffles, "n_shuffles")
        as_positive_float(self.paper_constant, "paper_constant")
        as_seed(self.seed, "seed")

    @classmethod
    def quick(cls) -> Config:
        """NE, 2- and 3-norm, 2 folds, 4 bootstrap replicates: about half a minute."""
        return cls(potentials=("NE", "2-norm", "3-norm"), n_folds=2, n_bootstrap=4, n_shuffles=50)


# --------------------------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------------------------
def load_sizes(config: Config) -> tuple[np.ndarray, np.ndarray | None, dict[str, Any]]:
    """(sizes, connection labels or None, description) of the configured table."""
    from syngeo.data.weights import read_synapse_table
    from syngeo.datasets import dorkenwald2022, dorkenwald2022_path

    if config.table is None:
        frame, path = dorkenwald2022(), dorkenwald2022_path()
    else:
        frame, path = None, config.table
    table = read_synapse_table(
        path,
        column=config.column,
        id_column=config.id_column,
        positive=True,
        drop_invalid=config.drop_invalid,
        min_synapses=20,
        frame=frame,
    )
    labels = None
    missing = [c for c in config.connection_columns if c not in table.frame.columns]
    if config.connection_columns and missing:
        raise InputError(
            f"{path}: no connection column(s) {', '.join(missing)}; name them with "
            "--connection-columns, or pass --connection-columns '' to skip that analysis"
        )
    if config.connection_columns:
        keys = table.frame[list(config.connection_columns)].astype(str)
        labels = keys.agg("|".join, axis=1).to_numpy()
    info = table.to_dict()
    info["bundled"] = config.table is None
    return np.asarray(table.values), labels, info


def paper_ne_model() -> SnapshotModel:
    """The paper's Fig. 5A model: NE, Dorkenwald Table 2 two-point start, log-averaged spread.

    The initial constants are the published log10 means (µm³), the weights the published
    mixture weights, and the dual spread (natural-log units under NE, whose dual is log w + 1)
    is ln 10 times the geometric mean of the two published log10 standard deviations.
    """
    from syngeo.datasets import DORKENWALD2022_TABLE2

    ref = DORKENWALD2022_TABLE2[0]
    sd10 = math.sqrt(ref.small_sd * ref.large_sd)
    mix = InitialMixture.two_point(10**ref.small_mean, 10**ref.large_mean, ref.small_weight)
    return SnapshotModel("ne", mix, sd10 * math.log(10))


def model_from_row(row: Any) -> SnapshotModel:
    """Rebuild a fitted model from one row of the table (its parameter columns)."""
    comps, weights = [], []
    for k in range(2):
        value, mu = row.get(f"value_{k}"), row.get(f"mu_{k}")
        if value is not None and np.isfinite(value):
            comps.append(PointMass(float(value)))
        elif mu is not None and np.isfinite(mu):
            comps.append(LogNormal(float(mu), float(row[f"sigma_{k}"])))
        else:
            continue
        weights.append(float(row[f"weight_{k}"]))
    total = sum(weights)
    mix = InitialMixture(tuple(comps), tuple(w / total for w in weights), str(row["family"]))
    return SnapshotModel(str(row["potential"]), mix, float(row["dual_std"]))


# --------------------------------------------------------------------------------------------
# cells
# --------------------------------------------------------------------------------------------
def cells(config: Config) -> list[dict]:
    """One cell per geometry, the paper's fits, and the connection analysis.

    The geometries come largest p first: their fits cost the most (measured CPU seconds on the
    bundled data: 4-norm 19.6, 3-norm 16.5, 2.5-norm 11.4, 1.5-norm 8.4, 2-norm 6.9, paper 5.3,
    NE 2.6, connections 0.4), so two workers finish together (about 36 s each).
    """
    geometry = sorted(config.potentials, key=_position, reverse=True)
    out: list[dict] = [{"part": "geometry", "potential": p} for p in geometry]
    out.append({"part": "paper", "potential": ""})
    if config.connection_columns:
        out.append({"part": "connections", "potential": ""})
    return out


def _position(name: str) -> float:
    p = syngeo.potential(name).parameter
    return 1.0 if p is None else float(p)


def run_cell(config: Config, cell: dict) -> list[dict]:
    """Rows of one cell (see the module docstring); every row has ``part`` and ``potential``."""
    w, labels, _ = load_sizes(config)
    part = str(cell["part"])
    if part == "paper":
        return _paper_rows(config, w)
    if part == "connections":
        table = connection_spread(
            w, labels, config.potentials, n_shuffles=config.n_shuffles, rng=config.seed
        )
        table["part"] = "connections"
        table["p_position"] = [_position(n) for n in table["potential"]]
        return table.to_dict("records")
    name = str(cell["potential"])
    cmp = compare_snapshot_models(
        w, [name], config.families, n_folds=config.n_folds, rng=config.seed
    )
    rows = cmp.table.to_dict("records")
    best = rows[0]  # sorted by AIC
    fit = cmp.fits[(best["potential"], best["family"])]
    for row in rows:
        row.update({"part": "geometry", "p_position": _position(name), "gof_tested": False})
        ks, ad = ks_ad_statistics(w, cmp.fits[(row["potential"], row["family"])].model)
        row.update({"ks": ks, "ad": ad, "ks_pvalue": math.nan, "ad_pvalue": math.nan})
    if config.n_bootstrap:
        gof = goodness_of_fit(fit, w, n_bootstrap=config.n_bootstrap, rng=config.seed)
        best.update(
            {
                "gof_tested": True,
                "ks_pvalue": gof.ks_pvalue,
                "ad_pvalue": gof.ad_pvalue,
                "n_bootstrap": gof.n_bootstrap,
            }
        )
    return rows


def _paper_rows(config: Config, w: np.ndarray) -> list[dict]:
    import scipy.stats

    rows = []
    ne = paper_ne_model()
    ll = float(np.sum(ne.log_density(w)))
    ks, ad = ks_ad_statistics(w, ne)
    row = {
        "part": "paper",
        "model": "NE, two-point (Dorkenwald Table 2)",
        "potential": "NE",
        "family": "two-point",
        "log_likelihood": ll,
        "n_params": 0,
        "ks": ks,
        "ad": ad,
        # the parameters were not fitted here, so the tabulated KS distribution applies (they
        # were fitted to nearly the same synapses by Dorkenwald et al.: a lenient p-value)
        "ks_pvalue": float(scipy.stats.kstwo.sf(ks, w.size)),
        "survival": 1.0,
        "expected_eliminated": 0.0,
    }
    row.update(_parameters(ne))
    rows.append(row)
    fit = fit_snapshot(w, "3-norm", "constant-lognormal", fixed_constant=config.paper_constant)
    surv = fit.model.survival_probability()
    ks, ad = ks_ad_statistics(w, fit.model)
    row = {
        "part": "paper",
        "model": f"3-norm, constant ({config.paper_constant:g}) or log-normal",
        "potential": "3-norm",
        "family": "constant-lognormal",
        "log_likelihood": fit.log_likelihood,
        "n_params": fit.n_params,
        "ks": ks,
        "ad": ad,
        "ks_pvalue": math.nan,  # fitted parameters: the tabulated distribution does not apply
        "survival": surv,
        # expected eliminated synapses for the observed survivors: n (1 − S) / S
        "expected_eliminated": w.size * (1.0 - surv) / surv,
    }
    row.update(_parameters(fit.model))
    rows.append(row)
    return rows


def _parameters(model: SnapshotModel) -> dict[str, Any]:
    return {"dual_std": model.dual_std, **model.initial.parameters()}


# --------------------------------------------------------------------------------------------
# summary
# --------------------------------------------------------------------------------------------
def _fits(table: pd.DataFrame) -> pd.DataFrame:
    fits = table[table["part"] == "geometry"].copy()
    if not len(fits):
        return fits
    fits["delta_aic"] = fits["aic"] - fits["aic"].min()
    fits["delta_bic"] = fits["bic"] - fits["bic"].min()
    return fits.sort_values("aic", kind="stable").reset_index(drop=True)


def _best_per_geometry(fits: pd.DataFrame) -> pd.DataFrame:
    best = fits.sort_values("aic", kind="stable").groupby("potential", sort=False).head(1)
    return best.sort_values("p_position", kind="stable").reset_index(drop=True)


def summarise(table: pd.DataFrame, config: Config) -> dict:
    """Headline numbers: paper fits, best models, the Euclidean verdict, connections."""
    out: dict[str, Any] = {"n_rows": len(table)}
    paper = table[table["part"] == "paper"]
    if len(paper):
        ne, p3 = paper.iloc[0], paper.iloc[-1]
        out["paper_ne_log_likelihood"] = float(ne["log_likelihood"])
        out["paper_ne_ks"] = float(ne["ks"])
        out["paper_3norm_log_likelihood"] = float(p3["log_likelihood"])
        out["paper_3norm_survival"] = float(p3["survival"])
        out["paper_3norm_expected_eliminated"] = float(p3["expected_eliminated"])
    fits = _fits(table)
    if len(fits):
        n = int(fits["n"].iloc[0])
        out["n_synapses"] = n
        best = fits.iloc[0]
        per = _best_per_geometry(fits)
        out["best_model"] = f"{best['potential']} / {best['family']}"
        out["best_log_likelihood"] = float(best["log_likelihood"])
        if "heldout_log_likelihood" in fits:
            top = fits.sort_values("heldout_log_likelihood", ascending=False).iloc[0]
            out["best_heldout_model"] = f"{top['potential']} / {top['family']}"
        plausible = per[per["delta_aic"] <= RULED_OUT_DELTA_AIC]
        out["plausible_geometries"] = plausible["potential"].tolist()
        out["geometry_pinned"] = len(plausible) == 1
        tested = per[per["gof_tested"].astype(bool)]
        if len(tested):
            # a test rejects at level α when its p-value is ≤ α
            ok = tested[(tested["ks_pvalue"] > GOF_LEVEL) & (tested["ad_pvalue"] > GOF_LEVEL)]
            out["geometries_passing_gof"] = ok["potential"].tolist()
        out["profile"] = [
            {
                "potential": r["potential"],
                "p": float(r["p_position"]),
                "family": r["family"],
                "log_likelihood": float(r["log_likelihood"]),
                "delta_aic": float(r["delta_aic"]),
            }
            for _, r in per.iterrows()
        ]
        if (per["potential"] == "2-norm").any():
            e = per[per["potential"] == "2-norm"].iloc[0]
            out["euclidean_delta_aic"] = float(e["delta_aic"])
            out["euclidean_ruled_out_by_aic"] = bool(e["delta_aic"] > RULED_OUT_DELTA_AIC)
            if bool(e["gof_tested"]):
                out["euclidean_rejected_by_gof"] = bool(
                    min(e["ks_pvalue"], e["ad_pvalue"]) <= GOF_LEVEL
                )
                out["euclidean_ks_pvalue"] = float(e["ks_pvalue"])
                out["euclidean_ad_pvalue"] = float(e["ad_pvalue"])
            if "heldout_log_likelihood" in per and np.isfinite(e["heldout_log_likelihood"]):
                top = float(per["heldout_log_likelihood"].max())
                out["euclidean_heldout_gap"] = top - float(e["heldout_log_likelihood"])
            others = per[per["potential"] != "2-norm"]
            if len(others):
                beaten = others[others["log_likelihood"] > e["log_likelihood"]]
                out["euclidean_beaten_by"] = beaten["potential"].tolist()
    conn = table[table["part"] == "connections"]
    if len(conn):
        conn = conn.sort_values("cdf_distance")
        floor = float(conn["gaussian_floor"].iloc[0])
        floor_sd = float(conn["gaussian_floor_sd"].iloc[0])
        out["connection_pairs"] = int(conn["n_pairs"].iloc[0])
        out["connection_most_gaussian"] = str(conn["potential"].iloc[0])
        within = conn["cdf_distance"] <= floor + 2 * floor_sd
        out["connection_gaussian_within_2sd"] = conn[within]["potential"].tolist()
        # the control: if shuffled pairs are just as Gaussian, the test does not discriminate
        shuffled = conn["shuffled_cdf_distance"] <= floor + 2 * floor_sd
        out["connection_shuffled_within_2sd"] = conn[shuffled]["potential"].tolist()
        out["connection_variance_ratio_min"] = float(conn["variance_ratio"].min())
    return out


# --------------------------------------------------------------------------------------------
# figures
# --------------------------------------------------------------------------------------------
def _log10_density(model: SnapshotModel, x: np.ndarray) -> np.ndarray:
    """Density of log10 w at x: p(w) · w · ln 10."""
    w = 10.0**x
    return np.exp(model.log_density(w)) * w * math.log(10)


def _quantiles(model: SnapshotModel, probs: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Model quantiles (log10 w) by interpolating its CDF on a fine grid."""
    x = np.linspace(lo - 1.0, hi + 1.0, 3000)
    cdf = np.maximum.accumulate(model.cdf(10.0**x))
    return np.interp(probs, cdf, x)


#: Line style of each initial family in the p-profile (colours belong to the geometries).
_FAMILY_LINES = {"two-point": "-", "constant-lognormal": "--"}


def _is_pnorm(name: str) -> bool:
    """Whether geometry ``name`` has a p (joined by lines against p; NE is drawn on its own)."""
    return syngeo.potential(name).parameter is not None


def _order_names(names: Any) -> list[str]:
    """Distinct geometry names, by their position on the p axis (NE first)."""
    return sorted(set(names), key=_position)


def plot(table: pd.DataFrame, config: Config) -> dict:
    """Histogram with every model, QQ plots, the p-profile, the connection spread."""
    from syngeo.app.plotting import geometry_style, subplots

    w, _, info = load_sizes(config)
    x = np.log10(w)
    grid = np.linspace(x.min() - 0.3, x.max() + 0.3, 400)
    fits = _fits(table)
    per = _best_per_geometry(fits) if len(fits) else fits
    paper = table[table["part"] == "paper"]
    figures = {}

    fig, ax = subplots(1, 1, width=6.0, height=4.6)
    ax.hist(x, bins=60, density=True, color="0.82", label=f"data (n = {w.size})")
    for _, row in per.iterrows():
        ax.plot(
            grid,
            _log10_density(model_from_row(row), grid),
            color=geometry_style(row["potential"]).color,
            label=f"{row['potential']} / {row['family']} (ΔAIC {row['delta_aic']:.0f})",
        )
    styles = ("--", ":")
    for k, (_, row) in enumerate(paper.iterrows()):
        ax.plot(
            grid,
            _log10_density(model_from_row(row), grid),
            color="k",
            linestyle=styles[k % 2],
            label=f"paper: {row['model']}",
        )
    ax.set_xlabel(f"log10 {info['column']}")
    ax.set_ylabel("density")
    fig.legend(fontsize=7, loc="outside lower center", ncols=2)
    figures["fig5_histogram"] = fig

    n_panels = max(len(per), 1)
    ncols = min(n_panels, 3)
    nrows = math.ceil(n_panels / ncols)
    fig, axes = subplots(nrows, ncols, width=2.6, height=2.5, squeeze=False)
    xs = np.sort(x)
    probs = (np.arange(1, xs.size + 1) - 0.5) / xs.size
    for k, (_, row) in enumerate(per.iterrows()):
        ax = axes[k // ncols][k % ncols]
        q = _quantiles(model_from_row(row), probs, xs[0], xs[-1])
        ax.plot(q, xs, ".", markersize=2, color=geometry_style(row["potential"]).color)
        ax.plot([xs[0], xs[-1]], [xs[0], xs[-1]], "k-", linewidth=0.8)
        pv = row["ks_pvalue"] if bool(row["gof_tested"]) else math.nan
        ax.set_title(
            f"{row['potential']} / {row['family']}\nKS {row['ks']:.3f}, p {fmt(pv)}", fontsize=8
        )
        ax.set_xlabel("model quantile (log10)")
        ax.set_ylabel("data quantile (log10)")
    for k in range(len(per), nrows * ncols):
        axes[k // ncols][k % ncols].axis("off")
    figures["fig5_qq"] = fig

    fig, ax = subplots(1, 1, width=6.6, height=3.2)
    if len(fits):
        top = fits["log_likelihood"].max()
        for family in config.families:
            part = fits[fits["family"] == family].sort_values("p_position")
            style = _FAMILY_LINES.get(family, "-.")
            # p-norms joined by a line (one style per initial family); NE, the p -> 1 limit,
            # drawn at p = 1 on its own (not joined to the smallest p)
            joined = part[[_is_pnorm(name) for name in part["potential"]]]
            ax.plot(
                joined["p_position"],
                joined["log_likelihood"] - top,
                linestyle=style,
                color="0.35",
                lw=1.0,
                label=f"{family} ({'filled' if family == config.families[0] else 'open'} markers)",
            )
            for _, row in part.iterrows():
                geo = geometry_style(row["potential"])
                ax.plot(
                    [row["p_position"]],
                    [row["log_likelihood"] - top],
                    marker=geo.marker,
                    markersize=5,
                    color=geo.color,
                    mfc=geo.color if family == config.families[0] else "white",
                    linestyle="none",
                )
        for name in _order_names(fits["potential"]):
            geo = geometry_style(name)
            ax.plot([], [], linestyle="none", marker=geo.marker, color=geo.color, label=geo.label)
        ax.axhline(-RULED_OUT_DELTA_AIC / 2, color="0.5", linestyle=":", linewidth=1)
        ax.set_ylim(max(ax.get_ylim()[0], -80), 5)
    ax.set_xlabel("p of the p-norm (NE at 1)")
    ax.set_ylabel("max log-likelihood − best")
    fig.legend(
        fontsize=7,
        title="initial family (line), geometry (colour)",
        title_fontsize=7,
        loc="outside right upper",
    )
    figures["fig5_profile"] = fig

    conn = table[table["part"] == "connections"]
    fig, ax = subplots(1, 1, width=6.6, height=3.0)
    if len(conn):
        conn = conn.sort_values("p_position")
        floor, sd = float(conn["gaussian_floor"].iloc[0]), float(conn["gaussian_floor_sd"].iloc[0])
        ax.axhspan(floor - 2 * sd, floor + 2 * sd, color="0.88", label="Gaussian floor ± 2 sd")
        joined = conn[[_is_pnorm(name) for name in conn["potential"]]]
        for column, style, colour, label in (
            ("cdf_distance", "-", "black", "within pairs (filled)"),
            ("shuffled_cdf_distance", "--", "0.5", "shuffled pairs (open)"),
        ):
            ax.plot(joined["p_position"], joined[column], style, color=colour, lw=1.0, label=label)
            for _, row in conn.iterrows():
                geo = geometry_style(row["potential"])
                ax.plot(
                    [row["p_position"]],
                    [row[column]],
                    marker=geo.marker,
                    markersize=6,
                    color=geo.color,
                    mfc=geo.color if column == "cdf_distance" else "white",
                    linestyle="none",
                )
        for name in _order_names(conn["potential"]):
            geo = geometry_style(name)
            ax.plot([], [], linestyle="none", marker=geo.marker, color=geo.color, label=geo.label)
        ax.set_ylim(bottom=0)
    ax.set_xlabel("p of the p-norm (NE at 1)")
    ax.set_ylabel("Gaussianity distance d")
    fig.legend(fontsize=7, loc="outside right upper")
    figures["fig5_connections"] = fig
    return figures


# --------------------------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------------------------
def verdict(s: dict) -> str:
    """The paragraph on what one snapshot decides, generated from :func:`summarise`."""
    if "best_model" not in s:
        return "No geometry was fitted."
    parts = []
    if "euclidean_delta_aic" in s:
        d = s["euclidean_delta_aic"]
        beaten = s.get("euclidean_beaten_by", [])
        if s["euclidean_ruled_out_by_aic"]:
            parts.append(
                f"The Euclidean geometry (2-norm) is ruled out by AIC: its best fit is "
                f"{fmt(d, '.1f')} AIC units behind the best model ({s['best_model']}), above "
                f"the threshold of {RULED_OUT_DELTA_AIC:g}; geometries that fit better: "
                f"{', '.join(beaten) or 'none'}."
            )
        else:
            parts.append(
                f"The claim that one snapshot rules out the Euclidean geometry does not hold "
                f"here: its best fit is {fmt(d, '.1f')} AIC units behind the best model "
                f"({s['best_model']}), within the threshold of {RULED_OUT_DELTA_AIC:g}."
            )
        if "euclidean_heldout_gap" in s:
            parts.append(
                f"Per synapse the gap is {fmt(s['euclidean_heldout_gap'], '.3f')} nats of "
                "held-out log-likelihood below the best geometry."
            )
        if "euclidean_rejected_by_gof" in s:
            parts.append(
                "Its goodness-of-fit tests "
                + ("reject it" if s["euclidean_rejected_by_gof"] else "do not reject it")
                + f" at the {GOF_LEVEL:g} level (bootstrap KS p "
                + f"{fmt(s['euclidean_ks_pvalue'], '.2g')}, AD p "
                + f"{fmt(s['euclidean_ad_pvalue'], '.2g')})."
            )
    plausible = s.get("plausible_geometries", [])
    if s.get("geometry_pinned"):
        parts.append(
            f"Only {plausible[0]} is within {RULED_OUT_DELTA_AIC:g} AIC units of the best: "
            "on this data the snapshot does pin the geometry among those fitted."
        )
    else:
        parts.append(
            f"{len(plausible)} geometries are within {RULED_OUT_DELTA_AIC:g} AIC units of the "
            f"best ({', '.join(plausible)}): one snapshot does not pin the geometry."
        )
    if "geometries_passing_gof" in s:
        ok = s["geometries_passing_gof"]
        parts.append(
            f"Passing both goodness-of-fit tests at {GOF_LEVEL:g}: {', '.join(ok) or 'none'}"
            + (
                " — no fitted model reproduces every feature of the data, so the ranking is "
                "between approximations."
                if not ok
                else "."
            )
        )
    return " ".join(parts)


def report(table: pd.DataFrame, config: Config) -> str:
    s = summarise(table, config)
    source = (
        "the bundled MICrONS table (Dorkenwald et al. 2022)"
        if config.table is None
        else (f"`{config.table}`")
    )
    lines = [
        "# Fig. 5 — one snapshot of spine volumes: which geometries explain it?",
        "",
        f"Data: {source}, column `{config.column or 'its one numeric column'}`, "
        f"{s.get('n_synapses', 'n/a')} synapses. "
        "Model and method: docs/spines.md.",
        "",
        "![histogram](fig5_histogram.png)",
        "",
    ]
    fits = _fits(table)
    per = _best_per_geometry(fits) if len(fits) else fits
    if "paper_ne_log_likelihood" in s:
        best_ne = per[per["potential"] == "NE"]
        best_3 = per[per["potential"] == "3-norm"]
        lines += [
            "## The paper's claims beside the measurements",
            "",
            "| claim (Pogodin et al. §4.4, Fig. 5) | measured |",
            "| --- | --- |",
            "| NE with a two-point initial distribution (Dorkenwald Table 2) and a Gaussian dual "
            "change fits the volumes | log-likelihood "
            f"{fmt(s['paper_ne_log_likelihood'], '.1f')} with the published parameters"
            + (
                f", {fmt(float(best_ne['log_likelihood'].iloc[0]), '.1f')} at the NE maximum"
                if len(best_ne)
                else ""
            )
            + f"; KS distance {fmt(s['paper_ne_ks'], '.3f')} |",
            f"| the 3-norm with a constant ({config.paper_constant:g})-or-log-normal initial "
            "mixture fits too, with eliminated synapses | log-likelihood "
            f"{fmt(s['paper_3norm_log_likelihood'], '.1f')} (constant fixed, rest fitted)"
            + (
                f", {fmt(float(best_3['log_likelihood'].iloc[0]), '.1f')} at the 3-norm maximum"
                if len(best_3)
                else ""
            )
            + f"; survival {fmt(s['paper_3norm_survival'], '.3f')}, i.e. about "
            f"{fmt(s['paper_3norm_expected_eliminated'], '.0f')} eliminated synapses for the "
            f"{s.get('n_synapses', 'n/a')} observed |",
            "| one snapshot cannot pin the geometry | "
            + ("holds" if not s.get("geometry_pinned", True) else "does not hold")
            + f": geometries within {RULED_OUT_DELTA_AIC:g} AIC units of the best: "
            + ", ".join(s.get("plausible_geometries", []))
            + " |",
            "| ... but it rules out the Euclidean one | "
            + (
                ("holds" if s["euclidean_ruled_out_by_aic"] else "does not hold")
                + f": ΔAIC of the 2-norm {fmt(s['euclidean_delta_aic'], '.1f')}"
                if "euclidean_delta_aic" in s
                else "not measured (2-norm not fitted)"
            )
            + " |",
            "",
        ]
    lines += ["## What one snapshot decides", "", verdict(s), ""]
    if len(fits):
        cols = ["potential", "family", "log_likelihood", "n_params", "delta_aic", "delta_bic"]
        head = ["geometry", "initial family", "log L", "k", "ΔAIC", "ΔBIC"]
        if "heldout_log_likelihood" in fits and fits["heldout_log_likelihood"].notna().any():
            cols.append("heldout_log_likelihood")
            head.append(f"held-out log L / synapse ({config.n_folds}-fold)")
        cols += ["dual_std", "survival"]
        head += ["dual sd s", "survival"]
        lines += [
            "## Maximum-likelihood fits",
            "",
            markdown_table(head, [[r[c] for c in cols] for _, r in fits.iterrows()], spec=".4g"),
            "",
            "## Goodness of fit (best family of each geometry)",
            "",
            "![qq](fig5_qq.png)",
            "",
            markdown_table(
                ["geometry", "family", "KS", "KS p", "AD", "AD p", "bootstrap replicates"],
                [
                    [
                        r["potential"],
                        r["family"],
                        r["ks"],
                        r["ks_pvalue"],
                        r["ad"],
                        r["ad_pvalue"],
                        config.n_bootstrap if bool(r["gof_tested"]) else 0,
                    ]
                    for _, r in per.iterrows()
                ],
                spec=".3g",
            ),
            "",
            "p-values: (1 + #{bootstrap statistic ≥ observed}) / (1 + replicates), refitting "
            f"each replicate; with {config.n_bootstrap} replicates the smallest possible value "
            f"is {fmt(1 / (1 + config.n_bootstrap), '.3g')}.",
            "",
            "## Likelihood profile over p",
            "",
            "![profile](fig5_profile.png)",
            "",
            "Maximum log-likelihood at each p (NE at p = 1), relative to the best; the dotted "
            f"line is −{RULED_OUT_DELTA_AIC / 2:g} (ΔAIC = {RULED_OUT_DELTA_AIC:g} at equal "
            "parameter counts). The constant-lognormal likelihood has several local optima; "
            "each point is the best of several starts (docs/spines.md).",
            "",
        ]
    conn = table[table["part"] == "connections"]
    if len(conn):
        conn = conn.sort_values("p_position")
        floor, sd = float(conn["gaussian_floor"].iloc[0]), float(conn["gaussian_floor_sd"].iloc[0])
        lines += [
            "## Connections with several synapses",
            "",
            "![connections](fig5_connections.png)",
            "",
            markdown_table(
                [
                    "geometry",
                    "pairs",
                    "variance ratio (within / shuffled)",
                    "d within",
                    "d shuffled",
                ],
                [
                    [
                        r["potential"],
                        r["n_pairs"],
                        r["variance_ratio"],
                        r["cdf_distance"],
                        r["shuffled_cdf_distance"],
                    ]
                    for _, r in conn.iterrows()
                ],
                spec=".3g",
            ),
            "",
            f"Gaussian floor of d for {int(conn['n_pairs'].iloc[0])} values: {fmt(floor, '.3f')} "
            f"± {fmt(sd, '.3f')} (Monte Carlo). Most Gaussian within-connection differences: "
            f"{s['connection_most_gaussian']}; within 2 sd of the floor: "
            f"{', '.join(s['connection_gaussian_within_2sd']) or 'none'}; pairs shuffled "
            "across connections are within 2 sd of the floor too for: "
            f"{', '.join(s['connection_shuffled_within_2sd']) or 'none'}"
            + (
                " (so Gaussianity alone does not single out shared histories there)."
                if set(s["connection_shuffled_within_2sd"])
                & set(s["connection_gaussian_within_2sd"])
                else "."
            )
            + " The variance of within-connection differences over that of shuffled pairs is "
            f"{fmt(s['connection_variance_ratio_min'], '.2f')} at its smallest ("
            + (
                "below 1: synapses of one connection are more alike than unrelated ones)."
                if s["connection_variance_ratio_min"] < 1
                else "not below 1)."
            ),
            "",
            "Caveat: this reads the differences as ξ_i − ξ_j only if the synapses of a "
            "connection share their initial weight and history; that is an assumption "
            "(Dorkenwald et al. measure a correlation of 0.42 between the two volumes of a dual "
            "connection, far from 1), so it says which geometry makes the within-connection "
            "differences most Gaussian, not which one is true.",
            "",
        ]
    return "\n".join(lines)


FIG5 = Experiment(
    name="fig5",
    title="Pogodin et al. Fig. 5: spine volumes, one snapshot, which geometries fit",
    Config=Config,
    quick=Config.quick,
    cells=cells,
    run_cell=run_cell,
    summarise=summarise,
    plot=plot,
    report=report,
    figures=("fig5_histogram", "fig5_qq", "fig5_profile", "fig5_connections"),
    modules=("syngeo.snapshot", "syngeo.data.weights"),
)
