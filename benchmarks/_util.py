"""Small timing helpers shared by the benchmarks.

Every benchmark measures its baseline in the same run and reports ratios, so numbers taken on a
loaded machine stay comparable. The API here is stable: ``timeit(fn, repeat, warmup)`` and
``print_ratio(...)``.

Example
-------
>>> import time
>>> t = timeit(lambda: time.sleep(0.001), repeat=3, warmup=1)
>>> t > 0
True
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

__all__ = ["print_ratio", "sync", "timeit"]


def sync(device: Any = None) -> None:
    """Wait for queued work on ``device`` (a no-op on CPU or when torch is absent)."""
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a hard dependency of syngeo
        return
    if device is not None and torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def timeit(
    fn: Callable[[], Any],
    repeat: int = 5,
    warmup: int = 1,
    *,
    device: Any = None,
    clock: Callable[[], float] = time.perf_counter,
) -> float:
    """Median wall-clock seconds of ``fn()`` over ``repeat`` calls, after ``warmup`` calls.

    Parameters
    ----------
    fn
        Zero-argument callable to time.
    repeat
        Number of timed calls (>= 1); the median is returned, which is robust to the odd slow
        call on a shared machine.
    warmup
        Untimed calls made first (>= 0): first-call allocations, caches, lazy initialisation.
    device
        If a CUDA device is given, each call is bracketed by ``torch.cuda.synchronize``.
    clock
        Time source: wall clock by default; ``time.process_time`` (CPU seconds of this process)
        is steadier on a machine shared with other jobs when torch runs one thread.

    Returns
    -------
    float
        Median seconds per call.
    """
    if isinstance(repeat, bool) or not isinstance(repeat, int) or repeat < 1:
        raise ValueError(f"Invalid repeat value: {repeat!r}; use an integer >= 1")
    if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
        raise ValueError(f"Invalid warmup value: {warmup!r}; use an integer >= 0")
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(repeat):
        start = clock()
        fn()
        sync(device)
        times.append(clock() - start)
    return statistics.median(times)


def print_ratio(
    name: str,
    seconds: float,
    baseline_seconds: float,
    *,
    target: float | None = None,
    width: int = 28,
) -> float:
    """Print one table row ``name  seconds  ratio  [PASS|MISS ≤ target]`` and return the ratio.

    Parameters
    ----------
    name
        Row label.
    seconds, baseline_seconds
        Measured time and the baseline measured in the same run (both > 0).
    target
        Optional upper bound on the ratio; prints PASS or MISS (never raises).
    width
        Column width of the label.

    Returns
    -------
    float
        ``seconds / baseline_seconds``.
    """
    if not baseline_seconds > 0:
        raise ValueError(f"Invalid baseline time: {baseline_seconds!r}; it must be > 0")
    ratio = seconds / baseline_seconds
    verdict = ""
    if target is not None:
        verdict = f"{'PASS' if ratio <= target else 'MISS'} (target <= {target:g}x)"
    print(f"{name:<{width}} {seconds * 1e3:10.2f} ms {ratio:8.3f}x  {verdict}".rstrip())
    return ratio
