"""Tests of the three-component plasticity generator (syngeo.plasticity)."""

import itertools
import math

import pytest
import torch

from syngeo.errors import InputError, InputTypeError
from syngeo.plasticity import (
    PlasticityRates,
    SynapticNoise,
    ThreeComponentPlasticity,
    random_unit_vector,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_step_components_have_the_stated_norms():
    rates = PlasticityRates(0.3, 0.7, 0.05, T=2.0)
    n = 400
    grad = torch.randn(n, generator=gen(1), dtype=torch.float64)
    step = ThreeComponentPlasticity(rates, generator=gen(2)).step(grad)
    assert math.isclose(step.task.norm().item(), 0.3, rel_tol=1e-12)
    assert torch.allclose(step.task, -0.3 * grad / grad.norm())
    assert math.isclose(step.irrelevant.norm().item(), 0.7, rel_tol=1e-12)
    assert math.isclose(step.noise.norm().item(), 0.05 * math.sqrt(n / 2.0), rel_tol=1e-12)
    assert torch.allclose(step.delta, 2.0 * step.velocity)
    # over the interval: noise of norm γ3 sqrt(N T), i.e. about γ3 sqrt(T) per synapse
    assert math.isclose((2.0 * step.noise).norm().item(), 0.05 * math.sqrt(n * 2.0), rel_tol=1e-12)


def test_mean_squared_speed_matches_monte_carlo_and_the_directions_are_independent():
    # |v|^2 = γ1² + γ2² + γ3²N/T + 2(cross terms); each cross term is a product of norms times
    # the cosine between independent directions, mean 0, variance 1/N. Over m draws the mean of
    # |v|^2 has standard error sqrt(4 (γ1²γ2² + γ1²γ3²N/T + γ2²γ3²N/T) / (N m)) (~0.005 here);
    # the test allows 5 of them.
    n, m = 50, 4000
    rates = PlasticityRates(1.0, 0.5, 0.2, T=2.0)
    expected = 1.0 + 0.25 + 0.04 * n / 2.0
    assert rates.mean_squared_speed(n) == pytest.approx(expected, rel=1e-12)
    plast = ThreeComponentPlasticity(rates, generator=gen(21))
    grad = torch.ones(n, dtype=torch.float64)
    speeds, cos2 = [], []
    for _ in range(m):
        step = plast.step(grad)
        speeds.append(float(step.velocity @ step.velocity))
        c = float(step.irrelevant @ step.noise) / float(step.irrelevant.norm() * step.noise.norm())
        cos2.append(c * c)
    cross = 1.0 * 0.25 + (1.0 + 0.25) * 0.04 * n / 2.0
    se = math.sqrt(4 * cross / (n * m))
    assert abs(sum(speeds) / m - expected) < 5 * se
    # independent uniform directions: E cos² = 1/N (sd of the mean ≈ sqrt(2/N²/m) ≈ 4.5e-4)
    assert abs(sum(cos2) / m - 1 / n) < 5 * math.sqrt(2 / m) / n


def test_zero_gradient_gives_no_task_component():
    step = ThreeComponentPlasticity(PlasticityRates(1, 0, 0), generator=gen()).step(
        torch.zeros(5, dtype=torch.float64)
    )
    assert torch.count_nonzero(step.task) == 0


def test_unit_vectors_average_the_quadratic_form_to_trace_over_n():
    # closed form <n^T H n> = Tr H / N for n uniform on the sphere; Monte Carlo with 4000 draws
    n, draws = 50, 4000
    A = torch.randn(n, n, generator=gen(3), dtype=torch.float64)
    H = A @ A.T / n
    g = gen(4)
    vals = torch.stack(
        [(lambda v: v @ H @ v)(random_unit_vector(n, generator=g)) for _ in range(draws)]
    )
    se = vals.std() / math.sqrt(draws)
    assert abs(vals.mean() - torch.trace(H) / n) < 4 * se


def test_ar1_task_irrelevant_direction_is_correlated_across_intervals():
    n, rho = 20000, 0.8
    plast = ThreeComponentPlasticity(PlasticityRates(0, 1, 0), generator=gen(5), correlation=rho)
    grad = torch.ones(n, dtype=torch.float64)
    dirs = [plast.step(grad).irrelevant for _ in range(30)]
    overlaps = torch.tensor([a @ b for a, b in itertools.pairwise(dirs)])
    # consecutive unit directions overlap by rho (up to O(1/sqrt(N)) fluctuations)
    assert abs(overlaps.mean().item() - rho) < 0.02
    indep = ThreeComponentPlasticity(PlasticityRates(0, 1, 0), generator=gen(5))
    a, b = indep.step(grad).irrelevant, indep.step(grad).irrelevant
    assert abs((a @ b).item()) < 0.05


def test_synaptic_noise_callable_shapes_norm_and_reproducibility():
    params = [torch.zeros(30, 10), torch.zeros(10, dtype=torch.float32), torch.zeros(2, 3, 4)]
    n = sum(p.numel() for p in params)
    noise = SynapticNoise(0.0, 0.2, T=0.5, generator=gen(6))
    out = noise(params)
    assert [o.shape for o in out] == [p.shape for p in params]
    assert all(o.dtype == p.dtype for o, p in zip(out, params, strict=False))
    flat = torch.cat([o.reshape(-1).double() for o in out])
    assert math.isclose(flat.norm().item(), 0.2 * math.sqrt(n * 0.5), rel_tol=1e-5)
    again = SynapticNoise(0.0, 0.2, T=0.5, generator=gen(6))(params)
    assert all(torch.equal(a, b) for a, b in zip(out, again, strict=False))
    assert "gamma3=0.2" in repr(noise)


def test_synaptic_noise_is_isotropic_per_synapse():
    # per-synapse variance of the noise over one interval is gamma3^2 T (white noise)
    noise = SynapticNoise(0.0, 0.1, T=4.0, generator=gen(7))
    draws = torch.stack([noise([torch.zeros(500)])[0] for _ in range(200)])
    var = draws.double().var(dim=0).mean().item()
    assert abs(var - 0.1**2 * 4.0) < 0.05 * 0.04


@pytest.mark.parametrize(
    "kwargs, exc",
    [
        (dict(gamma1=-1, gamma2=0, gamma3=0), InputError),
        (dict(gamma1=0, gamma2=float("nan"), gamma3=0), InputError),
        (dict(gamma1=0, gamma2=0, gamma3=0, T=0), InputError),
        (dict(gamma1="a", gamma2=0, gamma3=0), InputTypeError),
    ],
)
def test_bad_rates_raise(kwargs, exc):
    with pytest.raises(exc):
        PlasticityRates(**kwargs)


def test_bad_generator_and_correlation_raise():
    with pytest.raises(InputTypeError, match=r"torch\.Generator"):
        ThreeComponentPlasticity(PlasticityRates(1, 0, 0), generator=0)
    with pytest.raises(InputError, match="correlation"):
        ThreeComponentPlasticity(PlasticityRates(1, 0, 0), generator=gen(), correlation=1.0)
    with pytest.raises(TypeError, match="list of tensors"):
        SynapticNoise(0.1, 0.1, generator=gen())([1.0])
    with pytest.raises(ValueError, match="NaN"):
        ThreeComponentPlasticity(PlasticityRates(1, 0, 0), generator=gen()).step(
            torch.tensor([float("nan")])
        )


def test_synaptic_noise_drives_mirror_descent_in_the_dual_space():
    optim = pytest.importorskip("syngeo.optim")
    w0 = torch.tensor([0.5, -2.0, 1.5, -0.1], dtype=torch.float64)
    # the noise of one interval, drawn with the same seed as the optimizer will
    expected = SynapticNoise(0.1, 0.2, T=0.5, generator=gen(8))([w0])[0]
    for pot in ("ne", "2-norm"):
        W = w0.clone().requires_grad_(True)
        W.grad = torch.zeros_like(W)
        noise = SynapticNoise(0.1, 0.2, T=0.5, generator=gen(8))
        opt = optim.MirrorDescent([W], lr=0.0, potential=pot, plasticity_noise=noise)
        opt.step()
        w = W.detach()
        if pot == "ne":
            # dual coordinate sign(w)(log|w| + 1) moves by the noise: log|w| by sign(w)·noise
            assert torch.equal(torch.sign(w), torch.sign(w0))
            assert torch.allclose(
                torch.log(w.abs()) - torch.log(w0.abs()), torch.sign(w0) * expected
            )
        else:
            assert torch.allclose(w - w0, expected)


# ----------------------------------------------------------------------------------------------
# the scripts' persistence rule for the task-irrelevant direction
# ----------------------------------------------------------------------------------------------


def test_persistence_zero_draws_exactly_the_fresh_directions():
    rates = PlasticityRates(0.1, 0.7, 0.05, T=1.0)
    a = ThreeComponentPlasticity(rates, generator=gen(5))
    b = ThreeComponentPlasticity(rates, generator=gen(5), persistence=0.0)
    grad = torch.ones(30, dtype=torch.float64)
    for _ in range(5):
        sa, sb = a.step(grad), b.step(grad)
        assert torch.equal(sa.irrelevant, sb.irrelevant)
        assert torch.equal(sa.noise, sb.noise)


def test_persistence_mixes_unit_directions_and_renormalises():
    # n_t = (p n_{t-1} + (1-p) ξ̂_t)/‖·‖, ξ̂_t the fresh unit vector drawn from the same stream
    p, n = 0.3, 40
    rates = PlasticityRates(0.0, 0.7, 0.0, T=1.0)
    plast = ThreeComponentPlasticity(rates, generator=gen(8), persistence=p)
    replay = gen(8)
    grad = torch.ones(n, dtype=torch.float64)
    prev = None
    for _ in range(4):
        step = plast.step(grad)
        xi = torch.randn(n, generator=replay, dtype=torch.float64)
        torch.randn(n, generator=replay, dtype=torch.float64)  # the noise direction
        fresh = xi / xi.norm()
        z = fresh if prev is None else p * prev + (1 - p) * fresh
        prev = z / z.norm()
        assert torch.allclose(step.irrelevant, 0.7 * prev, atol=1e-14)


def test_persistence_gives_the_predicted_correlation_between_cycles():
    # cos(n_t, n_{t-1}) = (p + (1-p)u)/sqrt(p² + (1-p)² + 2p(1-p)u), u = ξ̂·n_{t-1} with mean 0 and
    # variance 1/N: mean p/s + O(1/N) (s = sqrt(p² + (1-p)²)), per-step sd ≈ (1-p)/(s√N) ≈ 0.022
    # at N = 2000; over m = 300 nearly independent steps the SE is ≈ 0.0013; 5 SE allowed.
    p, n, m = 0.1, 2000, 300
    s = math.sqrt(p * p + (1 - p) ** 2)
    plast = ThreeComponentPlasticity(
        PlasticityRates(0.0, 1.0, 0.0), generator=gen(9), persistence=p
    )
    grad = torch.ones(n, dtype=torch.float64)
    prev = plast.step(grad).irrelevant
    cosines = []
    for _ in range(m):
        cur = plast.step(grad).irrelevant
        cosines.append(float(cur @ prev))  # both have norm γ2 = 1
        prev = cur
    se = (1 - p) / (s * math.sqrt(n)) / math.sqrt(m)
    assert abs(sum(cosines) / m - p / s) < 5 * se
    assert p / s == pytest.approx(0.1104, abs=1e-4)  # the scripts' 10 %


def test_persistence_input_checks():
    rates = PlasticityRates(0.1, 0.7, 0.05)
    with pytest.raises(InputError, match="persistence"):
        ThreeComponentPlasticity(rates, generator=gen(), persistence=1.0)
    with pytest.raises(InputError, match="persistence"):
        ThreeComponentPlasticity(rates, generator=gen(), persistence=-0.1)
    with pytest.raises(InputError, match="not both"):
        ThreeComponentPlasticity(rates, generator=gen(), persistence=0.1, correlation=0.5)
