r"""Biological constraints applied inside a mirror-descent step (docs/geometries.md).

A :class:`Constraint` restricts one parameter to a box per weight,

.. math::
    C = \{w : s_i w_i \ge 0 \text{ where } s_i \ne 0,\ \ m \le |w_i| \le M\},

with a **sign mask** :math:`s \in \{-1, 0, +1\}` (Dale's law: :func:`dale_mask`), a **floor**
``min_abs`` = m and a **ceiling** ``max_abs`` = M. :class:`~syngeo.MirrorDescent` and
:class:`~syngeo.MirrorAdam` take the constrained step

.. math::
    w_{t+1} = \arg\min_{w \in C} D_\phi\big(w,\ (\nabla\phi)^{-1}(\nabla\phi(w_t) - \eta d_t)\big),

the Bregman projection of the unconstrained mirror step onto :math:`C` (projected mirror
descent). Every potential here is separable, so :math:`D_\phi(w, \hat w) = \sum_i
D_i(w_i, \hat w_i)` with each :math:`D_i` convex in :math:`w_i` and smallest at
:math:`\hat w_i`; its minimiser over an interval is therefore the point of the interval nearest
to :math:`\hat w_i`. The projection is the coordinate-wise clip, for **every** separable
potential, and the optimizer computes it before writing the weights (a clip after
``optimizer.step()`` by the user gives the same numbers only for the plain step: it cannot do
the parts below, which act before the step).

* **Soft ceiling** (``soft=True``): the dual step of a weight moving away from zero is
  multiplied by :math:`(1 - |w|/M)_+` (soft-bounded plasticity, potentiation ∝ distance to the
  bound), and the hard ceiling still holds.
* **Weights at exactly zero under a sign-preserving potential** (negative entropy, Tsallis):
  0 is a fixed point of :math:`w \odot e^{\cdots}`, so such a synapse never learns. With a floor
  m > 0 it is first set to :math:`\sigma m`, σ the sign mask where given, else the sign of
  :math:`-d` (the direction the loss asks for; 0 stays 0 when :math:`d = 0`). With m = 0 it
  stays frozen and the optimizer warns once per parameter (at its first step). The EG±
  alternative, where 0 is an ordinary point, is the hypentropy potential.
* Parameters without a constraint go through exactly the plain optimizer's arithmetic.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Union

import torch
from torch import Tensor

from syngeo.errors import InputError, InputTypeError

__all__ = ["Constraint", "dale_mask"]


@dataclass(frozen=True, eq=False)
class Constraint:
    """Sign mask, floor and ceiling of one parameter's weights (module docstring).

    Parameters
    ----------
    sign : Tensor, float or None
        +1 (excitatory: w ≥ 0), −1 (inhibitory: w ≤ 0) or 0 (free) per weight, as a tensor
        broadcastable to the parameter (e.g. from :func:`dale_mask`) or one number for the whole
        parameter ("by layer"). None: no sign constraint.
    min_abs : float
        Floor m ≥ 0 on |w| (see the module notes on zeros under sign-preserving potentials).
    max_abs : float
        Ceiling M > m on |w| (``inf``: none).
    soft : bool
        Soft ceiling: shrink outward dual steps by (1 − |w|/M); needs a finite ``max_abs``.

    Examples
    --------
    >>> import torch
    >>> c = Constraint(sign=dale_mask((3, 4), [True, True, False, False]), max_abs=1.0)
    >>> c.sign
    tensor([[ 1.,  1., -1., -1.],
            [ 1.,  1., -1., -1.],
            [ 1.,  1., -1., -1.]])
    """

    sign: Union[Tensor, float, None] = None
    min_abs: float = 0.0
    max_abs: float = math.inf
    soft: bool = False

    def __post_init__(self) -> None:
        sign = self.sign
        if sign is not None:
            if isinstance(sign, bool) or not isinstance(sign, (Tensor, int, float)):
                raise InputTypeError(
                    f"Constraint sign must be a tensor of -1/0/+1, a number or None, got {sign!r}"
                )
            t = torch.as_tensor(sign, dtype=torch.float32 if not isinstance(sign, Tensor) else None)
            if not t.is_floating_point():
                t = t.float()
            if not bool(torch.all((t == 1) | (t == -1) | (t == 0))):
                raise InputError("Constraint sign must contain only -1, 0 and +1")
            object.__setattr__(self, "sign", t)
        for name in ("min_abs", "max_abs"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or math.isnan(v):
                raise InputTypeError(f"Constraint {name} must be a number, got {v!r}")
            object.__setattr__(self, name, float(v))
        if not (0.0 <= self.min_abs < self.max_abs) or math.isinf(self.min_abs):
            raise InputError(
                f"Constraint needs 0 <= min_abs < max_abs, got min_abs={self.min_abs}, "
                f"max_abs={self.max_abs}"
            )
        if not isinstance(self.soft, bool):
            raise InputTypeError(f"Constraint soft must be True or False, got {self.soft!r}")
        if self.soft and math.isinf(self.max_abs):
            raise InputError("a soft ceiling needs a finite max_abs")

    def interval_bounds(self, w: Tensor) -> tuple[Tensor | None, Tensor | None]:
        """Per-weight bounds (lo, hi) of the allowed interval, cached per dtype, device and
        shape; (None, None) without a sign mask (the interval is [−M, M])."""
        s = self.sign_like(w)
        if s is None:
            return None, None
        key = (w.dtype, w.device, tuple(w.shape))
        cache = self.__dict__.setdefault("_bounds", {})
        if key not in cache:

            def full(v: float) -> Tensor:  # in w's dtype (python scalars would give float32)
                return torch.full_like(s, v)

            m, big = self.min_abs, self.max_abs
            lo = torch.where(s > 0, full(m), full(-big))
            hi = torch.where(s < 0, full(-m), full(big))
            cache.clear()  # one shape per constraint in practice; keep memory bounded
            cache[key] = (lo.contiguous(), hi.contiguous())
        return cache[key]

    def has_free_weights(self, w: Tensor) -> bool:
        """True when some weight has no sign constraint (cached with the bounds)."""
        s = self.sign_like(w)
        if s is None:
            return True
        key = ("free", w.dtype, w.device, tuple(w.shape))
        cache = self.__dict__.setdefault("_free", {})
        if key not in cache:
            cache.clear()
            cache[key] = bool((s == 0).any())
        return cache[key]

    def kernel_arguments(
        self, w: Tensor
    ) -> tuple[Tensor | None, tuple[float, float, float, float]]:
        """What a fused kernel (:mod:`syngeo.kernels`) reads for ``w``: an int8 sign mask of
        its shape (contiguous, cached like the bounds; None where one sign covers the whole
        parameter) and (that sign, floor, ceiling, soft ceiling or +inf)."""
        soft = self.max_abs if self.soft else math.inf
        scalars = (0.0, self.min_abs, self.max_abs, soft)
        if self.sign is None:
            return None, scalars
        sign = self.sign
        if sign.numel() == 1:  # type: ignore[union-attr]
            return None, (float(sign.reshape(())), *scalars[1:])  # type: ignore[union-attr]
        key = ("mask", w.device, tuple(w.shape))
        cache = self.__dict__.setdefault("_mask", {})
        if key not in cache:
            cache.clear()
            s = self.sign_like(w)
            cache[key] = s.to(torch.int8).contiguous()  # type: ignore[union-attr]
        return cache[key], scalars

    def sign_like(self, w: Tensor) -> Tensor | None:
        """The sign mask as a tensor of ``w``'s shape, dtype and device (None without one)."""
        if self.sign is None:
            return None
        s = self.sign.to(dtype=w.dtype, device=w.device)  # type: ignore[union-attr]
        try:
            return torch.broadcast_to(s, w.shape)
        except RuntimeError:
            raise InputError(
                f"Constraint sign of shape {tuple(s.shape)} does not broadcast to a parameter "
                f"of shape {tuple(w.shape)}"
            ) from None


def dale_mask(shape: Sequence[int], excitatory: Any, dim: int = 1) -> Tensor:
    """±1 mask of Dale's law: every weight leaving an excitatory neuron is ≥ 0, an inhibitory one ≤ 0.

    Parameters
    ----------
    shape : sequence of int
        The weight's shape; ``torch.nn.Linear`` weights are (out, in), so presynaptic neurons
        are the columns (``dim=1``, the default).
    excitatory : int or sequence of bool
        The number of excitatory presynaptic neurons (the first ones), or one bool per neuron.
    dim : int
        The presynaptic axis.

    Examples
    --------
    >>> dale_mask((2, 3), 2)
    tensor([[ 1.,  1., -1.],
            [ 1.,  1., -1.]])
    """
    shape = tuple(int(s) for s in shape)
    if not shape:
        raise InputError("dale_mask needs the shape of a weight with at least one axis")
    n = shape[dim]
    if isinstance(excitatory, (int,)) and not isinstance(excitatory, bool):
        if not 0 <= excitatory <= n:
            raise InputError(f"dale_mask: {excitatory} excitatory neurons out of {n}")
        is_e = torch.arange(n) < excitatory
    else:
        is_e = torch.as_tensor(excitatory, dtype=torch.bool)
        if is_e.shape != (n,):
            raise InputError(
                f"dale_mask: {tuple(is_e.shape)} excitatory flags for {n} presynaptic neurons "
                f"(axis {dim} of {shape})"
            )
    signs = torch.where(is_e, 1.0, -1.0)
    view = [1] * len(shape)
    view[dim] = n
    return torch.broadcast_to(signs.reshape(view), shape).clone()


ConstraintsLike = Union[Constraint, Mapping[Tensor, Constraint], None]


def constraint_list(
    constraints: Mapping[int, Constraint], params: list[Tensor]
) -> list[Constraint | None] | None:
    """One entry per parameter (None: unconstrained); None when no parameter has one."""
    if not constraints:  # the common case, at every step
        return None
    out = [constraints.get(id(p)) for p in params]
    return out if any(c is not None for c in out) else None


def as_constraint_map(constraints: ConstraintsLike, params: list[Tensor]) -> dict[int, Constraint]:
    """Normalise the optimizers' ``constraints`` argument to {id(param): Constraint}."""
    if constraints is None:
        return {}
    if isinstance(constraints, Constraint):
        return {id(p): constraints for p in params}
    if not isinstance(constraints, Mapping):
        raise InputTypeError(
            "constraints must be a Constraint (for every parameter), a dict "
            f"{{parameter: Constraint}} or None, got {type(constraints).__name__}"
        )
    ids = {id(p) for p in params}
    out = {}
    for p, c in constraints.items():
        if not isinstance(p, Tensor) or not isinstance(c, Constraint):
            raise InputTypeError("constraints maps parameters (tensors) to Constraint objects")
        if id(p) not in ids:
            raise InputError("constraints names a tensor that is not one of the parameters")
        c.sign_like(p)  # shape check now, not at the first step
        out[id(p)] = c
    return out


def lift_zeros_(
    params: list[Tensor], directions: list[Tensor], constraints: list[Constraint | None]
) -> None:
    """Under a sign-preserving potential: set exact zeros of floored parameters to σ·min_abs,
    σ the sign mask where given, else sign(−d) (module docstring)."""
    for w, d, c in zip(params, directions, constraints, strict=True):
        if c is None or c.min_abs == 0:
            continue
        zero = w == 0
        if bool(zero.any()):
            s = c.sign_like(w)
            want = -torch.sign(d)
            sigma = want if s is None else torch.where(s != 0, s, want)
            w.copy_(torch.where(zero, sigma * c.min_abs, w))


def soften(
    params: list[Tensor], steps: list[Tensor], constraints: list[Constraint | None]
) -> list[Tensor]:
    """Soft ceilings: scale each ``step`` (a change of the dual weights, or −direction) that
    moves |w| outward by (1 − |w|/M)_+; new tensors where changed, the inputs are not written."""
    out = list(steps)
    for i, (w, c) in enumerate(zip(params, constraints, strict=True)):
        if c is None or not c.soft:
            continue
        outward = steps[i] * torch.sign(w) >= 0  # Δu and Δw share their sign
        factor = torch.clamp(1.0 - w.abs() / c.max_abs, min=0.0)
        out[i] = torch.where(outward, steps[i] * factor, steps[i])
    return out


def project_(params: list[Tensor], constraints: list[Constraint | None]) -> None:
    """After the step: the Bregman projection onto the box, i.e. the coordinate-wise clip.

    Where the allowed set of a weight is an interval (a sign, or no floor) this is one
    ``clamp`` with cached per-weight bounds; a floor on a weight free to take either sign (a
    set of two intervals) keeps the sign the step gave it (0 stays 0)."""
    for w, c in zip(params, constraints, strict=True):
        if c is None:
            continue
        lo, hi = c.interval_bounds(w)
        if lo is None:
            w.clamp_(min=-c.max_abs, max=c.max_abs)
        else:
            torch.clamp(w, min=lo, max=hi, out=w)
        if c.min_abs > 0 and c.has_free_weights(w):
            s = c.sign_like(w)
            free = (w != 0) & (w.abs() < c.min_abs) & (True if s is None else s == 0)
            w.copy_(torch.where(free, torch.sign(w) * c.min_abs, w))


def warn_frozen_zeros(
    params: list[Tensor],
    checked: set[int],
    constraints: Mapping[int, Constraint],
    potential_name: str,
) -> None:
    """Warn once per parameter (at its first step) about exact zeros under a sign-preserving
    potential without a floor: they never move. ``checked`` holds the ids already looked at."""
    n = 0
    for w in params:
        if id(w) in checked:
            continue
        checked.add(id(w))
        c = constraints.get(id(w))
        if c is None or c.min_abs == 0:
            n += int((w == 0).sum())
    if n:
        warnings.warn(
            f"{n} weights are exactly 0 under the sign-preserving {potential_name} potential and "
            "will never change (0 is a fixed point); give them a floor with "
            "Constraint(min_abs=...), or use the hypentropy potential (EG±), where 0 is an "
            "ordinary point",
            UserWarning,
            stacklevel=4,
        )
