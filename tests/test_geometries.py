"""The new geometries everywhere: optimizer, exact solver and inference (docs/geometries.md).

Hypentropy (EG±), Tsallis and the recipe potential ``CoshFamily`` (tests/user_potentials.py) run
through :class:`syngeo.MirrorDescent`, :func:`syngeo.bregman_projection` and
:func:`syngeo.infer_geometry` using only the :class:`syngeo.Potential` protocol. References are
independent: the Bregman projection by Lagrange multipliers with scipy on NumPy closed forms
written out here, and the truth a simulated change was drawn from.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.optimize
import torch

import syngeo
from syngeo import Hypentropy, MirrorDescent, Tsallis
from user_potentials import CoshFamily

# NumPy mirror maps and inverses written out independently of syngeo
CLOSED_FORMS = {
    "hypentropy": (
        lambda b: (lambda w: np.arcsinh(w / b), lambda u: b * np.sinh(u)),
        Hypentropy,
        0.5,
    ),
    "cosh": (
        lambda a: (lambda w: np.sinh(a * w) / a, lambda u: np.arcsinh(a * u) / a),
        CoshFamily,
        0.8,
    ),
}


def _problem(seed, n=10, dim=30, same_signs=False):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, dim)) / np.sqrt(dim)
    w0 = rng.standard_normal(dim)
    teacher = (
        w0 * np.exp(0.5 * rng.standard_normal(dim)) if same_signs else rng.standard_normal(dim)
    )
    return X, X @ teacher, w0


def _projection_by_multipliers(X, y, w0, mirror, inverse):
    """Solve X·inverse(mirror(w0) − Xᵀλ) = y for λ with scipy (independent of syngeo)."""
    u0 = mirror(w0)
    sol = scipy.optimize.root(
        lambda lam: X @ inverse(u0 - X.T @ lam) - y, np.zeros(X.shape[0]), tol=1e-13
    )
    w = inverse(u0 - X.T @ sol.x)
    assert np.abs(X @ w - y).max() < 1e-10, sol.message
    return w


def _run_md(X, y, w0, phi, lr, steps=20000):
    Xt, yt = torch.tensor(X), torch.tensor(y)
    w = torch.nn.Parameter(torch.tensor(w0))
    opt = MirrorDescent([w], lr=lr, potential=phi, momentum=0.9)
    for _ in range(steps):
        opt.zero_grad()
        loss = 0.5 * (Xt @ w - yt).pow(2).sum()
        loss.backward()
        opt.step()
        if loss.item() < 1e-26:
            break
    return w.detach().numpy()


@pytest.mark.parametrize("family", sorted(CLOSED_FORMS))
def test_solver_and_mirror_descent_find_the_bregman_projection(family):
    """argmin_{Xw=y} D_φ(w, w0) three ways: multipliers (scipy, closed forms written here),
    ``bregman_projection`` (Newton, atol 1e-9 as for the built-ins) and the limit of mirror
    descent on the least-squares loss (implicit bias; atol 1e-6 after convergence to 1e-13)."""
    make_closed, cls, param = CLOSED_FORMS[family]
    mirror, inverse = make_closed(param)
    phi = cls(param)
    X, y, w0 = _problem(3)
    w_star = _projection_by_multipliers(X, y, w0, mirror, inverse)
    w_lib = np.asarray(syngeo.bregman_projection(X, y, w0, phi).weights, dtype=np.float64)
    np.testing.assert_allclose(w_lib, w_star, atol=1e-9)
    w_md = _run_md(X, y, w0, phi, lr=0.2)
    np.testing.assert_allclose(w_md, w_star, atol=1e-6)
    w_l2 = w0 + np.linalg.lstsq(X, y - X @ w0, rcond=None)[0]
    assert np.abs(w_l2 - w_star).max() > 1e-2  # a different point from the Euclidean answer


def test_hypentropy_projection_crosses_zero_and_tsallis_keeps_signs():
    """Hypentropy's solution changes signs where the data ask for it; Tsallis (sign-preserving)
    keeps every sign of w0 (its solution is checked against the multipliers)."""
    X, y, w0 = _problem(5)
    w = np.asarray(syngeo.bregman_projection(X, y, w0, Hypentropy(0.3)).weights)
    assert np.any(np.sign(w) != np.sign(w0))
    np.testing.assert_allclose(X @ w, y, atol=1e-9)
    X, y, w0 = _problem(6, same_signs=True)
    q = 0.5
    s = np.sign(w0)
    mirror = lambda w: s * (1 - q * np.abs(w) ** (q - 1)) / (1 - q)  # noqa: E731
    inverse = lambda u: s * (q / (1 - (1 - q) * s * u)) ** (1 / (1 - q))  # noqa: E731
    w_star = _projection_by_multipliers(X, y, w0, mirror, inverse)
    w_lib = np.asarray(syngeo.bregman_projection(X, y, w0, Tsallis(q)).weights)
    np.testing.assert_allclose(w_lib, w_star, rtol=1e-8, atol=1e-9)
    assert np.all(np.sign(w_lib) == s)


# --------------------------------------------------------------------------------------------
# inference ranks the families and refines β / a like p
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("truth", "grid"),
    [
        (Hypentropy(2.0), [Hypentropy(1.5), Hypentropy(2.5), Hypentropy(4.0)]),
        (CoshFamily(2.5), [CoshFamily(1.5), CoshFamily(2.2), CoshFamily(3.0)]),
    ],
    ids=["hypentropy", "cosh"],
)
def test_infer_geometry_ranks_the_family_first_and_refines_its_parameter(truth, grid):
    """A change drawn i.i.d. Gaussian in the dual space of ``truth`` (n = 4000, weights at the
    scale where the family's curvature varies) is attributed to the family, and the refined
    parameter's likelihood interval covers the truth."""
    sim = syngeo.simulate_change(truth, 4000, scale=1.0, rng=1)
    cands = [*grid, "2-norm", "3-norm", "ne"]
    fit = syngeo.infer_geometry(sim.before, sim.after, cands, n_bootstrap=0, rng=1)
    assert type(fit.best_potential) is type(truth)
    assert fit.ranking["refined"].iloc[0]  # the refined member beats the grid
    assert fit.p_interval.low <= truth.parameter <= fit.p_interval.high
    assert abs(fit.best_p - truth.parameter) < 0.5


def test_infer_geometry_ranks_tsallis_on_a_grid():
    """Tsallis(q) changes are attributed to the right grid member (no refinement needed)."""
    sim = syngeo.simulate_change(Tsallis(0.5), 4000, scale=1.0, rng=2)
    cands = [Tsallis(0.2), Tsallis(0.5), Tsallis(0.8), "2-norm", "ne"]
    fit = syngeo.infer_geometry(sim.before, sim.after, cands, n_bootstrap=0, refine=False, rng=2)
    assert fit.best == "tsallis(q=0.5)"


def test_infer_geometry_refines_tsallis_q():
    sim = syngeo.simulate_change(Tsallis(0.5), 4000, scale=1.0, rng=2)
    cands = [Tsallis(0.3), Tsallis(0.6), Tsallis(0.9), "2-norm", "ne"]
    fit = syngeo.infer_geometry(sim.before, sim.after, cands, n_bootstrap=0, rng=2)
    assert type(fit.best_potential) is Tsallis
    assert fit.p_interval.low <= 0.5 <= fit.p_interval.high


# --------------------------------------------------------------------------------------------
# MirrorDescent: fast path = single-tensor reference; state dicts
# --------------------------------------------------------------------------------------------

NEW = ["hypentropy(beta=0.3)", "tsallis(q=0.5)", CoshFamily(1.5)]


def _net():
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(4, 6), torch.nn.Tanh(), torch.nn.Linear(6, 1)
    ).double()


def _fit(model, opt, steps, seed=0):
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        x = torch.randn(8, 4, generator=g, dtype=torch.float64)
        opt.zero_grad()
        model(x).pow(2).mean().backward()
        opt.step()


@pytest.mark.parametrize("phi", NEW, ids=str)
def test_mirror_descent_fast_path_matches_the_reference(phi):
    """Fused steps vs grad/grad_inverse, with momentum, decay and a Dale constraint: float64,
    10 steps of a few roundings each through inverse maps of condition ≤ ~40: rtol 1e-11."""
    runs = []
    for foreach in (True, False):
        model = _net()
        first = model[0].weight
        cons = {first: syngeo.Constraint(sign=syngeo.dale_mask(first.shape, 3))}
        with torch.no_grad():
            first.copy_(cons[first].sign * first.abs())
        opt = MirrorDescent(model.parameters(), lr=0.05, potential=phi, momentum=0.9,
                            weight_decay=1e-3, foreach=foreach, constraints=cons)  # fmt: skip
        _fit(model, opt, 10)
        runs.append([p.detach().clone() for p in model.parameters()])
    for a, b in zip(*runs, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-11, atol=1e-14)


@pytest.mark.parametrize("phi", ["hypentropy(beta=0.3)", "tsallis(q=0.5)"])
def test_mirror_descent_state_dict_round_trip_by_name(phi):
    import copy
    import io

    model = _net()
    opt = MirrorDescent(model.parameters(), lr=0.05, potential=phi, momentum=0.9)
    _fit(model, opt, 3)
    state = opt.state_dict()
    assert state["param_groups"][0]["potential"] == phi  # stored by name
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    clone = copy.deepcopy(model)
    opt2 = MirrorDescent(clone.parameters(), lr=0.05, momentum=0.9)
    opt2.load_state_dict(torch.load(buf, weights_only=True))
    _fit(model, opt, 3, seed=1)
    _fit(clone, opt2, 3, seed=1)
    for a, b in zip(model.parameters(), clone.parameters(), strict=True):
        assert torch.equal(a, b)
