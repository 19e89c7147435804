r"""Exact and linearised implicit-bias solutions of mirror descent (docs/theory.md §2).

Mirror descent on an interpolating least-squares problem converges to the **Bregman projection**
of the initial weights onto the solution set ("Eq. 8"),

.. math:: w_\infty = \arg\min_{w:\,Xw = y} D_\phi(w, w_0),

with :math:`X \in \mathbb R^{N\times D}`, :math:`y \in \mathbb R^N`, :math:`w_0 \in \mathbb R^D`.

Conventions (used by every function here)
-----------------------------------------
* **Multipliers.** Stationarity of :math:`D_\phi(w, w_0) + \lambda^\top(Xw - y)` gives
  :math:`\nabla\phi(w) = \nabla\phi(w_0) - X^\top\lambda`, i.e.
  :math:`w(\lambda) = (\nabla\phi)^{-1}(u_0 - X^\top\lambda)`, :math:`u_0 = \nabla\phi(w_0)`.
* **Dual change.** :math:`\Delta = \nabla\phi(w) - \nabla\phi(w_0) = -X^\top\lambda` (docs/theory.md §2).
* **Signs under a sign-preserving potential** (``potential.preserves_sign``: negative entropy).
  :math:`(\nabla\phi)^{-1}` is taken with the signs of :math:`w_0`; weights with
  :math:`w_{0,i} = 0` stay exactly 0 (their columns of ``X`` drop out). Nothing here depends on
  the potential's class: the solver calls the :class:`~syngeo.Potential` protocol only
  (``grad``, ``grad_inverse``, ``hessian_diag``, ``conjugate``, ``preserves_sign``), so a
  user's own potential works too.

Newton's method on the dual
---------------------------
Minimising the Lagrangian over ``w`` gives the concave dual function

.. math:: g(\lambda) = -\phi^*(u_0 - X^\top\lambda) - \lambda^\top y \;(+\,\phi^*(u_0)),

where :math:`\phi^*` is the convex conjugate (:math:`\nabla\phi^* = (\nabla\phi)^{-1}`). Its
gradient is the constraint residual and its Hessian is minus the Newton matrix:

.. math::
   \nabla g(\lambda) = X w(\lambda) - y = r(\lambda), \qquad
   -\nabla^2 g(\lambda) = G(\lambda) = X\,\mathrm{diag}(h)\,X^\top,\quad
   h = \frac{d(\nabla\phi)^{-1}}{du} = \frac{1}{\phi''(w(\lambda))}.

The Newton step is :math:`\lambda \leftarrow \lambda + t\,\delta` with :math:`G\delta = r`; every
direction with :math:`r^\top\delta > 0` is an ascent direction of :math:`g`.

Line search (the merit function is the dual :math:`g`). Along the ray, with :math:`d_u = X^\top\delta`
computed once, :math:`u(t) = u - t\,d_u` and

.. math:: s(t) = \frac{d}{dt} g(\lambda + t\delta) = w(u(t))^\top d_u - y^\top\delta,
   \qquad s'(t) = -\textstyle\sum_i h_i\, d_{u,i}^2 \le 0,\qquad s(0) = r^\top\delta > 0,

each cost :math:`O(D)`. So the line search maximises the concave :math:`g` along the ray almost
exactly: the Newton step :math:`t = 1` is kept when :math:`|s(1)| \le \tfrac14 s(0)` (which keeps
Newton's quadratic convergence near the solution); otherwise the maximiser is bracketed (doubling
:math:`t` while :math:`s > 0`, which also fixes too-short steps) and found by safeguarded regula
falsi to the same tolerance, with :math:`g(\lambda + t\delta) \ge g(\lambda)` required (the
expansion multiplies :math:`t` by 2, 4, 8, … up to :math:`10^4` per trial, because when
:math:`h(w_0)` is huge, e.g. p > 2 with tiny weights and a large change, the linearised step can be
too short by many orders of magnitude). A step length of :math:`10^{200}` with :math:`s > 0` means
:math:`g` is unbounded: no solution. This
matters for p > 2, where :math:`(\nabla\phi)^{-1}` has an infinite slope at 0 and Newton steps
of weights that cross zero overshoot by about 2x (with plain Armijo backtracking instead, a
3-norm problem with D = 2000, N = 299 took 41 Newton iterations instead of 20).

Conjugates come from the potential (:meth:`~syngeo.Potential.conjugate`, with the signs of
:math:`w_0`): :math:`\phi^*(u) = \sum |u_i|^q / q`, :math:`q = p/(p-1)` for the p-norm,
:math:`\phi^*(u) = \sum_i \exp(s_i u_i - 1) = \sum_i |w_i(u)|` for negative entropy (sign
:math:`s_i` fixed), and by default the Fenchel identity :math:`\phi^*(u) = \langle u, w\rangle -
\phi(w)` at :math:`w = (\nabla\phi)^{-1}(u)`. Close to the solution :math:`s(0)` drops below its rounding
error; there the full Newton step is taken if it lowers :math:`\|r\|`, else the iteration stops.
``line_search=False`` always takes :math:`t = 1`.

Cost. Forming :math:`G` costs :math:`N^2 D` and dominates (on CPU it is computed as
:math:`AA^\top`, :math:`A = X\,\mathrm{diag}(\sqrt h)`, by NumPy's symmetric rank-k BLAS call).
The first step, from :math:`\lambda = 0`, uses the exact :math:`G(0) = X H^{-1} X^\top` and is
precisely the linearised solution of Eq. 14–15 (:func:`linearized_change`). Later steps solve
:math:`G(\lambda)\delta = r` by conjugate gradients (each iteration :math:`2ND`; relative
tolerance :math:`\min(0.1, 0.9 (\|r_k\| / \|r_{k-1}\|)^2)`, the Eisenstat–Walker forcing term,
which is loose while the Newton model predicts poorly and tight in the quadratic phase)
preconditioned with the Cholesky factor of
:math:`X\,\mathrm{diag}(h_{ref})\,X^\top`, where :math:`h_{ref}` lags behind :math:`h`: before each
step the coordinates whose slope changed by more than 30 % are refreshed (a rank-:math:`|S|`
correction, :math:`N^2|S|`, and a new Cholesky factor, :math:`N^3/3`; when more than half
changed, CG is tried first), and if CG still needs more than 25 iterations those that changed by more than 5 %
(all of :math:`G` when that is more than half), then all of :math:`G`. For p = 2 the
solve is a single factorisation (the closed form); for NE and p-norms in the paper's regime the
cost is a few times that (see ``benchmarks/bench_solvers.py``).

Ill-conditioning. A singular :math:`G` (rank-deficient ``X``, or many :math:`h_i = 0`) is
regularised by a ridge :math:`\mu I`, :math:`\mu = 10^{-14}\max_i G_{ii}` times powers of 10 until
the Cholesky factorisation succeeds; infinite slopes (:math:`p > 2` at an exact zero) are capped at
:math:`10^{12}` times the largest finite slope. Both only change the search direction, never the
solution, which is certified by the residual.

Errors. Inconsistent constraints (``y`` outside the range of ``X``, e.g. rank-deficient ``X``)
raise :class:`~syngeo.errors.InputError` (a ``ValueError``) with the least-squares residual
(checked by an SVD of ``X`` only when the Newton matrix is singular or the iteration fails);
failure to reach ``tol`` on a consistent system raises :class:`ConvergenceError` (a ``RuntimeError``) with the final residual. Under
negative entropy the signs are fixed, so a consistent ``Xw = y`` may still have no solution with
the signs of ``w0``; that surfaces as a :class:`ConvergenceError` whose message says so.

Tolerance. ``tol`` bounds :math:`\|Xw - y\| / \|y\|`. When the change is tiny next to ``y``
(lazy problems with :math:`\|y - Xw_0\| \ll \|y\|`), tighten it: the relative accuracy of the
change is about ``tol · ‖y‖ / ‖y − X w0‖``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from syngeo.errors import ConvergenceError, DomainError, InputError, InputTypeError
from syngeo.potentials import Potential, PotentialLike
from syngeo.potentials import potential as as_potential
from syngeo.validation import as_positive_int, as_probability

__all__ = [
    "BregmanProjection",
    "ConvergenceError",
    "LinearizedChange",
    "bregman_projection",
    "linearized_change",
]

_MIN_STEP = 2.0**-40
_MAX_STEP = 1e200
_CURVATURE_ETA = 0.25
_CG_MAX_ITER = 25
_REFRESH_REL = 0.3
_REFRESH_REL_STRICT = 0.05
_SLOPE_CAP = 1e12


def _to_numpy(x: torch.Tensor | None) -> np.ndarray | None:
    return None if x is None else x.detach().cpu().numpy()


@dataclass(frozen=True, repr=False)
class BregmanProjection:
    r"""Exact solution of :math:`\min_{Xw=y} D_\phi(w, w_0)` (see :func:`bregman_projection`).

    Arrays are of the kind given (``numpy.ndarray`` or ``torch.Tensor`` on the input's device),
    float64.

    Attributes
    ----------
    weights : array, shape (D,)
        :math:`w = (\nabla\phi)^{-1}(\nabla\phi(w_0) - X^\top\lambda)`.
    multipliers : array, shape (N,)
        Lagrange multipliers :math:`\lambda`.
    dual_change : array, shape (D,)
        :math:`\Delta = \nabla\phi(w) - \nabla\phi(w_0) = -X^\top\lambda` (0 for the weights
        that are exactly 0 under negative entropy: they do not take part).
    n_iter : int
        Newton iterations.
    constraint_residual : float
        :math:`\|Xw - y\| / \|y\|` (absolute :math:`\|Xw - y\|` when :math:`y = 0`).
    converged : bool
        ``constraint_residual <= tol``.
    potential : Potential
        The potential :math:`\phi`.
    n_factorizations : int
        Newton matrices :math:`X\,\mathrm{diag}(h)\,X^\top` formed in full (each
        :math:`N^2 D`).
    n_updates : int
        Partial refreshes of the Newton matrix (coordinates whose slope changed by > 5 %,
        each :math:`N^2 |S|`).
    n_cg : int
        Preconditioned conjugate-gradient iterations (each :math:`2ND`).
    """

    weights: Any
    multipliers: Any
    dual_change: Any
    n_iter: int
    constraint_residual: float
    converged: bool
    potential: Potential
    n_factorizations: int
    n_updates: int
    n_cg: int

    def to_dict(self) -> dict[str, Any]:
        """Fields as plain Python / NumPy values (arrays as NumPy, the potential by name)."""
        as_np = _to_numpy if isinstance(self.weights, torch.Tensor) else (lambda a: a)
        return {
            "weights": as_np(self.weights),
            "multipliers": as_np(self.multipliers),
            "dual_change": as_np(self.dual_change),
            "n_iter": self.n_iter,
            "constraint_residual": self.constraint_residual,
            "converged": self.converged,
            "potential": self.potential.name,
            "n_factorizations": self.n_factorizations,
            "n_updates": self.n_updates,
            "n_cg": self.n_cg,
        }

    def __repr__(self) -> str:
        n = self.multipliers.shape[0]
        d = self.weights.shape[0]
        return (
            f"BregmanProjection(potential={self.potential!r}, N={n}, D={d}, "
            f"n_iter={self.n_iter}, constraint_residual={self.constraint_residual:.3g}, "
            f"converged={self.converged}, n_factorizations={self.n_factorizations}, "
            f"n_updates={self.n_updates}, n_cg={self.n_cg})"
        )


@dataclass(frozen=True, repr=False)
class LinearizedChange:
    r"""Linearised implicit-bias solution (paper Eq. 14–15, docs/theory.md §2); see :func:`linearized_change`.

    Attributes
    ----------
    dual_change : array, shape (D,)
        :math:`\Delta \approx X^\top (X H^{-1} X^\top)^{-1} (y - X w_0)`.
    weights : array, shape (D,)
        :math:`w_0 + H^{-1}\Delta`, the first-order prediction of the final weights.
    multipliers : array, shape (N,)
        :math:`\lambda = (X H^{-1} X^\top)^{-1}(X w_0 - y)`, so that :math:`\Delta = -X^\top\lambda`.
    potential : Potential
        The potential :math:`\phi`.
    """

    dual_change: Any
    weights: Any
    multipliers: Any
    potential: Potential

    def to_dict(self) -> dict[str, Any]:
        """Fields as NumPy arrays, the potential by name."""
        as_np = _to_numpy if isinstance(self.weights, torch.Tensor) else (lambda a: a)
        return {
            "dual_change": as_np(self.dual_change),
            "weights": as_np(self.weights),
            "multipliers": as_np(self.multipliers),
            "potential": self.potential.name,
        }

    def __repr__(self) -> str:
        return (
            f"LinearizedChange(potential={self.potential!r}, N={self.multipliers.shape[0]}, "
            f"D={self.weights.shape[0]})"
        )


# -- input handling ------------------------------------------------------------------------------


def _as_float64(x: Any, name: str, device: torch.device | None) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        if x.is_complex():
            raise InputTypeError(f"{name} must be real, got a complex tensor")
        t = x.detach().to(dtype=torch.float64)
        if device is not None and t.device != device:
            raise InputError(
                f"{name} is on {t.device} but the other inputs are on {device}; "
                "move all tensors to one device"
            )
        return t
    try:
        a = np.asarray(x)
    except Exception as exc:  # pragma: no cover - numpy accepts almost anything
        raise InputTypeError(f"{name} must be an array or tensor, got {type(x).__name__}") from exc
    if a.dtype == object or not (
        np.issubdtype(a.dtype, np.floating)
        or np.issubdtype(a.dtype, np.integer)
        or np.issubdtype(a.dtype, np.bool_)
    ):
        raise InputTypeError(f"{name} must be a real numeric array, got dtype {a.dtype}")
    t = torch.from_numpy(np.ascontiguousarray(a, dtype=np.float64))
    return t if device is None else t.to(device)


def _prepare(
    X: Any, y: Any, w0: Any, potential: PotentialLike
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, Potential, bool]:
    """Validate; return float64 tensors on one device, the potential, and whether input was torch."""
    is_torch = any(isinstance(a, torch.Tensor) for a in (X, y, w0))
    device = next((a.device for a in (X, y, w0) if isinstance(a, torch.Tensor)), None)
    Xt = _as_float64(X, "X", device)
    yt = _as_float64(y, "y", device)
    wt = _as_float64(w0, "w0", device)
    if Xt.ndim != 2:
        raise InputError(f"X must be a 2-D (N, D) matrix, got shape {tuple(Xt.shape)}")
    n, d = Xt.shape
    if n == 0 or d == 0:
        raise InputError(f"X must be non-empty, got shape {tuple(Xt.shape)}")
    if yt.shape != (n,):
        raise InputError(
            f"y must have shape (N,) = ({n},) to match X of shape {tuple(Xt.shape)}, "
            f"got {tuple(yt.shape)}; flatten it or check the data"
        )
    if wt.shape != (d,):
        raise InputError(
            f"w0 must have shape (D,) = ({d},) to match X of shape {tuple(Xt.shape)}, "
            f"got {tuple(wt.shape)}"
        )
    for name, t in (("X", Xt), ("y", yt), ("w0", wt)):
        if math.isfinite(float(t.sum())):  # one pass, no mask; NaN/inf make the sum non-finite
            continue
        bad = int((~torch.isfinite(t)).sum())
        if bad:
            raise InputError(
                f"{name} has {bad} non-finite entries (NaN or inf); remove or impute them"
            )
    pot = as_potential(potential)
    return Xt, yt, wt, pot, is_torch


def _check_options(tol: Any, max_iter: Any) -> tuple[float, int]:
    return as_probability(tol, "tol"), as_positive_int(max_iter, "max_iter")


# -- potential-specific pieces -------------------------------------------------------------------


def _inverse_slope(pot: Potential, w: torch.Tensor) -> torch.Tensor:
    """h = d(∇φ)⁻¹/du = 1/φ''(w), with 1/inf = 0 and infinite slopes capped (see module)."""
    h = 1.0 / pot.hessian_diag(w)
    h = torch.nan_to_num(h, nan=0.0, posinf=math.inf)
    infinite = torch.isinf(h)
    if bool(infinite.any()):
        finite = h[~infinite]
        top = float(finite.max()) if finite.numel() else 1.0
        h = torch.where(infinite, torch.full_like(h, _SLOPE_CAP * max(top, 1e-300)), h)
    return h


# -- linear algebra ------------------------------------------------------------------------------


def _weighted_gram(X: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """X diag(weights) Xᵀ for weights ≥ 0, as A Aᵀ with A = X·√weights.

    On CPU the product goes through NumPy, whose ``A @ A.T`` calls the BLAS symmetric rank-k
    update (half the flops of a general product, about 1.5x faster than torch's float64 matmul
    here); on other devices torch's matmul is used.
    """
    scaled = X if bool((weights == 1).all()) else X * weights.sqrt()
    if scaled.device.type == "cpu":
        a = scaled.numpy()
        return torch.from_numpy(a @ a.T)
    return scaled @ scaled.T


class _NewtonMatrix:
    """The factorised matrix P = X diag(h_ref) Xᵀ (+ ridge), refreshed coordinate by coordinate.

    ``h_ref`` lags behind the current slopes ``h``: :meth:`update` moves only the coordinates
    whose slope changed by more than a factor ``1 + rel`` either way (a rank-|S| correction
    costing N²|S|, plus a new Cholesky factor, N³/3), and recomputes everything when more than
    half changed.
    """

    def __init__(self, X: torch.Tensor, h: torch.Tensor) -> None:
        self.X = X
        self.n_full = 0
        self.n_partial = 0
        self.ridge = 0.0
        self.full(h)

    def full(self, h: torch.Tensor) -> None:
        self.h_ref = h.clone()
        self.gram = _weighted_gram(self.X, h)
        self.n_full += 1
        self._factor()

    def update(self, h: torch.Tensor, rel: float, *, allow_full: bool = True) -> None:
        ratio = h / self.h_ref
        factor = 1.0 + rel
        changed = ~((ratio <= factor) & (ratio >= 1.0 / factor))  # also catches 0/0 and x/0
        k = int(changed.sum())
        if k == 0:
            return
        if 2 * k > h.numel():
            if allow_full:
                self.full(h)
            return
        cols = self.X[:, changed]
        dh = h[changed] - self.h_ref[changed]
        up, down = dh > 0, dh < 0
        if bool(up.any()):
            self.gram += _weighted_gram(cols[:, up], dh[up])
        if bool(down.any()):
            self.gram -= _weighted_gram(cols[:, down], -dh[down])
        self.h_ref[changed] = h[changed]
        self.n_partial += 1
        self._factor()

    def _factor(self) -> None:
        # the Gram is symmetric by construction and only its lower triangle is read
        gram = self.gram
        scale = float(gram.diagonal().abs().max()) if gram.numel() else 1.0
        scale = scale if scale > 0 and math.isfinite(scale) else 1.0
        ridge = 0.0
        for k in range(16):
            chol, info = torch.linalg.cholesky_ex(gram)
            if int(info) == 0 and bool(torch.isfinite(chol.diagonal()).all()):
                self.ridge = ridge
                self.chol = chol
                return
            if k == 0:
                gram = gram.clone()  # keep self.gram free of the ridge
            new_ridge = 1e-14 * scale * 10.0**k
            gram.diagonal().add_(new_ridge - ridge)
            ridge = new_ridge
        raise ConvergenceError(
            "the Newton matrix X diag(h) X^T could not be factorised even with a ridge of "
            f"{ridge:.3g}; X or the weights are badly scaled (rescale the data)",
            residual=math.nan,
            n_iter=0,
        )

    def solve(self, b: torch.Tensor) -> torch.Tensor:
        # two triangular solves: torch.cholesky_solve is much slower on CPU for one vector
        z = torch.linalg.solve_triangular(self.chol, b.unsqueeze(1), upper=False)
        return torch.linalg.solve_triangular(self.chol.mT, z, upper=True).squeeze(1)


def _pcg(
    X: torch.Tensor,
    h: torch.Tensor,
    b: torch.Tensor,
    precond: _NewtonMatrix,
    rtol: float,
    max_iter: int,
) -> tuple[torch.Tensor, int, bool]:
    """Solve X diag(h) Xᵀ x = b by CG preconditioned with ``precond``; x0 = 0.

    Every iterate x_k satisfies bᵀx_k > 0 (CG from 0 minimises ½xᵀAx − bᵀx on a growing
    subspace), so even an early stop is an ascent direction for the dual.
    """
    x = torch.zeros_like(b)
    r = b.clone()
    z = precond.solve(r)
    p = z.clone()
    rz = r @ z
    b_norm = float(b.norm())
    for k in range(1, max_iter + 1):
        ap = X @ (h * (X.T @ p))
        alpha = rz / (p @ ap)
        x = x + alpha * p
        r = r - alpha * ap
        if float(r.norm()) <= rtol * b_norm:
            return x, k, True
        z = precond.solve(r)
        rz_new = r @ z
        p = z + (rz_new / rz) * p
        rz = rz_new
    return x, max_iter, False


def _least_squares_residual(X: torch.Tensor, y: torch.Tensor) -> float:
    """‖y − P y‖ / ‖y‖ with P the orthogonal projector onto range(X) (numerical rank by SVD)."""
    u, s, _ = torch.linalg.svd(X, full_matrices=False)
    if s.numel() == 0 or float(s[0]) == 0.0:
        return 1.0
    rank_tol = max(X.shape) * torch.finfo(X.dtype).eps * float(s[0])
    basis = u[:, s > rank_tol]
    resid = y - basis @ (basis.T @ y)
    return float(resid.norm()) / max(float(y.norm()), 1e-300)


def _infeasibility_error(
    X: torch.Tensor, y: torch.Tensor, w0: torch.Tensor, pot: Potential, tol: float
) -> InputError | None:
    active = X[:, w0 != 0] if pot.preserves_sign else X
    if active.shape[1] == 0:
        return DomainError(
            f"no solution: every weight in w0 is 0, and under {pot.name} (sign-preserving) zero "
            "weights never move, so Xw = y cannot hold for y != 0; use non-zero initial weights "
            "or a p-norm"
        )
    lsq = _least_squares_residual(active, y)
    if lsq > max(100.0 * tol, 1e-8):
        extra = (
            f" (only the columns with w0 != 0 count: {pot.name} keeps zero weights at zero)"
            if pot.preserves_sign
            else ""
        )
        return InputError(
            f"no solution: y is not in the range of X{extra}; the best least-squares fit leaves a "
            f"relative residual of {lsq:.3g}. X has rank below N or inconsistent rows: remove "
            "duplicated/dependent rows or make y consistent"
        )
    return None


def _line_search(
    pot: Potential,
    X: torch.Tensor,
    y: torch.Tensor,
    u: torch.Tensor,
    w: torch.Tensor,
    lam: torch.Tensor,
    g: float,
    r: torch.Tensor,
    delta: torch.Tensor,
    signs: torch.Tensor,
    enabled: bool,
) -> tuple[float, torch.Tensor, torch.Tensor, torch.Tensor, float] | None:
    """Step length along the ascent direction ``delta`` (module docstring, "Line search").

    With ``du = Xᵀδ`` precomputed, ``u(t) = u − t du`` and the dual's directional derivative
    ``s(t) = d g(λ + tδ)/dt = w(u(t))ᵀ du − yᵀδ`` cost O(D) each; ``s`` decreases in ``t``
    (``s'(t) = −Σ h_i du_i² ≤ 0``) and ``s(0) = rᵀδ > 0``. Returns ``(t, u, w, r, g)`` at the
    accepted step, or None when no acceptable step exists (stalled).
    """
    du = X.T @ delta
    y_delta = float(y @ delta)
    lam_y = float(lam @ y)
    s0 = float(r @ delta)
    if not s0 > 0:
        return None

    def at(t: float) -> tuple[torch.Tensor, torch.Tensor, float, float]:
        u_t = u - t * du
        w_t = pot.grad_inverse(u_t, sign=signs)
        g_t = float(-pot.conjugate(u_t, sign=signs)) - lam_y - t * y_delta
        s_t = float(w_t @ du) - y_delta
        if not (math.isfinite(g_t) and math.isfinite(s_t)):
            return u_t, w_t, -math.inf, -math.inf
        return u_t, w_t, g_t, s_t

    def finish(t: float, u_t: torch.Tensor, w_t: torch.Tensor, g_t: float):
        r_t = X @ w_t - y
        if not bool(torch.isfinite(r_t).all()):
            return None
        return t, u_t, w_t, r_t, g_t

    u1, w1, g1, s1 = at(1.0)
    if not enabled:
        return finish(1.0, u1, w1, g1) if math.isfinite(g1) else None
    eps = torch.finfo(torch.float64).eps
    # rounding level of s(0) = wᵀdu − yᵀδ at the current point
    s_noise = 1e2 * eps * (float((w.abs() * du.abs()).sum()) + abs(y_delta))
    g_noise = 1e2 * eps * (abs(g) + abs(lam_y) + abs(y_delta))
    if s0 <= s_noise:
        # rounding level: the dual carries no information; accept a Newton step that lowers ‖r‖
        if not math.isfinite(g1):
            return None
        out = finish(1.0, u1, w1, g1)
        if out is None or float(out[3].norm()) >= float(r.norm()):
            return None
        return out
    tol_s = _CURVATURE_ETA * s0

    def acceptable(g_t: float, s_t: float) -> bool:
        return abs(s_t) <= tol_s and g_t >= g - g_noise

    if acceptable(g1, s1):
        return finish(1.0, u1, w1, g1)
    # bracket the maximiser of the concave g along the ray: s(lo) > 0 > s(hi)
    lo, s_lo = 0.0, s0
    if s1 > 0:
        lo, s_lo, hi, s_hi = 1.0, s1, math.inf, -math.inf
        t, growth = 2.0, 2.0
        while t <= _MAX_STEP:
            u_t, w_t, g_t, s_t = at(t)
            if acceptable(g_t, s_t):
                return finish(t, u_t, w_t, g_t)
            if s_t > 0:
                lo, s_lo = t, s_t
                t *= growth
                growth = min(2.0 * growth, 1e4)  # badly scaled duals need huge steps
            else:
                hi, s_hi = t, s_t
                break
        if math.isinf(hi):
            return None  # the dual grows without bound along δ: no solution
    else:
        hi, s_hi = 1.0, s1
    side = 0
    for _ in range(100):
        width = hi - lo
        t = 0.5 * (lo + hi)
        if math.isfinite(s_hi):
            secant = hi - s_hi * width / (s_hi - s_lo)  # regula falsi (Illinois)
            # safeguard: with wildly different |s| at the ends (exponential growth under NE)
            # the secant point hugs one end; bisect instead
            if lo + 0.1 * width < secant < hi - 0.1 * width:
                t = secant
        u_t, w_t, g_t, s_t = at(t)
        if acceptable(g_t, s_t):
            return finish(t, u_t, w_t, g_t)
        if s_t > 0:
            lo, s_lo = t, s_t
            if side == -1 and math.isfinite(s_hi):
                s_hi *= 0.5
            side = -1
        else:
            hi, s_hi = t, s_t
            if side == 1:
                s_lo *= 0.5
            side = 1
        if hi - lo <= _MIN_STEP * hi:
            break
    if lo > 0:
        u_t, w_t, g_t, _ = at(lo)
        if g_t >= g - g_noise:
            return finish(lo, u_t, w_t, g_t)
    return None


# -- public API ----------------------------------------------------------------------------------


def bregman_projection(
    X: Any,
    y: Any,
    w0: Any,
    potential: PotentialLike,
    *,
    tol: float = 1e-10,
    max_iter: int = 100,
    line_search: bool = True,
) -> BregmanProjection:
    r"""Exact implicit bias of mirror descent: :math:`\arg\min_{Xw = y} D_\phi(w, w_0)` (Eq. 8).

    Solves :math:`X (\nabla\phi)^{-1}(\nabla\phi(w_0) - X^\top\lambda) = y` for
    :math:`\lambda \in \mathbb R^N` by globalised Newton (module docstring: dual merit function,
    line search along the Newton direction, linearised first step, preconditioned CG for later
    steps).

    Parameters
    ----------
    X : array or tensor, shape (N, D)
        Data (or Jacobian rows, Eq. 10). Computation is float64 in torch on the device of the
        tensor inputs (CPU or CUDA); NumPy input runs on CPU.
    y : array or tensor, shape (N,)
        Targets.
    w0 : array or tensor, shape (D,)
        Initial weights. Under negative entropy, the signs of ``w0`` are kept and exact zeros
        stay zero.
    potential : Potential or spec
        The potential φ (``PNorm(p)``, ``NegativeEntropy()``, a spec such as ``"3-norm"``, or any
        object with the :class:`~syngeo.Potential` protocol, e.g. a
        :class:`~syngeo.LocalPotential` subclass).
    tol : float
        Target relative constraint residual ``‖Xw − y‖ / ‖y‖``.
    max_iter : int
        Maximum Newton iterations.
    line_search : bool
        Backtrack on the dual (default). ``False`` takes full Newton steps (for studying the
        method; it can fail for large changes).

    Returns
    -------
    BregmanProjection
        ``weights``, ``multipliers``, ``dual_change`` (float64, same kind and device as the input:
        tensors if any input is a tensor, else NumPy), plus diagnostics.

    Raises
    ------
    InputError
        Bad shapes, non-finite entries, or no solution (``y`` outside the range of ``X``);
        :class:`~syngeo.errors.DomainError` when every weight is 0 under a sign-preserving
        potential.
    InputTypeError
        Non-numeric or complex input.
    ConvergenceError
        The residual did not reach ``tol`` in ``max_iter`` iterations (or the line search
        stalled); the message has the final residual. Raise ``max_iter``, loosen ``tol``, or
        rescale the problem.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X = rng.standard_normal((5, 40)); y = rng.choice([-1.0, 1.0], 5)
    >>> w0 = rng.normal(0, 0.2, 40)
    >>> sol = bregman_projection(X, y, w0, "3-norm")
    >>> bool(np.allclose(X @ sol.weights, y)), sol.converged
    (True, True)
    >>> euclid = bregman_projection(X, y, w0, "2-norm").weights
    >>> closed = w0 + X.T @ np.linalg.solve(X @ X.T, y - X @ w0)
    >>> bool(np.allclose(euclid, closed))
    True
    """
    tol, max_iter = _check_options(tol, max_iter)
    Xt, yt, wt, pot, is_torch = _prepare(X, y, w0, potential)
    signs = torch.sign(wt)
    u0 = pot.grad(wt)
    y_norm = float(yt.norm())
    scale = y_norm if y_norm > 0 else 1.0

    lam = torch.zeros_like(yt)
    u = u0
    w = wt.clone()
    r = Xt @ w - yt
    res = res_prev = float(r.norm()) / scale
    g = float(-pot.conjugate(u0, sign=signs))
    h = _inverse_slope(pot, w)
    newton: _NewtonMatrix | None = None
    n_cg = 0
    n_iter = 0
    stalled = False
    while res > tol and n_iter < max_iter:
        n_iter += 1
        if newton is None:
            newton = _NewtonMatrix(Xt, h)
            if newton.ridge > 0:
                err = _infeasibility_error(Xt, yt, wt, pot, tol)
                if err is not None:
                    raise err
            delta = newton.solve(r)  # exact Newton matrix at λ = 0: the linearised solution
        else:
            delta = None
            # Eisenstat-Walker forcing term (choice 2): solve accurately only where Newton's
            # linear model is predictive; never below what is needed to reach tol
            rtol = min(0.1, 0.9 * (res / res_prev) ** 2)
            rtol = max(rtol, 0.1 * tol / res, 1e-14)
            newton.update(h, _REFRESH_REL, allow_full=False)
            for attempt in range(3):
                d_try, k, ok = _pcg(Xt, h, r, newton, rtol, _CG_MAX_ITER)
                n_cg += k
                if ok:
                    delta = d_try
                    break
                if attempt == 0:
                    newton.update(h, _REFRESH_REL_STRICT)
                else:
                    newton.full(h)
            if delta is None:
                delta = newton.solve(r)
        step = _line_search(pot, Xt, yt, u, w, lam, g, r, delta, signs, line_search)
        if step is None:
            stalled = True
            break
        t, u_t, w_t, r_t, g_t = step
        h = _inverse_slope(pot, w_t)
        lam, u, w, r, g = lam + t * delta, u_t, w_t, r_t, g_t
        res_prev, res = res, float(r.norm()) / scale

    converged = res <= tol
    if not converged:
        err = _infeasibility_error(Xt, yt, wt, pot, tol)
        if err is not None:
            raise err
        why = "the line search stalled" if stalled else f"max_iter={max_iter} was reached"
        hint = (
            f" Under {pot.name} the signs of w0 are fixed, so Xw = y may have no solution "
            "with those signs."
            if pot.preserves_sign
            else ""
        )
        raise ConvergenceError(
            f"bregman_projection did not converge for {pot.name}: {why} after {n_iter} Newton "
            f"iterations with relative constraint residual {res:.3g} > tol={tol:g}.{hint} "
            "Raise max_iter, loosen tol, or rescale X and w0 so the change is smaller.",
            residual=res,
            n_iter=n_iter,
        )

    dual = -(Xt.T @ lam)
    if pot.preserves_sign:
        dual = torch.where(signs == 0, torch.zeros_like(dual), dual)  # zero weights stay out
    out = (w, lam, dual)
    if not is_torch:
        out = tuple(t.cpu().numpy() for t in out)
    return BregmanProjection(
        weights=out[0],
        multipliers=out[1],
        dual_change=out[2],
        n_iter=n_iter,
        constraint_residual=res,
        converged=converged,
        potential=pot,
        n_factorizations=0 if newton is None else newton.n_full,
        n_updates=0 if newton is None else newton.n_partial,
        n_cg=n_cg,
    )


def linearized_change(X: Any, y: Any, w0: Any, potential: PotentialLike) -> LinearizedChange:
    r"""First-order implicit bias around :math:`w_0` (paper Eq. 14–15, docs/theory.md §2).

    With :math:`H = \nabla^2\phi(w_0)` (diagonal) and :math:`G = X H^{-1} X^\top`:

    .. math::
       \lambda = G^{-1}(X w_0 - y),\qquad
       \Delta = -X^\top\lambda = X^\top G^{-1}(y - X w_0),\qquad
       w = w_0 + H^{-1}\Delta.

    This is exactly the first Newton step of :func:`bregman_projection`; it is exact for
    ``p = 2`` and its relative error is :math:`O(\|y - Xw_0\|)` as the change shrinks. Entries
    with an infinite Hessian (NE or ``p < 2`` at ``w0 = 0``) do not move.

    Parameters
    ----------
    X, y, w0, potential
        As in :func:`bregman_projection`.

    Returns
    -------
    LinearizedChange
        ``dual_change``, ``weights``, ``multipliers`` (same kind and device as the input).

    Raises
    ------
    InputError
        Bad input; ``H`` not invertible (``p > 2`` with exact zeros in ``w0``); ``G`` singular
        (rank-deficient ``X``).

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X = rng.standard_normal((5, 40)); w0 = rng.normal(0, 0.2, 40)
    >>> y = X @ w0 + 1e-6 * rng.standard_normal(5)
    >>> lin = linearized_change(X, y, w0, "ne")
    >>> exact = bregman_projection(X, y, w0, "ne")
    >>> bool(np.allclose(lin.dual_change, exact.dual_change, rtol=1e-4, atol=0))
    True
    """
    Xt, yt, wt, pot, is_torch = _prepare(X, y, w0, potential)
    h = 1.0 / pot.hessian_diag(wt)
    if not bool(torch.isfinite(h).all()):
        bad = int((~torch.isfinite(h)).sum())
        raise InputError(
            f"the linearised change needs a non-zero Hessian at w0, but {pot.name} has "
            f"Hessian 0 at {bad} entries of w0 (exact zeros); perturb them or use "
            "bregman_projection"
        )
    gram = _weighted_gram(Xt, h)
    chol, info = torch.linalg.cholesky_ex(gram)
    if int(info) != 0:
        raise InputError(
            "X H^-1 X^T is singular: X has rank below N (dependent rows) or too many weights "
            "with an infinite Hessian; remove dependent rows"
        )
    lam = torch.cholesky_solve((Xt @ wt - yt).unsqueeze(1), chol).squeeze(1)
    dual = -(Xt.T @ lam)
    weights = wt + h * dual
    out = (dual, weights, lam)
    if not is_torch:
        out = tuple(t.cpu().numpy() for t in out)
    return LinearizedChange(dual_change=out[0], weights=out[1], multipliers=out[2], potential=pot)
