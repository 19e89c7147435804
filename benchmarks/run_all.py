"""Run every benchmark in turn (``make bench``).

Each benchmark measures its own baseline in the same run and prints ratios against it; this
script only runs them one after the other as subprocesses, so that one benchmark's memory and
threads do not disturb the next. Extra arguments are not forwarded; run a benchmark directly for
its options (``python benchmarks/bench_optim.py --help``).
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

#: (script, arguments): the defaults of each benchmark, except the optimizer benchmark (its quick
#: set of optimizers and repeats) and the Cholesky baseline of the
#: correlated-input benchmark, which is extrapolated from a smaller size to keep the run short.
BENCHMARKS: list[tuple[str, list[str]]] = [
    ("bench_optim.py", ["--quick"]),
    ("bench_inference.py", []),
    ("bench_correlated.py", ["--quick"]),
    ("bench_solvers.py", []),
    ("bench_fig3a.py", []),
]


def main() -> int:
    failed = []
    for script, args in BENCHMARKS:
        print(f"\n=== {script} {' '.join(args)}", flush=True)
        start = time.perf_counter()
        rc = subprocess.call([sys.executable, str(HERE / script), *args])
        print(f"=== {script}: exit {rc} after {time.perf_counter() - start:.0f} s", flush=True)
        if rc != 0:
            failed.append(script)
    if failed:
        print(f"\nfailed: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
