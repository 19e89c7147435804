"""Image-level checks of the fig5 (spines), fig4 (deep) and power figures, and that their
colours come from the one palette (:func:`syngeo.app.plotting.geometry_style`), whatever the
order in which a run lists its geometries."""

from __future__ import annotations

import itertools

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pytest

from figcheck import assert_figure, data_panels
from syngeo.app.experiments import get, run
from syngeo.app.plotting import geometry_style, noise_color


def _rgb(colour) -> tuple[float, float, float]:
    return tuple(float(c) for c in matplotlib.colors.to_rgb(colour))


def _close(figures) -> None:
    for fig in figures.values():
        plt.close(fig)


# ---------------------------------------------------------------------------------------------
# power
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def power_run(tmp_path_factory):
    from syngeo.app.experiments.power import POWER, Config

    config = Config(
        n=(60, 120), noise=(0.0, 0.1), candidates=("ne", "2-norm", "3-norm"), runs=2, planned_n=60
    )
    table = run(POWER, config, out=tmp_path_factory.mktemp("power"))
    return POWER, config, table


def test_power_figures_render(power_run):
    exp, config, table = power_run
    figures = exp.plot(table, config)
    assert_figure(figures["power"], panels=2)
    assert_figure(figures["confusion"], panels=1)
    _close(figures)


def test_power_colours_belong_to_noise_levels_and_geometries(power_run):
    """Noise levels are greys fixed by the level (the same whatever the other levels of the
    run), and the two curves of the right panel are the geometries they name."""
    exp, config, table = power_run
    figures = exp.plot(table, config)
    left, right = data_panels(figures["power"])
    # errorbar containers carry the label; their first line is the data line
    by_label = {str(c.get_label()): c.lines[0] for c in left.containers}
    for s in config.noise:
        assert _rgb(by_label[f"noise {100 * s:.0f} %"].get_color()) == _rgb(noise_color(s))
    curves = {str(line.get_label()): line for line in right.lines}
    truth = geometry_style(config.truth)
    assert _rgb(curves[f"identify {config.truth}"].get_color()) == _rgb(truth.color)
    assert curves[f"identify {config.truth}"].get_marker() == truth.marker
    assert _rgb(curves["rule out the 2-norm"].get_color()) == _rgb(geometry_style("2-norm").color)
    _close(figures)
    # one level alone keeps its grey (a default colour cycle would restart at C0)
    from dataclasses import replace

    only = replace(config, noise=(0.1,))
    part = table[(table["kind"] != "power") | (table["noise"] == 0.1)]
    figures = exp.plot(part, only)
    (container,) = data_panels(figures["power"])[0].containers
    line = container.lines[0]
    assert _rgb(line.get_color()) == _rgb(noise_color(0.1))
    _close(figures)


def test_noise_color_is_monotone_and_fixed():
    greys = [_rgb(noise_color(s))[0] for s in (0.0, 0.05, 0.1, 0.2, 0.5, 0.9)]
    assert greys[0] == 0.0 and all(a < b for a, b in itertools.pairwise(greys[:-1]))
    assert greys[-1] == greys[-2]  # clipped at 50 %


# ---------------------------------------------------------------------------------------------
# fig4 (deep networks)
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fig4_run(tmp_path_factory):
    exp = get("fig4")
    config = exp.Config(
        widths=(2,),
        n_seeds=1,
        n_pretrain=300,
        n_finetune=32,
        pretrain_epochs=2,
        lrs=(1e-2,),
        epochs=2,
        max_extensions=1,
        batch_size=16,
    )
    table = run(exp, config, out=tmp_path_factory.mktemp("fig4"))
    return exp, config, table


def test_fig4_figures_render_with_palette_colours(fig4_run):
    exp, config, table = fig4_run
    figures = exp.plot(table, config)
    # two matrices (colour bars are not panels) and the change-magnitude bars
    assert_figure(figures["fig4"], panels=3)
    bars = data_panels(figures["fig4"])[2]
    for container in bars.containers:
        name = container.get_label()
        for patch in container.patches:
            assert _rgb(patch.get_facecolor()) == _rgb(geometry_style(name).color), name
    hist = figures["fig4_hist"]
    n_trained = len(set(table["trained_with"]))
    n_read = len(set(table["read_with"]))
    assert_figure(hist, panels=n_trained * n_read)
    for ax in data_panels(hist):
        psi = ax.get_title().split("ψ=")[1].split(",")[0]
        for patch in ax.patches:
            assert _rgb(patch.get_facecolor()) == _rgb(geometry_style(psi).color), psi
    _close(figures)


# ---------------------------------------------------------------------------------------------
# fig5 (spines)
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fig5_run(tmp_path_factory):
    from syngeo.app.experiments.spines import Config
    from test_experiments_spines import NE_MODEL, synthetic_table

    tmp = tmp_path_factory.mktemp("fig5")
    synthetic_table(tmp / "ne.csv", NE_MODEL, n_connections=300)
    config = Config(
        table=str(tmp / "ne.csv"),
        potentials=("2-norm", "NE"),  # NE second: its colour must not depend on the order
        families=("two-point",),
        n_folds=2,
        n_bootstrap=2,
        n_shuffles=5,
    )
    table = run(get("fig5"), config, out=tmp / "run")
    return get("fig5"), config, table


def test_fig5_figures_render(fig5_run):
    exp, config, table = fig5_run
    figures = exp.plot(table, config)
    assert_figure(figures["fig5_histogram"], panels=1)
    assert_figure(figures["fig5_qq"], panels=len(config.potentials))
    assert_figure(figures["fig5_profile"], panels=1)
    assert_figure(figures["fig5_connections"], panels=1)
    _close(figures)


def test_fig5_colours_come_from_the_palette_and_ne_stands_alone(fig5_run):
    exp, config, table = fig5_run
    figures = exp.plot(table, config)
    (ax,) = data_panels(figures["fig5_histogram"])
    seen = set()
    for line in ax.lines:
        name = str(line.get_label()).split(" / ")[0]
        if name in config.potentials:
            assert _rgb(line.get_color()) == _rgb(geometry_style(name).color), name
            seen.add(name)
    assert seen == set(config.potentials)
    for ax in data_panels(figures["fig5_qq"]):
        name = ax.get_title().split(" / ")[0]
        assert _rgb(ax.lines[0].get_color()) == _rgb(geometry_style(name).color), name
    for stem in ("fig5_profile", "fig5_connections"):
        (ax,) = data_panels(figures[stem])
        # NE (drawn at p = 1) is a point of its own: no line joins it to the p-norms
        joined = [ln for ln in ax.lines if ln.get_linestyle() not in ("None", "none", "")]
        joined = [ln for ln in joined if not str(ln.get_label()).startswith("_")]
        for line in joined:
            assert 1.0 not in np.asarray(line.get_xdata(), dtype=float), stem
        ne_points = [
            ln for ln in ax.lines if len(ln.get_xdata()) == 1 and float(ln.get_xdata()[0]) == 1.0
        ]
        assert ne_points, stem
        ne = geometry_style("NE")
        for point in ne_points:
            assert _rgb(point.get_color()) == _rgb(ne.color) and point.get_marker() == ne.marker
    for stem in ("fig5_histogram", "fig5_profile", "fig5_connections"):
        # legends sit outside the axes
        fig = figures[stem]
        (ax,) = data_panels(fig)
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        legends = [leg for leg in (*fig.legends, ax.get_legend()) if leg is not None]
        assert legends, stem
        for legend in legends:
            box = legend.get_window_extent(renderer)
            assert not box.overlaps(ax.get_window_extent(renderer)), stem
    _close(figures)
