r"""Riemannian metrics and the metric-dependent steepest descent (docs/theory.md §5 and §1).

"Gradient descent" needs a ruler. With an inner product :math:`\langle u, v\rangle_A = u^T A v`
(``A`` symmetric positive definite, possibly depending on the point), the gradient defined by
:math:`\langle\nabla_A f, u\rangle_A = \partial_u f` for all ``u`` is (Surace & Brea, Eq. A.2)

.. math::  \nabla_A f = A^{-1}\,\partial f,

and the direction of steepest descent among vectors of unit A-length is (Eq. A.3; Lagrange:
minimise :math:`\partial f^T u` subject to :math:`u^T A u = 1`)

.. math::  d = -\frac{A^{-1}\partial f}{\|A^{-1}\partial f\|_A}, \qquad
           \partial f^T d = -\sqrt{\partial f^T A^{-1}\partial f}.

The vector of partial derivatives is the gradient only for ``A = I``.

One primitive, the rest derived
-------------------------------
A :class:`Metric` subclass provides **one** method: :meth:`Metric.metric_matrix` (shape
``[..., n, n]``) or, for a diagonal metric, :meth:`Metric.metric_diagonal` (shape ``[..., n]``).
The base class derives the cometric (inverse), inner products and norms, the metric gradient,
the unit-length steepest-descent direction and the unit "ball" (an ellipse in 2-D).
:func:`flow_field` and :func:`integrate_flow` build on those for any metric.

================================  ===============================================================
metric                            metric at ``base_point`` x
================================  ===============================================================
``Euclidean(dim)``                :math:`I`
``Constant(A)``                   :math:`A` (validated SPD); ``Constant.from_conversion_factors``
``PositionDependent(fn)``         ``fn(x)``
``Fisher(model)``                 ``model.fisher_information(x)`` (natural gradient)
``Hessian(potential)``            :math:`\nabla^2\phi(x)` (diagonal); its flow is mirror descent's
                                  continuous-time limit :math:`\dot w = -(\nabla^2\phi)^{-1}\nabla L`
================================  ===============================================================

Conventions: points, tangent vectors and partial derivatives are array-like, shape=[..., dim],
float64 NumPy; leading axes broadcast. ``grad`` always means the vector of partial derivatives
:math:`\partial f` (a covector); ``metric_gradient`` is the tangent vector :math:`A^{-1}\partial f`.
Flows descend: :math:`\dot x = -A^{-1}\partial f`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import scipy.integrate
import torch

from syngeo.errors import InputError, InputTypeError
from syngeo.potentials import PotentialLike, potential
from syngeo.validation import as_generator, as_positive_int

__all__ = [
    "Constant",
    "Euclidean",
    "Fisher",
    "FlowField",
    "FlowTrajectory",
    "Hessian",
    "Metric",
    "PositionDependent",
    "UnitEllipse",
    "autograd_gradient",
    "coordinate_grid",
    "flow_field",
    "integrate_flow",
]

_SYMMETRY_RTOL = 1e-10


def _as_points(x: Any, name: str) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim == 0:
        raise InputError(f"{name} must have shape [..., dim], got a scalar")
    return arr


def _check_spd_matrix(a: np.ndarray, where: str) -> np.ndarray:
    """Raise InputError unless every [n, n] block of ``a`` is finite, symmetric and positive definite."""
    if a.ndim < 2 or a.shape[-1] != a.shape[-2]:
        raise InputError(f"{where}: a metric matrix must have shape [..., n, n], got {a.shape}")
    if not np.all(np.isfinite(a)):
        raise InputError(
            f"{where}: the metric matrix has NaN or inf entries; it must be finite SPD"
        )
    asym = np.abs(a - np.swapaxes(a, -1, -2)).max(initial=0.0)
    scale = np.abs(a).max(initial=0.0)
    if asym > _SYMMETRY_RTOL * max(scale, 1e-300):
        raise InputError(
            f"{where}: the metric matrix is not symmetric (max |A - A^T| = {asym:.3g}); "
            "pass a symmetric positive definite matrix, e.g. (A + A.T) / 2"
        )
    try:
        np.linalg.cholesky(a)
    except np.linalg.LinAlgError:
        eig = np.linalg.eigvalsh(a).min()
        raise InputError(
            f"{where}: the metric matrix is not positive definite (smallest eigenvalue {eig:.3g}); "
            "a metric must be symmetric positive definite"
        ) from None
    return a


def _check_positive_diagonal(d: np.ndarray, where: str) -> np.ndarray:
    if not np.all(np.isfinite(d)) or np.any(d <= 0):
        bad = d[~np.isfinite(d) | (d <= 0)].ravel()[:3].tolist()
        raise InputError(
            f"{where}: a diagonal metric needs finite entries > 0, got e.g. {bad} "
            "(a Hessian metric is infinite or zero where the potential is not strictly convex, "
            "e.g. negative entropy at w = 0)"
        )
    return d


@dataclass(frozen=True)
class UnitEllipse:
    r"""The unit ball :math:`\{v : v^T A v = 1\}` of a 2-D metric at one point.

    Attributes
    ----------
    center : tuple of float
        The base point.
    major, minor : float
        Semi-axis lengths :math:`1/\sqrt{\lambda_{min}}` and :math:`1/\sqrt{\lambda_{max}}`
        (λ: eigenvalues of A).
    angle_deg : float
        Angle of the major axis from the x1 axis, in degrees, in (−90, 90].
    """

    center: tuple[float, float]
    major: float
    minor: float
    angle_deg: float

    @property
    def eccentricity(self) -> float:
        return math.sqrt(1.0 - (self.minor / self.major) ** 2)

    def points(self, n_points: int = 100, scale: float = 1.0) -> np.ndarray:
        """Points ``center + scale·v`` on the ellipse, shape=[n_points, 2]."""
        t = np.linspace(0.0, 2 * np.pi, n_points)
        a = math.radians(self.angle_deg)
        rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
        local = np.stack([self.major * np.cos(t), self.minor * np.sin(t)], axis=-1)
        return np.asarray(self.center) + scale * local @ rot.T

    def to_dict(self) -> dict:
        return {
            "center": list(self.center),
            "major": self.major,
            "minor": self.minor,
            "angle_deg": self.angle_deg,
        }


class Metric:
    """A Riemannian metric on (an open subset of) R^dim in one coordinate chart.

    Subclasses implement exactly one primitive: :meth:`metric_matrix` or, when the metric is
    diagonal, :meth:`metric_diagonal`. Everything else is derived here (see the module docstring).

    Attributes
    ----------
    dim : int or None
        The dimension, or None when it is read from the base points.
    name : str
        A short label for tables and legends.
    """

    dim: int | None = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if (
            cls.metric_matrix is Metric.metric_matrix
            and cls.metric_diagonal is Metric.metric_diagonal
        ):
            raise TypeError(
                f"{cls.__name__} must implement metric_matrix(base_point) or, for a diagonal "
                "metric, metric_diagonal(base_point)"
            )

    @property
    def name(self) -> str:
        return type(self).__name__

    @property
    def is_diagonal(self) -> bool:
        """True when the subclass provides :meth:`metric_diagonal` (cheaper derived operations)."""
        return type(self).metric_diagonal is not Metric.metric_diagonal

    # -- primitives ---------------------------------------------------------------------------
    def metric_matrix(self, base_point) -> np.ndarray:
        """The metric A at ``base_point`` (shape=[..., dim]), shape=[..., dim, dim].

        The default builds a diagonal matrix from :meth:`metric_diagonal`.
        """
        d = self.metric_diagonal(base_point)
        return d[..., :, None] * np.eye(d.shape[-1])

    def metric_diagonal(self, base_point) -> np.ndarray:
        """The diagonal of A at ``base_point``, shape=[..., dim] (diagonal metrics only)."""
        raise NotImplementedError(f"{self.name} is not a diagonal metric; use metric_matrix")

    # -- validated access ------------------------------------------------------------------------
    def _base_point(self, base_point) -> np.ndarray:
        x = _as_points(base_point, "base_point")
        if self.dim is not None and x.shape[-1] != self.dim:
            raise InputError(
                f"{self.name} is a metric on R^{self.dim}; base_point has shape {x.shape} "
                f"(expected [..., {self.dim}])"
            )
        return x

    def _diagonal(self, x: np.ndarray) -> np.ndarray:
        d = np.asarray(self.metric_diagonal(x), dtype=np.float64)
        d = np.broadcast_to(d, x.shape)
        return _check_positive_diagonal(d, f"{self.name} at base_point")

    def _matrix(self, x: np.ndarray) -> np.ndarray:
        n = x.shape[-1]
        a = np.asarray(self.metric_matrix(x), dtype=np.float64)
        if a.shape[-2:] != (n, n):
            raise InputError(
                f"{self.name}: metric_matrix returned shape {a.shape} for base points of "
                f"dimension {n}; expected [..., {n}, {n}]"
            )
        a = np.broadcast_to(a, (*x.shape[:-1], n, n))
        return _check_spd_matrix(a, f"{self.name} at base_point")

    def _vector(self, v, x: np.ndarray, name: str) -> np.ndarray:
        v = _as_points(v, name)
        if v.shape[-1] != x.shape[-1]:
            raise InputError(
                f"{name} has {v.shape[-1]} components but base_point has {x.shape[-1]}; "
                "both must have shape [..., dim]"
            )
        return v

    # -- derived --------------------------------------------------------------------------------
    def cometric_matrix(self, base_point) -> np.ndarray:
        """The inverse metric A⁻¹ (the cometric), shape=[..., dim, dim]."""
        x = self._base_point(base_point)
        if self.is_diagonal:
            d = self._diagonal(x)
            return (1.0 / d)[..., :, None] * np.eye(x.shape[-1])
        return np.linalg.inv(self._matrix(x))

    def inner_product(self, tangent_vec_a, tangent_vec_b, base_point) -> np.ndarray:
        """⟨a, b⟩_A = aᵀ A(x) b, shape=[...]."""
        x = self._base_point(base_point)
        a = self._vector(tangent_vec_a, x, "tangent_vec_a")
        b = self._vector(tangent_vec_b, x, "tangent_vec_b")
        if self.is_diagonal:
            return np.sum(a * self._diagonal(x) * b, axis=-1)
        return np.einsum("...i,...ij,...j->...", a, self._matrix(x), b)

    def squared_norm(self, tangent_vec, base_point) -> np.ndarray:
        """‖v‖²_A = vᵀ A v, shape=[...]."""
        return self.inner_product(tangent_vec, tangent_vec, base_point)

    def norm(self, tangent_vec, base_point) -> np.ndarray:
        """‖v‖_A = √(vᵀ A v), shape=[...]."""
        return np.sqrt(self.squared_norm(tangent_vec, base_point))

    def metric_gradient(self, grad, base_point) -> np.ndarray:
        r"""The gradient in this metric, :math:`\nabla_A f = A^{-1}\partial f` (Eq. A.2).

        Parameters
        ----------
        grad : array-like, shape=[..., dim]
            Partial derivatives :math:`\partial f` at ``base_point`` (a covector).
        base_point : array-like, shape=[..., dim]

        Returns
        -------
        ndarray, shape=[..., dim]
            A tangent vector; the flow :math:`\dot x = -\nabla_A f` descends ``f``.

        Examples
        --------
        >>> Constant([[2.0, 0.0], [0.0, 4.0]]).metric_gradient([2.0, 2.0], [0.0, 0.0]).tolist()
        [1.0, 0.5]
        """
        x = self._base_point(base_point)
        g = self._vector(grad, x, "grad")
        if self.is_diagonal:
            return g / self._diagonal(x)
        a = self._matrix(x)
        shape = np.broadcast_shapes(a.shape[:-1], g.shape)
        a = np.broadcast_to(a, (*shape, shape[-1]))
        g = np.broadcast_to(g, shape)
        return np.linalg.solve(a, g[..., None])[..., 0]

    def steepest_descent_direction(self, grad, base_point) -> np.ndarray:
        r"""The unit-A-length direction of steepest descent, :math:`-A^{-1}\partial f / \|A^{-1}\partial f\|_A`.

        Among all ``u`` with :math:`u^T A u = 1` it minimises the directional derivative
        :math:`\partial f^T u`, whose minimum is :math:`-\sqrt{\partial f^T A^{-1}\partial f}`.
        Where ``grad`` is zero the direction is undefined and returned as zeros.

        Examples
        --------
        >>> Euclidean(2).steepest_descent_direction([3.0, 4.0], [0.0, 0.0]).tolist()
        [-0.6, -0.8]
        """
        x = self._base_point(base_point)
        g = self._vector(grad, x, "grad")
        v = self.metric_gradient(g, x)
        length = np.sqrt(np.maximum(np.sum(g * v, axis=-1), 0.0))[..., None]
        safe = np.where(length > 0, length, 1.0)
        return np.where(length > 0, -v / safe, 0.0)

    def unit_ball(self, base_point, n_points: int = 100, *, rng=None) -> np.ndarray:
        r"""Tangent vectors on the unit sphere :math:`\{v : v^T A v = 1\}` at ``base_point``.

        In 2-D these are ``n_points`` points of an ellipse, evenly spaced in angle before the
        map :math:`v = L^{-T}u` (:math:`A = LL^T`, ``u`` on the unit circle). For ``dim > 2``
        the ``u`` are random unit vectors drawn from ``rng`` (a seed or Generator; ``None``,
        the default, means fresh entropy as in NumPy: pass a seed for reproducible points).

        Returns
        -------
        ndarray, shape=[..., n_points, dim]
            Offsets from the base point (add ``base_point`` to draw them).
        """
        n_points = as_positive_int(n_points, "n_points")
        x = self._base_point(base_point)
        n = x.shape[-1]
        if n == 2:
            t = np.linspace(0.0, 2 * np.pi, n_points, endpoint=False)
            u = np.stack([np.cos(t), np.sin(t)], axis=-1)
        else:
            gen = as_generator(rng)
            u = gen.standard_normal((n_points, n))
            u /= np.linalg.norm(u, axis=-1, keepdims=True)
        if self.is_diagonal:
            return u / np.sqrt(self._diagonal(x))[..., None, :]
        chol = np.linalg.cholesky(self._matrix(x))
        lt = np.swapaxes(chol, -1, -2)[..., None, :, :]
        return np.linalg.solve(lt, u[..., None])[..., 0]

    def unit_ellipse(self, base_point) -> UnitEllipse:
        """Semi-axes and orientation of the unit ball at one 2-D ``base_point`` (shape=[2])."""
        x = self._base_point(base_point)
        if x.shape != (2,):
            raise InputError(f"unit_ellipse needs one 2-D base point of shape [2], got {x.shape}")
        eigval, eigvec = np.linalg.eigh(self._matrix(x))
        major_dir = eigvec[:, 0]
        angle = math.degrees(math.atan2(major_dir[1], major_dir[0]))
        if angle <= -90:
            angle += 180
        elif angle > 90:
            angle -= 180
        return UnitEllipse(
            center=(float(x[0]), float(x[1])),
            major=float(1 / math.sqrt(eigval[0])),
            minor=float(1 / math.sqrt(eigval[1])),
            angle_deg=float(angle),
        )

    def __repr__(self) -> str:
        return f"{self.name}()"


class Euclidean(Metric):
    """The identity metric on R^dim: the metric gradient is the vector of partial derivatives.

    Examples
    --------
    >>> Euclidean(2).metric_gradient([1.0, -2.0], [0.3, 0.4]).tolist()
    [1.0, -2.0]
    """

    def __init__(self, dim: int) -> None:
        self.dim = as_positive_int(dim, "Euclidean(dim)")

    def metric_diagonal(self, base_point) -> np.ndarray:
        x = np.asarray(base_point, dtype=np.float64)
        return np.ones((*x.shape[:-1], self.dim))

    def __repr__(self) -> str:
        return f"Euclidean(dim={self.dim})"


class Constant(Metric):
    r"""A constant SPD metric ``A`` (the same ruler everywhere).

    Parameters
    ----------
    matrix : array-like, shape=[dim, dim]
        Symmetric positive definite.

    Examples
    --------
    Conversion factors :math:`\eta_i` scale partial derivatives, :math:`\Delta x_i = -\eta_i\partial_i f`:
    the cometric is :math:`\mathrm{diag}(\eta)`, the metric :math:`\mathrm{diag}(1/\eta)`.

    >>> Constant.from_conversion_factors([1.0, 4.0]).matrix.tolist()
    [[1.0, 0.0], [0.0, 0.25]]
    """

    def __init__(self, matrix) -> None:
        a = np.array(matrix, dtype=np.float64)
        if a.ndim != 2:
            raise InputError(f"Constant needs one [dim, dim] matrix, got shape {a.shape}")
        _check_spd_matrix(a, "Constant")
        a.setflags(write=False)
        self.matrix = a
        self.dim = a.shape[0]

    @classmethod
    def from_conversion_factors(cls, factors: Sequence[float]) -> Constant:
        """The metric ``diag(1/η)`` whose flow is ``ẋ_i = −η_i ∂_i f`` (η_i > 0)."""
        eta = np.asarray(factors, dtype=np.float64)
        if eta.ndim != 1 or not np.all(np.isfinite(eta)) or np.any(eta <= 0):
            raise InputError(
                f"conversion factors must be a 1-D array of finite values > 0, got {factors!r}"
            )
        return cls(np.diag(1.0 / eta))

    def metric_matrix(self, base_point) -> np.ndarray:
        x = np.asarray(base_point, dtype=np.float64)
        return np.broadcast_to(self.matrix, x.shape[:-1] + self.matrix.shape)

    def __repr__(self) -> str:
        return f"Constant({self.matrix.tolist()})"


class PositionDependent(Metric):
    """A metric given by a callable ``fn(base_point) -> matrix``.

    Parameters
    ----------
    fn : callable
        Maps one point (shape=[dim]) to an SPD matrix (shape=[dim, dim]); with
        ``vectorized=True`` it maps shape=[..., dim] to shape=[..., dim, dim] itself.
    dim : int, optional
        The dimension (checked against the base points).
    name : str, optional
        A label for tables and legends.

    Examples
    --------
    >>> m = PositionDependent(lambda x: np.diag([1.0, 1.0 + x[0] ** 2]), dim=2)
    >>> m.metric_gradient([1.0, 2.0], [1.0, 0.0]).tolist()
    [1.0, 1.0]
    """

    def __init__(
        self,
        fn: Callable,
        *,
        dim: int | None = None,
        vectorized: bool = False,
        name: str | None = None,
    ) -> None:
        if not callable(fn):
            raise InputTypeError(
                f"PositionDependent needs a callable base_point -> matrix, got {type(fn).__name__}"
            )
        self.fn = fn
        self.dim = dim
        self.vectorized = bool(vectorized)
        self._name = name

    @property
    def name(self) -> str:
        return self._name or "PositionDependent"

    def metric_matrix(self, base_point) -> np.ndarray:
        x = np.asarray(base_point, dtype=np.float64)
        if self.vectorized:
            return np.asarray(self.fn(x), dtype=np.float64)
        n = x.shape[-1]
        out = np.empty((*x.shape[:-1], n, n))
        for idx in np.ndindex(x.shape[:-1]):
            out[idx] = self.fn(x[idx])
        return out

    def __repr__(self) -> str:
        return f"PositionDependent({self.name!r})" if self._name else "PositionDependent(fn)"


class Fisher(Metric):
    """The Fisher information metric of a statistical model: the natural-gradient ruler.

    Parameters
    ----------
    model : object
        Has ``fisher_information(theta)`` returning shape=[..., dim, dim] for theta of
        shape=[..., dim], e.g. :class:`syngeo.release.BinomialRelease`.

    Notes
    -----
    Under a change of coordinates ``θ' = S θ`` the Fisher matrix transforms as a tensor,
    ``I' = S⁻ᵀ I S⁻¹``, so the flow ``θ̇ = −I⁻¹∂f`` is one vector field in every unit system.

    Examples
    --------
    >>> from syngeo.release import BinomialRelease
    >>> Fisher(BinomialRelease(target_mean=0.5)).metric_matrix([0.5, 1.0]).round(3).tolist()
    [[4.0, 2.0], [2.0, 3.0]]
    """

    def __init__(self, model: Any) -> None:
        if not callable(getattr(model, "fisher_information", None)):
            raise InputTypeError(
                f"Fisher(model) needs a model with a fisher_information(theta) method, got "
                f"{type(model).__name__}"
            )
        self.model = model

    @property
    def name(self) -> str:
        return "Fisher"

    def metric_matrix(self, base_point) -> np.ndarray:
        return self.model.fisher_information(base_point)

    def __repr__(self) -> str:
        return f"Fisher({self.model!r})"


class Hessian(Metric):
    r"""The Hessian metric :math:`\nabla^2\phi(w)` of a local potential (diagonal).

    Its gradient flow :math:`\dot w = -(\nabla^2\phi(w))^{-1}\nabla L(w)` is the continuous-time
    limit of mirror descent :math:`\nabla\phi(w_{t+1}) = \nabla\phi(w_t) - \eta\nabla L(w_t)`
    at times :math:`t = k\eta` (docs/theory.md §1): every potential is a metric.

    Parameters
    ----------
    potential : Potential or str or float
        Anything :func:`syngeo.potentials.potential` accepts (``"ne"``, ``"3-norm"``, ``PNorm(3)``).

    Examples
    --------
    >>> Hessian("ne").metric_gradient([1.0, 1.0], [2.0, -0.5]).tolist()   # |w| ⊙ g
    [2.0, 0.5]
    """

    def __init__(self, potential_spec: PotentialLike) -> None:
        self.potential = potential(potential_spec)

    @property
    def name(self) -> str:
        return f"Hessian({self.potential.name})"

    def metric_diagonal(self, base_point) -> np.ndarray:
        # 1/|w| and |w|^(p-2) are inf at w = 0; the base class turns that into a clear error.
        with np.errstate(divide="ignore"):
            return np.asarray(self.potential.hessian_diag(np.asarray(base_point, dtype=np.float64)))

    def __repr__(self) -> str:
        return f"Hessian({self.potential!r})"


# ------------------------------------------------------------------------------------------------
# flows
# ------------------------------------------------------------------------------------------------


def coordinate_grid(*axes: Sequence[float]) -> np.ndarray:
    """Grid of base points from 1-D coordinate axes, shape=[len(axes[1]), len(axes[0]), ..., dim].

    Uses ``indexing="xy"`` (like matplotlib's ``streamplot``/``quiver``): for 2-D, row ``i`` has
    ``x2 = axes[1][i]``.

    Examples
    --------
    >>> coordinate_grid([0.0, 1.0, 2.0], [5.0, 6.0]).shape
    (2, 3, 2)
    """
    if not axes:
        raise InputError("coordinate_grid needs at least one axis")
    arrays = [np.asarray(a, dtype=np.float64) for a in axes]
    if any(a.ndim != 1 or a.size == 0 for a in arrays):
        raise InputError("every axis must be a non-empty 1-D array of coordinates")
    return np.stack(np.meshgrid(*arrays, indexing="xy"), axis=-1)


def autograd_gradient(cost: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[Any], np.ndarray]:
    """Turn a scalar cost written in torch into a ``cost_grad`` for :func:`flow_field`.

    ``cost`` maps one point (a float64 tensor of shape [dim]) to a scalar tensor; the returned
    function maps points of shape=[..., dim] to partial derivatives of shape=[..., dim]
    (``torch.func.vmap`` of ``torch.func.grad``).

    Examples
    --------
    >>> grad = autograd_gradient(lambda x: 10 * x[0] * x[1])
    >>> grad([[1.0, 2.0]]).tolist()
    [[20.0, 10.0]]
    """
    if not callable(cost):
        raise InputTypeError(f"cost must be callable, got {type(cost).__name__}")
    grad_fn = torch.func.grad(cost)

    def cost_grad(base_point) -> np.ndarray:
        x = torch.as_tensor(np.asarray(base_point, dtype=np.float64))
        flat = x.reshape(-1, x.shape[-1])
        return torch.func.vmap(grad_fn)(flat).reshape(x.shape).detach().numpy()

    return cost_grad


@dataclass(frozen=True, eq=False)
class FlowField:
    r"""The descent vector field :math:`v(x) = -A(x)^{-1}\partial f(x)` sampled on a grid.

    Attributes
    ----------
    base_points : ndarray, shape=[..., dim]
        Where the field was evaluated (e.g. from :func:`coordinate_grid`).
    vectors : ndarray, shape=[..., dim]
        The velocity :math:`\dot x` at each point, in coordinate units per unit time.
    speeds : ndarray, shape=[...]
        The metric length :math:`\|v\|_A = \sqrt{\partial f^T A^{-1}\partial f}`; its square is
        the rate of decrease :math:`-\dot f`, a number that does not depend on the coordinates.
    metric : str
        The metric's name.
    """

    base_points: np.ndarray
    vectors: np.ndarray
    speeds: np.ndarray
    metric: str

    @property
    def cost_decrease_rates(self) -> np.ndarray:
        """−df/dt = ‖v‖²_A at every grid point."""
        return self.speeds**2

    @property
    def unit_vectors(self) -> np.ndarray:
        """Vectors scaled to unit coordinate (Euclidean) length, for normalised quivers."""
        length = np.linalg.norm(self.vectors, axis=-1, keepdims=True)
        return np.where(length > 0, self.vectors / np.where(length > 0, length, 1.0), 0.0)

    def pushforward(self, change) -> FlowField:
        """The same field in other coordinates: points ``S x``, vectors ``S v`` (``change``:
        a :class:`syngeo.units.UnitChange`); speeds are coordinate-free and kept."""
        return FlowField(
            base_points=change.forward(self.base_points),
            vectors=change.pushforward(self.vectors),
            speeds=self.speeds,
            metric=self.metric,
        )

    def to_frame(self, names: Sequence[str] | None = None) -> pd.DataFrame:
        """One row per grid point: coordinates ``x1…``, velocity ``v_x1…`` and ``speed``."""
        dim = self.base_points.shape[-1]
        names = list(names) if names is not None else [f"x{i + 1}" for i in range(dim)]
        if len(names) != dim:
            raise InputError(f"need {dim} coordinate names, got {len(names)}")
        pts = self.base_points.reshape(-1, dim)
        vec = self.vectors.reshape(-1, dim)
        data = {name: pts[:, i] for i, name in enumerate(names)}
        data.update({f"v_{name}": vec[:, i] for i, name in enumerate(names)})
        data["speed"] = self.speeds.reshape(-1)
        return pd.DataFrame(data)

    def to_dict(self) -> dict:
        return {
            "metric": self.metric,
            "base_points": self.base_points.tolist(),
            "vectors": self.vectors.tolist(),
            "speeds": self.speeds.tolist(),
        }

    def __repr__(self) -> str:
        return (
            f"FlowField(metric={self.metric!r}, grid={self.base_points.shape[:-1]}, "
            f"dim={self.base_points.shape[-1]}, speed range=[{np.min(self.speeds):.3g}, "
            f"{np.max(self.speeds):.3g}])"
        )


def flow_field(cost_grad: Callable[[np.ndarray], Any], metric: Metric, grid) -> FlowField:
    r"""Evaluate the steepest-descent flow :math:`v = -A^{-1}\partial f` on a grid of points.

    Parameters
    ----------
    cost_grad : callable
        Partial derivatives of the cost: maps points of shape=[..., dim] to shape=[..., dim]
        (vectorised). For a cost written in torch, pass ``autograd_gradient(cost)``.
    metric : Metric
    grid : array-like, shape=[..., dim]
        The base points, e.g. ``coordinate_grid(x1_values, x2_values)``.

    Returns
    -------
    FlowField

    Examples
    --------
    >>> field = flow_field(lambda x: 2 * x, Euclidean(2), coordinate_grid([1.0], [2.0]))
    >>> field.vectors.tolist(), field.speeds.round(6).tolist()
    ([[[-2.0, -4.0]]], [[4.472136]])
    """
    if not isinstance(metric, Metric):
        raise InputTypeError(f"metric must be a syngeo.metrics.Metric, got {type(metric).__name__}")
    points = metric._base_point(grid)
    grad = np.asarray(cost_grad(points), dtype=np.float64)
    if grad.shape != points.shape:
        raise InputError(
            f"cost_grad returned shape {grad.shape} for points of shape {points.shape}; it must "
            "return the partial derivatives at every point, with the same shape"
        )
    velocity = -metric.metric_gradient(grad, points)
    speeds = np.sqrt(np.maximum(-np.sum(grad * velocity, axis=-1), 0.0))
    return FlowField(base_points=points, vectors=velocity, speeds=speeds, metric=metric.name)


@dataclass(frozen=True, eq=False)
class FlowTrajectory:
    r"""A solution of :math:`\dot x = -A(x)^{-1}\partial f(x)` (from :func:`integrate_flow`).

    Attributes
    ----------
    times : ndarray, shape=[n_times]
    points : ndarray, shape=[n_times, dim]
    metric : str
    success : bool
        Whether ``solve_ivp`` reached the end of ``t_span``.
    message : str
        ``solve_ivp``'s status message.
    n_evaluations : int
        Number of right-hand-side evaluations.
    """

    times: np.ndarray
    points: np.ndarray
    metric: str
    success: bool
    message: str
    n_evaluations: int

    @property
    def final_point(self) -> np.ndarray:
        return self.points[-1]

    def to_frame(self) -> pd.DataFrame:
        data = {"t": self.times}
        data.update({f"x{i + 1}": self.points[:, i] for i in range(self.points.shape[1])})
        return pd.DataFrame(data)

    def to_dict(self) -> dict:
        return {
            "metric": self.metric,
            "times": self.times.tolist(),
            "points": self.points.tolist(),
            "success": self.success,
            "message": self.message,
            "n_evaluations": self.n_evaluations,
        }

    def __repr__(self) -> str:
        return (
            f"FlowTrajectory(metric={self.metric!r}, t=[{self.times[0]:g}, {self.times[-1]:g}], "
            f"n_times={len(self.times)}, final_point={np.round(self.final_point, 6).tolist()}, "
            f"success={self.success})"
        )


def integrate_flow(
    cost_grad: Callable[[np.ndarray], Any],
    metric: Metric,
    x0,
    t_span: tuple[float, float],
    **solve_ivp_kwargs: Any,
) -> FlowTrajectory:
    r"""Integrate the Riemannian gradient flow :math:`\dot x = -A(x)^{-1}\partial f(x)` from ``x0``.

    Uses :func:`scipy.integrate.solve_ivp` (defaults here: ``method="DOP853"``, ``rtol=1e-9``,
    ``atol=1e-12``; any keyword overrides them, e.g. ``t_eval``, ``events``, ``max_step``).

    Parameters
    ----------
    cost_grad : callable
        Partial derivatives, points of shape=[dim] → shape=[dim].
    metric : Metric
    x0 : array-like, shape=[dim]
    t_span : (float, float)

    Returns
    -------
    FlowTrajectory

    Examples
    --------
    A quadratic under the Euclidean metric decays exponentially, x(t) = x0·e^{−t}:

    >>> traj = integrate_flow(lambda x: x, Euclidean(1), [1.0], (0.0, 1.0), t_eval=[1.0])
    >>> round(float(traj.final_point[0]), 9) == round(math.exp(-1), 9)
    True
    """
    if not isinstance(metric, Metric):
        raise InputTypeError(f"metric must be a syngeo.metrics.Metric, got {type(metric).__name__}")
    x0 = metric._base_point(x0)
    if x0.ndim != 1:
        raise InputError(f"x0 must be one point of shape [dim], got shape {x0.shape}")
    if len(t_span) != 2 or not all(math.isfinite(float(t)) for t in t_span):
        raise InputError(f"t_span must be (t0, t1) with finite times, got {t_span!r}")

    def rhs(_t: float, x: np.ndarray) -> np.ndarray:
        g = np.asarray(cost_grad(x), dtype=np.float64)
        return -metric.metric_gradient(g, x)

    options = {"method": "DOP853", "rtol": 1e-9, "atol": 1e-12}
    options.update(solve_ivp_kwargs)
    sol = scipy.integrate.solve_ivp(rhs, (float(t_span[0]), float(t_span[1])), x0, **options)
    return FlowTrajectory(
        times=sol.t,
        points=sol.y.T,
        metric=metric.name,
        success=bool(sol.success),
        message=str(sol.message),
        n_evaluations=int(sol.nfev),
    )
