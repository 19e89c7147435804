r"""Physical units of parameters and the coordinate changes between unit systems.

A parameter vector such as the binomial release model's :math:`\theta = (P, q)` mixes a
dimensionless release probability with a quantal amplitude in volts. Changing the unit of ``q``
(mV → V) is a linear change of coordinates :math:`\theta' = S\theta` with
:math:`S = \mathrm{diag}(1, 10^{-3})`. Geometric objects transform in three different ways
(docs/theory.md §5; Surace & Brea, Appendix "Physical units"):

================================  =====================================================
object                            rule under :math:`\theta' = S\theta`
================================  =====================================================
point / tangent vector (a step)   :math:`v' = S v` (pushforward)
partial derivatives :math:`\partial f`  :math:`\partial' f = S^{-1}\partial f` (covector)
metric matrix :math:`A`           :math:`A' = S^{-1} A S^{-1}`; cometric :math:`A'^{-1} = S A^{-1} S`
================================  =====================================================

So a flow :math:`\dot\theta = -A^{-1}\partial f` is the *same vector field* in every unit system
only if the metric transforms as a tensor (the Fisher metric does). "Euclidean with conversion
factor :math:`\eta_q = 1\,\mathrm{V}^2`" means: write ``q`` in volts and take the identity matrix
as the metric in those coordinates, i.e. the step is :math:`\Delta q_V = -\eta_q\,\partial f/\partial q_V`
with :math:`\eta_q` numerically 1 when ``q`` is in V. Seen in millivolt coordinates this is the
cometric :math:`\eta_q = 1\,\mathrm{V}^2 = 10^6\,\mathrm{mV}^2` — a different flow from
:math:`\eta_q = 1\,\mathrm{mV}^2`.

Examples
--------
>>> change = UnitChange(("1", "mV"), ("1", "V"))
>>> change.scale
array([1.   , 0.001])
>>> change.pushforward([0.5, 2.0])  # a step of 2 mV is a step of 0.002 V
array([0.5  , 0.002])
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

import numpy as np

from syngeo.errors import InputError, InputTypeError
from syngeo.validation import as_positive_float

__all__ = [
    "DIMENSIONLESS",
    "MICROVOLT",
    "MILLIVOLT",
    "VOLT",
    "Quantity",
    "Unit",
    "UnitChange",
    "unit",
]


@dataclass(frozen=True)
class Unit:
    """A unit of measurement: a symbol, a physical dimension and its size in SI base units.

    Attributes
    ----------
    symbol : str
        How the unit is written, e.g. ``"mV"``.
    dimension : str
        The physical dimension, e.g. ``"voltage"``; ``"1"`` for dimensionless quantities.
        Only units of the same dimension convert into each other.
    si_factor : float
        The size of one unit in the SI unit of its dimension (1 mV = 1e-3 V, so ``1e-3``).

    Examples
    --------
    >>> MILLIVOLT.factor_to(VOLT)
    0.001
    """

    symbol: str
    dimension: str
    si_factor: float

    def __post_init__(self) -> None:
        if not isinstance(self.symbol, str) or not self.symbol:
            raise InputTypeError(f"a unit needs a non-empty symbol string, got {self.symbol!r}")
        factor = as_positive_float(self.si_factor, f"the SI factor of unit {self.symbol!r}")
        object.__setattr__(self, "si_factor", factor)

    def factor_to(self, other: UnitLike) -> float:
        """The number c with ``x [self] = c·x [other]`` (1 mV = 0.001 V, so ``mV → V`` is 1e-3).

        Raises
        ------
        InputError
            If the two units measure different dimensions (e.g. mV and a dimensionless unit).
        """
        other = unit(other)
        if other.dimension != self.dimension:
            raise InputError(
                f"cannot convert {self.symbol} ({self.dimension}) to {other.symbol} "
                f"({other.dimension}): choose a unit of the same dimension"
            )
        # Rounded to 15 significant digits so that ratios of powers of ten are exact
        # (1e-3 / 1e-6 is 1000.0000000000001 in binary floating point).
        return float(f"{self.si_factor / other.si_factor:.15g}")

    def __str__(self) -> str:
        return self.symbol


#: The unit of a pure number (e.g. a release probability).
DIMENSIONLESS = Unit("1", "1", 1.0)
VOLT = Unit("V", "voltage", 1.0)
MILLIVOLT = Unit("mV", "voltage", 1e-3)
MICROVOLT = Unit("µV", "voltage", 1e-6)

# Symbols are case-sensitive ("MV" would be a megavolt); spelled-out names are not.
_UNIT_SYMBOLS = {
    "1": DIMENSIONLESS,
    "V": VOLT,
    "mV": MILLIVOLT,
    "µV": MICROVOLT,
    "μV": MICROVOLT,  # Greek mu, not the micro sign
    "uV": MICROVOLT,
}
_UNIT_NAMES = {
    "dimensionless": DIMENSIONLESS,
    "volt": VOLT,
    "millivolt": MILLIVOLT,
    "microvolt": MICROVOLT,
}

UnitLike = Union[Unit, str]


def unit(spec: UnitLike) -> Unit:
    """Parse a unit: a :class:`Unit`, or one of ``"1"``, ``"V"``, ``"mV"``, ``"µV"``/``"uV"``.

    Examples
    --------
    >>> unit("uV") is MICROVOLT
    True
    """
    if isinstance(spec, Unit):
        return spec
    if not isinstance(spec, str):
        raise InputTypeError(
            f"a unit must be a Unit or a string such as 'mV', got {type(spec).__name__}"
        )
    key = spec.strip()
    found = _UNIT_SYMBOLS.get(key) or _UNIT_NAMES.get(key.lower())
    if found is None:
        raise InputError(
            f"unknown unit {spec!r}: use one of '1' (dimensionless), 'V', 'mV', 'µV' (or 'uV'), "
            "or build one with Unit(symbol, dimension, si_factor)"
        )
    return found


@dataclass(frozen=True)
class Quantity:
    """A number (or array) with a unit.

    Examples
    --------
    >>> Quantity(0.5, "mV").to("µV")
    Quantity(value=500.0, unit='µV')
    """

    value: float | np.ndarray
    unit: Unit

    def __init__(self, value, unit_spec: UnitLike) -> None:
        arr = np.asarray(value, dtype=np.float64)
        object.__setattr__(self, "value", float(arr) if arr.ndim == 0 else arr)
        object.__setattr__(self, "unit", unit(unit_spec))

    def to(self, target: UnitLike) -> Quantity:
        """The same quantity expressed in ``target``."""
        target = unit(target)
        return Quantity(np.asarray(self.value) * self.unit.factor_to(target), target)

    def magnitude_in(self, target: UnitLike) -> float | np.ndarray:
        """The number that expresses this quantity in ``target``."""
        return self.to(target).value

    def to_dict(self) -> dict:
        value = self.value.tolist() if isinstance(self.value, np.ndarray) else self.value
        return {"value": value, "unit": self.unit.symbol}

    def __repr__(self) -> str:
        return f"Quantity(value={self.value!r}, unit={self.unit.symbol!r})"


@dataclass(frozen=True)
class UnitChange:
    r"""The linear change of coordinates between two unit systems of one parameter vector.

    Coordinate ``i`` measured in ``source[i]`` becomes coordinate ``i`` in ``target[i]``:
    :math:`\theta' = S\theta` with :math:`S = \mathrm{diag}(s)`,
    ``s[i] = source[i].factor_to(target[i])``. See the module docstring for how vectors,
    covectors and metrics transform.

    Parameters
    ----------
    source, target : sequence of Unit or str, length dim
        The unit of every coordinate before and after the change.

    Attributes
    ----------
    scale : ndarray, shape=[dim]
        The diagonal of S.

    Examples
    --------
    >>> change = UnitChange(("1", "mV"), ("1", "µV"))
    >>> change.pullback_covector([1.0, 1.0]).tolist()  # ∂f/∂q_µV = 1e-3 ∂f/∂q_mV
    [1.0, 0.001]
    """

    source: tuple[Unit, ...]
    target: tuple[Unit, ...]

    def __init__(self, source, target) -> None:
        src = tuple(unit(u) for u in source)
        tgt = tuple(unit(u) for u in target)
        if len(src) != len(tgt) or not src:
            raise InputError(
                f"source and target need one unit per coordinate, got {len(src)} and {len(tgt)}"
            )
        object.__setattr__(self, "source", src)
        object.__setattr__(self, "target", tgt)

    @property
    def dim(self) -> int:
        return len(self.source)

    @property
    def scale(self) -> np.ndarray:
        return np.array([s.factor_to(t) for s, t in zip(self.source, self.target, strict=True)])

    @property
    def inverse(self) -> UnitChange:
        """The change back from ``target`` to ``source``."""
        return UnitChange(self.target, self.source)

    def _check(self, x) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        if x.ndim == 0 or x.shape[-1] != self.dim:
            raise InputError(
                f"expected an array of shape [..., {self.dim}] (one entry per coordinate), "
                f"got shape {x.shape}"
            )
        return x

    def forward(self, base_point) -> np.ndarray:
        """Coordinates of points in the target units, shape=[..., dim]."""
        return self._check(base_point) * self.scale

    def backward(self, base_point) -> np.ndarray:
        """Coordinates of points (given in target units) back in the source units."""
        return self._check(base_point) / self.scale

    def pushforward(self, tangent_vec) -> np.ndarray:
        """A tangent vector (a step or a velocity) in target units: ``v' = S v``."""
        return self._check(tangent_vec) * self.scale

    def pullback_covector(self, covector) -> np.ndarray:
        """Partial derivatives in target coordinates: ``∂'f = S⁻¹ ∂f``."""
        return self._check(covector) / self.scale

    def transform_metric(self, metric_matrix) -> np.ndarray:
        """A metric matrix in target coordinates: ``A' = S⁻¹ A S⁻¹``, shape=[..., dim, dim]."""
        a = np.asarray(metric_matrix, dtype=np.float64)
        if a.ndim < 2 or a.shape[-2:] != (self.dim, self.dim):
            raise InputError(
                f"expected a metric of shape [..., {self.dim}, {self.dim}], got {a.shape}"
            )
        inv = 1.0 / self.scale
        return a * inv[:, None] * inv[None, :]

    def to_dict(self) -> dict:
        return {
            "source": [u.symbol for u in self.source],
            "target": [u.symbol for u in self.target],
            "scale": self.scale.tolist(),
        }

    def __repr__(self) -> str:
        src = ", ".join(u.symbol for u in self.source)
        tgt = ", ".join(u.symbol for u in self.target)
        return f"UnitChange(({src}) -> ({tgt}))"
