"""Measurement noise: the noise model, its replicate estimate and the errors-in-variables
likelihood (syngeo.noise; docs/inference.md, "Measurement noise").

The quadrature is checked against two independent integrations of the same double integral —
a dense trapezoid grid and plain Monte Carlo in a box — and against its σ → 0 limit, the
exact-weight likelihood; the estimator against known truths.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

import syngeo
from syngeo.errors import InputError
from syngeo.inference import (
    BootstrapResamples,
    NoisyLikelihoodEstimator,
    PreparedChange,
    infer_geometry,
)
from syngeo.noise import (
    MeasurementNoise,
    NoisyChange,
    as_noise,
    estimate_noise,
    noise_from_options,
    read_replicates,
)
from syngeo.potentials import NegativeEntropy, PNorm


# ------------------------------------------------------------------------------------------------
# an independent integration of p(o0, o1)
# ------------------------------------------------------------------------------------------------
def _integrand(nc, psi, mu, s, i, x, u1):
    """log of the integrand on (x = log|w0| or w0) × u1 (the measure dx du1), broadcasting."""
    sig = nc.noise.sigma
    o0, o1, sg = nc.o0[i], nc.o1[i], nc.sign0[i]
    if nc.noise.kind == "relative":
        w0 = sg * np.exp(x)
        lo0 = -0.5 * ((o0 / w0 - 1) / sig) ** 2 - np.log(sig * np.abs(w0) * math.sqrt(2 * math.pi))
    else:
        w0 = x
        lo0 = -0.5 * ((o0 - w0) / sig) ** 2 - math.log(sig * math.sqrt(2 * math.pi))
    u0 = psi.grad(w0)
    w1 = psi.grad_inverse(u1, np.full(np.shape(u1), sg))
    if nc.noise.kind == "relative":
        lo1 = -0.5 * ((o1 - w1) / (sig * w1)) ** 2 - np.log(
            sig * np.abs(w1) * math.sqrt(2 * math.pi)
        )
    else:
        lo1 = -0.5 * ((o1 - w1) / sig) ** 2 - math.log(sig * math.sqrt(2 * math.pi))
    lt = -0.5 * ((u1 - u0 - mu) / s) ** 2 - math.log(s * math.sqrt(2 * math.pi))
    return nc.log_prior(w0) + lo0 + lt + lo1


def _box(nc, psi, i, width=9.0):
    """Integration box: ±width σ around o0 (in log|w| for relative noise) and the image in u1 of
    ±width σ around o1 (outside it the o1 noise factor is below e^{-40})."""
    sig = nc.noise.sigma
    o0, o1 = nc.o0[i], nc.o1[i]
    if nc.noise.kind == "relative":
        x = (math.log(abs(o0)) - width * sig, math.log(abs(o0)) + width * sig)
        wwin = np.sort(o1 * (1 + np.array([-width, width]) * sig))
    else:
        x = (o0 - width * sig, o0 + width * sig)
        wwin = o1 + np.array([-width, width]) * sig
    u = np.sort(psi.grad(wwin))
    return x, (float(u[0]), float(u[1]))


def dense_log_density(nc, psi, mu, s, i, n0=801, n1=3001):
    (x_lo, x_hi), (u_lo, u_hi) = _box(nc, psi, i)
    x = np.linspace(x_lo, x_hi, n0)
    u1 = np.linspace(u_lo, u_hi, n1)
    f = np.exp(_integrand(nc, psi, mu, s, i, x[:, None], u1[None, :]))
    return math.log(np.trapezoid(np.trapezoid(f, u1, axis=1), x))


def _noisy_data(truth, sigma, kind, n=400, seed=3):
    sim = syngeo.simulate_change(truth, n, init="lognormal", rng=seed)
    g = np.random.default_rng(seed + 100)
    if kind == "relative":
        b = sim.before * (1 + sigma * g.normal(size=n))
        a = sim.after * (1 + sigma * g.normal(size=n))
    else:
        b = sim.before + sigma * g.normal(size=n)
        a = sim.after + sigma * g.normal(size=n)
    return b, a


# Measured agreement (8 × 10 nodes) with the 801 × 3001 trapezoid grid: 4e-5 to 4e-4 per synapse
# in log p for these settings (the grid's own error is ~1e-6: the integrand is smooth and
# resolved by > 20 points per width). The tolerance, 2e-3, is ~10x the measured error and far
# below what shifts a fit (a 1e-3 error common to all synapses moves ℓ, not its argmax).
CASES = [
    ("3-norm", 0.05, "relative"),  # change narrower than the noise in the dual (s/σ_u ≈ 0.4)
    ("1.5-norm", 0.1, "relative"),  # change wider than the noise (s/σ_u ≈ 2)
    ("ne", 0.1, "relative"),
    ("2-norm", 0.003, "absolute"),
    ("3-norm", 0.004, "absolute"),
]


@pytest.mark.parametrize(("truth", "sigma", "kind"), CASES)
def test_quadrature_matches_a_dense_grid(truth, sigma, kind):
    b, a = _noisy_data(truth, sigma, kind)
    psi = syngeo.potential(truth)
    nc = NoisyChange(b, a, MeasurementNoise(sigma, kind), rng=0)
    ell, mu, s = nc.fit(psi)
    li = nc.per_synapse(psi, mu, s)
    assert math.isclose(ell, float(np.sum(li)), rel_tol=1e-12)
    for i in range(6):
        assert abs(li[i] - dense_log_density(nc, psi, mu, s, i)) < 2e-3, i


def test_quadrature_matches_monte_carlo():
    """Plain Monte Carlo in the box: the estimate of p and its standard error from the samples;
    the quadrature must lie within 4 standard errors (a false alarm has probability 6e-5)."""
    b, a = _noisy_data("3-norm", 0.05, "relative")
    psi = PNorm(3)
    nc = NoisyChange(b, a, MeasurementNoise(0.05), rng=0)
    _, mu, s = nc.fit(psi)
    li = nc.per_synapse(psi, mu, s)
    g = np.random.default_rng(7)
    for i in range(3):
        (x_lo, x_hi), (u_lo, u_hi) = _box(nc, psi, i)
        m = 1_000_000
        x = g.uniform(x_lo, x_hi, m)
        u1 = g.uniform(u_lo, u_hi, m)
        f = np.exp(_integrand(nc, psi, mu, s, i, x, u1)) * (x_hi - x_lo) * (u_hi - u_lo)
        est, se = f.mean(), f.std() / math.sqrt(m)
        assert abs(math.exp(li[i]) - est) < 4 * se, (i, math.exp(li[i]), est, se)
        assert se < 0.05 * est  # the check has teeth: a 20 % error in p is > 4 se


def test_small_noise_limit_is_the_exact_weight_likelihood():
    """σ → 0: p(o0, o1) -> prior(o0) · N(∇ψ(o1) − ∇ψ(o0); μ, s²) ψ''(o1) (docs/inference.md)."""
    sim = syngeo.simulate_change("3-norm", 300, init="lognormal", rng=1)
    psi = PNorm(3)
    nc = NoisyChange(sim.before, sim.after, MeasurementNoise(1e-5), rng=0)
    mu, s = 1e-4, 2e-3
    li = nc.per_synapse(psi, mu, s)
    o0, o1 = nc.o0, nc.o1
    delta = psi.grad(o1) - psi.grad(o0)
    expected = (
        nc.log_prior(o0)
        - np.log(np.abs(o0))
        - 0.5 * ((delta - mu) / s) ** 2
        - math.log(s * math.sqrt(2 * math.pi))
        + np.log(psi.hessian_diag(o1))
    )
    np.testing.assert_allclose(li, expected, atol=1e-3)


def test_prior_is_a_density_with_the_corrected_variance():
    """The prior integrates to 1 (over log|w| per sign, weighted by the sign frequency) and its
    variance is the observed variance of log|o0| minus the noise variance (to the KDE's ±5 %)."""
    g = np.random.default_rng(0)
    n = 4000
    w = g.lognormal(0.0, 0.3, n)
    sigma = 0.2
    o0 = w * (1 + sigma * g.normal(size=n))
    nc = NoisyChange(o0, o0 * 1.01, MeasurementNoise(sigma), rng=0)
    x = np.linspace(-4, 4, 20001)
    dens = np.exp(nc.log_prior(np.exp(x)))
    assert math.isclose(np.trapezoid(dens, x), 1.0, rel_tol=1e-3)
    mean = np.trapezoid(x * dens, x)
    var = np.trapezoid((x - mean) ** 2 * dens, x)
    assert abs(var - 0.09) < 0.1 * 0.09
    assert abs(np.var(np.log(o0)) - 0.09) > 0.3 * 0.09  # the uncorrected variance is far off


# ------------------------------------------------------------------------------------------------
# the estimator
# ------------------------------------------------------------------------------------------------
def test_noise_recovers_the_three_norm_where_exact_weights_fail():
    sim = syngeo.simulate_change("3-norm", 2000, noise=0.05, init="lognormal", rng=11)
    naive = infer_geometry(sim.before, sim.after, n_bootstrap=0, rng=0)
    fit = infer_geometry(sim.before, sim.after, n_bootstrap=0, rng=0, noise=0.05)
    assert naive.best_p is not None and naive.best_p < 2.8  # the problem
    assert fit.best_p is not None and abs(fit.best_p - 3) < 0.1
    assert 3 in fit.p_interval
    assert fit.noise == MeasurementNoise(0.05)
    assert fit.to_dict()["noise"]["sigma"] == 0.05
    assert "measurement noise modelled" in fit.summary()


def test_absolute_noise_recovers_the_two_norm():
    b, a = _noisy_data("2-norm", 0.003, "absolute", n=1500, seed=5)
    fit = infer_geometry(
        b,
        a,
        ["ne", *[f"{p / 10:g}-norm" for p in range(15, 31, 5)]],
        n_bootstrap=0,
        noise=MeasurementNoise(0.003, "absolute"),
    )
    assert abs(fit.best_p - 2) < 0.15


def test_without_noise_the_result_is_unchanged_bit_for_bit():
    sim = syngeo.simulate_change("3-norm", 500, noise=0.03, rng=2)
    ref = infer_geometry(sim.before, sim.after, n_bootstrap=20, rng=4)
    for off in (None, 0, 0.0, "0%"):
        fit = infer_geometry(sim.before, sim.after, n_bootstrap=20, rng=4, noise=off)
        pd.testing.assert_frame_equal(fit.ranking, ref.ranking, check_exact=True)
        assert fit.p_interval == ref.p_interval and fit.noise is None
        assert fit.to_dict().keys() == ref.to_dict().keys()


def test_fixed_mean_is_zero():
    sim = syngeo.simulate_change("2-norm", 400, noise=0.05, rng=2)
    data = PreparedChange.from_weights(sim.before, sim.after)
    est = NoisyLikelihoodEstimator(0.05, fit_mean=False)
    ell, mu, s = est.fit(data, PNorm(2))
    free = NoisyLikelihoodEstimator(0.05).fit(data, PNorm(2))
    assert mu == 0.0 and s > 0
    assert free[0] >= ell - 1e-9  # a free mean never fits worse


def test_infer_geometry_passes_fit_mean_to_the_noise_model():
    sim = syngeo.simulate_change("2-norm", 300, noise=0.05, rng=2)
    cands = ["2-norm", "3-norm"]
    kw = {"n_bootstrap": 0, "refine": False, "noise": 0.05}
    fixed = infer_geometry(sim.before, sim.after, cands, fit_mean=False, **kw)
    free = infer_geometry(sim.before, sim.after, cands, **kw)
    data = PreparedChange.from_weights(sim.before, sim.after)
    for est, fit in (
        (NoisyLikelihoodEstimator(0.05, fit_mean=False), fixed),
        (NoisyLikelihoodEstimator(0.05), free),
    ):
        ll = dict(zip(fit.ranking["candidate"], fit.ranking["log_likelihood"], strict=True))
        assert ll["2-norm"] == est.log_likelihood(data, PNorm(2))
    assert not np.allclose(fixed.ranking["log_likelihood"], free.ranking["log_likelihood"])


def test_fit_maximises_the_linearised_likelihood():
    """The Newton fit is a maximum: moving (μ, log s) either way lowers the linearised ℓ."""
    b, a = _noisy_data("3-norm", 0.05, "relative")
    nc = NoisyChange(b, a, MeasurementNoise(0.05), rng=0)
    psi = PNorm(3)
    _, mu, s = nc.fit(psi)
    u0, u1, su2 = nc._observed_dual(psi)
    d = u1[:, None] - u0
    best = nc._linearised(np.array([mu, math.log(s)]), d, su2, 0)[0]
    for dm, dl in ((1e-4 * s, 0), (-1e-4 * s, 0), (0, 0.01), (0, -0.01)):
        moved = nc._linearised(np.array([mu + dm, math.log(s) + dl]), d, su2, 0)[0]
        assert moved < best
    # and the analytic gradient and Hessian match finite differences
    x = np.array([mu * 1.3 + 0.1 * s, math.log(s) + 0.2])
    _, g, h = nc._linearised(x, d, su2, 2)
    for k, step in ((0, 1e-4 * s), (1, 1e-4)):
        e = np.zeros(2)
        e[k] = step
        fp, gp, _ = nc._linearised(x + e, d, su2, 2)
        fm, gm, _ = nc._linearised(x - e, d, su2, 2)
        assert math.isclose(g[k], (fp - fm) / (2 * step), rel_tol=1e-4, abs_tol=1e-6)
        np.testing.assert_allclose(h[:, k], (gp - gm) / (2 * step), rtol=1e-3, atol=1e-3)


def test_bootstrap_is_the_count_weighted_per_synapse_likelihood():
    sim = syngeo.simulate_change("3-norm", 300, noise=0.05, rng=3)
    data = PreparedChange.from_weights(sim.before, sim.after)
    est = NoisyLikelihoodEstimator(0.05)
    cands = [PNorm(2), PNorm(3)]
    res = BootstrapResamples(data.n, 5, rng=1)
    got = est.bootstrap(data, cands, res, n_params=[2, 2])
    noisy = est.prepared(data)
    for j, psi in enumerate(cands):
        _, mu, s = est.fit(data, psi)
        li = noisy.per_synapse(psi, mu, s)
        for b in range(5):
            idx = np.repeat(np.arange(data.n), res.counts(b))
            assert math.isclose(got[b, j], 4 - 2 * li[idx].sum(), rel_tol=1e-10)


def test_infer_with_noise_and_bootstrap_runs():
    sim = syngeo.simulate_change("2-norm", 300, noise=0.05, rng=3)
    fit = infer_geometry(
        sim.before, sim.after, ["2-norm", "3-norm"], n_bootstrap=5, noise=0.05, rng=0
    )
    assert fit.p_interval_bootstrap is not None


def test_zeros_are_left_out_under_relative_noise():
    sim = syngeo.simulate_change("2-norm", 300, noise=0.05, rng=3)
    b, a = sim.before.copy(), sim.after.copy()
    b[:7] = 0.0
    a[5:12] = 0.0
    nc = NoisyChange(b, a, MeasurementNoise(0.05), rng=0)
    assert nc.n_like == 288
    assert np.all(nc.o0 != 0) and np.all(nc.o1 != 0)
    ell, _, _ = nc.fit(PNorm(2))
    assert math.isfinite(ell)
    # absolute noise keeps them: an observed 0 is a possible measurement of a small weight
    assert NoisyChange(b, a, MeasurementNoise(0.01, "absolute"), rng=0).n_like == 300


# ------------------------------------------------------------------------------------------------
# the noise model and its estimate
# ------------------------------------------------------------------------------------------------
def test_as_noise_forms():
    assert as_noise("8%") == MeasurementNoise(0.08)
    assert as_noise(" 0.08 ") == MeasurementNoise(0.08)
    assert as_noise(0.002, "absolute").kind == "absolute"
    assert as_noise(None) is None and as_noise(0) is None and as_noise("0%") is None
    for bad in ("abc", -0.1, "60%", True, math.nan):
        with pytest.raises(InputError):
            as_noise(bad)
    with pytest.raises(InputError):
        MeasurementNoise(0.1, "multiplicative")


@pytest.mark.parametrize("kind", ["relative", "absolute"])
def test_estimate_noise_is_unbiased_and_its_interval_covers(kind):
    """200 replicate studies of 100 pairs: σ̂ is within 1 % of σ on average (its relative bias is
    O(σ²) ≈ 0.25 % for relative noise, and -1/(8n) for both), and the exact χ² interval covers σ
    in 95 % of studies (binomial sd 1.5 %: accept 90–99 %)."""
    g = np.random.default_rng(0)
    sigma = 0.05 if kind == "relative" else 0.01
    est, cover = [], 0
    for _ in range(200):
        w = g.lognormal(0, 0.5, 100)
        e1, e2 = g.normal(size=(2, 100))
        m1, m2 = (
            (w * (1 + sigma * e1), w * (1 + sigma * e2))
            if kind == "relative"
            else (w + sigma * e1, w + sigma * e2)
        )
        r = estimate_noise(m1, m2, kind)
        est.append(r.sigma)
        cover += r.low <= sigma <= r.high
        assert math.isclose(r.se, r.sigma / math.sqrt(200))
    assert abs(np.mean(est) / sigma - 1) < 0.01
    assert 0.90 <= cover / 200 <= 0.99


def test_estimate_noise_errors():
    with pytest.raises(InputError, match="differ in length"):
        estimate_noise([1, 2, 3], [1, 2])
    with pytest.raises(InputError, match="NaN"):
        estimate_noise([1, np.nan, 3], [1, 2, 3])
    with pytest.raises(InputError, match="identical"):
        estimate_noise([1, 2, 3], [1, 2, 3])
    with pytest.raises(InputError, match="mean <= 0"):
        estimate_noise([1, -2, 3], [1, -2.1, 3])


def test_read_replicates(tmp_path):
    g = np.random.default_rng(0)
    w = g.lognormal(0, 1, 500)
    df = pd.DataFrame(
        {
            "id": np.arange(500),
            "first": w * (1 + 0.1 * g.normal(size=500)),
            "second": w * (1 + 0.1 * g.normal(size=500)),
        }
    )
    df.to_csv(tmp_path / "rep.csv", index=False)
    r = read_replicates(tmp_path / "rep.csv")
    assert r.n_pairs == 500 and r.low < 0.1 < r.high
    assert noise_from_options(replicates=tmp_path / "rep.csv") == r
    df.assign(extra=1.0).drop(columns=["first"]).to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(InputError, match="numeric columns"):
        read_replicates(tmp_path / "bad.csv")
    with pytest.raises(InputError, match="does not exist"):
        read_replicates(tmp_path / "missing.csv")
    with pytest.raises(InputError, match="not both"):
        noise_from_options("5%", "0.1")


def test_noise_needs_the_likelihood_estimator():
    sim = syngeo.simulate_change("2-norm", 100, rng=0)
    with pytest.raises(InputError, match="likelihood estimator"):
        infer_geometry(sim.before, sim.after, estimator="cdf", noise=0.05)
    with pytest.raises(InputError):
        NoisyLikelihoodEstimator(0)


def test_ne_candidate_is_scored_under_noise():
    sim = syngeo.simulate_change("ne", 1000, noise=0.05, init="lognormal", rng=4)
    fit = infer_geometry(
        sim.before, sim.after, ["ne", "2-norm", "3-norm"], n_bootstrap=0, noise=0.05
    )
    assert fit.best == "NE"
    assert isinstance(fit.best_potential, NegativeEntropy)
