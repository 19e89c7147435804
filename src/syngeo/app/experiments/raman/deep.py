r"""``raman-deep``: a deep sigmoid network grown layer by layer under noisy plasticity (PNAS Fig. 2).

Raman, Rotondo & O'Leary (2019), Fig. 2: a student MLP with layer widths
[10, 5, 5, 5, 5, 5, 10] learns a teacher of the same shape *online* (fresh Gaussian inputs every
feedback interval) under three-component plasticity; copies grown to ``w`` units in every hidden
layer (zero-initialised units, :func:`syngeo.expansion.expand_sigmoid`, so the function is
unchanged) learn the same teacher. Without synaptic noise (γ3 = 0) the paper finds that larger
networks reach a lower steady-state error; with γ3 > 0 there is a finite optimal size, which the
paper predicts with the cubic of :func:`syngeo.bounds.nonlinear_optimal_size`. Learning rate
``k`` at the grown weights (measured over single intervals and predicted from the measured
geometry) and steady-state error against the number of synapses; the tables and the optimal
sizes are those of ``raman-size`` (:func:`.size.size_tables`).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from syngeo.app.experiments.base import Experiment
from syngeo.app.experiments.raman.common import (
    LEGEND_SIZE,
    D,
    flat_weights,
    gamma_colors,
    gamma_label,
    geometry_at,
    least_bad_note,
    pretrained_mlp,
    protocol_from,
    rates_from,
    single_interval_draws,
    size_point_row,
)
from syngeo.app.experiments.raman.size import beta_text, nonlinear_nstar_section, size_tables
from syngeo.app.formatting import fmt
from syngeo.bounds import FlatLoss, learning_rate
from syngeo.expansion import SigmoidMLP, SigmoidTask, expand_sigmoid, init_sigmoid_mlp
from syngeo.plasticity import PlasticityRates, ThreeComponentPlasticity


@dataclass(frozen=True)
class DeepConfig:
    """The deep-network experiment (paper: 12 repeats, 5000 cycles, 1000 inputs per cycle).

    Attributes
    ----------
    base : tuple of int
        Layer widths of teacher and base student.
    widths : tuple of int
        Hidden-layer widths of the grown students (every hidden layer alike; the paper's grid is
        5, 12, 17, 22, 27, 32, 37, 45; 7 and 9 resolve the predicted optimum near 400 synapses).
    gammas : tuple of (γ1, γ2, γ3)
        The paper's two settings: no synaptic noise, and γ3 = 0.05.
    n_cycles, repeats : int
        Cycles of online noisy learning per run, and seeds (one teacher per seed).
    batch : int
        Fresh inputs per cycle (online learning).
    eval_samples : int
        Fixed inputs on which the error, the learning rate and the geometry are measured.
    n_draws : int
        Single-interval draws (antithetic pairs) for the measured k at the grown weights.
    pretrain_cycles, pretrain_step
        Noiseless normalised-gradient pretraining of the base student (syngeo protocol).
    protocol : str
        ``"syngeo"`` or ``"reference"`` (:class:`~.common.Protocol`: warm-up on a fake teacher
        under the same plasticity instead of pretraining, 10 % persistence, last 50 cycles).
    """

    base: tuple[int, ...] = (10, 5, 5, 5, 5, 5, 10)
    widths: tuple[int, ...] = (5, 7, 9, 12, 22, 45)
    gammas: tuple[tuple[float, float, float], ...] = ((0.007, 1.0, 0.0), (0.007, 1.0, 0.05))
    T: float = 1.0
    n_cycles: int = 1000
    repeats: int = 3
    batch: int = 200
    eval_samples: int = 500
    n_draws: int = 16
    pretrain_cycles: int = 400
    pretrain_step: float = 0.1
    protocol: str = "syngeo"

    @classmethod
    def quick(cls) -> DeepConfig:
        return cls(
            widths=(5, 9, 22),
            n_cycles=200,
            repeats=2,
            batch=100,
            eval_samples=200,
            n_draws=6,
            pretrain_cycles=100,
        )


def cells(config: DeepConfig) -> list[dict]:
    return [
        {"gammas": list(g), "width": int(w), "seed": int(s)}
        for g in config.gammas
        for w in config.widths
        for s in range(config.repeats)
    ]


def online_run(
    teacher: SigmoidMLP,
    eval_task: SigmoidTask,
    weights: list[torch.Tensor],
    rates: PlasticityRates,
    n_cycles: int,
    batch: int,
    generator: torch.Generator,
    *,
    persistence: float = 0.0,
) -> dict:
    """Online noisy learning: each cycle a fresh batch from ``teacher`` gives the gradient.

    Returns the error on the fixed ``eval_task`` before every cycle and after the last
    (``losses``, length ``n_cycles + 1``) and the final weights (flat, ``w``).
    """
    shapes = [w.shape for w in weights]
    sizes = [w.numel() for w in weights]
    w = flat_weights(weights).clone()
    plast = ThreeComponentPlasticity(rates, generator=generator, persistence=persistence)

    def unflatten(v):
        return [c.reshape(s) for c, s in zip(torch.split(v, sizes), shapes, strict=True)]

    losses = np.empty(n_cycles + 1)
    for t in range(n_cycles + 1):
        with torch.no_grad():
            losses[t] = float(eval_task.loss(unflatten(w)))
        if t == n_cycles:
            break
        X = torch.randn(batch, teacher.sizes[0], generator=generator, dtype=D)
        with torch.no_grad():
            Y = teacher(X)
        x = w.detach().requires_grad_(True)
        F = SigmoidTask(X, Y).loss(unflatten(x))
        (g,) = torch.autograd.grad(F, x)
        w = w + plast.step(g).delta
    return {"losses": losses, "w": w}


def _student(config: DeepConfig, rates: PlasticityRates, seed: int):
    """(teacher, fixed evaluation task, base student) for one seed and protocol."""
    protocol = protocol_from(config.protocol)
    base = list(config.base)
    if not protocol.warmup_cycles:
        task, net, _ = pretrained_mlp(
            base, base, config.eval_samples, config.pretrain_cycles, config.pretrain_step, seed
        )
        teacher = init_sigmoid_mlp(base, rng=20_000 + seed)  # the teacher pretrained_mlp used
        return teacher, task, net
    teacher = init_sigmoid_mlp(base, rng=20_000 + seed)
    X = torch.randn(
        config.eval_samples,
        base[0],
        generator=torch.Generator().manual_seed(30_000 + seed),
        dtype=D,
    )
    with torch.no_grad():
        task = SigmoidTask(X, teacher(X))
    fake = init_sigmoid_mlp(base, rng=90_000 + seed)
    student = init_sigmoid_mlp(base, rng=40_000 + seed)
    out = online_run(
        fake,
        task,
        list(student.weights),
        rates,
        protocol.warmup_cycles,
        config.batch,
        torch.Generator().manual_seed(70_000 + seed),
        persistence=protocol.persistence,
    )
    prob = FlatLoss(task.loss, list(student.weights))
    return teacher, task, SigmoidMLP(tuple(prob.unflatten(out["w"])))


def run_cell(config: DeepConfig, cell: dict) -> list[dict]:
    width, seed = int(cell["width"]), int(cell["seed"])
    rates = rates_from(cell["gammas"], config.T)
    protocol = protocol_from(config.protocol)
    teacher, task, net = _student(config, rates, seed)
    big = expand_sigmoid(net, [width] * (len(config.base) - 2))
    prob = FlatLoss(task.loss, list(big.weights))
    base_prob = FlatLoss(task.loss, list(net.weights))
    w0, base_w = flat_weights(big.weights), flat_weights(net.weights)
    gen = torch.Generator().manual_seed(3_000 + 131 * seed + width)
    geo = geometry_at(prob, w0, gen)
    base_geo = geometry_at(base_prob, base_w, gen)
    draws = single_interval_draws(
        prob,
        w0,
        rates,
        2 * max(1, config.n_draws // 2),
        gen,
        with_prediction=False,
        antithetic=True,
    )
    k_pairs = np.array([d["k_measured"] for d in draws]).reshape(-1, 2).mean(axis=1)
    sim = online_run(
        teacher,
        task,
        list(big.weights),
        rates,
        config.n_cycles,
        config.batch,
        gen,
        persistence=protocol.persistence,
    )
    losses = sim["losses"]
    ks = [learning_rate(a, b, rates.T) for a, b in itertools.pairwise(losses[:21])]
    # the learning curve at 20 checkpoints, for the figure
    idx = np.linspace(0, config.n_cycles, 21).round().astype(int)
    return [
        {
            **size_point_row(
                "deep", rates, width, seed, prob.n, base_prob.n, geo, base_geo, k_pairs
            ),
            "k_early": float(np.mean(ks)),
            "steady_loss": protocol.steady_state(losses),
            "final_loss": float(losses[-1]),
            "curve": [float(losses[i]) for i in idx],
        }
    ]


def _monotone_fall(g: pd.DataFrame) -> tuple[bool, float, float]:
    """Whether the mean steady error falls at every step of N; largest/smallest ratio and its SE."""
    g = g.sort_values("n_synapses")
    r = g.steady_ratio.to_numpy()
    se = g.steady_ratio_se.to_numpy()
    return bool(np.all(np.diff(g.steady_loss.to_numpy()) < 0)), float(r[-1]), float(se[-1])


def summarise(df: pd.DataFrame, config: DeepConfig) -> dict:
    _agg, opt = size_tables(df.drop(columns=["curve"], errors="ignore"))
    return {"optimal_sizes": opt.to_dict(orient="records")}


def plot(df: pd.DataFrame, config: DeepConfig) -> dict:
    from matplotlib.lines import Line2D
    from matplotlib.ticker import LogLocator, NullFormatter

    from syngeo.app.plotting import subplots

    agg, opt = size_tables(df.drop(columns=["curve"], errors="ignore"))
    colors = gamma_colors(agg[["gamma1", "gamma2", "gamma3"]].itertuples(index=False))
    fig, axes = subplots(1, 3, width=3.5, height=3.1, squeeze=False)
    ax_curve, ax_ss, ax_k = axes[0]
    negative, cubic = [], False
    for key, g in agg.groupby(["gamma1", "gamma2", "gamma3"]):
        g = g.sort_values("n_synapses")
        color = colors[tuple(float(k) for k in key)]
        N = g.n_synapses.to_numpy(dtype=float)
        ax_ss.errorbar(N, g.steady_loss, yerr=2 * g.steady_loss_se, fmt="o-", ms=4, color=color)
        ax_k.errorbar(N, g.k_initial, yerr=2 * g.k_initial_se, fmt="o", ms=4, color=color)
        ax_k.plot(N, g.k_expected, "x--", color=color, ms=6, lw=0.9)
        if least_bad_note(g.k_initial):
            negative.append(gamma_label(key))
        o = opt[(opt.gamma1 == key[0]) & (opt.gamma2 == key[1]) & (opt.gamma3 == key[2])].iloc[0]
        if np.isfinite(o.n_star_paper_cubic):
            cubic = True
            for ax in (ax_ss, ax_k):
                ax.axvline(o.n_star_paper_cubic, color=color, ls=":", lw=1.2)
        if key[2] > 0:
            sub = df[(df.gamma3 == key[2]) & (df.gamma1 == key[0])]
            for width, ls in zip(
                (
                    min(config.widths),
                    sorted(config.widths)[len(config.widths) // 2],
                    max(config.widths),
                ),
                ("-", "--", ":"),
                strict=True,
            ):
                curves = np.array(sub[sub["size"] == width].curve.tolist())
                if curves.size:
                    x = np.linspace(0, config.n_cycles, curves.shape[1])
                    n = int(sub[sub["size"] == width].n_synapses.iloc[0])
                    ax_curve.plot(x, curves.mean(axis=0), ls, color=color, lw=1.2, label=f"N = {n}")
    ax_curve.set_xlabel("cycle")
    ax_curve.set_ylabel("error F (evaluation inputs)")
    ax_curve.set_title("learning curves with synaptic noise\n(mean over seeds)", fontsize=9)
    ax_curve.legend(fontsize=LEGEND_SIZE, title="size", title_fontsize=LEGEND_SIZE)
    for ax in (ax_ss, ax_k):
        ax.set_xscale("log")
        ax.xaxis.set_minor_locator(LogLocator(subs="all"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("network size N (synapses)")
    ax_ss.set_yscale("log")
    ax_ss.set_ylabel("steady-state error")
    ax_ss.set_title("steady-state error (±2 SE over seeds)", fontsize=9)
    ax_k.axhline(0.0, color="grey", lw=0.6)
    ax_k.set_ylabel("learning rate k at the grown weights")
    title = "k: single intervals vs ⟨k⟩"
    if negative:
        who = "every γ" if len(negative) == len(colors) else "; ".join(negative)
        title += f"\nk < 0 at every size for {who}:\nthe peak is the least-bad forgetting"
    ax_k.set_title(title, fontsize=8 if negative else 9)
    handles = [
        Line2D([], [], color=c, marker="o", ms=4, label=gamma_label(k)) for k, c in colors.items()
    ]
    handles += [
        Line2D(
            [], [], color="0.3", marker="o", ls="none", ms=4, label="measured (±2 SE over seeds)"
        ),
        Line2D(
            [],
            [],
            color="0.3",
            marker="x",
            ls="--",
            lw=0.9,
            ms=6,
            label="⟨k⟩ from the measured geometry",
        ),
    ]
    if cubic:
        handles.append(Line2D([], [], color="0.3", ls=":", lw=1.2, label="the paper's cubic N*"))
    fig.legend(handles=handles, loc="outside lower center", ncols=3, fontsize=LEGEND_SIZE)
    fig.suptitle("Deep network [10, w×5, 10] grown from w = 5", fontsize=9)
    return {"raman_deep": fig}


def report(df: pd.DataFrame, config: DeepConfig) -> str:
    agg, opt = size_tables(df.drop(columns=["curve"], errors="ignore"))
    protocol = protocol_from(config.protocol)
    lines = [
        "# Raman et al. Fig. 2: a deep network grown under noisy plasticity",
        "",
        "Paper's claim: without synaptic noise (γ3 = 0) a larger network reaches a lower steady-state "
        "error; with synaptic noise (γ3 > 0) there is an optimal, finite network size, predicted by the "
        "paper's cubic (docs/raman.md).",
        "",
        f"Settings: teacher and base student {list(config.base)}, hidden layers grown to w = "
        f"{list(config.widths)} by zero-initialised units; T = {config.T:g}; online learning with "
        f"{config.batch} fresh inputs per cycle, error measured on {config.eval_samples} fixed inputs; "
        f"{config.n_cycles} cycles, {config.repeats} seeds (the paper: 5000 cycles, 12 repeats, 1000 inputs "
        f"per cycle — scaled down for 2 CPU cores). Protocol: {protocol.describe()}"
        + (
            f"; the base student is first pretrained for {config.pretrain_cycles} noiseless steps."
            if not protocol.warmup_cycles
            else "."
        ),
        "",
    ]
    for key, g in agg.groupby(["gamma1", "gamma2", "gamma3"]):
        o = opt[(opt.gamma1 == key[0]) & (opt.gamma2 == key[1]) & (opt.gamma3 == key[2])].iloc[0]
        name = f"γ = ({key[0]:g}, {key[1]:g}, {key[2]:g})"
        if key[2] == 0:
            note = least_bad_note(g.k_initial, "the size with the largest k")
            falls, ratio, se = _monotone_fall(g)
            lower = ratio + 2 * se < 1 if np.isfinite(se) else ratio < 1
            lines.append(
                f"* {name} (no synaptic noise): the steady-state error of the largest network is "
                f"{ratio:.3g} ± {fmt(se, '.2g')} times that of the smallest; 'larger is better' "
                + ("holds" if lower else "does not hold")
                + " (beyond 2 SE), and the mean error "
                + ("falls at every step of N." if falls else "does not fall at every step of N.")
                + (f" Note: {note}." if note else "")
            )
        else:
            note = least_bad_note(g.k_initial, "the maximiser of ⟨k⟩ and any optimum of k")
            interior = o.n_min < o.n_star_seed_mean < o.n_max and not (
                o.n_star_seed_min <= o.n_min or o.n_star_seed_max >= o.n_max
            )
            lines.append(
                f"* {name}: measured optimum of the steady-state error N ≈ {o.n_star_seed_mean:.4g} "
                f"(per seed {o.n_star_seed_min:.4g}–{o.n_star_seed_max:.4g}, grid {o.n_min:g}–{o.n_max:g}); "
                "an optimal, finite size inside the grid "
                + ("holds" if interior else "does not hold (some optimum sits at a grid end)")
                + f". Predicted: the paper's cubic {o.n_star_paper_cubic:.4g}, the linear Tγ2²/γ3² = "
                f"{config.T * key[1] ** 2 / key[2] ** 2:.4g}, the fitted-β heuristic "
                f"{fmt(o.n_star_closed_form, '.4g')} ({beta_text(o.beta)}), the maximiser of ⟨k⟩ built from "
                f"the measured geometry {o.n_star_numeric:.4g}"
                + (" (at a grid end)" if o.n_star_numeric_at_boundary else "")
                + "."
                + (f" Note: {note}." if note else "")
            )
    ends = {}
    for key, g in agg.groupby("gamma3"):
        _, ratio, se = _monotone_fall(g)
        ends[key] = (ratio, se)
    if len(ends) >= 2 and 0.0 in ends:
        r0, s0 = ends[0.0]
        for g3, (r1, s1) in ends.items():
            if g3 == 0.0:
                continue
            diff = r1 - r0
            se = math.hypot(s0, s1) if np.isfinite(s0) and np.isfinite(s1) else float("nan")
            lines.append(
                f"* Largest over smallest network: steady-state error ratio {r1:.3g} ± {fmt(s1, '.2g')} "
                f"with γ3 = {g3:g} against {r0:.3g} ± {fmt(s0, '.2g')} without noise; 'synaptic noise "
                "removes the benefit of size' "
                + ("holds" if np.isfinite(se) and diff > 2 * se else "does not hold")
                + f" (difference {diff:.3g} ± {fmt(se, '.2g')}, 2 SE required)."
            )
    lines += ["", *nonlinear_nstar_section(opt, model="deep")]
    lines += [
        "| γ | w | N | ⟨k⟩ predicted | k measured ± SE | steady-state F ± SE | F_ss / F_ss(smallest) |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in agg.sort_values(["gamma3", "n_synapses"]).itertuples():
        lines.append(
            f"| ({r.gamma1:g}, {r.gamma2:g}, {r.gamma3:g}) | {r.size} | {r.n_synapses} | {r.k_expected:.4g} | "
            f"{r.k_initial:.4g} ± {fmt(r.k_initial_se, '.2g')} | {r.steady_loss:.4g} ± "
            f"{fmt(r.steady_loss_se, '.2g')} | {r.steady_ratio:.3g} ± {fmt(r.steady_ratio_se, '.2g')} |"
        )
    lines += ["", "![deep network against size](raman_deep.png)", ""]
    return "\n".join(lines)


EXPERIMENT = Experiment(
    name="raman-deep",
    title="Raman et al. Fig. 2: a deep network grown under noisy plasticity, and its optimal size",
    Config=DeepConfig,
    quick=DeepConfig.quick,
    cells=cells,
    run_cell=run_cell,
    summarise=summarise,
    plot=plot,
    report=report,
    figures=("raman_deep",),
    modules=("syngeo.app.experiments.raman.common",),
)
