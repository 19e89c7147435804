"""Recovery study: how often does each estimator find the true plasticity geometry?

Synthetic weights with a known truth (``syngeo.simulate_change``, the paper's §4.2
protocol: w0 ~ N(0, 1/100) or a signed log-normal with the same |w0| mean and variance, and a
Gaussian change of 0.1·|∇φ(0.1)| in the dual space of the true potential φ), for

* true potential φ ∈ {2-norm, 3-norm, 1.5-norm, NE},
* n ∈ {300, 1000, 10^4, 10^5, 10^6} synapses (fewer seeds for the large n),
* without and with 3 % multiplicative measurement noise on the observed before and after weights,

then ``infer_geometry`` with both estimators (default candidates NE, 1.1 … 3.0, refined, no
bootstrap). Raw results go to ``docs/data/recovery.csv``; the summary table is printed as
markdown and, with ``--update-docs``, written into ``docs/inference.md`` between the markers
``<!-- recovery-table:start -->`` and ``<!-- recovery-table:end -->``.

Run: ``.venv/bin/python scripts/recovery_study.py [--quick] [--update-docs]`` (the full run takes
about 5–10 minutes on one core; ``--quick`` under a minute).

``--noise-model`` runs the measurement-noise study instead: n = 2000 synapses, relative noise
5 % (25 runs per truth), 10 % and 20 % (8 runs per truth), on both snapshots; the
errors-in-variables likelihood (``infer_geometry(noise=σ)``, σ known) beside the exact-weight
likelihood on the same data. Raw results: ``docs/data/recovery_noise.csv``; the table goes
between ``<!-- noise-recovery-table:start -->`` and ``<!-- noise-recovery-table:end -->``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from syngeo.inference import infer_geometry
from syngeo.potentials import potential
from syngeo.simulate import simulate_change

ROOT = Path(__file__).resolve().parents[1]
TRUTHS = ("2-norm", "3-norm", "1.5-norm", "ne")
INITS = ("normal", "lognormal")
NOISES = (0.0, 0.03)
ESTIMATORS = ("likelihood", "cdf")
#: seeds per n (fewer where one fit takes seconds)
SEEDS = {300: 20, 1_000: 20, 10_000: 10, 100_000: 3, 1_000_000: 2}
QUICK_SEEDS = {300: 8, 1_000: 8, 10_000: 3}
MARK_START, MARK_END = "<!-- recovery-table:start -->", "<!-- recovery-table:end -->"


def run_case(truth: str, init: str, noise: float, n: int, seed: int) -> list[dict]:
    """Both estimators on one synthetic data set; one row per estimator."""
    phi = potential(truth)
    ti, ii, ni = TRUTHS.index(truth), INITS.index(init), NOISES.index(noise)
    rng = np.random.default_rng([2024, ti, ii, ni, n, seed])
    sim = simulate_change(phi, n, init=init, noise=noise, rng=rng)
    true_p = np.nan if phi.parameter is None else phi.parameter
    rows = []
    for estimator in ESTIMATORS:
        t0 = time.perf_counter()
        fit = infer_geometry(
            sim.before, sim.after, estimator=estimator, n_bootstrap=0, refine=True, rng=seed
        )
        seconds = time.perf_counter() - t0
        grid = fit.ranking[~fit.ranking["refined"].astype(bool) & fit.ranking["rank"].notna()]
        grid_best = grid.iloc[0]
        best_p = np.nan if fit.best_p is None else fit.best_p
        class_ok = (fit.best_p is None) == np.isnan(true_p)
        err = abs(best_p - true_p)
        ci = fit.p_interval if estimator == "likelihood" else None
        rows.append(
            {
                "truth": phi.name,
                "init": init,
                "noise": noise,
                "n": n,
                "seed": seed,
                "estimator": estimator,
                "best": fit.best,
                "best_p": best_p,
                "grid_best": grid_best["candidate"],
                "class_ok": bool(class_ok),
                "hit": bool(class_ok and (np.isnan(true_p) or err <= 0.1)),
                "grid_exact": grid_best["candidate"] == phi.name,
                "abs_err": err,
                "ci_low": np.nan if ci is None else ci.low,
                "ci_high": np.nan if ci is None else ci.high,
                "ci_covers": (
                    np.nan if ci is None or np.isnan(true_p) else float(ci.low <= true_p <= ci.high)
                ),
                "ne_ruled_out": fit.ne_ruled_out,
                "seconds": seconds,
            }
        )
    return rows


def summarise(df: pd.DataFrame) -> pd.DataFrame:
    """One row per (truth, noise, n, estimator), pooling both initial distributions."""
    g = df.groupby(["truth", "noise", "n", "estimator"], sort=False)
    out = g.agg(
        runs=("hit", "size"),
        hit=("hit", "mean"),
        grid_exact=("grid_exact", "mean"),
        class_ok=("class_ok", "mean"),
        median_abs_err=("abs_err", "median"),
        ci_covers=("ci_covers", "mean"),
        seconds=("seconds", "median"),
    )
    return out.reset_index()


def markdown_table(summary: pd.DataFrame) -> str:
    """Rows: truth × n; columns: estimator × noise, each 'hit % · grid-exact % · median |Δp|'."""
    lines = [
        "| truth | n | runs | likelihood, no noise | likelihood, 3 % noise | cdf, no noise "
        "| cdf, 3 % noise | LR-CI coverage (no noise / 3 %) |",
        "| --- | ---: | ---: | --- | --- | --- | --- | --- |",
    ]
    s = summary.set_index(["truth", "n", "estimator", "noise"])
    for truth in dict.fromkeys(summary["truth"]):
        for n in sorted(summary.loc[summary["truth"] == truth, "n"].unique()):
            cells, runs = [], None
            for est in ESTIMATORS:
                for noise in NOISES:
                    key = (truth, n, est, noise)
                    if key not in s.index:
                        cells.append("—")
                        continue
                    r = s.loc[key]
                    runs = int(r["runs"])
                    err = "" if np.isnan(r["median_abs_err"]) else f" · {r['median_abs_err']:.3f}"
                    cells.append(f"{100 * r['hit']:.0f} · {100 * r['grid_exact']:.0f}{err}")
            cov = []
            for noise in NOISES:
                key = (truth, n, "likelihood", noise)
                v = s.loc[key, "ci_covers"] if key in s.index else np.nan
                cov.append("—" if np.isnan(v) else f"{100 * v:.0f} %")
            lines.append(
                f"| {truth} | {n:,} | {runs} | " + " | ".join(cells) + f" | {' / '.join(cov)} |"
            )
    return "\n".join(lines)


def update_docs(table: str, path: Path, marks: tuple[str, str] = (MARK_START, MARK_END)) -> None:
    text = path.read_text(encoding="utf-8")
    MARK_START, MARK_END = marks
    if MARK_START not in text or MARK_END not in text:
        raise SystemExit(f"{path} lacks the markers {MARK_START} / {MARK_END}")
    head, rest = text.split(MARK_START, 1)
    _, tail = rest.split(MARK_END, 1)
    path.write_text(f"{head}{MARK_START}\n{table}\n{MARK_END}{tail}", encoding="utf-8")


NOISE_LEVELS = {0.05: 25, 0.10: 8, 0.20: 8}
NOISE_N = 2000
NOISE_MARKS = ("<!-- noise-recovery-table:start -->", "<!-- noise-recovery-table:end -->")


def run_noise_case(truth: str, noise: float, seed: int, n: int = NOISE_N) -> list[dict]:
    """The errors-in-variables and the exact-weight likelihood on one noisy data set."""
    phi = potential(truth)
    init = INITS[seed % 2]
    rng = np.random.default_rng([2026, TRUTHS.index(truth), round(1000 * noise), n, seed])
    sim = simulate_change(phi, n, init=init, noise=noise, rng=rng)
    true_p = np.nan if phi.parameter is None else phi.parameter
    rows = []
    for model, arg in (("errors-in-variables", noise), ("exact weights", None)):
        t0 = time.perf_counter()
        fit = infer_geometry(sim.before, sim.after, n_bootstrap=0, rng=seed, noise=arg)
        seconds = time.perf_counter() - t0
        best_p = np.nan if fit.best_p is None else fit.best_p
        class_ok = (fit.best_p is None) == np.isnan(true_p)
        ci = fit.p_interval
        rows.append(
            {
                "truth": phi.name,
                "init": init,
                "noise": noise,
                "n": n,
                "seed": seed,
                "model": model,
                "best": fit.best,
                "best_p": best_p,
                "hit": bool(class_ok and (np.isnan(true_p) or abs(best_p - true_p) <= 0.1)),
                "abs_err": abs(best_p - true_p),
                "ci_low": np.nan if ci is None else ci.low,
                "ci_high": np.nan if ci is None else ci.high,
                "ci_covers": (
                    np.nan if ci is None or np.isnan(true_p) else float(ci.low <= true_p <= ci.high)
                ),
                "seconds": seconds,
            }
        )
    return rows


def noise_table(df: pd.DataFrame) -> str:
    """Rows: truth × noise; per model 'hit % · median |Δp| · LR-CI coverage'."""
    lines = [
        "| truth | noise | runs | errors-in-variables: hit % · median abs. error · 95 % CI "
        "coverage | exact-weight likelihood on the same data |",
        "| --- | ---: | ---: | --- | --- |",
    ]
    for truth in dict.fromkeys(df["truth"]):
        for noise in sorted(df.loc[df["truth"] == truth, "noise"].unique()):
            cells = []
            sub = df[(df["truth"] == truth) & (df["noise"] == noise)]
            for model in ("errors-in-variables", "exact weights"):
                m = sub[sub["model"] == model]
                err = m["abs_err"].median()
                cov = m["ci_covers"].mean()
                cells.append(
                    f"{100 * m['hit'].mean():.0f} %"
                    + ("" if np.isnan(err) else f" · {err:.3f}")
                    + ("" if np.isnan(cov) else f" · {100 * cov:.0f} %")
                )
            runs = len(sub) // 2
            lines.append(f"| {truth} | {100 * noise:.0f} % | {runs} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def noise_main(args: argparse.Namespace) -> None:
    rows: list[dict] = []
    t0 = time.perf_counter()
    levels = {0.05: 4, 0.2: 2} if args.quick else NOISE_LEVELS
    for noise, runs in levels.items():
        for truth in TRUTHS:
            for seed in range(runs):
                rows.extend(run_noise_case(truth, noise, seed))
            print(
                f"noise {noise:.2f} {truth}: done ({time.perf_counter() - t0:6.1f} s)",
                file=sys.stderr,
            )
    df = pd.DataFrame(rows)
    out = ROOT / "docs" / "data" / "recovery_noise.csv" if args.out is None else args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(out, index=False)
    table = noise_table(df)
    print(table)
    if args.update_docs:
        update_docs(table, ROOT / "docs" / "inference.md", NOISE_MARKS)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="few seeds, n <= 10^4 (under a minute)")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument(
        "--noise-model", action="store_true", help="the measurement-noise study (see above)"
    )
    ap.add_argument(
        "--update-docs", action="store_true", help="write the table into docs/inference.md"
    )
    args = ap.parse_args(argv)
    if args.noise_model:
        noise_main(args)
        return
    if args.out is None:
        args.out = ROOT / "docs" / "data" / "recovery.csv"
    seeds = QUICK_SEEDS if args.quick else SEEDS
    rows: list[dict] = []
    t0 = time.perf_counter()
    for n, n_seeds in seeds.items():
        for truth in TRUTHS:
            for init in INITS:
                for noise in NOISES:
                    for seed in range(n_seeds):
                        rows.extend(run_case(truth, init, noise, n, seed))
        print(f"n = {n:>9,}: done ({time.perf_counter() - t0:6.1f} s)", file=sys.stderr)
    df = pd.DataFrame(rows)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(args.out, index=False)
    table = markdown_table(summarise(df))
    print(table)
    if args.update_docs:
        update_docs(table, ROOT / "docs" / "inference.md")
    print(
        f"\n{len(df)} fits in {time.perf_counter() - t0:.0f} s; raw results: {args.out}",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
