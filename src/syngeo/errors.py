"""The exceptions syngeo raises on purpose.

Every input check in the library raises :class:`InputError` (a ``ValueError``) or one of its
subclasses, with a message that says what was wrong and what to do. The command line turns these,
and file-system errors, into a one-line message and exit code 2; any other exception is a bug and
shows its traceback (exit code 1).

=========================  ===============================  ======================================
exception                  is also a                        raised when
=========================  ===============================  ======================================
:class:`InputError`        ``ValueError``                   a value is out of range, inconsistent
                                                            or unusable (NaN, shape mismatch …)
:class:`InputTypeError`    ``InputError``, ``TypeError``    an argument has the wrong type
:class:`DomainError`       ``InputError``                   weights lie outside a potential's
                                                            domain (zeros or sign flips under NE)
:class:`DataFileError`     ``InputError``                   a file cannot be read as weights or a
                                                            table (format, missing column, key)
:class:`ConvergenceError`  ``RuntimeError``                 an iterative solver stopped short of
                                                            its tolerance
=========================  ===============================  ======================================

Examples
--------
>>> import syngeo
>>> try:
...     syngeo.potential("4-nrom")
... except syngeo.InputError as err:
...     print(type(err).__name__, isinstance(err, ValueError))
InputError True
"""

from __future__ import annotations

__all__ = [
    "ConvergenceError",
    "DataFileError",
    "DomainError",
    "InputError",
    "InputTypeError",
]


class InputError(ValueError):
    """An input to syngeo is invalid; the message says what is wrong and how to fix it."""


class InputTypeError(InputError, TypeError):
    """An argument has the wrong type (a ``TypeError`` too, as NumPy and SciPy raise)."""


class DomainError(InputError):
    """Weights outside a potential's domain, e.g. zero or sign-flipping weights under NE."""


class DataFileError(InputError):
    """A file that cannot be read as weights or as a synapse table."""


class ConvergenceError(RuntimeError):
    """An iterative solver did not reach the requested tolerance.

    Attributes
    ----------
    residual : float
        Final relative residual (for :func:`syngeo.bregman_projection`: ``‖Xw − y‖ / ‖y‖``).
    n_iter : int
        Iterations performed.
    """

    def __init__(self, message: str, *, residual: float, n_iter: int) -> None:
        super().__init__(message)
        self.residual = residual
        self.n_iter = n_iter
