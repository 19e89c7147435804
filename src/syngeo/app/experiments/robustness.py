r"""Robustness of the inferred potential: Gaussianity of the dual change under a wrong potential.

Reproduces Pogodin et al. (ICLR 2024) Fig. 3B (§4.2, B.2; docs/theory.md §2 "Consequence used for
inference" and §4) as the :class:`~syngeo.app.experiments.base.Experiment` :data:`FIG3B`
(``syngeo reproduce fig3b``).

Protocol (one cell = one (initialisation, true potential, seed))
----------------------------------------------------------------
* ``n_weights = 1000`` weights before and after learning from :func:`syngeo.simulate_change`
  (the library's one protocol, docs/theory.md §4) with ``scale`` :math:`s = 1/\sqrt{D_{ref}}`,
  :math:`D_{ref} = 100`, and ``relative_change`` :math:`c = 0.1` (``change_scale``):

  - initial weights ``"normal"``, :math:`w_0 \sim \mathcal N(0, s^2)`, or ``"lognormal"``,
    :math:`|w_0|` log-normal with the mean :math:`s\sqrt{2/\pi}` and variance
    :math:`s^2(1 - 2/\pi)` of :math:`|\mathcal N(0, s^2)|` (so :math:`E w_0^2 = s^2`: "the same
    variance as the Gaussian", paper B.2), times a random sign;
  - the true potential φ (NE, 2-norm, 3-norm) moves them by a Gaussian step in its dual space,
    :math:`\nabla\phi(w) = \nabla\phi(w_0) + c\,|\nabla\phi(s)|\,\xi`,
    :math:`\xi \sim \mathcal N(0, I)`: a tenth of the dual value of a typical weight. Under NE
    the inverse map keeps the signs of :math:`w_0`.
* For every hypothesised potential ψ (NE and the p-norms p = 1.1, 1.2, …, 3.0), the dual change
  :math:`\Delta_\psi = \nabla\psi(w) - \nabla\psi(w_0)` and its Gaussianity distance ``d``
  (:func:`syngeo.cdf_distance`, uncentred: the paper's statistic), the centred variant
  and the magnitude :math:`\|\Delta_\psi\| / \|\nabla\psi(w_0)\|` (:func:`syngeo.change_magnitude`).

Conventions
-----------
* Under a p-norm true potential some weights change sign (the step in the dual can cross 0);
  ψ = NE is then still evaluated with its signed dual map :math:`\mathrm{sign}(w)(\log|w| + 1)`,
  as the paper does, and the number of sign changes (:func:`syngeo.sign_changes`) is reported in
  ``sign_changes`` (each one alone rules NE out as the true geometry). The magnitude, which
  :func:`syngeo.change_magnitude` defines only inside the potential's domain, is NaN there.
* NE is placed at p = 1 on the horizontal axis (the p → 1 end of the p-norm family).
* Seeds: one generator per cell,
  ``numpy.random.default_rng((config.seed, seed, init index, round(1e6 p_true)))``
  (``p_true = 1`` for NE).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

import syngeo
from syngeo import cdf_distance, change_magnitude, sign_changes, simulate_change
from syngeo.app.experiments.base import Experiment
from syngeo.app.formatting import fmt, markdown_table
from syngeo.errors import InputError, InputTypeError
from syngeo.gaussianity import gaussian_null
from syngeo.validation import as_int, as_positive_float, as_positive_int

__all__ = [
    "FAR",
    "FIG3B",
    "INITS",
    "N_STANDARD_ERRORS",
    "PRONOUNCED_RATIO",
    "Config",
    "GaussianFloor",
    "candidate_position",
    "cells",
    "gaussian_floor",
    "gaussian_floor_band",
    "plot",
    "report",
    "run_cell",
    "summarise",
]

INITS = ("normal", "lognormal")
#: The paper's hypothesised potentials: NE and p = 1.1, 1.2, ..., 3.0.
PAPER_CANDIDATES: tuple[str, ...] = ("NE", *(f"{p / 10:.1f}-norm" for p in range(11, 31)))


@dataclass(frozen=True)
class Config:
    """Settings of the robustness experiment (defaults: the paper's protocol, B.2).

    Attributes
    ----------
    n_weights : int
        Synapses per sample (1000).
    reference_width : int
        ``D_ref``: the initial weights have scale ``1/sqrt(D_ref)`` (100).
    change_scale : float
        ``c`` in ``∇φ(w) = ∇φ(w0) + c ∇φ(1/sqrt(D_ref)) ξ`` (0.1).
    inits : tuple[str, ...]
        Initial distributions, from ``"normal"`` and ``"lognormal"``.
    true_potentials : tuple[str, ...]
        Potentials that produce the change.
    candidates : tuple[str, ...]
        Hypothesised potentials ψ.
    n_seeds : int
        Seeds per (initialisation, true potential).
    seed : int
        Base seed.
    """

    n_weights: int = 1000
    reference_width: int = 100
    change_scale: float = 0.1
    inits: tuple[str, ...] = INITS
    true_potentials: tuple[str, ...] = ("NE", "2-norm", "3-norm")
    candidates: tuple[str, ...] = PAPER_CANDIDATES
    n_seeds: int = 30
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("inits", "true_potentials", "candidates"):
            value = getattr(self, name)
            if isinstance(value, str) or not hasattr(value, "__iter__"):
                raise InputTypeError(f"{name} must be a sequence of names, got {value!r}")
            if not tuple(value):
                raise InputError(f"{name} must not be empty")
            object.__setattr__(self, name, tuple(value))
        unknown = [i for i in self.inits if i not in INITS]
        if unknown:
            raise InputError(f"unknown initialisation(s) {unknown}; choose from {INITS}")
        for name in ("true_potentials", "candidates"):
            parsed = tuple(syngeo.potential(p).name for p in getattr(self, name))
            if len(set(parsed)) != len(parsed):
                raise InputError(f"{name} must be distinct, got {getattr(self, name)!r}")
            object.__setattr__(self, name, parsed)
        as_int(self.n_weights, "n_weights (a distance needs a spread)", minimum=2)
        as_positive_int(self.reference_width, "reference_width")
        as_positive_int(self.n_seeds, "n_seeds")
        as_positive_float(self.change_scale, "change_scale")

    @classmethod
    def quick(cls) -> Config:
        """The full protocol with 8 seeds instead of 30 (it is cheap either way)."""
        return cls(n_seeds=8)


def cells(config: Config) -> list[dict]:
    """One cell per (initialisation, true potential, seed)."""
    return [
        {"init": init, "true_potential": true, "seed": seed}
        for init in config.inits
        for true in config.true_potentials
        for seed in range(config.n_seeds)
    ]


def candidate_position(name: str) -> float:
    """Horizontal position of a potential: its parameter p for a p-norm, 1 for NE."""
    p = syngeo.potential(name).parameter
    return 1.0 if p is None else float(p)


def run_cell(config: Config, cell: dict) -> list[dict]:
    """Rows (one per hypothesised potential) of one (initialisation, true potential, seed)."""
    init, true, seed = str(cell["init"]), str(cell["true_potential"]), int(cell["seed"])
    entropy = (int(config.seed), seed, INITS.index(init), round(1e6 * candidate_position(true)))
    sim = simulate_change(
        true,
        config.n_weights,
        init=init,
        scale=1.0 / math.sqrt(config.reference_width),
        relative_change=config.change_scale,
        rng=np.random.default_rng(entropy),
    )
    w0, w = sim.before, sim.after
    flips = sign_changes(w0, w)
    rows = []
    for name in config.candidates:
        psi = syngeo.potential(name)
        outside_domain = psi.preserves_sign and not flips.ne_valid
        # the paper scores NE with its signed dual map even where signs flipped: Δ by hand here,
        # since syngeo.dual_change refuses weights outside the potential's domain
        delta = np.asarray(psi.grad(w), dtype=np.float64) - np.asarray(psi.grad(w0), np.float64)
        rows.append(
            {
                "init": init,
                "true_potential": true,
                "seed": seed,
                "candidate": psi.name,
                "candidate_p": candidate_position(psi.name),
                "d": cdf_distance(delta),
                "d_centred": cdf_distance(delta, centred=True),
                "magnitude": math.nan if outside_domain else change_magnitude(w0, w, psi),
                "sign_changes": flips.n_sign_flips,
            }
        )
    return rows


# --------------------------------------------------------------------------------------------
# Aggregation, figure, report, summary
# --------------------------------------------------------------------------------------------


def _mean_std(df: pd.DataFrame) -> pd.DataFrame:
    grouped = df.groupby(["init", "true_potential", "candidate", "candidate_p"], sort=True)["d"]
    out = pd.DataFrame({"mean": grouped.mean(), "std": grouped.std(ddof=1), "n": grouped.size()})
    return out.reset_index().sort_values(["init", "true_potential", "candidate_p"])


def _argmin_rows(df: pd.DataFrame) -> list[dict]:
    stats = _mean_std(df)
    rows = []
    for (init, true), part in stats.groupby(["init", "true_potential"], sort=True):
        part = part.sort_values("mean")
        best, runner = part.iloc[0], part.iloc[1] if len(part) > 1 else None
        at_truth = part[part.candidate == true]
        rows.append(
            {
                "init": init,
                "true_potential": true,
                "argmin": str(best["candidate"]),
                "argmin_is_true": bool(best["candidate"] == true),
                "d_min": float(best["mean"]),
                "d_at_true": float(at_truth["mean"].iloc[0]) if len(at_truth) else math.nan,
                "runner_up": None if runner is None else str(runner["candidate"]),
                "margin_to_runner_up": math.nan
                if runner is None
                else float(runner["mean"] - best["mean"]),
                "d_max": float(part["mean"].max()),
                "argmax": str(part.iloc[-1]["candidate"]),
                "mean_sign_changes": float(
                    df[(df.init == init) & (df.true_potential == true)]
                    .drop_duplicates("seed")["sign_changes"]
                    .mean()
                ),
                "n_seeds": int(part["n"].min()),
            }
        )
    return rows


#: Claims about a mean over seeds are judged within this many standard errors of that mean.
N_STANDARD_ERRORS = 3.0
#: "Only for ψ close to φ" (paper §4.2), made concrete: candidates at least this far from the true
#: potential in p (NE at p = 1) must score above the Gaussian floor band.
FAR = 0.5
#: "Very pronounced" (paper §4.2), made concrete: d under the wrong family is at least this many
#: times d under the true potential.
PRONOUNCED_RATIO = 3.0


@dataclass(frozen=True)
class GaussianFloor:
    """The distribution of d for exact standard-normal samples (the finite-sample floor of d).

    Attributes
    ----------
    n_weights : int
        Sample size.
    mean, std : float
        Mean and standard deviation (ddof=1) of d over the Monte Carlo draws.
    n_draws : int
        Number of draws.
    q95 : float
        95th percentile of d over the draws.
    """

    n_weights: int
    mean: float
    std: float
    n_draws: int
    q95: float = math.nan

    def standard_error(self, n_seeds: int) -> float:
        """Standard error of (a mean of d over ``n_seeds`` Gaussian samples) − :attr:`mean`.

        Both means carry sampling error: ``std · sqrt(1/n_seeds + 1/n_draws)``.
        """
        return self.std * math.sqrt(1.0 / n_seeds + 1.0 / self.n_draws)


def gaussian_floor_band(n_weights: int, *, n_draws: int = 200, seed: int = 0) -> GaussianFloor:
    """Mean and spread of d over ``n_draws`` samples of ``n_weights`` standard-normal values.

    Monte Carlo from ``default_rng(seed)``. A change that is exactly Gaussian has this
    distribution of d, so no hypothesised potential can score below ``mean`` on average.

    >>> floor = gaussian_floor_band(1000, n_draws=50)
    >>> 0.02 < floor.mean < 0.06 and 0.0 < floor.std < floor.mean
    True
    """
    n_weights = as_int(n_weights, "n_weights (a distance needs a spread)", minimum=2)
    n_draws = as_int(n_draws, "n_draws (a spread needs two draws)", minimum=2)
    values = gaussian_null("cdf", n_weights, draws=n_draws, rng=seed)
    return GaussianFloor(
        n_weights,
        float(values.mean()),
        float(values.std(ddof=1)),
        n_draws,
        float(np.quantile(values, 0.95)),
    )


def gaussian_floor(n_weights: int, *, n_draws: int = 200, seed: int = 0) -> float:
    """Mean d of ``n_weights`` exact standard-normal samples (:func:`gaussian_floor_band`'s mean)."""
    return gaussian_floor_band(n_weights, n_draws=n_draws, seed=seed).mean


def _short_label(name: str) -> str:
    p = syngeo.potential(name).parameter
    return name if p is None else f"{p:g}"


def plot(df: pd.DataFrame, config: Config) -> dict:
    """Fig. 3B: mean ± std of d against ψ; one panel per initialisation, one curve per true φ.

    The p-norm candidates form each curve; a candidate without a parameter p (NE) is drawn as
    its own point with an error bar at p = 1, not joined to the curve. The grey band is the
    Gaussian floor (mean ± std of d for exact normal samples of the same size); d is on a log
    scale, so the minima can be read against the floor.
    """
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    from syngeo.app.plotting import geometry_style, subplots

    inits = [i for i in INITS if i in set(df["init"])] if len(df) else list(config.inits)
    fig, axes = subplots(1, len(inits), width=4.2, height=3.1, squeeze=False, sharey=True)
    stats = _mean_std(df) if len(df) else None
    floor = gaussian_floor_band(config.n_weights)
    positions = sorted({candidate_position(c) for c in config.candidates})
    labels = {candidate_position(c): _short_label(c) for c in config.candidates}
    alone = {c for c in config.candidates if syngeo.potential(c).parameter is None}
    for k, init in enumerate(inits):
        ax = axes[0][k]
        ax.axhspan(
            floor.mean - floor.std,
            floor.mean + floor.std,
            color="0.6",
            alpha=0.35,
            linewidth=0,
            gid="gaussian-floor",
            label=f"Gaussian floor: d of {config.n_weights} normal samples (mean ± std)",
        )
        ax.axhline(floor.mean, color="0.45", linewidth=0.8)
        if stats is not None:
            for true in config.true_potentials:
                part = stats[(stats.init == init) & (stats.true_potential == true)]
                if not len(part):
                    continue
                style = geometry_style(true)
                curve = part[~part.candidate.isin(alone)]
                x, m, s = curve["candidate_p"], curve["mean"], curve["std"].fillna(0.0)
                ax.plot(
                    x,
                    m,
                    "-",
                    color=style.color,
                    marker=style.marker,
                    markersize=3,
                    label=f"true φ = {style.label}",
                    gid=f"curve:{true}",
                )
                ax.fill_between(x, m - s, m + s, color=style.color, alpha=0.25, linewidth=0)
                single = part[part.candidate.isin(alone)]
                if len(single):
                    bars = ax.errorbar(
                        single["candidate_p"],
                        single["mean"],
                        yerr=single["std"].fillna(0.0),
                        color=style.color,
                        marker=style.marker,
                        markersize=4,
                        linestyle="none",
                        capsize=2,
                    )
                    bars.lines[0].set_gid(f"alone:{true}")
                ax.axvline(candidate_position(true), color=style.color, linestyle=":", linewidth=1)
        if alone and len(positions) > 1:
            # the gap between NE (p → 1) and the first p-norm: a thin rule, not a line segment
            ax.axvline(
                (positions[0] + positions[1]) / 2, color="0.75", linewidth=0.6, linestyle="-"
            )
        ticks = positions[::2] if len(positions) > 12 else positions
        ax.set_xticks(ticks, [labels[t] for t in ticks])
        ax.set_xlabel("hypothesised potential ψ: NE, or the p-norm with this p")
        # log scale: the minima and the floor band stay readable beside curves 20× higher
        ax.set_yscale("log", nonpositive="clip")
        ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.yaxis.set_minor_formatter(NullFormatter())
        ax.set_title(f"{'log-normal' if init == 'lognormal' else init} initial weights")
    axes[0][0].set_ylabel("distance d (mean ± std over seeds)")
    handles, names = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, names, loc="outside lower center", ncols=2, fontsize=7, frameon=False)
    return {"fig3b": fig}


def _wrong_family(true: str, candidates) -> str | None:
    """The candidate of the other family: the 2-norm for a sign-preserving (multiplicative) true
    potential, else the first sign-preserving candidate (NE)."""
    if syngeo.potential(true).preserves_sign:
        return "2-norm" if "2-norm" in candidates else None
    return next((c for c in candidates if syngeo.potential(c).preserves_sign), None)


def _ne_contrast(stats: pd.DataFrame, init: str, true: str) -> float:
    """How clearly NE and the additive p-norms differ: d(wrong family) / d(true potential).

    For a true p-norm the wrong family is ψ = NE; for true NE it is ψ = 2-norm.
    """
    part = stats[(stats.init == init) & (stats.true_potential == true)].set_index("candidate")
    wrong = _wrong_family(true, list(part.index))
    if wrong is None or true not in part.index:
        return math.nan
    return float(part.loc[wrong, "mean"] / max(part.loc[true, "mean"], 1e-300))


def _paired_standard_error(df: pd.DataFrame, init: str, true: str, a: str, b: str) -> float:
    """Standard error of the mean over seeds of d(ψ = a) − d(ψ = b) (paired by seed)."""
    part = df[(df.init == init) & (df.true_potential == true)]
    table = part.pivot_table(index="seed", columns="candidate", values="d")
    if a not in table or b not in table:
        return math.nan
    diff = (table[a] - table[b]).dropna()
    if a == b:
        return 0.0
    if len(diff) < 2:
        return math.nan
    return float(diff.std(ddof=1) / math.sqrt(len(diff)))


def summarise(df: pd.DataFrame, config: Config) -> dict:
    """Argmin of the mean d per (initialisation, true φ), NE-vs-p-norm contrast, Gaussian floor.

    Every claim of the report is a field here, with the comparison it makes: ψ = φ within
    :data:`N_STANDARD_ERRORS` paired standard errors of the minimum; the minimum not below the
    Gaussian floor by more than that many standard errors of a mean over the seeds; the
    wrong-family ratio at least :data:`PRONOUNCED_RATIO`; no sign change under a sign-preserving
    true potential.
    """
    if not len(df):
        return {"n_rows": 0}
    rows = _argmin_rows(df)
    stats = _mean_std(df)
    floor = gaussian_floor_band(config.n_weights)
    floor_top = floor.mean + floor.std
    k = N_STANDARD_ERRORS
    for r in rows:
        init, true = r["init"], r["true_potential"]
        r["ne_contrast"] = _ne_contrast(stats, init, true)
        se = _paired_standard_error(df, init, true, true, r["argmin"])
        r["true_minus_min"] = r["d_at_true"] - r["d_min"]
        r["true_minus_min_se"] = se
        r["true_within_spread_of_min"] = (
            None
            if math.isnan(se) or math.isnan(r["d_at_true"])
            else bool(r["true_minus_min"] <= k * se)
        )
        floor_se = floor.standard_error(r["n_seeds"])
        r["floor_se"] = floor_se
        r["min_floor_z"] = (r["d_min"] - floor.mean) / floor_se
        r["min_above_floor"] = bool(r["d_min"] >= floor.mean - k * floor_se)
        r["true_matches_floor"] = (
            None
            if math.isnan(r["d_at_true"])
            else bool(abs(r["d_at_true"] - floor.mean) <= k * floor_se)
        )
        far = stats[
            (stats.init == init)
            & (stats.true_potential == true)
            & ((stats.candidate_p - candidate_position(true)).abs() >= FAR - 1e-9)
        ]
        r["far_min_d"] = float(far["mean"].min()) if len(far) else math.nan
        r["far_min_at"] = str(far.loc[far["mean"].idxmin(), "candidate"]) if len(far) else None
        r["far_above_floor"] = None if not len(far) else bool(r["far_min_d"] > floor_top)
        part = df[(df.init == init) & (df.true_potential == true)]
        r["max_sign_changes"] = int(part["sign_changes"].max())
        r["true_preserves_sign"] = bool(syngeo.potential(true).preserves_sign)
    contrasts = [r["ne_contrast"] for r in rows if not math.isnan(r["ne_contrast"])]
    within = [r["true_within_spread_of_min"] for r in rows]
    matches = [r["true_matches_floor"] for r in rows if r["true_matches_floor"] is not None]
    sign_rows = [r for r in rows if r["true_preserves_sign"]]
    far = [r["far_above_floor"] for r in rows if r["far_above_floor"] is not None]
    return {
        "n_rows": len(df),
        "n_standard_errors": k,
        "argmin_is_true_everywhere": bool(all(r["argmin_is_true"] for r in rows)),
        "n_settings_argmin_is_true": int(sum(r["argmin_is_true"] for r in rows)),
        "n_settings": len(rows),
        "n_settings_true_within_spread_of_min": int(sum(bool(w) for w in within)),
        "true_within_spread_of_min_everywhere": None
        if any(w is None for w in within)
        else bool(all(within)),
        "far_from_truth": FAR,
        "n_settings_far_above_floor": int(sum(far)),
        "far_above_floor_everywhere": bool(all(far)) if far else None,
        "ne_contrast_min": float(min(contrasts)) if contrasts else None,
        "pronounced_ratio": PRONOUNCED_RATIO,
        "ne_contrast_pronounced": bool(min(contrasts) >= PRONOUNCED_RATIO) if contrasts else None,
        "gaussian_floor_d": floor.mean,
        "gaussian_floor_std": floor.std,
        "gaussian_floor_n_draws": floor.n_draws,
        "d_min_lowest": float(min(r["d_min"] for r in rows)),
        "d_min_highest": float(max(r["d_min"] for r in rows)),
        "n_settings_min_below_floor_mean": int(sum(r["d_min"] < floor.mean for r in rows)),
        "floor_holds_within_spread": bool(all(r["min_above_floor"] for r in rows)),
        "n_settings_true_matches_floor": int(sum(matches)),
        "true_matches_floor_everywhere": bool(all(matches)) if matches else None,
        "sign_preserving_truth_never_flips": None
        if not sign_rows
        else bool(all(r["max_sign_changes"] == 0 for r in sign_rows)),
        "by_setting": rows,
    }


def _verdict(ok) -> str:
    return "holds" if ok else "does not hold"


def _floor_paragraph(s: dict, config: Config, n_seeds: int) -> str:
    k = s["n_standard_errors"]
    rows = s["by_setting"]
    lowest = min(rows, key=lambda r: r["min_floor_z"])
    tolerance = k * GaussianFloor(
        config.n_weights,
        s["gaussian_floor_d"],
        s["gaussian_floor_std"],
        s["gaussian_floor_n_draws"],
    ).standard_error(n_seeds)
    text = (
        f"Gaussian floor (grey band in the figure): exact standard-normal samples of "
        f"{config.n_weights} values have d = {fmt(s['gaussian_floor_d'])} ± "
        f"{fmt(s['gaussian_floor_std'])} (mean ± std over {s['gaussian_floor_n_draws']} Monte Carlo "
        "draws). An exactly Gaussian change scores this on average, so a curve should not dip "
        f"below the floor by more than the sampling error of a mean over {n_seeds} seeds (and of "
        "the floor itself): "
        f"{fmt(k, 'g')} "
        f"standard errors = {fmt(tolerance)}. The minima of the curves are "
        f"{fmt(s['d_min_lowest'])}–{fmt(s['d_min_highest'])}; "
        f"{s['n_settings_min_below_floor_mean']} of {s['n_settings']} lie below the floor's mean. "
        f"Every minimum is above the floor minus {fmt(tolerance)}: "
        f"{_verdict(s['floor_holds_within_spread'])} (the lowest, {fmt(lowest['d_min'])} for "
        f"{lowest['init']} / {lowest['true_potential']}, is {fmt(abs(lowest['min_floor_z']), '.2g')} "
        f"standard errors {'below' if lowest['min_floor_z'] < 0 else 'above'} the floor's mean)."
    )
    if s["true_matches_floor_everywhere"] is not None:
        text += (
            " At ψ = φ the change is Gaussian by construction, so its mean d should match the "
            f"floor within {fmt(k, 'g')} standard errors: it does in "
            f"{s['n_settings_true_matches_floor']} of {s['n_settings']} settings, so this "
            f"{_verdict(s['true_matches_floor_everywhere'])}."
        )
    return text


def report(df: pd.DataFrame, config: Config) -> str:
    title = "# Fig. 3B — robustness: Gaussianity of the dual change under a hypothesised potential"
    if not len(df):
        return f"{title}\n\nNo cells were run.\n"
    s = summarise(df, config)
    k = s["n_standard_errors"]
    n_seeds = min(r["n_seeds"] for r in s["by_setting"])
    within = s["true_within_spread_of_min_everywhere"]
    argmin_text = (
        f"the minimum of the mean d is at ψ = φ in {s['n_settings_argmin_is_true']} of "
        f"{s['n_settings']} settings; d at ψ = φ is within {fmt(k, 'g')} standard errors "
        f"(of the seed-paired difference) of the minimum in "
        f"{s['n_settings_true_within_spread_of_min']} of {s['n_settings']}: "
        + ("n/a (needs two seeds)" if within is None else _verdict(within))
    )
    far = s["far_above_floor_everywhere"]
    if far is not None:
        worst = min(
            (r for r in s["by_setting"] if r["far_above_floor"] is not None),
            key=lambda r: r["far_min_d"],
        )
        argmin_text += (
            f"; every ψ at least {fmt(FAR, 'g')} from φ in p has a mean d above the Gaussian floor "
            f"band (> {fmt(s['gaussian_floor_d'] + s['gaussian_floor_std'])}) in "
            f"{s['n_settings_far_above_floor']} of {s['n_settings']} settings: {_verdict(far)} "
            f"(lowest: {fmt(worst['far_min_d'])}, ψ = {worst['far_min_at']} for "
            f"{worst['init']} / {worst['true_potential']})"
        )
    if s["ne_contrast_min"] is None:
        contrast_text = "n/a (needs NE and the 2-norm among the candidates)"
    else:
        contrast_text = (
            "d under the wrong family ÷ d under the true potential (ψ = NE for a true p-norm, "
            f"ψ = 2-norm for true NE) is at least {fmt(s['ne_contrast_min'])}; at least "
            f"{fmt(PRONOUNCED_RATIO, 'g')} (taken here as pronounced): "
            f"{_verdict(s['ne_contrast_pronounced'])}"
        )
    lines = [
        title,
        "",
        "![fig3b](fig3b.png)",
        "",
        f"Protocol (paper B.2, syngeo.simulate_change): {config.n_weights} weights, "
        f"w0 ~ N(0, s²) with s = 1/√{config.reference_width}, or a signed log-normal with the "
        "mean and variance of |N(0, s²)| (so E w0² = s²); "
        f"∇φ(w) = ∇φ(w0) + {config.change_scale:g}·|∇φ(s)|·ξ; d (uncentred) for every ψ; "
        f"mean ± std over {n_seeds} seeds. NE is drawn as its own point at p = 1.",
        "",
        "## The paper's claims next to the measurements",
        "",
        "| claim (Pogodin et al. §4.2) | measured here |",
        "| --- | --- |",
        "| the change is Gaussian only for ψ close to the true φ: the minimum of d is at ψ = φ | "
        f"{argmin_text} |",
        "| the distinction between NE (multiplicative) and the p-norms (additive) is very "
        f"pronounced | {contrast_text} |",
        "",
        _floor_paragraph(s, config, n_seeds),
        "",
        "## Minimum of d per setting",
        "",
        markdown_table(
            [
                "init",
                "true φ",
                "argmin ψ",
                "d at argmin",
                "d at ψ = φ",
                "excess at ψ = φ (± s.e.)",
                "runner-up",
                "margin",
                "max d (at)",
                "NE contrast",
                "sign changes",
            ],
            [
                [
                    r["init"],
                    r["true_potential"],
                    r["argmin"],
                    r["d_min"],
                    r["d_at_true"],
                    f"{fmt(r['true_minus_min'])} ± {fmt(r['true_minus_min_se'])}",
                    r["runner_up"],
                    r["margin_to_runner_up"],
                    f"{fmt(r['d_max'])} ({r['argmax']})",
                    r["ne_contrast"],
                    r["mean_sign_changes"],
                ]
                for r in s["by_setting"]
            ],
        ),
        "",
        "Sign changes: mean number (out of "
        f"{config.n_weights}) of weights whose sign flips under the true potential. NE keeps "
        "every sign, so a single flip rules it out as the true geometry.",
    ]
    never = s["sign_preserving_truth_never_flips"]
    if never is not None:
        worst = max(
            (r for r in s["by_setting"] if r["true_preserves_sign"]),
            key=lambda r: r["max_sign_changes"],
        )
        lines[-1] += (
            " Under a sign-preserving true potential no weight changed sign in any seed: "
            f"{_verdict(never)}"
            + ("." if never else f" (up to {worst['max_sign_changes']} in one seed).")
        )
    lines.append("")
    return "\n".join(lines)


FIG3B = Experiment(
    name="fig3b",
    title="Pogodin et al. Fig. 3B: robustness of the inferred potential",
    Config=Config,
    quick=Config.quick,
    cells=cells,
    run_cell=run_cell,
    summarise=summarise,
    plot=plot,
    report=report,
    figures=("fig3b",),
)
