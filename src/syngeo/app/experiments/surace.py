r"""Surace & Brea, "The limitations of gradient descent as a principle of brain function".

Two reproductions (``syngeo reproduce NAME``), the
:class:`~syngeo.app.experiments.base.Experiment` objects :data:`FIG1` and :data:`FIG2`:

``surace-fig1``
    The cost :math:`C(x_1, x_2) = 10\,x_1x_2` and its steepest-descent direction under three
    rulers: the Euclidean metric (unit balls are circles), a constant non-Euclidean metric (equal
    tilted ellipses) and a position-dependent metric (ellipses whose orientation changes from point
    to point). Rows: per metric and point, the partial derivatives, the unit-A-length steepest
    direction, its angle to the Euclidean one, the rate of decrease along it (checked against a
    brute-force search over unit vectors) and the unit ellipse.
``surace-fig2``
    Flow fields of the binomial release model (Costa et al. 2017; :mod:`syngeo.release`) over
    :math:`P \in (0, 1)` and a range of ``q``, all drawn in :math:`(P, q\,[\mathrm{mV}])`:
    (A) Euclidean with :math:`\eta_P = 1, \eta_q = 1\,\mathrm{mV}^2`; (B) Fisher (natural
    gradient); (C) ``q`` in volts with :math:`\eta_q = 1\,\mathrm{V}^2`; (D) ``q`` in microvolts
    with :math:`\eta_q = 1\,\mu\mathrm{V}^2`. The Fisher field is also computed in V and µV
    coordinates (cells ``B-V``, ``B-uV``) and mapped back, to measure its unit invariance.

Parameters from the source text: ``N = 1`` and :math:`\eta_q = 1\,\mathrm{mV}^2` reproduce the
flow field of Costa et al.'s Fig. 1D. The text gives no value for the target mean
:math:`m`; we use :math:`m = 0.5\,\mathrm{mV}` (a configuration field), which puts the
target curve :math:`NPq = m` across the middle of the plotted range. (The target mean is written
:math:`m`, not φ: in syngeo φ is always a potential.) Math and conventions:
:mod:`syngeo.metrics`, :mod:`syngeo.release`, :mod:`syngeo.units`, and ``docs/surace.md``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from syngeo.app.experiments.base import Experiment
from syngeo.app.formatting import fmt
from syngeo.errors import InputError
from syngeo.metrics import (
    Constant,
    Euclidean,
    Fisher,
    Metric,
    PositionDependent,
    coordinate_grid,
    flow_field,
)
from syngeo.release import BinomialRelease
from syngeo.units import unit

__all__ = [
    "FIG1",
    "FIG2",
    "Fig1Config",
    "Fig2Config",
    "fig1_metrics",
    "fig2_panel_field",
]

_METRIC_COLORS = {"euclidean": "#d62728", "constant": "#2ca02c", "position": "#ff7f0e"}
_METRIC_TITLES = {
    "euclidean": "Euclidean metric",
    "constant": "constant non-Euclidean metric",
    "position": "position-dependent metric",
}


def _angles_deg(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Angle between vectors u and v (shape=[..., 2]) in degrees, accurate near 0 and 180."""
    cross = u[..., 0] * v[..., 1] - u[..., 1] * v[..., 0]
    return np.degrees(np.arctan2(np.abs(cross), np.sum(u * v, axis=-1)))


def _holds(ok: bool) -> str:
    """The verdict word of a report sentence."""
    return "holds" if ok else "does not hold"


def _axis_angle_deg(direction: np.ndarray, axis_deg: float) -> float:
    """Angle in [0°, 90°] between a direction and an undirected axis at ``axis_deg``."""
    a = abs(math.degrees(math.atan2(direction[1], direction[0])) - axis_deg) % 180.0
    return min(a, 180.0 - a)


#: Fig. 1's tolerances. Both rates of decrease are dot products of 2-vectors of size |∂C| ≤ 10√2
#: (a few roundings each), so they agree to ~10⁻¹⁵·|rate|; a gap counts as negative only below
#: −10⁻¹²·|rate|. Angles are computed from such vectors by arctan2: 10⁻⁶° is far above rounding.
FIG1_REL_TOL = 1e-12
FIG1_ANGLE_TOL_DEG = 1e-6


def _rotation(angle: float) -> np.ndarray:
    return np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])


# ==============================================================================================
# Fig. 1: steepest descent of C = 10 x1 x2 under three metrics
# ==============================================================================================


@dataclass(frozen=True)
class Fig1Config:
    """Settings of Fig. 1.

    Attributes
    ----------
    points : tuple of (x1, x2)
        Where the unit balls and steepest directions are drawn (not the origin, where ∂C = 0).
    cost_scale : float
        The factor in C = cost_scale·x1·x2 (the paper's 10).
    anisotropy : float
        Ratio of the long to the short semi-axis of the non-Euclidean unit ellipses.
    constant_angle_deg : float
        Orientation of the constant metric's long axis.
    rotation_rate : float
        For the position-dependent metric, the long axis points at angle
        ``rotation_rate·(x1 − x2)`` (radians): a different ellipse at every point.
    step : float
        Drawing size: unit balls and unit-length steepest directions are scaled by ``step``.
    n_search : int
        Number of unit-length directions in the brute-force check of the steepest direction
        (it is also run with a quarter as many, to show that the gap shrinks with a finer search).
    """

    points: tuple[tuple[float, float], ...] = (
        (-1.0, 1.0),
        (0.0, 1.0),
        (1.0, 1.0),
        (-1.0, 0.0),
        (1.0, 0.0),
        (-1.0, -1.0),
        (0.0, -1.0),
        (1.0, -1.0),
    )
    cost_scale: float = 10.0
    anisotropy: float = 3.0
    constant_angle_deg: float = 30.0
    rotation_rate: float = 0.9
    step: float = 0.3
    n_search: int = 3600

    @classmethod
    def quick(cls) -> Fig1Config:
        return cls(n_search=720)


def fig1_metrics(config: Fig1Config) -> dict[str, Metric]:
    """The three metrics of Fig. 1, keyed ``"euclidean"``, ``"constant"``, ``"position"``.

    Non-Euclidean ones have eigenvalues 1 and ``anisotropy²`` (unit ellipses with semi-axes 1 and
    ``1/anisotropy``); the long axis is fixed (constant) or turns with the point (position).
    """
    if config.anisotropy <= 0:
        raise InputError(f"anisotropy must be > 0, got {config.anisotropy}")
    eig = np.diag([1.0, config.anisotropy**2])
    rot = _rotation(math.radians(config.constant_angle_deg))
    rate = float(config.rotation_rate)

    def position_metric(x: np.ndarray) -> np.ndarray:
        r = _rotation(rate * (x[0] - x[1]))
        return r @ eig @ r.T

    return {
        "euclidean": Euclidean(2),
        "constant": Constant(rot @ eig @ rot.T),
        "position": PositionDependent(position_metric, dim=2, name="position-dependent"),
    }


def _fig1_cost_grad(config: Fig1Config):
    s = float(config.cost_scale)
    return lambda x: s * np.asarray(x)[..., ::-1]


def fig1_cells(config: Fig1Config) -> list[dict]:
    return [{"metric": name} for name in ("euclidean", "constant", "position")]


def fig1_run_cell(config: Fig1Config, cell: dict) -> list[dict]:
    name = cell["metric"]
    metric = fig1_metrics(config)[name]
    points = np.asarray(config.points, dtype=np.float64)
    grad = _fig1_cost_grad(config)(points)
    direction = metric.steepest_descent_direction(grad, points)
    euclid = -grad / np.linalg.norm(grad, axis=-1, keepdims=True)
    angles = _angles_deg(direction, euclid)
    rows = []
    for i, x in enumerate(points):
        ball = metric.unit_ball(x, n_points=config.n_search)
        brute = float(np.min(ball @ grad[i]))
        coarse_ball = metric.unit_ball(x, n_points=max(4, config.n_search // 4))
        brute_coarse = float(np.min(coarse_ball @ grad[i]))
        slope = float(grad[i] @ direction[i])
        ellipse = metric.unit_ellipse(x)
        lean = _axis_angle_deg(direction[i], ellipse.angle_deg)
        lean_euclid = _axis_angle_deg(euclid[i], ellipse.angle_deg)
        rows.append(
            {
                "metric": name,
                "x1": float(x[0]),
                "x2": float(x[1]),
                "cost": float(config.cost_scale * x[0] * x[1]),
                "grad_x1": float(grad[i, 0]),
                "grad_x2": float(grad[i, 1]),
                "direction_x1": float(direction[i, 0]),
                "direction_x2": float(direction[i, 1]),
                "angle_to_euclidean_deg": float(angles[i]),
                "slope": slope,
                "brute_force_slope": brute,
                "brute_force_slope_coarse": brute_coarse,
                "angle_to_long_axis_deg": lean,
                "euclidean_angle_to_long_axis_deg": lean_euclid,
                "ellipse_major": ellipse.major,
                "ellipse_minor": ellipse.minor,
                "ellipse_angle_deg": ellipse.angle_deg,
            }
        )
    return rows


def fig1_plot(df: pd.DataFrame, config: Fig1Config) -> dict:
    from matplotlib.patches import Ellipse

    from syngeo.app.plotting import subplots

    names = [n for n in ("euclidean", "constant", "position") if n in set(df.metric)]
    fig, axes = subplots(1, len(names), width=3.3, height=3.3, squeeze=False)
    pts = np.asarray(config.points, dtype=np.float64)
    lim = float(np.max(np.abs(pts))) + 2.2 * config.step
    grid = np.linspace(-lim, lim, 201)
    x1, x2 = np.meshgrid(grid, grid)
    for ax, name in zip(axes[0], names, strict=True):
        sub = df[df.metric == name]
        levels = config.cost_scale * np.array([-1.5, -1.0, -0.5, -0.2, 0.2, 0.5, 1.0, 1.5])
        cs = ax.contour(
            x1, x2, config.cost_scale * x1 * x2, levels=levels, colors="k", linewidths=0.6
        )
        ax.clabel(cs, fmt="%g", fontsize=6)
        color = _METRIC_COLORS[name]
        for r in sub.itertuples():
            ax.add_patch(
                Ellipse(
                    (r.x1, r.x2),
                    2 * config.step * r.ellipse_major,
                    2 * config.step * r.ellipse_minor,
                    angle=r.ellipse_angle_deg,
                    facecolor=color,
                    alpha=0.25,
                    edgecolor=color,
                )
            )
            euclid = -np.array([r.grad_x1, r.grad_x2]) / math.hypot(r.grad_x1, r.grad_x2)
            if name != "euclidean":
                ax.annotate(
                    "",
                    xy=(r.x1 + config.step * euclid[0], r.x2 + config.step * euclid[1]),
                    xytext=(r.x1, r.x2),
                    arrowprops={"arrowstyle": "->", "color": "0.55", "lw": 0.9, "ls": "--"},
                )
            ax.annotate(
                "",
                xy=(r.x1 + config.step * r.direction_x1, r.x2 + config.step * r.direction_x2),
                xytext=(r.x1, r.x2),
                arrowprops={"arrowstyle": "-|>", "color": color, "lw": 1.6},
            )
            ax.plot(r.x1, r.x2, "k+", ms=6)
        ax.set_xlim(-lim, lim)
        ax.set_ylim(-lim, lim)
        ax.set_aspect("equal")
        ax.set_xlabel("$x_1$")
        ax.set_ylabel("$x_2$")
        ax.set_title(_METRIC_TITLES[name], color=color)
    fig.suptitle(
        r"Steepest descent on $C = 10\,x_1x_2$: unit balls (shaded) and unit-length steepest "
        "directions (arrows); grey dashed: Euclidean direction",
        fontsize=8,
    )
    return {"surace_fig1": fig}


def fig1_summary(df: pd.DataFrame, config: Fig1Config) -> dict:
    out: dict = {}
    for name, sub in df.groupby("metric", sort=False):
        gap = sub.brute_force_slope - sub.slope
        scale = float(sub.slope.abs().max())
        coarse = (
            sub.brute_force_slope_coarse - sub.slope
            if "brute_force_slope_coarse" in sub
            else pd.Series(np.nan, index=sub.index)
        )
        lean = (
            sub.euclidean_angle_to_long_axis_deg - sub.angle_to_long_axis_deg
            if "angle_to_long_axis_deg" in sub
            else pd.Series(np.nan, index=sub.index)
        )
        out[name] = {
            "n_points": len(sub),
            "mean_angle_to_euclidean_deg": float(sub.angle_to_euclidean_deg.mean()),
            "max_angle_to_euclidean_deg": float(sub.angle_to_euclidean_deg.max()),
            "min_brute_force_gap": float(gap.min()),
            "max_brute_force_gap": float(gap.max()),
            "rate_scale": scale,
            "max_brute_force_gap_coarse": float(coarse.max()),
            "min_lean_to_long_axis_deg": float(lean.min()),
            "distinct_ellipse_angles": int(sub.ellipse_angle_deg.round(6).nunique()),
        }
    return out


def fig1_report(df: pd.DataFrame, config: Fig1Config) -> str:
    s = fig1_summary(df, config)
    lines = [
        "# Surace & Brea Fig. 1: steepest descent depends on the metric",
        "",
        "Claim: the direction of steepest descent of a cost is defined only once a ruler (a "
        "Riemannian metric A) is chosen; it is A⁻¹∂C normalised to unit A-length, and equals the "
        "vector of partial derivatives only for the Euclidean metric.",
        "",
        f"Setting: C(x1, x2) = {config.cost_scale:g}·x1·x2 at {len(config.points)} points; "
        f"non-Euclidean unit balls are ellipses with axis ratio {config.anisotropy:g}, fixed at "
        f"{config.constant_angle_deg:g}° (constant metric) or turning as {config.rotation_rate:g}·(x1 − x2) "
        "rad (position-dependent metric).",
        "",
        "| metric | points | mean angle to Euclidean direction | max angle | distinct ellipse orientations | brute-force gap (min, max) |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, r in s.items():
        lines.append(
            f"| {_METRIC_TITLES[name]} | {r['n_points']} | {r['mean_angle_to_euclidean_deg']:.1f}° | "
            f"{r['max_angle_to_euclidean_deg']:.1f}° | {r['distinct_ellipse_angles']} | "
            f"{r['min_brute_force_gap']:.2e}, {r['max_brute_force_gap']:.2e} |"
        )
    lines += ["", *fig1_reading(s, config), ""]
    lines += [
        "![steepest descent under three metrics](surace_fig1.png)",
        "",
    ]
    return "\n".join(lines)


def fig1_reading(s: dict, config: Fig1Config) -> list[str]:
    """The reading of Fig. 1: every measured statement with its comparison and verdict."""
    tol, ang = FIG1_REL_TOL, FIG1_ANGLE_TOL_DEG
    out = [
        "Reading: each panel shows the contour lines of C (black), the unit ball of the metric at "
        "each point (shaded) and the unit-length steepest-descent direction (coloured arrow) next "
        "to the Euclidean one (grey dashed). Tolerances: angles below "
        f"{ang:g}° count as zero; a rate difference counts as zero within {tol:g} × the largest "
        "rate of the panel (rounding in float64 is ~10⁻¹⁵ of it).",
        "",
    ]
    if "euclidean" in s:
        e = s["euclidean"]
        out.append(
            f"* Under the Euclidean metric the steepest direction is the normalised −∂C, "
            f"perpendicular to the contour lines (largest angle {e['max_angle_to_euclidean_deg']:.1e}° "
            f"≤ {ang:g}°): {_holds(e['max_angle_to_euclidean_deg'] <= ang)}."
        )
    others = [n for n in ("constant", "position") if n in s]
    for name in others:
        r = s[name]
        out.append(
            f"* Under the {_METRIC_TITLES[name]} the steepest direction differs from the Euclidean "
            f"one (largest angle {r['max_angle_to_euclidean_deg']:.1f}° > {ang:g}°): "
            f"{_holds(r['max_angle_to_euclidean_deg'] > ang)}; it leans towards the long axis of "
            "the unit ellipse (at every point no farther from that axis than the Euclidean "
            f"direction; smallest margin {r['min_lean_to_long_axis_deg']:.2f}°, ≥ −{ang:g}° "
            f"required): {_holds(r['min_lean_to_long_axis_deg'] >= -ang)}."
        )
    if "constant" in s:
        k = s["constant"]["distinct_ellipse_angles"]
        out.append(
            f"* The constant metric draws equal ellipses ({k} distinct orientation(s), 1 "
            f"expected): {_holds(k == 1)}."
        )
    if "position" in s:
        k = s["position"]["distinct_ellipse_angles"]
        n = s["position"]["n_points"]
        out.append(
            f"* The position-dependent metric draws ellipses that turn from point to point ({k} "
            f"distinct orientations at {n} points, more than 1 expected): {_holds(k > 1)}."
        )
    for name, r in s.items():
        lo, hi, scale = r["min_brute_force_gap"], r["max_brute_force_gap"], r["rate_scale"]
        coarse = r["max_brute_force_gap_coarse"]
        never = lo >= -tol * scale
        # shrinks, or both searches already hit the closed form to rounding (Euclidean)
        shrinks = np.isfinite(coarse) and (hi < coarse or max(hi, coarse) <= tol * scale)
        out.append(
            f"* {_METRIC_TITLES[name][0].upper() + _METRIC_TITLES[name][1:]}: the brute-force gap (best rate of decrease "
            f"among {config.n_search} unit-length directions minus the closed form −√(∂Cᵀ A⁻¹ ∂C)) "
            f"is never negative (smallest {lo:.2e} ≥ −{tol * scale:.1e}: no direction beats the "
            f"formula): {_holds(never)}; it shrinks with a finer search (largest gap "
            f"{fmt(coarse, '.2e')} with {max(4, config.n_search // 4)} directions, {hi:.2e} with "
            f"{config.n_search}): {_holds(bool(shrinks))}."
        )
    return out


# ==============================================================================================
# Fig. 2: flow fields of the binomial release model
# ==============================================================================================

#: panel -> (metric kind, unit of q in which the metric is the identity / the model is written)
_FIG2_PANELS = {
    "A": ("euclidean", "mV"),
    "B": ("fisher", "mV"),
    "C": ("euclidean", "V"),
    "D": ("euclidean", "uV"),
    "B-V": ("fisher", "V"),
    "B-uV": ("fisher", "uV"),
}
_FIG2_TITLES = {
    "A": r"A  Euclidean, $\eta_P = 1$, $\eta_q = 1\,\mathrm{mV}^2$",
    "B": "B  Fisher metric (natural gradient)",
    "C": r"C  q in V, $\eta_P = 1$, $\eta_q = 1\,\mathrm{V}^2$",
    "D": r"D  q in µV, $\eta_P = 1$, $\eta_q = 1\,\mu\mathrm{V}^2$",
}


@dataclass(frozen=True)
class Fig2Config:
    """Settings of Fig. 2.

    Attributes
    ----------
    target_mean_mv : float
        Target mean response m in mV (not stated in the source text; see the module docstring).
    n_sites : int
        Number of release sites N (the paper: 1).
    p_range : (float, float)
        Range of the release probability P, inside (0, 1).
    q_range_mv : (float, float)
        Range of the quantal amplitude q in mV.
    n_p, n_q : int
        Grid resolution (the streamplot needs an even grid).
    panels : tuple of str
        Which of ``"A"``, ``"B"``, ``"C"``, ``"D"``, ``"B-V"``, ``"B-uV"`` to compute
        (the last two: the Fisher field computed with q in V or µV, for the invariance check).
    """

    target_mean_mv: float = 0.5
    n_sites: int = 1
    p_range: tuple[float, float] = (0.02, 0.98)
    q_range_mv: tuple[float, float] = (0.1, 2.0)
    n_p: int = 41
    n_q: int = 41
    panels: tuple[str, ...] = ("A", "B", "C", "D", "B-V", "B-uV")

    @classmethod
    def quick(cls) -> Fig2Config:
        return cls(n_p=25, n_q=25)

    def model(self) -> BinomialRelease:
        """The release model with q in mV."""
        return BinomialRelease(target_mean=self.target_mean_mv, n_sites=self.n_sites, unit="mV")

    def grid_mv(self) -> np.ndarray:
        """Base points (P, q[mV]), shape=[n_q, n_p, 2]."""
        (p0, p1), (q0, q1) = self.p_range, self.q_range_mv
        if not 0 < p0 < p1 < 1:
            raise InputError(f"p_range must satisfy 0 < P_min < P_max < 1, got {self.p_range}")
        if not 0 < q0 < q1:
            raise InputError(f"q_range_mv must satisfy 0 < q_min < q_max, got {self.q_range_mv}")
        return coordinate_grid(np.linspace(p0, p1, self.n_p), np.linspace(q0, q1, self.n_q))


def fig2_panel_field(config: Fig2Config, panel: str):
    """The flow field of ``panel``, computed in its own unit of q and mapped to (P, q[mV]).

    Returns a :class:`syngeo.metrics.FlowField` whose ``base_points`` are ``config.grid_mv()``
    and whose vectors are in (1, mV) per unit time.
    """
    if panel not in _FIG2_PANELS:
        raise InputError(f"unknown panel {panel!r}; choose one of {sorted(_FIG2_PANELS)}")
    kind, q_unit = _FIG2_PANELS[panel]
    model_mv = config.model()
    change = model_mv.unit_change(q_unit)
    model = model_mv.in_unit(q_unit)
    metric = Fisher(model) if kind == "fisher" else Euclidean(2)
    field = flow_field(model.cost_grad, metric, change.forward(config.grid_mv()))
    return field.pushforward(change.inverse)


def fig2_cells(config: Fig2Config) -> list[dict]:
    unknown = [p for p in config.panels if p not in _FIG2_PANELS]
    if unknown:
        raise InputError(f"unknown panels {unknown}; choose from {sorted(_FIG2_PANELS)}")
    return [{"panel": p} for p in config.panels]


def fig2_run_cell(config: Fig2Config, cell: dict) -> list[dict]:
    panel = cell["panel"]
    kind, q_unit = _FIG2_PANELS[panel]
    field = fig2_panel_field(config, panel)
    factor = unit("mV").factor_to(q_unit)
    frame = field.to_frame(["P", "q_mV"])
    cost = config.model().cost(field.base_points).reshape(-1)
    return [
        {
            "panel": panel,
            "metric": kind,
            "q_unit": unit(q_unit).symbol,
            "i_q": int(k // config.n_p),
            "i_p": int(k % config.n_p),
            "P": float(r.P),
            "q_mV": float(r.q_mV),
            "v_P": float(r.v_P),
            "v_q_mV": float(r.v_q_mV),
            "v_q_native": float(r.v_q_mV * factor),
            "speed": float(r.speed),
            "cost": float(cost[k]),
        }
        for k, r in enumerate(frame.itertuples(index=False))
    ]


def _panel_arrays(df: pd.DataFrame, panel: str, config: Fig2Config):
    sub = df[df.panel == panel].sort_values(["i_q", "i_p"])
    shape = (config.n_q, config.n_p)
    get = lambda col: sub[col].to_numpy().reshape(shape)  # noqa: E731
    return get("P"), get("q_mV"), get("v_P"), get("v_q_mV"), get("speed"), get("cost")


def fig2_summary(df: pd.DataFrame, config: Fig2Config) -> dict:
    vec = {
        p: df[df.panel == p].sort_values(["i_q", "i_p"])[["v_P", "v_q_mV"]].to_numpy()
        for p in df.panel.unique()
    }
    out: dict = {"target_mean_mv": config.target_mean_mv, "n_sites": config.n_sites}
    if "B" in vec:
        ref = vec["B"]
        scale = float(np.max(np.abs(ref)))
        for p, label in (("B-V", "V"), ("B-uV", "uV")):
            if p in vec:
                diff = float(np.max(np.abs(vec[p] - ref)))
                out[f"fisher_max_abs_diff_{label}"] = diff
                out[f"fisher_max_rel_diff_{label}"] = diff / scale
    if "A" in vec:
        ref = vec["A"]
        for p in ("B", "C", "D"):
            if p in vec:
                ang = _angles_deg(vec[p], ref)
                out[f"median_angle_{p}_vs_A_deg"] = float(np.median(ang))
                out[f"max_angle_{p}_vs_A_deg"] = float(np.max(ang))
        for p in ("C", "D"):
            if p in vec:
                ratio = vec[p][:, 1] / ref[:, 1]
                out[f"q_speed_ratio_{p}_vs_A"] = float(np.median(ratio))
        if "B" in vec:
            flip_p = np.sign(vec["B"][:, 0]) != np.sign(ref[:, 0])
            flip_q = np.sign(vec["B"][:, 1]) != np.sign(ref[:, 1])
            out["fraction_P_direction_differs_B_vs_A"] = float(np.mean(flip_p))
            out["fraction_q_direction_differs_B_vs_A"] = float(np.mean(flip_q))
    out.update(_fig2_flow_facts(df, config))
    return out


#: Fig. 2's regions: "near the target curve" is |NPq − m| ≤ 10 % of m; "large q, small P" is the
#: corner q ≥ 60 % of the q range, P ≤ 30 % of the P range.
FIG2_NEAR_TARGET = 0.1
#: Fisher invariance: mapping q between units multiplies by 10^±3 (one rounding each way), so the
#: fields agree to ~10⁻¹⁵ relative; 10⁻¹⁰ leaves room and still fails any real difference.
FIG2_INVARIANCE_TOL = 1e-10


def _fig2_flow_facts(df: pd.DataFrame, config: Fig2Config) -> dict:
    """Per panel: how the flow moves relative to the target curve and which way it points."""
    out: dict = {}
    m, n = config.target_mean_mv, config.n_sites
    (p0, p1), (q0, q1) = config.p_range, config.q_range_mv
    for panel in ("A", "B", "C", "D"):
        sub = df[df.panel == panel]
        if sub.empty:
            continue
        P, q = sub.P.to_numpy(), sub.q_mV.to_numpy()
        vP, vq = sub.v_P.to_numpy(), sub.v_q_mV.to_numpy()
        mean = n * P * q
        dmean = n * (q * vP + P * vq)  # d(NPq)/dt
        off = np.abs(mean - m) > FIG2_NEAR_TARGET * m
        towards = np.sign(dmean[off]) == np.sign(m - mean[off])
        near = ~off
        corner = (P <= p0 + 0.3 * (p1 - p0)) & (q >= q0 + 0.6 * (q1 - q0))
        # angle of each vector to the q axis (0° = vertical) in the drawn (P, q[mV]) plane
        to_vertical = np.degrees(np.arctan2(np.abs(vP), np.abs(vq)))
        out[panel] = {
            "fraction_towards_target": float(np.mean(towards)) if towards.size else float("nan"),
            "n_near_target": int(near.sum()),
            "fraction_near_target_P_increases": float(np.mean(vP[near] > 0))
            if near.any()
            else float("nan"),
            "fraction_corner_P_decreases": float(np.mean(vP[corner] < 0))
            if corner.any()
            else float("nan"),
            "median_angle_to_vertical_deg": float(np.median(to_vertical)),
            "max_angle_to_vertical_deg": float(np.max(to_vertical)),
            "min_angle_to_vertical_deg": float(np.min(to_vertical)),
        }
    return out


#: A flow counts as one-dimensional where one component exceeds the other by this factor in median;
#: its streamlines then converge onto the other component's zero curve, which the figure draws.
_ONE_DIMENSIONAL = 100.0


def fig2_speed_norm(df: pd.DataFrame, panels) -> tuple[float, float]:
    """(min, max) of log10 speed over ``panels``: the one colour scale every panel shares."""
    log_speed = np.log10(df[df.panel.isin(list(panels))].speed.to_numpy())
    return float(np.min(log_speed)), float(np.max(log_speed))


def _converging_nullcline(vP: np.ndarray, vQ: np.ndarray):
    """(component, field) of a one-dimensional flow: the zero curve it converges onto, or None."""
    ratio = np.median(np.abs(vQ) / np.maximum(np.abs(vP), 1e-300))
    if ratio > _ONE_DIMENSIONAL:
        return "q", vQ
    if ratio < 1 / _ONE_DIMENSIONAL:
        return "P", vP
    return None


def fig2_plot(df: pd.DataFrame, config: Fig2Config) -> dict:
    from matplotlib.colors import Normalize
    from matplotlib.lines import Line2D

    from syngeo.app.plotting import subplots

    panels = [p for p in ("A", "B", "C", "D") if p in set(df.panel)]
    ncols = 2 if len(panels) > 1 else 1
    nrows = math.ceil(len(panels) / ncols)
    fig, axes = subplots(nrows, ncols, width=3.6, height=3.3, squeeze=False)
    m, n = config.target_mean_mv, config.n_sites
    norm = Normalize(*fig2_speed_norm(df, panels))
    strm = None
    nullclines = set()
    for k, panel in enumerate(panels):
        ax = axes[k // ncols][k % ncols]
        P, Q, vP, vQ, speed, cost = _panel_arrays(df, panel, config)
        finite = cost[np.isfinite(cost)]
        levels = np.unique(np.quantile(finite, np.linspace(0.05, 0.95, 7)))
        strm = ax.streamplot(
            P[0], Q[:, 0], vP, vQ, color=np.log10(speed), cmap="viridis", norm=norm,
            density=1.0, linewidth=1.0, arrowsize=0.8,
        )  # fmt: skip
        # drawn over the streamlines, so that they stay visible in dense regions
        ax.contour(
            P, Q, cost, levels=levels, colors="0.15", linewidths=0.6, linestyles=":", zorder=3
        )
        one_d = _converging_nullcline(vP, vQ)
        if one_d is not None:
            # the streamlines stop on both sides of this curve: draw it so the flow has no gap
            stop = ax.contour(
                P, Q, one_d[1], levels=[0.0], colors="#d62728", linewidths=1.4, zorder=4
            )
            stop.set_gid(f"zero of v_{one_d[0]}")
            nullclines.add(one_d[0])
        p_curve = np.linspace(max(m / (n * Q.max()), P.min()), P.max(), 200)
        ax.plot(p_curve, m / (n * p_curve), "k--", lw=1.5, zorder=5)
        ax.set_xlim(P.min(), P.max())
        ax.set_ylim(Q.min(), Q.max())
        ax.set_xlabel("release probability $P$")
        ax.set_ylabel("quantal amplitude $q$ (mV)")
        ax.set_title(_FIG2_TITLES[panel], loc="left", fontsize=9)
    for k in range(len(panels), nrows * ncols):
        axes[k // ncols][k % ncols].set_visible(False)
    visible = [ax for row in axes for ax in row if ax.get_visible()]
    cbar = fig.colorbar(strm.lines, ax=visible, fraction=0.04, pad=0.02, shrink=0.9)
    cbar.set_label(r"$\log_{10}$ speed $\|\dot\theta\|_A$ (one scale for all panels)")
    handles = [
        Line2D([], [], color="k", ls="--", lw=1.5, label=rf"target curve $NPq = m$ = {m:g} mV"),
        Line2D([], [], color="0.15", lw=0.6, ls=":", label="contour lines of the cost $f$"),
    ]
    for comp in sorted(nullclines):
        dot = r"\dot q" if comp == "q" else r"\dot P"
        handles.append(
            Line2D(
                [],
                [],
                color="#d62728",
                lw=1.4,
                label=rf"${dot} = 0$: the one-dimensional flow stops here",
            )
        )
    fig.legend(handles=handles, loc="outside lower center", ncols=2, fontsize=7)
    fig.suptitle(
        f"Binomial release (N = {n}): descent on the KL cost to the target mean m = {m:g} mV, "
        "all drawn in (P, q [mV])",
        fontsize=9,
    )
    return {"surace_fig2": fig}


#: A flow counts as vertical (horizontal) when every vector is within this angle of the q (P) axis.
FIG2_AXIS_TOL_DEG = 1.0


def fig2_reading(s: dict, config: Fig2Config) -> list[str]:
    """The per-panel bullets of Fig. 2's report: each measured statement with its verdict."""

    def pct(x: float) -> str:
        return fmt(100 * x, ".0f") + " %"

    band = f"{100 * FIG2_NEAR_TARGET:g} % of m"
    out = []

    def approach(panel: str) -> str:
        r = s[panel]
        return (
            "the flow moves the mean NPq towards m at every grid point off the curve "
            f"(|NPq − m| > {band}): {_holds(r['fraction_towards_target'] == 1.0)} ({pct(r['fraction_towards_target'])}"
            " of them); near the curve it runs along it towards P → 1 (Ṗ > 0 at every one of the "
            f"{r['n_near_target']} grid points with |NPq − m| ≤ {band}): "
            f"{_holds(r['fraction_near_target_P_increases'] == 1.0)} "
            f"({pct(r['fraction_near_target_P_increases'])})"
        )

    if "A" in s:
        r = s["A"]
        out.append(
            "* **A** (η_q = 1 mV², the flow of Costa et al. Fig. 1D): " + approach("A") + "; at "
            "large q and small P (q in the top 40 % of its range, P in the bottom 30 %) it lowers "
            f"P at most grid points, where shrinking the variance pays more than nearing the mean: "
            f"{_holds(r['fraction_corner_P_decreases'] > 0.5)} ({pct(r['fraction_corner_P_decreases'])})."
        )
    if "B" in s:
        out.append(
            "* **B** (Fisher): " + approach("B") + f". Its directions differ from A's by a median "
            f"of {fmt(s.get('median_angle_B_vs_A_deg'), '.0f')}°; on "
            f"{pct(s.get('fraction_P_direction_differs_B_vs_A', math.nan))} of the grid it changes "
            "P the opposite way to A "
            f"({pct(s.get('fraction_q_direction_differs_B_vs_A', math.nan))} for q): the "
            "predicted locus of expression (pre: P, post: q) depends on the metric."
        )
    tol = FIG2_AXIS_TOL_DEG
    if "C" in s:
        r = s["C"]
        out.append(
            f"* **C** (q in V, η_q = 1 V² = 10⁶ mV²): the q-component is "
            f"{fmt(s.get('q_speed_ratio_C_vs_A'), '.0e')} times that of A; the flow is vertical, "
            f"only q changes (“postsynaptic expression”; every vector within {tol:g}° of the q "
            f"axis, largest {r['max_angle_to_vertical_deg']:.2g}°): "
            f"{_holds(r['max_angle_to_vertical_deg'] <= tol)}."
        )
    if "D" in s:
        r = s["D"]
        out.append(
            f"* **D** (q in µV, η_q = 1 µV² = 10⁻⁶ mV²): the q-component is "
            f"{fmt(s.get('q_speed_ratio_D_vs_A'), '.0e')} times that of A; the flow is horizontal, "
            f"only P changes (“presynaptic expression”; every vector within {tol:g}° of the P "
            f"axis, largest {90 - r['min_angle_to_vertical_deg']:.2g}°): "
            f"{_holds(90 - r['min_angle_to_vertical_deg'] <= tol)}."
        )
    return out


def fig2_closing(s: dict) -> str:
    """The last reading: unit factors between the Euclidean panels and the Fisher invariance."""
    text = (
        "Reading: the Euclidean fields A, C and D are the same cost with three arbitrary rulers; "
        "mapped to common coordinates they differ by the squared unit factor in the q-component, "
        "so the predicted ratio of pre- to postsynaptic change is set by the choice of unit."
    )
    ratios = [
        (p, s[f"q_speed_ratio_{p}_vs_A"], f)
        for p, f in (("C", 1e6), ("D", 1e-6))
        if f"q_speed_ratio_{p}_vs_A" in s
    ]
    if ratios:
        ok = all(abs(r / f - 1) <= FIG2_INVARIANCE_TOL for _, r, f in ratios)
        text += (
            " That the factor is 10⁶ between neighbouring panels (median q-velocity ratios "
            + ", ".join(f"{p}/A = {r:.6g}" for p, r, _ in ratios)
            + f", to {FIG2_INVARIANCE_TOL:g} relative) {_holds(ok)}."
        )
    diffs = [s[k] for k in ("fisher_max_rel_diff_V", "fisher_max_rel_diff_uV") if k in s]
    if diffs:
        worst = max(diffs)
        text += (
            " The Fisher field is one vector field whatever the unit of q: computed in V or µV and "
            f"mapped back, it agrees with the mV computation to rounding error (largest relative "
            f"difference {worst:.2g} ≤ {FIG2_INVARIANCE_TOL:g}): {_holds(worst <= FIG2_INVARIANCE_TOL)}."
        )
    return text


def fig2_report(df: pd.DataFrame, config: Fig2Config) -> str:
    s = fig2_summary(df, config)

    def num(key: str, spec: str = ".3g") -> str:
        return fmt(s.get(key), spec)

    lines = [
        "# Surace & Brea Fig. 2: flow fields of the binomial release model under four metrics",
        "",
        "Claim (Surace & Brea, on Costa et al. 2017): a “gradient” flow of the KL cost in the "
        "(P, q) plane needs conversion factors with units (η_q in mV² turns ∂f/∂q, in 1/mV, into a "
        "step in mV). Choosing η_q = 1 mV², 1 V² or 1 µV² gives entirely different flow fields; the "
        "inverse Fisher metric is a natural, unit-free choice.",
        "",
        f"Setting: N = {config.n_sites}, target mean m = {config.target_mean_mv:g} mV (the text does "
        f"not state it), P ∈ [{config.p_range[0]:g}, {config.p_range[1]:g}], q ∈ "
        f"[{config.q_range_mv[0]:g}, {config.q_range_mv[1]:g}] mV on a {config.n_p} × {config.n_q} "
        "grid; cost f = log σ + (m − μ)²/(2σ²) with μ = NPq, σ² = Nq²P(1 − P). (The target mean "
        "is m: in syngeo φ always names a potential.)",
        "",
        "## What the figure shows",
        "",
        "Streamlines of θ̇ = −A⁻¹∂f drawn in (P, q [mV]) coordinates, coloured by the metric speed "
        "‖θ̇‖_A on one colour scale for all panels (its square is the rate of decrease of f, a "
        "unit-free number); dashed: the target curve NPq = m; dotted: contour lines of f; red, "
        "where the flow is one-dimensional (C, D): the curve where its only component vanishes, "
        "on which the streamlines from both sides end.",
        "",
        *fig2_reading(s, config),
        "",
        "## Numbers",
        "",
        "| quantity | value |",
        "| --- | --- |",
        f"| Fisher field computed with q in V, mapped to mV: max abs. difference from the mV field | {num('fisher_max_abs_diff_V')} (relative {num('fisher_max_rel_diff_V')}) |",
        f"| Fisher field computed with q in µV, mapped to mV: max abs. difference | {num('fisher_max_abs_diff_uV')} (relative {num('fisher_max_rel_diff_uV')}) |",
        f"| median / max angle between C and A directions | {num('median_angle_C_vs_A_deg', '.1f')}° / {num('max_angle_C_vs_A_deg', '.1f')}° |",
        f"| median / max angle between D and A directions | {num('median_angle_D_vs_A_deg', '.1f')}° / {num('max_angle_D_vs_A_deg', '.1f')}° |",
        f"| median / max angle between B (Fisher) and A directions | {num('median_angle_B_vs_A_deg', '.1f')}° / {num('max_angle_B_vs_A_deg', '.1f')}° |",
        f"| grid points where Fisher and A disagree on the sign of Ṗ / of q̇ | {num('fraction_P_direction_differs_B_vs_A', '.0%')} / {num('fraction_q_direction_differs_B_vs_A', '.0%')} |",
        "",
        fig2_closing(s),
        "",
        "![flow fields A-D](surace_fig2.png)",
        "",
    ]
    return "\n".join(lines)


FIG1 = Experiment(
    name="surace-fig1",
    title="Surace & Brea Fig. 1: steepest descent under three metrics",
    Config=Fig1Config,
    quick=Fig1Config.quick,
    cells=fig1_cells,
    run_cell=fig1_run_cell,
    summarise=fig1_summary,
    plot=fig1_plot,
    report=fig1_report,
    figures=("surace_fig1",),
)

FIG2 = Experiment(
    name="surace-fig2",
    title="Surace & Brea Fig. 2: binomial release flow fields",
    Config=Fig2Config,
    quick=Fig2Config.quick,
    cells=fig2_cells,
    run_cell=fig2_run_cell,
    summarise=fig2_summary,
    plot=fig2_plot,
    report=fig2_report,
    figures=("surace_fig2",),
)
