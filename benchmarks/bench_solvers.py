"""Cost of the exact implicit-bias solver on the Fig. 3A problem, against the p = 2 closed form.

Problem (docs/theory.md §4): ``X`` of ``N = ⌊D^α⌋`` Toeplitz-correlated inputs (power 1), labels ±1,
``w0 ~ N(0, 1/D)``. Baseline, measured in the same run: the minimum-norm closed form
``w = w0 + Xᵀ (X Xᵀ)⁻¹ (y − X w0)`` in NumPy float64 (``X @ X.T`` then ``numpy.linalg.solve``).
Rows: :func:`syngeo.bregman_projection` for the 2-norm, 3-norm and negative entropy, and
:func:`syngeo.linearized_change`, with Newton iterations, factorisations and CG iterations.

``--protocol`` times one seed of every (α, width) cell of the Fig. 3A sweep (10 widths from 1e2 to
2e4, α ∈ {0.5, 0.75}; data generation + the three potentials) and extrapolates to the full
protocol (× 30 seeds × 2 correlation powers) for a given number of workers, each using
``--threads`` BLAS threads.

Run: ``python benchmarks/bench_solvers.py [--quick] [--protocol] [--threads 1]``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _util import print_ratio, timeit
from syngeo.data.correlated import correlated_inputs
from syngeo.solvers import bregman_projection, linearized_change

POTENTIALS = ("2-norm", "3-norm", "ne")


def _limit_threads(threads: int) -> None:
    torch.set_num_threads(threads)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - scikit-learn brings it
        return
    threadpool_limits(threads)


def make_problem(d: int, alpha: float, power: float, seed: int):
    rng = np.random.default_rng(seed)
    n = int(d**alpha)
    X = correlated_inputs(n, d, power, rng=rng)
    y = rng.choice([-1.0, 1.0], size=n)
    w0 = rng.normal(0.0, d**-0.5, size=d)
    return X, y, w0


def closed_form_p2(X: np.ndarray, y: np.ndarray, w0: np.ndarray) -> np.ndarray:
    return w0 + X.T @ np.linalg.solve(X @ X.T, y - X @ w0)


def single_size(d: int, alpha: float, repeat: int) -> None:
    X, y, w0 = make_problem(d, alpha, 1.0, seed=0)
    n = X.shape[0]
    print(f"D = {d}, N = {n} (alpha = {alpha:g}), power 1, threads = {torch.get_num_threads()}")
    base = timeit(lambda: closed_form_p2(X, y, w0), repeat=repeat, warmup=1)
    print_ratio("p=2 closed form (numpy)", base, base, width=34)
    for name in POTENTIALS:
        sol = bregman_projection(X, y, w0, name)
        t = timeit(lambda name=name: bregman_projection(X, y, w0, name), repeat=repeat, warmup=0)
        print_ratio(f"bregman_projection {name}", t, base, width=34)
        print(
            f"{'':34} n_iter={sol.n_iter} factorizations={sol.n_factorizations} "
            f"updates={sol.n_updates} cg={sol.n_cg} residual={sol.constraint_residual:.1e}"
        )
    sol2 = bregman_projection(X, y, w0, "2-norm").weights
    print(
        f"{'':34} max |2-norm − closed form| = {np.abs(sol2 - closed_form_p2(X, y, w0)).max():.1e}"
    )
    t = timeit(lambda: linearized_change(X, y, w0, "ne"), repeat=repeat, warmup=0)
    print_ratio("linearized_change ne", t, base, width=34)


def protocol(workers: int, seeds: int, powers: int) -> None:
    widths = np.unique(np.logspace(2, np.log10(2e4), 10).astype(int))
    print(f"one seed per cell, power 1, threads = {torch.get_num_threads()}")
    print(
        f"{'alpha':>5} {'D':>6} {'N':>5} {'data s':>8} " + " ".join(f"{p:>8}" for p in POTENTIALS)
    )
    total = 0.0
    for alpha in (0.5, 0.75):
        for d in widths:
            t0 = time.perf_counter()
            X, y, w0 = make_problem(int(d), alpha, 1.0, seed=0)
            cost = [time.perf_counter() - t0]
            for name in POTENTIALS:
                t0 = time.perf_counter()
                bregman_projection(X, y, w0, name)
                cost.append(time.perf_counter() - t0)
            total += sum(cost)
            print(
                f"{alpha:5.2f} {int(d):6d} {X.shape[0]:5d} {cost[0]:8.2f} "
                + " ".join(f"{c:8.2f}" for c in cost[1:])
            )
    full = total * seeds * powers
    print(
        f"\none seed, one power: {total:.1f} s; x {seeds} seeds x {powers} powers = {full:.0f} s "
        f"of work; with {workers} workers: {full / workers / 60:.1f} min (target <= 20 min)"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--d", type=int, default=20000)
    parser.add_argument("--alpha", type=float, default=0.75)
    parser.add_argument("--quick", action="store_true", help="D = 5000 instead of 2e4")
    parser.add_argument("--protocol", action="store_true", help="time every Fig. 3A cell once")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seeds", type=int, default=30)
    parser.add_argument("--powers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="BLAS threads per worker")
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args(argv)
    _limit_threads(args.threads)
    if args.protocol:
        protocol(args.workers, args.seeds, args.powers)
    else:
        single_size(5000 if args.quick else args.d, args.alpha, args.repeat)


if __name__ == "__main__":
    main()
