r"""Linear regression under mirror descent: Gaussianity and size of the dual change vs width.

Reproduces Pogodin et al. (ICLR 2024) Fig. 3A and its appendix version Fig. 6 (§4.1, B.1;
docs/theory.md §4) as two :class:`~syngeo.app.experiments.base.Experiment` objects, :data:`FIG3A`
(``fig3a``) and :data:`FIG6` (``fig6``). Both share the cells and :func:`run_cell`; they differ in
the default correlation powers and in the figure layout.

Protocol (one cell = one (α, a, D, seed))
-----------------------------------------
* Inputs ``X`` (N × D): rows ``x = L z + u`` with the Toeplitz correlation
  :math:`c_k = (-1)^k / (1 + |k/s|^a)`, scale ``s = 1``, power ``a``; ``z ~ N(0, I)``,
  ``u ~ U(-1/2, 1/2)^D`` (:func:`syngeo.data.correlated.correlated_inputs`, FFT sampling).
* Labels ``y ∈ {−1, +1}^N`` with equal probability, independent of ``X``.
* Initial weights ``w0 ~ N(0, 1/D)``; ``N = ⌊D^α⌋``.
* For each potential φ (2-norm, 3-norm, NE) on the *same* ``X, y, w0``: the final weights ``w``
  of mirror descent on the MSE, i.e. the Bregman projection
  :math:`w = \arg\min_{Xw=y} D_\phi(w, w_0)` (Eq. 8), computed exactly by
  :func:`syngeo.solvers.bregman_projection` (``solver="exact"``, the default), or by the paper's
  training protocol (``solver="train"``, below).
* Measured, with the true potential: the dual change :math:`\Delta = \nabla\phi(w) - \nabla\phi(w_0)`
  (for the exact solver, :math:`-X^\top\lambda`, free of cancellation), its Gaussianity distance
  ``d`` = :func:`syngeo.cdf_distance` (uncentred, the paper's statistic) and the
  centred variant ``d_centred``, the change magnitude
  :math:`\|\Delta\| / \|\nabla\phi(w_0)\|` (:func:`syngeo.change_magnitude`) and the fraction
  of weights that changed sign (:func:`syngeo.sign_changes`).

The random numbers of a cell come from ``numpy.random.SeedSequence((config.seed, seed, D,
round(1e6 α), round(1e6 a)))`` spawned into three streams (``X``, ``y``, ``w0``), so every cell
is reproducible on its own, and the three potentials see the same data. (The paper's script draws
one large input matrix per seed and takes its top-left ``N × D`` block for every width; here the
widths use independent draws. Both give inputs with the same distribution per cell.)

Training protocol (``solver="train"``)
--------------------------------------
Full-batch :class:`syngeo.optim.MirrorDescent` on ``mean((Xw − y)²)`` from ``w0``, momentum
0.9, no weight decay, learning rate cosine-annealed to 0 over the run
(``torch.optim.lr_scheduler.CosineAnnealingLR``). The initial learning rate is chosen on the
grid ``train_lrs`` (16 log-spaced values 1e−7…1e−1) by the lowest final MSE; the run has
``train_epochs`` epochs (100), extended by ``train_epochs`` up to ``train_max_epochs`` (500) while
the best final MSE is above ``train_target_mse`` (1e−3). The paper picks the rate on one seed and
reuses it for the others; here each cell picks its own, so cells stay independent. Computation is
float64 on CPU (the paper: float16 mixed precision on GPUs). Expect this to be orders of magnitude
slower than the exact solver; it is there to check that both agree.

Conventions
-----------
Widths are the paper's ``numpy.logspace(2, log10(2e4), 10, dtype=int)`` =
100, 180, 324, 584, 1053, 1898, 3419, 6161, 11100, 20000. Figures show, per width, the median over
seeds and a 5–95 % quantile band (as the paper's figures do), on log-log axes with the
D^(−1/2) decay of d for i.i.d. Gaussian values as a reference line.

Every sentence of the reports that states a measured fact computes the comparison it claims
(:func:`summarise`) and says "does not hold" when it fails: the median d against the 95th
percentile of d for D i.i.d. Gaussian values; the fitted decay exponent of d against −1/2 within
:data:`N_STANDARD_ERRORS` standard errors of per-seed fits; the magnitude against 1 and 0.1; α = 0.5
against α = 0.75; the constraint residual against the solver tolerance.
"""

from __future__ import annotations

import functools
import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

import syngeo
from syngeo import (
    MirrorDescent,
    bregman_projection,
    cdf_distance,
    change_magnitude,
    correlated_inputs,
    sign_changes,
)
from syngeo.app.experiments.base import Experiment
from syngeo.app.formatting import fmt, markdown_table
from syngeo.errors import InputError, InputTypeError
from syngeo.validation import as_choice, as_int, as_positive_int

__all__ = [
    "FIG3A",
    "FIG6",
    "N_STANDARD_ERRORS",
    "PAPER_WIDTHS",
    "Fig3AConfig",
    "Fig6Config",
    "RegressionConfig",
    "cells",
    "fig3a_plot",
    "fig3a_report",
    "fig6_plot",
    "fig6_report",
    "n_samples",
    "regression_problem",
    "run_cell",
    "solve_by_training",
    "summarise",
]

#: The paper's widths: ``numpy.logspace(2, log10(2e4), 10, dtype=int)``.
PAPER_WIDTHS: tuple[int, ...] = (100, 180, 324, 584, 1053, 1898, 3419, 6161, 11100, 20000)
#: The paper's learning-rate grid: 16 log-spaced values from 1e-7 to 1e-1.
PAPER_LRS: tuple[float, ...] = tuple(float(v) for v in np.logspace(-7, -1, 16))
SOLVERS = ("exact", "train")


def n_samples(width: int, alpha: float) -> int:
    """``N = ⌊D^α⌋`` (at least 1), robust to round-off when ``D^α`` is an integer.

    >>> n_samples(20000, 0.75), n_samples(100, 0.5)
    (1681, 10)
    """
    value = float(width) ** float(alpha)
    n = math.floor(value + 1e-9 * max(value, 1.0))
    return max(int(n), 1)


# --------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RegressionConfig:
    """Settings of the linear-regression experiment (defaults: the paper's protocol, B.1).

    Attributes
    ----------
    widths : tuple[int, ...]
        Numbers of weights ``D``.
    alphas : tuple[float, ...]
        Dataset-size exponents: ``N = ⌊D^α⌋``.
    powers : tuple[float, ...]
        Correlation powers ``a`` of the inputs.
    potentials : tuple[str, ...]
        Potentials trained with (and measured with), as accepted by
        :func:`syngeo.potentials.potential`.
    n_seeds : int
        Seeds per (α, a, D).
    seed : int
        Base seed mixed into every cell's random streams.
    scale : float
        Correlation length scale ``s``.
    solver : str
        ``"exact"`` (Bregman projection) or ``"train"`` (the paper's training protocol).
    tol : float
        Relative constraint residual of the exact solver.
    momentum : float
        Momentum of the training protocol.
    train_lrs : tuple[float, ...]
        Learning-rate grid of the training protocol.
    train_epochs, train_max_epochs : int
        Epochs of the first grid search, and the most epochs tried (in steps of ``train_epochs``).
    train_target_mse : float
        Training stops extending the epochs once the best final MSE is below this.
    """

    widths: tuple[int, ...] = PAPER_WIDTHS
    alphas: tuple[float, ...] = (0.5, 0.75)
    powers: tuple[float, ...] = (1.0, 2.0)
    potentials: tuple[str, ...] = ("NE", "2-norm", "3-norm")
    n_seeds: int = 30
    seed: int = 0
    scale: float = 1.0
    solver: str = "exact"
    tol: float = 1e-10
    momentum: float = 0.9
    train_lrs: tuple[float, ...] = PAPER_LRS
    train_epochs: int = 100
    train_max_epochs: int = 500
    train_target_mse: float = 1e-3

    def __post_init__(self) -> None:
        for name in ("widths", "alphas", "powers", "potentials", "train_lrs"):
            value = getattr(self, name)
            if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
                raise InputTypeError(f"{name} must be a sequence, got {value!r}")
            value = tuple(value)
            if not value:
                raise InputError(f"{name} must not be empty")
            object.__setattr__(self, name, value)
        widths = tuple(as_int(d, "each of widths", minimum=2) for d in self.widths)
        object.__setattr__(self, "widths", widths)
        for a in self.alphas:
            if not 0 < float(a) < 1:
                raise InputError(f"alphas must lie in (0, 1) so that N < D, got {a!r}")
        for a in self.powers:
            if not 0 < float(a) <= 2:
                raise InputError(
                    f"powers must lie in (0, 2] (the correlation is positive definite there), got {a!r}"
                )
        object.__setattr__(self, "alphas", tuple(float(a) for a in self.alphas))
        object.__setattr__(self, "powers", tuple(float(a) for a in self.powers))
        names = tuple(syngeo.potential(p).name for p in self.potentials)
        if len(set(names)) != len(names):
            raise InputError(f"potentials must be distinct, got {self.potentials!r}")
        object.__setattr__(self, "potentials", names)
        as_positive_int(self.n_seeds, "n_seeds")
        as_choice(self.solver, "solver", SOLVERS)
        if not (0 < self.tol < 1):
            raise InputError(f"tol must lie in (0, 1), got {self.tol!r}")
        if not (float(self.scale) > 0):
            raise InputError(f"scale must be > 0, got {self.scale!r}")
        if not 0 <= self.momentum < 1:
            raise InputError(f"momentum must lie in [0, 1), got {self.momentum!r}")
        if any(not float(lr) > 0 for lr in self.train_lrs):
            raise InputError("train_lrs must be positive learning rates")
        if not (1 <= self.train_epochs <= self.train_max_epochs):
            raise InputError(
                "need 1 <= train_epochs <= train_max_epochs, got "
                f"{self.train_epochs} and {self.train_max_epochs}"
            )
        if not self.train_target_mse > 0:
            raise InputError(f"train_target_mse must be > 0, got {self.train_target_mse!r}")

    @property
    def n_cells(self) -> int:
        return len(self.widths) * len(self.alphas) * len(self.powers) * self.n_seeds


@dataclass(frozen=True)
class Fig3AConfig(RegressionConfig):
    """Fig. 3A: one correlation power (a = 2), all three potentials, both α."""

    powers: tuple[float, ...] = (2.0,)

    @classmethod
    def quick(cls) -> Fig3AConfig:
        """Five widths up to 2000 and 4 seeds (a few seconds on 2 cores)."""
        return cls(widths=(100, 250, 600, 1000, 2000), n_seeds=4)


@dataclass(frozen=True)
class Fig6Config(RegressionConfig):
    """Fig. 6: both correlation powers (a = 1, 2), all three potentials, both α."""

    powers: tuple[float, ...] = (1.0, 2.0)

    @classmethod
    def quick(cls) -> Fig6Config:
        """Five widths up to 2000 and 4 seeds (a few seconds on 2 cores)."""
        return cls(widths=(100, 250, 600, 1000, 2000), n_seeds=4)


# --------------------------------------------------------------------------------------------
# Cells
# --------------------------------------------------------------------------------------------


def cells(config: RegressionConfig) -> list[dict]:
    """One cell per (α, a, D, seed); the widest (most expensive) cells first.

    Listing the expensive cells first lets a pool of workers finish together (longest job
    first); the tables are sorted by the figures and reports, not by this order.
    """
    return [
        {"alpha": alpha, "power": power, "width": width, "seed": seed}
        for width in sorted(config.widths, reverse=True)
        for alpha in sorted(config.alphas, reverse=True)
        for power in config.powers
        for seed in range(config.n_seeds)
    ]


def regression_problem(
    width: int, alpha: float, power: float, seed: int, *, base_seed: int = 0, scale: float = 1.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The inputs ``X`` (N × D), labels ``y`` (N,) and initial weights ``w0`` (D,) of a cell.

    Deterministic in its arguments (see the module docstring for the seeding).
    """
    n = n_samples(width, alpha)
    entropy = (
        int(base_seed),
        int(seed),
        int(width),
        round(1e6 * float(alpha)),
        round(1e6 * float(power)),
    )
    gx, gy, gw = (np.random.default_rng(s) for s in np.random.SeedSequence(entropy).spawn(3))
    X = correlated_inputs(n, int(width), float(power), float(scale), rng=gx, uniform_noise=True)
    y = gy.choice(np.array([-1.0, 1.0]), size=n)
    w0 = gw.normal(0.0, 1.0 / math.sqrt(width), size=int(width))
    return X, y, w0


@dataclass(frozen=True, repr=False)
class TrainedSolution:
    """Result of :func:`solve_by_training`.

    Attributes
    ----------
    weights : numpy.ndarray, shape (D,)
        Final weights of the best run.
    mse : float
        Its final training MSE.
    lr : float
        Its initial learning rate.
    epochs : int
        Its number of epochs.
    reached_target : bool
        ``mse <= target_mse``.
    """

    weights: np.ndarray
    mse: float
    lr: float
    epochs: int
    reached_target: bool

    def __repr__(self) -> str:
        return (
            f"TrainedSolution(D={self.weights.shape[0]}, mse={self.mse:.3g}, lr={self.lr:.3g}, "
            f"epochs={self.epochs}, reached_target={self.reached_target})"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "weights": self.weights,
            "mse": self.mse,
            "lr": self.lr,
            "epochs": self.epochs,
            "reached_target": self.reached_target,
        }


def _train_once(X, y, w0, phi, lr: float, epochs: int, momentum: float):
    import torch

    w = torch.nn.Parameter(w0.clone())
    opt = MirrorDescent([w], lr=lr, potential=phi, momentum=momentum)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
    for _ in range(epochs):
        opt.zero_grad(set_to_none=True)
        loss = torch.mean((X @ w - y) ** 2)
        loss.backward()
        opt.step()
        schedule.step()
        if not math.isfinite(float(loss.detach())):
            return w.detach(), math.inf
    with torch.no_grad():
        mse = float(torch.mean((X @ w - y) ** 2))
    return w.detach(), (mse if math.isfinite(mse) else math.inf)


def solve_by_training(
    X: Any,
    y: Any,
    w0: Any,
    potential: Any,
    *,
    lrs: tuple[float, ...] = PAPER_LRS,
    epochs: int = 100,
    max_epochs: int = 500,
    target_mse: float = 1e-3,
    momentum: float = 0.9,
) -> TrainedSolution:
    """The paper's training protocol (B.1): full-batch mirror descent with a learning-rate search.

    For ``n_epochs = epochs, 2·epochs, …, max_epochs``: train from ``w0`` with every initial
    learning rate in ``lrs`` (momentum ``momentum``, cosine annealing to 0 over ``n_epochs``) and
    keep the run with the lowest final MSE; stop as soon as it is ``<= target_mse``. Float64, CPU.
    """
    import torch

    phi = syngeo.potential(potential)
    Xt = torch.as_tensor(np.asarray(X, dtype=np.float64))
    yt = torch.as_tensor(np.asarray(y, dtype=np.float64))
    wt = torch.as_tensor(np.asarray(w0, dtype=np.float64))
    best = None
    n_epochs = epochs
    while True:
        for lr in lrs:
            w, mse = _train_once(Xt, yt, wt, phi, float(lr), n_epochs, momentum)
            if best is None or mse < best[1]:
                best = (w, mse, float(lr), n_epochs)
        if best[1] <= target_mse or n_epochs + epochs > max_epochs:
            break
        n_epochs += epochs
    w, mse, lr, n_epochs = best
    return TrainedSolution(
        weights=w.numpy().copy(),
        mse=float(mse),
        lr=lr,
        epochs=n_epochs,
        reached_target=bool(mse <= target_mse),
    )


def run_cell(config: RegressionConfig, cell: dict) -> list[dict]:
    """Rows (one per potential) of one (α, a, D, seed) cell; see the module docstring."""
    import torch

    alpha, power = float(cell["alpha"]), float(cell["power"])
    width, seed = int(cell["width"]), int(cell["seed"])
    X, y, w0 = regression_problem(
        width, alpha, power, seed, base_seed=config.seed, scale=config.scale
    )
    n = X.shape[0]
    Xt, yt, wt = (torch.from_numpy(a) for a in (X, y, w0))
    rows = []
    for name in config.potentials:
        phi = syngeo.potential(name)
        start = time.perf_counter()
        extra: dict[str, Any]
        if config.solver == "exact":
            sol = bregman_projection(Xt, yt, wt, phi, tol=config.tol)
            weights = sol.weights.numpy()
            delta = sol.dual_change.numpy()
            extra = {
                "constraint_residual": float(sol.constraint_residual),
                "n_iter": int(sol.n_iter),
                "train_mse": math.nan,
                "train_lr": math.nan,
                "train_epochs": 0,
            }
        else:
            sol = solve_by_training(
                X,
                y,
                w0,
                phi,
                lrs=config.train_lrs,
                epochs=config.train_epochs,
                max_epochs=config.train_max_epochs,
                target_mse=config.train_target_mse,
                momentum=config.momentum,
            )
            weights = sol.weights
            delta = np.asarray(phi.grad(weights), dtype=np.float64) - np.asarray(phi.grad(w0))
            extra = {
                "constraint_residual": float(np.linalg.norm(X @ weights - y) / np.linalg.norm(y)),
                "n_iter": 0,
                "train_mse": sol.mse,
                "train_lr": sol.lr,
                "train_epochs": sol.epochs,
            }
        rows.append(
            {
                "potential": phi.name,
                "alpha": alpha,
                "power": power,
                "width": width,
                "n_samples": n,
                "seed": seed,
                "solver": config.solver,
                "d": cdf_distance(delta),
                "d_centred": cdf_distance(delta, centred=True),
                "magnitude": change_magnitude(w0, weights, phi),
                "sign_flip_fraction": sign_changes(w0, weights).n_sign_flips / width,
                **extra,
                "solve_seconds": time.perf_counter() - start,
            }
        )
    return rows


# --------------------------------------------------------------------------------------------
# Aggregation, figures, report, summary
# --------------------------------------------------------------------------------------------

_STAT_LABELS = {"d": "d", "magnitude": "‖Δ‖ / ‖∇φ(w₀)‖"}
_STAT_TITLES = {"d": "Gaussianity of Δ: d", "magnitude": "size of Δ: ‖Δ‖ / ‖∇φ(w₀)‖"}
_ALPHA_STYLES = {0.5: "-", 0.75: "--"}
#: Claims about a mean over seeds are judged within this many standard errors.
N_STANDARD_ERRORS = 3.0
#: The decay exponent of d for i.i.d. Gaussian samples: d ∝ D^(−1/2).
GAUSSIAN_EXPONENT = -0.5
#: "Much smaller than 1" (paper §4.1), made concrete: an order of magnitude below 1.
MUCH_SMALLER = 0.1


def _quantiles(df: pd.DataFrame, stat: str) -> pd.DataFrame:
    """Median and 5/95 % quantiles over seeds per (potential, α, a, D)."""
    keys = ["potential", "alpha", "power", "width"]
    grouped = df.groupby(keys, sort=True)[stat]
    out = pd.DataFrame(
        {
            "median": grouped.median(),
            "q05": grouped.quantile(0.05),
            "q95": grouped.quantile(0.95),
            "mean": grouped.mean(),
            "n": grouped.size(),
        }
    )
    return out.reset_index()


def _order_potentials(names) -> list[str]:
    preferred = ["NE", "2-norm", "3-norm"]
    names = list(dict.fromkeys(names))
    return [p for p in preferred if p in names] + sorted(p for p in names if p not in preferred)


def _alpha_style(alpha: float) -> str:
    return _ALPHA_STYLES.get(round(alpha, 6), ":")


def _n_label(alpha: float) -> str:
    return rf"$N = \lfloor D^{{{alpha:g}}} \rfloor$ training samples"


@functools.lru_cache(maxsize=64)
def _floor(width: int):
    """The Gaussian floor of d for ``width`` i.i.d. normal values (cached: plots and reports)."""
    from syngeo.app.experiments.robustness import gaussian_floor_band

    return gaussian_floor_band(int(width))


def _draw(ax, q: pd.DataFrame, name: str, linestyle: str) -> None:
    from syngeo.app.plotting import geometry_style

    style = geometry_style(name)
    q = q.sort_values("width")
    ax.plot(
        q["width"],
        q["median"],
        linestyle=linestyle,
        color=style.color,
        marker=style.marker,
        markersize=3,
        gid=f"median:{name}",
    )
    ax.fill_between(q["width"], q["q05"], q["q95"], color=style.color, alpha=0.15, linewidth=0)


def _reference_slope(ax, widths) -> None:
    """c·D^(−1/2) through the mean d of D i.i.d. Gaussian values at the smallest width."""
    widths = np.sort(np.asarray(list(widths), dtype=float))
    if len(widths) < 2:
        return
    level = _floor(int(widths[0])).mean
    ax.plot(
        widths,
        level * (widths / widths[0]) ** GAUSSIAN_EXPONENT,
        color="0.35",
        linestyle=(0, (1, 1.5)),
        linewidth=1.2,
        gid="reference-slope",
    )


def _finish_axis(ax) -> None:
    """Log-log axes labelled with plain numbers (1, 2, 5 per decade on the vertical axis)."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    plain = FuncFormatter(lambda v, _: f"{v:g}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.xaxis.set_major_formatter(plain)
    ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(plain)
    ax.yaxis.set_minor_formatter(NullFormatter())


def _legend(fig, names, alphas, reference: bool) -> None:
    """One legend for the figure: colour and marker = potential, line style = α."""
    from matplotlib.lines import Line2D

    from syngeo.app.plotting import geometry_style

    handles = []
    for name in names:
        style = geometry_style(name)
        handles.append(
            Line2D([], [], color=style.color, marker=style.marker, markersize=4, label=style.label)
        )
    for alpha in alphas:
        handles.append(
            Line2D([], [], color="k", linestyle=_alpha_style(alpha), label=_n_label(alpha))
        )
    if reference:
        handles.append(
            Line2D(
                [],
                [],
                color="0.35",
                linestyle=(0, (1, 1.5)),
                label=r"$\propto D^{-1/2}$: mean d of D i.i.d. Gaussian values",
            )
        )
    fig.legend(handles=handles, loc="outside lower center", ncols=2, fontsize=7, frameon=False)


def fig3a_plot(df: pd.DataFrame, config: Fig3AConfig) -> dict:
    """Fig. 3A: d and magnitude against width (log-log); colour = potential φ, line style = α.

    One row of two panels per correlation power (the default config has one, a = 2). Curves are
    medians over seeds with 5–95 % bands; the dotted line is the D^(−1/2) decay of d for i.i.d.
    Gaussian values, through its level at the smallest width.
    """
    from syngeo.app.plotting import subplots

    powers = sorted(df["power"].unique()) if len(df) else list(config.powers)
    fig, axes = subplots(len(powers), 2, width=3.3, height=2.7, squeeze=False)
    stats = {s: _quantiles(df, s) for s in ("d", "magnitude")} if len(df) else {}
    names = _order_potentials(df["potential"]) if len(df) else list(config.potentials)
    alphas = sorted(df["alpha"].unique()) if len(df) else list(config.alphas)
    for row, power in enumerate(powers):
        for col, stat in enumerate(("d", "magnitude")):
            ax = axes[row][col]
            if stats:
                q = stats[stat]
                for name in names:
                    for alpha in alphas:
                        part = q[(q.potential == name) & (q.alpha == alpha) & (q.power == power)]
                        if len(part):
                            _draw(ax, part, name, _alpha_style(alpha))
                if stat == "d":
                    _reference_slope(ax, q["width"].unique())
            _finish_axis(ax)
            ax.set_xlabel("width D (number of weights)")
            ax.set_ylabel(_STAT_LABELS[stat])
            ax.set_title(f"{_STAT_TITLES[stat]} (a = {power:g})", fontsize=9)
    _legend(fig, names, alphas, reference=bool(stats))
    return {"fig3a": fig}


def fig6_plot(df: pd.DataFrame, config: Fig6Config) -> dict:
    """Fig. 6: rows = potentials φ; columns = d for each correlation power a, then the magnitude.

    Log-log axes; the panels of one quantity share their vertical axis; line style = α; the
    dotted line in the d panels is the D^(−1/2) decay of i.i.d. Gaussian values.
    """
    from syngeo.app.plotting import geometry_style, subplots

    names = _order_potentials(df["potential"]) if len(df) else list(config.potentials)
    powers = sorted(df["power"].unique()) if len(df) else sorted(config.powers)
    alphas = sorted(df["alpha"].unique()) if len(df) else list(config.alphas)
    columns = [(stat, power) for stat in ("d", "magnitude") for power in powers]
    fig, axes = subplots(
        len(names), len(columns), width=2.35, height=1.95, squeeze=False, sharex=True
    )
    stats = {s: _quantiles(df, s) for s in ("d", "magnitude")} if len(df) else {}
    first = {}
    for r, name in enumerate(names):
        for c, (stat, power) in enumerate(columns):
            ax = axes[r][c]
            if stat in first:
                ax.sharey(first[stat])
            else:
                first[stat] = ax
            if stats:
                q = stats[stat]
                for alpha in alphas:
                    part = q[(q.potential == name) & (q.alpha == alpha) & (q.power == power)]
                    if len(part):
                        _draw(ax, part, name, _alpha_style(alpha))
                if stat == "d":
                    _reference_slope(ax, q["width"].unique())
            _finish_axis(ax)
            ax.set_title(
                f"{geometry_style(name).label}: {_STAT_LABELS[stat]}, a = {power:g}", fontsize=8
            )
            if c == 0 or columns[c - 1][0] != stat:
                ax.set_ylabel(_STAT_LABELS[stat])
            if r == len(names) - 1:
                ax.set_xlabel("width D")
    _legend(fig, names, alphas, reference=bool(stats))
    return {"fig6": fig}


def _slope(part: pd.DataFrame, column: str = "median") -> float:
    """Least-squares slope of log(value) against log(D): the decay exponent."""
    part = part.sort_values("width")
    x, yv = np.log(part["width"].to_numpy(float)), part[column].to_numpy(float)
    if len(part) < 2 or np.any(yv <= 0):
        return math.nan
    return float(np.polyfit(x, np.log(yv), 1)[0])


def _slope_standard_error(df: pd.DataFrame, name, alpha, power) -> float:
    """Standard error of the decay exponent of d: the spread of per-seed fits, over √seeds.

    Every (width, seed) cell is an independent draw, so the fits of the seeds are independent.
    """
    part = df[(df.potential == name) & (df.alpha == alpha) & (df.power == power)]
    slopes = [_slope(g, "d") for _, g in part.groupby("seed")]
    slopes = [s for s in slopes if not math.isnan(s)]
    if len(slopes) < 2:
        return math.nan
    return float(np.std(slopes, ddof=1) / math.sqrt(len(slopes)))


def _summary_rows(df: pd.DataFrame) -> list[dict]:
    qd, qm = _quantiles(df, "d"), _quantiles(df, "magnitude")
    rows = []
    for (name, alpha, power), part in qd.groupby(["potential", "alpha", "power"], sort=True):
        part = part.sort_values("width")
        mpart = qm[(qm.potential == name) & (qm.alpha == alpha) & (qm.power == power)]
        mpart = mpart.sort_values("width")
        floors = [_floor(int(w)) for w in part["width"]]
        ratio = part["median"].to_numpy(float) / np.array([f.q95 for f in floors])
        worst = int(np.argmax(ratio))
        slope, se = _slope(part), _slope_standard_error(df, name, alpha, power)
        rows.append(
            {
                "potential": name,
                "alpha": float(alpha),
                "power": float(power),
                "width_min": int(part["width"].iloc[0]),
                "width_max": int(part["width"].iloc[-1]),
                "d_median_at_min_width": float(part["median"].iloc[0]),
                "d_median_at_max_width": float(part["median"].iloc[-1]),
                "d_q95_max": float(part["q95"].max()),
                "d_q95_max_width": int(part["width"].iloc[int(np.argmax(part["q95"]))]),
                "d_median_over_floor_q95_max": float(ratio[worst]),
                "d_median_over_floor_q95_max_width": int(part["width"].iloc[worst]),
                "d_decreases": bool(part["median"].iloc[-1] < part["median"].iloc[0]),
                "d_slope_loglog": slope,
                "d_slope_se": se,
                "d_slope_is_gaussian": None
                if math.isnan(slope) or math.isnan(se)
                else bool(abs(slope - GAUSSIAN_EXPONENT) <= N_STANDARD_ERRORS * se + 1e-9),
                "magnitude_median_at_min_width": float(mpart["median"].iloc[0]),
                "magnitude_median_at_max_width": float(mpart["median"].iloc[-1]),
                "magnitude_decreases": bool(mpart["median"].iloc[-1] < mpart["median"].iloc[0]),
                "magnitude_slope_loglog": _slope(mpart),
                "n_seeds": int(part["n"].min()),
            }
        )
    return rows


def _alpha_comparisons(df: pd.DataFrame) -> list[dict]:
    """Median magnitude for α = 0.5 against α = 0.75 at every (potential, a, D) with both."""
    q = _quantiles(df, "magnitude").set_index(["potential", "power", "width", "alpha"])["median"]
    out = []
    for (name, power, width), part in q.groupby(level=[0, 1, 2]):
        by_alpha = part.droplevel([0, 1, 2])
        if 0.5 in by_alpha.index and 0.75 in by_alpha.index:
            out.append(
                {
                    "potential": name,
                    "power": float(power),
                    "width": int(width),
                    "smaller": bool(by_alpha[0.5] < by_alpha[0.75]),
                    "is_max_width": int(width) == int(df["width"].max()),
                }
            )
    return out


def summarise(df: pd.DataFrame, config: RegressionConfig) -> dict:
    """Headline numbers, each claim of the report with the comparison it makes, per setting."""
    if not len(df):
        return {"n_rows": 0}
    rows = _summary_rows(df)
    pairs = _alpha_comparisons(df)
    at_max = [p for p in pairs if p["is_max_width"]]
    slopes = [r["d_slope_is_gaussian"] for r in rows]
    lazy = max(rows, key=lambda r: r["magnitude_median_at_max_width"])
    small = max(rows, key=lambda r: r["d_median_over_floor_q95_max"])
    return {
        "n_rows": len(df),
        "solver": config.solver,
        "n_settings": len(rows),
        "n_standard_errors": N_STANDARD_ERRORS,
        "max_d_q95": float(max(r["d_q95_max"] for r in rows)),
        "d_median_over_floor_q95_max": small["d_median_over_floor_q95_max"],
        "d_within_gaussian_range_everywhere": bool(small["d_median_over_floor_q95_max"] <= 1.0),
        "d_decreases_with_width_everywhere": bool(all(r["d_decreases"] for r in rows)),
        "n_settings_d_decreases": int(sum(r["d_decreases"] for r in rows)),
        "n_settings_d_slope_gaussian": int(sum(bool(s) for s in slopes)),
        "d_slope_gaussian_everywhere": None
        if any(s is None for s in slopes)
        else bool(all(slopes)),
        "d_slope_range": [
            float(min(r["d_slope_loglog"] for r in rows)),
            float(max(r["d_slope_loglog"] for r in rows)),
        ],
        "magnitude_decreases_with_width_everywhere": bool(
            all(r["magnitude_decreases"] for r in rows)
        ),
        "max_magnitude_median_at_max_width": float(lazy["magnitude_median_at_max_width"]),
        "magnitude_below_1_at_max_width_everywhere": bool(
            lazy["magnitude_median_at_max_width"] < 1.0
        ),
        "n_settings_magnitude_much_smaller_at_max_width": int(
            sum(r["magnitude_median_at_max_width"] <= MUCH_SMALLER for r in rows)
        ),
        "magnitude_smaller_for_alpha_0.5_everywhere": bool(all(p["smaller"] for p in at_max))
        if at_max
        else None,
        "n_alpha_comparisons": len(pairs),
        "n_alpha_comparisons_smaller": int(sum(p["smaller"] for p in pairs)),
        "max_constraint_residual": float(df["constraint_residual"].max()),
        "constraint_met": bool(df["constraint_residual"].max() <= config.tol),
        "by_setting": rows,
    }


def _verdict(ok) -> str:
    return "holds" if ok else "does not hold"


def _setting(r: dict) -> str:
    return f"{r['potential']}, a = {r['power']:g}, α = {r['alpha']:g}"


def _failing(rows, key, value=False) -> str:
    bad = [_setting(r) for r in rows if r[key] is value]
    return "" if not bad else f" (not in: {'; '.join(bad)})"


def _claim_rows(summary: dict, config: RegressionConfig) -> list[list[str]]:
    rows = summary["by_setting"]
    n = summary["n_settings"]
    k = fmt(summary["n_standard_errors"], "g")
    small = max(rows, key=lambda r: r["d_median_over_floor_q95_max"])
    lazy = max(rows, key=lambda r: r["magnitude_median_at_max_width"])
    lo, hi = summary["d_slope_range"]
    gaussian = summary["d_slope_gaussian_everywhere"]
    alpha = summary["magnitude_smaller_for_alpha_0.5_everywhere"]
    d_max = max(rows, key=lambda r: r["d_q95_max"])
    claims = [
        [
            "d is always relatively small",
            f"the median d at every width is at most the 95th percentile of d for D i.i.d. "
            f"Gaussian values (Monte Carlo): {_verdict(summary['d_within_gaussian_range_everywhere'])}"
            f" (largest ratio {fmt(small['d_median_over_floor_q95_max'])}, {_setting(small)}, "
            f"D = {small['d_median_over_floor_q95_max_width']}); largest 95th percentile of d over "
            f"seeds: {fmt(summary['max_d_q95'])} (D = {d_max['d_q95_max_width']})",
        ],
        [
            "d converges towards zero as the width grows",
            "the median d is smaller at the largest width than at the smallest in "
            f"{summary['n_settings_d_decreases']} of {n} settings: "
            f"{_verdict(summary['d_decreases_with_width_everywhere'])}"
            + _failing(rows, "d_decreases"),
        ],
        [
            "(reference, not a claim of the paper) d falls as D^−1/2, like i.i.d. Gaussian values",
            f"fitted exponents of the median d: {fmt(lo, '.2f')} to {fmt(hi, '.2f')}; within "
            f"{k} standard errors (over seeds) of −0.5 in {summary['n_settings_d_slope_gaussian']} "
            f"of {n} settings: "
            + (
                "n/a (needs two widths and two seeds)"
                if gaussian is None
                else _verdict(gaussian) + _failing(rows, "d_slope_is_gaussian")
            ),
        ],
        [
            "the dual change is much smaller than 1 at large widths (lazy)",
            "the median magnitude at the largest width is below 1 in every setting: "
            f"{_verdict(summary['magnitude_below_1_at_max_width_everywhere'])} (largest "
            f"{fmt(lazy['magnitude_median_at_max_width'])}, {_setting(lazy)}); an order of "
            f"magnitude below 1 (≤ {fmt(MUCH_SMALLER, 'g')}) in "
            f"{summary['n_settings_magnitude_much_smaller_at_max_width']} of {n}: "
            + _verdict(summary["n_settings_magnitude_much_smaller_at_max_width"] == n),
        ],
        [
            "the change is smaller for N = D^0.5 than for N = D^0.75",
            "n/a (needs both α)"
            if alpha is None
            else (
                f"median magnitude at the largest width, every potential and a: {_verdict(alpha)}; "
                f"at all widths: smaller in {summary['n_alpha_comparisons_smaller']} of "
                f"{summary['n_alpha_comparisons']} comparisons"
            ),
        ],
    ]
    return claims


def _report(df: pd.DataFrame, config: RegressionConfig, figure: str, title: str) -> str:
    lines = [f"# {title}", ""]
    if not len(df):
        return "\n".join([*lines, "No cells were run.", ""])
    summary = summarise(df, config)
    n_seeds = int(df.groupby(["potential", "alpha", "power", "width"]).size().min())
    solver = (
        "exact Bregman projection (Eq. 8)"
        if config.solver == "exact"
        else "paper training protocol"
    )
    lines += [
        f"![{figure}]({figure}.png)",
        "",
        "Protocol (docs/theory.md §4, paper B.1): N = ⌊D^α⌋ training samples of width D with "
        "Toeplitz correlation c_k = (−1)^k / (1 + |k|^a) plus U(−½, ½) noise, labels ±1, "
        f"w0 ~ N(0, 1/D); final weights by the {solver}; "
        f"widths {', '.join(str(w) for w in sorted(df['width'].unique()))}; {n_seeds} seeds per "
        "point; curves are medians with 5–95 % bands on log-log axes; the dotted line is the "
        "D^−1/2 decay of d for i.i.d. Gaussian values.",
        "",
        "## The paper's claims next to the measurements",
        "",
        markdown_table(
            ["claim (Pogodin et al. §4.1)", "measured here"], _claim_rows(summary, config)
        ),
        "",
        "## Per setting (medians over seeds)",
        "",
        markdown_table(
            [
                "potential",
                "a",
                "α",
                "d at D_min",
                "d at D_max",
                "exponent of d (± s.e.)",
                "magnitude at D_min",
                "magnitude at D_max",
            ],
            [
                [
                    r["potential"],
                    fmt(r["power"], "g"),
                    fmt(r["alpha"], "g"),
                    r["d_median_at_min_width"],
                    r["d_median_at_max_width"],
                    f"{fmt(r['d_slope_loglog'], '.2f')} ± {fmt(r['d_slope_se'], '.2f')}",
                    r["magnitude_median_at_min_width"],
                    r["magnitude_median_at_max_width"],
                ]
                for r in summary["by_setting"]
            ],
        ),
        "",
        f"Largest relative constraint residual ‖Xw − y‖/‖y‖ over all solutions: "
        f"{fmt(summary['max_constraint_residual'])}; at most the solver tolerance "
        f"{fmt(config.tol, 'g')}: {_verdict(summary['constraint_met'])}.",
        "",
    ]
    return "\n".join(lines)


def fig3a_report(df: pd.DataFrame, config: Fig3AConfig) -> str:
    return _report(
        df, config, "fig3a", "Fig. 3A — linear regression: Gaussianity of the dual change vs width"
    )


def fig6_report(df: pd.DataFrame, config: Fig6Config) -> str:
    return _report(
        df, config, "fig6", "Fig. 6 — linear regression, all potentials and correlation powers"
    )


FIG3A = Experiment(
    name="fig3a",
    title="Pogodin et al. Fig. 3A: linear regression, Gaussianity and change magnitude vs width",
    Config=Fig3AConfig,
    quick=Fig3AConfig.quick,
    cells=cells,
    run_cell=run_cell,
    summarise=summarise,
    plot=fig3a_plot,
    report=fig3a_report,
    figures=("fig3a",),
)

FIG6 = Experiment(
    name="fig6",
    title="Pogodin et al. Fig. 6: linear regression, both correlation powers",
    Config=Fig6Config,
    quick=Fig6Config.quick,
    cells=cells,
    run_cell=run_cell,
    summarise=summarise,
    plot=fig6_plot,
    report=fig6_report,
    figures=("fig6",),
)
