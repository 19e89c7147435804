r"""``raman-size``: learning rate and steady-state error against network size; the optimal size N*.

Raman, Rotondo & O'Leary (2019). Linear networks expanded by semi-orthogonal embeddings
(c1 = c2) and sigmoid networks expanded by zero-initialised units
(:mod:`syngeo.expansion`), under several (γ1, γ2, γ3); predicted curves and N* against
simulation. Conventions: :mod:`syngeo.bounds`; where the slides' N* departs: ``docs/raman.md``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.interpolate
import torch

from syngeo.app.experiments.base import Experiment
from syngeo.app.experiments.raman.common import (
    LEGEND_SIZE,
    Protocol,
    flat_weights,
    gamma_colors,
    gamma_label,
    geometry_at,
    holds,
    least_bad_note,
    linear_problem,
    pretrained_mlp,
    protocol_from,
    rates_from,
    simulate,
    single_interval_draws,
    size_point_row,
)
from syngeo.app.formatting import fmt
from syngeo.bounds import (
    FlatLoss,
    LossGeometry,
    nonlinear_optimal_size,
    optimal_size,
    optimal_size_numeric,
    size_learning_rate,
)
from syngeo.errors import InputError
from syngeo.expansion import (
    SigmoidMLP,
    expand_linear,
    expand_sigmoid,
    init_sigmoid_mlp,
    make_linear_task,
    make_sigmoid_task,
)
from syngeo.plasticity import PlasticityRates


def slides_optimal_size(rates: PlasticityRates) -> float:
    r"""The slides' optimal size :math:`T\gamma_2^2(1 - \gamma_1^2/\gamma_2^2)/\gamma_3^2` (for comparison only).

    Negative whenever γ1 > γ2; see ``docs/raman.md`` for why it is not the maximiser of
    :math:`\langle k\rangle`.
    """
    if rates.gamma3 == 0:
        return math.copysign(math.inf, rates.gamma2 - rates.gamma1)
    return rates.T * (rates.gamma2**2 - rates.gamma1**2) / rates.gamma3**2


def slides_plus_optimal_size(rates: PlasticityRates) -> float:
    r"""The slides' formula with + for −: :math:`T(\gamma_1^2 + \gamma_2^2)/\gamma_3^2` (for comparison only).

    What "the gradient projects equally onto the Hessian eigenvectors", taken literally, gives
    (``docs/raman.md``).
    """
    if rates.gamma3 == 0:
        return math.inf
    return rates.T * (rates.gamma2**2 + rates.gamma1**2) / rates.gamma3**2


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
    protocol: str = "syngeo"

    @classmethod
    def reference(cls) -> SizeConfig:
        """The scripts' protocol (:class:`~.common.Protocol`) with their 1500 linear cycles."""
        return cls(protocol="reference", n_cycles=1500)

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


def cells(config: SizeConfig) -> list[dict]:
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


def _warm_up(prob: FlatLoss, w0, rates: PlasticityRates, protocol: Protocol, seed: int):
    """The reference protocol's warm-up: ``w0`` after learning a fake teacher (same seed at every size)."""
    gen = torch.Generator().manual_seed(70_000 + seed)
    out = simulate(prob, w0, rates, protocol.warmup_cycles, gen, persistence=protocol.persistence)
    return out["w"]


def _size_setup(config: SizeConfig, model: str, size: int, seed: int, rates: PlasticityRates):
    """(problem, initial weights, base problem, base weights) for one size."""
    protocol = protocol_from(config.protocol)
    if model == "linear":
        n_in, n_out = config.linear_base
        task, W0 = linear_problem(n_in, n_out, config.n_samples, config.init_std, seed)
        if protocol.warmup_cycles:
            fake = make_linear_task(n_in, n_out, n_samples=config.n_samples, rng=80_000 + seed)
            W0 = _warm_up(fake.flat_loss(), W0.reshape(-1), rates, protocol, seed).reshape(W0.shape)
        ex = expand_linear(W0, size, size, 50_000 + 97 * seed + size, task=task)
        return ex.task.flat_loss(), ex.weights.reshape(-1), task.flat_loss(), W0.reshape(-1)
    if model == "mlp":
        base = list(config.mlp_base)
        if protocol.warmup_cycles:
            task = make_sigmoid_task(
                init_sigmoid_mlp(base, rng=20_000 + seed),
                n_samples=config.mlp_samples,
                rng=30_000 + seed,
            )
            fake = make_sigmoid_task(
                init_sigmoid_mlp(base, rng=90_000 + seed),
                n_samples=config.mlp_samples,
                rng=95_000 + seed,
            )
            student = init_sigmoid_mlp(base, rng=40_000 + seed)
            fake_prob = FlatLoss(fake.loss, list(student.weights))
            w = _warm_up(fake_prob, fake_prob.initial, rates, protocol, seed)
            net = SigmoidMLP(tuple(fake_prob.unflatten(w)))
            base_prob = FlatLoss(task.loss, list(net.weights))
        else:
            task, net, base_prob = pretrained_mlp(
                base, base, config.mlp_samples, config.pretrain_cycles, config.pretrain_step, seed
            )
        big = expand_sigmoid(net, [size])
        prob = FlatLoss(task.loss, list(big.weights))
        return prob, flat_weights(big.weights), base_prob, flat_weights(net.weights)
    raise InputError(f"unknown model {model!r}; use 'linear' or 'mlp'")


def run_cell(config: SizeConfig, cell: dict) -> list[dict]:
    model, size, seed = cell["model"], int(cell["size"]), int(cell["seed"])
    rates = rates_from(cell["gammas"], config.T)
    protocol = protocol_from(config.protocol)
    prob, w0, base_prob, base_w = _size_setup(config, model, size, seed, rates)
    gen = torch.Generator().manual_seed(3_000 + 131 * seed + size)
    geo = geometry_at(prob, w0, gen)
    base_geo = geometry_at(base_prob, base_w, gen)
    n_draws = config.n_draws if model == "linear" else config.mlp_draws
    draws = single_interval_draws(
        prob, w0, rates, 2 * (n_draws // 2), gen, with_prediction=False, antithetic=True
    )
    k_pairs = np.array([d["k_measured"] for d in draws]).reshape(-1, 2).mean(axis=1)
    n_cycles = config.n_cycles if model == "linear" else config.mlp_cycles
    sim = simulate(prob, w0, rates, n_cycles, gen, persistence=protocol.persistence)
    return [
        {
            **size_point_row(model, rates, size, seed, prob.n, base_prob.n, geo, base_geo, k_pairs),
            "k_early": float(sim["ks"][: min(20, n_cycles)].mean()),
            "steady_loss": protocol.steady_state(sim["losses"]),
            "final_loss": float(sim["losses"][-1]),
        }
    ]


#: Fewest sizes for the power-law fit of Tr∇²F against N (two points fix a line; they fit nothing).
MIN_FIT_SIZES = 3
#: Linear growth keeps the curvature along the gradient exactly; it is computed from Hessian-vector
#: products in float64 (relative rounding ~1e-13), so "unchanged" means within 1e-8 relative.
CURVATURE_REL_TOL = 1e-8


def beta_text(beta: float) -> str:
    """``β = 0.74``, or why there is none."""
    if np.isfinite(beta):
        return f"β = {beta:.2f}"
    return f"β not fitted: fewer than {MIN_FIT_SIZES} sizes"


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


def _seed_spread(per_seed: dict, key: tuple) -> dict:
    """Per-seed optima of the steady-state error for one setting: geometric mean and log-spread."""
    values = np.array([v for k, v in per_seed.items() if k[:-1] == key], dtype=float)
    logs = np.log(values)
    n = len(values)
    sd = float(logs.std(ddof=1)) if n > 1 else float("nan")
    return {
        "n_star_seed_mean": float(np.exp(logs.mean())),
        "n_star_seed_min": float(values.min()),
        "n_star_seed_max": float(values.max()),
        "n_star_seed_log_sd": sd,
        "n_star_seed_log_se": sd / math.sqrt(n) if n > 1 else float("nan"),
        "n_seeds": n,
    }


def size_tables(df: pd.DataFrame, *, with_curves: bool = False):
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
    per_seed = {
        key: _peak_log_parabola(
            g.n_synapses.to_numpy(dtype=float), g.steady_loss.to_numpy(), maximum=False
        )
        for key, g in df.groupby(run_keys)
    }
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
            # a power law through two points is not a fit: β needs at least MIN_FIT_SIZES sizes
            beta = (
                float(np.polyfit(logN, np.log(np.abs(g.hessian_trace.to_numpy())), 1)[0])
                if len(N) >= MIN_FIT_SIZES
                else float("nan")
            )
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
            n_star_slides_plus=slides_plus_optimal_size(rates),
            # the scripts' cubic for nonlinear networks (N0 = weights before growth)
            n_star_paper_cubic=nonlinear_optimal_size(rates, int(g.base_n_synapses.iloc[0]))
            if key[0] != "linear"
            else float("nan"),
            # maximiser of <k> if the gradient curvature grew like c2 (the slides' assumption)
            n_star_slides_scaling=_slides_scaling_optimum(rates, g)
            if key[0] == "linear"
            else float("nan"),
            n_star_measured_k=_peak_log_parabola(N, g.dk_measured.to_numpy(), maximum=True),
            n_star_measured_steady=_peak_log_parabola(N, g.steady_ratio.to_numpy(), maximum=False),
            n_min=float(N.min()),
            n_max=float(N.max()),
            **_seed_spread(per_seed, key),
        )
        opt_rows.append(row)
        curves[key[:4]] = curve
    if with_curves:
        return agg, pd.DataFrame(opt_rows), curves
    return agg, pd.DataFrame(opt_rows)


def style_legend(fig, entries, *, ncols: int = 3) -> None:
    """A figure-level legend below the panels: γ colours first, then what each mark means."""
    handles = [h for h, _ in entries]
    labels = [lab for _, lab in entries]
    fig.legend(
        handles, labels, loc="outside lower center", ncols=ncols, fontsize=LEGEND_SIZE,
        handlelength=2.4,
    )  # fmt: skip


def _mark(**kwargs):
    from matplotlib.lines import Line2D

    return Line2D([], [], **{"color": "0.3", "ls": "none", **kwargs})


def plot(df: pd.DataFrame, config: SizeConfig) -> dict:
    from matplotlib.lines import Line2D
    from matplotlib.ticker import LogLocator, NullFormatter

    from syngeo.app.plotting import subplots

    agg, opt, curves = size_tables(df, with_curves=True)
    models = [m for m in ("linear", "mlp") if m in set(agg.model)]
    colors = gamma_colors(agg[["gamma1", "gamma2", "gamma3"]].itertuples(index=False))
    fig, axes = subplots(len(models), 2, width=3.6, height=3.0, squeeze=False)
    entries, seen, styles = [], set(), set()
    for r, model in enumerate(models):
        sub = agg[agg.model == model]
        notes = []
        for key, g in sub.groupby(["gamma1", "gamma2", "gamma3", "T"]):
            g = g.sort_values("n_synapses")
            o = opt[
                (opt.model == model)
                & (opt.gamma1 == key[0])
                & (opt.gamma2 == key[1])
                & (opt.gamma3 == key[2])
            ].iloc[0]
            color = colors[tuple(float(k) for k in key[:3])]
            label = f"{'linear' if model == 'linear' else 'sigmoid'}, {gamma_label(key)}"
            if label not in seen:
                seen.add(label)
                entries.append((Line2D([], [], color=color, marker="o", ms=4), label))
            N = g.n_synapses.to_numpy(dtype=float)
            fine = np.geomspace(N.min(), N.max(), 200)
            show_star = np.isfinite(o.n_star_numeric) and o.n_min <= o.n_star_numeric <= o.n_max
            curve = curves[(model, *key[:3])]
            ax = axes[r][0]
            ax.errorbar(N, g.dk_measured, yerr=2 * g.dk_measured_se, fmt="o", ms=3, color=color)
            ax.plot(fine, curve(fine) - curve(N.min()), "-", color=color, lw=1)
            ax.plot(N, g.dk_expected, "x", color=color, ms=5)
            if show_star:
                ax.axvline(o.n_star_numeric, color=color, ls=":", lw=1)
                styles.add("star")
            if least_bad_note(g.k_initial):
                notes.append(gamma_label(key))
            ax = axes[r][1]
            ax.errorbar(N, g.steady_ratio, yerr=2 * g.steady_ratio_se, fmt="o", ms=3, color=color)
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
            if model != "linear":
                for value, ls, kind in (
                    (o.n_star_paper_cubic, "--", "cubic"),
                    (o.n_star_closed_form, "-.", "heuristic"),
                ):
                    if np.isfinite(value) and value > 0:
                        ax.axvline(value, color=color, ls=ls, lw=1)
                        styles.add(kind)
        for c in (0, 1):
            ax = axes[r][c]
            ax.set_xscale("log")
            ax.xaxis.set_minor_locator(LogLocator(subs="all"))
            ax.xaxis.set_minor_formatter(NullFormatter())
            ax.set_xlabel("network size N (synapses)")
        name = "linear" if model == "linear" else "sigmoid"
        axes[r][0].set_ylabel("k(N) − ⟨k⟩(smallest N)")
        axes[r][0].set_title(f"{name}: learning rate at the grown weights", fontsize=9)
        axes[r][1].set_yscale("log")
        axes[r][1].set_ylabel("F_ss(N) / F_ss(smallest N)")
        axes[r][1].set_title(f"{name}: steady-state error", fontsize=9)
        if notes:
            axes[r][0].set_title(
                f"{name}: learning rate at the grown weights\nk < 0 at every size for "
                + "; ".join(notes)
                + ": the peak is the least-bad forgetting",
                fontsize=7,
            )
    entries += [
        (_mark(marker="o", ms=4), "simulation (±2 SE over runs)"),
        (_mark(marker="x", ms=5), "⟨k⟩ from the geometry measured at each size"),
        (Line2D([], [], color="0.3", lw=1), "predicted curve (sigmoid: the crosses interpolated)"),
    ]
    if "star" in styles:
        entries.append(
            (Line2D([], [], color="0.3", ls=":", lw=1), "N* maximising the predicted ⟨k⟩")
        )
    if "cubic" in styles:
        entries.append(
            (Line2D([], [], color="0.3", ls="--", lw=1), "sigmoid: the paper's cubic N*")
        )
    if "heuristic" in styles:
        entries.append(
            (Line2D([], [], color="0.3", ls="-.", lw=1), "sigmoid: fitted-β heuristic N*")
        )
    style_legend(fig, entries, ncols=2)
    fig.suptitle("Per run, relative to its smallest network", fontsize=9)
    return {"raman_size": fig}


def summarise(df: pd.DataFrame, config: SizeConfig) -> dict:
    _agg, opt = size_tables(df)
    return {"optimal_sizes": opt.to_dict(orient="records")}


def nstar_verdict(
    pred: dict[str, float], measured: float, log_se: float
) -> tuple[str, bool | None]:
    """Which prediction lies closest to ``measured`` in log N, and whether it is within 2 log-SE."""
    dist = {
        name: abs(math.log(v / measured)) for name, v in pred.items() if v > 0 and np.isfinite(v)
    }
    if not dist or not (measured > 0 and np.isfinite(measured)):
        return "none", None
    best = min(dist, key=dist.get)
    if not np.isfinite(log_se):
        return best, None
    return best, bool(dist[best] <= 2 * log_se)


def nonlinear_nstar_section(opt: pd.DataFrame, model: str = "mlp") -> list[str]:
    """The paper's cubic, the fitted-β heuristic and the measured optimum, with a computed verdict."""
    rows = opt[(opt.model == model) & (opt.gamma3 > 0)]
    if rows.empty:
        return []
    lines = [
        "## The nonlinear N*: the paper's cubic against the fitted-β heuristic",
        "",
        "The paper's nonlinear N* is the positive root of the scripts' cubic "
        "N³ − T²(γ1²+γ2²)γ2²N/γ3⁴ − T²γ1²(γ1²+γ2²)N0/γ3⁴ = 0 (N0: weights before growth; "
        "`syngeo.bounds.nonlinear_optimal_size`, docs/raman.md); the heuristic is ((1−β)/β)·Tγ2²/γ3² with β "
        "from a power-law fit of Tr∇²F against N. Measured: the optimum of the steady-state error, per seed "
        "(vertex of a parabola in log N), geometric mean over seeds with its range; 'within spread' means "
        "|log(prediction/measured)| ≤ 2 standard errors of the mean log optimum.",
        "",
        "| γ | paper's cubic N* | fitted-β heuristic N* | measured N* (steady F), seeds | per-seed range | closest | cubic within spread | heuristic within spread |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    names = ("the paper's cubic", "the fitted-β heuristic")
    closest, inside = [], {n: 0 for n in names}
    testable = 0
    for r in rows.itertuples():
        pred = dict(zip(names, (r.n_star_paper_cubic, r.n_star_closed_form), strict=True))
        best, _ = nstar_verdict(pred, r.n_star_seed_mean, r.n_star_seed_log_se)
        closest.append(best)
        cells = []
        for name, value in pred.items():
            _, w = nstar_verdict({name: value}, r.n_star_seed_mean, r.n_star_seed_log_se)
            cells.append("n/a" if w is None else ("yes" if w else "no"))
            inside[name] += bool(w)
        testable += np.isfinite(r.n_star_seed_log_se)
        lines.append(
            f"| ({r.gamma1:g}, {r.gamma2:g}, {r.gamma3:g}) | {fmt(r.n_star_paper_cubic, '.4g')} | "
            f"{fmt(r.n_star_closed_form, '.4g')} ({beta_text(r.beta)}) | {fmt(r.n_star_seed_mean, '.4g')} "
            f"({r.n_seeds}) | {r.n_star_seed_min:.4g}–{r.n_star_seed_max:.4g} | {best} | {cells[0]} | {cells[1]} |"
        )
    n = len(closest)
    cubic, heur = names
    lines += [
        "",
        f"{cubic.capitalize()} is the closer prediction in {closest.count(cubic)} of {n} setting(s), "
        f"{heur} in {closest.count(heur)}. "
        + (
            "With one seed there is no spread to test them against."
            if testable == 0
            else f"Within the seed spread: {cubic} in {inside[cubic]} of {testable}, {heur} in "
            f"{inside[heur]} of {testable}. "
            + _support_sentence(closest, inside, testable, cubic, heur)
        ),
        "",
    ]
    return lines


def _gamma1_above_gamma2_sentence(config: SizeConfig) -> str:
    """Whether this preset has a linear setting with γ1 > γ2 (the slides' N* < 0), said as it is."""
    cases = [g for g in config.linear_gammas if g[0] > g[1]] if "linear" in config.models else []
    if not cases:
        return (
            "; no linear setting of this run has γ1 > γ2, so this run does not test that case "
            "(the full preset has one)."
        )
    listed = ", ".join(gamma_label(g) for g in cases)
    return f"; the linear setting(s) {listed} test that case (verdict below)."


def size_verdicts(agg: pd.DataFrame, opt: pd.DataFrame) -> list[str]:
    """The report's claims about size, each with its computed comparison and verdict."""
    lines = ["## Verdicts", ""]
    for model, rows in opt.groupby("model", sort=True):
        for r in rows.itertuples():
            ok = r.n_min < r.n_star_measured_k < r.n_max
            sub = agg[
                (agg.model == model)
                & (agg.gamma1 == r.gamma1)
                & (agg.gamma2 == r.gamma2)
                & (agg.gamma3 == r.gamma3)
            ]
            note = least_bad_note(sub.k_initial, "the measured optimum of k")
            where = (
                f"measured N* of k = {fmt(r.n_star_measured_k, '.4g')}, grid "
                f"{r.n_min:g}–{r.n_max:g}, a grid end does not count"
            )
            if note is None:
                lines.append(
                    f"* {model}, {gamma_label((r.gamma1, r.gamma2, r.gamma3))}: larger networks "
                    f"learn faster up to an optimal size inside the grid ({where}): {holds(ok)}."
                )
            else:
                lines.append(
                    f"* {model}, {gamma_label((r.gamma1, r.gamma2, r.gamma3))}: k peaks inside the "
                    f"grid ({where}): {holds(ok)}; but {note}, so 'larger networks learn faster "
                    "up to N*' does not hold as stated."
                )
        by_noise = rows[rows.gamma3 > 0].sort_values("gamma3")
        if len(by_noise) >= 2:
            values = by_noise.n_star_measured_steady.to_numpy()
            ok = bool(np.all(np.diff(values) < 0))
            listed = ", ".join(
                f"{fmt(v, '.4g')} at γ3 = {g:g}"
                for v, g in zip(values, by_noise.gamma3, strict=True)
            )
            lines.append(
                f"* {model}: noisier synapses give a smaller N* (measured N* of the steady-state "
                f"error {listed}; strictly decreasing in γ3 required): {holds(ok)}."
            )
        else:
            lines.append(
                f"* {model}: 'noisier synapses give a smaller N*' needs two settings with γ3 > 0; "
                "this run has fewer, so it is not tested here."
            )
    for r in opt[(opt.model == "linear") & (opt.gamma1 > opt.gamma2)].itertuples():
        ok = r.n_star_slides < 0 < r.n_star_measured_steady
        lines.append(
            f"* linear, {gamma_label((r.gamma1, r.gamma2, r.gamma3))} (γ1 > γ2): the slides' N* = "
            f"{fmt(r.n_star_slides, '.4g')} is negative while the measured optimum of the "
            f"steady-state error is {fmt(r.n_star_measured_steady, '.4g')} > 0, so the slides' "
            f"formula fails there: {holds(ok)}."
        )
    lin = agg[agg.model == "linear"]
    if len(lin):
        dev = float(np.max(np.abs(lin.grad_curvature / lin.base_grad_curvature - 1)))
        lines.append(
            f"* linear: growth leaves the curvature along the gradient unchanged (largest relative "
            f"change {dev:.2g} ≤ {CURVATURE_REL_TOL:g}): {holds(dev <= CURVATURE_REL_TOL)}."
        )
    lines.append("")
    return lines


def _support_sentence(closest, inside, testable, a, b) -> str:
    """Which prediction the data support, from closeness and the within-spread counts."""
    n = len(closest)
    if inside[a] == testable and inside[b] == testable:
        return "Both are consistent with the data everywhere: the data cannot tell them apart."
    for x, y in ((a, b), (b, a)):
        if closest.count(x) == n and inside[x] >= inside[y]:
            if inside[x] == testable:
                return f"The data support {x}" + (f" and rule out {y}." if inside[y] == 0 else ".")
            return (
                f"The data favour {x} (closer everywhere, and more often within the spread), but "
                f"that they support it fully does not hold: it misses the spread in "
                f"{testable - inside[x]} of {testable}."
            )
    return "Neither prediction is consistently closer: that the data support one of them does not hold."


def _slides_plus_section(opt: pd.DataFrame) -> list[str]:
    """The slides' formula with + instead of −, against the measured linear optima."""
    rows = opt[opt.model == "linear"]
    if rows.empty:
        return []
    lines = [
        "## The slides' formula read with a sign slip, N* = T(γ1²+γ2²)/γ3²",
        "",
        "| γ | Tγ2²/γ3² | T(γ1²+γ2²)/γ3² | measured N* (steady F), seeds | per-seed range | closest |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    out = []
    for r in rows.itertuples():
        pred = {"Tγ2²/γ3²": r.n_star_closed_form, "T(γ1²+γ2²)/γ3²": r.n_star_slides_plus}
        best, within = nstar_verdict(pred, r.n_star_seed_mean, r.n_star_seed_log_se)
        sep = abs(math.log(r.n_star_slides_plus / r.n_star_closed_form))
        out.append((r, best, within, sep))
        lines.append(
            f"| ({r.gamma1:g}, {r.gamma2:g}, {r.gamma3:g}) | {fmt(r.n_star_closed_form, '.4g')} | "
            f"{fmt(r.n_star_slides_plus, '.4g')} | {fmt(r.n_star_seed_mean, '.4g')} ({r.n_seeds}) | "
            f"{r.n_star_seed_min:.4g}–{r.n_star_seed_max:.4g} | {best} |"
        )
    lines.append("")
    for r, _best, _within, sep in out:
        meas = r.n_star_seed_mean
        plus_dist = abs(math.log(r.n_star_slides_plus / meas))
        excluded = np.isfinite(r.n_star_seed_log_se) and plus_dist > 2 * r.n_star_seed_log_se
        lines.append(
            f"* γ = ({r.gamma1:g}, {r.gamma2:g}, {r.gamma3:g}): the two formulas differ by a factor "
            f"{math.exp(sep):.4g}; the measured optimum {meas:.4g} is "
            + (
                f"more than 2 log-SE away from the + version ({r.n_star_slides_plus:.4g}): simulation rules it out here."
                if excluded
                else f"within 2 log-SE of the + version ({r.n_star_slides_plus:.4g}): simulation cannot rule it out here."
            )
        )
    lines.append("")
    return lines


def report(df: pd.DataFrame, config: SizeConfig) -> str:
    agg, opt = size_tables(df)
    lines = [
        "# Raman et al.: learning rate against network size, and the optimal size N*",
        "",
        "Claims: (1) larger networks learn faster up to an optimal size N*; (2) noisier synapses give a "
        "smaller N*. Derivation (docs/raman.md): growing a linear network by semi-orthogonal embeddings "
        "with c1 = c2 keeps F, ‖∇F‖ and the curvature along the gradient, multiplies Tr∇²F by c2 = √(N/N0), so "
        "⟨k⟩(N) = γ1‖∇F‖/F − (T/2F)[γ1²g + Tr∇²F₀√(N/N0)(γ2²/N + γ3²/T)], maximal at N* = Tγ2²/γ3² "
        "(more generally ((1−β)/β)·Tγ2²/γ3² when Tr∇²F ∝ N^β). The slides' N* = T(γ2² − γ1²)/γ3² goes "
        "negative when γ1 > γ2"
        + _gamma1_above_gamma2_sentence(config)
        + " The slides also assume that the "
        "curvature along the gradient grows like c2; in this construction it stays unchanged (see the verdicts "
        "below), and the column 'N* if g grew like c2' shows what that assumption would predict, "
        "Tγ2²/(γ3² + Tγ1²g/Tr∇²F₀).",
        "",
        f"Settings: T = {config.T:g}; linear {list(config.linear_base)} expanded by c = {list(config.factors)}, "
        f"{config.n_cycles} cycles, {config.linear_repeats} repeats, {config.n_samples} inputs; sigmoid "
        f"{list(config.mlp_base)} ("
        + (
            "warmed up on a fake teacher, see Protocol"
            if protocol_from(config.protocol).warmup_cycles
            else f"pretrained {config.pretrain_cycles} noiseless steps"
        )
        + f") grown to h = {list(config.mlp_hidden)}, "
        f"{config.mlp_cycles} cycles, {config.mlp_repeats} repeats, {config.mlp_samples} inputs (the scripts use "
        "1500 cycles, 12 repeats and 1000 inputs for both, and 500–1000 pretraining cycles: scaled down to fit "
        "2 CPU cores). 'Measured k' is the mean "
        "learning rate over single feedback intervals from the expanded weights.",
        "",
        f"Protocol: {protocol_from(config.protocol).describe()}.",
        "",
        "| model | γ1 | γ2 | γ3 | N* closed form | N* numeric (⟨k⟩ curve) | N* measured (k) | N* measured (steady F) | slides' N* | N* if g grew like c2 | grid |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in opt.itertuples():
        cf = fmt(r.n_star_closed_form, ".4g")
        if r.model == "mlp":
            cf += f" ({beta_text(r.beta)})"
        lines.append(
            f"| {r.model} | {r.gamma1:g} | {r.gamma2:g} | {r.gamma3:g} | {cf} | {fmt(r.n_star_numeric, '.4g')} | "
            f"{fmt(r.n_star_measured_k, '.4g')} | {fmt(r.n_star_measured_steady, '.4g')} | {fmt(r.n_star_slides, '.4g')} | "
            f"{fmt(r.n_star_slides_scaling, '.4g')} | {r.n_min:g}–{r.n_max:g} |"
        )
    lines += [
        "",
        "Measured optima are the vertex of a parabola in log N through the best grid point and its two "
        "neighbours (a grid end when the extremum lies there).",
        "",
        *size_verdicts(agg, opt),
        *nonlinear_nstar_section(opt),
        *_slides_plus_section(opt),
        "",
        "| model | γ | N | ⟨k⟩ predicted | k measured ± SE | steady-state F ± SE |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for r in agg.sort_values(["model", "gamma3", "gamma1", "n_synapses"]).itertuples():
        lines.append(
            f"| {r.model} | ({r.gamma1:g}, {r.gamma2:g}, {r.gamma3:g}) | {r.n_synapses} | {r.k_expected:.4g} | "
            f"{r.k_initial:.4g} ± {fmt(r.k_initial_se, '.2g')} | {r.steady_loss:.4g} ± {fmt(r.steady_loss_se, '.2g')} |"
        )
    lines += ["", "![learning rate and steady-state error vs size](raman_size.png)", ""]
    return "\n".join(lines)


EXPERIMENT = Experiment(
    name="raman-size",
    title="Raman et al.: learning rate vs network size and the optimal size N*",
    Config=SizeConfig,
    quick=SizeConfig.quick,
    cells=cells,
    run_cell=run_cell,
    summarise=summarise,
    plot=plot,
    report=report,
    figures=("raman_size",),
    modules=("syngeo.app.experiments.raman.common",),
)
