"""Wall time of the Fig. 3A / Fig. 6 reproduction: quick presets end to end, full protocol estimated.

Targets (issue: performance): the full Fig. 3A/6 protocol (3 potentials x 2 alpha x 2 correlation
powers x 10 widths x 30 seeds = 1200 cells) in <= 20 min on a 2-core machine with ``--workers 2``,
and ``syngeo reproduce fig3a --quick`` / ``fig6 --quick`` in <= 60 s each.

What is measured, in one run (so the numbers share the machine's load):

1. ``syngeo reproduce fig3a --quick`` and ``fig6 --quick`` as subprocesses (start-up, imports,
   sweep, figures, report included), into a temporary folder: the default command (in-process)
   and with ``--workers``.
2. A representative sample of the full protocol: every (alpha, power, width) cell for
   ``--sample-seeds`` seeds (default 1; 40 cells), through :func:`syngeo.app.sweep.run_sweep` with
   ``--workers`` processes. All seeds of a cell cost the same on average, so the full protocol
   takes about ``30 / sample_seeds`` times as long: that extrapolation is printed against the
   20-min target.
3. Baseline: generating the same sample's inputs alone (``regression_problem``, one process) —
   the part of a cell that does not depend on the solver; the ratio says how much the solves add.

``--full`` also runs the whole protocol once (about half an hour on an idle 2-core machine) and
prints its wall time.

Usage::

    .venv/bin/python benchmarks/bench_fig3a.py [--workers 2] [--sample-seeds 1] [--full]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _util import print_ratio

QUICK_TARGET_S = 60.0
FULL_TARGET_S = 20 * 60.0


def _syngeo_command() -> list[str]:
    exe = Path(sys.executable).with_name("syngeo")
    if exe.exists():
        return [str(exe)]
    return [sys.executable, "-c", "from syngeo.app.cli import main; main()"]


def time_quick(name: str, workers: int, tmp: Path) -> float:
    out = tmp / f"quick-{name}"
    argv = [*_syngeo_command(), "reproduce", name, "--quick", "--out", str(out), "--quiet"]
    if workers > 1:
        argv += ["--workers", str(workers)]
    start = time.perf_counter()
    subprocess.run(argv, check=True)
    return time.perf_counter() - start


def time_sample(workers: int, sample_seeds: int, tmp: Path) -> tuple[float, float, int, object]:
    from syngeo.app.experiments.regression import Fig6Config, regression_problem
    from syngeo.app.sweep import run_sweep

    config = replace(Fig6Config(), n_seeds=sample_seeds)
    start = time.perf_counter()
    result = run_sweep("fig6", config, tmp / "sample", workers=workers, quiet=True)
    sweep_s = time.perf_counter() - start

    start = time.perf_counter()
    for width in config.widths:
        for alpha in config.alphas:
            for power in config.powers:
                for seed in range(sample_seeds):
                    regression_problem(width, alpha, power, seed, base_seed=config.seed)
    data_s = time.perf_counter() - start
    return sweep_s, data_s, result.n_cells, result.table


def time_full(workers: int, tmp: Path) -> float:
    from syngeo.app.experiments.regression import Fig6Config
    from syngeo.app.sweep import run_sweep

    start = time.perf_counter()
    run_sweep("fig6", Fig6Config(), tmp / "full", workers=workers, quiet=False)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--sample-seeds", type=int, default=1)
    parser.add_argument("--skip-quick", action="store_true")
    parser.add_argument("--full", action="store_true", help="also run the whole protocol once")
    args = parser.parse_args()

    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory(prefix="syngeo-bench-") as name:
        tmp = Path(name)
        if not args.skip_quick:
            for fig in ("fig3a", "fig6"):
                for workers in sorted({1, args.workers}):
                    seconds = time_quick(fig, workers, tmp / f"w{workers}")
                    verdict = "PASS" if seconds <= QUICK_TARGET_S else "MISS"
                    print(
                        f"syngeo reproduce {fig} --quick --workers {workers}: "
                        f"{seconds:6.1f} s  {verdict} (target <= {QUICK_TARGET_S:.0f} s)"
                    )

        sweep_s, data_s, n_cells, table = time_sample(args.workers, args.sample_seeds, tmp)
        per_seed = sweep_s / args.sample_seeds
        estimate = per_seed * 30
        print(
            f"full-protocol sample: {n_cells} cells ({args.sample_seeds} seed(s)), "
            f"--workers {args.workers}: {sweep_s:.1f} s"
        )
        print_ratio("sample sweep vs inputs only", sweep_s, data_s, width=30)
        print_ratio("inputs only (baseline)", data_s, data_s, width=30)
        verdict = "PASS" if estimate <= FULL_TARGET_S else "MISS"
        print(
            f"estimated full protocol (30 seeds, 1200 cells): {estimate / 60:.1f} min  {verdict} "
            f"(target <= {FULL_TARGET_S / 60:.0f} min)"
        )
        by_potential = table.groupby("potential")["solve_seconds"].sum()
        for pot, seconds in by_potential.items():
            print(f"  solver time in the sample, {pot:>6}: {seconds:7.1f} s (summed over workers)")
        widest = table[table.width == table.width.max()]
        print(
            "  widest cells (D = {}): Newton iterations per potential: {}".format(
                int(table.width.max()),
                widest.groupby("potential")["n_iter"].mean().round(1).to_dict(),
            )
        )
        if args.full:
            seconds = time_full(args.workers, tmp)
            verdict = "PASS" if seconds <= FULL_TARGET_S else "MISS"
            print(
                f"full protocol, measured: {seconds / 60:.1f} min  {verdict} "
                f"(target <= {FULL_TARGET_S / 60:.0f} min)"
            )


if __name__ == "__main__":
    main()
