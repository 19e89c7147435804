"""syngeo.diagnostics: the NE/p -> 1 answer, goodness of fit, influential synapses, overflows."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import scipy.stats

from syngeo.diagnostics import (
    GOF_ALPHA,
    GOF_DRAWS,
    GOF_FAR_RATIO,
    NE_LIMIT_LOGLIK,
    NE_OR_P_TO_1,
    check_finite_duals,
    diagnose,
    dual_gaussianity_test,
    gaussian_null,
    influential_synapses,
    leave_one_out_log_likelihood,
    ne_limit,
    overflowing_synapses,
    zero_weight_note,
)
from syngeo.errors import InputError
from syngeo.gaussianity import cdf_distance
from syngeo.inference import PreparedChange, change_log_likelihood, infer_geometry
from syngeo.potentials import NegativeEntropy, PNorm

N = 3000


def three_norm_pair(n: int = N, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Weights whose change is exactly Gaussian in the 3-norm's duals."""
    g = np.random.default_rng(seed)
    w0 = g.normal(0, 0.1, n)
    u = np.sign(w0) * w0**2 + 1e-3 * g.normal(size=n)
    return w0, np.sign(u) * np.abs(u) ** 0.5


def positive_three_norm_pair(n: int = N, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Positive weights (no sign flips: NE is a candidate) with a Gaussian 3-norm dual change."""
    g = np.random.default_rng(seed)
    w0 = np.abs(g.normal(0, 0.1, n)) + 0.05
    return w0, np.abs(w0**2 + 1e-3 * g.normal(size=n)) ** 0.5


def ne_pair(n: int = N, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Positive weights whose change is exactly Gaussian in NE's duals (log w)."""
    g = np.random.default_rng(seed)
    w0 = np.exp(g.normal(-2, 0.5, n))
    return w0, w0 * np.exp(0.05 * g.normal(size=n))


@pytest.fixture(scope="module")
def fits() -> dict[str, tuple]:
    out = {}
    for name, (b, a) in {
        "3-norm": three_norm_pair(),
        "ne": ne_pair(),
    }.items():
        out[name] = (infer_geometry(b, a, n_bootstrap=0, rng=0), b, a)
    b, a = positive_three_norm_pair()
    a[17] = 1e30
    out["outlier"] = (infer_geometry(b, a, n_bootstrap=0, rng=0), b, a)
    return out


# ------------------------------------------------------------------------------------------------
# NE and p -> 1
# ------------------------------------------------------------------------------------------------
def test_ne_limit_threshold_is_the_95pc_likelihood_ratio_drop():
    # chi2_1(0.95) = 3.841459 (any table): half of it is the log-likelihood drop of a 95% LR test
    assert NE_LIMIT_LOGLIK == pytest.approx(3.841459 / 2, abs=1e-6)


def _fake_fit(rows: list[tuple[str, float, float, float]]) -> SimpleNamespace:
    """A fit whose ranking has (candidate, p, log_likelihood, k) rows, sorted by AIC."""
    frame = pd.DataFrame(rows, columns=["candidate", "p", "log_likelihood", "k"])
    aic = 2 * frame["k"] - 2 * frame["log_likelihood"]
    frame["delta_aic"] = aic - aic.min()
    frame = frame.sort_values("delta_aic").reset_index(drop=True)
    frame["rank"] = np.arange(1, len(frame) + 1, dtype=float)
    return SimpleNamespace(ranking=frame, best=frame["candidate"].iloc[0])


@pytest.mark.parametrize(
    ("ell_ne", "applies"),
    [(100.0, True), (101.9, True), (98.1, True), (102.0, False), (97.9, False), (300.0, False)],
)
def test_ne_limit_applies_within_the_threshold_either_way(ell_ne, applies):
    fit = _fake_fit(
        [("NE", math.nan, ell_ne, 2), ("1.0101-norm", 1.0101, 100.0, 3), ("1.1-norm", 1.1, 95, 3)]
    )
    lim = ne_limit(fit)
    assert lim.at_low_end and lim.best_p_norm == "1.0101-norm"
    assert lim.ne_delta_loglik == pytest.approx(ell_ne - 100.0)
    assert lim.ne_delta_aic == pytest.approx(-2 * (ell_ne - 100.0) - 2)
    assert lim.applies is applies
    sentence = lim.sentence()
    assert ("does not hold" in sentence) is (not applies)
    assert (f"differ by {abs(ell_ne - 100):.3g}") in sentence


def test_ne_limit_needs_the_p_norm_at_the_low_end_and_ne_scored():
    # best p-norm 2: not NE's end of the family, whatever the likelihoods
    fit = _fake_fit(
        [("NE", math.nan, 100.0, 2), ("2-norm", 2.0, 100.0, 3), ("1.1-norm", 1.1, 9, 3)]
    )
    assert not ne_limit(fit).at_low_end and not ne_limit(fit).applies
    assert ne_limit(fit).sentence() == ""
    # the smallest p tried but above 1.1 (a user grid 2, 3): not at NE's end either
    fit = _fake_fit([("NE", math.nan, 100.0, 2), ("2-norm", 2.0, 100.0, 3), ("3-norm", 3.0, 9, 3)])
    assert not ne_limit(fit).applies
    # NE ruled out (no rank): the p-norm stays the answer, and the note says why
    fit = _fake_fit([("1.0101-norm", 1.0101, 100.0, 3), ("1.1-norm", 1.1, 95, 3)])
    fit.ranking.loc[len(fit.ranking)] = ["NE", math.nan, math.nan, 2, math.nan, math.nan]
    lim = ne_limit(fit)
    assert lim.at_low_end and not lim.applies and "not among the scored" in lim.sentence()
    # no p-norm at all
    fit = _fake_fit([("NE", math.nan, 100.0, 2)])
    assert ne_limit(fit).best_p_norm is None and not ne_limit(fit).applies


def test_ne_limit_on_data(fits):
    assert ne_limit(fits["ne"][0]).applies
    assert not ne_limit(fits["3-norm"][0]).applies


def test_geometry_fit_summary_repr_and_dict_say_the_answer_once(fits):
    fit = fits["ne"][0]
    text = fit.summary()
    assert text.count(NE_OR_P_TO_1) == 1 and "p interval" not in text
    assert "margin to the runner-up" not in text and "search bound" not in text
    assert NE_OR_P_TO_1 in repr(fit) and fit.to_dict()["answer"] == NE_OR_P_TO_1
    fit = fits["3-norm"][0]
    assert "NE or p" not in fit.summary() and "p interval" in fit.summary()
    assert fit.to_dict()["answer"] == fit.best and "answer=" not in repr(fit)


# ------------------------------------------------------------------------------------------------
# goodness of fit
# ------------------------------------------------------------------------------------------------
def test_ks_null_matches_scipy_on_the_same_draws():
    null = gaussian_null("ks", 200, draws=30, rng=5)
    x = np.random.default_rng(5).standard_normal((30, 200))
    z = (x - x.mean(axis=1, keepdims=True)) / x.std(axis=1, keepdims=True)
    expected = [scipy.stats.kstest(row, "norm").statistic for row in z]
    np.testing.assert_allclose(null, expected, rtol=1e-12)


def test_cdf_null_matches_cdf_distance_on_the_same_draws():
    null = gaussian_null("cdf", 300, draws=20, rng=2)
    x = np.random.default_rng(2).standard_normal((20, 300))
    np.testing.assert_allclose(null, [cdf_distance(row) for row in x], rtol=1e-12)


def test_ks_null_has_lilliefors_critical_value():
    # Lilliefors (1967), Table 1: the 95% critical value of the KS statistic with estimated mean
    # and variance is 0.886/sqrt(n) for n > 30. With 2000 draws the empirical 93% and 97%
    # quantiles bracket the true 95% one unless the empirical CDF there is off by 0.02, i.e. by
    # 4 standard errors (sqrt(.95 * .05 / 2000) = 0.0049): probability < 1e-4.
    n = 1000
    null = gaussian_null("ks", n, draws=2000, rng=0)
    lo, hi = np.quantile(null, [0.93, 0.97])
    assert lo < 0.886 / math.sqrt(n) < hi
    # the known-parameter KS (no centring) would have a 95% point of 1.358/sqrt(n): far above
    assert hi < 1.358 / math.sqrt(n)


def test_gof_ks_is_centred_and_the_ranking_ks_is_not():
    """Two KS statistics with one name: the goodness-of-fit null (gaussian_null "ks") centres the
    sample (Lilliefors), the ranking's ks_statistic and GaussianityResult.ks do not (the paper's
    zero-mean standardisation). On a change with mean 0.5 sd they differ by about Φ(0.5) − 1/2."""
    from syngeo.diagnostics import _statistic
    from syngeo.gaussianity import gaussian_null as defined_in_gaussianity
    from syngeo.gaussianity import gaussianity_of_change

    assert gaussian_null is defined_in_gaussianity  # one implementation, re-exported
    x = np.random.default_rng(1).standard_normal(4000) + 0.5
    s = x.std()
    centred = scipy.stats.kstest((x - x.mean()) / s, "norm").statistic
    uncentred = scipy.stats.kstest(x / s, "norm").statistic
    assert _statistic("ks", x) == pytest.approx(centred, rel=1e-12)
    assert gaussianity_of_change(x, rng=0).ks.statistic == pytest.approx(uncentred, rel=1e-12)
    sim_before = np.linspace(1.0, 2.0, x.size)
    after = sim_before + 1e-3 * x
    fit = infer_geometry(sim_before, after, ["2-norm"], n_bootstrap=0, refine=False, rng=0)
    # Δ = after − before is 1e-3·x to rounding (relative 1e-13 of Δ): the KS statistic moves by
    # far less than the 1e-9 allowed
    assert fit.ranking["ks_statistic"].iloc[0] == pytest.approx(uncentred, rel=1e-9)
    # a shift of 0.5/1.118 sd after standardising: far apart (≈ 0.17 against ≈ 0.01)
    assert uncentred - centred > 0.1


def test_gaussian_null_default_draws_are_the_goodness_of_fit_draws():
    from syngeo.diagnostics import GOF_DRAWS

    assert gaussian_null("ks", 50, rng=0).shape == (GOF_DRAWS,) == (199,)


def test_gaussian_null_input_checks():
    with pytest.raises(InputError, match="unknown statistic"):
        gaussian_null("ad", 100)
    with pytest.raises(InputError):
        gaussian_null("ks", 0)


def test_gaussian_change_fits_and_heavy_tails_do_not(fits):
    fit, b, a = fits["3-norm"]
    gof = dual_gaussianity_test(fit, b, a, rng=0)
    assert gof.statistic == "ks" and gof.n == N and gof.draws == GOF_DRAWS
    assert gof.best_fits and gof.any_fits and "consistent with a Gaussian" in gof.sentence()
    # p-values are (1 + count) / (1 + draws)
    for p in gof.pvalues.values():
        assert (p * (GOF_DRAWS + 1)) == pytest.approx(round(p * (GOF_DRAWS + 1)))
    # the winner's statistic is the KS of its standardised dual change
    delta = PreparedChange.from_weights(b, a).dual(fit.best_potential).delta.copy()
    z = (delta - delta.mean()) / delta.std()
    assert gof.values[fit.best] == pytest.approx(scipy.stats.kstest(z, "norm").statistic)
    g = np.random.default_rng(3)
    b2 = g.normal(0, 0.1, N)
    a2 = b2 + 0.01 * g.standard_t(2.0, size=N)
    fit2 = infer_geometry(b2, a2, n_bootstrap=0, rng=0)
    gof2 = dual_gaussianity_test(fit2, b2, a2, rng=0)
    assert not gof2.any_fits and gof2.pvalues[gof2.closest] < GOF_ALPHA
    assert gof2.no_fit and gof2.ratio > GOF_FAR_RATIO and gof2.verdict == "no candidate fits"
    assert "no candidate fits" in gof2.sentence()
    assert gof2.ratio == pytest.approx(gof2.values[gof2.closest] / gof2.null_q99)


def test_cdf_estimator_uses_the_cdf_distance(fits):
    b, a = three_norm_pair()
    fit = infer_geometry(b, a, estimator="cdf", n_bootstrap=0, rng=0)
    gof = dual_gaussianity_test(fit, b, a, rng=0)
    delta = PreparedChange.from_weights(b, a).dual(fit.best_potential).delta.copy()
    assert gof.statistic == "cdf" and gof.values[fit.best] == pytest.approx(cdf_distance(delta))


def test_winner_that_does_not_fit_when_another_does():
    # the sentence for "the winner does not fit; X does" is computed from the p-values
    from syngeo.diagnostics import DualGaussianityTest

    gof = DualGaussianityTest("ks", 100, 199, {"A": 0.5, "B": 0.01}, {"A": 0.005, "B": 0.6},
                              0.02, 0.03, "A", "B")  # fmt: skip
    assert not gof.best_fits and gof.any_fits and gof.best_ratio == pytest.approx(0.5 / 0.03)
    assert "the winner does not fit (17×" in gof.sentence() and "B comes closer" in gof.sentence()
    assert "p ≤ 0.005" in gof.sentence() and gof.verdict == "winner does not fit"
    # the winner just past the 99th percentile, another candidate inside it: a slight departure
    gof = DualGaussianityTest("ks", 100, 199, {"A": 0.032, "B": 0.01}, {"A": 0.005, "B": 0.6},
                              0.02, 0.03, "A", "B")  # fmt: skip
    assert gof.verdict == "departs slightly" and "B is consistent with one" in gof.sentence()


@pytest.mark.parametrize(
    ("closest", "verdict"), [(0.08, "departs slightly"), (0.1, "no candidate fits")]
)
def test_a_slight_departure_is_not_no_fit(closest, verdict):
    # 99th percentile 0.03: the closest candidate at 0.08 is 2.7×, at 0.1 3.3× (threshold 3×)
    from syngeo.diagnostics import DualGaussianityTest

    gof = DualGaussianityTest("ks", 100, 199, {"A": closest, "B": closest},
                              {"A": 0.005, "B": 0.005}, 0.02, 0.03, "A", "B")  # fmt: skip
    assert not gof.any_fits and gof.verdict == verdict
    assert gof.no_fit is (verdict == "no candidate fits")
    sentence = gof.sentence()
    assert ("does not hold" in sentence) is (verdict == "departs slightly")
    assert f"{closest / 0.03:.2g}×" in sentence


# ------------------------------------------------------------------------------------------------
# influential synapses
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("fit_mean", [True, False])
@pytest.mark.parametrize(
    ("case", "psi"), [("3-norm", PNorm(3)), ("ne", NegativeEntropy()), ("outlier", PNorm(2))]
)
def test_leave_one_out_equals_refitting_without_the_synapse(case, psi, fit_mean):
    # reference: change_log_likelihood on the weights with the synapse deleted. Both sum n
    # terms of size |ℓ|/n in float64; the closed form's subtraction loses at most
    # eps * M / M_-i relative in M_-i, i.e. (n/2) * eps * (M / M_-i) in ℓ, and the largest
    # residuals (where M / M_-i is large) are recomputed directly: 1e-6 absolute on ℓ ~ 1e4.
    b, a = {"3-norm": three_norm_pair, "ne": ne_pair, "outlier": positive_three_norm_pair}[case]()
    if case == "outlier":
        a[17] = 1e30
    data = PreparedChange.from_weights(b, a)
    full, loo = leave_one_out_log_likelihood(data, psi, fit_mean=fit_mean)
    assert full == pytest.approx(change_log_likelihood(b, a, psi, fit_mean=fit_mean).log_likelihood)
    for i in (0, 5, 17, N - 1):
        ref = change_log_likelihood(np.delete(b, i), np.delete(a, i), psi, fit_mean=fit_mean)
        assert loo[i] == pytest.approx(ref.log_likelihood, abs=1e-6, rel=1e-12), i


def test_leave_one_out_with_zeros_after_learning():
    b, a = three_norm_pair()
    a = a.copy()
    a[[3, 4]] = 0.0
    data = PreparedChange.from_weights(b, a)
    full, loo = leave_one_out_log_likelihood(data, PNorm(3))
    assert loo[3] == full and loo[4] == full  # outside the likelihood: nothing changes
    ref = change_log_likelihood(np.delete(b, 10), np.delete(a, 10), PNorm(3))
    assert loo[10] == pytest.approx(ref.log_likelihood, abs=1e-6)


def test_outlier_at_1e30_is_flagged_and_without_it_the_3_norm_wins(fits):
    fit, b, a = fits["outlier"]
    assert fit.best == "NE"  # the silent failure the check exists for
    infl = influential_synapses(fit, b, a)
    assert infl.indices == (17,) and infl.best_without == "3-norm"
    assert infl.influence[0] > infl.threshold >= 10
    # the influence is the leave-one-out change less its median over the synapses
    full, loo = leave_one_out_log_likelihood(PreparedChange.from_weights(b, a), fit.best_potential)
    change = full - loo
    centred = np.abs(change - np.median(change))
    assert infl.influence[0] == pytest.approx(centred[17])
    assert infl.q99 == pytest.approx(np.quantile(centred, 0.99))
    assert infl.threshold == pytest.approx(max(10.0, 10.0 * infl.q99))
    assert infl.delta_aic_without["3-norm"] == 0 and infl.delta_aic_without["NE"] > 100


def test_clean_data_flags_nothing_and_two_outliers_are_both_flagged(fits):
    for case in ("3-norm", "ne"):
        fit, b, a = fits[case]
        assert influential_synapses(fit, b, a).indices == ()
    b, a = three_norm_pair()
    a = a.copy()
    a[[17, 400]] = [1e20, -1e25]
    fit = infer_geometry(b, a, n_bootstrap=0, rng=0)
    infl = influential_synapses(fit, b, a)
    assert set(infl.indices) == {17, 400}


# ------------------------------------------------------------------------------------------------
# overflows and zeros
# ------------------------------------------------------------------------------------------------
def test_overflowing_synapses_under_each_candidate():
    b, a = three_norm_pair(100)
    a = a.copy()
    a[7] = 1e302  # 3-norm: |w|^2 = inf; 1.5-norm: 1e151 > 1e150; 1.1-norm: 1e30, fine
    a[9] = 1e100  # 3-norm: 1e200 > 1e150 (its square overflows); 1.5-norm: 1e50, fine
    bad = overflowing_synapses(b, a, ["1.1-norm", "1.5-norm", "3-norm", "ne"])
    assert list(bad) == ["1.5-norm", "3-norm"]
    assert bad["1.5-norm"].tolist() == [7] and bad["3-norm"].tolist() == [7, 9]
    with pytest.raises(InputError, match=r"2 synapses have .* synapse 7 .* synapse 9 .*them out"):
        check_finite_duals(b, a, ["3-norm"])
    with pytest.raises(InputError, match=r"^1 synapse has .*under 1\.5-norm: synapse 7 .*it out"):
        check_finite_duals(b, a, ["1.1-norm", "1.5-norm"])
    check_finite_duals(b, a, ["1.1-norm"])  # nothing to say
    # NE's dual at a zero weight is outside its domain (ruled out elsewhere), not an overflow
    assert overflowing_synapses([0.0, 0.1], [0.1, 0.2], ["ne"]) == {}


def test_zero_weight_note_counts_and_says_what_they_cost(fits):
    b, a = ne_pair()
    assert zero_weight_note(fits["ne"][0], b, a) == ""
    a = a.copy()
    a[:40] = 0.0
    b = b.copy()
    b[40] = 0.0
    fit = infer_geometry(b, a, n_bootstrap=0, rng=0)
    note = zero_weight_note(fit, b, a)
    assert note.startswith("41 synapses with a zero weight (1 before, 40 after)")
    assert "40 zeros after learning left out of the likelihood" in note
    assert "ruled out by them alone" in note and "--drop-zeros" in note
    a[41] = -a[41]  # one sign flip as well
    fit = infer_geometry(b, a, n_bootstrap=0, rng=0)
    assert "ruled out by 1 sign flip as well" in zero_weight_note(fit, b, a)


# ------------------------------------------------------------------------------------------------
# diagnose
# ------------------------------------------------------------------------------------------------
def test_diagnose_gathers_the_checks(fits):
    fit, b, a = fits["ne"]
    d = diagnose(fit, b, a, rng=0)
    assert d.answer == NE_OR_P_TO_1 and d.fits and d.influential == () and d.warnings == ()
    json.dumps(d.to_dict())
    fit, b, a = fits["outlier"]
    d = diagnose(fit, b, a, rng=0)
    assert d.answer == "NE" and d.fits is False and d.influential == (17,)
    assert len(d.warnings) == 2 and "index 17" in d.warnings[1]
    assert "does not hold" in d.notes[0]  # NE far ahead of p -> 1: not "indistinguishable"


def test_diagnose_with_measurement_noise_skips_the_exact_weight_checks():
    b, a = three_norm_pair(400)
    fit = infer_geometry(b, a, ["2-norm", "3-norm"], n_bootstrap=0, noise=0.01, rng=0)
    d = diagnose(fit, b, a)
    assert d.gof is None and d.influence is None and d.fits is None
    assert any("not computed" in n for n in d.notes)
