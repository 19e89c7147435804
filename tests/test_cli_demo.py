"""``syngeo demo`` end to end: learn under a hidden geometry, infer it, write the outputs."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from clirun import assert_bad_input, run_cli
from syngeo.app.cli import main

FIGURES = ("dual_change_histograms", "qq_plots", "score_vs_p")
OUTPUTS = {
    "results.parquet",
    "results.csv",
    "summary.json",
    "report.md",
    *(f"{stem}.{ext}" for stem in FIGURES for ext in ("png", "pdf")),
}


@pytest.fixture(scope="module")
def default_demo(tmp_path_factory):
    """``syngeo demo --out syngeo-demo`` run from an empty working folder (the default run)."""
    work = tmp_path_factory.mktemp("work")
    previous = Path.cwd()
    os.chdir(work)
    # capsys is function-scoped; a module-scoped run captures its output by hand.
    out, err = io.StringIO(), io.StringIO()
    code = None
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                main(["demo", "--out", "syngeo-demo", "--bootstrap", "20"])
            except SystemExit as exc:
                code = exc.code
    finally:
        os.chdir(previous)
    return {
        "work": work,
        "out": work / "syngeo-demo",
        "code": code,
        "stdout": out.getvalue(),
        "stderr": err.getvalue(),
    }


def test_default_demo_succeeds_and_recovers_the_3_norm(default_demo):
    assert default_demo["code"] == 0, default_demo["stderr"]
    stdout = default_demo["stdout"]
    assert "candidate geometries" in stdout
    assert "hidden 3-norm, inferred 3-norm" in stdout and "recovered" in stdout
    assert "Traceback" not in stdout + default_demo["stderr"]


def test_default_demo_writes_every_output_and_nothing_else(default_demo):
    out = default_demo["out"]
    assert {p.name for p in out.iterdir()} == OUTPUTS
    # Nothing outside --out.
    assert [p.name for p in default_demo["work"].iterdir()] == ["syngeo-demo"]
    for stem in FIGURES:
        assert (out / f"{stem}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert (out / f"{stem}.pdf").read_bytes()[:5] == b"%PDF-"


def test_default_demo_summary_and_table(default_demo):
    out = default_demo["out"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["command"] == "demo" and summary["hidden"] == "3-norm"
    assert summary["verdict"]["recovered"] is True
    assert summary["verdict"]["inferred_on_grid"] == "3-norm"
    assert abs(summary["best_p"] - 3) < 0.1
    sim = summary["simulation"]
    assert sim["converged"] is True and sim["train_accuracy"] == 1.0
    assert sim["change_magnitude"] < 0.2
    assert summary["n_synapses"] == sim["n_synapses"] == 512 * 32
    table = pd.read_parquet(out / "results.parquet")
    csv = pd.read_csv(out / "results.csv")
    assert len(table) == len(csv) == len(summary["ranking"])
    assert table.loc[table["is_best"], "candidate"].item() == summary["best"]
    # 3-norm learning flips some signs, so NE is listed as ruled out.
    assert summary["ne_ruled_out"] is True
    assert table.loc[table["candidate"] == "NE", "rank"].isna().all()


def test_default_demo_report(default_demo):
    report = (default_demo["out"] / "report.md").read_text()
    assert report.startswith("# syngeo demo: recovering a hidden 3-norm geometry")
    for section in ("## Verdict", "## Checks", "## Ranking", "## Figures"):
        assert section in report
    for stem in FIGURES:
        assert f"]({stem}.png)" in report
    assert "| recovered | yes |" in report


def test_json_with_force_replaces_old_results(tmp_path, capsys):
    out = tmp_path / "demo"
    out.mkdir()
    (out / "summary.json").write_text("{}")
    code, stdout, err = run_cli(
        ["demo", "--hidden", "2-norm", "--seed", "1", "--bootstrap", "0", "--json", "--force",
         "--out", out],
        capsys,
    )  # fmt: skip
    assert code == 0, err
    summary = json.loads(stdout)  # only JSON on stdout
    assert summary["hidden"] == "2-norm" and summary["verdict"]["recovered"] is True
    assert json.loads((out / "summary.json").read_text()) == summary
    assert {p.name for p in out.iterdir()} == OUTPUTS


def test_existing_out_without_force_is_refused_before_any_work(tmp_path, capsys):
    out = tmp_path / "demo"
    out.mkdir()
    (out / "summary.json").write_text('{"keep": true}')
    code, stdout, err = run_cli(["demo", "--out", out], capsys)
    assert_bad_input(code, stdout, err, "--force")
    assert [p.name for p in out.iterdir()] == ["summary.json"]
    assert (out / "summary.json").read_text() == '{"keep": true}'


def test_out_that_is_a_file_is_refused(tmp_path, capsys):
    target = tmp_path / "file.txt"
    target.write_text("x")
    assert_bad_input(*run_cli(["demo", "--out", target], capsys), "not a folder")
    assert target.read_text() == "x"


def test_unknown_hidden_geometry(tmp_path, capsys):
    code, stdout, err = run_cli(["demo", "--hidden", "banana", "--out", tmp_path / "d"], capsys)
    assert_bad_input(code, stdout, err, "unknown potential 'banana'")
    assert not (tmp_path / "d").exists()


@pytest.mark.parametrize(
    ("args", "pattern"),
    [
        (["--seed", "-1"], "--seed"),
        (["--bootstrap", "-5"], "--bootstrap"),
        (["--estimator", "magic"], "--estimator"),
        (["--hidden", "p=0.5"], "p > 1"),
    ],
)
def test_bad_options(tmp_path, capsys, args, pattern):
    code, stdout, err = run_cli(["demo", *args, "--out", tmp_path / "d"], capsys)
    assert_bad_input(code, stdout, err, pattern)
    assert not (tmp_path / "d").exists()


def test_help_has_an_example(capsys):
    code, stdout, _ = run_cli(["demo", "--help"], capsys)
    assert code == 0
    assert "Examples" in stdout and "syngeo demo --hidden ne" in stdout


def test_console_script_refuses_existing_out(tmp_path):
    script = Path(sys.executable).parent / "syngeo"
    if not script.exists():  # pragma: no cover - the package is installed in the test venv
        pytest.skip("console script not installed")
    (tmp_path / "syngeo-demo").mkdir()
    (tmp_path / "syngeo-demo" / "report.md").write_text("old")
    proc = subprocess.run(
        [str(script), "demo"], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 2
    assert proc.stdout == "" and "Traceback" not in proc.stderr
    assert proc.stderr.strip().count("\n") == 0 and "--force" in proc.stderr
    assert (tmp_path / "syngeo-demo" / "report.md").read_text() == "old"


def _words(text: str) -> str:
    """The words of ``text`` (rich wraps lines and table cells, with │ between columns)."""
    return " ".join(text.replace("│", " ").split())


def test_default_demo_summary_is_a_table_with_the_checks(default_demo):
    stdout = _words(default_demo["stdout"])
    summary = json.loads((default_demo["out"] / "summary.json").read_text())
    rows = (
        f"geometry {summary['best']}",
        "interval for p",
        "goodness of fit",
        "dominating synapses none",
    )
    for row in rows:
        assert row in stdout, row
    assert not re.search(r"\d\.\d{7,}", default_demo["stdout"])  # no 16-digit floats
    assert summary["diagnostics"]["goodness_of_fit"]["statistic"] == "ks"
    assert summary["answer"] == summary["best"]
    report = (default_demo["out"] / "report.md").read_text()
    assert "Answer: **" in report and "KS statistic of" in report


def test_hidden_ne_is_reported_once_as_ne_or_p_to_1(tmp_path, capsys):
    out = tmp_path / "demo-ne"
    code, stdout, err = run_cli(
        ["demo", "--hidden", "ne", "--bootstrap", "0", "--out", out], capsys
    )
    assert code == 0, err
    text = _words(stdout + err)
    assert text.count("NE or p → 1 (indistinguishable here)") == 1, text
    assert "interval for p" not in text and "search bound" not in text
    assert "margin to the runner-up" not in text
    summary = json.loads((out / "summary.json").read_text())
    assert summary["answer"] == "NE or p → 1 (indistinguishable here)"
    assert "interval for p" not in (out / "report.md").read_text().split("## Verdict")[0]
