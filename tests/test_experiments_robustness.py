"""Fig. 3B robustness experiment: initial distributions, the dual step, measurements, outputs."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from syngeo.app import experiments
from syngeo.app.experiments import robustness as rob
from syngeo.gaussianity import cdf_distance
from syngeo.potentials import potential


def test_config_follows_the_paper():
    config = experiments.get("fig3b").Config()
    assert config.n_weights == 1000 and config.reference_width == 100
    assert config.change_scale == 0.1 and config.n_seeds == 30
    assert config.candidates[0] == "NE" and len(config.candidates) == 21
    assert config.candidates[1] == "1.1-norm" and config.candidates[-1] == "3-norm"
    assert config.true_potentials == ("NE", "2-norm", "3-norm")
    assert len(rob.cells(config)) == 2 * 3 * 30
    assert rob.Config.quick().n_seeds < config.n_seeds


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"inits": ("uniform",)}, "initialisation"),
        ({"candidates": ("NE", "ne")}, "distinct"),
        ({"true_potentials": ("p=0.5",)}, "p > 1"),
        ({"n_weights": 1}, "n_weights"),
        ({"change_scale": 0.0}, "change_scale"),
        ({"n_seeds": 0}, "n_seeds"),
    ],
)
def test_bad_config_values_are_rejected(kwargs, match):
    with pytest.raises(ValueError, match=match):
        rob.Config(**kwargs)


def test_candidate_positions_put_ne_at_one():
    assert rob.candidate_position("NE") == 1.0
    assert rob.candidate_position("2.5-norm") == 2.5


def test_initial_distributions_have_the_stated_moments():
    rng = np.random.default_rng(0)
    n = 200_000
    normal = rob.initial_weights("normal", n, 100, rng)
    assert normal.mean() == pytest.approx(0.0, abs=5 * 0.1 / math.sqrt(n))
    assert normal.std() == pytest.approx(0.1, rel=0.01)
    signed = rob.initial_weights("lognormal", n, 100, rng)
    magnitude = np.abs(signed)
    # |w0| log-normal with mean 1/sqrt(100) and variance 1/100; signs ±1 with equal probability
    assert magnitude.mean() == pytest.approx(0.1, rel=0.01)
    assert magnitude.var() == pytest.approx(0.01, rel=0.05)
    assert np.mean(signed > 0) == pytest.approx(0.5, abs=0.01)
    assert np.all(magnitude > 0)
    with pytest.raises(ValueError, match="initialisation"):
        rob.initial_weights("cauchy", 10, 100, rng)


@pytest.mark.parametrize("name", ["NE", "2-norm", "3-norm"])
def test_the_dual_step_is_gaussian_with_the_stated_scale(name):
    rng = np.random.default_rng(1)
    w0 = rob.initial_weights("normal", 50_000, 100, rng)
    w = rob.moved_weights(w0, name, reference_width=100, change_scale=0.1, rng=rng)
    phi = potential(name)
    step = np.asarray(phi.grad(w)) - np.asarray(phi.grad(w0))
    expected_std = 0.1 * abs(float(phi.grad(np.array([0.1]))[0]))
    assert step.std() == pytest.approx(expected_std, rel=0.02)
    assert cdf_distance(step) < 0.02  # Gaussian in the true dual space
    if name == "NE":
        assert np.all(np.sign(w) == np.sign(w0))


def test_run_cell_rows_and_minimum_at_the_true_potential():
    config = rob.Config(n_seeds=1)
    rows = rob.run_cell(config, {"init": "normal", "true_potential": "NE", "seed": 0})
    assert [r["candidate"] for r in rows] == list(config.candidates)
    assert all(r["sign_changes"] == 0 for r in rows)
    d = {r["candidate"]: r["d"] for r in rows}
    # an NE change looks far from Gaussian in the 3-norm's dual space
    assert d["NE"] < 0.1 and d["3-norm"] > 0.3
    rows = rob.run_cell(config, {"init": "lognormal", "true_potential": "2-norm", "seed": 0})
    d = {r["candidate"]: r["d"] for r in rows}
    # one seed: the sampling noise of d (~0.01) blurs the minimum over neighbouring p
    assert 1.75 <= rob.candidate_position(min(d, key=d.get)) <= 2.25
    assert d["NE"] > 5 * d["2-norm"]
    again = rob.run_cell(config, {"init": "lognormal", "true_potential": "2-norm", "seed": 0})
    assert again == rows  # deterministic


def test_summary_finds_the_true_potential_and_the_report_has_numbers(tmp_path):
    from syngeo.app.sweep import run_sweep

    config = rob.Config(n_seeds=4, candidates=("NE", "1.5-norm", "2-norm", "2.5-norm", "3-norm"))
    df = run_sweep("fig3b", config, tmp_path, quiet=True).table
    summary = rob.summarise(df, config)
    json.dumps(summary)
    assert summary["n_settings"] == 6
    assert summary["argmin_is_true_everywhere"] is True
    assert summary["ne_contrast_min"] > 3
    assert 0.02 < summary["gaussian_floor_d"] < 0.06
    text = rob.report(df, config)
    assert "![fig3b](fig3b.png)" in text and "argmin of the mean d" in text
    assert "| normal | NE | NE |" in text
    figs = rob.plot(df, config)
    assert list(figs) == ["fig3b"] and len(figs["fig3b"].axes) == 2
    assert rob.summarise(df.iloc[:0], config) == {"n_rows": 0}


def test_experiments_run_goes_through_the_sweep(tmp_path):
    config = rob.Config(n_seeds=2, candidates=("NE", "2-norm"))
    in_memory = experiments.run("fig3b", config)
    stored = experiments.run("fig3b", config, out=tmp_path)
    assert len(in_memory) == 2 * 3 * 2 * 2
    assert (tmp_path / "manifest.json").is_file()
    assert in_memory.equals(stored)
    assert experiments.run("fig3b", config, out=tmp_path).equals(stored)  # resumed
