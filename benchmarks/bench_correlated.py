"""FFT circulant-embedding sampling of Toeplitz-correlated inputs against dense Cholesky.

The Fig. 3A largest case: d = 2·10^4 inputs, n = ⌊d^0.75⌋ = 1681 samples. Both methods generate
the same thing, ``x = L z + u`` with ``L Lᵀ = C`` (Toeplitz, docs/theory.md §4) and uniform noise ``u``:

* FFT: :func:`syngeo.data.correlated.correlated_inputs` (``O(n d log d)``);
* Cholesky: build the dense ``d × d`` matrix, factorise it (``O(d³)``, part of generating the
  data), draw ``Z`` and form ``Z Lᵀ`` (``O(n d²)``), add the noise.

Target: FFT at least 50x faster. The dense baseline at d = 2·10^4 needs 3.2 GB and minutes;
``--quick`` measures it at a smaller ``d`` and extrapolates the factorisation by ``(d/d_q)³`` and
the product by ``(d/d_q)²`` (``n`` fixed), while the FFT sampler is always timed at the full size.

Run: ``python benchmarks/bench_correlated.py [--quick] [--threads 1]``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import scipy.linalg

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _util import print_ratio, timeit
from syngeo.data.correlated import (
    circulant_embedding,
    correlated_inputs,
    toeplitz_correlation_matrix,
)
from syngeo.threads import limit_threads


def cholesky_parts(n: int, d: int, power: float, seed: int) -> dict[str, float]:
    """Seconds for each part of the dense method: build C, factorise, Z Lᵀ, noise."""
    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()
    c = toeplitz_correlation_matrix(d, power)
    t1 = time.perf_counter()
    lower = scipy.linalg.cholesky(c, lower=True, overwrite_a=True, check_finite=False)
    del c
    t2 = time.perf_counter()
    z = rng.standard_normal((n, d))
    x = z @ lower.T
    t3 = time.perf_counter()
    x += rng.uniform(-0.5, 0.5, size=(n, d))
    t4 = time.perf_counter()
    return {"build": t1 - t0, "factor": t2 - t1, "product": t3 - t2, "noise": t4 - t3}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--d", type=int, default=20000, help="input dimension (default 2e4)")
    parser.add_argument("--n", type=int, default=None, help="samples (default floor(d^0.75))")
    parser.add_argument("--power", type=float, default=1.0)
    parser.add_argument("--quick", action="store_true", help="extrapolate Cholesky from --d-quick")
    parser.add_argument("--d-quick", type=int, default=4000)
    parser.add_argument("--threads", type=int, default=1, help="BLAS/FFT threads (default 1)")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    with limit_threads(args.threads):  # the package's one thread policy (BLAS and torch)
        measure(args)


def measure(args: argparse.Namespace) -> None:
    d = args.d
    n = args.n if args.n is not None else int(d**0.75)
    emb = circulant_embedding(d, args.power)
    print(f"d = {d}, n = {n}, power = {args.power:g}, threads = {args.threads}")
    print(f"embedding: {emb!r}")

    fft = timeit(
        lambda: correlated_inputs(n, d, args.power, rng=0, workers=args.threads),
        repeat=args.repeat,
        warmup=1,
    )

    if args.quick:
        dq = min(args.d_quick, d)
        parts = cholesky_parts(n, dq, args.power, seed=0)
        scale3, scale2, scale1 = (d / dq) ** 3, (d / dq) ** 2, d / dq
        chol = (
            parts["build"] * scale2
            + parts["factor"] * scale3
            + parts["product"] * scale2
            + parts["noise"] * scale1
        )
        label = f"cholesky (extrapolated from d={dq})"
        print(
            f"cholesky at d={dq}: "
            + ", ".join(f"{k} {v:.3f} s" for k, v in parts.items())
            + f"; extrapolated to d={d}: {chol:.1f} s"
        )
    else:
        parts = cholesky_parts(n, d, args.power, seed=0)
        chol = sum(parts.values())
        label = "cholesky (measured)"
        print("cholesky: " + ", ".join(f"{k} {v:.2f} s" for k, v in parts.items()))

    print()
    print_ratio(label, chol, chol, width=40)
    ratio = print_ratio("fft circulant embedding", fft, chol, target=1 / 50, width=40)
    verdict = "PASS" if ratio <= 1 / 50 else "MISS"
    print(f"\nFFT speed-up over Cholesky: {1 / ratio:.0f}x ({verdict}, target >= 50x)")


if __name__ == "__main__":
    main()
