"""Tests of syngeo.app.experiments.surace (Surace & Brea Figs. 1 and 2) through the experiment contract."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from matplotlib.figure import Figure

import syngeo.app.experiments as experiments
from syngeo.app.experiments import surace
from syngeo.app.outputs import to_jsonable
from syngeo.metrics import Fisher, flow_field

SMALL_FIG2 = surace.Fig2Config(n_p=9, n_q=8)


@pytest.fixture(scope="module")
def fig1_df():
    return experiments.run("surace-fig1", surace.Fig1Config.quick())


@pytest.fixture(scope="module")
def fig2_df():
    return experiments.run("surace-fig2", SMALL_FIG2)


def test_registry_finds_both_figures():
    for name in ("surace-fig1", "surace-fig2"):
        exp = experiments.get(name)
        config = exp.Config.quick()
        json.dumps(dataclasses.asdict(config))  # configs are JSON-serialisable
        assert exp.cells(config)


# -- Fig. 1 ---------------------------------------------------------------------------------------


def test_fig1_euclidean_direction_is_the_normalised_negative_gradient(fig1_df):
    euclid = fig1_df[fig1_df.metric == "euclidean"]
    grad = euclid[["grad_x1", "grad_x2"]].to_numpy()
    np.testing.assert_allclose(grad, 10 * euclid[["x2", "x1"]].to_numpy())
    direction = euclid[["direction_x1", "direction_x2"]].to_numpy()
    np.testing.assert_allclose(direction, -grad / np.linalg.norm(grad, axis=1, keepdims=True))
    assert euclid.angle_to_euclidean_deg.max() < 1e-6
    np.testing.assert_allclose(euclid[["ellipse_major", "ellipse_minor"]], 1.0)


def test_fig1_other_metrics_turn_the_direction_and_no_unit_vector_beats_it(fig1_df):
    config = surace.Fig1Config.quick()
    for name in ("constant", "position"):
        sub = fig1_df[fig1_df.metric == name]
        assert sub.angle_to_euclidean_deg.max() > 20
        np.testing.assert_allclose(sub.ellipse_major / sub.ellipse_minor, config.anisotropy)
        gap = sub.brute_force_slope - sub.slope
        assert gap.min() > -1e-9  # the closed form is the minimum ...
        assert gap.max() < 1e-3 * sub.slope.abs().max()  # ... and the search gets close to it
    assert fig1_df[fig1_df.metric == "constant"].ellipse_angle_deg.round(9).nunique() == 1
    assert fig1_df[fig1_df.metric == "position"].ellipse_angle_deg.round(9).nunique() > 3


def test_fig1_plot_report_summary(fig1_df):
    config = surace.Fig1Config.quick()
    figures = surace.fig1_plot(fig1_df, config)
    assert set(figures) == {"surace_fig1"} and isinstance(figures["surace_fig1"], Figure)
    summary = surace.fig1_summary(fig1_df, config)
    json.dumps(to_jsonable(summary))
    assert summary["euclidean"]["max_angle_to_euclidean_deg"] < 1e-6
    report = surace.fig1_report(fig1_df, config)
    assert "surace_fig1.png" in report
    assert f"{summary['constant']['mean_angle_to_euclidean_deg']:.1f}°" in report


# -- Fig. 2 ---------------------------------------------------------------------------------------


def test_fig2_rows_cover_every_panel_and_grid_point(fig2_df):
    assert set(fig2_df.panel) == {"A", "B", "C", "D", "B-V", "B-uV"}
    assert len(fig2_df) == 6 * SMALL_FIG2.n_p * SMALL_FIG2.n_q
    assert np.all(np.isfinite(fig2_df[["v_P", "v_q_mV", "speed", "cost"]].to_numpy()))


def test_fig2_fisher_panel_is_unit_invariant_and_euclidean_panels_are_not(fig2_df):
    summary = surace.fig2_summary(fig2_df, SMALL_FIG2)
    assert summary["fisher_max_rel_diff_V"] < 1e-10
    assert summary["fisher_max_rel_diff_uV"] < 1e-10
    assert summary["q_speed_ratio_C_vs_A"] == pytest.approx(1e6, rel=1e-10)
    assert summary["q_speed_ratio_D_vs_A"] == pytest.approx(1e-6, rel=1e-10)
    assert summary["median_angle_C_vs_A_deg"] > 10 and summary["median_angle_D_vs_A_deg"] > 10
    assert summary["median_angle_B_vs_A_deg"] > 5
    json.dumps(to_jsonable(summary))


def test_fig2_panel_b_is_the_natural_gradient_of_the_release_model(fig2_df):
    model = SMALL_FIG2.model()
    grid = SMALL_FIG2.grid_mv()
    field = flow_field(model.cost_grad, Fisher(model), grid)
    sub = fig2_df[fig2_df.panel == "B"].sort_values(["i_q", "i_p"])
    np.testing.assert_allclose(sub[["v_P", "v_q_mV"]].to_numpy(), field.vectors.reshape(-1, 2))
    # Panel C's native q-velocity is in V per unit time: 1e-3 times its mV value.
    c = fig2_df[fig2_df.panel == "C"]
    np.testing.assert_allclose(c.v_q_native, 1e-3 * c.v_q_mV)
    assert set(c.q_unit) == {"V"} and set(fig2_df[fig2_df.panel == "D"].q_unit) == {"µV"}


def test_fig2_plot_and_report(fig2_df):
    figures = surace.fig2_plot(fig2_df, SMALL_FIG2)
    fig = figures["surace_fig2"]
    titles = [ax.get_title(loc="left") for ax in fig.axes if ax.get_title(loc="left")]
    assert [t[0] for t in titles] == ["A", "B", "C", "D"]
    assert all("(mV)" in ax.get_ylabel() for ax in fig.axes if ax.get_title(loc="left"))
    report = surace.fig2_report(fig2_df, SMALL_FIG2)
    summary = surace.fig2_summary(fig2_df, SMALL_FIG2)
    assert "surace_fig2.png" in report
    assert format(summary["fisher_max_abs_diff_V"], ".3g") in report
    assert "n/a" not in report


def test_fig2_bad_configuration_is_rejected():
    with pytest.raises(ValueError, match="unknown panels"):
        surace.fig2_cells(surace.Fig2Config(panels=("A", "E")))
    with pytest.raises(ValueError, match="0 < P_min < P_max < 1"):
        surace.fig2_run_cell(surace.Fig2Config(p_range=(0.0, 0.5)), {"panel": "A"})
    with pytest.raises(ValueError, match="q_min"):
        surace.Fig2Config(q_range_mv=(-1.0, 2.0)).grid_mv()
