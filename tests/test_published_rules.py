"""Which settings reproduce which published rule (docs/geometries.md, "Published rules").

Each rule is transcribed here from its paper's equations / public code as plain float64 NumPy,
and the library's optimizer with the documented settings must reproduce it (rtol 1e-12: the
same operations up to the order of a few roundings per step, 20-30 steps).
"""

from __future__ import annotations

import numpy as np
import torch

from syngeo import Constraint, MirrorAdam, MirrorDescent


def _problem(seed=0, n=24):
    rng = np.random.default_rng(seed)
    w0 = rng.standard_normal(n)
    target = rng.standard_normal(n)
    return w0, target


def _run(opt, w, target, steps):
    for _ in range(steps):
        opt.zero_grad()
        (0.5 * ((w - torch.tensor(target)) ** 2).sum()).backward()
        opt.step()
    return w.detach().numpy()


def test_plain_eg_kivinen_warmuth():
    """EG on positive weights: w ← w·exp(−η g) = MirrorDescent(potential="ne")."""
    w0, target = _problem(1)
    w0 = np.abs(w0) + 0.1
    ref = w0.copy()
    for _ in range(30):
        ref = ref * np.exp(-0.1 * (ref - target))
    w = torch.nn.Parameter(torch.tensor(w0))
    got = _run(MirrorDescent([w], lr=0.1, potential="ne"), w, target, 30)
    np.testing.assert_allclose(got, ref, rtol=1e-12)


def test_cornford_eg_with_momentum_and_eg_weight_decay():
    """Cornford et al. (linclab/EG_optimiser, SGD with update_alg='eg'):
    d = g + λ·sign(w); b ← μb + d (b₁ = d); w ← w·exp(−η sign(w) b)
    = MirrorDescent(potential="ne", momentum=μ, weight_decay=λ) (decay_space="auto")."""
    w0, target = _problem(2)
    eta, mu, lam = 0.05, 0.9, 0.01
    ref, buf = w0.copy(), None
    for _ in range(30):
        d = (ref - target) + lam * np.sign(ref)
        buf = d.copy() if buf is None else mu * buf + d
        ref = ref * np.exp(-eta * np.sign(ref) * buf)
    w = torch.nn.Parameter(torch.tensor(w0))
    opt = MirrorDescent([w], lr=eta, potential="ne", momentum=mu, weight_decay=lam)
    np.testing.assert_allclose(_run(opt, w, target, 30), ref, rtol=1e-12)


def test_paper_pnorm_mirror_descent():
    """The paper's MD: sign(w)|w|^(p−1) ← sign(w)|w|^(p−1) − η(g + λw), with SGD momentum on
    g + λw (primal L2 decay) = MirrorDescent(potential=PNorm(p), momentum, weight_decay)."""
    w0, target = _problem(3)
    p, eta, mu, lam = 3.0, 0.02, 0.9, 1e-3
    ref, buf = w0.copy(), None
    for _ in range(30):
        d = (ref - target) + lam * ref
        buf = d.copy() if buf is None else mu * buf + d
        u = np.sign(ref) * np.abs(ref) ** (p - 1) - eta * buf
        ref = np.sign(u) * np.abs(u) ** (1 / (p - 1))
    w = torch.nn.Parameter(torch.tensor(w0))
    opt = MirrorDescent([w], lr=eta, potential="3-norm", momentum=mu, weight_decay=lam)
    np.testing.assert_allclose(_run(opt, w, target, 30), ref, rtol=1e-12)


def test_madam_multiplicative_update():
    """Madam (Bernstein et al. 2020, jxbz/madam): v ← 0.999v + 0.001g²,
    ĝ = g/sqrt(v/(1 − 0.999ᵗ)), w ← w·exp(−η sign(w) ĝ), |w| ≤ 3·rms(w₀)
    = MirrorAdam(potential="ne", betas=(0, 0.999), eps=0) with Constraint(max_abs=3·rms(w₀))
    (Madam also clips ĝ to ±10, inactive here: |ĝ| ≤ 1/sqrt(0.001) ≈ 32 only for a gradient
    that jumps by that factor, not on this smooth problem — checked below)."""
    w0, target = _problem(4)
    eta = 0.05
    cap = 3 * np.sqrt(np.mean(w0**2))
    ref, v = w0.copy(), np.zeros_like(w0)
    for t in range(1, 31):
        g = ref - target
        v = 0.999 * v + 0.001 * g**2
        g_hat = g / np.sqrt(v / (1 - 0.999**t))
        assert np.all(np.abs(g_hat) <= 10)
        ref = np.clip(ref * np.exp(-eta * g_hat * np.sign(ref)), -cap, cap)
    w = torch.nn.Parameter(torch.tensor(w0))
    opt = MirrorAdam([w], lr=eta, betas=(0.0, 0.999), eps=0.0, potential="ne",
                     constraints=Constraint(max_abs=cap))  # fmt: skip
    np.testing.assert_allclose(_run(opt, w, target, 30), ref, rtol=1e-12)
