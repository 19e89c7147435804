"""Every measured sentence of the Raman reports is computed, and says "does not hold" when it fails.

Each verdict function is fed a table built by hand where its claim holds, then one where it
fails; the figures are checked for the properties the reports rely on (one colour per γ across
panels, formula curves, no power-law fit through two sizes).
"""

import numpy as np
import pandas as pd
import pytest

from figcheck import assert_figure
from syngeo.app.experiments import get, run
from syngeo.app.experiments.raman import common, difficulty, geometry, k, size
from syngeo.app.experiments.raman.size import SizeConfig

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _line(lines, phrase):
    found = [line for line in lines if phrase in line]
    assert found, (phrase, lines)
    return found[0]


# -- common -----------------------------------------------------------------------------------------


def test_holds_and_least_bad_note():
    assert common.holds(True) == "holds" and common.holds(np.False_) == "does not hold"
    assert common.least_bad_note([0.1, -0.2]) is None
    assert common.least_bad_note([np.nan, np.nan]) is None
    note = common.least_bad_note([-0.3, -0.01, np.nan])
    assert "k < 0 at every size" in note and "-0.01" in note and "forgets least" in note


def test_gamma_colors_do_not_depend_on_drawing_order_and_are_distinct():
    a = common.gamma_colors([(0.07, 1, 0.03), (0.05, 1, 0.05), (0.04, 1.5, 0.04)])
    b = common.gamma_colors([(0.04, 1.5, 0.04, 1.0), (0.07, 1, 0.03), (0.05, 1, 0.05)])
    assert a == b and len(set(a.values())) == 3


# -- raman-size ---------------------------------------------------------------------------------------


def _size_tables(
    k_initial=(0.01, 0.02, 0.015), nstar_k=400.0, nstar_ss=(1111.0, 400.0), g_ratio=1.0
):
    gam = [(0.07, 1.0, 0.03), (0.05, 1.0, 0.05)]
    agg = pd.DataFrame(
        [
            {
                "model": "linear",
                "gamma1": g[0],
                "gamma2": g[1],
                "gamma3": g[2],
                "n_synapses": n,
                "k_initial": kk,
                "grad_curvature": 2.0 * g_ratio,
                "base_grad_curvature": 2.0,
            }
            for g in gam
            for n, kk in zip((50, 450, 2450), k_initial, strict=True)
        ]
    )
    opt = pd.DataFrame(
        [
            {
                "model": "linear",
                "gamma1": g[0],
                "gamma2": g[1],
                "gamma3": g[2],
                "n_min": 50.0,
                "n_max": 2450.0,
                "n_star_measured_k": nstar_k,
                "n_star_measured_steady": ss,
                "n_star_slides": 1.0 * (g[1] ** 2 - g[0] ** 2) / g[2] ** 2,
            }
            for g, ss in zip(gam, nstar_ss, strict=True)
        ]
    )
    return agg, opt


def test_size_verdicts_hold_and_fail_on_constructed_tables():
    lines = size.size_verdicts(*_size_tables())
    assert not any("does not hold" in line for line in lines)
    assert sum("holds" in line for line in lines) == 4
    # optimum at a grid end
    lines = size.size_verdicts(*_size_tables(nstar_k=2450.0))
    assert "does not hold" in _line(lines, "learn faster up to an optimal size")
    # noisier synapses, larger optimum
    lines = size.size_verdicts(*_size_tables(nstar_ss=(400.0, 1111.0)))
    assert "does not hold" in _line(lines, "noisier synapses give a smaller N*")
    # growth that changes the curvature along the gradient
    lines = size.size_verdicts(*_size_tables(g_ratio=1.01))
    assert "does not hold" in _line(lines, "curvature along the gradient unchanged")
    # k < 0 at every size: the peak is inside the grid, but nothing is learnt
    lines = size.size_verdicts(*_size_tables(k_initial=(-0.03, -0.01, -0.02)))
    text = _line(lines, "k peaks inside the grid")
    assert "least" in text and "does not hold as stated" in text


def test_size_gamma1_above_gamma2_is_claimed_only_where_a_setting_tests_it():
    quick = size._gamma1_above_gamma2_sentence(SizeConfig.quick())
    assert "does not test that case" in quick
    full = size._gamma1_above_gamma2_sentence(SizeConfig())
    assert "γ = (0.5, 0.3, 0.01)" in full
    agg, opt = _size_tables()
    opt.loc[0, ["gamma1", "gamma2", "n_star_slides"]] = [0.5, 0.3, -100.0]
    assert "holds" in _line(size.size_verdicts(agg, opt), "(γ1 > γ2)")
    opt.loc[0, "n_star_measured_steady"] = float("nan")
    assert "does not hold" in _line(size.size_verdicts(agg, opt), "(γ1 > γ2)")


@pytest.fixture(scope="module")
def two_size_mlp():
    cfg = SizeConfig(
        models=("mlp",),
        mlp_hidden=(5, 20),
        mlp_gammas=((0.04, 1.5, 0.04),),
        mlp_cycles=6,
        mlp_repeats=1,
        mlp_samples=40,
        mlp_draws=2,
        pretrain_cycles=5,
    )
    return cfg, run("raman-size", cfg)


def test_no_power_law_is_fitted_through_two_sizes(two_size_mlp):
    cfg, df = two_size_mlp
    _agg, opt = size.size_tables(df)
    assert np.isnan(opt.beta.iloc[0]) and np.isnan(opt.n_star_closed_form.iloc[0])
    fig = get("raman-size").plot(df, cfg)["raman_size"]
    assert_figure(fig, panels=2)
    steady = fig.axes[1]
    assert not [ln for ln in steady.lines if ln.get_linestyle() == "-."]
    report = get("raman-size").report(df, cfg)
    assert "β not fitted: fewer than 3 sizes" in report and "β = nan" not in report
    assert "does not test that case" in report


# -- raman-k -----------------------------------------------------------------------------------------


def _k_tab(lin_err=1e-14, mlp_err=(0.004, 0.1), k_mean=0.05):
    rows = []
    for model, errs in (("linear", (lin_err, lin_err)), ("mlp", mlp_err)):
        for T, e in zip((0.1, 2.0), errs, strict=True):
            rows.append(
                {
                    "model": model,
                    "gamma1": 0.2,
                    "gamma2": 0.5,
                    "gamma3": 0.1,
                    "T": T,
                    "k_expected": 0.05,
                    "k_measured_mean": k_mean,
                    "k_measured_se": 0.001,
                    "median_rel_error": e,
                }
            )
    return pd.DataFrame(rows)


def test_k_reading_holds_and_fails_on_constructed_tables():
    lines = k.k_reading(_k_tab())
    assert not any("does not hold" in line for line in lines)
    assert sum(": holds" in line for line in lines) == 5
    assert "does not hold" in _line(k.k_reading(_k_tab(lin_err=1e-6)), "prediction is exact")
    assert "does not hold" in _line(k.k_reading(_k_tab(mlp_err=(0.05, 0.1))), "accurate at")
    assert "does not hold" in _line(k.k_reading(_k_tab(mlp_err=(0.004, 0.001))), "grows with T")
    lines = k.k_reading(_k_tab(k_mean=0.06))  # 10 SE off
    assert all("does not hold" in line for line in lines if "within 2 SE" in line)


def test_k_formula_line_is_the_affine_formula_not_a_fit():
    T = np.array([0.1, 0.5, 2.0])
    a, b = 0.3, -0.02
    grid = np.geomspace(0.1, 2.0, 7)
    np.testing.assert_allclose(k.expected_k_line(T, a + b * T, grid), a + b * grid, rtol=1e-12)
    assert np.isnan(k.expected_k_line(T[:1], [a], grid)).all()


# -- raman-difficulty ---------------------------------------------------------------------------------


def _per_g3(k_values, crit=0.34):
    g3 = np.array([0.0, 0.2, 0.4, 0.6, 0.8])
    return pd.DataFrame(
        {"seed": 0, "gamma3": g3, "k_measured": k_values, "k_se": 0.005, "critical_gamma3": crit}
    )


def test_difficulty_crossing_verdicts():
    ok = difficulty.crossing_verdicts(_per_g3([0.05, 0.03, -0.002, -0.1, -0.2]))
    assert len(ok) == 1 and "holds" in ok[0] and "does not hold" not in ok[0]
    # measured sign change far from the prediction
    bad = difficulty.crossing_verdicts(_per_g3([0.05, 0.03, -0.002, -0.1, -0.2], crit=0.7))
    assert "does not hold" in bad[0]
    # k < 0 everywhere: said, and nothing to compare
    neg = difficulty.crossing_verdicts(_per_g3([-0.05, -0.06, -0.1, -0.1, -0.2]))
    assert "k < 0 at every γ3" in neg[0] and "does not hold" in neg[0]


def test_difficulty_steady_state_verdict():
    assert "holds" in difficulty.steady_verdict("linear", [0.985, 1.008, 0.99])
    assert "does not hold" in difficulty.steady_verdict("linear", [0.80, 0.82, 0.81])
    assert "one run" in difficulty.steady_verdict("linear", [1.03])
    assert "does not hold" in difficulty.steady_verdict("linear", [1.2])


def test_difficulty_formula_curve_is_quadratic_in_gamma3():
    g3 = np.array([0.0, 0.3, 0.6])
    grid = np.linspace(0, 0.6, 9)
    np.testing.assert_allclose(
        difficulty.expected_k_curve(g3, 0.05 - 0.4 * g3**2, grid), 0.05 - 0.4 * grid**2, atol=1e-15
    )


# -- raman-geometry -----------------------------------------------------------------------------------


def _geo_tab(change=None):
    change = change or {}
    rows = {
        ("NE", 0.0): {"dual_change_var": 0.5, "skew_aligned_weight": 3.0, "skew_log_magnitude": 0.05,
                      "sign_flip_fraction": 0.0},
        ("2-norm", 0.0): {"dual_change_var": 0.5, "skew_aligned_weight": 0.05,
                          "skew_log_magnitude": -1.0, "sign_flip_fraction": 0.08},
        ("NE", 0.2): {"final_loss": 0.55, "mean_k_first_50": 0.021},
        ("2-norm", 0.2): {"final_loss": 0.45, "mean_k_first_50": 0.015},
    }  # fmt: skip
    out = []
    for (pot, g1), values in rows.items():
        row = {
            "potential": pot,
            "gamma1": g1,
            "gamma2": 0.2,
            "gamma3": 0.05,
            "predicted_dual_change_var": 0.5,
            "dual_change_var": 0.5,
            "skew_aligned_weight": 0.0,
            "skew_log_magnitude": 0.0,
            "sign_flip_fraction": 0.0,
            "initial_loss": 3.7,
            "final_loss": 1.0,
            "mean_k_first_50": 0.0,
            **values,
        }
        row.update(change.get((pot, g1), {}))
        out.append(row)
    return pd.DataFrame(out)


def test_geometry_reading_holds_and_fails_on_constructed_tables():
    lines = geometry._geometry_paragraph(_geo_tab(), 1000)
    assert not any("does not hold" in line for line in lines)
    cases = {
        "predicted amount": {("NE", 0.0): {"dual_change_var": 0.8}},
        "right-skewed": {("NE", 0.0): {"skew_aligned_weight": 0.1}},
        "log|w| is": {("NE", 0.0): {"skew_log_magnitude": 1.0}},
        "no weight changes sign": {("NE", 0.0): {"sign_flip_fraction": 0.01}},
        "spread symmetrically": {("2-norm", 0.0): {"skew_aligned_weight": 1.0}},
        "some cross zero": {("2-norm", 0.0): {"sign_flip_fraction": 0.0}},
        "the error falls": {("NE", 0.2): {"final_loss": 4.0}},
        "NE learns faster": {("NE", 0.2): {"mean_k_first_50": 0.001}},
        "NE settles at a higher": {("NE", 0.2): {"final_loss": 0.3}},
    }
    for phrase, change in cases.items():
        text = " ".join(geometry._geometry_paragraph(_geo_tab(change), 1000))
        # the verdict right after the phrase
        assert text.split(phrase, 1)[1].split(":", 1)[1].lstrip().startswith("does not hold"), (
            phrase
        )


# -- figures ------------------------------------------------------------------------------------------


def test_k_figure_keeps_one_colour_per_gamma_across_panels():
    from matplotlib.colors import to_hex

    cfg = k.KConfig(
        gammas=((0.2, 0.5, 0.1), (1.0, 0.05, 0.05)),
        T_values=(0.1, 1.0),
        n_draws=4,
        seeds=(0,),
        n_samples=40,
        pretrain_cycles=3,
        models=("linear",),
    )
    df = run("raman-k", cfg)
    fig = get("raman-k").plot(df, cfg)["raman_k"]
    assert_figure(fig, panels=2)
    left, right = fig.axes[:2]
    scatter = {to_hex(c.get_facecolor()[0], keep_alpha=False) for c in left.collections}
    lines = {to_hex(ln.get_color()) for ln in right.lines if ln.get_linestyle() == "-"}
    assert scatter == lines == set(common.gamma_colors(cfg.gammas).values())
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert len(legend) == len(set(legend))  # distinct labels
    assert all(t.get_fontsize() >= common.LEGEND_SIZE for t in fig.legends[0].get_texts())
