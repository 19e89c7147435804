r"""The three-component plasticity model of Raman, Rotondo & O'Leary (docs/theory.md §6).

Over a feedback interval of length ``T`` the weights change by :math:`\Delta w = T\,\dot w_T`, with
the *per-unit-time* weight velocity

.. math::

    \dot w_T = -\gamma_1 \widehat{\nabla F} + \gamma_2 \hat n_2 + \gamma_3 \sqrt{N/T}\, \hat n_3 ,

where hats are unit vectors (Euclidean norm over all ``N`` synapses together):

* :math:`-\gamma_1\widehat{\nabla F}` — *task-relevant* plasticity, along the negative gradient;
  it moves the weights by :math:`\gamma_1 T` per interval;
* :math:`\gamma_2 \hat n_2` — *task-irrelevant* plasticity (homeostasis, other tasks), a random
  direction of norm :math:`\gamma_2 T` per interval;
* :math:`\gamma_3 \sqrt{N/T}\,\hat n_3` — *synaptic noise*, i.i.d. white noise at each synapse
  with per-synapse diffusion :math:`\gamma_3^2` per unit time: over ``T`` its norm is
  :math:`\gamma_3\sqrt{NT}`, i.e. about :math:`\gamma_3\sqrt{T}` per synapse, whatever ``N``.

Conventions
-----------
* :math:`\hat n_2, \hat n_3` are drawn **uniformly on the unit sphere** of :math:`\mathbb{R}^N`
  (a standard Gaussian vector divided by its norm). Then for every symmetric ``H``,
  :math:`\langle \hat n^\top H \hat n\rangle = \mathrm{Tr}\,H / N` exactly, and
  :math:`\langle \hat n\rangle = 0`, which is what :func:`syngeo.bounds.expected_learning_rate`
  uses. They are *not* projected orthogonal to the gradient: they are uncorrelated with it on
  average, as in the theory.
* :math:`\hat n_2` may be correlated across intervals, as in the authors' online runs: the
  underlying Gaussian vector follows an AR(1) process
  :math:`z_t = \rho z_{t-1} + \sqrt{1-\rho^2}\,\xi_t`, so each :math:`\hat n_2` is still uniform
  on the sphere (the stationary law of ``z`` is standard normal) and consecutive directions have
  correlation about :math:`\rho`. :math:`\hat n_3` is always fresh.
* Alternatively (``persistence=p``, the authors' scripts' rule) the new direction mixes the
  previous *unit* direction with a fresh uniform one and is renormalised,
  :math:`\hat n_2^{(t)} = (p\,\hat n_2^{(t-1)} + (1-p)\hat\xi_t)/\|\cdot\|`; consecutive
  directions then have correlation :math:`p/\sqrt{p^2 + (1-p)^2} + O(1/N)` (0.110 for the
  scripts' p = 0.1). Each direction is still uniform on the sphere (a rotation-invariant
  function of independent uniform vectors).
* The same generator drives :class:`SynapticNoise`, the ``plasticity_noise`` callable of
  ``syngeo.optim.MirrorDescent``: it returns the *non-gradient* part
  :math:`T(\gamma_2\hat n_2 + \gamma_3\sqrt{N/T}\hat n_3)` for one interval, split into the
  parameters' shapes, to be added as is in the dual space (before the inverse mirror map) or in
  the primal space.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch

from syngeo.errors import InputError, InputTypeError
from syngeo.validation import as_finite_float, as_positive_float, as_positive_int

__all__ = [
    "PlasticityRates",
    "PlasticityStep",
    "SynapticNoise",
    "ThreeComponentPlasticity",
    "random_unit_vector",
]


@dataclass(frozen=True)
class PlasticityRates:
    r"""Magnitudes of the three plasticity components and the feedback interval.

    Attributes
    ----------
    gamma1 : float
        Task-relevant speed: the gradient component moves the weights by ``gamma1 * T``.
    gamma2 : float
        Task-irrelevant speed: a random direction of norm ``gamma2 * T`` per interval.
    gamma3 : float
        Per-synapse noise amplitude: the noise has norm ``gamma3 * sqrt(N * T)`` per interval.
    T : float
        Time between two error feedbacks (> 0).

    Examples
    --------
    >>> r = PlasticityRates(0.07, 1.0, 0.03, T=1.0)
    >>> round(r.mean_squared_speed(50), 4)   # γ1² + γ2² + γ3² N / T
    1.0499
    """

    gamma1: float
    gamma2: float
    gamma3: float
    T: float = 1.0

    def __post_init__(self) -> None:
        for name in ("gamma1", "gamma2", "gamma3"):
            value = as_positive_float(getattr(self, name), name, allow_zero=True)
            object.__setattr__(self, name, value)
        object.__setattr__(self, "T", as_positive_float(self.T, "T"))

    def mean_squared_speed(self, n_synapses: int) -> float:
        r""":math:`\langle\|\dot w_T\|^2\rangle = \gamma_1^2 + \gamma_2^2 + \gamma_3^2 N/T`."""
        n = _check_n(n_synapses)
        return self.gamma1**2 + self.gamma2**2 + self.gamma3**2 * n / self.T

    def noise_norm(self, n_synapses: int) -> float:
        r"""Norm of the synaptic-noise velocity, :math:`\gamma_3\sqrt{N/T}`."""
        return self.gamma3 * math.sqrt(_check_n(n_synapses) / self.T)

    def to_dict(self) -> dict:
        return asdict(self)


def _check_n(n: int) -> int:
    return as_positive_int(n, "the number of synapses")


def random_unit_vector(
    n: int,
    *,
    generator: torch.Generator,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    r"""A vector drawn uniformly on the unit sphere of :math:`\mathbb{R}^n`.

    Drawn as :math:`z/\|z\|` with :math:`z \sim N(0, I_n)`; hence
    :math:`\langle \hat n^\top H \hat n\rangle = \mathrm{Tr}\,H/n` for every symmetric ``H``.

    Examples
    --------
    >>> g = torch.Generator().manual_seed(0)
    >>> round(float(random_unit_vector(5, generator=g).norm()), 12)
    1.0
    """
    z = torch.randn(_check_n(n), generator=generator, dtype=dtype, device=device)
    return z / z.norm()


@dataclass(frozen=True)
class PlasticityStep:
    r"""One interval of three-component plasticity (flat vectors over all synapses).

    Attributes
    ----------
    task : Tensor
        :math:`-\gamma_1\widehat{\nabla F}` (per unit time).
    irrelevant : Tensor
        :math:`\gamma_2\hat n_2` (per unit time).
    noise : Tensor
        :math:`\gamma_3\sqrt{N/T}\hat n_3` (per unit time).
    T : float
        The interval; the weight change is ``delta = T * velocity``.
    """

    task: torch.Tensor
    irrelevant: torch.Tensor
    noise: torch.Tensor
    T: float

    @property
    def velocity(self) -> torch.Tensor:
        r""":math:`\dot w_T`, the per-unit-time weight velocity."""
        return self.task + self.irrelevant + self.noise

    @property
    def delta(self) -> torch.Tensor:
        r"""The weight change over the interval, :math:`\Delta w = T\dot w_T`."""
        return self.T * self.velocity

    def __repr__(self) -> str:
        return (
            f"PlasticityStep(N={self.task.numel()}, T={self.T:g}, "
            f"|task|={float(self.task.norm()):.4g}, |irrelevant|={float(self.irrelevant.norm()):.4g}, "
            f"|noise|={float(self.noise.norm()):.4g})"
        )

    def to_dict(self) -> dict:
        return {
            "n_synapses": self.task.numel(),
            "T": self.T,
            "task_norm": float(self.task.norm()),
            "irrelevant_norm": float(self.irrelevant.norm()),
            "noise_norm": float(self.noise.norm()),
        }


class ThreeComponentPlasticity:
    r"""Generator of :math:`\dot w_T = -\gamma_1\widehat{\nabla F} + \gamma_2\hat n_2 + \gamma_3\sqrt{N/T}\hat n_3`.

    Stateful only through the AR(1) direction of :math:`\hat n_2` (``correlation`` = ρ; 0 gives
    independent directions every interval) and the random generator.

    Parameters
    ----------
    rates : PlasticityRates
        γ1, γ2, γ3 and T.
    generator : torch.Generator
        Source of all randomness (required: results are reproducible from its seed).
    correlation : float
        AR(1) coefficient ρ ∈ [0, 1) of the task-irrelevant direction across intervals.
    persistence : float
        p ∈ [0, 1): the scripts' rule instead of the AR(1) (module docstring); at most one of
        ``correlation`` and ``persistence`` may be non-zero.

    Examples
    --------
    >>> rates = PlasticityRates(1.0, 0.5, 0.1, T=2.0)
    >>> plast = ThreeComponentPlasticity(rates, generator=torch.Generator().manual_seed(0))
    >>> step = plast.step(torch.tensor([3.0, 4.0, 0.0], dtype=torch.float64))
    >>> step.task        # -γ1 ∇F̂
    tensor([-0.6000, -0.8000, -0.0000], dtype=torch.float64)
    >>> round(float(step.noise.norm()), 4)   # γ3 sqrt(N/T)
    0.1225
    """

    def __init__(
        self,
        rates: PlasticityRates,
        *,
        generator: torch.Generator,
        correlation: float = 0.0,
        persistence: float = 0.0,
    ) -> None:
        if not isinstance(rates, PlasticityRates):
            raise InputTypeError(
                f"rates must be a PlasticityRates(gamma1, gamma2, gamma3, T), got {type(rates).__name__}"
            )
        if not isinstance(generator, torch.Generator):
            raise InputTypeError(
                "generator must be a torch.Generator, e.g. torch.Generator().manual_seed(0); "
                f"got {type(generator).__name__}"
            )
        rho = as_finite_float(correlation, "correlation")
        if not (0.0 <= rho < 1.0):
            raise InputError(f"correlation must lie in [0, 1), got {correlation!r}")
        p = as_finite_float(persistence, "persistence")
        if not (0.0 <= p < 1.0):
            raise InputError(f"persistence must lie in [0, 1), got {persistence!r}")
        if rho > 0 and p > 0:
            raise InputError(
                "give either correlation (AR(1) of the Gaussian direction) or persistence "
                "(the scripts' mixing of unit directions), not both"
            )
        self.rates = rates
        self.generator = generator
        self.correlation = rho
        self.persistence = p
        self._z2: torch.Tensor | None = None

    def __repr__(self) -> str:
        r = self.rates
        return (
            f"ThreeComponentPlasticity(gamma1={r.gamma1:g}, gamma2={r.gamma2:g}, "
            f"gamma3={r.gamma3:g}, T={r.T:g}, correlation={self.correlation:g}, "
            f"persistence={self.persistence:g})"
        )

    def _irrelevant_direction(self, n: int, dtype, device) -> torch.Tensor:
        xi = torch.randn(n, generator=self.generator, dtype=dtype, device=device)
        if self.persistence > 0.0:
            fresh = xi / xi.norm()
            old = self._z2
            if old is None or old.numel() != n:
                z = fresh
            else:
                p = self.persistence
                z = p * old.to(dtype) + (1.0 - p) * fresh
            z = z / z.norm()
            self._z2 = z
            return z
        z = self._z2
        if z is None or z.numel() != n or self.correlation == 0.0:
            z = xi
        else:
            rho = self.correlation
            z = rho * z.to(dtype) + math.sqrt(1.0 - rho * rho) * xi
        self._z2 = z
        return z / z.norm()

    def noise_velocity(
        self, n: int, *, dtype: torch.dtype = torch.float64, device=None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        r"""The two random parts :math:`(\gamma_2\hat n_2,\ \gamma_3\sqrt{N/T}\hat n_3)`, per unit time."""
        n = _check_n(n)
        r = self.rates
        n2 = self._irrelevant_direction(n, dtype, device)
        n3 = random_unit_vector(n, generator=self.generator, dtype=dtype, device=device)
        return r.gamma2 * n2, r.noise_norm(n) * n3

    def step(self, grad: torch.Tensor) -> PlasticityStep:
        r"""Draw one interval's velocity given the gradient :math:`\nabla F` (any shape; flattened).

        A zero gradient gives a zero task-relevant component (there is no direction to follow).
        """
        if not isinstance(grad, torch.Tensor):
            raise InputTypeError(f"grad must be a torch.Tensor, got {type(grad).__name__}")
        g = grad.detach().reshape(-1)
        if not torch.isfinite(g).all():
            raise InputError("grad contains NaN or inf; check the loss at the current weights")
        norm = g.norm()
        task = -self.rates.gamma1 * (g / norm if norm > 0 else torch.zeros_like(g))
        irrelevant, noise = self.noise_velocity(g.numel(), dtype=g.dtype, device=g.device)
        return PlasticityStep(task=task, irrelevant=irrelevant, noise=noise, T=self.rates.T)


class SynapticNoise:
    r"""Task-irrelevant plasticity plus synaptic noise, as a ``plasticity_noise`` callable.

    Calling it with a list of parameter tensors returns, for one interval of length ``T``, the
    additive perturbations

    .. math::  T\,(\gamma_2 \hat n_2 + \gamma_3\sqrt{N/T}\,\hat n_3),

    split into the parameters' shapes, where ``N`` is the total number of entries of all the
    parameters and the unit vectors are taken over all of them together (see the module
    docstring). ``syngeo.optim.MirrorDescent(..., plasticity_noise=SynapticNoise(...),
    noise_space="dual")`` adds them to the dual weights :math:`\nabla\phi(w)`; with
    ``noise_space="primal"`` to the weights. Under negative entropy, dual noise makes
    :math:`\log|w|` diffuse (log-normal weights); under the Euclidean geometry the two spaces
    coincide.

    Parameters
    ----------
    gamma2, gamma3, T : float
        As in :class:`PlasticityRates` (``gamma1`` is the optimizer's business).
    generator : torch.Generator
        Source of randomness (required).
    correlation : float
        AR(1) coefficient of the task-irrelevant direction across calls.

    Examples
    --------
    >>> noise = SynapticNoise(0.0, 0.1, T=1.0, generator=torch.Generator().manual_seed(0))
    >>> params = [torch.zeros(20, 5), torch.zeros(5)]
    >>> out = noise(params)
    >>> [tuple(o.shape) for o in out]
    [(20, 5), (5,)]
    >>> round(float(torch.cat([o.reshape(-1) for o in out]).norm()), 4)   # γ3 sqrt(N T)
    1.0247
    """

    def __init__(
        self,
        gamma2: float,
        gamma3: float,
        T: float = 1.0,
        *,
        generator: torch.Generator,
        correlation: float = 0.0,
    ) -> None:
        rates = PlasticityRates(0.0, gamma2, gamma3, T)
        self._plasticity = ThreeComponentPlasticity(
            rates, generator=generator, correlation=correlation
        )

    @property
    def rates(self) -> PlasticityRates:
        return self._plasticity.rates

    def __repr__(self) -> str:
        r = self.rates
        return (
            f"SynapticNoise(gamma2={r.gamma2:g}, gamma3={r.gamma3:g}, T={r.T:g}, "
            f"correlation={self._plasticity.correlation:g})"
        )

    def __call__(self, params: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        if isinstance(params, torch.Tensor):
            params = [params]
        params = list(params)
        if not params or not all(isinstance(p, torch.Tensor) for p in params):
            raise InputTypeError(
                "SynapticNoise expects a non-empty list of tensors (the parameters)"
            )
        ref = params[0]
        dtype = ref.dtype if ref.is_floating_point() else torch.float64
        n = sum(p.numel() for p in params)
        irrelevant, noise = self._plasticity.noise_velocity(n, dtype=dtype, device=ref.device)
        flat = self.rates.T * (irrelevant + noise)
        out, start = [], 0
        for p in params:
            out.append(flat[start : start + p.numel()].reshape(p.shape).to(p.dtype))
            start += p.numel()
        return out
