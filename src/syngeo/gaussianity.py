r"""Is the weight change Gaussian in the dual space of a potential? (docs/theory.md §2–3)

The theory predicts that learning changes the *dual* weights by an i.i.d. zero-mean Gaussian
vector, :math:`\Delta = \nabla\phi(w) - \nabla\phi(w_0) \sim \mathcal N(0, \sigma^2 I)`, where
:math:`\phi` is the true potential. This module measures how Gaussian the dual change of a
*hypothesised* potential :math:`\psi` is. It is the NumPy float64 analysis layer: every function
accepts NumPy arrays, lists or torch tensors (any shape; flattened) and computes in float64.

Conventions
-----------
* ``before`` is :math:`w_0`, ``after`` is :math:`w`; :math:`\Delta = \nabla\psi(w) - \nabla\psi(w_0)`
  (after minus before), element-wise and flattened.
* A sign-preserving potential (``potential.preserves_sign``; negative entropy, NE, whose dual
  weight is :math:`\mathrm{sign}(w)(\log|w| + 1)`) only describes synapses whose sign is fixed
  and non-zero. :func:`dual_change` (and everything built on it) **raises**
  :class:`~syngeo.errors.DomainError` for such a potential when any weight is 0 or changes sign,
  with the counts, rather than returning a number with no meaning;
  :func:`syngeo.inference.infer_geometry` reports such data as "NE ruled out".
* **Sign changes and zeros** (:func:`sign_changes`, the one definition in the package): a *sign
  flip* is a synapse that goes from strictly positive to strictly negative or back
  (``before * after < 0``). A weight that goes to or from exactly 0 is **not** a flip: it is
  counted in ``n_zero_before`` / ``n_zero_after`` instead (a synapse 0 before and after is
  counted in both). Both kinds rule out a sign-preserving potential. ``-0.0`` is 0.
* Standardisation follows the paper: :math:`z = \Delta / \mathrm{std}(\Delta)` *without centring*
  (the change is predicted to be zero-mean); ``std`` is the population standard deviation
  (``ddof=0``). The centred variant uses :math:`(\Delta - \bar\Delta)/\mathrm{std}(\Delta)`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import scipy.special
import scipy.stats

from syngeo.errors import DomainError, InputError, InputTypeError
from syngeo.potentials import PotentialLike
from syngeo.potentials import potential as as_potential
from syngeo.validation import as_generator, as_positive_int

__all__ = [
    "AndersonDarlingResult",
    "GaussianityResult",
    "SignChanges",
    "StatTestResult",
    "as_weight_pair",
    "as_weights",
    "cdf_distance",
    "cdf_grid",
    "change_magnitude",
    "count_at_or_below",
    "dual_change",
    "gaussian_null",
    "gaussianity",
    "gaussianity_of_change",
    "sign_changes",
    "standardised_cdf_distance",
]

#: The paper's grid: 1000 points on [-5, 5] (so 999 Riemann terms).
DEFAULT_GRID: tuple[float, float, int] = (-5.0, 5.0, 1000)
#: Shapiro–Wilk is run on a random subsample of at most this many values (scipy's p-value is
#: only accurate up to about 5000).
SHAPIRO_MAX_N = 5000
#: Elements per chunk in the streaming kernels (keeps temporaries in cache).
_CHUNK = 1 << 15


# ------------------------------------------------------------------------------------------------
# input handling
# ------------------------------------------------------------------------------------------------
def as_weights(x: Any, name: str = "weights") -> np.ndarray:
    """Return ``x`` as a flat float64 NumPy array, checking that it is non-empty and finite.

    Accepts NumPy arrays, (nested) lists, scalars and torch tensors (detached, moved to CPU).

    Raises
    ------
    InputTypeError
        If ``x`` cannot be read as numbers.
    InputError
        If ``x`` is empty or holds NaN/inf (the message counts them).

    Examples
    --------
    >>> as_weights([[1, 2], [3, 4]]).tolist()
    [1.0, 2.0, 3.0, 4.0]
    """
    if hasattr(x, "detach") and hasattr(x, "cpu"):  # torch.Tensor without importing torch here
        x = x.detach().cpu().double().numpy()
    try:
        a = np.asarray(x, dtype=np.float64).ravel()
    except (TypeError, ValueError) as exc:
        raise InputTypeError(
            f"{name} must be numbers (a NumPy array, list or torch tensor), got "
            f"{type(x).__name__}: {exc}"
        ) from None
    if a.size == 0:
        raise InputError(f"{name} is empty: pass at least one weight")
    finite = np.isfinite(a)
    if not finite.all():
        n_nan = int(np.isnan(a).sum())
        n_inf = int(a.size - finite.sum() - n_nan)
        raise InputError(
            f"{name} holds non-finite values ({n_nan} NaN, {n_inf} inf of {a.size}); "
            "drop or fix those synapses first"
        )
    return a


def as_weight_pair(before: Any, after: Any) -> tuple[np.ndarray, np.ndarray]:
    """``before`` and ``after`` as flat float64 arrays of the same synapses (:func:`as_weights`).

    Raises
    ------
    InputError
        If either is empty or non-finite, or their lengths differ.

    Examples
    --------
    >>> b, a = as_weight_pair([1, 2], [[1.5], [2.5]])
    >>> b.tolist(), a.tolist()
    ([1.0, 2.0], [1.5, 2.5])
    """
    b = as_weights(before, "BEFORE")
    a = as_weights(after, "AFTER")
    if b.shape != a.shape:
        raise InputError(
            f"BEFORE and AFTER must hold the same synapses: got {b.size} and {a.size} weights; "
            "pass matching arrays (same order, same length)"
        )
    return b, a


@dataclass(frozen=True)
class SignChanges:
    """Counts of the synapses that a sign-preserving potential (NE) cannot describe.

    Attributes
    ----------
    n : int
        Number of synapses.
    n_sign_flips : int
        Synapses with ``before * after < 0`` (strictly positive to strictly negative or back). A
        weight that goes to or from exactly 0 is not a flip (module docstring).
    n_zero_before, n_zero_after : int
        Synapses that are exactly 0 before / after (a synapse 0 in both counts in both).
    """

    n: int
    n_sign_flips: int
    n_zero_before: int
    n_zero_after: int

    @property
    def ne_valid(self) -> bool:
        """True when every weight is non-zero and keeps its sign (a sign-preserving potential
        such as NE is applicable)."""
        return self.n_sign_flips == 0 and self.n_zero_before == 0 and self.n_zero_after == 0

    def reason(self) -> str | None:
        """Why NE is ruled out (``None`` when it is not)."""
        if self.ne_valid:
            return None
        parts = []
        if self.n_sign_flips:
            parts.append(f"{self.n_sign_flips} of {self.n} weights change sign")
        if self.n_zero_before:
            parts.append(f"{self.n_zero_before} of {self.n} weights in BEFORE are 0")
        if self.n_zero_after:
            parts.append(f"{self.n_zero_after} of {self.n} weights in AFTER are 0")
        return (
            "negative entropy (multiplicative, sign-preserving plasticity) needs non-zero weights "
            "that keep their sign: " + "; ".join(parts)
        )

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ne_valid": self.ne_valid}


def sign_changes(before: Any, after: Any) -> SignChanges:
    """Count sign flips and zeros between ``before`` and ``after`` (the NE validity check).

    A flip is ``before * after < 0``; going to or from exactly 0 is counted as a zero, not as a
    flip (module docstring).

    Examples
    --------
    >>> sign_changes([1.0, -2.0, 0.5, 0.0], [0.8, 1.0, 0.0, -1.0])
    SignChanges(n=4, n_sign_flips=1, n_zero_before=1, n_zero_after=1)
    """
    b, a = as_weight_pair(before, after)
    zero_b, zero_a = b == 0, a == 0
    return SignChanges(
        n=int(b.size),
        n_sign_flips=int(np.count_nonzero((np.signbit(b) != np.signbit(a)) & ~zero_b & ~zero_a)),
        n_zero_before=int(np.count_nonzero(zero_b)),
        n_zero_after=int(np.count_nonzero(zero_a)),
    )


# ------------------------------------------------------------------------------------------------
# dual change and magnitude
# ------------------------------------------------------------------------------------------------
def dual_change(before: Any, after: Any, potential: PotentialLike) -> np.ndarray:
    r"""The change of the dual weights, :math:`\Delta = \nabla\psi(w) - \nabla\psi(w_0)`.

    Parameters
    ----------
    before, after : array-like, shape=[...]
        Weights :math:`w_0` and :math:`w` of the same synapses (any shape; flattened).
    potential : Potential or str or float
        The hypothesised potential :math:`\psi` (``"ne"``, ``"3-norm"``, ``2.5``, ...).

    Returns
    -------
    numpy.ndarray, shape=[n], float64
        Element-wise :math:`\nabla\psi(w_i) - \nabla\psi(w_{0,i})`. For ``PNorm(p)`` that is
        :math:`\mathrm{sign}(w)|w|^{p-1} - \mathrm{sign}(w_0)|w_0|^{p-1}`; for NE
        :math:`\mathrm{sign}(w)(\log|w| + 1) - \mathrm{sign}(w_0)(\log|w_0| + 1)`.

    Raises
    ------
    DomainError
        For a sign-preserving potential (NE) when a weight is 0 or changes sign (NE cannot
        produce such data).
    InputError
        For mismatched lengths or non-finite weights.

    Examples
    --------
    >>> dual_change([1.0, 2.0], [1.5, 1.0], "2-norm").tolist()
    [0.5, -1.0]
    >>> dual_change([1.0, -1.0], [2.0, -2.0], "3-norm").tolist()
    [3.0, -3.0]
    """
    b, a = as_weight_pair(before, after)
    psi = as_potential(potential)
    if psi.preserves_sign:
        sc = sign_changes(b, a)
        if not sc.ne_valid:
            raise DomainError(f"{sc.reason()}; drop those synapses or use a p-norm")
    return np.asarray(psi.grad(a), dtype=np.float64) - np.asarray(psi.grad(b), dtype=np.float64)


def change_magnitude(before: Any, after: Any, potential: PotentialLike) -> float:
    r"""Relative size of the dual change, :math:`\|\Delta\| / \|\nabla\psi(w_0)\|` (docs/theory.md §2).

    The theory assumes *lazy* learning: a dual change small next to the dual weights (the paper
    measured < 0.2 when finetuning, < 0.02 for NE). Euclidean norms over all synapses. This is
    the package's one definition of the change magnitude (:func:`syngeo.simulate_learning` and
    the applications call it).

    Raises
    ------
    InputError
        If :math:`\nabla\psi(w_0) = 0` (all initial weights 0), besides the checks of
        :func:`dual_change`.

    Examples
    --------
    >>> change_magnitude([3.0, 4.0], [3.0, 4.5], "2-norm")
    0.1
    """
    b, a = as_weight_pair(before, after)
    psi = as_potential(potential)
    delta = dual_change(b, a, psi)
    ref = float(np.linalg.norm(np.asarray(psi.grad(b), dtype=np.float64)))
    if ref == 0.0:
        raise InputError(
            "change magnitude needs non-zero dual weights before learning, but every weight in "
            "BEFORE maps to 0; check that BEFORE is not all zeros"
        )
    return float(np.linalg.norm(delta)) / ref


# ------------------------------------------------------------------------------------------------
# the paper's CDF distance
# ------------------------------------------------------------------------------------------------
def cdf_grid(grid: tuple[float, float, int] = DEFAULT_GRID) -> np.ndarray:
    """The evaluation points ``linspace(low, high, num)`` of a ``(low, high, num)`` grid, checked.

    Examples
    --------
    >>> cdf_grid((-1, 1, 5)).tolist()
    [-1.0, -0.5, 0.0, 0.5, 1.0]
    """
    try:
        lo, hi, num = grid
    except (TypeError, ValueError):
        raise InputTypeError(f"grid must be a tuple (low, high, num), got {grid!r}") from None
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise InputError(f"grid needs finite low < high, got low={lo!r}, high={hi!r}")
    if isinstance(num, bool) or int(num) != num or num < 2:
        raise InputError(f"grid needs an integer num >= 2 of points, got {num!r}")
    return np.linspace(float(lo), float(hi), int(num))


def count_at_or_below(
    x: np.ndarray,
    t: np.ndarray,
    shift: float = 0.0,
    scale: float = 1.0,
    weights: np.ndarray | None = None,
) -> np.ndarray:
    """counts[j] = Σ_i weight_i·[(x_i − shift)/scale ≤ t_j] for a uniform grid ``t``, in O(n).

    The kernel of :func:`cdf_distance` (``counts / n`` is the empirical CDF on the grid), public
    for estimators that reuse it, e.g. on bootstrap resamples given as count ``weights``. ``x``
    and ``weights`` are float64 arrays and ``t`` a :func:`cdf_grid`; nothing is checked (hot path).

    With z = (x − shift)/scale computed exactly as a direct implementation would, each value gets
    the index j* of the first grid point ≥ z; a bincount of those indices and a cumulative sum
    give the counts. j* is found arithmetically: k = ceil((z − t_0)/h − 1e-6) is j* or j* − 1
    (the float error of (z − t_0)/h and of linspace is ~1e-13 ≪ 1e-6), and one comparison with
    the float64 grid, ``z > t_k``, settles it exactly. Weights default to 1 (integer counts).
    Works chunk by chunk in preallocated, cache-sized buffers.
    """
    m = t.size
    lo, step = t[0], (t[-1] - t[0]) / (m - 1)
    inv, offset = 1.0 / step, -lo / step - 1e-6
    upper = np.append(t, np.inf)  # upper[k] = t_k, with t_m = +inf (beyond the grid)
    counts = np.zeros(m + 1, dtype=np.int64 if weights is None else np.float64)
    size = min(_CHUNK, x.size)
    z_buf, k_buf = np.empty(size), np.empty(size)
    i_buf, b_buf = np.empty(size, dtype=np.intp), np.empty(size, dtype=bool)
    for start in range(0, x.size, _CHUNK):
        xc = x[start : start + _CHUNK]
        n = xc.size
        z, k, idx, flag = z_buf[:n], k_buf[:n], i_buf[:n], b_buf[:n]
        if shift:
            np.subtract(xc, shift, out=z)
            np.divide(z, scale, out=z)
        else:
            np.divide(xc, scale, out=z)
        np.multiply(z, inv, out=k)
        k += offset
        np.ceil(k, out=k)
        np.clip(k, 0, m, out=k)
        np.copyto(idx, k, casting="unsafe")
        np.take(upper, idx, out=k)
        np.greater(z, k, out=flag)
        idx += flag
        w = None if weights is None else weights[start : start + _CHUNK]
        counts += np.bincount(idx, weights=w, minlength=m + 1)
    return np.cumsum(counts)[:m]


def cdf_distance(
    delta: Any,
    *,
    centred: bool = False,
    grid: tuple[float, float, int] = DEFAULT_GRID,
) -> float:
    r"""The paper's distance between the standardised change and a standard normal (docs/theory.md §3).

    .. math::

        z = \Delta / \mathrm{std}(\Delta), \qquad
        d = \sum_{j=0}^{m-2} |\hat F_z(t_j) - \Phi(t_j)|\,(t_{j+1} - t_j),
        \quad t = \mathrm{linspace}(-5, 5, m{=}1000)

    where :math:`\hat F_z(t) = \#\{i : z_i \le t\}/n` is the empirical CDF. ``centred=True``
    uses :math:`z = (\Delta - \bar\Delta)/\mathrm{std}(\Delta)`. ``std`` has ``ddof=0``. d is a
    left Riemann sum of :math:`\int|\hat F - \Phi|` (an L1 / Wasserstein-1-type distance), 0 for a
    perfect Gaussian and invariant to rescaling :math:`\Delta` by a positive factor.

    Runs in O(n + m) time (binned counts on the uniform grid, no sort) and O(chunk) extra memory.

    Parameters
    ----------
    delta : array-like
        The dual change (any shape; flattened).
    centred : bool
        Subtract the mean before standardising.
    grid : (low, high, num)
        The evaluation grid (the paper's ``(-5, 5, 1000)`` by default).

    Raises
    ------
    InputError
        If ``delta`` is empty, non-finite or constant (std 0).

    Examples
    --------
    >>> import numpy as np, scipy.stats
    >>> z = scipy.stats.norm.ppf((np.arange(100_000) + 0.5) / 100_000)
    >>> cdf_distance(z) < 1e-3
    True
    >>> round(cdf_distance(np.ones(10) + np.arange(10) * 1e-9), 1)  # all z > 5: d = sum of Phi(t_j) dt = 5
    5.0
    """
    x = as_weights(delta, "the dual change")
    t = cdf_grid(grid)
    mean = float(np.mean(x))
    std = float(np.std(x))
    if not std > 0:
        raise InputError(
            f"the dual change is constant ({x.size} values, all {x[0]:g}); its Gaussianity is "
            "undefined — check that BEFORE and AFTER differ"
        )
    return standardised_cdf_distance(x, t, mean if centred else 0.0, std)


def standardised_cdf_distance(x: np.ndarray, t: np.ndarray, shift: float, scale: float) -> float:
    """The CDF distance of ``z = (x − shift)/scale`` on the grid points ``t`` (no checks).

    :func:`cdf_distance` with the moments supplied, for callers that already have them
    (``shift = 0, scale = std(x)`` is the paper's uncentred statistic).
    """
    ecdf = count_at_or_below(x, t, shift, scale) / x.size
    phi = scipy.stats.norm.cdf(t)
    return float(np.sum(np.abs(ecdf[:-1] - phi[:-1]) * np.diff(t)))


# ------------------------------------------------------------------------------------------------
# the null distribution of a statistic, simulated from Gaussian samples
# ------------------------------------------------------------------------------------------------
def _ks_rows(x: np.ndarray) -> np.ndarray:
    """KS distance of each row, *centred* and standardised by its own mean and std, to N(0, 1)
    (vectorised).

    Lilliefors' statistic: both moments estimated from the row. Not the ``ks`` of
    :class:`GaussianityResult` (nor the ranking's ``ks_statistic``), which leaves Δ uncentred,
    as the paper does, because the theory predicts a zero-mean change; on a change with a mean
    the two differ.
    """
    m = x.shape[1]
    z = np.sort((x - x.mean(axis=1, keepdims=True)) / x.std(axis=1, keepdims=True), axis=1)
    f = scipy.special.ndtr(z)  # Φ, without scipy.stats' argument handling
    i = np.arange(1, m + 1)
    return np.maximum(np.max(i / m - f, axis=1), np.max(f - (i - 1) / m, axis=1))


def _cdf_rows(x: np.ndarray) -> np.ndarray:
    """The paper's uncentred CDF distance of each row (:func:`cdf_distance`)."""
    t = cdf_grid()
    return np.array([standardised_cdf_distance(row, t, 0.0, float(np.std(row))) for row in x])


#: The statistics :func:`gaussian_null` simulates: rows of samples -> one value per row.
_NULL_STATISTICS = {"ks": _ks_rows, "cdf": _cdf_rows}


def gaussian_null(statistic: str, n: int, *, draws: int = 199, rng: Any = 0) -> np.ndarray:
    """The statistic of ``draws`` Gaussian samples of size ``n``: its null distribution.

    ``statistic`` is ``"ks"`` (centred and standardised by the sample's own mean and std, i.e.
    Lilliefors' null; not the uncentred ``ks`` of :func:`gaussianity_of_change`) or ``"cdf"``
    (the paper's uncentred CDF distance, the "Gaussian floor": the level of
    :func:`cdf_distance` an exactly Gaussian sample of this size reaches by chance). Sample
    after sample from ``rng`` (an integer seed, or a ``Generator`` whose stream continues), in
    blocks of rows (one array operation per block): the draws are those of ``draws`` calls of
    ``rng.standard_normal(n)``.

    Examples
    --------
    >>> null = gaussian_null("ks", 1000, draws=199, rng=0)
    >>> # Lilliefors (1967): 95 % of these stay below 0.886 / sqrt(n) = 0.028 (±0.002 with 199 draws)
    >>> 0.026 < float(np.quantile(null, 0.95)) < 0.032
    True
    """
    if statistic not in _NULL_STATISTICS:
        raise InputError(
            f"unknown statistic {statistic!r}: use one of {', '.join(_NULL_STATISTICS)}"
        )
    n = as_positive_int(n, "n")
    draws = as_positive_int(draws, "draws")
    gen = as_generator(rng)
    block = max(1, min(draws, 2_000_000 // n))
    out = [
        _NULL_STATISTICS[statistic](gen.standard_normal((min(block, draws - s), n)))
        for s in range(0, draws, block)
    ]
    return np.concatenate(out)


# ------------------------------------------------------------------------------------------------
# the full Gaussianity report
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class StatTestResult:
    """A test statistic with its p-value (``scipy.stats`` style)."""

    statistic: float
    pvalue: float

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


@dataclass(frozen=True)
class AndersonDarlingResult:
    """Anderson–Darling test for normality with estimated mean and variance.

    ``pvalue`` is interpolated from scipy's tables (``method="interpolate"``), so it is clipped to
    the tabulated range [0.01, 0.15] and beyond.
    """

    statistic: float
    pvalue: float

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def _anderson(x: np.ndarray) -> AndersonDarlingResult:
    try:
        res = scipy.stats.anderson(x, "norm", method="interpolate")
        pvalue = float(res.pvalue)
    except TypeError:  # scipy < 1.17: no method argument and no p-value
        res = scipy.stats.anderson(x, "norm")
        pvalue = float("nan")
    return AndersonDarlingResult(statistic=float(res.statistic), pvalue=pvalue)


@dataclass(frozen=True)
class GaussianityResult:
    r"""How Gaussian a dual change is.

    Attributes
    ----------
    potential : str
        Name of the potential whose dual change was tested (``""`` when Δ was given directly).
    n : int
        Number of synapses.
    cdf_distance, cdf_distance_centred : float
        The paper's distance (:func:`cdf_distance`) without / with centring.
    ks : StatTestResult
        Kolmogorov–Smirnov test of :math:`z = \Delta/\hat\sigma` (uncentred, as the paper)
        against N(0, 1) via ``scipy.stats.kstest``. σ̂ is estimated from the data, so the p-value
        is conservative (Lilliefors); use it as a descriptive number. Not the centred KS of
        :func:`gaussian_null` (``"ks"``, the goodness-of-fit test of
        :func:`syngeo.diagnostics.dual_gaussianity_test`), which subtracts the sample mean too.
    anderson : AndersonDarlingResult
        ``scipy.stats.anderson(Δ, "norm")`` (mean and variance estimated).
    shapiro : StatTestResult
        ``scipy.stats.shapiro`` on a random subsample of at most 5000 values.
    shapiro_n : int
        Size of that subsample.
    change_magnitude : float
        :math:`\|\Delta\|/\|\nabla\psi(w_0)\|` (NaN when Δ was given directly).
    mean, std, skewness, excess_kurtosis : float
        Moments of Δ (``std`` with ddof=0; skewness and kurtosis from ``scipy.stats``, biased
        estimators; excess kurtosis is 0 for a Gaussian).
    """

    potential: str
    n: int
    cdf_distance: float
    cdf_distance_centred: float
    ks: StatTestResult
    anderson: AndersonDarlingResult
    shapiro: StatTestResult
    shapiro_n: int
    change_magnitude: float
    mean: float
    std: float
    skewness: float
    excess_kurtosis: float

    def to_dict(self) -> dict[str, Any]:
        """Flat dictionary of plain Python values (test results nested as dicts)."""
        return asdict(self)

    def __repr__(self) -> str:
        name = f" {self.potential}" if self.potential else ""
        return (
            f"GaussianityResult({name.strip() or 'Δ'}: n={self.n}, "
            f"cdf_distance={self.cdf_distance:.4g} (centred {self.cdf_distance_centred:.4g}), "
            f"KS={self.ks.statistic:.4g} (p={self.ks.pvalue:.3g}), "
            f"AD={self.anderson.statistic:.4g} (p={self.anderson.pvalue:.3g}), "
            f"SW p={self.shapiro.pvalue:.3g}, magnitude={self.change_magnitude:.3g}, "
            f"mean={self.mean:.3g}, std={self.std:.3g}, skew={self.skewness:.3g}, "
            f"ex.kurt={self.excess_kurtosis:.3g})"
        )


def gaussianity_of_change(
    delta: Any,
    *,
    rng: Any = None,
    grid: tuple[float, float, int] = DEFAULT_GRID,
    potential_name: str = "",
    magnitude: float = float("nan"),
) -> GaussianityResult:
    r"""Gaussianity statistics of an already computed dual change :math:`\Delta`.

    Parameters
    ----------
    delta : array-like
        The dual change (flattened). Needs at least 3 values and a non-zero spread.
    rng : numpy.random.Generator or int or None
        Draws the Shapiro–Wilk subsample when there are more than 5000 values.
    grid : (low, high, num)
        Grid of :func:`cdf_distance`.

    Examples
    --------
    >>> import numpy as np
    >>> res = gaussianity_of_change(np.random.default_rng(0).normal(size=2000), rng=0)
    >>> res.cdf_distance < 0.05 and res.ks.pvalue > 0.01
    True
    """
    x = as_weights(delta, "the dual change")
    if x.size < 3:
        raise InputError(f"Gaussianity needs at least 3 values, got {x.size}")
    t = cdf_grid(grid)
    mean, std = float(np.mean(x)), float(np.std(x))
    if not std > 0:
        raise InputError(
            f"the dual change is constant ({x.size} values, all {x[0]:g}); its Gaussianity is "
            "undefined — check that BEFORE and AFTER differ"
        )
    gen = as_generator(rng)
    ks = scipy.stats.kstest(x / std, "norm")
    sub = x if x.size <= SHAPIRO_MAX_N else gen.choice(x, size=SHAPIRO_MAX_N, replace=False)
    sw = scipy.stats.shapiro(sub)
    return GaussianityResult(
        potential=potential_name,
        n=int(x.size),
        cdf_distance=standardised_cdf_distance(x, t, 0.0, std),
        cdf_distance_centred=standardised_cdf_distance(x, t, mean, std),
        ks=StatTestResult(float(ks.statistic), float(ks.pvalue)),
        anderson=_anderson(x),
        shapiro=StatTestResult(float(sw.statistic), float(sw.pvalue)),
        shapiro_n=int(sub.size),
        change_magnitude=float(magnitude),
        mean=mean,
        std=std,
        skewness=float(scipy.stats.skew(x)),
        excess_kurtosis=float(scipy.stats.kurtosis(x, fisher=True)),
    )


def gaussianity(
    before: Any,
    after: Any,
    potential: PotentialLike,
    *,
    rng: Any = None,
    grid: tuple[float, float, int] = DEFAULT_GRID,
) -> GaussianityResult:
    r"""How Gaussian the dual change of ``potential`` is, from weights before and after learning.

    Computes :math:`\Delta = \nabla\psi(w) - \nabla\psi(w_0)` (:func:`dual_change`) and returns
    :func:`gaussianity_of_change` of it, with the change magnitude filled in.

    Examples
    --------
    >>> import numpy as np
    >>> g = np.random.default_rng(1)
    >>> w0 = g.normal(0, 0.1, 5000)
    >>> u = np.sign(w0) * w0**2 + 0.001 * g.normal(size=5000)  # Gaussian change in 3-norm duals
    >>> w = np.sign(u) * np.abs(u) ** 0.5
    >>> gaussianity(w0, w, "3-norm", rng=0).cdf_distance < gaussianity(w0, w, "2-norm", rng=0).cdf_distance
    True
    """
    b, a = as_weight_pair(before, after)
    psi = as_potential(potential)
    delta = dual_change(b, a, psi)
    return gaussianity_of_change(
        delta,
        rng=rng,
        grid=grid,
        potential_name=psi.name,
        magnitude=change_magnitude(b, a, psi),
    )
