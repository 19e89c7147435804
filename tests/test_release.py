"""Tests of syngeo.release: moments, the KL cost, its gradient and the Fisher information."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from syngeo.errors import InputError, InputTypeError
from syngeo.release import BinomialRelease

PROBS = st.floats(min_value=0.01, max_value=0.99)
AMPLITUDES = st.floats(min_value=0.05, max_value=5.0)
SITES = st.integers(min_value=1, max_value=20)
TARGETS = st.floats(min_value=0.05, max_value=5.0)


def test_moments_match_the_binomial_distribution():
    # Reference: scipy.stats.binom moments of the release count k, times q and q^2.
    model = BinomialRelease(target_mean=1.0, n_sites=7)
    p, q = 0.3, 0.8
    count = scipy.stats.binom(7, p)
    assert model.mean([p, q]) == pytest.approx(count.mean() * q, rel=1e-14)
    assert model.variance([p, q]) == pytest.approx(count.var() * q**2, rel=1e-14)


@settings(max_examples=60, deadline=None)
@given(p=PROBS, q=AMPLITUDES, n=SITES, phi=TARGETS)
def test_closed_form_gradient_equals_autograd(p, q, n, phi):
    model = BinomialRelease(target_mean=phi, n_sites=n)
    closed = model.cost_grad([p, q])
    auto = model.cost_grad_autograd([p, q])
    np.testing.assert_allclose(closed, auto, rtol=1e-10, atol=1e-10 * np.max(np.abs(auto)))


def test_gradient_matches_central_differences():
    # An independent check of the shared cost expression (autograd differentiates the same code).
    model = BinomialRelease(target_mean=0.7, n_sites=2)
    theta = np.array([0.35, 1.3])
    h = 1e-6
    fd = [(model.cost(theta + h * e) - model.cost(theta - h * e)) / (2 * h) for e in np.eye(2)]
    np.testing.assert_allclose(model.cost_grad(theta), fd, rtol=1e-7)


def test_cost_is_the_narrow_target_kl_without_constants():
    model = BinomialRelease(target_mean=0.5, n_sites=3)
    theta = np.array([[0.2, 0.4], [0.6, 1.5], [0.9, 0.1]])
    s = 1e-6
    offset = model.kl_divergence(theta, s) - model.cost(theta)
    # KL - f = -log s + s^2 / (2 sigma^2) - 1/2  ->  -log s - 1/2 as s -> 0.
    np.testing.assert_allclose(offset, -math.log(s) - 0.5, rtol=1e-10)


def test_gradient_on_the_target_curve_only_sees_log_sigma():
    # With N P q = phi the squared-error term and its gradient vanish: grad f = grad sigma^2 / (2 sigma^2).
    model = BinomialRelease(target_mean=0.5, n_sites=1)
    p, q = 0.25, 2.0
    expected = [(1 - 2 * p) / (2 * p * (1 - p)), 1 / q]
    np.testing.assert_allclose(model.cost_grad([p, q]), expected, rtol=1e-12)


@settings(max_examples=40, deadline=None)
@given(p=PROBS, q=AMPLITUDES, n=SITES)
def test_fisher_information_is_spd_with_the_closed_form_determinant(p, q, n):
    model = BinomialRelease(target_mean=1.0, n_sites=n)
    info = model.fisher_information([p, q])
    np.testing.assert_allclose(info, info.T, rtol=1e-14)
    var = n * q * q * p * (1 - p)
    np.testing.assert_allclose(np.linalg.det(info), n**4 * q**4 * p**2 / (2 * var**3), rtol=1e-8)
    assert np.all(np.linalg.eigvalsh(info) > 0)


def test_fisher_pp_is_binomial_information_plus_the_variance_term():
    model = BinomialRelease(target_mean=1.0, n_sites=4)
    p, q = 0.3, 0.9
    extra = (1 - 2 * p) ** 2 / (2 * p**2 * (1 - p) ** 2)
    info = model.fisher_information([p, q])
    assert info[0, 0] == pytest.approx(
        model.binomial_fisher_information_p([p, q]) + extra, rel=1e-13
    )


def test_binomial_fisher_information_by_exact_expectation():
    # E[score^2] over the binomial pmf, score = k/P - (N - k)/(1 - P), summed exactly.
    n, p = 6, 0.35
    k = np.arange(n + 1)
    score = k / p - (n - k) / (1 - p)
    exact = np.sum(scipy.stats.binom.pmf(k, n, p) * score**2)
    model = BinomialRelease(target_mean=1.0, n_sites=n)
    assert model.binomial_fisher_information_p([p, 1.0]) == pytest.approx(exact, rel=1e-12)


@pytest.mark.parametrize(("n_sites", "p", "q"), [(1, 0.3, 1.2), (5, 0.7, 0.4)])
def test_fisher_information_equals_monte_carlo_score_outer_products(n_sites, p, q):
    model = BinomialRelease(target_mean=0.5, n_sites=n_sites)
    n_samples = 200_000
    responses = torch.as_tensor(model.sample_responses([p, q], n_samples, rng=1234))
    theta = torch.tensor([p, q], dtype=torch.float64)

    def log_density(t, x):
        return model.response_log_density(x, t)

    scores = torch.func.vmap(torch.func.grad(log_density), in_dims=(None, 0))(theta, responses)
    outer = (scores[:, :, None] * scores[:, None, :]).numpy()
    mc_mean = outer.mean(axis=0)
    mc_se = outer.std(axis=0, ddof=1) / math.sqrt(n_samples)
    info = model.fisher_information([p, q])
    assert np.all(np.abs(mc_mean - info) < 5 * mc_se)
    # The check has power: dropping the variance term of I is detected at this sample size.
    d_mean, _ = model.moment_jacobians([p, q])
    mean_only = np.outer(d_mean, d_mean) / model.variance([p, q])
    assert np.any(np.abs(mc_mean - mean_only) > 5 * mc_se)
    # The scores have mean zero (a property of any regular model).
    assert np.all(np.abs(scores.mean(0).numpy()) < 5 * scores.std(0).numpy() / math.sqrt(n_samples))


def test_exact_responses_are_multiples_of_q():
    model = BinomialRelease(target_mean=1.0, n_sites=3)
    x = model.sample_responses([0.4, 0.5], 1000, rng=0, exact=True)
    np.testing.assert_allclose(x / 0.5, np.round(x / 0.5))
    assert set(np.round(x / 0.5).astype(int)) <= {0, 1, 2, 3}


@pytest.mark.parametrize("exact", [True, False])
def test_sampled_responses_have_the_model_moments(exact):
    """Mean N·P·q and variance N·q²·P·(1 − P) (both for the exact binomial and the Gaussian
    approximation). Bounds: 5 standard errors of the sample mean (σ/√n) and of the sample
    variance, √((μ₄ − σ⁴)/n): σ²·√(2/n) for the Gaussian; the binomial at N = 3, P = 0.3 has
    excess kurtosis (1 − 6P(1 − P))/(NP(1 − P)) = −0.41, so its error is smaller, σ²·√(1.59/n).
    The extra factor 1.2 is margin. n = 20 000, fixed seed."""
    model = BinomialRelease(target_mean=1.0, n_sites=3)
    theta = [0.3, 0.5]
    n = 20_000
    x = model.sample_responses(theta, n, rng=7, exact=exact)
    mean, var = float(model.mean(theta)), float(model.variance(theta))
    assert (mean, var) == pytest.approx((0.45, 3 * 0.25 * 0.3 * 0.7))
    assert abs(x.mean() - mean) < 5 * math.sqrt(var / n)
    assert abs(x.var() - var) < 5 * 1.2 * var * math.sqrt(2 / n)


def test_shapes_broadcast_over_leading_axes():
    model = BinomialRelease(target_mean=0.5, n_sites=2)
    theta = np.random.default_rng(0).uniform([0.1, 0.2], [0.9, 2.0], size=(4, 3, 2))
    assert model.cost(theta).shape == (4, 3)
    assert model.cost_grad(theta).shape == (4, 3, 2)
    assert model.fisher_information(theta).shape == (4, 3, 2, 2)
    np.testing.assert_allclose(model.cost_grad(theta)[2, 1], model.cost_grad(theta[2, 1]))


def test_repr_and_to_dict():
    model = BinomialRelease(target_mean=0.5, n_sites=2, unit="µV")
    assert repr(model) == "BinomialRelease(target_mean=0.5 µV, n_sites=2)"
    assert model.to_dict() == {"target_mean": 0.5, "n_sites": 2, "unit": "µV"}


@pytest.mark.parametrize(
    ("theta", "message"),
    [
        ([0.0, 1.0], "open interval \\(0, 1\\)"),
        ([1.0, 1.0], "open interval \\(0, 1\\)"),
        ([0.5, 0.0], "q must be > 0"),
        ([0.5, -1.0], "q must be > 0"),
        ([0.5, np.nan], "NaN or inf"),
        ([0.5, 1.0, 2.0], "shape \\[..., 2\\]"),
    ],
)
def test_bad_parameters_are_rejected(theta, message):
    with pytest.raises(InputError, match=message):
        BinomialRelease(target_mean=0.5).cost_grad(theta)


def test_bad_model_settings_are_rejected():
    with pytest.raises(InputError, match="n_sites"):
        BinomialRelease(target_mean=0.5, n_sites=0)
    with pytest.raises(InputTypeError, match="n_sites"):
        BinomialRelease(target_mean=0.5, n_sites=1.5)
    with pytest.raises(InputError, match="target_mean"):
        BinomialRelease(target_mean=-1.0)
    with pytest.raises(InputError, match="target_mean"):
        BinomialRelease(target_mean=float("nan"))
    with pytest.raises(InputError, match="voltage unit"):
        BinomialRelease(target_mean=1.0, unit="1")
    with pytest.raises(InputError, match="target_width"):
        BinomialRelease(target_mean=1.0).kl_divergence([0.5, 1.0], 0.0)
    model = BinomialRelease(target_mean=1.0)
    with pytest.raises(InputError, match="one parameter point"):
        model.sample_responses([[0.5, 1.0]], 10, rng=0)
    with pytest.raises(InputError, match="n_samples"):
        model.sample_responses([0.5, 1.0], 0, rng=0)


def test_sample_responses_rng_none_is_fresh_entropy():
    model = BinomialRelease(target_mean=1.0, n_sites=3)
    a = model.sample_responses([0.4, 0.5], 64)
    b = model.sample_responses([0.4, 0.5], 64, rng=None)
    assert not np.array_equal(a, b)
    np.testing.assert_array_equal(
        model.sample_responses([0.4, 0.5], 64, rng=3), model.sample_responses([0.4, 0.5], 64, 3)
    )


def test_docstring_examples_run():
    import doctest

    import syngeo.release

    result = doctest.testmod(syngeo.release, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0
