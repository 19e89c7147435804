"""Learning under a hidden geometry: reproducible, reaches its target, lazy, and recoverable."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import syngeo
from syngeo.errors import InputError, InputTypeError
from syngeo.gaussianity import change_magnitude
from syngeo.inference import infer_geometry
from syngeo.potentials import NegativeEntropy, PNorm
from syngeo.simulate import (
    RecoveryVerdict,
    SimulatedLearning,
    _typical_curvature,
    digits_inputs,
    recovery_verdict,
    simulate_change,
    simulate_learning,
)
from user_potentials import Quartic


@pytest.fixture(scope="module")
def default_run() -> SimulatedLearning:
    return simulate_learning()


def test_default_run_reaches_its_target(default_run):
    sim = default_run
    assert sim.potential == "3-norm"
    assert sim.converged
    assert sim.train_accuracy == 1.0
    assert sim.train_loss < 1e-3
    assert 0 < sim.epochs < 3000


def test_default_run_shapes_exclude_the_readout(default_run):
    sim = default_run
    assert sim.n_hidden == 512 and sim.n_inputs == 32
    assert sim.before.shape == sim.after.shape == (512 * 32,) == (sim.n_synapses,)
    assert sim.before.dtype == sim.after.dtype == np.float64
    # N = round(sqrt(D)), the paper's dataset scaling.
    assert sim.n_examples == round(np.sqrt(sim.n_synapses))
    # Initial weights N(0, 1/n_inputs): the sample std is within a few percent of 1/sqrt(32).
    assert abs(sim.before.std() * np.sqrt(32) - 1) < 0.03


def test_default_run_is_lazy(default_run):
    sim = default_run
    assert not np.array_equal(sim.before, sim.after)
    # docs/theory.md §2: the theory needs a small dual change; the paper saw < 0.2 when finetuning.
    assert sim.change_magnitude < 0.1
    dual_b = np.sign(sim.before) * sim.before**2
    dual_a = np.sign(sim.after) * sim.after**2
    expected = np.linalg.norm(dual_a - dual_b) / np.linalg.norm(dual_b)
    assert sim.change_magnitude == pytest.approx(expected, rel=1e-12)


def test_inference_recovers_the_default_geometry(default_run):
    fit = infer_geometry(default_run.before, default_run.after, n_bootstrap=0, rng=0)
    verdict = recovery_verdict("3-norm", fit)
    assert isinstance(verdict, RecoveryVerdict)
    assert verdict.recovered, str(verdict)
    assert verdict.inferred_on_grid == "3-norm"
    assert fit.best_p is not None and abs(fit.best_p - 3) < 0.1
    # A wrong hidden geometry is not declared recovered.
    assert not recovery_verdict("2-norm", fit).recovered


@pytest.mark.parametrize("hidden", ["2-norm", "ne"])
def test_inference_recovers_other_geometries(hidden):
    sim = simulate_learning(hidden, seed=1)
    assert sim.converged and sim.change_magnitude < 0.1
    fit = infer_geometry(sim.before, sim.after, n_bootstrap=0, rng=1)
    verdict = recovery_verdict(hidden, fit)
    assert verdict.recovered, f"{verdict}\n{fit.summary()}"


def test_ne_learning_keeps_every_sign():
    sim = simulate_learning("ne", n_hidden=64, seed=2)
    assert np.array_equal(np.sign(sim.before), np.sign(sim.after))


def test_reproducible_with_a_seed():
    a = simulate_learning("3-norm", n_hidden=64, max_epochs=40, seed=3)
    b = simulate_learning("3-norm", n_hidden=64, max_epochs=40, seed=3)
    c = simulate_learning("3-norm", n_hidden=64, max_epochs=40, seed=4)
    np.testing.assert_array_equal(a.before, b.before)
    np.testing.assert_array_equal(a.after, b.after)
    assert a.epochs == b.epochs
    assert not np.array_equal(a.before, c.before)


def test_torch_thread_setting_is_restored():
    before = torch.get_num_threads()
    simulate_learning("2-norm", n_hidden=16, max_epochs=5, seed=0)
    assert torch.get_num_threads() == before


def test_digits_inputs_are_white():
    x, y = digits_inputs(32, seed=0)
    assert x.shape == (1797, 32) and y.shape == (1797,)
    assert set(np.unique(y)) == set(range(10))
    cov = x.T @ x / x.shape[0]
    np.testing.assert_allclose(cov, np.eye(32), atol=1e-10)
    np.testing.assert_allclose(x.mean(axis=0), 0, atol=1e-10)
    # The rotation depends on the seed; the whitened data do not.
    x2, _ = digits_inputs(32, seed=1)
    assert not np.allclose(x, x2)
    np.testing.assert_allclose(x2.T @ x2 / x2.shape[0], np.eye(32), atol=1e-10)


def test_learning_rate_is_scaled_by_the_curvature_at_the_typical_weight():
    w = torch.full((10,), 0.25, dtype=torch.float64)
    assert _typical_curvature(PNorm(2), w) == 1.0
    assert _typical_curvature(PNorm(3), w) == pytest.approx(2 * 0.25)
    assert _typical_curvature(NegativeEntropy(), w) == pytest.approx(4.0)
    # the root-mean-square weight, not the mean |w|: rms(0.1, -0.3, 0.5) = sqrt(0.35/3)
    w = torch.tensor([0.1, -0.3, 0.5], dtype=torch.float64)
    rms = (0.35 / 3) ** 0.5
    assert _typical_curvature(PNorm(3), w) == pytest.approx(2 * rms, rel=1e-12)
    assert _typical_curvature(NegativeEntropy(), w) == pytest.approx(1 / rms, rel=1e-12)


def test_to_dict_has_no_arrays(default_run):
    d = default_run.to_dict()
    assert d["potential"] == "3-norm" and d["converged"] is True
    assert "before" not in d and "after" not in d
    assert "SimulatedLearning(potential='3-norm'" in repr(default_run)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"potential": "4-dimensional"}, "unknown potential"),
        ({"potential": "p=0.5"}, "p > 1"),
        ({"n_hidden": 0}, "n_hidden"),
        ({"lr": -1.0}, "lr"),
        ({"momentum": 1.0}, "momentum"),
        ({"n_examples": 5000}, "n_examples"),
        ({"n_inputs": 100}, "n_inputs"),
        ({"seed": -1}, "seed"),
        ({"max_epochs": 0}, "max_epochs"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        simulate_learning(**kwargs)


def test_too_large_learning_rate_is_reported():
    with pytest.raises(RuntimeError, match="diverged"):
        simulate_learning("2-norm", n_hidden=16, lr=1e6, seed=0)


# ------------------------------------------------------------------------------------------------
# simulate_change: an exactly Gaussian dual change
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("phi", ["3-norm", "1.5-norm", "ne", Quartic()])
@pytest.mark.parametrize("init", ["normal", "lognormal"])
def test_simulated_dual_change_is_the_drawn_gaussian(phi, init):
    """Replaying the generator's stream gives w0 and ξ; ∇φ(w) − ∇φ(w0) must be dual_std · ξ.

    The round trip ∇φ((∇φ)⁻¹(u)) loses a few ulps of u, and u ~ |∇φ(w0)| can exceed the change by
    ~1/c = 10x (more where |w0| is large): 1e-9 relative to max|∇φ(w0)| is far above that.
    """
    sim = simulate_change(phi, 2000, init=init, rng=7)
    gen = np.random.default_rng(7)
    if init == "normal":
        w0 = gen.normal(0.0, 0.1, 2000)
    else:
        mean, var = 0.1 * np.sqrt(2 / np.pi), 0.01 * (1 - 2 / np.pi)
        s2 = np.log1p(var / mean**2)
        w0 = gen.lognormal(np.log(mean) - s2 / 2, np.sqrt(s2), 2000) * gen.choice([-1.0, 1.0], 2000)
    xi = gen.normal(size=2000)
    np.testing.assert_array_equal(sim.before, w0)
    np.testing.assert_array_equal(sim.before_true, w0)
    pot = sim.potential
    assert sim.dual_std == pytest.approx(0.1 * abs(float(pot.grad(np.array(0.1)))), rel=1e-15)
    change = pot.grad(sim.after) - pot.grad(sim.before)
    scale = np.abs(pot.grad(w0)).max()
    np.testing.assert_allclose(change, sim.dual_std * xi, rtol=0, atol=1e-9 * scale)
    if pot.preserves_sign:
        np.testing.assert_array_equal(np.sign(sim.after), np.sign(sim.before))


def test_lognormal_init_has_the_gaussian_second_moment():
    """|w0| log-normal with the half-normal's mean s√(2/π) and variance s²(1 − 2/π): E[w0²] = s².

    Monte Carlo, n = 10^6: log-normal σ² = log(π/2), so the relative standard error of the mean
    of w0² is sqrt((e^{4σ²} − 1)/n) = 0.23 % and of |w0| sqrt((π/2 − 1)/n) = 0.076 %; the bounds
    are about 5 standard errors.
    """
    s = 0.1
    w0 = simulate_change("2-norm", 1_000_000, init="lognormal", scale=s, rng=0).before
    assert np.mean(w0**2) == pytest.approx(s**2, rel=0.012)
    assert np.mean(np.abs(w0)) == pytest.approx(s * np.sqrt(2 / np.pi), rel=0.004)
    assert np.var(np.abs(w0)) == pytest.approx(s**2 * (1 - 2 / np.pi), rel=0.02)
    assert abs(np.mean(np.sign(w0))) < 0.005  # symmetric signs (5 SE of a ±1 mean)
    gauss = simulate_change("2-norm", 1_000_000, init="normal", scale=s, rng=0).before
    assert np.mean(gauss**2) == pytest.approx(s**2, rel=0.008)  # 2/√n·5 = 0.7 %


def test_measurement_noise_is_multiplicative_and_independent():
    sim = simulate_change("3-norm", 200_000, noise=0.05, rng=1)
    eb = sim.before / sim.before_true - 1
    ea = sim.after / sim.after_true - 1
    # std of the sample std of N(0, 0.05²) at n = 2e5 is 0.05/√(2n) = 8e-5: 1e-3 is > 10 SE
    assert np.std(eb) == pytest.approx(0.05, abs=1e-3) and np.std(ea) == pytest.approx(
        0.05, abs=1e-3
    )
    assert abs(np.corrcoef(eb, ea)[0, 1]) < 0.012  # 1/√n = 0.0022 per SE
    d = sim.to_dict()
    assert d == {"potential": "3-norm", "init": "normal", "n": 200_000,
                 "dual_std": sim.dual_std, "noise": 0.05}  # fmt: skip
    assert "SyntheticChange(potential='3-norm', init='normal'" in repr(sim)


def test_simulate_change_arguments():
    with pytest.raises(InputError, match="init must be one of 'normal', 'lognormal'"):
        simulate_change("ne", 10, init="gaussian")  # the 0.1.0 name of "normal"
    with pytest.raises(InputError, match="n must be an integer >= 1"):
        simulate_change("ne", 0)
    with pytest.raises(InputTypeError, match="n must be an integer"):
        simulate_change("ne", 10.0)
    with pytest.raises(InputError, match="scale"):
        simulate_change("ne", 10, scale=0)
    with pytest.raises(InputError, match="noise"):
        simulate_change("ne", 10, noise=-0.1)
    with pytest.raises(InputTypeError, match="rng"):
        simulate_change("ne", 10, rng="x")
    a = simulate_change("ne", 50, rng=3)
    b = simulate_change("ne", 50, rng=np.random.default_rng(3))
    np.testing.assert_array_equal(a.after, b.after)
    assert simulate_change("ne", 10).init == "normal"
    assert syngeo.simulate_change is simulate_change


def test_change_magnitude_is_the_gaussianity_one(default_run):
    assert default_run.change_magnitude == change_magnitude(
        default_run.before, default_run.after, "3-norm"
    )
