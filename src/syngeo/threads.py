"""One thread policy for the whole package.

The problems syngeo solves are mostly small (matrices of tens to thousands of rows): there,
multi-threaded BLAS and torch kernels spend most of their time synchronising, several times over
on a loaded machine (measured on a 2-core machine: a 35 x 70 by 70 x 70 product took 12 ms with
2 threads vs 0.03 ms with 1; a 1000-weight regression cell 7x longer with 2 threads). Parallelism
comes from running independent cells side by side instead (:mod:`syngeo.app.sweep`).

:func:`limit_threads` is the context manager for a block of work; :func:`limit_process_threads`
is for a worker process that runs nothing else.

Examples
--------
>>> import torch
>>> before = torch.get_num_threads()
>>> with limit_threads(1):
...     torch.get_num_threads()
1
>>> torch.get_num_threads() == before
True
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import torch
from threadpoolctl import threadpool_limits

from syngeo.validation import as_positive_int

__all__ = ["THREAD_VARIABLES", "limit_process_threads", "limit_threads"]

#: Environment variables read by OpenMP and the BLAS libraries when they start.
THREAD_VARIABLES = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
)


@contextlib.contextmanager
def limit_threads(n: int = 1) -> Iterator[None]:
    """Run the block with ``n`` torch intra-op threads and ``n`` BLAS threads; restore afterwards."""
    n = as_positive_int(n, "n")
    saved = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        with threadpool_limits(limits=n):
            yield
    finally:
        torch.set_num_threads(saved)


def limit_process_threads(n: int = 1) -> int:
    """For a worker process: ``n`` threads from now on, for libraries loaded now or later.

    Sets the environment variables (read by libraries loaded later), torch's intra-op threads
    and the limits of BLAS libraries already loaded. Returns the process id (handy as a pool
    initialiser's result).
    """
    n = as_positive_int(n, "n")
    for var in THREAD_VARIABLES:
        os.environ[var] = str(n)
    torch.set_num_threads(n)
    threadpool_limits(limits=n)
    return os.getpid()
