r"""Experiment design: how many synapses an experiment needs to tell the geometry apart.

Power analysis by simulation with the estimator the analysis will use (docs/inference.md,
"Planning an experiment"): synthetic weights from :func:`syngeo.simulate_change` under a true
geometry, the planned number of synapses and change magnitude, relative measurement noise on
both snapshots, then :func:`syngeo.infer_geometry` with the errors-in-variables likelihood (the
noise level taken as known; exact weights at noise 0), the candidate set ranked by AIC without
refinement. Per run:

* **identified** — the winning candidate is the true one;
* **euclidean ruled out** — the likelihood-ratio test of the 2-norm against the winner rejects it
  at level α: :math:`2(\ell_{best} - \ell_{2}) > \chi^2_1(1 - \alpha)` (only when the truth is
  not Euclidean and the 2-norm is a candidate).

Power is the fraction of runs; :func:`synapses_for_power` interpolates the number of synapses
at which it reaches a target (log-linear in n between the grid points), and
:func:`confusion_matrix` tabulates winner against truth.

Examples
--------
>>> rows = power_runs("3-norm", 400, 0.05, runs=2, candidates=["ne", 2, 3], rng=0)
>>> sorted(rows[0])[:4]
['best', 'euclidean_ruled_out', 'identified', 'init']
>>> power_table(pd.DataFrame(rows))["identified"].between(0, 1).all()
np.True_
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import scipy.stats

from syngeo.errors import InputError
from syngeo.inference import infer_geometry
from syngeo.potentials import potential as as_potential
from syngeo.simulate import simulate_change
from syngeo.validation import as_choice, as_positive_float, as_positive_int, as_probability

__all__ = [
    "DEFAULT_DESIGN_CANDIDATES",
    "confusion_matrix",
    "power_runs",
    "power_table",
    "synapses_for_power",
]

#: The default candidate set of a planned experiment.
DEFAULT_DESIGN_CANDIDATES = ("NE", "1.5-norm", "2-norm", "2.5-norm", "3-norm")
INITS = ("normal", "lognormal")


def _names(candidates: Sequence[Any] | None) -> list[str]:
    cands = DEFAULT_DESIGN_CANDIDATES if candidates is None else candidates
    names = [as_potential(c).name for c in cands]
    if len(set(names)) < 2:
        raise InputError("a power analysis needs at least two distinct candidates")
    return names


def power_runs(
    truth: Any,
    n: int,
    noise: float,
    *,
    runs: int = 20,
    candidates: Sequence[Any] | None = None,
    init: str = "lognormal",
    relative_change: float = 0.1,
    scale: float = 0.1,
    alpha: float = 0.05,
    rng: Any = 0,
) -> list[dict]:
    """Simulate ``runs`` experiments and fit each; one row per run.

    Parameters
    ----------
    truth : Potential or str or float
        The true geometry (must be among the candidates).
    n : int
        Synapses per experiment.
    noise : float
        Relative measurement noise on both snapshots (0: exact weights).
    runs : int
    candidates : sequence, optional
        Default :data:`DEFAULT_DESIGN_CANDIDATES`.
    init : {"normal", "lognormal", "both"}
        Initial weights (``"both"`` alternates run by run).
    relative_change, scale : float
        The change magnitude and weight scale of :func:`syngeo.simulate_change`.
    alpha : float
        Level of the test that rules out the Euclidean geometry.
    rng : int or sequence of int
        Seed; run r uses ``numpy.random.default_rng([*seed, r])``.
    """
    phi = as_potential(truth)
    names = _names(candidates)
    if phi.name not in names:
        raise InputError(f"the truth {phi.name} is not among the candidates {', '.join(names)}")
    n = as_positive_int(n, "n")
    runs = as_positive_int(runs, "runs")
    noise = float(noise)
    if not (0 <= noise <= 0.5):
        raise InputError(f"noise must be between 0 and 0.5 (relative), got {noise:g}")
    init = as_choice(init, "init", (*INITS, "both"))
    relative_change = as_positive_float(relative_change, "relative_change")
    scale = as_positive_float(scale, "scale")
    alpha = as_probability(alpha, "alpha")
    threshold = float(scipy.stats.chi2.ppf(1 - alpha, 1))
    seed = list(np.atleast_1d(rng).astype(int)) if rng is not None else [0]
    rows = []
    for r in range(runs):
        run_init = INITS[r % 2] if init == "both" else init
        gen = np.random.default_rng([*seed, r])
        sim = simulate_change(
            phi,
            n,
            init=run_init,
            scale=scale,
            relative_change=relative_change,
            noise=noise,
            rng=gen,
        )
        fit = infer_geometry(
            sim.before,
            sim.after,
            names,
            n_bootstrap=0,
            refine=False,
            noise=noise if noise > 0 else None,
            rng=r,
        )
        ll = dict(zip(fit.ranking["candidate"], fit.ranking["log_likelihood"], strict=True))
        best_ll = ll[fit.best]
        eu = float("nan")
        if not phi.is_euclidean and "2-norm" in ll:
            eu = float(2 * (best_ll - ll["2-norm"]) > threshold) if fit.best != "2-norm" else 0.0
        rows.append(
            {
                "truth": phi.name,
                "n": n,
                "noise": noise,
                "run": r,
                "init": run_init,
                "best": fit.best,
                "identified": float(fit.best == phi.name),
                "euclidean_ruled_out": eu,
                "lr_vs_euclidean": (
                    2 * (best_ll - ll["2-norm"]) if "2-norm" in ll else float("nan")
                ),
            }
        )
    return rows


def power_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Power per (truth, noise, n): the fraction of runs identifying the truth and ruling out
    the Euclidean geometry, with their binomial standard errors."""
    g = runs.groupby(["truth", "noise", "n"], sort=True)
    out = g.agg(
        runs=("identified", "size"),
        identified=("identified", "mean"),
        euclidean_ruled_out=("euclidean_ruled_out", "mean"),
    ).reset_index()
    for col in ("identified", "euclidean_ruled_out"):
        p = out[col]
        out[f"{col}_se"] = np.sqrt(p * (1 - p) / out["runs"])
    return out


def synapses_for_power(
    table: pd.DataFrame, target: float = 0.8, column: str = "identified"
) -> pd.DataFrame:
    """Synapses needed for ``target`` power, per (truth, noise), from a :func:`power_table`.

    The first grid n where power reaches the target, refined by linear interpolation in log n
    from the previous grid point; NaN when the largest n stays below it (``reached`` False:
    more than the largest n), the smallest n when it is already reached there
    (``at_smallest`` True: at most the smallest n).
    """
    target = as_probability(target, "target")
    rows = []
    for (truth, noise), part in table.groupby(["truth", "noise"], sort=True):
        part = part.sort_values("n")
        ns = part["n"].to_numpy(dtype=float)
        pw = part[column].to_numpy(dtype=float)
        needed = math.nan
        for i in range(len(ns)):
            if pw[i] >= target:
                if i == 0:
                    needed = ns[0]
                else:
                    f = (target - pw[i - 1]) / (pw[i] - pw[i - 1])
                    needed = float(np.exp(np.log(ns[i - 1]) + f * np.log(ns[i] / ns[i - 1])))
                break
        rows.append(
            {
                "truth": truth,
                "noise": noise,
                "n_needed": needed,
                "reached": not math.isnan(needed),
                "at_smallest": bool(pw[0] >= target),
                "smallest_n": ns[0],
                "largest_n": ns[-1],
            }
        )
    return pd.DataFrame(rows)


def confusion_matrix(runs: pd.DataFrame, candidates: Sequence[str] | None = None) -> pd.DataFrame:
    """Fraction of runs (rows: true geometry; columns: winning candidate); rows sum to 1."""
    names = list(candidates) if candidates is not None else sorted(set(runs["best"]))
    truths = list(dict.fromkeys(runs["truth"]))
    m = pd.crosstab(runs["truth"], runs["best"], normalize="index")
    return m.reindex(index=truths, columns=names, fill_value=0.0)
