r"""The binomial release model of a synapse (Costa et al. 2017, as used by Surace & Brea).

A synapse has ``N`` release sites; on a presynaptic spike each releases a vesicle independently
with probability :math:`P \in (0, 1)`, and each vesicle adds a quantal amplitude :math:`q > 0`
(a voltage) to the postsynaptic response. The response :math:`x = kq`, :math:`k \sim
\mathrm{Bin}(N, P)`, has

.. math::  \mu = NPq, \qquad \sigma^2 = Nq^2P(1-P),

and the model replaces it by the Gaussian :math:`\mathcal N(\mu, \sigma^2)` (docs/theory.md §5).

Cost
----
Plasticity is modelled as descent on the KL divergence from a narrow Gaussian
:math:`\mathcal N(m, s^2)` around a target mean :math:`m` to the response distribution,

.. math::  \mathrm{KL} = \log\frac{\sigma}{s} + \frac{s^2 + (m - \mu)^2}{2\sigma^2} - \frac12 .

The ``s``-terms do not depend on :math:`\theta = (P, q)`; for ``s → 0`` the cost used for the
flow is

.. math::  f(P, q) = \log\sigma + \frac{(m - \mu)^2}{2\sigma^2}.

Changing the unit of ``q`` (and of :math:`m`) adds a constant to :math:`\log\sigma` and
leaves the gradient unchanged. Along the curve :math:`NPq = m` the cost is
:math:`\log\sigma`, which decreases without bound as :math:`P \to 1`: the flow first reaches the
target mean, then slides along it towards reliable release (:math:`P \to 1`, :math:`q \to m/N`).

Fisher information
------------------
For a Gaussian family :math:`\mathcal N(\mu(\theta), \sigma^2(\theta))`,

.. math::  I_{ij} = \frac{\partial_i\mu\,\partial_j\mu}{\sigma^2}
                  + \frac{\partial_i\sigma^2\,\partial_j\sigma^2}{2\sigma^4},

with :math:`\partial\mu = (Nq, NP)` and :math:`\partial\sigma^2 = (Nq^2(1-2P), 2NqP(1-P))`
(derivatives with respect to ``(P, q)``). As a sum of two rank-one terms its determinant is
:math:`(\partial_P\mu\,\partial_q\sigma^2 - \partial_q\mu\,\partial_P\sigma^2)^2 / (2\sigma^6)
= N^4q^4P^2 / (2\sigma^6) > 0`, so ``I`` is SPD on the whole domain. Under the exact
binomial response only :math:`P` has a regular Fisher information, :math:`N/(P(1-P))`: the
support :math:`\{0, q, 2q, \ldots\}` moves with ``q``, so the family is not differentiable in
``q`` (see :meth:`BinomialRelease.binomial_fisher_information_p`). The Gaussian approximation's
:math:`I_{PP} = N/(P(1-P)) + (1-2P)^2 / (2P^2(1-P)^2)` adds what the variance says about P.

Conventions: ``theta`` is array-like, shape=[..., 2], columns ``(P, q)`` with ``q`` (and the
target mean) in the model's ``unit``; everything is float64 NumPy unless stated.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import torch

from syngeo.errors import InputError
from syngeo.units import DIMENSIONLESS, Unit, UnitChange, UnitLike, unit
from syngeo.validation import as_generator, as_positive_float, as_positive_int

__all__ = ["BinomialRelease"]


def _moments(p, q, n_sites: int):
    """μ and σ² from P and q (pure arithmetic: works on ndarrays and tensors alike)."""
    return n_sites * p * q, n_sites * q * q * p * (1.0 - p)


def _cost_from_moments(mean, variance, target_mean, log):
    """f = log σ + (m − μ)²/(2σ²), written with ``log`` of the array library in use."""
    return 0.5 * log(variance) + (target_mean - mean) ** 2 / (2.0 * variance)


@dataclass(frozen=True)
class BinomialRelease:
    r"""Binomial release model with ``N`` sites and its KL cost to a target mean.

    Parameters
    ----------
    target_mean : float
        The target mean response :math:`m > 0`, in ``unit``.
    n_sites : int, default 1
        Number of release sites ``N`` (Surace & Brea use ``N = 1``).
    unit : Unit or str, default "mV"
        The voltage unit of ``q`` and of ``target_mean``.

    Examples
    --------
    >>> model = BinomialRelease(target_mean=0.5, n_sites=1, unit="mV")
    >>> theta = [0.5, 1.0]                     # P = 0.5, q = 1 mV
    >>> float(model.mean(theta)), float(model.variance(theta))
    (0.5, 0.25)
    >>> model.cost_grad(theta).round(6).tolist()    # on the target curve: only log σ pulls
    [0.0, 1.0]
    >>> model.in_unit("V").target_mean
    0.0005
    """

    target_mean: float
    n_sites: int = 1
    unit: Unit = "mV"  # type: ignore[assignment]

    def __post_init__(self) -> None:
        n = as_positive_int(self.n_sites, "n_sites (number of release sites)")
        phi = as_positive_float(self.target_mean, "target_mean (a voltage)")
        u = unit(self.unit)
        if u.dimension != "voltage":
            raise InputError(
                f"the release model measures q in a voltage unit (V, mV, µV), got {u.symbol!r}"
            )
        object.__setattr__(self, "n_sites", n)
        object.__setattr__(self, "target_mean", phi)
        object.__setattr__(self, "unit", u)

    # -- units ------------------------------------------------------------------------------------
    @property
    def parameter_units(self) -> tuple[Unit, Unit]:
        """Units of ``(P, q)``."""
        return (DIMENSIONLESS, self.unit)

    def unit_change(self, target: UnitLike) -> UnitChange:
        """The coordinate change of ``theta`` from this model's unit to ``target``."""
        return UnitChange(self.parameter_units, (DIMENSIONLESS, unit(target)))

    def in_unit(self, target: UnitLike) -> BinomialRelease:
        """The same model with ``q`` and the target mean expressed in ``target``."""
        target = unit(target)
        return replace(
            self, target_mean=self.target_mean * self.unit.factor_to(target), unit=target
        )

    # -- validation -------------------------------------------------------------------------------
    def _check_theta(self, theta) -> np.ndarray:
        t = np.asarray(theta, dtype=np.float64)
        if t.ndim == 0 or t.shape[-1] != 2:
            raise InputError(
                f"theta must have shape [..., 2] with columns (P, q), got shape {t.shape}"
            )
        if not np.all(np.isfinite(t)):
            raise InputError("theta contains NaN or inf; pass finite (P, q) values")
        p, q = t[..., 0], t[..., 1]
        if np.any((p <= 0) | (p >= 1)):
            bad = p[(p <= 0) | (p >= 1)].ravel()[:3].tolist()
            raise InputError(
                f"release probability P must lie in the open interval (0, 1), got e.g. {bad}; "
                "clip P to [eps, 1 - eps]"
            )
        if np.any(q <= 0):
            bad = q[q <= 0].ravel()[:3].tolist()
            raise InputError(
                f"quantal amplitude q must be > 0 (in {self.unit.symbol}), got e.g. {bad}"
            )
        return t

    # -- moments and cost -------------------------------------------------------------------------
    def mean(self, theta) -> np.ndarray:
        """μ = N·P·q, shape=[...] (in ``unit``)."""
        t = self._check_theta(theta)
        return _moments(t[..., 0], t[..., 1], self.n_sites)[0]

    def variance(self, theta) -> np.ndarray:
        """σ² = N·q²·P·(1 − P), shape=[...] (in ``unit``²)."""
        t = self._check_theta(theta)
        return _moments(t[..., 0], t[..., 1], self.n_sites)[1]

    def cost(self, theta) -> np.ndarray:
        """f(P, q) = log σ + (m − μ)²/(2σ²) (the s → 0 KL without its constant terms)."""
        t = self._check_theta(theta)
        mean, var = _moments(t[..., 0], t[..., 1], self.n_sites)
        return _cost_from_moments(mean, var, self.target_mean, np.log)

    def kl_divergence(self, theta, target_width: float) -> np.ndarray:
        """KL(N(m, s²) ‖ N(μ, σ²)) with ``s = target_width`` (in ``unit``); differs from
        :meth:`cost` by ``−log s + s²/(2σ²) − ½``."""
        s = as_positive_float(target_width, "target_width")
        t = self._check_theta(theta)
        mean, var = _moments(t[..., 0], t[..., 1], self.n_sites)
        return 0.5 * np.log(var / s**2) + (s**2 + (self.target_mean - mean) ** 2) / (2 * var) - 0.5

    def moment_jacobians(self, theta) -> tuple[np.ndarray, np.ndarray]:
        """(∂μ, ∂σ²) with respect to (P, q), each shape=[..., 2]."""
        t = self._check_theta(theta)
        p, q, n = t[..., 0], t[..., 1], self.n_sites
        d_mean = np.stack([n * q, n * p], axis=-1)
        d_var = np.stack([n * q * q * (1 - 2 * p), 2 * n * q * p * (1 - p)], axis=-1)
        return d_mean, d_var

    def cost_grad(self, theta) -> np.ndarray:
        r"""Partial derivatives ∂f/∂(P, q) in closed form, shape=[..., 2].

        .. math::  \partial_i f = \frac{\partial_i\sigma^2}{2\sigma^2}
                   - \frac{(m-\mu)\,\partial_i\mu}{\sigma^2}
                   - \frac{(m-\mu)^2\,\partial_i\sigma^2}{2\sigma^4}

        A covector: ∂f/∂q is in 1/``unit``.
        """
        t = self._check_theta(theta)
        mean, var = _moments(t[..., 0], t[..., 1], self.n_sites)
        d_mean, d_var = self.moment_jacobians(t)
        err = (self.target_mean - mean)[..., None]
        var = var[..., None]
        return d_var / (2 * var) - err * d_mean / var - err**2 * d_var / (2 * var**2)

    def cost_grad_autograd(self, theta) -> np.ndarray:
        """∂f/∂(P, q) by torch autograd (float64) of the same cost; shape=[..., 2]."""
        t = torch.as_tensor(self._check_theta(theta), dtype=torch.float64)
        t = t.detach().clone().requires_grad_(True)
        mean, var = _moments(t[..., 0], t[..., 1], self.n_sites)
        cost = _cost_from_moments(mean, var, self.target_mean, torch.log)
        (grad,) = torch.autograd.grad(cost.sum(), t)
        return grad.numpy()

    # -- Fisher information -----------------------------------------------------------------------
    def fisher_information(self, theta) -> np.ndarray:
        r"""Fisher information of :math:`\mathcal N(\mu(\theta), \sigma^2(\theta))`, shape=[..., 2, 2].

        :math:`I = \partial\mu\,\partial\mu^T/\sigma^2 + \partial\sigma^2\,\partial\sigma^{2T}/(2\sigma^4)`;
        entry ``(q, q)`` is in 1/``unit``². SPD for every P in (0, 1), q > 0.
        """
        t = self._check_theta(theta)
        _, var = _moments(t[..., 0], t[..., 1], self.n_sites)
        d_mean, d_var = self.moment_jacobians(t)
        var = var[..., None, None]
        return (d_mean[..., :, None] * d_mean[..., None, :]) / var + (
            d_var[..., :, None] * d_var[..., None, :]
        ) / (2 * var**2)

    def binomial_fisher_information_p(self, theta) -> np.ndarray:
        """Fisher information about P of the exact binomial count: N / (P(1 − P)), shape=[...].

        The exact response has no regular Fisher information for q (its support moves with q);
        the Gaussian approximation is what the Surace & Brea figure uses.
        """
        t = self._check_theta(theta)
        p = t[..., 0]
        return self.n_sites / (p * (1 - p))

    def response_log_density(self, response, theta):
        """log N(x; μ(θ), σ²(θ)) of responses ``x`` (in ``unit``), broadcasting over leading axes.

        Accepts torch tensors (differentiable: its gradient in ``theta`` is the score) or arrays.
        """
        if isinstance(theta, torch.Tensor) or isinstance(response, torch.Tensor):
            t = torch.as_tensor(theta, dtype=torch.float64)
            x = torch.as_tensor(response, dtype=torch.float64)
            log, pi = torch.log, torch.tensor(math.pi, dtype=torch.float64)
        else:
            t = self._check_theta(theta)
            x = np.asarray(response, dtype=np.float64)
            log, pi = np.log, math.pi
        mean, var = _moments(t[..., 0], t[..., 1], self.n_sites)
        return -0.5 * log(2 * pi * var) - (x - mean) ** 2 / (2 * var)

    def sample_responses(
        self, theta, n_samples: int, rng=None, *, exact: bool = False
    ) -> np.ndarray:
        """Draw ``n_samples`` responses at one parameter point ``theta`` (shape=[2]).

        Gaussian approximation by default; ``exact=True`` draws ``k·q`` with ``k ~ Bin(N, P)``.
        ``rng`` is a ``numpy.random.Generator``, a seed, or ``None`` for fresh entropy (as in
        NumPy).
        """
        t = self._check_theta(theta)
        if t.shape != (2,):
            raise InputError(
                f"sample_responses needs one parameter point of shape [2], got {t.shape}"
            )
        n_samples = as_positive_int(n_samples, "n_samples")
        rng = as_generator(rng)
        p, q = t
        if exact:
            return rng.binomial(self.n_sites, p, size=n_samples) * q
        mean, var = _moments(p, q, self.n_sites)
        return rng.normal(mean, math.sqrt(var), size=n_samples)

    def to_dict(self) -> dict:
        return {"target_mean": self.target_mean, "n_sites": self.n_sites, "unit": self.unit.symbol}

    def __repr__(self) -> str:
        return (
            f"BinomialRelease(target_mean={self.target_mean:g} {self.unit.symbol}, "
            f"n_sites={self.n_sites})"
        )
