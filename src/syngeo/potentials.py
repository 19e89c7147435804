r"""Potentials: the strictly convex functions that define a plasticity geometry.

A *potential* :math:`\phi(w) = \sum_i \varphi(w_i)` (docs/theory.md, §1) defines

* the **mirror map** :math:`\nabla\phi`, taking weights (primal space) to the dual space where
  mirror descent is plain gradient descent, :math:`\nabla\phi(w_{t+1}) = \nabla\phi(w_t) - \eta g`;
* its inverse :math:`(\nabla\phi)^{-1}`;
* the **Hessian metric** :math:`\nabla^2\phi(w)` (diagonal, because every potential here is local);
* the **Bregman divergence** :math:`D_\phi(w, w') = \phi(w) - \phi(w') - \langle\nabla\phi(w'), w - w'\rangle`.

Every method works element-wise on ``torch.Tensor`` (any shape, dtype and device; the result keeps
them) and on ``numpy.ndarray`` (the analysis layer works in NumPy float64).

=====================  ============================  ================================  =====================
potential              :math:`\varphi(w)`            :math:`\varphi'(w)` (mirror map)  :math:`\varphi''(w)`
=====================  ============================  ================================  =====================
``PNorm(p)``, p > 1    :math:`|w|^p / p`             :math:`\mathrm{sign}(w)|w|^{p-1}`  :math:`(p-1)|w|^{p-2}`
``NegativeEntropy()``  :math:`|w|\log|w|`            :math:`\mathrm{sign}(w)(\log|w|+1)` :math:`1/|w|`
=====================  ============================  ================================  =====================

* ``Hypentropy(beta)``, β > 0: :math:`\varphi(w) = w\,\mathrm{arcsinh}(w/\beta) - \sqrt{w^2+\beta^2}`,
  mirror map :math:`\mathrm{arcsinh}(w/\beta)`, Hessian :math:`1/\sqrt{w^2+\beta^2}` (EG±).
* ``Tsallis(q)``, 0 < q < 1: :math:`\varphi(w) = (|w| - |w|^q)/(1-q)`, mirror map
  :math:`\mathrm{sign}(w)(1 - q|w|^{q-1})/(1-q)`, Hessian :math:`q|w|^{q-2}` (sign-preserving).
* A user's own potential: subclass :class:`LocalPotential` (recipe in docs/geometries.md).

Conventions
-----------
* ``PNorm(2)`` is the Euclidean geometry: its mirror map is the identity and mirror descent is SGD.
* Negative entropy (NE) is sign-preserving: its inverse mirror map needs the sign of the weight,
  :math:`(\nabla\phi)^{-1}(u) = s\,\exp(s u - 1)` with :math:`s = \mathrm{sign}(w_0)`; call
  ``grad_inverse(u, sign=torch.sign(w0))``. At exactly ``w = 0`` the NE mirror map has no limit; we
  define it as 0 (and the inverse with ``sign = 0`` returns 0), which makes a zero weight a fixed
  point of mirror descent, as ``0 * exp(.) = 0`` in the exponentiated-gradient rule.
* The p-norm Hessian is infinite at ``w = 0`` for ``p < 2``, and the NE Hessian is infinite there;
  both are returned as ``inf``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Protocol, Union, runtime_checkable

import numpy as np
import scipy.special
import torch

from syngeo.errors import InputError, InputTypeError
from syngeo.kernels import StepKernel

__all__ = [
    "Hypentropy",
    "LocalPotential",
    "NegativeEntropy",
    "PNorm",
    "Potential",
    "PotentialLike",
    "Tsallis",
    "potential",
]

Array = Union[torch.Tensor, np.ndarray]


def _is_torch(x: Any) -> bool:
    return isinstance(x, torch.Tensor)


def _as_array(x: Any) -> Array:
    """Return a tensor or an ndarray; Python scalars and lists become float64 ndarrays."""
    if _is_torch(x) or isinstance(x, np.ndarray):
        return x
    return np.asarray(x, dtype=np.float64)


def _sign(x: Array) -> Array:
    return torch.sign(x) if _is_torch(x) else np.sign(x)


def _exp(x: Array) -> Array:
    return torch.exp(x) if _is_torch(x) else np.exp(x)


def _log(x: Array) -> Array:
    return torch.log(x) if _is_torch(x) else np.log(x)


def _xlogx(x: Array) -> Array:
    """x·log(x) with 0·log 0 = 0."""
    return torch.special.xlogy(x, x) if _is_torch(x) else scipy.special.xlogy(x, x)


def _where(cond: Array, a: Array, b: Array) -> Array:
    return torch.where(cond, a, b) if _is_torch(cond) else np.where(cond, a, b)


def _full_like(x: Array, value: float) -> Array:
    return torch.full_like(x, value) if _is_torch(x) else np.full_like(x, value)


def _sum(x: Array) -> Array:
    return x.sum() if _is_torch(x) else np.sum(x)


@runtime_checkable
class Potential(Protocol):
    """What every potential provides; consumers call these and never ask for the class.

    All array methods work element-wise on ``torch.Tensor`` (keeping shape, dtype and device) and on
    ``numpy.ndarray``. The easiest way to satisfy the protocol is to subclass
    :class:`LocalPotential` and define four element-wise functions (see its docstring).

    Attributes
    ----------
    name : str
        Short display name (``"3-norm"``, ``"NE"``); used as a table key.
    preserves_sign : bool
        True when the mirror map's domain is one orthant per weight, so that mirror descent never
        changes a sign and a zero weight stays zero (negative entropy). Consumers then pass the
        weights' signs to :meth:`grad_inverse` and treat sign flips as outside the domain.
    is_euclidean : bool
        True when the mirror map is the identity (mirror descent is SGD).
    parameter : float or None
        The shape parameter of the potential's family (p for p-norms), or None. Inference refines
        a candidate with a parameter by :meth:`with_parameter`.
    parameter_bounds : tuple of float
        Open interval of valid parameters (``(1, inf)`` for p-norms).
    parameter_search_window : tuple of float
        Where inference searches the parameter when it refines a candidate (p-norms: (1.01, 6));
        ``(nan, nan)`` without a parameter.
    """

    name: str
    preserves_sign: bool
    is_euclidean: bool
    parameter: float | None
    parameter_bounds: tuple[float, float]
    parameter_search_window: tuple[float, float]

    def value(self, w: Array, *, elementwise: bool = False) -> Array: ...

    def grad(self, w: Array) -> Array: ...

    def grad_inverse(self, u: Array, sign: Array | None = None) -> Array: ...

    def hessian_diag(self, w: Array) -> Array: ...

    def log_hessian_diag(self, w: Array) -> Array: ...

    def bregman(self, w: Array, w_ref: Array, *, elementwise: bool = False) -> Array: ...

    def conjugate(
        self, u: Array, sign: Array | None = None, *, elementwise: bool = False
    ) -> Array: ...

    def with_parameter(self, parameter: float) -> Potential: ...

    def mirror_step_(
        self,
        params: list[torch.Tensor],
        directions: list[torch.Tensor],
        lr: float,
        *,
        dual_noise: list[torch.Tensor] | None = None,
        duals: list[torch.Tensor] | None = None,
        foreach: bool | None = None,
    ) -> None: ...

    def grad_with_log_abs(
        self, w: np.ndarray, log_abs: np.ndarray, out: np.ndarray | None = None
    ) -> np.ndarray: ...

    def hessian_power_law(self) -> tuple[float, float] | None: ...


class LocalPotential:
    r"""Base class of a local potential :math:`\phi(w) = \sum_i \varphi(w_i)`.

    A subclass defines four element-wise functions and a name; everything else (Bregman
    divergence, log-Hessian, convex conjugate, the :class:`Potential` protocol) is derived:

    * ``value_elementwise(w)`` — :math:`\varphi(w_i)`;
    * ``grad(w)`` — the mirror map :math:`\varphi'(w_i)`;
    * ``grad_inverse(u, sign=None)`` — its inverse (``sign`` is the weights' sign, needed only
      when ``preserves_sign``);
    * ``hessian_diag(w)`` — :math:`\varphi''(w_i) > 0`.

    Override ``log_hessian_diag``, ``conjugate`` or ``mirror_step_`` (the optimizer's in-place
    step, by default grad → subtract → grad_inverse) where a closed form is more accurate or
    faster, and set ``parameter``/``with_parameter`` for a one-parameter family.

    Examples
    --------
    A quartic-plus-quadratic potential :math:`\varphi(w) = w^2/2 + w^4/4` (its mirror map
    :math:`w + w^3` is inverted by Cardano's formula):

    >>> import numpy as np
    >>> class Quartic(LocalPotential):
    ...     name = "quartic"
    ...     def value_elementwise(self, w):
    ...         return w**2 / 2 + w**4 / 4
    ...     def grad(self, w):
    ...         return w + w**3
    ...     def grad_inverse(self, u, sign=None):
    ...         r = np.sqrt(u**2 / 4 + 1 / 27)
    ...         return np.cbrt(u / 2 + r) + np.cbrt(u / 2 - r)
    ...     def hessian_diag(self, w):
    ...         return 1 + 3 * w**2
    >>> phi = Quartic()
    >>> bool(np.allclose(phi.grad_inverse(phi.grad(np.array([-1.5, 0.2]))), [-1.5, 0.2]))
    True
    >>> isinstance(phi, Potential)
    True
    """

    name: str = "potential"
    preserves_sign: bool = False
    is_euclidean: bool = False
    parameter: float | None = None
    parameter_bounds: tuple[float, float] = (math.nan, math.nan)
    parameter_search_window: tuple[float, float] = (math.nan, math.nan)

    # -- to be provided by subclasses -------------------------------------------------------------
    def value_elementwise(self, w: Array) -> Array:  # pragma: no cover - abstract
        raise NotImplementedError

    def grad(self, w: Array) -> Array:  # pragma: no cover - abstract
        raise NotImplementedError

    def grad_inverse(self, u: Array, sign: Array | None = None) -> Array:  # pragma: no cover
        raise NotImplementedError

    def hessian_diag(self, w: Array) -> Array:  # pragma: no cover - abstract
        raise NotImplementedError

    # -- derived ---------------------------------------------------------------------------------
    def value(self, w: Array, *, elementwise: bool = False) -> Array:
        """φ(w) = Σ_i φ(w_i); per entry if ``elementwise``."""
        w = _as_array(w)
        v = self.value_elementwise(w)
        return v if elementwise else _sum(v)

    def mirror_map(self, w: Array) -> Array:
        """Alias of :meth:`grad`: the mirror map ∇φ from weights to the dual space."""
        return self.grad(w)

    def log_hessian_diag(self, w: Array) -> Array:
        """log φ''(w_i) per entry (``-inf``/``inf`` where the Hessian is 0/infinite).

        The log-Jacobian of the mirror map, used by the likelihood of a dual-space model.
        """
        h = self.hessian_diag(_as_array(w))
        if _is_torch(h):
            return torch.log(h)
        with np.errstate(divide="ignore"):
            return np.log(h)

    def conjugate(self, u: Array, sign: Array | None = None, *, elementwise: bool = False) -> Array:
        r"""Convex conjugate :math:`\phi^*(u) = \langle u, w\rangle - \phi(w)` at
        :math:`w = (\nabla\phi)^{-1}(u)` (Legendre transform; ``sign`` as in
        :meth:`grad_inverse`). Its gradient is :math:`(\nabla\phi)^{-1}`."""
        u = _as_array(u)
        w = self.grad_inverse(u, sign=sign)
        c = u * w - self.value_elementwise(w)
        return c if elementwise else _sum(c)

    def with_parameter(self, parameter: float) -> Potential:
        """The member of this potential's family with another parameter (p-norms: ``PNorm(p)``)."""
        raise InputError(f"the potential {self.name} has no parameter to set")

    def bregman(self, w: Array, w_ref: Array, *, elementwise: bool = False) -> Array:
        r"""Bregman divergence :math:`D_\phi(w, w_{ref}) = \phi(w) - \phi(w_{ref}) - \langle\nabla\phi(w_{ref}), w - w_{ref}\rangle`.

        Non-negative, zero only at ``w == w_ref``. Summed over all entries unless ``elementwise``.
        For a sign-preserving potential (NE) the domain is the sign pattern of ``w_ref``: an entry
        whose sign differs (``w * w_ref < 0``, or ``w_ref == 0 != w``) has divergence ``+inf``,
        the convex-analysis convention for a point outside the domain. (Evaluating the formula
        across zero would be wrong: ``|w| log |w|`` is not convex on the real line, and the
        formula goes negative, e.g. ``w = -1, w_ref = 0.1``.) ``w == 0`` is on the boundary and
        gets the finite limit ``|w_ref|``.
        """
        w, w_ref = _as_array(w), _as_array(w_ref)
        d = (
            self.value_elementwise(w)
            - self.value_elementwise(w_ref)
            - self.grad(w_ref) * (w - w_ref)
        )
        if self.preserves_sign:
            outside = (w * w_ref < 0) | ((w_ref == 0) & (w != 0))
            d = _where(outside, _full_like(d, math.inf), d)
        return d if elementwise else _sum(d)

    def dual_distance_to(self, w: Array, w_ref: Array) -> Array:
        """∇φ(w) − ∇φ(w_ref): the change of the dual weights (docs/theory.md, §2)."""
        return self.grad(_as_array(w)) - self.grad(_as_array(w_ref))

    def mirror_step_(
        self,
        params: list[torch.Tensor],
        directions: list[torch.Tensor],
        lr: float,
        *,
        dual_noise: list[torch.Tensor] | None = None,
        duals: list[torch.Tensor] | None = None,
        foreach: bool | None = None,
    ) -> None:
        r"""One mirror-descent step, in place on each tensor of ``params`` (docs/theory.md, §1).

        .. math::
            w \leftarrow (\nabla\phi)^{-1}\big(\nabla\phi(w) - \eta\, d + \xi;\
            \mathrm{sign}(w)\big)

        The optimizer's primitive (:class:`syngeo.optim.MirrorDescent` calls it once per
        device/dtype group). This default composes :meth:`grad` and :meth:`grad_inverse`, so it
        works for any potential; a subclass may override it with a fused closed form that must
        agree with it to rounding.

        Parameters
        ----------
        params : list of Tensor
            The weights :math:`w`, updated in place (real floating point).
        directions : list of Tensor
            The descent directions :math:`d` (gradients, possibly momentum-averaged), same shapes.
        lr : float
            The step size :math:`\eta`.
        dual_noise : list of Tensor, optional
            Additive perturbations :math:`\xi` of the dual weights (plasticity noise).
        duals : list of Tensor, optional
            The dual weights :math:`\nabla\phi(w)` of ``params``, if the caller keeps them: they
            are used instead of evaluating the mirror map, and updated in place to the new dual
            weights. The caller guarantees that they belong to the current weights.
        foreach : bool, optional
            Implementation hint for fused overrides (``None``: per tensor on CPU, multi-tensor
            ``torch._foreach_*`` kernels elsewhere); this default ignores it.
        """
        _check_step_lists(params, directions, dual_noise, duals)
        for i, w in enumerate(params):
            if duals is None:
                u = torch.add(self.grad(w), directions[i], alpha=-lr)
            else:
                u = duals[i].add_(directions[i], alpha=-lr)
            if dual_noise is not None:
                u.add_(dual_noise[i])
            sign = torch.sign(w) if self.preserves_sign else None
            w.copy_(self.grad_inverse(u, sign=sign))

    def step_kernel(self) -> StepKernel | None:
        """The fused optimizer kernel for this potential (:mod:`syngeo.kernels`), or None.

        None (the default, and any user potential) means the optimizer composes
        :meth:`mirror_step_` eagerly; potentials of the built-in families return their
        :class:`~syngeo.kernels.StepKernel` so ``MirrorDescent(fused=...)`` can do the whole
        step in one pass.
        """
        return None

    def grad_with_log_abs(
        self, w: np.ndarray, log_abs: np.ndarray, out: np.ndarray | None = None
    ) -> np.ndarray:
        """∇φ(w) for a NumPy float64 array when ``log_abs = log|w|`` is already known.

        A consumer that evaluates many potentials on the same weights (geometry inference)
        computes ``log|w|`` once; potentials whose mirror map is a function of ``log|w|`` and the
        sign (p-norms, negative entropy) override this to skip the logarithm. The default ignores
        ``log_abs``. The result is written into ``out`` when given (and returned).
        """
        g = np.asarray(self.grad(w), dtype=np.float64)
        if out is None:
            return g
        np.copyto(out, g)
        return out

    def hessian_power_law(self) -> tuple[float, float] | None:
        """``(c, k)`` such that log φ''(w) = c + k·log|w| for every w ≠ 0, or None.

        Potentials whose Hessian is a power of |w| (p-norms: ``(log(p−1), p−2)``; negative
        entropy: ``(0, −1)``) let a likelihood sum Σ log φ''(w_i) over many candidates from one
        Σ log|w_i|. The default, None, means "call :meth:`log_hessian_diag`".
        """
        return None

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True, repr=False)
class PNorm(LocalPotential):
    r"""The p-norm potential :math:`\phi(w) = \sum_i |w_i|^p / p` for real ``p > 1``.

    Mirror map :math:`\mathrm{sign}(w)|w|^{p-1}`, inverse :math:`\mathrm{sign}(u)|u|^{1/(p-1)}`,
    Hessian :math:`(p-1)|w|^{p-2}` (diagonal). ``p = 2`` is Euclidean (mirror descent = SGD).

    Examples
    --------
    >>> import torch
    >>> phi = PNorm(3)
    >>> w = torch.tensor([-2.0, 0.5])
    >>> phi.grad(w)
    tensor([-4.0000,  0.2500])
    >>> torch.allclose(phi.grad_inverse(phi.grad(w)), w)
    True
    """

    p: float

    def __post_init__(self) -> None:
        p = self.p
        if isinstance(p, bool) or not isinstance(p, (int, float, np.integer, np.floating)):
            raise InputTypeError(
                f"PNorm needs a real number p > 1, got {p!r} of type {type(p).__name__}"
            )
        if not math.isfinite(float(p)) or float(p) <= 1.0:
            raise InputError(
                f"PNorm needs p > 1 (finite), got p={p!r}; p = 1 is not strictly convex — "
                "use NegativeEntropy() for the p -> 1 end of the family"
            )
        object.__setattr__(self, "p", float(p))

    @property
    def name(self) -> str:  # type: ignore[override]
        return f"{_fmt_p(self.p)}-norm"

    @property
    def is_euclidean(self) -> bool:
        """True for p = 2, where the mirror map is the identity."""
        return self.p == 2.0

    preserves_sign = False
    parameter_bounds = (1.0, math.inf)
    parameter_search_window = (1.01, 6.0)

    @property
    def parameter(self) -> float:  # type: ignore[override]
        """The exponent p (the family parameter that inference refines)."""
        return self.p

    def with_parameter(self, parameter: float) -> PNorm:
        """``PNorm(parameter)``."""
        return PNorm(parameter)

    def value_elementwise(self, w: Array) -> Array:
        return abs(w) ** self.p / self.p

    def log_hessian_diag(self, w: Array) -> Array:
        """log((p−1)|w|^(p−2)) = log(p−1) + (p−2)·log|w|, without forming the power."""
        w = _as_array(w)
        if self.is_euclidean:
            return torch.zeros_like(w) if _is_torch(w) else np.zeros_like(w)
        with np.errstate(divide="ignore"):
            log_abs = torch.log(abs(w)) if _is_torch(w) else np.log(abs(w))
        return math.log(self.p - 1.0) + (self.p - 2.0) * log_abs

    def conjugate(self, u: Array, sign: Array | None = None, *, elementwise: bool = False) -> Array:
        """φ*(u) = Σ |u|^q / q with q = p/(p−1), the dual exponent (``sign`` is ignored)."""
        u = _as_array(u)
        q = self.p / (self.p - 1.0)
        c = abs(u) ** q / q
        return c if elementwise else _sum(c)

    def grad(self, w: Array) -> Array:
        """Mirror map sign(w)·|w|^(p−1)."""
        w = _as_array(w)
        if self.is_euclidean:
            return w.clone() if _is_torch(w) else np.array(w, copy=True)
        return _sign(w) * abs(w) ** (self.p - 1.0)

    def grad_inverse(self, u: Array, sign: Array | None = None) -> Array:
        """Inverse mirror map sign(u)·|u|^(1/(p−1)); ``sign`` is accepted and ignored."""
        u = _as_array(u)
        if self.is_euclidean:
            return u.clone() if _is_torch(u) else np.array(u, copy=True)
        return _sign(u) * abs(u) ** (1.0 / (self.p - 1.0))

    def hessian_diag(self, w: Array) -> Array:
        """Diagonal of ∇²φ: (p−1)·|w|^(p−2) (``inf`` at 0 when p < 2)."""
        w = _as_array(w)
        if self.is_euclidean:
            return torch.ones_like(w) if _is_torch(w) else np.ones_like(w)
        return (self.p - 1.0) * abs(w) ** (self.p - 2.0)

    def mirror_step_(
        self,
        params: list[torch.Tensor],
        directions: list[torch.Tensor],
        lr: float,
        *,
        dual_noise: list[torch.Tensor] | None = None,
        duals: list[torch.Tensor] | None = None,
        foreach: bool | None = None,
    ) -> None:
        r"""Fused p-norm step :math:`w \leftarrow \mathrm{sign}(u)|u|^{1/(p-1)}`,
        :math:`u = \mathrm{sign}(w)|w|^{p-1} - \eta d + \xi`, written straight into ``w``
        (arguments as in :meth:`LocalPotential.mirror_step_`).

        ``p = 2`` is ``torch.optim.SGD``'s update, :math:`w \leftarrow w - \eta d (+ \xi)`, with
        SGD's own kernel (so that mirror descent reproduces SGD bit for bit). Other p: closed
        forms for p = 3 and p = 1.5 (square roots and products), ``exp(k·log|x|)`` powers on CPU
        for other p (error ≈ |k·log|x||·eps per power instead of ~eps, about three times faster
        than ``pow`` there). Per tensor with one reused scratch buffer on CPU (temporaries stay
        small and in cache), multi-tensor ``torch._foreach_*`` kernels elsewhere.
        """
        _check_step_lists(params, directions, dual_noise, duals)
        if not params:
            return
        if self.is_euclidean:
            torch._foreach_add_(params, directions, alpha=-lr)
            if dual_noise is not None:
                torch._foreach_add_(params, dual_noise)
            if duals is not None:
                torch._foreach_copy_(duals, params)
        elif _per_tensor(params, foreach):
            _pnorm_step_per_tensor(params, directions, dual_noise, duals, self.p, lr)
        else:
            _pnorm_step_lists(params, directions, dual_noise, duals, self.p, lr)

    def grad_with_log_abs(
        self, w: np.ndarray, log_abs: np.ndarray, out: np.ndarray | None = None
    ) -> np.ndarray:
        """sign(w)·exp((p−1)·log|w|) (exactly 0 at w = 0, as exp(−inf) = 0); see the base class."""
        if self.is_euclidean:
            if out is None:
                return np.array(w, dtype=np.float64, copy=True)
            np.copyto(out, w)
            return out
        out = np.multiply(log_abs, self.p - 1.0, out=out)
        np.exp(out, out=out)
        return np.copysign(out, w, out=out)

    def hessian_power_law(self) -> tuple[float, float]:
        """(log(p−1), p−2): φ''(w) = (p−1)|w|^(p−2)."""
        return math.log(self.p - 1.0), self.p - 2.0

    def step_kernel(self) -> StepKernel:
        """``StepKernel("pnorm", p)`` (see :meth:`LocalPotential.step_kernel`)."""
        return StepKernel("pnorm", self.p)

    def __repr__(self) -> str:
        return f"PNorm(p={_fmt_p(self.p)})"


def _dual_and_sign(u: Array, sign: Array | None, whose: str, under: str) -> tuple[Array, Array]:
    """``u`` and ``sign(sign)`` as arrays of one kind (torch when either is), for the inverse
    mirror map of a sign-preserving potential; a missing ``sign`` is an
    :class:`~syngeo.errors.InputError` (``whose``: "negative entropy's"; ``under``: "NE")."""
    if sign is None:
        raise InputError(
            f"{whose} inverse mirror map needs the sign of the weights: "
            f"call grad_inverse(u, sign=sign(w0)) (signs never change under {under})"
        )
    u = _as_array(u)
    s = _as_array(sign)
    if _is_torch(u) and not _is_torch(s):
        s = torch.as_tensor(s, dtype=u.dtype, device=u.device)
    elif _is_torch(s) and not _is_torch(u):
        u = torch.as_tensor(u, dtype=s.dtype, device=s.device)
    return u, _sign(s)


@dataclass(frozen=True, repr=False)
class NegativeEntropy(LocalPotential):
    r"""Negative entropy :math:`\phi(w) = \sum_i |w_i| \log |w_i|` (exponentiated-gradient geometry).

    Mirror map :math:`\mathrm{sign}(w)(\log|w| + 1)`; inverse
    :math:`s\,\exp(s u - 1)` with the weight's sign :math:`s` (signs never change under NE);
    Hessian :math:`1/|w|`. Mirror descent gives :math:`w_{t+1} = w_t \exp(-\eta\,\mathrm{sign}(w_t) g)`.

    Examples
    --------
    >>> import torch
    >>> ne = NegativeEntropy()
    >>> w = torch.tensor([-2.0, 0.5], dtype=torch.float64)
    >>> torch.allclose(ne.grad_inverse(ne.grad(w), sign=torch.sign(w)), w)
    True
    """

    name = "NE"
    is_euclidean = False
    preserves_sign = True

    def log_hessian_diag(self, w: Array) -> Array:
        """log(1/|w|) = −log|w|."""
        w = _as_array(w)
        if _is_torch(w):
            return -torch.log(abs(w))
        with np.errstate(divide="ignore"):
            return -np.log(abs(w))

    def conjugate(self, u: Array, sign: Array | None = None, *, elementwise: bool = False) -> Array:
        """φ*(u) = Σ exp(s·u − 1) = Σ |w| at w = (∇φ)⁻¹(u) (``sign`` required, as for the inverse)."""
        c = abs(self.grad_inverse(u, sign=sign))
        return c if elementwise else _sum(c)

    def value_elementwise(self, w: Array) -> Array:
        return _xlogx(abs(w))

    def grad(self, w: Array) -> Array:
        """Mirror map sign(w)·(log|w| + 1), defined as 0 at w = 0 (see module notes)."""
        w = _as_array(w)
        a = abs(w)
        zero = a == 0
        safe = _where(zero, a + 1, a)  # avoid log(0) warnings; masked out below
        return _where(zero, a * 0, _sign(w) * (_log(safe) + 1.0))

    def grad_inverse(self, u: Array, sign: Array | None = None) -> Array:
        """Inverse mirror map s·exp(s·u − 1); ``sign`` (the weights' signs) is required."""
        u, s = _dual_and_sign(u, sign, "negative entropy's", "NE")
        return s * _exp(s * u - 1.0)

    def hessian_diag(self, w: Array) -> Array:
        """Diagonal of ∇²φ: 1/|w| (``inf`` at 0)."""
        w = _as_array(w)
        return 1.0 / abs(w)

    def mirror_step_(
        self,
        params: list[torch.Tensor],
        directions: list[torch.Tensor],
        lr: float,
        *,
        dual_noise: list[torch.Tensor] | None = None,
        duals: list[torch.Tensor] | None = None,
        foreach: bool | None = None,
    ) -> None:
        r"""Exponentiated-gradient step :math:`w \leftarrow w \odot \exp(s \odot (-\eta d + \xi))`,
        :math:`s = \mathrm{sign}(w)` (arguments as in :meth:`LocalPotential.mirror_step_`).

        The mirror form with its log and exp cancelled: with :math:`u = s(\log|w| + 1)`,
        :math:`s\exp(s(u - \eta d + \xi) - 1) = s|w|\exp(s(-\eta d + \xi))
        = w\exp(s(-\eta d + \xi))` (:math:`s^2 = 1`; at :math:`w = 0` both sides are 0). A
        sign never changes and a zero weight stays zero. With ``duals`` (kept by the caller) the
        mirror form of :meth:`LocalPotential.mirror_step_` is used, which is slower here.
        """
        if duals is not None:
            super().mirror_step_(
                params, directions, lr, dual_noise=dual_noise, duals=duals, foreach=foreach
            )
            return
        _check_step_lists(params, directions, dual_noise, None)
        if not params:
            return
        if _per_tensor(params, foreach):
            _ne_step_per_tensor(params, directions, dual_noise, lr)
        else:
            signs = torch._foreach_sign(params)
            step = torch._foreach_mul(directions, -lr)
            if dual_noise is not None:
                torch._foreach_add_(step, dual_noise)
            torch._foreach_mul_(step, signs)
            torch._foreach_exp_(step)
            torch._foreach_mul_(params, step)

    def grad_with_log_abs(
        self, w: np.ndarray, log_abs: np.ndarray, out: np.ndarray | None = None
    ) -> np.ndarray:
        """sign(w)·(log|w| + 1), 0 at w = 0 (as :meth:`grad`); see the base class."""
        out = np.add(log_abs, 1.0, out=out)
        with np.errstate(invalid="ignore"):  # 0 · (−inf) at w = 0, set to 0 below
            np.multiply(out, np.sign(w), out=out)
        zero = w == 0
        if zero.any():
            out[zero] = 0.0
        return out

    def hessian_power_law(self) -> tuple[float, float]:
        """(0, −1): φ''(w) = 1/|w|."""
        return 0.0, -1.0

    def step_kernel(self) -> StepKernel:
        """``StepKernel("ne")`` (see :meth:`LocalPotential.step_kernel`)."""
        return StepKernel("ne")

    def __repr__(self) -> str:
        return "NegativeEntropy()"


def _fmt_param(x: float) -> str:
    """Shortest text that parses back to ``x`` exactly (0.1 -> '0.1', 2.0 -> '2')."""
    short = _fmt_p(x)
    return short if float(short) == x else repr(float(x))


def _check_family_parameter(cls: str, name: str, x: Any, low: float, high: float) -> float:
    if isinstance(x, bool) or not isinstance(x, (int, float, np.integer, np.floating)):
        raise InputTypeError(
            f"{cls} needs a real number {name}, got {x!r} of type {type(x).__name__}"
        )
    x = float(x)
    if not (math.isfinite(x) and low < x < high):
        raise InputError(f"{cls} needs {low:g} < {name} < {high:g} (finite), got {name}={x!r}")
    return x


class _NamedFamily(LocalPotential):
    """A one-parameter family written ``family(name=x)`` (hypentropy, Tsallis): the parameter is
    the dataclass field :attr:`_field`, checked inside the open :attr:`parameter_bounds`;
    ``name``, ``parameter`` and ``with_parameter`` follow from it. (``PNorm`` is a family too,
    but named ``"3-norm"``.)"""

    #: The family's name in ``name`` and in :func:`potential` specs (``"hypentropy"``).
    _family: str = ""
    #: The dataclass field holding the parameter (``"beta"``).
    _field: str = ""

    def __post_init__(self) -> None:
        x = getattr(self, self._field)
        x = _check_family_parameter(type(self).__name__, self._field, x, *self.parameter_bounds)
        object.__setattr__(self, self._field, x)

    @property
    def name(self) -> str:  # type: ignore[override]
        return f"{self._family}({self._field}={_fmt_param(self.parameter)})"

    @property
    def parameter(self) -> float:  # type: ignore[override]
        """The family parameter that inference refines."""
        return getattr(self, self._field)

    def with_parameter(self, parameter: float) -> LocalPotential:
        """The member of this family with ``parameter``."""
        return type(self)(parameter)


def _asinh(x: Array) -> Array:
    return torch.asinh(x) if _is_torch(x) else np.arcsinh(x)


def _sinh(x: Array) -> Array:
    return torch.sinh(x) if _is_torch(x) else np.sinh(x)


def _hypot(w: Array, beta: float) -> Array:
    """sqrt(w² + β²) without overflow or cancellation."""
    if _is_torch(w):
        return torch.hypot(w, torch.full_like(w, beta))
    return np.hypot(w, beta)


@dataclass(frozen=True, repr=False)
class Hypentropy(_NamedFamily):
    r"""Hypentropy :math:`\phi_\beta(w) = \sum_i w_i\,\mathrm{arcsinh}(w_i/\beta) - \sqrt{w_i^2 + \beta^2}`, β > 0.

    The geometry of EG± ("exponentiated gradient meets gradient descent", Ghai, Hazan & Singer
    2020). Mirror map :math:`\mathrm{arcsinh}(w/\beta)`, inverse :math:`\beta\sinh(u)`, Hessian
    :math:`1/\sqrt{w^2 + \beta^2}`, conjugate :math:`\phi^*(u) = \beta\cosh u`. Defined on the
    whole real line: weights may cross zero, and 0 is an ordinary point.

    * **Large β**: :math:`\phi_\beta(w) = -\beta + w^2/(2\beta) + O(w^4/\beta^3)`, the Euclidean
      geometry with the step scaled by β (mirror descent with lr η ≈ SGD with lr ηβ).
    * **Small β**: :math:`\mathrm{arcsinh}(w/\beta) = \mathrm{sign}(w)\log(2|w|/\beta) +
      O(\beta^2/w^2)`, negative entropy's mirror map up to a constant per sign: EG-like.
    * **EG±**: writing :math:`w = w_+ - w_-` with :math:`w_\pm = (\sqrt{w^2+\beta^2} \pm w)/2
      \ge 0` (so :math:`w_+ w_- = \beta^2/4`), one mirror step :math:`u \leftarrow u - x` is
      :math:`w_+ \leftarrow w_+ e^{-x}`, :math:`w_- \leftarrow w_- e^{x}`: two exponentiated-
      gradient weights with opposite signs (docs/geometries.md).

    ``parameter`` is β (inference refines it like p; ``parameter_bounds`` is (0, inf)).

    Examples
    --------
    >>> import torch
    >>> phi = Hypentropy(0.5)
    >>> w = torch.tensor([-2.0, 0.0, 0.3], dtype=torch.float64)
    >>> torch.allclose(phi.grad_inverse(phi.grad(w)), w)
    True
    >>> phi.name, potential("hypentropy(beta=0.5)") == phi
    ('hypentropy(beta=0.5)', True)
    """

    beta: float

    _family = "hypentropy"
    _field = "beta"
    preserves_sign = False
    is_euclidean = False
    parameter_bounds = (0.0, math.inf)
    #: Where inference should search β (a hint; see docs/geometries.md).
    parameter_search_window = (0.01, 10.0)

    def value_elementwise(self, w: Array) -> Array:
        return w * _asinh(w / self.beta) - _hypot(w, self.beta)

    def grad(self, w: Array) -> Array:
        """Mirror map arcsinh(w/β)."""
        return _asinh(_as_array(w) / self.beta)

    def grad_inverse(self, u: Array, sign: Array | None = None) -> Array:
        """Inverse mirror map β·sinh(u); ``sign`` is accepted and ignored."""
        return self.beta * _sinh(_as_array(u))

    def hessian_diag(self, w: Array) -> Array:
        """Diagonal of ∇²φ: 1/sqrt(w² + β²) (finite everywhere)."""
        return 1.0 / _hypot(_as_array(w), self.beta)

    def log_hessian_diag(self, w: Array) -> Array:
        """−log sqrt(w² + β²)."""
        return -_log(_hypot(_as_array(w), self.beta))

    def conjugate(self, u: Array, sign: Array | None = None, *, elementwise: bool = False) -> Array:
        """φ*(u) = Σ β·cosh(u) (``sign`` is ignored)."""
        u = _as_array(u)
        c = self.beta * (torch.cosh(u) if _is_torch(u) else np.cosh(u))
        return c if elementwise else _sum(c)

    def bregman(self, w: Array, w_ref: Array, *, elementwise: bool = False) -> Array:
        r"""Bregman divergence in a cancellation-free form:
        :math:`w(\mathrm{arcsinh}\frac{w}{\beta} - \mathrm{arcsinh}\frac{w'}{\beta})
        + \frac{(w' - w)(w' + w)}{\sqrt{w'^2+\beta^2} + \sqrt{w^2+\beta^2}}` (the two square
        roots subtracted exactly; for β ≫ |w| the textbook form loses everything to the −β's)."""
        w, w_ref = _as_array(w), _as_array(w_ref)
        r, r_ref = _hypot(w, self.beta), _hypot(w_ref, self.beta)
        d = w * (self.grad(w) - self.grad(w_ref)) + (w_ref - w) * (w_ref + w) / (r + r_ref)
        return d if elementwise else _sum(d)

    def mirror_step_(
        self,
        params: list[torch.Tensor],
        directions: list[torch.Tensor],
        lr: float,
        *,
        dual_noise: list[torch.Tensor] | None = None,
        duals: list[torch.Tensor] | None = None,
        foreach: bool | None = None,
    ) -> None:
        r"""Fused step :math:`w \leftarrow \beta\sinh(\mathrm{arcsinh}(w/\beta) - x)`,
        :math:`x = \eta d - \xi` (arguments as in :meth:`LocalPotential.mirror_step_`).

        Without ``duals``, by the addition theorem,
        :math:`w \leftarrow w\cosh x - \sqrt{w^2+\beta^2}\,\sinh x` (no ``asinh``, which is
        several times slower than ``sinh``/``cosh`` on CPU). This is the EG± update of the class
        docstring, :math:`w_+ e^{-x} - w_- e^{x}`, regrouped so that nothing cancels when
        β ≫ |w| (there :math:`w_\pm \approx \beta/2` and the EG± form loses β/|w| digits).
        Rounding: absolute error ≈ eps·(|w| + β|x|), the mirror form's. With ``duals``: the
        mirror form.
        """
        _check_step_lists(params, directions, dual_noise, duals)
        if not params:
            return
        beta = self.beta
        if duals is not None:
            for j, w in enumerate(params):
                u = duals[j].add_(directions[j], alpha=-lr)
                if dual_noise is not None:
                    u.add_(dual_noise[j])
                torch.sinh(u, out=w).mul_(beta)
            return
        bufs = [_scratch(params) for _ in range(3)]  # reused by every tensor: no allocation
        for j, w in enumerate(params):
            x, r, sh = (_scratch_like(b, w) for b in bufs)
            torch.mul(directions[j], lr, out=x)
            if dual_noise is not None:
                x.sub_(dual_noise[j])
            torch.hypot(w, torch.tensor(beta, dtype=w.dtype, device=w.device), out=r)
            r.mul_(torch.sinh(x, out=sh))
            w.mul_(x.cosh_()).sub_(r)

    def step_kernel(self) -> StepKernel:
        """``StepKernel("hypentropy", β)`` (see :meth:`LocalPotential.step_kernel`)."""
        return StepKernel("hypentropy", self.beta)

    def __repr__(self) -> str:
        return f"Hypentropy(beta={_fmt_param(self.beta)})"


def _expm1(x: Array) -> Array:
    return torch.expm1(x) if _is_torch(x) else np.expm1(x)


def _log1p(x: Array) -> Array:
    return torch.log1p(x) if _is_torch(x) else np.log1p(x)


def _log_abs(w: Array) -> Array:
    if _is_torch(w):
        return torch.log(abs(w))
    with np.errstate(divide="ignore"):
        return np.log(abs(w))


@dataclass(frozen=True, repr=False)
class Tsallis(_NamedFamily):
    r"""Negative Tsallis entropy on signed weights, :math:`\phi_q(w) = \sum_i (|w_i| - |w_i|^q)/(1 - q)`, 0 < q < 1.

    On non-negative weights that sum to one this is the negative Tsallis entropy
    :math:`(\sum_i w_i^q - 1)/(q - 1)`; on signed weights it is applied to :math:`|w|` and is
    **sign-preserving**, like negative entropy (each sign's half-line is its own domain; the
    inverse mirror map needs the weights' signs). Mirror map
    :math:`\mathrm{sign}(w)(1 - q|w|^{q-1})/(1 - q)`, Hessian :math:`q|w|^{q-2}`.

    * **q → 1** is negative entropy (:math:`(|w| - |w|^q)/(1-q) \to |w|\log|w|`); the mirror map
      is evaluated as :math:`s(1 - q\,\mathrm{expm1}((q-1)\log|w|)/(1-q))`, which stays
      accurate as q → 1 (and tends to NE's :math:`s(\log|w| + 1)`).
    * The Hessian :math:`\propto |w|^{q-2}` continues the p-norm family past NE: p-norms have
      exponent p − 2 > −1, NE −1, Tsallis(q) q − 2 ∈ (−2, −1). q = 1/2 is the geometry of
      Tsallis-INF bandits.
    * **Why not q > 1** (the paper's footnote): there :math:`\phi_q` differs from
      :math:`\frac{q}{q-1}\,|w|^q/q` by the linear term :math:`-|w|/(q-1)`, a constant per sign
      in the mirror map, so on weights of fixed sign mirror descent under it is ``PNorm(q)``
      mirror descent with the step scaled by :math:`(q-1)/q`, and inference sees the same
      scaled dual change: use ``PNorm(q)``.
    * **Dual domain**: a weight of sign s has :math:`s u < 1/(1-q)` (reached as |w| → ∞);
      beyond it :meth:`grad_inverse` returns ±inf — keep steps small enough
      (:math:`\eta |d| < 1/(1-q) - s u`). A weight at exactly 0 stays 0 (as under NE).
      Large weights crowd against that edge: the inverse map's condition number is about
      :math:`|w|^{1-q}/(q(1-q))` for |w| ≫ 1 (38 at q = 1/2, |w| = 100; 700 at q = 0.1), an
      intrinsic property of the geometry that float32 weights feel first.

    ``parameter`` is q (``parameter_bounds`` (0, 1)).

    Examples
    --------
    >>> import torch
    >>> phi = Tsallis(0.5)
    >>> w = torch.tensor([-2.0, 0.3], dtype=torch.float64)
    >>> torch.allclose(phi.grad_inverse(phi.grad(w), sign=torch.sign(w)), w)
    True
    >>> phi.name, potential("tsallis(q=0.5)") == phi
    ('tsallis(q=0.5)', True)
    """

    q: float

    _family = "tsallis"
    _field = "q"
    preserves_sign = True
    is_euclidean = False
    parameter_bounds = (0.0, 1.0)
    #: Where inference should search q (a hint; see docs/geometries.md).
    parameter_search_window = (0.01, 0.99)

    def _e(self, w: Array) -> Array:
        """expm1((q−1)·log|w|)/(1−q) = (|w|^(q−1) − 1)/(1−q) (→ −log|w| as q → 1)."""
        return _expm1((self.q - 1.0) * _log_abs(w)) / (1.0 - self.q)

    def value_elementwise(self, w: Array) -> Array:
        w = _as_array(w)
        a = abs(w)
        zero = a == 0
        safe = _where(zero, a + 1, a)
        return _where(zero, a * 0, -a * self._e(safe))

    def grad(self, w: Array) -> Array:
        """Mirror map sign(w)·(1 − q|w|^(q−1))/(1 − q), defined as 0 at w = 0 (as for NE)."""
        w = _as_array(w)
        a = abs(w)
        zero = a == 0
        safe = _where(zero, a + 1, a)
        return _where(zero, a * 0, _sign(w) * (1.0 - self.q * self._e(safe)))

    def grad_inverse(self, u: Array, sign: Array | None = None) -> Array:
        """Inverse mirror map s·exp(log1p((1 − s·u)(1 − q)/q)/(q − 1)); ``sign`` is required.

        ±inf outside the dual domain s·u < 1/(1 − q); 0 where the sign is 0."""
        u, s = _dual_and_sign(u, sign, "the Tsallis", "it")
        q = self.q
        x = (1.0 - s * u) * ((1.0 - q) / q)
        x = torch.clamp(x, min=-1.0) if _is_torch(x) else np.maximum(x, -1.0)
        if _is_torch(x):
            mag = torch.exp(torch.log1p(x) / (q - 1.0))
        else:
            with np.errstate(divide="ignore"):
                mag = np.exp(np.log1p(x) / (q - 1.0))
        return s * mag

    def hessian_diag(self, w: Array) -> Array:
        """Diagonal of ∇²φ: q·|w|^(q−2) (``inf`` at 0)."""
        w = _as_array(w)
        return self.q * abs(w) ** (self.q - 2.0)

    def log_hessian_diag(self, w: Array) -> Array:
        """log q + (q − 2)·log|w|."""
        return math.log(self.q) + (self.q - 2.0) * _log_abs(_as_array(w))

    def bregman(self, w: Array, w_ref: Array, *, elementwise: bool = False) -> Array:
        """As :meth:`LocalPotential.bregman` (``+inf`` outside ``w_ref``'s sign orthant)."""
        return super().bregman(w, w_ref, elementwise=elementwise)

    def mirror_step_(
        self,
        params: list[torch.Tensor],
        directions: list[torch.Tensor],
        lr: float,
        *,
        dual_noise: list[torch.Tensor] | None = None,
        duals: list[torch.Tensor] | None = None,
        foreach: bool | None = None,
    ) -> None:
        r"""Fused step (arguments as in :meth:`LocalPotential.mirror_step_`): with
        :math:`E = |w|^{q-1} - 1` (``expm1``), the dual step :math:`u \leftarrow u - x`,
        :math:`x = \eta d - \xi`, is :math:`E \leftarrow E + s x (1-q)/q`, and
        :math:`w \leftarrow s\exp(\mathrm{log1p}(E)/(q-1))` (±inf past the dual domain, 0 stays
        0). With ``duals``: the mirror form."""
        if duals is not None:
            super().mirror_step_(
                params, directions, lr, dual_noise=dual_noise, duals=duals, foreach=foreach
            )
            return
        _check_step_lists(params, directions, dual_noise, None)
        q = self.q
        c = (1.0 - q) / q
        if not params:
            return
        bufs = [_scratch(params) for _ in range(2)]  # reused by every tensor: no allocation
        for j, w in enumerate(params):
            x, e = (_scratch_like(b, w) for b in bufs)
            torch.mul(directions[j], lr * c, out=x)
            if dual_noise is not None:
                x.sub_(dual_noise[j], alpha=c)
            x.mul_(torch.sign(w, out=e))  # s·x
            torch.abs(w, out=e).log_().mul_(q - 1.0).expm1_()
            e.add_(x).clamp_(min=-1.0).log1p_().div_(q - 1.0).exp_()
            w.copy_(e.copysign_(w))  # 0 stays 0: e = exp(−inf) = 0 there

    def hessian_power_law(self) -> tuple[float, float]:
        """(log q, q − 2): φ''(w) = q|w|^(q−2)."""
        return math.log(self.q), self.q - 2.0

    def step_kernel(self) -> StepKernel:
        """``StepKernel("tsallis", q)`` (see :meth:`LocalPotential.step_kernel`)."""
        return StepKernel("tsallis", self.q)

    def __repr__(self) -> str:
        return f"Tsallis(q={_fmt_param(self.q)})"


# --------------------------------------------------------------------------------------------
# fused mirror-descent kernels (torch only), used by the potentials' ``mirror_step_``
# --------------------------------------------------------------------------------------------


def _check_step_lists(
    params: list[torch.Tensor],
    directions: list[torch.Tensor],
    dual_noise: list[torch.Tensor] | None,
    duals: list[torch.Tensor] | None,
) -> None:
    for name, other in (("directions", directions), ("dual_noise", dual_noise), ("duals", duals)):
        if other is not None and len(other) != len(params):
            raise InputError(
                f"mirror_step_ got {len(params)} parameters but {len(other)} {name}; "
                "pass one tensor per parameter"
            )


def _per_tensor(params: list[torch.Tensor], foreach: bool | None) -> bool:
    """Per-tensor loop (CPU default) or multi-tensor ``torch._foreach_*`` kernels.

    On CPU ``torch._foreach_*`` ops are plain loops anyway, and finishing one tensor before the
    next keeps the temporaries small, reused and in cache, instead of allocating a whole list of
    them (measured 2x faster on a ResNet-50 parameter list).
    """
    if foreach is not None:
        return not foreach
    return all(w.device.type == "cpu" for w in params)


def _scratch(params: list[torch.Tensor]) -> torch.Tensor:
    """One flat buffer as large as the largest tensor (no allocation per tensor)."""
    w = params[0]
    return torch.empty(max(p.numel() for p in params), dtype=w.dtype, device=w.device)


def _scratch_like(scratch: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    if scratch.dtype != w.dtype or scratch.device != w.device:
        return torch.empty_like(w, memory_format=torch.contiguous_format)
    return scratch[: w.numel()].view(w.shape)


# Exponents for which ``Tensor.pow_`` has exact, fast special cases (sqrt, square, cube, ...).
_FAST_EXPONENTS = frozenset({0.5, 2.0, 3.0, -0.5, -1.0, -2.0})


def _power_(t: torch.Tensor, k: float) -> None:
    """In place ``t ← t**k`` for ``t ≥ 0``.

    On CPU a generic exponent goes through ``exp(k·log t)``, three vectorised passes that cost
    about a third of one generic ``pow`` pass there (relative error ≈ |k·log t|·eps instead of
    ~eps; ``log 0 = -inf`` gives ``0**k = 0`` for k > 0). Other devices use ``pow_``.
    """
    if k == 1.0:
        return
    if k in _FAST_EXPONENTS or t.device.type != "cpu":
        t.pow_(k)
    else:
        t.log_().mul_(k).exp_()


def _signed_power(x: torch.Tensor, k: float, out: torch.Tensor) -> torch.Tensor:
    r"""``out ← sign(x)·|x|**k`` for k > 0 (``out`` must not alias ``x``); returns ``out``.

    For k ≥ 1 it is computed as :math:`x\,|x|^{k-1}` (finite at 0, one pass fewer than a
    ``copysign`` for k = 2); for 0 < k < 1 as ``copysign(|x|**k, x)`` (|x|^(k-1) is infinite at
    0); k = 1/2 is ``copysign(sqrt|x|, x)``.
    """
    torch.abs(x, out=out)
    if k >= 1.0:
        if k == 1.0:
            return out.copy_(x)
        _power_(out, k - 1.0)
        return out.mul_(x)
    if k == 0.5:
        out.sqrt_()
    else:
        _power_(out, k)
    return out.copysign_(x)


def _foreach_signed_power(xs: list[torch.Tensor], k: float) -> list[torch.Tensor]:
    """List version of :func:`_signed_power` with ``torch._foreach_*`` kernels (new tensors)."""
    out = torch._foreach_abs(xs)
    if k >= 1.0:
        if k != 2.0:
            torch._foreach_pow_(out, k - 1.0)
        torch._foreach_mul_(out, xs)
    else:
        torch._foreach_pow_(out, k)
        for o, x in zip(out, xs, strict=True):
            o.copysign_(x)
    return out


def _pnorm_step_per_tensor(
    params: list[torch.Tensor],
    directions: list[torch.Tensor],
    dual_noise: list[torch.Tensor] | None,
    duals: list[torch.Tensor] | None,
    p: float,
    lr: float,
) -> None:
    r"""In place :math:`w \leftarrow \mathrm{sign}(u)|u|^{1/(p-1)}`,
    :math:`u = \mathrm{sign}(w)|w|^{p-1} - \eta d (+\xi)`, one tensor at a time.

    Without ``duals`` the dual weights live in one scratch buffer reused by every tensor; with
    ``duals`` they are updated in place.
    """
    scratch = _scratch(params) if duals is None else None
    k_mirror, k_inverse = p - 1.0, 1.0 / (p - 1.0)
    for j, w in enumerate(params):
        if duals is None:
            u = _signed_power(w, k_mirror, out=_scratch_like(scratch, w))
        else:
            u = duals[j]
        u.add_(directions[j], alpha=-lr)
        if dual_noise is not None:
            u.add_(dual_noise[j])
        _signed_power(u, k_inverse, out=w)


def _pnorm_step_lists(
    params: list[torch.Tensor],
    directions: list[torch.Tensor],
    dual_noise: list[torch.Tensor] | None,
    duals: list[torch.Tensor] | None,
    p: float,
    lr: float,
) -> None:
    """List version of :func:`_pnorm_step_per_tensor` (``torch._foreach_*`` kernels)."""
    u = _foreach_signed_power(params, p - 1.0) if duals is None else duals
    torch._foreach_add_(u, directions, alpha=-lr)
    if dual_noise is not None:
        torch._foreach_add_(u, dual_noise)
    torch._foreach_copy_(params, _foreach_signed_power(u, 1.0 / (p - 1.0)))


def _ne_step_per_tensor(
    params: list[torch.Tensor],
    directions: list[torch.Tensor],
    dual_noise: list[torch.Tensor] | None,
    lr: float,
) -> None:
    r"""In place :math:`w \leftarrow w \odot \exp(s \odot (-\eta d + \xi))`, s = sign(w), one
    tensor at a time with one reused scratch buffer."""
    scratch = _scratch(params)
    zero = torch.zeros((), dtype=scratch.dtype, device=scratch.device)
    for j, w in enumerate(params):
        s = torch.sign(w, out=_scratch_like(scratch, w))
        if dual_noise is None:  # −η·s⊙d in one pass, into s
            step = torch.addcmul(zero.to(w.dtype), directions[j], s, value=-lr, out=s)
        else:
            step = s.mul_(torch.add(dual_noise[j], directions[j], alpha=-lr))
        w.mul_(step.exp_())


def _fmt_p(p: float) -> str:
    """2.0 -> '2', 2.5 -> '2.5', 1.1000000000000001 -> '1.1'."""
    return f"{round(p, 10):g}"


PotentialLike = Union[Potential, str, float, int]

_PNORM_PATTERNS = (
    re.compile(r"^(?P<p>[0-9]*\.?[0-9]+(?:e[+-]?[0-9]+)?)[-_ ]?norm$"),
    re.compile(r"^p\s*=?\s*(?P<p>[0-9]*\.?[0-9]+(?:e[+-]?[0-9]+)?)$"),
    re.compile(r"^(?:pnorm|p-norm|l)\s*\(?\s*(?P<p>[0-9]*\.?[0-9]+)\s*\)?$"),
)
_NE_NAMES = {
    "ne",
    "negative_entropy",
    "negative-entropy",
    "negative entropy",
    "negentropy",
    "eg",
    "exponentiated_gradient",
    "exponentiated-gradient",
    "entropy",
}
_EUCLIDEAN_NAMES = {"euclidean", "sgd", "gd", "l2"}
_NUMBER = r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:e[+-]?[0-9]+)?"
_FAMILY_PATTERNS = (
    (re.compile(rf"^(?:hypentropy|eg±|eg\+-|egpm)\s*\(\s*(?:beta\s*=\s*)?(?P<x>{_NUMBER})\s*\)$"),
     "Hypentropy"),
    (re.compile(rf"^tsallis\s*\(\s*(?:q\s*=\s*)?(?P<x>{_NUMBER})\s*\)$"), "Tsallis"),
)  # fmt: skip


def potential(spec: PotentialLike) -> Potential:
    """Parse a potential specification.

    Accepted forms: a :class:`Potential` (returned as is); a real number ``p > 1``
    (``PNorm(p)``); strings ``"2-norm"``, ``"3-norm"``, ``"2.5-norm"``, ``"p=2.5"``, ``"p2.5"``,
    ``"euclidean"`` (= ``"2-norm"``), ``"ne"``, ``"negative_entropy"``, ``"negative entropy"``,
    ``"eg"``, ``"hypentropy(beta=0.1)"`` (or ``"hypentropy(0.1)"``, ``"eg±(0.1)"``),
    ``"tsallis(q=0.5)"`` (or ``"tsallis(0.5)"``). Case and surrounding spaces are ignored.

    Raises
    ------
    InputError
        For an unknown name, or p ≤ 1 (a ``ValueError``).
    InputTypeError
        For anything that is neither a string, a number nor a potential.

    Examples
    --------
    >>> potential("3-norm"), potential("p=2.5"), potential("ne")
    (PNorm(p=3), PNorm(p=2.5), NegativeEntropy())
    >>> potential("hypentropy(beta=0.1)"), potential("Tsallis(q = 0.5)")
    (Hypentropy(beta=0.1), Tsallis(q=0.5))
    """
    if isinstance(spec, LocalPotential):
        return spec
    if isinstance(spec, bool):
        raise InputTypeError(
            f"a potential must be a name, a number p > 1 or a Potential, got {spec!r}"
        )
    if isinstance(spec, (int, float, np.integer, np.floating)):
        return PNorm(float(spec))
    if isinstance(spec, str):
        s = spec.strip().lower()
        if s in _NE_NAMES:
            return NegativeEntropy()
        if s in _EUCLIDEAN_NAMES:
            return PNorm(2.0)
        for pattern in _PNORM_PATTERNS:
            m = pattern.match(s)
            if m:
                return PNorm(float(m.group("p")))
        for pattern, family in _FAMILY_PATTERNS:
            m = pattern.match(s)
            if m:
                return (Hypentropy if family == "Hypentropy" else Tsallis)(float(m.group("x")))
        raise InputError(
            f"unknown potential {spec!r}: use a p-norm such as '2-norm', '3-norm', '2.5-norm' or "
            "'p=2.5' (p > 1), negative entropy as 'ne' / 'negative_entropy', "
            "'hypentropy(beta=0.1)' (beta > 0) or 'tsallis(q=0.5)' (0 < q < 1)"
        )
    if isinstance(spec, Potential):
        return spec
    raise InputTypeError(
        f"a potential must be a name, a number p > 1 or a Potential, got {type(spec).__name__}"
    )
