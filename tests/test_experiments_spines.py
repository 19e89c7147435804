"""The fig5 experiment: cells, verdicts generated from the numbers, figures and report, on small
synthetic tables whose generating geometry is known (the bundled-data run is in the docs)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from syngeo.app.experiments import get, run
from syngeo.app.experiments.spines import (
    Config,
    model_from_row,
    paper_ne_model,
    summarise,
    verdict,
)
from syngeo.datasets import DORKENWALD2022_TABLE2
from syngeo.errors import InputError
from syngeo.snapshot import InitialMixture, SnapshotModel


def synthetic_table(path, model: SnapshotModel, n_connections=500, seed=0):
    """A synapse table drawn from ``model``: connections of 1-3 synapses with independent draws
    (so no shared history), ids, and the MICrONS column names."""
    g = np.random.default_rng(seed)
    sizes = g.choice([1, 2, 3], size=n_connections, p=[0.6, 0.3, 0.1])
    labels = np.repeat(np.arange(n_connections), sizes)
    w = model.sample(4 * labels.size, rng=seed + 1).weights[: labels.size]
    frame = pd.DataFrame(
        {
            "id": np.arange(labels.size) + 1000,
            "pre_root_id": labels,
            "post_root_id": 7,
            "spine_vol_um3": w,
        }
    )
    frame.to_csv(path, index=False)
    return frame


NE_MODEL = SnapshotModel("ne", InitialMixture.two_point(0.04, 0.17, 0.77), 0.5)


def test_paper_ne_model_uses_table_2_and_the_log_averaged_spread():
    ref = DORKENWALD2022_TABLE2[0]
    m = paper_ne_model()
    low, high = (c.value for c in m.initial.components)
    assert math.log10(low) == pytest.approx(ref.small_mean) == -1.42
    assert math.log10(high) == pytest.approx(ref.large_mean) == -0.77
    assert m.initial.weights[0] == pytest.approx(0.77)
    # log-average of 0.24 and 0.22 (log10 units) = sqrt(0.24 * 0.22) = 0.22978, in ln units
    assert m.dual_std == pytest.approx(math.sqrt(0.24 * 0.22) * math.log(10), rel=1e-12)


def test_model_from_row_round_trips_a_fit_row():
    from syngeo.snapshot import fit_snapshot

    w = NE_MODEL.sample(600, rng=3).weights
    fit = fit_snapshot(w, "ne", "two-point")
    rebuilt = model_from_row(pd.Series(fit.to_dict()))
    np.testing.assert_allclose(rebuilt.log_density(w), fit.model.log_density(w), rtol=1e-12)


def test_ne_data_rules_out_the_euclidean_geometry_and_says_so(tmp_path):
    path = tmp_path / "ne.csv"
    synthetic_table(path, NE_MODEL, n_connections=900)
    config = Config(
        table=str(path),
        potentials=("NE", "2-norm"),
        families=("two-point",),
        n_folds=2,
        n_bootstrap=3,
        n_shuffles=20,
    )
    table = run(get("fig5"), config, out=tmp_path / "run")
    s = summarise(table, config)
    assert s["best_model"] == "NE / two-point"
    # two-point starts under the 2-norm cannot make the log-normal-mixture shape: far behind
    assert s["euclidean_delta_aic"] > 100 and s["euclidean_ruled_out_by_aic"]
    assert s["plausible_geometries"] == ["NE"] and s["geometry_pinned"]
    text = verdict(s)
    assert "ruled out by AIC" in text and "does not hold" not in text
    report = get("fig5").report(table, config)
    assert "| ... but it rules out the Euclidean one | holds" in report
    assert "| one snapshot cannot pin the geometry | does not hold" in report
    # independent draws: no shared history, so within ≈ shuffled (variance ratio near 1)
    conn = table[table["part"] == "connections"]
    assert (abs(conn["variance_ratio"] - 1) < 0.3).all()
    figures = get("fig5").plot(table, config)
    assert set(figures) == set(get("fig5").figures)


def test_verdict_says_does_not_hold_when_the_euclidean_model_fits():
    s = {
        "best_model": "2-norm / constant-lognormal",
        "euclidean_delta_aic": 0.0,
        "euclidean_ruled_out_by_aic": False,
        "euclidean_beaten_by": [],
        "plausible_geometries": ["2-norm", "NE"],
        "geometry_pinned": False,
    }
    text = verdict(s)
    assert "does not hold" in text and "does not pin" in text


def test_config_rejects_bad_settings():
    with pytest.raises(InputError, match="families"):
        Config(families=("three-point",))
    with pytest.raises(InputError, match="n_folds"):
        Config(n_folds=1)
    with pytest.raises(InputError, match="distinct"):
        Config(potentials=("ne", "NE"))


def test_fig5_is_registered_with_its_figures():
    exp = get("fig5")
    assert exp.figures == ("fig5_histogram", "fig5_qq", "fig5_profile", "fig5_connections")
    cells = exp.cells(exp.config())
    assert [c["part"] for c in cells].count("geometry") == 6
    assert {c["potential"] for c in cells} >= {"NE", "2-norm", "3-norm"}
