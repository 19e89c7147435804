r"""Infer the plasticity geometry from synaptic weights before and after learning (docs/theory.md §3).

The theory (§2) predicts that the dual change of the *true* potential,
:math:`\Delta_\phi = \nabla\phi(w) - \nabla\phi(w_0)`, is i.i.d. Gaussian. Two estimators rank
hypothesised potentials :math:`\psi` — by default negative entropy (NE) and the p-norms, but any
object with the :class:`~syngeo.Potential` protocol is a valid candidate:

:class:`CdfEstimator` (``estimator="cdf"``, the paper's)
    The candidate whose dual change has the smallest CDF distance to a Gaussian
    (:func:`syngeo.gaussianity.cdf_distance`, uncentred). Scores of different candidates are
    distances of different transformed samples, so they rank but do not weigh evidence.

:class:`LikelihoodEstimator` (``estimator="likelihood"``, default)
    The likelihood of the observed ``after`` weights under the model
    :math:`\nabla\psi(w_i) = \nabla\psi(w_{0,i}) + \xi_i`, :math:`\xi_i \sim \mathcal N(\mu, \sigma^2)`
    i.i.d. By the change of variables :math:`w \mapsto \nabla\psi(w)` (a bijection of the real line
    for a p-norm, of the half-line of :math:`\mathrm{sign}(w_0)` for a sign-preserving potential
    such as NE) the density of :math:`w_i` given :math:`w_{0,i}` is

    .. math::

        f_\psi(w_i \mid w_{0,i}) = \mathcal N\big(\nabla\psi(w_i) - \nabla\psi(w_{0,i});\,
            \mu, \sigma^2\big)\; \psi''(w_i),

    where :math:`\psi''` (:meth:`~syngeo.Potential.hessian_diag`; :math:`(p-1)|w|^{p-2}` for a
    p-norm, :math:`1/|w|` for NE) is the Jacobian of the mirror map. With the MLEs
    :math:`\hat\mu = \bar\Delta`, :math:`\hat\sigma^2 = \overline{(\Delta - \hat\mu)^2}` the profile
    log-likelihood is

    .. math::

        \ell(\psi) = -\tfrac n2\big(\log(2\pi\hat\sigma^2) + 1\big) + \sum_i \log\psi''(w_i).

    Every candidate is a density of the same data in the same (weight) space, so log-likelihoods
    compare directly. :math:`\mu` is fitted (a global drift — net potentiation, homeostatic
    scaling — is common in data; it costs one parameter shared by all candidates and so does not
    change comparisons); ``fit_mean=False`` fixes :math:`\mu = 0` as the theory states. A
    candidate's family parameter (:attr:`~syngeo.Potential.parameter`, p for the p-norms) is
    continuous: the profile likelihood is maximised over it (bounded Brent) and the
    likelihood-ratio interval :math:`\{p : 2(\hat\ell - \ell(p)) \le \chi^2_{1}(c)\}` gives a
    confidence interval. Candidates are compared by AIC :math:`= 2k - 2\ell` with :math:`k = 2`
    (μ, σ) plus 1 for the parameter when it is chosen from the data (more than one member of the
    family among the candidates, or ``refine=True``).

Each estimator has the same four methods — ``score`` (one candidate), ``refine`` (its family
parameter), ``interval`` (for that parameter) and ``bootstrap`` (scores on resampled synapses) —
and :func:`infer_geometry` is a short orchestration of them over a :class:`PreparedChange` (the
weights with ``log|w|`` computed once, shared by all candidates).

Limitations
-----------
* The likelihood assumes the weights are measured exactly unless ``noise`` is given
  (:class:`NoisyLikelihoodEstimator`, :mod:`syngeo.noise`: the errors-in-variables likelihood,
  docs/inference.md "Measurement noise"). For p < 2 the Jacobian
  :math:`(p-1)|w|^{p-2}` diverges at 0, so measurement noise on weights near 0 (or exact zeros)
  can dominate :math:`\ell`. Synapses with ``after == 0`` are a point mass outside the continuous
  model: they are left out of the likelihood (the same subset for every candidate, so comparisons
  stay fair) and a warning says how many. The bootstrap intervals need no such assumption.
* The likelihood-ratio interval is asymptotic and assumes one maximum in p inside the bounds
  (1.01, 6); an interval reaching a bound is reported as open there.
* A sign-preserving candidate (NE) describes only synapses that keep a non-zero sign; any sign
  flip or zero rules it out (:func:`syngeo.gaussianity.sign_changes`).

Examples
--------
>>> import numpy as np
>>> from syngeo.inference import infer_geometry
>>> g = np.random.default_rng(0)
>>> w0 = g.normal(0, 0.1, 3000)
>>> u = np.sign(w0) * w0**2 + 0.1 * 0.01 * g.normal(size=3000)   # Gaussian change in 3-norm duals
>>> w = np.sign(u) * np.abs(u) ** 0.5
>>> fit = infer_geometry(w0, w, n_bootstrap=0, rng=0)
>>> fit.best_p is not None and abs(fit.best_p - 3) < 0.2
True
"""

from __future__ import annotations

import concurrent.futures
import math
import textwrap
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import scipy.optimize
import scipy.stats

from syngeo.errors import DomainError, InputError, InputTypeError
from syngeo.gaussianity import (
    DEFAULT_GRID,
    as_weight_pair,
    cdf_grid,
    count_at_or_below,
    sign_changes,
)
from syngeo.potentials import NegativeEntropy, PNorm, Potential, PotentialLike
from syngeo.potentials import potential as as_potential
from syngeo.validation import (
    as_generator,
    as_nonnegative_int,
    as_positive_float,
    as_probability,
)

__all__ = [
    "ESTIMATORS",
    "MIN_SYNAPSES",
    "BootstrapResamples",
    "CdfEstimator",
    "ConfidenceInterval",
    "DualMoments",
    "GeometryFit",
    "LikelihoodEstimator",
    "LikelihoodResult",
    "NoisyLikelihoodEstimator",
    "PreparedChange",
    "binned_cdf_distances",
    "bootstrap_parameter",
    "change_log_likelihood",
    "default_candidates",
    "dual_gaussian_log_density",
    "infer_geometry",
    "percentile_interval",
]

#: The two estimators.
ESTIMATORS = ("likelihood", "cdf")
#: Fewer synapses than this is an error: the Gaussianity statistics are meaningless below it.
MIN_SYNAPSES = 50
#: Fewer synapses than this gives a warning (the recovery study shows unreliable answers).
FEW_SYNAPSES = 300
#: Change magnitude above which learning may not be lazy (docs/theory.md §2; the paper saw < 0.2).
LAZY_MAGNITUDE = 0.2
#: KS statistics in the ranking use at most this many synapses (a fixed random subsample).
KS_MAX_N = 100_000
#: Half-width and step of the fine p grid used by the cdf refinement and the bootstrap.
FINE_STEP = 0.01
BOOT_HALF_WIDTH = 0.15
#: The bootstrap zooms in (:func:`bootstrap_parameter`) until its percentile interval spans at
#: least this many steps of the parameter grid, ...
BOOT_RESOLUTION_STEPS = 10
#: ... with this many points per zoomed grid, ...
BOOT_ZOOM_POINTS = 25
#: ... at most this many times, and not below this step.
BOOT_MAX_ZOOMS = 4
BOOT_MIN_STEP = 1e-5
#: Bootstrap count vectors are stored (1 byte per synapse and resample) up to this size.
BOOT_STORE_BYTES = 200_000_000
#: Elements per chunk in the streaming kernels (keeps temporaries in cache).
_CHUNK = 1 << 15
#: Elements per block of the threaded kernels (:func:`_map_blocks`): 32 chunks.
_BLOCK = 1 << 20
#: The one-pass variance s₂/n − μ² is kept when it exceeds this fraction of μ² (error bound in
#: :meth:`PreparedChange.dual`); below, a second, exact pass.
_ONE_PASS_VAR = 1e-2


def default_candidates() -> list[Potential]:
    """NE and the p-norms p = 1.1, 1.2, …, 3.0 (the paper's 21 candidates).

    Examples
    --------
    >>> [c.name for c in default_candidates()][:3]
    ['NE', '1.1-norm', '1.2-norm']
    """
    return [NegativeEntropy()] + [PNorm(round(1.0 + 0.1 * k, 10)) for k in range(1, 21)]


# ------------------------------------------------------------------------------------------------
# prepared data and the streaming dual kernel
# ------------------------------------------------------------------------------------------------
def _dot(x: np.ndarray, y: np.ndarray) -> float:
    # einsum, not BLAS: multithreaded BLAS level-1 calls stall on a busy machine
    return float(np.einsum("i,i->", x, y))


def _gemv(m: np.ndarray, x: np.ndarray) -> np.ndarray:
    return np.einsum("ij,j->i", m, x)


def _var(x: Any, mean: float) -> float:
    """Population variance Σ(x − mean)²/n in cache-sized chunks (no n-sized temporary); a torch
    tensor is reduced in torch on its device."""
    if _is_tensor(x):
        c = x - mean
        return float(_torch_dot(c, c)) / x.numel()

    def part(lo: int, hi: int) -> float:
        buf = np.empty(min(_CHUNK, hi - lo))
        acc = 0.0
        for s in range(lo, hi, _CHUNK):
            c = buf[: min(_CHUNK, hi - s)]
            np.subtract(x[s : s + c.size], mean, out=c)
            acc += _dot(c, c)
        return acc

    return sum(_map_blocks(x.size, part)) / x.size


def _map_blocks(n: int, fn: Any) -> list:
    """``[fn(lo, hi)]`` over consecutive blocks of :data:`_BLOCK` of range(n), in block order.

    Blocks run on as many threads as torch's intra-op setting (:mod:`syngeo.threads`: 1 under
    ``limit_threads(1)``); NumPy releases the GIL inside its loops. Partial results are combined
    by the caller in block order, so the answer does not depend on the number of threads.
    """
    bounds = [(s, min(s + _BLOCK, n)) for s in range(0, n, _BLOCK)]
    import torch  # already loaded by syngeo.potentials

    workers = min(torch.get_num_threads(), len(bounds))
    if workers <= 1:
        return [fn(lo, hi) for lo, hi in bounds]
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        return list(pool.map(lambda b: fn(*b), bounds))


def _is_tensor(x: Any) -> bool:
    """A torch tensor (by its type's module: no import, no isinstance on an optional type)."""
    return type(x).__module__.split(".", 1)[0] == "torch"


def _host(x: Any) -> np.ndarray:
    """A NumPy array of ``x`` (a torch tensor is copied to the host)."""
    return x.detach().cpu().numpy() if _is_tensor(x) else x


def _numel(x: Any) -> int:
    return int(x.numel()) if _is_tensor(x) else int(x.size)


def _torch_dot(x: Any, y: Any) -> Any:
    """Σ x_i y_i of two 1-d torch tensors, as a 0-d tensor on their device."""
    import torch

    return torch.dot(x, y)


# ------------------------------------------------------------------------------------------------
# the CDF distance on the uniform grid, binned by arithmetic
# ------------------------------------------------------------------------------------------------
def _bin_index_constants(t: np.ndarray, scale: float, shift: float) -> tuple[float, float]:
    """(c1, c0) with y = x·c1 + c0 = (z − t_0)/h + 1 for z = (x − shift)/scale, h the grid step."""
    h = (t[-1] - t[0]) / (t.size - 1)
    c1 = 1.0 / (scale * h)
    return c1, 1.0 - t[0] / h - shift * c1


def _bin_counts_numpy(x: np.ndarray, t: np.ndarray, scale: float, shifts: Sequence[float]):
    """Per shift, counts[j] = #{i : first grid index with t_j ≥ z_i is j} (j = m: beyond)."""
    m = t.size
    consts = [_bin_index_constants(t, scale, s) for s in shifts]

    def part(lo: int, hi: int) -> list[np.ndarray]:
        counts = [np.zeros(m + 1, dtype=np.int64) for _ in shifts]
        size = min(_CHUNK, hi - lo)
        y_buf, i_buf = np.empty(size), np.empty(size, dtype=np.intp)
        for start in range(lo, hi, _CHUNK):
            xc = x[start : min(start + _CHUNK, hi)]
            y, idx = y_buf[: xc.size], i_buf[: xc.size]
            for acc, (c1, c0) in zip(counts, consts, strict=True):
                np.multiply(xc, c1, out=y)
                y += c0
                np.clip(y, 0.0, m, out=y)
                np.copyto(idx, y, casting="unsafe")  # truncation = floor on [0, m]
                acc += np.bincount(idx, minlength=m + 1)
        return counts

    parts = _map_blocks(x.size, part)
    return [sum(p[k] for p in parts) for k in range(len(shifts))]


def _bin_counts_torch(x: Any, t: np.ndarray, scale: float, shifts: Sequence[float]):
    import torch

    m = t.size
    out = []
    for s in shifts:
        c1, c0 = _bin_index_constants(t, scale, s)
        y = torch.mul(x, c1).add_(c0).clamp_(0.0, float(m))
        out.append(torch.bincount(y.to(torch.int64), minlength=m + 1).cpu().numpy())
    return out


def binned_cdf_distances(
    delta: Any, t: np.ndarray, scale: float, shifts: Sequence[float] = (0.0,)
) -> list[float]:
    r"""CDF distances of :math:`z = (\Delta - s)/\mathrm{scale}` for each shift ``s``, in one pass.

    The statistic of :func:`syngeo.gaussianity.standardised_cdf_distance` (docs/theory.md §3)
    with each value binned by arithmetic alone: :math:`y = \Delta c_1 + c_0 = (z - t_0)/h + 1`
    and the bin is :math:`\lfloor y \rfloor` clipped to [0, m] (two fewer passes than the exact
    kernel's comparison with the grid, and no divide). ``delta`` is a float64 NumPy array
    (chunked) or a torch tensor (reduced on its device).

    Exactness: the computed y is within :math:`4u(|\Delta c_1| + |c_0|) \le 1.4\cdot10^{-12}`
    of the exact :math:`(z - t_0)/h + 1` for z on the grid (u = 2⁻⁵³, |y| ≤ 1000 there), so
    only a value within :math:`1.4\cdot10^{-12}\,h` of a grid point can land in the bin next to
    the one :func:`~syngeo.gaussianity.count_at_or_below` gives it (a tie, where the exact kernel
    counts z = t_j as ≤ t_j and this one may not). Each such value moves one empirical-CDF point
    by 1/n and the distance by at most h/n, so
    :math:`|d - d_{\text{exact}}| \le N_{\text{tie}}\,h/n`; for continuous data
    :math:`E N_{\text{tie}} \approx 3\cdot10^{-12}\,n`, i.e. the two agree bit for bit in
    all but a negligible fraction of data sets (tested against the exact kernel).

    Examples
    --------
    >>> import numpy as np
    >>> from syngeo.gaussianity import cdf_grid, standardised_cdf_distance
    >>> x = np.random.default_rng(0).normal(size=10_000)
    >>> t = cdf_grid()
    >>> binned_cdf_distances(x, t, 1.0)[0] == standardised_cdf_distance(x, t, 0.0, 1.0)
    True
    """
    m = t.size
    kernel = _bin_counts_torch if _is_tensor(delta) else _bin_counts_numpy
    n = _numel(delta)
    phi = scipy.stats.norm.cdf(t)
    dt = np.diff(t)
    out = []
    for counts in kernel(delta, t, scale, shifts):
        ecdf = np.cumsum(counts)[:m] / n
        out.append(float(np.sum(np.abs(ecdf[:-1] - phi[:-1]) * dt)))
    return out


def _candidate_key(psi: Potential) -> tuple[str, float | None]:
    return psi.name, psi.parameter


class DualMoments(NamedTuple):
    """The dual change of one candidate on a :class:`PreparedChange` and its moments.

    ``delta`` is a view of the prepared data's work buffer, valid until the next
    :meth:`PreparedChange.dual` call (allocating 10^7 floats per candidate costs as much as
    computing them); copy it to keep it. On data prepared from torch tensors it is a float64
    tensor on their device.
    """

    delta: Any  # Δ = ∇ψ(after) − ∇ψ(before), shape [n] (ndarray, or tensor on the device)
    ref_sq: float  # ‖∇ψ(before)‖²
    mean: float  # mean of Δ
    var: float  # population variance of Δ

    @property
    def change_magnitude(self) -> float:
        r""":math:`\|\Delta\| / \|\nabla\psi(w_0)\|` from the moments (NaN if the reference is 0);
        equal to :func:`syngeo.gaussianity.change_magnitude` (tested)."""
        sq_norm = (self.var + self.mean * self.mean) * _numel(self.delta)
        return math.sqrt(sq_norm / self.ref_sq) if self.ref_sq > 0 else math.nan


@dataclass(frozen=True, eq=False)
class PreparedChange:
    """Weights before/after learning, prepared once for scoring many candidates.

    Build it with :meth:`from_weights`. ``log|w|`` is computed once; every candidate's dual
    change is then streamed chunk by chunk through :meth:`~syngeo.LocalPotential.grad_with_log_abs`
    (p-norms and NE skip the logarithm) and its log-Jacobian through
    :meth:`~syngeo.LocalPotential.hessian_power_law` (one Σ log|w| for all power-law Hessians).

    Prepared from torch tensors on an accelerator (any device but the CPU), or with ``device``
    given, the data also keep float64 copies of the weights on that device (:attr:`device`), and
    the per-candidate work — the dual change and its moments, the binned CDF distances, a
    non-power-law log-Jacobian — runs there in torch; the host copies serve the validation, the
    sign checks and the bootstrap. Tensors on the CPU take the NumPy path (a view, no copy):
    measured on 2.5·10⁷ weights, torch on the CPU took 6× the CPU time of the chunked NumPy
    kernels (whole-tensor temporaries, a slower float64 ``pow``).

    Attributes
    ----------
    before, after : numpy.ndarray, shape=[n]
    log_abs_before, log_abs_after : numpy.ndarray, shape=[n]
        ``log|w|`` (−inf at 0).
    like_mask : numpy.ndarray of bool or None
        Synapses in the likelihood (``after != 0``); None means all.
    n_like : int
        Synapses in the likelihood.
    sum_log_abs_after : float
        Σ log|after| over the likelihood synapses.
    ks_index : numpy.ndarray or None
        Fixed subsample of at most :data:`KS_MAX_N` synapses for the KS column; None = all.
    device : torch.device or None
        Where the per-candidate reductions run for torch input; None: NumPy on the host.
    """

    before: np.ndarray
    after: np.ndarray
    log_abs_before: np.ndarray
    log_abs_after: np.ndarray
    like_mask: np.ndarray | None
    n_like: int
    sum_log_abs_after: float
    ks_index: np.ndarray | None
    _work: np.ndarray = field(repr=False)
    _memo: dict = field(default_factory=dict, repr=False)
    _on_device: tuple | None = field(default=None, repr=False)  # (before, after, mask, ks index)

    @classmethod
    def from_weights(
        cls, before: Any, after: Any, rng: Any = None, *, device: Any = None
    ) -> PreparedChange:
        """Validate (:func:`~syngeo.gaussianity.as_weight_pair`) and prepare; ``rng`` draws the
        KS subsample when there are more than :data:`KS_MAX_N` synapses. ``device`` (a torch
        device or its name) runs the per-candidate work there in torch; None: the device of
        torch input unless it is the CPU, else NumPy."""
        b, a = as_weight_pair(before, after)
        return cls._from_arrays(b, a, as_generator(rng), (before, after), device)

    @classmethod
    def _from_arrays(
        cls,
        b: np.ndarray,
        a: np.ndarray,
        gen: np.random.Generator,
        inputs: tuple,
        device: Any = None,
    ) -> PreparedChange:
        """Prepare validated float64 host arrays ``b, a`` of the user's ``inputs`` (whose torch
        tensors, if any, say where the per-candidate work runs: :func:`_reduction_device`)."""
        target = _reduction_device(inputs, device)
        with np.errstate(divide="ignore"):
            lb = np.log(np.abs(b))
            la = np.log(np.abs(a))
        zero_after = a == 0
        mask = None if not zero_after.any() else ~zero_after
        n_like = int(a.size if mask is None else mask.sum())
        s = float(np.sum(la if mask is None else la[mask]))
        ks_index = None
        if a.size > KS_MAX_N:
            ks_index = np.sort(gen.choice(a.size, size=KS_MAX_N, replace=False))
        on_device = None
        if target is not None:
            on_device = _device_copies(target, *inputs, b, a, mask, ks_index)
        return cls(b, a, lb, la, mask, n_like, s, ks_index, np.empty_like(a), {}, on_device)

    @property
    def device(self) -> Any:
        """The torch device of the per-candidate reductions (None: NumPy on the host)."""
        return None if self._on_device is None else self._on_device[0].device

    def in_likelihood(self, x: Any) -> Any:
        """``x`` (per synapse, an array or a tensor on :attr:`device`) at the likelihood synapses."""
        if self.like_mask is None:
            return x
        return x[self._on_device[2]] if _is_tensor(x) else x[self.like_mask]

    def ks_sample(self, delta: Any) -> np.ndarray:
        """``delta`` at the KS subsample (:attr:`ks_index`), as a NumPy array."""
        if self.ks_index is None:
            return _host(delta)
        return _host(delta[self._on_device[3]]) if _is_tensor(delta) else delta[self.ks_index]

    @property
    def n(self) -> int:
        """Number of synapses."""
        return int(self.before.size)

    def dual(self, psi: Potential) -> DualMoments:
        """Δ = ∇ψ(after) − ∇ψ(before) with its mean, variance and ‖∇ψ(before)‖², in one pass.

        Chunk by chunk into the work buffer, accumulating Σ Δ and Σ Δ² on the way (with an exact
        second pass when the mean dominates the spread and the one-pass variance would lose
        digits). A Euclidean candidate is a plain subtraction. On torch data: whole tensors on
        :attr:`device`, the same moments.

        Blocks of :data:`_BLOCK` synapses run on torch's number of intra-op threads; their
        partial sums are added in block order, so the result does not depend on the threads.

        Accumulation error (float64, u = 2⁻⁵³): each chunk of C = 2¹⁵ terms is summed with
        error at most γ_C·Σ|x| (γ_k = ku/(1 − ku), recursive summation, the worst case of
        NumPy's unrolled kernels), the 32 chunk sums of a block and the ⌈n/2²⁰⌉ block sums in
        sequence, so every sum here is within γ_{C + 32 + n/2²⁰}·Σ|x_i| ≤ 3.8·10⁻¹²·Σ|x_i| for
        n ≤ 10⁹ (torch's tree reductions are tighter). Σ Δ² has only positive terms: relative
        error ≤ 3.8·10⁻¹². The variance s₂/n − μ² amplifies that by (σ² + μ²)/σ², kept
        ≤ 1 + 1/:data:`_ONE_PASS_VAR` = 101 by redoing the variance in two passes beyond it, so
        σ̂² is within 3.9·10⁻¹⁰ relative and the profile log-likelihood −(n/2) log σ̂² within
        2·10⁻¹⁰·n (5·10⁻³ at n = 2.5·10⁷, against the 1.92 of a 95 % likelihood-ratio drop;
        with the two-pass variance 4.8·10⁻⁵). The Jacobian term k·Σ log|w_i| (|k| ≤ 4 on the
        default grid, one pairwise NumPy sum) adds at most 4·log₂(n)·u·Σ|log|w_i||, 1·10⁻⁶ at
        n = 2.5·10⁷ with |log|w|| ~ 3.
        """
        if self._on_device is not None:
            return self._dual_on_device(psi)
        b, a = self.before, self.after
        lb, la = self.log_abs_before, self.log_abs_after
        delta = self._work
        euclidean = psi.is_euclidean

        def part(lo: int, hi: int) -> tuple[float, float, float]:
            ref = s1 = s2 = 0.0
            size = min(_CHUNK, hi - lo)
            gb_buf, ga_buf = np.empty(size), np.empty(size)
            for s in range(lo, hi, _CHUNK):
                sl = slice(s, min(s + _CHUNK, hi))
                d = delta[sl]
                if euclidean:
                    gb = b[sl]
                    np.subtract(a[sl], gb, out=d)
                else:
                    m = d.size
                    gb = psi.grad_with_log_abs(b[sl], lb[sl], out=gb_buf[:m])
                    ga = psi.grad_with_log_abs(a[sl], la[sl], out=ga_buf[:m])
                    np.subtract(ga, gb, out=d)
                ref += _dot(gb, gb)
                s1 += float(np.add.reduce(d))
                s2 += _dot(d, d)
            return ref, s1, s2

        parts = _map_blocks(a.size, part)
        ref, s1, s2 = (sum(p[k] for p in parts) for k in range(3))
        n = a.size
        mean = s1 / n
        var = s2 / n - mean * mean
        if euclidean or not var > _ONE_PASS_VAR * mean * mean:  # cancellation: redo exactly
            var = _var(delta, mean)
        return DualMoments(delta, ref, mean, var)

    def _dual_on_device(self, psi: Potential) -> DualMoments:
        b, a = self._on_device[:2]
        gb = b if psi.is_euclidean else psi.grad(b)
        delta = a - gb if psi.is_euclidean else psi.grad(a) - gb
        n = delta.numel()
        ref = float(_torch_dot(gb, gb))
        mean = float(delta.sum()) / n
        var = float(_torch_dot(delta, delta)) / n - mean * mean
        if not var > _ONE_PASS_VAR * mean * mean:
            var = _var(delta, mean)
        return DualMoments(delta, ref, mean, var)

    def log_hessian_after(self, psi: Potential) -> np.ndarray:
        """log ψ''(after) per synapse, 0 outside the likelihood synapses (for weighted sums)."""
        lh = np.asarray(psi.log_hessian_diag(self.after), dtype=np.float64)
        keep = np.isfinite(lh) if self.like_mask is None else np.isfinite(lh) & self.like_mask
        return np.where(keep, lh, 0.0)

    def log_jacobian(self, psi: Potential) -> float:
        """Σ_i log ψ''(w_i) over the likelihood synapses."""
        law = psi.hessian_power_law()
        if law is not None:
            c, k = law
            return self.n_like * c + (k * self.sum_log_abs_after if k else 0.0)
        if self._on_device is not None:
            return float(psi.log_hessian_diag(self.in_likelihood(self._on_device[1])).sum())
        a = self.after if self.like_mask is None else self.after[self.like_mask]
        return float(np.sum(np.asarray(psi.log_hessian_diag(a), dtype=np.float64)))


def _reduction_device(inputs: tuple, device: Any = None) -> Any:
    """Where the per-candidate reductions run: ``device`` if given, else the device of the first
    torch tensor among ``inputs`` unless it is the CPU; None means NumPy on the host."""
    if device is not None:
        import torch

        return torch.device(device)
    tensor = next((x for x in inputs if _is_tensor(x)), None)
    if tensor is None or tensor.device.type == "cpu":
        return None
    return tensor.device


def _device_copies(
    device: Any,
    before: Any,
    after: Any,
    b: np.ndarray,
    a: np.ndarray,
    mask: np.ndarray | None,
    ks_index: np.ndarray | None,
) -> tuple:
    """float64 copies of the weights (a tensor converted where it lies, an array sent there),
    the likelihood mask and the KS subsample index, on ``device``."""
    import torch

    def put(x: Any, host: np.ndarray) -> Any:
        if _is_tensor(x) and x.device == device:
            return x.detach().reshape(-1).to(torch.float64)
        return torch.from_numpy(host).to(device)

    return (
        put(before, b),
        put(after, a),
        None if mask is None else torch.from_numpy(mask).to(device),
        None if ks_index is None else torch.from_numpy(ks_index).to(device),
    )


class BootstrapResamples:
    """Resamples of the synapses as multinomial count vectors (n draws with replacement).

    Resample b draws n synapse indices from its own seed (``rng`` draws the seeds); its count
    vector is kept (as uint8: a count above 255 has probability ~ e^-1/256!) when all of them fit
    in ``store_bytes``, and regenerated from the seed on every pass otherwise. Both give the same
    numbers. A count-weighted statistic equals the statistic of the explicitly resampled synapses.

    Parameters
    ----------
    n : int
        Synapses.
    n_resamples : int
    rng : numpy.random.Generator or int or None
    store_bytes : int
        Memory limit for keeping the count vectors.
    """

    def __init__(
        self, n: int, n_resamples: int, rng: Any = None, *, store_bytes: int = BOOT_STORE_BYTES
    ) -> None:
        self.n = int(n)
        self.n_resamples = int(n_resamples)
        self.seeds = as_generator(rng).integers(0, 2**63, size=self.n_resamples)
        self.block = max(1, min(self.n_resamples, 4_000_000 // max(self.n, 1)))
        self._counts = None
        if self.n_resamples * self.n <= store_bytes:
            counts = np.empty((self.n_resamples, self.n), dtype=np.uint8)
            for b in range(self.n_resamples):
                counts[b] = self._draw(b)
            self._counts = counts

    def _draw(self, b: int) -> np.ndarray:
        draw = np.random.default_rng(self.seeds[b]).integers(0, self.n, size=self.n)
        return np.bincount(draw, minlength=self.n)

    def counts(self, b: int) -> np.ndarray:
        """How often each synapse is drawn in resample ``b`` (sums to n)."""
        if self._counts is not None:
            return self._counts[b].astype(np.int64)
        return self._draw(b)

    def blocks(self) -> Iterator[tuple[int, np.ndarray]]:
        """``(first resample, counts of a block of resamples as float64 [block, n])``."""
        for s in range(0, self.n_resamples, self.block):
            e = min(s + self.block, self.n_resamples)
            if self._counts is not None:
                yield s, self._counts[s:e].astype(np.float64)
            else:
                yield s, np.stack([self._draw(b) for b in range(s, e)]).astype(np.float64)


# ------------------------------------------------------------------------------------------------
# the estimators
# ------------------------------------------------------------------------------------------------
def parameter_search_bounds(psi: Potential) -> tuple[float, float]:
    """Where to search a candidate's family parameter: the potential's own
    ``parameter_search_window`` ((1.01, 6) for p-norms), kept 0.01 inside its
    ``parameter_bounds`` at finite ends."""
    lo, hi = psi.parameter_search_window
    low, high = psi.parameter_bounds
    if math.isfinite(low):
        lo = max(lo, low + 0.01)
    if math.isfinite(high):
        hi = min(hi, high - 0.01)
    return lo, hi


class LikelihoodEstimator:
    """Ranks candidates by AIC of the dual-Gaussian likelihood (module docstring).

    Parameters
    ----------
    fit_mean : bool
        Fit the mean μ of the dual change (default) or fix μ = 0.

    Examples
    --------
    >>> from syngeo.simulate import simulate_change
    >>> sim = simulate_change("3-norm", 2000, rng=0)
    >>> data = PreparedChange.from_weights(sim.before, sim.after)
    >>> est = LikelihoodEstimator()
    >>> est.score(data, PNorm(3)) < est.score(data, PNorm(2))
    True
    >>> p = est.refine(data, PNorm(3), 2.9, 3.1).parameter
    >>> est.interval(data, PNorm(p), 0.95).low < 3 < est.interval(data, PNorm(p), 0.95).high
    True
    """

    name = "likelihood"
    #: The ranking column the score is computed from.
    column = "log_likelihood"
    #: How :meth:`interval` is obtained.
    interval_method = "likelihood-ratio"
    #: Whether the score is a smooth function of the family parameter (the bootstrap then
    #: refines each resample's best parameter by parabolic interpolation).
    smooth_in_parameter = True

    def __init__(self, *, fit_mean: bool = True) -> None:
        self.fit_mean = bool(fit_mean)

    def __repr__(self) -> str:
        return f"LikelihoodEstimator(fit_mean={self.fit_mean})"

    # -- one candidate ---------------------------------------------------------------------------
    def gaussian_part(self, data: PreparedChange, dual: DualMoments) -> tuple[float, float, float]:
        """(Σ_i log N(Δ_i; μ̂, σ̂²), μ̂, σ̂) over the likelihood synapses, at the MLEs."""
        if data.like_mask is None:
            mu = dual.mean if self.fit_mean else 0.0
            var = dual.var if self.fit_mean else dual.var + dual.mean * dual.mean
        else:
            d = data.in_likelihood(dual.delta)
            mu = float(d.mean()) if self.fit_mean else 0.0
            var = _var(d, mu)
        if not var > 0:
            return math.inf, mu, 0.0
        return -0.5 * data.n_like * (math.log(2.0 * math.pi * var) + 1.0), mu, math.sqrt(var)

    def log_likelihood(
        self, data: PreparedChange, psi: Potential, dual: DualMoments | None = None
    ) -> float:
        """Profile log-likelihood ℓ(ψ) (remembered per candidate on ``data``)."""
        key = ("log_likelihood", self.fit_mean, _candidate_key(psi))
        if key not in data._memo:
            dual = data.dual(psi) if dual is None else dual
            data._memo[key] = self.gaussian_part(data, dual)[0] + data.log_jacobian(psi)
        return data._memo[key]

    def score_from_statistic(self, log_likelihood: float, n_params: int) -> float:
        """AIC = 2k − 2ℓ (lower is better)."""
        return 2 * n_params - 2 * log_likelihood

    def score(self, data: PreparedChange, psi: Potential, *, n_params: int = 2) -> float:
        """AIC of one candidate with ``n_params`` fitted parameters (2: μ, σ; 3 with p)."""
        return self.score_from_statistic(self.log_likelihood(data, psi), n_params)

    # -- the family parameter --------------------------------------------------------------------
    def refine(self, data: PreparedChange, best: Potential, low: float, high: float) -> Potential:
        """The member of ``best``'s family maximising ℓ on (low, high), near ``best``, to 1e-4.

        Where (low, high) extends past ``best`` by more than 0.25 (a grid end), first walk
        outwards in steps of 0.1 while ℓ improves, so that bounded Brent works on a bracket of
        width ≤ 0.2 around the maximum. Returns ``best`` itself unless the refined parameter
        (rounded to 4 decimals) has a higher likelihood.
        """

        def ell(x: float) -> float:
            return self.log_likelihood(data, best.with_parameter(float(x)))

        p0 = float(best.parameter)
        start = p0
        for direction in (-1.0, 1.0):
            if (p0 - low if direction < 0 else high - p0) <= 0.25:
                continue
            p = p0
            while low < p + direction * 0.1 < high and ell(p + direction * 0.1) > ell(p):
                p = p + direction * 0.1
            if ell(p) > ell(start):
                start = p
        a, b = max(low, start - 0.1), min(high, start + 0.1)
        res = scipy.optimize.minimize_scalar(
            lambda x: -ell(x), bounds=(a, b), method="bounded", options={"xatol": 1e-4}
        )
        p_new = float(res.x) if -res.fun > ell(start) else start
        p_new = round(p_new, 4)
        return best.with_parameter(p_new) if ell(p_new) > ell(p0) else best

    def interval(
        self, data: PreparedChange, best: Potential, confidence: float
    ) -> ConfidenceInterval:
        """{p : 2(ℓ̂ − ℓ(p)) ≤ χ²₁(confidence)} by root finding on each side of p̂ = best's.

        The half-width is first guessed from the curvature of ℓ at p̂ (quadratic approximation,
        w = sqrt(2·drop/|ℓ''|)); a bracket [p̂ ± w/2, p̂ ± 3^k·1.5w] is grown until ℓ has dropped
        by more than χ²₁(confidence)/2, and brentq finds the crossing inside it (to 1e-5). An end
        that reaches the search bounds (:func:`parameter_search_bounds`) is reported open.
        """
        p_hat = float(best.parameter)
        drop = 0.5 * float(scipy.stats.chi2.ppf(confidence, 1))

        def ell(x: float) -> float:
            return self.log_likelihood(data, best.with_parameter(float(x)))

        l_hat = ell(p_hat)

        def f(p: float) -> float:
            return ell(p) - (l_hat - drop)

        lo_b, hi_b = parameter_search_bounds(best)
        h = min(1e-3, (p_hat - lo_b) / 2, (hi_b - p_hat) / 2)
        curv = (ell(p_hat + h) + ell(p_hat - h) - 2 * l_hat) / h**2 if h > 0 else 0.0
        w = math.sqrt(2 * drop / -curv) if curv < 0 else 0.1
        ends, opened = [], []
        for side, bound in ((-1.0, lo_b), (1.0, hi_b)):
            inner, reach = p_hat, 0.5 * w
            is_open = False
            while True:
                outer = p_hat + side * reach
                if side * (outer - bound) >= 0:
                    outer = bound
                if f(outer) < 0:
                    break
                inner = outer
                if outer == bound:
                    is_open = True
                    break
                reach *= 3
            if is_open:
                ends.append(bound)
            else:
                a, b = sorted((inner, outer))
                ends.append(scipy.optimize.brentq(f, a, b, xtol=1e-5))
            opened.append(is_open)
        return ConfidenceInterval(
            float(ends[0]), float(ends[1]), float(confidence), "likelihood-ratio", *opened
        )

    # -- resampled synapses ----------------------------------------------------------------------
    def bootstrap(
        self,
        data: PreparedChange,
        candidates: Sequence[Potential],
        resamples: BootstrapResamples,
        *,
        n_params: Sequence[int] | None = None,
    ) -> np.ndarray:
        """AIC of each candidate on each resample, shape [n_resamples, len(candidates)].

        A resample's likelihood is the count-weighted one: n_b = Σ c_i, Σ c_i Δ_i, Σ c_i Δ_i²
        and Σ c_i log ψ''(w_i) over the likelihood synapses (one matrix-vector product each).
        ``n_params`` gives k per candidate (default 2).
        """
        ks = [2] * len(candidates) if n_params is None else list(n_params)
        mask = data.like_mask
        la = np.where(np.isfinite(data.log_abs_after), data.log_abs_after, 0.0)
        if mask is not None:
            la = np.where(mask, la, 0.0)

        def masked(c: np.ndarray) -> np.ndarray:
            return c if mask is None else c * mask

        n_like_b = np.concatenate([masked(c).sum(axis=1) for _, c in resamples.blocks()])
        sum_la_b = np.concatenate([_gemv(masked(c), la) for _, c in resamples.blocks()])
        out = np.empty((resamples.n_resamples, len(candidates)))
        for j, psi in enumerate(candidates):
            delta = _host(data.dual(psi).delta)
            d = delta if mask is None else np.where(mask, delta, 0.0)
            d2 = d * d
            s1 = np.empty(resamples.n_resamples)
            s2 = np.empty(resamples.n_resamples)
            for s, c in resamples.blocks():
                cl = masked(c)
                s1[s : s + cl.shape[0]] = _gemv(cl, d)
                s2[s : s + cl.shape[0]] = _gemv(cl, d2)
            mu = s1 / n_like_b if self.fit_mean else 0.0
            var = s2 / n_like_b - (mu * mu if self.fit_mean else 0.0)
            var = np.maximum(var, np.finfo(float).tiny)
            gauss = -0.5 * n_like_b * (np.log(2 * math.pi * var) + 1.0)
            law = psi.hessian_power_law()
            if law is not None:
                jac = n_like_b * law[0] + law[1] * sum_la_b
            else:
                lh = data.log_hessian_after(psi)
                jac = np.concatenate([_gemv(masked(c), lh) for _, c in resamples.blocks()])
            out[:, j] = self.score_from_statistic(gauss + jac, ks[j])
        return out


class CdfEstimator:
    """Ranks candidates by the paper's CDF distance of the dual change to a Gaussian.

    Parameters
    ----------
    grid : (low, high, num)
        Grid of the CDF distance (:func:`syngeo.gaussianity.cdf_distance`).

    Examples
    --------
    >>> from syngeo.simulate import simulate_change
    >>> sim = simulate_change("2-norm", 5000, rng=0)
    >>> data = PreparedChange.from_weights(sim.before, sim.after)
    >>> est = CdfEstimator()
    >>> est.score(data, PNorm(2)) < est.score(data, PNorm(3))
    True
    """

    name = "cdf"
    column = "cdf_distance"
    interval_method = "bootstrap-percentile"
    #: Whether the score is a smooth function of the family parameter (the bootstrap then
    #: refines each resample's best parameter by parabolic interpolation).
    smooth_in_parameter = False

    def __init__(self, *, grid: tuple[float, float, int] = DEFAULT_GRID) -> None:
        self.grid = grid
        self.points = cdf_grid(grid)

    def __repr__(self) -> str:
        return f"CdfEstimator(grid={self.grid!r})"

    def distance(self, dual: DualMoments) -> float:
        """Uncentred CDF distance of a candidate's dual change (NaN when it is constant)."""
        return self.distances(dual)[0]

    def distances(self, dual: DualMoments) -> tuple[float, float]:
        """(uncentred, centred) CDF distances of a candidate's dual change, in one pass
        (:func:`binned_cdf_distances`); NaN when it is constant."""
        std = math.sqrt(dual.var)
        if not std > 0:
            return math.nan, math.nan
        d, dc = binned_cdf_distances(dual.delta, self.points, std, (0.0, dual.mean))
        return d, dc

    def score_from_statistic(self, cdf_distance: float, n_params: int) -> float:
        """The distance itself (lower is better; ``n_params`` plays no role)."""
        return cdf_distance

    def cdf_distance(
        self, data: PreparedChange, psi: Potential, dual: DualMoments | None = None
    ) -> float:
        """Uncentred CDF distance of ``psi``'s dual change (remembered per candidate on ``data``)."""
        key = ("cdf_distance", self.grid, _candidate_key(psi))
        if key not in data._memo:
            data._memo[key] = self.distance(data.dual(psi) if dual is None else dual)
        return data._memo[key]

    def score(self, data: PreparedChange, psi: Potential, *, n_params: int = 2) -> float:
        """CDF distance of one candidate's dual change."""
        return self.cdf_distance(data, psi)

    def refine(self, data: PreparedChange, best: Potential, low: float, high: float) -> Potential:
        """Minimise the CDF distance over ``best``'s family parameter in (low, high).

        Where (low, high) extends past ``best`` by more than 0.25 (a grid end), first walk
        outwards in steps of 0.1 while the distance keeps improving (stopping after two steps
        without improvement); then scan the best ± 0.05 at step 0.05 and ± 0.04 at step 0.01
        (11 evaluations). The CDF distance is not smooth in p for small n, so grid scans are
        safer than a derivative-free scalar minimiser.
        """

        def at(p: float) -> float:
            p = round(p, 4)
            if not low < p < high:
                return math.inf
            return self.score(data, best.with_parameter(p))

        p0 = float(best.parameter)
        p_best = p0
        for direction in (-1.0, 1.0):
            if (p0 - low if direction < 0 else high - p0) <= 0.25:
                continue
            misses, p = 0, p0
            while misses < 2:
                p = round(p + direction * 0.1, 4)
                if not low < p < high:
                    break
                if at(p) < at(p_best):
                    p_best, misses = p, 0
                else:
                    misses += 1
        for step, half in ((0.05, 1), (FINE_STEP, 4)):  # ± (previous step − step)
            centre = p_best
            for k in range(-half, half + 1):
                p = round(centre + k * step, 4)
                if at(p) < at(p_best):
                    p_best = p
        return best if p_best == p0 else best.with_parameter(float(p_best))

    def interval(
        self, data: PreparedChange, best: Potential, confidence: float
    ) -> ConfidenceInterval | None:
        """None: the CDF distance has no likelihood; its interval is the bootstrap percentile
        interval (:func:`percentile_interval` of :meth:`bootstrap` argmins)."""
        return None

    def bootstrap(
        self,
        data: PreparedChange,
        candidates: Sequence[Potential],
        resamples: BootstrapResamples,
        *,
        n_params: Sequence[int] | None = None,
    ) -> np.ndarray:
        """CDF distance of each candidate on each resample, shape [n_resamples, len(candidates)].

        A resample's distance uses the count-weighted std and the count-weighted empirical CDF
        (:func:`syngeo.gaussianity.count_at_or_below` with ``weights``). NaN for a constant
        resampled change.
        """
        t = self.points
        m = t.size
        phi = scipy.stats.norm.cdf(t[:-1])
        dt = np.diff(t)
        n = data.n
        out = np.empty((resamples.n_resamples, len(candidates)))
        for j, psi in enumerate(candidates):
            delta = _host(data.dual(psi).delta)
            d2 = delta * delta
            for s, c_block in resamples.blocks():
                for r, c in enumerate(c_block):
                    mean = _dot(c, delta) / n
                    std = math.sqrt(max(_dot(c, d2) / n - mean * mean, 0.0))
                    if not std > 0:
                        out[s + r, j] = math.nan
                        continue
                    ecdf = count_at_or_below(delta, t, 0.0, std, weights=c) / n
                    out[s + r, j] = float(np.sum(np.abs(ecdf[: m - 1] - phi) * dt))
        return out


def bootstrap_parameter(
    estimator: LikelihoodEstimator | CdfEstimator,
    data: PreparedChange,
    family: Potential,
    grid: Sequence[float],
    resamples: BootstrapResamples,
    confidence: float,
    *,
    n_params: int = 3,
    bounds: tuple[float, float] | None = None,
) -> np.ndarray:
    """The best family parameter of every resample, resolved below the spread of the estimates.

    1. Each resample's argmin of the estimator's bootstrap score over ``grid`` (parameters of
       ``family``, via ``with_parameter``).
    2. While the percentile interval (``confidence``) of those argmins is narrower than
       :data:`BOOT_RESOLUTION_STEPS` grid steps around them (at 10⁶ synapses the likelihood
       interval for p is ~0.003 wide, a third of the default 0.01 step, and every resample
       would pick the same grid point), zoom: every resample is rescored on a uniform grid of
       :data:`BOOT_ZOOM_POINTS` points over the interval widened by one step on each side (a
       unimodal score has its optimum within a step of the argmin), within ``bounds`` and
       the range of ``grid``;
       estimates outside that window keep their value. At most :data:`BOOT_MAX_ZOOMS` times,
       down to a step of :data:`BOOT_MIN_STEP`, and only where the new grid is finer than the
       old one at every estimate inside the interval.
    3. For a score smooth in the parameter (``estimator.smooth_in_parameter``: the likelihood),
       each interior argmin is replaced by the vertex of the parabola through it and its two
       neighbours (kept inside them).

    So the parameter's resolution is at most (interval width)/:data:`BOOT_RESOLUTION_STEPS`
    before the parabolic step, and the interval cannot collapse to one grid point unless the
    estimates agree to :data:`BOOT_MIN_STEP`.

    Returns
    -------
    numpy.ndarray, shape=[n_resamples]
    """
    lo_b, hi_b = (-math.inf, math.inf) if bounds is None else bounds
    ps = np.asarray(sorted(set(float(p) for p in grid)))
    first, last = float(ps[0]), float(ps[-1])  # zoomed grids stay within the given one

    def scores_on(values: np.ndarray) -> np.ndarray:
        sc = estimator.bootstrap(
            data,
            [family.with_parameter(float(p)) for p in values],
            resamples,
            n_params=[n_params] * len(values),
        )
        return np.where(np.isnan(sc), np.inf, sc)

    scores = scores_on(ps)
    j = np.argmin(scores, axis=1)
    best = ps[j]
    fixed = np.zeros(best.size, dtype=bool)  # estimates left outside a zoom window
    for zoom in range(BOOT_MAX_ZOOMS + 1):
        if ps.size < 2:
            return best
        ci = percentile_interval(best, confidence)
        # the grid step on either side of the argmins that make the interval (inside it)
        gaps = np.diff(ps)
        local = np.maximum(gaps[np.maximum(j - 1, 0)], gaps[np.minimum(j, ps.size - 2)])
        step = float(np.max(local[~fixed & (best >= ci.low) & (best <= ci.high)], initial=0.0))
        if (
            zoom == BOOT_MAX_ZOOMS
            or step <= BOOT_MIN_STEP
            or ci.high - ci.low >= BOOT_RESOLUTION_STEPS * step
        ):
            break
        # the window holds the interval with a step to spare on each side; estimates outside it
        # keep their value (they stay outside the interval); on a uniform grid each zoom at
        # least halves the step: (width + 2 step)/(points − 1) < 12 step/24
        a = max(ci.low - step, lo_b, first)
        b = min(ci.high + step, hi_b, last)
        finest = float(np.min(local[~fixed & (best >= ci.low) & (best <= ci.high)]))
        if (b - a) / (BOOT_ZOOM_POINTS - 1) >= finest:  # a zoom must refine everywhere
            break
        fixed |= (best < a) | (best > b)
        ps = np.linspace(a, b, BOOT_ZOOM_POINTS)
        scores = scores_on(ps)
        j = np.argmin(scores, axis=1)
        best = np.where(fixed, best, ps[j])
    if not estimator.smooth_in_parameter or ps.size < 3:
        return best
    rows = np.arange(best.size)
    inner = (j > 0) & (j < ps.size - 1) & ~fixed
    jj = np.clip(j, 1, ps.size - 2)
    x0, x1, x2 = ps[jj - 1], ps[jj], ps[jj + 1]
    f0, f1, f2 = scores[rows, jj - 1], scores[rows, jj], scores[rows, jj + 1]
    with np.errstate(invalid="ignore", divide="ignore"):
        num = (x1 - x0) ** 2 * (f1 - f2) - (x1 - x2) ** 2 * (f1 - f0)
        den = (x1 - x0) * (f1 - f2) - (x1 - x2) * (f1 - f0)
        vertex = x1 - 0.5 * num / den
    ok = inner & np.isfinite(vertex) & (den < 0) & np.isfinite(f0 + f1 + f2)
    return np.where(ok, np.clip(vertex, x0, x2), best)


def percentile_interval(
    values: Any, confidence: float, *, method: str = "bootstrap-percentile"
) -> ConfidenceInterval:
    """The equal-tailed percentile interval: quantiles (1 − c)/2 and (1 + c)/2 of ``values``.

    NumPy's default (linear) quantile definition.

    Examples
    --------
    >>> ci = percentile_interval(range(101), 0.5)
    >>> (ci.low, ci.high)
    (25.0, 75.0)
    """
    q = np.quantile(
        np.asarray(values, dtype=np.float64), [(1 - confidence) / 2, (1 + confidence) / 2]
    )
    return ConfidenceInterval(float(q[0]), float(q[1]), float(confidence), method)


# ------------------------------------------------------------------------------------------------
# public likelihood helpers
# ------------------------------------------------------------------------------------------------
def _check_domain(b: np.ndarray, a: np.ndarray, psi: Potential) -> None:
    if psi.preserves_sign:
        sc = sign_changes(b, a)
        if not sc.ne_valid:
            raise DomainError(f"{sc.reason()}; drop those synapses or use a p-norm")


def dual_gaussian_log_density(
    before: Any, after: Any, potential: PotentialLike, *, mean: float, std: float
) -> np.ndarray:
    r"""Element-wise log-density of ``after`` given ``before`` under the dual-Gaussian model.

    .. math::

        \log f_\psi(w \mid w_0) = \log\mathcal N(\nabla\psi(w) - \nabla\psi(w_0); \mu, \sigma^2)
            + \log\psi''(w)

    For a sign-preserving potential (NE) the density lives on the half-line of
    :math:`\mathrm{sign}(w_0)`: it is :math:`-\infty` where ``after`` has the other sign or is 0.

    Examples
    --------
    >>> import numpy as np, scipy.integrate
    >>> f = lambda w: np.exp(dual_gaussian_log_density([0.3], [w], "3-norm", mean=0, std=0.05))[0]
    >>> round(scipy.integrate.quad(f, -2, 2, points=[0.0, 0.3], limit=200)[0], 6)
    1.0
    """
    b, a = as_weight_pair(before, after)
    std = as_positive_float(std, "std")
    mean = float(mean)
    psi = as_potential(potential)
    ok = (np.sign(a) == np.sign(b)) & (a != 0) if psi.preserves_sign else np.ones(a.shape, bool)
    out = np.full(a.shape, -np.inf)
    if ok.any():
        aa, bb = a[ok], b[ok]
        delta = np.asarray(psi.grad(aa), dtype=np.float64) - np.asarray(psi.grad(bb), np.float64)
        with np.errstate(divide="ignore"):
            out[ok] = scipy.stats.norm.logpdf(delta, mean, std) + np.asarray(
                psi.log_hessian_diag(aa), dtype=np.float64
            )
    return out


@dataclass(frozen=True)
class LikelihoodResult:
    r"""Profile log-likelihood of one candidate (see the module docstring).

    Attributes
    ----------
    potential : str
    log_likelihood : float
        :math:`\ell = \sum_i \log\mathcal N(\Delta_i; \hat\mu, \hat\sigma^2) + \sum_i\log\psi''(w_i)`.
    log_jacobian : float
        The second sum.
    mean, std : float
        MLEs :math:`\hat\mu` (0 if not fitted) and :math:`\hat\sigma`.
    n : int
        Synapses in the likelihood (``after != 0``).
    """

    potential: str
    log_likelihood: float
    log_jacobian: float
    mean: float
    std: float
    n: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def change_log_likelihood(
    before: Any, after: Any, potential: PotentialLike, *, fit_mean: bool = True
) -> LikelihoodResult:
    r"""Profile log-likelihood of ``after`` given ``before`` under a candidate potential.

    Synapses with ``after == 0`` are left out (see Limitations in the module docstring).

    Raises
    ------
    DomainError
        For a sign-preserving potential (NE) when a weight is 0 or changes sign.
    InputError
        Bad weights, or every weight in AFTER is 0.

    Examples
    --------
    >>> import numpy as np
    >>> g = np.random.default_rng(0)
    >>> w0 = g.normal(0, 0.1, 2000); w = w0 + 0.01 * g.normal(size=2000)
    >>> l2 = change_log_likelihood(w0, w, "2-norm").log_likelihood
    >>> l3 = change_log_likelihood(w0, w, "3-norm").log_likelihood
    >>> l2 > l3
    True
    """
    psi = as_potential(potential)
    data = PreparedChange.from_weights(before, after, rng=0)
    _check_domain(data.before, data.after, psi)
    if data.n_like == 0:
        raise InputError("every weight in AFTER is 0: the likelihood has no data")
    est = LikelihoodEstimator(fit_mean=fit_mean)
    gauss, mu, sigma = est.gaussian_part(data, data.dual(psi))
    jac = data.log_jacobian(psi)
    return LikelihoodResult(psi.name, gauss + jac, jac, mu, sigma, data.n_like)


# ------------------------------------------------------------------------------------------------
# result objects
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ConfidenceInterval:
    """A confidence interval for a family parameter (p).

    Attributes
    ----------
    low, high : float
    level : float
        Nominal coverage, e.g. 0.95.
    method : str
        ``"likelihood-ratio"`` or ``"bootstrap-percentile"``.
    open_low, open_high : bool
        True where the interval reached the search bound (the true limit may lie beyond).
    """

    low: float
    high: float
    level: float
    method: str
    open_low: bool = False
    open_high: bool = False

    def __contains__(self, p: float) -> bool:
        return self.low <= p <= self.high

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __str__(self) -> str:
        """Three decimals, or as many more as it takes for the printed ends to differ (a narrow
        interval from many synapses must not read as a point).

        >>> str(ConfidenceInterval(2.9996, 3.0001, 0.95, "likelihood-ratio"))
        '[2.9996, 3.0001] (95% likelihood-ratio)'
        >>> str(ConfidenceInterval(1.9, 2.1, 0.95, "bootstrap-percentile", open_low=True))
        '[≤1.900, 2.100] (95% bootstrap-percentile)'
        """
        digits = 3
        while (
            digits < 12
            and self.high > self.low
            and f"{self.low:.{digits}f}" == f"{self.high:.{digits}f}"
        ):
            digits += 1
        lo = f"{'≤' if self.open_low else ''}{self.low:.{digits}f}"
        hi = f"{'≥' if self.open_high else ''}{self.high:.{digits}f}"
        return f"[{lo}, {hi}] ({self.level:.0%} {self.method})"


RANKING_COLUMNS = (
    "rank",
    "candidate",
    "p",
    "cdf_distance",
    "cdf_distance_centred",
    "ks_statistic",
    "log_likelihood",
    "delta_aic",
    "change_magnitude",
    "bootstrap_win_fraction",
    "mean",
    "std",
    "refined",
    "note",
)


@dataclass(frozen=True, eq=False)
class GeometryFit:
    """Which plasticity geometry fits the weights best (returned by :func:`infer_geometry`).

    Attributes
    ----------
    best : str
        Name of the winning candidate (``"NE"``, ``"3-norm"``, ``"2.9731-norm"``, ...).
    best_potential : Potential
    best_p : float or None
        The winner's ``parameter`` (p of a p-norm); ``None`` when it has none (NE).
    estimator : str
        ``"likelihood"`` or ``"cdf"``.
    ranking : pandas.DataFrame
        One row per candidate, best first, columns ``RANKING_COLUMNS``: the estimator's rank
        (NaN for an excluded candidate), p (the candidate's ``parameter``; NaN for NE), both CDF distances, the KS statistic
        (of the uncentred Δ/σ̂ against N(0, 1), as ``GaussianityResult.ks``, on a
        fixed subsample of ≤ 100 000 synapses,
        σ̂ from all; not the centred statistic of the goodness-of-fit test in
        :mod:`syngeo.diagnostics`), the profile log-likelihood, ΔAIC to the
        best AIC, the change magnitude, the bootstrap win fraction (NaN for the refined row and
        without bootstrap), the fitted mean and std of Δ, whether the row comes from the
        refinement in p, and a note (why a candidate was excluded).
    p_interval : ConfidenceInterval or None
        Confidence interval for p of the best p-norm: likelihood-ratio for the likelihood
        estimator (needs ``refine=True``), bootstrap percentile for the cdf estimator (needs
        ``n_bootstrap > 0``).
    p_interval_bootstrap : ConfidenceInterval or None
        Bootstrap percentile interval of the estimator's best p (``None`` without bootstrap).
    margin : float
        Score gap between the two best candidates of the grid (refined rows and ruled-out
        candidates left out): the runner-up's score minus the best's, i.e. a difference of cdf
        distances (cdf) or of AICs (likelihood). NaN with fewer than two scored grid candidates.
    n_synapses, n_sign_flips, n_zero_weights : int
        ``n_sign_flips`` as :func:`syngeo.gaussianity.sign_changes` (``before * after < 0``);
        ``n_zero_weights`` counts synapses that are 0 before or after.
    ne_ruled_out : bool
    ne_ruled_out_reason : str or None
    n_bootstrap : int
    warnings : tuple of str
    noise : MeasurementNoise or None
        The measurement noise modelled (``infer_geometry(noise=...)``); None for exact weights.
    """

    best: str
    best_potential: Potential
    best_p: float | None
    estimator: str
    ranking: pd.DataFrame
    p_interval: ConfidenceInterval | None
    p_interval_bootstrap: ConfidenceInterval | None
    margin: float
    n_synapses: int
    n_sign_flips: int
    n_zero_weights: int
    ne_ruled_out: bool
    ne_ruled_out_reason: str | None
    n_bootstrap: int
    confidence: float
    warnings: tuple[str, ...] = field(default=())
    noise: Any = None

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python dictionary (the ranking as a list of row dicts); a ``noise`` entry only
        when noise was modelled. ``answer`` is ``best``, or "NE or p → 1 (indistinguishable
        here)" (:func:`syngeo.diagnostics.ne_limit`)."""
        from syngeo.diagnostics import NE_OR_P_TO_1, ne_limit  # builds on this module

        extra = {} if self.noise is None else {"noise": self.noise.to_dict()}
        return extra | {
            "answer": NE_OR_P_TO_1 if ne_limit(self).applies else self.best,
            "best": self.best,
            "best_p": self.best_p,
            "estimator": self.estimator,
            "p_interval": None if self.p_interval is None else self.p_interval.to_dict(),
            "p_interval_bootstrap": (
                None if self.p_interval_bootstrap is None else self.p_interval_bootstrap.to_dict()
            ),
            "margin": self.margin,
            "n_synapses": self.n_synapses,
            "n_sign_flips": self.n_sign_flips,
            "n_zero_weights": self.n_zero_weights,
            "ne_ruled_out": self.ne_ruled_out,
            "ne_ruled_out_reason": self.ne_ruled_out_reason,
            "n_bootstrap": self.n_bootstrap,
            "confidence": self.confidence,
            "warnings": list(self.warnings),
            "ranking": self.ranking.to_dict(orient="records"),
        }

    def __repr__(self) -> str:
        from syngeo.diagnostics import NE_OR_P_TO_1, ne_limit

        limit = ne_limit(self).applies
        p = "" if self.best_p is None else f", best_p={self.best_p:.4g}"
        ci = "" if self.p_interval is None or limit else f", p_interval={self.p_interval}"
        ne = f", NE ruled out ({self.n_sign_flips} sign flips)" if self.ne_ruled_out else ""
        answer = f"answer={NE_OR_P_TO_1!r}, " if limit else ""
        return (
            f"GeometryFit({answer}best={self.best!r}{p}{ci}, estimator={self.estimator!r}, "
            f"margin={self.margin:.4g}, n_synapses={self.n_synapses}{ne}, "
            f"warnings={len(self.warnings)})"
        )

    def summary(self, top: int = 5) -> str:
        """Multi-line human-readable report: verdict, interval, top candidates, warnings."""
        from syngeo.diagnostics import NE_OR_P_TO_1, ne_limit

        limit = ne_limit(self)
        lines = [
            f"Best geometry: {NE_OR_P_TO_1 if limit.applies else self.best} (estimator: {self.estimator}, "
            f"{self.n_synapses} synapses)",
        ]
        if self.noise is not None:
            lines.append(f"measurement noise modelled: {self.noise}")
        if limit.applies:
            lines.append(
                f"NE and the best p-norm ({limit.best_p_norm}, at the p -> 1 end): "
                f"log-likelihoods differ by {abs(limit.ne_delta_loglik):.2f} "
                f"(<= {limit.threshold:.2f})"
            )
        elif self.p_interval is not None:
            what = "p interval" if self.best_p is not None else "p interval of the p-norms"
            lines.append(f"{what}: {self.p_interval}")
            if self.best_p is None and self.p_interval.open_low:
                lines.append("  (reaches p -> 1, the limit in which the p-norms become NE)")
        if (
            not limit.applies
            and self.p_interval_bootstrap is not None
            and self.p_interval_bootstrap != self.p_interval
        ):
            lines.append(f"p interval (bootstrap): {self.p_interval_bootstrap}")
        score = "ΔAIC" if self.estimator == "likelihood" else "cdf distance"
        if not limit.applies:
            lines.append(
                f"margin to the runner-up on the candidate grid ({score}): {self.margin:.4g}"
            )
        if self.ne_ruled_out:
            lines.append(f"NE ruled out: {self.ne_ruled_out_reason}")
        cols = [
            "rank",
            "candidate",
            "cdf_distance",
            "log_likelihood",
            "delta_aic",
            "change_magnitude",
            "bootstrap_win_fraction",
        ]
        lines.append(self.ranking[cols].head(top).to_string(index=False, float_format="%.4g"))
        for w in self.warnings:
            if limit.applies and "search bound" in w:
                continue  # p at the bound is the NE limit, said once in the first line
            lines.append(textwrap.fill(f"warning: {w}", 100, subsequent_indent="  "))
        return "\n".join(lines)


# ------------------------------------------------------------------------------------------------
# infer_geometry: a short orchestration of the estimators
# ------------------------------------------------------------------------------------------------
def _parse_candidates(candidates: Any) -> list[Potential]:
    if candidates is None:
        return default_candidates()
    if isinstance(candidates, (str, Potential, int, float)):
        candidates = [candidates]
    try:
        parsed = [as_potential(c) for c in candidates]
    except TypeError:
        raise InputTypeError(
            "candidates must be a list of potentials, names ('ne', '3-norm') or numbers p > 1"
        ) from None
    out: list[Potential] = []
    seen: set[str] = set()
    for psi in parsed:
        if psi.name not in seen:
            seen.add(psi.name)
            out.append(psi)
    if not out:
        raise InputError("candidates is empty: pass at least one potential, or None for defaults")
    return out


def _check_args(estimator: Any, n_bootstrap: Any, confidence: Any) -> tuple[str, int, float]:
    if not isinstance(estimator, str) or estimator not in ESTIMATORS:
        raise InputError(f"unknown estimator {estimator!r}: use one of {', '.join(ESTIMATORS)}")
    return (
        estimator,
        as_nonnegative_int(n_bootstrap, "n_bootstrap"),
        as_probability(confidence, "confidence"),
    )


def _bracket(values: list[float], best: float, bounds: tuple[float, float]) -> tuple[float, float]:
    """Neighbours of ``best`` in the sorted grid ``values``; the search bounds beyond its ends."""
    values = sorted(values)
    i = values.index(best)
    lo = values[i - 1] if i > 0 else bounds[0]
    hi = values[i + 1] if i < len(values) - 1 else bounds[1]
    return max(lo, bounds[0]), min(hi, bounds[1])


def _ranking_row(
    data: PreparedChange, psi: Potential, likelihood: LikelihoodEstimator, cdf: CdfEstimator
) -> dict[str, Any]:
    """Every ranking column of one candidate (its dual change computed once and shared)."""
    dual = data.dual(psi)
    std = math.sqrt(dual.var)
    row: dict[str, Any] = {
        "candidate": psi.name,
        "p": math.nan if psi.parameter is None else float(psi.parameter),
        "mean": dual.mean,
        "std": std,
        "change_magnitude": dual.change_magnitude,
        "log_likelihood": likelihood.log_likelihood(data, psi, dual),
        "refined": False,
        "note": "",
    }
    key = ("cdf_distance", cdf.grid, _candidate_key(psi))
    row["cdf_distance"], row["cdf_distance_centred"] = cdf.distances(dual)
    data._memo.setdefault(key, row["cdf_distance"])
    if std > 0:
        # uncentred, as gaussianity_of_change's ks (the paper standardises without centring);
        # diagnostics.dual_gaussianity_test uses the centred (Lilliefors) statistic instead
        z = data.ks_sample(dual.delta)
        row["ks_statistic"] = float(scipy.stats.kstest(z / std, "norm", method="asymp").statistic)
    else:
        row["ks_statistic"] = math.nan
    return row


def infer_geometry(
    before: Any,
    after: Any,
    candidates: Any = None,
    *,
    estimator: str = "likelihood",
    n_bootstrap: int = 200,
    refine: bool = True,
    confidence: float = 0.95,
    fit_mean: bool = True,
    grid: tuple[float, float, int] = DEFAULT_GRID,
    rng: Any = None,
    noise: Any = None,
) -> GeometryFit:
    r"""Rank candidate potentials by how well they explain the change from ``before`` to ``after``.

    Parameters
    ----------
    before, after : array-like, shape=[...]
        Weights of the same synapses before and after learning (NumPy, list or torch; flattened).
        At least :data:`MIN_SYNAPSES` (50) synapses; a warning below 300.
    candidates : sequence of Potential / str / float, optional
        Default: NE and p = 1.1, 1.2, …, 3.0 (:func:`default_candidates`). Any object with the
        :class:`~syngeo.Potential` protocol (e.g. a :class:`~syngeo.LocalPotential` subclass).
    estimator : {"likelihood", "cdf"}
        ``"likelihood"`` ranks by AIC of the dual-Gaussian likelihood
        (:class:`LikelihoodEstimator`); ``"cdf"`` by the paper's CDF distance, smaller is better
        (:class:`CdfEstimator`).
    n_bootstrap : int
        Bootstrap resamples of the synapses (0 to skip). Each resample recomputes every grid
        candidate's score and the best parameter on a fine grid (step 0.01, ±0.15 around the
        estimate, plus the grid). Cost O(n_bootstrap × candidates × n).
    refine : bool
        Refine the parameter (p) of the best candidate with one (``parameter`` not None) near the
        best grid value (the estimator's ``refine``: bounded Brent on the profile likelihood, or
        0.05- then 0.01-step grids for the cdf, whose score is not smooth in p), between the
        neighbouring grid values. At a grid end the search extends to the bounds (1.01, 6) —
        except, for the cdf estimator with a sign-preserving candidate (NE) among the valid ones,
        below the smallest grid p: p-norms with p -> 1 approach NE and the CDF distance cannot
        separate them (see docs/inference.md).
    confidence : float
        Level of the parameter intervals.
    fit_mean : bool
        Fit the mean μ of the dual change (default) or fix μ = 0 (likelihood only).
    grid : (low, high, num)
        Grid of the CDF distance.
    rng : numpy.random.Generator or int or None
        Bootstrap resamples and the KS subsample (n > 100 000); None is fresh entropy.
    noise : float or str or MeasurementNoise, optional
        Measurement noise on both snapshots (docs/inference.md, "Measurement noise"): a relative
        error (``0.08`` or ``"8%"``), or a :class:`~syngeo.noise.MeasurementNoise` (absolute
        error, or estimated from replicates by :func:`~syngeo.noise.estimate_noise`). The
        likelihood then integrates the true weights out (:class:`NoisyLikelihoodEstimator`).
        None or 0 (default): weights are exact, and the result is that of the exact-weight
        estimator. Only with ``estimator="likelihood"``.

    Returns
    -------
    GeometryFit

    Raises
    ------
    InputError
        Length mismatch, NaN/inf, fewer than 50 synapses, no change or a constant change, an
        unknown estimator or candidate; :class:`~syngeo.errors.DomainError` when no candidate is
        usable (only sign-preserving candidates with sign flips or zeros).

    Notes
    -----
    A sign-preserving candidate (NE) needs every synapse to keep a non-zero sign. If any weight
    flips sign or is 0, it is *ruled out*: it stays in the ranking with NaN scores, no rank and
    the reason in ``note``.
    """
    estimator, n_bootstrap, confidence = _check_args(estimator, n_bootstrap, confidence)
    b, a = as_weight_pair(before, after)
    n = b.size
    if n < MIN_SYNAPSES:
        raise InputError(
            f"too few synapses: {n}; inferring a geometry needs at least {MIN_SYNAPSES} "
            "(several hundred for a reliable answer, see docs/inference.md)"
        )
    change = a - b
    if not np.any(change != change[0]):
        raise InputError(
            "AFTER − BEFORE is the same for every synapse "
            f"({change[0]:g}): there is no learning signal to infer a geometry from"
        )
    from syngeo.noise import as_noise

    noise_model = as_noise(noise)
    if noise_model is not None and estimator != "likelihood":
        raise InputError(
            "measurement noise is modelled by the likelihood estimator only: use "
            "estimator='likelihood' with noise, or drop noise for the cdf estimator"
        )
    cdf = CdfEstimator(grid=grid)
    like = (
        LikelihoodEstimator(fit_mean=fit_mean)
        if noise_model is None
        else NoisyLikelihoodEstimator(noise_model, fit_mean=fit_mean)
    )
    est: LikelihoodEstimator | CdfEstimator = like if estimator == "likelihood" else cdf
    gen = as_generator(rng)
    cands = _parse_candidates(candidates)
    # a dual that overflows float64 is one InputError naming the synapses, not solver noise
    from syngeo.diagnostics import check_finite_duals

    check_finite_duals(b, a, cands)
    sc = sign_changes(b, a)
    warn: list[str] = []
    if n < FEW_SYNAPSES:
        warn.append(
            f"only {n} synapses: the recovery study (docs/inference.md) finds the estimators "
            "unreliable below a few hundred"
        )
    ruled_out = [c for c in cands if c.preserves_sign and not sc.ne_valid]
    valid = [c for c in cands if c not in ruled_out]
    reason = sc.reason()
    if ruled_out:
        warn.append(f"{', '.join(c.name for c in ruled_out)} ruled out: {reason}")
    if not valid:
        raise DomainError(f"no usable candidate: {reason}; add p-norm candidates")
    data = PreparedChange._from_arrays(b, a, gen, (before, after))  # torch input: on its device
    if data.n_like == 0:
        raise InputError("every weight in AFTER is 0: there is nothing to infer from")
    if data.like_mask is not None:
        warn.append(
            f"{n - data.n_like} synapses are exactly 0 after learning; they are left out of the "
            "likelihood (a point mass outside the continuous model)"
        )

    parametric = [c for c in valid if c.parameter is not None]
    p_fitted = len(parametric) > 1 or (refine and len(parametric) == 1)

    def n_params(psi: Potential) -> int:
        return 2 + (1 if psi.parameter is not None and p_fitted else 0)

    def score_of(row: dict[str, Any], psi: Potential) -> float:
        return est.score_from_statistic(row[est.column], n_params(psi))

    rows = [_ranking_row(data, psi, like, cdf) for psi in valid]
    by_name = {psi.name: psi for psi in valid}
    # (1, smallest grid p) is NE's neighbourhood (NE is the p -> 1 end of the p-norm family) and
    # the CDF distance cannot tell it from NE: the cdf estimator does not search there.
    keep_above_grid = estimator == "cdf" and any(c.preserves_sign for c in valid)

    # --- refinement of the family parameter ---------------------------------------------------
    p_interval = None
    family: list[Potential] = []
    if parametric:
        best_grid = min(
            (psi for psi in parametric),
            key=lambda psi: _nan_last(score_of(rows[valid.index(psi)], psi)),
        )
        family = [c for c in parametric if type(c) is type(best_grid)]
        bounds = parameter_search_bounds(best_grid)
        if keep_above_grid:
            bounds = (max(bounds[0], min(c.parameter for c in family) - 1e-9), bounds[1])
        refined = best_grid
        if refine:
            lo, hi = _bracket([c.parameter for c in family], best_grid.parameter, bounds)
            refined = est.refine(data, best_grid, lo, hi)
            if refined.name not in by_name:
                by_name[refined.name] = refined
                rows.append(_ranking_row(data, refined, like, cdf) | {"refined": True})
            p_interval = est.interval(data, refined, confidence)
        p_best_family = float(refined.parameter)
    # (bound warnings are added once the winner is known: with NE best, a p-norm fit running to
    # p -> 1 is expected — NE is the p -> 1 limit of the family — and not worth a warning)

    # --- scores, AIC, ranks -------------------------------------------------------------------
    df = pd.DataFrame(rows)
    df["score"] = [score_of(r, by_name[r["candidate"]]) for r in rows]
    aic = [
        like.score_from_statistic(r["log_likelihood"], n_params(by_name[r["candidate"]]))
        for r in rows
    ]
    df["delta_aic"] = np.asarray(aic) - np.nanmin(aic)
    df = df.sort_values("score", kind="stable", na_position="last").reset_index(drop=True)
    df["rank"] = np.arange(1, len(df) + 1, dtype=float)
    df.loc[df["score"].isna(), "rank"] = np.nan
    best_row = df.iloc[0]
    best_psi = by_name[best_row["candidate"]]
    grid_df = df[~df["refined"]]
    margin = (
        float(grid_df["score"].iloc[1] - grid_df["score"].iloc[0])
        if grid_df["score"].notna().sum() > 1
        else math.nan
    )

    if parametric and best_psi.parameter is not None:
        lo_b, hi_b = parameter_search_bounds(best_psi)
        if p_best_family <= lo_b + 1e-3 or p_best_family >= hi_b - 1e-3:
            warn.append(f"the best p ({p_best_family:g}) is at the search bound {(lo_b, hi_b)}")
        if p_interval is not None and (p_interval.open_low or p_interval.open_high):
            warn.append(
                f"the {confidence:.0%} likelihood interval for p reaches the search bound "
                f"{(lo_b, hi_b)}: p is poorly determined"
            )

    # --- bootstrap ----------------------------------------------------------------------------
    win = {name: math.nan for name in df["candidate"]}
    p_interval_boot = None
    if n_bootstrap > 0:
        grid_cands = [by_name[c] for c in grid_df["candidate"] if not _is_nan(df, c)]
        resamples = BootstrapResamples(n, n_bootstrap, gen)
        gs = est.bootstrap(data, grid_cands, resamples, n_params=[n_params(c) for c in grid_cands])
        winners = np.argmin(np.where(np.isnan(gs), np.inf, gs), axis=1)
        for j, psi in enumerate(grid_cands):
            win[psi.name] = float(np.mean(winners == j))
        if family:
            centre_psi = best_psi if best_psi.parameter is not None else None
            if centre_psi is None:  # the best-ranked parametric candidate
                centre_psi = by_name[df.loc[df["p"].notna(), "candidate"].iloc[0]]
            centre = float(centre_psi.parameter)
            p_min = parameter_search_bounds(centre_psi)[0] - 1e-12
            if keep_above_grid:
                p_min = min(c.parameter for c in family) - 1e-9  # as in the refinement
            fine = np.round(
                np.arange(centre - BOOT_HALF_WIDTH, centre + BOOT_HALF_WIDTH + 1e-9, FINE_STEP), 4
            )
            boot_ps = sorted({float(p) for p in fine if p > p_min} | {c.parameter for c in family})
            best_ps = bootstrap_parameter(
                est,
                data,
                centre_psi,
                boot_ps,
                resamples,
                confidence,
                n_params=n_params(centre_psi),
                bounds=(p_min, parameter_search_bounds(centre_psi)[1]),
            )
            p_interval_boot = percentile_interval(best_ps, confidence)
    df["bootstrap_win_fraction"] = [
        math.nan if r else win.get(c, math.nan)
        for c, r in zip(df["candidate"], df["refined"], strict=True)
    ]
    if est.interval_method == "bootstrap-percentile":
        p_interval = p_interval_boot

    # --- excluded rows, warnings --------------------------------------------------------------
    if ruled_out:
        excluded = []
        for psi in ruled_out:
            row = {col: math.nan for col in RANKING_COLUMNS}
            row.update(candidate=psi.name, refined=False, note=reason)
            excluded.append(row)
        df = pd.concat([df, pd.DataFrame(excluded)], ignore_index=True)
    df = df[list(RANKING_COLUMNS)]
    mag = float(best_row["change_magnitude"])
    if mag > LAZY_MAGNITUDE:
        warn.append(
            f"change magnitude {mag:.2f} > {LAZY_MAGNITUDE} under {best_psi.name}: learning may "
            "not be lazy, and the theory's Gaussian prediction may not hold"
        )
    return GeometryFit(
        best=best_psi.name,
        best_potential=best_psi,
        best_p=None if best_psi.parameter is None else float(best_psi.parameter),
        estimator=estimator,
        ranking=df,
        p_interval=p_interval,
        p_interval_bootstrap=p_interval_boot,
        margin=margin,
        n_synapses=int(n),
        n_sign_flips=sc.n_sign_flips,
        n_zero_weights=int(np.count_nonzero((b == 0) | (a == 0))),
        ne_ruled_out=not sc.ne_valid,
        ne_ruled_out_reason=reason,
        n_bootstrap=int(n_bootstrap),
        confidence=float(confidence),
        warnings=tuple(warn),
        noise=noise_model,
    )


def _nan_last(x: float) -> float:
    return math.inf if math.isnan(x) else x


def _is_nan(df: pd.DataFrame, name: str) -> bool:
    return bool(df.loc[df["candidate"] == name, "score"].isna().all())


# ------------------------------------------------------------------------------------------------
# measurement noise: the errors-in-variables likelihood
# ------------------------------------------------------------------------------------------------
class NoisyLikelihoodEstimator(LikelihoodEstimator):
    """The likelihood estimator with the true weights latent (:mod:`syngeo.noise`).

    Observations are the true weights with Gaussian error of known size on both snapshots; the
    latent weights are integrated out by Gauss–Hermite quadrature (:class:`syngeo.noise.NoisyChange`)
    and the nuisance parameters (μ, s) of the dual change are maximised per candidate. Scores,
    refinement and likelihood-ratio intervals are those of :class:`LikelihoodEstimator` on this
    likelihood. The bootstrap holds (μ, s) at their full-data values and sums the per-synapse
    log-likelihoods with the resample's counts (a first-order approximation).

    Parameters
    ----------
    noise : MeasurementNoise or float or str
        Relative (``0.08``, ``"8%"``) or a :class:`~syngeo.noise.MeasurementNoise`.
    fit_mean : bool

    Examples
    --------
    >>> from syngeo.simulate import simulate_change
    >>> sim = simulate_change("3-norm", 1000, noise=0.05, rng=0)
    >>> data = PreparedChange.from_weights(sim.before, sim.after)
    >>> est = NoisyLikelihoodEstimator(0.05)
    >>> est.score(data, PNorm(3)) < est.score(data, PNorm(2))
    True
    """

    name = "likelihood"

    def __init__(self, noise: Any, *, fit_mean: bool = True, rng: Any = 0) -> None:
        from syngeo.noise import as_noise

        super().__init__(fit_mean=fit_mean)
        parsed = as_noise(noise)
        if parsed is None:
            raise InputError("NoisyLikelihoodEstimator needs noise > 0; use LikelihoodEstimator")
        self.noise = parsed
        self._rng = rng

    def __repr__(self) -> str:
        return f"NoisyLikelihoodEstimator({self.noise}, fit_mean={self.fit_mean})"

    def prepared(self, data: PreparedChange) -> Any:
        """The :class:`~syngeo.noise.NoisyChange` of ``data`` (built once, kept on ``data``)."""
        from syngeo.noise import NoisyChange

        key = ("noisy", self.noise)
        if key not in data._memo:
            data._memo[key] = NoisyChange(data.before, data.after, self.noise, rng=self._rng)
        return data._memo[key]

    def fit(self, data: PreparedChange, psi: Potential) -> tuple[float, float, float]:
        """(ℓ, μ̂, ŝ) of one candidate (remembered on ``data``)."""
        key = ("noisy-fit", self.noise, self.fit_mean, _candidate_key(psi))
        if key not in data._memo:
            data._memo[key] = self.prepared(data).fit(psi, fit_mean=self.fit_mean)
        return data._memo[key]

    def log_likelihood(
        self, data: PreparedChange, psi: Potential, dual: DualMoments | None = None
    ) -> float:
        """Profile log-likelihood with the latent weights integrated out."""
        return self.fit(data, psi)[0]

    def bootstrap(
        self,
        data: PreparedChange,
        candidates: Sequence[Potential],
        resamples: BootstrapResamples,
        *,
        n_params: Sequence[int] | None = None,
    ) -> np.ndarray:
        """AIC of each candidate on each resample, shape [n_resamples, len(candidates)], from
        count-weighted per-synapse log-likelihoods at the full-data (μ̂, ŝ)."""
        ks = [2] * len(candidates) if n_params is None else list(n_params)
        noisy = self.prepared(data)
        out = np.empty((resamples.n_resamples, len(candidates)))
        for j, psi in enumerate(candidates):
            _, mu, s = self.fit(data, psi)
            li = np.zeros(data.n)
            part = noisy.per_synapse(psi, mu, s)
            li[noisy.mask] = np.where(np.isfinite(part), part, -700.0)
            ll = np.concatenate([_gemv(c, li) for _, c in resamples.blocks()])
            out[:, j] = self.score_from_statistic(ll, ks[j])
        return out
