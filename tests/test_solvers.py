"""Tests for syngeo.solvers: exact Bregman projection and the linearised change.

Reference solutions are independent of the solver: the p = 2 closed form, a plain float64
mirror-descent loop written here, optimality conditions (feasibility, stationarity, minimality),
and the first-order agreement of the linearisation.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import scipy.optimize
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from syngeo.errors import DomainError, InputError, InputTypeError
from syngeo.potentials import NegativeEntropy, PNorm
from syngeo.solvers import (
    BregmanProjection,
    ConvergenceError,
    LinearizedChange,
    bregman_projection,
    linearized_change,
)
from user_potentials import Quartic

POTENTIALS = [PNorm(1.5), PNorm(2), PNorm(3), PNorm(4), NegativeEntropy()]
IDS = ["p1.5", "p2", "p3", "p4", "ne"]


def _problem(n: int, d: int, seed: int, *, w_scale: float | None = None):
    """The paper's regression set-up: Gaussian X, labels ±1, w0 ~ N(0, 1/D) (a large change)."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    y = rng.choice([-1.0, 1.0], size=n)
    w0 = rng.normal(0.0, w_scale if w_scale is not None else d**-0.5, size=d)
    return X, y, w0


def _row_space_residual(X: np.ndarray, v: np.ndarray) -> float:
    """‖v − Xᵀa*‖ / ‖v‖ for the least-squares a* (0 iff v lies in the row space of X)."""
    a, *_ = np.linalg.lstsq(X.T, v, rcond=None)
    return float(np.linalg.norm(v - X.T @ a) / np.linalg.norm(v))


def _null_space(X: np.ndarray) -> np.ndarray:
    _, s, vt = np.linalg.svd(X)
    rank = int(np.sum(s > 1e-10 * s[0]))
    return vt[rank:].T


def _mirror_descent(X, y, w0, phi, lr, n_steps):
    """Plain float64 full-batch mirror descent on ½‖Xw − y‖²/N (the reference, paper Eq. 5–6, docs/theory.md §1)."""
    n = X.shape[0]
    sign = np.sign(w0)
    u = phi.grad(w0)
    w = w0.copy()
    for _ in range(n_steps):
        u = u - lr * X.T @ (X @ w - y) / n
        w = phi.grad_inverse(u, sign=sign)
    return w


# -- optimality conditions on the paper's (non-lazy) regime --------------------------------------


@pytest.mark.parametrize("phi", POTENTIALS, ids=IDS)
@pytest.mark.parametrize("seed", [0, 1])
def test_exact_solution_is_feasible_and_stationary(phi, seed):
    X, y, w0 = _problem(40, 300, seed)
    sol = bregman_projection(X, y, w0, phi)
    assert sol.converged
    assert sol.constraint_residual <= 1e-10
    assert np.linalg.norm(X @ sol.weights - y) / np.linalg.norm(y) <= 1e-10
    delta = phi.grad(sol.weights) - phi.grad(w0)  # recomputed independently of the solver
    np.testing.assert_allclose(delta, sol.dual_change, rtol=1e-7, atol=1e-9)
    assert _row_space_residual(X, delta) < 1e-8
    np.testing.assert_allclose(sol.dual_change, -X.T @ sol.multipliers, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("p", [1.1, 6.0])
def test_extreme_p_converge_in_the_paper_regime(p):
    # near p = 1 the inverse mirror map is |u|^10; for p = 6 it is |u|^0.2 (infinite slope at 0)
    X, y, w0 = _problem(40, 300, 25)
    phi = PNorm(p)
    sol = bregman_projection(X, y, w0, phi)
    assert sol.converged and sol.constraint_residual <= 1e-10
    assert _row_space_residual(X, phi.grad(sol.weights) - phi.grad(w0)) < 1e-8


@settings(max_examples=25, deadline=None)
@given(
    p=st.one_of(st.floats(1.2, 5.0), st.just(0.0)),  # 0.0 stands for negative entropy
    n=st.integers(1, 12),
    extra=st.integers(1, 60),
    w_scale=st.sampled_from([1e-2, 0.1, 1.0, 10.0]),
    y_scale=st.sampled_from([1e-3, 1.0, 1e2]),
    seed=st.integers(0, 2**31),
)
def test_property_feasible_stationary_for_random_problems(p, n, extra, w_scale, y_scale, seed):
    rng = np.random.default_rng(seed)
    d = n + extra
    X = rng.standard_normal((n, d))
    w0 = rng.normal(0.0, w_scale, d)
    y = X @ w0 + y_scale * rng.standard_normal(n)
    phi = NegativeEntropy() if p == 0.0 else PNorm(p)
    try:
        sol = bregman_projection(X, y, w0, phi)
    except ConvergenceError:
        # NE keeps the signs of w0, so some targets are out of reach: confirm that a
        # sign-constrained solution does not exist by a linear program
        assert isinstance(phi, NegativeEntropy)
        from scipy.optimize import linprog

        s = np.sign(w0)
        lp = linprog(np.zeros(d), A_eq=X * s, b_eq=y, bounds=[(1e-12, None)] * d, method="highs")
        assert lp.status == 2, "a sign-feasible solution exists but NE did not converge"
        return
    assert sol.constraint_residual <= 1e-10
    delta = phi.grad(sol.weights) - phi.grad(w0)
    if np.linalg.norm(delta) > 1e-12 * max(1.0, np.linalg.norm(phi.grad(w0))):
        assert _row_space_residual(X, delta) < 1e-6


def test_p2_matches_the_minimum_norm_closed_form():
    X, y, w0 = _problem(30, 120, 3)
    sol = bregman_projection(X, y, w0, "2-norm")
    closed = w0 + X.T @ np.linalg.solve(X @ X.T, y - X @ w0)
    np.testing.assert_allclose(sol.weights, closed, rtol=1e-10, atol=1e-12)
    assert sol.n_iter == 1  # the Newton step is exact for a quadratic dual


@pytest.mark.parametrize("phi", POTENTIALS, ids=IDS)
def test_solution_minimises_the_bregman_divergence_on_the_solution_set(phi):
    X, y, w0 = _problem(10, 60, 4)
    sol = bregman_projection(X, y, w0, phi)
    best = float(phi.bregman(sol.weights, w0))
    null = _null_space(X)
    rng = np.random.default_rng(5)
    for scale in (1e-2, 1e-1):
        for _ in range(20):
            v = null @ rng.standard_normal(null.shape[1])
            v *= scale * np.linalg.norm(sol.weights) / np.linalg.norm(v)
            other = sol.weights + v
            if isinstance(phi, NegativeEntropy) and np.any(np.sign(other) != np.sign(w0)):
                continue  # outside NE's domain (fixed signs)
            assert np.linalg.norm(X @ other - y) < 1e-8
            assert float(phi.bregman(other, w0)) > best


@pytest.mark.parametrize("phi", POTENTIALS, ids=IDS)
def test_agrees_with_a_long_mirror_descent_run(phi):
    rng = np.random.default_rng(6)
    n, d = 4, 16
    X = rng.standard_normal((n, d))
    w0 = rng.choice([-1.0, 1.0], d) * rng.uniform(0.5, 1.5, d)
    y = X @ w0 + rng.standard_normal(n)  # a change of order one, far from lazy
    sol = bregman_projection(X, y, w0, phi)
    # step size from the curvature of the dual map at the answer (stable along the whole path
    # for these well-separated weights)
    h = 1.0 / phi.hessian_diag(np.concatenate([w0, sol.weights]))
    lr = 0.5 * n / (np.linalg.norm(X, 2) ** 2 * h.max())
    w_md = _mirror_descent(X, y, w0, phi, lr, 8000)
    assert np.linalg.norm(X @ w_md - y) < 1e-9
    # the loop converges to ~1e-14 here; 1e-8 leaves room for rounding
    np.testing.assert_allclose(sol.weights, w_md, atol=1e-8, rtol=0)


# -- the linearisation ----------------------------------------------------------------------------


@pytest.mark.parametrize("phi", [PNorm(1.5), PNorm(3), NegativeEntropy()], ids=["p1.5", "p3", "ne"])
def test_linearised_change_is_first_order_accurate(phi):
    X, _, w0 = _problem(8, 80, 7, w_scale=0.5)
    direction = np.random.default_rng(8).standard_normal(8)
    errors = []
    for eps in (1e-1, 1e-2, 1e-3):
        y = X @ w0 + eps * direction
        # tol is relative to ‖y‖ = O(1) while the change is O(ε): tighten it
        exact = bregman_projection(X, y, w0, phi, tol=1e-14).dual_change
        lin = linearized_change(X, y, w0, phi).dual_change
        errors.append(np.linalg.norm(lin - exact) / np.linalg.norm(exact))
    assert errors[0] < 0.2
    # relative error O(ε): each factor 10 in ε gains a factor ≈ 10 (allow 4–25)
    for big, small in itertools.pairwise(errors):
        assert 4.0 < big / small < 25.0, errors


def test_linearised_change_is_exact_for_p2_and_consistent():
    X, y, w0 = _problem(12, 50, 9)
    lin = linearized_change(X, y, w0, "2-norm")
    exact = bregman_projection(X, y, w0, "2-norm")
    np.testing.assert_allclose(lin.weights, exact.weights, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(lin.dual_change, -X.T @ lin.multipliers, atol=1e-12)
    # w = w0 + H⁻¹Δ and the linearised weights satisfy the constraints for every potential
    for phi in (PNorm(3), NegativeEntropy()):
        lin = linearized_change(X, y, w0, phi)
        np.testing.assert_allclose(lin.weights, w0 + lin.dual_change / phi.hessian_diag(w0))
        np.testing.assert_allclose(X @ lin.weights, y, atol=1e-10)


def test_linearised_change_needs_an_invertible_hessian():
    X, y, w0 = _problem(3, 10, 10)
    w0[2] = 0.0
    with pytest.raises(ValueError, match="Hessian 0"):
        linearized_change(X, y, w0, PNorm(3))


# -- negative entropy specifics -------------------------------------------------------------------


def test_negative_entropy_keeps_signs_and_zeros():
    X, y, w0 = _problem(10, 50, 11, w_scale=0.3)
    w0[[3, 17]] = 0.0
    sol = bregman_projection(X, y, w0, NegativeEntropy())
    assert sol.converged
    assert sol.weights[3] == 0.0 and sol.weights[17] == 0.0
    nonzero = w0 != 0
    assert np.all(np.sign(sol.weights[nonzero]) == np.sign(w0[nonzero]))
    assert sol.dual_change[3] == 0.0 and sol.dual_change[17] == 0.0
    # equals the projection computed on the non-zero columns only
    sub = bregman_projection(X[:, nonzero], y, w0[nonzero], NegativeEntropy())
    np.testing.assert_allclose(sol.weights[nonzero], sub.weights, rtol=1e-9, atol=1e-12)


def test_negative_entropy_without_a_sign_feasible_solution_raises():
    X = np.array([[1.0, 1.0]])
    with pytest.raises(ConvergenceError, match="signs"):
        bregman_projection(X, np.array([-1.0]), np.array([0.5, 0.25]), "ne")


def test_negative_entropy_with_all_zero_weights_has_no_solution():
    with pytest.raises(DomainError, match="no solution: every weight in w0 is 0"):
        bregman_projection(np.ones((1, 3)), np.ones(1), np.zeros(3), "ne")
    # a potential that is not sign-preserving moves zero weights
    sol = bregman_projection(np.ones((1, 3)), np.ones(1), np.zeros(3), Quartic())
    np.testing.assert_allclose(sol.weights, np.full(3, 1 / 3), rtol=1e-10)


def test_input_errors_are_syngeo_errors():
    X, y, w0 = _problem(3, 6, 25)
    with pytest.raises(InputError, match="y must have shape"):
        bregman_projection(X, y[:2], w0, "3-norm")
    with pytest.raises(InputTypeError, match="real numeric"):
        linearized_change(X.astype(complex), y, w0, "3-norm")
    with pytest.raises(InputError, match="tol must lie in"):
        bregman_projection(X, y, w0, "3-norm", tol=1.5)
    with pytest.raises(InputTypeError, match="max_iter must be an integer"):
        bregman_projection(X, y, w0, "3-norm", max_iter=2.0)
    with pytest.raises(InputError, match="not in the range of X"):
        bregman_projection(np.ones((2, 3)), np.array([1.0, 2.0]), w0[:3], "2-norm")


# -- paths and options ----------------------------------------------------------------------------


@pytest.mark.parametrize("phi", [PNorm(3), NegativeEntropy()], ids=["p3", "ne"])
def test_torch_and_numpy_paths_agree(phi):
    X, y, w0 = _problem(20, 100, 12)
    ref = bregman_projection(X, y, w0, phi)
    sol = bregman_projection(torch.from_numpy(X), torch.from_numpy(y), torch.from_numpy(w0), phi)
    assert isinstance(sol.weights, torch.Tensor) and sol.weights.dtype == torch.float64
    assert isinstance(ref.weights, np.ndarray)
    np.testing.assert_allclose(sol.weights.numpy(), ref.weights, rtol=1e-12, atol=1e-14)
    # float32 tensors are promoted to float64
    sol32 = bregman_projection(
        torch.from_numpy(X).float(), torch.from_numpy(y).float(), torch.from_numpy(w0).float(), phi
    )
    assert sol32.weights.dtype == torch.float64
    lin = linearized_change(torch.from_numpy(X), torch.from_numpy(y), torch.from_numpy(w0), phi)
    np.testing.assert_allclose(
        lin.dual_change.numpy(), linearized_change(X, y, w0, phi).dual_change, rtol=1e-12
    )


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu():
    X, y, w0 = _problem(50, 400, 13)
    ref = bregman_projection(X, y, w0, "3-norm")
    t = [torch.from_numpy(a).cuda() for a in (X, y, w0)]
    sol = bregman_projection(*t, "3-norm")
    assert sol.weights.device.type == "cuda"
    np.testing.assert_allclose(sol.weights.cpu().numpy(), ref.weights, rtol=1e-9, atol=1e-12)


def test_line_search_off_gives_the_same_answer_on_a_lazy_problem():
    X, _, w0 = _problem(10, 80, 14, w_scale=0.5)
    y = X @ w0 + 0.01 * np.random.default_rng(15).standard_normal(10)
    a = bregman_projection(X, y, w0, "ne", line_search=False)
    b = bregman_projection(X, y, w0, "ne")
    np.testing.assert_allclose(a.weights, b.weights, rtol=1e-10, atol=1e-14)


def test_accepts_potential_specs_and_lists():
    X, y, w0 = _problem(3, 8, 16)
    a = bregman_projection(X.tolist(), y.tolist(), w0.tolist(), "3-norm")
    b = bregman_projection(X, y, w0, PNorm(3))
    np.testing.assert_allclose(a.weights, b.weights)
    assert a.potential == PNorm(3)


def test_zero_targets_use_an_absolute_residual():
    X, _, w0 = _problem(5, 30, 17)
    sol = bregman_projection(X, np.zeros(5), w0, "3-norm")
    assert sol.converged and np.linalg.norm(X @ sol.weights) < 1e-10


def test_already_feasible_start_returns_w0_without_work():
    X, _, w0 = _problem(5, 30, 26)
    sol = bregman_projection(X, X @ w0, w0, "3-norm")
    assert sol.n_iter == 0 and sol.n_factorizations == 0 and sol.converged
    np.testing.assert_array_equal(sol.weights, w0)
    np.testing.assert_array_equal(sol.dual_change, np.zeros(30))


def test_result_objects_are_frozen_with_readable_repr_and_dict():
    X, y, w0 = _problem(5, 20, 18)
    sol = bregman_projection(X, y, w0, "ne")
    assert isinstance(sol, BregmanProjection)
    text = repr(sol)
    assert text.startswith("BregmanProjection(potential=NegativeEntropy(), N=5, D=20")
    assert "converged=True" in text
    info = sol.to_dict()
    assert info["potential"] == "NE" and info["converged"] is True
    assert info["weights"].shape == (20,)
    with pytest.raises(AttributeError):
        sol.n_iter = 0
    lin = linearized_change(X, y, w0, "ne")
    assert isinstance(lin, LinearizedChange)
    assert repr(lin) == "LinearizedChange(potential=NegativeEntropy(), N=5, D=20)"
    assert set(lin.to_dict()) == {"dual_change", "weights", "multipliers", "potential"}
    tsol = bregman_projection(torch.from_numpy(X), torch.from_numpy(y), torch.from_numpy(w0), "ne")
    assert isinstance(tsol.to_dict()["weights"], np.ndarray)


# -- errors ---------------------------------------------------------------------------------------


def test_inconsistent_rank_deficient_system_has_no_solution():
    X, _, w0 = _problem(3, 10, 19)
    X = np.vstack([X, X[0]])  # a duplicated row ...
    y = np.array([1.0, -1.0, 1.0, -1.0])  # ... with a different target
    for phi in ("2-norm", "3-norm", "ne"):
        with pytest.raises(ValueError, match="no solution"):
            bregman_projection(X, y, w0, phi)


def test_consistent_rank_deficient_system_is_solved():
    X, y, w0 = _problem(3, 10, 20)
    X = np.vstack([X, X[0]])
    y = np.append(y, y[0])
    sol = bregman_projection(X, y, w0, "3-norm")
    assert sol.converged and np.linalg.norm(X @ sol.weights - y) / np.linalg.norm(y) < 1e-10


def test_more_equations_than_unknowns_without_a_solution():
    X, y, w0 = _problem(12, 5, 21)
    with pytest.raises(ValueError, match="no solution"):
        bregman_projection(X, y, w0, "2-norm")


def test_non_convergence_raises_with_the_residual():
    X, y, w0 = _problem(20, 100, 22)
    with pytest.raises(ConvergenceError, match="residual") as info:
        bregman_projection(X, y, w0, "3-norm", max_iter=1)
    assert info.value.residual > 1e-10 and info.value.n_iter == 1
    assert isinstance(info.value, RuntimeError)


@pytest.mark.parametrize(
    "args, exc, match",
    [
        ((np.ones(3), np.ones(1), np.ones(3)), ValueError, "X must be a 2-D"),
        ((np.ones((2, 3)), np.ones(3), np.ones(3)), ValueError, "y must have shape"),
        ((np.ones((2, 3)), np.ones((2, 1)), np.ones(3)), ValueError, "y must have shape"),
        ((np.ones((2, 3)), np.ones(2), np.ones(4)), ValueError, "w0 must have shape"),
        ((np.full((2, 3), np.nan), np.ones(2), np.ones(3)), ValueError, "X has 6 non-finite"),
        ((np.ones((2, 3)), np.ones(2), np.array([1, np.inf, 1])), ValueError, "w0 has 1"),
        ((np.ones((2, 3)) * 1j, np.ones(2), np.ones(3)), TypeError, "real numeric"),
        ((np.ones((2, 3)), np.array(["a", "b"]), np.ones(3)), TypeError, "real numeric"),
        ((np.ones((0, 3)), np.ones(0), np.ones(3)), ValueError, "non-empty"),
    ],
)
def test_bad_input_is_rejected(args, exc, match):
    with pytest.raises(exc, match=match):
        bregman_projection(*args, "3-norm")


def test_bad_options_and_potential():
    X, y, w0 = _problem(2, 5, 23)
    with pytest.raises(ValueError, match="tol"):
        bregman_projection(X, y, w0, "ne", tol=0)
    with pytest.raises(ValueError, match="max_iter"):
        bregman_projection(X, y, w0, "ne", max_iter=0)
    with pytest.raises(ValueError, match="unknown potential"):
        bregman_projection(X, y, w0, "cosh")
    with pytest.raises(ValueError, match="p > 1"):
        bregman_projection(X, y, w0, 1.0)


def test_tensors_on_different_devices_are_rejected():
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    X, y, w0 = _problem(2, 5, 24)
    with pytest.raises(ValueError, match="device"):
        bregman_projection(torch.from_numpy(X).cuda(), torch.from_numpy(y), w0, "ne")


# -- a potential defined only in the tests ------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_user_potential_matches_an_independent_scipy_minimiser(seed):
    """argmin_{Xw=y} D_φ(w, w0) for Quartic (φ = w²/2 + w⁴/4), solved independently.

    The reference parametrises the solution set, w = w_p + N z (N an orthonormal null-space
    basis of X, w_p the minimum-norm solution), and minimises the smooth, strictly convex
    D_φ(w_p + N z, w0) over z by scipy's trust-region Newton with the exact gradient Nᵀ(φ'(w) −
    φ'(w0)) and Hessian Nᵀ diag(φ''(w)) N. φ'' ≥ 1, so the reduced Hessian has eigenvalues ≥ 1
    and |z − z*| ≤ |gradient| ≤ gtol = 1e-12; the solver certifies ‖Xw − y‖/‖y‖ ≤ 1e-10 with
    stationarity from its dual construction. 1e-8 absolute on w (entries ~0.3) covers both.
    The change is large (w0 ~ N(0, 1/D) against labels ±1): far outside the Euclidean regime.
    """
    phi = Quartic()
    X, y, w0 = _problem(8, 40, seed)
    sol = bregman_projection(X, y, w0, phi)
    assert sol.converged and sol.potential is phi

    null = _null_space(X)
    w_p = np.linalg.lstsq(X, y, rcond=None)[0]

    def objective(z):
        w = w_p + null @ z
        return float(phi.bregman(w, w0))

    def gradient(z):
        w = w_p + null @ z
        return null.T @ (phi.grad(w) - phi.grad(w0))

    def hessian(z):
        w = w_p + null @ z
        return null.T @ (phi.hessian_diag(w)[:, None] * null)

    z0 = null.T @ (w0 - w_p)
    ref = scipy.optimize.minimize(
        objective, z0, jac=gradient, hess=hessian, method="trust-exact", options={"gtol": 1e-12}
    )
    assert ref.success
    w_ref = w_p + null @ ref.x
    np.testing.assert_allclose(sol.weights, w_ref, rtol=0, atol=1e-8)
    # far from the Euclidean answer: the test can tell the potentials apart
    euclid = bregman_projection(X, y, w0, "2-norm").weights
    assert np.abs(euclid - w_ref).max() > 1e-2
    # and the linearised first Newton step is the Quartic one, exact to first order only
    lin = linearized_change(X, y, w0, phi)
    np.testing.assert_allclose(lin.dual_change, -X.T @ lin.multipliers, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("p", [3.0, 4.0])
def test_exact_zeros_with_infinite_inverse_slope(p):
    """For p > 2, (∇φ)⁻¹ has an infinite slope at w = 0 (φ'' = 0): the first Newton matrix must
    still see those weights (capped slope), or a start with all weights 0 is stuck."""
    X, y, w0 = _problem(6, 30, 26)
    for start in (np.zeros(30), np.where(np.arange(30) % 3 == 0, 0.0, w0)):
        sol = bregman_projection(X, y, start, PNorm(p))
        assert sol.converged and sol.n_iter <= 30
        delta = PNorm(p).grad(sol.weights) - PNorm(p).grad(start)
        assert _row_space_residual(X, delta) < 1e-8
