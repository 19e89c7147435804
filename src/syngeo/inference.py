r"""Infer the plasticity geometry from synaptic weights before and after learning (THEORY.md §3).

The theory (§2) predicts that the dual change of the *true* potential,
:math:`\Delta_\phi = \nabla\phi(w) - \nabla\phi(w_0)`, is i.i.d. Gaussian. Two estimators rank
hypothesised potentials :math:`\psi` — negative entropy (NE) and the p-norms:

``estimator="cdf"`` (the paper's)
    The candidate whose dual change has the smallest CDF distance to a Gaussian
    (:func:`syngeo.gaussianity.cdf_distance`, uncentred). Scores of different candidates are
    distances of different transformed samples, so they rank but do not weigh evidence.

``estimator="likelihood"`` (default)
    The likelihood of the observed ``after`` weights under the model
    :math:`\nabla\psi(w_i) = \nabla\psi(w_{0,i}) + \xi_i`, :math:`\xi_i \sim \mathcal N(\mu, \sigma^2)`
    i.i.d. By the change of variables :math:`w \mapsto \nabla\psi(w)` (a bijection of the real line
    for a p-norm, of the half-line of :math:`\mathrm{sign}(w_0)` for NE) the density of :math:`w_i`
    given :math:`w_{0,i}` is

    .. math::

        f_\psi(w_i \mid w_{0,i}) = \mathcal N\big(\nabla\psi(w_i) - \nabla\psi(w_{0,i});\,
            \mu, \sigma^2\big)\; \psi''(w_i),

    where :math:`\psi''(w) = (p-1)|w|^{p-2}` (p-norm) or :math:`1/|w|` (NE) is the Jacobian of the
    mirror map. With the MLEs :math:`\hat\mu = \bar\Delta`, :math:`\hat\sigma^2 = \overline{(\Delta -
    \hat\mu)^2}` the profile log-likelihood is

    .. math::

        \ell(\psi) = -\tfrac n2\big(\log(2\pi\hat\sigma^2) + 1\big) + \sum_i \log\psi''(w_i).

    Every candidate is a density of the same data in the same (weight) space, so log-likelihoods
    compare directly. :math:`\mu` is fitted (a global drift — net potentiation, homeostatic
    scaling — is common in data; it costs one parameter shared by all candidates and so does not
    change comparisons); ``fit_mean=False`` fixes :math:`\mu = 0` as the theory states. p is a
    continuous parameter: the profile likelihood is maximised over p (bounded Brent) and the
    likelihood-ratio interval :math:`\{p : 2(\hat\ell - \ell(p)) \le \chi^2_{1}(c)\}` gives a
    confidence interval. NE and p-norms are compared by AIC :math:`= 2k - 2\ell` with
    :math:`k = 2` (μ, σ) plus 1 for p when p is chosen from the data (more than one p-norm
    candidate, or ``refine=True``).

Limitations
-----------
* The likelihood assumes the weights are measured exactly. For p < 2 the Jacobian
  :math:`(p-1)|w|^{p-2}` diverges at 0, so measurement noise on weights near 0 (or exact zeros)
  can dominate :math:`\ell`. Synapses with ``after == 0`` are a point mass outside the continuous
  model: they are left out of the likelihood (the same subset for every candidate, so comparisons
  stay fair) and a warning says how many. The bootstrap intervals need no such assumption.
* The likelihood-ratio interval is asymptotic and assumes one maximum in p inside the bounds
  (1.01, 6); an interval reaching a bound is reported as open there.
* NE describes only synapses that keep a non-zero sign; any sign flip or zero rules it out.

Examples
--------
>>> import numpy as np
>>> from syngeo.inference import infer_geometry
>>> g = np.random.default_rng(0)
>>> w0 = g.normal(0, 0.1, 3000)
>>> u = np.sign(w0) * w0**2 + 0.1 * 0.01 * g.normal(size=3000)   # Gaussian change in 3-norm duals
>>> w = np.sign(u) * np.abs(u) ** 0.5
>>> fit = infer_geometry(w0, w, n_bootstrap=0, rng=0)
>>> fit.best_p is not None and abs(fit.best_p - 3) < 0.2
True
"""

from __future__ import annotations

import math
import textwrap
from dataclasses import asdict, dataclass, field
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import scipy.optimize
import scipy.stats

from syngeo.gaussianity import (
    _CHUNK,
    DEFAULT_GRID,
    _cdf_distance_moments,
    _count_le,
    _grid,
    _pair,
    _rng,
    _sign_changes,
    as_weights,
)
from syngeo.potentials import NegativeEntropy, PNorm, Potential, PotentialLike, potential

__all__ = [
    "ESTIMATORS",
    "MIN_SYNAPSES",
    "ConfidenceInterval",
    "GeometryFit",
    "LikelihoodResult",
    "SyntheticChange",
    "change_log_likelihood",
    "default_candidates",
    "dual_gaussian_log_density",
    "infer_geometry",
    "simulate_change",
]

#: The two estimators.
ESTIMATORS = ("likelihood", "cdf")
#: Fewer synapses than this is an error: the Gaussianity statistics are meaningless below it.
MIN_SYNAPSES = 50
#: Fewer synapses than this gives a warning (the recovery study shows unreliable answers).
FEW_SYNAPSES = 300
#: Change magnitude above which learning may not be lazy (THEORY §2; the paper saw < 0.2).
LAZY_MAGNITUDE = 0.2
#: Search bounds for a continuous p.
P_BOUNDS = (1.01, 6.0)
#: KS statistics in the ranking use at most this many synapses (a fixed random subsample).
KS_MAX_N = 100_000
#: Half-width and step of the fine p grid used by the cdf refinement and the bootstrap.
FINE_STEP = 0.01
_BOOT_HALF_WIDTH = 0.15
#: Bootstrap count vectors are stored (1 byte per synapse and resample) up to this size.
_BOOT_STORE_BYTES = 200_000_000


def default_candidates() -> list[Potential]:
    """NE and the p-norms p = 1.1, 1.2, …, 3.0 (the paper's 21 candidates).

    Examples
    --------
    >>> [c.name for c in default_candidates()][:3]
    ['NE', '1.1-norm', '1.2-norm']
    """
    return [NegativeEntropy()] + [PNorm(round(1.0 + 0.1 * k, 10)) for k in range(1, 21)]


# ------------------------------------------------------------------------------------------------
# prepared data and fast per-candidate kernels
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class _Data:
    before: np.ndarray
    after: np.ndarray
    log_abs_before: np.ndarray  # log|w0| (−inf at 0)
    log_abs_after: np.ndarray
    like_mask: np.ndarray | None  # synapses in the likelihood (after != 0); None = all
    n_like: int
    sum_log_abs_after: float  # over like_mask
    ks_index: np.ndarray | None  # subsample for the KS column; None = all
    work: np.ndarray  # reused buffer for Δ: every kernel overwrites it (allocating 10^7 floats
    #                   per candidate costs as much as computing them)

    @property
    def n(self) -> int:
        return int(self.before.size)


def _prepare(b: np.ndarray, a: np.ndarray, gen: np.random.Generator) -> _Data:
    with np.errstate(divide="ignore"):
        lb = np.log(np.abs(b))
        la = np.log(np.abs(a))
    zero_after = a == 0
    mask = None if not zero_after.any() else ~zero_after
    n_like = int(a.size if mask is None else mask.sum())
    s = float(np.sum(la if mask is None else la[mask]))
    ks_index = None
    if a.size > KS_MAX_N:
        ks_index = np.sort(gen.choice(a.size, size=KS_MAX_N, replace=False))
    return _Data(b, a, lb, la, mask, n_like, s, ks_index, np.empty_like(a))


def _dot(x: np.ndarray, y: np.ndarray) -> float:
    # einsum, not BLAS: multithreaded BLAS level-1 calls stall on a busy machine
    return float(np.einsum("i,i->", x, y))


def _gemv(m: np.ndarray, x: np.ndarray) -> np.ndarray:
    return np.einsum("ij,j->i", m, x)


class _Dual(NamedTuple):
    delta: np.ndarray  # Δ (a view of data.work for p-norms: valid until the next call)
    ref_sq: float  # ‖∇ψ(before)‖²
    mean: float  # mean of Δ
    var: float  # population variance of Δ


def _dual(data: _Data, psi: Potential) -> _Dual:
    """Δ = ∇ψ(after) − ∇ψ(before) with its mean, variance and ‖∇ψ(before)‖², in one pass.

    p-norm duals reuse log|w| across candidates: sign(w)|w|^(p−1) = copysign(exp((p−1)·log|w|), w)
    (exactly 0 at w = 0, as exp(−inf) = 0), computed chunk by chunk into ``data.work``; the
    moments are accumulated on the way (Σ Δ and Σ Δ², with an exact second pass when the mean
    dominates the spread and the one-pass variance would lose digits).
    """
    b, a = data.before, data.after
    if not isinstance(psi, PNorm):
        if isinstance(psi, NegativeEntropy):
            gb = np.sign(b) * (data.log_abs_before + 1.0)
            ga = np.sign(a) * (data.log_abs_after + 1.0)
        else:
            gb = np.asarray(psi.grad(b), dtype=np.float64)
            ga = np.asarray(psi.grad(a), dtype=np.float64)
        delta = ga - gb
        mean = float(np.mean(delta))
        return _Dual(delta, _dot(gb, gb), mean, _var(delta, mean))
    delta = data.work
    if psi.p == 2.0:
        np.subtract(a, b, out=delta)
        mean = float(np.mean(delta))
        return _Dual(delta, _dot(b, b), mean, _var(delta, mean))
    q = psi.p - 1.0
    ref = s1 = s2 = 0.0
    size = min(_CHUNK, a.size)
    gb_buf, ga_buf = np.empty(size), np.empty(size)
    for s in range(0, a.size, _CHUNK):
        sl = slice(s, s + _CHUNK)
        m = min(_CHUNK, a.size - s)
        gb, ga, d = gb_buf[:m], ga_buf[:m], delta[sl]
        np.multiply(data.log_abs_before[sl], q, out=gb)
        np.exp(gb, out=gb)
        np.copysign(gb, b[sl], out=gb)
        ref += _dot(gb, gb)
        np.multiply(data.log_abs_after[sl], q, out=ga)
        np.exp(ga, out=ga)
        np.copysign(ga, a[sl], out=ga)
        np.subtract(ga, gb, out=d)
        s1 += float(np.sum(d))
        s2 += _dot(d, d)
    n = a.size
    mean = s1 / n
    var = s2 / n - mean * mean
    if not var > 1e-6 * mean * mean:  # cancellation: redo exactly
        var = _var(delta, mean)
    return _Dual(delta, ref, mean, var)


def _var(x: np.ndarray, mean: float) -> float:
    """Population variance Σ(x − mean)²/n in cache-sized chunks (no n-sized temporary)."""
    size = min(_CHUNK, x.size)
    buf = np.empty(size)
    acc = 0.0
    for s in range(0, x.size, _CHUNK):
        c = buf[: min(_CHUNK, x.size - s)]
        np.subtract(x[s : s + _CHUNK], mean, out=c)
        acc += _dot(c, c)
    return acc / x.size


def _log_jacobian(data: _Data, psi: Potential) -> float:
    """Σ_i log ψ''(w_i) over the likelihood synapses."""
    if isinstance(psi, PNorm):
        return data.n_like * math.log(psi.p - 1.0) + (psi.p - 2.0) * data.sum_log_abs_after
    if isinstance(psi, NegativeEntropy):
        return -data.sum_log_abs_after
    a = data.after if data.like_mask is None else data.after[data.like_mask]
    with np.errstate(divide="ignore"):
        return float(np.sum(np.log(np.asarray(psi.hessian_diag(a), dtype=np.float64))))


def _gauss_part(data: _Data, dual: _Dual, fit_mean: bool) -> tuple[float, float, float]:
    """(Σ_i log N(Δ_i; μ̂, σ̂²), μ̂, σ̂) over the likelihood synapses, at the MLEs."""
    if data.like_mask is None:
        mu = dual.mean if fit_mean else 0.0
        var = dual.var if fit_mean else dual.var + dual.mean * dual.mean
    else:
        d = dual.delta[data.like_mask]
        mu = float(np.mean(d)) if fit_mean else 0.0
        var = _var(d, mu)
    if not var > 0:
        return math.inf, mu, 0.0
    return -0.5 * data.n_like * (math.log(2.0 * math.pi * var) + 1.0), mu, math.sqrt(var)


def _loglik(data: _Data, psi: Potential, dual: _Dual, fit_mean: bool) -> float:
    return _gauss_part(data, dual, fit_mean)[0] + _log_jacobian(data, psi)


def _loglik_p(data: _Data, p: float, fit_mean: bool) -> float:
    psi = PNorm(p)
    return _loglik(data, psi, _dual(data, psi), fit_mean)


def _cdf_only(data: _Data, psi: Potential, t: np.ndarray) -> float:
    dual = _dual(data, psi)
    delta, std = dual.delta, math.sqrt(dual.var)
    if not std > 0:
        return math.nan
    return _cdf_distance_moments(delta, t, 0.0, std)


def _evaluate(data: _Data, psi: Potential, t: np.ndarray, fit_mean: bool) -> dict[str, Any]:
    """Every ranking column of one candidate (moments computed once and shared)."""
    dual = _dual(data, psi)
    delta, ref_sq, mean, var = dual
    std = math.sqrt(var)
    sq_norm = (var + mean * mean) * delta.size
    loglik = _loglik(data, psi, dual, fit_mean)
    row: dict[str, Any] = {
        "candidate": psi.name,
        "p": psi.p if isinstance(psi, PNorm) else math.nan,
        "mean": mean,
        "std": std,
        "change_magnitude": math.sqrt(sq_norm / ref_sq) if ref_sq > 0 else math.nan,
        "log_likelihood": loglik,
    }
    if std > 0:
        row["cdf_distance"] = _cdf_distance_moments(delta, t, 0.0, std)
        row["cdf_distance_centred"] = _cdf_distance_moments(delta, t, mean, std)
        z = delta if data.ks_index is None else delta[data.ks_index]
        row["ks_statistic"] = float(scipy.stats.kstest(z / std, "norm", method="asymp").statistic)
    else:
        row["cdf_distance"] = row["cdf_distance_centred"] = row["ks_statistic"] = math.nan
    return row


# ------------------------------------------------------------------------------------------------
# public likelihood helpers
# ------------------------------------------------------------------------------------------------
def dual_gaussian_log_density(
    after: Any, before: Any, potential_: PotentialLike, *, mean: float, std: float
) -> np.ndarray:
    r"""Element-wise log-density of ``after`` given ``before`` under the dual-Gaussian model.

    .. math::

        \log f_\psi(w \mid w_0) = \log\mathcal N(\nabla\psi(w) - \nabla\psi(w_0); \mu, \sigma^2)
            + \log\psi''(w)

    For NE the density lives on the half-line of :math:`\mathrm{sign}(w_0)`: it is
    :math:`-\infty` where ``after`` has the other sign or is 0.

    Examples
    --------
    >>> import numpy as np, scipy.integrate
    >>> f = lambda w: np.exp(dual_gaussian_log_density([w], [0.3], "3-norm", mean=0, std=0.05))[0]
    >>> round(scipy.integrate.quad(f, -2, 2, points=[0.0, 0.3], limit=200)[0], 6)
    1.0
    """
    a = as_weights(after, "AFTER")
    b = as_weights(before, "BEFORE")
    if a.shape != b.shape:
        raise ValueError(f"AFTER and BEFORE must have the same length, got {a.size} and {b.size}")
    if not (math.isfinite(std) and std > 0):
        raise ValueError(f"std must be a finite positive number, got {std!r}")
    psi = potential(potential_)
    if isinstance(psi, NegativeEntropy):
        ok = (np.sign(a) == np.sign(b)) & (a != 0)
        out = np.full(a.shape, -np.inf)
        if ok.any():
            delta = np.sign(a[ok]) * (np.log(np.abs(a[ok])) + 1) - np.sign(b[ok]) * (
                np.log(np.abs(b[ok])) + 1
            )
            out[ok] = scipy.stats.norm.logpdf(delta, mean, std) - np.log(np.abs(a[ok]))
        return out
    delta = np.asarray(psi.grad(a), dtype=np.float64) - np.asarray(psi.grad(b), dtype=np.float64)
    with np.errstate(divide="ignore"):
        return scipy.stats.norm.logpdf(delta, mean, std) + np.log(
            np.asarray(psi.hessian_diag(a), dtype=np.float64)
        )


@dataclass(frozen=True)
class LikelihoodResult:
    r"""Profile log-likelihood of one candidate (see the module docstring).

    Attributes
    ----------
    potential : str
    log_likelihood : float
        :math:`\ell = \sum_i \log\mathcal N(\Delta_i; \hat\mu, \hat\sigma^2) + \sum_i\log\psi''(w_i)`.
    log_jacobian : float
        The second sum.
    mean, std : float
        MLEs :math:`\hat\mu` (0 if not fitted) and :math:`\hat\sigma`.
    n : int
        Synapses in the likelihood (``after != 0``).
    """

    potential: str
    log_likelihood: float
    log_jacobian: float
    mean: float
    std: float
    n: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def change_log_likelihood(
    before: Any, after: Any, potential_: PotentialLike, *, fit_mean: bool = True
) -> LikelihoodResult:
    r"""Profile log-likelihood of ``after`` given ``before`` under a candidate potential.

    Synapses with ``after == 0`` are left out (see Limitations in the module docstring).

    Examples
    --------
    >>> import numpy as np
    >>> g = np.random.default_rng(0)
    >>> w0 = g.normal(0, 0.1, 2000); w = w0 + 0.01 * g.normal(size=2000)
    >>> l2 = change_log_likelihood(w0, w, "2-norm").log_likelihood
    >>> l3 = change_log_likelihood(w0, w, "3-norm").log_likelihood
    >>> l2 > l3
    True
    """
    b, a = _pair(before, after)
    psi = potential(potential_)
    if isinstance(psi, NegativeEntropy):
        sc = _sign_changes(b, a)
        if not sc.ne_valid:
            raise ValueError(f"{sc.reason()}; drop those synapses or use a p-norm")
    data = _prepare(b, a, np.random.default_rng(0))
    if data.n_like == 0:
        raise ValueError("every weight in AFTER is 0: the likelihood has no data")
    gauss, mu, sigma = _gauss_part(data, _dual(data, psi), fit_mean)
    jac = _log_jacobian(data, psi)
    return LikelihoodResult(psi.name, gauss + jac, jac, mu, sigma, data.n_like)


# ------------------------------------------------------------------------------------------------
# synthetic data with known truth
# ------------------------------------------------------------------------------------------------
INITS = ("gaussian", "lognormal")


@dataclass(frozen=True, eq=False)
class SyntheticChange:
    """Weights before/after a change that is exactly Gaussian in a known dual space.

    Attributes
    ----------
    before, after : numpy.ndarray, shape=[n]
        Observed weights (with measurement noise if requested).
    before_true, after_true : numpy.ndarray, shape=[n]
        Noise-free weights.
    potential : Potential
        The true potential φ.
    init : str
    dual_std : float
        Standard deviation of the dual change ξ.
    noise : float
        Relative measurement noise.
    """

    before: np.ndarray
    after: np.ndarray
    before_true: np.ndarray
    after_true: np.ndarray
    potential: Potential
    init: str
    dual_std: float
    noise: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "potential": self.potential.name,
            "init": self.init,
            "n": int(self.before.size),
            "dual_std": self.dual_std,
            "noise": self.noise,
        }

    def __repr__(self) -> str:
        return (
            f"SyntheticChange(potential={self.potential.name!r}, init={self.init!r}, "
            f"n={self.before.size}, dual_std={self.dual_std:.3g}, noise={self.noise:g})"
        )


def simulate_change(
    potential_: PotentialLike,
    n: int,
    *,
    init: str = "gaussian",
    scale: float = 0.1,
    relative_change: float = 0.1,
    noise: float = 0.0,
    rng: Any = None,
) -> SyntheticChange:
    r"""Weights whose change is i.i.d. Gaussian in the dual space of ``potential_`` (THEORY §4).

    The "robustness to the potential" protocol of the paper (§4.2, B.2):

    .. math::

        \nabla\phi(w) = \nabla\phi(w_0) + c\,|\nabla\phi(s)|\,\xi, \qquad \xi \sim \mathcal N(0, I),

    with :math:`s` = ``scale`` (1/√100 = 0.1 in the paper), :math:`c` = ``relative_change`` (0.1),
    and :math:`w_0 \sim \mathcal N(0, s^2)` (``init="gaussian"``) or, for ``init="lognormal"``,
    :math:`|w_0|` log-normal with the mean :math:`s\sqrt{2/\pi}` and variance
    :math:`s^2(1 - 2/\pi)` of :math:`|\mathcal N(0, s^2)|`, times a random sign. NE keeps each
    weight's sign (:math:`w = \mathrm{sign}(w_0)\exp(\mathrm{sign}(w_0)u - 1)`).
    ``noise`` > 0 multiplies every observed weight, before and after independently, by
    :math:`1 + \text{noise}\cdot\eta`, :math:`\eta \sim \mathcal N(0, 1)` (measurement noise).

    Examples
    --------
    >>> sim = simulate_change("3-norm", 1000, rng=0)
    >>> sim.before.shape, sim.potential.name
    ((1000,), '3-norm')
    """
    phi = potential(potential_)
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    if init not in INITS:
        raise ValueError(f"unknown init {init!r}: use one of {', '.join(INITS)}")
    if not (scale > 0 and relative_change > 0 and noise >= 0):
        raise ValueError(
            f"need scale > 0, relative_change > 0 and noise >= 0, got {scale}, {relative_change}, "
            f"{noise}"
        )
    gen = _rng(rng)
    if init == "gaussian":
        w0 = gen.normal(0.0, scale, n)
    else:
        mean = scale * math.sqrt(2.0 / math.pi)
        var = scale**2 * (1.0 - 2.0 / math.pi)
        s2 = math.log1p(var / mean**2)
        w0 = gen.lognormal(math.log(mean) - s2 / 2, math.sqrt(s2), n) * gen.choice([-1.0, 1.0], n)
    dual_std = relative_change * abs(float(phi.grad(np.array(scale))))
    u = np.asarray(phi.grad(w0), dtype=np.float64) + dual_std * gen.normal(size=n)
    w = np.asarray(phi.grad_inverse(u, sign=np.sign(w0)), dtype=np.float64)
    b_obs, a_obs = w0, w
    if noise > 0:
        b_obs = w0 * (1.0 + noise * gen.normal(size=n))
        a_obs = w * (1.0 + noise * gen.normal(size=n))
    return SyntheticChange(b_obs, a_obs, w0, w, phi, init, dual_std, float(noise))


# ------------------------------------------------------------------------------------------------
# result objects
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ConfidenceInterval:
    """A confidence interval for p.

    Attributes
    ----------
    low, high : float
    level : float
        Nominal coverage, e.g. 0.95.
    method : str
        ``"likelihood-ratio"`` or ``"bootstrap-percentile"``.
    open_low, open_high : bool
        True where the interval reached the search bound (the true limit may lie beyond).
    """

    low: float
    high: float
    level: float
    method: str
    open_low: bool = False
    open_high: bool = False

    def __contains__(self, p: float) -> bool:
        return self.low <= p <= self.high

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __str__(self) -> str:
        lo = f"{'≤' if self.open_low else ''}{self.low:.3f}"
        hi = f"{'≥' if self.open_high else ''}{self.high:.3f}"
        return f"[{lo}, {hi}] ({self.level:.0%} {self.method})"


RANKING_COLUMNS = (
    "rank",
    "candidate",
    "p",
    "cdf_distance",
    "cdf_distance_centred",
    "ks_statistic",
    "log_likelihood",
    "delta_aic",
    "change_magnitude",
    "bootstrap_win_fraction",
    "mean",
    "std",
    "refined",
    "note",
)


@dataclass(frozen=True, eq=False)
class GeometryFit:
    """Which plasticity geometry fits the weights best (returned by :func:`infer_geometry`).

    Attributes
    ----------
    best : str
        Name of the winning candidate (``"NE"``, ``"3-norm"``, ``"2.9731-norm"``, ...).
    best_potential : Potential
    best_p : float or None
        p of the winner; ``None`` when NE wins.
    estimator : str
        ``"likelihood"`` or ``"cdf"``.
    ranking : pandas.DataFrame
        One row per candidate, best first, columns ``RANKING_COLUMNS``: the estimator's rank
        (NaN for an excluded candidate), p (NaN for NE), both CDF distances, the KS statistic
        (on a fixed subsample of ≤ 100 000 synapses), the profile log-likelihood, ΔAIC to the
        best AIC, the change magnitude, the bootstrap win fraction (NaN for the refined row and
        without bootstrap), the fitted mean and std of Δ, whether the row comes from the
        refinement in p, and a note (why a candidate was excluded).
    p_interval : ConfidenceInterval or None
        Confidence interval for p of the best p-norm: likelihood-ratio for the likelihood
        estimator (needs ``refine=True``), bootstrap percentile for the cdf estimator (needs
        ``n_bootstrap > 0``).
    p_interval_bootstrap : ConfidenceInterval or None
        Bootstrap percentile interval of the estimator's best p (``None`` without bootstrap).
    margin : float
        Score gap between the two best candidates of the grid (refined row left out): the
        runner-up's cdf distance minus the best's (cdf), or the runner-up's ΔAIC (likelihood).
    n_synapses, n_sign_flips, n_zero_weights : int
        ``n_zero_weights`` counts synapses that are 0 before or after.
    ne_ruled_out : bool
    ne_ruled_out_reason : str or None
    n_bootstrap : int
    warnings : tuple of str
    """

    best: str
    best_potential: Potential
    best_p: float | None
    estimator: str
    ranking: pd.DataFrame
    p_interval: ConfidenceInterval | None
    p_interval_bootstrap: ConfidenceInterval | None
    margin: float
    n_synapses: int
    n_sign_flips: int
    n_zero_weights: int
    ne_ruled_out: bool
    ne_ruled_out_reason: str | None
    n_bootstrap: int
    confidence: float
    warnings: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python dictionary (the ranking as a list of row dicts)."""
        return {
            "best": self.best,
            "best_p": self.best_p,
            "estimator": self.estimator,
            "p_interval": None if self.p_interval is None else self.p_interval.to_dict(),
            "p_interval_bootstrap": (
                None if self.p_interval_bootstrap is None else self.p_interval_bootstrap.to_dict()
            ),
            "margin": self.margin,
            "n_synapses": self.n_synapses,
            "n_sign_flips": self.n_sign_flips,
            "n_zero_weights": self.n_zero_weights,
            "ne_ruled_out": self.ne_ruled_out,
            "ne_ruled_out_reason": self.ne_ruled_out_reason,
            "n_bootstrap": self.n_bootstrap,
            "confidence": self.confidence,
            "warnings": list(self.warnings),
            "ranking": self.ranking.to_dict(orient="records"),
        }

    def __repr__(self) -> str:
        p = "" if self.best_p is None else f", best_p={self.best_p:.4g}"
        ci = "" if self.p_interval is None else f", p_interval={self.p_interval}"
        ne = f", NE ruled out ({self.n_sign_flips} sign flips)" if self.ne_ruled_out else ""
        return (
            f"GeometryFit(best={self.best!r}{p}{ci}, estimator={self.estimator!r}, "
            f"margin={self.margin:.4g}, n_synapses={self.n_synapses}{ne}, "
            f"warnings={len(self.warnings)})"
        )

    def summary(self, top: int = 5) -> str:
        """Multi-line human-readable report: verdict, interval, top candidates, warnings."""
        lines = [
            f"Best geometry: {self.best} (estimator: {self.estimator}, {self.n_synapses} synapses)",
        ]
        if self.p_interval is not None:
            what = "p interval" if self.best_p is not None else "p interval of the p-norms"
            lines.append(f"{what}: {self.p_interval}")
            if self.best_p is None and self.p_interval.open_low:
                lines.append("  (reaches p -> 1, the limit in which the p-norms become NE)")
        if self.p_interval_bootstrap is not None and self.p_interval_bootstrap != self.p_interval:
            lines.append(f"p interval (bootstrap): {self.p_interval_bootstrap}")
        score = "ΔAIC" if self.estimator == "likelihood" else "cdf distance"
        lines.append(f"margin to the runner-up ({score}): {self.margin:.4g}")
        if self.ne_ruled_out:
            lines.append(f"NE ruled out: {self.ne_ruled_out_reason}")
        cols = [
            "rank",
            "candidate",
            "cdf_distance",
            "log_likelihood",
            "delta_aic",
            "change_magnitude",
            "bootstrap_win_fraction",
        ]
        lines.append(self.ranking[cols].head(top).to_string(index=False, float_format="%.4g"))
        for w in self.warnings:
            lines.append(textwrap.fill(f"warning: {w}", 100, subsequent_indent="  "))
        return "\n".join(lines)


# ------------------------------------------------------------------------------------------------
# infer_geometry
# ------------------------------------------------------------------------------------------------
def _parse_candidates(candidates: Any) -> list[Potential]:
    if candidates is None:
        return default_candidates()
    if isinstance(candidates, (str, Potential, int, float)):
        candidates = [candidates]
    try:
        parsed = [potential(c) for c in candidates]
    except TypeError:
        raise TypeError(
            "candidates must be a list of potentials, names ('ne', '3-norm') or numbers p > 1"
        ) from None
    out: list[Potential] = []
    seen: set[str] = set()
    for psi in parsed:
        if psi.name not in seen:
            seen.add(psi.name)
            out.append(psi)
    if not out:
        raise ValueError("candidates is empty: pass at least one potential, or None for defaults")
    return out


def _check_args(estimator: str, n_bootstrap: Any, confidence: Any) -> None:
    if estimator not in ESTIMATORS:
        raise ValueError(f"unknown estimator {estimator!r}: use one of {', '.join(ESTIMATORS)}")
    if isinstance(n_bootstrap, bool) or not isinstance(n_bootstrap, (int, np.integer)):
        raise TypeError(f"n_bootstrap must be an integer >= 0, got {n_bootstrap!r}")
    if n_bootstrap < 0:
        raise ValueError(f"n_bootstrap must be >= 0, got {n_bootstrap}")
    if not (isinstance(confidence, (int, float)) and 0 < confidence < 1):
        raise ValueError(f"confidence must be a number in (0, 1), got {confidence!r}")


def _aic_k(psi: Potential, p_fitted: bool) -> int:
    return 2 + (1 if isinstance(psi, PNorm) and p_fitted else 0)


def _bracket(ps: list[float], best: float) -> tuple[float, float]:
    """Neighbours of ``best`` in the sorted grid ``ps``; search bounds beyond the grid ends."""
    ps = sorted(ps)
    i = ps.index(best)
    lo = ps[i - 1] if i > 0 else P_BOUNDS[0]
    hi = ps[i + 1] if i < len(ps) - 1 else P_BOUNDS[1]
    return max(lo, P_BOUNDS[0]), min(hi, P_BOUNDS[1])


def _zoom_cdf(data: _Data, t: np.ndarray, lo: float, hi: float, p0: float, d0: float) -> float:
    """Minimise the CDF distance over p in (lo, hi) around the grid best p0.

    Where (lo, hi) extends past a grid end (wider than 0.25), first walk outwards from p0 in steps
    of 0.1 while the distance keeps improving (stopping after two steps without improvement);
    then scan the best ± 0.05 at step 0.05 and ± 0.04 at step 0.01 (11 evaluations). The CDF distance is not smooth in
    p for small n, so grid scans are safer than a derivative-free scalar minimiser.
    """
    cache: dict[float, float] = {round(p0, 4): d0}

    def dist(p: float) -> float:
        p = round(p, 4)
        if p not in cache:
            cache[p] = _cdf_only(data, PNorm(p), t) if lo < p < hi else math.inf
        return cache[p]

    best = p0
    for direction in (-1.0, 1.0):
        if (p0 - lo if direction < 0 else hi - p0) <= 0.25:
            continue
        misses, p = 0, p0
        while misses < 2:
            p = round(p + direction * 0.1, 4)
            if not lo < p < hi:
                break
            if dist(p) < dist(best):
                best, misses = p, 0
            else:
                misses += 1
    for step, half in ((0.05, 1), (FINE_STEP, 4)):  # ± (previous step − step)
        centre = best
        for k in range(-half, half + 1):
            p = round(centre + k * step, 4)
            if dist(p) < dist(best):
                best = p
    return float(best)


class _ProfileLikelihood:
    """ℓ(p) of the p-norm family with a cache (Brent, the interval search and brentq share it)."""

    def __init__(self, data: _Data, fit_mean: bool) -> None:
        self.data, self.fit_mean, self.cache = data, fit_mean, {}

    def __call__(self, p: float) -> float:
        p = float(p)
        if p not in self.cache:
            self.cache[p] = _loglik_p(self.data, p, self.fit_mean)
        return self.cache[p]


def _maximise_likelihood(ell: _ProfileLikelihood, lo: float, hi: float, p0: float) -> float:
    """argmax ℓ(p) on (lo, hi) near the grid best p0, to 1e-4.

    Where (lo, hi) extends past a grid end, first walk outwards from p0 in steps of 0.1 while ℓ
    improves, so that bounded Brent works on a bracket of width ≤ 0.2 around the maximum.
    """
    best = p0
    for direction in (-1.0, 1.0):
        if (p0 - lo if direction < 0 else hi - p0) <= 0.25:
            continue
        p = p0
        while lo < p + direction * 0.1 < hi and ell(p + direction * 0.1) > ell(p):
            p = p + direction * 0.1
        if ell(p) > ell(best):
            best = p
    a, b = max(lo, best - 0.1), min(hi, best + 0.1)
    res = scipy.optimize.minimize_scalar(
        lambda p: -ell(p), bounds=(a, b), method="bounded", options={"xatol": 1e-4}
    )
    return float(res.x) if -res.fun > ell(best) else best


def _lr_interval(ell: _ProfileLikelihood, p_hat: float, confidence: float) -> ConfidenceInterval:
    """{p : 2(ℓ̂ − ℓ(p)) ≤ χ²₁(confidence)} by root finding on each side of p̂.

    The half-width is first guessed from the curvature of ℓ at p̂ (quadratic approximation,
    w = sqrt(2·drop/|ℓ''|)); a bracket [p̂ ± w/2, p̂ ± 3^k·1.5w] is grown until ℓ has dropped by
    more than χ²₁(confidence)/2, and brentq finds the crossing inside it (to 1e-5).
    """
    drop = 0.5 * float(scipy.stats.chi2.ppf(confidence, 1))
    l_hat = ell(p_hat)

    def f(p: float) -> float:
        return ell(p) - (l_hat - drop)

    lo_b, hi_b = P_BOUNDS
    h = min(1e-3, (p_hat - lo_b) / 2, (hi_b - p_hat) / 2)
    curv = (ell(p_hat + h) + ell(p_hat - h) - 2 * l_hat) / h**2 if h > 0 else 0.0
    w = math.sqrt(2 * drop / -curv) if curv < 0 else 0.1
    ends, opened = [], []
    for side, bound in ((-1.0, lo_b), (1.0, hi_b)):
        inner, reach = p_hat, 0.5 * w
        is_open = False
        while True:
            outer = p_hat + side * reach
            if side * (outer - bound) >= 0:
                outer = bound
            if f(outer) < 0:
                break
            inner = outer
            if outer == bound:
                is_open = True
                break
            reach *= 3
        if is_open:
            ends.append(bound)
        else:
            a, b = sorted((inner, outer))
            ends.append(scipy.optimize.brentq(f, a, b, xtol=1e-5))
        opened.append(is_open)
    return ConfidenceInterval(
        float(ends[0]), float(ends[1]), float(confidence), "likelihood-ratio", *opened
    )


def _bootstrap(
    data: _Data,
    grid_cands: list[Potential],
    boot_ps: list[float],
    estimator: str,
    p_fitted: bool,
    fit_mean: bool,
    t: np.ndarray,
    n_bootstrap: int,
    gen: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Scores of each candidate on each resample of synapses.

    Returns ``(grid_scores, p_scores)`` of shapes [B, len(grid_cands)] and [B, len(boot_ps)],
    lower is better (cdf distance, or AIC). A resample is a multinomial count vector over the
    synapses (equivalent to drawing n synapses with replacement).
    """
    n = data.n
    # Resample b draws n synapse indices with replacement from its own seed; its count vector
    # is kept (as uint8: a count above 255 has probability ~ e^-1/256!) when all of them fit in
    # _BOOT_STORE_BYTES, and regenerated from the seed for every candidate otherwise.
    seeds = gen.integers(0, 2**63, size=n_bootstrap)

    def resample_counts(b: int) -> np.ndarray:
        return np.bincount(np.random.default_rng(seeds[b]).integers(0, n, size=n), minlength=n)

    store = n_bootstrap * n <= _BOOT_STORE_BYTES
    if store:
        counts = np.empty((n_bootstrap, n), dtype=np.uint8)
        for b in range(n_bootstrap):
            counts[b] = resample_counts(b)
    block = max(1, min(n_bootstrap, 4_000_000 // max(n, 1)))
    mask = data.like_mask
    la = np.where(np.isfinite(data.log_abs_after), data.log_abs_after, 0.0)
    if mask is not None:
        la = np.where(mask, la, 0.0)

    def blocks():
        for s in range(0, n_bootstrap, block):
            e = min(s + block, n_bootstrap)
            if store:
                c = counts[s:e].astype(np.float64)
            else:
                c = np.stack([resample_counts(b) for b in range(s, e)]).astype(np.float64)
            cl = c if mask is None else c * mask
            yield s, c, cl

    n_like_b = np.concatenate([cl.sum(axis=1) for _, _, cl in blocks()])
    sum_la_b = np.concatenate([_gemv(cl, la) for _, _, cl in blocks()])

    def scores(psi: Potential) -> np.ndarray:
        delta = _dual(data, psi).delta
        if estimator == "likelihood":
            d = delta if mask is None else np.where(mask, delta, 0.0)
            d2 = d * d
            s1 = np.empty(n_bootstrap)
            s2 = np.empty(n_bootstrap)
            for s, _, cl in blocks():
                s1[s : s + cl.shape[0]] = _gemv(cl, d)
                s2[s : s + cl.shape[0]] = _gemv(cl, d2)
            mu = s1 / n_like_b if fit_mean else 0.0
            var = s2 / n_like_b - (mu * mu if fit_mean else 0.0)
            var = np.maximum(var, np.finfo(float).tiny)
            gauss = -0.5 * n_like_b * (np.log(2 * math.pi * var) + 1.0)
            if isinstance(psi, PNorm):
                jac = n_like_b * math.log(psi.p - 1.0) + (psi.p - 2.0) * sum_la_b
            elif isinstance(psi, NegativeEntropy):
                jac = -sum_la_b
            else:
                with np.errstate(divide="ignore"):
                    lh = np.log(np.asarray(psi.hessian_diag(data.after), dtype=np.float64))
                lh = np.where(np.isfinite(lh), lh, 0.0)
                jac = np.concatenate([_gemv(cl, lh) for _, _, cl in blocks()])
            return 2 * _aic_k(psi, p_fitted) - 2 * (gauss + jac)
        out = np.empty(n_bootstrap)
        m = t.size
        phi = scipy.stats.norm.cdf(t[:-1])
        dt = np.diff(t)
        d2 = delta * delta
        for s, c_block, _ in blocks():
            for r, c in enumerate(c_block):
                mean = _dot(c, delta) / n
                std = math.sqrt(max(_dot(c, d2) / n - mean * mean, 0.0))
                if not std > 0:
                    out[s + r] = math.nan
                    continue
                ecdf = _count_le(delta, t, 0.0, std, weights=c) / n
                out[s + r] = float(np.sum(np.abs(ecdf[: m - 1] - phi) * dt))
        return out

    grid_scores = np.column_stack([scores(psi) for psi in grid_cands])
    p_scores = np.column_stack([scores(PNorm(p)) for p in boot_ps]) if boot_ps else None
    return grid_scores, p_scores


def infer_geometry(
    before: Any,
    after: Any,
    candidates: Any = None,
    *,
    estimator: str = "likelihood",
    n_bootstrap: int = 200,
    refine: bool = True,
    confidence: float = 0.95,
    fit_mean: bool = True,
    grid: tuple[float, float, int] = DEFAULT_GRID,
    rng: Any = None,
) -> GeometryFit:
    r"""Rank candidate potentials by how well they explain the change from ``before`` to ``after``.

    Parameters
    ----------
    before, after : array-like, shape=[...]
        Weights of the same synapses before and after learning (NumPy, list or torch; flattened).
        At least :data:`MIN_SYNAPSES` (50) synapses; a warning below 300.
    candidates : sequence of Potential / str / float, optional
        Default: NE and p = 1.1, 1.2, …, 3.0 (:func:`default_candidates`).
    estimator : {"likelihood", "cdf"}
        ``"likelihood"`` ranks by AIC of the dual-Gaussian likelihood (module docstring);
        ``"cdf"`` by the paper's CDF distance (smaller is better).
    n_bootstrap : int
        Bootstrap resamples of the synapses (0 to skip). Each resample recomputes every grid
        candidate's score and the best p on a fine grid (step 0.01, ±0.15 around the estimate,
        plus the grid). Cost O(n_bootstrap × candidates × n).
    refine : bool
        Refine p near the best grid p-norm: bounded Brent on the profile likelihood
        (likelihood), or 0.05- then 0.01-step grids between the neighbouring grid values (cdf,
        whose score is not smooth in p). At a grid end the search extends to the bounds
        (1.01, 6) — except, for the cdf estimator with NE among the candidates, below the
        smallest grid p: p-norms with p -> 1 approach NE and the CDF distance cannot separate
        them (see docs/inference.md).
    confidence : float
        Level of the p intervals.
    fit_mean : bool
        Fit the mean μ of the dual change (default) or fix μ = 0 (likelihood only).
    grid : (low, high, num)
        Grid of the CDF distance.
    rng : numpy.random.Generator or int or None
        Bootstrap resamples and the KS subsample (n > 100 000).

    Returns
    -------
    GeometryFit

    Raises
    ------
    ValueError
        Length mismatch, NaN/inf, fewer than 50 synapses, no change or a constant change, an
        unknown estimator or candidate, no usable candidate (only NE with sign flips).

    Notes
    -----
    NE needs every synapse to keep a non-zero sign. If any weight flips sign or is 0, NE is
    *ruled out*: it stays in the ranking with NaN scores, no rank and the reason in ``note``.
    """
    _check_args(estimator, n_bootstrap, confidence)
    b, a = _pair(before, after)
    n = b.size
    if n < MIN_SYNAPSES:
        raise ValueError(
            f"too few synapses: {n}; inferring a geometry needs at least {MIN_SYNAPSES} "
            "(several hundred for a reliable answer, see docs/inference.md)"
        )
    change = a - b
    if not np.any(change != change[0]):
        raise ValueError(
            "AFTER − BEFORE is the same for every synapse "
            f"({change[0]:g}): there is no learning signal to infer a geometry from"
        )
    t = _grid(grid)
    gen = _rng(rng)
    cands = _parse_candidates(candidates)
    sc = _sign_changes(b, a)
    warn: list[str] = []
    if n < FEW_SYNAPSES:
        warn.append(
            f"only {n} synapses: the recovery study (docs/inference.md) finds the estimators "
            "unreliable below a few hundred"
        )
    valid = [c for c in cands if not (isinstance(c, NegativeEntropy) and not sc.ne_valid)]
    ne_listed = any(isinstance(c, NegativeEntropy) for c in cands)
    ne_ruled_out = not sc.ne_valid
    reason = sc.reason()
    if ne_ruled_out and ne_listed:
        warn.append(f"NE ruled out: {reason}")
    if not valid:
        raise ValueError(f"no usable candidate: {reason}; add p-norm candidates")
    data = _prepare(b, a, gen)
    if data.n_like == 0:
        raise ValueError("every weight in AFTER is 0: there is nothing to infer from")
    if data.like_mask is not None:
        warn.append(
            f"{n - data.n_like} synapses are exactly 0 after learning; they are left out of the "
            "likelihood (a point mass outside the continuous model)"
        )

    pnorms = [c for c in valid if isinstance(c, PNorm)]
    p_fitted = len(pnorms) > 1 or (refine and len(pnorms) == 1)

    rows = [_evaluate(data, psi, t, fit_mean) | {"refined": False, "note": ""} for psi in valid]
    by_name = {psi.name: psi for psi in valid}

    def score_of(row: dict[str, Any]) -> float:
        if estimator == "cdf":
            return row["cdf_distance"]
        return 2 * _aic_k(by_name[row["candidate"]], p_fitted) - 2 * row["log_likelihood"]

    # --- refinement in p --------------------------------------------------------------------
    p_interval = None
    p_best_family = math.nan
    if pnorms:
        best_grid_pn = min(
            (r for r in rows if not math.isnan(r["p"])), key=lambda r: _nan_last(score_of(r))
        )
        p0 = best_grid_pn["p"]
        if refine:
            lo, hi = _bracket([c.p for c in pnorms], p0)
            if estimator == "likelihood":
                ell = _ProfileLikelihood(data, fit_mean)
                ell.cache[float(p0)] = float(best_grid_pn["log_likelihood"])
                p_new = round(_maximise_likelihood(ell, lo, hi, p0), 4)
                if ell(p_new) <= best_grid_pn["log_likelihood"]:
                    p_new = p0
            else:
                if any(isinstance(c, NegativeEntropy) for c in valid):
                    # (1, min grid p) is NE's neighbourhood (NE is the p -> 1 end of the family)
                    # and the CDF distance cannot tell it from NE: do not refine into it.
                    lo = max(lo, min(c.p for c in pnorms) - 1e-9)
                p_new = _zoom_cdf(data, t, lo, hi, p0, float(best_grid_pn["cdf_distance"]))
            if p_new != p0 and PNorm(p_new).name not in by_name:
                psi = PNorm(p_new)
                by_name[psi.name] = psi
                rows.append(_evaluate(data, psi, t, fit_mean) | {"refined": True, "note": ""})
            p_best_family = p_new
            if estimator == "likelihood":
                p_interval = _lr_interval(ell, p_best_family, confidence)
        else:
            p_best_family = p0
    # (bound warnings are added once the winner is known: with NE best, a p-norm fit running to
    # p -> 1 is expected — NE is the p -> 1 limit of the family — and not worth a warning)

    # --- scores, AIC, ranks -----------------------------------------------------------------
    df = pd.DataFrame(rows)
    df["score"] = [score_of(r) for r in rows]
    aic = [2 * _aic_k(by_name[r["candidate"]], p_fitted) - 2 * r["log_likelihood"] for r in rows]
    df["delta_aic"] = np.asarray(aic) - np.nanmin(aic)
    df = df.sort_values("score", kind="stable", na_position="last").reset_index(drop=True)
    df["rank"] = np.arange(1, len(df) + 1, dtype=float)
    df.loc[df["score"].isna(), "rank"] = np.nan
    best_row = df.iloc[0]
    best_psi = by_name[best_row["candidate"]]
    grid_df = df[~df["refined"]]
    margin = (
        float(grid_df["score"].iloc[1] - grid_df["score"].iloc[0])
        if grid_df["score"].notna().sum() > 1
        else math.nan
    )

    if pnorms and not isinstance(best_psi, NegativeEntropy):
        if p_best_family <= P_BOUNDS[0] + 1e-3 or p_best_family >= P_BOUNDS[1] - 1e-3:
            warn.append(f"the best p ({p_best_family:g}) is at the search bound {P_BOUNDS}")
        if p_interval is not None and (p_interval.open_low or p_interval.open_high):
            warn.append(
                f"the {confidence:.0%} likelihood interval for p reaches the search bound "
                f"{P_BOUNDS}: p is poorly determined"
            )

    # --- bootstrap --------------------------------------------------------------------------
    win = {name: math.nan for name in df["candidate"]}
    p_interval_boot = None
    if n_bootstrap > 0:
        grid_cands = [by_name[c] for c in grid_df["candidate"] if not _is_nan(df, c)]
        centre = float(best_row["p"]) if isinstance(best_psi, PNorm) else None
        if centre is None and pnorms:
            centre = float(df.loc[df["p"].notna(), "p"].iloc[0])
        boot_ps: list[float] = []
        if centre is not None:
            fine = np.round(
                np.arange(centre - _BOOT_HALF_WIDTH, centre + _BOOT_HALF_WIDTH + 1e-9, FINE_STEP),
                4,
            )
            p_min = P_BOUNDS[0] - 1e-12
            if estimator == "cdf" and any(isinstance(c, NegativeEntropy) for c in valid):
                p_min = min(c.p for c in pnorms) - 1e-9  # as in the refinement
            boot_ps = sorted({float(p) for p in fine if p > p_min} | {c.p for c in pnorms})
        gs, ps = _bootstrap(
            data, grid_cands, boot_ps, estimator, p_fitted, fit_mean, t, n_bootstrap, gen
        )
        winners = np.nanargmin(np.where(np.isnan(gs), np.inf, gs), axis=1)
        for j, psi in enumerate(grid_cands):
            win[psi.name] = float(np.mean(winners == j))
        if ps is not None:
            best_ps = np.asarray(boot_ps)[np.argmin(np.where(np.isnan(ps), np.inf, ps), axis=1)]
            q = np.quantile(best_ps, [(1 - confidence) / 2, (1 + confidence) / 2])
            p_interval_boot = ConfidenceInterval(
                float(q[0]), float(q[1]), float(confidence), "bootstrap-percentile"
            )
    df["bootstrap_win_fraction"] = [
        math.nan if r else win.get(c, math.nan)
        for c, r in zip(df["candidate"], df["refined"], strict=True)
    ]
    if estimator == "cdf":
        p_interval = p_interval_boot

    # --- excluded NE row, warnings ----------------------------------------------------------
    if ne_ruled_out and ne_listed:
        ne_row = {col: math.nan for col in RANKING_COLUMNS}
        ne_row.update(candidate="NE", refined=False, note=reason)
        df = pd.concat([df, pd.DataFrame([ne_row])], ignore_index=True)
    df = df[list(RANKING_COLUMNS)]
    mag = float(best_row["change_magnitude"])
    if mag > LAZY_MAGNITUDE:
        warn.append(
            f"change magnitude {mag:.2f} > {LAZY_MAGNITUDE} under {best_psi.name}: learning may "
            "not be lazy, and the theory's Gaussian prediction may not hold"
        )
    return GeometryFit(
        best=best_psi.name,
        best_potential=best_psi,
        best_p=float(best_psi.p) if isinstance(best_psi, PNorm) else None,
        estimator=estimator,
        ranking=df,
        p_interval=p_interval,
        p_interval_bootstrap=p_interval_boot,
        margin=margin,
        n_synapses=int(n),
        n_sign_flips=sc.n_sign_flips,
        n_zero_weights=int(np.count_nonzero((b == 0) | (a == 0))),
        ne_ruled_out=ne_ruled_out,
        ne_ruled_out_reason=reason,
        n_bootstrap=int(n_bootstrap),
        confidence=float(confidence),
        warnings=tuple(warn),
    )


def _nan_last(x: float) -> float:
    return math.inf if math.isnan(x) else x


def _is_nan(df: pd.DataFrame, name: str) -> bool:
    return bool(df.loc[df["candidate"] == name, "score"].isna().all())
