"""``syngeo reproduce`` end to end, on the small test experiment registered for the duration."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import typer.models

from syngeo.app import experiments
from syngeo.app.cli import main
from syngeo.app.cli._app import app
from syngeo.app.experiments import _testing


@pytest.fixture(autouse=True)
def testing_experiment(monkeypatch):
    """Register ``_testing`` and make sure the app dispatches on subcommand names."""
    from syngeo.app.cli import _commands  # noqa: F401  (registers the commands)

    monkeypatch.setattr(experiments, "EXPERIMENTS", (*experiments.EXPERIMENTS, _testing.EXPERIMENT))
    if len(app.registered_commands) < 2:  # a one-command typer app would swallow the name
        placeholder = typer.models.CommandInfo(
            name="_placeholder", callback=lambda: None, hidden=True
        )
        monkeypatch.setattr(app, "registered_commands", [*app.registered_commands, placeholder])


def _run(argv, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    captured = capsys.readouterr()
    return info.value.code, captured.out, captured.err


def _reference_table(n_cells: int) -> pd.DataFrame:
    config = _testing.Config(n_cells=n_cells, delay=0.0)
    return pd.DataFrame(
        [row for cell in _testing.cells(config) for row in _testing.run_cell(config, cell)]
    )


def test_list_shows_every_registered_experiment(capsys):
    code, out, _ = _run(["reproduce", "--list"], capsys)
    assert code == 0
    for name in ("fig3a", "fig6", "fig3b", "_testing"):
        assert name in out
    code, out, _ = _run(["reproduce", "--list", "--json"], capsys)
    assert code == 0
    entries = {e["name"]: e for e in json.loads(out)}
    assert entries["_testing"]["figures"] == ["testing"]
    assert [e["name"] for e in json.loads(out)] == [e.name for e in experiments.EXPERIMENTS]
    assert entries["fig3a"]["title"].startswith("Pogodin")


def test_omitting_the_name_lists_too(capsys):
    code, out, _ = _run(["reproduce"], capsys)
    assert code == 0 and "fig3b" in out


def test_unknown_name_is_one_line_and_exit_code_2(capsys, tmp_path):
    code, _, err = _run(["reproduce", "no-such-figure", "--out", str(tmp_path / "x")], capsys)
    assert code == 2
    assert "unknown experiment 'no-such-figure'" in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x").exists()


def test_help_has_an_example(capsys):
    code, out, _ = _run(["reproduce", "--help"], capsys)
    assert code == 0
    assert "syngeo reproduce fig3b --quick" in out
    assert "--scheduler" in out and "--workers" in out


def test_reproduce_writes_table_figures_summary_and_report(capsys, tmp_path):
    out = tmp_path / "run"
    code, stdout, _ = _run(
        ["reproduce", "_testing", "--quick", "--out", str(out), "--json"], capsys
    )
    assert code == 0
    payload = json.loads(stdout)
    assert payload["sweep"]["n_computed"] == 4 and payload["sweep"]["n_reused"] == 0
    for name in (
        "results.parquet",
        "results.csv",
        "summary.json",
        "report.md",
        "testing.png",
        "testing.pdf",
        "manifest.json",
    ):
        assert (out / name).is_file(), name
    table = pd.read_parquet(out / "results.parquet")
    pd.testing.assert_frame_equal(table, _reference_table(4))
    summary = json.loads((out / "summary.json").read_text())
    assert summary["experiment"] == "_testing" and summary["preset"] == "quick"
    assert summary["results"]["n_rows"] == 8
    assert summary["config"]["n_cells"] == 4
    report = (out / "report.md").read_text()
    assert "![values](testing.png)" in report
    assert "syngeo reproduce _testing --quick" in report
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # nothing outside --out


def test_rerun_resumes_and_a_different_preset_needs_force(capsys, tmp_path):
    out = tmp_path / "run"
    argv = ["reproduce", "_testing", "--quick", "--out", str(out), "--quiet"]
    assert _run(argv, capsys)[0] == 0
    code, stdout, _ = _run([*argv, "--json"], capsys)
    assert code == 0
    assert json.loads(stdout)["sweep"]["n_reused"] == 4

    full = ["reproduce", "_testing", "--out", str(out), "--quiet"]
    code, _, err = _run(full, capsys)
    assert code == 2
    assert "different sweep" in err and "--force" in err
    code, _, _ = _run([*full, "--force"], capsys)
    assert code == 0
    assert len(pd.read_parquet(out / "results.parquet")) == 2 * _testing.Config().n_cells


def test_default_out_is_in_the_working_directory(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, stdout, _ = _run(["reproduce", "_testing", "--quick"], capsys)
    assert code == 0
    assert (tmp_path / "syngeo-_testing-quick" / "report.md").is_file()
    assert "4 cells" in stdout and "report.md" in stdout


def test_bad_workers_value_is_exit_code_2(capsys, tmp_path):
    code, _, err = _run(
        ["reproduce", "_testing", "--quick", "--out", str(tmp_path / "o"), "--workers", "0"],
        capsys,
    )
    assert code == 2 and "workers" in err


def test_cells_of_other_code_are_refused_with_exit_code_2_until_forced(capsys, tmp_path):
    # issue 8, defect 5, through the command line: one line saying how to proceed
    out = tmp_path / "run"
    argv = ["reproduce", "_testing", "--quick", "--out", str(out), "--quiet"]
    assert _run(argv, capsys)[0] == 0
    manifest = json.loads((out / "manifest.json").read_text())
    (out / "manifest.json").write_text(json.dumps({**manifest, "definition": "f" * 16}))
    code, _, err = _run(argv, capsys)
    assert code == 2
    assert "computed by different code" in err and "--force" in err
    assert len(err.strip().splitlines()) == 1
    code, stdout, _ = _run([*argv, "--force", "--json"], capsys)
    assert code == 0 and json.loads(stdout)["sweep"]["n_computed"] == 4
