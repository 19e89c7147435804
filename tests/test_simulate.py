"""Learning under a hidden geometry: reproducible, reaches its target, lazy, and recoverable."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from syngeo.inference import infer_geometry
from syngeo.potentials import NegativeEntropy, PNorm
from syngeo.simulate import (
    RecoveryVerdict,
    SimulatedLearning,
    _typical_curvature,
    digits_inputs,
    recovery_verdict,
    simulate_learning,
)


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
    # THEORY §2: the theory needs a small dual change; the paper saw < 0.2 when finetuning.
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
