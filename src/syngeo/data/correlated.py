r"""Inputs with the alternating Toeplitz correlation of the paper's regression experiment.

docs/theory.md §4 (Fig. 3A/6): the inputs are :math:`x = L z + u` with

* :math:`C = L L^\top` the symmetric Toeplitz matrix with first row
  :math:`c_k = (-1)^k / (1 + |k/s|^a)`, :math:`k = 0, \dots, d-1` (power ``a``, scale ``s``);
* :math:`z \sim \mathcal N(0, I_d)`;
* :math:`u \sim \mathcal U(-\tfrac12, \tfrac12)^d` i.i.d. (optional), independent of ``z``.

Covariance convention
---------------------
:math:`C` has unit diagonal and is what ``power`` and ``scale`` describe ("the correlation" of the
paper). With the uniform noise the samples have covariance :math:`C + I/12` (the noise adds its
variance 1/12 to the diagonal only), so the correlation between distinct entries is
:math:`c_k / (1 + 1/12)`. Without it the covariance is exactly :math:`C`. The mean is 0 either way.

Why the matrix is positive definite
-----------------------------------
For :math:`0 < a \le 2`, :math:`t \mapsto 1/(1 + |t|^a)` is the characteristic function of a
(symmetric) Linnik distribution, hence a positive-definite function; sampling it at the integers
:math:`k/s` and modulating by :math:`(-1)^k = \cos(\pi k)` keeps it positive definite. So
:math:`C` is positive definite for every ``scale > 0`` and ``power`` in (0, 2]. For ``power > 2``
this argument does not apply; the sampler checks the spectrum and raises if it is not positive
semi-definite. (At ``scale = 1``, powers 3 and 4 are in fact fine: the spectral minimum is about
0.171 and 0.099.)

Sampling in :math:`O(n\,d\log d)`
---------------------------------
``method="fft"`` (default) embeds :math:`C` in a symmetric circulant matrix of size
:math:`m \ge 2(d-1)` whose first row is the *natural extension*
:math:`r_j = c_{\min(j, m-j)}`, :math:`j = 0, \dots, m-1` (for :math:`m = 2(d-1)` this is the
minimal embedding :math:`[c_0, \dots, c_{d-1}, c_{d-2}, \dots, c_1]`). A circulant is diagonalised
by the DFT: its eigenvalues are :math:`\lambda = \mathrm{FFT}(r)` (real, as ``r`` is symmetric).
If all :math:`\lambda \ge 0`, then with :math:`\varepsilon = a + i b`, :math:`a, b \sim \mathcal
N(0, I_m)` independent,

.. math:: y = \mathrm{FFT}\big(\sqrt{\lambda / m}\,\odot\,\varepsilon\big)

has :math:`\mathrm{Re}\,y` and :math:`\mathrm{Im}\,y` independent :math:`\mathcal N(0, C_{circ})`
(since :math:`E[yy^*] = 2 C_{circ}` and :math:`E[yy^\top] = 0`), and their first ``d`` entries are
two independent :math:`\mathcal N(0, C)` samples. One complex FFT of length ``m`` thus gives two
rows. ``m`` is rounded up to a fast FFT length (``scipy.fft.next_fast_len``), which the natural
extension allows.

Measured on this family (``scale = 1``, every ``d`` from 1 to 2000 and 5000, 10^4, 2·10^4,
5·10^4): both the strictly minimal embedding (``m = 2(d − 1)``) and the first size tried are
positive definite for powers 1 and 2, so no larger embedding is ever needed there. Its smallest eigenvalue is at least 0.317 (power 1) and 0.2
(power 2), and tends to the minimum of the spectral density as ``d`` grows (0.386 and 0.272).
For other covariances the sampler doubles ``m`` (up to ``2**max_doublings`` times the first size)
until :math:`\min\lambda \ge -10^{-12}\max\lambda`. If that fails, the negative eigenvalues are set
to zero only when the resulting covariance error is negligible: clipping changes every entry of the
sampled :math:`d\times d` covariance by at most :math:`\sum_{\lambda_j<0}|\lambda_j|/m`, which must
be at most ``clip_tol`` (default 1e-8, relative to :math:`c_0`); otherwise an
:class:`~syngeo.errors.InputError` (a ``ValueError``) is raised that suggests ``method="cholesky"``.

``method="cholesky"`` factorises the dense :math:`d \times d` matrix (:math:`O(d^3)`) and is the
reference the FFT sampler is tested against.

Example
-------
>>> x = correlated_inputs(1000, 64, power=2, rng=0)
>>> x.shape
(1000, 64)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.fft
import scipy.linalg

from syngeo.errors import InputError
from syngeo.validation import (
    as_choice,
    as_generator,
    as_int,
    as_positive_float,
    as_positive_int,
)

__all__ = [
    "CirculantEmbedding",
    "circulant_embedding",
    "correlated_inputs",
    "toeplitz_correlation_matrix",
    "toeplitz_correlation_row",
]

#: Complex work buffer per FFT chunk (bytes); bounds the sampler's extra memory.
_CHUNK_BYTES = 64 * 2**20
#: Eigenvalues above ``-_PSD_RTOL * max(eigenvalues)`` count as non-negative (FFT round-off).
_PSD_RTOL = 1e-12


def _correlation(k: np.ndarray, power: float, scale: float) -> np.ndarray:
    """c_k = (−1)^k / (1 + |k/s|^a) for integer lags k ≥ 0."""
    k = np.asarray(k)
    sign = np.where(k % 2 == 0, 1.0, -1.0)
    return sign / (1.0 + np.abs(k / scale) ** power)


def toeplitz_correlation_row(d: int, power: float, scale: float = 1.0) -> np.ndarray:
    r"""First row of the Toeplitz correlation matrix, :math:`c_k = (-1)^k / (1 + |k/s|^a)`.

    Parameters
    ----------
    d
        Dimension (number of inputs), ``d >= 1``.
    power
        Decay power ``a > 0`` (the paper uses 1 and 2).
    scale
        Length scale ``s > 0`` (the paper uses 1).

    Returns
    -------
    numpy.ndarray, shape (d,)
        ``c_0, ..., c_{d-1}`` with ``c_0 = 1``.

    Examples
    --------
    >>> toeplitz_correlation_row(4, power=1)
    array([ 1.        , -0.5       ,  0.33333333, -0.25      ])
    """
    d = as_positive_int(d, "d")
    power = as_positive_float(power, "power")
    scale = as_positive_float(scale, "scale")
    return _correlation(np.arange(d), power, scale)


def toeplitz_correlation_matrix(d: int, power: float, scale: float = 1.0) -> np.ndarray:
    """The dense ``(d, d)`` Toeplitz matrix ``C[i, j] = c_|i−j|`` (O(d²) memory).

    Examples
    --------
    >>> toeplitz_correlation_matrix(3, power=2)
    array([[ 1. , -0.5,  0.2],
           [-0.5,  1. , -0.5],
           [ 0.2, -0.5,  1. ]])
    """
    return scipy.linalg.toeplitz(toeplitz_correlation_row(d, power, scale))


@dataclass(frozen=True, repr=False)
class CirculantEmbedding:
    """A circulant embedding of a ``d × d`` symmetric Toeplitz covariance, ready for FFT sampling.

    Attributes
    ----------
    d : int
        Dimension of the embedded Toeplitz matrix.
    size : int
        Circulant size ``m`` actually used (``m >= 2(d − 1)``).
    eigenvalues : numpy.ndarray, shape (size,)
        Eigenvalues of the circulant, ``FFT(first row)``, after clipping (all ``>= 0``).
    min_eigenvalue : float
        Smallest eigenvalue before clipping (negative means clipping happened).
    sizes_tried : tuple of int
        Every size examined, in order (the last is ``size``).
    clipping_error : float
        Bound on the entry-wise covariance error caused by clipping,
        ``sum(|λ_j| for λ_j < 0) / m`` (0 when the embedding was positive semi-definite).
    """

    d: int
    size: int
    eigenvalues: np.ndarray = field(compare=False)
    min_eigenvalue: float
    sizes_tried: tuple[int, ...]
    clipping_error: float

    @property
    def is_minimal(self) -> bool:
        """True when the first (smallest) size tried was positive semi-definite."""
        return len(self.sizes_tried) == 1

    def covariance_row(self) -> np.ndarray:
        """First row (length ``d``) of the covariance the sampler actually draws from."""
        return scipy.fft.ifft(self.eigenvalues).real[: self.d]

    def to_dict(self) -> dict[str, Any]:
        """Scalars only (the eigenvalues are omitted: they can be millions of numbers)."""
        return {
            "d": self.d,
            "size": self.size,
            "min_eigenvalue": self.min_eigenvalue,
            "sizes_tried": list(self.sizes_tried),
            "clipping_error": self.clipping_error,
            "is_minimal": self.is_minimal,
        }

    def __repr__(self) -> str:
        return (
            f"CirculantEmbedding(d={self.d}, size={self.size}, "
            f"min_eigenvalue={self.min_eigenvalue:.4g}, sizes_tried={self.sizes_tried}, "
            f"clipping_error={self.clipping_error:.3g})"
        )


def _embed(
    covariance: Callable[[np.ndarray], np.ndarray],
    d: int,
    *,
    max_doublings: int,
    clip_tol: float,
    fast_sizes: bool = True,
) -> CirculantEmbedding:
    """Circulant embedding of the Toeplitz matrix ``C[i, j] = covariance(|i − j|)``.

    Tries sizes ``m_0 = 2(d − 1)`` (rounded up to a fast FFT length when ``fast_sizes``), then
    ``2 m_0, 4 m_0, …`` (``max_doublings`` times), with the natural extension
    ``r_j = covariance(min(j, m − j))``. See the module docstring for the clipping rule.
    """
    first = max(2 * (d - 1), 1)
    sizes: list[int] = []
    best: tuple[float, int, np.ndarray] | None = None
    for doubling in range(max_doublings + 1):
        m = first * 2**doubling
        if fast_sizes:
            m = scipy.fft.next_fast_len(m)
        sizes.append(m)
        j = np.arange(m)
        row = covariance(np.minimum(j, m - j))
        eig = scipy.fft.fft(row).real
        lam_min, lam_max = float(eig.min()), float(eig.max())
        if lam_min >= -_PSD_RTOL * max(lam_max, 0.0):
            return CirculantEmbedding(
                d=d,
                size=m,
                eigenvalues=np.maximum(eig, 0.0),
                min_eigenvalue=lam_min,
                sizes_tried=tuple(sizes),
                clipping_error=0.0,
            )
        error = float(-eig[eig < 0].sum() / m)
        if best is None or error < best[0]:
            best = (error, m, eig)
    assert best is not None
    error, m, eig = best
    if error <= clip_tol:
        return CirculantEmbedding(
            d=d,
            size=m,
            eigenvalues=np.maximum(eig, 0.0),
            min_eigenvalue=float(eig.min()),
            sizes_tried=tuple(sizes),
            clipping_error=error,
        )
    raise InputError(
        f"no positive semi-definite circulant embedding of this {d}x{d} Toeplitz covariance up to "
        f"size {sizes[-1]} (tried {sizes}); clipping the negative eigenvalues would change the "
        f"covariance by up to {error:.3g} > clip_tol={clip_tol:g}. The covariance may not be "
        "positive semi-definite; check power/scale, raise max_doublings, or use method='cholesky'"
    )


def circulant_embedding(
    d: int,
    power: float,
    scale: float = 1.0,
    *,
    max_doublings: int = 4,
    clip_tol: float = 1e-8,
) -> CirculantEmbedding:
    """Circulant embedding of the Toeplitz correlation ``c_k = (−1)^k / (1 + |k/s|^a)``.

    Parameters
    ----------
    d, power, scale
        As in :func:`toeplitz_correlation_row`.
    max_doublings
        How many times the circulant size may be doubled when it is not positive semi-definite.
    clip_tol
        Largest entry-wise covariance error accepted from clipping negative eigenvalues.

    Returns
    -------
    CirculantEmbedding

    Raises
    ------
    InputError
        If no embedding tried is positive semi-definite and clipping would exceed ``clip_tol``.

    Examples
    --------
    >>> emb = circulant_embedding(1000, power=1)
    >>> emb.size, emb.is_minimal, round(emb.min_eigenvalue, 3)
    (2000, True, 0.386)
    """
    d = as_positive_int(d, "d")
    power = as_positive_float(power, "power")
    scale = as_positive_float(scale, "scale")
    max_doublings = as_int(max_doublings, "max_doublings", minimum=0)
    clip_tol = as_positive_float(clip_tol, "clip_tol", allow_zero=True)
    return _embed(
        lambda k: _correlation(k, power, scale), d, max_doublings=max_doublings, clip_tol=clip_tol
    )


def _sample_fft(
    emb: CirculantEmbedding, n: int, gen: np.random.Generator, workers: int | None
) -> np.ndarray:
    """``n`` rows of N(0, C) from the embedding; each complex FFT gives two rows (Re, Im).

    The normal draws are consumed pair by pair in a fixed order, so the result does not depend
    on the chunk size.
    """
    m, d = emb.size, emb.d
    amplitude = np.sqrt(emb.eigenvalues / m)
    n_pairs = (n + 1) // 2
    chunk = max(1, _CHUNK_BYTES // (16 * m))
    out = np.empty((n, d))
    for start in range(0, n_pairs, chunk):
        b = min(chunk, n_pairs - start)
        # (b, 2m) independent N(0, 1) reals viewed as (b, m) complex a + ib
        eps = gen.standard_normal((b, 2 * m)).view(np.complex128)
        eps *= amplitude
        y = scipy.fft.fft(eps, axis=1, overwrite_x=True, workers=workers)[:, :d]
        rows = slice(2 * start, min(2 * (start + b), n))
        block = out[rows]
        block[0::2] = y.real[: (block.shape[0] + 1) // 2]
        block[1::2] = y.imag[: block.shape[0] // 2]
    return out


def _sample_cholesky(
    d: int, power: float, scale: float, n: int, gen: np.random.Generator
) -> np.ndarray:
    c = toeplitz_correlation_matrix(d, power, scale)
    try:
        lower = scipy.linalg.cholesky(c, lower=True, overwrite_a=True, check_finite=False)
    except np.linalg.LinAlgError as exc:
        raise InputError(
            f"the {d}x{d} Toeplitz correlation with power={power:g}, scale={scale:g} is not "
            "positive definite, so it is not a covariance; use power in (0, 2]"
        ) from exc
    z = gen.standard_normal((n, d))
    return z @ lower.T


def correlated_inputs(
    n: int,
    d: int,
    power: float,
    scale: float = 1.0,
    *,
    rng: np.random.Generator | int,
    uniform_noise: bool = True,
    method: str = "fft",
    workers: int | None = None,
) -> np.ndarray:
    r"""Draw ``n`` input vectors ``x = L z + u`` with Toeplitz correlation (docs/theory.md §4).

    Parameters
    ----------
    n
        Number of samples (rows), ``n >= 1``.
    d
        Dimension (columns), ``d >= 1``.
    power, scale
        Correlation ``c_k = (−1)^k / (1 + |k/scale|^power)`` between entries ``k`` apart.
    rng
        ``numpy.random.Generator``, integer seed, or ``None`` for fresh entropy (as in NumPy);
        required, so that a reproducible draw is the visible choice.
    uniform_noise
        Add i.i.d. ``U(−½, ½)`` noise to every entry (the paper's protocol); the covariance is
        then ``C + I/12`` instead of ``C`` (see the module docstring).
    method
        ``"fft"`` (circulant embedding, ``O(n d log d)``) or ``"cholesky"`` (dense, ``O(d³)``).
        Both draw from the same distribution, but not the same numbers.
    workers
        Threads for ``scipy.fft`` (``None``: scipy's default of 1).

    Returns
    -------
    numpy.ndarray, shape (n, d), float64

    Raises
    ------
    InputTypeError
        For a non-integer ``n``/``d``, a non-numeric ``power``/``scale`` or a bad ``rng``.
    InputError
        For a non-positive ``n``/``d``/``power``/``scale``, an unknown ``method``, or a
        correlation that is not positive semi-definite.

    Examples
    --------
    >>> x = correlated_inputs(20000, 8, power=1, rng=1, uniform_noise=False)
    >>> bool(abs(np.mean(x[:, 0] * x[:, 1]) - (-0.5)) < 0.05)
    True
    """
    n = as_positive_int(n, "n")
    d = as_positive_int(d, "d")
    power = as_positive_float(power, "power")
    scale = as_positive_float(scale, "scale")
    method = as_choice(method, "method", ("fft", "cholesky"))
    gen = as_generator(rng)
    if method == "fft":
        emb = circulant_embedding(d, power, scale)
        x = _sample_fft(emb, n, gen, workers)
    else:
        x = _sample_cholesky(d, power, scale, n, gen)
    if uniform_noise:
        x += gen.uniform(-0.5, 0.5, size=(n, d))
    return x
