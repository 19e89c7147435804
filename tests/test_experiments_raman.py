"""End-to-end checks of the Raman et al. reproductions (syngeo.app.experiments.raman).

Tiny configurations of each experiment: they must run, produce the contract's outputs, and show
the predicted effects with margins that hold at this size (checked over several seeds while
writing them).
"""

import json
import math

import pandas as pd
import pytest

from figcheck import assert_figure
from syngeo.app.experiments import get, run
from syngeo.app.experiments.raman import (
    DifficultyConfig,
    GeometryConfig,
    KConfig,
    SizeConfig,
    slides_optimal_size,
)
from syngeo.app.outputs import to_jsonable
from syngeo.plasticity import PlasticityRates

NAMES = ("raman-k", "raman-difficulty", "raman-size", "raman-geometry")


def _panels(name, config):
    """Data panels each figure must show (image-level smoke test)."""
    if name in ("raman-k", "raman-size"):
        return 2 * len(config.models)
    if name == "raman-geometry":  # the learning panel only with a task (γ1 > 0)
        return 2 + any(g[0] > 0 for g in config.gammas)
    return 3


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _contract(name, config):
    exp = get(name)
    df = run(name, config)
    figs = exp.plot(df, config)
    report = exp.report(df, config)
    summary = exp.summarise(df, config)
    json.dumps(to_jsonable(summary))  # JSON-serialisable
    assert figs and all(hasattr(f, "savefig") for f in figs.values())
    for fig in figs.values():
        assert_figure(fig, panels=_panels(name, config))
    for stem in figs:
        assert f"({stem}.png)" in report
    return df, report, summary


@pytest.mark.parametrize("name", NAMES)
def test_registry_and_presets(name):
    exp = get(name)
    for config in (exp.Config(), exp.Config.quick()):
        cells = exp.cells(config)
        assert cells and all(isinstance(c, dict) for c in cells)
        json.dumps(cells)
        json.dumps(to_jsonable(config.__dict__))


def test_k_prediction_exact_for_linear_and_close_for_small_T_on_mlp():
    cfg = KConfig(
        gammas=((0.2, 0.5, 0.1),),
        T_values=(0.05,),
        n_draws=30,
        seeds=(0,),
        n_samples=200,
        pretrain_cycles=30,
    )
    df, report, _summary = _contract("raman-k", cfg)
    lin = df[df.model == "linear"]
    assert ((lin.k_predicted - lin.k_measured).abs() <= 1e-8 * lin.k_measured.abs().max()).all()
    mlp = df[df.model == "mlp"]
    rel = ((mlp.k_predicted - mlp.k_measured).abs() / mlp.k_measured.abs()).median()
    assert rel < 0.05
    assert "| linear |" in report and "| mlp |" in report


def test_difficulty_steady_state_sits_on_the_bound():
    cfg = DifficultyConfig(
        draw_gamma3=(0.0, 0.6),
        n_draws=20,
        steady_models=("linear",),
        steady_gamma3=(0.03,),
        n_cycles=3000,
        seeds=(0,),
        n_samples=200,
    )
    df, _report, summary = _contract("raman-difficulty", cfg)
    ratio = summary["steady_ratio_to_bound"]["linear"]["mean"]
    assert ratio == pytest.approx(1.0, abs=0.1)
    draws = df[df.part == "draws"]
    # noiseless plasticity learns at this network, strong noise does not (mean over draws)
    means = draws.groupby("gamma3").k_measured.mean()
    assert means[0.0] > 0 > means[0.6]


def test_size_larger_networks_learn_faster_up_to_n_star():
    # N* = T γ2²/γ3² = 400 for γ = (0.05, 1, 0.05); grid N = 50, 450, 2450
    cfg = SizeConfig(
        models=("linear",),
        factors=(1, 3, 7),
        linear_gammas=((0.05, 1.0, 0.05),),
        n_cycles=50,
        linear_repeats=2,
        n_draws=60,
    )
    df, _report, summary = _contract("raman-size", cfg)
    k = df.groupby("n_synapses").k_initial.mean()
    assert k[450] > k[50] and k[450] > k[2450]
    opt = summary["optimal_sizes"][0]
    assert opt["n_star_closed_form"] == pytest.approx(400.0)
    assert opt["n_star_numeric"] == pytest.approx(400.0, rel=1e-3)
    # expansion keeps the task: the same loss at every size
    losses = df.groupby("seed").loss.agg(["min", "max"])
    assert ((losses["max"] - losses["min"]) < 1e-9 * losses["max"]).all()


def test_size_noisier_synapses_give_smaller_optimum():
    cfg = SizeConfig(
        models=("linear",),
        factors=(1, 2),
        linear_gammas=((0.07, 1.0, 0.03), (0.05, 1.0, 0.05)),
        n_cycles=10,
        linear_repeats=1,
        n_draws=4,
    )
    df = run("raman-size", cfg)
    opt = pd.DataFrame(get("raman-size").summarise(df, cfg)["optimal_sizes"]).set_index("gamma3")
    assert opt.loc[0.05, "n_star_numeric"] < opt.loc[0.03, "n_star_numeric"]


def test_slides_optimal_size_goes_negative_where_ours_does_not():
    r = PlasticityRates(0.5, 0.3, 0.01)
    assert slides_optimal_size(r) < 0
    from syngeo.bounds import optimal_size

    assert optimal_size(r) == pytest.approx(900.0)


def test_geometry_dual_noise_gives_lognormal_under_ne_and_gaussian_under_euclid():
    cfg = GeometryConfig(gammas=((0.0, 0.2, 0.05),), n_cycles=150, seeds=(0,))
    _df, report, summary = _contract("raman-geometry", cfg)
    rows = {r["potential"]: r for r in summary["by_potential"]}
    ne, eu = rows["NE"], rows["2-norm"]
    for r in (ne, eu):
        # per-synapse variance of the dual change: 150·(γ2²/N + γ3²/T) = 0.381; SE ≈ 5 %
        assert r["dual_change_var"] == pytest.approx(r["predicted_dual_change_var"], rel=0.2)
    assert ne["sign_flip_fraction"] == 0.0
    assert eu["sign_flip_fraction"] > 0.0
    s = math.sqrt(ne["predicted_dual_change_var"])
    lognormal_skew = (math.exp(s * s) + 2) * math.sqrt(math.exp(s * s) - 1)
    assert ne["skew_aligned_weight"] > 0.6 * lognormal_skew
    assert abs(ne["skew_log_magnitude"]) < 0.3
    assert abs(eu["skew_aligned_weight"]) < 0.3
    assert "## Reading" in report


def test_reproduce_command_end_to_end(tmp_path):
    from syngeo.app.cli import main

    out = tmp_path / "geo"
    try:
        main(["reproduce", "raman-geometry", "--quick", "--out", str(out)])
    except SystemExit as exc:  # the entry point may exit explicitly; 0 is success
        assert exc.code in (0, None)
    for name in ("report.md", "summary.json", "results.parquet", "raman_geometry.png"):
        assert (out / name).exists()
    assert "log-normal" in (out / "report.md").read_text()
