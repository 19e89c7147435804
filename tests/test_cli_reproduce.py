"""``syngeo reproduce`` end to end, on the small test experiment registered for the duration."""

from __future__ import annotations

import dataclasses
import json
import re

import pandas as pd
import pytest
import typer.models

from clirun import run_cli
from syngeo.app import experiments
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


def _reference_table(n_cells: int) -> pd.DataFrame:
    config = _testing.Config(n_cells=n_cells, delay=0.0)
    return pd.DataFrame(
        [row for cell in _testing.cells(config) for row in _testing.run_cell(config, cell)]
    )


def test_list_shows_every_registered_experiment(capsys):
    code, out, _ = run_cli(["reproduce", "--list"], capsys)
    assert code == 0
    for name in ("fig3a", "fig6", "fig3b", "_testing"):
        assert name in out
    code, out, _ = run_cli(["reproduce", "--list", "--json"], capsys)
    assert code == 0
    entries = {e["name"]: e for e in json.loads(out)}
    assert entries["_testing"]["figures"] == ["testing"]
    assert [e["name"] for e in json.loads(out)] == [e.name for e in experiments.EXPERIMENTS]
    assert entries["fig3a"]["title"].startswith("Pogodin")


def test_omitting_the_name_lists_too(capsys):
    code, out, _ = run_cli(["reproduce"], capsys)
    assert code == 0 and "fig3b" in out


def test_unknown_name_is_one_line_and_exit_code_2(capsys, tmp_path):
    code, _, err = run_cli(["reproduce", "no-such-figure", "--out", str(tmp_path / "x")], capsys)
    assert code == 2
    assert "unknown experiment 'no-such-figure'" in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x").exists()


def test_help_has_an_example(capsys):
    code, out, _ = run_cli(["reproduce", "--help"], capsys)
    assert code == 0
    assert "syngeo reproduce fig3b --quick" in out
    assert "--scheduler" in out and "--workers" in out


def test_reproduce_writes_table_figures_summary_and_report(capsys, tmp_path):
    out = tmp_path / "run"
    code, stdout, stderr = run_cli(
        ["reproduce", "_testing", "--quick", "--out", str(out), "--json"], capsys
    )
    assert code == 0
    assert stderr == ""  # --json: no progress bar either (as `syngeo power --json`)
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
    assert run_cli(argv, capsys)[0] == 0
    code, stdout, _ = run_cli([*argv, "--json"], capsys)
    assert code == 0
    assert json.loads(stdout)["sweep"]["n_reused"] == 4

    full = ["reproduce", "_testing", "--out", str(out), "--quiet"]
    code, _, err = run_cli(full, capsys)
    assert code == 2
    assert "different sweep" in err and "--force" in err
    code, _, _ = run_cli([*full, "--force"], capsys)
    assert code == 0
    assert len(pd.read_parquet(out / "results.parquet")) == 2 * _testing.Config().n_cells


def test_default_out_is_in_the_working_directory(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, stdout, _ = run_cli(["reproduce", "_testing", "--quick"], capsys)
    assert code == 0
    assert (tmp_path / "syngeo-_testing-quick" / "report.md").is_file()
    assert "4 cells" in stdout and "report.md" in stdout


def test_bad_workers_value_is_exit_code_2(capsys, tmp_path):
    code, _, err = run_cli(
        ["reproduce", "_testing", "--quick", "--out", str(tmp_path / "o"), "--workers", "0"],
        capsys,
    )
    assert code == 2 and "workers" in err


def test_cells_of_other_code_are_refused_with_exit_code_2_until_forced(capsys, tmp_path):
    # issue 8, defect 5, through the command line: one line saying how to proceed
    out = tmp_path / "run"
    argv = ["reproduce", "_testing", "--quick", "--out", str(out), "--quiet"]
    assert run_cli(argv, capsys)[0] == 0
    manifest = json.loads((out / "manifest.json").read_text())
    (out / "manifest.json").write_text(json.dumps({**manifest, "definition": "f" * 16}))
    code, _, err = run_cli(argv, capsys)
    assert code == 2
    assert "computed by different code" in err and "--force" in err
    assert len(err.strip().splitlines()) == 1
    code, stdout, _ = run_cli([*argv, "--force", "--json"], capsys)
    assert code == 0 and json.loads(stdout)["sweep"]["n_computed"] == 4


# ---------------------------------------------------------------- summary, --list, --data, errors


def test_the_final_summary_is_a_table_without_long_floats(capsys, tmp_path):
    code, stdout, _ = run_cli(["reproduce", "_testing", "--quick", "--out", tmp_path / "o"], capsys)
    assert code == 0
    assert "quantity" in stdout and "value" in stdout  # the header of the summary table
    assert "mean value" in stdout and "mean_value:" not in stdout  # not a key: value dump
    assert not re.search(r"\d\.\d{6,}", stdout), stdout  # at most 4 significant digits
    assert "4 cells" in stdout and "wrote 6 files" in stdout


def test_list_shows_the_time_and_the_cells_of_each_preset(capsys, monkeypatch):
    from syngeo.app import experiments as registry

    monkeypatch.setitem(registry.QUICK_SECONDS, "_testing", 12.4)
    code, out, _ = run_cli(["reproduce", "--list"], capsys)
    assert code == 0
    line = next(line for line in out.splitlines() if line.strip().startswith("_testing"))
    assert "12 s" in line and "4 cells" in line and "8 cells" in line
    assert "fig7a (--data)" in out  # the experiments that read a dataset folder are marked
    code, out, _ = run_cli(["reproduce", "--list", "--json"], capsys)
    entry = next(e for e in json.loads(out) if e["name"] == "_testing")
    assert (entry["quick_seconds"], entry["quick_cells"], entry["full_cells"]) == (12.4, 4, 8)
    # every registered experiment has a measured quick time
    assert {e["name"] for e in json.loads(out)} - {"_testing"} <= set(registry.QUICK_SECONDS)


@dataclasses.dataclass(frozen=True)
class _DataConfig(_testing.Config):
    data_dir: str | None = None


def test_data_is_passed_to_the_experiment_as_an_absolute_folder(capsys, tmp_path, monkeypatch):
    with_data = dataclasses.replace(
        _testing.EXPERIMENT,
        name="_with_data",
        Config=_DataConfig,
        quick=lambda: _DataConfig(n_cells=2, delay=0.0),
        data_field="data_dir",
    )
    monkeypatch.setattr(experiments, "EXPERIMENTS", (*experiments.EXPERIMENTS, with_data))
    (tmp_path / "mnist").mkdir()
    (tmp_path / "mnist" / "train-images-idx3-ubyte").write_bytes(b"\0")
    monkeypatch.chdir(tmp_path)
    argv = ["reproduce", "_with_data", "--quick", "--data", "mnist", "--out", "o", "--json"]
    code, _stdout, err = run_cli(argv, capsys)
    assert code == 0, err
    manifest = json.loads((tmp_path / "o" / "manifest.json").read_text())
    assert manifest["config"]["data_dir"] == str(tmp_path / "mnist")
    assert "--data mnist" in (tmp_path / "o" / "report.md").read_text()
    # an experiment that reads no dataset: one line, exit 2, no output folder
    code, _, err = run_cli(
        ["reproduce", "_testing", "--quick", "--data", "mnist", "--out", "x"], capsys
    )
    assert code == 2 and "takes no --data" in err and not (tmp_path / "x").exists()
    code, _, err = run_cli(["reproduce", "_with_data", "--data", "nope", "--out", "y"], capsys)
    assert code == 2 and "--data nope: no such folder" in err and not (tmp_path / "y").exists()


def test_a_bad_scheduler_is_one_line_and_leaves_no_folder(capsys, tmp_path):
    import socket

    pytest.importorskip("distributed")
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    for address, message in (
        (f"tcp://127.0.0.1:{port}", "could not reach the Dask scheduler"),
        ("scheduler-host", "not a Dask scheduler address"),
    ):
        out = tmp_path / "o"
        argv = ["reproduce", "_testing", "--quick", "--out", out, "--scheduler", address]
        code, stdout, err = run_cli(argv, capsys)
        assert code == 2, err
        assert err.strip().splitlines() == [err.strip()] and message in err
        assert "Traceback" not in stdout + err
        assert not out.exists()
