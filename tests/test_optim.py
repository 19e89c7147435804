"""MirrorDescent: equivalences (p = 2 ≡ SGD, foreach ≡ loop, NE ≡ exponentiated gradient), the
implicit bias (convergence to the Bregman projection, computed independently with scipy), and
torch's optimizer conventions (state dicts, schedulers, GradScaler, tensor lr, errors, noise)."""

from __future__ import annotations

import copy
import io
import itertools
import math

import numpy as np
import pytest
import scipy.linalg
import scipy.optimize
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import syngeo
from syngeo.errors import InputError, InputTypeError
from syngeo.optim import (
    MirrorDescent,
    _foreach_mirror_descent,
    _single_tensor_mirror_descent,
    exponentiated_gradient,
    mirror_descent,
    pnorm_sgd,
)
from syngeo.potentials import LocalPotential, NegativeEntropy, PNorm, Potential, potential
from user_potentials import Quartic

F64 = torch.float64


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def _model(seed: int = 0, dtype: torch.dtype = F64) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Linear(5, 4), torch.nn.Tanh(), torch.nn.Linear(4, 3), torch.nn.Tanh(),
        torch.nn.Linear(3, 1),
    ).to(dtype)  # fmt: skip


def _data(seed: int = 1, dtype: torch.dtype = F64) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(16, 5, generator=g, dtype=dtype), torch.randn(
        16, 1, generator=g, dtype=dtype
    )


def _train(model: torch.nn.Module, opt: torch.optim.Optimizer, steps: int, seed: int = 1):
    """Run ``steps`` full-batch steps on a fixed regression problem; return the losses."""
    x, y = _data(seed, next(model.parameters()).dtype)
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def _params(model: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in model.parameters()]


def _assert_params_equal(a, b, *, exact: bool = True, rtol: float = 1e-12, atol: float = 1e-14):
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        if exact:
            assert torch.equal(x, y), (x - y).abs().max()
        else:
            torch.testing.assert_close(x, y, rtol=rtol, atol=atol)


def _random_param_list(seed: int, dtype=F64, shapes=((3,), (2, 4), (5, 1, 2), ())):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(s, generator=g, dtype=dtype) for s in shapes]


# --------------------------------------------------------------------------------------------
# p = 2 is torch.optim.SGD
# --------------------------------------------------------------------------------------------

_SGD_OPTIONS = [
    dict(momentum=m, dampening=d, nesterov=n, weight_decay=wd, maximize=mx, foreach=fe)
    for m, d, n, wd, mx, fe in itertools.product(
        (0.0, 0.9), (0.0, 0.3), (False, True), (0.0, 1e-2), (False, True), (False, True)
    )
    if not (n and (m == 0 or d != 0))
]


@pytest.mark.parametrize(
    "options", _SGD_OPTIONS, ids=lambda o: "-".join(f"{v}" for v in o.values())
)
def test_pnorm2_is_bitwise_sgd_over_50_steps(options):
    model_md, model_sgd = _model(), _model()
    lr = 0.05 if not options["maximize"] else 1e-3  # maximising an MSE diverges; keep it short
    md = MirrorDescent(model_md.parameters(), lr=lr, potential="2-norm", **options)
    sgd = torch.optim.SGD(model_sgd.parameters(), lr=lr, **options)
    losses_md = _train(model_md, md, 50)
    losses_sgd = _train(model_sgd, sgd, 50)
    assert losses_md == losses_sgd
    _assert_params_equal(_params(model_md), _params(model_sgd))
    if options["momentum"]:
        for p_md, p_sgd in zip(model_md.parameters(), model_sgd.parameters(), strict=True):
            assert torch.equal(
                md.state[p_md]["momentum_buffer"], sgd.state[p_sgd]["momentum_buffer"]
            )


def test_pnorm2_foreach_matches_sgd_loop_and_learns():
    """Across implementations too: our foreach path equals SGD's for-loop path, and loss drops."""
    model_md, model_sgd = _model(), _model()
    md = MirrorDescent(model_md.parameters(), lr=0.1, momentum=0.9, nesterov=True, foreach=True)
    sgd = torch.optim.SGD(
        model_sgd.parameters(), lr=0.1, momentum=0.9, nesterov=True, foreach=False
    )
    losses = _train(model_md, md, 50)
    _train(model_sgd, sgd, 50)
    _assert_params_equal(_params(model_md), _params(model_sgd))
    assert losses[-1] < 0.5 * losses[0]


def test_pnorm2_sparse_gradients_like_sgd():
    torch.manual_seed(0)
    emb_md = torch.nn.Embedding(10, 3, sparse=True).double()
    emb_sgd = copy.deepcopy(emb_md)
    md = MirrorDescent(emb_md.parameters(), lr=0.1, momentum=0.5)
    sgd = torch.optim.SGD(emb_sgd.parameters(), lr=0.1, momentum=0.5)
    idx = torch.tensor([1, 3, 3, 7])
    for emb, opt in ((emb_md, md), (emb_sgd, sgd)):
        for _ in range(3):
            opt.zero_grad()
            emb(idx).pow(2).sum().backward()
            opt.step()
    assert torch.equal(emb_md.weight, emb_sgd.weight)


def test_sparse_gradients_rejected_outside_euclidean_geometry():
    emb = torch.nn.Embedding(10, 3, sparse=True).double()
    opt = MirrorDescent(emb.parameters(), lr=0.1, potential="3-norm")
    emb(torch.tensor([1, 2])).sum().backward()
    with pytest.raises(RuntimeError, match="sparse gradients"):
        opt.step()


# --------------------------------------------------------------------------------------------
# foreach path ≡ single-tensor reference (float64)
# --------------------------------------------------------------------------------------------

_MD_OPTIONS = [
    dict(momentum=0.0),
    dict(momentum=0.9),
    dict(momentum=0.9, nesterov=True),
    dict(momentum=0.8, dampening=0.2, weight_decay=1e-2),
    dict(momentum=0.9, nesterov=True, weight_decay=1e-2, maximize=True),
]


@pytest.mark.parametrize("spec", ["1.5-norm", "3-norm", "p=2.5", "ne"])
@pytest.mark.parametrize(
    "options", _MD_OPTIONS, ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items())
)
def test_foreach_matches_single_tensor_in_float64(spec, options):
    model_a, model_b = _model(3), _model(3)
    lr = 2e-2 if not options.get("maximize") else 1e-3
    opt_a = MirrorDescent(model_a.parameters(), lr=lr, potential=spec, foreach=True, **options)
    opt_b = MirrorDescent(model_b.parameters(), lr=lr, potential=spec, foreach=False, **options)
    losses_a = _train(model_a, opt_a, 30)
    losses_b = _train(model_b, opt_b, 30)
    np.testing.assert_allclose(losses_a, losses_b, rtol=1e-12)
    _assert_params_equal(_params(model_a), _params(model_b), exact=False)
    # the run really moved the weights (a test that cannot fail is a defect)
    assert (
        max(
            abs(a - b).max().item()
            for a, b in zip(_params(model_a), _params(_model(3)), strict=True)
        )
        > 1e-4
    )


def _float32_pnorm3_gap_bound(w0, steps, lr, momentum):
    r"""First-order bound on |fast − reference| after ``steps`` float32 steps of the 3-norm rule
    with the gradient g_t = cos((t+1) w) used below (an error analysis, not a tuned number).

    Each implementation evaluates, per element and step, g = cos((t+1)w) and b ← μb + g
    (local error of b: eps·((t+1)|w| + |g| + μ|b| + |b'|), from the product, cos, μb and the
    sum, each at most one ulp), u = sign(w)|w|² − η b' (eps·(2w² + η|b'| + |u|): square, product,
    difference) and w' = sign(u)·√|u| (eps·|w'|). An error δu moves w' by δu / (2√|u|): the
    condition number of the inverse mirror map, large where u passes near 0. Errors carried in
    (w, b) propagate through the step's Jacobian J_t (computed by autograd in float64 along the
    exact trajectory): e_{t+1} = |J_t| e_t + local_t. Both implementations lie within e_T of
    exact arithmetic, so they lie within 2 e_T of each other. eps = 2⁻²³ (float32), one ulp per
    operation (cos and pow are within one ulp in torch's CPU and CUDA kernels; +, ×, √ round
    to nearest, half an ulp).
    """
    eps = torch.finfo(torch.float32).eps
    w, b = w0.double().flatten(), torch.zeros(w0.numel(), dtype=F64)
    e_w, e_b = torch.zeros_like(w), torch.zeros_like(w)
    for t in range(steps):

        def step(w, b, t=t):
            g = torch.cos(w * (t + 1))
            b_new = g if t == 0 else momentum * b + g
            u = torch.sign(w) * w.abs() ** 2 - lr * b_new
            return torch.sign(u) * u.abs().sqrt(), b_new

        (j_ww, j_wb), (j_bw, j_bb) = torch.autograd.functional.jacobian(step, (w, b))
        j_ww, j_wb, j_bw, j_bb = (j.diagonal().abs() for j in (j_ww, j_wb, j_bw, j_bb))
        w_new, b_new = step(w, b)
        g = torch.cos(w * (t + 1))
        u = torch.sign(w) * w**2 - lr * b_new
        cond = 1 / (2 * u.abs().sqrt())  # |d w'/d u|
        local_b = eps * ((t + 1) * w.abs() + g.abs() + momentum * b.abs() + b_new.abs())
        local_u = eps * (2 * w**2 + lr * b_new.abs() + u.abs())
        local_w = cond * (local_u + lr * local_b) + eps * w_new.abs()
        e_w, e_b = j_ww * e_w + j_wb * e_b + local_w, j_bw * e_w + j_bb * e_b + local_b
        w, b = w_new, b_new
    return 2 * e_w.view_as(w0), w.view_as(w0)


def test_foreach_matches_single_tensor_with_mixed_dtypes_and_groups():
    """Grouping by dtype: a float32 and a float64 parameter, two groups with two potentials.

    The float32 parameter is compared with a bound derived from an error analysis
    (:func:`_float32_pnorm3_gap_bound`), not with a tolerance tuned on one CPU; the float64
    ones stay at rtol 1e-12 (the same analysis with eps = 2⁻⁵² gives < 1e-14 here).
    """

    def make():
        g = torch.Generator().manual_seed(5)
        a = torch.nn.Parameter(torch.randn(4, 3, generator=g, dtype=torch.float32))
        b = torch.nn.Parameter(torch.randn(7, generator=g, dtype=F64))
        c = torch.nn.Parameter(torch.randn(2, 2, generator=g, dtype=F64))
        return [a, b, c]

    steps, lr, momentum = 10, 0.02, 0.9
    results = []
    for foreach in (True, False):
        a, b, c = make()
        opt = MirrorDescent(
            [{"params": [a, b]}, {"params": [c], "potential": "ne", "lr": 0.05}],
            lr=lr, potential="3-norm", momentum=momentum, foreach=foreach,
        )  # fmt: skip
        for t in range(steps):
            for p in (a, b, c):
                p.grad = torch.cos(p.detach() * (t + 1))
            opt.step()
        results.append([a.detach().clone(), b.detach().clone(), c.detach().clone()])
    bound, exact = _float32_pnorm3_gap_bound(make()[0].detach(), steps, lr, momentum)
    gap = (results[0][0].double() - results[1][0].double()).abs()
    assert (gap <= bound).all(), (gap - bound).max()
    # the bound is tight enough to catch a wrong step (it is < 1% of how far each weight moved),
    # and both runs lie within it of the exact (float64) trajectory
    moved = (exact - make()[0].detach().double()).abs()
    assert (bound <= 0.01 * moved).all(), (bound / moved).max()  # catches a step 1% off
    for result in results:
        assert ((result[0].double() - exact).abs() <= bound).all()
    _assert_params_equal(results[0][1:], results[1][1:], exact=False)


@settings(max_examples=40, deadline=None)
@given(
    p=st.floats(1.05, 4.0),
    seed=st.integers(0, 2**16),
    lr=st.floats(1e-4, 0.3),
    momentum=st.sampled_from([0.0, 0.5, 0.9]),
)
def test_pnorm_foreach_matches_reference_property(p, seed, lr, momentum):
    lists = []
    for foreach in (True, False):
        params = _random_param_list(seed)
        grads = _random_param_list(seed + 1)
        bufs: list = [None] * len(params) if momentum else []
        for _ in range(3):
            mirror_descent(
                params, grads, bufs, potential=PNorm(p), lr=lr, momentum=momentum, foreach=foreach
            )
        lists.append(params)
    for x, y in zip(*lists, strict=True):
        torch.testing.assert_close(x, y, rtol=1e-10, atol=1e-12)


def test_custom_potential_takes_the_generic_path_and_agrees():
    """A potential that is not PNorm/NegativeEntropy goes through its own mirror maps."""

    class Wrapped:
        """Implements the Potential protocol without subclassing LocalPotential."""

        name = "wrapped-3-norm"
        is_euclidean = False
        preserves_sign = False
        parameter = None
        parameter_bounds = (math.nan, math.nan)
        parameter_search_window = (math.nan, math.nan)

        def __init__(self):
            self._inner = PNorm(3)
            self.steps = 0

        def value(self, w, *, elementwise=False):
            return self._inner.value(w, elementwise=elementwise)

        def grad(self, w):
            return self._inner.grad(w)

        def grad_inverse(self, u, sign=None):
            return self._inner.grad_inverse(u)

        def hessian_diag(self, w):
            return self._inner.hessian_diag(w)

        def log_hessian_diag(self, w):
            return self._inner.log_hessian_diag(w)

        def bregman(self, w, w_ref, *, elementwise=False):
            return self._inner.bregman(w, w_ref, elementwise=elementwise)

        def conjugate(self, u, sign=None, *, elementwise=False):
            return self._inner.conjugate(u, elementwise=elementwise)

        def with_parameter(self, parameter):
            raise ValueError("no parameter")

        def grad_with_log_abs(self, w, log_abs, out=None):
            return self._inner.grad_with_log_abs(w, log_abs, out=out)

        def hessian_power_law(self):
            return None

        def mirror_step_(self, params, directions, lr, *, dual_noise=None, duals=None,
                         foreach=None):  # fmt: skip
            # the protocol's generic composition grad -> subtract -> grad_inverse, written out
            self.steps += 1
            for i, w in enumerate(params):
                u = self.grad(w) if duals is None else duals[i]
                u = u - lr * directions[i] + (0 if dual_noise is None else dual_noise[i])
                if duals is not None:
                    duals[i].copy_(u)
                w.copy_(self.grad_inverse(u))

    assert isinstance(Wrapped(), Potential) and not isinstance(Wrapped(), LocalPotential)

    finals = []
    wrapped = Wrapped()
    for spec, foreach in ((wrapped, True), (Wrapped(), False), (PNorm(3), True)):
        model = _model(4)
        _train(
            model,
            MirrorDescent(
                model.parameters(), lr=0.05, potential=spec, momentum=0.9, foreach=foreach
            ),
            10,
        )
        finals.append(_params(model))
    assert wrapped.steps == 10  # the fast path called the potential's own step
    _assert_params_equal(finals[0], finals[1], exact=False)
    _assert_params_equal(finals[0], finals[2], exact=False)


def test_foreach_does_not_write_into_grads():
    model = _model()
    opt = MirrorDescent(model.parameters(), lr=0.1, potential="3-norm", momentum=0.9, nesterov=True)
    x, y = _data()
    for _ in range(2):
        opt.zero_grad()
        torch.nn.functional.mse_loss(model(x), y).backward()
        grads = [p.grad.clone() for p in model.parameters()]
        opt.step()
        _assert_params_equal([p.grad for p in model.parameters()], grads)


# --------------------------------------------------------------------------------------------
# negative entropy ≡ exponentiated gradient; signs never flip
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("foreach", [True, False])
def test_ne_equals_exponentiated_gradient_formula(foreach):
    w0 = torch.tensor([0.3, -1.2, 2.0, -0.05, 0.0, 1e-6], dtype=F64)
    w = torch.nn.Parameter(w0.clone())
    eta = 0.1
    opt = MirrorDescent([w], lr=eta, potential="ne", foreach=foreach)
    expected = w0.clone()
    g = torch.Generator().manual_seed(0)
    for _ in range(25):
        grad = torch.randn(w.shape, generator=g, dtype=F64)
        w.grad = grad.clone()
        opt.step()
        expected = expected * torch.exp(-eta * torch.sign(expected) * grad)  # Eq. 7
        torch.testing.assert_close(w.detach(), expected, rtol=1e-13, atol=0)
    assert w[4].item() == 0.0  # a zero weight stays 0
    assert torch.equal(torch.sign(w.detach()), torch.sign(w0))


@pytest.mark.parametrize("foreach", [True, False])
def test_ne_weight_decay_is_multiplicative_shrinkage(foreach):
    w0 = torch.tensor([0.5, -2.0, 3.0], dtype=F64)
    w = torch.nn.Parameter(w0.clone())
    eta, wd = 0.1, 0.3
    opt = MirrorDescent([w], lr=eta, potential="ne", weight_decay=wd, foreach=foreach)
    for _ in range(4):
        w.grad = torch.zeros_like(w)
        opt.step()
    torch.testing.assert_close(w.detach(), w0 * math.exp(-4 * eta * wd), rtol=1e-14, atol=0)


@pytest.mark.parametrize("foreach", [True, False])
def test_ne_never_flips_sign_under_huge_steps(foreach):
    torch.manual_seed(0)
    w0 = torch.randn(1000, dtype=F64)
    w = torch.nn.Parameter(w0.clone())
    opt = exponentiated_gradient([w], lr=0.5, momentum=0.9, foreach=foreach)
    for _ in range(20):
        w.grad = 3 * torch.randn_like(w)
        opt.step()
        nonzero = w.detach() != 0  # underflow to 0 is allowed, a flip is not
        assert torch.equal(torch.sign(w.detach())[nonzero], torch.sign(w0)[nonzero])


@settings(max_examples=50, deadline=None)
@given(
    seed=st.integers(0, 2**16),
    lr=st.floats(1e-4, 1.0),
    scale=st.floats(1e-6, 1e2),
)
def test_ne_closed_form_matches_mirror_form_property(seed, lr, scale):
    """The foreach closed form w·exp(−η s d) equals the reference (∇φ)⁻¹(∇φ(w) − η d)."""
    out = []
    for foreach in (True, False):
        params = [t * scale for t in _random_param_list(seed)]
        grads = _random_param_list(seed + 7)
        mirror_descent(params, grads, [], potential="ne", lr=lr, foreach=foreach)
        out.append(params)
    for x, y in zip(*out, strict=True):
        torch.testing.assert_close(x, y, rtol=1e-12, atol=0)


# --------------------------------------------------------------------------------------------
# implicit bias: convergence to the Bregman projection (docs/theory.md §2, Eq. 8 and 12–13)
# --------------------------------------------------------------------------------------------


def _projection_by_multipliers(X, y, w0, mirror, inverse):
    """Solve X·inverse(mirror(w0) − Xᵀλ) = y for λ with scipy (independent of syngeo)."""
    u0 = mirror(w0)

    def residual(lam):
        return X @ inverse(u0 - X.T @ lam) - y

    sol = scipy.optimize.root(residual, np.zeros(X.shape[0]), method="hybr", tol=1e-13)
    assert np.abs(residual(sol.x)).max() < 1e-11, sol.message
    return inverse(u0 - X.T @ sol.x)


def _least_squares_problem(seed: int, n: int = 15, dim: int = 60, positive_teacher_of=None):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, dim)) / np.sqrt(dim)
    w0 = rng.standard_normal(dim)
    if positive_teacher_of is None:
        teacher = rng.standard_normal(dim)
    else:  # same signs as w0, so that a sign-preserving solution exists
        teacher = w0 * np.exp(0.5 * rng.standard_normal(dim))
    return X, X @ teacher, w0


def _run_md_to_interpolation(X, y, w0, spec, lr, steps, momentum=0.9):
    Xt, yt = torch.tensor(X), torch.tensor(y)
    w = torch.nn.Parameter(torch.tensor(w0))
    opt = MirrorDescent([w], lr=lr, potential=spec, momentum=momentum)
    for _ in range(steps):
        opt.zero_grad()
        loss = 0.5 * (Xt @ w - yt).pow(2).sum()
        loss.backward()
        opt.step()
        if loss.item() < 1e-26:
            break
    return w.detach().numpy()


def _bregman_np(w, w_ref, value, mirror):
    return np.sum(value(w) - value(w_ref) - mirror(w_ref) * (w - w_ref))


def test_pnorm3_run_converges_to_the_bregman_projection():
    X, y, w0 = _least_squares_problem(0)
    mirror = lambda w: np.sign(w) * w**2  # noqa: E731  (p = 3, written out independently)
    inverse = lambda u: np.sign(u) * np.sqrt(np.abs(u))  # noqa: E731
    value = lambda w: np.abs(w) ** 3 / 3  # noqa: E731
    w_star = _projection_by_multipliers(X, y, w0, mirror, inverse)
    np.testing.assert_allclose(X @ w_star, y, atol=1e-10)

    # independent check of optimality: feasible perturbations along null(X) do not decrease D_φ
    null = scipy.linalg.null_space(X)
    rng = np.random.default_rng(1)
    d_star = _bregman_np(w_star, w0, value, mirror)
    for _ in range(20):
        v = null @ rng.standard_normal(null.shape[1])
        assert _bregman_np(w_star + 1e-3 * v, w0, value, mirror) > d_star

    w_md = _run_md_to_interpolation(X, y, w0, "3-norm", lr=0.05, steps=20000)
    np.testing.assert_allclose(w_md, w_star, atol=1e-6)
    # and the Euclidean projection (min-norm change) is a different point: the test can fail
    w_l2 = w0 + np.linalg.lstsq(X, y - X @ w0, rcond=None)[0]
    assert np.abs(w_l2 - w_star).max() > 1e-2


def test_ne_run_converges_to_the_bregman_projection():
    X, y, w0 = _least_squares_problem(2, positive_teacher_of="w0")
    s = np.sign(w0)
    mirror = lambda w: np.sign(w) * (np.log(np.abs(w)) + 1)  # noqa: E731
    inverse = lambda u: s * np.exp(s * u - 1)  # noqa: E731
    w_star = _projection_by_multipliers(X, y, w0, mirror, inverse)
    np.testing.assert_allclose(X @ w_star, y, atol=1e-10)
    assert np.array_equal(np.sign(w_star), s)
    w_md = _run_md_to_interpolation(X, y, w0, "ne", lr=0.05, steps=20000)
    np.testing.assert_allclose(w_md, w_star, atol=1e-6)


def _quartic_mirror_np(w):
    return w + w**3


def _quartic_inverse_np(u):
    """The real root of w³ + w − u = 0 by Newton's method, independent of ``Quartic``'s Cardano
    formula. f(w) = w³ + w − u is increasing and convex for w > 0 (concave for w < 0), so Newton
    started beyond the root (|w| = min(|u|, |u|^(1/3)) ≥ |root|) decreases |w| monotonically."""
    u = np.asarray(u, dtype=np.float64)
    w = np.sign(u) * np.minimum(np.abs(u), np.cbrt(np.abs(u)))
    for _ in range(100):
        w = w - (w**3 + w - u) / (3 * w**2 + 1)
    return w


@pytest.mark.parametrize("foreach", [True, False])
def test_user_potential_runs_through_mirror_descent_like_a_hand_written_loop(foreach):
    """``Quartic`` (defined only in the tests) through MirrorDescent equals the update rule
    written out in NumPy float64: b ← μb + g + λw, u = w + w³ − ηb, w ← root of w³ + w = u.
    Tolerance: φ'' = 1 + 3w² ≥ 1, so the inverse mirror map has condition |dw/du| ≤ 1 and
    rounding does not grow through it; 20 steps of a few eps each stay below 1e-13."""
    rng = np.random.default_rng(30)
    w0 = rng.standard_normal(12)
    targets = rng.standard_normal(12)
    eta, mu, lam = 0.05, 0.9, 1e-2
    w = torch.nn.Parameter(torch.tensor(w0))
    opt = MirrorDescent([w], lr=eta, potential=Quartic(), momentum=mu, weight_decay=lam,
                        foreach=foreach)  # fmt: skip
    ref, buf = w0.copy(), None
    for _ in range(20):
        opt.zero_grad()
        (0.5 * ((w - torch.tensor(targets)) ** 2).sum()).backward()
        opt.step()
        g = ref - targets + lam * ref
        buf = g if buf is None else mu * buf + g
        ref = _quartic_inverse_np(_quartic_mirror_np(ref) - eta * buf)
    np.testing.assert_allclose(w.detach().numpy(), ref, rtol=1e-13, atol=1e-15)
    assert np.abs(ref - w0).max() > 0.1  # the run moved


def test_user_potential_run_converges_to_the_bregman_projection():
    """Mirror descent under ``Quartic`` converges to argmin_{Xw=y} D_φ(w, w0), computed
    independently (Lagrange multipliers with scipy and the Newton inverse above) and by
    ``syngeo.bregman_projection``; the Euclidean projection is a different point."""
    X, y, w0 = _least_squares_problem(4, n=10, dim=30)
    w_star = _projection_by_multipliers(X, y, w0, _quartic_mirror_np, _quartic_inverse_np)
    np.testing.assert_allclose(X @ w_star, y, atol=1e-10)
    w_lib = np.asarray(syngeo.bregman_projection(X, y, w0, Quartic()).weights, dtype=np.float64)
    np.testing.assert_allclose(w_lib, w_star, atol=1e-9)
    w_md = _run_md_to_interpolation(X, y, w0, Quartic(), lr=0.05, steps=20000)
    np.testing.assert_allclose(w_md, w_star, atol=1e-6)
    w_l2 = w0 + np.linalg.lstsq(X, y - X @ w0, rcond=None)[0]
    assert np.abs(w_l2 - w_star).max() > 1e-2


def test_pnorm2_run_converges_to_the_min_norm_change():
    X, y, w0 = _least_squares_problem(3)
    w_star = w0 + np.linalg.lstsq(X, y - X @ w0, rcond=None)[0]  # pseudo-inverse solution
    w_md = _run_md_to_interpolation(X, y, w0, "2-norm", lr=0.3, steps=20000)
    np.testing.assert_allclose(w_md, w_star, atol=1e-8)


# --------------------------------------------------------------------------------------------
# torch conventions: state dict, schedulers, GradScaler, tensor lr
# --------------------------------------------------------------------------------------------


def _two_group_optimizer(model, **kw):
    first, *rest = list(model.parameters())
    return MirrorDescent(
        [{"params": [first], "potential": "ne", "lr": 0.01}, {"params": rest}],
        lr=0.05, potential="p=2.5", momentum=0.9, nesterov=True, weight_decay=1e-3, **kw,
    )  # fmt: skip


def test_state_dict_round_trip_continues_the_same_trajectory():
    model_a = _model(6)
    opt_a = _two_group_optimizer(model_a)
    _train(model_a, opt_a, 5)

    buffer = io.BytesIO()
    torch.save({"model": model_a.state_dict(), "opt": opt_a.state_dict()}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)  # potentials are stored by name
    assert [g["potential"] for g in saved["opt"]["param_groups"]] == ["NE", "2.5-norm"]

    model_b = _model(99)
    model_b.load_state_dict(saved["model"])
    opt_b = MirrorDescent(model_b.parameters(), lr=1.0)  # different settings, overwritten by load
    opt_b = _two_group_optimizer(model_b)
    opt_b.load_state_dict(saved["opt"])
    assert opt_b.param_groups[0]["potential"] == NegativeEntropy()
    assert opt_b.param_groups[1]["potential"] == PNorm(2.5)

    _train(model_a, opt_a, 5)
    _train(model_b, opt_b, 5)
    _assert_params_equal(_params(model_a), _params(model_b))


def test_state_dict_keeps_unnamed_potentials_and_the_loading_optimizers_noise():
    model = _model()
    noise_calls = []

    def noise(params):
        noise_calls.append(len(params))
        return [torch.zeros_like(p) for p in params]

    phi = PNorm(1.2345678901234)  # its name rounds p, so it is stored as the object
    opt = MirrorDescent(model.parameters(), lr=0.01, potential=phi, plasticity_noise=noise)
    state = opt.state_dict()
    assert state["param_groups"][0]["potential"] is phi
    assert "plasticity_noise" not in state["param_groups"][0]
    assert opt.param_groups[0]["plasticity_noise"] is noise  # the live group is untouched

    other = MirrorDescent(model.parameters(), lr=0.5, plasticity_noise=noise)
    other.load_state_dict(state)
    assert other.param_groups[0]["potential"] == phi
    assert other.param_groups[0]["lr"] == 0.01
    _train(model, other, 1)
    assert noise_calls == [len(list(model.parameters()))]


def test_cosine_annealing_scheduler_drives_the_learning_rate():
    w = torch.nn.Parameter(torch.tensor([0.5, -2.0], dtype=F64))
    eta0, t_max = 0.2, 10
    opt = MirrorDescent([w], lr=eta0, potential="ne")
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=t_max)
    for k in range(t_max):
        eta_k = eta0 * (1 + math.cos(math.pi * k / t_max)) / 2
        assert opt.param_groups[0]["lr"] == pytest.approx(eta_k, rel=1e-12)
        before = w.detach().clone()
        w.grad = torch.ones_like(w)
        opt.step()
        sched.step()
        torch.testing.assert_close(
            w.detach(), before * torch.exp(-eta_k * torch.sign(before)), rtol=1e-14, atol=0
        )


@pytest.mark.parametrize("spec", ["2-norm", "3-norm", "ne"])
def test_grad_scaler_unscales_and_skips_non_finite_steps(spec):
    model_a, model_b = _model(7), _model(7)
    opt_a = MirrorDescent(model_a.parameters(), lr=0.05, potential=spec, momentum=0.9)
    opt_b = MirrorDescent(model_b.parameters(), lr=0.05, potential=spec, momentum=0.9)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**12)
    x, y = _data()
    for _ in range(5):
        opt_a.zero_grad()
        scaler.scale(torch.nn.functional.mse_loss(model_a(x), y)).backward()
        scaler.step(opt_a)
        scaler.update()
    _train(model_b, opt_b, 5)
    # scaling by a power of two and back is exact
    _assert_params_equal(_params(model_a), _params(model_b))

    before = _params(model_a)
    opt_a.zero_grad()
    scaler.scale(torch.nn.functional.mse_loss(model_a(x), y) * float("inf")).backward()
    scaler.step(opt_a)
    scaler.update()
    _assert_params_equal(_params(model_a), before)
    assert scaler.get_scale() == 2.0**11


@pytest.mark.parametrize("foreach", [True, False])
@pytest.mark.parametrize("spec", ["2-norm", "3-norm", "ne"])
def test_tensor_lr_equals_float_lr(spec, foreach):
    model_a, model_b = _model(8), _model(8)
    opt_a = MirrorDescent(
        model_a.parameters(),
        lr=torch.tensor([0.03], dtype=F64),
        potential=spec,
        momentum=0.9,
        foreach=foreach,
    )
    opt_b = MirrorDescent(
        model_b.parameters(), lr=0.03, potential=spec, momentum=0.9, foreach=foreach
    )
    _train(model_a, opt_a, 5)
    _train(model_b, opt_b, 5)
    _assert_params_equal(_params(model_a), _params(model_b))


def test_closure_is_evaluated_with_grad_and_its_loss_returned():
    model = _model()
    opt = MirrorDescent(model.parameters(), lr=0.01, potential="3-norm")
    x, y = _data()

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()
        return loss

    loss = opt.step(closure)
    assert isinstance(loss, torch.Tensor) and loss.requires_grad


def test_parameters_without_grad_are_left_alone():
    a = torch.nn.Parameter(torch.tensor([1.0, 2.0]))
    b = torch.nn.Parameter(torch.tensor([3.0]))
    opt = MirrorDescent([a, b], lr=0.1, potential="ne", momentum=0.9)
    a.grad = torch.ones(2)
    opt.step()
    assert torch.equal(b.detach(), torch.tensor([3.0]))
    assert "momentum_buffer" in opt.state[a] and b not in opt.state


# --------------------------------------------------------------------------------------------
# validation
# --------------------------------------------------------------------------------------------


def _p():
    return [torch.nn.Parameter(torch.ones(2))]


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (dict(lr=-1.0), ValueError, "Invalid learning rate"),
        (dict(lr=float("nan")), ValueError, "Invalid learning rate"),
        (dict(lr="0.1"), TypeError, "Invalid learning rate"),
        (dict(lr=torch.tensor([0.1, 0.2])), ValueError, "1-element"),
        (dict(momentum=-0.1), ValueError, "Invalid momentum value"),
        (dict(weight_decay=-1e-3), ValueError, "Invalid weight_decay value"),
        (dict(dampening=float("inf")), ValueError, "dampening must be finite"),
        (dict(momentum="0.9"), TypeError, "momentum must be a real number"),
        (dict(nesterov=True), ValueError, "Nesterov momentum requires"),
        (
            dict(nesterov=True, momentum=0.9, dampening=0.1),
            ValueError,
            "Nesterov momentum requires",
        ),
        (dict(maximize=1), TypeError, "Invalid maximize value"),
        (dict(foreach="yes"), TypeError, "Invalid foreach value"),
        (dict(noise_space="weights"), ValueError, "Invalid noise_space"),
        (dict(plasticity_noise=0.1), TypeError, "plasticity_noise must be a callable"),
        (dict(potential="banana"), ValueError, "unknown potential"),
        (dict(potential=1.0), ValueError, "p > 1"),
        (dict(potential=True), TypeError, "potential"),
    ],
)
def test_invalid_hyperparameters_raise(kwargs, error, match):
    with pytest.raises(error, match=match) as info:
        MirrorDescent(_p(), **{"lr": 0.1, **kwargs})
    # syngeo's error classes (the CLI maps them to exit 2), still torch's ValueError/TypeError
    assert isinstance(info.value, InputTypeError if error is TypeError else InputError)


def test_invalid_param_group_is_rejected_and_not_added():
    opt = MirrorDescent(_p(), lr=0.1)
    with pytest.raises(ValueError, match="Invalid learning rate"):
        opt.add_param_group({"params": _p(), "lr": -1})
    with pytest.raises(ValueError, match="unknown potential"):
        opt.add_param_group({"params": _p(), "potential": "4-norms"})
    assert len(opt.param_groups) == 1


def test_non_real_parameters_are_rejected_outside_euclidean_geometry():
    with pytest.raises(TypeError, match="real floating-point"):
        MirrorDescent([torch.nn.Parameter(torch.ones(2, dtype=torch.complex64))], potential="ne")
    opt = MirrorDescent([torch.nn.Parameter(torch.ones(2))], potential="2-norm")
    with pytest.raises(TypeError, match="real floating-point"):
        opt.add_param_group(
            {
                "params": [torch.nn.Parameter(torch.ones(2, dtype=torch.complex64))],
                "potential": "3-norm",
            }
        )
    assert len(opt.param_groups) == 1


def test_recipes():
    eg = exponentiated_gradient(_p(), lr=0.1, momentum=0.9)
    assert isinstance(eg, MirrorDescent) and eg.param_groups[0]["potential"] == NegativeEntropy()
    pn = pnorm_sgd(_p(), lr=0.1, p=3)
    assert pn.param_groups[0]["potential"] == PNorm(3)
    with pytest.raises(TypeError, match="fixes the potential"):
        exponentiated_gradient(_p(), potential="3-norm")
    with pytest.raises(TypeError, match="fixes the potential"):
        pnorm_sgd(_p(), p=3, potential="ne")
    with pytest.raises(ValueError, match="p > 1"):
        pnorm_sgd(_p(), p=0.5)


# --------------------------------------------------------------------------------------------
# plasticity noise
# --------------------------------------------------------------------------------------------


def _constant_noise(value, seen=None):
    def noise(params):
        if seen is not None:
            seen.append([p.detach().clone() for p in params])
        return [torch.full_like(p, value) for p in params]

    return noise


@pytest.mark.parametrize("foreach", [True, False])
@pytest.mark.parametrize(
    ("spec", "space", "closed_form"),
    [
        (
            "3-norm",
            "dual",
            lambda w, xi: np.sign(w * np.abs(w) + xi) * np.sqrt(np.abs(w * np.abs(w) + xi)),
        ),
        ("3-norm", "primal", lambda w, xi: w + xi),
        ("2-norm", "dual", lambda w, xi: w + xi),
        ("ne", "dual", lambda w, xi: w * np.exp(np.sign(w) * xi)),
        ("ne", "primal", lambda w, xi: np.sign(w) * np.abs(w + xi)),  # reflected at 0
    ],
)
def test_noise_with_zero_gradient_gives_the_closed_form(spec, space, closed_form, foreach):
    w0 = np.array([0.5, -0.2, 2.0, -3.0, 0.0])
    xi = -0.7
    w = torch.nn.Parameter(torch.tensor(w0))
    seen = []
    opt = MirrorDescent([w], lr=0.3, potential=spec, foreach=foreach,
                        plasticity_noise=_constant_noise(xi, seen), noise_space=space)  # fmt: skip
    w.grad = torch.zeros_like(w)
    opt.step()
    np.testing.assert_allclose(w.detach().numpy(), closed_form(w0, xi), rtol=1e-13, atol=1e-15)
    assert np.array_equal(seen[0][0].numpy(), w0)  # the callable saw the weights before the update
    if spec == "ne":
        assert w[-1].item() == 0.0
        assert np.all(np.sign(w.detach().numpy()) == np.sign(w0))


@pytest.mark.parametrize("space", ["dual", "primal"])
@pytest.mark.parametrize("spec", ["1.5-norm", "3-norm", "ne"])
def test_noise_foreach_matches_reference_with_momentum(spec, space):
    finals = []
    for foreach in (True, False):
        model = _model(9)
        gen = torch.Generator().manual_seed(3)

        def noise(params, gen=gen):
            return [1e-3 * torch.randn(p.shape, generator=gen, dtype=p.dtype) for p in params]

        opt = MirrorDescent(model.parameters(), lr=0.02, potential=spec, momentum=0.9,
                            foreach=foreach, plasticity_noise=noise, noise_space=space)  # fmt: skip
        _train(model, opt, 10)
        finals.append(_params(model))
    _assert_params_equal(finals[0], finals[1], exact=False)


def test_noise_is_per_group():
    a = torch.nn.Parameter(torch.tensor([1.0, 2.0], dtype=F64))
    b = torch.nn.Parameter(torch.tensor([3.0], dtype=F64))
    opt = MirrorDescent(
        [{"params": [a], "plasticity_noise": _constant_noise(0.25)}, {"params": [b]}], lr=0.1
    )
    a.grad, b.grad = torch.zeros_like(a), torch.zeros_like(b)
    opt.step()
    assert torch.equal(a.detach(), torch.tensor([1.25, 2.25], dtype=F64))
    assert torch.equal(b.detach(), torch.tensor([3.0], dtype=F64))


@pytest.mark.parametrize(
    ("noise", "match"),
    [
        (lambda ps: [torch.zeros(3)], "list of 1 tensors|returned"),
        (lambda ps: torch.zeros(2), "list of 1 tensors"),
        (lambda ps: [np.zeros(2)], "returned ndarray"),
        (lambda ps: [], "list of 1 tensors"),
    ],
)
def test_bad_noise_output_raises(noise, match):
    w = torch.nn.Parameter(torch.ones(2))
    opt = MirrorDescent([w], lr=0.1, plasticity_noise=noise)
    w.grad = torch.zeros(2)
    with pytest.raises(InputError, match=match):
        opt.step()


# --------------------------------------------------------------------------------------------
# both fast kernels (per-tensor, used on CPU; list-wide, used on accelerators) ≡ reference
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("per_tensor", [True, False])
@pytest.mark.parametrize("spec", ["1.05-norm", "1.5-norm", "2.5-norm", "3-norm", "4-norm", "ne"])
@pytest.mark.parametrize(
    "options",
    [
        dict(momentum=0.9),
        dict(momentum=0.9, nesterov=True, weight_decay=1e-2, maximize=True),
        dict(momentum=0.5, dampening=0.5, noise_space="dual"),
        dict(momentum=0.0, noise_space="primal"),
    ],
    ids=["momentum", "nesterov-wd-max", "dampening-dualnoise", "primalnoise"],
)
def test_fast_kernels_match_single_tensor_reference(per_tensor, spec, options):
    options = dict(options)
    noise_space = options.pop("noise_space", None)
    kwargs = dict(momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False, maximize=False)
    kwargs.update(options)
    finals = []
    for kernel in ("fast", "reference"):
        params = [t * 10.0**e for t, e in zip(_random_param_list(11), (-6, -2, 0, 2), strict=True)]
        bufs: list = [None] * len(params)
        for step in range(4):
            grads = _random_param_list(100 + step)
            noise = None
            if noise_space is not None:
                noise = [1e-3 * t for t in _random_param_list(200 + step)]
            common = dict(
                potential=potential(spec), lr=1e-2, noise_space=noise_space or "dual", **kwargs
            )
            if kernel == "fast":
                _foreach_mirror_descent(params, grads, bufs, noise, per_tensor=per_tensor, **common)
            else:
                _single_tensor_mirror_descent(params, grads, bufs, noise, **common)
        finals.append(params)
    for x, y in zip(*finals, strict=True):
        torch.testing.assert_close(x, y, rtol=1e-11, atol=1e-300)


def test_sgd_state_dict_loads_into_pnorm2_and_continues_identically():
    """An SGD checkpoint (no potential key) loads as the 2-norm and continues SGD's trajectory."""
    model_sgd, model_md = _model(10), _model(10)
    sgd = torch.optim.SGD(model_sgd.parameters(), lr=0.05, momentum=0.9)
    _train(model_sgd, sgd, 5)
    model_md.load_state_dict(model_sgd.state_dict())
    md = MirrorDescent(model_md.parameters(), lr=1.0, potential="ne")
    md.load_state_dict(copy.deepcopy(sgd.state_dict()))  # torch shares buffer tensors otherwise
    assert md.param_groups[0]["potential"] == PNorm(2)
    _train(model_sgd, sgd, 5)
    _train(model_md, md, 5)
    _assert_params_equal(_params(model_md), _params(model_sgd))


def test_optimizer_deepcopies_and_numpy_hyperparameters_are_accepted():
    model = _model()
    opt = MirrorDescent(
        model.parameters(), lr=np.float32(0.01), potential="ne", momentum=np.float64(0.9)
    )
    _train(model, opt, 2)
    clone = copy.deepcopy(opt)
    assert clone.param_groups[0]["potential"] == NegativeEntropy()
    assert clone.state_dict()["param_groups"] == opt.state_dict()["param_groups"]


def test_functional_accepts_leaf_parameters_outside_no_grad():
    w = torch.nn.Parameter(torch.tensor([0.5, -2.0], dtype=F64))
    mirror_descent([w], [torch.ones(2, dtype=F64)], [], potential="3-norm", lr=0.1)
    expected = np.sign([0.25 - 0.1, -4.0 - 0.1]) * np.sqrt(np.abs([0.25 - 0.1, -4.0 - 0.1]))
    np.testing.assert_allclose(w.detach().numpy(), expected, rtol=1e-14)
    assert w.grad_fn is None and w.requires_grad


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(noise_space="both"), "Invalid noise_space"),
        (dict(momentum=0.9, momentum_buffer_list=[None, None]), "momentum buffers"),
        (dict(grads=[]), "gradients"),
    ],
)
def test_functional_validates_its_lists(kwargs, match):
    w = torch.ones(3, dtype=F64)
    args = dict(grads=[torch.ones(3, dtype=F64)], momentum_buffer_list=[])
    args.update({k: kwargs.pop(k) for k in list(kwargs) if k in args})
    with pytest.raises(InputError, match=match):
        mirror_descent(
            [w], args["grads"], args["momentum_buffer_list"], potential="ne", lr=0.1, **kwargs
        )


@pytest.mark.parametrize("spec", ["1.05-norm", "2.5-norm", "3-norm", "4-norm", "ne"])
def test_fast_path_float32_stays_close_to_reference(spec):
    """float32: the CPU fast path's exp(k·log|x|) powers cost ≈ |k·log|x||·eps32 per step."""
    finals = []
    for foreach in (True, False):
        params = [t.float() for t in _random_param_list(21)]
        bufs: list = [None] * len(params)
        for step in range(10):
            grads = [t.float() for t in _random_param_list(300 + step)]
            mirror_descent(
                params, grads, bufs, potential=spec, lr=1e-2, momentum=0.9, foreach=foreach
            )
        finals.append(params)
    for x, y in zip(*finals, strict=True):
        assert x.dtype == torch.float32
        torch.testing.assert_close(x, y, rtol=2e-5, atol=1e-6)


# --------------------------------------------------------------------------------------------
# user writes into the parameters are never lost (default: the weights are the only state)
# --------------------------------------------------------------------------------------------

_WRITE_SPECS = ["3-norm", "p=2.5", "1.5-norm", "ne"]


def _clamp_dale(model):  # Dale's law: excitatory weights stay non-negative
    for p in model.parameters():
        p.data.clamp_(min=0)


def _copy_pattern(model):
    for p in model.parameters():
        p.data.copy_(torch.linspace(-1.5, 2.0, p.numel(), dtype=p.dtype).view_as(p))


def _assign_data(model):
    for p in model.parameters():
        p.data = -0.5 * p.data


def _load_other_weights(model):
    model.load_state_dict(_model(21).state_dict())


_WRITE_ROUTES = {
    "data.mul_": lambda model: [p.data.mul_(2.0) for p in model.parameters()],
    "data.clamp_": _clamp_dale,
    "data.copy_": _copy_pattern,
    "data=": _assign_data,
    "load_state_dict": _load_other_weights,
}


@pytest.mark.parametrize("route", list(_WRITE_ROUTES))
@pytest.mark.parametrize("spec", _WRITE_SPECS)
def test_writes_by_any_route_are_never_lost(spec, route):
    """Defect 3 of issue 8: after a write between steps the next step starts from what was
    written. (1) a zero-lr step keeps the written weights (0.1.0 restored the old ones from its
    cached dual); (2) the run equals the reference, which has no state but momentum, given the
    same write."""
    runs = []
    for foreach in (None, False):
        model = _model(20)
        opt = MirrorDescent(model.parameters(), lr=0.05, potential=spec, momentum=0.9,
                            foreach=foreach)  # fmt: skip
        _train(model, opt, 3)
        _WRITE_ROUTES[route](model)
        written = _params(model)
        lr = opt.param_groups[0]["lr"]
        opt.param_groups[0]["lr"] = 0.0
        _train(model, opt, 1)
        # a zero step is the round trip (∇φ)⁻¹(∇φ(w)): w to rounding (0 stays 0)
        _assert_params_equal(_params(model), written, exact=False, rtol=1e-13, atol=0)
        opt.param_groups[0]["lr"] = lr
        _train(model, opt, 3)
        runs.append(_params(model))
    _assert_params_equal(runs[0], runs[1], exact=False)


def test_dale_clamp_between_steps_keeps_weights_non_negative_under_ne():
    """Dale's law under negative entropy: clamped weights are 0, a fixed point, and stay 0."""
    model = _model(22)
    opt = MirrorDescent(model.parameters(), lr=0.05, potential="ne", momentum=0.9)
    _train(model, opt, 2)
    _clamp_dale(model)
    zero = [p.detach() == 0 for p in model.parameters()]
    assert any(z.any() for z in zero)
    _train(model, opt, 5)
    for p, z in zip(model.parameters(), zero, strict=True):
        assert (p.detach() >= 0).all() and (p.detach()[z] == 0).all()


# --------------------------------------------------------------------------------------------
# the opt-in dual cache: dual weights kept between steps, guarded by p._version
# --------------------------------------------------------------------------------------------

_CACHED_SPECS = ["1.5-norm", "3-norm", "p=2.5", "ne"]


def _set_grads(params, step):
    for i, p in enumerate(params):
        p.grad = torch.cos(p.detach() * (step + 1) + i)


def _leaf_params(seed=12, dtype=F64):
    return [torch.nn.Parameter(t) for t in _random_param_list(seed, dtype=dtype)]


@pytest.mark.parametrize("spec", _CACHED_SPECS)
def test_cache_is_kept_in_state_only_when_asked_and_stamped_with_the_version(spec):
    params = _leaf_params()
    opt = MirrorDescent(params, lr=0.05, potential=spec, momentum=0.9, cache_dual=True)
    for step in range(3):
        _set_grads(params, step)
        opt.step()
        for p in params:
            state = opt.state[p]
            assert state["cache_version"] == p._version
            # the dual weights of the current weights, to rounding
            torch.testing.assert_close(
                state["dual"], potential(spec).grad(p.detach()), rtol=1e-13, atol=1e-15
            )
    default = MirrorDescent(_leaf_params(), lr=0.05, potential=spec, momentum=0.9)
    assert default.defaults["cache_dual"] is False
    _set_grads(default.param_groups[0]["params"], 0)
    default.step()
    assert all(set(s) == {"momentum_buffer"} for s in default.state.values())


@pytest.mark.parametrize("spec", _CACHED_SPECS)
@pytest.mark.parametrize(
    "options",
    [dict(momentum=0.9), dict(momentum=0.9, nesterov=True, weight_decay=1e-2, maximize=True)],
    ids=["momentum", "nesterov-wd-max"],
)
def test_cached_run_matches_uncached_and_reference(spec, options):
    finals = []
    for kwargs in (dict(cache_dual=True), dict(), dict(foreach=False)):
        params = _leaf_params()
        lr = 0.02 if not options.get("maximize") else 2e-3  # as above: keep ascent short
        opt = MirrorDescent(params, lr=lr, potential=spec, **options, **kwargs)
        for step in range(20):
            _set_grads(params, step)
            opt.step()
        finals.append([p.detach().clone() for p in params])
    _assert_params_equal(finals[0], finals[1], exact=False)
    _assert_params_equal(finals[0], finals[2], exact=False)
    moved = zip(finals[0], _leaf_params(), strict=True)
    assert max((a - b).abs().max().item() for a, b in moved) > 1e-3


_IN_PLACE_EDITS = {
    "mul_": lambda p: p.mul_(-1.5),
    "copy_": lambda p: p.copy_(torch.linspace(-2.0, 3.0, p.numel(), dtype=p.dtype).view_as(p)),
    "detach-add_": lambda p: p.detach().add_(0.25),
    "nn.init": lambda p: torch.nn.init.uniform_(p, 0.1, 0.9),
}


@pytest.mark.parametrize("cache_dual", [False, True])
@pytest.mark.parametrize("edit", list(_IN_PLACE_EDITS))
@pytest.mark.parametrize("spec", _CACHED_SPECS)
def test_in_place_change_between_steps_is_seen(spec, edit, cache_dual):
    """After an in-place write, the step equals a fresh optimizer's step from the new weights."""
    params = _leaf_params()
    opt = MirrorDescent(params, lr=0.05, potential=spec, cache_dual=cache_dual)  # no momentum
    for step in range(3):
        _set_grads(params, step)
        opt.step()
    with torch.no_grad():
        for p in params:
            _IN_PLACE_EDITS[edit](p)
    fresh_params = [torch.nn.Parameter(p.detach().clone()) for p in params]
    fresh = MirrorDescent(fresh_params, lr=0.05, potential=spec)
    reference = [torch.nn.Parameter(p.detach().clone()) for p in params]
    ref_opt = MirrorDescent(reference, lr=0.05, potential=spec, foreach=False)
    for step in range(3, 6):
        for ps, o in ((params, opt), (fresh_params, fresh), (reference, ref_opt)):
            _set_grads(ps, step)
            o.step()
        _assert_params_equal(params, fresh_params, exact=False, rtol=1e-12, atol=1e-14)
        _assert_params_equal(params, reference, exact=False, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("spec", _CACHED_SPECS)
def test_in_place_change_with_momentum_matches_the_reference(spec):
    """The momentum buffer survives the edit; only the kept dual is recomputed."""
    runs = []
    for kwargs in (dict(cache_dual=True), dict(foreach=False)):
        params = _leaf_params()
        opt = MirrorDescent(params, lr=0.03, potential=spec, momentum=0.9, **kwargs)
        for step in range(8):
            if step == 4:
                with torch.no_grad():
                    params[1].mul_(0.5)
                    params[2].copy_(-params[2])
            _set_grads(params, step)
            opt.step()
        runs.append([p.detach().clone() for p in params])
    _assert_params_equal(runs[0], runs[1], exact=False, rtol=1e-12, atol=1e-14)


def test_opt_in_cache_does_not_see_writes_through_data_as_documented():
    """With ``cache_dual=True``, ``p.data`` writes are not seen (the documented caveat), and
    dropping the dual from the state (the documented remedy) restores the fresh step."""
    w0 = torch.tensor([0.5, -2.0, 1.5], dtype=F64)

    def run(remedy):
        w = torch.nn.Parameter(w0.clone())
        opt = MirrorDescent([w], lr=0.1, potential="3-norm", cache_dual=True)
        w.grad = torch.ones_like(w)
        opt.step()
        w.data.mul_(3.0)
        if remedy:
            opt.state[w].pop("dual")
        opt.step()
        return w.detach().clone(), opt

    stale, _ = run(remedy=False)
    fixed, _ = run(remedy=True)
    w = torch.nn.Parameter(w0.clone())
    ref = MirrorDescent([w], lr=0.1, potential="3-norm", foreach=False)
    w.grad = torch.ones_like(w)
    ref.step()
    with torch.no_grad():
        w.mul_(3.0)
    ref.step()
    torch.testing.assert_close(fixed, w.detach(), rtol=1e-13, atol=0)
    assert not torch.allclose(stale, w.detach())


@pytest.mark.parametrize("spec", ["3-norm", "ne"])
def test_switching_to_the_reference_path_and_back_drops_the_cache(spec):
    runs = []
    for switch in (True, False):
        params = _leaf_params()
        opt = MirrorDescent(params, lr=0.03, potential=spec, momentum=0.9, foreach=not switch,
                            cache_dual=True)  # fmt: skip
        for step in range(6):
            if switch:  # the reference path for steps 2 and 3
                opt.param_groups[0]["foreach"] = step not in (2, 3)
            _set_grads(params, step)
            opt.step()
            if switch and step in (2, 3):
                assert all("cache_version" not in opt.state[p] for p in params)
            if step == 2:  # an edit while the cache is not maintained
                with torch.no_grad():
                    params[0].mul_(2.0)
        runs.append([p.detach().clone() for p in params])
    _assert_params_equal(runs[0], runs[1], exact=False, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("cache_dual", [False, True])
@pytest.mark.parametrize("spec", ["3-norm", "p=2.5", "ne"])
def test_state_dict_resumes_bit_for_bit(spec, cache_dual):
    model_a = _model(13)
    opt_a = MirrorDescent(model_a.parameters(), lr=0.05, potential=spec, momentum=0.9,
                          cache_dual=cache_dual)  # fmt: skip
    _train(model_a, opt_a, 5)
    buffer = io.BytesIO()
    torch.save({"model": model_a.state_dict(), "opt": opt_a.state_dict()}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)
    for entry in saved["opt"]["state"].values():
        assert "cache_version" not in entry and "sign" not in entry
        assert ("dual" in entry) == cache_dual
    # the live state is untouched by state_dict()
    assert all(("cache_version" in s) == cache_dual for s in opt_a.state.values())
    _train(model_a, opt_a, 5)  # the original run goes on

    for order in ("model-first", "optimizer-first"):
        model_b = _model(99)
        opt_b = MirrorDescent(model_b.parameters(), lr=1.0, potential="2-norm",
                              cache_dual=cache_dual)  # fmt: skip
        # torch's load_state_dict shares tensors with the dict it loads: one copy per load
        checkpoint = copy.deepcopy(saved)
        if order == "model-first":
            model_b.load_state_dict(checkpoint["model"])
            opt_b.load_state_dict(checkpoint["opt"])
        else:
            opt_b.load_state_dict(checkpoint["opt"])
            model_b.load_state_dict(checkpoint["model"])
        _train(model_b, opt_b, 5)
        _assert_params_equal(_params(model_b), _params(model_a))


def test_a_checkpoint_never_switches_the_cache_on():
    """0.1.0 saved ``cache_dual=True`` (its default) and "sign" entries: loading keeps the
    loading optimizer's setting, and the old entries are dropped."""
    model = _model(23)
    opt = MirrorDescent(model.parameters(), lr=0.05, potential="ne", momentum=0.9)
    _train(model, opt, 2)
    state = copy.deepcopy(opt.state_dict())
    for group in state["param_groups"]:
        group["cache_dual"] = True
    for entry in state["state"].values():
        entry["sign"] = torch.ones(1)
    other = MirrorDescent(model.parameters(), lr=0.05, potential="ne", momentum=0.9)
    other.load_state_dict(state)
    assert other.param_groups[0]["cache_dual"] is False
    assert all(set(s) == {"momentum_buffer"} for s in other.state.values())


@pytest.mark.parametrize("spec", ["3-norm", "p=2.5", "1.5-norm"])
def test_loaded_dual_that_does_not_match_the_weights_is_recomputed(spec):
    """An optimizer state loaded into a model with other weights: the dual comes from the weights."""
    model_a = _model(14)
    opt_a = MirrorDescent(model_a.parameters(), lr=0.05, potential=spec, momentum=0.9,
                          cache_dual=True)  # fmt: skip
    _train(model_a, opt_a, 5)
    state = copy.deepcopy(opt_a.state_dict())
    assert all("dual" in s for s in state["state"].values())

    model_b = _model(15)  # other weights
    opt_b = MirrorDescent(model_b.parameters(), lr=0.05, potential=spec, momentum=0.9,
                          cache_dual=True)  # fmt: skip
    opt_b.load_state_dict(copy.deepcopy(state))  # torch shares the loaded tensors otherwise
    model_r = copy.deepcopy(model_b)
    opt_r = MirrorDescent(model_r.parameters(), lr=0.05, potential=spec, momentum=0.9,
                          cache_dual=True)  # fmt: skip
    opt_r.load_state_dict(copy.deepcopy(state))
    for s in opt_r.state.values():
        s.pop("dual")  # the same momentum buffers, no dual: recomputed from model_b's weights
    _train(model_b, opt_b, 5)
    _train(model_r, opt_r, 5)
    _assert_params_equal(_params(model_b), _params(model_r))


def test_state_dict_without_the_dual_continues_to_rounding():
    """A checkpoint whose dual was dropped resumes from the weights (equal to ~1e-12)."""
    model_a = _model(16)
    opt_a = _two_group_optimizer(model_a, cache_dual=True)
    _train(model_a, opt_a, 5)
    state = copy.deepcopy(opt_a.state_dict())
    assert any("dual" in entry for entry in state["state"].values())
    for entry in state["state"].values():
        entry.pop("dual", None)
    model_b = copy.deepcopy(model_a)
    opt_b = _two_group_optimizer(model_b, cache_dual=True)
    opt_b.load_state_dict(state)
    _train(model_a, opt_a, 10)
    _train(model_b, opt_b, 10)
    _assert_params_equal(_params(model_a), _params(model_b), exact=False)


@pytest.mark.parametrize("space", ["dual", "primal"])
def test_cache_with_plasticity_noise(space):
    """Dual noise goes into the kept dual; primal noise disables the cache."""
    finals = []
    for foreach in (True, False):
        params = _leaf_params()
        gen = torch.Generator().manual_seed(4)

        def noise(ps, gen=gen):
            return [1e-3 * torch.randn(p.shape, generator=gen, dtype=p.dtype) for p in ps]

        opt = MirrorDescent(params, lr=0.02, potential="3-norm", momentum=0.9, foreach=foreach,
                            plasticity_noise=noise, noise_space=space, cache_dual=True)  # fmt: skip
        for step in range(6):
            _set_grads(params, step)
            opt.step()
        if foreach:
            assert all(("dual" in opt.state[p]) == (space == "dual") for p in params)
        finals.append([p.detach().clone() for p in params])
    _assert_params_equal(finals[0], finals[1], exact=False)


@pytest.mark.parametrize("per_tensor", [True, False])
@pytest.mark.parametrize("spec", ["1.05-norm", "1.5-norm", "2.5-norm", "3-norm", "4-norm", "ne"])
def test_functional_dual_cache_matches_reference(per_tensor, spec):
    """Both fast kernels, with a cache carried across calls, equal the single-tensor reference."""
    finals = []
    for kernel in ("fast", "reference"):
        params = [t * 10.0**e for t, e in zip(_random_param_list(11), (-6, -2, 0, 2), strict=True)]
        bufs: list = [None] * len(params)
        cache: list = [None] * len(params)
        for step in range(5):
            grads = _random_param_list(100 + step)
            common = dict(potential=potential(spec), lr=1e-2, momentum=0.9, dampening=0.0,
                          weight_decay=1e-3, nesterov=True, maximize=False, noise_space="dual")  # fmt: skip
            if kernel == "fast":
                _foreach_mirror_descent(
                    params, grads, bufs, None, per_tensor=per_tensor, dual_cache=cache, **common
                )
                assert all(isinstance(c, torch.Tensor) for c in cache)
            else:
                _single_tensor_mirror_descent(params, grads, bufs, None, **common)
        finals.append(params)
    for x, y in zip(*finals, strict=True):
        torch.testing.assert_close(x, y, rtol=1e-11, atol=1e-300)


def test_cache_validation_errors():
    with pytest.raises(TypeError, match="Invalid cache_dual value"):
        MirrorDescent(_p(), lr=0.1, cache_dual="yes")
    w = torch.ones(3, dtype=F64)
    with pytest.raises(ValueError, match="dual-cache entries"):
        mirror_descent([w], [w.clone()], [], potential="3-norm", lr=0.1, dual_cache=[])
    cache = [torch.ones(3, dtype=F64)]
    mirror_descent(
        [w], [w.clone()], [], potential="3-norm", lr=0.1, dual_cache=cache, foreach=False
    )
    assert cache == [None]  # the reference path carries nothing


def test_cache_dtype_change_is_caught():
    """``Module.double()`` assigns ``.data`` (same version) but changes the dtype: recomputed."""
    model = _model(17, dtype=torch.float32)
    opt = MirrorDescent(model.parameters(), lr=0.05, potential="3-norm", momentum=0.9,
                        cache_dual=True)  # fmt: skip
    _train(model, opt, 2)
    model.double()
    for s in opt.state.values():
        s["momentum_buffer"] = s["momentum_buffer"].double()
    reference = copy.deepcopy(model)
    ref_opt = MirrorDescent(reference.parameters(), lr=0.05, potential="3-norm", momentum=0.9,
                            foreach=False)  # fmt: skip
    for p, q in zip(model.parameters(), reference.parameters(), strict=True):
        ref_opt.state[q]["momentum_buffer"] = opt.state[p]["momentum_buffer"].clone()
    _train(model, opt, 3)
    _train(reference, ref_opt, 3)
    _assert_params_equal(_params(model), _params(reference), exact=False)
    assert all(s["dual"].dtype == F64 for s in opt.state.values())


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch's own, from dynamo's imports
@pytest.mark.parametrize("fused", [False, True])
def test_a_compiled_training_step_gives_the_eager_weights(fused):
    """``torch.compile`` around the whole training step (forward, backward, ``opt.step()``):
    dynamo traces what it can and falls back around the optimizer's host code, and the weights
    match the eager loop to float32 rounding (the compiled forward/backward may fuse and
    reorder operations: a few ulp per step on weights of order 1; 1e-5 leaves a wide margin)."""

    def run(compiled: bool) -> list[torch.Tensor]:
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))
        opt = MirrorDescent(
            model.parameters(), lr=0.05, potential="3-norm", momentum=0.9, fused=fused
        )  # fmt: skip (True: the C kernel where it builds)
        x, y = torch.randn(32, 8), torch.randn(32, 1)

        def step() -> torch.Tensor:
            opt.zero_grad()
            loss = torch.nn.functional.mse_loss(model(x), y)
            loss.backward()
            opt.step()
            return loss

        f = torch.compile(step) if compiled else step
        for _ in range(4):
            f()
        return [p.detach().clone() for p in model.parameters()]

    torch._dynamo.reset()
    for a, b in zip(run(False), run(True), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
