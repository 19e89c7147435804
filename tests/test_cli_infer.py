"""``syngeo infer`` end to end: every input format, the outputs, and every kind of bad input."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from clirun import assert_bad_input, run_cli
from syngeo.app.cli.infer import parse_candidates
from syngeo.errors import InputError

N = 3000


def three_norm_pair(n: int = N, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Weights whose change is Gaussian in the dual space of the 3-norm (the truth is p = 3)."""
    g = np.random.default_rng(seed)
    w0 = g.normal(0, 0.1, n)
    u = np.sign(w0) * w0**2 + 1e-3 * g.normal(size=n)
    return w0, np.sign(u) * np.abs(u) ** 0.5


def _state_dict(values: np.ndarray) -> dict[str, torch.Tensor]:
    """The analysed layer plus tensors the default rules must skip."""
    return {
        "features.conv.weight": torch.from_numpy(values.reshape(30, 10, 10).copy()),
        "features.conv.bias": torch.zeros(30, dtype=torch.float64),
        "features.bn.weight": torch.ones(30, dtype=torch.float64),
        "features.bn.bias": torch.zeros(30, dtype=torch.float64),
        "features.bn.running_mean": torch.zeros(30, dtype=torch.float64),
        "features.bn.running_var": torch.ones(30, dtype=torch.float64),
        "features.bn.num_batches_tracked": torch.tensor(7),
        "fc.weight": torch.ones(10, 30, dtype=torch.float64),
        "fc.bias": torch.zeros(10, dtype=torch.float64),
    }


def write_pair(fmt: str, folder: Path, before: np.ndarray, after: np.ndarray) -> tuple[Path, Path]:
    paths = []
    for stem, values in (("before", before), ("after", after)):
        if fmt in ("csv", "tsv"):
            path = folder / f"{stem}.{fmt}"
            frame = pd.DataFrame({"synapse": np.arange(values.size), "weight": values})
            frame["synapse"] = "s" + frame["synapse"].astype(str)
            frame.to_csv(path, sep="\t" if fmt == "tsv" else ",", index=False)
        elif fmt == "parquet":
            path = folder / f"{stem}.parquet"
            pd.DataFrame({"weight": values}).to_parquet(path)
        elif fmt == "npy":
            path = folder / f"{stem}.npy"
            np.save(path, values)
        elif fmt == "npz":
            path = folder / f"{stem}.npz"
            np.savez(path, layer1=values.reshape(60, 50))
        elif fmt == "safetensors":
            from safetensors.torch import save_file

            path = folder / f"{stem}.safetensors"
            save_file(_state_dict(values), str(path))
        elif fmt == "pt":
            path = folder / f"{stem}.pt"
            torch.save({"state_dict": _state_dict(values), "epoch": 1}, path)
        else:  # pragma: no cover
            raise AssertionError(fmt)
        paths.append(path)
    return paths[0], paths[1]


FORMATS = ["csv", "tsv", "parquet", "npy", "npz", "safetensors", "pt"]


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_format_finds_the_3_norm(tmp_path, capsys, fmt):
    before, after = three_norm_pair()
    b, a = write_pair(fmt, tmp_path, before, after)
    code, out, err = run_cli(["infer", b, a, "--bootstrap", "0", "--json"], capsys)
    assert code == 0, err
    summary = json.loads(out)  # stdout holds the JSON and nothing else
    assert summary["n_synapses"] == N
    assert summary["best_p"] is not None and abs(summary["best_p"] - 3) < 0.2
    assert summary["command"] == "infer"
    if fmt in ("safetensors", "pt"):
        used = [t["name"] for t in summary["inputs"]["before"]["used"]]
        skipped = {t["name"]: t["reason"] for t in summary["inputs"]["before"]["skipped"]}
        assert used == ["features.conv.weight"]
        assert skipped["fc.weight"] == "readout layer"
        assert skipped["features.bn.weight"] == "normalisation parameter"
        assert skipped["features.conv.bias"] == "bias"
        assert skipped["features.bn.running_mean"] == "normalisation statistics"
    # Nothing was written: no --out.
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([b.name, a.name])


def test_outputs_report_and_no_overwrite_without_force(tmp_path, capsys):
    before, after = three_norm_pair()
    b, a = write_pair("npy", tmp_path, before, after)
    out_dir = tmp_path / "results"
    code, out, err = run_cli(["infer", b, a, "--bootstrap", "10", "--out", out_dir], capsys)
    assert code == 0, err
    assert "geometry" in out and "goodness of fit" in out and "candidate" in out
    expected = {
        "results.parquet",
        "results.csv",
        "summary.json",
        "report.md",
        *(
            f"{s}.{e}"
            for s in ("dual_change_histograms", "qq_plots", "score_vs_p")
            for e in ("png", "pdf")
        ),
    }
    assert {p.name for p in out_dir.iterdir()} == expected
    table = pd.read_parquet(out_dir / "results.parquet")
    assert table["is_best"].sum() == 1
    assert {"candidate", "p", "delta_aic", "cdf_distance", "bootstrap_win_fraction"} <= set(table)
    report = (out_dir / "report.md").read_text()
    assert "## Verdict" in report and "![" in report and "qq_plots.png" in report
    summary = json.loads((out_dir / "summary.json").read_text())
    assert summary["n_bootstrap"] == 10

    # A second run into the same folder without --force is refused and changes nothing.
    snapshot = {p.name: p.read_bytes() for p in out_dir.iterdir()}
    code, out, err = run_cli(["infer", b, a, "--bootstrap", "0", "--out", out_dir], capsys)
    assert_bad_input(code, out, err, "--force")
    assert {p.name: p.read_bytes() for p in out_dir.iterdir()} == snapshot

    code, out, err = run_cli(
        ["infer", b, a, "--bootstrap", "0", "--out", out_dir, "--force", "--quiet"], capsys
    )
    assert code == 0, err
    assert out == ""
    assert json.loads((out_dir / "summary.json").read_text())["n_bootstrap"] == 0


def test_candidates_and_cdf_estimator(tmp_path, capsys):
    before, after = three_norm_pair()
    b, a = write_pair("npy", tmp_path, before, after)
    code, out, err = run_cli(
        [
            "infer", b, a, "--candidates", "ne,2-norm,3-norm", "--no-refine",
            "--estimator", "cdf", "--bootstrap", "0", "--json",
        ],
        capsys,
    )  # fmt: skip
    assert code == 0, err
    summary = json.loads(out)
    assert summary["best"] == "3-norm" and summary["estimator"] == "cdf"
    assert {r["candidate"] for r in summary["ranking"]} == {"NE", "2-norm", "3-norm"}


def test_table_with_two_columns_and_after_column(tmp_path, capsys):
    before, after = three_norm_pair()
    path = tmp_path / "table.csv"
    pd.DataFrame({"day0": before, "day7": after}).to_csv(path, index=False)
    code, out, err = run_cli(
        ["infer", path, path, "--column", "day0", "--after-column", "day7", "-b", "0", "--json"],
        capsys,
    )
    assert code == 0, err
    assert abs(json.loads(out)["best_p"] - 3) < 0.2


def test_parse_candidates():
    assert parse_candidates("ne, 2-norm,3-norm") == ["ne", "2-norm", "3-norm"]
    got = parse_candidates("ne,p=1.1:1.5:0.1")
    assert got == ["ne", "p=1.1", "p=1.2", "p=1.3", "p=1.4", "p=1.5"]
    assert parse_candidates(None) is None
    for empty in ("", " ", " , ", []):
        with pytest.raises(InputError, match="--candidates is empty"):
            parse_candidates(empty)
    with pytest.raises(InputError, match="--potentials is empty"):
        parse_candidates("", option="--potentials")
    with pytest.raises(InputError, match="unknown potential"):
        parse_candidates("ne,banana")
    with pytest.raises(InputError, match="START <= STOP"):
        parse_candidates("p=3:1:0.1")
    with pytest.raises(InputError, match="p=START:STOP:STEP"):
        parse_candidates("p=1.1:3")
    with pytest.raises(InputError, match="at most 1000"):
        parse_candidates("p=1.001:3:0.001")


# ---------------------------------------------------------------------------------------------
# Bad input: one line, exit code 2, no traceback
# ---------------------------------------------------------------------------------------------


def _npy_pair(tmp_path: Path, before: np.ndarray, after: np.ndarray) -> tuple[Path, Path]:
    np.save(tmp_path / "b.npy", before)
    np.save(tmp_path / "a.npy", after)
    return tmp_path / "b.npy", tmp_path / "a.npy"


def test_length_mismatch(tmp_path, capsys):
    before, after = three_norm_pair()
    b, a = _npy_pair(tmp_path, before, after[:-1])
    assert_bad_input(*run_cli(["infer", b, a], capsys), "3000 weights but AFTER")


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_or_inf(tmp_path, capsys, bad):
    before, after = three_norm_pair()
    after[10] = bad
    b, a = _npy_pair(tmp_path, before, after)
    assert_bad_input(*run_cli(["infer", b, a], capsys), "NaN" if np.isnan(bad) else "infinite")


def test_sign_flips_under_ne_only(tmp_path, capsys):
    before, after = three_norm_pair()
    after[:5] = -before[:5]
    b, a = _npy_pair(tmp_path, before, after)
    code, out, err = run_cli(["infer", b, a, "--candidates", "ne", "-b", "0"], capsys)
    assert_bad_input(code, out, err, "change sign")


def test_zero_weights_under_ne_only(tmp_path, capsys):
    g = np.random.default_rng(0)
    before = np.abs(g.normal(0, 0.1, N)) + 0.01
    after = before * np.exp(0.01 * g.normal(size=N))
    before[:3] = 0.0
    after[:3] = 0.0
    b, a = _npy_pair(tmp_path, before, after)
    code, out, err = run_cli(["infer", b, a, "--candidates", "NE", "-b", "0"], capsys)
    assert_bad_input(code, out, err, "non-zero")


def test_sign_flips_with_other_candidates_rule_ne_out(tmp_path, capsys):
    before, after = three_norm_pair()
    after[:5] = -before[:5]
    b, a = _npy_pair(tmp_path, before, after)
    code, out, err = run_cli(["infer", b, a, "-b", "0", "--json"], capsys)
    assert code == 0, err
    summary = json.loads(out)
    assert summary["ne_ruled_out"] is True and summary["n_sign_flips"] >= 5


def test_unreadable_file(tmp_path, capsys):
    bad = tmp_path / "broken.pt"
    bad.write_bytes(b"not a torch file at all")
    good = tmp_path / "good.npy"
    np.save(good, three_norm_pair()[0])
    assert_bad_input(*run_cli(["infer", bad, good], capsys), "cannot read it")


def test_missing_file(tmp_path, capsys):
    good = tmp_path / "good.npy"
    np.save(good, three_norm_pair()[0])
    assert_bad_input(*run_cli(["infer", tmp_path / "nope.csv", good], capsys), "no such file")


def test_unknown_suffix(tmp_path, capsys):
    (tmp_path / "w.h5").write_bytes(b"x")
    assert_bad_input(*run_cli(["infer", tmp_path / "w.h5", tmp_path / "w.h5"], capsys), ".h5")


def test_missing_column(tmp_path, capsys):
    before, after = three_norm_pair()
    b, a = write_pair("csv", tmp_path, before, after)
    code, out, err = run_cli(["infer", b, a, "--column", "volume"], capsys)
    assert_bad_input(code, out, err, "available columns: synapse, weight")


def test_unknown_potential(tmp_path, capsys):
    b, a = _npy_pair(tmp_path, *three_norm_pair())
    code, out, err = run_cli(["infer", b, a, "--candidates", "ne,hyperbolic"], capsys)
    assert_bad_input(code, out, err, "unknown potential 'hyperbolic'")


def test_unknown_estimator(tmp_path, capsys):
    b, a = _npy_pair(tmp_path, *three_norm_pair())
    code, out, err = run_cli(["infer", b, a, "--estimator", "vibes"], capsys)
    assert_bad_input(code, out, err, "--estimator must be one of")


@pytest.mark.parametrize(
    ("args", "pattern"),
    [
        (["--seed", "-1"], "--seed must be an integer >= 0"),
        (["--bootstrap", "-5"], "--bootstrap must be an integer >= 0"),
        (["--candidates", "p=3:1:0.1"], "START <= STOP"),
        (["--candidates", "p=1.1:3"], "p=START:STOP:STEP"),
    ],
)
def test_bad_options(tmp_path, capsys, args, pattern):
    b, a = _npy_pair(tmp_path, *three_norm_pair())
    assert_bad_input(*run_cli(["infer", b, a, *args], capsys), pattern)


def test_too_few_synapses(tmp_path, capsys):
    before, after = three_norm_pair(n=20)
    b, a = _npy_pair(tmp_path, before, after)
    assert_bad_input(*run_cli(["infer", b, a], capsys), "too few synapses")


def test_no_change(tmp_path, capsys):
    before, _ = three_norm_pair()
    b, a = _npy_pair(tmp_path, before, before.copy())
    assert_bad_input(*run_cli(["infer", b, a], capsys), "no learning signal")


def test_existing_out_is_checked_before_any_work(tmp_path, capsys):
    b, a = _npy_pair(tmp_path, *three_norm_pair())
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    (out_dir / "report.md").write_text("mine")
    # BEFORE is broken too: the --out error comes first, so no work was attempted.
    (tmp_path / "b.npy").write_bytes(b"broken")
    code, out, err = run_cli(["infer", b, a, "--out", out_dir], capsys)
    assert_bad_input(code, out, err, "already holds results")
    assert [p.name for p in out_dir.iterdir()] == ["report.md"]
    assert (out_dir / "report.md").read_text() == "mine"


def test_a_folder_given_as_a_weight_file_says_it_is_a_folder(tmp_path, capsys):
    folder = tmp_path / "weights.npy"
    folder.mkdir()
    assert_bad_input(*run_cli(["infer", folder, folder], capsys), "is a folder, not a weight file")


def test_empty_potentials_of_fit_spines_name_their_own_flag(capsys):
    code, out, err = run_cli(["fit-spines", "--potentials", ""], capsys)
    assert_bad_input(code, out, err, "--potentials is empty")


def test_empty_candidates_of_power_are_an_error(capsys):
    assert_bad_input(*run_cli(["power", "--candidates", ""], capsys), "--candidates is empty")


def test_help_has_an_example(capsys):
    code, out, _ = run_cli(["infer", "--help"], capsys)
    assert code == 0
    assert "Examples" in out and "syngeo infer" in out


def test_console_script_reports_bad_input_in_one_line(tmp_path):
    script = Path(sys.executable).parent / "syngeo"
    if not script.exists():  # pragma: no cover - the package is installed in the test venv
        pytest.skip("console script not installed")
    np.save(tmp_path / "a.npy", np.ones(100))
    np.save(tmp_path / "b.npy", np.ones(99))
    proc = subprocess.run(
        [str(script), "infer", "a.npy", "b.npy"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().count("\n") == 0
    assert "100 weights but AFTER" in proc.stderr


# ---------------------------------------------------------------------------------------------
# The report helpers behind --out
# ---------------------------------------------------------------------------------------------


def _ne_pair(n: int = N, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Multiplicative change: Gaussian in the dual space of negative entropy."""
    g = np.random.default_rng(seed)
    w0 = g.choice([-1.0, 1.0], n) * np.exp(g.normal(-2.0, 0.5, n))
    return w0, w0 * np.exp(0.05 * np.sign(w0) * g.normal(size=n))


def test_report_helpers_for_an_ne_fit():
    from syngeo.app.report import (
        inference_figures,
        inference_report,
        inference_summary,
        inference_table,
    )
    from syngeo.inference import infer_geometry

    before, after = _ne_pair()
    fit = infer_geometry(before, after, n_bootstrap=0, rng=0)
    assert fit.ranking.loc[fit.ranking["candidate"] == "NE", "rank"].item() <= 2
    figures = inference_figures(before, after, fit, top=2)
    assert set(figures) == {"dual_change_histograms", "qq_plots", "score_vs_p"}
    assert len(figures["dual_change_histograms"].axes) == 2
    assert len(figures["qq_plots"].axes) == 2
    # The histogram is a density: its area is the fraction of synapses within ±5 std (≈ 1).
    (stairs,) = [p for p in figures["dual_change_histograms"].axes[0].patches]
    values, edges = stairs.get_data().values, stairs.get_data().edges
    assert float(np.sum(values * np.diff(edges))) == pytest.approx(1.0, abs=1e-3)
    table = inference_table(fit)
    assert table["is_best"].sum() == 1 and (table["estimator"] == "likelihood").all()
    summary = inference_summary(fit, {"title": "dropped", "hidden": "NE"})
    assert summary["hidden"] == "NE" and "title" not in summary
    json.dumps(summary)  # JSON-ready (no NaN, no NumPy scalars)
    report = inference_report(fit, figures, {"title": "T", "input": "a|b"})
    assert report.startswith("# T\n")
    assert "a\\|b" in report  # table cells are escaped
    assert "no zero weights: negative entropy" in report
    with pytest.raises(ValueError, match="top"):
        inference_figures(before, after, fit, top=0)
    import matplotlib.pyplot as plt

    for fig in figures.values():
        plt.close(fig)


def test_layer_exclude_and_all_tensors_options(tmp_path, capsys):
    before, after = three_norm_pair()
    tensors = {}
    for stem, values in (("before", before), ("after", after)):
        sd = {
            "block1.conv.weight": torch.from_numpy(values[:1500].reshape(15, 100).copy()),
            "block2.conv.weight": torch.from_numpy(values[1500:].reshape(15, 100).copy()),
            "block2.conv.bias": torch.zeros(15, dtype=torch.float64),
            "head.weight": torch.ones(2, 15, dtype=torch.float64),
        }
        tensors[stem] = tmp_path / f"{stem}.pt"
        torch.save(sd, tensors[stem])
    b, a = tensors["before"], tensors["after"]

    def used(*options: str) -> list[str]:
        code, out, err = run_cli(["infer", b, a, "-b", "0", "--json", *options], capsys)
        assert code == 0, err
        return [t["name"] for t in json.loads(out)["inputs"]["before"]["used"]]

    assert used() == ["block1.conv.weight", "block2.conv.weight"]
    assert used("--layer", "block1.*") == ["block1.conv.weight"]
    assert used("--layer", "block1.*", "--layer", "block2.*") == [
        "block1.conv.weight",
        "block2.conv.weight",
    ]
    assert used("--exclude", "block2.*") == ["block1.conv.weight"]
    # --all-tensors keeps the bias and the readout too (the readout is too small to matter).
    assert used("--all-tensors") == [
        "block1.conv.weight",
        "block2.conv.weight",
        "block2.conv.bias",
        "head.weight",
    ]


# --------------------------------------------------------------------------------------------
# synapse tables: --id-column, --sizes, --drop-invalid, --units
# --------------------------------------------------------------------------------------------
def _spine_tables(tmp_path, n=1500, seed=1):
    """Spine sizes before/after under NE (log w changes by a Gaussian step); AFTER is shuffled,
    misses 4 synapses and has 2 unknown ids, so only a join by id pairs them correctly."""
    g = np.random.default_rng(seed)
    ids = np.arange(n) * 7 + 3
    w0 = np.exp(g.normal(-3.0, 0.6, n))
    w1 = w0 * np.exp(0.2 * g.standard_normal(n))
    before = pd.DataFrame({"synapse_id": ids, "vol": w0, "cell": g.integers(0, 9, n)})
    perm = g.permutation(n)[4:]
    after = pd.DataFrame({"synapse_id": ids[perm], "vol": w1[perm], "cell": 0})
    after = pd.concat(
        [after, pd.DataFrame({"synapse_id": [1, 2], "vol": [0.05, 0.06], "cell": 0})],
        ignore_index=True,
    )
    return before, after


def _write(tmp_path, before, after):
    b, a = tmp_path / "day0.csv", tmp_path / "day7.csv"
    before.to_csv(b, index=False)
    after.to_csv(a, index=False)
    return b, a


TABLE_ARGS = ["--column", "vol", "--id-column", "synapse_id", "--sizes", "--bootstrap", "0"]
FEW = ["--candidates", "ne,2-norm,3-norm", "--no-refine"]


def test_table_join_by_id_finds_ne_and_reports_unmatched(tmp_path, capsys):
    b, a = _write(tmp_path, *_spine_tables(tmp_path))
    out = tmp_path / "run"
    code, stdout, err = run_cli(
        ["infer", b, a, *TABLE_ARGS, *FEW, "--units", "um3", "--out", out], capsys
    )
    assert code == 0, err
    flat = " ".join(stdout.split())  # rich wraps long lines
    assert "1496 synapses matched, 4 ids only in BEFORE, 2 only in AFTER" in flat
    summary = json.loads((out / "summary.json").read_text())
    assert summary["best"] == "NE"
    matching = summary["inputs"]["matching"]
    assert (matching["n_matched"], matching["n_only_before"], matching["n_only_after"]) == (
        1496,
        4,
        2,
    )
    assert sorted(matching["only_after"]) == ["1", "2"] and matching["units"] == "um3"
    report = (out / "report.md").read_text()
    assert "4 only in BEFORE" in report and "um3" in report


def test_row_order_would_have_paired_the_wrong_synapses(tmp_path, capsys):
    # the same tables without --id-column: lengths differ, and the error says what to do
    b, a = _write(tmp_path, *_spine_tables(tmp_path))
    code, out, err = run_cli(["infer", b, a, "--column", "vol", "--bootstrap", "0"], capsys)
    assert_bad_input(code, out, err, "same synapses in the same order")


@pytest.mark.parametrize(
    ("side", "edit", "pattern"),
    [
        (
            "before",
            lambda f: f.assign(vol=f["vol"].where(f.index % 100 != 7)),
            "15 of 1500 rows have no value",
        ),
        (
            "after",
            lambda f: f.assign(vol=f["vol"].where(f.index % 500 != 3, 0.0)),
            "3 of 1498 rows have a zero or negative",
        ),
        (
            "before",
            lambda f: f.assign(vol=f["vol"].where(f.index != 10, -0.2)),
            "1 of 1500 rows have a zero or negative",
        ),
        (
            "after",
            lambda f: f.assign(synapse_id=f["synapse_id"].where(f.index != 5, f["synapse_id"][6])),
            "1 synapse ids occur more than once",
        ),
        ("before", lambda f: f.drop(columns="vol"), "no column 'vol'"),
        ("after", lambda f: f.drop(columns="synapse_id"), "no column 'synapse_id' (--id-column)"),
    ],
)
def test_table_errors_are_one_line(tmp_path, capsys, side, edit, pattern):
    before, after = _spine_tables(tmp_path)
    if side == "before":
        before = edit(before)
    else:
        after = edit(after)
    b, a = _write(tmp_path, before, after)
    code, out, err = run_cli(["infer", b, a, *TABLE_ARGS, *FEW], capsys)
    assert_bad_input(code, out, err, pattern)


def test_drop_invalid_drops_counts_and_still_joins(tmp_path, capsys):
    before, after = _spine_tables(tmp_path)
    before.loc[[0, 1, 2], "vol"] = np.nan
    after.loc[[10, 11], "vol"] = [0.0, -1.0]
    b, a = _write(tmp_path, before, after)
    code, out, err = run_cli(["infer", b, a, *TABLE_ARGS, *FEW, "--drop-invalid", "--json"], capsys)
    assert code == 0, err
    summary = json.loads(out)
    m = summary["inputs"]["matching"]
    assert m["dropped_before"] == {"missing": 3, "non_positive": 0}
    assert m["dropped_after"] == {"missing": 0, "non_positive": 2}
    assert summary["n_synapses"] == m["n_matched"] <= 1496 - 3
    assert summary["best"] == "NE"


def test_too_few_synapses_after_dropping_is_one_line(tmp_path, capsys):
    before, after = _spine_tables(tmp_path, n=60)
    before.loc[5:, "vol"] = np.nan
    b, a = _write(tmp_path, before, after)
    code, out, err = run_cli(["infer", b, a, *TABLE_ARGS, *FEW, "--drop-invalid"], capsys)
    assert_bad_input(code, out, err, "synapses")


def test_table_options_and_tensor_options_do_not_mix(tmp_path, capsys):
    b, a = _write(tmp_path, *_spine_tables(tmp_path))
    code, out, err = run_cli(["infer", b, a, *TABLE_ARGS, "--layer", "x"], capsys)
    assert_bad_input(code, out, err, "use one kind or the other")


# ------------------------------------------------------------------------------------------------
# the answer: NE or p -> 1, goodness of fit, dominating synapses, zeros, the summary table
# ------------------------------------------------------------------------------------------------
def ne_pair(n: int = N, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Positive weights whose change is Gaussian in NE's duals (log w): the truth is NE."""
    g = np.random.default_rng(seed)
    w0 = np.exp(g.normal(-2, 0.5, n))
    return w0, w0 * np.exp(0.05 * g.normal(size=n))


def _flat(text: str) -> str:
    """The words of ``text`` (rich wraps long lines and table cells, with │ between columns)."""
    return " ".join(text.replace("│", " ").split())


LONG_FLOAT = r"\d\.\d{7,}"  # a number printed with 7 or more decimals


def test_ne_or_p_to_1_is_said_once_instead_of_an_interval_at_the_bound(tmp_path, capsys):
    b, a = _npy_pair(tmp_path, *ne_pair())
    code, out, err = run_cli(["infer", b, a, "-b", "0"], capsys)
    assert code == 0, err
    text = _flat(out + err)
    assert text.count("NE or p → 1 (indistinguishable here)") == 1, text
    # no p interval at the bound, no margin to a row the reader cannot see, no bound warning
    assert "interval for p" not in text and "margin to the runner-up" not in text
    assert "search bound" not in text
    code, out, _ = run_cli(["infer", b, a, "-b", "0", "--json"], capsys)
    summary = json.loads(out)
    assert summary["answer"] == "NE or p → 1 (indistinguishable here)"
    lim = summary["diagnostics"]["ne_limit"]
    assert lim["applies"] is True and abs(lim["ne_delta_loglik"]) <= lim["threshold"]
    # the report's verdict gives the same single answer, without the interval at the bound
    code, _, err = run_cli(["infer", b, a, "-b", "0", "--out", str(tmp_path / "r")], capsys)
    assert code == 0, err
    report = (tmp_path / "r" / "report.md").read_text(encoding="utf-8")
    verdict = report.split("## Verdict", 1)[1].split("## ", 1)[0]
    assert "**NE or p → 1 (indistinguishable here)**" in verdict, verdict
    assert "Interval for p" not in verdict and "Margin" not in verdict


def test_3_norm_answer_keeps_its_interval_and_margin(tmp_path, capsys):
    b, a = _npy_pair(tmp_path, *three_norm_pair())
    code, out, err = run_cli(["infer", b, a, "-b", "0"], capsys)
    assert code == 0, err
    text = _flat(out)
    assert "NE or p → 1" not in text
    assert "interval for p" in text and "margin to the runner-up" in text
    assert "goodness of fit" in text and ": fits" in text
    assert "dominating synapses none" in text
    assert not re.search(LONG_FLOAT, out), out
    assert "warning" not in err, err


def test_heavy_tailed_change_warns_that_no_candidate_fits(tmp_path, capsys):
    g = np.random.default_rng(3)
    before = g.normal(0, 0.1, N)
    after = before + 0.01 * g.standard_t(2.0, size=N)  # no candidate's duals are Gaussian
    b, a = _npy_pair(tmp_path, before, after)
    code, out, err = run_cli(["infer", b, a, "-b", "0", "--json"], capsys)
    assert code == 0, err
    summary = json.loads(out)
    gof = summary["diagnostics"]["goodness_of_fit"]
    assert gof["no_fit"] is True and min(gof["pvalues"].values()) < 0.01 and gof["ratio"] > 3
    assert any("no candidate fits" in w for w in summary["diagnostics"]["warnings"])
    code, out, err = run_cli(["infer", b, a, "-b", "0"], capsys)
    assert "no candidate fits" in _flat(out) and "no candidate fits" in _flat(err)


def test_one_outlier_at_1e30_is_named_and_can_be_dropped(tmp_path, capsys):
    before, after = three_norm_pair()
    after[17] = 1e30
    b, a = _npy_pair(tmp_path, before, after)
    code, out, err = run_cli(["infer", b, a, "-b", "0", "--json"], capsys)
    assert code == 0, err
    summary = json.loads(out)
    infl = summary["diagnostics"]["influential_synapses"]
    assert infl["indices"] == [17] and infl["best_without"] == "3-norm"
    code, out, err = run_cli(["infer", b, a, "-b", "0"], capsys)
    text = _flat(err)
    assert "1 synapse dominates the likelihood" in text and "index 17" in text
    assert "--drop-outliers" in text and "1 synapses" not in _flat(out + err)
    code, out, err = run_cli(["infer", b, a, "-b", "0", "--drop-outliers", "--json"], capsys)
    assert code == 0, err
    summary = json.loads(out)
    assert summary["dropped"] == {"influential": [17]} and summary["n_synapses"] == N - 1
    assert abs(summary["best_p"] - 3) < 0.1 and summary["diagnostics"]["warnings"] == []


def test_one_outlier_at_1e300_is_a_clear_input_error_without_numpy_warnings(tmp_path, capsys):
    before, after = three_norm_pair()
    after[17] = 1e300
    b, a = _npy_pair(tmp_path, before, after)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a numpy RuntimeWarning would fail the test
        code, out, err = run_cli(["infer", b, a, "-b", "0"], capsys)
        assert_bad_input(code, out, err, "synapse 17")
        assert "overflows float64" in err and "--drop-outliers" in err
        code, out, err = run_cli(["infer", b, a, "-b", "0", "--drop-outliers", "--json"], capsys)
    assert code == 0, err
    summary = json.loads(out)
    assert summary["dropped"] == {"dual overflows": [17]}
    assert abs(summary["best_p"] - 3) < 0.1


def test_zeros_are_counted_and_drop_zeros_brings_ne_back(tmp_path, capsys):
    before, after = ne_pair()
    after[:40] = 0.0
    b, a = _npy_pair(tmp_path, before, after)
    code, out, err = run_cli(["infer", b, a, "-b", "0"], capsys)
    assert code == 0, err
    text = _flat(out + err)
    assert "40 synapses with a zero weight (0 before, 40 after)" in text
    assert "NE needs non-zero weights and is ruled out by them alone" in text
    assert "--drop-zeros" in text
    code, out, err = run_cli(["infer", b, a, "-b", "0", "--drop-zeros", "--json"], capsys)
    assert code == 0, err
    summary = json.loads(out)
    assert summary["dropped"] == {"zero weight": list(range(40))}
    assert summary["ne_ruled_out"] is False
    assert summary["answer"] in ("NE", "NE or p → 1 (indistinguishable here)")


def test_empty_candidates_is_an_error(tmp_path, capsys):
    b, a = _npy_pair(tmp_path, *three_norm_pair())
    for empty in ("", " , "):
        code, out, err = run_cli(["infer", b, a, "--candidates", empty], capsys)
        assert_bad_input(code, out, err, "--candidates is empty")


def test_candidates_given_are_the_candidates_ranked_unless_refine_is_asked(tmp_path, capsys):
    b, a = _npy_pair(tmp_path, *three_norm_pair())
    args = ["infer", b, a, "--candidates", "ne,2-norm,3-norm", "-b", "0"]
    code, out, err = run_cli([*args, "--json"], capsys)
    assert code == 0, err
    summary = json.loads(out)
    assert [r["candidate"] for r in summary["ranking"]] == ["3-norm", "2-norm", "NE"]
    assert summary["best"] == "3-norm" and summary["settings"]["refine"] is False
    code, out, err = run_cli(args, capsys)
    assert "p refined no: only the candidates given are ranked" in _flat(out)
    code, out, err = run_cli([*args, "--refine", "--json"], capsys)
    summary = json.loads(out)
    assert summary["settings"]["refine"] is True and any(r["refined"] for r in summary["ranking"])
    assert abs(summary["best_p"] - 3) < 0.1
    code, out, err = run_cli([*args, "--refine"], capsys)
    assert "p refined yes" in _flat(out) and "(refined)" in _flat(out)


def test_dropped_synapses_are_named_by_their_position_in_the_input(tmp_path, capsys):
    # zeros first (before and after), then an outlier: both reported at their input positions
    before, after = ne_pair()
    before[[2, 5]] = 0.0
    after[[7, 9, 11]] = 0.0
    after[1500] = 1e30
    b, a = _npy_pair(tmp_path, before, after)
    args = ["infer", b, a, "-b", "0", "--drop-zeros", "--drop-outliers", "--json"]
    code, out, err = run_cli(args, capsys)
    assert code == 0, err
    summary = json.loads(out)
    assert summary["dropped"] == {"zero weight": [2, 5, 7, 9, 11], "influential": [1500]}
    assert summary["n_synapses"] == N - 6 and summary["ne_ruled_out"] is False


def test_report_intro_has_plural_forms_right_and_the_answer(tmp_path, capsys):
    b, a = _npy_pair(tmp_path, *three_norm_pair())
    out = tmp_path / "run"
    code, _, err = run_cli(["infer", b, a, "-b", "0", "--out", out], capsys)
    assert code == 0, err
    report = (out / "report.md").read_text()
    intro = report.split("## Verdict")[0]
    assert "3000 synapses from 1 tensor or column; 0 tensors skipped" in intro
    assert "(s)" not in intro and "Answer: **" in intro and "KS statistic of" in intro
    assert not re.search(LONG_FLOAT, intro)
