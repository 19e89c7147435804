"""Tests for syngeo.data.correlated: the Toeplitz row, the circulant embedding and the samplers.

Statistical checks use fixed seeds and bounds of several standard errors estimated from the same
samples, so they fail when the covariance is wrong by more than sampling noise.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.fft
import scipy.linalg

from syngeo.data.correlated import (
    CirculantEmbedding,
    _embed,
    circulant_embedding,
    correlated_inputs,
    toeplitz_correlation_matrix,
    toeplitz_correlation_row,
)
from syngeo.errors import InputError, InputTypeError


def _covariance_and_se(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sample covariance about the known mean 0 and the standard error of every entry."""
    n = x.shape[0]
    cov = x.T @ x / n
    second = (x**2).T @ (x**2) / n  # E[x_i² x_j²]
    se = np.sqrt(np.maximum(second - cov**2, 0.0) / n)
    return cov, se


# -- the row --------------------------------------------------------------------------------------


def test_row_matches_formula_by_hand():
    # c_k = (-1)^k / (1 + |k/s|^a), evaluated by hand for a = 2, s = 2: k = 0..3
    expected = np.array([1.0, -1 / (1 + 0.25), 1 / (1 + 1.0), -1 / (1 + 2.25)])
    np.testing.assert_allclose(toeplitz_correlation_row(4, power=2, scale=2.0), expected)


def test_matrix_is_symmetric_toeplitz_with_unit_diagonal():
    c = toeplitz_correlation_matrix(7, power=1)
    np.testing.assert_array_equal(c, c.T)
    np.testing.assert_array_equal(np.diag(c), 1.0)
    assert c[2, 5] == c[0, 3] == pytest.approx(-0.25)


@pytest.mark.parametrize(
    "kwargs, exc",
    [
        ({"d": 0, "power": 1}, InputError),
        ({"d": 2.5, "power": 1}, InputTypeError),
        ({"d": True, "power": 1}, InputTypeError),
        ({"d": 5, "power": 0}, InputError),
        ({"d": 5, "power": -1}, InputError),
        ({"d": 5, "power": float("nan")}, InputError),
        ({"d": 5, "power": "1"}, InputTypeError),
        ({"d": 5, "power": 1, "scale": 0.0}, InputError),
    ],
)
def test_row_rejects_bad_arguments(kwargs, exc):
    with pytest.raises(exc):
        toeplitz_correlation_row(**kwargs)


# -- the embedding --------------------------------------------------------------------------------


@pytest.mark.parametrize("power", [1, 2])
@pytest.mark.parametrize("d", [1, 2, 3, 64, 1001])
def test_minimal_embedding_is_psd_for_the_paper_powers(power, d):
    emb = circulant_embedding(d, power)
    assert emb.is_minimal
    assert emb.clipping_error == 0.0
    assert emb.size >= 2 * (d - 1)
    assert emb.min_eigenvalue > 0.19  # measured minima: 0.386 (a = 1), 0.272 (a = 2), 0.2 (d = 3)


@pytest.mark.parametrize("power", [1, 2])
def test_strictly_minimal_embedding_is_psd(power):
    from syngeo.data.correlated import _correlation

    for d in (2, 3, 17, 500, 1999):
        emb = _embed(
            lambda k: _correlation(k, power, 1.0),
            d,
            max_doublings=0,
            clip_tol=0.0,
            fast_sizes=False,
        )
        assert emb.size == 2 * (d - 1)
        assert emb.min_eigenvalue >= 0.19


@pytest.mark.parametrize("power, scale", [(1, 1.0), (2, 1.0), (1.5, 3.0)])
def test_embedding_reproduces_the_toeplitz_row_exactly(power, scale):
    d = 100
    emb = circulant_embedding(d, power, scale)
    np.testing.assert_allclose(
        emb.covariance_row(), toeplitz_correlation_row(d, power, scale), atol=1e-13
    )


def test_embedding_grows_when_the_minimal_one_is_not_psd():
    # A Gaussian covariance with a long length scale is a classic case whose minimal circulant
    # embedding has negative eigenvalues (Wood & Chan 1994); larger natural extensions fix it.
    def cov(k):
        return np.exp(-((k / 12.0) ** 2))

    emb = _embed(cov, 40, max_doublings=6, clip_tol=0.0, fast_sizes=False)
    assert len(emb.sizes_tried) > 1, "expected the minimal embedding to fail for this covariance"
    assert emb.sizes_tried[0] == 78
    assert emb.eigenvalues.min() >= 0
    np.testing.assert_allclose(emb.covariance_row(), cov(np.arange(40)), atol=1e-10)


def test_embedding_of_a_non_psd_matrix_raises_with_advice():
    def cov(k):  # Toeplitz [1, 0.9, 0, ...]: eigenvalues down to 1 - 1.8 < 0
        return np.where(k == 0, 1.0, np.where(k == 1, 0.9, 0.0))

    with pytest.raises(InputError, match="cholesky"):
        _embed(cov, 30, max_doublings=3, clip_tol=1e-8)


def test_clipping_error_is_the_exact_change_of_the_variance():
    """Clipping raises every negative eigenvalue to 0, i.e. adds Σ|λ_j<0| to the trace, so the
    variance (lag 0 of the sampled covariance) grows by exactly Σ|λ_j<0| / m, and no other lag
    changes by more (|Δr_k| = |Σ_j Δλ_j e^{2πijk/m}| / m ≤ Σ Δλ_j / m): the reported bound is
    attained at lag 0."""

    def cov(k):  # Toeplitz [1, 0.9, 0, ...]: not positive semi-definite
        return np.where(k == 0, 1.0, np.where(k == 1, 0.9, 0.0))

    emb = _embed(cov, 30, max_doublings=1, clip_tol=1.0)
    assert emb.clipping_error > 0 and emb.min_eigenvalue < 0
    change = emb.covariance_row() - cov(np.arange(30))
    assert change[0] == pytest.approx(emb.clipping_error, rel=1e-12)
    assert np.abs(change).max() <= emb.clipping_error * (1 + 1e-12)
    # just below the error, clipping is refused
    with pytest.raises(InputError, match="clip_tol"):
        _embed(cov, 30, max_doublings=1, clip_tol=0.999 * emb.clipping_error)


def test_embedding_result_object():
    emb = circulant_embedding(10, 2)
    assert isinstance(emb, CirculantEmbedding)
    assert "CirculantEmbedding(d=10, size=18" in repr(emb)
    info = emb.to_dict()
    assert info["size"] == 18 and info["is_minimal"] is True
    with pytest.raises(AttributeError):
        emb.size = 3  # frozen


# -- sampling -------------------------------------------------------------------------------------


@pytest.mark.parametrize("power", [1, 2])
def test_fft_samples_have_the_toeplitz_covariance_plus_uniform_noise(power):
    n, d = 20000, 64
    x = correlated_inputs(n, d, power, rng=np.random.default_rng(11))
    assert x.shape == (n, d) and x.dtype == np.float64
    mean_se = np.sqrt((1 + 1 / 12) / n)
    assert np.max(np.abs(x.mean(axis=0))) < 5 * mean_se
    target = toeplitz_correlation_matrix(d, power) + np.eye(d) / 12.0
    cov, se = _covariance_and_se(x)
    z = np.abs(cov - target) / se
    assert z.max() < 5.0, f"covariance off by {z.max():.1f} standard errors"
    # without the noise term the diagonal would be 1, about 10 standard errors away
    assert np.all(np.abs(np.diag(cov) - 1.0) / np.diag(se) > 5.0)


def test_without_noise_the_covariance_is_the_correlation_matrix():
    n, d = 20000, 32
    x = correlated_inputs(n, d, 1, rng=3, uniform_noise=False)
    cov, se = _covariance_and_se(x)
    z = np.abs(cov - toeplitz_correlation_matrix(d, 1)) / se
    assert z.max() < 5.0


def test_fft_and_cholesky_draw_from_the_same_distribution():
    n, d = 20000, 48
    a = correlated_inputs(n, d, 2, scale=2.0, rng=5, method="fft")
    b = correlated_inputs(n, d, 2, scale=2.0, rng=6, method="cholesky")
    cov_a, se_a = _covariance_and_se(a)
    cov_b, se_b = _covariance_and_se(b)
    z = np.abs(cov_a - cov_b) / np.sqrt(se_a**2 + se_b**2)
    assert z.max() < 5.0


def test_fourth_moments_are_gaussian_plus_uniform():
    # x_i = g + u with g ~ N(0, 1), u ~ U(-1/2, 1/2): E x⁴ = 3 + 6/12 + 1/80
    x = correlated_inputs(40000, 16, 1, rng=9)
    m4 = np.mean(x**4)
    expected = 3.0 + 6.0 / 12.0 + 1.0 / 80.0
    se = np.std(x[:, 0] ** 4) / np.sqrt(x.shape[0])
    assert abs(m4 - expected) < 5 * se


def test_odd_n_and_tiny_shapes():
    for n, d in [(1, 1), (3, 2), (5, 1), (7, 3)]:
        x = correlated_inputs(n, d, 1, rng=0, uniform_noise=False)
        assert x.shape == (n, d)
        assert np.all(np.isfinite(x))


def test_two_halves_of_one_fft_are_independent():
    # rows 2j and 2j+1 come from the real and imaginary part of the same FFT
    x = correlated_inputs(20000, 8, 1, rng=4, uniform_noise=False)
    cross = np.mean(x[0::2] * x[1::2], axis=0)
    se = 1.0 / np.sqrt(x.shape[0] // 2)
    assert np.max(np.abs(cross)) < 5 * se


def test_reproducible_with_a_seed_and_independent_of_chunking(monkeypatch):
    import syngeo.data.correlated as mod

    a = correlated_inputs(101, 50, 1, rng=123)
    b = correlated_inputs(101, 50, 1, rng=np.random.default_rng(123))
    np.testing.assert_array_equal(a, b)
    monkeypatch.setattr(mod, "_CHUNK_BYTES", 16 * 98 * 3)  # 3 pairs per chunk
    c = correlated_inputs(101, 50, 1, rng=123)
    np.testing.assert_array_equal(a, c)
    d = correlated_inputs(101, 50, 1, rng=124)
    assert not np.allclose(a, d)


def test_fft_sampler_matches_an_explicit_circulant_factorisation():
    # The sampler is x = Re/Im of F(sqrt(λ/m) ε): check against the dense circulant square root
    d = 6
    emb = circulant_embedding(d, 1)
    m = emb.size
    row = np.array([toeplitz_correlation_row(m // 2 + 1, 1)[min(j, m - j)] for j in range(m)])
    circ = scipy.linalg.circulant(row)
    np.testing.assert_allclose(np.sort(np.linalg.eigvalsh(circ)), np.sort(emb.eigenvalues))
    f = scipy.fft.fft(np.eye(m), axis=0)  # DFT matrix
    root = f @ np.diag(np.sqrt(emb.eigenvalues / m))
    # Re(root ε) with ε = a + ib has covariance Re(root root^*) restricted to d×d = C
    cov = (root @ root.conj().T).real[:d, :d]
    np.testing.assert_allclose(cov, toeplitz_correlation_matrix(d, 1), atol=1e-12)


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        ({"n": 0, "d": 4, "power": 1}, InputError, "n must be"),
        ({"n": 4, "d": 0, "power": 1}, InputError, "d must be"),
        ({"n": 4.0, "d": 4, "power": 1}, InputTypeError, "n must be"),
        ({"n": True, "d": 4, "power": 1}, InputTypeError, "n must be"),
        ({"n": 4, "d": 4, "power": 0}, InputError, "power"),
        ({"n": 4, "d": 4, "power": float("nan")}, InputError, "power"),
        ({"n": 4, "d": 4, "power": 1, "scale": -1.0}, InputError, "scale"),
        ({"n": 4, "d": 4, "power": 1, "method": "svd"}, InputError, "method"),
    ],
)
def test_sampler_rejects_bad_arguments(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        correlated_inputs(rng=0, **kwargs)


def test_sampler_needs_an_rng_argument():
    with pytest.raises(TypeError):
        correlated_inputs(4, 4, 1)  # type: ignore[call-arg]
    with pytest.raises(InputTypeError, match="rng must be"):
        correlated_inputs(4, 4, 1, rng="seed")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="rng must be"):
        correlated_inputs(4, 4, 1, rng=-1)


def test_rng_none_means_fresh_entropy():
    """As in NumPy: ``rng=None`` draws differently each call (a fixed default seed would not)."""
    a = correlated_inputs(3, 8, 1, rng=None)
    b = correlated_inputs(3, 8, 1, rng=None)
    assert not np.array_equal(a, b)
    np.testing.assert_array_equal(
        correlated_inputs(3, 8, 1, rng=5), correlated_inputs(3, 8, 1, rng=5)
    )


def test_embedding_checks_its_arguments():
    with pytest.raises(InputError, match="clip_tol"):
        circulant_embedding(8, 1, clip_tol=-1e-3)
    with pytest.raises(InputTypeError, match="max_doublings"):
        circulant_embedding(8, 1, max_doublings=1.5)
    with pytest.raises(InputError, match="max_doublings"):
        circulant_embedding(8, 1, max_doublings=-1)


def test_cholesky_of_a_non_psd_row_raises_input_error():
    # power 40 at a large scale: c_k ≈ (-1)^k for k < s, the alternating all-±1 band is
    # numerically singular (rank one); pushing k/s slightly gives a non-PSD matrix
    with pytest.raises(InputError, match="not positive definite"):
        correlated_inputs(3, 30, 40.0, scale=25.0, rng=0, method="cholesky")
