"""Benchmark: geometry inference on 2.5·10⁷ synapse pairs (a ResNet-50) with the 21 default candidates.

Target (issue 13, item 3): ``infer_geometry`` with the default 21 candidates and refinement
(likelihood estimator, refined p and likelihood-ratio interval; no bootstrap) in under 30 s on a
2-core machine. Every time is printed with its ratio to a baseline measured in the same run:

* one pass computing ``log|w|`` of the ``after`` weights (``np.log(np.abs(w))``, the cheapest
  full pass over the data that the inference itself makes): hardware-normalised cost;
* (full run) the previous implementation, i.e. the same inference with the exact, comparison-
  based CDF kernel of :func:`syngeo.gaussianity.standardised_cdf_distance` called once per
  centring instead of the binned one-pass kernel: the speed-up of this change.

Wall and CPU seconds of this process are printed with the load average: on a shared machine the
wall time moves with the load (the CPU time much less), so read the ratios with it.

``--torch`` also times torch tensors as input: CPU tensors (which take the NumPy path), the torch
kernels forced on the CPU (about 6x the NumPy CPU time at 2.5·10⁷; minutes on a busy machine), and
a CUDA device when one is available.
``--noise-n N`` (full run; default 10^5) times the errors-in-variables estimator
(``infer_geometry(noise=0.05)``, issue 9, item 5: under a minute on 2 cores for 10^5 synapses)
against the exact-weight likelihood on the same data (``--noise-n 0`` skips it).

Run: ``.venv/bin/python benchmarks/bench_inference.py [--quick] [--n 25000000] [--torch]``;
``--quick`` (about a minute) runs only the default configuration and the log-pass baseline.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _util import timeit
from syngeo import inference
from syngeo.gaussianity import standardised_cdf_distance
from syngeo.inference import default_candidates, infer_geometry
from syngeo.potentials import PNorm

#: Parameters of a ResNet-50 (25.6 M; the issue's "2.5·10⁷ weights").
RESNET50_PARAMS = 25_557_032
TARGET_S = 30.0


def synthetic_pairs(n: int, p: float = 3.0, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """w0 ~ N(0, 1/100); Gaussian change in the dual space of the p-norm (docs/theory.md §4 protocol)."""
    g = np.random.default_rng(seed)
    phi = PNorm(p)
    w0 = g.normal(0.0, 0.1, n)
    u = phi.grad(w0) + 0.1 * float(phi.grad(np.array(0.1))) * g.normal(size=n)
    return w0, phi.grad_inverse(u)


def previous_cdf_kernel(delta, t, scale, shifts=(0.0,)):
    """The previous implementation: the exact kernel, one pass per centring (host arrays)."""
    return [standardised_cdf_distance(delta, t, s, scale) for s in shifts]


def timed(fn) -> tuple[float, float, object]:
    """(wall s, CPU s of this process, result) of one call."""
    w0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - w0, time.process_time() - c0, out


def load() -> str:
    return "load average " + ", ".join(f"{x:.1f}" for x in os.getloadavg())


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=RESNET50_PARAMS)
    ap.add_argument("--quick", action="store_true", help="default configuration only (~1 min)")
    ap.add_argument("--torch", action="store_true", help="also time torch tensors as input")
    ap.add_argument("--noise-n", type=int, default=100_000)
    ap.add_argument("--skip-exact", action="store_true", help="only the noise benchmark")
    args = ap.parse_args(argv)
    if args.skip_exact:
        noise_benchmark(args.noise_n, 1)
        return
    n = args.n
    t0 = time.perf_counter()
    before, after = synthetic_pairs(n)
    print(
        f"n = {n:,} synapse pairs, {len(default_candidates())} candidates, no bootstrap "
        f"(generated in {time.perf_counter() - t0:.1f} s; {load()})"
    )
    t_log = timeit(lambda: np.log(np.abs(after)), repeat=3, warmup=1)
    configs = [("likelihood, refined + LR CI (default)", {})]
    if not args.quick:
        configs += [
            ("likelihood, grid only", dict(refine=False)),
            ("cdf, grid only", dict(estimator="cdf", refine=False)),
            ("cdf, refined", dict(estimator="cdf", refine=True)),
        ]
    rows = []
    for name, kwargs in configs:
        wall, cpu, fit = timed(
            lambda kw=kwargs: infer_geometry(before, after, n_bootstrap=0, rng=0, **kw)
        )
        rows.append((name, wall, cpu, fit))
    if not args.quick:
        current = inference.binned_cdf_distances
        inference.binned_cdf_distances = previous_cdf_kernel
        try:
            wall, cpu, fit = timed(lambda: infer_geometry(before, after, n_bootstrap=0, rng=0))
        finally:
            inference.binned_cdf_distances = current
        rows.append(("previous implementation (default)", wall, cpu, fit))
    if args.torch:
        rows += torch_rows(before, after)
    print(f"baseline: one log|w| pass over {n:,} weights = {t_log * 1e3:.0f} ms")
    print(f"{'configuration':<40} {'wall s':>7} {'CPU s':>7} {'x log pass':>11}  best, p interval")
    for name, wall, cpu, fit in rows:
        print(
            f"{name:<40} {wall:7.2f} {cpu:7.2f} {wall / t_log:10.0f}x  {fit.best}, {fit.p_interval}"
        )
    default_wall = rows[0][1]
    verdict = "PASS" if default_wall <= TARGET_S else "MISS"
    print(f"default configuration: {default_wall:.1f} s wall, target <= {TARGET_S:g} s: {verdict}")
    if not args.quick:
        prev = next(r for r in rows if r[0].startswith("previous"))
        print(
            f"speed-up over the previous implementation: {prev[1] / default_wall:.2f}x wall, "
            f"{prev[2] / rows[0][2]:.2f}x CPU"
        )
    print(f"({load()}; 2-core target: CPU s is the time on an idle machine)")
    if not args.quick and args.noise_n > 0:
        noise_benchmark(args.noise_n, 1)


def torch_rows(before: np.ndarray, after: np.ndarray) -> list:
    """Torch tensors as input: on the CPU (the NumPy path: a view), the torch kernels forced on
    the CPU (what a device runs; slow there), and a CUDA device when one is available."""
    import torch

    cases = [("cpu", False), ("cpu", True)]
    if torch.cuda.is_available():
        cases.append(("cuda", False))
    out = []
    for dev, forced in cases:
        b, a = torch.from_numpy(before).to(dev), torch.from_numpy(after).to(dev)

        def run(b=b, a=a, dev=dev):
            fit = infer_geometry(b, a, n_bootstrap=0, rng=0)
            if dev == "cuda":
                torch.cuda.synchronize()
            return fit

        current = inference._reduction_device
        if forced:
            inference._reduction_device = lambda inputs, device=None: torch.device("cpu")
        try:
            wall, cpu, fit = timed(run)
        finally:
            inference._reduction_device = current
        name = {
            ("cpu", False): "torch tensors on cpu (NumPy path)",
            ("cpu", True): "torch kernels forced on cpu",
        }.get((dev, forced), f"torch tensors on {dev}")
        out.append((name, wall, cpu, fit))
    return out


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
