"""Property tests for potentials (docs/theory.md §1).

``PotentialTestCase`` holds the invariants every potential must satisfy; a new potential gets them
by subclassing it with a ``phi`` fixture (see ``TestBuiltinPotentials``). Reference formulas used
below are the textbook ones: ½‖w − w'‖² for the 2-norm Bregman divergence and the generalised
Kullback–Leibler divergence Σ w log(w/w') − w + w' for negative entropy on positive weights.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from syngeo.errors import InputError
from syngeo.potentials import (
    Hypentropy,
    LocalPotential,
    NegativeEntropy,
    PNorm,
    Potential,
    Tsallis,
    potential,
)
from user_potentials import Quartic

P_VALUES = (1.05, 1.1, 1.5, 2.0, 2.5, 3.0, 4.0)
BUILTIN = [PNorm(p) for p in P_VALUES] + [NegativeEntropy()]
DTYPES = (torch.float32, torch.float64)
SHAPES = ((), (3,), (2, 3, 4))
# potentials are immutable, so sharing one fixture value across hypothesis examples is safe
FIXTURE_OK = [HealthCheck.function_scoped_fixture]
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])

# |w| from 1e-8 to 1e2 with either sign: the range the library promises to handle
log_magnitudes = st.floats(min_value=-8.0, max_value=2.0, allow_nan=False)
signed_weights = st.lists(
    st.tuples(log_magnitudes, st.sampled_from([-1.0, 1.0])), min_size=1, max_size=16
).map(lambda pairs: np.array([s * 10.0**e for e, s in pairs]))


def _sign_arg(phi, w):
    """The ``sign`` argument of ``grad_inverse``: required by sign-preserving potentials."""
    return torch.sign(w) if getattr(phi, "preserves_sign", False) else None


def _nonzero_sample(shape, dtype, device="cpu", seed=0):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(shape, generator=g, dtype=torch.float64)
    w = torch.where(w.abs() < 1e-3, torch.full_like(w, 0.5), w)
    return w.to(dtype=dtype, device=device)


class PotentialTestCase:
    """Invariants of a potential; subclasses provide a ``phi`` fixture."""

    # -- inverse ∘ mirror = id ---------------------------------------------------------------
    @settings(max_examples=60, deadline=None, suppress_health_check=FIXTURE_OK)
    @given(w=signed_weights)
    def test_inverse_of_mirror_is_identity_float64(self, phi, w):
        wt = torch.from_numpy(w)
        back = phi.grad_inverse(phi.grad(wt), sign=_sign_arg(phi, wt))
        torch.testing.assert_close(back, wt, rtol=1e-12, atol=0)

    @settings(max_examples=30, deadline=None, suppress_health_check=FIXTURE_OK)
    @given(w=signed_weights)
    def test_inverse_of_mirror_is_identity_float32(self, phi, w):
        wt = torch.from_numpy(w).float()
        back = phi.grad_inverse(phi.grad(wt), sign=_sign_arg(phi, wt))
        # error of |u|^(1/(p-1)) grows like eps/(p-1): 20 eps32 at p = 1.05
        torch.testing.assert_close(back, wt, rtol=5e-6, atol=0)

    def test_mirror_of_inverse_is_identity_on_dual_values(self, phi):
        w = _nonzero_sample((50,), torch.float64, seed=1)
        u = phi.grad(w)
        back = phi.grad(phi.grad_inverse(u, sign=_sign_arg(phi, w)))
        torch.testing.assert_close(back, u, rtol=1e-12, atol=1e-14)

    # -- Bregman divergence ------------------------------------------------------------------
    @settings(max_examples=60, deadline=None, suppress_health_check=FIXTURE_OK)
    @given(w=signed_weights, w_ref=signed_weights)
    def test_bregman_is_non_negative_and_zero_only_at_equality(self, phi, w, w_ref):
        n = min(len(w), len(w_ref))
        w, w_ref = torch.from_numpy(w[:n]), torch.from_numpy(w_ref[:n])
        d = phi.bregman(w, w_ref, elementwise=True)
        scale = phi.value(w, elementwise=True).abs() + phi.value(w_ref, elementwise=True).abs()
        assert torch.all(d >= -1e-12 * (1 + scale))
        # clearly different points (relative gap > 1e-3) have a clearly positive divergence
        apart = (w - w_ref).abs() > 1e-3 * torch.maximum(w.abs(), w_ref.abs())
        assert torch.all(d[apart] > 0)
        assert torch.all(phi.bregman(w, w, elementwise=True) == 0)
        assert phi.bregman(w, w_ref) == pytest.approx(d.sum().item(), rel=1e-12, abs=1e-300)

    def test_bregman_equals_its_definition(self, phi):
        """Overrides (cancellation-free forms) agree with φ(w) − φ(w') − φ'(w')(w − w') where
        that formula is accurate: O(1) weights of equal sign, float64, atol 1e-12·(1 + scale)."""
        w = _nonzero_sample((40,), torch.float64, seed=12)
        w_ref = w.sign() * (w.abs() * torch.exp(_nonzero_sample((40,), torch.float64, seed=13)))
        want = (
            phi.value(w, elementwise=True)
            - phi.value(w_ref, elementwise=True)
            - phi.grad(w_ref) * (w - w_ref)
        )
        scale = phi.value(w, elementwise=True).abs() + phi.value(w_ref, elementwise=True).abs()
        got = phi.bregman(w, w_ref, elementwise=True)
        assert torch.all((got - want).abs() <= 1e-12 * (1 + scale))

    # -- Hessian = derivative of the mirror map; mirror map = derivative of the value -------
    def test_hessian_diag_equals_autograd_derivative_of_mirror_map(self, phi):
        w = _nonzero_sample((40,), torch.float64, seed=2).requires_grad_(True)
        (jac_diag,) = torch.autograd.grad(phi.grad(w).sum(), w)  # the map is element-wise
        torch.testing.assert_close(phi.hessian_diag(w.detach()), jac_diag, rtol=1e-12, atol=0)

    def test_mirror_map_equals_autograd_gradient_of_value(self, phi):
        w = _nonzero_sample((40,), torch.float64, seed=3).requires_grad_(True)
        (grad,) = torch.autograd.grad(phi.value(w), w)
        torch.testing.assert_close(phi.grad(w.detach()), grad, rtol=1e-12, atol=1e-15)

    def test_mirror_map_is_increasing(self, phi):
        """Strict convexity: the mirror map is strictly increasing on each sign's half-line."""
        w = torch.logspace(-8, 2, 200, dtype=torch.float64)
        for s in (1.0, -1.0):
            u = phi.grad(s * w)
            assert torch.all(torch.diff(u) * s > 0)

    # -- dtype / device / shape --------------------------------------------------------------
    @pytest.mark.parametrize("device", DEVICES)
    @pytest.mark.parametrize("dtype", DTYPES)
    @pytest.mark.parametrize("shape", SHAPES)
    def test_dtype_device_and_shape_are_preserved(self, phi, shape, dtype, device):
        w = _nonzero_sample(shape, dtype, device)
        w_ref = _nonzero_sample(shape, dtype, device, seed=9)
        outputs = {
            "grad": phi.grad(w),
            "grad_inverse": phi.grad_inverse(phi.grad(w), sign=_sign_arg(phi, w)),
            "hessian_diag": phi.hessian_diag(w),
            "value(elementwise)": phi.value(w, elementwise=True),
            "bregman(elementwise)": phi.bregman(w, w_ref, elementwise=True),
        }
        for name, out in outputs.items():
            assert isinstance(out, torch.Tensor), name
            assert (out.dtype, out.device, out.shape) == (w.dtype, w.device, w.shape), name
        for name, out in {"value": phi.value(w), "bregman": phi.bregman(w, w_ref)}.items():
            assert (out.dtype, out.device, out.shape) == (w.dtype, w.device, torch.Size()), name

    def test_inputs_are_not_modified(self, phi):
        w = _nonzero_sample((5,), torch.float64)
        keep = w.clone()
        phi.grad(w), phi.hessian_diag(w), phi.value(w), phi.bregman(w, keep)
        phi.grad_inverse(w, sign=_sign_arg(phi, w))
        assert torch.equal(w, keep)

    # -- numpy input ---------------------------------------------------------------------------
    def test_numpy_input_matches_torch(self, phi):
        w = _nonzero_sample((2, 5), torch.float64, seed=4)
        w_ref = _nonzero_sample((2, 5), torch.float64, seed=5)
        wn, wrn = w.numpy(), w_ref.numpy()
        sign_t = _sign_arg(phi, w)
        sign_n = None if sign_t is None else sign_t.numpy()
        pairs = [
            (phi.grad(wn), phi.grad(w)),
            (phi.grad_inverse(wn, sign=sign_n), phi.grad_inverse(w, sign=sign_t)),
            (phi.hessian_diag(wn), phi.hessian_diag(w)),
            (phi.value(wn, elementwise=True), phi.value(w, elementwise=True)),
            (phi.bregman(wn, wrn, elementwise=True), phi.bregman(w, w_ref, elementwise=True)),
        ]
        for got, want in pairs:
            assert isinstance(got, np.ndarray) and got.dtype == np.float64 and got.shape == wn.shape
            # same formulas, but numpy and torch may round differently (Bregman cancels terms)
            np.testing.assert_allclose(got, want.numpy(), rtol=1e-12, atol=1e-13)
        assert float(phi.value(wn)) == pytest.approx(phi.value(w).item(), rel=1e-13)
        assert float(phi.value([0.5, 2.0])) == pytest.approx(
            phi.value(torch.tensor([0.5, 2.0], dtype=torch.float64)).item(), rel=1e-13
        )

    def test_log_hessian_diag_is_the_log_of_the_hessian(self, phi):
        """Overrides (closed forms without the power) must agree with log φ''(w), also in NumPy;
        float64 log of a few-ulp value: atol 1e-12 (|log| ≤ 40 here)."""
        w = _nonzero_sample((40,), torch.float64, seed=6) * 10.0 ** torch.linspace(-6, 2, 40)
        want = torch.log(phi.hessian_diag(w))
        torch.testing.assert_close(phi.log_hessian_diag(w), want, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(phi.log_hessian_diag(w.numpy()), want.numpy(), atol=1e-12)

    # -- convex conjugate ----------------------------------------------------------------------
    def test_conjugate_is_the_legendre_transform(self, phi):
        """Fenchel–Young equality φ*(∇φ(w)) = ⟨w, ∇φ(w)⟩ − φ(w), entry by entry, and
        ∇φ* = (∇φ)⁻¹ (autograd); overrides (closed forms) must agree with the definition."""
        w = _nonzero_sample((40,), torch.float64, seed=5)
        u = phi.grad(w)
        sign = _sign_arg(phi, w)
        want = u * w - phi.value(w, elementwise=True)
        got = phi.conjugate(u, sign=sign, elementwise=True)
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-13)
        assert float(phi.conjugate(u, sign=sign)) == pytest.approx(float(want.sum()), rel=1e-12)
        ur = u.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(phi.conjugate(ur, sign=sign), ur)
        torch.testing.assert_close(grad, w, rtol=1e-10, atol=1e-12)

    # -- the optimizer's step ------------------------------------------------------------------
    @pytest.mark.parametrize("foreach", [None, True, False])
    @pytest.mark.parametrize("with_duals", [False, True])
    @pytest.mark.parametrize("with_noise", [False, True])
    def test_mirror_step_is_the_mirror_form(self, phi, foreach, with_duals, with_noise):
        """``mirror_step_`` (fused or not) equals (∇φ)⁻¹(∇φ(w) − η d + ξ; sign w) written with
        ``grad``/``grad_inverse``, and keeps ``duals`` equal to the new dual weights. float64:
        each side rounds a few times per entry and the inverse map's condition number
        |u·(∇φ⁻¹)'(u)/w| is at most max(1, 1/(p−1)) = 20 here, hence rtol 1e-12."""
        shapes = ((5,), (2, 3), ())
        params = [_nonzero_sample(s, torch.float64, seed=10 + i) for i, s in enumerate(shapes)]
        dirs = [_nonzero_sample(s, torch.float64, seed=20 + i) for i, s in enumerate(shapes)]
        noise = [
            1e-2 * _nonzero_sample(s, torch.float64, seed=30 + i) for i, s in enumerate(shapes)
        ]
        lr = 0.05
        expected = []
        for w, d, xi in zip(params, dirs, noise, strict=True):
            u = phi.grad(w) - lr * d + (xi if with_noise else 0)
            expected.append((phi.grad_inverse(u, sign=_sign_arg(phi, w)), u))
        duals = [phi.grad(w) for w in params] if with_duals else None
        phi.mirror_step_(params, dirs, lr, dual_noise=noise if with_noise else None,
                         duals=duals, foreach=foreach)  # fmt: skip
        for i, (w, (w_exp, u_exp)) in enumerate(zip(params, expected, strict=True)):
            assert w.shape == shapes[i] and w.dtype == torch.float64
            torch.testing.assert_close(w, w_exp, rtol=1e-12, atol=1e-300)
            if with_duals:
                torch.testing.assert_close(duals[i], u_exp, rtol=1e-12, atol=1e-14)
        assert not any(torch.equal(w, w0) for w, w0 in zip(params, [
            _nonzero_sample(s, torch.float64, seed=10 + i) for i, s in enumerate(shapes)
        ], strict=True))  # fmt: skip

    def test_mirror_step_float32_stays_close_to_float64(self, phi):
        """float32 fused step vs the float64 mirror form: a few eps32 per entry, times the
        inverse's condition number (≤ 20 for p ≥ 1.05) plus |k·log|x|| ≤ 20·18 eps32 of the
        exp-log powers at |x| ≥ 1e-8: rtol 5e-5."""
        w64 = _nonzero_sample((200,), torch.float64, seed=3)
        d64 = _nonzero_sample((200,), torch.float64, seed=4)
        u = phi.grad(w64) - 0.01 * d64
        want = phi.grad_inverse(u, sign=_sign_arg(phi, w64))
        w32 = [w64.float()]
        phi.mirror_step_(w32, [d64.float()], 0.01)
        torch.testing.assert_close(w32[0].double(), want, rtol=5e-5, atol=1e-6)

    def test_mirror_step_rejects_lists_of_other_lengths(self, phi):
        w = [torch.ones(3, dtype=torch.float64)]
        with pytest.raises(InputError, match="directions"):
            phi.mirror_step_(w, [], 0.1)
        with pytest.raises(InputError, match="dual_noise"):
            phi.mirror_step_(w, [torch.ones(3, dtype=torch.float64)], 0.1, dual_noise=[])

    # -- names ----------------------------------------------------------------------------------
    def test_name_parses_back_to_the_same_potential(self, phi):
        assert potential(phi.name) == phi
        assert potential(phi) is phi
        assert isinstance(phi, Potential)
        assert str(phi) == phi.name


@pytest.fixture(params=BUILTIN, ids=lambda phi: phi.name)
def phi(request):
    return request.param


class TestBuiltinPotentials(PotentialTestCase):
    """Every built-in potential: p-norms for p ∈ {1.05, …, 4} and negative entropy."""


# β spans EG-like (0.01: weights up to 1e4·β) to Euclidean-like (100 ≫ every |w| tested);
# Tsallis' inverse map has condition number |u|/(q|w|^(q-1)) ≈ |w|^(1-q)/(q(1-q)) for |w| ≫ 1
# (large weights crowd against the dual-domain edge 1/(1-q)): 38 at q = 0.5, |w| = 100, within
# the float32 test's 5e-6 = 40 eps32; q = 0.1 would be 700 (see the class docstring).
NEW_FAMILIES = [Hypentropy(b) for b in (0.01, 0.5, 3.0, 100.0)] + [
    Tsallis(q) for q in (0.5, 0.75, 0.9, 0.999)
]


class TestNewFamilies(PotentialTestCase):
    """Hypentropy (EG±) and Tsallis: the same invariants as the built-in p-norms and NE."""

    @pytest.fixture(params=NEW_FAMILIES, ids=lambda phi: phi.name)
    def phi(self, request):
        return request.param


class TestUserPotential(PotentialTestCase):
    """``Quartic``, defined only in the tests (tests/user_potentials.py): the same invariants,
    through the derived methods and the generic ``mirror_step_`` of :class:`LocalPotential`."""

    @pytest.fixture
    def phi(self):
        return Quartic()

    def test_name_parses_back_to_the_same_potential(self, phi):
        assert potential(phi) is phi  # not a built-in name: the object is kept
        assert isinstance(phi, Potential) and isinstance(phi, LocalPotential)
        assert str(phi) == phi.name == "quartic"
        with pytest.raises(InputError, match="unknown potential"):
            potential(phi.name)


# --------------------------------------------------------------------------------------------
# sanity across the whole promised range (continuous p)
# --------------------------------------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(p=st.floats(1.05, 4.0), w=signed_weights)
def test_pnorm_is_finite_and_accurate_for_p_in_range_and_weights_1e_8_to_1e2(p, w):
    phi = PNorm(p)
    wt = torch.from_numpy(w)
    u, h = phi.grad(wt), phi.hessian_diag(wt)
    assert torch.all(torch.isfinite(u)) and torch.all(torch.isfinite(h)) and torch.all(h > 0)
    assert torch.all(torch.isfinite(phi.value(wt, elementwise=True)))
    torch.testing.assert_close(phi.grad_inverse(u), wt, rtol=1e-12, atol=0)
    # float32 stays finite and accurate on the same range (smallest |w|^(p-1) is 1e-24 ≫ 1e-38)
    w32 = wt.float()
    torch.testing.assert_close(phi.grad_inverse(phi.grad(w32)), w32, rtol=5e-6, atol=0)


@settings(max_examples=50, deadline=None)
@given(w=signed_weights)
def test_negative_entropy_is_finite_and_accurate_for_weights_1e_8_to_1e2(w):
    phi = NegativeEntropy()
    wt = torch.from_numpy(w)
    u, h = phi.grad(wt), phi.hessian_diag(wt)
    assert torch.all(torch.isfinite(u)) and torch.all(torch.isfinite(h)) and torch.all(h > 0)
    torch.testing.assert_close(phi.grad_inverse(u, sign=torch.sign(wt)), wt, rtol=1e-13, atol=0)


# --------------------------------------------------------------------------------------------
# closed forms and conventions
# --------------------------------------------------------------------------------------------


def test_pnorm_closed_forms():
    w = torch.tensor([-2.0, 0.5, 3.0], dtype=torch.float64)
    phi = PNorm(3)
    torch.testing.assert_close(
        phi.value(w), torch.tensor((8 + 0.125 + 27) / 3, dtype=torch.float64)
    )
    torch.testing.assert_close(phi.grad(w), torch.tensor([-4.0, 0.25, 9.0], dtype=torch.float64))
    torch.testing.assert_close(
        phi.hessian_diag(w), torch.tensor([4.0, 1.0, 6.0], dtype=torch.float64)
    )
    torch.testing.assert_close(
        phi.grad_inverse(torch.tensor([-4.0, 0.25, 9.0], dtype=torch.float64)), w
    )


def test_pnorm2_is_the_identity_geometry():
    phi = PNorm(2)
    assert phi.is_euclidean and not PNorm(2.0000001).is_euclidean
    w = _nonzero_sample((4, 3), torch.float32)
    for out in (phi.grad(w), phi.grad_inverse(w)):
        assert torch.equal(out, w) and out.data_ptr() != w.data_ptr()  # a copy, not an alias
    assert torch.equal(phi.hessian_diag(w), torch.ones_like(w))
    w_ref = _nonzero_sample((4, 3), torch.float64, seed=8)
    w64 = w.double()
    torch.testing.assert_close(
        phi.bregman(w64, w_ref), 0.5 * ((w64 - w_ref) ** 2).sum(), rtol=1e-13, atol=0
    )


def test_negative_entropy_bregman_is_generalised_kl_on_positive_weights():
    g = torch.Generator().manual_seed(0)
    w = torch.rand(20, generator=g, dtype=torch.float64) + 0.01
    w_ref = torch.rand(20, generator=g, dtype=torch.float64) + 0.01
    kl = (w * torch.log(w / w_ref) - w + w_ref).sum()
    torch.testing.assert_close(NegativeEntropy().bregman(w, w_ref), kl, rtol=1e-12, atol=0)


def test_negative_entropy_conventions_at_zero_and_for_signs():
    phi = NegativeEntropy()
    w = torch.tensor([0.0, -0.0, 1.0, -1.0], dtype=torch.float64)
    u = phi.grad(w)
    assert torch.equal(u, torch.tensor([0.0, 0.0, 1.0, -1.0], dtype=torch.float64))
    assert torch.all(torch.isfinite(u))
    back = phi.grad_inverse(u, sign=torch.sign(w))
    assert torch.equal(back[:2].abs(), torch.zeros(2, dtype=torch.float64))  # sign 0 → weight 0
    torch.testing.assert_close(back[2:], w[2:])
    assert torch.all(torch.isinf(phi.hessian_diag(w[:2])))
    assert phi.value(torch.zeros(3)).item() == 0.0  # 0·log 0 = 0
    assert phi.preserves_sign and not phi.is_euclidean


def test_negative_entropy_bregman_outside_the_sign_orthant_is_infinite():
    """Regression: the plain formula gave D(-1, 0.1) = -1.20 < 0 (|w| log|w| is not convex on R)."""
    phi = NegativeEntropy()
    w = torch.tensor([-1.0, 0.5, 0.2, 0.0, 0.0], dtype=torch.float64)
    w_ref = torch.tensor([0.1, -0.5, 0.0, 0.3, 0.0], dtype=torch.float64)
    d = phi.bregman(w, w_ref, elementwise=True)
    assert torch.all(torch.isinf(d[:3])) and torch.all(d[:3] > 0)
    # w = 0 is the boundary: the limit of the generalised KL, |w_ref|; D(0, 0) = 0
    torch.testing.assert_close(d[3:], torch.tensor([0.3, 0.0], dtype=torch.float64))
    nd = phi.bregman(w.numpy(), w_ref.numpy(), elementwise=True)
    np.testing.assert_array_equal(nd, d.numpy())


def test_negative_entropy_inverse_needs_the_sign():
    with pytest.raises(ValueError, match="needs the sign"):
        NegativeEntropy().grad_inverse(torch.ones(3))


def test_negative_entropy_inverse_mixes_numpy_and_torch():
    phi = NegativeEntropy()
    u = torch.tensor([1.0, 2.0], dtype=torch.float64)
    out = phi.grad_inverse(u, sign=np.array([1.0, -1.0]))
    assert isinstance(out, torch.Tensor)
    torch.testing.assert_close(out, torch.tensor([1.0, -math.exp(-3.0)], dtype=torch.float64))


@pytest.mark.parametrize("phi", [NegativeEntropy(), Tsallis(0.5)], ids=lambda phi: phi.name)
def test_sign_preserving_inverse_takes_signs_of_either_kind(phi):
    """Only the sign of ``sign`` counts, and a torch ``sign`` makes a torch result (one helper
    serves both potentials)."""
    w = np.array([0.5, -2.0, 0.0, 3.0])
    u, sign = phi.grad(w), np.sign(w)
    expected = phi.grad_inverse(u, sign=sign)
    np.testing.assert_allclose(expected, w, rtol=1e-12)
    np.testing.assert_allclose(phi.grad_inverse(u, sign=2.5 * w), expected, rtol=0)
    out = phi.grad_inverse(u, sign=torch.from_numpy(sign))
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float64
    np.testing.assert_allclose(out.numpy(), expected, rtol=0)


def test_pnorm_zero_weight_conventions():
    zero = torch.zeros(2, dtype=torch.float64)
    for p in P_VALUES:
        phi = PNorm(p)
        assert torch.equal(phi.grad(zero), zero)
        assert torch.equal(phi.grad_inverse(zero), zero)
    assert torch.all(torch.isinf(PNorm(1.5).hessian_diag(zero)))
    assert torch.equal(PNorm(3).hessian_diag(zero), zero)


# --------------------------------------------------------------------------------------------
# parser
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("2-norm", PNorm(2)),
        ("3-norm", PNorm(3)),
        ("2.5-norm", PNorm(2.5)),
        ("1.1-norm", PNorm(1.1)),
        ("p=2.5", PNorm(2.5)),
        ("p = 3", PNorm(3)),
        ("  3-NORM ", PNorm(3)),
        ("euclidean", PNorm(2)),
        ("ne", NegativeEntropy()),
        ("NE", NegativeEntropy()),
        ("negative_entropy", NegativeEntropy()),
        ("negative entropy", NegativeEntropy()),
        (2.5, PNorm(2.5)),
        (3, PNorm(3)),
        (np.float64(1.5), PNorm(1.5)),
    ],
)
def test_parser_accepts(spec, expected):
    assert potential(spec) == expected


@pytest.mark.parametrize(
    ("spec", "error", "match"),
    [
        ("banana", ValueError, "unknown potential 'banana'"),
        ("", ValueError, "unknown potential"),
        ("3-norms", ValueError, "unknown potential"),
        ("1-norm", ValueError, "p > 1"),
        ("p=0.5", ValueError, "p > 1"),
        (1.0, ValueError, "p > 1"),
        (0.5, ValueError, "p > 1"),
        (-3, ValueError, "p > 1"),
        (float("inf"), ValueError, "p > 1"),
        (float("nan"), ValueError, "p > 1"),
        (True, TypeError, "potential"),
        (None, TypeError, "potential"),
        ([2.0], TypeError, "potential"),
    ],
)
def test_parser_rejects_with_a_clear_error(spec, error, match):
    with pytest.raises(error, match=match):
        potential(spec)


@pytest.mark.parametrize(("p", "error"), [(True, TypeError), ("3", TypeError), (1.0, ValueError)])
def test_pnorm_constructor_validates_p(p, error):
    with pytest.raises(error, match=r"p > 1|PNorm needs"):
        PNorm(p)


# --------------------------------------------------------------------------------------------
# the fused steps
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("foreach", [True, False])
def test_negative_entropy_step_never_flips_a_sign_and_keeps_zeros(foreach):
    """w·exp(−η s d): any step, however large, keeps each sign; 0 stays 0 (a fixed point)."""
    g = torch.Generator().manual_seed(7)
    w0 = torch.randn(500, generator=g, dtype=torch.float64)
    w0[::50] = 0.0
    w = [w0.clone()]
    for _ in range(10):
        NegativeEntropy().mirror_step_(
            w, [30 * torch.randn(500, generator=g, dtype=torch.float64)], 1.0, foreach=foreach
        )
        nonzero = w[0] != 0  # underflow to 0 is allowed, a flip is not
        assert torch.equal(torch.sign(w[0])[nonzero], torch.sign(w0)[nonzero])
    assert (w[0][::50] == 0).all()


@pytest.mark.parametrize("foreach", [True, False])
def test_pnorm2_step_is_the_sgd_update_bit_for_bit(foreach):
    w = _nonzero_sample((7,), torch.float32, seed=8)
    d = _nonzero_sample((7,), torch.float32, seed=9)
    xi = _nonzero_sample((7,), torch.float32, seed=10)
    expected = w.add(d, alpha=-0.3).add(xi)
    params = [w.clone()]
    PNorm(2).mirror_step_(params, [d], 0.3, dual_noise=[xi], foreach=foreach)
    assert torch.equal(params[0], expected)


# --------------------------------------------------------------------------------------------
# hypentropy and Tsallis: closed forms, limits, parser
# --------------------------------------------------------------------------------------------


def test_hypentropy_closed_forms():
    """At w = β·sinh(1): mirror map 1, Hessian 1/(β cosh 1), conjugate β cosh u."""
    beta = 0.7
    phi = Hypentropy(beta)
    w = torch.tensor([beta * math.sinh(1.0), 0.0, -beta * math.sinh(2.0)], dtype=torch.float64)
    torch.testing.assert_close(phi.grad(w), torch.tensor([1.0, 0.0, -2.0], dtype=torch.float64))
    torch.testing.assert_close(
        phi.hessian_diag(w),
        1 / (beta * torch.tensor([math.cosh(1.0), 1.0, math.cosh(2.0)], dtype=torch.float64)),
    )
    # φ(0) = −β; φ*(0) = β (so φ(0) + φ*(0) = 0 = ⟨0, 0⟩, Fenchel–Young at w = 0)
    assert phi.value(torch.zeros(1, dtype=torch.float64)).item() == pytest.approx(-beta)
    assert phi.conjugate(torch.zeros(1, dtype=torch.float64)).item() == pytest.approx(beta)


def test_hypentropy_limits_euclidean_for_large_beta_and_eg_for_small_beta():
    """Large β: β·(mirror map) → w (relative error w²/(6β²) ≤ 7e-9 here), β·(Hessian) → 1
    (w²/(2β²) ≤ 2e-8); small β: arcsinh(w/β) − sign(w)·log(2|w|/β) → 0 (β²/(4w²) ≤ 7e-12)."""
    w = torch.tensor([-1.3, 0.2, 2.0], dtype=torch.float64)
    big = Hypentropy(1e4)
    torch.testing.assert_close(big.beta * big.grad(w), w, rtol=1e-8, atol=0)
    torch.testing.assert_close(
        big.beta * big.hessian_diag(w), torch.ones_like(w), rtol=3e-8, atol=0
    )
    small = Hypentropy(1e-6)
    eg_like = torch.sign(w) * torch.log(2 * w.abs() / small.beta)
    torch.testing.assert_close(small.grad(w), eg_like, rtol=0, atol=1e-10)


def test_hypentropy_step_is_eg_plus_minus():
    """w = w₊ − w₋, w± = (sqrt(w² + β²) ± w)/2: one mirror step multiplies w₊ by e^(−ηd) and w₋
    by e^(ηd) (two EG weights, product β²/4 kept)."""
    beta, lr = 0.2, 0.3
    w = _nonzero_sample((50,), torch.float64, seed=11)
    d = _nonzero_sample((50,), torch.float64, seed=12)
    r = torch.sqrt(w**2 + beta**2)
    w_plus, w_minus = (r + w) / 2, (r - w) / 2
    want = w_plus * torch.exp(-lr * d) - w_minus * torch.exp(lr * d)
    for foreach in (True, False):
        got = [w.clone()]
        Hypentropy(beta).mirror_step_(got, [d], lr, foreach=foreach)
        torch.testing.assert_close(got[0], want, rtol=1e-12, atol=1e-14)


def test_hypentropy_weights_cross_zero():
    w = [torch.tensor([0.05, -0.05, 0.0], dtype=torch.float64)]
    Hypentropy(0.1).mirror_step_(w, [torch.tensor([1.0, -1.0, 1.0], dtype=torch.float64)], 1.0)
    assert w[0][0] < 0 < w[0][1] and w[0][2] < 0


def test_tsallis_closed_forms_and_ne_limit():
    """q = 1/2: φ = 2(|w| − sqrt|w|), φ' = s(2 − 1/sqrt|w|), φ'' = 1/(2|w|^1.5); q → 1: NE."""
    w = torch.tensor([4.0, -0.25, 1.0], dtype=torch.float64)
    phi = Tsallis(0.5)
    torch.testing.assert_close(
        phi.value(w, elementwise=True), torch.tensor([4.0, -0.5, 0.0], dtype=torch.float64)
    )
    torch.testing.assert_close(phi.grad(w), torch.tensor([1.5, 0.0, 1.0], dtype=torch.float64))
    torch.testing.assert_close(
        phi.hessian_diag(w), torch.tensor([1 / 16, 4.0, 0.5], dtype=torch.float64)
    )
    ne, near = NegativeEntropy(), Tsallis(1 - 1e-9)
    # |φ_q − φ_NE| ≈ (1 − q)·|w| log²|w| / 2: 1e-9 here; the expm1 form has no cancellation
    torch.testing.assert_close(near.grad(w), ne.grad(w), rtol=0, atol=1e-8)
    torch.testing.assert_close(near.value(w), ne.value(w), rtol=0, atol=1e-8)
    u = torch.tensor([0.3, -2.0, 1.0], dtype=torch.float64)
    s = torch.tensor([1.0, -1.0, -1.0], dtype=torch.float64)
    torch.testing.assert_close(
        near.grad_inverse(u, sign=s), ne.grad_inverse(u, sign=s), atol=1e-8, rtol=0
    )


def test_tsallis_zero_and_dual_domain_conventions():
    phi = Tsallis(0.5)
    zero = torch.zeros(2, dtype=torch.float64)
    assert torch.equal(phi.grad(zero), zero) and phi.value(zero).item() == 0.0
    assert torch.equal(phi.grad_inverse(zero + 1, sign=zero), zero)  # sign 0 stays 0
    # the dual domain of a positive weight is u < 1/(1 − q) = 2: at and beyond it, |w| = inf
    out = phi.grad_inverse(torch.tensor([2.0, 5.0, -5.0]), sign=torch.tensor([1.0, 1.0, -1.0]))
    assert torch.equal(out, torch.tensor([math.inf, math.inf, -math.inf]))
    with pytest.raises(InputError, match="needs the sign"):
        phi.grad_inverse(torch.ones(2))
    assert phi.preserves_sign and phi.hessian_power_law() == (math.log(0.5), -1.5)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("hypentropy(beta=0.1)", Hypentropy(0.1)),
        ("Hypentropy( beta = 2 )", Hypentropy(2.0)),
        ("hypentropy(1e-3)", Hypentropy(1e-3)),
        ("eg±(0.5)", Hypentropy(0.5)),
        ("tsallis(q=0.5)", Tsallis(0.5)),
        ("tsallis(.25)", Tsallis(0.25)),
    ],
)
def test_parser_accepts_the_new_families(spec, expected):
    assert potential(spec) == expected


@pytest.mark.parametrize(
    ("spec", "error", "match"),
    [
        ("hypentropy(beta=0)", ValueError, "0 < beta"),
        ("hypentropy(beta=-1)", ValueError, "0 < beta"),
        ("hypentropy()", ValueError, "unknown potential"),
        ("tsallis(q=1)", ValueError, "0 < q < 1"),
        ("tsallis(q=1.5)", ValueError, "0 < q < 1"),
        ("tsallis(q=0)", ValueError, "0 < q < 1"),
    ],
)
def test_parser_rejects_bad_family_parameters(spec, error, match):
    with pytest.raises(error, match=match):
        potential(spec)


def test_family_names_round_trip_for_awkward_parameters():
    for phi in (Hypentropy(0.1 + 0.2), Tsallis(1 / 3), Hypentropy(1e-7)):
        assert potential(phi.name) == phi
        assert phi.with_parameter(phi.parameter) == phi
    with pytest.raises(TypeError, match="real number"):
        Hypentropy("0.1")


@pytest.mark.parametrize(
    ("family", "field", "x", "name", "bounds"),
    [
        (Hypentropy, "beta", 0.5, "hypentropy(beta=0.5)", (0.0, math.inf)),
        (Tsallis, "q", 0.25, "tsallis(q=0.25)", (0.0, 1.0)),
    ],
)
def test_named_family_plumbing(family, field, x, name, bounds):
    """name, parameter, with_parameter and the bounds check come from one base class."""
    phi = family(x)
    assert phi.name == name and phi.parameter == x == getattr(phi, field)
    assert phi.with_parameter(0.75) == family(0.75) and phi.parameter_bounds == bounds
    for bad in bounds:
        with pytest.raises(InputError, match=f"{family.__name__} needs 0 < {field} <"):
            family(bad)
    with pytest.raises(InputError, match=f"real number {field}"):
        family("0.5")

    # the parameter is stored as a Python float (an int or NumPy scalar is converted) and
    # printed in its shortest form
    assert type(family(np.float32(x)).parameter) is float and type(getattr(phi, field)) is float
    assert Hypentropy(2).name == "hypentropy(beta=2)" and type(Hypentropy(2).beta) is float

    class Scaled(family):  # a user's subclass stays itself along the family
        pass

    assert type(Scaled(x).with_parameter(0.75)) is Scaled
