"""Fig. 3A / Fig. 6 linear-regression experiment: protocol, solvers, measurements, outputs."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from syngeo.app import experiments
from syngeo.app.experiments import regression as reg
from syngeo.gaussianity import cdf_distance, change_magnitude, dual_change
from syngeo.solvers import bregman_projection

SMALL = {"alpha": 0.5, "power": 1.0, "width": 400, "seed": 3}


def test_paper_widths_and_dataset_sizes():
    # provenance: the paper's script uses np.logspace(2, log10(2e4), 10, dtype=int), N = int(D**α)
    expected = np.logspace(2, np.log10(2e4), 10, dtype=int)
    assert reg.PAPER_WIDTHS == tuple(int(d) for d in expected)
    assert [reg.n_samples(d, 0.75) for d in (100, 20000)] == [31, 1681]
    assert [reg.n_samples(d, 0.5) for d in (100, 20000)] == [10, 141]
    assert reg.n_samples(10_000, 0.5) == 100  # an exact power is not rounded down to 99
    assert len(reg.PAPER_LRS) == 16
    assert reg.PAPER_LRS[0] == pytest.approx(1e-7) and reg.PAPER_LRS[-1] == pytest.approx(1e-1)


def test_configs_follow_the_paper_and_the_registry():
    fig3a, fig6 = experiments.get("fig3a"), experiments.get("fig6")
    full = fig6.Config()
    assert full.n_cells == 10 * 2 * 2 * 30  # widths x alpha x powers x seeds
    assert full.potentials == ("NE", "2-norm", "3-norm")
    assert full.alphas == (0.5, 0.75) and full.powers == (1.0, 2.0)
    assert fig3a.Config().powers == (2.0,)
    quick = fig6.Config.quick()
    assert quick.n_cells <= 80 and max(quick.widths) <= 2000
    assert fig3a.run_cell is reg.run_cell and fig6.cells is reg.cells


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"widths": (1,)}, "widths"),
        ({"alphas": (1.0,)}, "N < D"),
        ({"powers": (3.0,)}, "powers"),
        ({"potentials": ("NE", "ne")}, "distinct"),
        ({"potentials": ("p=1",)}, "p > 1"),
        ({"n_seeds": 0}, "n_seeds"),
        ({"solver": "adam"}, "solver"),
        ({"train_epochs": 600}, "train_epochs"),
        ({"widths": ()}, "empty"),
    ],
)
def test_bad_config_values_are_rejected(kwargs, match):
    with pytest.raises(ValueError, match=match):
        reg.Fig6Config(**kwargs)


def test_cells_cover_the_grid_once_widest_first():
    config = reg.Fig6Config(widths=(100, 300), n_seeds=2)
    cells = reg.cells(config)
    assert len(cells) == config.n_cells == 2 * 2 * 2 * 2
    assert len({json.dumps(c, sort_keys=True) for c in cells}) == len(cells)
    assert cells[0]["width"] == 300 and cells[-1]["width"] == 100


def test_problem_is_reproducible_and_distinct_across_cells():
    X, y, w0 = reg.regression_problem(300, 0.75, 2.0, seed=1)
    X2, _, w02 = reg.regression_problem(300, 0.75, 2.0, seed=1)
    assert X.shape == (reg.n_samples(300, 0.75), 300) and y.shape == (72,) and w0.shape == (300,)
    np.testing.assert_array_equal(X, X2)
    np.testing.assert_array_equal(w0, w02)
    assert set(np.unique(y)) <= {-1.0, 1.0}
    X3, _, w03 = reg.regression_problem(300, 0.75, 2.0, seed=2)
    assert not np.allclose(X, X3) and not np.allclose(w0, w03)
    _, _, w0_other_power = reg.regression_problem(300, 0.75, 1.0, seed=1)
    assert not np.allclose(w0, w0_other_power)


def test_initial_weights_and_labels_have_the_protocol_distribution():
    # w0 ~ N(0, 1/D): D * mean(w0^2) over 5 draws of D = 4000 is 1 within ~5 standard errors
    d = 4000
    draws = [reg.regression_problem(d, 0.5, 2.0, seed=s) for s in range(5)]
    second_moment = np.mean([np.mean(w0**2) * d for _, _, w0 in draws])
    assert second_moment == pytest.approx(1.0, abs=5 * math.sqrt(2 / (5 * d)))
    labels = np.concatenate([y for _, y, _ in draws])
    assert abs(labels.mean()) < 5 / math.sqrt(labels.size)


def test_run_cell_measures_the_exact_projection_under_the_true_potential():
    config = reg.Fig6Config(n_seeds=1)
    rows = reg.run_cell(config, SMALL)
    assert [r["potential"] for r in rows] == ["NE", "2-norm", "3-norm"]
    X, y, w0 = reg.regression_problem(400, 0.5, 1.0, seed=3)
    for row in rows:
        assert row["n_samples"] == 20 and row["width"] == 400 and row["solver"] == "exact"
        assert row["constraint_residual"] <= 1e-10
        sol = bregman_projection(X, y, w0, row["potential"])
        # the row's numbers are those of the final weights, recomputed through the public API
        delta = dual_change(w0, sol.weights, row["potential"])
        assert row["d"] == pytest.approx(cdf_distance(delta), abs=2e-3)
        assert row["d_centred"] == pytest.approx(cdf_distance(delta, centred=True), abs=2e-3)
        assert row["magnitude"] == pytest.approx(
            change_magnitude(w0, sol.weights, row["potential"]), rel=1e-8
        )
    ne = rows[0]
    assert ne["sign_flip_fraction"] == 0.0  # NE never changes a sign


def test_gaussianity_distance_falls_with_width():
    # the paper's central claim in a small instance: median d over 4 seeds, NE, α = 0.5, a = 2
    config = reg.Fig3AConfig(potentials=("NE",), n_seeds=4)

    def median_d(width):
        return np.median(
            [
                reg.run_cell(config, {"alpha": 0.5, "power": 2.0, "width": width, "seed": s})[0][
                    "d"
                ]
                for s in range(4)
            ]
        )

    assert median_d(4000) < 0.6 * median_d(100)


@pytest.mark.parametrize("name", ["2-norm", "3-norm", "NE"])
def test_training_protocol_reaches_the_exact_weights(name):
    X, y, w0 = reg.regression_problem(100, 0.5, 2.0, seed=0)
    exact = bregman_projection(X, y, w0, name).weights
    # the paper's protocol (stop at MSE < 1e-3) lands within ~sqrt(MSE) of the projection
    paper = reg.solve_by_training(X, y, w0, name, lrs=reg.PAPER_LRS[8:])
    assert paper.reached_target and paper.mse < 1e-3
    assert np.linalg.norm(paper.weights - exact) < 0.05 * np.linalg.norm(exact)
    # trained to machine precision, mirror descent with momentum gives the projection itself
    tight = reg.solve_by_training(
        X, y, w0, name, lrs=(3e-3, 1e-2, 3e-2), epochs=250, max_epochs=500, target_mse=1e-22
    )
    assert tight.mse < 1e-16
    np.testing.assert_allclose(tight.weights, exact, rtol=0, atol=1e-7 * np.abs(exact).max())
    assert "mse=" in repr(tight) and tight.to_dict()["epochs"] == tight.epochs


def test_train_solver_rows_agree_with_the_exact_rows():
    cell = {"alpha": 0.5, "power": 2.0, "width": 100, "seed": 0}
    exact = reg.run_cell(reg.Fig3AConfig(potentials=("3-norm",)), cell)[0]
    trained = reg.run_cell(
        reg.Fig3AConfig(
            potentials=("3-norm",), solver="train", train_lrs=(1e-2, 3e-2), train_target_mse=1e-12
        ),
        cell,
    )[0]
    assert trained["solver"] == "train" and trained["train_mse"] <= 1e-12
    assert trained["magnitude"] == pytest.approx(exact["magnitude"], rel=1e-4)
    assert trained["d"] == pytest.approx(exact["d"], abs=0.02)


def _synthetic_table() -> pd.DataFrame:
    rows = []
    rng = np.random.default_rng(0)
    for name in ("NE", "2-norm", "3-norm"):
        for alpha in (0.5, 0.75):
            for power in (1.0, 2.0):
                for width in (100, 1000, 10000):
                    for seed in range(3):
                        rows.append(
                            {
                                "potential": name,
                                "alpha": alpha,
                                "power": power,
                                "width": width,
                                "seed": seed,
                                "d": 0.5 / math.sqrt(width) * (1 + 0.1 * rng.random()),
                                "magnitude": alpha * width**-0.2,
                                "constraint_residual": 1e-12,
                            }
                        )
    return pd.DataFrame(rows)


def test_summary_report_and_figures_state_the_claims_with_numbers():
    df = _synthetic_table()
    config = reg.Fig6Config()
    summary = reg.summarise(df, config)
    json.dumps(summary)  # JSON-serialisable
    assert summary["d_decreases_with_width_everywhere"] is True
    assert summary["magnitude_smaller_for_alpha_0.5_everywhere"] is True
    assert len(summary["by_setting"]) == 12
    slope = summary["by_setting"][0]["d_slope_loglog"]
    assert slope == pytest.approx(-0.5, abs=0.05)  # d ∝ D^-1/2 in the synthetic table
    report = reg.fig6_report(df, config)
    assert "![fig6](fig6.png)" in report and "converges towards zero" in report
    assert "| NE | 1 | 0.5 |" in report
    figs = reg.fig6_plot(df, config)
    assert list(figs) == ["fig6"] and len(figs["fig6"].axes) == 3 * 4
    figs3a = reg.fig3a_plot(df[df.power == 2.0], reg.Fig3AConfig())
    assert list(figs3a) == ["fig3a"] and len(figs3a["fig3a"].axes) == 2
    assert reg.summarise(df.iloc[:0], reg.Fig3AConfig()) == {"n_rows": 0}


def test_reproduce_fig3a_quick_end_to_end(tmp_path):
    from syngeo.app.cli.reproduce import reproduce

    result = reproduce("fig3a", quick=True, out=tmp_path / "fig3a")
    table = pd.read_parquet(tmp_path / "fig3a" / "results.parquet")
    config = reg.Fig3AConfig.quick()
    assert len(table) == config.n_cells * 3
    assert table["constraint_residual"].max() <= config.tol
    assert (tmp_path / "fig3a" / "fig3a.png").is_file()
    assert (tmp_path / "fig3a" / "fig3a.pdf").is_file()
    assert result.summary["d_decreases_with_width_everywhere"] is True
    assert (
        "Generated by `syngeo reproduce fig3a --quick`"
        in (tmp_path / "fig3a" / "report.md").read_text()
    )


# --------------------------------------------------------------------------------------------
# Report claims on tables built so that each claim holds, then fails
# --------------------------------------------------------------------------------------------

WIDTHS = (100, 1000, 10000)


def _table(d=None, magnitude=None, residual=1e-12, alphas=(0.5, 0.75), powers=(1.0, 2.0)):
    """A results frame whose d and magnitude are the given functions of the setting."""
    d = d or (
        lambda name, alpha, power, width, seed: (
            0.4 / math.sqrt(width) * (1 + 0.05 * math.sin(seed + width))
        )
    )
    magnitude = magnitude or (lambda name, alpha, power, width, seed: 0.1 * alpha * width**-0.2)
    rows = [
        {
            "potential": name,
            "alpha": alpha,
            "power": power,
            "width": width,
            "seed": seed,
            "d": d(name, alpha, power, width, seed),
            "magnitude": magnitude(name, alpha, power, width, seed),
            "constraint_residual": residual,
        }
        for name in ("NE", "2-norm", "3-norm")
        for alpha in alphas
        for power in powers
        for width in WIDTHS
        for seed in range(4)
    ]
    return pd.DataFrame(rows)


def _claim(report: str, start: str) -> str:
    return next(line for line in report.splitlines() if line.startswith(f"| {start}"))


def test_report_says_holds_when_every_claim_holds():
    report = reg.fig6_report(_table(), reg.Fig6Config())
    assert "does not hold" not in report
    assert report.count("holds") == 7  # five claim rows (two verdicts in two) and the residual


def test_report_says_when_d_is_not_small():
    # d = 0.5 at every width: far above what 1000 i.i.d. Gaussian values reach (~0.07)
    report = reg.fig6_report(_table(d=lambda *a: 0.5 * (1 + 0.01 * a[-1])), reg.Fig6Config())
    assert "relatively small | the median d at every width is at most" in report
    assert "Gaussian values (Monte Carlo): does not hold" in _claim(report, "d is always")


def test_d_is_small_up_to_the_gaussian_95th_percentile_not_its_mean():
    # 1.4 × the Gaussian floor's mean (≈ 1.2/√D) is above that mean yet below its 95th
    # percentile (≈ 1.75 × the mean at D = 100…10000, from 400 draws): small, by the stated rule
    table = _table(d=lambda n, al, po, width, seed: 1.4 * 1.2 / math.sqrt(width))
    summary = reg.summarise(table, reg.Fig6Config())
    assert 1.0 < summary["d_median_over_floor_q95_max"] / (1.4 / 1.75) < 1.25
    assert summary["d_within_gaussian_range_everywhere"] is True


def test_report_says_when_d_does_not_fall_with_width():
    def d(name, alpha, power, width, seed):
        if (name, alpha, power) == ("NE", 0.75, 2.0):
            return 0.001 * width**0.3 * (1 + 0.01 * seed)
        return 0.4 / math.sqrt(width)

    config = reg.Fig6Config()
    summary = reg.summarise(_table(d=d), config)
    assert summary["d_decreases_with_width_everywhere"] is False
    claim = _claim(reg.fig6_report(_table(d=d), config), "d converges")
    assert "in 11 of 12 settings: does not hold (not in: NE, a = 2, α = 0.75)" in claim


def test_report_says_when_d_does_not_fall_as_the_gaussian_rate():
    # exponent −0.3 with seed-to-seed noise of a few per cent: many standard errors from −0.5
    def d(name, alpha, power, width, seed):
        return 0.2 * width**-0.3 * (1 + 0.03 * math.sin(seed * width))

    summary = reg.summarise(_table(d=d), reg.Fig6Config())
    assert summary["d_slope_range"][0] == pytest.approx(-0.3, abs=0.02)
    assert summary["n_settings_d_slope_gaussian"] == 0
    claim = _claim(reg.fig6_report(_table(d=d), reg.Fig6Config()), "(reference")
    assert "in 0 of 12 settings: does not hold" in claim
    # the same exponent −0.5 with noise: within the spread
    ok = reg.summarise(_table(), reg.Fig6Config())
    assert ok["d_slope_gaussian_everywhere"] is True


def test_report_says_when_the_change_is_not_small():
    def magnitude(name, alpha, power, width, seed):
        return 1.5 if name == "2-norm" else 0.05

    report = reg.fig6_report(_table(magnitude=magnitude), reg.Fig6Config())
    claim = _claim(report, "the dual change is much smaller")
    assert "below 1 in every setting: does not hold (largest 1.5, 2-norm" in claim
    assert "in 8 of 12: does not hold" in claim


def test_report_says_when_the_change_is_below_one_but_not_much_smaller():
    report = reg.fig6_report(_table(magnitude=lambda *a: 0.5), reg.Fig6Config())
    claim = _claim(report, "the dual change is much smaller")
    assert "below 1 in every setting: holds" in claim and "in 0 of 12: does not hold" in claim


def test_the_alpha_claim_is_judged_at_the_largest_width():
    def magnitude(name, alpha, power, width, seed):  # α = 0.5 larger only at the smallest width
        return 0.05 / alpha if width == min(WIDTHS) else 0.05 * alpha

    summary = reg.summarise(_table(magnitude=magnitude), reg.Fig6Config())
    assert summary["magnitude_smaller_for_alpha_0.5_everywhere"] is True
    assert summary["n_alpha_comparisons_smaller"] == 12 and summary["n_alpha_comparisons"] == 18


def test_report_says_when_the_change_is_larger_for_fewer_samples():
    def magnitude(name, alpha, power, width, seed):
        return 0.05 / alpha  # larger for α = 0.5

    report = reg.fig6_report(_table(magnitude=magnitude), reg.Fig6Config())
    claim = _claim(report, "the change is smaller for N = D^0.5")
    assert "every potential and a: does not hold" in claim and "smaller in 0 of 18" in claim
    one_alpha = reg.fig3a_report(_table(alphas=(0.5,), powers=(2.0,)), reg.Fig3AConfig())
    assert "n/a (needs both α)" in _claim(one_alpha, "the change is smaller")


def test_report_says_when_the_constraint_is_not_met():
    report = reg.fig3a_report(_table(residual=1e-6, powers=(2.0,)), reg.Fig3AConfig())
    assert "1e-06; at most the solver tolerance 1e-10: does not hold." in report


# --------------------------------------------------------------------------------------------
# The figures, image level
# --------------------------------------------------------------------------------------------


def _texts_fit(fig) -> None:
    """Every title and axis label lies inside the figure, and no two titles overlap."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    box = fig.bbox
    titles = []
    for ax in fig.axes:
        for text in (ax.title, ax.xaxis.label, ax.yaxis.label):
            if not text.get_text():
                continue
            ext = text.get_window_extent(renderer)
            assert box.x0 - 1 <= ext.x0 and ext.x1 <= box.x1 + 1, text.get_text()
            assert box.y0 - 1 <= ext.y0 and ext.y1 <= box.y1 + 1, text.get_text()
        titles.append(ax.title.get_window_extent(renderer))
    for i, a in enumerate(titles):
        for b in titles[i + 1 :]:
            assert not a.overlaps(b)


def _check_regression_panels(fig, table) -> None:
    from syngeo.app.plotting import geometry_style

    for ax in fig.axes:
        assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
        medians = [line for line in ax.lines if str(line.get_gid()).startswith("median:")]
        assert medians
        for line in medians:
            name = line.get_gid().split(":", 1)[1]
            assert line.get_color() == geometry_style(name).color
            assert line.get_marker() == geometry_style(name).marker
        reference = [line for line in ax.lines if line.get_gid() == "reference-slope"]
        if ax.get_ylabel() == "d" or "d," in ax.get_title() or ": d " in ax.get_title():
            assert len(reference) == 1
            x, y = (np.asarray(v, float) for v in reference[0].get_data())
            assert np.polyfit(np.log(x), np.log(y), 1)[0] == pytest.approx(-0.5, abs=1e-9)
            # it passes through the mean d of D_min i.i.d. Gaussian values (≈ 1.2/√D)
            assert y[0] == pytest.approx(1.2 / math.sqrt(x[0]), rel=0.1)
            assert x[0] == table["width"].min() and x[-1] == table["width"].max()
        else:
            assert not reference
    assert len(fig.legends) == 1 and all(ax.get_legend() is None for ax in fig.axes)
    legend = " ".join(t.get_text() for t in fig.legends[0].get_texts())
    assert "D^{0.5}" in legend and "training samples" in legend  # N is defined


def test_fig3a_figure_log_axes_reference_slope_titles_that_differ():
    from figcheck import assert_figure

    table = _table(powers=(2.0,))
    fig = reg.fig3a_plot(table, reg.Fig3AConfig())["fig3a"]
    assert_figure(fig, panels=2)
    _check_regression_panels(fig, table)
    titles = [ax.get_title() for ax in fig.axes]
    assert len(set(titles)) == 2 and "d" in titles[0] and "‖Δ‖" in titles[1]
    _texts_fit(fig)


def test_fig6_figure_panel_order_one_legend_and_labels_that_fit():
    from figcheck import assert_figure

    table = _table()
    fig = reg.fig6_plot(table, reg.Fig6Config())["fig6"]
    assert_figure(fig, panels=12)
    _check_regression_panels(fig, table)
    titles = [ax.get_title() for ax in fig.axes]
    assert titles[:4] == [
        "NE: d, a = 1",
        "NE: d, a = 2",
        "NE: ‖Δ‖ / ‖∇φ(w₀)‖, a = 1",
        "NE: ‖Δ‖ / ‖∇φ(w₀)‖, a = 2",
    ]
    assert [t.split(":")[0] for t in titles[::4]] == ["NE", "2-norm", "3-norm"]
    # the panels of one quantity share their vertical axis
    axes = fig.axes
    assert axes[0].get_ylim() == axes[5].get_ylim() and axes[2].get_ylim() == axes[11].get_ylim()
    _texts_fit(fig)
