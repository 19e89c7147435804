r"""Fused mirror-descent kernels (syngeo.kernels) against the single-tensor reference.

Error bound (float32, ε = 2⁻²⁴), derived once here and used by every comparison. The reference
is ``mirror_descent(..., foreach=False)`` in float64 on the same float32 inputs, so its own
error (~1e-16) is negligible; the float32 kernel rounds each intermediate:

* direction: :math:`d = \pm g + \lambda r(w)`, momentum :math:`b = \mu b_0 + (1-\tau) g`,
  nesterov :math:`g + \mu b`: a few roundings, :math:`|\Delta d| \le C\varepsilon(|\mu b_0| +
  |g| + \lambda |r|)`, where a dual-decay term r = ∇φ(w) − … carries the mirror map's error below;
* mirror map :math:`m = \nabla\phi(w)`: a power :math:`|w|^k` evaluated as ``exp(k log|w|)``
  has relative error :math:`(1 + |k \log|w||)\varepsilon` (the log's absolute error ε·|log|w||
  is multiplied by k and exponentiated); libmvec's functions are within 4 ulp; so
  :math:`|\Delta m| \le C\varepsilon|m|(1 + K|\log|w||)` with K the largest exponent magnitude
  of the potential (p − 1 and 1/(p − 1) for p-norms, 1 and 1/(1 − q) for Tsallis, 1 otherwise);
* dual point :math:`u = m - \eta d`: :math:`\Delta u = |\Delta m| + C\varepsilon\eta|d| +
  \eta|\Delta d|`;
* inverse map :math:`w' = F(u) = (\nabla\phi)^{-1}(u)` is monotone, so an error Δu moves it by
  at most :math:`\max_\pm |F(u \pm \Delta u) - F(u)|` (evaluated in float64; this is the exact
  propagation, which also covers the Hölder behaviour of :math:`|u|^{1/(p-1)}` at u = 0 where
  the derivative is infinite), plus its own evaluation error
  :math:`C\varepsilon|w'|(1 + K|\log|w'||)`.

The fused forms that skip the mirror map (negative entropy :math:`w e^{-\eta s d}`, hypentropy's
addition theorem) are the mirror form with the log's error removed, so the same bound holds.
C = 16: four roundings of up to 4 ulp each. A planted factor-of-two or sign error is orders of
magnitude above it (see the planted-bug record in the final report of this change).
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import textwrap
import warnings

import pytest
import torch

from syngeo import kernels
from syngeo.errors import InputError, InputTypeError
from syngeo.kernels import StepKernel, fused_step_
from syngeo.optim import MirrorDescent, mirror_descent
from syngeo.potentials import potential
from user_potentials import Quartic

EPS32 = 2.0**-24
C = 16.0
F64 = torch.float64

SPECS = ["2.5-norm", "3-norm", "1.5-norm", "1.7-norm", "4-norm", "ne", "hypentropy(0.05)",
         "hypentropy(2)", "tsallis(0.5)", "tsallis(0.3)", "tsallis(0.9)"]  # fmt: skip

OPTIONS = [
    dict(),
    dict(momentum=0.9),
    dict(momentum=0.9, nesterov=True),
    dict(momentum=0.5, dampening=0.3, maximize=True),
    dict(momentum=0.9, weight_decay=0.05),
    dict(momentum=0.9, weight_decay=0.05, decay_space="primal"),
    dict(momentum=0.9, weight_decay=0.05, decay_space="dual", decay_to=0.5),
    dict(weight_decay=0.05, decay_space="dual", decay_to=0.2, maximize=True),
]


def _has_compiler() -> bool:
    """A C compiler and glibc's libmvec: then every kernel must build and be used (a kernel
    that fails its self-test is a bug, not a reason to skip)."""
    import ctypes.util
    import platform

    return (
        platform.system() == "Linux"
        and kernels._compiler() is not None
        and ctypes.util.find_library("mvec") is not None
    )


needs_cpu_kernel = pytest.mark.skipif(
    not _has_compiler(), reason="no C compiler with libmvec here (the eager path is used)"
)


def _exponent_scale(phi) -> float:
    """K of the module docstring: the largest exponent magnitude in the potential's powers."""
    kernel = phi.step_kernel()
    if kernel.family == "pnorm":
        k = kernel.parameter - 1.0
        return max(1.0, k, 1.0 / k)
    if kernel.family == "tsallis":
        return max(1.0, 1.0 / (1.0 - kernel.parameter))
    return 1.0


def _inputs(seed: int, shapes=((300,), (17, 9), (5, 4, 3), ())):
    """Weights with magnitudes over e^-6..e^2 (so log|w| matters), one exact zero, gradients."""
    g = torch.Generator().manual_seed(seed)
    ws, gs, bs = [], [], []
    for shape in shapes:
        mag = torch.exp(torch.empty(shape, dtype=F64).uniform_(-6.0, 2.0, generator=g))
        sign = torch.where(torch.rand(shape, generator=g, dtype=F64) < 0.5, -1.0, 1.0)
        w = (sign * mag).float()
        if w.numel() > 3:
            w.view(-1)[3] = 0.0
        ws.append(w)
        gs.append((0.3 * torch.randn(shape, generator=g, dtype=F64)).float())
        bs.append((0.3 * torch.randn(shape, generator=g, dtype=F64)).float())
    return ws, gs, bs


def _bound(phi, w, g, b0, new_ref, opts, lr):
    """Per-element bound of the module docstring (float64 tensors)."""
    k = _exponent_scale(phi)
    a = w.abs()
    log_a = torch.where(a > 0, a.log().abs(), torch.zeros_like(a))
    amp = 1.0 + k * log_a
    m = phi.grad(w)
    mom = opts.get("momentum", 0.0)
    wd = opts.get("weight_decay", 0.0)
    r = (m.abs() * amp) if opts.get("decay_space") == "dual" else torch.ones_like(w) * (1 + a)
    b_mag = (mom * b0.abs() if b0 is not None else 0.0) + g.abs() + wd * r
    d_mag = b_mag * (1.0 + mom)  # |d| ≤ |g| + μ|b| (nesterov) or |b|
    dd = C * EPS32 * d_mag
    du = C * EPS32 * (m.abs() * amp + lr * d_mag) + lr * dd
    sign = torch.sign(w) if phi.preserves_sign else None
    u = phi.grad(new_ref)
    lo = phi.grad_inverse(u - du, sign=sign)
    hi = phi.grad_inverse(u + du, sign=sign)
    spread = torch.maximum((lo - new_ref).abs(), (hi - new_ref).abs())
    spread = torch.nan_to_num(spread, nan=0.0)
    new_log = torch.where(new_ref != 0, new_ref.abs().log().abs(), torch.zeros_like(new_ref))
    return spread + C * EPS32 * new_ref.abs() * (1.0 + k * new_log), dd + C * EPS32 * b_mag


def _one_step(spec, opts, seed, *, fused, first):
    """One step from identical float32 inputs; returns (fused float32, reference float64)."""
    phi = potential(spec)
    lr = 0.05
    ws, gs, bs = _inputs(seed)
    has_mom = opts.get("momentum", 0.0) != 0
    bufs32 = [None if first else b.clone() for b in bs] if has_mom else []
    bufs64 = [None if first else b.double() for b in bs] if has_mom else []
    w32 = [w.clone() for w in ws]
    w64 = [w.double() for w in ws]
    mirror_descent(w32, gs, bufs32, potential=phi, lr=lr, fused=fused, **opts)
    mirror_descent(w64, [g.double() for g in gs], bufs64, potential=phi, lr=lr, foreach=False,
                   **opts)  # fmt: skip
    return phi, lr, ws, gs, bs, w32, w64, bufs32, bufs64


def _assert_within_bound(spec, opts, seed, *, fused=True, first=False):
    calls = []
    original = kernels._call_c

    def spy(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    kernels._call_c = spy
    try:
        phi, lr, ws, gs, bs, w32, w64, bufs32, bufs64 = _one_step(
            spec, opts, seed, fused=fused, first=first
        )
    finally:
        kernels._call_c = original
    assert bool(calls) == bool(fused), "the fused kernel did not run" if fused else "it ran"
    for j in range(len(ws)):
        b0 = None if first or not bufs64 else bs[j].double()
        bound_w, bound_b = _bound(phi, ws[j].double(), gs[j].double(), b0, w64[j], opts, lr)
        err = (w32[j].double() - w64[j]).abs()
        bad = ~(err <= bound_w)
        assert not bad.any(), (
            f"{spec} {opts} tensor {j}: max excess {(err - bound_w)[bad].max().item():.3g}, "
            f"w={ws[j].double()[bad][:3].tolist()} fused={w32[j][bad][:3].tolist()} "
            f"ref={w64[j][bad][:3].tolist()}"
        )
        if bufs64:
            errb = (bufs32[j].double() - bufs64[j]).abs()
            assert (errb <= bound_b).all(), (spec, opts, j, (errb - bound_b).max().item())
            assert bufs32[j].dtype == torch.float32


# --------------------------------------------------------------------------------------------
# CPU kernel vs the single-tensor reference
# --------------------------------------------------------------------------------------------


@needs_cpu_kernel
@pytest.mark.parametrize(
    "opts", OPTIONS, ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()) or "plain"
)
@pytest.mark.parametrize("spec", SPECS)
def test_cpu_kernel_matches_reference_within_the_rounding_bound(spec, opts):
    _assert_within_bound(spec, opts, seed=1)
    if opts.get("momentum"):
        _assert_within_bound(spec, opts, seed=2, first=True)  # b₁ = g₁ from the kernel


@pytest.mark.parametrize("spec", ["2.5-norm", "3-norm", "ne", "hypentropy(0.05)", "tsallis(0.5)"])
def test_eager_float32_path_satisfies_the_same_bound(spec):
    """The bound is not tailored to the kernel: the existing eager float32 path meets it too."""
    for opts in OPTIONS[:3] + OPTIONS[6:7]:
        _assert_within_bound(spec, opts, seed=3, fused=False)


@needs_cpu_kernel
@pytest.mark.parametrize("momentum", [False, True])
@pytest.mark.parametrize("decay", kernels.DECAY_MODES)
@pytest.mark.parametrize("spec", [*SPECS, "2-norm", "2.2-norm"])
def test_every_configuration_builds_and_passes_its_self_test(spec, decay, momentum):
    """With a compiler, no configuration may fall back: the self-test compares each built
    kernel with the eager formulas (so a wrong kernel is caught here, not silently skipped)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a failed self-test warns
        assert kernels.cpu_kernel_available(potential(spec).step_kernel(), decay, momentum=momentum)


@needs_cpu_kernel
@pytest.mark.parametrize("spec", ["3-norm", "ne", "2.2-norm"])
def test_kernel_is_actually_used_and_differs_from_a_planted_error(spec, monkeypatch):
    """The bound is tight enough to see a step 1 % too long (so a test of it can fail)."""
    calls = []
    original = kernels._call_c
    monkeypatch.setattr(kernels, "_call_c", lambda *a, **k: calls.append(1) or original(*a, **k))
    phi, lr, ws, gs, _, _, w64, _, _ = _one_step(spec, {}, 4, fused=True, first=True)
    assert calls, "the fused kernel did not run"
    w_long = [w.double() for w in ws]
    mirror_descent(w_long, [g.double() for g in gs], [], potential=phi, lr=lr * 1.01,
                   foreach=False)  # fmt: skip
    caught = 0
    for j in range(len(ws)):
        bound, _ = _bound(phi, ws[j].double(), gs[j].double(), None, w64[j], {}, lr)
        caught += int(((w_long[j] - w64[j]).abs() > bound).sum())
    assert caught > 10


@needs_cpu_kernel
def test_threads_split_tensors_without_changing_a_bit():
    """Elements are independent: 1 and 3 threads (segments across tensors) give the same bits."""
    g = torch.Generator().manual_seed(5)
    shapes = [(300_001,), (70_000, 3), (17,), (140_000,)]
    results = []
    for threads in (1, 3):
        ws = [
            torch.randn(s, generator=torch.Generator().manual_seed(9 + i))
            for i, s in enumerate(shapes)
        ]
        gs = [
            torch.randn(s, generator=torch.Generator().manual_seed(99 + i))
            for i, s in enumerate(shapes)
        ]
        bufs: list = [None] * len(ws)
        previous = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            for _ in range(2):
                assert fused_step_(ws, gs, bufs, StepKernel("pnorm", 2.5), lr=0.01, momentum=0.9)
        finally:
            torch.set_num_threads(previous)
        results.append((ws, bufs))
    del g
    for a, b in zip(results[0][0] + results[0][1], results[1][0] + results[1][1], strict=True):
        assert torch.equal(a, b)


# --------------------------------------------------------------------------------------------
# the optimizer: selection, fallback, GradScaler, writes through p.data
# --------------------------------------------------------------------------------------------


def _model(seed=0, dtype=torch.float32):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.Tanh(), torch.nn.Linear(5, 1)).to(
        dtype
    )


def _train(model, opt, steps, scaler=None):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(32, 6, generator=g, dtype=next(model.parameters()).dtype)
    y = torch.randn(32, 1, generator=g, dtype=x.dtype)
    for _ in range(steps):
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), y)
        if scaler is None:
            loss.backward()
            opt.step()
        else:
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()


def test_user_potential_takes_the_generic_path_under_fused_true(monkeypatch):
    calls = []
    monkeypatch.setattr(kernels, "fused_step_", lambda *a, **k: calls.append(1) or False)
    runs = []
    for fused in (True, False):
        model = _model(2, F64)
        opt = MirrorDescent(model.parameters(), lr=0.05, potential=Quartic(), momentum=0.9,
                            weight_decay=0.01, fused=fused)  # fmt: skip
        _train(model, opt, 5)
        runs.append([p.detach().clone() for p in model.parameters()])
    assert not calls  # no kernel is even asked for: Quartic has no step_kernel
    for a, b in zip(*runs, strict=True):
        assert torch.equal(a, b)


def test_without_a_compiler_fused_falls_back_silently(monkeypatch, tmp_path, recwarn):
    monkeypatch.setenv("SYNGEO_CC", str(tmp_path / "no-such-compiler"))
    monkeypatch.setenv("SYNGEO_KERNEL_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(kernels, "_LIBRARIES", {})
    assert not kernels.cpu_kernel_available(StepKernel("pnorm", 3.0), "none", momentum=True)
    runs = []
    for fused in (True, False):
        model = _model(3)
        opt = MirrorDescent(model.parameters(), lr=0.05, potential="3-norm", momentum=0.9,
                            fused=fused)  # fmt: skip
        _train(model, opt, 4)
        runs.append([p.detach().clone() for p in model.parameters()])
    for a, b in zip(*runs, strict=True):
        assert torch.equal(a, b)
    assert not [w for w in recwarn.list if "kernel" in str(w.message).lower()]
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())


@needs_cpu_kernel
def test_layouts_the_kernels_cannot_read_are_refused():
    """The kernels read each tensor as numel contiguous elements of one dtype: a gradient of
    another shape (same numel), a transposed gradient, momentum of another dtype or a weight of
    another dtype must each leave the step to the eager path (False, nothing written)."""
    kernel = potential("3-norm").step_kernel()
    w = torch.randn(4, 3)
    cases = {
        "grad shape": ([w.clone()], [torch.randn(3, 4)], [torch.randn(4, 3)]),
        "grad strides": ([w.clone()], [torch.randn(3, 4).t()], [torch.randn(4, 3)]),
        "momentum dtype": ([w.clone()], [torch.randn(4, 3)], [torch.randn(4, 3).double()]),
        "momentum shape": ([w.clone()], [torch.randn(4, 3)], [torch.randn(3, 4)]),
        "weight dtype": ([w.double()], [torch.randn(4, 3).double()], [torch.randn(4, 3)]),
        "grad dtype": ([w.clone()], [torch.randn(4, 3).double()], [torch.randn(4, 3)]),
    }
    for name, (ws, gs, bs) in cases.items():
        before = [x.clone() for x in ws + bs]
        assert not fused_step_(ws, gs, bs, kernel, lr=0.1, momentum=0.9), name
        assert all(torch.equal(a, b) for a, b in zip(ws + bs, before, strict=True)), name
    assert fused_step_(
        [w.clone()], [torch.randn(4, 3)], [torch.randn(4, 3)], kernel, lr=0.1, momentum=0.9
    )  # fmt: skip (the layout that is accepted)


@needs_cpu_kernel
def test_cached_kernel_arguments_follow_the_sizes_at_the_same_addresses():
    """The C kernel's arguments are cached by address: a shorter tensor at the same address
    (a view of the same storage) must not be updated over its old length."""
    kernel = potential("ne").step_kernel()
    storage, grads = torch.rand(300) + 0.5, torch.rand(300)
    assert fused_step_([storage[:300]], [grads[:300]], None, kernel, lr=0.1)
    kept = storage[100:].clone()
    assert fused_step_([storage[:100]], [grads[:100]], None, kernel, lr=0.1)
    assert torch.equal(storage[100:], kept)


@needs_cpu_kernel
def test_auto_fuses_only_large_float32_cpu_groups(monkeypatch):
    import syngeo.optim as optim

    calls = []
    original = kernels.fused_step_
    monkeypatch.setattr(
        kernels, "fused_step_", lambda *a, **k: calls.append(1) or original(*a, **k)
    )
    model = _model(4)
    _train(model, MirrorDescent(model.parameters(), lr=0.01, potential="ne"), 2)
    assert not calls  # 36 parameters: far below AUTO_FUSED_MIN_NUMEL
    monkeypatch.setattr(optim, "AUTO_FUSED_MIN_NUMEL", 10)
    _train(model, MirrorDescent(model.parameters(), lr=0.01, potential="ne"), 2)
    assert len(calls) == 2
    _train(model, MirrorDescent(model.parameters(), lr=0.01, potential="ne", fused=False), 1)
    _train(model, MirrorDescent(model.parameters(), lr=0.01, potential="ne", foreach=False), 1)
    assert len(calls) == 2  # fused=False and the reference loop never fuse


@needs_cpu_kernel
@pytest.mark.parametrize("spec", ["2-norm", "3-norm", "ne", "tsallis(0.5)"])
def test_grad_scaler_contract_under_fused_true(spec):
    """GradScaler hands grad_scale/found_inf to the step (``_step_supports_amp_scaling``): the
    result equals the unscaled run (power-of-two scales are exact) and an inf skips the step,
    momentum included."""
    model_a, model_b = _model(7), _model(7)
    opt_a = MirrorDescent(model_a.parameters(), lr=0.05, potential=spec, momentum=0.9, fused=True)
    opt_b = MirrorDescent(model_b.parameters(), lr=0.05, potential=spec, momentum=0.9, fused=True)
    assert opt_a._step_supports_amp_scaling
    assert not MirrorDescent(model_a.parameters(), lr=0.1)._step_supports_amp_scaling
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**12)
    _train(model_a, opt_a, 4, scaler=scaler)
    _train(model_b, opt_b, 4)
    for a, b in zip(model_a.parameters(), model_b.parameters(), strict=True):
        assert torch.equal(a, b)
    before = [p.detach().clone() for p in model_a.parameters()]
    bufs = [opt_a.state[p]["momentum_buffer"].clone() for p in model_a.parameters()]
    opt_a.zero_grad()
    x = torch.randn(4, 6)
    scaler.scale(model_a(x).sum() * float("inf")).backward()
    scaler.step(opt_a)
    scaler.update()
    for p, w, b in zip(model_a.parameters(), before, bufs, strict=True):
        assert torch.equal(p, w)
        assert torch.equal(opt_a.state[p]["momentum_buffer"], b)
    assert scaler.get_scale() == 2.0**11


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("spec", ["3-norm", "p=2.5", "ne", "tsallis(0.5)", "hypentropy(0.05)"])
def test_fused_true_on_cuda_under_grad_scaler_and_autocast(spec, monkeypatch):
    """On a GPU, ``fused=True`` runs the Triton kernel (spied), takes GradScaler's grad_scale
    and found_inf itself, and follows the eager step: float32 weights within 1e-4 relative
    after 5 steps (each step agrees to the kernel bound, ~16ε(1 + K|log|w||) ≈ 1e-5; later
    gradients inherit the difference through the tanh network, a factor of order 1 here).
    Under float16 autocast the same loop trains without non-finite values."""
    pytest.importorskip("triton")
    launches = []
    original = kernels._call_triton
    monkeypatch.setattr(kernels, "_call_triton",
                        lambda *a, **k: launches.append(1) or original(*a, **k))  # fmt: skip
    dev = torch.device("cuda")
    runs = {}
    for fused in (True, False):
        model = _model(7).to(dev)
        opt = MirrorDescent(model.parameters(), lr=0.05, potential=spec, momentum=0.9,
                            nesterov=True, fused=fused)  # fmt: skip
        scaler = torch.amp.GradScaler("cuda", init_scale=2.0**12)
        g = torch.Generator().manual_seed(1)
        x, y = torch.randn(32, 6, generator=g).to(dev), torch.randn(32, 1, generator=g).to(dev)
        for _ in range(5):
            opt.zero_grad()
            scaler.scale(torch.nn.functional.mse_loss(model(x), y)).backward()
            scaler.step(opt)
            scaler.update()
        runs[fused] = (model, opt, scaler, x)
    assert launches, "the Triton kernel was not used"
    for a, b in zip(runs[True][0].parameters(), runs[False][0].parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
    model, opt, scaler, x = runs[True]
    before = [p.detach().clone() for p in model.parameters()]
    bufs = [opt.state[p]["momentum_buffer"].clone() for p in model.parameters()]
    opt.zero_grad()
    scaler.scale(model(x).sum() * float("inf")).backward()
    scale = scaler.get_scale()
    scaler.step(opt)
    scaler.update()
    for p, w, b in zip(model.parameters(), before, bufs, strict=True):
        assert torch.equal(p, w) and torch.equal(opt.state[p]["momentum_buffer"], b)
    assert scaler.get_scale() == scale / 2
    for _ in range(5):  # mixed precision end to end (backward outside autocast, as advised)
        opt.zero_grad()
        with torch.autocast("cuda", dtype=torch.float16):
            loss = model(x).float().pow(2).mean()
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
    assert all(bool(torch.isfinite(p).all()) for p in model.parameters())


@needs_cpu_kernel
@pytest.mark.parametrize("route", ["data.mul_", "data.clamp_", "data="])
@pytest.mark.parametrize("spec", ["3-norm", "p=2.5", "ne", "tsallis(0.5)"])
def test_fused_step_never_loses_writes_through_data(spec, route):
    """The kernels keep no dual state: after a write, a zero-lr step keeps the written weights
    (the round trip (∇φ)⁻¹(∇φ(w)) to the float32 bound) and training continues from them."""
    phi = potential(spec)
    k = _exponent_scale(phi)
    model = _model(5)
    opt = MirrorDescent(model.parameters(), lr=0.05, potential=spec, momentum=0.9, fused=True)
    _train(model, opt, 3)
    edits = {
        "data.mul_": lambda q: q.data.mul_(2.0),
        "data.clamp_": lambda q: q.data.clamp_(min=0),
        "data=": lambda q: setattr(q, "data", -0.5 * q.data),
    }
    for p in model.parameters():
        edits[route](p)
    written = [p.detach().clone() for p in model.parameters()]
    opt.param_groups[0]["lr"] = 0.0
    opt.param_groups[0]["momentum"] = 0.0
    _train(model, opt, 1)
    for p, w in zip(model.parameters(), written, strict=True):
        a = w.double().abs()
        log_a = torch.where(a > 0, a.log().abs(), torch.zeros_like(a))
        tol = C * EPS32 * a * (1 + k * log_a) * 2
        assert ((p.double() - w.double()).abs() <= tol).all()


@pytest.mark.parametrize(
    "opts",
    [dict(), dict(momentum=0.9, nesterov=True, weight_decay=0.01),
     dict(momentum=0.5, dampening=0.3, maximize=True), dict(weight_decay=0.1, maximize=True)],
    ids=str,
)  # fmt: skip
def test_pnorm2_fused_is_bitwise_sgd_fused(opts):
    """fused=True under the 2-norm is torch.optim.SGD(fused=True), bit for bit."""
    model_md, model_sgd = _model(6), _model(6)
    lr = 0.05 if not opts.get("maximize") else 1e-3
    md = MirrorDescent(model_md.parameters(), lr=lr, potential="2-norm", fused=True, **opts)
    sgd = torch.optim.SGD(model_sgd.parameters(), lr=lr, fused=True, **opts)
    _train(model_md, md, 6)
    _train(model_sgd, sgd, 6)
    for a, b in zip(model_md.parameters(), model_sgd.parameters(), strict=True):
        assert torch.equal(a, b)


@needs_cpu_kernel
def test_mixed_dtypes_fuse_the_float32_group_and_step_the_rest_eagerly():
    """fused=True with float32 and float64 parameters: the float64 ones take the eager step
    (bit for bit fused=False), the float32 ones the kernel (within the bound); every momentum
    buffer is kept."""
    g = torch.Generator().manual_seed(8)
    shapes = [(40,), (7, 3), (25,), (4, 4)]
    dtypes = [torch.float32, F64, torch.float32, F64]
    runs = []
    for fused in (True, False):
        ps = [torch.nn.Parameter(torch.randn(s, generator=torch.Generator().manual_seed(i)).to(d))
              for i, (s, d) in enumerate(zip(shapes, dtypes, strict=True))]  # fmt: skip
        opt = MirrorDescent(ps, lr=0.05, potential="3-norm", momentum=0.9, fused=fused)
        for step in range(3):
            gen = torch.Generator().manual_seed(100 + step)
            for p in ps:
                p.grad = torch.randn(p.shape, generator=gen).to(p.dtype)
            opt.step()
        runs.append((ps, [opt.state[p]["momentum_buffer"] for p in ps]))
    del g
    (fused_ps, fused_bufs), (eager_ps, eager_bufs) = runs
    for a, b, ba, bb, d in zip(fused_ps, eager_ps, fused_bufs, eager_bufs, dtypes, strict=True):
        if d == F64:
            assert torch.equal(a, b) and torch.equal(ba, bb)
        else:
            # 3 steps of the module bound: relative 3·C·ε·(1 + 2|log|w||) ≲ 5e-5 for |w| in
            # e^±4; absolute, the Hölder term near u = 0 of sqrt: 3·sqrt(C·ε·|m|), |m| ≤ 16
            torch.testing.assert_close(a, b, rtol=5e-5, atol=3 * math.sqrt(C * EPS32 * 16))
            # buffers depend on the gradients only: one rounding apart per step (FMA or not)
            torch.testing.assert_close(ba, bb, rtol=3 * 2 * EPS32 * 4, atol=1e-7)


def test_fused_keyword_is_validated():
    w = torch.nn.Parameter(torch.ones(3))
    with pytest.raises(InputTypeError, match="fused"):
        MirrorDescent([w], lr=0.1, fused="yes")
    with pytest.raises(InputError, match="fused=True and foreach=True"):
        MirrorDescent([w], lr=0.1, fused=True, foreach=True)


def test_generated_source_uses_exact_powers_where_they_exist():
    """p = 3 and p = 1.5 are square roots and products (no exp/log); p = 2.5 a square root and
    a cube root; Tsallis(1/2) a reciprocal square root and a division; other p exp2(k·log2)."""
    body = kernels._c_body
    assert "expf" not in body(StepKernel("pnorm", 3.0), "none", True)
    assert "logf" not in body(StepKernel("pnorm", 1.5), "none", True)
    assert "cbrtf" in body(StepKernel("pnorm", 2.5), "none", True)
    assert "expf" not in body(StepKernel("tsallis", 0.5), "none", True)
    assert body(StepKernel("pnorm", 2.2), "none", True).count("exp2f") == 2
    assert "expm1f" in body(StepKernel("tsallis", 0.9), "none", True)  # accurate as q → 1


# --------------------------------------------------------------------------------------------
# Triton kernel under the interpreter (CPU tensors); never run on a GPU here
# --------------------------------------------------------------------------------------------

_TRITON_SCRIPT = textwrap.dedent(
    """
    import json, math, sys, torch
    sys.path.insert(0, {tests!r})
    import test_kernels as t
    from syngeo import kernels
    from syngeo.kernels import fused_step_
    from syngeo.optim import _kernel_decay
    from syngeo.potentials import potential
    from syngeo.kernels import TRITON_BLOCK, triton_launch_tables

    dev = {device!r}
    interp = dev == "cpu"  # Triton's interpreter on CPU tensors, else the GPU

    def unaligned(x):  # the same values at an address 4 bytes past a 16-byte boundary
        buf = torch.empty(x.numel() + 1, dtype=x.dtype, device=dev)
        view = buf[1:].view(x.shape)
        view.copy_(x)
        return view

    # full blocks (unmasked path), several blocks per tensor, a last partial block, a scalar
    shapes = ((2 * TRITON_BLOCK + 452,), (32, TRITON_BLOCK // 32), (0, 5), (17, 9), (5, 4, 3), ())
    out, alignments = [], set()
    case = 0
    for spec in {specs!r}:
        for opts in {options!r}:
            phi = potential(spec)
            ws, gs, bs = t._inputs(11, shapes)
            mom = opts.get("momentum", 0.0)
            decay, ref = _kernel_decay(phi, opts.get("weight_decay", 0.0),
                                       opts.get("decay_space", "auto"), opts.get("decay_to", 0.0))
            # every other case at unaligned addresses (scalar loads, no hint)
            copy = unaligned if case % 2 else (lambda x: x.to(dev, copy=True))
            case += 1
            w32, g32 = [copy(w) for w in ws], [copy(g * 4.0) for g in gs]
            bufs = [copy(b) for b in bs] if mom else None
            alignments.add(triton_launch_tables(w32, g32, bufs, TRITON_BLOCK)[3])
            scale = torch.tensor(4.0, device=dev)
            ok = fused_step_(w32, g32, bufs, phi.step_kernel(), lr=0.05,
                             momentum=mom, dampening=opts.get("dampening", 0.0),
                             weight_decay=opts.get("weight_decay", 0.0), decay=decay,
                             decay_ref=ref, nesterov=opts.get("nesterov", False),
                             maximize=opts.get("maximize", False), grad_scale=scale,
                             found_inf=torch.tensor(0.0, device=dev), interpret=interp)
            assert ok
            w64 = [w.double() for w in ws]
            b64 = [b.double() for b in bs] if mom else []
            from syngeo.optim import mirror_descent
            mirror_descent(w64, [g.double() for g in gs], b64, potential=phi, lr=0.05,
                           foreach=False, **opts)
            worst = 0.0
            for j in range(len(ws)):
                if not ws[j].numel():
                    continue
                bw, bb = t._bound(phi, ws[j].double(), gs[j].double(),
                                  bs[j].double() if mom else None, w64[j], opts, 0.05)
                worst = max(worst, float(((w32[j].double().cpu() - w64[j]).abs() / bw.clamp_min(1e-300)).max()))
                if mom:  # the momentum written back, within its own bound
                    worst = max(worst, float(((bufs[j].double().cpu() - b64[j]).abs() / bb.clamp_min(1e-300)).max()))
            out.append([spec, str(opts), worst])
    # found_inf skips everything; bf16 parameters keep float32 momentum
    ws, gs, bs = ([x.to(dev) for x in xs] for xs in t._inputs(12))
    before = [w.clone() for w in ws]
    fused_step_(ws, gs, [b.clone() for b in bs], potential("ne").step_kernel(), lr=0.5,
                momentum=0.9, found_inf=torch.tensor(1.0, device=dev), interpret=interp)
    skipped = all(torch.equal(a, b) for a, b in zip(ws, before))
    wb = [w.bfloat16() for w in ws]
    bufs = [None] * len(wb)
    fused_step_(wb, [g.bfloat16() for g in gs], bufs, potential("3-norm").step_kernel(), lr=0.05,
                momentum=0.9, interpret=interp)
    ws, gs = [w.cpu() for w in ws], [g.cpu() for g in gs]
    w64 = [w.bfloat16().double() for w in ws]
    b64 = [None] * len(ws)
    from syngeo.optim import mirror_descent
    mirror_descent(w64, [g.bfloat16().double() for g in gs], b64, potential="3-norm", lr=0.05,
                   momentum=0.9, foreach=False)
    bf16_err = max(float(((a.double().cpu() - b).abs() / (b.abs() + 1e-30)).max()) for a, b in zip(wb, w64) if a.numel())
    # one call over float32 and bfloat16 tensors (two launches) = two calls, one per dtype
    ws, gs, bs = ([x.to(dev) for x in xs] for xs in t._inputs(13, shapes))
    mixed_w = [w.bfloat16() if j % 2 else w.clone() for j, w in enumerate(ws)]
    mixed_g = [g.bfloat16() if j % 2 else g for j, g in enumerate(gs)]
    mixed_b = [b.clone() for b in bs]
    apart_w, apart_b = [w.clone() for w in mixed_w], [b.clone() for b in bs]
    step = dict(lr=0.05, momentum=0.9, nesterov=True)
    fused_step_(mixed_w, mixed_g, mixed_b, potential("ne").step_kernel(), interpret=interp, **step)
    for parity in (0, 1):
        idx = [j for j in range(len(ws)) if j % 2 == parity]
        sub_w, sub_b = [apart_w[j] for j in idx], [apart_b[j] for j in idx]
        fused_step_(sub_w, [mixed_g[j] for j in idx], sub_b, potential("ne").step_kernel(),
                    interpret=interp, **step)
        for k, j in enumerate(idx):
            apart_w[j], apart_b[j] = sub_w[k], sub_b[k]
    mixed_same = all(torch.equal(a, b) for a, b in zip(mixed_w + mixed_b, apart_w + apart_b))
    # expm1/log1p: libdevice's on the GPU, Kahan's forms in the interpreter: accurate for tiny
    # arguments either way
    import triton, triton.language as tl
    from syngeo import _triton_step as ts

    x = torch.tensor([1e-9, -3e-7, 2e-5, -1e-3, 0.3, -0.6, 5.0], dtype=torch.float32)

    @triton.jit
    def helpers(x_ptr, a_ptr, b_ptr, ACCURATE: tl.constexpr, BLOCK: tl.constexpr):
        offs = tl.arange(0, BLOCK)
        v = tl.load(x_ptr + offs)
        tl.store(a_ptr + offs, ts._log1p_of(v, ACCURATE))
        tl.store(b_ptr + offs, ts._expm1_of(v, ACCURATE))

    xs = torch.cat([x, torch.zeros(1)]).to(dev)
    y1, y2 = torch.empty_like(xs), torch.empty_like(xs)
    helpers[(1,)](xs, y1, y2, ACCURATE=not interp, BLOCK=8)
    xs, y1, y2 = xs.cpu(), y1.cpu(), y2.cpu()
    rel1 = ((y1.double() - torch.log1p(xs.double())).abs() / torch.log1p(xs.double()).abs().clamp_min(1e-300))[:-1]
    rel2 = ((y2.double() - torch.expm1(xs.double())).abs() / torch.expm1(xs.double()).abs().clamp_min(1e-300))[:-1]
    helper_err = max(float(rel1.max()), float(rel2.max()))
    print(json.dumps(dict(rows=out, skipped=skipped, bf16_err=bf16_err, helper_err=helper_err,
                          buf_dtypes=sorted({{str(b.dtype) for b in bufs}}),
                          alignments=sorted(alignments), mixed_same=mixed_same)))
    """
)


def _run_triton_script(device: str) -> None:
    specs = ["3-norm", "2.5-norm", "1.5-norm", "ne", "hypentropy(0.05)", "tsallis(0.5)"]
    script = _TRITON_SCRIPT.format(tests=os.path.dirname(__file__), specs=specs,
                                   options=OPTIONS, device=device)  # fmt: skip
    env = dict(os.environ)
    if device == "cpu":
        env["TRITON_INTERPRET"] = "1"
    else:
        env.pop("TRITON_INTERPRET", None)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env=env, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    import json

    result = json.loads(done.stdout.strip().splitlines()[-1])
    for spec, opts, worst in result["rows"]:
        # the Triton kernel uses exp(k·log) powers (and Kahan's expm1/log1p forms in the
        # interpreter); it must stay within the same bound as the C kernel
        assert worst <= 1.0, (spec, opts, worst)
    assert result["skipped"]
    assert result["helper_err"] <= 8 * EPS32  # a few ulp, also at 1e-9
    assert result["buf_dtypes"] == ["torch.float32"]
    assert result["alignments"] == [False, True]  # both paths of the kernel were taken
    assert result["mixed_same"]
    # bf16 storage: one rounding of the result to 8 bits (2^-8 relative), plus the inputs'
    assert result["bf16_err"] <= 2.0**-7
    assert math.isfinite(result["bf16_err"])


def test_triton_kernel_under_the_interpreter_matches_the_reference():
    pytest.importorskip("triton")
    _run_triton_script("cpu")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_triton_kernel_on_a_gpu_matches_the_reference():
    """The same checks on the GPU: compiled kernel, libdevice expm1/log1p, approximate
    exp/log of the special-function unit, 128-bit vector path."""
    pytest.importorskip("triton")
    _run_triton_script("cuda")


def test_triton_launch_tables_cover_every_element_once():
    """The host side of the multi-tensor launch: every (tensor, block) pair exactly once, in
    order, the addresses and sizes as given, the alignment flag exact, tables cached."""
    block = 8
    base = torch.zeros(64)
    ws = [torch.zeros(20), torch.zeros(8), torch.zeros(3), torch.zeros(17)]
    gs = [torch.zeros_like(w) for w in ws]
    table, tensor, index, aligned = kernels.triton_launch_tables(ws, gs, None, block)
    pairs = list(zip(tensor.tolist(), index.tolist(), strict=True))
    assert pairs == [(0, 0), (0, 1), (0, 2), (1, 0), (2, 0), (3, 0), (3, 1), (3, 2)]
    w_ptrs = [w.data_ptr() for w in ws]
    assert table.tolist() == w_ptrs + [g.data_ptr() for g in gs] + w_ptrs + [20, 8, 3, 17]
    assert aligned
    other = [torch.zeros(3), torch.zeros(17), torch.zeros(0), torch.zeros(20)]  # same count
    _, tensor2, index2, _ = kernels.triton_launch_tables(other, other, None, block)
    assert list(zip(tensor2.tolist(), index2.tolist(), strict=True)) == [
        (0, 0),
        (1, 0),
        (1, 1),
        (1, 2),
        (3, 0),
        (3, 1),
        (3, 2),
    ]  # fmt: skip (an empty tensor gets no block)
    again = kernels.triton_launch_tables(ws, gs, None, block)
    assert again[0] is table and again[1] is tensor  # cached by sizes and addresses
    shifted = [base[1:21], *ws[1:]]  # 4 bytes past a 16-byte boundary
    assert not kernels.triton_launch_tables(shifted, gs, None, block)[3]
    bs = [torch.zeros_like(w) for w in ws]
    assert kernels.triton_launch_tables(ws, gs, bs, block)[0][8:12].tolist() == [
        b.data_ptr() for b in bs
    ]


def test_a_triton_kernel_that_cannot_launch_falls_back_with_a_warning(monkeypatch):
    """A compiler error on a CUDA machine must not break training: the step returns False (the
    optimizer takes its eager path), warns once per configuration, and leaves the weights and
    the momentum list untouched."""
    from types import SimpleNamespace

    calls = []

    class Broken:
        def __getitem__(self, grid):
            def launch(*args, **kwargs):
                calls.append(grid)
                raise RuntimeError("PTX assembly failed")

            return launch

    fake = SimpleNamespace(language=SimpleNamespace(float32="f32", bfloat16="b16", float16="f16"))
    monkeypatch.setattr(kernels, "_triton_kernel", lambda: (fake, Broken()))
    monkeypatch.setattr(kernels, "_TRITON_FAILED", set())
    ws, gs, _ = _inputs(3)
    before = [w.clone() for w in ws]
    bufs = [None] * len(ws)
    kw = dict(lr=0.1, momentum=0.9, interpret=True)
    with pytest.warns(RuntimeWarning, match="eager step"):
        assert not fused_step_(ws, gs, bufs, potential("ne").step_kernel(), **kw)
    assert bufs == [None] * len(ws)
    assert all(torch.equal(a, b) for a, b in zip(ws, before, strict=True))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the second time: no warning, no new attempt
        assert not fused_step_(ws, gs, bufs, potential("ne").step_kernel(), **kw)
    assert len(calls) == 1


def test_a_later_dtype_that_cannot_compile_writes_nothing(monkeypatch):
    """float32 and bfloat16 parameters take one launch each; if the bfloat16 kernel fails to
    compile, the float32 tensors must not have been updated already (the optimizer's eager
    fallback would step them a second time): every kernel is compiled before the first launch."""
    from types import SimpleNamespace

    launched, compiled = [], []

    class FailsForBfloat16:
        def warmup(self, *args, grid, **config):
            compiled.append(config["DT"])
            if config["DT"] == "b16":
                raise RuntimeError("unsupported bf16 conversion")

        def __getitem__(self, grid):
            return lambda *args, **config: launched.append(config["DT"])

    fake = SimpleNamespace(language=SimpleNamespace(float32="f32", bfloat16="b16", float16="f16"))
    monkeypatch.setattr(kernels, "_triton_kernel", lambda: (fake, FailsForBfloat16()))
    monkeypatch.setattr(kernels, "_TRITON_FAILED", set())
    monkeypatch.setattr(kernels, "_TRITON_COMPILED", set())
    ws, gs, bs = _inputs(5)
    ws = [w.bfloat16() if j % 2 else w for j, w in enumerate(ws)]
    gs = [g.bfloat16() if j % 2 else g for j, g in enumerate(gs)]
    before_w, before_b = [w.clone() for w in ws], [b.clone() for b in bs]
    with pytest.warns(RuntimeWarning, match="eager step"):
        ok = fused_step_(ws, gs, bs, potential("3-norm").step_kernel(), lr=0.1, momentum=0.9,
                         interpret=True)  # fmt: skip
    assert not ok
    assert launched == []  # nothing written
    assert compiled == ["f32", "b16"]
    assert all(torch.equal(a, b) for a, b in zip(ws + bs, before_w + before_b, strict=True))


def _compile_for_gpu(config, arch=90):
    """Compile the Triton kernel ahead of time for an NVIDIA GPU of compute capability
    ``arch`` (no GPU needed: Triton's bundled ptxas); (ptx, cubin)."""
    triton = pytest.importorskip("triton")
    try:
        from triton.backends.compiler import GPUTarget
        from triton.compiler import ASTSource

        from syngeo._triton_step import multi_step_kernel
    except ImportError as error:  # pragma: no cover - a Triton without the NVIDIA backend
        pytest.skip(f"Triton's NVIDIA backend is not importable: {error}")
    pointers = {"table": "*i64", "block_tensor": "*i32", "block_index": "*i32",
                "scale_ptr": "*fp32", "found_inf_ptr": "*fp32", "T": "i32"}  # fmt: skip
    signature = {}
    for name in multi_step_kernel.arg_names:
        signature[name] = "constexpr" if name in config else pointers.get(name, "fp32")
    try:
        compiled = triton.compile(ASTSource(fn=multi_step_kernel, signature=signature,
                                            constexprs=config),
                                  target=GPUTarget("cuda", arch, 32))  # fmt: skip
    except (FileNotFoundError, RuntimeError) as error:
        if "ptxas" in str(error):  # pragma: no cover - a wheel without the bundled assembler
            pytest.skip(f"no ptxas to compile with: {error}")
        raise
    return compiled.asm["ptx"], compiled.asm["cubin"]


@pytest.mark.parametrize("family", sorted(kernels._TRITON_FAMILY))
def test_every_triton_configuration_shape_compiles(family):
    """The constexpr branches other than the full one: no momentum, no GradScaler, unaligned,
    approximate-free interpreter functions (ACCURATE False), the first momentum step, the sign
    and primal decays — and the full one for an A100 (sm_80) as well as sm_90."""
    tl = pytest.importorskip("triton.language")
    base = dict(DT=tl.float32, FAMILY=kernels._TRITON_FAMILY[family], BLOCK=1024)
    configs = [
        dict(DECAY=0, MOMENTUM=False, FIRST=False, NESTEROV=False, HAS_SCALE=False,
             HAS_INF=False, ALIGNED=False, ACCURATE=False),
        dict(DECAY=1, MOMENTUM=True, FIRST=True, NESTEROV=False, HAS_SCALE=False,
             HAS_INF=True, ALIGNED=True, ACCURATE=True),
        dict(DECAY=2, MOMENTUM=True, FIRST=False, NESTEROV=True, HAS_SCALE=True,
             HAS_INF=False, ALIGNED=True, ACCURATE=True),
    ]  # fmt: skip
    for config in configs:
        ptx, _ = _compile_for_gpu(dict(base, **config))
        assert ".local" not in ptx
    _compile_for_gpu(dict(base, **configs[2]), arch=80)


@pytest.mark.parametrize("family", sorted(kernels._TRITON_FAMILY))
@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float16"])
def test_triton_kernel_compiles_for_hopper_with_vectorised_memory_access(family, dtype):
    """What can be checked of the CUDA kernel without a GPU: every family and parameter dtype
    compiles for sm_90 (H100/H200) with the full configuration (momentum, nesterov, dual decay,
    GradScaler); the full-block path moves 128-bit vectors (``ld.global.v4``/``st.global.v4``,
    the memory-bound kernel's requirement) only because of the alignment hint; no register
    spills (no local memory)."""
    import shutil

    tl = pytest.importorskip("triton.language")
    config = dict(DT=getattr(tl, dtype), FAMILY=kernels._TRITON_FAMILY[family],
                  DECAY=kernels.DECAY_MODES.index("dual"), MOMENTUM=True, FIRST=False,
                  NESTEROV=True, HAS_SCALE=True, HAS_INF=True, ALIGNED=True, ACCURATE=True,
                  BLOCK=1024)  # fmt: skip
    ptx, cubin = _compile_for_gpu(config)
    # every thread of 4 warps holds 1024 / 128 = 8 elements of each tensor: two 128-bit vectors
    # of float32 (momentum; float32 weights) or one of 16-bit weights. Full-block path: w, g, b
    # loaded, w, b stored, each as whole vectors.
    per_weight = 8 * {"float32": 4, "bfloat16": 2, "float16": 2}[dtype] // 16
    ops = [tok for tok in ptx.split() if tok.startswith(("ld.global.v4", "st.global.v4"))]
    assert sum(op.startswith("ld") for op in ops) == 2 * per_weight + 2, ops
    assert sum(op.startswith("st") for op in ops) == per_weight + 2, ops
    assert ".local" not in ptx
    if family == "ne" and dtype == "float32":  # the hint is what vectorises (once is enough)
        ptx_unaligned, _ = _compile_for_gpu(dict(config, ALIGNED=False))
        assert "ld.global.v4" not in ptx_unaligned
    import triton

    tool = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "cuobjdump")
    tool = tool if os.path.exists(tool) else shutil.which("cuobjdump")
    if tool:
        import tempfile

        with tempfile.TemporaryDirectory() as folder:
            path = os.path.join(folder, "step.cubin")
            with open(path, "wb") as f:
                f.write(cubin)
            usage = subprocess.run([tool, "--dump-resource-usage", path], capture_output=True,
                                   text=True, timeout=60).stdout  # fmt: skip
        assert "LOCAL:0" in usage and "STACK:0" in usage, usage


# --------------------------------------------------------------------------------------------
# constraints inside the CPU kernel (syngeo.constraints)
# --------------------------------------------------------------------------------------------
#
# Error bound with a constraint. The constrained step is clip(F(u)) with F the unconstrained
# inverse map at the lifted, softened direction. Lifting a zero to σ·m is exact in both
# precisions (σ ∈ {±1}); the soft factor (1 − |w|/M)_+ ∈ [0, 1] adds two correctly rounded
# operations to the direction (≤ 2ε|d|, inside the C = 16 allowance of the direction, whose own
# torch operations are correctly rounded); the clip is 1-Lipschitz, so the unclipped bound
# carries over, plus the rounding of the bounds m, M to float32 (ε|w'|). The bound is therefore
# the module bound evaluated at the reference's *unclipped* result and at the lifted weights,
# plus 2ε|w'|. The free-sign floor (|w| < m → sign(w)·m) jumps at 0: elements whose unclipped
# reference lies within the bound of 0 are skipped (none in these inputs: the test counts them).

from syngeo import optim as _optim  # noqa: E402
from syngeo.constraints import Constraint, dale_mask  # noqa: E402


def _constraint_cases():
    return {
        "dale+ceiling": lambda shape: Constraint(
            sign=dale_mask(shape, max(1, shape[1] // 2)) if len(shape) >= 2 else 1.0,
            max_abs=2.0,
        ),
        "scalar-sign+floor+soft": lambda shape: Constraint(
            sign=-1.0, min_abs=0.01, max_abs=3.0, soft=True
        ),
        "free+floor": lambda shape: Constraint(min_abs=0.02, max_abs=4.0),
        "dale+floor+soft": lambda shape: Constraint(
            sign=dale_mask(shape, 1) if len(shape) >= 2 else None,
            min_abs=0.005,
            max_abs=1.5,
            soft=True,
        ),
    }


MIXED = ("scalar-sign+floor+soft", "dale+ceiling", "free+floor")


def _constrained_inputs(seed, case):
    ws, gs, bs = _inputs(seed, shapes=((300,), (17, 9), (5, 4, 3)))
    cases = _constraint_cases()
    names = MIXED if case == "mixed" else [case] * len(ws)  # mixed: one kernel, three kinds
    cons = [cases[name](tuple(w.shape)) for name, w in zip(names, ws, strict=True)]
    out = []
    for w, c in zip(ws, cons, strict=True):
        s = c.sign_like(w)
        # start inside the allowed signs (a sign-preserving step never leaves them either)
        out.append(w if s is None else torch.where(s != 0, s * w.abs(), w))
    return out, gs, bs, cons


def _assert_constrained_within_bound(spec, opts, case, seed, *, fused=True):
    phi = potential(spec)
    lr = 0.05
    ws, gs, bs, cons = _constrained_inputs(seed, case)
    has_mom = opts.get("momentum", 0.0) != 0
    calls = []
    original = kernels._call_c

    def spy(*args, **kwargs):
        calls.append(kwargs.get("cons") is not None)
        return original(*args, **kwargs)

    kernels._call_c = spy
    try:
        w32 = [w.clone() for w in ws]
        bufs32 = [b.clone() for b in bs] if has_mom else []
        mirror_descent(w32, gs, bufs32, potential=phi, lr=lr, fused=fused, constraints=cons,
                       **opts)  # fmt: skip
    finally:
        kernels._call_c = original
    assert any(calls) if fused else not calls, "the constrained kernel did not run"
    results = {}
    for clip in (True, False):
        w64 = [w.double() for w in ws]
        bufs64 = [b.double() for b in bs] if has_mom else []
        saved = _optim.project_
        if not clip:
            _optim.project_ = lambda *a, **k: None
        try:
            mirror_descent(w64, [g.double() for g in gs], bufs64, potential=phi, lr=lr,
                           foreach=False, constraints=cons, **opts)  # fmt: skip
        finally:
            _optim.project_ = saved
        results[clip] = w64
    skipped = 0
    for j in range(len(ws)):
        ref, raw = results[True][j], results[False][j]
        w0 = ws[j].double()
        if phi.preserves_sign and cons[j].min_abs > 0:  # the lifted zeros, with their sign
            w0 = torch.where(w0 == 0, torch.sign(raw) * cons[j].min_abs, w0)
        b0 = bs[j].double() if has_mom else None
        bound, _ = _bound(phi, w0, gs[j].double(), b0, raw, opts, lr)
        bound = bound + 2 * EPS32 * ref.abs()
        jump = (cons[j].min_abs > 0) & (raw.abs() <= bound)
        skipped += int(jump.sum())
        err = (w32[j].double() - ref).abs()
        bad = ~(err <= bound) & ~jump
        assert not bad.any(), (
            f"{spec} {case} {opts} tensor {j}: max excess {(err - bound)[bad].max().item():.3g}, "
            f"fused={w32[j][bad][:3].tolist()} ref={ref[bad][:3].tolist()}"
        )
        # the constraint holds exactly in float32
        lo, hi = cons[j].interval_bounds(w32[j])
        if lo is not None:
            assert ((w32[j] >= lo) & (w32[j] <= hi)).all()
        assert (w32[j].abs() <= cons[j].max_abs).all()
        nonzero = w32[j] != 0
        assert (w32[j].abs()[nonzero] >= torch.tensor(cons[j].min_abs).float()).all()
    assert skipped <= 2


CONSTRAINED_SPECS = ["3-norm", "2.5-norm", "1.5-norm", "ne", "hypentropy(0.05)", "tsallis(0.5)",
                     "tsallis(0.9)"]  # fmt: skip


@needs_cpu_kernel
@pytest.mark.parametrize("case", [*_constraint_cases(), "mixed"])
@pytest.mark.parametrize(
    "opts", OPTIONS[1:3] + OPTIONS[4:5] + OPTIONS[6:8],
    ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()) or "plain",
)  # fmt: skip
@pytest.mark.parametrize("spec", CONSTRAINED_SPECS)
def test_constrained_kernel_matches_the_eager_projection_within_the_bound(spec, opts, case):
    _assert_constrained_within_bound(spec, opts, case, seed=11)


@pytest.mark.parametrize("spec", ["3-norm", "ne", "tsallis(0.5)"])
def test_eager_constrained_float32_path_satisfies_the_same_bound(spec):
    for case in _constraint_cases():
        _assert_constrained_within_bound(spec, OPTIONS[1], case, seed=12, fused=False)


@needs_cpu_kernel
@pytest.mark.parametrize("spec", ["3-norm", "ne", "tsallis(0.5)"])
def test_constrained_bound_sees_a_planted_error(spec, monkeypatch):
    """A ceiling 1 % too high in the kernel's arguments, or a mask ignored, breaks the bound."""
    original = Constraint.kernel_arguments

    def loose(self, w):
        mask, (sg, lo, hi, sm) = original(self, w)
        return mask, (sg, lo, hi * 1.01, sm)

    monkeypatch.setattr(Constraint, "kernel_arguments", loose)
    with pytest.raises(AssertionError):
        _assert_constrained_within_bound(spec, OPTIONS[1], "dale+ceiling", seed=13)

    def no_mask(self, w):
        _, scalars = original(self, w)
        return None, scalars

    monkeypatch.setattr(Constraint, "kernel_arguments", no_mask)
    with pytest.raises(AssertionError):
        _assert_constrained_within_bound(spec, OPTIONS[1], "dale+floor+soft", seed=13)


@needs_cpu_kernel
@pytest.mark.parametrize("spec", ["3-norm", "ne", "hypentropy(0.05)", "tsallis(0.5)"])
def test_unconstrained_parameters_are_bit_identical_to_the_plain_fused_optimizer(spec):
    """Dale's law on the first parameter only, same gradients: the other parameters get the
    plain kernel's bits, the first one's signs never flip and its bounds hold, over 3 steps."""
    g = torch.Generator().manual_seed(21)
    shapes = [(40, 30), (30,), (7, 40)]
    start = [torch.randn(s, generator=g) for s in shapes]
    grads = [[torch.randn(s, generator=g) for s in shapes] for _ in range(3)]
    mask = dale_mask(shapes[0], 20)
    start[0] = mask * start[0].abs().clamp(min=1e-3)
    runs = []
    for constrained in (False, True):
        params = [torch.nn.Parameter(w.clone()) for w in start]
        cons = {params[0]: Constraint(sign=mask, max_abs=0.3)} if constrained else None
        opt = MirrorDescent(params, lr=0.05, potential=spec, momentum=0.9, weight_decay=0.01,
                            constraints=cons, fused=True)  # fmt: skip
        for step in grads:
            for p, gr in zip(params, step, strict=True):
                p.grad = gr.clone()
            opt.step()
        runs.append([p.detach().clone() for p in params])
        if constrained:
            assert ((params[0] * mask) >= 0).all() and (params[0].abs() <= 0.3).all()
    for a, b in zip(runs[0][1:], runs[1][1:], strict=True):
        assert torch.equal(a, b)
    assert not torch.equal(runs[0][0], runs[1][0])


@needs_cpu_kernel
def test_threads_split_constrained_tensors_without_changing_a_bit():
    shapes = [(300, 1001), (70_000, 3), (17,)]
    results = []
    for threads in (1, 3):
        ws = [torch.randn(s, generator=torch.Generator().manual_seed(9 + i))
              for i, s in enumerate(shapes)]  # fmt: skip
        gs = [torch.randn(s, generator=torch.Generator().manual_seed(99 + i))
              for i, s in enumerate(shapes)]  # fmt: skip
        cons = [Constraint(sign=dale_mask(s, s[1] // 2), min_abs=0.01, max_abs=1.0, soft=True)
                if len(s) == 2 else Constraint(sign=1.0) for s in shapes]  # fmt: skip
        bufs: list = [None] * len(ws)
        previous = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            for _ in range(2):
                assert fused_step_(ws, gs, bufs, StepKernel("ne"), lr=0.01, momentum=0.9,
                                   constraints=cons, lift=True)  # fmt: skip
        finally:
            torch.set_num_threads(previous)
        results.append(ws + bufs)
    for a, b in zip(*results, strict=True):
        assert torch.equal(a, b)


@needs_cpu_kernel
@pytest.mark.parametrize("lift,soft", [(False, False), (False, True), (True, False), (True, True)])
@pytest.mark.parametrize("spec", ["3-norm", "ne", "hypentropy(2)", "tsallis(0.5)", "tsallis(0.9)"])
def test_every_constrained_configuration_builds_and_passes_its_self_test(spec, lift, soft):
    kernel = potential(spec).step_kernel()
    if lift and kernel.family not in ("ne", "tsallis"):
        assert not kernels.cpu_kernel_available(
            kernel, "none", momentum=True, constrained=kernels.Constrained(lift, soft)
        )
        return
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for decay in ("none", "dual"):
            assert kernels.cpu_kernel_available(
                kernel, decay, momentum=True, constrained=kernels.Constrained(lift, soft)
            )


def test_without_a_compiler_constrained_steps_fall_back_bit_for_bit(monkeypatch, tmp_path):
    monkeypatch.setenv("SYNGEO_CC", str(tmp_path / "no-such-compiler"))
    monkeypatch.setattr(kernels, "_LIBRARIES", {})
    runs = []
    for fused in (True, False):
        model = _model(6)
        first = model[0].weight
        with torch.no_grad():
            first.abs_()
        cons = {first: Constraint(sign=1.0, min_abs=0.01, max_abs=0.5, soft=True)}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            opt = MirrorDescent(model.parameters(), lr=0.05, potential="ne", momentum=0.9,
                                constraints=cons, fused=fused)  # fmt: skip
            _train(model, opt, 4)
        runs.append([p.detach().clone() for p in model.parameters()])
    for a, b in zip(*runs, strict=True):
        assert torch.equal(a, b)


@needs_cpu_kernel
def test_constrained_zero_lift_takes_the_mask_sign_or_the_descent_direction():
    """Exact zeros under NE with a floor: σ·m, σ the mask where given, else sign(−d); with
    d = 0 and no mask the weight stays 0 (the eager rule, constraints.lift_zeros_)."""
    w = torch.zeros(6)
    g = torch.tensor([1.0, -1.0, 0.0, 1.0, -1.0, 0.0])
    mask = torch.tensor([0.0, 0.0, 0.0, 1.0, -1.0, 1.0])
    c = Constraint(sign=mask, min_abs=0.1)
    eager = w.clone()
    mirror_descent([w], [g], [], potential="ne", lr=1e-3, constraints=[c], fused=True)
    mirror_descent([eager], [g], [], potential="ne", lr=1e-3, constraints=[c], fused=False)
    # free weights: lifted against the gradient, then grow (|w| = m·e^η); masked ones take
    # their mask's sign and, where the step shrinks them below m, the floor holds them at m
    e = math.exp(1e-3)
    expected = torch.tensor([-0.1 * e, 0.1 * e, 0.0, 0.1, -0.1, 0.1])
    torch.testing.assert_close(w, expected, rtol=2 * EPS32, atol=0)
    assert torch.equal(w, eager)


@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_two_norm_with_constraints_is_sgd_then_the_clip_under_fused_true(momentum):
    """The 2-norm's fused route is torch's SGD kernel, which knows no constraints: a constrained
    2-norm step stays on the eager path (bit for bit fused=False)."""
    runs = []
    for fused in (True, False):
        ws, gs, bs, cons = _constrained_inputs(14, "mixed")
        bufs = [b.clone() for b in bs] if momentum else []
        mirror_descent(ws, gs, bufs, potential="2-norm", lr=0.05, momentum=momentum,
                       constraints=cons, fused=fused)  # fmt: skip
        runs.append(ws)
    for a, b in zip(*runs, strict=True):
        assert torch.equal(a, b)


@needs_cpu_kernel
@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_constrained_mixed_dtypes_keep_each_parameter_its_own_constraint(momentum):
    """float64 parameters take the eager path (bit for bit fused=False) with their own
    constraints while the float32 ones take the kernel: the constraint list is re-indexed."""
    ws, gs, bs, cons = _constrained_inputs(15, "mixed")
    ws[1], gs[1], bs[1] = ws[1].double(), gs[1].double(), bs[1].double()
    runs = []
    for fused in (True, False):
        w = [x.clone() for x in ws]
        bufs = [b.clone() for b in bs] if momentum else []
        mirror_descent(w, gs, bufs, potential="ne", lr=0.05, momentum=momentum,
                       constraints=cons, fused=fused)  # fmt: skip
        runs.append(w)
    assert torch.equal(runs[0][1], runs[1][1])
    for j in (0, 2):
        torch.testing.assert_close(runs[0][j], runs[1][j], rtol=1e-5, atol=1e-7)
        lo, hi = cons[j].interval_bounds(runs[0][j])
        if lo is not None:
            assert ((runs[0][j] >= lo) & (runs[0][j] <= hi)).all()


@pytest.mark.parametrize("spec", ["3-norm", "p=2.2", "1.5-norm", "ne", "hypentropy(0.05)",
                                  "tsallis(0.5)"])  # fmt: skip
def test_step_kernel_names_its_potential(spec):
    """The self-tests' reference step rebuilds the potential from the kernel: same mirror map."""
    phi = potential(spec)
    back = phi.step_kernel().potential()
    assert back.name == phi.name
    w = torch.tensor([-2.0, -0.3, 0.05, 0.7, 3.0], dtype=F64)
    torch.testing.assert_close(back.grad(w), phi.grad(w), rtol=0, atol=0)
