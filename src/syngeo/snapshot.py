r"""One snapshot of synapse sizes: which (geometry, initial distribution) pairs explain it.

Without weights from before learning, the theory still constrains the final weights: under a
potential φ they are :math:`w = (\nabla\phi)^{-1}(\nabla\phi(w_0) + \xi)` with a Gaussian dual
change :math:`\xi \sim \mathcal N(\mu, s^2)` (docs/theory.md §2, §4). For positive sizes (spine
volumes) and an initial distribution :math:`p_0` on :math:`w_0 > 0`, the density of a final weight
:math:`w > 0` follows by a change of variables through the mirror map:

.. math::

    p(w) = \phi''(w)\; \mathbb E_{w_0 \sim p_0}\!\left[
        \mathcal N\!\big(\nabla\phi(w) - \nabla\phi(w_0);\ \mu, s^2\big)\right] \big/ P_{\rm surv},

where :math:`P_{\rm surv}` is the probability that the final weight is still positive. A
sign-preserving potential (negative entropy) maps the positive half-line onto the whole dual line,
so every synapse survives. Any other potential can push a weight through zero, at the dual point
:math:`u_0 = \nabla\phi(0)`; such synapses count as eliminated (the paper's Fig. 5B) and the
density of the observed survivors is conditioned on survival,
:math:`P_{\rm surv} = \mathbb E_{w_0}[\Phi((\nabla\phi(w_0) + \mu - u_0)/s)]`.

Initial distributions are mixtures of point masses (:class:`PointMass`) and log-normals
(:class:`LogNormal`); the paper's two fits are

* negative entropy with a **two-point** initial distribution (two constants; the final weights
  are then a two-component log-normal mixture of equal spread), and
* the 3-norm with a **constant-or-log-normal** mixture.

Expectations over a log-normal component are integrals over its standard-normal variable
:math:`z` (:math:`w_0 = e^{m + \sigma z}`), done per observation by Gauss–Legendre quadrature on
the window of :math:`z` where the Gaussian kernel is not negligible
(:math:`|\nabla\phi(w) - \mu - \nabla\phi(w_0(z))| < 9s`, intersected with :math:`|z| < 9`). Nodes
spread over the whole log-normal would miss a narrow kernel (small s) and bias the fit.

:func:`fit_snapshot` fits one model by maximum likelihood; :func:`compare_snapshot_models` fits a
grid of geometries and families and ranks them by AIC, BIC and held-out log-likelihood.

Examples
--------
>>> import numpy as np
>>> model = SnapshotModel("ne", InitialMixture.two_point(0.04, 0.17, 0.77), dual_std=0.55)
>>> sample = model.sample(3000, rng=0)
>>> fit = fit_snapshot(sample.weights, "ne", "two-point")
>>> bool(abs(fit.model.dual_std - 0.55) < 0.05)
True
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd
import scipy.optimize
import scipy.special
import scipy.stats

from syngeo.errors import InputError
from syngeo.potentials import Potential, PotentialLike
from syngeo.potentials import potential as as_potential
from syngeo.validation import as_generator, as_positive_float, as_positive_int, as_probability

__all__ = [
    "FAMILIES",
    "GoodnessOfFit",
    "InitialMixture",
    "LogNormal",
    "PointMass",
    "SnapshotComparison",
    "SnapshotFit",
    "SnapshotModel",
    "SnapshotSample",
    "compare_snapshot_models",
    "connection_spread",
    "fit_snapshot",
    "goodness_of_fit",
    "ks_ad_statistics",
    "profile_fits",
    "snapshot_profile",
]

#: Initial-distribution families that :func:`fit_snapshot` can fit.
FAMILIES = ("two-point", "constant-lognormal")

_Z_MAX = 9.0  # |z| beyond 9 carries < 1e-18 of a standard normal's mass
_KERNEL_WIDTH = 9.0  # kernel windows of ±9 s
_N_NODES = 32  # log-density error < 2e-9 against closed forms (tests)
_GL_X, _GL_W = np.polynomial.legendre.leggauss(_N_NODES)
_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)


def _log_gl_sum(log_terms: np.ndarray, half: np.ndarray) -> np.ndarray:
    """log(half · Σ_j g_j exp(log_terms[:, j])) per row, the largest term factored out."""
    top = log_terms.max(axis=1)
    finite = np.isfinite(top)
    top = np.where(finite, top, 0.0)
    total = np.exp(log_terms - top[:, None]) @ _GL_W
    with np.errstate(divide="ignore"):
        return np.where(finite, top + np.log(total) + np.log(half), -np.inf)


# ------------------------------------------------------------------------------------------------
# initial distributions
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PointMass:
    """All initial weights equal ``value`` (> 0)."""

    value: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "value", as_positive_float(self.value, "PointMass value"))

    def sample(self, n: int, gen: np.random.Generator) -> np.ndarray:
        return np.full(n, self.value)


@dataclass(frozen=True)
class LogNormal:
    """Initial weights ``exp(mu + sigma * z)``, z standard normal (``mu``, ``sigma`` of log w0)."""

    mu: float
    sigma: float

    def __post_init__(self) -> None:
        if not math.isfinite(self.mu):
            raise InputError(f"LogNormal mu must be finite, got {self.mu}")
        object.__setattr__(self, "mu", float(self.mu))
        object.__setattr__(self, "sigma", as_positive_float(self.sigma, "LogNormal sigma"))

    def sample(self, n: int, gen: np.random.Generator) -> np.ndarray:
        return np.exp(self.mu + self.sigma * gen.standard_normal(n))


Component = PointMass | LogNormal


@dataclass(frozen=True)
class InitialMixture:
    """A mixture of point masses and log-normals for the initial weights (all positive).

    Attributes
    ----------
    components : tuple of PointMass or LogNormal
    weights : tuple of float
        Mixture weights, positive, summing to 1.
    family : str
        ``"two-point"``, ``"constant-lognormal"`` or ``"custom"``.
    """

    components: tuple[Component, ...]
    weights: tuple[float, ...]
    family: str = "custom"

    def __post_init__(self) -> None:
        if len(self.components) == 0 or len(self.components) != len(self.weights):
            raise InputError("an initial mixture needs as many weights as components (>= 1)")
        w = np.asarray(self.weights, dtype=np.float64)
        if not (np.all(w > 0) and abs(w.sum() - 1.0) < 1e-9):
            raise InputError(f"mixture weights must be positive and sum to 1, got {self.weights}")
        object.__setattr__(self, "weights", tuple(float(x) for x in w))

    @classmethod
    def two_point(cls, low: float, high: float, weight_low: float) -> InitialMixture:
        """``low`` with probability ``weight_low``, else ``high``."""
        weight_low = as_probability(weight_low, "weight_low")
        return cls((PointMass(low), PointMass(high)), (weight_low, 1 - weight_low), "two-point")

    @classmethod
    def constant_lognormal(
        cls, constant: float, mu: float, sigma: float, weight_constant: float
    ) -> InitialMixture:
        """``constant`` with probability ``weight_constant``, else log-normal(``mu``, ``sigma``)."""
        weight_constant = as_probability(weight_constant, "weight_constant")
        return cls(
            (PointMass(constant), LogNormal(mu, sigma)),
            (weight_constant, 1 - weight_constant),
            "constant-lognormal",
        )

    def parameters(self) -> dict[str, float]:
        """The mixture as one flat row: ``weight_k`` of each component k, with ``value_k`` (a
        point mass) or ``mu_k`` and ``sigma_k`` (a log-normal).

        >>> InitialMixture.two_point(0.1, 0.3, 0.25).parameters()
        {'weight_0': 0.25, 'value_0': 0.1, 'weight_1': 0.75, 'value_1': 0.3}
        """
        out: dict[str, float] = {}
        for k, (comp, wk) in enumerate(zip(self.components, self.weights, strict=True)):
            out[f"weight_{k}"] = wk
            if isinstance(comp, PointMass):
                out[f"value_{k}"] = comp.value
            else:
                out[f"mu_{k}"] = comp.mu
                out[f"sigma_{k}"] = comp.sigma
        return out

    def sample(self, n: int, gen: np.random.Generator) -> np.ndarray:
        which = gen.choice(len(self.components), size=n, p=np.asarray(self.weights))
        out = np.empty(n)
        for k, comp in enumerate(self.components):
            idx = np.flatnonzero(which == k)
            out[idx] = comp.sample(idx.size, gen)
        return out


# ------------------------------------------------------------------------------------------------
# the model
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SnapshotSample:
    """Final weights drawn from a :class:`SnapshotModel`.

    Attributes
    ----------
    weights : ndarray
        The surviving (positive) final weights.
    initial : ndarray
        Their initial weights.
    n_eliminated : int
        Synapses whose weight crossed zero (removed from ``weights``).
    """

    weights: np.ndarray
    initial: np.ndarray
    n_eliminated: int


def _dual_floor(phi: Potential) -> float:
    """Lower end of the mirror map's range on positive weights: −inf if signs are preserved."""
    if phi.preserves_sign:
        return -math.inf
    return float(np.asarray(phi.grad(np.zeros(1)), dtype=np.float64)[0])


@dataclass(frozen=True)
class SnapshotModel:
    """Final weights :math:`(\\nabla\\phi)^{-1}(\\nabla\\phi(w_0) + \\xi)`, ξ ~ N(μ, s²), w0 ~ initial.

    Attributes
    ----------
    potential : Potential
    initial : InitialMixture
    dual_std : float
        s, the standard deviation of the dual change.
    dual_mean : float
        μ, its mean (0 in the paper's fits).
    """

    potential: Potential
    initial: InitialMixture
    dual_std: float
    dual_mean: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "potential", as_potential(self.potential))
        object.__setattr__(self, "dual_std", as_positive_float(self.dual_std, "dual_std"))
        if not math.isfinite(self.dual_mean):
            raise InputError(f"dual_mean must be finite, got {self.dual_mean}")

    # -- helpers ---------------------------------------------------------------------------------
    def _dual(self, w: np.ndarray) -> np.ndarray:
        return np.asarray(self.potential.grad(w), dtype=np.float64)

    def _z_of_dual(self, u: np.ndarray, comp: LogNormal) -> np.ndarray:
        """z at which the log-normal's dual weight ∇φ(w0(z)) equals u (−inf below its range)."""
        floor = _dual_floor(self.potential)
        above = u > floor
        safe = np.where(above, u, floor + 1.0 if math.isfinite(floor) else 0.0)
        w0 = np.asarray(self.potential.grad_inverse(safe, sign=np.ones_like(safe)), np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            z = (np.log(w0) - comp.mu) / comp.sigma
        z = np.where(above & (w0 > 0), z, -np.inf)
        return np.clip(z, -_Z_MAX, _Z_MAX)

    def _log_kernel_expectation(self, comp: Component, u: np.ndarray) -> np.ndarray:
        """log E_{w0 ~ comp}[N(u − ∇φ(w0); μ, s²)] per entry of u."""
        s, mu = self.dual_std, self.dual_mean
        if isinstance(comp, PointMass):
            v0 = float(self._dual(np.array([comp.value]))[0])
            r = (u - mu - v0) / s
            return -0.5 * r * r - _LOG_SQRT_2PI - math.log(s)
        # Two quadratures, each where it resolves the narrower factor of the integrand:
        # * the kernel is narrow in z (its width s·dz/dv < 1/2 at its centre): nodes in the
        #   kernel's own variable t = (u − μ − v)/s, weighting by the density of the initial dual
        #   weight v, q(v) = φ_N(z(v)) / (σ w0 φ''(w0));
        # * otherwise: nodes in z on the window where the kernel is not negligible.
        out = np.empty_like(u)
        centre = u - mu
        w_c = self._initial_weight(centre)
        with np.errstate(divide="ignore", invalid="ignore"):
            width_z = s / (comp.sigma * w_c * self._hessian(w_c))
        narrow = (w_c > 0) & np.isfinite(width_z) & (width_z < 0.5)
        if narrow.any():
            out[narrow] = self._log_expectation_in_t(comp, centre[narrow])
        if (~narrow).any():
            out[~narrow] = self._log_expectation_in_z(comp, centre[~narrow])
        return out

    def _initial_weight(self, v: np.ndarray) -> np.ndarray:
        """(∇φ)⁻¹(v) on the positive side; 0 where v is below the mirror map's range."""
        floor = _dual_floor(self.potential)
        above = v > floor
        safe = np.where(above, v, floor + 1.0 if math.isfinite(floor) else 0.0)
        w0 = np.asarray(self.potential.grad_inverse(safe, sign=np.ones_like(safe)), np.float64)
        return np.where(above, np.maximum(w0, 0.0), 0.0)

    def _hessian(self, w: np.ndarray) -> np.ndarray:
        return np.asarray(self.potential.hessian_diag(w), dtype=np.float64)

    def _log_expectation_in_t(self, comp: LogNormal, centre: np.ndarray) -> np.ndarray:
        s = self.dual_std
        t = _KERNEL_WIDTH * _GL_X
        v = centre[:, None] - s * t[None, :]
        w0 = self._initial_weight(v)
        with np.errstate(divide="ignore", invalid="ignore"):
            z = (np.log(w0) - comp.mu) / comp.sigma
            log_q = -0.5 * z * z - _LOG_SQRT_2PI - math.log(comp.sigma) - np.log(w0)
            log_q = log_q - np.log(self._hessian(w0))
        log_q = np.where(w0 > 0, log_q, -np.inf)
        log_terms = log_q - 0.5 * t * t - _LOG_SQRT_2PI
        return _log_gl_sum(log_terms, np.full(centre.shape, _KERNEL_WIDTH))

    def _log_expectation_in_z(self, comp: LogNormal, centre: np.ndarray) -> np.ndarray:
        s = self.dual_std
        lo = self._z_of_dual(centre - _KERNEL_WIDTH * s, comp)
        hi = self._z_of_dual(centre + _KERNEL_WIDTH * s, comp)
        half = 0.5 * (hi - lo)
        z = (0.5 * (hi + lo))[:, None] + half[:, None] * _GL_X[None, :]
        v0 = self._dual(np.exp(comp.mu + comp.sigma * z))
        r = (centre[:, None] - v0) / s
        log_terms = -0.5 * r * r - 0.5 * z * z - 2 * _LOG_SQRT_2PI - math.log(s)
        return _log_gl_sum(log_terms, half)

    def _cdf_of_dual(self, comp: Component, a: np.ndarray) -> np.ndarray:
        """P(∇φ(w0) + ξ ≤ a) for w0 ~ comp, per entry of a (a may be ±inf)."""
        s, mu = self.dual_std, self.dual_mean
        if isinstance(comp, PointMass):
            v0 = float(self._dual(np.array([comp.value]))[0])
            return scipy.stats.norm.cdf((a - mu - v0) / s)
        # split the z-range where the step of Φ((a − μ − v0(z))/s) sits; each side is smooth
        a = np.asarray(a, dtype=np.float64)
        finite = np.isfinite(a)
        a_safe = np.where(finite, a, 0.0)
        zs = self._z_of_dual(a_safe - mu, comp)
        total = np.zeros_like(a_safe)
        for lo, hi in ((np.full_like(zs, -_Z_MAX), zs), (zs, np.full_like(zs, _Z_MAX))):
            half = 0.5 * (hi - lo)
            z = (0.5 * (hi + lo))[:, None] + half[:, None] * _GL_X[None, :]
            v0 = self._dual(np.exp(comp.mu + comp.sigma * z))
            f = scipy.stats.norm.cdf((a_safe[:, None] - mu - v0) / s) * scipy.stats.norm.pdf(z)
            total += half * (f @ _GL_W)
        total = np.where(np.isneginf(a), 0.0, np.where(np.isposinf(a), 1.0, total))
        return np.clip(total, 0.0, 1.0)

    # -- public ----------------------------------------------------------------------------------
    def survival_probability(self) -> float:
        """P(final weight > 0): 1 under a sign-preserving potential."""
        floor = _dual_floor(self.potential)
        if not math.isfinite(floor):
            return 1.0
        below = sum(
            wk * float(self._cdf_of_dual(c, np.array([floor]))[0])
            for c, wk in zip(self.initial.components, self.initial.weights, strict=True)
        )
        return max(1.0 - below, 0.0)

    def log_density(self, w: Any) -> np.ndarray:
        """log p(w) of surviving final weights (w > 0), conditioned on survival."""
        w = np.asarray(w, dtype=np.float64).ravel()
        if np.any(~(w > 0)) or not np.all(np.isfinite(w)):
            raise InputError("snapshot densities are defined for positive, finite weights only")
        u = self._dual(w)
        parts = np.stack(
            [
                math.log(wk) + self._log_kernel_expectation(c, u)
                for c, wk in zip(self.initial.components, self.initial.weights, strict=True)
            ]
        )
        log_jac = np.asarray(self.potential.log_hessian_diag(w), dtype=np.float64)
        surv = self.survival_probability()
        if surv <= 0:
            return np.full(w.shape, -np.inf)
        return scipy.special.logsumexp(parts, axis=0) + log_jac - math.log(surv)

    def cdf(self, w: Any) -> np.ndarray:
        """P(W ≤ w | W > 0) for the surviving final weights."""
        w = np.asarray(w, dtype=np.float64).ravel()
        u = self._dual(np.maximum(w, np.finfo(float).tiny))
        floor = _dual_floor(self.potential)
        num = np.zeros_like(u)
        for c, wk in zip(self.initial.components, self.initial.weights, strict=True):
            num += wk * (self._cdf_of_dual(c, u) - self._cdf_of_dual(c, np.full_like(u, floor)))
        surv = self.survival_probability()
        return np.clip(np.where(w > 0, num / surv, 0.0), 0.0, 1.0)

    def sample(self, n: int, rng: Any = None) -> SnapshotSample:
        """Draw ``n`` synapses; those whose weight crosses zero are eliminated (counted)."""
        n = as_positive_int(n, "n")
        gen = as_generator(rng)
        w0 = self.initial.sample(n, gen)
        u = self._dual(w0) + self.dual_mean + self.dual_std * gen.standard_normal(n)
        w = np.asarray(self.potential.grad_inverse(u, sign=np.ones(n)), dtype=np.float64)
        alive = w > 0
        return SnapshotSample(w[alive], w0[alive], int(n - alive.sum()))

    def n_parameters(self) -> int:
        """Free parameters of the model as fitted (initial mixture + s; μ fixed at 0)."""
        return _FAMILY_N_PARAMS.get(self.initial.family, 0) + 1


# ------------------------------------------------------------------------------------------------
# fitting
# ------------------------------------------------------------------------------------------------
_FAMILY_N_PARAMS = {"two-point": 3, "constant-lognormal": 4}
_INFEASIBLE = 1e300
_HALVING_ITERATIONS = 10  # L-BFGS-B iterations of the first pass from every start


def _unpack(family: str, theta: np.ndarray) -> tuple[InitialMixture, float]:
    """Unconstrained parameters → (initial mixture, s). Logs for scales, logit for weights."""
    if family == "two-point":
        la, lb, logit, ls = theta
        low, high = sorted((math.exp(la), math.exp(lb)))
        return InitialMixture.two_point(low, high, scipy.special.expit(logit)), math.exp(ls)
    lc, m, lsig, logit, ls = theta
    mix = InitialMixture.constant_lognormal(
        math.exp(lc), m, math.exp(lsig), scipy.special.expit(logit)
    )
    return mix, math.exp(ls)


def _pack(model: SnapshotModel) -> np.ndarray:
    comps, ws = model.initial.components, model.initial.weights
    if model.initial.family == "two-point":
        return np.array(
            [
                math.log(comps[0].value),
                math.log(comps[1].value),
                scipy.special.logit(ws[0]),
                math.log(model.dual_std),
            ]
        )
    c, ln = comps
    return np.array(
        [
            math.log(c.value),
            ln.mu,
            math.log(ln.sigma),
            scipy.special.logit(ws[0]),
            math.log(model.dual_std),
        ]
    )


def _clip_logit(p: float) -> float:
    return float(scipy.special.logit(min(max(p, 1e-3), 1 - 1e-3)))


def _starts(w: np.ndarray, phi: Potential, family: str) -> list[np.ndarray]:
    """Starting points from a two-component Gaussian mixture of the dual weights ∇φ(w).

    Under a two-point initial distribution the dual weights *are* such a mixture with a common
    spread s (exactly, up to the survival truncation), so its EM fit is nearly the answer.
    """
    from sklearn.mixture import GaussianMixture

    u = np.asarray(phi.grad(w), dtype=np.float64)[:, None]
    ones = np.ones(1)
    starts = []
    if family == "two-point":
        gm = GaussianMixture(2, covariance_type="tied", random_state=0, tol=1e-6).fit(u)
        means = gm.means_.ravel()
        s = math.sqrt(float(gm.covariances_.ravel()[0]))
        order = np.argsort(means)
        vals = [float(phi.grad_inverse(np.array([m]), sign=ones)[0]) for m in means[order]]
        if min(vals) <= 0:
            positive = np.sort(w)
            vals = [float(np.quantile(positive, 0.25)), float(np.quantile(positive, 0.85))]
        base = np.array(
            [
                math.log(vals[0]),
                math.log(vals[1]),
                _clip_logit(float(gm.weights_[order[0]])),
                math.log(s),
            ]
        )
        starts.append(base)
        starts.append(base + np.array([0.0, 0.0, 0.0, -1.0]))
        return starts
    gm = GaussianMixture(2, covariance_type="full", random_state=0, tol=1e-6).fit(u)
    sds = np.sqrt(gm.covariances_.ravel())
    k_const = int(np.argmin(sds))
    k_ln = 1 - k_const
    c_val = float(phi.grad_inverse(np.array([gm.means_.ravel()[k_const]]), sign=ones)[0])
    if not c_val > 0:
        c_val = float(np.quantile(w, 0.1))
    lw = np.log(w)
    resp = gm.predict_proba(u)[:, k_ln]
    m = float(np.sum(resp * lw) / max(resp.sum(), 1e-12))
    sig = math.sqrt(max(float(np.sum(resp * (lw - m) ** 2) / max(resp.sum(), 1e-12)), 1e-4))
    base = np.array(
        [
            math.log(c_val),
            m,
            math.log(sig),
            _clip_logit(float(gm.weights_[k_const])),
            math.log(float(sds[k_const])),
        ]
    )
    starts.append(base)
    starts.append(base + np.array([0.0, 0.0, -0.5, 0.0, -1.0]))
    # the paper's shape: a small constant far below the data, the log-normal fitting the bulk
    small = np.array(
        [
            math.log(float(np.quantile(w, 0.01)) / 2),
            float(np.mean(lw)),
            math.log(float(np.std(lw))),
            0.0,
            math.log(float(np.std(u))),
        ]
    )
    starts.append(small)
    # the likelihood has separate optima with a dual spread far below the data's: a constant
    # component whose Gaussian change makes a skewed bump, next to a log-normal bulk
    for frac in (0.01, 0.1):
        for weight in (0.2, 0.5):
            starts.append(
                np.array(
                    [
                        math.log(float(np.quantile(w, 0.2))),
                        float(np.mean(lw)),
                        math.log(float(np.std(lw))),
                        _clip_logit(weight),
                        math.log(frac * float(np.std(u))),
                    ]
                )
            )
    return starts


@dataclass(frozen=True)
class SnapshotFit:
    """A maximum-likelihood fit of a :class:`SnapshotModel` to one snapshot of positive weights.

    Attributes
    ----------
    model : SnapshotModel
        The fitted model.
    log_likelihood : float
        Σ log p(w_i) at the optimum (natural log; a density of the weights in their own units).
    n : int
        Number of weights fitted.
    n_params : int
        Free parameters.
    converged : bool
        Whether the optimizer reported success at the best start.
    """

    model: SnapshotModel
    log_likelihood: float
    n: int
    n_params: int
    converged: bool

    @property
    def aic(self) -> float:
        """2k − 2 log L."""
        return 2 * self.n_params - 2 * self.log_likelihood

    @property
    def bic(self) -> float:
        """k log n − 2 log L."""
        return self.n_params * math.log(self.n) - 2 * self.log_likelihood

    def to_dict(self) -> dict[str, Any]:
        """One flat row: potential, family, parameters, likelihood and criteria."""
        mix = self.model.initial
        row: dict[str, Any] = {
            "potential": self.model.potential.name,
            "p": self.model.potential.parameter,
            "family": mix.family,
            "dual_std": self.model.dual_std,
            "survival": self.model.survival_probability(),
            "log_likelihood": self.log_likelihood,
            "n": self.n,
            "n_params": self.n_params,
            "aic": self.aic,
            "bic": self.bic,
            "converged": self.converged,
        }
        row.update(mix.parameters())
        return row


def _check_sizes(weights: Any) -> np.ndarray:
    w = np.asarray(weights, dtype=np.float64).ravel()
    if w.size < 10:
        raise InputError(f"a snapshot fit needs at least 10 synapse sizes, got {w.size}")
    bad = ~np.isfinite(w) | (w <= 0)
    if bad.any():
        raise InputError(
            f"{int(bad.sum())} of {w.size} sizes are zero, negative or not finite; "
            "sizes must be positive: drop those synapses first"
        )
    return w


def _carried_over(model: SnapshotModel, phi: Potential, w: np.ndarray) -> SnapshotModel:
    """``model`` moved to the potential ``phi``: same initial mixture, the dual spread rescaled.

    A dual change of size s moves a weight near w by about s / φ''(w); keeping that move at the
    median weight, s' = s · φ'_new''(w̃) / φ_old''(w̃), makes a fit at a neighbouring p a good
    start (without the rescaling s would be off by a factor w̃^Δp, 0.5 for Δp = 1/4 here).
    """
    if model.potential.name == phi.name:
        return replace(model, potential=phi)
    w_med = np.array([float(np.median(w))])
    ratio = float(
        np.exp(
            np.asarray(phi.log_hessian_diag(w_med), np.float64)[0]
            - np.asarray(model.potential.log_hessian_diag(w_med), np.float64)[0]
        )
    )
    if not (math.isfinite(ratio) and ratio > 0):
        ratio = 1.0
    return replace(model, potential=phi, dual_std=model.dual_std * ratio)


def fit_snapshot(
    weights: Any,
    potential: PotentialLike,
    family: str = "two-point",
    *,
    starts: Sequence[SnapshotModel] = (),
    data_starts: bool = True,
    fixed_constant: float | None = None,
    polish: bool = True,
) -> SnapshotFit:
    """Maximum-likelihood fit of (initial ``family``, dual spread s) under a fixed potential.

    The dual mean μ is fixed at 0, as in the paper's fits (under negative entropy and a two-point
    start it is not identifiable: it shifts both constants). The optimizer works on
    unconstrained parameters (logs of scales, logits of weights): L-BFGS-B from several starts
    derived from a Gaussian-mixture fit of the dual weights (``data_starts``) and from the models
    in ``starts`` (e.g. a fit on more data, or at a neighbouring p): a coarse pass from each, the
    best continued to full precision, and a short Nelder–Mead polish if L-BFGS-B stopped short.
    The fit is deterministic.

    Parameters
    ----------
    weights : array-like
        Positive sizes (any unit: the model families are closed under rescaling).
    potential : potential-like
        The geometry (``"ne"``, ``"3-norm"``, a :class:`~syngeo.Potential` …).
    family : {"two-point", "constant-lognormal"}
        The initial distribution.
    fixed_constant : float, optional
        ``"constant-lognormal"`` only: hold the constant at this value (e.g. the paper's 1e-2)
        and fit the rest; the fit then has one free parameter less.
    polish : bool
        Continue the best start to L-BFGS-B's full precision (and a simplex polish). Without
        it the fit stops at a relative change of 1e-6 in the likelihood (about 3e-3 in log L
        here): enough for refits whose only use is a statistic (held-out folds, bootstrap
        replicates), at about half the cost.
    """
    w = _check_sizes(weights)
    phi = as_potential(potential)
    if family not in FAMILIES:
        raise InputError(f"unknown initial family {family!r}: use one of {', '.join(FAMILIES)}")
    if fixed_constant is not None:
        if family != "constant-lognormal":
            raise InputError("fixed_constant applies to the constant-lognormal family only")
        log_c = math.log(as_positive_float(fixed_constant, "fixed_constant"))

    def full(theta: np.ndarray) -> np.ndarray:
        return theta if fixed_constant is None else np.r_[log_c, theta]

    def nll(theta: np.ndarray) -> float:
        try:
            mix, s = _unpack(family, full(theta))
            model = SnapshotModel(phi, mix, s)
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                ll = float(np.sum(model.log_density(w)))
        except (InputError, OverflowError, ValueError):  # parameters outside their domain
            return _INFEASIBLE
        # a large finite value keeps finite-difference gradients defined near the boundary
        return -ll if math.isfinite(ll) else _INFEASIBLE

    x0s = [_pack(_carried_over(m, phi, w)) for m in starts if m.initial.family == family]
    if data_starts or not x0s:
        x0s += _starts(w, phi, family)
    if fixed_constant is not None:
        x0s = [x0[1:] for x0 in x0s]
    # successive halving: a short pass from every start, the better half continued, and so on;
    # the last one standing is taken to full precision (most starts of a multi-modal likelihood
    # show within ten quasi-Newton steps that they lead to a worse optimum)
    best = None
    candidates = [np.asarray(x0, dtype=np.float64) for x0 in x0s]
    budget = _HALVING_ITERATIONS
    while True:
        results = [
            scipy.optimize.minimize(
                nll, x0, method="L-BFGS-B", options={"ftol": 1e-6, "maxiter": budget}
            )
            for x0 in candidates
        ]
        results.sort(key=lambda r: r.fun)
        if len(results) <= 1:
            best = results[0]
            break
        candidates = [r.x for r in results[: max(1, len(results) // 2)]]
        budget *= 2
    assert best is not None
    if not polish and not best.success:
        best = scipy.optimize.minimize(
            nll, best.x, method="L-BFGS-B", options={"ftol": 1e-6, "maxiter": 200}
        )
    elif polish and (len(x0s) > 1 or not best.success):
        best = scipy.optimize.minimize(nll, best.x, method="L-BFGS-B")
    if polish and not best.success:
        # quasi-Newton steps on finite-difference gradients can stop on a kink of the survival
        # truncation; a short simplex polish from the best point settles it
        polish = scipy.optimize.minimize(
            nll, best.x, method="Nelder-Mead", options={"xatol": 1e-7, "fatol": 1e-8, "maxfev": 200}
        )
        if polish.fun <= best.fun:
            best = polish
    if not best.fun < _INFEASIBLE:
        raise InputError(
            f"no {family} initial distribution gives these sizes a finite likelihood under "
            f"{phi.name}"
        )
    mix, s = _unpack(family, full(best.x))
    model = SnapshotModel(phi, mix, s)
    n_params = model.n_parameters() - (fixed_constant is not None)
    return SnapshotFit(model, -float(best.fun), w.size, n_params, bool(best.success))


# ------------------------------------------------------------------------------------------------
# comparison
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SnapshotComparison:
    """Fits of several (geometry, initial family) models to one snapshot.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per model (:meth:`SnapshotFit.to_dict` plus ``heldout_log_likelihood`` per synapse
        and ``delta_aic``, ``delta_bic``), sorted by AIC.
    fits : dict
        ``(potential name, family) -> SnapshotFit``.
    n_folds : int
        Folds of the held-out likelihood (0: not computed).
    """

    table: pd.DataFrame
    fits: dict[tuple[str, str], SnapshotFit] = field(repr=False)
    n_folds: int = 0

    @property
    def best(self) -> SnapshotFit:
        row = self.table.iloc[0]
        return self.fits[(row["potential"], row["family"])]


def _heldout(
    w: np.ndarray, phi: Potential, family: str, full: SnapshotFit, n_folds: int, gen
) -> float:
    """Mean held-out log-likelihood per synapse over ``n_folds`` folds (warm-started fits)."""
    folds = np.array_split(gen.permutation(w.size), n_folds)
    total = 0.0
    for k in range(n_folds):
        test = folds[k]
        train = np.concatenate([folds[j] for j in range(n_folds) if j != k])
        fit = fit_snapshot(
            w[train], phi, family, starts=[full.model], data_starts=False, polish=False
        )
        total += float(np.sum(fit.model.log_density(w[test])))
    return total / w.size


def compare_snapshot_models(
    weights: Any,
    potentials: Sequence[PotentialLike] = ("ne", "2-norm", "3-norm"),
    families: Sequence[str] = FAMILIES,
    *,
    n_folds: int = 5,
    rng: Any = 0,
) -> SnapshotComparison:
    """Fit every (potential, family) pair and rank by AIC, with BIC and held-out likelihood.

    ``n_folds = 0`` skips the held-out likelihood (K-fold cross-validation over synapses, each
    fold refitted from the full-data optimum).

    Examples
    --------
    >>> sample = SnapshotModel("ne", InitialMixture.two_point(0.04, 0.17, 0.77), 0.55).sample(
    ...     1500, rng=1)
    >>> cmp = compare_snapshot_models(sample.weights, ["ne", "2-norm"], ["two-point"], n_folds=0)
    >>> cmp.table["potential"].iloc[0]
    'NE'
    """
    w = _check_sizes(weights)
    gen = as_generator(rng)
    if n_folds != 0:
        n_folds = as_positive_int(n_folds, "n_folds")
        if n_folds < 2:
            raise InputError("n_folds must be 0 (no held-out likelihood) or at least 2")
    rows, fits = [], {}
    for spec in potentials:
        phi = as_potential(spec)
        for family in families:
            fit = fit_snapshot(w, phi, family)
            row = fit.to_dict()
            if n_folds:
                row["heldout_log_likelihood"] = _heldout(w, phi, family, fit, n_folds, gen)
            fits[(phi.name, family)] = fit
            rows.append(row)
    table = pd.DataFrame(rows).sort_values("aic", kind="stable").reset_index(drop=True)
    table["delta_aic"] = table["aic"] - table["aic"].min()
    table["delta_bic"] = table["bic"] - table["bic"].min()
    return SnapshotComparison(table, fits, n_folds)


def with_dual_std(model: SnapshotModel, dual_std: float) -> SnapshotModel:
    """A copy of ``model`` with another dual spread (for profiles and sensitivity checks)."""
    return replace(model, dual_std=dual_std)


# ------------------------------------------------------------------------------------------------
# likelihood profile over p, goodness of fit
# ------------------------------------------------------------------------------------------------
def snapshot_profile(
    weights: Any,
    family: str,
    ps: Sequence[float] = tuple(np.round(np.arange(1.25, 4.001, 0.25), 2)),
    *,
    include_ne: bool = True,
) -> pd.DataFrame:
    """Maximum log-likelihood of the ``family`` model as a function of the p-norm exponent.

    Each p is fitted from the data-driven starts and from the optimum at the previous p (the
    profile is smooth in p, so a warm start guards against a local optimum at one grid point).
    With ``include_ne`` the negative-entropy fit is added as the row with ``p = 1`` (the p → 1 end
    of the family, docs/theory.md §1). Returns one row per geometry (:meth:`SnapshotFit.to_dict`
    plus ``delta_log_likelihood`` to the best row).
    """
    w = _check_sizes(weights)
    if family not in FAMILIES:
        raise InputError(f"unknown initial family {family!r}: use one of {', '.join(FAMILIES)}")
    fits = profile_fits(w, family, ps, include_ne=include_ne)
    rows = []
    for p, fit in fits.items():
        row = fit.to_dict()
        row["p"] = p
        rows.append(row)
    table = pd.DataFrame(rows).sort_values("p", kind="stable").reset_index(drop=True)
    table["delta_log_likelihood"] = table["log_likelihood"] - table["log_likelihood"].max()
    return table


def profile_fits(
    weights: Any,
    family: str,
    ps: Sequence[float],
    *,
    include_ne: bool = True,
) -> dict[float, SnapshotFit]:
    """The fits behind :func:`snapshot_profile`, keyed by p (1.0 for negative entropy).

    Continuation in both directions: the smallest and the largest p are fitted from the
    data-driven starts; each sweep (upwards from the smallest, downwards from the largest) fits
    the next p from the previous optimum only, and each p keeps the better of its two fits (plus
    a data-started fit at p = 2 and 3, the geometries named in the paper). A local optimum met
    on one sweep is escaped on the other, at a fraction of the cost of data starts everywhere.
    """
    w = _check_sizes(weights)
    if family not in FAMILIES:
        raise InputError(f"unknown initial family {family!r}: use one of {', '.join(FAMILIES)}")
    grid = sorted({float(x) for x in ps})
    if not grid:
        raise InputError("the p grid of a likelihood profile is empty")
    if grid[0] <= 1.0:
        raise InputError(f"p-norms need p > 1, got {grid[0]:g} in the profile grid")
    best: dict[float, SnapshotFit] = {}

    def keep(p: float, fit: SnapshotFit) -> None:
        if p not in best or fit.log_likelihood > best[p].log_likelihood:
            best[p] = fit

    for p in grid:
        if p in (grid[0], grid[-1], 2.0, 3.0):
            keep(p, fit_snapshot(w, p, family))
    for order in (grid, grid[::-1]):
        previous = best[order[0]]
        for p in order[1:]:
            keep(p, fit_snapshot(w, p, family, starts=[previous.model], data_starts=False))
            previous = best[p]
    out = dict(sorted(best.items()))
    if include_ne:
        out = {1.0: fit_snapshot(w, "ne", family), **out}
    return out


@dataclass(frozen=True)
class GoodnessOfFit:
    """Kolmogorov–Smirnov and Anderson–Darling tests of a fitted snapshot model.

    The p-values come from a parametric bootstrap: samples of the same size drawn from the fitted
    model are refitted and tested the same way, so the estimation of the parameters is accounted
    for (the tabulated KS/AD null distributions assume known parameters and would be too lenient).

    Attributes
    ----------
    ks, ad : float
        The statistics on the data (KS: sup |F̂ − F|; AD: the A² statistic).
    ks_pvalue, ad_pvalue : float
        (1 + #{bootstrap statistic ≥ observed}) / (1 + n_bootstrap).
    n_bootstrap : int
    """

    ks: float
    ks_pvalue: float
    ad: float
    ad_pvalue: float
    n_bootstrap: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "ks": self.ks,
            "ks_pvalue": self.ks_pvalue,
            "ad": self.ad,
            "ad_pvalue": self.ad_pvalue,
            "n_bootstrap": self.n_bootstrap,
        }


def ks_ad_statistics(w: np.ndarray, model: SnapshotModel) -> tuple[float, float]:
    """(KS distance sup|F̂ − F|, Anderson–Darling A²) of positive sizes ``w`` against ``model``."""
    x = np.sort(w)
    n = x.size
    f = np.clip(model.cdf(x), 1e-300, 1 - 1e-16)
    i = np.arange(1, n + 1)
    ks = float(max(np.max(i / n - f), np.max(f - (i - 1) / n)))
    ad = float(-n - np.sum((2 * i - 1) * (np.log(f) + np.log1p(-f[::-1]))) / n)
    return ks, ad


def _sample_survivors(model: SnapshotModel, n: int, gen: np.random.Generator) -> np.ndarray:
    out: list[np.ndarray] = []
    have = 0
    surv = max(model.survival_probability(), 1e-3)
    while have < n:
        draw = model.sample(math.ceil((n - have) / surv * 1.1) + 10, rng=gen).weights
        out.append(draw)
        have += draw.size
    return np.concatenate(out)[:n]


def goodness_of_fit(
    fit: SnapshotFit, weights: Any, *, n_bootstrap: int = 100, rng: Any = 0
) -> GoodnessOfFit:
    """KS and AD statistics of ``weights`` against ``fit.model``, with parametric-bootstrap p-values.

    Each bootstrap replicate draws ``len(weights)`` surviving synapses from the fitted model,
    refits it (warm-started at the fit) and computes both statistics against the refit.
    """
    w = _check_sizes(weights)
    n_bootstrap = as_positive_int(n_bootstrap, "n_bootstrap")
    gen = as_generator(rng)
    ks, ad = ks_ad_statistics(w, fit.model)
    family = fit.model.initial.family
    ks_null, ad_null = np.empty(n_bootstrap), np.empty(n_bootstrap)
    for b in range(n_bootstrap):
        sample = _sample_survivors(fit.model, w.size, gen)
        refit = fit_snapshot(
            sample, fit.model.potential, family, starts=[fit.model], data_starts=False, polish=False
        )
        ks_null[b], ad_null[b] = ks_ad_statistics(sample, refit.model)
    return GoodnessOfFit(
        ks=ks,
        ks_pvalue=float((1 + np.sum(ks_null >= ks)) / (1 + n_bootstrap)),
        ad=ad,
        ad_pvalue=float((1 + np.sum(ad_null >= ad)) / (1 + n_bootstrap)),
        n_bootstrap=n_bootstrap,
    )


# ------------------------------------------------------------------------------------------------
# connections with several synapses
# ------------------------------------------------------------------------------------------------
def _within_pairs(groups: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs (i < j) of entries that share a group label."""
    order = np.argsort(groups, kind="stable")
    g = groups[order]
    starts = np.flatnonzero(np.r_[True, g[1:] != g[:-1]])
    ends = np.r_[starts[1:], g.size]
    left, right = [], []
    for a, b in zip(starts, ends, strict=True):
        if b - a >= 2:
            idx = order[a:b]
            i, j = np.triu_indices(b - a, k=1)
            left.append(idx[i])
            right.append(idx[j])
    if not left:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
    return np.concatenate(left), np.concatenate(right)


def connection_spread(
    sizes: Any,
    connections: Any,
    potentials: Sequence[PotentialLike] = ("ne", "1.5-norm", "2-norm", "3-norm"),
    *,
    n_shuffles: int = 200,
    rng: Any = 0,
) -> pd.DataFrame:
    r"""Spread of the dual weights within connections, against pairs shuffled across connections.

    If the synapses of one connection (same pre- and post-synaptic cell) started from one initial
    weight and then changed independently, the difference of two of them in the dual space of the
    true potential is :math:`\xi_i - \xi_j \sim \mathcal N(0, 2s^2)`: Gaussian, and smaller than
    the difference of two unrelated synapses. For every candidate this returns, over all pairs
    of synapses within a connection (each pair in a random orientation, so the differences are
    symmetric about 0):

    * ``variance_ratio`` — variance of within-connection dual differences over the mean variance
      of as many pairs of the same synapses drawn across connections (``n_shuffles`` draws; the
      control uses only synapses of multi-synapse connections, so that their size composition,
      which differs from single-synapse connections, cancels); below 1 when connections share
      their history;
    * ``cdf_distance`` — the paper's Gaussianity distance (docs/theory.md §3) of the within
      differences, with ``gaussian_floor``/``gaussian_floor_sd``: its mean and spread for as many
      truly Gaussian values (Monte Carlo), the level a Gaussian sample reaches by chance;
    * ``shuffled_cdf_distance`` — the same distance for the shuffled pairs (mean over draws).

    The shared-history premise is an assumption, not a fact (Dorkenwald et al. report a
    correlation of 0.42 between the two volumes of a dual connection, far from 1); read the
    result as "which geometry makes the within-connection differences most Gaussian".
    """
    from syngeo.gaussianity import cdf_distance, gaussian_null

    w = _check_sizes(sizes)
    groups = pd.factorize(pd.Series(np.asarray(connections).ravel()))[0]
    if groups.size != w.size:
        raise InputError(f"sizes and connections differ in length ({w.size} vs {groups.size})")
    n_shuffles = as_positive_int(n_shuffles, "n_shuffles")
    gen = as_generator(rng)
    left, right = _within_pairs(groups)
    n_pairs = left.size
    if n_pairs < 20:
        raise InputError(f"only {n_pairs} synapse pairs share a connection; at least 20 are needed")
    flips = gen.choice([-1.0, 1.0], size=n_pairs)
    shuffles = []
    # the control pairs come from the same synapses (those in multi-synapse connections), so a
    # difference in size composition between single and multi-synapse connections cancels
    pool = np.unique(np.concatenate([left, right]))
    for _ in range(n_shuffles):
        a = pool[gen.integers(0, pool.size, size=3 * n_pairs)]
        b = pool[gen.integers(0, pool.size, size=3 * n_pairs)]
        keep = groups[a] != groups[b]
        shuffles.append((a[keep][:n_pairs], b[keep][:n_pairs]))
    floor = gaussian_null("cdf", n_pairs, draws=n_shuffles, rng=gen)
    rows = []
    for spec in potentials:
        phi = as_potential(spec)
        u = np.asarray(phi.grad(w), dtype=np.float64)
        within = flips * (u[left] - u[right])
        shuffled_var, shuffled_d = [], []
        for a, b in shuffles:
            d = flips[: a.size] * (u[a] - u[b])
            shuffled_var.append(float(np.mean(d * d)))
            shuffled_d.append(cdf_distance(d))
        rows.append(
            {
                "potential": phi.name,
                "p": phi.parameter,
                "n_pairs": n_pairs,
                "variance_ratio": float(np.mean(within * within)) / float(np.mean(shuffled_var)),
                "cdf_distance": cdf_distance(within),
                "shuffled_cdf_distance": float(np.mean(shuffled_d)),
                "gaussian_floor": float(np.mean(floor)),
                "gaussian_floor_sd": float(np.std(floor)),
            }
        )
    return pd.DataFrame(rows)
