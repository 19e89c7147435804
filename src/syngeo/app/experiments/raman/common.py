"""What the Raman et al. experiments share: the problems, the noisy-plasticity loop, single intervals.

A problem is a :class:`syngeo.bounds.FlatLoss` of the flattened weights (closed forms for the
linear task, :meth:`syngeo.expansion.LinearTask.flat_loss`; reverse-mode derivatives for the
sigmoid networks) and its starting weights.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch

from syngeo.bounds import FlatLoss, LossGeometry, expected_learning_rate, learning_rate
from syngeo.expansion import SigmoidMLP, init_sigmoid_mlp, make_linear_task, make_sigmoid_task
from syngeo.plasticity import PlasticityRates, PlasticityStep, ThreeComponentPlasticity

__all__ = [
    "PROTOCOLS",
    "D",
    "Protocol",
    "flat_weights",
    "gamma_colors",
    "gamma_label",
    "geometry_at",
    "holds",
    "least_bad_note",
    "linear_problem",
    "pretrained_mlp",
    "pretrained_student",
    "protocol_from",
    "rates_from",
    "simulate",
    "single_interval_draws",
    "size_point_row",
]

D = torch.float64

#: Legends of the Raman figures: never smaller than this (points).
LEGEND_SIZE = 7
#: Sigmoid networks: exact Hessian trace up to this many weights, Hutchinson's estimate above.
EXACT_TRACE_MAX = 500
#: Rademacher probes of Hutchinson's estimate.
TRACE_PROBES = 48


@dataclass(frozen=True)
class Protocol:
    """How a noisy-learning run starts and what its steady state is.

    Attributes
    ----------
    name : str
        ``"syngeo"`` (default: no warm-up, fresh task-irrelevant directions, steady state = mean
        error over the second half of the run) or ``"reference"`` (the authors' scripts: the
        student first learns a *fake* teacher for ``warmup_cycles`` under the same plasticity,
        the task-irrelevant direction keeps 10 % of the previous one each cycle, steady state =
        mean error over the last 50 cycles).
    warmup_cycles : int
        Cycles on the fake teacher (0: none).
    persistence : float
        ``persistence`` of :class:`syngeo.plasticity.ThreeComponentPlasticity`.
    steady_window : int
        Cycles averaged at the end for the steady state (0: the second half).
    """

    name: str
    warmup_cycles: int
    persistence: float
    steady_window: int

    def steady_state(self, losses: np.ndarray) -> float:
        """Mean error over the steady-state window of a trajectory (``losses[0]`` = start)."""
        tail = losses[1:]
        window = self.steady_window if self.steady_window > 0 else len(tail) - len(tail) // 2
        return float(np.mean(tail[-window:]))

    def describe(self, *, warmup: bool = True) -> str:
        """One sentence for a report; ``warmup=False`` where the experiment skips the warm-up."""
        if self.name == "syngeo":
            return (
                "syngeo's protocol (no warm-up, a fresh task-irrelevant direction every cycle, "
                "steady state = mean error over the second half of each run)"
            )
        start = (
            f"{self.warmup_cycles} warm-up cycles on a fake teacher under the same plasticity"
            if warmup
            else "no warm-up, as in the scripts' runs for this figure"
        )
        return (
            f"the reference protocol of the authors' scripts ({start}, "
            f"{self.persistence:.0%} persistence of the "
            f"task-irrelevant direction between cycles, steady state = mean error over the last "
            f"{self.steady_window} cycles)"
        )


PROTOCOLS = {
    "syngeo": Protocol("syngeo", 0, 0.0, 0),
    "reference": Protocol("reference", 1000, 0.1, 50),
}


def protocol_from(name: str) -> Protocol:
    """The :class:`Protocol` called ``name`` (``"syngeo"`` or ``"reference"``)."""
    from syngeo.errors import InputError

    if name not in PROTOCOLS:
        raise InputError(f"protocol must be one of {sorted(PROTOCOLS)}, got {name!r}")
    return PROTOCOLS[name]


def geometry_at(loss: FlatLoss, w: torch.Tensor, generator: torch.Generator) -> LossGeometry:
    """The loss geometry at ``w`` (exact trace for the linear task and small networks)."""
    return loss.geometry(w, generator=generator, exact_max=EXACT_TRACE_MAX, n_probes=TRACE_PROBES)


def rates_from(g, T) -> PlasticityRates:
    """``PlasticityRates`` from a cell's ``[γ1, γ2, γ3]`` and ``T``."""
    return PlasticityRates(float(g[0]), float(g[1]), float(g[2]), float(T))


def flat_weights(weights) -> torch.Tensor:
    """The weights of a network as one vector (layers in order, each row-major)."""
    return torch.cat([w.reshape(-1) for w in weights])


def linear_problem(n_in, n_out, n_samples, init_std, seed):
    """The linear task and the student's initial weights ``N(0, init_std²)`` (o × i)."""
    task = make_linear_task(n_in, n_out, n_samples=n_samples, rng=seed)
    g = torch.Generator().manual_seed(10_000 + seed)
    W0 = init_std * torch.randn(n_out, n_in, generator=g, dtype=D)
    return task, W0


def pretrained_mlp(sizes, teacher_sizes, n_samples, pretrain_cycles, pretrain_step, seed):
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
    prob = FlatLoss(task.loss, list(student.weights))
    w = prob.initial
    for _ in range(pretrain_cycles):
        _, g = prob.value_and_grad(w)
        w = w - pretrain_step * g / g.norm()
    return task, SigmoidMLP(tuple(prob.unflatten(w))), prob


def simulate(
    prob: FlatLoss,
    w0: torch.Tensor,
    rates: PlasticityRates,
    n_cycles: int,
    generator: torch.Generator,
    *,
    correlation: float = 0.0,
    persistence: float = 0.0,
    measure_difficulty_from: int | None = None,
    measure_every: int = 1,
) -> dict:
    """Run noisy three-component plasticity; return the error trajectory and difficulty sums.

    With ``measure_difficulty_from = t0`` the sums over cycles ``t >= t0`` of
    :math:`\\dot w^\\top H\\dot w`, :math:`\\|\\dot w\\|^2`, :math:`\\|\\nabla F\\|` are kept
    (for the ratio-of-means steady-state difficulty), on every ``measure_every``-th cycle.
    """
    plast = ThreeComponentPlasticity(
        rates, generator=generator, correlation=correlation, persistence=persistence
    )
    w = w0.clone()
    losses = np.empty(n_cycles + 1)
    ks = np.empty(n_cycles)
    quad = speed = gnorm = 0.0
    count = 0
    F, g = prob.value_and_grad(w)
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
        F_new, g = prob.value_and_grad(w)
        ks[t] = learning_rate(F, F_new, rates.T)
        F = F_new
        losses[t + 1] = F
    out = {"losses": losses, "ks": ks, "w": w}
    if count:
        out.update(quad=quad / count, speed=speed / count, gnorm=gnorm / count)
    return out


def single_interval_draws(
    prob, w, rates, n_draws, generator, *, with_prediction=True, antithetic=False
):
    """Measured k, predicted (second-order) k and difficulty for independent draws at ``w``.

    ``antithetic``: draws come in pairs (n2, n3) and (−n2, −n3), which have the same law; the
    linear noise terms cancel within a pair, so the mean over draws has a much smaller variance.
    """
    F0, g = prob.value_and_grad(w)
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
        measured = learning_rate(F0, prob.value(w + step.delta), rates.T)
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


def pretrained_student(config, seed: int, n_samples: int) -> tuple[FlatLoss, torch.Tensor]:
    """The sigmoid problem of a config (``mlp_sizes``, ``teacher_sizes``, ``pretrain_cycles``,
    ``pretrain_step``) with ``n_samples`` inputs, and the student's pretrained weights (flat)."""
    _, net, prob = pretrained_mlp(
        list(config.mlp_sizes),
        list(config.teacher_sizes),
        n_samples,
        config.pretrain_cycles,
        config.pretrain_step,
        seed,
    )
    return prob, flat_weights(net.weights)


def size_point_row(
    model: str,
    rates: PlasticityRates,
    size: int,
    seed: int,
    n_synapses: int,
    base_n_synapses: int,
    geo: LossGeometry,
    base_geo: LossGeometry,
    k_pairs: np.ndarray,
) -> dict:
    """The columns every (network, size, seed) point of the size experiments shares: the rates,
    the sizes, the loss geometry at the start (and of the unexpanded network), the predicted ⟨k⟩
    and the measured initial k (mean of antithetic pairs) with its standard error."""
    k_se = float(k_pairs.std(ddof=1) / np.sqrt(k_pairs.size)) if k_pairs.size > 1 else float("nan")
    return {
        "model": model,
        "gamma1": rates.gamma1,
        "gamma2": rates.gamma2,
        "gamma3": rates.gamma3,
        "T": rates.T,
        "size": size,
        "seed": seed,
        "n_synapses": n_synapses,
        "base_n_synapses": base_n_synapses,
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
        "k_initial_se": k_se,
    }


def holds(ok) -> str:
    """The verdict word of a report sentence: ``"holds"`` or ``"does not hold"``."""
    return "holds" if bool(ok) else "does not hold"


def gamma_label(gammas) -> str:
    """``γ = (γ1, γ2, γ3)`` as a legend label."""
    return "γ = (" + ", ".join(f"{float(g):g}" for g in list(gammas)[:3]) + ")"


_GAMMA_PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2")


def gamma_colors(settings) -> dict[tuple, str]:
    """One colour per (γ1, γ2, γ3) setting of a figure, the same in every panel and row.

    ``settings``: iterable of γ tuples (extra entries such as T are ignored). Colours follow the
    sorted order of the distinct settings, so a setting keeps its colour across the panels of a
    figure whatever order they are drawn in.

    >>> c = gamma_colors([(0.05, 1, 0.05), (0.07, 1, 0.03), (0.05, 1, 0.05)])
    >>> len(c), c[(0.05, 1.0, 0.05)] != c[(0.07, 1.0, 0.03)]
    (2, True)
    """
    keys = sorted({tuple(float(g) for g in list(s)[:3]) for s in settings})
    return {k: _GAMMA_PALETTE[i % len(_GAMMA_PALETTE)] for i, k in enumerate(keys)}


def least_bad_note(k_values, what: str = "the optimum") -> str | None:
    """A warning when every learning rate is negative: an "optimum" is then the least-bad forgetting.

    ``k_values``: the measured (or predicted) k of one setting at every size; None unless all
    finite values are < 0.
    """
    k = np.asarray(list(k_values), dtype=float)
    k = k[np.isfinite(k)]
    if k.size == 0 or np.any(k >= 0):
        return None
    return (
        f"k < 0 at every size (largest {k.max():.3g}): the error grows from the start at every "
        f"size, so {what} is the size that forgets least, not one that learns best"
    )
