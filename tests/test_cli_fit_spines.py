"""``syngeo fit-spines`` end to end: a run on a small table, and every bad input in one line."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest

from clirun import assert_bad_input, run_cli
from syngeo.snapshot import InitialMixture, SnapshotModel


def _table(n=600, seed=0):
    model = SnapshotModel("ne", InitialMixture.two_point(0.04, 0.17, 0.77), 0.5)
    w = model.sample(n, rng=seed).weights
    g = np.random.default_rng(seed)
    return pd.DataFrame({"syn": np.arange(n), "vol": w, "pre": g.integers(0, 250, n), "post": 1})


FAST = [
    "--potentials",
    "ne,2-norm",
    "--families",
    "two-point",
    "--folds",
    "0",
    "--bootstrap",
    "0",
    "--workers",
    "1",
]


def test_fit_spines_on_a_table_writes_outputs(tmp_path, capsys):
    path = tmp_path / "spines.csv"
    _table().to_csv(path, index=False)
    out = tmp_path / "run"
    args = [
        "fit-spines",
        path,
        "--column",
        "vol",
        "--id-column",
        "syn",
        "--connection-columns",
        "pre,post",
        *FAST,
        "--out",
        out,
    ]
    code, stdout, err = run_cli(args, capsys)
    assert code == 0, err
    assert "best model NE / two-point" in " ".join(stdout.split())
    assert re.search(r"geometry\s+initial family\s+log L\s+ΔAIC", stdout), stdout  # a table
    assert "600 synapses" in stdout and "wrote 12 files" in stdout
    for name in (
        "report.md",
        "summary.json",
        "results.parquet",
        "fig5_histogram.png",
        "fig5_qq.png",
        "fig5_profile.png",
        "fig5_connections.png",
    ):
        assert (out / name).exists(), name
    summary = json.loads((out / "summary.json").read_text())
    assert summary["command"] == "fit-spines"
    assert summary["results"]["n_synapses"] == 600
    # an existing --out needs --force ... unless it is this very run (resumed)
    code, stdout, err = run_cli([*args, "--json"], capsys)
    assert code == 0 and json.loads(stdout)["results"]["best_model"] == "NE / two-point"
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "report.md").write_text("# results of another command")
    code, stdout, err = run_cli([*args[:-1], tmp_path / "other"], capsys)
    assert_bad_input(code, stdout, err, "--force")


@pytest.mark.parametrize(
    ("edit", "extra", "pattern"),
    [
        (lambda f: f, ["--column", "volume"], "no column 'volume'"),
        (
            lambda f: f.assign(vol=f["vol"].where(f.index % 50 != 1)),
            [],
            "12 of 600 rows have no value",
        ),
        (
            lambda f: f.assign(vol=f["vol"].where(f.index % 100 != 2, -1.0)),
            [],
            "6 of 600 rows have a zero or negative",
        ),
        (
            lambda f: f.assign(syn=f["syn"].where(f.index != 3, 4)),
            [],
            "1 synapse ids occur more than once",
        ),
        (lambda f: f.iloc[:15], [], "only 15 synapses"),
        (
            lambda f: f.assign(vol=f["vol"].where(f.index < 10)),
            ["--drop-invalid"],
            "only 10 synapses",
        ),
        (lambda f: f, ["--connection-columns", "pre,cell"], "no connection column(s) cell"),
        (lambda f: f, ["--families", "three-point"], "unknown families"),
        (lambda f: f, ["--potentials", "q-norm"], "q-norm"),
        (lambda f: f, ["--bootstrap", "-1"], "n_bootstrap"),
    ],
)
def test_bad_input_is_one_line(tmp_path, capsys, edit, extra, pattern):
    path = tmp_path / "spines.csv"
    edit(_table()).to_csv(path, index=False)
    base = [
        "fit-spines",
        path,
        "--column",
        "vol",
        "--id-column",
        "syn",
        "--connection-columns",
        "pre,post",
    ]
    code, out, err = run_cli([*base, *extra], capsys)
    assert_bad_input(code, out, err, pattern)


def test_missing_table_file(tmp_path, capsys):
    code, out, err = run_cli(["fit-spines", tmp_path / "nope.csv"], capsys)
    assert_bad_input(code, out, err, "no such file")


def test_a_folder_given_as_the_table_says_it_is_a_folder(tmp_path, capsys):
    code, out, err = run_cli(["fit-spines", tmp_path], capsys)
    assert_bad_input(code, out, err, f"{tmp_path} is a folder, not a synapse table")


def test_unrelated_files_in_out_are_not_results_but_earlier_results_are(tmp_path, capsys):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    (out_dir / "summary.json").write_text("{}")
    code, out, err = run_cli(["fit-spines", "--out", out_dir, "--bootstrap", "0"], capsys)
    assert_bad_input(code, out, err, "holds results of another command (summary.json)")
    assert [p.name for p in out_dir.iterdir()] == ["summary.json"]


def test_help_has_examples(capsys):
    code, out, _ = run_cli(["fit-spines", "--help"], capsys)
    assert code == 0 and "syngeo fit-spines" in out and "--bootstrap" in out


def test_table_with_several_numeric_columns_needs_column(tmp_path, capsys):
    path = tmp_path / "spines.csv"
    _table().to_csv(path, index=False)
    code, out, err = run_cli(["fit-spines", path, "--connection-columns", ""], capsys)
    assert_bad_input(code, out, err, "several numeric columns")
