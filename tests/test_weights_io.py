"""Reading weights and synapse tables: every format, the default skips, alignment and errors."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import pandas as pd
import pytest
import torch

from syngeo.data.weights import (
    SUFFIXES,
    WeightPair,
    WeightSet,
    load_pair,
    load_weights,
    select_tensors,
)
from syngeo.errors import DataFileError, InputError, InputTypeError


def _values(n: int = 50, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, 0.1, n)


def _net() -> torch.nn.Module:
    """conv -> batch norm -> conv -> linear readout, like the networks of the paper."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        OrderedDict(
            conv1=torch.nn.Conv2d(3, 4, 3),
            bn1=torch.nn.BatchNorm2d(4),
            conv2=torch.nn.Conv2d(4, 4, 3, bias=True),
            fc=torch.nn.Linear(4, 10),
        )
    )
    # Non-trivial running statistics, so a wrongly kept tensor would change the values.
    net.bn1.running_mean.add_(0.5)
    return net


EXPECTED_USED = ("conv1.weight", "conv2.weight")
EXPECTED_SKIPPED = {
    "conv1.bias": "bias",
    "bn1.weight": "normalisation parameter",
    "bn1.bias": "bias",
    "bn1.running_mean": "normalisation statistics",
    "bn1.running_var": "normalisation statistics",
    "bn1.num_batches_tracked": "not floating point: int64",
    "conv2.bias": "bias",
    "fc.weight": "readout layer",
    "fc.bias": "bias",
}


def _expected_values(net: torch.nn.Module) -> np.ndarray:
    sd = net.state_dict()
    return np.concatenate([sd[k].double().numpy().ravel() for k in EXPECTED_USED])


# ---------------------------------------------------------------------------------------------
# Tables
# ---------------------------------------------------------------------------------------------


def test_csv_single_numeric_column_is_taken_automatically(tmp_path):
    values = _values()
    path = tmp_path / "w.csv"
    pd.DataFrame({"synapse_id": [f"s{i}" for i in range(50)], "volume": values}).to_csv(
        path, index=False
    )
    ws = load_weights(path)
    assert isinstance(ws, WeightSet)
    assert ws.format == "csv" and ws.names == ("volume",)
    np.testing.assert_array_equal(ws.values, values)
    assert ws.values.dtype == np.float64 and len(ws) == 50


def test_csv_column_selects_among_several(tmp_path):
    a, b = _values(seed=1), _values(seed=2)
    path = tmp_path / "t.csv"
    pd.DataFrame({"a": a, "b": b}).to_csv(path, index=False)
    np.testing.assert_array_equal(load_weights(path, column="b").values, b)
    with pytest.raises(DataFileError, match=r"several numeric columns.*--column"):
        load_weights(path)


def test_csv_missing_column_lists_the_available_ones(tmp_path):
    path = tmp_path / "t.csv"
    pd.DataFrame({"a": _values(), "b": _values()}).to_csv(path, index=False)
    with pytest.raises(DataFileError, match=r"no column 'c'; available columns: a, b") as info:
        load_weights(path, column="c")
    assert str(path) in str(info.value)


def test_csv_of_bare_numbers_keeps_the_first_row(tmp_path):
    values = _values(10)
    path = tmp_path / "bare.csv"
    path.write_text("\n".join(repr(float(v)) for v in values) + "\n")
    np.testing.assert_array_equal(load_weights(path).values, values)


def test_tsv(tmp_path):
    values = _values()
    path = tmp_path / "w.tsv"
    pd.DataFrame({"w": values, "x": values * 2}).to_csv(path, sep="\t", index=False)
    ws = load_weights(path, column="x")
    assert ws.format == "tsv"
    np.testing.assert_allclose(ws.values, values * 2)


def test_parquet(tmp_path):
    values = _values()
    path = tmp_path / "w.parquet"
    pd.DataFrame({"label": ["x"] * 50, "spine_vol_um3": values}).to_parquet(path)
    ws = load_weights(path)
    assert ws.format == "parquet" and ws.names == ("spine_vol_um3",)
    np.testing.assert_array_equal(ws.values, values)


def test_non_numeric_column_is_an_error(tmp_path):
    path = tmp_path / "t.csv"
    pd.DataFrame({"w": ["0.1", "0.2", "abc"]}).to_csv(path, index=False)
    with pytest.raises(DataFileError, match=r"not numeric.*'abc'"):
        load_weights(path)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_and_inf_are_errors(tmp_path, bad):
    values = _values()
    values[7] = bad
    values[20] = bad  # the message names the first one
    path = tmp_path / "w.npy"
    np.save(path, values)
    with pytest.raises(DataFileError, match=r"w.npy: array has .*(NaN|infinite).*position 7"):
        load_weights(path)


def test_empty_csv_is_an_error(tmp_path):
    path = tmp_path / "empty.csv"
    path.write_text("")
    with pytest.raises(DataFileError, match="empty"):
        load_weights(path)


# ---------------------------------------------------------------------------------------------
# Arrays
# ---------------------------------------------------------------------------------------------


def test_npy_is_flattened(tmp_path):
    values = _values(60).reshape(6, 10)
    path = tmp_path / "w.npy"
    np.save(path, values.astype(np.float32))
    ws = load_weights(path)
    assert ws.segments[0].shape == (6, 10)
    np.testing.assert_allclose(ws.values, values.ravel(), rtol=1e-6)


def test_npy_with_python_objects_is_refused(tmp_path):
    path = tmp_path / "obj.npy"
    np.save(path, np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    with pytest.raises(DataFileError, match="Python objects"):
        load_weights(path)


def test_npz_keys_and_globs(tmp_path):
    rng = np.random.default_rng(0)
    arrays = {"hidden": rng.normal(size=(8, 5)), "other": rng.normal(size=(3, 3))}
    path = tmp_path / "w.npz"
    np.savez(path, **arrays)
    # Two matrices: the last one counts as the readout and is skipped by default.
    ws = load_weights(path)
    assert ws.names == ("hidden",)
    assert [(s.name, s.reason) for s in ws.skipped] == [("other", "readout layer")]
    np.testing.assert_array_equal(
        load_weights(path, column="other").values, arrays["other"].ravel()
    )
    assert load_weights(path, layer="oth*", include_default_skips=True).names == ("other",)
    with pytest.raises(DataFileError, match="no array named 'nope'; available: hidden, other"):
        load_weights(path, column="nope")


def test_npz_single_array(tmp_path):
    values = _values()
    path = tmp_path / "one.npz"
    np.savez(path, values)
    ws = load_weights(path)
    assert ws.names == ("arr_0",)
    np.testing.assert_array_equal(ws.values, values)


# ---------------------------------------------------------------------------------------------
# State dicts and safetensors
# ---------------------------------------------------------------------------------------------


def _check_default_skips(ws: WeightSet, net: torch.nn.Module) -> None:
    assert ws.names == EXPECTED_USED
    assert {s.name: s.reason for s in ws.skipped} == EXPECTED_SKIPPED
    np.testing.assert_allclose(ws.values, _expected_values(net))


def test_torch_state_dict_default_skips(tmp_path):
    net = _net()
    path = tmp_path / "model.pt"
    torch.save(net.state_dict(), path)
    ws = load_weights(path)
    assert ws.format == "torch"
    _check_default_skips(ws, net)


@pytest.mark.parametrize("key", ["state_dict", "model", "model_state_dict"])
def test_torch_checkpoint_wrappers_are_unwrapped(tmp_path, key):
    net = _net()
    path = tmp_path / "ckpt.pth"
    torch.save({key: net.state_dict(), "epoch": 3, "optimizer": {"lr": torch.tensor(0.1)}}, path)
    _check_default_skips(load_weights(path), net)


def test_safetensors_default_skips(tmp_path):
    from safetensors.torch import save_file

    net = _net()
    path = tmp_path / "model.safetensors"
    save_file(dict(net.state_dict()), str(path))
    ws = load_weights(path)
    assert ws.format == "safetensors"
    # safetensors stores tensors sorted by name; the readout is found by its name (fc).
    assert set(ws.names) == set(EXPECTED_USED)
    assert {s.name: s.reason for s in ws.skipped} == EXPECTED_SKIPPED


def test_layer_and_exclude_globs(tmp_path):
    net = _net()
    path = tmp_path / "model.bin"
    torch.save(net.state_dict(), path)
    assert load_weights(path, layer="conv1.*").names == ("conv1.weight",)
    assert load_weights(path, exclude=["conv1.*"]).names == ("conv2.weight",)
    # An exact name is an explicit request and wins over the readout rule.
    assert load_weights(path, layer=["fc.weight"]).names == ("fc.weight",)
    assert "fc.weight" in load_weights(path, include_default_skips=True).names
    with pytest.raises(DataFileError, match="no tensor left"):
        load_weights(path, layer="nothing.*")


def test_linear_only_network_skips_the_last_matrix():
    shapes = {"0.weight": (4, 5), "0.bias": (4,), "2.weight": (2, 4), "2.bias": (2,)}
    used, skipped = select_tensors(shapes)
    assert used == ["0.weight"]
    assert {s.name: s.reason for s in skipped}["2.weight"] == "readout layer"


def test_layer_norm_and_transformer_style_names_are_skipped():
    shapes = {
        "blocks.0.ln_1.weight": (8,),
        "blocks.0.attn.c_attn.weight": (8, 24),
        "blocks.0.input_layernorm.weight": (8,),
        "blocks.0.mlp.fc_in.weight": (8, 32),
        "lm_head.weight": (100, 8),
    }
    used, skipped = select_tensors(shapes)
    assert used == ["blocks.0.attn.c_attn.weight", "blocks.0.mlp.fc_in.weight"]
    reasons = {s.name: s.reason for s in skipped}
    assert reasons["blocks.0.ln_1.weight"] == "normalisation parameter"
    assert reasons["blocks.0.input_layernorm.weight"] == "normalisation parameter"
    assert reasons["lm_head.weight"] == "readout layer"


def test_pickled_objects_are_refused_without_running_them(tmp_path):
    path = tmp_path / "evil.pt"
    marker = tmp_path / "ran"
    torch.save({"w": torch.ones(3), "cb": _Marker(str(marker))}, path)
    with pytest.raises(
        DataFileError, match=r"refused to load: it holds a Python object \(io.open\)"
    ):
        load_weights(path)
    assert not marker.exists()


class _Marker:
    """Writes a file when unpickled (it must never be)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


# ---------------------------------------------------------------------------------------------
# Files that cannot be read
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".pt", ".safetensors", ".npz", ".npy", ".parquet"])
def test_garbage_files_give_a_one_line_error(tmp_path, suffix):
    path = tmp_path / f"garbage{suffix}"
    path.write_bytes(b"\x00\x01 definitely not a weight file \xff" * 3)
    with pytest.raises(DataFileError) as info:
        load_weights(path)
    message = str(info.value)
    assert str(path) in message and "\n" not in message


def test_unknown_suffix_lists_the_known_ones(tmp_path):
    path = tmp_path / "w.xlsx"
    path.write_text("x")
    with pytest.raises(DataFileError, match=r"unknown file type '.xlsx'.*\.csv"):
        load_weights(path)
    assert ".safetensors" in SUFFIXES


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file"):
        load_weights(tmp_path / "absent.csv")


# ---------------------------------------------------------------------------------------------
# Pairs
# ---------------------------------------------------------------------------------------------


def test_pair_of_state_dicts(tmp_path):
    net = _net()
    torch.save(net.state_dict(), tmp_path / "a.pt")
    with torch.no_grad():
        net.conv1.weight.mul_(1.1)
    torch.save(net.state_dict(), tmp_path / "b.pt")
    pair = load_pair(tmp_path / "a.pt", tmp_path / "b.pt")
    assert isinstance(pair, WeightPair)
    assert pair.n_synapses == pair.before.n_synapses == pair.after.n_synapses
    np.testing.assert_allclose(pair.after.values, _expected_values(net))
    d = pair.to_dict()
    assert d["before"]["used"][0]["name"] == "conv1.weight"


def test_pair_length_mismatch(tmp_path):
    np.save(tmp_path / "a.npy", _values(50))
    np.save(tmp_path / "b.npy", _values(49))
    with pytest.raises(InputError, match=r"has 50 weights but AFTER .* has 49"):
        load_pair(tmp_path / "a.npy", tmp_path / "b.npy")


def test_pair_with_different_tensors(tmp_path):
    torch.save({"a.weight": torch.ones(3, 3), "b.weight": torch.ones(2, 3)}, tmp_path / "x.pt")
    torch.save({"a.weight": torch.ones(3, 3), "c.weight": torch.ones(2, 3)}, tmp_path / "y.pt")
    with pytest.raises(InputError, match=r"only in BEFORE: b\.weight; only in AFTER: c\.weight"):
        load_pair(tmp_path / "x.pt", tmp_path / "y.pt", include_default_skips=True)


def test_pair_with_different_shapes(tmp_path):
    torch.save({"a.weight": torch.ones(3, 4)}, tmp_path / "x.pt")
    torch.save({"a.weight": torch.ones(4, 3)}, tmp_path / "y.pt")
    with pytest.raises(InputError, match=r"shape \[3, 4\] in BEFORE .* \[4, 3\] in AFTER"):
        load_pair(tmp_path / "x.pt", tmp_path / "y.pt")


def test_pair_from_one_table_with_two_columns(tmp_path):
    a, b = _values(seed=1), _values(seed=2)
    path = tmp_path / "table.csv"
    pd.DataFrame({"day0": a, "day7": b}).to_csv(path, index=False)
    pair = load_pair(path, path, column="day0", after_column="day7")
    np.testing.assert_array_equal(pair.before.values, a)
    np.testing.assert_array_equal(pair.after.values, b)


def test_values_are_read_only(tmp_path):
    np.save(tmp_path / "a.npy", _values())
    ws = load_weights(tmp_path / "a.npy")
    with pytest.raises(ValueError):
        ws.values[0] = 1.0


def test_csv_with_a_written_row_index(tmp_path):
    values = _values()
    path = tmp_path / "indexed.csv"
    pd.DataFrame({"w": values}).to_csv(path)  # index=True adds an "Unnamed: 0" column
    np.testing.assert_array_equal(load_weights(path).values, values)


# ---------------------------------------------------------------------------------------------
# Error classes: a file that cannot be read is a DataFileError; options that do not apply, or two
# readable files that disagree, are InputErrors (every one is a ValueError)
# ---------------------------------------------------------------------------------------------


def test_options_that_do_not_apply_are_input_errors(tmp_path):
    path = tmp_path / "t.csv"
    pd.DataFrame({"w": _values()}).to_csv(path, index=False)
    with pytest.raises(InputError, match="--layer/--exclude select named tensors") as info:
        load_weights(path, layer="conv*")
    assert not isinstance(info.value, DataFileError)
    np.save(tmp_path / "a.npy", _values())
    with pytest.raises(InputError, match="holds one array") as info:
        load_weights(tmp_path / "a.npy", column="w")
    assert not isinstance(info.value, DataFileError)
    torch.save({"a.weight": torch.ones(3, 3)}, tmp_path / "x.pt")
    with pytest.raises(InputTypeError, match="layer patterns must be strings"):
        load_weights(tmp_path / "x.pt", layer=[3])


def test_a_folder_is_a_data_file_error(tmp_path):
    folder = tmp_path / "weights.npy"
    folder.mkdir()
    with pytest.raises(DataFileError, match="is a folder"):
        load_weights(folder)


def test_pair_mismatch_is_an_input_error_not_a_file_error(tmp_path):
    np.save(tmp_path / "a.npy", _values(50))
    np.save(tmp_path / "b.npy", _values(49))
    with pytest.raises(InputError) as info:
        load_pair(tmp_path / "a.npy", tmp_path / "b.npy")
    assert not isinstance(info.value, DataFileError) and isinstance(info.value, ValueError)


def test_flat_checkpoint_leaves_the_optimizer_state_out(tmp_path):
    """A checkpoint without a container key: model tensors at the top level next to the
    optimizer's state (momentum buffers are tensors too, and must not be read as weights)."""
    weight = torch.arange(12, dtype=torch.float64).reshape(3, 4)
    checkpoint = {
        "layer.weight": weight,
        "optimizer": {"state": {0: {"momentum_buffer": torch.ones(3, 4)}}, "param_groups": []},
        "lr_scheduler": {"last_epoch": 3, "base_lrs": torch.tensor([0.1])},
    }
    torch.save(checkpoint, tmp_path / "flat.pt")
    ws = load_weights(tmp_path / "flat.pt")
    assert ws.names == ("layer.weight",)
    np.testing.assert_array_equal(ws.values, weight.numpy().ravel())


@pytest.mark.parametrize("fmt", ["pt", "safetensors"])
def test_float64_tensors_are_read_without_rounding(tmp_path, fmt):
    """float64 weights keep every bit (a float32 round trip would change ~all of them)."""
    values = torch.from_numpy(_values(60, seed=3).reshape(6, 10))
    assert not torch.equal(values, values.float().double())
    path = tmp_path / f"w.{fmt}"
    if fmt == "pt":
        torch.save({"w.weight": values}, path)
    else:
        from safetensors.torch import save_file

        save_file({"w.weight": values}, str(path))
    np.testing.assert_array_equal(load_weights(path).values, values.numpy().ravel())


def test_readout_is_the_last_weight_matrix_not_a_trailing_vector(tmp_path):
    """Without a readout-like name, the last *matrix* is the readout; a trailing 1-D parameter
    (a learned temperature, say) is not."""
    shapes = {"conv.weight": (4, 3, 3, 3), "proj.weight": (10, 4), "logit_scale": (1,)}
    used, skipped = select_tensors(shapes)
    assert used == ["conv.weight", "logit_scale"]
    assert [(t.name, t.reason) for t in skipped] == [("proj.weight", "readout layer")]


# --------------------------------------------------------------------------------------------
# synapse tables: ids, invalid rows, joins
# --------------------------------------------------------------------------------------------
def _synapse_tables(tmp_path, n=40, seed=0):
    """BEFORE in id order, AFTER shuffled, with 3 ids missing and 2 extra: a join by id must
    pair each synapse with itself (after = 2 x before, so any misalignment shows)."""
    from syngeo.data.weights import read_synapse_table  # noqa: F401  (imported for the API)

    g = np.random.default_rng(seed)
    ids = np.arange(100, 100 + n)
    before = np.exp(g.normal(-3, 0.5, n))
    b = pd.DataFrame({"syn": ids, "vol": before, "pre": g.integers(0, 5, n)})
    perm = g.permutation(n)[3:]
    a = pd.DataFrame({"syn": ids[perm], "vol": 2 * before[perm]})
    a = pd.concat([a, pd.DataFrame({"syn": [7, 8], "vol": [0.1, 0.2]})], ignore_index=True)
    pb, pa = tmp_path / "b.csv", tmp_path / "a.csv"
    b.to_csv(pb, index=False)
    a.to_csv(pa, index=False)
    return pb, pa, b, a


def test_join_by_id_pairs_each_synapse_with_itself_and_reports_unmatched(tmp_path):
    pb, pa, _, _ = _synapse_tables(tmp_path)
    pair = load_pair(pb, pa, column="vol", id_column="syn", positive=True)
    np.testing.assert_allclose(pair.after.values, 2 * pair.before.values, rtol=1e-12)
    m = pair.matching
    assert (m["n_matched"], m["n_only_before"], m["n_only_after"]) == (37, 3, 2)
    assert sorted(m["only_after"]) == ["7", "8"]
    assert pair.to_dict()["matching"]["n_only_before"] == 3


def test_row_order_pairing_without_ids_is_refused_after_dropping(tmp_path):
    pb, _, b, _ = _synapse_tables(tmp_path)
    b.loc[4, "vol"] = np.nan
    b.to_csv(pb, index=False)
    with pytest.raises(InputError, match="--id-column"):
        load_pair(pb, pb, column="vol", drop_invalid=True)


@pytest.mark.parametrize(
    ("edit", "pattern"),
    [
        (lambda f: f.assign(vol=f["vol"].where(f.index % 10 != 3)), "4 of 40 rows have no value"),
        (
            lambda f: f.assign(vol=f["vol"].where(f.index % 20 != 5, 0.0)),
            "2 of 40 rows have a zero",
        ),
        (lambda f: f.assign(vol=-f["vol"]), "40 of 40 rows have a zero or negative"),
        (lambda f: f.assign(syn=f["syn"].where(f.index != 9, 100)), "1 synapse ids occur more"),
        (lambda f: f.assign(syn=f["syn"].where(f.index != 9)), "1 rows have no synapse id"),
        (lambda f: f.drop(columns="vol"), "no column 'vol'"),
        (lambda f: f.assign(vol=f["vol"].where(f.index != 0, np.inf)), "1 infinite"),
    ],
)
def test_synapse_table_errors_name_the_count(tmp_path, edit, pattern):
    from syngeo.data.weights import read_synapse_table

    pb, _, b, _ = _synapse_tables(tmp_path)
    edit(b).to_csv(pb, index=False)
    with pytest.raises(DataFileError, match=pattern):
        read_synapse_table(pb, column="vol", id_column="syn")


def test_drop_invalid_drops_and_counts(tmp_path):
    from syngeo.data.weights import read_synapse_table

    pb, _, b, _ = _synapse_tables(tmp_path)
    b.loc[[1, 2], "vol"] = np.nan
    b.loc[[5], "vol"] = -0.1
    b.loc[[6], "vol"] = 0.0
    b.to_csv(pb, index=False)
    t = read_synapse_table(pb, column="vol", id_column="syn", drop_invalid=True)
    assert t.dropped == {"missing": 2, "non_positive": 2}
    assert t.values.size == 36 and 101 not in set(t.ids) and 105 not in set(t.ids)
    assert (t.values > 0).all() and len(t.frame) == 36
    # without positive=True, signed values are kept (only the missing ones dropped)
    t = read_synapse_table(pb, column="vol", positive=False, drop_invalid=True)
    assert t.values.size == 38 and t.dropped == {"missing": 2, "non_positive": 0}


def test_too_few_synapses_after_dropping(tmp_path):
    from syngeo.data.weights import read_synapse_table

    pb, _, b, _ = _synapse_tables(tmp_path)
    b.loc[5:, "vol"] = np.nan
    b.to_csv(pb, index=False)
    with pytest.raises(InputError, match="only 5 synapses"):
        read_synapse_table(pb, column="vol", drop_invalid=True, min_synapses=20)


def test_join_drops_invalid_rows_in_either_table(tmp_path):
    pb, pa, _, a = _synapse_tables(tmp_path)
    a.loc[0, "vol"] = np.nan  # one matched synapse loses its AFTER value
    a.to_csv(pa, index=False)
    pair = load_pair(pb, pa, column="vol", id_column="syn", positive=True, drop_invalid=True)
    assert pair.n_synapses == 36 and pair.matching["n_only_before"] == 4
    assert pair.matching["dropped_after"] == {"missing": 1, "non_positive": 0}
    np.testing.assert_allclose(pair.after.values, 2 * pair.before.values, rtol=1e-12)


def test_no_common_ids_is_an_error(tmp_path):
    pb, pa, _, a = _synapse_tables(tmp_path)
    a["syn"] = a["syn"] + 10_000
    a.to_csv(pa, index=False)
    with pytest.raises(InputError, match="no synapse id of BEFORE"):
        load_pair(pb, pa, column="vol", id_column="syn")
