"""Benchmark: geometry inference on 10^7 synapse pairs with the 21 default candidates.

Target (issue 2, item 6): at most 20 s without bootstrap on a 2-core machine. Times are printed
with ratios against baselines measured in the same run: one ``np.sort`` of the 10^7-element
array (what a sort-based CDF distance would pay per candidate) and the evaluation of one
candidate's CDF distance.

``--noise-n N`` (default 10^5) also times the errors-in-variables estimator
(``infer_geometry(noise=0.05)``, 5 % relative noise on both snapshots; issue 9, item 5: under a
minute on 2 cores for 10^5 synapses and 21 candidates) against the exact-weight likelihood on the
same data in the same run, and prints their ratio (``--noise-n 0`` skips it).

Run: ``.venv/bin/python benchmarks/bench_inference.py [--n 10000000] [--repeat 1] [--noise-n N]``
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _util import print_ratio, timeit
from syngeo.gaussianity import cdf_distance, dual_change
from syngeo.inference import default_candidates, infer_geometry
from syngeo.potentials import PNorm


def synthetic_pairs(n: int, p: float = 3.0, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """w0 ~ N(0, 1/100); Gaussian change in the dual space of the p-norm (docs/theory.md §4 protocol)."""
    g = np.random.default_rng(seed)
    phi = PNorm(p)
    w0 = g.normal(0.0, 0.1, n)
    u = phi.grad(w0) + 0.1 * float(phi.grad(np.array(0.1))) * g.normal(size=n)
    return w0, phi.grad_inverse(u)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10_000_000)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--noise-n", type=int, default=100_000)
    ap.add_argument("--skip-exact", action="store_true", help="only the noise benchmark")
    args = ap.parse_args(argv)
    if args.skip_exact:
        noise_benchmark(args.noise_n, args.repeat)
        return
    n, rep = args.n, args.repeat
    t0 = time.perf_counter()
    before, after = synthetic_pairs(n)
    print(
        f"n = {n:,} synapse pairs, {len(default_candidates())} candidates "
        f"(generated in {time.perf_counter() - t0:.1f} s)"
    )

    t_sort = timeit(lambda: np.sort(after), repeat=rep, warmup=0)
    delta = dual_change(before, after, "2.5-norm")
    t_one = timeit(lambda: cdf_distance(delta), repeat=rep, warmup=0)
    print(f"{'baseline':<28} {'time':>13} {'ratio':>9}")
    print_ratio("np.sort (baseline)", t_sort, t_sort)
    print_ratio("one cdf_distance", t_one, t_sort)

    results = {}
    for name, kwargs in [
        ("cdf, grid only", dict(estimator="cdf", refine=False)),
        ("cdf, refined", dict(estimator="cdf", refine=True)),
        ("likelihood, grid only", dict(estimator="likelihood", refine=False)),
        ("likelihood, refined + LR CI", dict(estimator="likelihood", refine=True)),
    ]:
        fit = None

        def run(kwargs=kwargs):
            nonlocal fit
            fit = infer_geometry(before, after, n_bootstrap=0, rng=0, **kwargs)

        t = timeit(run, repeat=rep, warmup=0)
        print_ratio(name, t, t_sort)
        results[name] = (t, fit)
    print()
    print(f"{'infer_geometry':<28} {'seconds':>8}  target <= 20 s")
    for name, (t, fit) in results.items():
        verdict = "PASS" if t <= 20 else "MISS"
        print(
            f"{name:<28} {t:8.2f}  {verdict}   best={fit.best}  per candidate "
            f"{t / len(fit.ranking):.3f} s = {t / len(fit.ranking) / t_one:.2f}x one cdf_distance"
        )
    if args.noise_n > 0:
        noise_benchmark(args.noise_n, rep)


def noise_benchmark(n: int, rep: int, sigma: float = 0.05) -> None:
    """Errors-in-variables vs exact-weight likelihood on the same noisy data (refined, LR CI)."""
    from syngeo.simulate import simulate_change

    sim = simulate_change("3-norm", n, noise=sigma, rng=0)
    fits = {}

    cpu = {}

    def run(noise):
        c0 = time.process_time()
        fits[noise] = infer_geometry(sim.before, sim.after, n_bootstrap=0, rng=0, noise=noise)
        cpu[noise] = time.process_time() - c0

    t_exact = timeit(lambda: run(None), repeat=rep, warmup=0)
    t_noise = timeit(lambda: run(sigma), repeat=rep, warmup=0)
    print()
    print(f"measurement noise: n = {n:,}, {sigma:.0%} relative, 21 candidates, refined + LR CI")
    print(f"{'estimator':<28} {'wall s':>8} {'CPU s':>8} {'ratio':>8}  target <= 60 s wall")
    for name, t, key in (
        ("exact weights", t_exact, None),
        ("errors-in-variables", t_noise, sigma),
    ):
        fit = fits[key]
        verdict = "" if key is None else ("PASS" if t <= 60 else "MISS")
        print(
            f"{name:<28} {t:8.2f} {cpu[key]:8.2f} {t / t_exact:8.1f}  {verdict:4}  "
            f"best={fit.best} p interval {fit.p_interval}"
        )
    print(f"(CPU seconds of this process, all threads; load average {os.getloadavg()[0]:.1f})")


if __name__ == "__main__":
    main()
