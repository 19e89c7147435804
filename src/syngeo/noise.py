r"""Measurement noise on synaptic weights: the noise model, its estimate from replicates, and the
errors-in-variables likelihood of a weight change (docs/theory.md §3, docs/inference.md).

Observed sizes are the true weights with Gaussian error on *both* snapshots,

.. math::

    o = w\,(1 + \sigma\varepsilon) \quad\text{(relative)}, \qquad
    o = w + \sigma\varepsilon \quad\text{(absolute)}, \qquad \varepsilon \sim \mathcal N(0, 1).

The true weights are latent and integrated out. Under a candidate potential :math:`\psi` with a
Gaussian dual change the likelihood of one synapse is

.. math::

    p(o_0, o_1) = \iint p(w_0)\,\mathcal N(o_0 \mid w_0)\,
        \mathcal N\big(\nabla\psi(w_1);\, \nabla\psi(w_0) + \mu, s^2\big)\,\psi''(w_1)\,
        \mathcal N(o_1 \mid w_1)\; dw_0\, dw_1 ,

a density of the observations, so candidates stay comparable. The prior :math:`p(w_0)` is a
kernel density of the observed ``before`` weights (of :math:`\log|o_0|` per sign for relative
noise) whose points are shrunk toward their mean so that its variance is the observed variance
minus the noise variance (and minus the kernel's own).

Quadrature (:class:`NoisyChange`)
    * :math:`w_0`: Gauss–Hermite nodes in the noise window of :math:`o_0` — in
      :math:`\log|w_0|` around :math:`\log|o_0|` with width :math:`\sigma` (relative), in
      :math:`w_0` around :math:`o_0` (absolute).
    * :math:`w_1`, in the dual coordinate :math:`u_1 = \nabla\psi(w_1)` (where the transition is
      a plain Gaussian): the noise of :math:`o_1` is linearised into
      :math:`\mathcal N(u_1; \nabla\psi(o_1), \sigma_u^2)`, :math:`\sigma_u = \sigma|o_1|\psi''(o_1)`
      (relative) or :math:`\sigma\psi''(o_1)` (absolute), the product with the transition is a
      Gaussian in :math:`u_1`, and Gauss–Hermite nodes are placed on that product. The exact
      integrand divided by the Gaussian is smooth, so a few nodes suffice whether the change is
      wider or narrower than the noise (nodes on the change alone miss a narrow noise window;
      nodes on the noise window alone miss a narrow change).

    The nuisance parameters :math:`(\mu, s)` are maximised on the linearised likelihood (the
    inner integral in closed form, a Gaussian convolution) with its analytic gradient, and the
    exact likelihood is then evaluated at that maximum.

Survival (p-norms)
    The model keeps weights whose dual coordinate crosses zero (a sign flip), as
    :func:`syngeo.simulate_change` does and as the noise-free estimator does; it does not
    condition on survival. Under relative noise an observed sign equals the true sign (the
    probability of a flip by noise is :math:`\Phi(-1/\sigma)`), so synapses with an observation
    exactly 0 are left out of the likelihood (the same subset for every candidate).

Examples
--------
>>> import numpy as np
>>> noise = as_noise("8%")
>>> noise.kind, noise.sigma
('relative', 0.08)
>>> g = np.random.default_rng(0)
>>> w = g.lognormal(0, 1, 5000)
>>> est = estimate_noise(w * (1 + 0.05 * g.normal(size=5000)), w * (1 + 0.05 * g.normal(size=5000)))
>>> bool(abs(est.sigma - 0.05) < 3 * est.se)
True
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.optimize
import scipy.special
import scipy.stats

from syngeo.errors import InputError, InputTypeError
from syngeo.potentials import Potential
from syngeo.validation import as_choice, as_finite_float, as_positive_int, as_probability

__all__ = [
    "NOISE_KINDS",
    "MeasurementNoise",
    "NoisyChange",
    "as_noise",
    "estimate_noise",
]

#: Relative (``o = w(1 + σε)``) or absolute (``o = w + σε``) Gaussian error.
NOISE_KINDS = ("relative", "absolute")
#: Gauss–Hermite nodes for w0 (in the noise window of o0) and for w1 (on the transition × noise).
OUTER_NODES = 8
INNER_NODES = 10
#: Relative noise above this is refused: o = w(1 + σε) then flips signs and the model breaks.
MAX_RELATIVE = 0.5
#: Points of the prior's kernel density (a random subsample beyond this) and of its grid.
PRIOR_POINTS = 4000
PRIOR_GRID = 512
_LOG_TINY = -700.0
#: Synapses per block of the exact quadrature (keeps [block, outer, inner] arrays in cache).
_BLOCK = 2048
#: Newton iterations of the (μ, s) fit.
MAX_NEWTON = 50
#: Stop when the Newton decrement (≈ twice the remaining gain in ℓ) is below this.
NEWTON_TOL = 1e-5


@dataclass(frozen=True)
class MeasurementNoise:
    """Gaussian measurement error of known (or estimated) size.

    Attributes
    ----------
    sigma : float
        Relative error (0.08 = 8 %) or absolute error (weight units).
    kind : {"relative", "absolute"}
    se : float or None
        Standard error of ``sigma`` when it was estimated from replicates.
    n_pairs : int or None
        Replicate pairs it was estimated from.
    low, high : float or None
        Its 95 % confidence interval (exact χ² interval) when estimated.
    """

    sigma: float
    kind: str = "relative"
    se: float | None = None
    n_pairs: int | None = None
    low: float | None = None
    high: float | None = None

    def __post_init__(self) -> None:
        as_choice(self.kind, "noise kind", NOISE_KINDS)
        s = as_finite_float(self.sigma, "noise")
        if not s > 0:
            raise InputError(f"noise must be > 0, got {s:g} (pass noise=None for exact weights)")
        if self.kind == "relative" and s > MAX_RELATIVE:
            raise InputError(
                f"relative noise {s:g} is above {MAX_RELATIVE:g}: observations would change "
                "sign; use absolute noise (--noise-abs) or check the units (8% is 0.08)"
            )
        object.__setattr__(self, "sigma", s)

    def __str__(self) -> str:
        size = f"{self.sigma:.3g}" if self.kind == "absolute" else f"{100 * self.sigma:.3g} %"
        est = "" if self.se is None else f" ± {self.se:.2g} (from {self.n_pairs} replicate pairs)"
        return f"{self.kind} noise {size}{est}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "sigma": self.sigma,
            "kind": self.kind,
            "se": self.se,
            "n_pairs": self.n_pairs,
            "low": self.low,
            "high": self.high,
        }


def as_noise(noise: Any, kind: str = "relative") -> MeasurementNoise | None:
    """A :class:`MeasurementNoise` from a number, ``"8%"``, or a MeasurementNoise; None or 0 is
    no noise (the exact-weight estimator).

    >>> as_noise(0.002, "absolute")
    MeasurementNoise(sigma=0.002, kind='absolute', se=None, n_pairs=None, low=None, high=None)
    >>> as_noise(0) is None
    True
    """
    if noise is None or isinstance(noise, MeasurementNoise):
        return noise
    if isinstance(noise, bool):
        raise InputTypeError("noise must be a number (0.08), a percentage ('8%') or None")
    if isinstance(noise, str):
        text = noise.strip()
        scale = 1.0
        if text.endswith("%"):
            text, scale = text[:-1].strip(), 0.01
        try:
            value = float(text) * scale
        except ValueError:
            raise InputError(
                f"bad noise {noise!r}: write a fraction (0.08) or a percentage (8%)"
            ) from None
    else:
        value = as_finite_float(noise, "noise")
    if value < 0 or not math.isfinite(value):
        raise InputError(f"noise must be >= 0, got {value:g}")
    if value == 0:
        return None
    return MeasurementNoise(value, kind)


def estimate_noise(
    first: Any, second: Any, kind: str = "relative", *, confidence: float = 0.95
) -> MeasurementNoise:
    r"""The noise level from two measurements of the same synapses.

    Relative: :math:`d_i = (m_{1,i} - m_{2,i}) / \bar m_i` with :math:`\bar m_i` their mean, so
    :math:`d_i \approx \sigma(\varepsilon_1 - \varepsilon_2)` (to :math:`O(\sigma^2)`);
    absolute: :math:`d_i = m_{1,i} - m_{2,i}`. Then :math:`\hat\sigma^2 = \sum d_i^2 / 2n`,
    :math:`\mathrm{se}(\hat\sigma) = \hat\sigma/\sqrt{2n}` (delta method), and the exact interval
    from :math:`\sum d_i^2/(2\sigma^2) \sim \chi^2_n`.

    Raises
    ------
    InputError
        Different lengths, fewer than 2 pairs, non-finite values, or (relative) a pair whose
        mean is not positive.
    """
    as_choice(kind, "noise kind", NOISE_KINDS)
    level = as_probability(confidence, "confidence")
    a = np.asarray(first, dtype=np.float64).ravel()
    b = np.asarray(second, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise InputError(f"replicates differ in length: {a.size} and {b.size} measurements")
    bad = ~(np.isfinite(a) & np.isfinite(b))
    if bad.any():
        raise InputError(f"{int(bad.sum())} replicate pairs are NaN or infinite; drop them first")
    n = a.size
    if n < 2:
        raise InputError(f"estimating the noise needs at least 2 replicate pairs, got {n}")
    if kind == "relative":
        mean = 0.5 * (a + b)
        if np.any(mean <= 0):
            raise InputError(
                f"{int(np.sum(mean <= 0))} replicate pairs have a mean <= 0: relative noise needs "
                "positive sizes (use kind='absolute' for signed weights)"
            )
        d = (a - b) / mean
    else:
        d = a - b
    ss = float(np.sum(d * d))
    if not ss > 0:
        raise InputError("the replicates are identical: no measurement noise to estimate")
    sigma = math.sqrt(ss / (2 * n))
    alpha = 1 - level
    low = math.sqrt(ss / (2 * scipy.stats.chi2.ppf(1 - alpha / 2, n)))
    high = math.sqrt(ss / (2 * scipy.stats.chi2.ppf(alpha / 2, n)))
    return MeasurementNoise(sigma, kind, sigma / math.sqrt(2 * n), n, low, high)


# ------------------------------------------------------------------------------------------------
# the prior of the true initial weights
# ------------------------------------------------------------------------------------------------
def _log_noise_variance(sigma: float) -> float:
    """Var log|1 + σε| (the relative noise in log space), by Gauss–Hermite."""
    z, w = np.polynomial.hermite.hermgauss(80)
    x = np.log(np.abs(1 + sigma * math.sqrt(2) * z))
    m = np.sum(w * x) / math.sqrt(math.pi)
    return float(np.sum(w * (x - m) ** 2) / math.sqrt(math.pi))


class _GridPrior:
    """A log density on a grid: a kernel density of points shrunk to a target variance."""

    def __init__(self, y: np.ndarray, noise_var: float, rng: np.random.Generator) -> None:
        if y.size > PRIOR_POINTS:
            y = rng.choice(y, PRIOR_POINTS, replace=False)
        n = y.size
        m = float(np.mean(y))
        v = float(np.var(y))
        sd = math.sqrt(v) if v > 0 else 1e-3
        iqr = float(np.subtract(*np.percentile(y, [75, 25]))) / 1.34
        spread = min(sd, iqr) if iqr > 0 else sd
        target = max(v - noise_var, 0.01 * v)
        h = 0.9 * spread * n ** (-0.2) * math.sqrt(target / v) if v > 0 else 1e-3
        h = max(h, 1e-12)
        lam = math.sqrt(max(target - h * h, 0.01 * v) / v) if v > 0 else 1.0
        centres = m + lam * (y - m)
        lo, hi = centres.min() - 6 * h, centres.max() + 6 * h
        self.grid = np.linspace(lo, hi, PRIOR_GRID)
        z = (self.grid[:, None] - centres[None, :]) / h
        dens = np.exp(-0.5 * z * z).sum(axis=1) / (n * h * math.sqrt(2 * math.pi))
        self.log_density = np.log(np.maximum(dens, 1e-300))
        self.mean, self.var = m, lam * lam * v + h * h

    def __call__(self, x: np.ndarray) -> np.ndarray:
        out = np.interp(x, self.grid, self.log_density)
        # beyond the grid: a Gaussian tail of the corrected variance, continuous at the ends
        for end, idx in ((self.grid[0], 0), (self.grid[-1], -1)):
            beyond = x < end if idx == 0 else x > end
            if np.any(beyond):
                d2 = (x[beyond] - self.mean) ** 2 - (end - self.mean) ** 2
                out[beyond] = self.log_density[idx] - 0.5 * d2 / self.var
        return out


# ------------------------------------------------------------------------------------------------
# the prepared noisy change
# ------------------------------------------------------------------------------------------------
def _logsumexp(a: np.ndarray, axis: int) -> np.ndarray:
    m = np.max(a, axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    with np.errstate(divide="ignore"):
        return np.log(np.sum(np.exp(a - m), axis=axis)) + np.squeeze(m, axis=axis)


class NoisyChange:
    """Observed weights before/after with known noise, prepared for many candidates.

    The outer nodes (true initial weights), their prior and noise terms are computed once; each
    candidate then costs one linearised fit of (μ, s) and one exact evaluation.

    Parameters
    ----------
    before, after : numpy.ndarray, shape=[n]
        Observed weights (validated by the caller).
    noise : MeasurementNoise
    outer, inner : int
        Gauss–Hermite nodes for w0 and w1.
    rng : numpy.random.Generator or int or None
        The prior's subsample (more than :data:`PRIOR_POINTS` synapses).

    Attributes
    ----------
    mask : numpy.ndarray of bool
        Synapses in the likelihood (relative noise: both observations non-zero).
    n_like : int
    """

    def __init__(
        self,
        before: np.ndarray,
        after: np.ndarray,
        noise: MeasurementNoise,
        *,
        outer: int = OUTER_NODES,
        inner: int = INNER_NODES,
        rng: Any = None,
    ) -> None:
        from syngeo.validation import as_generator

        self.noise = noise
        outer = as_positive_int(outer, "outer")
        inner = as_positive_int(inner, "inner")
        gen = as_generator(rng)
        b = np.asarray(before, dtype=np.float64).ravel()
        a = np.asarray(after, dtype=np.float64).ravel()
        if noise.kind == "relative":
            self.mask = (b != 0) & (a != 0)
        else:
            self.mask = np.ones(b.size, dtype=bool)
        self.o0, self.o1 = b[self.mask], a[self.mask]
        self.n_like = int(self.o0.size)
        self.sign0 = np.where(self.o0 < 0, -1.0, 1.0)
        sigma = noise.sigma
        z, wq = np.polynomial.hermite.hermgauss(outer)
        # ∫ f(x) dx = Σ_k ω_k e^{z_k²} √2σ f(x_k) on x_k = centre + √2σ z_k
        log_wq = np.log(wq) + z * z + math.log(math.sqrt(2) * sigma)
        if noise.kind == "relative":
            x0 = np.log(np.abs(self.o0))
            xk = x0[:, None] + math.sqrt(2) * sigma * z[None, :]
            self.w0 = self.sign0[:, None] * np.exp(xk)
            # density of o0 given w0: φ((o/w − 1)/σ)/(σ|w0|); the prior is per unit of log|w0|
            r = (self.o0[:, None] / self.w0 - 1.0) / sigma
            log_scale = xk
            nv = _log_noise_variance(sigma)
            self._priors = {
                s: (_GridPrior(x0[self.sign0 == s], nv, gen), math.log(np.mean(self.sign0 == s)))
                for s in (-1.0, 1.0)
                if np.any(self.sign0 == s)
            }
        else:
            self.w0 = self.o0[:, None] + math.sqrt(2) * sigma * z[None, :]
            r = (self.o0[:, None] - self.w0) / sigma
            log_scale = 0.0
            self._priors = {0.0: (_GridPrior(self.o0, sigma * sigma, gen), 0.0)}
        log_obs = -0.5 * r * r - math.log(sigma * math.sqrt(2 * math.pi)) - log_scale
        log_prior = self.log_prior(self.w0)
        self.log_c = log_wq[None, :] + log_obs + log_prior
        zi, wi = np.polynomial.hermite.hermgauss(inner)
        self._zi = zi
        self._log_wi = np.log(wi) - 0.5 * math.log(math.pi)

    def log_prior(self, w0: np.ndarray) -> np.ndarray:
        """log prior of true initial weights ``w0``: per unit of log|w0| (relative noise; the
        sign's frequency included) or per unit of w0 (absolute)."""
        w0 = np.asarray(w0, dtype=np.float64)
        out = np.full(w0.shape, -np.inf)
        if self.noise.kind == "absolute":
            prior, _ = self._priors[0.0]
            return prior(w0.ravel()).reshape(w0.shape)
        with np.errstate(divide="ignore"):
            x = np.log(np.abs(w0))
        for s, (prior, frac) in self._priors.items():
            rows = (np.sign(w0) == s) & np.isfinite(x)
            if rows.any():
                out[rows] = prior(x[rows]) + frac
        return out

    # -- per candidate ---------------------------------------------------------------------------
    def _observed_dual(self, psi: Potential) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(u0 at the outer nodes [n, K], ∇ψ(o1) [n], σ_u² of the linearised o1 noise [n])."""
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            u0 = np.asarray(psi.grad(self.w0), dtype=np.float64)
            u1 = np.asarray(psi.grad(self.o1), dtype=np.float64)
            sigma = self.noise.sigma
            if self.noise.kind == "relative":
                su = sigma * np.abs(self.o1) * np.asarray(psi.hessian_diag(self.o1))
            else:
                a = np.abs(self.o1)
                h = np.maximum(
                    np.asarray(psi.hessian_diag(a)), np.asarray(psi.hessian_diag(a + sigma))
                )
                su = sigma * h
        su2 = np.where(np.isfinite(su) & (su > 0), su * su, np.nan)
        fallback = np.nanmedian(su2) if np.any(np.isfinite(su2)) else 1.0
        su2 = np.where(np.isfinite(su2), su2, fallback)
        u0 = np.where(np.isfinite(u0), u0, np.nan)
        return u0, u1, su2

    def _linearised(
        self, params: np.ndarray, d: np.ndarray, su2: np.ndarray, order: int
    ) -> tuple[float, np.ndarray, np.ndarray]:
        """Σ_i log Σ_k c_ik N(d_ik; μ, s² + σ_u,i²) with its gradient and Hessian in (μ, log s)
        (``order`` 0: value only), accumulated over blocks of synapses."""
        total, grad, hess = 0.0, np.zeros(2), np.zeros((2, 2))
        for a in range(0, self.n_like, 4 * _BLOCK):
            sl = slice(a, a + 4 * _BLOCK)
            t, g, h = self._linearised_block(params, d[sl], su2[sl], self.log_c[sl], order)
            total, grad, hess = total + t, grad + g, hess + h
        return total, grad, hess

    @staticmethod
    def _linearised_block(
        params: np.ndarray, d: np.ndarray, su2: np.ndarray, log_c: np.ndarray, order: int
    ) -> tuple[float, np.ndarray, np.ndarray]:
        mu, log_s = float(params[0]), float(params[1])
        s2 = math.exp(2 * log_s)
        v = s2 + su2[:, None]
        e = d - mu
        with np.errstate(invalid="ignore"):
            lk = log_c - 0.5 * (e * e / v + np.log(2 * math.pi * v))
        lk = np.where(np.isfinite(lk), lk, -np.inf)
        li = _logsumexp(lk, axis=1)
        total = float(np.sum(li))
        if order == 0:
            return total, np.zeros(2), np.zeros((2, 2))
        with np.errstate(invalid="ignore", under="ignore"):
            pi = np.exp(lk - li[:, None])
        pi = np.where(np.isfinite(pi), pi, 0.0)
        e = np.where(pi > 0, e, 0.0)
        g_mu = e / v
        g_t = s2 * (e * e / (v * v) - 1.0 / v)
        h_mm = -1.0 / v
        h_mt = -2.0 * s2 * e / (v * v)
        h_tt = 2.0 * g_t + 2.0 * s2 * s2 * (1.0 / (v * v) - 2.0 * e * e / (v * v * v))
        gm_i = np.sum(pi * g_mu, axis=1)
        gt_i = np.sum(pi * g_t, axis=1)
        grad = np.array([gm_i.sum(), gt_i.sum()])
        hess = np.empty((2, 2))
        hess[0, 0] = np.sum(pi * (h_mm + g_mu * g_mu)) - np.sum(gm_i * gm_i)
        hess[0, 1] = hess[1, 0] = np.sum(pi * (h_mt + g_mu * g_t)) - np.sum(gm_i * gt_i)
        hess[1, 1] = np.sum(pi * (h_tt + g_t * g_t)) - np.sum(gt_i * gt_i)
        return total, grad, hess

    def _maximise(
        self, x: np.ndarray, d: np.ndarray, su2: np.ndarray, fit_mean: bool
    ) -> np.ndarray:
        """Damped Newton on the linearised likelihood in (μ, log s) (μ held fixed unless
        ``fit_mean``); a step is kept when it does not lower ℓ (else the damping grows), and the
        iteration stops when the Newton decrement g·step (twice the expected gain in ℓ) is below
        :data:`NEWTON_TOL`."""
        free = [0, 1] if fit_mean else [1]
        val, g, h = self._linearised(x, d, su2, 2)
        for _ in range(MAX_NEWTON):
            gf, hf = g[free], h[np.ix_(free, free)]
            scale = max(1.0, float(np.max(np.abs(hf))))
            lam = 0.0
            for _ in range(40):
                m = -hf + lam * np.eye(len(free))
                if bool(np.all(np.linalg.eigvalsh(m) > 0)):
                    step = np.linalg.solve(m, gf)
                    trial = x.copy()
                    trial[free] += step
                    tval, tg, th = self._linearised(trial, d, su2, 2)
                    if tval >= val:
                        break
                lam = max(10 * lam, 1e-8 * scale)
            else:
                return x
            decrement = float(gf @ step)
            x, val, g, h = trial, tval, tg, th
            if decrement < NEWTON_TOL:
                break
        return x

    def fit(self, psi: Potential, *, fit_mean: bool = True) -> tuple[float, float, float]:
        """(ℓ, μ̂, ŝ): the profile log-likelihood of ``psi`` (exact quadrature at the (μ, s)
        that maximise the linearised likelihood)."""
        u0, u1, su2 = self._observed_dual(psi)
        d = u1[:, None] - u0
        d = np.where(np.isfinite(d), d, np.inf)
        # start: moments of the observed dual change, minus the noise variance
        with np.errstate(invalid="ignore"):
            dmid = d[:, d.shape[1] // 2]
        ok = np.isfinite(dmid)
        mu0 = float(np.mean(dmid[ok])) if fit_mean and ok.any() else 0.0
        var0 = float(np.var(dmid[ok])) if ok.any() else 1.0
        noise_var = 2.0 * float(np.mean(su2))
        s0 = math.sqrt(max(var0 - noise_var, 0.05 * var0, 1e-300))
        x0 = np.array([mu0 if fit_mean else 0.0, math.log(s0)])

        xs = self._maximise(x0, d, su2, fit_mean)
        mu, s = float(xs[0]), math.exp(float(xs[1]))
        return self.exact(psi, mu, s, u0=u0, u1=u1, su2=su2), mu, s

    def per_synapse(
        self,
        psi: Potential,
        mu: float,
        s: float,
        *,
        u0: np.ndarray | None = None,
        u1: np.ndarray | None = None,
        su2: np.ndarray | None = None,
    ) -> np.ndarray:
        """log p(o0_i, o1_i) per likelihood synapse at (μ, s), exact quadrature."""
        if u0 is None or u1 is None or su2 is None:
            u0, u1, su2 = self._observed_dual(psi)
        out = np.empty(self.n_like)
        for a in range(0, self.n_like, _BLOCK):
            sl = slice(a, a + _BLOCK)
            out[sl] = self._block(psi, mu, s, sl, u0[sl], u1[sl], su2[sl])
        return out

    def _block(
        self,
        psi: Potential,
        mu: float,
        s: float,
        sl: slice,
        u0: np.ndarray,
        u1: np.ndarray,
        su2: np.ndarray,
    ) -> np.ndarray:
        s2 = s * s
        v = s2 + su2  # [n]
        tau = np.sqrt(s2 * su2 / v)  # [n]
        mean = u0 + mu  # [n, K]
        m = (u1[:, None] * s2 + mean * su2[:, None]) / v[:, None]
        e = u1[:, None] - mean
        log_conv = -0.5 * (e * e / v[:, None] + np.log(2 * math.pi * v)[:, None])
        nodes = m[:, :, None] + (math.sqrt(2) * tau)[:, None, None] * self._zi[None, None, :]
        sign = self.sign0[sl, None, None]
        sigma = self.noise.sigma
        with np.errstate(divide="ignore", invalid="ignore", over="ignore", under="ignore"):
            w1 = np.asarray(psi.grad_inverse(nodes, np.broadcast_to(sign, nodes.shape)))
            o1 = self.o1[sl, None, None]
            if self.noise.kind == "relative":
                r = (o1 - w1) / (sigma * w1)
                log_obs = -0.5 * r * r - np.log(sigma * np.abs(w1) * math.sqrt(2 * math.pi))
            else:
                r = (o1 - w1) / sigma
                log_obs = -0.5 * r * r - math.log(sigma * math.sqrt(2 * math.pi))
            g = (nodes - u1[:, None, None]) ** 2 / su2[:, None, None]
            log_lin = -0.5 * (g + np.log(2 * math.pi * su2)[:, None, None])
            lr = log_obs - log_lin + self._log_wi[None, None, :]
        lr = np.where(np.isfinite(lr), lr, -np.inf)
        inner = _logsumexp(lr, axis=2) + log_conv
        total = self.log_c[sl] + np.where(np.isfinite(inner), inner, -np.inf)
        return _logsumexp(total, axis=1)

    def exact(self, psi: Potential, mu: float, s: float, **cached: Any) -> float:
        """Σ_i log p(o0_i, o1_i) at (μ, s)."""
        li = self.per_synapse(psi, mu, s, **cached)
        return float(np.sum(np.where(np.isfinite(li), li, _LOG_TINY)))


def read_replicates(path: Any, kind: str = "relative") -> MeasurementNoise:
    """:func:`estimate_noise` from a table of replicate measurements (csv, tsv or parquet).

    The table holds two measurements of each synapse: exactly two numeric columns, or the
    columns ``first`` and ``second``. Rows with a missing value are an error (the message says
    how many).
    """
    from pathlib import Path

    import pandas as pd

    p = Path(path)
    if not p.exists():
        raise InputError(f"replicates file {str(p)!r} does not exist")
    suffix = p.suffix.lower()
    if suffix == ".parquet":
        df = pd.read_parquet(p)
    elif suffix in (".csv", ".tsv", ".txt"):
        df = pd.read_csv(p, sep="\t" if suffix == ".tsv" else ",")
    else:
        raise InputError(f"replicates file {p.name!r}: use a .csv, .tsv or .parquet table")
    if {"first", "second"} <= set(df.columns):
        cols = ["first", "second"]
    else:
        cols = [c for c in df.columns if pd.api.types.is_numeric_dtype(df[c])]
        if len(cols) != 2:
            raise InputError(
                f"replicates file {p.name!r} has {len(cols)} numeric columns "
                f"({', '.join(map(str, cols)) or 'none'}); it needs exactly two (two measurements "
                "per synapse), or columns named 'first' and 'second'"
            )
    sub = df[cols]
    missing = int(sub.isna().any(axis=1).sum())
    if missing:
        raise InputError(f"replicates file {p.name!r}: {missing} rows have a missing value")
    return estimate_noise(sub.iloc[:, 0].to_numpy(float), sub.iloc[:, 1].to_numpy(float), kind)


def noise_from_options(
    noise: Any = None, noise_abs: Any = None, replicates: Any = None
) -> MeasurementNoise | None:
    """The noise model of ``syngeo infer --noise 8% | --noise-abs 0.002 | --replicates FILE``
    (at most one of ``noise``/``noise_abs``; with ``replicates`` the kind follows ``noise_abs``
    being given or not, and the level is estimated from the file).

    >>> noise_from_options("8%")
    MeasurementNoise(sigma=0.08, kind='relative', se=None, n_pairs=None, low=None, high=None)
    """
    given = [x for x in (noise, noise_abs) if x is not None]
    if len(given) > 1:
        raise InputError("give either --noise (relative) or --noise-abs (absolute), not both")
    if replicates is not None:
        if given and str(given[0]).lower() not in ("est", "estimate"):
            raise InputError(
                "--replicates estimates the noise level: drop the number from --noise/--noise-abs"
            )
        return read_replicates(replicates, "absolute" if noise_abs is not None else "relative")
    if noise_abs is not None:
        return as_noise(noise_abs, "absolute")
    return as_noise(noise)
