"""The bundled data sets: integrity, and the published numbers they reproduce."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from syngeo import datasets


def test_dorkenwald2022_file_is_the_published_one():
    digest = hashlib.md5(datasets.dorkenwald2022_path().read_bytes()).hexdigest()
    assert digest == datasets.DORKENWALD2022_MD5


def test_dorkenwald2022_counts_match_the_source_notes():
    # counts from the data's SOURCE.md: 1961 synapses, 334 cells, 1736 connections of sizes
    # 1547 x 1, 160 x 2, 24 x 3, 3 x 4, 2 x 5
    table = datasets.dorkenwald2022()
    assert len(table) == 1961 and table["id"].is_unique
    cells = set(table["pre_root_id"]) | set(table["post_root_id"])
    assert len(cells) == 334
    pairs = table.groupby(["pre_root_id", "post_root_id"]).size()
    assert pairs.value_counts().sort_index().to_dict() == {1: 1547, 2: 160, 3: 24, 4: 3, 5: 2}
    assert table["connection_size"].value_counts().sort_index().to_dict() == {
        1: 1547,
        2: 320,
        3: 72,
        4: 12,
        5: 10,
    }
    vol = table["spine_vol_um3"]
    assert vol.notna().all() and vol.min() == pytest.approx(0.004549, abs=1e-6)
    assert vol.max() == pytest.approx(0.5924, abs=1e-4)
    assert "Dorkenwald" in table.attrs["citation"]


def test_dorkenwald2022_reproduces_table_2_mixture():
    """A two-component Gaussian mixture of log10 volumes (EM run to convergence) matches the
    article's Table 2, "all synapses" row, to the published rounding (±0.02)."""
    from sklearn.mixture import GaussianMixture

    x = np.log10(datasets.dorkenwald2022()["spine_vol_um3"].to_numpy())[:, None]
    gm = GaussianMixture(2, tol=1e-10, max_iter=5000, n_init=5, random_state=0).fit(x)
    order = np.argsort(gm.means_.ravel())
    means = gm.means_.ravel()[order]
    sds = np.sqrt(gm.covariances_.ravel()[order])
    weights = gm.weights_[order]
    ref = datasets.DORKENWALD2022_TABLE2[0]
    got = (means[0], sds[0], weights[0], means[1], sds[1], weights[1])
    want = (
        ref.small_mean,
        ref.small_sd,
        ref.small_weight,
        ref.large_mean,
        ref.large_sd,
        ref.large_weight,
    )
    np.testing.assert_allclose(got, want, atol=0.02)
