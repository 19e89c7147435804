"""Image-level and property checks of the ``syngeo infer`` / ``syngeo demo`` figures.

The weights come from :func:`syngeo.simulate_change` (a dual change that is exactly Gaussian for
the true potential), so which candidate wins, which is rejected and whether NE is ruled out are
known in advance.
"""

from __future__ import annotations

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pytest
import scipy.stats

from figcheck import assert_figure, data_panels
from syngeo.app.plotting import geometry_style
from syngeo.app.report import REJECTED_DELTA_AIC, inference_figures, qq_band
from syngeo.inference import infer_geometry
from syngeo.simulate import simulate_change

N = 2000


@pytest.fixture(scope="module")
def pnorm_case():
    """3-norm learning from N(0, s²) starts: ~10 % of the weights change sign, so NE is ruled
    out; the 2-norm is rejected by thousands of AIC units."""
    sim = simulate_change("3-norm", N, rng=0)
    fit = infer_geometry(sim.before, sim.after, n_bootstrap=0, rng=0)
    figures = inference_figures(sim.before, sim.after, fit, truth="3-norm")
    yield sim, fit, figures
    for fig in figures.values():
        plt.close(fig)


@pytest.fixture(scope="module")
def ne_case():
    """Multiplicative (NE) learning from signed log-normal starts: no sign flips, NE ranked."""
    sim = simulate_change("NE", N, init="lognormal", rng=1)
    fit = infer_geometry(sim.before, sim.after, n_bootstrap=0, rng=0)
    figures = inference_figures(sim.before, sim.after, fit, truth="NE")
    yield sim, fit, figures
    for fig in figures.values():
        plt.close(fig)


def _legend_texts(fig) -> list[str]:
    texts = []
    for legend in [*fig.legends, *(ax.get_legend() for ax in fig.axes)]:
        if legend is not None:
            texts += [t.get_text() for t in legend.get_texts()]
    return texts


def _lines(fig, label_start: str) -> list:
    return [
        line
        for ax in data_panels(fig)
        for line in ax.lines
        if str(line.get_label()).startswith(label_start)
    ]


# ---------------------------------------------------------------------------------------------
# image-level smoke tests
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", ["pnorm_case", "ne_case"])
def test_figures_render_with_the_expected_panels(case, request):
    _, _, figures = request.getfixturevalue(case)
    assert set(figures) == {"dual_change_histograms", "qq_plots", "score_vs_p"}
    assert_figure(figures["dual_change_histograms"], panels=3)
    assert_figure(figures["qq_plots"], panels=3)
    assert_figure(figures["score_vs_p"], panels=2)


def test_top_counts_the_panels_and_the_contrast_comes_last(pnorm_case):
    sim, fit, _ = pnorm_case
    for top, expected in ((1, 1), (2, 2), (4, 4)):
        figures = inference_figures(sim.before, sim.after, fit, top=top)
        for stem in ("dual_change_histograms", "qq_plots"):
            assert_figure(figures[stem], panels=expected)
        titles = [ax.get_title() for ax in data_panels(figures["dual_change_histograms"])]
        assert titles[0].startswith(fit.best) and "best" in titles[0]
        if top > 1:
            assert "rejected" in titles[-1]
        for fig in figures.values():
            plt.close(fig)


def test_legends_sit_off_the_data(pnorm_case, ne_case):
    for _, _, figures in (pnorm_case, ne_case):
        for stem, fig in figures.items():
            fig.canvas.draw()
            renderer = fig.canvas.get_renderer()
            legends = [*fig.legends, *(ax.get_legend() for ax in fig.axes)]
            legends = [leg for leg in legends if leg is not None]
            assert legends, stem
            for legend in legends:
                box = legend.get_window_extent(renderer)
                for ax in data_panels(fig):
                    assert not box.overlaps(ax.get_window_extent(renderer)), stem


# ---------------------------------------------------------------------------------------------
# histograms: the winner and a rejected candidate, one colour per geometry
# ---------------------------------------------------------------------------------------------


def test_histograms_show_the_winner_and_a_rejected_candidate(pnorm_case):
    _, fit, figures = pnorm_case
    fig = figures["dual_change_histograms"]
    texts = _legend_texts(fig)
    rows = fit.ranking.set_index("candidate")
    # The Euclidean geometry is the preferred contrast when rejected (here by thousands of AIC).
    assert rows.loc["2-norm", "delta_aic"] > 1000
    (contrast,) = [t for t in texts if t.startswith("ψ = 2-norm")]
    assert "rejected" in contrast
    assert any(t.startswith(f"ψ = {fit.best} (best") for t in texts)
    panels = data_panels(fig)
    names = [ax.get_title().split("\n")[0] for ax in panels]
    assert names[0] == fit.best and names[-1] == "2-norm"
    for ax, name in zip(panels, names, strict=True):
        (stairs,) = ax.patches
        # palette: the geometry's own colour, whatever its position in the figure
        np.testing.assert_allclose(
            stairs.get_facecolor()[:3], matplotlib.colors.to_rgb(geometry_style(name).color)
        )
        # a density of the standardised change: area = fraction of synapses within ±5 σ̂ (≈ 1)
        values, edges = stairs.get_data().values, stairs.get_data().edges
        assert float(np.sum(values * np.diff(edges))) == pytest.approx(1.0, abs=2e-3)
    # the panels share their axes, so the shapes compare directly
    assert len({ax.get_xlim() for ax in panels}) == 1
    assert len({ax.get_ylim() for ax in panels}) == 1


def test_the_contrast_is_rejected_when_one_is():
    """Without a 2-norm or NE among the candidates the contrast is the lowest-ranked rejected
    one; its ΔAIC is at least the threshold."""
    sim = simulate_change("3-norm", N, rng=2)
    fit = infer_geometry(sim.before, sim.after, [2.6, 2.8, 3.0, 3.2], n_bootstrap=0, rng=0)
    figures = inference_figures(sim.before, sim.after, fit, top=2)
    (_, last) = data_panels(figures["dual_change_histograms"])
    name = last.get_title().split("\n")[0]
    daic = fit.ranking.set_index("candidate").loc[name, "delta_aic"]
    assert daic >= REJECTED_DELTA_AIC and "rejected" in last.get_title()
    for fig in figures.values():
        plt.close(fig)


# ---------------------------------------------------------------------------------------------
# QQ: detrended, with the band of a Gaussian sample of the same size
# ---------------------------------------------------------------------------------------------


def test_qq_band_covers_gaussian_order_statistics_at_its_level():
    """Monte Carlo: 4000 samples of n = 200 standard normals; at each of 5 ranks the ordered
    value lies outside the 95 % band with probability 0.05 exactly (Beta order statistics). The
    binomial s.d. of the rate over 4000 samples is sqrt(0.05·0.95/4000) = 0.0034; 5 s.d. = 0.017."""
    n, k = 200, 4000
    ranks = np.array([1, 10, 100, 190, 200])
    low, high = qq_band(n, ranks)
    g = np.random.default_rng(0)
    z = np.sort(g.standard_normal((k, n)), axis=1)[:, ranks - 1]
    q = scipy.stats.norm.ppf((ranks - 0.5) / n)
    outside = np.mean((z - q < low) | (z - q > high), axis=0)
    np.testing.assert_allclose(outside, 0.05, atol=0.017)


def test_qq_plots_are_detrended_and_tell_the_candidates_apart(pnorm_case):
    sim, fit, figures = pnorm_case
    panels = data_panels(figures["qq_plots"])
    names = [ax.get_title().split("\n")[0] for ax in panels]
    assert len({ax.get_ylim() for ax in panels}) == 1  # shared y: departures compare directly
    outside = {}
    rows = fit.ranking.set_index("candidate")
    for ax, name in zip(panels, names, strict=True):
        (points,) = [line for line in ax.lines if str(line.get_label()).startswith("ψ =")]
        q, y = (np.asarray(v, dtype=float) for v in points.get_data())
        # y is the ordered standardised change minus the normal quantile (detrended)
        from syngeo.gaussianity import dual_change
        from syngeo.potentials import potential

        z = np.sort(
            (dual_change(sim.before, sim.after, potential(name)) - rows.loc[name, "mean"])
            / rows.loc[name, "std"]
        )
        ranks = np.round(N * scipy.stats.norm.cdf(q) + 0.5).astype(int)
        np.testing.assert_allclose(y, z[ranks - 1] - q, atol=1e-9)
        assert abs(np.mean(y)) < 0.5 or name != fit.best
        outside[name] = float(ax.get_title().split("\n")[1].split("%")[0]) / 100
    assert outside[fit.best] < 0.25 < outside[names[-1]]


# ---------------------------------------------------------------------------------------------
# scores against p: ΔAIC from 0, stars at each panel's optimum, NE, the hidden p
# ---------------------------------------------------------------------------------------------


def _score_panels(fig):
    cdf_ax, aic_ax = data_panels(fig)
    assert "CDF" in cdf_ax.get_ylabel() and "ΔAIC" in aic_ax.get_ylabel()
    return cdf_ax, aic_ax


@pytest.mark.parametrize("case", ["pnorm_case", "ne_case"])
def test_delta_aic_axis_starts_at_zero_and_plots_the_ranking(case, request):
    _, fit, figures = request.getfixturevalue(case)
    _, aic_ax = _score_panels(figures["score_vs_p"])
    assert aic_ax.get_ylim()[0] == 0.0
    (grid,) = _lines(figures["score_vs_p"], "p-norm grid")[1:]
    p, daic = (np.asarray(v, dtype=float) for v in grid.get_data())
    rows = fit.ranking[fit.ranking["p"].notna() & ~fit.ranking["refined"].astype(bool)]
    expected = rows.set_index("p").loc[p, "delta_aic"].to_numpy()
    np.testing.assert_allclose(daic, expected)
    assert (daic >= 0).all()


@pytest.mark.parametrize("estimator", ["likelihood", "cdf"])
@pytest.mark.parametrize("case", ["pnorm_case", "ne_case"])
def test_stars_sit_at_each_panels_optimum(case, estimator, request):
    sim, fit, figures = request.getfixturevalue(case)
    if estimator == "cdf":
        fit = infer_geometry(sim.before, sim.after, estimator="cdf", n_bootstrap=0, rng=0)
        figures = inference_figures(sim.before, sim.after, fit)
    fig = figures["score_vs_p"]
    ranked = fit.ranking[fit.ranking["rank"].notna()]
    x = ranked["p"].fillna(1.0).to_numpy()  # NE is drawn at p = 1
    for ax, column in zip(_score_panels(fig), ("cdf_distance", "delta_aic"), strict=True):
        stars = [line for line in ax.lines if line.get_gid() == f"optimum_{column}"]
        (star,) = stars
        k = int(np.argmin(ranked[column].to_numpy()))
        assert star.get_xdata()[0] == pytest.approx(x[k])
        assert star.get_ydata()[0] == pytest.approx(ranked[column].iloc[k])
        assert star.get_ydata()[0] == pytest.approx(ranked[column].min())
    if estimator == "cdf":
        for f in figures.values():
            plt.close(f)


def test_ne_is_omitted_with_a_note_when_ruled_out(pnorm_case):
    _, fit, figures = pnorm_case
    assert fit.ne_ruled_out
    for stem, fig in figures.items():
        assert not _lines(fig, "NE"), stem
        (note,) = [t for t in _legend_texts(fig) if t.startswith("NE not drawn")]
        assert "ruled out" in note and f"{fit.n_sign_flips} synapses change sign" in note


def test_ne_is_drawn_at_p_1_when_ranked(ne_case):
    _, fit, figures = ne_case
    ne = fit.ranking.set_index("candidate").loc["NE"]
    assert not fit.ne_ruled_out
    fig = figures["score_vs_p"]
    assert not [t for t in _legend_texts(fig) if t.startswith("NE not drawn")]
    for ax, column in zip(_score_panels(fig), ("cdf_distance", "delta_aic"), strict=True):
        (point,) = [line for line in ax.lines if str(line.get_label()).startswith("NE")]
        assert point.get_xdata()[0] == 1.0
        assert point.get_ydata()[0] == pytest.approx(ne[column])
        assert point.get_color() == geometry_style("NE").color


def test_the_hidden_geometry_is_marked(pnorm_case, ne_case):
    _, _, figures = pnorm_case
    hidden = _lines(figures["score_vs_p"], "hidden p = 3")
    assert len(hidden) == 2 and all(line.get_xdata()[0] == 3.0 for line in hidden)
    assert any(
        t.startswith("ψ = 3-norm") and "hidden" in t
        for t in _legend_texts(figures["dual_change_histograms"])
    )
    _, _, figures = ne_case
    hidden = _lines(figures["score_vs_p"], "hidden: NE")
    assert len(hidden) == 2 and all(line.get_xdata()[0] == 1.0 for line in hidden)


def test_nothing_is_marked_hidden_without_a_truth(pnorm_case):
    sim, fit, _ = pnorm_case
    figures = inference_figures(sim.before, sim.after, fit)
    for fig in figures.values():
        assert not any("hidden" in t for t in _legend_texts(fig))
        plt.close(fig)


def test_written_pngs_are_200_dpi_and_not_blank(tmp_path):
    """Through the writer the commands use: each PNG is at least 200 px per inch of figure."""
    from figcheck import assert_png
    from syngeo.app.outputs import write_outputs

    sim = simulate_change("2.5-norm", 500, rng=3)
    fit = infer_geometry(sim.before, sim.after, n_bootstrap=0, rng=0)
    figures = inference_figures(sim.before, sim.after, fit, truth=2.5)
    widths = {stem: fig.get_figwidth() for stem, fig in figures.items()}
    written = write_outputs(tmp_path, figures=figures)
    assert len(written) >= 3
    for stem, inches in widths.items():
        assert_png(tmp_path / f"{stem}.png", min_dpi_width=int(200 * inches))
        assert (tmp_path / f"{stem}.pdf").stat().st_size > 0


def test_a_single_candidate_draws_without_a_contrast():
    """One p-norm asked for: the ranking holds it and its refinement, nothing is left to
    contrast, so the histograms show those two and no panel claims a rejection."""
    sim = simulate_change("3-norm", 800, rng=0)
    fit = infer_geometry(sim.before, sim.after, ["3-norm"], n_bootstrap=0, rng=0)
    assert len(fit.ranking) == 2
    figures = inference_figures(sim.before, sim.after, fit)
    assert_figure(figures["dual_change_histograms"], panels=2)
    assert_figure(figures["score_vs_p"], panels=2)
    titles = [ax.get_title() for ax in data_panels(figures["dual_change_histograms"])]
    assert not any("rejected" in t or "lowest ranked" in t for t in titles)
    for fig in figures.values():
        plt.close(fig)
