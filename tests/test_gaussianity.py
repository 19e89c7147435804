"""Tests of syngeo.gaussianity: dual change, change magnitude, the CDF distance and the report."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.integrate
import scipy.stats
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from syngeo.errors import DomainError, InputError, InputTypeError
from syngeo.gaussianity import (
    GaussianityResult,
    as_weight_pair,
    as_weights,
    cdf_distance,
    cdf_grid,
    change_magnitude,
    count_at_or_below,
    dual_change,
    gaussianity,
    gaussianity_of_change,
    sign_changes,
)
from syngeo.potentials import NegativeEntropy, PNorm
from user_potentials import Quartic

GRID = np.linspace(-5.0, 5.0, 1000)


def naive_cdf_distance(delta, centred=False):
    """Direct O(grid × n) transcription of docs/theory.md §3 (the reference implementation)."""
    x = np.asarray(delta, dtype=np.float64)
    z = ((x - x.mean()) if centred else (x - 0.0)) / x.std()
    ecdf = (z[:, None] <= GRID[None, :]).mean(axis=0)
    return float(np.sum(np.abs(ecdf[:-1] - scipy.stats.norm.cdf(GRID[:-1])) * np.diff(GRID)))


def gaussian_quantiles(n, loc=0.0):
    return loc + scipy.stats.norm.ppf((np.arange(n) + 0.5) / n)


# ------------------------------------------------------------------------------------------------
# cdf_distance
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("centred", [False, True])
@pytest.mark.parametrize("seed", range(6))
def test_cdf_distance_matches_naive_broadcast(seed, centred):
    g = np.random.default_rng(seed)
    n = int(g.integers(5, 4000))
    x = g.standard_t(3, size=n) * g.uniform(1e-3, 1e3) + g.normal()
    assert cdf_distance(x, centred=centred) == pytest.approx(
        naive_cdf_distance(x, centred), abs=1e-12
    )


@settings(max_examples=60, deadline=None)
@given(
    arrays(
        np.float64,
        st.integers(2, 300),
        elements=st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False),
    ),
    st.booleans(),
)
def test_cdf_distance_matches_naive_property(x, centred):
    if not np.std(x) > 0:
        with pytest.raises(ValueError, match="constant"):
            cdf_distance(x, centred=centred)
        return
    assert cdf_distance(x, centred=centred) == pytest.approx(
        naive_cdf_distance(x, centred), abs=1e-12
    )


def test_cdf_counts_exact_at_grid_points():
    """Values exactly on, and one ulp either side of, every grid point are binned as `z <= t`."""
    t = GRID
    x = np.concatenate([t, np.nextafter(t, np.inf), np.nextafter(t, -np.inf), [-7.0, 7.0, 1e300]])
    counts = count_at_or_below(x, t, 0.0, 1.0)
    np.testing.assert_array_equal(counts, (x[:, None] <= t[None, :]).sum(axis=0))


def test_cdf_distance_of_exact_gaussian_quantiles_vanishes():
    # Quantiles of N(0,1): the ECDF is within 1/n of Φ, so d = O(1/n) (plus std(z) ≈ 1 − O(log n / n)).
    d_small, d_large = (
        cdf_distance(gaussian_quantiles(10_000)),
        cdf_distance(gaussian_quantiles(1_000_000)),
    )
    assert d_small < 2e-3
    assert d_large < 5e-5
    assert d_large < d_small / 20


@pytest.mark.parametrize("shift", [0.3, 1.0])
def test_cdf_distance_of_shifted_gaussian_closed_form(shift):
    """Uncentred z of N(m, 1): std = 1, so F_z(t) = Φ(t − m) and d = ∫_{-5}^{5} |Φ(t−m) − Φ(t)| dt."""
    x = gaussian_quantiles(1_000_000, loc=0.0)
    x = (x / x.std()) + shift  # exactly unit std, mean m
    expected, _ = scipy.integrate.quad(
        lambda t: abs(scipy.stats.norm.cdf(t - shift) - scipy.stats.norm.cdf(t)), -5, 5
    )
    # Riemann-sum error on a 0.01 grid and ECDF error ~1e-6 are far below 1e-3.
    assert cdf_distance(x) == pytest.approx(expected, abs=1e-3)
    # The centred variant removes the shift.
    assert cdf_distance(x, centred=True) < 1e-3


def test_cdf_distance_monte_carlo_expectation_and_rate():
    """For n Gaussian draws, E[d] ≈ sqrt(2/(πn)) ∫ sqrt(Φ(1−Φ)) dt (binomial ECDF), ∝ n^{-1/2}.

    Standardising by the sample std makes d slightly smaller than this approximation
    (measured ~0.93x); we accept 0.8–1.05x, and a ratio near 2 between n = 400 and 1600.
    """
    g = np.random.default_rng(0)
    integral, _ = scipy.integrate.quad(
        lambda t: math.sqrt(scipy.stats.norm.cdf(t) * scipy.stats.norm.sf(t)), -5, 5
    )
    means = {}
    for n in (400, 1600):
        d = [cdf_distance(g.normal(size=n)) for _ in range(150)]
        means[n] = np.mean(d)
        approx = math.sqrt(2 / (math.pi * n)) * integral
        assert 0.8 * approx < means[n] < 1.05 * approx
    assert means[400] / means[1600] == pytest.approx(2.0, rel=0.15)


def test_non_gaussian_samples_have_larger_distance():
    g = np.random.default_rng(1)
    n = 5000
    gauss = np.mean([cdf_distance(g.normal(size=n)) for _ in range(20)])
    for sample in (
        g.laplace(size=n),
        g.uniform(-1, 1, size=n),
        g.standard_t(2, size=n),
        np.sign(g.normal(size=n)) * g.lognormal(0, 1, size=n),
    ):
        assert cdf_distance(sample) > 3 * gauss


@settings(max_examples=40, deadline=None)
@given(st.floats(1e-6, 1e6), st.integers(0, 10_000))
def test_cdf_distance_invariant_to_positive_scaling(c, seed):
    x = np.random.default_rng(seed).standard_t(4, size=500) + 0.2
    assert cdf_distance(c * x) == pytest.approx(cdf_distance(x), abs=1e-9)
    assert cdf_distance(c * x, centred=True) == pytest.approx(
        cdf_distance(x, centred=True), abs=1e-9
    )


def test_centred_variant_is_translation_invariant_uncentred_is_not():
    x = np.random.default_rng(2).normal(size=3000)
    assert cdf_distance(x + 0.5, centred=True) == pytest.approx(
        cdf_distance(x, centred=True), abs=1e-9
    )
    assert cdf_distance(x + 0.5) > cdf_distance(x) + 0.1


def test_cdf_distance_bad_input():
    with pytest.raises(ValueError, match="constant"):
        cdf_distance(np.full(10, 3.0))
    with pytest.raises(ValueError, match="empty"):
        cdf_distance([])
    with pytest.raises(ValueError, match=r"non-finite.*1 NaN"):
        cdf_distance([1.0, np.nan, 2.0])
    with pytest.raises(ValueError, match="low < high"):
        cdf_distance([1.0, 2.0], grid=(5, -5, 1000))
    with pytest.raises(ValueError, match="num >= 2"):
        cdf_distance([1.0, 2.0], grid=(-5, 5, 1))
    with pytest.raises(TypeError, match="numbers"):
        cdf_distance(["a", "b"])


# ------------------------------------------------------------------------------------------------
# dual change, magnitude, sign changes
# ------------------------------------------------------------------------------------------------
def test_dual_change_closed_forms():
    w0 = np.array([-2.0, 0.5, 1.0, 3.0])
    w = np.array([-1.0, 0.25, 2.0, 3.0])
    np.testing.assert_allclose(dual_change(w0, w, "2-norm"), w - w0)
    np.testing.assert_allclose(
        dual_change(w0, w, "3-norm"), np.sign(w) * w**2 - np.sign(w0) * w0**2
    )
    np.testing.assert_allclose(
        dual_change(w0, w, 2.5), np.sign(w) * np.abs(w) ** 1.5 - np.sign(w0) * np.abs(w0) ** 1.5
    )
    np.testing.assert_allclose(dual_change(w0, w, "ne"), np.sign(w) * np.log(np.abs(w / w0)))


def test_dual_change_accepts_torch_lists_and_shapes():
    w0 = torch.tensor([[0.5, -1.0], [2.0, 0.1]], dtype=torch.float32)
    w = w0 * 1.5
    d = dual_change(w0, w, NegativeEntropy())
    assert d.dtype == np.float64 and d.shape == (4,)
    np.testing.assert_allclose(d, np.sign(w0.numpy().ravel()) * math.log(1.5), rtol=1e-6)
    assert dual_change([1.0, 2.0], [2.0, 2.0], PNorm(2)).tolist() == [1.0, 0.0]


def test_dual_change_ne_raises_on_sign_flips_and_zeros():
    with pytest.raises(ValueError, match=r"1 of 3 weights change sign.*use a p-norm"):
        dual_change([1.0, -1.0, 2.0], [1.0, 1.0, 2.0], "ne")
    with pytest.raises(ValueError, match="1 of 3 weights in BEFORE are 0"):
        dual_change([0.0, -1.0, 2.0], [1.0, -1.0, 2.0], "ne")
    # p-norms are fine with both
    assert dual_change([0.0, -1.0], [1.0, 1.0], "3-norm").tolist() == [1.0, 2.0]


def test_sign_changes_counts():
    sc = sign_changes([1.0, -2.0, 0.5, 0.0, 3.0], [0.8, 1.0, 0.0, 1.0, -1.0])
    assert (sc.n_sign_flips, sc.n_zero_before, sc.n_zero_after) == (2, 1, 1)
    assert not sc.ne_valid
    assert "2 of 5 weights change sign" in sc.reason()
    assert sign_changes([1.0, -2.0], [3.0, -0.1]).reason() is None


def test_change_magnitude():
    assert change_magnitude([3.0, 4.0], [3.0, 4.5], "2-norm") == pytest.approx(0.1)
    w0, w = np.array([1.0, -2.0]), np.array([1.1, -2.2])
    expected = math.log(1.1) * math.sqrt(2) / math.hypot(1.0, math.log(2) + 1)
    assert change_magnitude(w0, w, "ne") == pytest.approx(expected)
    with pytest.raises(ValueError, match="all zeros"):
        change_magnitude([0.0, 0.0], [1.0, 2.0], "3-norm")


def test_pair_validation():
    with pytest.raises(ValueError, match="same synapses: got 3 and 2"):
        dual_change([1.0, 2.0, 3.0], [1.0, 2.0], "2-norm")
    with pytest.raises(ValueError, match="AFTER holds non-finite values \\(0 NaN, 1 inf"):
        dual_change([1.0, 2.0], [1.0, np.inf], "2-norm")
    with pytest.raises(ValueError, match="unknown potential"):
        dual_change([1.0, 2.0], [1.0, 3.0], "4-nrom")
    assert as_weights(torch.ones(2, 3)).shape == (6,)


# ------------------------------------------------------------------------------------------------
# gaussianity report
# ------------------------------------------------------------------------------------------------
def test_report_agrees_with_scipy_direct_calls():
    g = np.random.default_rng(3)
    x = g.standard_t(5, size=7000) + 0.1
    res = gaussianity_of_change(x, rng=np.random.default_rng(11))
    ks = scipy.stats.kstest(x / np.std(x), "norm")
    assert (res.ks.statistic, res.ks.pvalue) == pytest.approx((ks.statistic, ks.pvalue), rel=1e-12)
    ad = scipy.stats.anderson(x, "norm", method="interpolate")
    assert (res.anderson.statistic, res.anderson.pvalue) == pytest.approx((ad.statistic, ad.pvalue))
    sub = np.random.default_rng(11).choice(x, size=5000, replace=False)
    sw = scipy.stats.shapiro(sub)
    assert res.shapiro_n == 5000
    assert (res.shapiro.statistic, res.shapiro.pvalue) == pytest.approx((sw.statistic, sw.pvalue))
    assert res.skewness == pytest.approx(scipy.stats.skew(x))
    assert res.excess_kurtosis == pytest.approx(scipy.stats.kurtosis(x))
    assert res.mean == pytest.approx(x.mean()) and res.std == pytest.approx(x.std())
    assert res.cdf_distance == pytest.approx(naive_cdf_distance(x), abs=1e-12)
    assert res.cdf_distance_centred == pytest.approx(naive_cdf_distance(x, True), abs=1e-12)
    assert math.isnan(res.change_magnitude)


def test_gaussianity_prefers_true_potential_and_is_reproducible():
    g = np.random.default_rng(4)
    w0 = g.normal(0, 0.1, 4000)
    u = np.sign(w0) * w0**2 + 0.1 * 0.01 * g.normal(
        size=4000
    )  # 3-norm dual, docs/theory.md §4 scale
    w = np.sign(u) * np.sqrt(np.abs(u))
    r3, r2 = gaussianity(w0, w, "3-norm", rng=0), gaussianity(w0, w, "2-norm", rng=0)
    assert isinstance(r3, GaussianityResult)
    assert r3.cdf_distance < r2.cdf_distance
    assert r3.potential == "3-norm" and r3.n == 4000
    assert r3.change_magnitude == pytest.approx(change_magnitude(w0, w, "3-norm"))
    assert r3.to_dict() == gaussianity(w0, w, "3-norm", rng=0).to_dict()
    d = r3.to_dict()
    assert d["ks"]["statistic"] == r3.ks.statistic and "anderson" in d
    assert "3-norm" in repr(r3) and "cdf_distance=" in repr(r3)


def test_gaussianity_bad_input():
    with pytest.raises(ValueError, match="at least 3"):
        gaussianity_of_change([1.0, 2.0])
    with pytest.raises(ValueError, match="constant"):
        gaussianity([1.0, 2.0, 3.0], [2.0, 3.0, 4.0], "2-norm")
    with pytest.raises(TypeError, match="rng"):
        gaussianity_of_change([1.0, 2.0, 4.0], rng="seed")


def test_sign_changes_zero_convention():
    """A flip is before·after < 0; going to or from exactly 0 (or -0.0) is a zero, not a flip."""
    b = [1.0, 0.0, -1.0, 0.0, -0.0, 2.0, -3.0]
    a = [0.0, 1.0, 0.0, 0.0, 3.0, -2.0, -1.0]
    sc = sign_changes(b, a)
    assert (sc.n, sc.n_sign_flips, sc.n_zero_before, sc.n_zero_after) == (7, 1, 3, 3)
    assert not sc.ne_valid
    assert sc.to_dict() == {
        "n": 7, "n_sign_flips": 1, "n_zero_before": 3, "n_zero_after": 3, "ne_valid": False
    }  # fmt: skip
    only_zero = sign_changes([1.0, 2.0], [1.0, 0.0])
    assert only_zero.n_sign_flips == 0 and not only_zero.ne_valid
    assert "1 of 2 weights in AFTER are 0" in only_zero.reason()
    # -0.0 against a positive weight is a zero, never a flip (signbit alone would say so)
    assert sign_changes([-0.0, 0.5], [1.0, -0.0]).n_sign_flips == 0


def test_sign_preserving_domain_errors_are_domain_errors():
    with pytest.raises(DomainError, match="1 of 3 weights change sign"):
        dual_change([1.0, -1.0, 2.0], [1.0, 1.0, 2.0], "ne")
    with pytest.raises(DomainError, match="in AFTER are 0"):
        change_magnitude([1.0, 2.0], [1.0, 0.0], "ne")
    with pytest.raises(DomainError):
        gaussianity([1.0, 2.0, 3.0, 4.0], [1.0, -2.0, 3.0, 4.5], NegativeEntropy())
    # a potential defined in the tests, not sign-preserving, takes any signs and zeros
    w0, w = np.array([-1.0, 0.0, 0.5]), np.array([1.0, 0.2, 0.0])
    np.testing.assert_allclose(dual_change(w0, w, Quartic()), (w + w**3) - (w0 + w0**3))
    expected = np.linalg.norm((w + w**3) - (w0 + w0**3)) / np.linalg.norm(w0 + w0**3)
    assert change_magnitude(w0, w, Quartic()) == pytest.approx(expected, rel=1e-14)


def test_input_errors_are_syngeo_errors():
    with pytest.raises(InputTypeError):
        as_weights(["a"])
    with pytest.raises(InputError, match="same synapses"):
        as_weight_pair([1.0, 2.0], [1.0])
    with pytest.raises(InputError, match="all zeros"):
        change_magnitude([0.0, 0.0], [1.0, 2.0], "2-norm")
    with pytest.raises(InputTypeError, match="grid must be a tuple"):
        cdf_grid(5)
    with pytest.raises(InputTypeError, match="rng"):
        gaussianity_of_change([1.0, 2.0, 4.0], rng=1.5)
