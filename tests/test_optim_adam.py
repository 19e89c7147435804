"""MirrorAdam / MirrorAdamW: torch's Adam/AdamW at p = 2 bit for bit; Adam in the dual space
otherwise, against a hand-written float64 loop (docs/geometries.md)."""

from __future__ import annotations

import copy
import io
import itertools
import math
import warnings

import numpy as np
import pytest
import torch

from syngeo import Hypentropy, MirrorAdam, MirrorAdamW, NegativeEntropy, PNorm, Tsallis
from syngeo.errors import InputError
from user_potentials import Quartic


def _model(seed=0, dtype=torch.float32):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.Tanh(), torch.nn.Linear(7, 2)).to(
        dtype
    )


def _train(model, opt, steps, seed=1):
    g = torch.Generator().manual_seed(seed)
    dtype = next(model.parameters()).dtype
    for _ in range(steps):
        x = torch.randn(16, 5, generator=g).to(dtype)
        opt.zero_grad()
        model(x).pow(2).mean().backward()
        opt.step()


COMBOS = list(itertools.product([False, True], [False, True], [0.0, 0.1], [False, True]))


@pytest.mark.parametrize(("amsgrad", "maximize", "weight_decay", "foreach"), COMBOS)
@pytest.mark.parametrize(
    ("ours", "theirs"), [(MirrorAdam, torch.optim.Adam), (MirrorAdamW, torch.optim.AdamW)]
)
def test_pnorm2_is_torch_adam_bit_for_bit(ours, theirs, amsgrad, maximize, weight_decay, foreach):
    kw = dict(lr=0.01, betas=(0.8, 0.99), eps=1e-6, weight_decay=weight_decay, amsgrad=amsgrad,
              maximize=maximize, foreach=foreach)  # fmt: skip
    a, b = _model(), _model()
    opt_a, opt_b = ours(a.parameters(), potential="2-norm", **kw), theirs(b.parameters(), **kw)
    _train(a, opt_a, 6)
    _train(b, opt_b, 6)
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb)
        for key in opt_b.state[pb]:
            assert torch.equal(opt_a.state[pa][key], opt_b.state[pb][key]), key


def _reference_dual_adam(w0, grads_fn, phi, steps, lr, b1, b2, eps, wd=0.0, decoupled=False,
                         amsgrad=False):  # fmt: skip
    """Adam on u = ∇φ(w), written out in float64 (primal/'auto' decay, no constraints)."""
    w = w0.clone()
    m = torch.zeros_like(w)
    v = torch.zeros_like(w)
    vmax = torch.zeros_like(w)
    for t in range(1, steps + 1):
        g = grads_fn(w)
        r = torch.sign(w) if phi.preserves_sign else w
        if wd and not decoupled:
            g = g + wd * r
        s = torch.sign(w) if phi.preserves_sign else None
        if wd and decoupled and not phi.preserves_sign:
            w = w * (1 - lr * wd)
        u = phi.grad(w)
        if wd and decoupled and phi.preserves_sign:
            u = u - lr * wd * torch.sign(w)
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        vmax = torch.maximum(vmax, v)
        vv = vmax if amsgrad else v
        denom = torch.sqrt(vv) / math.sqrt(1 - b2**t) + eps
        u = u - lr / (1 - b1**t) * m / denom
        w = phi.grad_inverse(u, sign=s)
    return w


@pytest.mark.parametrize("phi", [PNorm(3.0), NegativeEntropy(), Hypentropy(0.3), Tsallis(0.5),
                                 Quartic()], ids=str)  # fmt: skip
@pytest.mark.parametrize("cls", [MirrorAdam, MirrorAdamW])
@pytest.mark.parametrize("amsgrad", [False, True])
@pytest.mark.parametrize("foreach", [False, True])
def test_adam_in_the_dual_space_matches_the_written_out_rule(phi, cls, amsgrad, foreach):
    """float64, 15 steps: each step rounds a few eps per entry and the inverse maps here have
    condition ≤ ~40 on these weights (|w| in [0.05, 3]), hence rtol 1e-11."""
    g = torch.Generator().manual_seed(3)
    w0 = torch.randn(20, generator=g, dtype=torch.float64)
    w0 = torch.where(w0.abs() < 0.05, torch.full_like(w0, 0.3), w0)
    target = torch.randn(20, generator=g, dtype=torch.float64)
    lr, wd = 0.01, 0.05
    w = torch.nn.Parameter(w0.clone())
    opt = cls([w], lr=lr, betas=(0.9, 0.99), eps=1e-8, weight_decay=wd, amsgrad=amsgrad,
              potential=phi, foreach=foreach)  # fmt: skip
    for _ in range(15):
        opt.zero_grad()
        (0.5 * ((w - target) ** 2).sum()).backward()
        opt.step()
    want = _reference_dual_adam(w0, lambda x: x - target, phi, 15, lr, 0.9, 0.99, 1e-8, wd=wd,
                                decoupled=cls is MirrorAdamW, amsgrad=amsgrad)  # fmt: skip
    torch.testing.assert_close(w.detach(), want, rtol=1e-11, atol=1e-14)
    assert (w.detach() - w0).abs().max() > 0.05


@pytest.mark.parametrize("phi", ["3-norm", "ne", "hypentropy(beta=0.3)"])
def test_foreach_matches_the_single_tensor_path(phi):
    """torch's own foreach and single-tensor Adam kernels on the dual weights: equal to rounding
    (float32, 10 steps: 1e-5 relative)."""
    a, b = _model(), _model()
    kw = dict(lr=0.01, weight_decay=0.01, potential=phi, amsgrad=True)
    _train(a, MirrorAdamW(a.parameters(), foreach=True, **kw), 10)
    _train(b, MirrorAdamW(b.parameters(), foreach=False, **kw), 10)
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(pa, pb, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("phi", ["3-norm", "ne", "hypentropy(beta=0.3)", Quartic()], ids=str)
def test_state_dict_round_trip_continues_the_same_trajectory(phi):
    model = _model()
    opt = MirrorAdam(model.parameters(), lr=0.01, potential=phi, weight_decay=1e-3)
    _train(model, opt, 4)
    clone = copy.deepcopy(model)
    buf = io.BytesIO()
    torch.save(opt.state_dict(), buf)
    buf.seek(0)
    opt2 = MirrorAdam(clone.parameters(), lr=0.5, potential="2-norm")
    opt2.load_state_dict(torch.load(buf, weights_only=not isinstance(phi, Quartic)))
    loaded, saved = opt2.param_groups[0]["potential"], opt.param_groups[0]["potential"]
    assert loaded == saved or type(loaded) is type(saved) is Quartic  # Quartic: pickled object
    assert opt2.param_groups[0]["lr"] == 0.01
    _train(model, opt, 3, seed=5)
    _train(clone, opt2, 3, seed=5)
    for pa, pb in zip(model.parameters(), clone.parameters(), strict=True):
        assert torch.equal(pa, pb)


def test_state_dict_stores_a_parsable_name():
    opt = MirrorAdam(_model().parameters(), potential="tsallis(q=0.5)")
    assert opt.state_dict()["param_groups"][0]["potential"] == "tsallis(q=0.5)"


def test_writes_through_data_are_seen():
    """No dual cache: a write through p.data between steps is where the next step starts."""
    w = torch.nn.Parameter(torch.tensor([1.0, 2.0], dtype=torch.float64))
    opt = MirrorAdam([w], lr=0.1, potential="3-norm")
    w.grad = torch.ones(2, dtype=torch.float64)
    opt.step()
    w.data.copy_(torch.tensor([5.0, 5.0], dtype=torch.float64))
    w.grad = torch.zeros(2, dtype=torch.float64)
    m = opt.state[w]["exp_avg"].clone()
    opt.step()
    # u = 25 − lr·m̂/(√v̂ + eps) with m, v decayed by one step
    st = opt.state[w]
    t = float(st["step"])
    step = (
        0.1 / (1 - 0.9**t) * (0.9 * m) / (st["exp_avg_sq"].sqrt() / math.sqrt(1 - 0.999**t) + 1e-8)
    )
    torch.testing.assert_close(w.detach(), torch.sqrt(25 - step), rtol=1e-12, atol=0)


def test_bad_arguments_are_input_errors():
    w = [torch.nn.Parameter(torch.ones(2))]
    with pytest.raises(InputError, match="decay_space"):
        MirrorAdam(w, decay_space="both")
    with pytest.raises(InputError, match="decay_to > 0"):
        MirrorAdamW(w, potential="ne", decay_space="dual")
    with pytest.raises(InputError, match="unknown potential"):
        MirrorAdam(w, potential="banana")
    with pytest.raises(ValueError):
        MirrorAdam(w, lr=-1.0)


def test_zero_weights_under_ne_warn_once():
    w = torch.nn.Parameter(torch.tensor([0.0, 1.0]))
    opt = MirrorAdam([w], lr=0.1, potential="ne")
    w.grad = torch.ones(2)
    with pytest.warns(UserWarning, match="1 weights are exactly 0"):
        opt.step()
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        opt.step()
    assert w[0] == 0
    np.testing.assert_array_less(0, w[1].item())


@pytest.mark.parametrize("phi", ["3-norm", "ne", "hypentropy(beta=0.3)"])
@pytest.mark.parametrize("foreach", [False, True])
def test_maximize_equals_minimising_the_negated_loss(phi, foreach):
    """maximize=True on f is the same run as maximize=False on −f (the gradient negated
    exactly), bit for bit, in every geometry."""
    a, b = _model(), _model()
    oa = MirrorAdam(a.parameters(), lr=0.01, potential=phi, weight_decay=0.01, maximize=True,
                    foreach=foreach)  # fmt: skip
    ob = MirrorAdam(b.parameters(), lr=0.01, potential=phi, weight_decay=0.01, foreach=foreach)
    g = torch.Generator().manual_seed(2)
    for _ in range(5):
        x = torch.randn(16, 5, generator=g)
        oa.zero_grad()
        ob.zero_grad()
        a(x).pow(2).mean().backward()
        (-b(x).pow(2).mean()).backward()
        oa.step()
        ob.step()
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb)


@pytest.mark.parametrize("foreach", [False, True])
def test_soft_ceiling_under_adam_closed_form(foreach):
    """β₁ = 0, eps = 0 and a constant gradient −g: Adam's step is exactly η (m̂/√v̂ = 1), so
    under the 2-norm with a soft ceiling M − w_t = (M − w₀)(1 − η/M)^t."""
    from syngeo import Constraint

    M, eta, w0 = 1.0, 0.1, 0.2
    w = torch.nn.Parameter(torch.tensor([w0], dtype=torch.float64))
    opt = MirrorAdam([w], lr=eta, betas=(0.0, 0.999), eps=0.0, foreach=foreach,
                     constraints=Constraint(max_abs=M, soft=True))  # fmt: skip
    for t in range(1, 31):
        w.grad = torch.tensor([-2.0], dtype=torch.float64)
        opt.step()
        assert w.item() == pytest.approx(M - (M - w0) * (1 - eta / M) ** t, rel=1e-13)


def test_deepcopy_keeps_the_state_dict_hooks_and_new_groups_are_checked():
    model = _model()
    first, *rest = list(model.parameters())
    opt = MirrorAdamW([first], lr=0.01, potential="hypentropy(beta=0.3)")
    opt.add_param_group({"params": rest, "potential": "ne"})
    assert opt.param_groups[1]["potential"] == NegativeEntropy()
    assert copy.deepcopy(opt).state_dict()["param_groups"][1]["potential"] == "NE"
    with pytest.raises(InputError, match="decay_to > 0"):
        opt.add_param_group(
            {
                "params": [torch.nn.Parameter(torch.ones(2))],
                "potential": "ne",
                "decay_space": "dual",
            }
        )
    assert len(opt.param_groups) == 2


# --------------------------------------------------------------------------------------------
# the fused CPU kernel (syngeo.kernels.fused_adam_)
# --------------------------------------------------------------------------------------------
#
# Error bound (float32, ε = 2⁻²⁴). One step from the same float32 state (w, m, v, v_max) is
# compared with the eager float64 step. The kernel's direction d = s_t·m/(√v/√bc₂ + ε) (+ ηλ r
# for decoupled dual/sign decay) is a chain of correctly rounded operations (lerp, v update,
# sqrt, two divisions, one product): its error is at most C·ε times the magnitude
# D = s_t·(|m₀| + |g| + λ|r|)/denom + ηλ|r| (the lerp's and the coupled decay's rounding scale
# with their inputs, not with the possibly cancelling result). That D plays the role of the
# gradient in tests/test_kernels.py's bound (η = 1, no momentum), which then propagates the error
# through the mirror map and its inverse exactly as for MirrorDescent.

from syngeo import kernels  # noqa: E402
from syngeo.potentials import potential as _potential  # noqa: E402
from test_kernels import EPS32, F64, _bound, needs_cpu_kernel  # noqa: E402

FUSED_SPECS = ["3-norm", "2.5-norm", "1.5-norm", "ne", "hypentropy(0.05)", "tsallis(0.5)",
               "tsallis(0.9)"]  # fmt: skip
FUSED_OPTS = [
    dict(),
    dict(amsgrad=True),
    dict(maximize=True, weight_decay=0.1),
    dict(weight_decay=0.1, decay_space="primal"),
    dict(weight_decay=0.1, decay_space="dual", decay_to=0.3),
]


def _adam_one_step(cls, spec, opts, fused, dtype=torch.float32, seed=3):
    g = torch.Generator().manual_seed(seed)
    shapes = [(300,), (17, 9), (5, 4, 3)]
    ws = [(torch.exp(torch.empty(s, dtype=torch.float64).uniform_(-5, 1.5, generator=g))
           * torch.where(torch.rand(s, generator=g) < 0.5, -1.0, 1.0)).float() for s in shapes]  # fmt: skip
    grads = [(0.3 * torch.randn(s, generator=g)).float() for s in shapes]
    m0 = [(0.1 * torch.randn(s, generator=g)).float() for s in shapes]
    v0 = [(0.05 * torch.rand(s, generator=g) + 1e-4).float() for s in shapes]
    params = [torch.nn.Parameter(w.to(dtype)) for w in ws]
    opt = cls(params, lr=0.01, betas=(0.8, 0.99), eps=1e-6, potential=spec, fused=fused, **opts)
    for p, gr, m, v in zip(params, grads, m0, v0, strict=True):
        p.grad = gr.to(dtype)
        opt.state[p]["step"] = torch.tensor(4.0)
        opt.state[p]["exp_avg"] = m.to(dtype).clone()
        opt.state[p]["exp_avg_sq"] = v.to(dtype).clone()
        if opts.get("amsgrad"):
            opt.state[p]["max_exp_avg_sq"] = (1.5 * v).to(dtype)
    opt.step()
    return ws, grads, m0, v0, params, opt


@needs_cpu_kernel
@pytest.mark.parametrize(
    "opts", FUSED_OPTS, ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()) or "plain"
)
@pytest.mark.parametrize("cls", [MirrorAdam, MirrorAdamW])
@pytest.mark.parametrize("spec", FUSED_SPECS)
def test_fused_adam_matches_the_float64_eager_step_within_the_bound(spec, cls, opts):
    if spec in ("ne",) and opts.get("decay_space") == "primal":
        opts = dict(opts, decay_space="auto")
    calls = []
    original = kernels._call_adam
    kernels._call_adam = lambda *a, **k: calls.append(1) or original(*a, **k)
    try:
        ws, grads, m0, _, p32, opt32 = _adam_one_step(cls, spec, opts, True)
    finally:
        kernels._call_adam = original
    assert calls, "the fused Adam kernel did not run"
    _, _, _, _, p64, opt64 = _adam_one_step(cls, spec, opts, False, dtype=torch.float64)
    phi = _potential(spec)
    wd = opt64.param_groups[0]["weight_decay"]
    b1, b2 = 0.8, 0.99
    ss = 0.01 / (1 - b1**5)
    bc2 = math.sqrt(1 - b2**5)
    for j in range(len(ws)):
        w = ws[j].double()
        state = opt64.state[p64[j]]
        v = state["max_exp_avg_sq"] if opts.get("amsgrad") else state["exp_avg_sq"]
        denom = v.sqrt() / bc2 + 1e-6
        r = phi.grad(w).abs() + 1 + w.abs()  # any decay term's magnitude, crudely from above
        d_mag = ss * (m0[j].double().abs() + grads[j].double().abs() + wd * r) / denom
        d_mag = d_mag + 0.01 * wd * r
        bound, _ = _bound(phi, w, d_mag, None, p64[j].detach(), {}, 1.0)
        err = (p32[j].detach().double() - p64[j].detach()).abs()
        assert (err <= bound).all(), (spec, opts, j, (err - bound).max().item())
        for key in ("exp_avg", "exp_avg_sq"):
            a, b = opt32.state[p32[j]][key].double(), opt64.state[p64[j]][key]
            assert ((a - b).abs() <= 4 * EPS32 * (b.abs() + 0.3)).all(), key
        assert float(opt32.state[p32[j]]["step"]) == 5.0


@needs_cpu_kernel
@pytest.mark.parametrize("spec", ["3-norm", "ne"])
def test_fused_adam_bound_sees_a_planted_error(spec):
    """A step 1 % too long breaks the bound (so the test above can fail)."""
    ws, grads, m0, _, p64, opt64 = _adam_one_step(MirrorAdam, spec, {}, False, dtype=F64)
    phi = _potential(spec)
    caught = 0
    for j in range(len(ws)):
        w = ws[j].double()
        state = opt64.state[p64[j]]
        denom = state["exp_avg_sq"].sqrt() / math.sqrt(1 - 0.99**5) + 1e-6
        ss = 0.01 / (1 - 0.8**5)
        d_mag = ss * (m0[j].double().abs() + grads[j].double().abs()) / denom
        bound, _ = _bound(phi, w, d_mag, None, p64[j].detach(), {}, 1.0)
        m1 = state["exp_avg"]
        wrong = phi.grad_inverse(phi.grad(w) - 1.01 * ss * m1 / denom,
                                 sign=torch.sign(w) if phi.preserves_sign else None)  # fmt: skip
        caught += int(((wrong - p64[j].detach()).abs() > bound).sum())
    assert caught > 50


@pytest.mark.parametrize(
    "cls,torch_cls", [(MirrorAdam, torch.optim.Adam), (MirrorAdamW, torch.optim.AdamW)]
)
def test_fused_true_at_p2_is_still_torch_adam_bit_for_bit(cls, torch_cls):
    a, b = _model(4), _model(4)
    opt_a = cls(a.parameters(), lr=0.01, weight_decay=0.1, potential="2-norm", fused=True)
    opt_b = torch_cls(b.parameters(), lr=0.01, weight_decay=0.1)
    _train(a, opt_a, 4)
    _train(b, opt_b, 4)
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb)


@pytest.mark.parametrize("spec", ["3-norm", "ne"])
def test_fused_adam_falls_back_bit_for_bit_without_a_compiler(spec, monkeypatch, tmp_path):
    monkeypatch.setenv("SYNGEO_CC", str(tmp_path / "no-such-compiler"))
    monkeypatch.setattr(kernels, "_ADAM_LIBRARIES", {})
    runs = []
    for fused in (True, False):
        model = _model(5)
        opt = MirrorAdamW(model.parameters(), lr=0.01, potential=spec, amsgrad=True, fused=fused)
        _train(model, opt, 3)
        runs.append([p.detach().clone() for p in model.parameters()])
    for a, b in zip(*runs, strict=True):
        assert torch.equal(a, b)


def test_fused_adam_user_potential_is_eager_and_a_refused_kernel_falls_back(monkeypatch):
    """A user's potential never asks for a kernel; a constrained group whose kernel is refused
    (False) takes the eager step bit for bit."""
    from syngeo.constraints import Constraint

    calls = []
    monkeypatch.setattr(kernels, "fused_adam_", lambda *a, **k: calls.append(k) or False)
    for spec, cons in ((Quartic(), None), ("3-norm", Constraint(max_abs=0.5))):
        calls.clear()
        runs = []
        for fused in (True, False):
            model = _model(6)
            opt = MirrorAdam(model.parameters(), lr=0.01, potential=spec, constraints=cons,
                             fused=fused)  # fmt: skip
            _train(model, opt, 3)
            runs.append([p.detach().clone() for p in model.parameters()])
        for a, b in zip(*runs, strict=True):
            assert torch.equal(a, b)
        if cons is None:
            assert not calls
        else:
            assert calls and all(k["constraints"] is not None for k in calls)


from test_kernels import _constrained_inputs, _constraint_cases  # noqa: E402

CONSTRAINED_ADAM_OPTS = [
    dict(),
    dict(amsgrad=True, maximize=True),
    dict(weight_decay=0.1, decay_space="primal"),
    dict(weight_decay=0.1, decay_space="auto"),
]


def _adam_constrained_step(cls, spec, opts, case, fused, dtype, seed, clip=True):
    import syngeo.optim_adam as oa

    ws, grads, _, cons = _constrained_inputs(seed, case)
    g = torch.Generator().manual_seed(seed + 1)
    m0 = [(0.1 * torch.randn(w.shape, generator=g)).float() for w in ws]
    v0 = [(0.05 * torch.rand(w.shape, generator=g) + 1e-4).float() for w in ws]
    params = [torch.nn.Parameter(w.to(dtype)) for w in ws]
    opt = cls(params, lr=0.01, betas=(0.8, 0.99), eps=1e-6, potential=spec, fused=fused,
              constraints=dict(zip(params, cons, strict=True)), **opts)  # fmt: skip
    for p, gr, m, v in zip(params, grads, m0, v0, strict=True):
        p.grad = gr.to(dtype)
        opt.state[p]["step"] = torch.tensor(4.0)
        opt.state[p]["exp_avg"] = m.to(dtype).clone()
        opt.state[p]["exp_avg_sq"] = v.to(dtype).clone()
        if opts.get("amsgrad"):
            opt.state[p]["max_exp_avg_sq"] = (1.5 * v).to(dtype)
    saved = oa.project_
    if not clip:
        oa.project_ = lambda *a, **k: None
    try:
        opt.step()
    finally:
        oa.project_ = saved
    return ws, grads, m0, cons, [p.detach() for p in params], opt


@needs_cpu_kernel
@pytest.mark.filterwarnings("ignore:.*exactly 0 under the sign-preserving")  # the inputs' zero
@pytest.mark.parametrize("case", [*_constraint_cases(), "mixed"])
@pytest.mark.parametrize(
    "opts", CONSTRAINED_ADAM_OPTS,
    ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()) or "plain",
)  # fmt: skip
@pytest.mark.parametrize("cls", [MirrorAdam, MirrorAdamW])
@pytest.mark.parametrize("spec", ["3-norm", "1.5-norm", "ne", "hypentropy(0.05)", "tsallis(0.5)"])
def test_constrained_fused_adam_matches_the_eager_projection_within_the_bound(
    spec, cls, opts, case
):
    """One constrained fused Adam step against the float64 eager step. Bound: the unconstrained
    Adam bound (test above) evaluated at the lifted weights and at the reference's *unclipped*
    result (the clip is 1-Lipschitz; the soft factor adds two correctly rounded operations to
    the direction, inside its C = 16 allowance), plus 2ε|w'| for the rounding of the bounds;
    elements whose unclipped reference lies within the bound of a floor jump are skipped (at
    most 2 here). The constraint holds exactly in float32."""
    if spec == "ne" and opts.get("decay_space") == "primal":
        opts = dict(opts, decay_space="auto")
    calls = []
    original = kernels._call_adam
    kernels._call_adam = lambda *a, **k: (
        calls.append(k.get("cons") is not None) or original(*a, **k)
    )
    try:
        ws, grads, m0, cons, p32, _ = _adam_constrained_step(cls, spec, opts, case, True,
                                                                torch.float32, 17)  # fmt: skip
    finally:
        kernels._call_adam = original
    assert any(calls), "the constrained Adam kernel did not run"
    _, _, _, _, p64, opt64 = _adam_constrained_step(cls, spec, opts, case, False, F64, 17)
    _, _, _, _, raw64, _ = _adam_constrained_step(cls, spec, opts, case, False, F64, 17,
                                                  clip=False)  # fmt: skip
    phi = _potential(spec)
    wd = opt64.param_groups[0]["weight_decay"]
    ss = 0.01 / (1 - 0.8**5)
    bc2 = math.sqrt(1 - 0.99**5)
    skipped = 0
    for j in range(len(ws)):
        w = ws[j].double()
        if phi.preserves_sign and cons[j].min_abs > 0:  # the lifted zeros, with their sign
            w = torch.where(w == 0, torch.sign(raw64[j]) * cons[j].min_abs, w)
        state = opt64.state[opt64.param_groups[0]["params"][j]]
        v = state["max_exp_avg_sq"] if opts.get("amsgrad") else state["exp_avg_sq"]
        denom = v.sqrt() / bc2 + 1e-6
        r = phi.grad(w).abs() + 1 + w.abs()
        d_mag = ss * (m0[j].double().abs() + grads[j].double().abs() + wd * r) / denom
        d_mag = d_mag + 0.01 * wd * r
        bound, _ = _bound(phi, w, d_mag, None, raw64[j], {}, 1.0)
        bound = bound + 2 * EPS32 * p64[j].abs()
        jump = (cons[j].min_abs > 0) & (raw64[j].abs() <= bound)
        skipped += int(jump.sum())
        err = (p32[j].double() - p64[j]).abs()
        bad = ~(err <= bound) & ~jump
        assert not bad.any(), (spec, opts, case, j, (err - bound)[bad].max().item())
        lo, hi = cons[j].interval_bounds(p32[j])
        if lo is not None:
            assert ((p32[j] >= lo) & (p32[j] <= hi)).all()
        assert (p32[j].abs() <= cons[j].max_abs).all()
        nonzero = p32[j] != 0
        assert (p32[j].abs()[nonzero] >= torch.tensor(cons[j].min_abs).float()).all()
    assert skipped <= 2


@needs_cpu_kernel
def test_fused_adam_auto_only_for_large_float32_groups(monkeypatch):
    import syngeo.optim_adam as oa

    calls = []
    original = kernels._call_adam
    monkeypatch.setattr(kernels, "_call_adam", lambda *a, **k: calls.append(1) or original(*a, **k))
    model = _model(7)
    _train(model, MirrorAdam(model.parameters(), lr=0.01, potential="ne"), 1)
    assert not calls
    monkeypatch.setattr(oa, "AUTO_FUSED_MIN_NUMEL", 10)
    _train(model, MirrorAdam(model.parameters(), lr=0.01, potential="ne"), 1)
    assert calls


def test_fused_keyword_of_mirror_adam_is_validated():
    with pytest.raises(InputError):
        MirrorAdam([torch.nn.Parameter(torch.ones(2))], potential="ne", fused="yes")


@needs_cpu_kernel
@pytest.mark.parametrize("amsgrad", [False, True])
@pytest.mark.parametrize("decay", kernels.ADAM_DECAY_MODES)
@pytest.mark.parametrize("spec", ["3-norm", "2.2-norm", "ne", "hypentropy(2)", "tsallis(0.5)",
                                  "tsallis(0.9)"])  # fmt: skip
def test_every_adam_configuration_builds_and_passes_its_self_test(spec, decay, amsgrad):
    """A kernel failing its self-test would silently fall back (with a warning): none may."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        config = kernels.AdamConfig(decay=decay, amsgrad=amsgrad)
        assert kernels._load_adam(_potential(spec).step_kernel(), config) is not None


@needs_cpu_kernel
@pytest.mark.parametrize("amsgrad", [False, True])
def test_fused_adam_threads_give_the_bits_of_one_thread(amsgrad):
    """Large tensors are cut into segments dealt over threads: every pointer (w, g, m, v and
    v_max) must be offset to the segment, so two threads give one thread's bits exactly."""
    kernel = _potential("3-norm").step_kernel()
    g = torch.Generator().manual_seed(0)
    sizes = (300_000, 70_000, 5)  # the first is cut into several segments
    base = [torch.randn(n, generator=g) for n in sizes]
    grads = [torch.randn(n, generator=g) for n in sizes]
    results = []
    for threads in (1, 2):
        ws = [w.clone() for w in base]
        m1 = [torch.full_like(w, 0.01) for w in ws]
        v = [torch.full_like(w, 0.02) for w in ws]
        vm = [torch.rand(w.shape, generator=torch.Generator().manual_seed(1)) for w in ws]
        steps = [torch.tensor(3.0) for _ in ws]
        before = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            assert kernels.fused_adam_(ws, grads, m1, v, vm, steps, kernel, amsgrad=amsgrad,
                                       beta1=0.9, beta2=0.999, lr=1e-3, eps=1e-8,
                                       weight_decay=0.0, decay="none")  # fmt: skip
        finally:
            torch.set_num_threads(before)
        results.append(ws + m1 + v + (vm if amsgrad else []))
    for a, b in zip(*results, strict=True):
        assert torch.equal(a, b)


@needs_cpu_kernel
def test_fused_adam_refuses_moments_it_cannot_read():
    """Moments of another dtype, shape or layout (a state dict from elsewhere) leave the step to
    the eager path: False and nothing changed."""
    kernel = _potential("ne").step_kernel()
    w, g = torch.rand(4, 3) + 0.1, torch.randn(4, 3)
    good = torch.zeros(4, 3)
    bad = {"float64 v": torch.zeros(4, 3, dtype=torch.float64),
           "transposed v": torch.zeros(3, 4).t(), "shape of v": torch.zeros(3, 4)}  # fmt: skip
    for name, v in bad.items():
        ws = [w.clone()]
        assert not kernels.fused_adam_(ws, [g], [good.clone()], [v], [good.clone()],
                                       [torch.tensor(0.0)], kernel, amsgrad=False, beta1=0.9,
                                       beta2=0.999, lr=1e-3, eps=1e-8, weight_decay=0.0,
                                       decay="none"), name  # fmt: skip
        assert torch.equal(ws[0], w), name
    steps = [torch.tensor(0.0)]
    assert not kernels.fused_adam_([w.clone()], [g], [good.clone()], [good.clone()],
                                   [torch.zeros(4, 3, dtype=torch.float64)], steps, kernel,
                                   amsgrad=True, beta1=0.9, beta2=0.999, lr=1e-3, eps=1e-8,
                                   weight_decay=0.0, decay="none")  # fmt: skip
    assert float(steps[0]) == 0.0  # the step count is not advanced when nothing ran


@needs_cpu_kernel
def test_a_refused_constrained_part_alone_takes_the_eager_path(monkeypatch):
    """Dale's law on one parameter of three. When the kernel refuses the constrained part only,
    that parameter takes the eager step (its bits equal a fused=False run) while the others
    keep the fused kernel's bits (equal to a run where nothing is refused)."""
    from syngeo.constraints import Constraint, dale_mask

    g = torch.Generator().manual_seed(5)
    shapes = [(12, 10), (10,), (3, 12)]
    mask = dale_mask(shapes[0], 6)
    start = [torch.randn(s, generator=g) for s in shapes]
    start[0] = mask * start[0].abs().clamp(min=1e-3)
    grads = [[torch.randn(s, generator=g) for s in shapes] for _ in range(3)]
    original = kernels.fused_adam_

    def run(fused, refuse):
        if refuse:
            monkeypatch.setattr(kernels, "fused_adam_", lambda *a, **k: (
                False if k.get("constraints") is not None else original(*a, **k)))  # fmt: skip
        else:
            monkeypatch.setattr(kernels, "fused_adam_", original)
        params = [torch.nn.Parameter(w.clone()) for w in start]
        opt = MirrorAdam(params, lr=0.01, potential="3-norm", fused=fused,
                         constraints={params[0]: Constraint(sign=mask, max_abs=0.5)})  # fmt: skip
        for step in grads:
            for p, gr in zip(params, step, strict=True):
                p.grad = gr.clone()
            opt.step()
        return [p.detach().clone() for p in params]

    mixed, eager, fused = run(True, True), run(False, False), run(True, False)
    assert torch.equal(mixed[0], eager[0])
    assert all(torch.equal(a, b) for a, b in zip(mixed[1:], fused[1:], strict=True))
    assert not torch.equal(mixed[1], eager[1]) or not torch.equal(mixed[0], fused[0])


@needs_cpu_kernel
@pytest.mark.parametrize("spec", ["ne", "tsallis(0.5)"])
def test_lifted_zeros_under_the_decoupled_dual_decay_stay_eager(spec):
    """The one constrained configuration without a fused kernel (a floor lifts zeros, and AdamW's
    decoupled decay in the dual space needs the lifted weight's mirror image): fused=True gives
    the eager step bit for bit, and the floor holds."""
    from syngeo.constraints import Constraint

    runs = []
    for fused in (True, False):
        torch.manual_seed(0)
        w = torch.rand(50) + 0.05
        w[:5] = 0.0
        p = torch.nn.Parameter(w)
        opt = MirrorAdamW([p], lr=0.01, potential=spec, weight_decay=0.1, decay_space="dual",
                          decay_to=0.3, fused=fused, constraints=Constraint(min_abs=0.01))  # fmt: skip
        for _ in range(3):
            p.grad = torch.randn(50)
            opt.step()
        runs.append(p.detach().clone())
    assert torch.equal(runs[0], runs[1])
    assert (runs[0].abs() >= 0.01 - 1e-9).all()
