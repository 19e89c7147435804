"""fig4 / fig7a / fig7b: tiny configurations end to end, and the report's diagonal check."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from syngeo.app.experiments import EXPERIMENTS, deep, get, run

TINY = dict(
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


def test_registered():
    names = [e.name for e in EXPERIMENTS]
    for name in ("fig4", "fig7a", "fig7b"):
        assert name in names
    assert get("fig7a").config(quick=True).kind == "supervised-rnn"
    assert get("fig7b").config().epochs == 50  # the paper's SimSiam protocol
    paper = get("fig4").config()
    assert paper.lrs == (1e-5, 1e-4, 1e-3, 1e-2, 1e-1) and paper.n_seeds >= 3
    assert (paper.epochs, paper.max_extensions, paper.batch_size) == (30, 4, 256)
    assert len(paper.widths) >= 3


@pytest.mark.parametrize("name", ["fig4", "fig7a", "fig7b"])
def test_tiny_run(name, tmp_path):
    exp = get(name)
    config = exp.Config(**TINY)
    table = run(exp, config, out=tmp_path / name)
    pooled = table[table.layer == "pooled"]
    assert set(pooled["trained_with"]) == set(pooled["read_with"]) == {"2-norm", "3-norm", "NE"}
    assert len(pooled) == 9
    hist = json.loads(pooled["z_hist"].iloc[0])
    assert len(hist) == 40 and sum(hist) > 0
    # the histogram counts the synapses read (NE: those that kept their sign)
    assert all(sum(json.loads(h)) == n for h, n in zip(pooled["z_hist"], pooled["n"], strict=True))
    if name == "fig7b":
        assert all(layer.startswith("encoder.") or layer == "pooled" for layer in table["layer"])
    summary = exp.summarise(table, config)
    assert set(summary["checks"]) == {"cdf_distance", "log_likelihood"}
    figures = exp.plot(table, config)
    assert set(figures) == set(exp.figures)
    report = exp.report(table, config)
    assert "## The paper's claims" in report and f"{name}.png" in report


def test_fig7a_reads_mnist_idx_files(tmp_path):
    from test_models import _write_mnist

    _write_mnist(tmp_path / "mnist", n_train=80, n_test=40, side=6)
    config = deep.Fig7AConfig(
        **{**TINY, "n_pretrain": 60, "n_finetune": 20}, data_dir=str(tmp_path / "mnist")
    )
    table = run(get("fig7a"), config)
    assert set(table[table.layer != "pooled"]["layer"]) == {"rnn.weight_ih_l0", "rnn.weight_hh_l0"}
    assert table["n_weights"].iloc[0] == 2 * 6 + 2 * 2


def _planted_table(values: dict[tuple[str, str], float]) -> pd.DataFrame:
    rows = []
    for (phi, psi), d in values.items():
        rows.append(
            {
                "layer": "pooled",
                "width": 4,
                "trained_with": phi,
                "read_with": psi,
                "seed": 0,
                "cdf_distance": d,
                "log_likelihood": -d,
                "magnitude": 0.1,
                "reached_target": True,
                "train_accuracy": 1.0,
                "epochs": 30,
                "pretrain_accuracy": 0.9,
                "n_weights": 100,
                "z_hist": json.dumps([1] * 40),
                "z_mean": 0.0,
            }
        )
    return pd.DataFrame(rows)


def test_diagonal_check_says_where_it_does_not_hold():
    names = ("2-norm", "3-norm", "NE")
    values = {(a, b): (0.1 if a == b else 0.5) for a in names for b in names}
    values[("3-norm", "2-norm")] = 0.05  # 3-norm-trained is read best as 2-norm
    df = _planted_table(values)
    config = deep.DeepConfig(widths=(4,), n_seeds=1)
    s = deep.summarise(df, config)
    assert not s["diagonal_is_row_min_cdf"] and not s["diagonal_is_row_max_likelihood"]
    bad = [c for c in s["checks"]["cdf_distance"]["all_widths"] if not c["holds"]]
    assert [(c["trained_with"], c["row_best"]) for c in bad] == [("3-norm", "2-norm")]
    assert bad[0]["margin"] == pytest.approx(-0.05)
    report = deep.FIG4.report(df, config)
    assert "does not hold for 3-norm (row minimum at 2-norm" in report
    # 2-norm row: NE ties with 3-norm for worst (a tie is not "worst": idxmax takes the first)
    assert s["ne_reading"]["best_for_ne_trained"]
    assert s["ne_reading"]["worst_for_other_rows"] == {"2-norm": False, "3-norm": True}
    assert "worst fit for 2-norm-trained: does not hold" in report
    values[("3-norm", "2-norm")] = 0.5
    values[("2-norm", "NE")] = values[("3-norm", "NE")] = 0.9
    s = deep.summarise(_planted_table(values), config)
    assert s["diagonal_is_row_min_cdf"] and s["diagonal_is_row_max_likelihood"]
    assert s["ne_reading"]["worst_for_other_rows"] == {"2-norm": True, "3-norm": True}
    good = s["checks"]["cdf_distance"]["all_widths"]
    assert [c["margin"] for c in good] == pytest.approx([0.4, 0.4, 0.4])


def test_config_errors():
    from syngeo.errors import InputError

    with pytest.raises(InputError):
        deep.DeepConfig(kind="gan")
    with pytest.raises(InputError):
        deep.DeepConfig(potentials=("2-norm", "2-norm"))
    with pytest.raises(InputError):
        deep.DeepConfig(lrs=())
    with pytest.raises(InputError):
        deep.DeepConfig(widths=(0,))


def test_augment_is_a_random_view():
    import torch

    x = torch.rand(4, 1, 8, 8)
    g = torch.Generator().manual_seed(0)
    a, b = deep.augment(x, g), deep.augment(x, g)
    assert a.shape == x.shape and not torch.allclose(a, b)
    assert np.isfinite(a.numpy()).all()


def test_a_row_without_numbers_is_reported_not_a_crash():
    names = ("2-norm", "NE")
    values = {(a, b): (0.1 if a == b else 0.5) for a in names for b in names}
    values[("NE", "NE")] = values[("NE", "2-norm")] = float("nan")
    s = deep.summarise(_planted_table(values), deep.DeepConfig(widths=(4,), potentials=names))
    bad = [c for c in s["checks"]["cdf_distance"]["all_widths"] if not c["holds"]]
    assert [c["trained_with"] for c in bad] == ["NE"] and bad[0]["row_best"] == "n/a"


def test_a_rerun_reuses_the_pretrained_network_cached_in_out(tmp_path, monkeypatch):
    """The pretrained network is kept in OUT/cache: a rerun whose cells are gone loads it
    instead of training again, and gives the same table (layer rows in the same order)."""
    exp = get("fig7a")
    config = exp.Config(**TINY)
    out = tmp_path / "fig7a"
    first = run(exp, config, out=out)
    assert len(list((out / "cache").glob("pretrained-supervised-rnn-width2-*.safetensors"))) == 1
    for cell in (out / "cells").iterdir():
        cell.unlink()
    deep._pretrained.cache_clear()

    def no_training(*args):
        raise AssertionError("the network was trained again")

    monkeypatch.setattr(deep, "_pretrained", no_training)
    second = run(exp, config, out=out)
    assert list(second.columns) == list(first.columns)
    assert second["layer"].tolist() == first["layer"].tolist()
    timing = [c for c in first.columns if "second" in c or "time" in c]
    pd.testing.assert_frame_equal(second.drop(columns=timing), first.drop(columns=timing))


def test_simsiam_pretraining_is_scored_by_a_knn_vote_on_encoder_features():
    """fig7b has no classifier: its pretraining is scored by a k-nearest-neighbour vote on the
    encoder's features. The vote on raw pixels of the digits is well above 0.9 (sklearn's
    digits are nearly separable by nearest neighbours); on features that ignore the image it
    is near chance (0.1)."""
    import torch

    from syngeo.data.images import load_digits_images

    pre, held = load_digits_images().split(1200, rng=0)
    pixels = deep._knn_accuracy(lambda x: x.flatten(1), pre, held)
    assert pixels > 0.9
    gen = torch.Generator().manual_seed(0)
    blind = deep._knn_accuracy(lambda x: torch.rand(x.shape[0], 16, generator=gen), pre, held)
    assert blind < 0.25
    config = get("fig7b").Config(**TINY)
    _, accuracy = deep._pretrained(config, 2)
    assert 0.0 <= accuracy <= 1.0  # a number, not NaN


def test_report_compares_the_diagonal_with_the_gaussian_floor():
    """The floor is the 95th percentile of the CDF distance of exactly Gaussian samples of the
    analysed size (100 weights here: about 0.22, since E d ~ 1/sqrt(n)); the report says whether
    the diagonal is below it, above it, or split."""
    names = ("2-norm", "3-norm", "NE")
    config = deep.DeepConfig(widths=(4,), n_seeds=1)

    def report(diagonal):
        values = {(a, b): (diagonal[a] if a == b else 0.9) for a in names for b in names}
        df = _planted_table(values)
        return deep.summarise(df, config), deep.FIG4.report(df, config)

    s, text = report(dict.fromkeys(names, 0.05))
    assert 0.15 < s["gaussian_floor"]["4"] < 0.3
    assert "indistinguishable from a Gaussian" in text
    s, text = report(dict.fromkeys(names, 0.3))  # just above the floor
    assert "Every diagonal entry is above the floor" in text
    assert "diagonal 0.3–0.3" in text
    s, text = report({"2-norm": 0.05, "3-norm": 0.5, "NE": 0.6})
    assert "1 of 3 diagonal entries are within the floor, 2 above it" in text


def test_report_names_the_cells_short_of_100_percent_training_accuracy():
    names = ("2-norm", "NE")
    df = _planted_table({(a, b): (0.1 if a == b else 0.5) for a in names for b in names})
    config = deep.DeepConfig(widths=(4,), n_seeds=1, potentials=names)
    assert "reached 100 % training accuracy: 100 % (the paper's all did)." in deep.FIG4.report(
        df, config
    )
    short = df["trained_with"] == "NE"
    df.loc[short, ["reached_target", "train_accuracy", "epochs", "magnitude"]] = (
        False,
        0.996,
        150,
        1.05,
    )
    s = deep.summarise(df, config)
    assert s["fraction_reached_100_percent"] == 0.5
    assert (
        "short of it: width 4, NE, seed 0 (training accuracy 0.996 after 150 epochs, "
        "magnitude 1.05)." in deep.FIG4.report(df, config)
    )
