"""Constraints inside the step (Dale's law, bounds on |w|, zeros under NE) and weight decay in
the primal or dual space, for MirrorDescent and MirrorAdam (docs/geometries.md)."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import scipy.optimize
import torch

from syngeo import (
    Constraint,
    Hypentropy,
    MirrorAdam,
    MirrorAdamW,
    MirrorDescent,
    NegativeEntropy,
    PNorm,
    dale_mask,
    potential,
)
from syngeo.errors import InputError

OPTIMIZERS = {
    "md": lambda params, phi, **kw: MirrorDescent(
        params, lr=0.02, potential=phi, momentum=0.9, **kw
    ),
    "md-ref": lambda params, phi, **kw: MirrorDescent(
        params, lr=0.02, potential=phi, momentum=0.9, foreach=False, **kw
    ),
    "adam": lambda params, phi, **kw: MirrorAdam(params, lr=0.2, potential=phi, **kw),
}
SIGNED = ["2-norm", "3-norm", "hypentropy(beta=0.1)", "1.5-norm"]


def _two_layer_run(make, phi, steps=30, seed=0, constraints_for=None):
    """A Dale-constrained layer and an unconstrained one with separate losses (so that the
    second one's trajectory does not depend on the first's)."""
    g = torch.Generator().manual_seed(seed)
    w1 = torch.nn.Parameter(torch.randn(6, 8, generator=g, dtype=torch.float64))
    w2 = torch.nn.Parameter(torch.randn(5, generator=g, dtype=torch.float64))
    mask = dale_mask((6, 8), 5)
    with torch.no_grad():
        w1.copy_(mask * w1.abs())  # start on the right side
    cons = None if constraints_for is None else constraints_for(w1, mask)
    opt = make([w1, w2], potential(phi), constraints=cons)
    history = []
    for _ in range(steps):
        x = torch.randn(8, generator=g, dtype=torch.float64)
        t = 3 * torch.randn(6, generator=g, dtype=torch.float64)  # targets that want sign flips
        opt.zero_grad()
        (((w1 @ x - t) ** 2).sum() + ((w2 - t[:5]) ** 2).sum()).backward()
        opt.step()
        history.append((w1.detach().clone(), w2.detach().clone()))
    return history, mask


@pytest.mark.parametrize("opt_name", sorted(OPTIMIZERS))
@pytest.mark.parametrize("phi", SIGNED)
def test_dale_signs_never_flip_and_unconstrained_parameters_are_untouched(opt_name, phi):
    make = OPTIMIZERS[opt_name]
    constrained, mask = _two_layer_run(
        make, phi, constraints_for=lambda w, m: {w: Constraint(sign=m)}
    )
    plain, _ = _two_layer_run(make, phi)
    flips_plain = 0
    for (w1, w2), (p1, p2) in zip(constrained, plain, strict=True):
        assert torch.all(mask * w1 >= 0)
        assert torch.equal(w2, p2)  # bit for bit
        flips_plain += int((mask * p1 < 0).sum())
    assert flips_plain > 0  # the plain run does flip signs: the constraint was active


@pytest.mark.parametrize("opt_name", sorted(OPTIMIZERS))
def test_a_constraint_that_never_binds_changes_nothing(opt_name):
    make = OPTIMIZERS[opt_name]
    free = lambda w, m: {w: Constraint(sign=torch.zeros_like(m))}  # noqa: E731  (all free)
    a, _ = _two_layer_run(make, "3-norm", constraints_for=free)
    b, _ = _two_layer_run(make, "3-norm")
    for (a1, a2), (b1, b2) in zip(a, b, strict=True):
        assert torch.equal(a1, b1) and torch.equal(a2, b2)


@pytest.mark.parametrize("opt_name", sorted(OPTIMIZERS))
@pytest.mark.parametrize("phi", ["ne", "3-norm", "hypentropy(beta=0.1)"])
def test_hard_bounds_on_magnitudes_hold(opt_name, phi):
    bounds = lambda w, m: {w: Constraint(sign=m, min_abs=0.05, max_abs=0.8)}  # noqa: E731
    hist, mask = _two_layer_run(OPTIMIZERS[opt_name], phi, constraints_for=bounds)
    hit_top = hit_floor = False
    for w1, _ in hist:
        a = w1.abs()
        assert torch.all((a >= 0.05) & (a <= 0.8)) and torch.all(mask * w1 > 0)
        hit_top |= bool((a == 0.8).any())
        hit_floor |= bool((a == 0.05).any())
    assert hit_top and hit_floor  # both bounds were active


@pytest.mark.parametrize(
    "phi", [PNorm(3.0), Hypentropy(0.2), PNorm(1.5), NegativeEntropy()], ids=str
)
def test_the_constrained_step_is_the_bregman_projection_of_the_mirror_step(phi):
    """argmin over the box of D_φ(w, ŵ), by bounded scalar minimisation per coordinate (float64,
    xatol 1e-12), equals the optimizer's constrained step."""
    g = torch.Generator().manual_seed(4)
    w0 = torch.rand(12, generator=g, dtype=torch.float64) * 0.9 + 0.1
    d = 4 * torch.randn(12, generator=g, dtype=torch.float64)
    lo, hi = 0.15, 0.7
    sign = None if phi.preserves_sign else torch.ones(12, dtype=torch.float64)
    w = torch.nn.Parameter(w0.clone())
    opt = MirrorDescent([w], lr=0.3, potential=phi,
                        constraints=Constraint(sign=sign, min_abs=lo, max_abs=hi))  # fmt: skip
    w.grad = d.clone()
    opt.step()
    w_hat = phi.grad_inverse(phi.grad(w0) - 0.3 * d, sign=torch.sign(w0)).numpy()
    want = []
    for wh in w_hat:
        res = scipy.optimize.minimize_scalar(
            lambda x, wh=wh: float(phi.bregman(np.array([x]), np.array([wh]))),
            bounds=(lo, hi), method="bounded", options={"xatol": 1e-12},
        )  # fmt: skip
        want.append(res.x)
    np.testing.assert_allclose(w.detach().numpy(), want, atol=1e-8)
    assert np.any(w_hat > hi) and np.any(w_hat < lo)  # both sides were clipped


def test_ne_zero_weights_get_the_floor_with_the_mask_sign_or_the_gradients():
    w = torch.nn.Parameter(torch.tensor([0.0, 0.0, 0.0, 0.5], dtype=torch.float64))
    sign = torch.tensor([-1.0, 0.0, 0.0, 1.0], dtype=torch.float64)
    opt = MirrorDescent([w], lr=0.1, potential="ne",
                        constraints=Constraint(sign=sign, min_abs=0.01))  # fmt: skip
    w.grad = torch.tensor([1.0, 2.0, -2.0, 0.0], dtype=torch.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # floored: no warning
        opt.step()
    # lifted to σ·0.01 (σ: mask −1; else sign(−g): −1, +1), then w·exp(−η sign(w) g)
    lifted = torch.tensor([-0.01, -0.01, 0.01, 0.5], dtype=torch.float64)
    want = lifted * torch.exp(-0.1 * torch.sign(lifted) * w.grad)
    want = torch.sign(want) * want.abs().clamp(min=0.01)
    torch.testing.assert_close(w.detach(), want, rtol=1e-15, atol=0)


@pytest.mark.parametrize("cls", [MirrorDescent, MirrorAdam])
def test_ne_zero_weights_without_a_floor_stay_frozen_with_one_warning(cls):
    w = torch.nn.Parameter(torch.tensor([0.0, 0.5]))
    opt = cls([w], lr=0.1, potential="ne")
    w.grad = torch.ones(2)
    with pytest.warns(UserWarning, match="exactly 0 under the sign-preserving NE"):
        opt.step()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        opt.step()
    assert w[0].item() == 0.0 and w[1].item() != 0.5


def test_soft_ceiling_closed_form_under_the_2_norm():
    """Constant outward gradient −g, no momentum: w ← w + ηg(1 − w/M), so
    M − w_t = (M − w_0)(1 − ηg/M)^t; the weight approaches M and never reaches it."""
    M, eta, g0, w0 = 1.0, 0.1, 2.0, 0.2
    w = torch.nn.Parameter(torch.tensor([w0], dtype=torch.float64))
    opt = MirrorDescent([w], lr=eta, constraints=Constraint(max_abs=M, soft=True))
    for t in range(1, 41):
        w.grad = torch.tensor([-g0], dtype=torch.float64)
        opt.step()
        want = M - (M - w0) * (1 - eta * g0 / M) ** t
        assert w.item() == pytest.approx(want, rel=1e-13)
    assert w.item() < M


def test_constraint_validation():
    with pytest.raises(InputError, match="only -1, 0 and"):
        Constraint(sign=torch.tensor([2.0]))
    with pytest.raises(InputError, match="min_abs < max_abs"):
        Constraint(min_abs=1.0, max_abs=0.5)
    with pytest.raises(InputError, match="soft ceiling"):
        Constraint(soft=True)
    w = torch.nn.Parameter(torch.ones(3, 4))
    with pytest.raises(InputError, match="does not broadcast"):
        MirrorDescent([w], constraints={w: Constraint(sign=torch.ones(5))})
    with pytest.raises(InputError, match="not one of the parameters"):
        MirrorDescent([w], constraints={torch.ones(2): Constraint()})
    with pytest.raises(InputError, match="excitatory"):
        dale_mask((3, 4), [True, False])
    assert torch.equal(dale_mask((2, 3), 2), torch.tensor([[1.0, 1.0, -1.0]] * 2))
    assert torch.equal(dale_mask((2, 3), [False, True], dim=0),
                       torch.tensor([[-1.0] * 3, [1.0] * 3]))  # fmt: skip


# --------------------------------------------------------------------------------------------
# weight decay in the primal or the dual space: fixed points
# --------------------------------------------------------------------------------------------

DECAY_POTENTIALS = [PNorm(3.0), PNorm(1.5), Hypentropy(0.5), NegativeEntropy()]


def _run_constant_gradient(phi, g, w0, lam, space, decay_to=0.0, steps=3000, lr=0.05):
    """Both implementations (foreach and the single-tensor reference) must agree."""
    out = []
    for foreach in (True, False):
        w = torch.nn.Parameter(w0.clone())
        opt = MirrorDescent([w], lr=lr, potential=phi, weight_decay=lam, decay_space=space,
                            decay_to=decay_to, foreach=foreach)  # fmt: skip
        for _ in range(steps):
            w.grad = g.clone()
            opt.step()
        out.append(w.detach())
    torch.testing.assert_close(out[0], out[1], rtol=1e-12, atol=1e-15)
    return out[0]


@pytest.mark.parametrize("phi", DECAY_POTENTIALS, ids=str)
def test_primal_decay_fixed_point_is_minus_g_over_lambda(phi):
    """Constant gradient g and L2 decay λw: the stationary point g + λw = 0, w* = −g/λ, in every
    geometry (the geometry changes the path, not the fixed point). 3000 steps contract the error
    below 1e-10 (rate ≥ ηλ·min φ''⁻¹ per step on these weights); atol 1e-9."""
    w0 = torch.tensor([0.4, -0.3, 1.2], dtype=torch.float64)
    g = torch.tensor([-0.5, 0.2, -0.6], dtype=torch.float64)  # −g/λ keeps w0's signs (NE)
    lam = 1.0
    got = _run_constant_gradient(phi, g, w0, lam, "primal")
    torch.testing.assert_close(got, -g / lam, rtol=0, atol=1e-9)


@pytest.mark.parametrize("phi", DECAY_POTENTIALS, ids=str)
def test_dual_decay_fixed_point_is_shifted_from_the_reference_in_the_dual_space(phi):
    """Bregman decay λ(∇φ(w) − ∇φ(w_ref)), w_ref = 0.3·sign(w): stationary where
    ∇φ(w*) = ∇φ(w_ref) − g/λ; with g = 0 the fixed point is w_ref itself. (g is small enough
    that w* keeps w0's signs: the reference follows sign(w).)"""
    w0 = torch.tensor([0.4, -0.9, 1.2], dtype=torch.float64)
    g = torch.tensor([-0.1, 0.05, 0.1], dtype=torch.float64)
    lam, ref = 2.0, 0.3
    w_ref = torch.sign(w0) * ref
    want = phi.grad_inverse(phi.grad(w_ref) - g / lam, sign=torch.sign(w0))
    got = _run_constant_gradient(phi, g, w0, lam, "dual", decay_to=ref)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-9)
    got0 = _run_constant_gradient(phi, torch.zeros(3, dtype=torch.float64), w0, lam, "dual", ref)
    torch.testing.assert_close(got0, w_ref, rtol=0, atol=1e-9)


@pytest.mark.parametrize("phi", [PNorm(3.0), Hypentropy(0.5), NegativeEntropy()], ids=str)
def test_decoupled_dual_decay_without_gradient_is_a_geometric_shrink_of_the_dual_weights(phi):
    """AdamW, g = 0 (Adam's step is 0/(0 + eps) = 0): u_t − u_ref = (1 − ηλ)^t (u_0 − u_ref)."""
    w0 = torch.tensor([0.4, -0.9, 1.2], dtype=torch.float64)
    lr, lam, ref = 0.1, 0.5, 0.2
    w = torch.nn.Parameter(w0.clone())
    opt = MirrorAdamW([w], lr=lr, weight_decay=lam, potential=phi, decay_space="dual",
                      decay_to=ref)  # fmt: skip
    u_ref = phi.grad(torch.sign(w0) * ref)
    for t in range(1, 21):
        w.grad = torch.zeros(3, dtype=torch.float64)
        opt.step()
        u = u_ref + (1 - lr * lam) ** t * (phi.grad(w0) - u_ref)
        torch.testing.assert_close(w.detach(), phi.grad_inverse(u, sign=torch.sign(w0)),
                                   rtol=1e-13, atol=0)  # fmt: skip


def test_decoupled_primal_decay_without_gradient_is_torchs_adamw_shrink():
    """w_t = (1 − ηλ)^t w_0 under any potential (3-norm here, to rounding of the mirror maps)."""
    w0 = torch.tensor([0.4, -0.9, 1.2], dtype=torch.float64)
    w = torch.nn.Parameter(w0.clone())
    opt = MirrorAdamW([w], lr=0.1, weight_decay=0.5, potential="3-norm", decay_space="primal")
    for _ in range(10):
        w.grad = torch.zeros(3, dtype=torch.float64)
        opt.step()
    torch.testing.assert_close(w.detach(), w0 * 0.95**10, rtol=1e-13, atol=0)


def test_decay_space_validation():
    w = [torch.nn.Parameter(torch.ones(2))]
    with pytest.raises(InputError, match="decay_space"):
        MirrorDescent(w, decay_space="bregman")
    with pytest.raises(InputError, match="decay_to > 0"):
        MirrorDescent(w, potential="ne", decay_space="dual")
    with pytest.raises(InputError, match="decay_to"):
        MirrorDescent(w, decay_to=-1.0)
    assert math.isfinite(MirrorDescent(w, decay_space="dual").defaults["decay_to"])
