r"""``raman-training``: local task difficulty along a training trajectory (PNAS Fig. 4).

Raman, Rotondo & O'Leary (2019), Fig. 4: while a network learns under three-component
plasticity, the local task difficulty along the weight change,
:math:`G = \hat w^\top\nabla^2F\hat w/\|\nabla F\|` (docs/theory.md §6; theory convention of
:mod:`syngeo.bounds`), rises as the error falls until learning stalls where the mean difficulty
reaches the bound :math:`2\gamma_1/(T\langle\|\dot w\|^2\rangle)`. The task-relevant part may
also follow a *subsampled* gradient (the gradient of one input, or a few), rescaled to the same
norm γ1: it points along the true gradient only on average, with mean alignment
:math:`c = \langle\|\nabla F\|\cos\theta\rangle/\langle\|\nabla F\|\rangle`, so stationarity
(:math:`\langle k\rangle = 0`, second order) puts the mean difficulty at
:math:`2c\gamma_1/(T\langle\|\dot w\|^2\rangle)` — learning stalls earlier, at a higher error.
Small and large sigmoid networks [10, h, 10] computing the same initial function
(zero-initialised units) learn a [10, 3, 10] teacher, both ways.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from syngeo.app.experiments.base import Experiment
from syngeo.app.experiments.raman.common import (
    LEGEND_SIZE,
    flat_weights,
    protocol_from,
    rates_from,
)
from syngeo.app.formatting import fmt
from syngeo.bounds import FlatLoss
from syngeo.expansion import SigmoidTask, expand_sigmoid, init_sigmoid_mlp, make_sigmoid_task
from syngeo.plasticity import ThreeComponentPlasticity


@dataclass(frozen=True)
class TrainingConfig:
    """Learning over training (scripts: 2000 cycles, 1000 inputs, subsample fraction 0.001).

    Attributes
    ----------
    base, hidden : network shapes
        Teacher and base [10, 3, 10]; students with ``hidden`` units, grown from the base by
        zero-initialised units (the same initial function).
    gammas, T
        The scripts' γ = (0.04, 1, 0), T = 1.
    n_cycles, repeats, n_samples
        Cycles per run, seeds, inputs (fixed data set).
    subsample : int
        Inputs behind the subsampled gradient (1 of 1000 in the scripts).
    every : int
        The difficulty is measured on every ``every``-th cycle (one Hessian-vector product).
    """

    base: tuple[int, int, int] = (10, 3, 10)
    hidden: tuple[int, ...] = (5, 100)
    gammas: tuple[float, float, float] = (0.04, 1.0, 0.0)
    T: float = 1.0
    n_cycles: int = 800
    repeats: int = 3
    n_samples: int = 500
    subsample: int = 1
    every: int = 2
    protocol: str = "syngeo"

    @classmethod
    def quick(cls) -> TrainingConfig:
        return cls(n_cycles=250, repeats=2, n_samples=200, every=3)


def cells(config: TrainingConfig) -> list[dict]:
    return [
        {"hidden": int(h), "gradient": mode, "seed": int(s)}
        for h in config.hidden
        for mode in ("full", "subsampled")
        for s in range(config.repeats)
    ]


def run_cell(config: TrainingConfig, cell: dict) -> list[dict]:
    hidden, mode, seed = int(cell["hidden"]), cell["gradient"], int(cell["seed"])
    rates = rates_from(config.gammas, config.T)
    protocol = protocol_from(config.protocol)
    teacher = init_sigmoid_mlp(list(config.base), rng=20_000 + seed)
    task = make_sigmoid_task(teacher, n_samples=config.n_samples, rng=30_000 + seed)
    student = expand_sigmoid(init_sigmoid_mlp(list(config.base), rng=40_000 + seed), [hidden])
    prob = FlatLoss(task.loss, list(student.weights))
    gen = torch.Generator().manual_seed(5_000 + 17 * seed + hidden)
    plast = ThreeComponentPlasticity(rates, generator=gen, persistence=protocol.persistence)
    w = flat_weights(student.weights)
    n_cycles = config.n_cycles
    losses = np.empty(n_cycles + 1)
    G, cos, t_meas = [], [], []
    quad = speed = gnorm = gcos = 0.0
    count = 0
    half = n_cycles // 2
    for t in range(n_cycles + 1):
        F, g = prob.value_and_grad(w)
        losses[t] = F
        if t == n_cycles:
            break
        if mode == "subsampled":
            idx = torch.randperm(config.n_samples, generator=gen)[: config.subsample]
            sub = SigmoidTask(task.inputs[idx], task.targets[idx])
            x = w.detach().requires_grad_(True)
            (drive,) = torch.autograd.grad(sub.loss(list(prob.unflatten(x))), x)
        else:
            drive = g
        step = plast.step(drive)  # task part: -γ1 along the (subsampled) gradient's direction
        gn = float(g.norm())
        c = float(drive @ g) / (float(drive.norm()) * gn) if float(drive.norm()) > 0 else 0.0
        if t % config.every == 0:
            v = step.velocity
            vHv = float(v @ prob.hvp(w, v))
            vv = float(v @ v)
            G.append(vHv / vv / gn)
            cos.append(c)
            t_meas.append(t)
            if t >= half:
                quad += vHv
                speed += vv
                gnorm += gn
                gcos += gn * c
                count += 1
        w = w + step.delta
    G_ss = quad / (speed * (gnorm / count)) if count else float("nan")
    align = gcos / gnorm if count else float("nan")
    mean_speed = speed / count if count else float("nan")
    idx = np.linspace(0, len(G) - 1, 40).round().astype(int)
    # trailing mean of G over (up to) the last 10 measurements, at 40 checkpoints, for the figure
    csum = np.concatenate([[0.0], np.cumsum(G)])
    start = np.maximum(np.arange(1, len(G) + 1) - 10, 0)
    G_smooth = (csum[1:] - csum[start]) / (np.arange(1, len(G) + 1) - start)
    return [
        {
            "hidden": hidden,
            "gradient": mode,
            "seed": seed,
            "n_synapses": prob.n,
            "gamma1": rates.gamma1,
            "gamma2": rates.gamma2,
            "gamma3": rates.gamma3,
            "T": rates.T,
            "initial_loss": float(losses[0]),
            "steady_loss": protocol.steady_state(losses),
            "difficulty_ss": G_ss,
            "alignment_ss": align,
            "mean_speed_sq": mean_speed,
            "bound_full": 2 * rates.gamma1 / (rates.T * mean_speed),
            "bound_aligned": 2 * rates.gamma1 * align / (rates.T * mean_speed),
            "difficulty_early": float(np.mean(G[: max(1, len(G) // 10)])),
            "t_curve": [int(t_meas[i]) for i in idx],
            "G_curve": [float(G_smooth[i]) for i in idx],
            "F_curve": [float(losses[t_meas[i]]) for i in idx],
        }
    ]


def _table(df: pd.DataFrame) -> pd.DataFrame:
    se = lambda s: s.std(ddof=1) / math.sqrt(len(s)) if len(s) > 1 else float("nan")  # noqa: E731
    df = df.assign(
        ratio_full=df.difficulty_ss / df.bound_full,
        ratio_aligned=df.difficulty_ss / df.bound_aligned,
    )
    return (
        df.groupby(["hidden", "gradient"])
        .agg(
            n_synapses=("n_synapses", "first"),
            steady_loss=("steady_loss", "mean"),
            steady_loss_se=("steady_loss", se),
            difficulty_early=("difficulty_early", "mean"),
            difficulty_ss=("difficulty_ss", "mean"),
            alignment=("alignment_ss", "mean"),
            ratio_full=("ratio_full", "mean"),
            ratio_full_se=("ratio_full", se),
            ratio_aligned=("ratio_aligned", "mean"),
            ratio_aligned_se=("ratio_aligned", se),
            repeats=("seed", "nunique"),
        )
        .reset_index()
    )


def summarise(df: pd.DataFrame, config: TrainingConfig) -> dict:
    return {"runs": _table(df).to_dict(orient="records")}


def plot(df: pd.DataFrame, config: TrainingConfig) -> dict:
    """Error F (top) and local task difficulty G (bottom) over cycles, true gradient (left) and
    subsampled gradient (right); one colour per network size, explained once below the panels."""
    from matplotlib.lines import Line2D

    from syngeo.app.plotting import subplots

    fig, axes = subplots(2, 2, width=3.6, height=2.6, squeeze=False)
    handles = {}
    for c, mode in enumerate(("full", "subsampled")):
        for j, h in enumerate(sorted(set(df.hidden))):
            sub = df[(df.hidden == h) & (df.gradient == mode)]
            t = np.asarray(sub.t_curve.iloc[0])
            F = np.array(sub.F_curve.tolist()).mean(axis=0)
            G = np.array(sub.G_curve.tolist()).mean(axis=0)
            n = int(sub.n_synapses.iloc[0])
            (line,) = axes[0][c].plot(t, F, color=f"C{j}", label=f"[10, {h}, 10], N = {n}")
            handles.setdefault(h, line)
            axes[1][c].plot(t, G, color=f"C{j}")
            axes[1][c].axhline(
                float(sub.bound_aligned.mean()),
                color=f"C{j}",
                ls="--",
                lw=1,
            )
        axes[0][c].set_title(
            "true gradient"
            if mode == "full"
            else f"subsampled gradient ({config.subsample} input)",
            fontsize=8,
        )
        axes[0][c].set_ylabel("error F")
        axes[0][c].set_yscale("log")
        axes[1][c].set_ylabel("local task difficulty G")
        axes[1][c].set_xlabel("cycle")
    dashed = Line2D(
        [],
        [],
        color="0.3",
        ls="--",
        lw=1,
        label="predicted steady-state G = 2cγ1/(T⟨‖ẇ‖²⟩) (c = 1 for the true gradient; "
        "with γ3 = 0 both sizes share it)",
    )
    fig.legend(
        handles=[*handles.values(), dashed],
        loc="outside lower center",
        ncols=2,
        fontsize=LEGEND_SIZE,
        handlelength=2.4,
    )
    fig.suptitle("Mean over seeds; G: trailing mean over 10 measurements", fontsize=8)
    return {"raman_training": fig}


def report(df: pd.DataFrame, config: TrainingConfig) -> str:
    tab = _table(df)
    protocol = protocol_from(config.protocol)
    g1, g2, g3 = config.gammas
    lines = [
        "# Raman et al. Fig. 4: learning over training",
        "",
        "Paper's claims: (1) the local task difficulty G along the weight change rises as the error falls, "
        "until the mean difficulty reaches the bound 2γ1/(T⟨‖ẇ‖²⟩), where learning stalls (the steady "
        "state); (2) replacing the gradient by a subsampled, noisy gradient of the same norm makes learning "
        "stall earlier, at a higher error. Here the second claim is made quantitative: with mean alignment "
        "c between the subsampled and the true gradient, the steady-state difficulty is predicted at "
        "2cγ1/(T⟨‖ẇ‖²⟩).",
        "",
        f"Settings: teacher {list(config.base)}; students [10, h, 10], h = {list(config.hidden)}, grown "
        f"from a random {list(config.base)} network by zero-initialised units; γ = ({g1:g}, {g2:g}, {g3:g}), "
        f"T = {config.T:g}; {config.n_samples} inputs; {config.n_cycles} cycles; {config.repeats} seeds; "
        f"subsampled gradient from {config.subsample} input(s), rescaled to norm γ1; G measured every "
        f"{config.every} cycles; steady-state difficulty as a ratio of means over the second half. "
        f"Protocol: {protocol.describe(warmup=False)}.",
        "",
        "| h | N | gradient | G early | G steady | alignment c | G_ss / (2γ1/T⟨‖ẇ‖²⟩) | G_ss / (2cγ1/T⟨‖ẇ‖²⟩) | steady-state F ± SE |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in tab.itertuples():
        lines.append(
            f"| {r.hidden} | {r.n_synapses} | {r.gradient} | {r.difficulty_early:.4g} | {r.difficulty_ss:.4g} | "
            f"{r.alignment:.3f} | {r.ratio_full:.3f} ± {fmt(r.ratio_full_se, '.2g')} | "
            f"{r.ratio_aligned:.3f} ± {fmt(r.ratio_aligned_se, '.2g')} | {r.steady_loss:.4g} ± "
            f"{fmt(r.steady_loss_se, '.2g')} |"
        )
    lines.append("")
    for h in sorted(set(tab.hidden)):
        full = tab[(tab.hidden == h) & (tab.gradient == "full")].iloc[0]
        subs = tab[(tab.hidden == h) & (tab.gradient == "subsampled")].iloc[0]
        rises = full.difficulty_ss > full.difficulty_early
        on_bound = abs(full.ratio_full - 1) <= max(0.1, 2 * np.nan_to_num(full.ratio_full_se))
        on_aligned = abs(subs.ratio_aligned - 1) <= max(
            0.1, 2 * np.nan_to_num(subs.ratio_aligned_se)
        )
        worse = subs.steady_loss > full.steady_loss
        lines.append(
            f"* h = {h} (N = {full.n_synapses}): with the true gradient G rises from {full.difficulty_early:.3g} "
            f"(first tenth) to {full.difficulty_ss:.3g} (steady state) — 'G rises over training' "
            + ("holds" if rises else "does not hold")
            + f"; the steady-state difficulty is {full.ratio_full:.3f} of the bound — 'on the bound' (within "
            "10 % or 2 SE) "
            + ("holds" if on_bound else "does not hold")
            + f". Subsampled: alignment c = {subs.alignment:.3f}, steady-state difficulty "
            f"{subs.ratio_aligned:.3f} of 2cγ1/(T⟨‖ẇ‖²⟩) — the prediction "
            + ("holds" if on_aligned else "does not hold")
            + f"; steady-state error {subs.steady_loss:.4g} against {full.steady_loss:.4g} with the true "
            "gradient — 'stalls at a higher error' " + ("holds." if worse else "does not hold.")
        )
    lines += ["", "![learning over training](raman_training.png)", ""]
    return "\n".join(lines)


EXPERIMENT = Experiment(
    name="raman-training",
    title="Raman et al. Fig. 4: local task difficulty along training, full vs subsampled gradient",
    Config=TrainingConfig,
    quick=TrainingConfig.quick,
    cells=cells,
    run_cell=run_cell,
    summarise=summarise,
    plot=plot,
    report=report,
    figures=("raman_training",),
    modules=("syngeo.app.experiments.raman.common",),
)
