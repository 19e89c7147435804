"""``syngeo finetune``: one end-to-end run and the bad-input paths (one line, exit 2)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from clirun import run_cli
from syngeo.models import SmallCNN


def test_end_to_end_quick_run_and_cached_pretraining(tmp_path, capsys):
    out = tmp_path / "ft"
    args = [
        "finetune",
        "--quick",
        "--width",
        "4",
        "--n-finetune",
        "64",
        "--potentials",
        "2-norm,NE",
        "--out",
        out,
        "--json",
    ]
    code, stdout, err = run_cli(args, capsys)
    assert code == 0, err
    summary = json.loads(stdout)
    assert set(summary["runs"]) == {"2-norm", "NE"}
    assert summary["layers"] == ["conv1.weight", "conv2.weight"]
    assert "pretrained in-process" in summary["weights"]
    for name in (
        "initial.safetensors",
        "final-2-norm.safetensors",
        "final-NE.safetensors",
        "pretrained-cnn-4-seed0.safetensors",
        "results.csv",
        "log.csv",
        "report.md",
    ):
        assert (out / name).is_file(), name
    assert (
        "does not hold" in (out / "report.md").read_text()
        or "holds" in (out / "report.md").read_text()
    )
    # existing results are not overwritten without --force
    code, _, err = run_cli(args, capsys)
    assert code == 2 and "--force" in err
    # with --force the cached pretrained weights are reused
    code, stdout, _ = run_cli([*args, "--force"], capsys)
    assert code == 0 and "reused" in json.loads(stdout)["weights"]


def test_the_final_summary_is_a_table(capsys):
    from syngeo.app.cli.finetune import _print_summary

    run = {"lr": 0.01, "epochs": 20, "accuracy": 0.987654321, "loss": 0.1}
    summary = {
        "arch": "cnn",
        "width": 4,
        "n_finetune": 1,
        "runs": {"2-norm": run, "NE": {**run, "accuracy": 1.0}},
        "diagonal_is_row_min": {"2-norm": True, "NE": False},
    }
    _print_summary(summary, Path("runs/ft"))
    out = capsys.readouterr().out
    assert re.search(r"trained with\s+own potential most Gaussian\s+lr\s+epochs", out), out
    assert re.search(r"2-norm\s+yes\s+0\.01\s+20\s+0\.988", out), out
    assert re.search(r"NE\s+no", out)
    assert "finetuned on 1 image\n" in out or "finetuned on 1 image " in out
    assert "0.987654321" not in out


def test_help_has_examples(capsys):
    code, stdout, _ = run_cli(["finetune", "--help"], capsys)
    assert code == 0 and "syngeo finetune --quick" in stdout and "--weights" in stdout


@pytest.mark.parametrize(
    "setup, message",
    [
        (lambda p: ["--data", p / "missing"], "no such folder"),
        (lambda p: (p / "empty").mkdir() or ["--data", p / "empty"], "empty"),
        (lambda p: ["--weights", p / "missing.pt"], "no such file"),
        (
            lambda p: (p / "bad.pt").write_bytes(b"garbage") and ["--weights", p / "bad.pt"],
            "cannot read",
        ),
        (
            lambda p: (
                torch.save(SmallCNN(width=3).state_dict(), p / "w3.pt")
                or ["--weights", p / "w3.pt", "--width", "4"]
            ),
            "does not fit",
        ),
        (lambda p: ["--potentials", "2-norm,nope"], "nope"),
        (lambda p: ["--weights", p], "is a folder, not a state_dict file"),
        (lambda p: (p / "x.txt").write_text("x") and ["--data", p / "x.txt"], "is a file"),
        (lambda p: (p / "e").mkdir() or ["--data", p / "e"], "the folder is empty"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, setup, message):
    extra = setup(tmp_path)
    code, _, err = run_cli(["finetune", "--quick", "--out", tmp_path / "o", *extra], capsys)
    assert code == 2, err
    assert message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) <= 2  # one message (rich may wrap a long line)


def test_rnn_on_mnist_idx_files(tmp_path, capsys):
    from test_models import _write_mnist

    _write_mnist(tmp_path / "mnist", n_train=64, n_test=40, side=6)
    out = tmp_path / "rnn"
    code, stdout, err = run_cli(
        [
            "finetune",
            "--arch",
            "rnn",
            "--width",
            "4",
            "--data",
            tmp_path / "mnist",
            "--quick",
            "--n-finetune",
            "32",
            "--potentials",
            "2-norm,3-norm",
            "--out",
            out,
            "--json",
        ],
        capsys,
    )
    assert code == 0, err
    summary = json.loads(stdout)
    assert summary["data"].startswith("MNIST train")
    assert summary["layers"] == ["rnn.weight_ih_l0", "rnn.weight_hh_l0"]
    assert summary["n_finetune"] == 32
