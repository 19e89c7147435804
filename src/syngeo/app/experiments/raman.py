r"""Raman, Rotondo & O'Leary (2019): learning rate under noisy plasticity, and optimal size.

Four reproductions (``syngeo reproduce NAME``), each with the experiment contract of
:mod:`syngeo.app.experiments` under its prefix:

``raman-k`` (``k_``)
    Second-order prediction of the learning rate ``k`` against the real change of the error over
    one feedback interval, per draw of the three-component plasticity, and the expectation
    :math:`\langle k\rangle` against the mean over draws; linear [10, 5] and sigmoid
    [10, 5, 5, 10] networks (the scripts' prediction checks).
``raman-difficulty`` (``difficulty_``)
    Local task difficulty and the learning condition: (i) single intervals at a fixed sigmoid
    network while the synaptic noise γ3 grows — where does the mean measured ``k`` change sign,
    against the predicted critical γ3; (ii) noisy learning run to its steady state, where the
    theory predicts that the mean difficulty sits exactly on the bound.
``raman-size`` (``size_``)
    Learning rate and steady-state error against network size for linear networks expanded by
    semi-orthogonal embeddings (c1 = c2) and sigmoid networks expanded by zero-initialised
    units, under several (γ1, γ2, γ3); predicted curves and N* against simulation.
``raman-geometry`` (``geometry_``)
    The same three-component plasticity, with its noise in the dual space of negative entropy
    (multiplicative) or of the Euclidean potential (additive), run with
    :class:`syngeo.optim.MirrorDescent`: the weight distributions it produces and the learning
    curves.

Conventions: :mod:`syngeo.bounds`, :mod:`syngeo.plasticity`, :mod:`syngeo.expansion`; the
derivation and where it departs from the slides: ``docs/raman.md``.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.interpolate
import torch

from syngeo.bounds import (
    LossGeometry,
    difficulty_bound,
    expected_learning_rate,
    learning_rate,
    optimal_size,
    optimal_size_numeric,
    size_learning_rate,
)
from syngeo.expansion import (
    LinearTask,
    SigmoidMLP,
    expand_linear,
    expand_sigmoid,
    init_sigmoid_mlp,
    make_linear_task,
    make_sigmoid_task,
)
from syngeo.plasticity import PlasticityRates, PlasticityStep, ThreeComponentPlasticity

__all__ = [
    "DifficultyConfig",
    "GeometryConfig",
    "KConfig",
    "SizeConfig",
    "slides_optimal_size",
]

D = torch.float64


def slides_optimal_size(rates: PlasticityRates) -> float:
    r"""The slides' optimal size :math:`T\gamma_2^2(1 - \gamma_1^2/\gamma_2^2)/\gamma_3^2` (for comparison only).

    Negative whenever γ1 > γ2; see ``docs/raman.md`` for why it is not the maximiser of
    :math:`\langle k\rangle`.
    """
    return rates.T * (rates.gamma2**2 - rates.gamma1**2) / rates.gamma3**2


# ==============================================================================================
# problems as functions of one flat weight vector
# ==============================================================================================


class _Problem:
    """A loss of one flat weight vector with its gradient and Hessian-vector product."""

    n: int

    def loss(self, w: torch.Tensor) -> float:
        raise NotImplementedError

    def loss_and_grad(self, w: torch.Tensor) -> tuple[float, torch.Tensor]:
        raise NotImplementedError

    def hvp(self, w: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def hessian_trace(self, w: torch.Tensor, generator: torch.Generator) -> tuple[float, float]:
        raise NotImplementedError

    def geometry(self, w: torch.Tensor, generator: torch.Generator) -> LossGeometry:
        F, g = self.loss_and_grad(w)
        gn = float(g.norm())
        g_curv = float(g @ self.hvp(w, g)) / gn**2
        tr, se = self.hessian_trace(w, generator)
        return LossGeometry(F, gn, g_curv, tr, se, self.n, "exact" if se == 0 else "hutchinson")


class _LinearProblem(_Problem):
    """Linear student-teacher task on the flattened (o, i) weight matrix; closed forms."""

    def __init__(self, task: LinearTask) -> None:
        self.task = task
        self.shape = tuple(task.teacher.shape)
        self.n = task.n_synapses

    def loss(self, w):
        return float(self.task.loss(w.reshape(self.shape)))

    def loss_and_grad(self, w):
        W = w.reshape(self.shape)
        return float(self.task.loss(W)), self.task.grad(W).reshape(-1)

    def hvp(self, w, v):
        return (v.reshape(self.shape) @ self.task.input_covariance).reshape(-1)

    def hessian_trace(self, w, generator):
        return self.task.hessian_trace(), 0.0


class _MLPProblem(_Problem):
    """Sigmoid student-teacher task on the concatenated, flattened layer weights."""

    def __init__(self, task, shapes, *, exact_max: int = 500, n_probes: int = 48) -> None:
        self.task = task
        self.shapes = [tuple(s) for s in shapes]
        self.sizes = [math.prod(s) for s in self.shapes]
        self.n = sum(self.sizes)
        self.exact_max, self.n_probes = exact_max, n_probes

    def unflat(self, w):
        return [c.reshape(s) for c, s in zip(torch.split(w, self.sizes), self.shapes, strict=True)]

    def _f(self, w):
        return self.task.loss(self.unflat(w))

    def loss(self, w):
        return float(self._f(w))

    def loss_and_grad(self, w):
        # plain reverse mode: about 2x faster than torch.func.grad_and_value at these sizes
        x = w.detach().requires_grad_(True)
        F = self._f(x)
        (g,) = torch.autograd.grad(F, x)
        return float(F.detach()), g

    def hvp(self, w, v):
        # reverse-over-reverse: for these small sigmoid networks it measured ~3x faster than
        # forward-over-reverse (torch.func.jvp of grad); both agree to rounding (tested in bounds)
        x = w.detach().requires_grad_(True)
        (g,) = torch.autograd.grad(self._f(x), x, create_graph=True)
        (hv,) = torch.autograd.grad(g, x, grad_outputs=v)
        return hv

    def hessian_trace(self, w, generator):
        if self.n <= self.exact_max:
            eye = torch.eye(self.n, dtype=w.dtype)
            return float(sum(self.hvp(w, e)[i] for i, e in enumerate(eye))), 0.0
        m = self.n_probes
        probes = torch.randint(0, 2, (m, self.n), generator=generator).to(w.dtype) * 2 - 1
        samples = torch.stack([v @ self.hvp(w, v) for v in probes])
        return float(samples.mean()), float(samples.std(unbiased=True) / math.sqrt(m))


def _flat(weights) -> torch.Tensor:
    return torch.cat([w.reshape(-1) for w in weights])


def _linear_problem(n_in, n_out, n_samples, init_std, seed):
    task = make_linear_task(n_in, n_out, n_samples=n_samples, rng=seed)
    g = torch.Generator().manual_seed(10_000 + seed)
    W0 = init_std * torch.randn(n_out, n_in, generator=g, dtype=D)
    return task, W0


def _pretrained_mlp(sizes, teacher_sizes, n_samples, pretrain_cycles, pretrain_step, seed):
    """Student and task: a random teacher, then ``pretrain_cycles`` noiseless normalised-gradient steps.

    Deterministic in its arguments and cached, so the cells of one sweep that share a starting
    network train it once per process (callers never modify the returned tensors).
    """
    return _pretrained_mlp_cached(
        tuple(sizes), tuple(teacher_sizes), n_samples, pretrain_cycles, pretrain_step, seed
    )


@functools.lru_cache(maxsize=32)
def _pretrained_mlp_cached(sizes, teacher_sizes, n_samples, pretrain_cycles, pretrain_step, seed):
    teacher = init_sigmoid_mlp(teacher_sizes, rng=20_000 + seed)
    task = make_sigmoid_task(teacher, n_samples=n_samples, rng=30_000 + seed)
    student = init_sigmoid_mlp(sizes, rng=40_000 + seed)
    prob = _MLPProblem(task, [w.shape for w in student.weights])
    w = _flat(student.weights)
    for _ in range(pretrain_cycles):
        _, g = prob.loss_and_grad(w)
        w = w - pretrain_step * g / g.norm()
    return task, SigmoidMLP(tuple(prob.unflat(w))), prob


def _simulate(
    prob: _Problem,
    w0: torch.Tensor,
    rates: PlasticityRates,
    n_cycles: int,
    generator: torch.Generator,
    *,
    correlation: float = 0.0,
    measure_difficulty_from: int | None = None,
    measure_every: int = 1,
) -> dict:
    """Run noisy three-component plasticity; return the error trajectory and difficulty sums.

    With ``measure_difficulty_from = t0`` the sums over cycles ``t >= t0`` of
    :math:`\\dot w^\\top H\\dot w`, :math:`\\|\\dot w\\|^2`, :math:`\\|\\nabla F\\|` are kept
    (for the ratio-of-means steady-state difficulty), on every ``measure_every``-th cycle.
    """
    plast = ThreeComponentPlasticity(rates, generator=generator, correlation=correlation)
    w = w0.clone()
    losses = np.empty(n_cycles + 1)
    ks = np.empty(n_cycles)
    quad = speed = gnorm = 0.0
    count = 0
    F, g = prob.loss_and_grad(w)
    losses[0] = F
    for t in range(n_cycles):
        step = plast.step(g)
        if (
            measure_difficulty_from is not None
            and t >= measure_difficulty_from
            and (t - measure_difficulty_from) % measure_every == 0
        ):
            v = step.velocity
            quad += float(v @ prob.hvp(w, v))
            speed += float(v @ v)
            gnorm += float(g.norm())
            count += 1
        w = w + step.delta
        F_new, g = prob.loss_and_grad(w)
        ks[t] = learning_rate(F, F_new, rates.T)
        F = F_new
        losses[t + 1] = F
    out = {"losses": losses, "ks": ks, "w": w}
    if count:
        out.update(quad=quad / count, speed=speed / count, gnorm=gnorm / count)
    return out


def _single_interval_draws(
    prob, w, rates, n_draws, generator, *, with_prediction=True, antithetic=False
):
    """Measured k, predicted (second-order) k and difficulty for independent draws at ``w``.

    ``antithetic``: draws come in pairs (n2, n3) and (−n2, −n3), which have the same law; the
    linear noise terms cancel within a pair, so the mean over draws has a much smaller variance.
    """
    F0, g = prob.loss_and_grad(w)
    gn = float(g.norm())
    plast = ThreeComponentPlasticity(rates, generator=generator)
    rows = []
    step = None
    for i in range(n_draws):
        if antithetic and i % 2 == 1:
            step = PlasticityStep(step.task, -step.irrelevant, -step.noise, step.T)
        else:
            step = plast.step(g)
        v = step.velocity
        measured = learning_rate(F0, prob.loss(w + step.delta), rates.T)
        row = {"k_measured": measured}
        if with_prediction:
            vHv = float(v @ prob.hvp(w, v))
            vg = float(v @ g)
            vv = float(v @ v)
            row["k_predicted"] = -(vg + 0.5 * rates.T * vHv) / F0
            row["difficulty"] = vHv / vv / gn  # theory convention: ŵᵀHŵ/‖∇F‖
            # per-draw learning bound: k > 0  <=>  G < 2(-ẇ·∇F̂)/(T‖ẇ‖²)
            row["draw_bound"] = 2.0 * (-vg / gn) / (rates.T * vv)
        rows.append(row)
    return rows


@contextlib.contextmanager
def _one_thread():
    """Run a cell on one intra-op thread (restored afterwards).

    The problems here are small (matrices of tens to hundreds of rows); on a loaded machine torch's
    multi-threaded kernels then spend most of their time waiting for each other (a 35 × 70 by
    70 × 70 product measured 12 ms with 2 threads vs 0.03 ms with 1). Parallelism comes from running
    cells side by side instead.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _rates(g, T) -> PlasticityRates:
    return PlasticityRates(float(g[0]), float(g[1]), float(g[2]), float(T))


def _fmt(x, digits=3) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "n/a"
    return f"{x:.{digits}g}"


# ==============================================================================================
# raman-k: predicted vs measured learning rate
# ==============================================================================================


@dataclass(frozen=True)
class KConfig:
    """Prediction checks of ``k`` (scripts: γ = (1, .05, .05) and (.2, .5, .1), T = 2).

    Attributes
    ----------
    models : tuple[str, ...]
        ``"linear"`` (inputs, outputs = ``linear_sizes``) and/or ``"mlp"`` (``mlp_sizes``).
    gammas : tuple of (γ1, γ2, γ3)
    T_values : tuple[float, ...]
        Feedback intervals; the prediction is second order, so it degrades as T grows.
    n_draws : int
        Independent plasticity draws per cell (one interval each, from the same weights).
    seeds : tuple[int, ...]
    n_samples : int
        Inputs of the task.
    teacher_sizes : tuple[int, ...]
        The sigmoid teacher (a different architecture from the student's).
    pretrain_cycles, pretrain_step : int, float
        Noiseless normalised-gradient steps given to the sigmoid student before measuring
        (few, so that the error is still falling and k is positive for weak noise).
    """

    models: tuple[str, ...] = ("linear", "mlp")
    linear_sizes: tuple[int, int] = (10, 5)
    mlp_sizes: tuple[int, ...] = (10, 5, 5, 10)
    teacher_sizes: tuple[int, ...] = (10, 20, 10)
    gammas: tuple[tuple[float, float, float], ...] = ((1.0, 0.05, 0.05), (0.2, 0.5, 0.1))
    T_values: tuple[float, ...] = (0.1, 0.5, 2.0)
    n_draws: int = 200
    seeds: tuple[int, ...] = (0, 1, 2)
    n_samples: int = 1000
    init_std: float = 1.0
    pretrain_cycles: int = 30
    pretrain_step: float = 0.1

    @classmethod
    def quick(cls) -> KConfig:
        return cls(T_values=(0.1, 2.0), n_draws=60, seeds=(0,), n_samples=200)


def k_cells(config: KConfig) -> list[dict]:
    return [
        {"model": m, "gammas": list(g), "T": float(T), "seed": int(s)}
        for m in config.models
        for g in config.gammas
        for T in config.T_values
        for s in config.seeds
    ]


def _k_problem(config, model, seed):
    if model == "linear":
        n_in, n_out = config.linear_sizes
        task, W0 = _linear_problem(n_in, n_out, config.n_samples, config.init_std, seed)
        return _LinearProblem(task), W0.reshape(-1)
    if model == "mlp":
        sizes = list(config.mlp_sizes)
        _, net, prob = _pretrained_mlp(
            sizes,
            list(config.teacher_sizes),
            config.n_samples,
            config.pretrain_cycles,
            config.pretrain_step,
            seed,
        )
        return prob, _flat(net.weights)
    raise ValueError(f"unknown model {model!r}; use 'linear' or 'mlp'")


def _k_run_cell(config: KConfig, cell: dict) -> list[dict]:
    rates = _rates(cell["gammas"], cell["T"])
    prob, w = _k_problem(config, cell["model"], cell["seed"])
    gen = torch.Generator().manual_seed(1_000 + cell["seed"])
    geo = prob.geometry(w, gen)
    k_exp = expected_learning_rate(geo, rates).k
    draws = _single_interval_draws(prob, w, rates, config.n_draws, gen)
    base = {
        "model": cell["model"],
        "gamma1": rates.gamma1,
        "gamma2": rates.gamma2,
        "gamma3": rates.gamma3,
        "T": rates.T,
        "seed": cell["seed"],
        "n_synapses": prob.n,
        "k_expected": k_exp,
    }
    return [{**base, "draw": i, **d} for i, d in enumerate(draws)]


def _k_table(df: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for key, g in df.groupby(["model", "gamma1", "gamma2", "gamma3", "T"], sort=True):
        rel = (g.k_predicted - g.k_measured).abs() / g.k_measured.abs().clip(lower=1e-12)
        se = g.k_measured.std(ddof=1) / math.sqrt(len(g))
        rows.append(
            dict(
                zip(("model", "gamma1", "gamma2", "gamma3", "T"), key, strict=True),
                n_draws=len(g),
                k_measured_mean=g.k_measured.mean(),
                k_measured_se=se,
                k_expected=g.k_expected.mean(),
                k_predicted_mean=g.k_predicted.mean(),
                median_rel_error=float(rel.median()),
                correlation=float(np.corrcoef(g.k_predicted, g.k_measured)[0, 1])
                if g.k_measured.std() > 0
                else float("nan"),
            )
        )
    return pd.DataFrame(rows)


def k_plot(df: pd.DataFrame, config: KConfig) -> dict:
    from syngeo.app.plotting import subplots

    models = sorted(df.model.unique())
    Ts = sorted(df["T"].unique())
    fig, axes = subplots(len(models), 2, width=3.4, height=3.0, squeeze=False)
    for r, model in enumerate(models):
        sub = df[df.model == model]
        ax = axes[r][0]
        for j, (key, g) in enumerate(sub.groupby(["gamma1", "gamma2", "gamma3", "T"])):
            ax.scatter(
                g.k_predicted,
                g.k_measured,
                s=4,
                alpha=0.4,
                label=f"γ={key[:3]}, T={key[3]:g}",
                color=f"C{j}",
            )
        lo = float(min(sub.k_predicted.min(), sub.k_measured.min()))
        hi = float(max(sub.k_predicted.max(), sub.k_measured.max()))
        ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
        ax.set_xlabel("predicted k (second order)")
        ax.set_ylabel("measured k")
        ax.set_title(f"{model}: one interval per dot")
        ax.legend(fontsize=5, markerscale=2)
        ax = axes[r][1]
        tab = _k_table(sub)
        for j, (key, g) in enumerate(tab.groupby(["gamma1", "gamma2", "gamma3"])):
            ax.errorbar(
                g["T"],
                g.k_measured_mean,
                yerr=2 * g.k_measured_se,
                fmt="o",
                color=f"C{j}",
                label=f"measured, γ={key}",
            )
            ax.plot(g["T"], g.k_expected, "-", color=f"C{j}", label="⟨k⟩ formula")
        ax.set_xscale("log")
        ax.set_xticks(Ts)
        ax.set_xticklabels([f"{t:g}" for t in Ts])
        ax.set_xlabel("T")
        ax.set_ylabel("mean k over draws")
        ax.set_title(f"{model}: ⟨k⟩ vs mean measured k")
        ax.legend(fontsize=5)
    return {"raman_k": fig}


def k_summary(df: pd.DataFrame, config: KConfig) -> dict:
    tab = _k_table(df)
    out = {"cells": tab.to_dict(orient="records")}
    for model, g in tab.groupby("model"):
        small = g[g["T"] == g["T"].min()]
        out[f"{model}_median_rel_error_smallest_T"] = float(small.median_rel_error.max())
        out[f"{model}_max_expected_vs_measured_in_se"] = float(
            ((g.k_expected - g.k_measured_mean).abs() / g.k_measured_se).max()
        )
    return out


def k_report(df: pd.DataFrame, config: KConfig) -> str:
    tab = _k_table(df)
    lines = [
        "# Raman et al.: predicted vs measured learning rate",
        "",
        "Claim: over one feedback interval T the learning rate k, defined by F(T) = (1 − kT)F(0), is "
        "predicted to second order by k ≈ −(1/F)[∇Fᵀẇ + (T/2)ẇᵀ∇²Fẇ] (ẇ = Δw/T), and its mean over the "
        "random plasticity components by ⟨k⟩ = γ1‖∇F‖/F − (T/2F)[γ1²g + Tr∇²F(γ2²/N + γ3²/T)].",
        "",
        f"Setting: {config.n_draws} draws × {len(config.seeds)} seeds per row; linear {list(config.linear_sizes)} "
        f"(inputs, outputs) and sigmoid MLP {list(config.mlp_sizes)} on a {list(config.teacher_sizes)} teacher "
        f"(pretrained {config.pretrain_cycles} noiseless steps); {config.n_samples} inputs.",
        "",
        "| model | γ1 | γ2 | γ3 | T | ⟨k⟩ formula | mean measured k ± SE | median rel. error per draw | corr(pred, meas) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in tab.itertuples():
        lines.append(
            f"| {r.model} | {r.gamma1:g} | {r.gamma2:g} | {r.gamma3:g} | {r.T:g} | {r.k_expected:.4g} | "
            f"{r.k_measured_mean:.4g} ± {r.k_measured_se:.2g} | {r.median_rel_error:.2g} | {r.correlation:.4f} |"
        )
    lines += [
        "",
        "Reading: for the linear task the loss is quadratic, so the per-draw prediction is exact (relative "
        "error at rounding level) and the table checks ⟨k⟩ against Monte Carlo. For the sigmoid network "
        "the second-order prediction is accurate for small T and degrades as T grows (the neglected "
        "third-order term makes the error in k grow like T²). ⟨k⟩ uses the Hessian trace computed exactly "
        "(N HVPs) at each seed's weights; with several seeds the column is the mean over seeds.",
        "",
        "![predicted vs measured k](raman_k.png)",
        "",
    ]
    return "\n".join(lines)


k_Config = KConfig


# ==============================================================================================
# raman-difficulty: local task difficulty and the learning condition
# ==============================================================================================


@dataclass(frozen=True)
class DifficultyConfig:
    """Learning condition at a fixed network, and the steady state on the bound.

    Attributes
    ----------
    draw_gammas : (γ1, γ2)
        Fixed rates of the single-interval part (sigmoid network ``mlp_sizes`` after
        ``pretrain_cycles`` noiseless steps on a ``teacher_sizes`` teacher).
    draw_gamma3 : tuple[float, ...]
        Synaptic-noise grid; the mean measured ``k`` changes sign somewhere on it.
    draw_T : float
    n_draws : int
    steady_models : tuple[str, ...]
        Networks run to their steady state (``"linear"``: ``linear_sizes``; ``"mlp"``).
    steady_gammas : (γ1, γ2)
    steady_gamma3 : tuple[float, ...]
    steady_T : float
    n_cycles : int
        Cycles of noisy learning; the difficulty is averaged over the second half.
    measure_every : int
        Sigmoid runs measure the difficulty (one Hessian-vector product) on every
        ``measure_every``-th cycle of the second half only (linear runs: every cycle).
    n_samples, mlp_samples : int
        Inputs of the linear and of the sigmoid tasks.
    """

    mlp_sizes: tuple[int, ...] = (10, 5, 5, 10)
    teacher_sizes: tuple[int, ...] = (10, 20, 10)
    pretrain_cycles: int = 30
    pretrain_step: float = 0.1
    draw_gammas: tuple[float, float] = (0.5, 0.5)
    draw_gamma3: tuple[float, ...] = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8)
    draw_T: float = 0.2
    n_draws: int = 150
    steady_models: tuple[str, ...] = ("linear", "mlp")
    linear_sizes: tuple[int, int] = (10, 5)
    steady_gammas: tuple[float, float] = (0.1, 0.5)
    steady_gamma3: tuple[float, ...] = (0.005, 0.01, 0.03, 0.1)
    steady_T: float = 1.0
    n_cycles: int = 2000
    measure_every: int = 4
    seeds: tuple[int, ...] = (0, 1, 2)
    n_samples: int = 1000
    mlp_samples: int = 300
    init_std: float = 1.0

    @classmethod
    def quick(cls) -> DifficultyConfig:
        return cls(
            draw_gamma3=(0.0, 0.2, 0.4, 0.6, 0.8),
            n_draws=60,
            steady_models=("linear",),
            steady_gamma3=(0.01, 0.1),
            n_cycles=1000,
            seeds=(0,),
            n_samples=300,
            mlp_samples=200,
        )


def difficulty_cells(config: DifficultyConfig) -> list[dict]:
    cells = [
        {"part": "draws", "model": "mlp", "gamma3": float(g3), "seed": int(s)}
        for s in config.seeds
        for g3 in config.draw_gamma3
    ]
    cells += [
        {"part": "steady", "model": m, "gamma3": float(g3), "seed": int(s)}
        for m in config.steady_models
        for s in config.seeds
        for g3 in config.steady_gamma3
    ]
    return cells


def _critical_gamma3(geo: LossGeometry, g1: float, g2: float, T: float) -> float:
    r"""γ3 at which ⟨k⟩ = 0: :math:`\gamma_3^2 = [2\gamma_1\|\nabla F\| - T(\gamma_1^2 g + \mathrm{Tr}H\gamma_2^2/N)]/\mathrm{Tr}H`."""
    num = 2 * g1 * geo.grad_norm - T * (
        g1**2 * geo.grad_curvature + geo.hessian_trace * g2**2 / geo.n_synapses
    )
    if geo.hessian_trace <= 0:
        return float("inf") if num > 0 else float("nan")
    return math.sqrt(num / geo.hessian_trace) if num > 0 else 0.0


def _difficulty_run_cell(config: DifficultyConfig, cell: dict) -> list[dict]:
    seed, g3 = int(cell["seed"]), float(cell["gamma3"])
    base = {"part": cell["part"], "model": cell["model"], "gamma3": g3, "seed": seed}
    gen = torch.Generator().manual_seed(2_000 + seed + round(1e4 * g3))
    if cell["part"] == "draws":
        g1, g2 = config.draw_gammas
        rates = PlasticityRates(g1, g2, g3, config.draw_T)
        _, net, prob = _pretrained_mlp(
            list(config.mlp_sizes),
            list(config.teacher_sizes),
            config.mlp_samples,
            config.pretrain_cycles,
            config.pretrain_step,
            seed,
        )
        w = _flat(net.weights)
        geo = prob.geometry(w, gen)
        extra = {
            "gamma1": g1,
            "gamma2": g2,
            "T": config.draw_T,
            "n_synapses": prob.n,
            "k_expected": expected_learning_rate(geo, rates).k,
            "critical_gamma3": _critical_gamma3(geo, g1, g2, config.draw_T),
            "mean_bound": difficulty_bound(rates, prob.n),
        }
        draws = _single_interval_draws(prob, w, rates, config.n_draws, gen)
        return [{**base, **extra, "draw": i, **d} for i, d in enumerate(draws)]
    if cell["part"] != "steady":
        raise ValueError(f"unknown part {cell['part']!r}")
    g1, g2 = config.steady_gammas
    rates = PlasticityRates(g1, g2, g3, config.steady_T)
    if cell["model"] == "linear":
        n_in, n_out = config.linear_sizes
        task, W0 = _linear_problem(n_in, n_out, config.n_samples, config.init_std, seed)
        prob, w0 = _LinearProblem(task), W0.reshape(-1)
    else:
        _, net, prob = _pretrained_mlp(
            list(config.mlp_sizes),
            list(config.teacher_sizes),
            config.mlp_samples,
            config.pretrain_cycles,
            config.pretrain_step,
            seed,
        )
        w0 = _flat(net.weights)
    half = config.n_cycles // 2
    every = 1 if cell["model"] == "linear" else config.measure_every
    out = _simulate(
        prob, w0, rates, config.n_cycles, gen, measure_difficulty_from=half, measure_every=every
    )
    G = out["quad"] / (out["speed"] * out["gnorm"])  # ratio of means, theory convention
    return [
        {
            **base,
            "gamma1": g1,
            "gamma2": g2,
            "T": config.steady_T,
            "n_synapses": prob.n,
            "steady_difficulty": G,
            "bound": difficulty_bound(rates, prob.n),
            "steady_loss": float(out["losses"][half:].mean()),
            "initial_loss": float(out["losses"][0]),
        }
    ]


def _crossing(x: np.ndarray, y: np.ndarray) -> float:
    """First x where the piecewise-linear y(x) goes from > 0 to <= 0 (nan if it never does)."""
    for j in range(len(x) - 1):
        if y[j] > 0 >= y[j + 1]:
            return float(x[j] + (x[j + 1] - x[j]) * y[j] / (y[j] - y[j + 1]))
    return float("nan")


def _fit_crossing(g3: np.ndarray, k: np.ndarray, se: np.ndarray) -> float:
    """Zero of the weighted least-squares fit k = a − b·γ3² (the form ⟨k⟩ has in γ3)."""
    if len(g3) < 2:
        return float("nan")
    w = 1.0 / np.maximum(se, 1e-12)
    A = np.stack([np.ones_like(g3), -(g3**2)], axis=1) * w[:, None]
    (a, b), *_ = np.linalg.lstsq(A, k * w, rcond=None)
    if b <= 0:
        return float("inf") if a > 0 else float("nan")
    return math.sqrt(a / b) if a > 0 else 0.0


def _difficulty_tables(df: pd.DataFrame):
    draws = df[df.part == "draws"]
    per_g3 = (
        draws.groupby(["seed", "gamma3"])
        .agg(
            k_measured=("k_measured", "mean"),
            k_se=("k_measured", lambda s: s.std(ddof=1) / math.sqrt(len(s))),
            k_expected=("k_expected", "first"),
            difficulty=("difficulty", "mean"),
            mean_bound=("mean_bound", "first"),
            critical_gamma3=("critical_gamma3", "first"),
            agree=(
                "k_measured",
                lambda s: float(
                    np.mean(
                        (s > 0).to_numpy()
                        == (
                            draws.loc[s.index, "difficulty"] < draws.loc[s.index, "draw_bound"]
                        ).to_numpy()
                    )
                ),
            ),
        )
        .reset_index()
    )
    crossings = []
    for seed, g in per_g3.groupby("seed"):
        g = g.sort_values("gamma3")
        crossings.append(
            {
                "seed": seed,
                "predicted_critical_gamma3": float(g.critical_gamma3.iloc[0]),
                "measured_critical_gamma3": _fit_crossing(
                    g.gamma3.to_numpy(), g.k_measured.to_numpy(), g.k_se.to_numpy()
                ),
                "measured_crossing_interpolated": _crossing(
                    g.gamma3.to_numpy(), g.k_measured.to_numpy()
                ),
            }
        )
    steady = df[df.part == "steady"]
    return per_g3, pd.DataFrame(crossings), steady


def difficulty_plot(df: pd.DataFrame, config: DifficultyConfig) -> dict:
    from syngeo.app.plotting import subplots

    per_g3, _, steady = _difficulty_tables(df)
    draws = df[df.part == "draws"]
    fig, axes = subplots(1, 3, width=3.4, height=3.0)
    ax = axes[0]
    sc = ax.scatter(
        draws.difficulty - draws.draw_bound,
        draws.k_measured,
        c=draws.gamma3,
        s=4,
        cmap="viridis",
        alpha=0.6,
    )
    ax.set_xscale("symlog", linthresh=0.1)
    ax.axvline(0.0, color="k", ls="--", lw=0.8)
    ax.axhline(0.0, color="grey", lw=0.6)
    ax.set_xlabel("G − per-draw bound 2(−ẇ·∇F̂)/(T‖ẇ‖²)")
    ax.set_ylabel("measured k (one interval)")
    ax.set_title("k > 0 iff G below its bound (left)")
    fig.colorbar(sc, ax=ax, label="γ3")
    ax = axes[1]
    for j, (seed, g) in enumerate(per_g3.groupby("seed")):
        g = g.sort_values("gamma3")
        ax.errorbar(
            g.gamma3,
            g.k_measured,
            yerr=2 * g.k_se,
            fmt="o",
            color=f"C{j}",
            ms=3,
            label=f"measured, seed {seed}",
        )
        ax.plot(g.gamma3, g.k_expected, "-", color=f"C{j}", lw=1)
        ax.axvline(g.critical_gamma3.iloc[0], color=f"C{j}", ls=":", lw=1)
    ax.axhline(0.0, color="grey", lw=0.6)
    ax.set_xlabel("synaptic noise γ3")
    ax.set_ylabel("mean k")
    ax.set_title("⟨k⟩ (lines) and predicted γ3* (dotted)")
    ax.legend(fontsize=6)
    ax = axes[2]
    for j, (model, g) in enumerate(steady.groupby("model")):
        m = (
            g.groupby("gamma3")
            .agg(G=("steady_difficulty", "mean"), B=("bound", "first"))
            .reset_index()
        )
        ax.plot(m.gamma3, m.B, "-", color=f"C{j}", label=f"{model}: bound 2γ1/(T⟨‖ẇ‖²⟩)")
        ax.plot(
            g.gamma3,
            g.steady_difficulty,
            "o",
            color=f"C{j}",
            ms=4,
            label=f"{model}: steady-state Ḡ",
        )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("synaptic noise γ3")
    ax.set_ylabel("mean difficulty (theory convention)")
    ax.set_title("steady state sits on the bound")
    ax.legend(fontsize=6)
    return {"raman_difficulty": fig}


def difficulty_summary(df: pd.DataFrame, config: DifficultyConfig) -> dict:
    per_g3, crossings, steady = _difficulty_tables(df)
    ratio = steady.steady_difficulty / steady.bound
    out = {
        "critical_gamma3": crossings.to_dict(orient="records"),
        "sign_agreement_per_draw": float(per_g3.agree.mean()) if len(per_g3) else None,
        "steady_ratio_to_bound": {
            m: {"mean": float(r.mean()), "min": float(r.min()), "max": float(r.max())}
            for m, r in ratio.groupby(steady.model)
        },
    }
    return out


def difficulty_report(df: pd.DataFrame, config: DifficultyConfig) -> str:
    per_g3, crossings, steady = _difficulty_tables(df)
    g1, g2 = config.draw_gammas
    lines = [
        "# Raman et al.: local task difficulty and the learning condition",
        "",
        "Claim: the error falls (k > 0) only while the local task difficulty G = ŵᵀ∇²Fŵ/‖∇F‖ along the "
        "plasticity direction is below a bound set by γ1, γ2, γ3, T and N; on average, ⟨k⟩ > 0 iff "
        "Ḡ < 2γ1/(T(γ1² + γ2² + γ3²N/T)) (theory convention; the authors' scripts define G with an extra "
        "1/2, which halves both sides). Noisy learning settles where the mean difficulty meets the bound.",
        "",
        f"## (i) One interval at a fixed sigmoid network {list(config.mlp_sizes)}, γ1 = {g1:g}, γ2 = {g2:g}, "
        f"T = {config.draw_T:g}, {config.n_draws} draws per γ3",
        "",
        "| seed | predicted critical γ3 (⟨k⟩ = 0) | measured: zero of a − bγ3² fitted to mean k | measured: linear interpolation |",
        "| --- | --- | --- | --- |",
    ]
    for r in crossings.itertuples():
        lines.append(
            f"| {r.seed} | {_fmt(r.predicted_critical_gamma3)} | {_fmt(r.measured_critical_gamma3)} | "
            f"{_fmt(r.measured_crossing_interpolated)} |"
        )
    if len(per_g3):
        lines += [
            "",
            f"Per draw, the sign of the measured k agrees with 'G below the per-draw bound "
            f"2(−ẇ·∇F̂)/(T‖ẇ‖²)' in {100 * per_g3.agree.mean():.1f} % of the draws (that bound is exact for the "
            "second-order k; disagreements come from higher-order terms).",
        ]
    lines += [
        "",
        f"## (ii) Steady state of noisy learning (γ1 = {config.steady_gammas[0]:g}, γ2 = {config.steady_gammas[1]:g}, "
        f"T = {config.steady_T:g}, {config.n_cycles} cycles, second half averaged)",
        "",
        "Ḡ = mean(ẇᵀ∇²Fẇ) / (mean‖ẇ‖² · mean‖∇F‖) against the bound 2γ1/(T(γ1² + γ2² + γ3²N/T)). For a "
        "quadratic loss, stationarity (mean ΔF = 0) makes them equal exactly.",
        "",
        "| model | N | γ3 | steady-state Ḡ | bound | ratio | steady-state F |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in steady.sort_values(["model", "gamma3", "seed"]).itertuples():
        lines.append(
            f"| {r.model} | {r.n_synapses} | {r.gamma3:g} | {r.steady_difficulty:.4g} | {r.bound:.4g} | "
            f"{r.steady_difficulty / r.bound:.3f} | {r.steady_loss:.4g} |"
        )
    if len(steady):
        lines.append("")
        for model, g in steady.groupby("model"):
            ratio = g.steady_difficulty / g.bound
            lines.append(
                f"{model}: steady-state difficulty / bound = {ratio.mean():.3f} on average "
                f"(range {ratio.min():.3f}–{ratio.max():.3f}, {len(g)} runs)."
            )
    lines += ["", "![difficulty](raman_difficulty.png)", ""]
    return "\n".join(lines)


difficulty_Config = DifficultyConfig


# ==============================================================================================
# raman-size: learning rate and steady-state error against network size
# ==============================================================================================


@dataclass(frozen=True)
class SizeConfig:
    """Learning against network size (scripts' settings, sigmoid part scaled down for 2 cores).

    Linear: base [inputs, outputs] = ``linear_base`` expanded with ``c1 = c2 = c`` for ``c`` in
    ``factors`` (N = c²·io: [10, 5] → [70, 35] is N = 50 … 2450, as in the scripts), the same
    task at every size. Sigmoid: a [10, 5, 10] network pretrained on a [10, 5, 10] teacher, then
    grown to hidden sizes ``mlp_hidden`` by zero-initialised units.

    Attributes
    ----------
    linear_gammas : tuple of (γ1, γ2, γ3)
        The scripts' three settings plus one with γ1 > γ2, where the slides' N* is negative.
    n_cycles, linear_repeats : int
        Cycles of noisy learning per run (steady state from the second half) and seeds.
    n_draws : int
        Single-interval draws for the measured learning rate at the expanded initial weights.
    mlp_hidden, mlp_gammas, mlp_cycles, mlp_repeats, mlp_samples, pretrain_cycles
        The sigmoid part (scripts: h = 5…400, 1000 inputs, 1500 cycles, 12 repeats).
    """

    models: tuple[str, ...] = ("linear", "mlp")
    linear_base: tuple[int, int] = (10, 5)
    factors: tuple[int, ...] = (1, 2, 3, 4, 5, 6, 7)
    linear_gammas: tuple[tuple[float, float, float], ...] = (
        (0.07, 1.0, 0.03),
        (0.06, 1.0, 0.04),
        (0.05, 1.0, 0.05),
        (0.5, 0.3, 0.01),
    )
    T: float = 1.0
    n_cycles: int = 1000
    linear_repeats: int = 6
    n_samples: int = 1000
    init_std: float = 1.0
    n_draws: int = 100
    mlp_base: tuple[int, int, int] = (10, 5, 10)
    mlp_hidden: tuple[int, ...] = (5, 10, 20, 40, 80, 160, 320)
    mlp_gammas: tuple[tuple[float, float, float], ...] = (
        (0.04, 1.5, 0.03),
        (0.04, 1.5, 0.04),
        (0.04, 1.5, 0.05),
    )
    mlp_cycles: int = 300
    mlp_repeats: int = 3
    mlp_samples: int = 500
    mlp_draws: int = 40
    pretrain_cycles: int = 300
    pretrain_step: float = 0.1

    @classmethod
    def quick(cls) -> SizeConfig:
        return cls(
            factors=(1, 2, 4, 7),
            linear_gammas=((0.07, 1.0, 0.03), (0.05, 1.0, 0.05)),
            n_cycles=400,
            linear_repeats=2,
            n_draws=40,
            mlp_hidden=(5, 20, 80),
            mlp_gammas=((0.04, 1.5, 0.04),),
            mlp_cycles=100,
            mlp_repeats=1,
            mlp_samples=200,
            mlp_draws=20,
            pretrain_cycles=100,
        )


def size_cells(config: SizeConfig) -> list[dict]:
    cells = []
    if "linear" in config.models:
        cells += [
            {"model": "linear", "gammas": list(g), "size": int(c), "seed": int(s)}
            for g in config.linear_gammas
            for c in config.factors
            for s in range(config.linear_repeats)
        ]
    if "mlp" in config.models:
        cells += [
            {"model": "mlp", "gammas": list(g), "size": int(h), "seed": int(s)}
            for g in config.mlp_gammas
            for h in config.mlp_hidden
            for s in range(config.mlp_repeats)
        ]
    return cells


def _size_setup(config: SizeConfig, model: str, size: int, seed: int):
    """(problem, initial weights, base problem, base weights) for one size."""
    if model == "linear":
        n_in, n_out = config.linear_base
        task, W0 = _linear_problem(n_in, n_out, config.n_samples, config.init_std, seed)
        ex = expand_linear(W0, size, size, 50_000 + 97 * seed + size, task=task)
        return _LinearProblem(ex.task), ex.weights.reshape(-1), _LinearProblem(task), W0.reshape(-1)
    if model == "mlp":
        base = list(config.mlp_base)
        task, net, base_prob = _pretrained_mlp(
            base, base, config.mlp_samples, config.pretrain_cycles, config.pretrain_step, seed
        )
        big = expand_sigmoid(net, [size])
        prob = _MLPProblem(task, [w.shape for w in big.weights])
        return prob, _flat(big.weights), base_prob, _flat(net.weights)
    raise ValueError(f"unknown model {model!r}; use 'linear' or 'mlp'")


def _size_run_cell(config: SizeConfig, cell: dict) -> list[dict]:
    model, size, seed = cell["model"], int(cell["size"]), int(cell["seed"])
    rates = _rates(cell["gammas"], config.T)
    prob, w0, base_prob, base_w = _size_setup(config, model, size, seed)
    gen = torch.Generator().manual_seed(3_000 + 131 * seed + size)
    geo = prob.geometry(w0, gen)
    base_geo = base_prob.geometry(base_w, gen)
    n_draws = config.n_draws if model == "linear" else config.mlp_draws
    draws = _single_interval_draws(
        prob, w0, rates, 2 * (n_draws // 2), gen, with_prediction=False, antithetic=True
    )
    k_pairs = np.array([d["k_measured"] for d in draws]).reshape(-1, 2).mean(axis=1)
    n_cycles = config.n_cycles if model == "linear" else config.mlp_cycles
    sim = _simulate(prob, w0, rates, n_cycles, gen)
    half = n_cycles // 2
    return [
        {
            "model": model,
            "gamma1": rates.gamma1,
            "gamma2": rates.gamma2,
            "gamma3": rates.gamma3,
            "T": rates.T,
            "size": size,
            "seed": seed,
            "n_synapses": prob.n,
            "base_n_synapses": base_prob.n,
            "loss": geo.loss,
            "grad_norm": geo.grad_norm,
            "grad_curvature": geo.grad_curvature,
            "hessian_trace": geo.hessian_trace,
            "hessian_trace_se": geo.hessian_trace_se,
            "base_grad_norm": base_geo.grad_norm,
            "base_grad_curvature": base_geo.grad_curvature,
            "base_hessian_trace": base_geo.hessian_trace,
            "k_expected": expected_learning_rate(geo, rates).k,
            "k_initial": float(k_pairs.mean()),
            "k_initial_se": float(k_pairs.std(ddof=1) / math.sqrt(k_pairs.size)),
            "k_early": float(sim["ks"][: min(20, n_cycles)].mean()),
            "steady_loss": float(sim["losses"][half:].mean()),
            "final_loss": float(sim["losses"][-1]),
        }
    ]


def _peak_log_parabola(N: np.ndarray, y: np.ndarray, *, maximum: bool) -> float:
    """Location of the extremum of a parabola in log N through the best grid point and its neighbours."""
    order = np.argsort(N)
    N, y = N[order], y[order]
    j = int(np.argmax(y) if maximum else np.argmin(y))
    if j == 0 or j == len(N) - 1:
        return float(N[j])
    x = np.log(N[j - 1 : j + 2])
    a, b, _ = np.polyfit(x, y[j - 1 : j + 2], 2)
    if (a >= 0 and maximum) or (a <= 0 and not maximum):
        return float(N[j])
    return float(np.exp(np.clip(-b / (2 * a), x[0], x[-1])))


def _linear_steady_loss(geo_rows: pd.DataFrame, rates: PlasticityRates) -> np.ndarray:
    r"""Mean-field steady state: ⟨k⟩ = 0 with ‖∇F‖² ≈ 2gF (Σ ≈ isotropic), i.e.
    :math:`F_{ss} = [T(\gamma_1^2 g + \mathrm{Tr}H(\gamma_2^2/N + \gamma_3^2/T))/(2\gamma_1)]^2/(2g)`."""
    g = geo_rows.grad_curvature.to_numpy()
    q = rates.gamma1**2 * g + geo_rows.hessian_trace.to_numpy() * (
        rates.gamma2**2 / geo_rows.n_synapses.to_numpy() + rates.gamma3**2 / rates.T
    )
    if rates.gamma1 == 0:
        return np.full(len(g), np.inf)
    return (rates.T * q / (2 * rates.gamma1)) ** 2 / (2 * g)


def _slides_scaling_optimum(rates: PlasticityRates, g: pd.DataFrame) -> float:
    r"""Maximiser of ⟨k⟩(N) if g grew like c2 = √(N/N0) (the slides' scaling assumption).

    Then the whole bracket scales with c2: :math:`c_2[\gamma_1^2 g + \mathrm{Tr}H_0(\gamma_2^2/N +
    \gamma_3^2/T)]`, minimal at :math:`N = T\gamma_2^2/(\gamma_3^2 + T\gamma_1^2 g/\mathrm{Tr}H_0)`.
    """
    g0 = float(g.base_grad_curvature.iloc[0])
    tr0 = float(g.base_hessian_trace.iloc[0])
    return rates.T * rates.gamma2**2 / (rates.gamma3**2 + rates.T * rates.gamma1**2 * g0 / tr0)


def _size_tables(df: pd.DataFrame, *, with_curves: bool = False):
    """Per (model, γ, size) means, per (model, γ) optimal sizes (and the predicted k(N) curves)."""
    keys = ["model", "gamma1", "gamma2", "gamma3", "T", "size"]
    # per-seed changes relative to the smallest size: the N-independent parts (which differ
    # between seeds through F and ‖∇F‖) cancel, leaving the size effect
    df = df.copy()
    run_keys = [*keys[:-1], "seed"]
    first = df.sort_values("n_synapses").groupby(run_keys).first()
    base_k = df.set_index(run_keys).index.map(first.k_expected)
    base_F = df.set_index(run_keys).index.map(first.steady_loss)
    df["dk_measured"] = df.k_initial.to_numpy() - np.asarray(base_k, dtype=float)
    df["dk_expected"] = df.k_expected.to_numpy() - np.asarray(base_k, dtype=float)
    df["steady_ratio"] = df.steady_loss.to_numpy() / np.asarray(base_F, dtype=float)
    se = lambda s: s.std(ddof=1) / math.sqrt(len(s)) if len(s) > 1 else float("nan")  # noqa: E731
    agg = (
        df.groupby(keys)
        .agg(
            dk_measured=("dk_measured", "mean"),
            dk_measured_se=("dk_measured", se),
            dk_expected=("dk_expected", "mean"),
            steady_ratio=("steady_ratio", "mean"),
            steady_ratio_se=("steady_ratio", se),
            n_synapses=("n_synapses", "first"),
            base_n_synapses=("base_n_synapses", "first"),
            k_expected=("k_expected", "mean"),
            k_initial=("k_initial", "mean"),
            k_initial_se=(
                "k_initial",
                lambda s: s.std(ddof=1) / math.sqrt(len(s)) if len(s) > 1 else float("nan"),
            ),
            steady_loss=("steady_loss", "mean"),
            steady_loss_se=(
                "steady_loss",
                lambda s: s.std(ddof=1) / math.sqrt(len(s)) if len(s) > 1 else float("nan"),
            ),
            loss=("loss", "mean"),
            grad_norm=("grad_norm", "mean"),
            grad_curvature=("grad_curvature", "mean"),
            hessian_trace=("hessian_trace", "mean"),
            base_grad_norm=("base_grad_norm", "mean"),
            base_grad_curvature=("base_grad_curvature", "mean"),
            base_hessian_trace=("base_hessian_trace", "mean"),
            repeats=("seed", "nunique"),
        )
        .reset_index()
    )
    opt_rows, curves = [], {}
    for key, g in agg.groupby(keys[:-1]):
        g = g.sort_values("n_synapses")
        rates = PlasticityRates(key[1], key[2], key[3], key[4])
        N = g.n_synapses.to_numpy(dtype=float)
        row = dict(zip(keys[:-1], key, strict=True))
        if key[0] == "linear":
            beta = 0.5
            base = LossGeometry(
                float(g.loss.iloc[0]),
                float(g.base_grad_norm.iloc[0]),
                float(g.base_grad_curvature.iloc[0]),
                float(g.base_hessian_trace.iloc[0]),
                0.0,
                int(g.base_n_synapses.iloc[0]),
            )
            curve = lambda n, base=base, rates=rates: size_learning_rate(base, rates, n, beta=0.5)  # noqa: E731
        else:
            # predicted <k> at each grown size from its measured geometry, interpolated in log N
            # (monotone cubic); β from a power-law fit of the trace, for the closed form
            logN = np.log(N)
            beta = float(np.polyfit(logN, np.log(np.abs(g.hessian_trace.to_numpy())), 1)[0])
            interp = scipy.interpolate.PchipInterpolator(logN, g.k_expected.to_numpy())

            def curve(n, interp=interp, lo=logN[0], hi=logN[-1]):
                return interp(np.clip(np.log(n), lo, hi))

        lo, hi = (1.0, 1e7) if key[0] == "linear" else (float(N.min()), float(N.max()))
        num = optimal_size_numeric(curve, lo, hi)
        row.update(
            beta=beta,
            n_star_closed_form=optimal_size(rates, beta=beta) if 0 < beta <= 1 else float("nan"),
            n_star_numeric=num.n_star,
            n_star_numeric_at_boundary=num.at_boundary,
            n_star_slides=slides_optimal_size(rates),
            # maximiser of <k> if the gradient curvature grew like c2 (the slides' assumption)
            n_star_slides_scaling=_slides_scaling_optimum(rates, g)
            if key[0] == "linear"
            else float("nan"),
            n_star_measured_k=_peak_log_parabola(N, g.dk_measured.to_numpy(), maximum=True),
            n_star_measured_steady=_peak_log_parabola(N, g.steady_ratio.to_numpy(), maximum=False),
            n_min=float(N.min()),
            n_max=float(N.max()),
        )
        opt_rows.append(row)
        curves[key[:4]] = curve
    if with_curves:
        return agg, pd.DataFrame(opt_rows), curves
    return agg, pd.DataFrame(opt_rows)


def size_plot(df: pd.DataFrame, config: SizeConfig) -> dict:
    from matplotlib.ticker import LogLocator, NullFormatter

    from syngeo.app.plotting import subplots

    agg, opt, curves = _size_tables(df, with_curves=True)
    models = [m for m in ("linear", "mlp") if m in set(agg.model)]
    fig, axes = subplots(len(models), 2, width=3.6, height=3.0, squeeze=False)
    for r, model in enumerate(models):
        sub = agg[agg.model == model]
        for j, (key, g) in enumerate(sub.groupby(["gamma1", "gamma2", "gamma3", "T"])):
            g = g.sort_values("n_synapses")
            o = opt[
                (opt.model == model)
                & (opt.gamma1 == key[0])
                & (opt.gamma2 == key[1])
                & (opt.gamma3 == key[2])
            ].iloc[0]
            color = f"C{j}"
            label = f"γ=({key[0]:g}, {key[1]:g}, {key[2]:g})"
            N = g.n_synapses.to_numpy(dtype=float)
            fine = np.geomspace(N.min(), N.max(), 200)
            show_star = np.isfinite(o.n_star_numeric) and o.n_min <= o.n_star_numeric <= o.n_max
            curve = curves[(model, *key[:3])]
            ax = axes[r][0]
            ax.errorbar(
                N, g.dk_measured, yerr=2 * g.dk_measured_se, fmt="o", ms=3, color=color, label=label
            )
            ax.plot(fine, curve(fine) - curve(N.min()), "-", color=color, lw=1)
            ax.plot(N, g.dk_expected, "x", color=color, ms=5)
            if show_star:
                ax.axvline(o.n_star_numeric, color=color, ls=":", lw=1)
            ax = axes[r][1]
            ax.errorbar(
                N,
                g.steady_ratio,
                yerr=2 * g.steady_ratio_se,
                fmt="o",
                ms=3,
                color=color,
                label=label,
            )
            if model == "linear":
                base = g.iloc[0]
                rates = PlasticityRates(key[0], key[1], key[2], key[3])
                geo = pd.DataFrame(
                    {
                        "grad_curvature": base.base_grad_curvature,
                        "hessian_trace": base.base_hessian_trace
                        * np.sqrt(fine / base.base_n_synapses),
                        "n_synapses": fine,
                    }
                )
                pred = _linear_steady_loss(geo, rates)
                ax.plot(fine, pred / pred[0], "-", color=color, lw=1)
            if show_star:
                ax.axvline(o.n_star_numeric, color=color, ls=":", lw=1)
        for c in (0, 1):
            ax = axes[r][c]
            ax.set_xscale("log")
            ax.xaxis.set_minor_locator(LogLocator(subs="all"))
            ax.xaxis.set_minor_formatter(NullFormatter())
            ax.set_xlabel("network size N (synapses)")
        axes[r][0].set_ylabel("k(N) − ⟨k⟩(smallest N)")
        axes[r][0].set_title(f"{model}: learning rate at the grown weights")
        axes[r][0].legend(fontsize=6)
        axes[r][1].set_yscale("log")
        axes[r][1].set_ylabel("F_ss(N) / F_ss(smallest N)")
        axes[r][1].set_title(f"{model}: steady-state error")
    fig.suptitle(
        "Per run, relative to its smallest network. Dots: simulation (±2 SE over runs); crosses: ⟨k⟩ "
        "from the measured geometry at each size;\nlines: predicted curve (sigmoid: crosses "
        "interpolated); dotted: predicted N*",
        fontsize=7,
    )
    return {"raman_size": fig}


def size_summary(df: pd.DataFrame, config: SizeConfig) -> dict:
    _agg, opt = _size_tables(df)
    return {"optimal_sizes": opt.to_dict(orient="records")}


def size_report(df: pd.DataFrame, config: SizeConfig) -> str:
    agg, opt = _size_tables(df)
    lines = [
        "# Raman et al.: learning rate against network size, and the optimal size N*",
        "",
        "Claims: (1) larger networks learn faster up to an optimal size N*; (2) noisier synapses give a "
        "smaller N*. Derivation (docs/raman.md): growing a linear network by semi-orthogonal embeddings "
        "with c1 = c2 keeps F, ‖∇F‖ and the curvature along the gradient, multiplies Tr∇²F by c2 = √(N/N0), so "
        "⟨k⟩(N) = γ1‖∇F‖/F − (T/2F)[γ1²g + Tr∇²F₀√(N/N0)(γ2²/N + γ3²/T)], maximal at N* = Tγ2²/γ3² "
        "(more generally ((1−β)/β)·Tγ2²/γ3² when Tr∇²F ∝ N^β). The slides' N* = T(γ2² − γ1²)/γ3² goes "
        "negative when γ1 > γ2; the last linear setting tests that case. The slides also assume that the "
        "curvature along the gradient grows like c2; in this construction it is exactly unchanged (tested), and "
        "the column 'N* if g grew like c2' shows what that assumption would predict, Tγ2²/(γ3² + Tγ1²g/Tr∇²F₀).",
        "",
        f"Settings: T = {config.T:g}; linear {list(config.linear_base)} expanded by c = {list(config.factors)}, "
        f"{config.n_cycles} cycles, {config.linear_repeats} repeats, {config.n_samples} inputs; sigmoid "
        f"{list(config.mlp_base)} (pretrained {config.pretrain_cycles} steps) grown to h = {list(config.mlp_hidden)}, "
        f"{config.mlp_cycles} cycles, {config.mlp_repeats} repeats, {config.mlp_samples} inputs (the scripts use "
        "1500 cycles, 12 repeats and 1000 inputs for both, and 500–1000 pretraining cycles: scaled down to fit "
        "2 CPU cores). 'Measured k' is the mean "
        "learning rate over single feedback intervals from the expanded weights; 'steady state' the mean error "
        "over the second half of the run.",
        "",
        "| model | γ1 | γ2 | γ3 | N* closed form | N* numeric (⟨k⟩ curve) | N* measured (k) | N* measured (steady F) | slides' N* | N* if g grew like c2 | grid |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in opt.itertuples():
        cf = _fmt(r.n_star_closed_form, 4)
        if r.model == "mlp":
            cf += f" (β = {r.beta:.2f})"
        lines.append(
            f"| {r.model} | {r.gamma1:g} | {r.gamma2:g} | {r.gamma3:g} | {cf} | {_fmt(r.n_star_numeric, 4)} | "
            f"{_fmt(r.n_star_measured_k, 4)} | {_fmt(r.n_star_measured_steady, 4)} | {_fmt(r.n_star_slides, 4)} | "
            f"{_fmt(r.n_star_slides_scaling, 4)} | {r.n_min:g}–{r.n_max:g} |"
        )
    lines += [
        "",
        "Measured optima are the vertex of a parabola in log N through the best grid point and its two "
        "neighbours (a grid end when the extremum lies there).",
        "",
        "| model | γ | N | ⟨k⟩ predicted | k measured ± SE | steady-state F ± SE |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for r in agg.sort_values(["model", "gamma3", "gamma1", "n_synapses"]).itertuples():
        lines.append(
            f"| {r.model} | ({r.gamma1:g}, {r.gamma2:g}, {r.gamma3:g}) | {r.n_synapses} | {r.k_expected:.4g} | "
            f"{r.k_initial:.4g} ± {_fmt(r.k_initial_se, 2)} | {r.steady_loss:.4g} ± {_fmt(r.steady_loss_se, 2)} |"
        )
    lines += ["", "![learning rate and steady-state error vs size](raman_size.png)", ""]
    return "\n".join(lines)


size_Config = SizeConfig


def k_run_cell(config, cell: dict) -> list[dict]:
    """One cell of the experiment (see the module docstring); tidy rows."""
    with _one_thread():
        return _k_run_cell(config, cell)


def difficulty_run_cell(config, cell: dict) -> list[dict]:
    """One cell of the experiment (see the module docstring); tidy rows."""
    with _one_thread():
        return _difficulty_run_cell(config, cell)


def size_run_cell(config, cell: dict) -> list[dict]:
    """One cell of the experiment (see the module docstring); tidy rows."""
    with _one_thread():
        return _size_run_cell(config, cell)


# ==============================================================================================
# raman-geometry: the three-component plasticity under NE and Euclidean geometry
# ==============================================================================================


@dataclass(frozen=True)
class GeometryConfig:
    """Noisy three-component plasticity with the noise in the dual space of NE or the 2-norm.

    A linear student-teacher task (``n_outputs × n_inputs`` weights). The teacher's magnitudes are
    log-normal, ``|W*| = exp(N(0, teacher_log_std²))``, with random signs; the student starts at
    ``sign(W*)`` (all magnitudes 1, where the NE metric 1/|w| equals the Euclidean one, so the two
    geometries differ only through how they move weights away from 1). Each cycle:
    ``MirrorDescent`` with ``lr = γ1·T`` on the normalised gradient and
    ``SynapticNoise(γ2, γ3, T)`` added in the dual space. Cells with ``γ1 = 0`` isolate the noise.

    Attributes
    ----------
    potentials : tuple[str, ...]
    gammas : tuple of (γ1, γ2, γ3)
        With task (γ1 > 0) and noise only (γ1 = 0).
    n_cycles : int
    seeds : tuple[int, ...]
    """

    n_inputs: int = 50
    n_outputs: int = 20
    n_samples: int = 500
    teacher_log_std: float = 0.5
    potentials: tuple[str, ...] = ("ne", "2-norm")
    gammas: tuple[tuple[float, float, float], ...] = ((0.2, 0.2, 0.05), (0.0, 0.2, 0.05))
    T: float = 1.0
    n_cycles: int = 400
    seeds: tuple[int, ...] = (0, 1, 2)

    @classmethod
    def quick(cls) -> GeometryConfig:
        return cls(n_cycles=200, seeds=(0,))


def geometry_cells(config: GeometryConfig) -> list[dict]:
    return [
        {"potential": p, "gammas": list(g), "seed": int(s)}
        for p in config.potentials
        for g in config.gammas
        for s in config.seeds
    ]


def _geometry_task(config: GeometryConfig, seed: int):
    g = torch.Generator().manual_seed(60_000 + seed)
    i, o = config.n_inputs, config.n_outputs
    signs = torch.where(torch.rand(o, i, generator=g) < 0.5, -1.0, 1.0).to(D)
    mags = torch.exp(config.teacher_log_std * torch.randn(o, i, generator=g, dtype=D))
    X = torch.randn(i, config.n_samples, generator=g, dtype=D) / math.sqrt(i)
    task = LinearTask(signs * mags, X @ X.T / config.n_samples)
    return task, signs.clone()


def _geometry_run_cell(config: GeometryConfig, cell: dict) -> list[dict]:
    from syngeo.optim import MirrorDescent
    from syngeo.plasticity import SynapticNoise
    from syngeo.potentials import potential as parse_potential

    seed = int(cell["seed"])
    rates = _rates(cell["gammas"], config.T)
    phi = parse_potential(cell["potential"])
    task, w0 = _geometry_task(config, seed)
    W = w0.clone().requires_grad_(True)
    noise = SynapticNoise(
        rates.gamma2, rates.gamma3, rates.T, generator=torch.Generator().manual_seed(70_000 + seed)
    )
    opt = MirrorDescent(
        [W], lr=rates.gamma1 * rates.T, potential=phi, plasticity_noise=noise, noise_space="dual"
    )
    losses = [float(task.loss(W.detach()))]
    for _ in range(config.n_cycles):
        g = task.grad(W.detach())
        gn = g.norm()
        W.grad = g / gn if gn > 0 else torch.zeros_like(g)
        opt.step()
        losses.append(float(task.loss(W.detach())))
    w = W.detach().reshape(-1)
    s0 = w0.reshape(-1)
    dual_change = (phi.grad(w) - phi.grad(s0)).numpy()
    aligned = (s0 * w).numpy()  # positive unless the weight changed sign
    n = w.numel()
    base = {
        "potential": phi.name,
        "gamma1": rates.gamma1,
        "gamma2": rates.gamma2,
        "gamma3": rates.gamma3,
        "T": rates.T,
        "seed": seed,
        "n_synapses": n,
    }
    ks = [learning_rate(a, b, rates.T) for a, b in itertools.pairwise(losses)]
    pos = aligned[aligned > 0]
    summary = {
        **base,
        "kind": "summary",
        "dual_change_var": float(dual_change.var()),
        "predicted_dual_change_var": config.n_cycles
        * rates.T**2
        * (rates.gamma2**2 / n + rates.gamma3**2 / rates.T),
        "skew_aligned_weight": float(_skew(aligned)),
        "skew_log_magnitude": float(_skew(np.log(np.abs(aligned[aligned != 0])))),
        "sign_flip_fraction": float(np.mean(aligned <= 0)),
        "log_magnitude_std": float(np.log(pos).std()) if pos.size else float("nan"),
        "initial_loss": losses[0],
        "final_loss": losses[-1],
        "mean_k_first_50": float(np.mean(ks[:50])),
        "loss_ratio_final": losses[-1] / losses[0],
    }
    rows = [summary]
    rows += [{**base, "kind": "curve", "cycle": t, "loss": L} for t, L in enumerate(losses)]
    teacher = (s0 * task.teacher.reshape(-1)).numpy()
    rows += [
        {
            **base,
            "kind": "weight",
            "index": j,
            "aligned_weight": float(a),
            "aligned_teacher": float(t),
        }
        for j, (a, t) in enumerate(zip(aligned, teacher, strict=True))
    ]
    return rows


def _skew(x: np.ndarray) -> float:
    x = np.asarray(x, dtype=float)
    d = x - x.mean()
    sd = d.std()
    return float(np.mean(d**3) / sd**3) if sd > 0 else 0.0


def geometry_run_cell(config, cell: dict) -> list[dict]:
    """One cell of the experiment (see the module docstring); tidy rows."""
    with _one_thread():
        return _geometry_run_cell(config, cell)


def _predicted_density(potential: str, var: float, x: np.ndarray) -> np.ndarray:
    """Density of the sign-aligned weight after pure dual diffusion from 1 with variance ``var``.

    NE: log w ~ N(0, var) (log-normal); Euclidean: w ~ N(1, var).
    """
    sd = math.sqrt(var)
    if potential == "NE":
        xp = np.where(x > 0, x, np.nan)
        dens = np.exp(-(np.log(xp) ** 2) / (2 * var)) / (xp * sd * math.sqrt(2 * math.pi))
        return np.nan_to_num(dens)
    return np.exp(-((x - 1.0) ** 2) / (2 * var)) / (sd * math.sqrt(2 * math.pi))


def _predicted_log_density(potential: str, var: float, y: np.ndarray) -> np.ndarray:
    """Density of log|w| for the sign-aligned weight of :func:`_predicted_density`."""
    if potential == "NE":
        return np.exp(-(y**2) / (2 * var)) / math.sqrt(2 * math.pi * var)
    m = np.exp(y)
    return (_predicted_density(potential, var, m) + _predicted_density(potential, var, -m)) * m


def geometry_plot(df: pd.DataFrame, config: GeometryConfig) -> dict:
    from syngeo.app.plotting import color_for, subplots

    fig, axes = subplots(1, 3, width=3.4, height=3.0)
    weights = df[df.kind == "weight"]
    summ = df[df.kind == "summary"]
    noise_only = weights[weights.gamma1 == 0]
    ax = axes[0]
    bins = np.linspace(-3, 8, 90)
    for j, (pot, g) in enumerate(noise_only.groupby("potential")):
        c = color_for(pot, j)
        ax.hist(
            g.aligned_weight,
            bins=bins,
            density=True,
            alpha=0.45,
            color=c,
            label=f"{pot} (simulated)",
        )
        var = float(
            summ[(summ.potential == pot) & (summ.gamma1 == 0)].predicted_dual_change_var.iloc[0]
        )
        x = np.linspace(-3, 8, 600)
        ax.plot(x, _predicted_density(pot, var, x), color=c, lw=1.2, label=f"{pot}: predicted")
    ax.set_xlabel("weight × sign(w0)  (start: 1)")
    ax.set_ylabel("density")
    ax.set_title("noise only (γ1 = 0): weights")
    ax.legend(fontsize=6)
    ax = axes[1]
    bins = np.linspace(-4, 3, 70)
    y = np.linspace(-4, 3, 600)
    for j, (pot, g) in enumerate(noise_only.groupby("potential")):
        c = color_for(pot, j)
        mags = np.abs(g.aligned_weight.to_numpy())
        ax.hist(
            np.log(mags[mags > 0]),
            bins=bins,
            density=True,
            alpha=0.45,
            color=c,
            label=f"{pot} (simulated)",
        )
        var = float(
            summ[(summ.potential == pot) & (summ.gamma1 == 0)].predicted_dual_change_var.iloc[0]
        )
        ax.plot(y, _predicted_log_density(pot, var, y), color=c, lw=1.2, label=f"{pot}: predicted")
    ax.set_xlabel("log |w|")
    ax.set_ylabel("density")
    ax.set_title("noise only: log-magnitudes")
    ax.legend(fontsize=6)
    ax = axes[2]
    curves = df[(df.kind == "curve") & (df.gamma1 > 0)]
    for j, (pot, g) in enumerate(curves.groupby("potential")):
        m = g.groupby("cycle").loss.mean()
        ax.plot(m.index, m.values, color=color_for(pot, j), label=pot)
    ax.set_yscale("log")
    ax.set_xlabel("cycle")
    ax.set_ylabel("error F (mean over seeds)")
    ax.set_title("with the task (γ1 > 0): learning")
    ax.legend(fontsize=6)
    return {"raman_geometry": fig}


def _geometry_table(df: pd.DataFrame) -> pd.DataFrame:
    summ = df[df.kind == "summary"]
    cols = [
        "dual_change_var",
        "predicted_dual_change_var",
        "skew_aligned_weight",
        "skew_log_magnitude",
        "sign_flip_fraction",
        "log_magnitude_std",
        "initial_loss",
        "final_loss",
        "mean_k_first_50",
    ]
    return summ.groupby(["potential", "gamma1", "gamma2", "gamma3"])[cols].mean().reset_index()


def geometry_summary(df: pd.DataFrame, config: GeometryConfig) -> dict:
    return {"by_potential": _geometry_table(df).to_dict(orient="records")}


def geometry_report(df: pd.DataFrame, config: GeometryConfig) -> str:
    tab = _geometry_table(df)
    lines = [
        "# Three-component plasticity under negative entropy and Euclidean geometry",
        "",
        f"Setting: linear student-teacher task, {config.n_outputs} × {config.n_inputs} weights, teacher "
        f"magnitudes log-normal (σ = {config.teacher_log_std:g}) with random signs, student starting at "
        f"sign(W*) (|w| = 1); {config.n_cycles} cycles of MirrorDescent (lr = γ1T on the normalised gradient) "
        "with SynapticNoise(γ2, γ3, T) added in the dual space; "
        f"{len(config.seeds)} seed(s); T = {config.T:g}.",
        "",
        "Prediction: noise added in the dual space diffuses the dual weights, ∇φ(w) = ∇φ(w0) + ξ with "
        "per-synapse variance M·T²(γ2²/N + γ3²/T) after M cycles of pure noise. Under NE the dual weight is "
        "sign(w)(log|w| + 1), so log|w| diffuses and |w| becomes log-normal (right-skewed, never changing "
        "sign); under the Euclidean geometry w itself diffuses: a symmetric Gaussian spread that carries "
        "weights through zero.",
        "",
        "| geometry | γ | Var(dual change) measured | predicted (noise only) | skew of w·sign(w0) | skew of log abs(w) | sign flips | final F / initial F | mean k, first 50 cycles |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in tab.itertuples():
        lines.append(
            f"| {r.potential} | ({r.gamma1:g}, {r.gamma2:g}, {r.gamma3:g}) | {r.dual_change_var:.4g} | "
            f"{(f'{r.predicted_dual_change_var:.4g}' if r.gamma1 == 0 else 'n/a (task drift)')} | "
            f"{r.skew_aligned_weight:.3g} | {r.skew_log_magnitude:.3g} | "
            f"{100 * r.sign_flip_fraction:.1f} % | {r.final_loss / r.initial_loss:.3g} | {r.mean_k_first_50:.4g} |"
        )
    lines += ["", "![weights and learning curves](raman_geometry.png)", ""]
    lines += _geometry_paragraph(tab)
    return "\n".join(lines)


def _geometry_paragraph(tab: pd.DataFrame) -> list[str]:
    def pick(pot, noise_only):
        sel = tab[(tab.potential == pot) & ((tab.gamma1 == 0) == noise_only)]
        return sel.iloc[0] if len(sel) else None

    ne0, eu0 = pick("NE", True), pick("2-norm", True)
    ne1, eu1 = pick("NE", False), pick("2-norm", False)
    text = []
    if ne0 is not None and eu0 is not None:
        s = math.sqrt(ne0.predicted_dual_change_var)
        lognormal_skew = (math.exp(s * s) + 2) * math.sqrt(math.exp(s * s) - 1)
        text.append(
            f"With noise only, both geometries diffuse their dual weights by the predicted amount "
            f"(variance {ne0.dual_change_var:.3g} under NE and {eu0.dual_change_var:.3g} under the 2-norm, "
            f"predicted {ne0.predicted_dual_change_var:.3g}). The same dual noise gives very different "
            f"weights: under NE the sign-aligned weights are right-skewed (skewness {ne0.skew_aligned_weight:.2f}; "
            f"a log-normal with this σ has {lognormal_skew:.2f}) while log|w| is symmetric (skewness "
            f"{ne0.skew_log_magnitude:.2f}) and no weight changes sign; under the 2-norm the weights spread "
            f"symmetrically (skewness {eu0.skew_aligned_weight:.2f}) and {100 * eu0.sign_flip_fraction:.1f} % "
            "cross zero."
        )
    if ne1 is not None and eu1 is not None:
        text.append(
            f"With the task (γ1 = {ne1.gamma1:g}), the error falls to {ne1.final_loss / ne1.initial_loss:.3g} "
            f"of its initial value under NE and to {eu1.final_loss / eu1.initial_loss:.3g} under the 2-norm "
            f"(mean k over the first 50 cycles {ne1.mean_k_first_50:.4g} vs {eu1.mean_k_first_50:.4g}). "
            "The two metrics coincide at |w| = 1, where every weight starts, so the first steps are the same; "
            "as the weights spread, NE's steps in weight space scale with |w| (its inverse metric is |w|): "
            "large weights move much and small ones little, which suits a teacher with log-normal magnitudes. "
            "Its multiplicative noise keeps the magnitudes log-normal and every sign fixed, whereas the additive "
            "noise of the Euclidean geometry moves all weights by the same amount and lets some change sign."
        )
        if ne1.final_loss > eu1.final_loss and ne1.mean_k_first_50 > eu1.mean_k_first_50:
            text.append(
                "NE learns faster at first but settles at a higher error: in weight space its noise also "
                "scales with |w|, so the large weights, which carry most of the error, fluctuate most."
            )
    return ["## Reading", "", " ".join(text), ""] if text else []


geometry_Config = GeometryConfig
