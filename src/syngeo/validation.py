"""Input checks shared by the whole library: one definition of each, used everywhere.

Each checker returns the value converted to its canonical type or raises
:class:`~syngeo.errors.InputError` (wrong value) or :class:`~syngeo.errors.InputTypeError`
(wrong type) with a message naming the argument. Conventions:

* integers: Python ``int`` and NumPy integers are accepted; ``bool`` and floats (even ``3.0``)
  are not — a float where a count is expected is usually a bug upstream;
* reals: ``int``, ``float`` and NumPy scalars; ``bool`` is not; NaN and ±inf are rejected unless
  the checker says otherwise;
* random state: ``rng=None`` means fresh, unpredictable entropy, exactly as
  :func:`numpy.random.default_rng` (pass an integer for reproducible results).

Examples
--------
>>> as_positive_int(3, "n_seeds")
3
>>> as_generator(0).integers(10) == as_generator(0).integers(10)
np.True_
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np

from syngeo.errors import InputError, InputTypeError

__all__ = [
    "as_choice",
    "as_finite_float",
    "as_generator",
    "as_int",
    "as_nonnegative_int",
    "as_positive_float",
    "as_positive_int",
    "as_probability",
    "as_seed",
]


def as_int(value: Any, name: str, *, minimum: int | None = None) -> int:
    """``value`` as an ``int`` (no bools, no floats), at least ``minimum`` if given."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise InputTypeError(f"{name} must be an integer, got {value!r} ({type(value).__name__})")
    value = int(value)
    if minimum is not None and value < minimum:
        raise InputError(f"{name} must be an integer >= {minimum}, got {value}")
    return value


def as_positive_int(value: Any, name: str) -> int:
    """``value`` as an ``int >= 1``."""
    return as_int(value, name, minimum=1)


def as_nonnegative_int(value: Any, name: str) -> int:
    """``value`` as an ``int >= 0``."""
    return as_int(value, name, minimum=0)


def as_finite_float(value: Any, name: str) -> float:
    """``value`` as a finite ``float`` (no bools)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InputTypeError(
            f"{name} must be a real number, got {value!r} ({type(value).__name__})"
        )
    value = float(value)
    if not math.isfinite(value):
        raise InputError(f"{name} must be finite, got {value}")
    return value


def as_positive_float(value: Any, name: str, *, allow_zero: bool = False) -> float:
    """``value`` as a finite ``float > 0`` (``>= 0`` with ``allow_zero``)."""
    value = as_finite_float(value, name)
    if value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise InputError(f"{name} must be a finite number {bound}, got {value:g}")
    return value


def as_probability(value: Any, name: str, *, open_interval: bool = True) -> float:
    """``value`` as a ``float`` in (0, 1) (or [0, 1] with ``open_interval=False``)."""
    value = as_finite_float(value, name)
    inside = 0 < value < 1 if open_interval else 0 <= value <= 1
    if not inside:
        interval = "(0, 1)" if open_interval else "[0, 1]"
        raise InputError(f"{name} must lie in {interval}, got {value:g}")
    return value


def as_choice(value: Any, name: str, choices: tuple[str, ...]) -> str:
    """``value`` as one of ``choices`` (exact, case-sensitive strings)."""
    if not isinstance(value, str) or value not in choices:
        raise InputError(f"{name} must be one of {', '.join(map(repr, choices))}; got {value!r}")
    return value


def as_seed(value: Any, name: str = "seed") -> int:
    """``value`` as a non-negative integer seed (what :class:`numpy.random.SeedSequence` takes)."""
    return as_nonnegative_int(value, name)


def as_generator(rng: Any, name: str = "rng") -> np.random.Generator:
    """A NumPy ``Generator`` from ``None`` (fresh entropy), an integer seed, a ``SeedSequence``
    or a ``Generator`` (returned as is, so draws continue its stream)."""
    if isinstance(rng, np.random.Generator):
        return rng
    if rng is None or isinstance(rng, np.random.SeedSequence):
        return np.random.default_rng(rng)
    if isinstance(rng, numbers.Integral) and not isinstance(rng, bool):
        if rng < 0:
            raise InputError(f"{name} must be a non-negative integer seed, got {rng}")
        return np.random.default_rng(int(rng))
    raise InputTypeError(
        f"{name} must be None, a non-negative integer seed or a numpy.random.Generator, got "
        f"{type(rng).__name__}; pass e.g. {name}=0 for reproducible results"
    )
