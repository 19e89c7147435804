"""``syngeo infer --noise / --noise-abs / --replicates`` end to end."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

import syngeo
from clirun import run_cli


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("noisy")
    sim = syngeo.simulate_change("3-norm", 1000, noise=0.05, init="lognormal", rng=0)
    np.save(d / "b.npy", sim.before)
    np.save(d / "a.npy", sim.after)
    g = np.random.default_rng(1)
    w = np.abs(sim.before)
    pd.DataFrame(
        {"m1": w * (1 + 0.05 * g.normal(size=1000)), "m2": w * (1 + 0.05 * g.normal(size=1000))}
    ).to_csv(d / "rep.csv", index=False)
    return d


def test_noise_flag_reaches_the_estimator(files, capsys):
    args = [files / "b.npy", files / "a.npy", "-b", "0", "--candidates", "2-norm,3-norm", "--json"]
    code, out, err = run_cli(["infer", *args, "--noise", "5%"], capsys)
    assert code == 0, err
    summary = json.loads(out)
    assert summary["settings"]["noise"]["sigma"] == 0.05
    fit = syngeo.infer_geometry(
        np.load(files / "b.npy"),
        np.load(files / "a.npy"),
        ["2-norm", "3-norm"],
        n_bootstrap=0,
        refine=False,  # candidates given: only those are ranked (the summary says so)
        rng=0,
        noise=0.05,
    )
    assert summary["best"] == fit.best and summary["settings"]["refine"] is False
    code, out, _ = run_cli(["infer", *args], capsys)
    assert code == 0 and "noise" not in json.loads(out)["settings"]


def test_replicates_estimate_the_noise(files, capsys):
    args = [files / "b.npy", files / "a.npy", "-b", "0", "--candidates", "2-norm,3-norm", "--json"]
    code, out, err = run_cli(["infer", *args, "--replicates", files / "rep.csv"], capsys)
    assert code == 0, err
    noise = json.loads(out)["settings"]["noise"]
    assert noise["n_pairs"] == 1000 and noise["low"] < 0.05 < noise["high"]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--noise", "abc"], "bad noise"),
        (["--noise", "5%", "--noise-abs", "0.1"], "not both"),
        (["--noise", "5%", "--estimator", "cdf"], "likelihood estimator"),
        (["--replicates", "missing.csv"], "does not exist"),
        (["--noise", "80%"], "above 0.5"),
    ],
)
def test_bad_noise_input_is_one_line_and_exit_2(files, capsys, extra, message):
    code, _, err = run_cli(["infer", files / "b.npy", files / "a.npy", "-b", "0", *extra], capsys)
    assert code == 2
    assert message in err and len(err.strip().splitlines()) == 1
