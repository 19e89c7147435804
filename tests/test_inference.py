"""Tests of syngeo.inference: the likelihood and CDF estimators, bootstrap, sign-flip check."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pandas as pd
import pytest
import scipy.integrate
import scipy.optimize
import scipy.stats
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from syngeo.errors import DomainError, InputError, InputTypeError
from syngeo.gaussianity import gaussianity
from syngeo.inference import (
    MIN_SYNAPSES,
    BootstrapResamples,
    CdfEstimator,
    ConfidenceInterval,
    GeometryFit,
    LikelihoodEstimator,
    PreparedChange,
    bootstrap_parameter,
    change_log_likelihood,
    default_candidates,
    dual_gaussian_log_density,
    infer_geometry,
    percentile_interval,
)
from syngeo.potentials import NegativeEntropy, PNorm
from syngeo.simulate import simulate_change
from user_potentials import Quartic


def fit(sim, **kw):
    kw.setdefault("n_bootstrap", 0)
    kw.setdefault("rng", 0)
    return infer_geometry(sim.before, sim.after, **kw)


# ------------------------------------------------------------------------------------------------
# the likelihood is a proper density (1-D checks)
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("psi", "w0", "mu", "sigma"),
    [
        ("3-norm", 0.3, 0.0, 0.05),
        ("1.5-norm", -0.2, 0.01, 0.04),
        ("2-norm", 0.1, 0.0, 0.01),
        ("2.5-norm", 0.05, -0.002, 0.01),
    ],
)
def test_pnorm_density_of_after_integrates_to_one(psi, w0, mu, sigma):
    def f(w):
        return math.exp(dual_gaussian_log_density([w0], [w], psi, mean=mu, std=sigma)[0])

    # Integrate over w in pieces: the mass sits near w0, and the p < 2 Jacobian is singular at 0.
    pieces = [-5.0, -1.0, -0.1, 0.0, 0.1, 1.0, 5.0]
    total = sum(
        scipy.integrate.quad(f, a, b, points=[w0] if a < w0 < b else None, limit=400)[0]
        for a, b in itertools.pairwise(pieces)
    )
    assert total == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize("w0", [0.1, -0.3])
def test_ne_density_lives_on_the_half_line_of_the_sign(w0):
    def f(w):
        return math.exp(dual_gaussian_log_density([w0], [w], "ne", mean=0.0, std=0.2)[0])

    s = math.copysign(1.0, w0)
    lo, hi = sorted((0.0, s * 10.0))
    total = scipy.integrate.quad(f, lo, hi, points=[w0], limit=400)[0]
    assert total == pytest.approx(1.0, abs=1e-6)
    assert f(-w0) == 0.0  # the other sign has no density


def test_change_log_likelihood_equals_sum_of_densities_at_the_mle():
    sims = [simulate_change("2.5-norm", 800, rng=1)] * 2 + [simulate_change("ne", 800, rng=1)]
    sims.append(simulate_change(Quartic(), 800, scale=1.0, rng=1))
    for psi, sim in zip(("2.5-norm", "1.7-norm", "ne", Quartic()), sims, strict=True):
        lr = change_log_likelihood(sim.before, sim.after, psi)
        dens = dual_gaussian_log_density(sim.before, sim.after, psi, mean=lr.mean, std=lr.std)
        assert lr.log_likelihood == pytest.approx(dens.sum(), rel=1e-10)
        # the MLE maximises: perturbing μ or σ lowers the likelihood
        for dm, ds in ((1e-3 * lr.std, 0), (0, 0.05 * lr.std), (0, -0.05 * lr.std)):
            other = dual_gaussian_log_density(
                sim.before, sim.after, psi, mean=lr.mean + dm, std=lr.std + ds
            ).sum()
            assert other < lr.log_likelihood


def test_fixing_the_mean_at_zero():
    sim = simulate_change("3-norm", 500, rng=2)
    free = change_log_likelihood(sim.before, sim.after, "3-norm")
    fixed = change_log_likelihood(sim.before, sim.after, "3-norm", fit_mean=False)
    assert fixed.mean == 0.0 and fixed.log_likelihood < free.log_likelihood
    # with μ = 0 the MLE of σ² is the mean square of Δ, not its variance
    delta = PNorm(3).grad(sim.after) - PNorm(3).grad(sim.before)
    assert fixed.std == pytest.approx(np.sqrt(np.mean(delta**2)), rel=1e-12)
    dens = dual_gaussian_log_density(sim.before, sim.after, "3-norm", mean=0.0, std=fixed.std)
    assert fixed.log_likelihood == pytest.approx(dens.sum(), rel=1e-10)
    res = infer_geometry(sim.before, sim.after, ["3-norm"], fit_mean=False, refine=False,
                         n_bootstrap=0)  # fmt: skip
    assert res.ranking["log_likelihood"].iloc[0] == pytest.approx(fixed.log_likelihood, rel=1e-12)


# ------------------------------------------------------------------------------------------------
# recovery of the truth on synthetic data
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("estimator", ["likelihood", "cdf"])
@pytest.mark.parametrize("true_p", [3.0, 2.0])
def test_recovers_pnorm(estimator, true_p):
    sim = simulate_change(PNorm(true_p), 5000, rng=10)
    res = fit(sim, estimator=estimator, n_bootstrap=30)
    # The cdf estimator is the noisier one (docs/inference.md: its median error at n = 10^4 is
    # several times the likelihood's), hence the wider tolerance.
    assert res.best_p == pytest.approx(true_p, abs=0.1 if estimator == "likelihood" else 0.2)
    assert res.ne_ruled_out  # Gaussian weights near 0 flip sign
    if estimator == "likelihood":
        assert res.p_interval.method == "likelihood-ratio"
        assert true_p in res.p_interval
        assert res.p_interval.high - res.p_interval.low < 0.2
    else:
        # The percentile interval of the cdf argmin describes its spread, not a calibrated
        # interval: the cdf estimator is biased low for p = 3 (mean 2.93 over 20 seeds at this
        # n, see docs/inference.md), so no coverage claim is made for it.
        assert res.p_interval.method == "bootstrap-percentile"
        assert res.p_interval.low <= res.best_p <= res.p_interval.high


def test_likelihood_recovers_ne_and_cdf_ranks_it_at_the_top():
    sim = simulate_change("ne", 5000, rng=3)
    lik = fit(sim)
    assert lik.best == "NE" and lik.best_p is None and not lik.ne_ruled_out
    ranking = lik.ranking
    assert ranking.loc[ranking["candidate"] == "1.5-norm", "delta_aic"].item() > 100
    cdf = fit(sim, estimator="cdf", refine=False)
    # NE's nearest neighbour, the 1.1-norm, is nearly as Gaussian at this n (see the recovery
    # study); every other candidate is far behind.
    assert cdf.ranking["candidate"].iloc[:2].tolist() in (["NE", "1.1-norm"], ["1.1-norm", "NE"])


def test_cdf_recovers_ne_in_most_seeds():
    wins = [
        fit(simulate_change("ne", 5000, rng=s), estimator="cdf", refine=False).best == "NE"
        for s in range(10)
    ]
    assert sum(wins) >= 6


def test_likelihood_interval_covers_true_p_at_nominal_rate():
    """Monte Carlo coverage of the 95% likelihood-ratio interval (40 seeds, n = 500).

    With 40 draws of a Binomial(40, 0.95), P(≤ 33 covered) < 1%, so 34 is a fair lower bound.
    """
    covered = 0
    for seed in range(40):
        sim = simulate_change("2.5-norm", 500, rng=100 + seed)
        res = infer_geometry(sim.before, sim.after, ["2.5-norm", "2-norm", "3-norm"], n_bootstrap=0)
        covered += 2.5 in res.p_interval
    assert covered >= 34


def test_likelihood_interval_endpoints_are_at_the_chi2_drop():
    sim = simulate_change("3-norm", 2000, rng=4)
    res = fit(sim)
    ci = res.p_interval
    assert not (ci.open_low or ci.open_high)
    l_hat = change_log_likelihood(sim.before, sim.after, res.best_p).log_likelihood
    drop = scipy.stats.chi2.ppf(0.95, 1) / 2
    for p in (ci.low, ci.high):
        l_p = change_log_likelihood(sim.before, sim.after, PNorm(p)).log_likelihood
        assert l_hat - l_p == pytest.approx(drop, abs=0.02)
    # best_p is the maximum of the profile likelihood
    for dp in (-0.02, 0.02):
        assert change_log_likelihood(sim.before, sim.after, res.best_p + dp).log_likelihood < l_hat


# ------------------------------------------------------------------------------------------------
# equivalences between code paths
# ------------------------------------------------------------------------------------------------
def test_ranking_columns_match_the_public_functions():
    sim = simulate_change("1.5-norm", 1500, init="lognormal", rng=5)
    res = fit(sim, refine=False)
    assert list(res.ranking.columns[:10]) == [
        "rank", "candidate", "p", "cdf_distance", "cdf_distance_centred", "ks_statistic",
        "log_likelihood", "delta_aic", "change_magnitude", "bootstrap_win_fraction",
    ]  # fmt: skip
    assert len(res.ranking) == 21
    for _, row in res.ranking.iterrows():
        g = gaussianity(sim.before, sim.after, row["candidate"], rng=0)
        assert row["cdf_distance"] == pytest.approx(g.cdf_distance, abs=1e-12)
        assert row["cdf_distance_centred"] == pytest.approx(g.cdf_distance_centred, abs=1e-12)
        assert row["ks_statistic"] == pytest.approx(g.ks.statistic, rel=1e-9)
        assert row["change_magnitude"] == pytest.approx(g.change_magnitude, rel=1e-9)
        lr = change_log_likelihood(sim.before, sim.after, row["candidate"])
        assert row["log_likelihood"] == pytest.approx(lr.log_likelihood, rel=1e-12)


def test_aic_penalises_the_pnorm_family_by_one_parameter():
    sim = simulate_change("ne", 1000, init="lognormal", rng=6)
    res = fit(sim, refine=False)
    r = res.ranking.set_index("candidate")
    aic = 2 * np.where(r["p"].isna(), 2, 3) - 2 * r["log_likelihood"]
    np.testing.assert_allclose(r["delta_aic"], aic - aic.min())
    # with a single fixed p-norm there is no fitted p: no penalty
    one = infer_geometry(sim.before, sim.after, ["ne", "2-norm"], refine=False, n_bootstrap=0)
    o = one.ranking.set_index("candidate")
    assert o.loc["2-norm", "delta_aic"] - o.loc["NE", "delta_aic"] == pytest.approx(
        -2 * (o.loc["2-norm", "log_likelihood"] - o.loc["NE", "log_likelihood"])
    )


@settings(max_examples=8, deadline=None)
@given(st.floats(1e-3, 1e3), st.integers(0, 1000))
def test_ranking_is_invariant_to_rescaling_all_weights(c, seed):
    """Scaling w0 and w by c scales every p-norm dual change uniformly and leaves NE's unchanged;
    every candidate's log-likelihood shifts by the same −n log c. Rankings are therefore equal."""
    sim = simulate_change("2.5-norm", 300, init="lognormal", rng=seed)
    a = fit(sim, refine=False)
    b = infer_geometry(c * sim.before, c * sim.after, refine=False, n_bootstrap=0, rng=0)
    assert a.ranking["candidate"].tolist() == b.ranking["candidate"].tolist()
    np.testing.assert_allclose(a.ranking["cdf_distance"], b.ranking["cdf_distance"], atol=1e-9)
    shift = (b.ranking["log_likelihood"] - a.ranking["log_likelihood"]).dropna()
    assert len(shift) >= 20
    np.testing.assert_allclose(shift, -300 * math.log(c), rtol=1e-6, atol=1e-6)


def test_permuting_synapses_changes_nothing():
    sim = simulate_change("3-norm", 800, rng=7)
    perm = np.random.default_rng(0).permutation(800)
    a = fit(sim, refine=False)
    b = infer_geometry(sim.before[perm], sim.after[perm], refine=False, n_bootstrap=0, rng=0)
    pd.testing.assert_frame_equal(
        a.ranking.drop(columns="ks_statistic"), b.ranking.drop(columns="ks_statistic"), rtol=1e-9
    )


def test_torch_and_list_inputs():
    sim = simulate_change("2-norm", 300, rng=8)
    a = fit(sim, refine=False)
    b = infer_geometry(torch.tensor(sim.before), list(sim.after), refine=False, n_bootstrap=0)
    assert a.best == b.best


# ------------------------------------------------------------------------------------------------
# sign flips, zeros, warnings
# ------------------------------------------------------------------------------------------------
def test_sign_flips_rule_out_ne():
    sim = simulate_change("ne", 1000, rng=9)
    after = sim.after.copy()
    after[:7] *= -1
    res = infer_geometry(sim.before, after, n_bootstrap=0)
    assert res.ne_ruled_out and res.n_sign_flips == 7 and res.best != "NE"
    assert "7 of 1000 weights change sign" in res.ne_ruled_out_reason
    ne = res.ranking[res.ranking["candidate"] == "NE"].iloc[0]
    assert math.isnan(ne["rank"]) and math.isnan(ne["log_likelihood"])
    assert "change sign" in ne["note"]
    assert res.ranking["candidate"].iloc[-1] == "NE"
    assert any("NE ruled out" in w for w in res.warnings)
    with pytest.raises(DomainError, match=r"no usable candidate.*change sign"):
        infer_geometry(sim.before, after, ["ne"], n_bootstrap=0)
    with pytest.raises(DomainError, match="7 of 1000 weights change sign"):
        change_log_likelihood(sim.before, after, "ne")


@pytest.mark.parametrize("where", ["before", "after"])
def test_zeros_alone_rule_out_a_sign_preserving_candidate(where):
    """No sign flips, only exact zeros: NE still cannot describe the data."""
    sim = simulate_change("ne", 600, rng=26)
    b, a = sim.before.copy(), sim.after.copy()
    (b if where == "before" else a)[:2] = 0.0
    res = infer_geometry(b, a, ["ne", "2-norm", "3-norm"], n_bootstrap=0, rng=0)
    assert res.n_sign_flips == 0 and res.ne_ruled_out and res.best != "NE"
    assert f"2 of 600 weights in {where.upper()} are 0" in res.ne_ruled_out_reason
    ne = res.ranking.set_index("candidate").loc["NE"]
    assert math.isnan(ne["rank"]) and math.isnan(ne["log_likelihood"]) and "are 0" in ne["note"]


def test_zeros_after_are_left_out_of_the_likelihood():
    sim = simulate_change("3-norm", 1000, rng=11)
    after = sim.after.copy()
    after[:5] = 0.0
    res = fit(type(sim)(sim.before, after, *[getattr(sim, f) for f in (
        "before_true", "after_true", "potential", "init", "dual_std", "noise")]))  # fmt: skip
    assert res.n_zero_weights == 5 and res.ne_ruled_out
    assert any("5 synapses are exactly 0 after" in w for w in res.warnings)
    kept = change_log_likelihood(sim.before[5:], sim.after[5:], "3-norm").log_likelihood
    row = res.ranking.set_index("candidate").loc["3-norm"]
    assert row["log_likelihood"] == pytest.approx(kept, rel=1e-9)


def test_warnings_for_few_synapses_and_large_change():
    sim = simulate_change("2-norm", 120, relative_change=2.0, rng=12)
    res = fit(sim)
    assert any("only 120 synapses" in w for w in res.warnings)
    assert any("may not be lazy" in w for w in res.warnings)


# ------------------------------------------------------------------------------------------------
# bootstrap
# ------------------------------------------------------------------------------------------------
def test_bootstrap_is_reproducible_with_a_seed():
    sim = simulate_change("3-norm", 1000, rng=13)
    a = fit(sim, n_bootstrap=40, rng=123)
    b = fit(sim, n_bootstrap=40, rng=np.random.default_rng(123))
    pd.testing.assert_frame_equal(a.ranking, b.ranking)
    assert a.p_interval_bootstrap == b.p_interval_bootstrap
    c = fit(sim, n_bootstrap=40, rng=7)
    assert a.p_interval_bootstrap != c.p_interval_bootstrap


@pytest.mark.parametrize("estimator", ["likelihood", "cdf"])
def test_bootstrap_win_fractions(estimator):
    sim = simulate_change("2-norm", 2000, rng=14)
    res = fit(sim, estimator=estimator, n_bootstrap=50)
    grid = res.ranking[~res.ranking["refined"].astype(bool)]
    wins = grid["bootstrap_win_fraction"].dropna()
    assert wins.sum() == pytest.approx(1.0)
    if estimator == "likelihood":
        assert wins.idxmax() == grid.index[grid["candidate"] == "2-norm"][0]
    ci = res.p_interval_bootstrap
    assert ci.method == "bootstrap-percentile" and ci.low <= 2.0 <= ci.high


def test_bootstrap_scores_match_a_direct_resample():
    """The counts-vector bootstrap equals refitting on explicitly resampled synapses.

    Both sides are the same sums in a different order (float64, n = 400): agreement to 1e-9
    relative (likelihood; ℓ ~ 1e3, rounding ~1e-13) and 1e-9 absolute (cdf distance ≤ 5)."""
    sim = simulate_change("2.5-norm", 400, rng=15)
    cands = [NegativeEntropy(), PNorm(2.0), PNorm(2.5), Quartic()]
    data = PreparedChange.from_weights(np.abs(sim.before), np.abs(sim.after))
    resamples = BootstrapResamples(400, 3, np.random.default_rng(5))
    seeds = np.random.default_rng(5).integers(0, 2**63, size=3)
    ks = [2, 3, 3, 2]
    for est in (LikelihoodEstimator(), CdfEstimator()):
        scores = est.bootstrap(data, cands, resamples, n_params=ks)
        assert scores.shape == (3, 4)
        for b in range(3):
            idx = np.random.default_rng(seeds[b]).integers(0, 400, size=400)
            np.testing.assert_array_equal(resamples.counts(b), np.bincount(idx, minlength=400))
            bb, aa = np.abs(sim.before)[idx], np.abs(sim.after)[idx]
            for j, psi in enumerate(cands):
                if isinstance(est, LikelihoodEstimator):
                    ref = 2 * ks[j] - 2 * change_log_likelihood(bb, aa, psi).log_likelihood
                    assert scores[b, j] == pytest.approx(ref, rel=1e-9)
                else:
                    ref = gaussianity(bb, aa, psi, rng=0).cdf_distance
                    assert scores[b, j] == pytest.approx(ref, abs=1e-9)


# ------------------------------------------------------------------------------------------------
# result object and inputs
# ------------------------------------------------------------------------------------------------
def test_result_object():
    sim = simulate_change("3-norm", 600, rng=16)
    res = fit(sim, n_bootstrap=10)
    assert isinstance(res, GeometryFit)
    with pytest.raises(AttributeError):
        res.best = "x"
    d = res.to_dict()
    json.dumps(d, allow_nan=True)
    assert d["best"] == res.best and len(d["ranking"]) == len(res.ranking)
    assert res.best in repr(res) and "GeometryFit(" in repr(res)
    text = res.summary()
    assert f"Best geometry: {res.best}" in text and "p interval" in text
    assert isinstance(res.p_interval, ConfidenceInterval) and "likelihood-ratio" in str(
        res.p_interval
    )
    assert res.ranking["rank"].iloc[0] == 1 and res.ranking["candidate"].iloc[0] == res.best


def test_candidates_parsing():
    assert [c.name for c in default_candidates()] == ["NE"] + [
        f"{p / 10:g}-norm" for p in range(11, 31)
    ]
    sim = simulate_change("3-norm", 300, rng=17)
    res = infer_geometry(sim.before, sim.after, ["3-norm", 3.0, "p=2"], refine=False, n_bootstrap=0)
    assert sorted(res.ranking["candidate"]) == ["2-norm", "3-norm"]
    with pytest.raises(ValueError, match="unknown potential"):
        infer_geometry(sim.before, sim.after, ["3-nrom"])
    with pytest.raises(ValueError, match="empty"):
        infer_geometry(sim.before, sim.after, [])


def test_bad_inputs_raise_clear_errors():
    sim = simulate_change("2-norm", 200, rng=18)
    b, a = sim.before, sim.after
    with pytest.raises(ValueError, match=f"too few synapses: 49.*at least {MIN_SYNAPSES}"):
        infer_geometry(b[:49], a[:49])
    with pytest.raises(ValueError, match="same synapses: got 200 and 199"):
        infer_geometry(b, a[:-1])
    with pytest.raises(ValueError, match="AFTER holds non-finite values \\(1 NaN"):
        infer_geometry(b, np.where(np.arange(200) == 3, np.nan, a))
    with pytest.raises(ValueError, match="same for every synapse"):
        grid = np.arange(-100, 100) / 256  # exact in binary: (w + 0.5) - w == 0.5
        infer_geometry(grid, grid + 0.5)
    with pytest.raises(InputError, match="unknown estimator 'ks'"):
        infer_geometry(b, a, estimator="ks")
    with pytest.raises(InputError, match="n_bootstrap must be an integer >= 0"):
        infer_geometry(b, a, n_bootstrap=-1)
    with pytest.raises(InputTypeError, match="n_bootstrap must be an integer"):
        infer_geometry(b, a, n_bootstrap=2.5)
    with pytest.raises(InputError, match="confidence"):
        infer_geometry(b, a, confidence=95)
    with pytest.raises(InputTypeError, match="rng"):
        infer_geometry(b, a, rng="abc")
    with pytest.raises(InputError, match="std"):
        dual_gaussian_log_density(b, a, "2-norm", mean=0.0, std=0.0)


def test_cdf_refinement_stays_out_of_the_ne_neighbourhood():
    """With NE among the candidates, the cdf refinement never returns a p-norm with p < 1.1."""
    for seed in range(3):
        res = fit(simulate_change("ne", 1500, rng=40 + seed), estimator="cdf", n_bootstrap=5)
        assert res.best == "NE" or res.best_p >= 1.1
        assert res.p_interval_bootstrap.low >= 1.1
    # without NE the family may go below the grid
    sim = simulate_change("1.05-norm", 2000, init="lognormal", rng=1)
    res = infer_geometry(sim.before, sim.after, [1.1, 1.2, 1.3], estimator="cdf", n_bootstrap=0)
    assert res.best_p < 1.1


def test_bootstrap_without_stored_counts_gives_the_same_answer():
    sim = simulate_change("2-norm", 500, rng=19)
    data = PreparedChange.from_weights(sim.before, sim.after)
    cands = [PNorm(1.5), PNorm(2.0), PNorm(2.5)]
    stored = BootstrapResamples(500, 12, 3)
    streamed = BootstrapResamples(500, 12, 3, store_bytes=0)
    for b in (0, 11):
        np.testing.assert_array_equal(stored.counts(b), streamed.counts(b))
        assert stored.counts(b).sum() == 500
    for est in (LikelihoodEstimator(), CdfEstimator()):
        np.testing.assert_array_equal(
            est.bootstrap(data, cands, stored), est.bootstrap(data, cands, streamed)
        )


# ------------------------------------------------------------------------------------------------
# a potential defined only in the tests runs through the whole inference
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", [0, 1])
def test_user_potential_is_ranked_first_when_it_is_the_truth(seed):
    """A change simulated under Quartic (φ = w²/2 + w⁴/4) is attributed to Quartic.

    scale = 1 puts the weights where the quartic term matters (at |w| ~ 0.1 the potential is
    Euclidean to 1 %, and the 2-norm is then as good an answer). Measured margins at n = 3000 for
    seeds 0-2: ΔAIC 850-920 to the best p-norm; the bounds below leave a factor of ~5.
    """
    sim = simulate_change(Quartic(), 3000, scale=1.0, rng=seed)
    cands = [Quartic(), "2-norm", "3-norm", "ne"]
    res = infer_geometry(sim.before, sim.after, cands, n_bootstrap=20, rng=seed)
    assert res.best == "quartic" and res.best_p is None
    assert isinstance(res.best_potential, Quartic)
    assert res.margin > 150
    row = res.ranking.iloc[0]
    assert math.isnan(row["p"]) and row["delta_aic"] == 0 and row["bootstrap_win_fraction"] == 1
    # every p-norm, refined or not, is far behind
    assert res.ranking["delta_aic"].iloc[1] > 150
    # the cdf estimator agrees (measured margins 0.01-0.04 in cdf distance)
    cdf = infer_geometry(sim.before, sim.after, cands, estimator="cdf", n_bootstrap=0, rng=seed)
    assert cdf.best == "quartic" and cdf.margin > 0.003
    # and its ranking row is the public functions' numbers
    g = gaussianity(sim.before, sim.after, Quartic(), rng=0)
    assert row["cdf_distance"] == pytest.approx(g.cdf_distance, abs=1e-12)
    assert row["change_magnitude"] == pytest.approx(g.change_magnitude, rel=1e-9)
    lr = change_log_likelihood(sim.before, sim.after, Quartic())
    assert row["log_likelihood"] == pytest.approx(lr.log_likelihood, rel=1e-12)


def test_user_potential_density_integrates_to_one():
    def f(w):
        return math.exp(dual_gaussian_log_density([0.7], [w], Quartic(), mean=0.1, std=0.3)[0])

    assert scipy.integrate.quad(f, -5, 5, points=[0.7], limit=400)[0] == pytest.approx(1, abs=1e-7)


# ------------------------------------------------------------------------------------------------
# GeometryFit bookkeeping, pinned exactly
# ------------------------------------------------------------------------------------------------
def _grid_rows(res):
    r = res.ranking
    return r[~r["refined"].astype(bool) & r["rank"].notna()]


@pytest.mark.parametrize("estimator", ["likelihood", "cdf"])
def test_margin_is_the_gap_between_the_two_best_grid_candidates(estimator):
    sim = simulate_change("2.45-norm", 1500, rng=21)
    res = fit(sim, estimator=estimator)
    assert res.ranking["refined"].iloc[0]  # the refined p beats the grid: it must not count
    grid = _grid_rows(res)
    if estimator == "likelihood":
        k = np.where(grid["p"].isna(), 2, 3)
        scores = np.sort(2 * k - 2 * grid["log_likelihood"].to_numpy())
    else:
        scores = np.sort(grid["cdf_distance"].to_numpy())
    assert res.margin == pytest.approx(scores[1] - scores[0], rel=1e-12, abs=1e-15)
    assert res.margin > 0
    # a single usable candidate has no runner-up
    one = infer_geometry(sim.before, sim.after, ["2-norm", "ne"], n_bootstrap=0, refine=False)
    assert math.isnan(one.margin)


def test_zero_and_sign_flip_counts():
    sim = simulate_change("2-norm", 400, rng=22)
    b, a = sim.before.copy(), sim.after.copy()
    b[[0, 1, 2]] = 0.0  # zero before (synapse 2 stays 0)
    a[[2, 3, 4]] = 0.0  # zero after
    b[5], a[5] = 0.3, -0.2  # a flip
    b[6], a[6] = -0.1, 0.4  # a flip
    b[7], a[7] = -0.0, 0.5  # -0.0 is 0, not a flip
    flips = int(np.sum((b * a) < 0))
    res = infer_geometry(b, a, n_bootstrap=0, rng=0)
    assert res.n_zero_weights == 6  # synapses 0, 1, 2, 3, 4, 7
    assert res.n_sign_flips == flips
    assert res.ne_ruled_out and res.n_synapses == 400
    assert f"{flips} of 400 weights change sign" in res.ne_ruled_out_reason
    assert "4 of 400 weights in BEFORE are 0" in res.ne_ruled_out_reason
    assert "3 of 400 weights in AFTER are 0" in res.ne_ruled_out_reason
    assert any("3 synapses are exactly 0 after learning" in w for w in res.warnings)


@pytest.mark.parametrize("top", [1, 3, 50])
def test_summary_shows_the_top_rows_in_rank_order(top):
    sim = simulate_change("3-norm", 800, rng=23)
    res = fit(sim)
    text = res.summary(top=top)
    table = text.split("\n")
    header = next(i for i, line in enumerate(table) if line.split()[:2] == ["rank", "candidate"])
    shown = [line.split()[1] for line in table[header + 1 :] if not line.startswith("warning")]
    shown = [s for s in shown if s.endswith("-norm") or s == "NE"]
    expected = res.ranking["candidate"].head(top).tolist()
    assert shown == expected and len(shown) == min(top, len(res.ranking))


@pytest.mark.parametrize(
    ("estimator", "confidence", "n"), [("likelihood", 0.95, 1200), ("cdf", 0.8, 1200),
                                       ("likelihood", 0.9, 60)]
)  # fmt: skip
def test_bootstrap_interval_and_win_fractions_are_the_resampled_argmins(estimator, confidence, n):
    """Rebuild the bootstrap from the public pieces: same resamples (the generator's first use
    for n ≤ 100 000), the documented fine grid, argmins, and the (1 ± c)/2 quantiles. At n = 60
    the resampled best p spreads over the whole fine grid (±0.15), so its ends matter too.

    The cdf interval here is wider than 10 steps of 0.01, so no zoom happens: the cdf estimate of
    each resample is its grid argmin exactly. The likelihood's is the continuous optimum of the
    resample's score (bounded Brent to 1e-7 between the argmin's neighbours is the reference),
    which the grid argmin plus one parabolic step reproduces within h/2 = 0.005 by construction
    (the optimum of a unimodal score lies within a step of the argmin and the vertex is clipped
    to the neighbours) and, for a score whose third derivative in p is of the order of its
    second, to O(h²) = 1e-4: asserted with a factor 5 of margin (5e-4).
    """
    b, seed = 25, 31
    sim = simulate_change("2.5-norm", n, rng=24 if n > 100 else 25)
    cands = [PNorm(2.0), PNorm(2.5), PNorm(3.0)]
    res = infer_geometry(
        sim.before, sim.after, cands, estimator=estimator, n_bootstrap=b,
        confidence=confidence, rng=seed,
    )  # fmt: skip
    est = LikelihoodEstimator() if estimator == "likelihood" else CdfEstimator()
    data = PreparedChange.from_weights(sim.before, sim.after)
    resamples = BootstrapResamples(n, b, np.random.default_rng(seed))
    grid_scores = est.bootstrap(data, cands, resamples, n_params=[3, 3, 3])
    wins = np.bincount(np.argmin(grid_scores, axis=1), minlength=3) / b
    got = res.ranking.set_index("candidate")["bootstrap_win_fraction"]
    np.testing.assert_array_equal(got[[c.name for c in cands]].to_numpy(), wins)
    centre = res.best_p
    fine = np.round(np.arange(centre - 0.15, centre + 0.15 + 1e-9, 0.01), 4)
    ps = sorted({float(p) for p in fine} | {2.0, 2.5, 3.0})
    scores = est.bootstrap(data, [PNorm(p) for p in ps], resamples, n_params=[3] * len(ps))
    best = np.asarray(ps)[np.argmin(scores, axis=1)]
    lo, hi = np.quantile(best, [(1 - confidence) / 2, (1 + confidence) / 2])
    ci = res.p_interval_bootstrap
    assert (ci.level, ci.method) == (confidence, "bootstrap-percentile")
    if estimator == "cdf":
        assert hi - lo >= 10 * 0.01  # no zoom
        assert (ci.low, ci.high) == (lo, hi)
        assert res.p_interval == ci
    else:

        def continuous_optimum(r):
            j = int(np.argmin(scores[r]))
            if j in (0, len(ps) - 1):  # at a grid end: the estimate is that end
                return ps[j]
            opt = scipy.optimize.minimize_scalar(
                lambda p: est.bootstrap(data, [PNorm(p)], resamples, n_params=[3])[r, 0],
                bounds=(ps[j - 1], ps[j + 1]),
                method="bounded",
                options={"xatol": 1e-7},
            )
            return opt.x

        exact = np.array([continuous_optimum(r) for r in range(b)])
        mine = bootstrap_parameter(est, data, PNorm(centre), ps, resamples, confidence)
        # where the argmin is the fine grid's end, its outer neighbour is a candidate's p up to
        # g = 0.35 away: the parabola is then O(g²)-accurate only, which the test allows as g/10
        gap = np.array([max(np.diff(ps)[max(j - 1, 0)], np.diff(ps)[min(j, len(ps) - 2)])
                        for j in np.argmin(scores, axis=1)])  # fmt: skip
        uniform = gap < 0.0101
        np.testing.assert_allclose(mine[uniform], exact[uniform], rtol=0, atol=5e-4)
        assert np.all(np.abs(mine - exact)[~uniform] <= gap[~uniform] / 10)
        lo, hi = np.quantile(mine, [(1 - confidence) / 2, (1 + confidence) / 2])
        assert (ci.low, ci.high) == (lo, hi)
        ex_lo, ex_hi = np.quantile(exact, [(1 - confidence) / 2, (1 + confidence) / 2])
        assert (ci.low, ci.high) == pytest.approx((ex_lo, ex_hi), abs=5e-4)
    assert lo < hi  # the resamples disagree, so a quantile mix-up would show
    if n == 60:
        assert best.min() <= centre - 0.15 + 1e-9 and best.max() >= centre + 0.15 - 1e-9


def test_percentile_interval_levels():
    values = np.arange(1001.0)
    # quantile q of 0..1000 is 1000 q; (1 − 0.9)/2 is 0.05 up to 1 ulp, hence approx
    ci = percentile_interval(values, 0.9)
    assert (ci.low, ci.high) == pytest.approx((50.0, 950.0), abs=1e-9)
    ci = percentile_interval(values[::-1], 0.5)
    assert (ci.low, ci.high, ci.level) == (250.0, 750.0, 0.5)


@pytest.mark.parametrize("psi", [PNorm(1.5), PNorm(2.0), PNorm(3.0), NegativeEntropy(), Quartic()])
def test_streamed_dual_and_jacobian_equal_the_plain_protocol_methods(psi):
    """PreparedChange reuses log|w| (grad_with_log_abs, hessian_power_law): it must equal
    grad(after) − grad(before) and Σ log_hessian_diag(after) computed directly.

    exp((p−1) log|w|) vs |w|^(p−1): a few ulps per entry (relative 1e-13 of the largest |Δ|
    entry with margin); the Jacobian sums 3000 logs of size ~3: 1e-12 relative.
    """
    sim = simulate_change("2.5-norm", 3000, init="lognormal", rng=25)
    b, a = sim.before, sim.after
    if psi.preserves_sign:
        a = np.abs(a) * np.sign(b)
    a = a.copy()
    a[:3] = 0.0  # zeros after: left out of the likelihood sums, 0 in NE's dual by convention
    if psi.preserves_sign:
        a[:3] = b[:3] * 1.01
    data = PreparedChange.from_weights(b, a)
    dual = data.dual(psi)
    ref = np.asarray(psi.grad(a)) - np.asarray(psi.grad(b))
    np.testing.assert_allclose(dual.delta, ref, rtol=0, atol=1e-13 * np.abs(ref).max())
    assert dual.mean == pytest.approx(ref.mean(), rel=1e-12, abs=1e-15)
    assert dual.var == pytest.approx(ref.var(), rel=1e-10)
    assert dual.ref_sq == pytest.approx(np.sum(np.asarray(psi.grad(b)) ** 2), rel=1e-12)
    keep = a != 0
    jac = np.sum(np.asarray(psi.log_hessian_diag(a[keep])))
    assert data.log_jacobian(psi) == pytest.approx(jac, rel=1e-12)


def test_a_weight_whose_dual_overflows_is_an_input_error_naming_it():
    """1e300 has a finite 3-norm dual only before squaring; the library must say so in one
    InputError naming the synapse, with no solver failure and no NumPy warning on the way."""
    import warnings

    from syngeo.errors import InputError

    rng = np.random.default_rng(0)
    b = np.abs(rng.normal(size=2000)) + 0.1
    a = b * (1 + 0.01 * rng.normal(size=2000))
    a[17] = 1e300
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(InputError, match=r"synapse 17 \(BEFORE"):
            infer_geometry(b, a, n_bootstrap=0)
    # the same weight is fine when no candidate's dual overflows on it
    fit = infer_geometry(b, a, candidates=["1.1-norm"], n_bootstrap=0, refine=False)
    assert fit.best == "1.1-norm"
