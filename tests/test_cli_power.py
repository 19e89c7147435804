"""``syngeo power`` end to end: outputs, resuming, bad input."""

from __future__ import annotations

import json
import re

import pandas as pd
import pytest

from clirun import run_cli
from syngeo.app.experiments.power import POWER, Config, cells

SMALL = [
    "--n",
    "60,120",
    "--noise",
    "0,10%",
    "--runs",
    "2",
    "--candidates",
    "ne,2-norm,3-norm",
    "--planned-n",
    "60",
]


def test_power_writes_report_figures_and_resumes(tmp_path, capsys):
    out = tmp_path / "plan"
    code, stdout, err = run_cli(["power", *SMALL, "--out", str(out), "--quiet"], capsys)
    assert code == 0, err
    for name in ("report.md", "power.png", "confusion.png", "summary.json", "results.parquet"):
        assert (out / name).exists(), name
    table = pd.read_parquet(out / "results.parquet")
    assert len(table) == 2 * (4 + 3)  # 2 runs × (4 power cells + 3 confusion cells)
    report = (out / "report.md").read_text()
    assert "Synapses needed for 80 % power" in report and "Confusion matrix" in report
    code, stdout, _ = run_cli(["power", *SMALL, "--out", str(out), "--json"], capsys)
    assert code == 0
    result = json.loads(stdout)
    assert result["sweep"]["n_computed"] == 0 and result["sweep"]["n_reused"] == 7
    assert set(result["summary"]["confusion"]) == {"NE", "2-norm", "3-norm"}
    code, stdout, _ = run_cli(["power", *SMALL, "--out", str(out)], capsys)  # resumed: instant
    assert code == 0
    assert re.search(r"true geometry\s+noise\s+synapses needed", stdout), stdout  # a table
    assert "with 80 % power" in stdout and "wrote 8 files" in stdout
    assert not re.search(r"\d\.\d{6,}", stdout)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--noise", "abc"], "bad noise level"),
        (["--noise", "70%"], "outside"),
        (["--n", "10,x"], "bad --n"),
        (["--n", "20"], "at least 50"),
        (["--truth", "3-norm", "--candidates", "ne,2-norm"], "not among the candidates"),
        (["--init", "uniform"], "init"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, args, message):
    code, _, err = run_cli(["power", "--runs", "1", *args, "--out", str(tmp_path / "o")], capsys)
    assert code == 2
    assert message in err and len(err.strip().splitlines()) == 1


def test_experiment_cells_cover_the_grid_and_the_confusion_truths():
    config = Config(n=(100, 200), noise=(0.0, 0.1), candidates=("ne", "2-norm", "3-norm"))
    kinds = [c["kind"] for c in cells(config)]
    assert kinds.count("power") == 4 and kinds.count("confusion") == 3
    assert POWER.figures == ("power", "confusion")
