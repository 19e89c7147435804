r"""Learning-rate bounds under noisy plasticity (Raman, Rotondo & O'Leary 2019; THEORY.md §6).

Definitions and conventions (derived in ``docs/raman.md``)
---------------------------------------------------------
* **Learning rate** ``k`` over a feedback interval ``T``: :math:`F(T) = (1 - kT)F(0)`, i.e.
  :math:`k = (1 - F(T)/F(0))/T` (:func:`learning_rate`).
* **Weight velocity** :math:`\dot w_T = \Delta w / T` (per unit time; :mod:`syngeo.plasticity`).
* **Second-order prediction** (exact for quadratic losses), with :math:`H = \nabla^2 F(w_0)`:

  .. math::  k \approx -\frac{1}{F}\Big[\nabla F^\top \dot w_T + \frac{T}{2}\,\dot w_T^\top H \dot w_T\Big]

  (:func:`predicted_learning_rate`; gradient and curvature terms are returned separately).
* **Expected learning rate** over the random directions of the three-component model
  :math:`\dot w_T = -\gamma_1\widehat{\nabla F} + \gamma_2\hat n_2 + \gamma_3\sqrt{N/T}\hat n_3`
  with :math:`\hat n_2, \hat n_3` independent and uniform on the unit sphere (so
  :math:`\langle\hat n\rangle = 0`, :math:`\langle\hat n^\top H\hat n\rangle = \mathrm{Tr}H/N`):

  .. math::

      \langle \dot w_T^\top\widehat{\nabla F}\rangle = -\gamma_1, \qquad
      \langle \dot w_T^\top H \dot w_T\rangle = \gamma_1^2\, g + \mathrm{Tr}H\Big(\frac{\gamma_2^2}{N}
      + \frac{\gamma_3^2}{T}\Big), \quad g = \widehat{\nabla F}^\top H \widehat{\nabla F},

      \langle k\rangle = \frac{\gamma_1\|\nabla F\|}{F} - \frac{T}{2F}\Big[\gamma_1^2 g
      + \mathrm{Tr}H\Big(\frac{\gamma_2^2}{N} + \frac{\gamma_3^2}{T}\Big)\Big]

  (:func:`expected_learning_rate`). This is exact for the quadratic model — no cross term
  survives the average. The slides' version drops the factor :math:`1/(2\|\nabla F\|)` of the
  :math:`\gamma_1^2` term and gives the noise terms one power of :math:`\|\nabla F\|` too many
  (``docs/raman.md``).
* **Local task difficulty** along a unit direction :math:`\hat w`:
  :math:`G_F[\hat w] = \hat w^\top H\hat w / \|\nabla F\|` (``convention="theory"``, the default, as
  in THEORY.md §6). The authors' scripts use :math:`G^{\rm ref} = \hat w^\top H\hat w/(2\|\nabla F\|)
  = G_F/2` (``convention="reference"``); then :math:`k = (\|\nabla F\|/F)(\gamma_1 - G^{\rm ref}
  \|\Delta w\|^2/T)` when :math:`\dot w_T^\top\widehat{\nabla F} = -\gamma_1`.
* **Learning condition**: :math:`\langle k\rangle > 0` exactly when the mean difficulty
  :math:`\bar G = \langle\dot w_T^\top H\dot w_T\rangle / (\langle\|\dot w_T\|^2\rangle\|\nabla F\|)`
  is below :math:`2\gamma_1 / (T(\gamma_1^2 + \gamma_2^2 + \gamma_3^2 N/T))` (theory convention;
  the reference convention halves both sides, giving the slides' bound
  :math:`\gamma_1/(T(\gamma_1^2+\gamma_2^2+\gamma_3^2N/T))`) — :func:`learning_condition`.
* **Optimal size.** Growing a network while the task (``F``, :math:`\nabla F`, ``g``) is fixed and
  :math:`\mathrm{Tr}H \propto N^\beta` (for the linear expansion of
  :mod:`syngeo.expansion` with :math:`c_1 = N^{1-\beta}, c_2 = N^{\beta}` up to the base size,
  :math:`\mathrm{Tr}H' = c_2\mathrm{Tr}H`), the curvature cost
  :math:`N^\beta(\gamma_2^2/N + \gamma_3^2/T)` is smallest at

  .. math::  N^* = \frac{1-\beta}{\beta}\,\frac{T\gamma_2^2}{\gamma_3^2}

  (:func:`optimal_size`; :math:`T\gamma_2^2/\gamma_3^2` for :math:`c_1 = c_2`), always
  :math:`\ge 0`; :func:`optimal_size_numeric` finds the maximiser of any ``k(N)`` curve.

Models and losses
-----------------
``loss_fn(params)`` must be a functional torch computation returning a scalar, where ``params`` is
a tensor or a list/tuple of tensors with the structure passed in; directions (``delta_w``,
``direction``) are given either in the same structure or as one flat vector (parameters
concatenated in order, each flattened row-major). Gradients and Hessian-vector products use
``torch.func`` (``jvp`` of ``grad``), so no Hessian is formed unless asked for.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Literal, Union

import numpy as np
import scipy.optimize
import torch
from torch.func import grad as func_grad
from torch.func import jvp, vmap

from syngeo.plasticity import PlasticityRates

__all__ = [
    "ExpectedLearningRate",
    "LearningCondition",
    "LearningRatePrediction",
    "LossGeometry",
    "OptimalSize",
    "TraceEstimate",
    "difficulty_bound",
    "expected_learning_rate",
    "hessian_matrix",
    "hessian_trace",
    "hessian_vector_product",
    "hutchinson_trace",
    "learning_condition",
    "learning_rate",
    "local_task_difficulty",
    "loss_geometry",
    "mean_task_difficulty",
    "optimal_size",
    "optimal_size_numeric",
    "predicted_learning_rate",
    "size_learning_rate",
]

Params = Union[torch.Tensor, Sequence[torch.Tensor]]
Convention = Literal["theory", "reference"]

# ----------------------------------------------------------------------------------------------
# flat views of a parameter structure
# ----------------------------------------------------------------------------------------------


def _as_param_list(params: Params) -> tuple[list[torch.Tensor], bool]:
    if isinstance(params, torch.Tensor):
        return [params], True
    if (
        isinstance(params, (list, tuple))
        and params
        and all(isinstance(p, torch.Tensor) for p in params)
    ):
        return list(params), False
    raise TypeError(
        f"params must be a tensor or a non-empty list/tuple of tensors, got {type(params).__name__}"
    )


def _flat_problem(loss_fn: Callable, params: Params):
    """Return (f_flat, theta0) with f_flat(theta) = loss_fn(params rebuilt from theta)."""
    if not callable(loss_fn):
        raise TypeError(f"loss_fn must be callable (params -> scalar tensor), got {loss_fn!r}")
    plist, single = _as_param_list(params)
    for p in plist:
        if not p.is_floating_point():
            raise TypeError(f"parameters must be floating point tensors, got dtype {p.dtype}")
    shapes = [p.shape for p in plist]
    sizes = [p.numel() for p in plist]
    theta0 = torch.cat([p.detach().reshape(-1) for p in plist])
    if not torch.isfinite(theta0).all():
        raise ValueError("params contain NaN or inf")
    is_tuple = isinstance(params, tuple)

    def rebuild(theta: torch.Tensor):
        parts = [c.reshape(s) for c, s in zip(torch.split(theta, sizes), shapes, strict=False)]
        if single:
            return parts[0]
        return tuple(parts) if is_tuple else parts

    def f_flat(theta: torch.Tensor) -> torch.Tensor:
        out = loss_fn(rebuild(theta))
        if not isinstance(out, torch.Tensor) or out.numel() != 1:
            raise TypeError("loss_fn must return a scalar tensor")
        return out.reshape(())

    return f_flat, theta0


def _flat_direction(direction, theta0: torch.Tensor, name: str) -> torch.Tensor:
    if isinstance(direction, torch.Tensor) and direction.numel() == theta0.numel():
        v = direction.detach().reshape(-1)
    elif isinstance(direction, (list, tuple)):
        v = torch.cat([d.detach().reshape(-1) for d in direction])
    else:
        raise ValueError(
            f"{name} must have {theta0.numel()} entries (one per parameter entry), "
            "as one flat tensor or in the structure of params"
        )
    if v.numel() != theta0.numel():
        raise ValueError(f"{name} has {v.numel()} entries but params have {theta0.numel()}")
    if not torch.isfinite(v).all():
        raise ValueError(f"{name} contains NaN or inf")
    return v.to(theta0.dtype)


def _hvp(f_flat, theta0: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return jvp(func_grad(f_flat), (theta0,), (v,))[1]


def _hvp_rows(f_flat, theta0: torch.Tensor, V: torch.Tensor, chunk: int = 256) -> torch.Tensor:
    """Rows H v_j for the rows v_j of V (batched with vmap, a loop if the loss resists vmap)."""
    out = []
    for start in range(0, V.shape[0], chunk):
        block = V[start : start + chunk]
        try:
            out.append(vmap(lambda v: _hvp(f_flat, theta0, v))(block))
        except Exception:  # some user losses use ops without batching rules
            out.append(torch.stack([_hvp(f_flat, theta0, v) for v in block]))
    return torch.cat(out)


# ----------------------------------------------------------------------------------------------
# learning rate: definition and second-order prediction
# ----------------------------------------------------------------------------------------------


def _finite(name: str, x) -> float:
    try:
        x = float(x)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a real number, got {type(x).__name__}") from None
    if not math.isfinite(x):
        raise ValueError(f"{name} must be finite, got {x!r}")
    return x


def learning_rate(F0: float, FT: float, T: float) -> float:
    r"""The learning rate ``k`` defined by :math:`F(T) = (1 - kT)F(0)`: :math:`k = (1 - F_T/F_0)/T`.

    Positive when the error fell, negative when it grew; ``k = 1/T`` means the error vanished.

    Examples
    --------
    >>> learning_rate(2.0, 1.5, T=0.5)
    0.5
    """
    F0, FT, T = _finite("F0", F0), _finite("FT", FT), _finite("T", T)
    if F0 <= 0:
        raise ValueError(f"F0 must be > 0 (the error before learning), got {F0!r}")
    if T <= 0:
        raise ValueError(f"T must be > 0, got {T!r}")
    return (1.0 - FT / F0) / T


@dataclass(frozen=True)
class LearningRatePrediction:
    r"""Second-order prediction of the learning rate for one weight change.

    Attributes
    ----------
    loss : float
        :math:`F(w_0)`.
    gradient_term : float
        :math:`-\nabla F^\top\dot w_T / F`.
    curvature_term : float
        :math:`-(T/2)\,\dot w_T^\top H\dot w_T / F`.
    k : float
        ``gradient_term + curvature_term``.
    T : float
        The interval (``delta_w = T * velocity``).
    """

    loss: float
    gradient_term: float
    curvature_term: float
    k: float
    T: float

    def to_dict(self) -> dict:
        return asdict(self)


def predicted_learning_rate(
    loss_fn: Callable, params: Params, delta_w, T: float
) -> LearningRatePrediction:
    r"""Second-order prediction of ``k`` for the weight change ``delta_w`` made over ``T``.

    .. math::  k \approx -\frac{1}{F}\Big[\nabla F^\top\dot w_T + \frac{T}{2}\dot w_T^\top\nabla^2F\,
               \dot w_T\Big], \qquad \dot w_T = \Delta w / T,

    using one Hessian-vector product. Exact when ``F`` is quadratic in the weights.

    Examples
    --------
    >>> w = torch.tensor([1.0, 2.0], dtype=torch.float64)
    >>> loss = lambda w: 0.5 * (w ** 2).sum()              # F = 2.5
    >>> p = predicted_learning_rate(loss, w, -0.1 * w, T=1.0)
    >>> round(p.k, 6), round(learning_rate(2.5, loss(0.9 * w).item(), 1.0), 6)
    (0.19, 0.19)
    """
    T = _finite("T", T)
    if T <= 0:
        raise ValueError(f"T must be > 0, got {T!r}")
    f_flat, theta0 = _flat_problem(loss_fn, params)
    v = _flat_direction(delta_w, theta0, "delta_w") / T
    F, g_dot_v = jvp(f_flat, (theta0,), (v,))
    F = float(F)
    if F <= 0:
        raise ValueError(f"the loss must be > 0 to define a learning rate, got F = {F!r}")
    vHv = float(v @ _hvp(f_flat, theta0, v))
    grad_term = -float(g_dot_v) / F
    curv_term = -0.5 * T * vHv / F
    return LearningRatePrediction(F, grad_term, curv_term, grad_term + curv_term, T)


def hessian_vector_product(loss_fn: Callable, params: Params, v) -> torch.Tensor:
    r""":math:`\nabla^2 F(w)\,v` as a flat vector, by forward-over-reverse differentiation.

    Examples
    --------
    >>> A = torch.tensor([[2.0, 1.0], [1.0, 3.0]], dtype=torch.float64)
    >>> f = lambda w: 0.5 * w @ A @ w
    >>> hessian_vector_product(f, torch.zeros(2, dtype=torch.float64), torch.tensor([1.0, 0.0], dtype=torch.float64))
    tensor([2., 1.], dtype=torch.float64)
    """
    f_flat, theta0 = _flat_problem(loss_fn, params)
    return _hvp(f_flat, theta0, _flat_direction(v, theta0, "v"))


def hessian_matrix(loss_fn: Callable, params: Params) -> torch.Tensor:
    """The full ``N × N`` Hessian (flat parameter order); for small models only (O(N²) memory)."""
    f_flat, theta0 = _flat_problem(loss_fn, params)
    return torch.func.hessian(f_flat)(theta0)


def hessian_trace(loss_fn: Callable, params: Params, *, chunk: int = 256) -> float:
    r"""Exact :math:`\mathrm{Tr}\,\nabla^2 F` from ``N`` Hessian-vector products with the basis vectors.

    Costs ``N`` HVPs but only O(chunk · N) memory; use :func:`hutchinson_trace` for large ``N``.
    """
    f_flat, theta0 = _flat_problem(loss_fn, params)
    n = theta0.numel()
    total = 0.0
    for start in range(0, n, chunk):
        idx = torch.arange(start, min(start + chunk, n))
        E = torch.zeros(idx.numel(), n, dtype=theta0.dtype, device=theta0.device)
        E[torch.arange(idx.numel()), idx] = 1.0
        rows = _hvp_rows(f_flat, theta0, E, chunk=chunk)
        total += float(rows[torch.arange(idx.numel()), idx].sum())
    return total


@dataclass(frozen=True)
class TraceEstimate:
    r"""Hutchinson estimate of :math:`\mathrm{Tr}\,H` with its Monte Carlo standard error.

    Attributes
    ----------
    estimate : float
        Mean of :math:`v_j^\top H v_j` over the probes.
    standard_error : float
        Sample standard deviation of the :math:`v_j^\top H v_j` over :math:`\sqrt{m}`.
    n_probes : int
        Number of Rademacher probes ``m``.
    """

    estimate: float
    standard_error: float
    n_probes: int

    def to_dict(self) -> dict:
        return asdict(self)


def hutchinson_trace(
    loss_fn: Callable,
    params: Params,
    *,
    n_probes: int = 64,
    generator: torch.Generator,
) -> TraceEstimate:
    r"""Hutchinson's estimator of :math:`\mathrm{Tr}\,\nabla^2F` with Rademacher probes.

    :math:`\widehat{\mathrm{Tr}} = \frac1m\sum_j v_j^\top H v_j`, :math:`v_j \in \{\pm1\}^N`
    i.i.d. uniform. Unbiased, with per-probe variance :math:`2(\|H\|_F^2 - \sum_i H_{ii}^2)`; the
    reported standard error is the sample estimate of its square root over :math:`\sqrt m`.

    Examples
    --------
    >>> f = lambda w: 0.5 * (torch.arange(1.0, 5.0, dtype=torch.float64) * w ** 2).sum()
    >>> est = hutchinson_trace(f, torch.ones(4, dtype=torch.float64), n_probes=8,
    ...                        generator=torch.Generator().manual_seed(0))
    >>> est.estimate, est.standard_error    # diagonal Hessian: exact with any probe
    (10.0, 0.0)
    """
    if isinstance(n_probes, bool) or int(n_probes) != n_probes or n_probes < 2:
        raise ValueError(
            f"n_probes must be an integer >= 2 (for a standard error), got {n_probes!r}"
        )
    if not isinstance(generator, torch.Generator):
        raise TypeError(
            "generator must be a torch.Generator, e.g. torch.Generator().manual_seed(0)"
        )
    f_flat, theta0 = _flat_problem(loss_fn, params)
    m, n = int(n_probes), theta0.numel()
    V = torch.randint(0, 2, (m, n), generator=generator).to(theta0.dtype) * 2 - 1
    samples = (_hvp_rows(f_flat, theta0, V) * V).sum(dim=1).double()
    return TraceEstimate(float(samples.mean()), float(samples.std(unbiased=True) / math.sqrt(m)), m)


# ----------------------------------------------------------------------------------------------
# the loss geometry at a point and the expected learning rate
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LossGeometry:
    r"""What :math:`\langle k\rangle` needs to know about the loss at the current weights.

    Attributes
    ----------
    loss : float
        ``F``.
    grad_norm : float
        :math:`\|\nabla F\|`.
    grad_curvature : float
        :math:`g = \widehat{\nabla F}^\top\nabla^2F\,\widehat{\nabla F}` (curvature along the gradient).
    hessian_trace : float
        :math:`\mathrm{Tr}\,\nabla^2 F`.
    hessian_trace_se : float
        Standard error of ``hessian_trace`` (0 when exact).
    n_synapses : int
        ``N``, the number of weights.
    trace_method : str
        ``"exact"`` or ``"hutchinson"``.
    """

    loss: float
    grad_norm: float
    grad_curvature: float
    hessian_trace: float
    hessian_trace_se: float
    n_synapses: int
    trace_method: str = "exact"

    def __post_init__(self) -> None:
        for name in ("loss", "grad_norm", "grad_curvature", "hessian_trace", "hessian_trace_se"):
            object.__setattr__(self, name, _finite(name, getattr(self, name)))
        if self.loss <= 0:
            raise ValueError(f"loss must be > 0 to define a learning rate, got {self.loss!r}")
        if self.grad_norm < 0 or self.hessian_trace_se < 0:
            raise ValueError("grad_norm and hessian_trace_se must be >= 0")
        object.__setattr__(self, "n_synapses", _positive_int("n_synapses", self.n_synapses))

    def to_dict(self) -> dict:
        return asdict(self)


def _positive_int(name: str, n) -> int:
    if isinstance(n, bool) or int(n) != n or int(n) < 1:
        raise ValueError(f"{name} must be a positive integer, got {n!r}")
    return int(n)


def loss_geometry(
    loss_fn: Callable,
    params: Params,
    *,
    trace: Literal["auto", "exact", "hutchinson"] = "auto",
    n_probes: int = 64,
    generator: torch.Generator | None = None,
    exact_max: int = 3000,
) -> LossGeometry:
    r"""Loss, gradient norm, curvature along the gradient and Hessian trace at ``params``.

    ``trace="auto"`` is exact (``N`` HVPs) up to ``exact_max`` weights and Hutchinson's estimator
    (``n_probes`` Rademacher probes, needs ``generator``) above.
    """
    f_flat, theta0 = _flat_problem(loss_fn, params)
    n = theta0.numel()
    F = float(f_flat(theta0))
    g = func_grad(f_flat)(theta0)
    gnorm = float(g.norm())
    g_curv = float(g @ _hvp(f_flat, theta0, g)) / gnorm**2 if gnorm > 0 else 0.0
    if trace not in ("auto", "exact", "hutchinson"):
        raise ValueError(f"trace must be 'auto', 'exact' or 'hutchinson', got {trace!r}")
    method = trace if trace != "auto" else ("exact" if n <= exact_max else "hutchinson")
    if method == "exact":
        tr, se = hessian_trace(loss_fn, params), 0.0
    else:
        if generator is None:
            raise ValueError(
                "Hutchinson's trace estimate is random: pass generator=torch.Generator().manual_seed(...)"
            )
        est = hutchinson_trace(loss_fn, params, n_probes=n_probes, generator=generator)
        tr, se = est.estimate, est.standard_error
    return LossGeometry(F, gnorm, g_curv, tr, se, n, method)


@dataclass(frozen=True)
class ExpectedLearningRate:
    r"""The expected learning rate :math:`\langle k\rangle` and its four parts.

    Attributes
    ----------
    gradient_term : float
        :math:`\gamma_1\|\nabla F\|/F` (learning from the gradient).
    task_curvature_term : float
        :math:`-(T/2F)\gamma_1^2 g` (overshoot along the gradient).
    irrelevant_term : float
        :math:`-(T/2F)\,\mathrm{Tr}H\,\gamma_2^2/N` (task-irrelevant plasticity).
    noise_term : float
        :math:`-(T/2F)\,\mathrm{Tr}H\,\gamma_3^2/T` (synaptic noise).
    k : float
        The sum, :math:`\langle k\rangle`.
    k_standard_error : float
        Propagated from the trace's standard error (0 for an exact trace).
    """

    gradient_term: float
    task_curvature_term: float
    irrelevant_term: float
    noise_term: float
    k: float
    k_standard_error: float

    def to_dict(self) -> dict:
        return asdict(self)


def _check_rates(rates) -> PlasticityRates:
    if not isinstance(rates, PlasticityRates):
        raise TypeError(
            f"rates must be a PlasticityRates(gamma1, gamma2, gamma3, T), got {type(rates).__name__}"
        )
    return rates


def _check_geometry(geometry) -> LossGeometry:
    if not isinstance(geometry, LossGeometry):
        raise TypeError(
            f"geometry must be a LossGeometry (see loss_geometry()), got {type(geometry).__name__}"
        )
    return geometry


def expected_learning_rate(geometry: LossGeometry, rates: PlasticityRates) -> ExpectedLearningRate:
    r""":math:`\langle k\rangle` over the random directions of three-component plasticity.

    .. math::

        \langle k\rangle = \frac{\gamma_1\|\nabla F\|}{F} - \frac{T}{2F}\Big[\gamma_1^2 g
        + \mathrm{Tr}\nabla^2F\Big(\frac{\gamma_2^2}{N} + \frac{\gamma_3^2}{T}\Big)\Big]

    (module docstring for the derivation and the conventions on the unit vectors).

    Examples
    --------
    >>> geo = LossGeometry(loss=1.0, grad_norm=2.0, grad_curvature=1.0, hessian_trace=100.0,
    ...                    hessian_trace_se=0.0, n_synapses=100)
    >>> round(expected_learning_rate(geo, PlasticityRates(1.0, 0.0, 0.1, T=1.0)).k, 12)  # 2 - (1+1)/2
    1.0
    """
    geo, r = _check_geometry(geometry), _check_rates(rates)
    c = r.T / (2.0 * geo.loss)
    grad_term = r.gamma1 * geo.grad_norm / geo.loss
    task_curv = -c * r.gamma1**2 * geo.grad_curvature
    irrelevant = -c * geo.hessian_trace * r.gamma2**2 / geo.n_synapses
    noise = -c * geo.hessian_trace * r.gamma3**2 / r.T
    per_trace = c * (r.gamma2**2 / geo.n_synapses + r.gamma3**2 / r.T)
    k = grad_term + task_curv + irrelevant + noise
    return ExpectedLearningRate(
        grad_term, task_curv, irrelevant, noise, k, per_trace * geo.hessian_trace_se
    )


# ----------------------------------------------------------------------------------------------
# task difficulty and the learning condition
# ----------------------------------------------------------------------------------------------


def _check_convention(convention: str) -> float:
    if convention == "theory":
        return 1.0
    if convention == "reference":
        return 0.5
    raise ValueError(
        f"convention must be 'theory' (G = ŵᵀHŵ/‖∇F‖) or 'reference' (the authors' scripts, "
        f"G = ŵᵀHŵ/(2‖∇F‖)), got {convention!r}"
    )


def local_task_difficulty(
    loss_fn: Callable, params: Params, direction, *, convention: Convention = "theory"
) -> float:
    r"""Local task difficulty :math:`G_F[\hat w] = \hat w^\top\nabla^2F\,\hat w / \|\nabla F\|`.

    ``direction`` need not be normalised (it is divided by its norm). ``convention="reference"``
    returns the authors' scripts' value :math:`\hat w^\top\nabla^2F\hat w / (2\|\nabla F\|)`.

    Examples
    --------
    >>> f = lambda w: 0.5 * (torch.tensor([1.0, 4.0], dtype=torch.float64) * w ** 2).sum()
    >>> w = torch.tensor([1.0, 1.0], dtype=torch.float64)       # ∇F = (1, 4)
    >>> d = torch.tensor([0.0, 3.0], dtype=torch.float64)
    >>> round(local_task_difficulty(f, w, d), 6)                # 4 / sqrt(17)
    0.970143
    """
    scale = _check_convention(convention)
    f_flat, theta0 = _flat_problem(loss_fn, params)
    d = _flat_direction(direction, theta0, "direction")
    dn = d.norm()
    if dn == 0:
        raise ValueError("direction is the zero vector; the difficulty needs a direction")
    d = d / dn
    gnorm = float(func_grad(f_flat)(theta0).norm())
    if gnorm == 0:
        raise ValueError(
            "the gradient is zero here: the task difficulty is undefined at a critical point"
        )
    return scale * float(d @ _hvp(f_flat, theta0, d)) / gnorm


def mean_task_difficulty(
    geometry: LossGeometry, rates: PlasticityRates, *, convention: Convention = "theory"
) -> float:
    r"""Mean difficulty :math:`\bar G = \langle\dot w_T^\top H\dot w_T\rangle / (\langle\|\dot w_T\|^2\rangle\|\nabla F\|)`.

    The ratio of means that makes :func:`learning_condition` exact (theory convention; halved
    for ``"reference"``).
    """
    scale = _check_convention(convention)
    geo, r = _check_geometry(geometry), _check_rates(rates)
    if geo.grad_norm == 0:
        raise ValueError(
            "the gradient is zero: the task difficulty is undefined at a critical point"
        )
    quad = r.gamma1**2 * geo.grad_curvature + geo.hessian_trace * (
        r.gamma2**2 / geo.n_synapses + r.gamma3**2 / r.T
    )
    return scale * quad / (r.mean_squared_speed(geo.n_synapses) * geo.grad_norm)


def difficulty_bound(
    rates: PlasticityRates, n_synapses: int, *, convention: Convention = "theory"
) -> float:
    r"""The largest mean task difficulty that still gives :math:`\langle k\rangle > 0`.

    .. math::  G_{\max} = \frac{2\gamma_1}{T(\gamma_1^2 + \gamma_2^2 + \gamma_3^2 N/T)}

    in the theory convention; half of it (the slides' and scripts' bound) for ``"reference"``.

    Examples
    --------
    >>> difficulty_bound(PlasticityRates(1.0, 0.0, 0.0, T=2.0), 10)
    1.0
    """
    scale = _check_convention(convention)
    r = _check_rates(rates)
    return scale * 2.0 * r.gamma1 / (r.T * r.mean_squared_speed(n_synapses))


@dataclass(frozen=True)
class LearningCondition:
    r"""Whether noisy plasticity learns on average, as a difficulty-versus-bound comparison.

    Attributes
    ----------
    difficulty : float
        Mean task difficulty :math:`\bar G` (see :func:`mean_task_difficulty`).
    bound : float
        :func:`difficulty_bound` in the same convention.
    learns : bool
        ``difficulty < bound``, equivalent to ``expected_k > 0``.
    expected_k : float
        :math:`\langle k\rangle`.
    convention : str
        ``"theory"`` or ``"reference"``.
    """

    difficulty: float
    bound: float
    learns: bool
    expected_k: float
    convention: str

    def to_dict(self) -> dict:
        return asdict(self)


def learning_condition(
    geometry: LossGeometry, rates: PlasticityRates, *, convention: Convention = "theory"
) -> LearningCondition:
    r"""The learning condition :math:`\langle k\rangle > 0 \iff \bar G < G_{\max}(\gamma_1,\gamma_2,\gamma_3,T,N)`.

    Derivation: :math:`\langle k\rangle > 0 \iff \gamma_1\|\nabla F\| > \tfrac{T}{2}
    \langle\dot w_T^\top H\dot w_T\rangle`; divide by :math:`\langle\|\dot w_T\|^2\rangle\|\nabla F\|`.
    """
    G = mean_task_difficulty(geometry, rates, convention=convention)
    bound = difficulty_bound(rates, geometry.n_synapses, convention=convention)
    k = expected_learning_rate(geometry, rates).k
    return LearningCondition(G, bound, bool(G < bound), k, convention)


# ----------------------------------------------------------------------------------------------
# optimal network size
# ----------------------------------------------------------------------------------------------


def size_learning_rate(
    geometry: LossGeometry, rates: PlasticityRates, n_synapses, *, beta: float = 0.5
):
    r"""Predicted :math:`\langle k\rangle` after growing the network of ``geometry`` to ``N`` synapses.

    Held fixed as the network grows: the task and the current error (``F``, :math:`\|\nabla F\|`,
    the gradient curvature ``g``), the rates γ1, γ2 (norms of the whole change) and the
    per-synapse noise γ3. The Hessian trace grows as :math:`\mathrm{Tr}H\,(N/N_0)^\beta`
    (:math:`\beta = 1/2` for the linear expansion with :math:`c_1 = c_2`, where
    :math:`\mathrm{Tr}H' = c_2\mathrm{Tr}H`). ``n_synapses`` may be an array.
    """
    geo, r = _check_geometry(geometry), _check_rates(rates)
    beta = _finite("beta", beta)
    if not 0 <= beta <= 1:
        raise ValueError(f"beta must lie in [0, 1], got {beta!r}")
    N = np.asarray(n_synapses, dtype=np.float64)
    if np.any(~np.isfinite(N)) or np.any(N <= 0):
        raise ValueError("n_synapses must be positive and finite")
    trace = geo.hessian_trace * (N / geo.n_synapses) ** beta
    k = r.gamma1 * geo.grad_norm / geo.loss - r.T / (2 * geo.loss) * (
        r.gamma1**2 * geo.grad_curvature + trace * (r.gamma2**2 / N + r.gamma3**2 / r.T)
    )
    return float(k) if k.ndim == 0 else k


def optimal_size(rates: PlasticityRates, *, beta: float = 0.5) -> float:
    r"""Closed-form optimal size :math:`N^* = \frac{1-\beta}{\beta}\frac{T\gamma_2^2}{\gamma_3^2}`.

    Maximiser of :func:`size_learning_rate`: :math:`\frac{d}{dN}N^\beta(\gamma_2^2/N + \gamma_3^2/T)
    = 0`. For the linear expansion with :math:`c_1 = c_2` (β = 1/2), :math:`N^* = T\gamma_2^2/
    \gamma_3^2`. γ1 drops out because the curvature along the gradient does not change with the
    expansion. Never negative: 0 without task-irrelevant plasticity (γ2 = 0: the smallest network
    is best), ``inf`` without synaptic noise (γ3 = 0: bigger is always better).

    Examples
    --------
    >>> optimal_size(PlasticityRates(0.07, 1.0, 0.03, T=1.0))
    1111.111111111111
    """
    r = _check_rates(rates)
    beta = _finite("beta", beta)
    if not 0 < beta <= 1:
        raise ValueError(f"beta must lie in (0, 1], got {beta!r}")
    if r.gamma3 == 0:
        return math.inf if r.gamma2 > 0 and beta < 1 else 0.0
    return (1.0 - beta) / beta * r.T * r.gamma2**2 / r.gamma3**2


@dataclass(frozen=True)
class OptimalSize:
    """Numerical maximiser of a learning-rate-versus-size curve.

    Attributes
    ----------
    n_star : float
        The maximising size.
    k_star : float
        The curve's value there.
    at_boundary : bool
        True when the maximum sits at an end of the search interval (no interior optimum).
    """

    n_star: float
    k_star: float
    at_boundary: bool

    def to_dict(self) -> dict:
        return asdict(self)


def optimal_size_numeric(
    k_of_n: Callable[[float], float], n_min: float, n_max: float, *, xatol: float = 1e-6
) -> OptimalSize:
    """Maximise ``k_of_n`` over ``[n_min, n_max]`` (bounded Brent search on ``log N``).

    Examples
    --------
    >>> res = optimal_size_numeric(lambda n: -(n ** 0.5) * (1 / n + 1 / 400), 1, 1e5)
    >>> round(res.n_star)
    400
    """
    n_min, n_max = _finite("n_min", n_min), _finite("n_max", n_max)
    if not 0 < n_min < n_max:
        raise ValueError(f"need 0 < n_min < n_max, got n_min={n_min!r}, n_max={n_max!r}")
    res = scipy.optimize.minimize_scalar(
        lambda x: -float(k_of_n(math.exp(x))),
        bounds=(math.log(n_min), math.log(n_max)),
        method="bounded",
        options={"xatol": xatol},
    )
    n_star = math.exp(res.x)
    boundary = bool(abs(res.x - math.log(n_min)) < 1e-3 or abs(res.x - math.log(n_max)) < 1e-3)
    return OptimalSize(n_star, -float(res.fun), boundary)
