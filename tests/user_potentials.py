"""A potential defined only in the tests, to prove that a user's own potential works everywhere.

``Quartic``: φ(w) = Σ w²/2 + w⁴/4, strictly convex on the real line (φ'' = 1 + 3w² ≥ 1), so
weights may cross zero. Mirror map w + w³; its inverse is the real root of w³ + w − u = 0
(Cardano: w = ∛(u/2 + r) + ∛(u/2 − r), r = √(u²/4 + 1/27)). Since the two cube roots multiply
to −1/3, w = a − 1/(3a) with a = ∛(|u|/2 + r), times sign(u): no cancellation between the terms
(the plain sum loses 1e-5 relative in float32 near |w| = 10). One Newton step polishes it.
It subclasses the public :class:`syngeo.LocalPotential` and defines only the four element-wise
functions the recipe asks for.

``CoshFamily(a)``: φ_a(w) = Σ cosh(a·w)/a², the recipe of docs/geometries.md with a family
parameter (``parameter``/``with_parameter``/``parameter_bounds``), so inference refines a.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from syngeo import LocalPotential


def _cbrt(x):
    if isinstance(x, torch.Tensor):
        return torch.sign(x) * x.abs() ** (1.0 / 3.0)
    return np.cbrt(x)


def _sqrt(x):
    return torch.sqrt(x) if isinstance(x, torch.Tensor) else np.sqrt(x)


class Quartic(LocalPotential):
    name = "quartic"

    def value_elementwise(self, w):
        return w**2 / 2 + w**4 / 4

    def grad(self, w):
        return w + w**3

    def grad_inverse(self, u, sign=None):
        if not isinstance(u, torch.Tensor):
            u = np.asarray(u, dtype=np.float64)
        r = _sqrt(u**2 / 4 + 1.0 / 27.0)
        a = _cbrt(abs(u) / 2 + r)
        w = (a - 1.0 / (3.0 * a)) * (torch.sign(u) if isinstance(u, torch.Tensor) else np.sign(u))
        return w - (w + w**3 - u) / (1 + 3 * w**2)  # one Newton step: full precision

    def hessian_diag(self, w):
        return 1 + 3 * w**2


# The recipe of docs/geometries.md, verbatim: a one-parameter family in a few lines.
# φ_a(w) = Σ cosh(a·w)/a², strictly convex on the real line (φ'' = cosh(a·w) ≥ 1), Euclidean
# as a → 0; the family parameter a lets infer_geometry refine it like p.
@dataclass(frozen=True)
class CoshFamily(LocalPotential):
    a: float = 1.0
    parameter_bounds = (0.0, math.inf)
    parameter_search_window = (0.05, 10.0)

    name = property(lambda self: f"cosh(a={self.a:g})")
    parameter = property(lambda self: self.a)

    def with_parameter(self, a):
        return CoshFamily(a)

    def value_elementwise(self, w):
        return _f(w, "cosh")(self.a * w) / self.a**2

    def grad(self, w):  # the mirror map
        return _f(w, "sinh")(self.a * w) / self.a

    def grad_inverse(self, u, sign=None):
        return _f(u, "arcsinh")(self.a * u) / self.a

    def hessian_diag(self, w):
        return _f(w, "cosh")(self.a * w)


def _f(x, name):
    """The NumPy function ``name``, or torch's for a tensor (torch spells arcsinh ``asinh``)."""
    if isinstance(x, torch.Tensor):
        return getattr(torch, {"arcsinh": "asinh"}.get(name, name))
    return getattr(np, name)
