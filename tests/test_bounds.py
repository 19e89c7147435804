"""Tests of learning-rate bounds (syngeo.bounds): closed forms, Monte Carlo, equivalences."""

import math

import numpy as np
import pytest
import torch

from syngeo.bounds import (
    FlatLoss,
    LossGeometry,
    difficulty_bound,
    expected_learning_rate,
    hessian_matrix,
    hessian_trace,
    hessian_vector_product,
    hutchinson_trace,
    learning_condition,
    learning_rate,
    local_task_difficulty,
    loss_geometry,
    mean_task_difficulty,
    optimal_size,
    optimal_size_numeric,
    predicted_learning_rate,
    size_learning_rate,
)
from syngeo.errors import InputError, InputTypeError
from syngeo.expansion import init_sigmoid_mlp, make_sigmoid_task
from syngeo.plasticity import PlasticityRates, ThreeComponentPlasticity

D = torch.float64


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def mlp_problem():
    """A small sigmoid student-teacher problem: [4, 6, 3] network, 64 inputs (N = 51)."""
    teacher = init_sigmoid_mlp([4, 6, 3], rng=1)
    task = make_sigmoid_task(teacher, n_samples=64, rng=2)
    student = init_sigmoid_mlp([4, 6, 3], rng=3)
    return task.loss, list(student.weights)


def random_quadratic(n, seed):
    """F(w) = 1/2 (w - w*)^T H (w - w*) with H = Q diag(λ) Q^T, λ log-uniform in [0.1, 10]."""
    g = gen(seed)
    Q, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=D))
    lam = torch.exp(torch.empty(n, dtype=D).uniform_(math.log(0.1), math.log(10), generator=g))
    H = (Q * lam) @ Q.T
    w_star = torch.randn(n, generator=g, dtype=D)
    return H, w_star


# --- definition -------------------------------------------------------------------------------


def test_learning_rate_definition():
    assert learning_rate(4.0, 3.0, 2.0) == pytest.approx(0.125)  # 3 = (1 - 0.125*2) * 4
    assert learning_rate(1.0, 2.0, 1.0) == pytest.approx(-1.0)
    with pytest.raises(ValueError, match="F0 must be > 0"):
        learning_rate(0.0, 1.0, 1.0)
    with pytest.raises(InputError, match="T must be a finite number > 0"):
        learning_rate(1.0, 1.0, -1.0)
    with pytest.raises(ValueError, match="finite"):
        learning_rate(float("nan"), 1.0, 1.0)


# --- Hessian machinery ----------------------------------------------------------------------


def test_hvp_matches_explicit_hessian(mlp_problem):
    loss, params = mlp_problem
    H = hessian_matrix(loss, params)
    # independent reference: torch.autograd.functional.hessian on the flat vector
    sizes = [p.numel() for p in params]
    flat = torch.cat([p.reshape(-1) for p in params])

    def f(theta):
        parts = [
            c.reshape(p.shape) for c, p in zip(torch.split(theta, sizes), params, strict=False)
        ]
        return loss(parts)

    H_ref = torch.autograd.functional.hessian(f, flat)
    assert torch.allclose(H, H_ref, atol=1e-10)
    v = torch.randn(flat.numel(), generator=gen(5), dtype=D)
    assert torch.allclose(hessian_vector_product(loss, params, v), H_ref @ v, atol=1e-10)
    # direction given in the parameters' structure
    v_struct = [c.reshape(p.shape) for c, p in zip(torch.split(v, sizes), params, strict=False)]
    assert torch.allclose(hessian_vector_product(loss, params, v_struct), H_ref @ v, atol=1e-10)
    assert hessian_trace(loss, params, chunk=7) == pytest.approx(
        torch.trace(H_ref).item(), rel=1e-10
    )


def _forward_over_reverse_hvp(loss, params, v):
    """The previous implementation (torch.func: jvp of grad), kept here as a reference."""
    sizes = [p.numel() for p in params]
    flat = torch.cat([p.reshape(-1) for p in params])

    def f(theta):
        return loss(
            [c.reshape(p.shape) for c, p in zip(torch.split(theta, sizes), params, strict=True)]
        )

    return torch.func.jvp(torch.func.grad(f), (flat,), (v,))[1]


@pytest.mark.parametrize("batched", [True, False])
def test_flat_loss_hvp_matches_forward_over_reverse(mlp_problem, batched, monkeypatch):
    # the reverse-over-reverse products (batched, or one backward pass per row when the loss
    # has no batching rule) equal the forward-over-reverse ones to rounding: both are exact
    # derivatives, so the gap is a few ulps of |H||v| ~ 1 (atol 1e-12)
    loss, params = mlp_problem
    if not batched:
        real_grad = torch.autograd.grad

        def no_batching(*args, **kwargs):
            if kwargs.get("is_grads_batched"):
                raise RuntimeError("no batching rule")
            return real_grad(*args, **kwargs)

        monkeypatch.setattr(torch.autograd, "grad", no_batching)
    flat_loss = FlatLoss(loss, params)
    w = flat_loss.initial + 0.1 * torch.randn(flat_loss.n, generator=gen(11), dtype=D)
    V = torch.randn(5, flat_loss.n, generator=gen(12), dtype=D)
    rows = flat_loss.hvp_rows(w, V, chunk=2)
    moved = [
        w_part.reshape(p.shape)
        for w_part, p in zip(torch.split(w, [p.numel() for p in params]), params, strict=False)
    ]
    for v, row in zip(V, rows, strict=False):
        reference = _forward_over_reverse_hvp(loss, moved, v)
        assert torch.allclose(row, reference, rtol=0, atol=1e-12)
        assert torch.allclose(flat_loss.hvp(w, v), reference, rtol=0, atol=1e-12)


def test_flat_loss_closed_forms_on_a_quadratic():
    # F = 1/2 (w - w*)^T H (w - w*): grad H(w - w*), H v, Tr H, g^T H g / |g|^2 exactly
    n = 9
    H, w_star = random_quadratic(n, seed=13)
    flat_loss = FlatLoss(lambda w: 0.5 * (w - w_star) @ H @ (w - w_star), torch.zeros(n, dtype=D))
    w = torch.randn(n, generator=gen(14), dtype=D)
    F, g = flat_loss.value_and_grad(w)
    assert F == pytest.approx(0.5 * float((w - w_star) @ H @ (w - w_star)), rel=1e-12)
    assert torch.allclose(g, H @ (w - w_star), rtol=1e-12, atol=1e-12)
    v = torch.randn(n, generator=gen(15), dtype=D)
    assert torch.allclose(flat_loss.hvp(w, v), H @ v, rtol=1e-12, atol=1e-12)
    assert flat_loss.hessian_trace(w, chunk=4) == pytest.approx(torch.trace(H).item(), rel=1e-12)
    geo = flat_loss.geometry(w)
    assert geo.grad_curvature == pytest.approx(float(g @ H @ g / (g @ g)), rel=1e-12)
    assert geo.hessian_trace == pytest.approx(torch.trace(H).item(), rel=1e-12)
    assert (geo.trace_method, geo.n_synapses, geo.hessian_trace_se) == ("exact", n, 0.0)
    # a loss linear in w has a zero Hessian (the gradient's graph does not reach w)
    linear = FlatLoss(lambda w: (w_star * w).sum(), torch.zeros(n, dtype=D))
    assert torch.equal(linear.hvp(w, v), torch.zeros(n, dtype=D))
    assert linear.hessian_trace(w) == 0.0


def test_loss_geometry_auto_switches_to_hutchinson_above_exact_max(mlp_problem):
    loss, params = mlp_problem
    n = sum(p.numel() for p in params)
    at_limit = loss_geometry(loss, params, exact_max=n, generator=gen(3))
    above = loss_geometry(loss, params, exact_max=n - 1, generator=gen(3))
    assert (at_limit.trace_method, at_limit.hessian_trace_se) == ("exact", 0.0)
    assert above.trace_method == "hutchinson" and above.hessian_trace_se > 0


def test_hutchinson_matches_exact_trace_within_its_standard_error(mlp_problem):
    loss, params = mlp_problem
    exact = hessian_trace(loss, params)
    est = hutchinson_trace(loss, params, n_probes=200, generator=gen(7))
    assert est.standard_error > 0
    assert abs(est.estimate - exact) < 4 * est.standard_error


def test_hutchinson_standard_error_is_calibrated():
    # Rademacher probes: Var(v^T H v) = 2 (||H||_F^2 - sum_i H_ii^2) (closed form).
    n, m, reps = 60, 50, 300
    H, _ = random_quadratic(n, seed=8)
    loss = lambda w: 0.5 * w @ H @ w  # noqa: E731
    w = torch.zeros(n, dtype=D)
    sd_theory = math.sqrt(2 * ((H**2).sum() - (torch.diagonal(H) ** 2).sum()).item() / m)
    g = gen(9)
    z, ses = [], []
    for _ in range(reps):
        est = hutchinson_trace(loss, w, n_probes=m, generator=g)
        z.append((est.estimate - torch.trace(H).item()) / est.standard_error)
        ses.append(est.standard_error)
    z = np.array(z)
    assert np.mean(ses) == pytest.approx(sd_theory, rel=0.05)
    assert 0.9 < np.std(z) < 1.15  # z-scores are standard normal when the SE is right
    assert abs(np.mean(z)) < 4 / math.sqrt(reps)


# --- second-order prediction ---------------------------------------------------------------


def test_prediction_is_exact_for_a_quadratic_loss():
    H, w_star = random_quadratic(30, seed=10)
    loss = lambda w: 0.5 * (w - w_star) @ H @ (w - w_star)  # noqa: E731
    w0 = torch.zeros(30, dtype=D)
    dw = torch.randn(30, generator=gen(11), dtype=D) * 0.3
    T = 1.7
    p = predicted_learning_rate(loss, w0, dw, T)
    true_k = learning_rate(loss(w0).item(), loss(w0 + dw).item(), T)
    assert p.k == pytest.approx(true_k, rel=1e-10)
    assert p.k == pytest.approx(p.gradient_term + p.curvature_term)
    g = H @ (w0 - w_star)
    assert p.gradient_term == pytest.approx(-(g @ dw).item() / T / p.loss)


def test_prediction_matches_real_change_for_small_T_on_a_sigmoid_mlp(mlp_problem):
    # Over T the change is T*wdot; the neglected third-order term makes the error in k O(T^2).
    loss, params = mlp_problem
    flat = torch.cat([p.reshape(-1) for p in params])
    step = ThreeComponentPlasticity(PlasticityRates(1.0, 0.5, 0.05, T=1.0), generator=gen(12))
    grad = torch.func.grad(lambda w: loss(w))(params)
    wdot = step.step(torch.cat([g.reshape(-1) for g in grad])).velocity
    sizes = [p.numel() for p in params]

    def shift(T):
        return [
            c.reshape(p.shape)
            for c, p in zip(torch.split(flat + T * wdot, sizes), params, strict=False)
        ]

    errors = []
    for T in (0.2, 0.1, 0.05):
        pred = predicted_learning_rate(loss, params, T * wdot, T).k
        real = learning_rate(loss(params).item(), loss(shift(T)).item(), T)
        errors.append(abs(pred - real))
        assert abs(pred - real) < 0.05 * abs(real)
    # halving T divides the error by about 4 (third-order remainder)
    assert 3.0 < errors[0] / errors[1] < 5.0
    assert 3.0 < errors[1] / errors[2] < 5.0


# --- the expectation over the random components ---------------------------------------------


def test_expected_k_matches_monte_carlo_average_of_exact_quadratic_k():
    # Quadratic loss with N = 1000: the second-order k is exact, so averaging it over draws of
    # n2, n3 (uniform on the sphere) must reproduce the closed form <k>.
    n = 1000
    H, w_star = random_quadratic(n, seed=13)
    w0 = torch.zeros(n, dtype=D)
    grad = H @ (w0 - w_star)
    F = 0.5 * (w_star @ H @ w_star).item()
    rates = PlasticityRates(1.0, 2.0, 0.05, T=0.5)
    geo = LossGeometry(
        F,
        grad.norm().item(),
        (grad @ H @ grad / grad.norm() ** 2).item(),
        torch.trace(H).item(),
        0.0,
        n,
    )
    expected = expected_learning_rate(geo, rates).k

    draws = 3000
    g = gen(14)
    Z2 = torch.randn(draws, n, generator=g, dtype=D)
    Z3 = torch.randn(draws, n, generator=g, dtype=D)
    n2 = Z2 / Z2.norm(dim=1, keepdim=True)
    n3 = Z3 / Z3.norm(dim=1, keepdim=True)
    W = -rates.gamma1 * grad / grad.norm() + rates.gamma2 * n2 + rates.noise_norm(n) * n3
    k = -(W @ grad + 0.5 * rates.T * ((W @ H) * W).sum(dim=1)) / F
    mean, se = k.mean().item(), k.std().item() / math.sqrt(draws)
    # enough draws that the MC error is well below the 2 % tolerance
    assert se < 0.004 * abs(mean)
    assert abs(mean - expected) < 0.02 * abs(expected)
    assert abs(mean - expected) < 4 * se


def test_expected_k_matches_average_of_predicted_k_on_an_mlp(mlp_problem):
    # generic path: loss_geometry + predicted_learning_rate on draws from the generator
    loss, params = mlp_problem
    rates = PlasticityRates(0.5, 1.0, 0.1, T=0.2)
    geo = loss_geometry(loss, params, trace="exact")
    exp = expected_learning_rate(geo, rates)
    grad = torch.cat([g.reshape(-1) for g in torch.func.grad(loss)(params)])
    plast = ThreeComponentPlasticity(rates, generator=gen(15))
    ks = np.array(
        [
            predicted_learning_rate(loss, params, plast.step(grad).delta, rates.T).k
            for _ in range(250)
        ]
    )
    se = ks.std(ddof=1) / math.sqrt(ks.size)
    assert abs(ks.mean() - exp.k) < 4 * se
    parts = exp.gradient_term + exp.task_curvature_term + exp.irrelevant_term + exp.noise_term
    assert exp.k == pytest.approx(parts)


def test_loss_geometry_hutchinson_path(mlp_problem):
    loss, params = mlp_problem
    exact = loss_geometry(loss, params, trace="exact")
    est = loss_geometry(loss, params, trace="hutchinson", n_probes=100, generator=gen(16))
    assert est.trace_method == "hutchinson" and est.hessian_trace_se > 0
    assert abs(est.hessian_trace - exact.hessian_trace) < 4 * est.hessian_trace_se
    assert est.grad_norm == pytest.approx(exact.grad_norm)
    rates = PlasticityRates(0.5, 1.0, 0.1, T=0.2)
    e = expected_learning_rate(est, rates)
    assert e.k_standard_error > 0
    assert abs(e.k - expected_learning_rate(exact, rates).k) < 4 * e.k_standard_error
    with pytest.raises(ValueError, match="generator"):
        loss_geometry(loss, params, trace="hutchinson")


# --- difficulty and learning condition ----------------------------------------------------------


def test_difficulty_conventions_and_k_identity(mlp_problem):
    loss, params = mlp_problem
    grad = torch.cat([g.reshape(-1) for g in torch.func.grad(loss)(params)])
    rates = PlasticityRates(1.0, 0.5, 0.05, T=0.5)
    wdot = ThreeComponentPlasticity(rates, generator=gen(17)).step(grad).velocity
    G = local_task_difficulty(loss, params, wdot)
    G_ref = local_task_difficulty(loss, params, wdot, convention="reference")
    assert G_ref == pytest.approx(G / 2)
    # k = (|grad F|/F) [ -wdot.gradhat - (T/2) |wdot|^2 G ]   (theory convention)
    # k = (|grad F|/F) [ -wdot.gradhat - T |wdot|^2 G_ref ]   (reference convention)
    p = predicted_learning_rate(loss, params, rates.T * wdot, rates.T)
    gn = grad.norm().item()
    proj = (wdot @ grad).item() / gn
    sq = (wdot @ wdot).item()
    assert p.k == pytest.approx(gn / p.loss * (-proj - rates.T / 2 * sq * G), rel=1e-10)
    assert p.k == pytest.approx(gn / p.loss * (-proj - rates.T * sq * G_ref), rel=1e-10)
    with pytest.raises(ValueError, match="convention"):
        local_task_difficulty(loss, params, wdot, convention="slides")


def test_learning_condition_is_equivalent_to_positive_expected_k():
    geo = LossGeometry(2.0, 3.0, 1.5, 400.0, 0.0, 200)
    verdicts = []
    for g3 in np.linspace(0.0, 0.4, 41):
        rates = PlasticityRates(0.5, 1.0, g3, T=1.0)
        for conv in ("theory", "reference"):
            c = learning_condition(geo, rates, convention=conv)
            assert c.learns == (c.expected_k > 0)
            verdicts.append(c.learns)
        # the two conventions halve difficulty and bound together
        t = learning_condition(geo, rates)
        r = learning_condition(geo, rates, convention="reference")
        assert r.difficulty == pytest.approx(t.difficulty / 2)
        assert r.bound == pytest.approx(t.bound / 2)
    assert any(verdicts) and not all(verdicts)  # the grid crosses the bound


def test_reference_bound_is_the_slides_bound():
    r = PlasticityRates(0.2, 0.5, 0.1, T=2.0)
    N = 300
    slides = r.gamma1 / (r.T * (r.gamma1**2 + r.gamma2**2 + r.gamma3**2 * N / r.T))
    assert difficulty_bound(r, N, convention="reference") == pytest.approx(slides)
    assert difficulty_bound(r, N) == pytest.approx(2 * slides)
    geo = LossGeometry(1.0, 1.0, 2.0, 10.0, 0.0, N)
    assert mean_task_difficulty(geo, r) == pytest.approx(
        (r.gamma1**2 * 2.0 + 10.0 * (r.gamma2**2 / N + r.gamma3**2 / r.T)) / r.mean_squared_speed(N)
    )


# --- optimal size -------------------------------------------------------------------------------


@pytest.mark.parametrize("beta", [0.25, 0.5, 0.75])
@pytest.mark.parametrize("gammas", [(0.07, 1.0, 0.03), (0.05, 1.0, 0.05), (0.1, 0.01, 0.001)])
def test_closed_form_optimal_size_maximises_the_size_curve(beta, gammas):
    rates = PlasticityRates(*gammas, T=1.0)
    geo = LossGeometry(1.0, 2.0, 1.0, 50.0, 0.0, 50)
    closed = optimal_size(rates, beta=beta)
    num = optimal_size_numeric(lambda n: size_learning_rate(geo, rates, n, beta=beta), 1.0, 1e7)
    assert num.n_star == pytest.approx(closed, rel=1e-3)
    assert not num.at_boundary
    # larger networks learn faster up to N*, slower beyond
    ks = size_learning_rate(
        geo, rates, np.array([closed / 4, closed / 2, closed, 2 * closed]), beta=beta
    )
    assert ks[0] < ks[1] < ks[2] > ks[3]


def test_optimal_size_is_never_negative_and_shrinks_with_noise():
    assert optimal_size(PlasticityRates(0.5, 0.0, 0.1)) == 0.0  # slides: -T g1^2/g3^2 < 0
    assert optimal_size(PlasticityRates(0.5, 1.0, 0.0)) == math.inf
    sizes = [optimal_size(PlasticityRates(0.1, 1.0, g3)) for g3 in (0.01, 0.02, 0.04)]
    assert sizes[0] > sizes[1] > sizes[2] > 0
    assert sizes[0] / sizes[1] == pytest.approx(4.0)  # N* ∝ 1/γ3²


def test_bad_inputs_raise_helpful_errors(mlp_problem):
    loss, params = mlp_problem
    with pytest.raises(TypeError, match="PlasticityRates"):
        expected_learning_rate(LossGeometry(1, 1, 1, 1, 0, 1), (1, 1, 1))
    with pytest.raises(TypeError, match="LossGeometry"):
        expected_learning_rate({"loss": 1}, PlasticityRates(1, 1, 1))
    with pytest.raises(ValueError, match="entries"):
        predicted_learning_rate(loss, params, torch.zeros(3), 1.0)
    with pytest.raises(TypeError, match="params"):
        hessian_trace(loss, "weights")
    with pytest.raises(ValueError, match="loss must be > 0"):
        LossGeometry(0.0, 1.0, 1.0, 1.0, 0.0, 10)
    with pytest.raises(ValueError, match="n_probes"):
        hutchinson_trace(loss, params, n_probes=1, generator=gen())
    with pytest.raises(ValueError, match="zero vector"):
        local_task_difficulty(loss, params, torch.zeros(sum(p.numel() for p in params), dtype=D))
    with pytest.raises(ValueError, match="n_min"):
        optimal_size_numeric(lambda n: n, 10, 1)


# ----------------------------------------------------------------------------------------------
# the paper's nonlinear N* (the scripts' cubic)
# ----------------------------------------------------------------------------------------------


def _scripts_cubic_root(g1, g2, g3, T, n0):
    # independent path: the companion-matrix roots (numpy.roots) of the scripts' cubic
    # N^3 + 0 N^2 - T^2 (g1^2+g2^2) g2^2/g3^4 N - T^2 g1^2 (g1^2+g2^2) N0/g3^4
    S = g1**2 + g2**2
    roots = np.roots([1.0, 0.0, -(T**2) * S * g2**2 / g3**4, -(T**2) * g1**2 * S * n0 / g3**4])
    real = roots[np.abs(roots.imag) < 1e-9 * np.abs(roots).max()].real
    return float(real.max())


@pytest.mark.parametrize(
    ("g3", "expected"),
    # the scripts' values at their three sigmoid settings γ = (0.04, 1.5, γ3), T = 1, N0 = 115
    # ([10, 5, 10] with biases): about 2501, 1407, 900 (issue 12)
    [(0.03, 2501), (0.04, 1407), (0.05, 900)],
)
def test_nonlinear_optimal_size_reproduces_the_scripts_values(g3, expected):
    from syngeo.bounds import nonlinear_optimal_size

    n = nonlinear_optimal_size(PlasticityRates(0.04, 1.5, g3, T=1.0), 115)
    assert round(n) == expected
    # the same root as numpy.roots of the cubic (relative 1e-9: companion-matrix roots are
    # backward stable, condition number of a simple root ~ 1)
    assert n == pytest.approx(_scripts_cubic_root(0.04, 1.5, g3, 1.0, 115), rel=1e-9)


@pytest.mark.parametrize(
    ("g1", "g2", "g3", "T", "n0"),
    [(0.5, 0.3, 0.01, 2.0, 50), (0.2, 0.0, 0.1, 1.0, 30), (1.0, 1.0, 0.3, 0.5, 1000)],
)
def test_nonlinear_optimal_size_is_the_root_and_its_bounds(g1, g2, g3, T, n0):
    from syngeo.bounds import nonlinear_optimal_size

    n = nonlinear_optimal_size(PlasticityRates(g1, g2, g3, T=T), n0)
    S = g1**2 + g2**2
    a = T**2 * S * g2**2 / g3**4
    b = T**2 * g1**2 * S * n0 / g3**4
    # residual relative to the size of the terms (float64: ~1e-15; Brent to 1e-14)
    assert abs(n**3 - a * n - b) <= 1e-10 * max(n**3, a * n, b)
    # N(N² − a) = b >= 0 gives N >= √a; then N² = a + b/N <= a + b/√a
    assert math.sqrt(a) * (1 - 1e-12) <= n <= math.sqrt(a + b / max(math.sqrt(a), n)) * (1 + 1e-12)
    assert n == pytest.approx(_scripts_cubic_root(g1, g2, g3, T, n0), rel=1e-9)


def test_nonlinear_optimal_size_limits_and_scaling():
    from syngeo.bounds import nonlinear_optimal_size

    # γ1 = 0: the cubic factorises to N (N² − (Tγ2²/γ3²)²): the linear N* = Tγ2²/γ3²
    for T in (0.5, 1.0, 3.0):
        r = PlasticityRates(0.0, 0.8, 0.04, T=T)
        assert nonlinear_optimal_size(r, 100) == pytest.approx(optimal_size(r), rel=1e-12)
    # more weights before growth push the optimum up (the constant term grows)
    r = PlasticityRates(0.3, 0.5, 0.05, T=1.0)
    assert nonlinear_optimal_size(r, 10) < nonlinear_optimal_size(r, 1000)
    # no synaptic noise: no finite optimum; no plasticity at all: 0
    assert nonlinear_optimal_size(PlasticityRates(0.1, 1.0, 0.0), 10) == math.inf
    assert nonlinear_optimal_size(PlasticityRates(0.0, 0.0, 0.1), 10) == 0.0
    with pytest.raises(InputError, match="n_original"):
        nonlinear_optimal_size(r, 0)
    with pytest.raises(InputTypeError):
        nonlinear_optimal_size((0.1, 1.0, 0.1), 10)
