r"""Learning-rate bounds under noisy plasticity (Raman, Rotondo & O'Leary 2019; docs/theory.md §6).

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
  in docs/theory.md §6). The authors' scripts use :math:`G^{\rm ref} = \hat w^\top H\hat w/(2\|\nabla F\|)
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
  :math:`\ge 0`; :func:`optimal_size_numeric` finds the maximiser of any ``k(N)`` curve;
  :func:`nonlinear_optimal_size` is the paper's cubic for grown sigmoid networks (what it
  assumes, and how it compares with simulation: ``docs/raman.md``).

Models and losses
-----------------
``loss_fn(params)`` must be a functional torch computation returning a scalar, where ``params`` is
a tensor or a list/tuple of tensors with the structure passed in; directions (``delta_w``,
``direction``) are given either in the same structure or as one flat vector (parameters
concatenated in order, each flattened row-major). :class:`FlatLoss` holds such a loss as a
function of one flat vector; gradients and Hessian-vector products are reverse mode
(reverse-over-reverse, many products sharing one gradient graph), so no Hessian is formed unless
asked for.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Literal, Union

import numpy as np
import scipy.optimize
import torch

from syngeo.errors import InputError, InputTypeError
from syngeo.plasticity import PlasticityRates
from syngeo.validation import (
    as_choice,
    as_finite_float,
    as_int,
    as_positive_float,
    as_positive_int,
)

__all__ = [
    "ExpectedLearningRate",
    "FlatLoss",
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
    "nonlinear_optimal_size",
    "optimal_size",
    "optimal_size_numeric",
    "predicted_learning_rate",
    "size_learning_rate",
]

Params = Union[torch.Tensor, Sequence[torch.Tensor]]
Convention = Literal["theory", "reference"]

# ----------------------------------------------------------------------------------------------
# a loss of one flat weight vector, with its derivatives
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
    raise InputTypeError(
        f"params must be a tensor or a non-empty list/tuple of tensors, got {type(params).__name__}"
    )


def _backward_rows(x: torch.Tensor, g: torch.Tensor, V: torch.Tensor) -> torch.Tensor:
    """Rows ``d(g · v)/dx`` for the rows ``v`` of ``V``: Hessian-vector products through ``g``'s graph."""
    if not g.requires_grad:  # the gradient does not depend on the weights: the Hessian is 0
        return torch.zeros_like(V)
    try:
        (rows,) = torch.autograd.grad(
            g, x, grad_outputs=V, retain_graph=True, is_grads_batched=True, allow_unused=True
        )
    except RuntimeError:  # an op without a batching rule: one backward pass per row
        rows = torch.stack(
            [torch.autograd.grad(g, x, grad_outputs=v, retain_graph=True)[0] for v in V]
        )
    return torch.zeros_like(V) if rows is None else rows


class FlatLoss:
    r"""A loss as a function of one flat weight vector ``w``, with its gradient and curvature.

    ``FlatLoss(loss_fn, params)`` wraps ``loss_fn(params) -> scalar tensor``; ``w`` is ``params``
    concatenated in order, each flattened row-major (:attr:`initial` at ``params``;
    :meth:`unflatten` goes back). Derivatives are reverse mode: one backward pass builds the
    gradient's graph, and every Hessian-vector product is one more backward pass through it
    (reverse-over-reverse; several products share the graph, and a batch of them runs as one
    vectorised backward pass when the loss allows it). No Hessian is formed.

    Subclasses may replace :meth:`value_and_grad`, :meth:`hvp_rows` and :meth:`hessian_trace`
    by closed forms (as :meth:`syngeo.expansion.LinearTask.flat_loss` does; such a subclass sets
    :attr:`closed_form_trace` so that :meth:`geometry` always uses it); everything else is
    derived from them.

    Examples
    --------
    >>> A = torch.tensor([[2.0, 1.0], [1.0, 3.0]], dtype=torch.float64)
    >>> loss = FlatLoss(lambda w: 0.5 * w @ A @ w, torch.zeros(2, dtype=torch.float64))
    >>> loss.hvp(loss.initial, torch.tensor([1.0, 0.0], dtype=torch.float64))
    tensor([2., 1.], dtype=torch.float64)
    >>> loss.hessian_trace(loss.initial)
    5.0
    """

    #: True when :meth:`hessian_trace` is a closed form (cheap at any ``N``).
    closed_form_trace: bool = False

    def __init__(self, loss_fn: Callable, params: Params) -> None:
        if not callable(loss_fn):
            raise InputTypeError(
                f"loss_fn must be callable (params -> scalar tensor), got {loss_fn!r}"
            )
        plist, self._single = _as_param_list(params)
        for p in plist:
            if not p.is_floating_point():
                raise InputTypeError(
                    f"parameters must be floating point tensors, got dtype {p.dtype}"
                )
        self._loss_fn = loss_fn
        self._shapes = [p.shape for p in plist]
        self._sizes = [p.numel() for p in plist]
        self._tuple = isinstance(params, tuple)
        self.initial = torch.cat([p.detach().reshape(-1) for p in plist])
        if not torch.isfinite(self.initial).all():
            raise InputError("params contain NaN or inf")
        self.n = self.initial.numel()

    def unflatten(self, w: torch.Tensor):
        """``w`` in the structure of ``params`` (a tensor, list or tuple of views of ``w``)."""
        parts = [
            c.reshape(s) for c, s in zip(torch.split(w, self._sizes), self._shapes, strict=True)
        ]
        if self._single:
            return parts[0]
        return tuple(parts) if self._tuple else parts

    def direction(self, direction, name: str = "direction") -> torch.Tensor:
        """A direction given flat or in the structure of ``params``, as one flat vector."""
        if isinstance(direction, torch.Tensor) and direction.numel() == self.n:
            v = direction.detach().reshape(-1)
        elif isinstance(direction, (list, tuple)):
            v = torch.cat([d.detach().reshape(-1) for d in direction])
        else:
            raise InputError(
                f"{name} must have {self.n} entries (one per parameter entry), "
                "as one flat tensor or in the structure of params"
            )
        if v.numel() != self.n:
            raise InputError(f"{name} has {v.numel()} entries but params have {self.n}")
        if not torch.isfinite(v).all():
            raise InputError(f"{name} contains NaN or inf")
        return v.to(self.initial.dtype)

    def _scalar(self, w: torch.Tensor) -> torch.Tensor:
        out = self._loss_fn(self.unflatten(w))
        if not isinstance(out, torch.Tensor) or out.numel() != 1:
            raise InputTypeError("loss_fn must return a scalar tensor")
        return out.reshape(())

    def value(self, w: torch.Tensor) -> float:
        """``F(w)``."""
        with torch.no_grad():
            return float(self._scalar(w))

    def value_and_grad(self, w: torch.Tensor) -> tuple[float, torch.Tensor]:
        r"""``F(w)`` and :math:`\nabla F(w)` (flat)."""
        x = w.detach().requires_grad_(True)
        with torch.enable_grad():
            F = self._scalar(x)
            (g,) = torch.autograd.grad(F, x, allow_unused=True)
        return float(F.detach()), torch.zeros_like(x) if g is None else g

    def _grad_graph(self, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = w.detach().requires_grad_(True)
        with torch.enable_grad():
            (g,) = torch.autograd.grad(self._scalar(x), x, create_graph=True, allow_unused=True)
        return x, torch.zeros_like(x) if g is None else g

    def hvp(self, w: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        r""":math:`\nabla^2F(w)\,v` (flat)."""
        return self.hvp_rows(w, v.reshape(1, -1))[0]

    def hvp_rows(self, w: torch.Tensor, V: torch.Tensor, *, chunk: int = 256) -> torch.Tensor:
        r"""The rows :math:`\nabla^2F(w)\,v_j` for the rows :math:`v_j` of ``V`` (shape (m, N))."""
        x, g = self._grad_graph(w)
        return torch.cat(
            [_backward_rows(x, g, V[i : i + chunk]) for i in range(0, V.shape[0], chunk)]
        )

    def hessian_trace(self, w: torch.Tensor, *, chunk: int = 256) -> float:
        r"""Exact :math:`\mathrm{Tr}\,\nabla^2F(w)` from ``N`` products with the basis vectors.

        ``chunk`` basis vectors at a time: O(chunk · N) memory.
        """
        x, g = self._grad_graph(w)
        total = 0.0
        for start in range(0, self.n, chunk):
            idx = torch.arange(start, min(start + chunk, self.n), device=w.device)
            E = torch.zeros(idx.numel(), self.n, dtype=w.dtype, device=w.device)
            E[torch.arange(idx.numel()), idx] = 1.0
            total += float(_backward_rows(x, g, E)[torch.arange(idx.numel()), idx].sum())
        return total

    def hutchinson_trace(
        self, w: torch.Tensor, *, n_probes: int = 64, generator: torch.Generator
    ) -> TraceEstimate:
        r"""Hutchinson's estimate of :math:`\mathrm{Tr}\,\nabla^2F(w)` (see :func:`hutchinson_trace`)."""
        m = as_int(n_probes, "n_probes (two or more, for a standard error)", minimum=2)
        if not isinstance(generator, torch.Generator):
            raise InputTypeError(
                "generator must be a torch.Generator, e.g. torch.Generator().manual_seed(0)"
            )
        V = torch.randint(0, 2, (m, self.n), generator=generator).to(w.dtype) * 2 - 1
        samples = (self.hvp_rows(w, V) * V).sum(dim=1).double()
        return TraceEstimate(
            float(samples.mean()), float(samples.std(unbiased=True) / math.sqrt(m)), m
        )

    def geometry(
        self,
        w: torch.Tensor,
        *,
        trace: Literal["auto", "exact", "hutchinson"] = "auto",
        n_probes: int = 64,
        generator: torch.Generator | None = None,
        exact_max: int = 3000,
    ) -> LossGeometry:
        """The :class:`LossGeometry` at ``w`` (see :func:`loss_geometry`).

        ``trace="auto"`` is exact when ``N <= exact_max`` or the trace has a closed form
        (:attr:`closed_form_trace`), Hutchinson's estimate otherwise.
        """
        trace = as_choice(trace, "trace", ("auto", "exact", "hutchinson"))
        F, g = self.value_and_grad(w)
        gnorm = float(g.norm())
        g_curv = float(g @ self.hvp(w, g)) / gnorm**2 if gnorm > 0 else 0.0
        exact = self.n <= exact_max or self.closed_form_trace
        method = trace if trace != "auto" else ("exact" if exact else "hutchinson")
        if method == "exact":
            tr, se = self.hessian_trace(w), 0.0
        else:
            if generator is None:
                raise InputError(
                    "Hutchinson's trace estimate is random: pass "
                    "generator=torch.Generator().manual_seed(...)"
                )
            est = self.hutchinson_trace(w, n_probes=n_probes, generator=generator)
            tr, se = est.estimate, est.standard_error
        return LossGeometry(F, gnorm, g_curv, tr, se, self.n, method)

    def __repr__(self) -> str:
        return f"FlatLoss(N={self.n})"


# ----------------------------------------------------------------------------------------------
# learning rate: definition and second-order prediction
# ----------------------------------------------------------------------------------------------


def learning_rate(F0: float, FT: float, T: float) -> float:
    r"""The learning rate ``k`` defined by :math:`F(T) = (1 - kT)F(0)`: :math:`k = (1 - F_T/F_0)/T`.

    Positive when the error fell, negative when it grew; ``k = 1/T`` means the error vanished.

    Examples
    --------
    >>> learning_rate(2.0, 1.5, T=0.5)
    0.5
    """
    F0, FT = as_finite_float(F0, "F0"), as_finite_float(FT, "FT")
    T = as_positive_float(T, "T")
    if F0 <= 0:
        raise InputError(f"F0 must be > 0 (the error before learning), got {F0!r}")
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
    T = as_positive_float(T, "T")
    loss = FlatLoss(loss_fn, params)
    w = loss.initial
    v = loss.direction(delta_w, "delta_w") / T
    F, g = loss.value_and_grad(w)
    if F <= 0:
        raise InputError(f"the loss must be > 0 to define a learning rate, got F = {F!r}")
    vHv = float(v @ loss.hvp(w, v))
    grad_term = -float(g @ v) / F
    curv_term = -0.5 * T * vHv / F
    return LearningRatePrediction(F, grad_term, curv_term, grad_term + curv_term, T)


def hessian_vector_product(loss_fn: Callable, params: Params, v) -> torch.Tensor:
    r""":math:`\nabla^2 F(w)\,v` as a flat vector, by reverse-over-reverse differentiation.

    Examples
    --------
    >>> A = torch.tensor([[2.0, 1.0], [1.0, 3.0]], dtype=torch.float64)
    >>> f = lambda w: 0.5 * w @ A @ w
    >>> hessian_vector_product(f, torch.zeros(2, dtype=torch.float64), torch.tensor([1.0, 0.0], dtype=torch.float64))
    tensor([2., 1.], dtype=torch.float64)
    """
    loss = FlatLoss(loss_fn, params)
    return loss.hvp(loss.initial, loss.direction(v, "v"))


def hessian_matrix(loss_fn: Callable, params: Params) -> torch.Tensor:
    """The full ``N × N`` Hessian (flat parameter order); for small models only (O(N²) memory)."""
    loss = FlatLoss(loss_fn, params)
    return loss.hvp_rows(loss.initial, torch.eye(loss.n, dtype=loss.initial.dtype))


def hessian_trace(loss_fn: Callable, params: Params, *, chunk: int = 256) -> float:
    r"""Exact :math:`\mathrm{Tr}\,\nabla^2 F` from ``N`` Hessian-vector products with the basis vectors.

    Costs ``N`` HVPs but only O(chunk · N) memory; use :func:`hutchinson_trace` for large ``N``.
    """
    loss = FlatLoss(loss_fn, params)
    return loss.hessian_trace(loss.initial, chunk=as_positive_int(chunk, "chunk"))


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
    loss = FlatLoss(loss_fn, params)
    return loss.hutchinson_trace(loss.initial, n_probes=n_probes, generator=generator)


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
            object.__setattr__(self, name, as_finite_float(getattr(self, name), name))
        if self.loss <= 0:
            raise InputError(f"loss must be > 0 to define a learning rate, got {self.loss!r}")
        if self.grad_norm < 0 or self.hessian_trace_se < 0:
            raise InputError("grad_norm and hessian_trace_se must be >= 0")
        object.__setattr__(self, "n_synapses", as_positive_int(self.n_synapses, "n_synapses"))

    def to_dict(self) -> dict:
        return asdict(self)


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
    loss = FlatLoss(loss_fn, params)
    return loss.geometry(
        loss.initial, trace=trace, n_probes=n_probes, generator=generator, exact_max=exact_max
    )


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
        raise InputTypeError(
            f"rates must be a PlasticityRates(gamma1, gamma2, gamma3, T), got {type(rates).__name__}"
        )
    return rates


def _check_geometry(geometry) -> LossGeometry:
    if not isinstance(geometry, LossGeometry):
        raise InputTypeError(
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
    raise InputError(
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
    loss = FlatLoss(loss_fn, params)
    d = loss.direction(direction, "direction")
    dn = d.norm()
    if dn == 0:
        raise InputError("direction is the zero vector; the difficulty needs a direction")
    d = d / dn
    gnorm = float(loss.value_and_grad(loss.initial)[1].norm())
    if gnorm == 0:
        raise InputError(
            "the gradient is zero here: the task difficulty is undefined at a critical point"
        )
    return scale * float(d @ loss.hvp(loss.initial, d)) / gnorm


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
        raise InputError(
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
    beta = as_finite_float(beta, "beta")
    if not 0 <= beta <= 1:
        raise InputError(f"beta must lie in [0, 1], got {beta!r}")
    N = np.asarray(n_synapses, dtype=np.float64)
    if np.any(~np.isfinite(N)) or np.any(N <= 0):
        raise InputError("n_synapses must be positive and finite")
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
    beta = as_finite_float(beta, "beta")
    if not 0 < beta <= 1:
        raise InputError(f"beta must lie in (0, 1], got {beta!r}")
    if r.gamma3 == 0:
        return math.inf if r.gamma2 > 0 and beta < 1 else 0.0
    return (1.0 - beta) / beta * r.T * r.gamma2**2 / r.gamma3**2


def nonlinear_optimal_size(rates: PlasticityRates, n_original: int) -> float:
    r"""The paper's optimal size for nonlinear networks: the positive root of a cubic.

    The authors' scripts take the optimal size of a grown sigmoid network as the positive root
    of

    .. math::  N^3 - \frac{T^2 S\gamma_2^2}{\gamma_3^4}\,N
               - \frac{T^2\gamma_1^2 S}{\gamma_3^4}\,N_0 = 0, \qquad S = \gamma_1^2 + \gamma_2^2,

    with :math:`N_0` the number of weights of the network before growth (``n_original``);
    equivalently :math:`(\gamma_3^2N/T)^2 = S(\gamma_2^2 + \gamma_1^2N_0/N)`. With
    :math:`\gamma_1 \ll \gamma_2` the root is close to
    :math:`T\gamma_2\sqrt{S}/\gamma_3^2 \approx T\gamma_2^2/\gamma_3^2`, the linear
    :func:`optimal_size` at β = 1/2. What the cubic assumes and how it compares with
    simulation: ``docs/raman.md``. Descartes' rule of signs gives exactly one positive root;
    it is bracketed by :math:`\sqrt a` and :math:`\sqrt{2a} + (2b)^{1/3}` (``a``, ``b`` the two
    coefficients above) and found by Brent's method (:math:`\sqrt a` itself when b = 0). ``inf`` without synaptic noise, 0
    without any plasticity besides noise.

    Examples
    --------
    >>> round(nonlinear_optimal_size(PlasticityRates(0.04, 1.5, 0.03, T=1.0), 115))
    2501
    >>> round(nonlinear_optimal_size(PlasticityRates(0.0, 1.0, 0.05, T=2.0), 50), 6)  # γ1 = 0: Tγ2²/γ3²
    800.0
    """
    r = _check_rates(rates)
    n0 = as_positive_int(n_original, "n_original (weights before growth)")
    if r.gamma3 == 0:
        return math.inf if (r.gamma1 > 0 or r.gamma2 > 0) else 0.0
    S = r.gamma1**2 + r.gamma2**2
    a = r.T**2 * S * r.gamma2**2 / r.gamma3**4
    b = r.T**2 * r.gamma1**2 * S * n0 / r.gamma3**4
    lo = math.sqrt(a)  # N(N² − a) = b >= 0: the positive root is at least √a
    if b == 0:
        return lo
    hi = math.sqrt(2.0 * a) + (2.0 * b) ** (1.0 / 3.0)
    return float(
        scipy.optimize.brentq(lambda n: n**3 - a * n - b, lo, hi, xtol=1e-12 * hi, rtol=1e-14)
    )


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
    n_min, n_max = as_finite_float(n_min, "n_min"), as_finite_float(n_max, "n_max")
    if not 0 < n_min < n_max:
        raise InputError(f"need 0 < n_min < n_max, got n_min={n_min!r}, n_max={n_max!r}")
    res = scipy.optimize.minimize_scalar(
        lambda x: -float(k_of_n(math.exp(x))),
        bounds=(math.log(n_min), math.log(n_max)),
        method="bounded",
        options={"xatol": xatol},
    )
    n_star = math.exp(res.x)
    boundary = bool(abs(res.x - math.log(n_min)) < 1e-3 or abs(res.x - math.log(n_max)) < 1e-3)
    return OptimalSize(n_star, -float(res.fun), boundary)
