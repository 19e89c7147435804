"""Resumable sweeps: an experiment's config expands to cells, each cell's rows are stored atomically.

An experiment (see :mod:`syngeo.app.experiments` for the contract) turns its config into independent
*cells* (JSON-serialisable dicts) and computes the tidy rows of one cell with
``run_cell(config, cell)``. :func:`run_sweep` runs the cells that are not finished yet and stores
each one as soon as it is done, so an interrupted sweep (Ctrl-C, a crash, ``kill -9``) loses at most
the cells that were being computed, and rerunning the same command continues where it stopped.

Folder layout
-------------
``OUT/manifest.json``
    The experiment's name, its config (``dataclasses.asdict``), the syngeo version that created
    the folder, the experiment's definition hash (:meth:`Experiment.definition_hash
    <syngeo.app.experiments.base.Experiment.definition_hash>`: its code and Config fields), the
    number of cells and the creation time. A folder whose manifest names another experiment or
    config is an error unless ``force=True`` (which discards its cells); so is one written by
    another syngeo version or another definition of the experiment, since its cells were computed
    by different code and must not be mixed with new ones.
``OUT/cache/``
    Files that cells share and may reuse (a network pretrained once): experiments reach the
    folder through :func:`cache_dir` while a cell runs. ``force=True`` empties it with the cells.
``OUT/cells/<key>.parquet``
    The rows of one finished cell. ``key`` is :func:`cell_key`: the first 16 hex digits of the
    SHA-256 of the cell's canonical JSON (sorted keys, no spaces), so it does not depend on the
    order in which cells are listed or computed. Each file is written to a temporary name in the
    same folder and moved into place with ``os.replace``, so a file either holds a whole cell or
    does not exist; temporary files left by a killed process start with ``.`` and are removed on the
    next run.

Executors
---------
* in-process, one cell after another (``workers=1``, the default), with torch and BLAS limited to
  one thread while the cells run (:func:`syngeo.threads.limit_threads`; restored afterwards);
* a local process pool (``workers=N``): ``concurrent.futures.ProcessPoolExecutor`` with the
  ``forkserver`` start method where available (``spawn`` elsewhere): workers are forked from a
  clean single-threaded server process, never from this one, which is safe with torch's thread
  pools; the server imports syngeo once, so later pools start in well under a second. One
  BLAS/torch thread per worker (:func:`syngeo.threads.limit_process_threads`);
* an existing Dask cluster (``scheduler="tcp://host:8786"``; needs the ``cluster`` extra,
  ``pip install 'syngeo[cluster]'``), e.g. one started by ``dask-jobqueue`` on SLURM/PBS.

In every case the results are written by the calling process, as the cells complete, and the final
table is read back from the stored cells in the order of ``cells(config)``, so it does not depend on
the executor, on the order of completion, or on how many times the sweep was interrupted.

Example
-------
>>> from syngeo.app.experiments._testing import EXPERIMENT, Config
>>> import tempfile
>>> with tempfile.TemporaryDirectory() as tmp:
...     result = run_sweep(EXPERIMENT, Config(n_cells=3, delay=0.0), tmp, quiet=True)
...     again = run_sweep(EXPERIMENT, Config(n_cells=3, delay=0.0), tmp, quiet=True)
>>> (result.n_computed, again.n_computed, again.n_reused)
(3, 0, 3)
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import datetime as _dt
import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from syngeo.app.outputs import (
    atomic_write,
    atomic_write_text,
    make_out_dir,
    own_outputs,
    to_jsonable,
)
from syngeo.errors import InputError, InputTypeError
from syngeo.threads import THREAD_VARIABLES, limit_process_threads, limit_threads
from syngeo.validation import as_positive_int

if TYPE_CHECKING:
    from syngeo.app.experiments.base import Experiment

__all__ = ["SweepResult", "cache_dir", "cell_key", "run_sweep"]

MANIFEST_NAME = "manifest.json"
CELLS_DIR = "cells"
CACHE_DIR = "cache"
CELL_SUFFIX = ".parquet"

#: The cache folder of the sweep whose cell this thread is computing (None outside a cell). A
#: context variable, not a module global: an in-process Dask cluster runs cells of different
#: sweeps in threads at once, and a global saved and restored by each would leak across them.
_current_cache: contextvars.ContextVar[Path | None] = contextvars.ContextVar(
    "syngeo_sweep_cache", default=None
)


def cache_dir() -> Path | None:
    """The sweep's cache folder, ``OUT/cache``, while a cell runs (created on first use).

    ``run_cell`` functions keep files there that later cells, or a resumed run, can reuse
    instead of computing them again: a pretrained network, a downloaded dataset. Outside a
    sweep (a cell called directly) it is ``None``, and the experiment computes what it needs.
    Name each file by everything that determines its content and write it with
    :func:`syngeo.app.outputs.atomic_write`, since cells in several processes may write the same
    file at once. With a Dask cluster, the workers see the folder only if it is on a file system
    they share with this process.
    """
    folder = _current_cache.get()
    if folder is None:
        return None
    with contextlib.suppress(OSError):
        folder.mkdir(parents=True, exist_ok=True)
    return folder if folder.is_dir() else None


@dataclass(frozen=True)
class _CellCall:
    """``run_cell(config, cell)`` with :func:`cache_dir` set to ``cache`` while it runs.

    Picklable by reference (``run_cell`` is a module-level function), so the same call runs in
    this process, a worker process or a Dask worker.
    """

    run_cell: Callable[[Any, dict], list]
    cache: str

    def __call__(self, config: Any, cell: dict) -> list:
        token = _current_cache.set(Path(self.cache))
        try:
            return self.run_cell(config, cell)
        finally:
            _current_cache.reset(token)


@dataclass(frozen=True, repr=False)
class SweepResult:
    """What :func:`run_sweep` did.

    Attributes
    ----------
    table : pandas.DataFrame
        The tidy rows of every cell, in the order of ``cells(config)``.
    n_cells : int
        Number of cells of the config.
    n_computed : int
        Cells computed by this call.
    n_reused : int
        Cells found finished in ``out`` and read back (``n_cells == n_computed + n_reused``).
    out : pathlib.Path
        The sweep folder.
    seconds : float
        Wall-clock time of the call.
    """

    table: pd.DataFrame
    n_cells: int
    n_computed: int
    n_reused: int
    out: Path
    seconds: float = 0.0

    def __repr__(self) -> str:
        return (
            f"SweepResult(n_cells={self.n_cells}, n_computed={self.n_computed}, "
            f"n_reused={self.n_reused}, rows={len(self.table)}, out={str(self.out)!r}, "
            f"seconds={self.seconds:.3g})"
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable summary (the table itself is left out; it has its own files)."""
        return {
            "n_cells": self.n_cells,
            "n_computed": self.n_computed,
            "n_reused": self.n_reused,
            "n_rows": len(self.table),
            "out": str(self.out),
            "seconds": self.seconds,
        }


# --------------------------------------------------------------------------------------------
# Cells and keys
# --------------------------------------------------------------------------------------------


def _canonical_json(value: Any) -> str:
    return json.dumps(
        to_jsonable(value),
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=True,
        allow_nan=False,
    )


def cell_key(cell: Mapping[str, Any]) -> str:
    """The stable key of a cell: 16 hex digits of the SHA-256 of its canonical JSON.

    Canonical JSON sorts the keys and drops whitespace, so ``{"a": 1, "b": 2}`` and
    ``{"b": 2, "a": 1}`` share a key; NumPy scalars hash like the Python numbers they equal.

    >>> cell_key({"seed": 0, "width": 100}) == cell_key({"width": 100, "seed": 0})
    True
    """
    if not isinstance(cell, Mapping):
        raise InputTypeError(f"a cell must be a dict of JSON values, got {type(cell).__name__}")
    try:
        text = _canonical_json(cell)
    except (TypeError, ValueError) as exc:
        raise InputTypeError(
            f"cell {cell!r} is not JSON-serialisable ({exc}); cells must hold numbers, strings, "
            "booleans, None and lists/dicts of those"
        ) from None
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _resolve_experiment(experiment: Experiment | str) -> Experiment:
    """The :class:`Experiment` for an experiment object or a registered name."""
    from syngeo.app import experiments

    if isinstance(experiment, str):
        return experiments.get(experiment)
    if not isinstance(experiment, experiments.Experiment):
        raise InputTypeError(
            "experiment must be an Experiment (syngeo.app.experiments.EXPERIMENTS) or the name "
            f"of one such as 'fig3a', got {type(experiment).__name__}"
        )
    return experiment


def _config_dict(config: Any) -> dict[str, Any]:
    if not dataclasses.is_dataclass(config) or isinstance(config, type):
        raise InputTypeError(
            f"config must be an instance of the experiment's Config dataclass, got {config!r}"
        )
    return to_jsonable(dataclasses.asdict(config))


def _expand_cells(exp: Experiment, config: Any) -> list[tuple[str, dict]]:
    cells = list(exp.cells(config))
    keyed: list[tuple[str, dict]] = []
    seen: dict[str, dict] = {}
    for cell in cells:
        key = cell_key(cell)
        if key in seen:
            raise InputError(
                f"experiment {exp.name!r} lists the cell {cell!r} twice; cells must be distinct"
            )
        seen[key] = cell
        keyed.append((key, dict(cell)))
    return keyed


# --------------------------------------------------------------------------------------------
# The store
# --------------------------------------------------------------------------------------------


def _manifest(exp: Experiment, config_dict: dict, n_cells: int) -> dict[str, Any]:
    from syngeo import __version__

    return {
        "experiment": exp.name,
        "config": config_dict,
        "syngeo_version": __version__,
        "definition": exp.definition_hash(),
        "n_cells": n_cells,
        "cell_format": CELL_SUFFIX.lstrip("."),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }


def _describe_difference(old: Mapping, new: Mapping) -> str:
    if old.get("experiment") != new.get("experiment"):
        return f"it holds experiment {old.get('experiment')!r}, not {new.get('experiment')!r}"
    old_cfg, new_cfg = old.get("config") or {}, new.get("config") or {}
    changed = sorted(k for k in set(old_cfg) | set(new_cfg) if old_cfg.get(k) != new_cfg.get(k))
    shown = ", ".join(f"{k}: {old_cfg.get(k)!r} -> {new_cfg.get(k)!r}" for k in changed[:3])
    more = f" (+{len(changed) - 3} more)" if len(changed) > 3 else ""
    return f"its config differs ({shown}{more})"


def _prepare_store(out: Path, manifest: dict[str, Any], *, force: bool) -> Path:
    """Create or validate the sweep folder; return its cells folder."""
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"--out {out} exists and is not a folder; choose another path")
    cells_dir = out / CELLS_DIR
    manifest_path = out / MANIFEST_NAME
    if manifest_path.exists():
        try:
            old = json.loads(manifest_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            if not force:
                raise InputError(
                    f"{manifest_path} is unreadable ({exc}); pass --force to start the sweep "
                    "afresh or choose another --out"
                ) from None
            old = {}
        same = old.get("experiment") == manifest["experiment"] and _canonical_json(
            old.get("config")
        ) == _canonical_json(manifest["config"])
        if same and _same_code(old, manifest):
            return cells_dir  # resume: keep the original manifest (its creation time)
        if not force:
            if same:
                raise _different_code_error(out, old, manifest)
            raise FileExistsError(
                f"--out {out} holds a different sweep: {_describe_difference(old, manifest)}; "
                "pass --force to discard its results or choose another --out"
            )
        _discard_cells(cells_dir)
    elif own_outputs(out) and not force:
        found = ", ".join(own_outputs(out)[:3])
        raise FileExistsError(
            f"--out {out} holds results of another command ({found}) but no sweep "
            f"({MANIFEST_NAME} missing); pass --force to replace them or choose another folder"
        )
    elif force:
        _discard_cells(cells_dir)
    make_out_dir(out)
    cells_dir.mkdir(exist_ok=True)
    atomic_write_text(manifest_path, json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return cells_dir


def _same_code(old: Mapping, new: Mapping) -> bool:
    return all(old.get(key) == new[key] for key in ("syngeo_version", "definition"))


def _different_code_error(out: Path, old: Mapping, new: Mapping) -> InputError:
    """Why cells computed by another syngeo version or experiment definition are not resumed."""
    differences = [
        f"{label} {old.get(key)!r} (stored) vs {new[key]!r} (now)"
        for key, label in (("syngeo_version", "syngeo version"), ("definition", "definition"))
        if old.get(key) != new[key]
    ]
    return InputError(
        f"--out {out} holds cells of {new['experiment']!r} computed by different code: "
        f"{'; '.join(differences)}. Mixing them with new cells would give a table from two "
        "versions of the experiment: pass --force to discard them and start afresh, or choose "
        "another --out"
    )


def _discard_cells(cells_dir: Path) -> None:
    """Remove the stored cells and the cache beside them (``force``)."""
    cache = cells_dir.parent / CACHE_DIR
    if cache.is_dir():
        shutil.rmtree(cache)
    if not cells_dir.is_dir():
        return
    for path in cells_dir.iterdir():
        if path.is_file() and (path.suffix == CELL_SUFFIX or path.name.endswith(".tmp")):
            path.unlink()


def _remove_stale_temporaries(cells_dir: Path) -> None:
    for path in cells_dir.glob(".*.tmp"):
        with contextlib.suppress(OSError):
            path.unlink()


def _cell_path(cells_dir: Path, key: str) -> Path:
    return cells_dir / f"{key}{CELL_SUFFIX}"


def _write_cell(cells_dir: Path, key: str, rows: Sequence[Mapping[str, Any]]) -> None:
    """Store one cell's rows all-or-nothing: temp file in the same folder, then ``os.replace``."""
    if not isinstance(rows, (list, tuple)) or not all(isinstance(r, Mapping) for r in rows):
        raise InputTypeError(
            f"run_cell must return a list of dicts (one per row), got {type(rows).__name__}"
        )
    frame = pd.DataFrame([dict(r) for r in rows])
    atomic_write(_cell_path(cells_dir, key), lambda tmp: frame.to_parquet(tmp, index=False))


def _read_table(cells_dir: Path, keys: Sequence[str]) -> pd.DataFrame:
    frames = [pd.read_parquet(_cell_path(cells_dir, key)) for key in keys]
    frames = [f for f in frames if len(f.columns)]
    if not frames:
        return pd.DataFrame()
    return pd.concat(frames, ignore_index=True)


# --------------------------------------------------------------------------------------------
# Executors
# --------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _single_threaded_children() -> Iterator[None]:
    """Set the thread caps in the environment inherited by processes started inside."""
    saved = {var: os.environ.get(var) for var in THREAD_VARIABLES}
    os.environ.update(dict.fromkeys(THREAD_VARIABLES, "1"))
    try:
        yield
    finally:
        for var, value in saved.items():
            if value is None:
                os.environ.pop(var, None)
            else:
                os.environ[var] = value


@contextlib.contextmanager
def _sigterm_as_exit() -> Iterator[None]:
    """Turn SIGTERM (what batch schedulers and ``kill`` send) into ``SystemExit(143)`` inside.

    Python's default for SIGTERM ends the process at once, skipping the clean-up that stops the
    worker processes; as an exception it unwinds like Ctrl-C. Only in the main thread (where
    Python runs signal handlers); elsewhere nothing changes.
    """
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _with_note(exc: BaseException, cell: Mapping) -> BaseException:
    if hasattr(exc, "add_note"):
        exc.add_note(f"while computing cell {dict(cell)!r}")
    return exc


def _run_serial(
    run_cell: Callable, config: Any, pending: list[tuple[str, dict]], store: Callable
) -> None:
    with limit_threads(1):
        for key, cell in pending:
            try:
                rows = run_cell(config, cell)
            except Exception as exc:
                raise _with_note(exc, cell) from None
            store(key, rows)


def _worker_context():
    import multiprocessing

    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    # Import syngeo (and torch) once in the server instead of in every worker. This only takes
    # effect when the server is not running yet, which is also when the thread caps set by
    # ``_single_threaded_children`` are inherited by it.
    context.set_forkserver_preload(["syngeo.app.sweep"])
    return context


def _broken_pool_error(exc: BaseException) -> RuntimeError:
    error = RuntimeError(
        "a worker process died before finishing its cell (killed, out of memory, or started "
        "from a script without the `if __name__ == '__main__':` guard that process pools need); "
        "the finished cells are stored: rerun to continue, or use workers=1"
    )
    error.__cause__ = exc
    return error


def _run_pool(
    run_cell: Callable,
    config: Any,
    pending: list[tuple[str, dict]],
    store: Callable,
    workers: int,
) -> None:
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    context = _worker_context()
    pool = ProcessPoolExecutor(
        max_workers=workers,
        mp_context=context,
        initializer=limit_process_threads,
        initargs=(1,),
    )
    futures: dict[Any, tuple[str, dict]] = {}
    error: BaseException | None = None
    try:
        # Workers are started by the first submits, so they inherit the single-thread caps.
        with _single_threaded_children():
            for key, cell in pending:
                futures[pool.submit(run_cell, config, cell)] = (key, cell)
        not_done = set(futures)
        while not_done:
            done, not_done = wait(not_done, return_when=FIRST_COMPLETED)
            for fut in done:
                key, cell = futures[fut]
                if fut.cancelled():
                    continue
                exc = fut.exception()
                if exc is not None:
                    if error is None:
                        error = (
                            _broken_pool_error(exc)
                            if isinstance(exc, BrokenProcessPool)
                            else _with_note(exc, cell)
                        )
                        for other in not_done:
                            other.cancel()  # let the running ones finish; they are kept
                    continue
                store(key, fut.result())
    except BaseException:
        # Interrupted (Ctrl-C) or a store failure: stop the workers; stored cells stay.
        for fut in futures:
            fut.cancel()
        processes = list(getattr(pool, "_processes", {}).values())
        pool.shutdown(wait=False, cancel_futures=True)
        for proc in processes:
            with contextlib.suppress(Exception):
                proc.terminate()
        raise
    pool.shutdown(wait=True)
    if error is not None:
        raise error


#: Seconds to wait for a Dask scheduler before giving up (a wrong address fails this fast).
CONNECT_TIMEOUT = 10.0

_SCHEDULER_SCHEMES = ("tcp", "tls", "ws", "wss", "ucx", "inproc")


def _scheduler_address(scheduler: Any) -> tuple[str, str, int | None]:
    """(scheme, host, port) of a Dask scheduler address; InputError when it is not one."""
    import re

    text = scheduler.strip() if isinstance(scheduler, str) else ""
    scheme, _, rest = text.rpartition("://")
    scheme = scheme or "tcp"
    if scheme == "inproc" and rest:  # an in-process cluster (LocalCluster(processes=False))
        return scheme, rest, None
    match = re.fullmatch(r"([^\s:/\[\]]+|\[[0-9a-fA-F:]+\]):(\d{1,5})/?", rest)
    if scheme not in _SCHEDULER_SCHEMES or match is None:
        raise InputError(
            f"--scheduler {scheduler!r} is not a Dask scheduler address; write "
            "tcp://HOST:PORT, e.g. tcp://127.0.0.1:8786"
        )
    return scheme, match[1].strip("[]"), int(match[2])


def _connect_dask(scheduler: str, timeout: float | None = None):
    """A ``distributed.Client`` on ``scheduler``, or one clear error within ``timeout`` seconds.

    Two probes come before the client is built, because a client whose construction fails
    retries for its whole timeout, hangs on a server that is not a Dask scheduler, and prints a
    traceback from its destructor: a plain TCP connection (refused at once when nothing listens
    there), then the Dask handshake and an ``identity`` request, abandoned after ``timeout``
    seconds (default :data:`CONNECT_TIMEOUT`).
    """
    import socket

    timeout = CONNECT_TIMEOUT if timeout is None else float(timeout)
    scheme, host, port = _scheduler_address(scheduler)
    try:
        from distributed import Client
    except ImportError:
        raise ImportError(
            "--scheduler needs dask.distributed, the cluster extra of syngeo: "
            'pip install -e ".[cluster]" in the syngeo folder (or run without --scheduler)'
        ) from None
    hint = "start one (`dask scheduler`) or check the address"
    if scheme in ("tcp", "tls", "ws", "wss") and port is not None:
        try:
            socket.create_connection((host, port), timeout=timeout).close()
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
            if isinstance(exc, TimeoutError):
                reason = f"no answer within {timeout:g} s"
            raise InputError(
                f"could not reach the Dask scheduler at {scheduler!r} ({reason}); {hint}"
            ) from None
    if scheme in ("tcp", "ws") and not _answers_as_dask(scheduler, timeout):
        raise InputError(
            f"no Dask scheduler answered at {scheduler!r} within {timeout:g} s (something "
            f"accepts connections there, but not as a Dask scheduler); {hint}"
        )
    try:
        return Client(scheduler, timeout=f"{timeout:g}s", set_as_default=False)
    except (OSError, TimeoutError) as exc:
        raise InputError(
            f"could not connect to the Dask scheduler at {scheduler!r} ({_first_line(exc)}); {hint}"
        ) from None


def _answers_as_dask(address: str, timeout: float) -> bool:
    """Whether a Dask scheduler answers an ``identity`` request at ``address`` in ``timeout`` s.

    Runs in a daemon thread with its own event loop (so it works when the caller already runs
    one, as in a notebook, and a server that never answers cannot keep the process alive).
    """
    import asyncio
    import threading

    try:
        from distributed.comm import connect
    except ImportError:  # checked by the caller already; kept for a direct call
        raise ImportError(
            'probing a Dask scheduler needs dask.distributed: pip install -e ".[cluster]"'
        ) from None

    async def identity() -> Any:
        comm = await connect(address, timeout=timeout)
        try:
            await comm.write({"op": "identity", "reply": True})
            return await comm.read()
        finally:
            await comm.close()

    answer: dict[str, Any] = {}

    def run() -> None:
        with contextlib.suppress(Exception):
            answer["reply"] = asyncio.run(asyncio.wait_for(identity(), timeout))

    thread = threading.Thread(target=run, name="syngeo-dask-probe", daemon=True)
    thread.start()
    thread.join(timeout + 2.0)
    reply = answer.get("reply")
    return isinstance(reply, Mapping) and reply.get("type") == "Scheduler"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


def _run_dask(
    run_cell: Callable,
    config: Any,
    pending: list[tuple[str, dict]],
    store: Callable,
    client: Any,
) -> None:
    try:
        from distributed import as_completed
    except ImportError:  # a client exists, so distributed is installed; kept for a direct call
        raise ImportError(
            'Dask sweeps need dask.distributed: pip install -e ".[cluster]"'
        ) from None

    error: BaseException | None = None
    futures = []
    try:
        # Cap the threads in worker processes; threads inside this process are left alone.
        here = os.getpid()
        pids = client.run(os.getpid)
        remote = [addr for addr, pid in pids.items() if pid != here]
        if remote:
            client.run(limit_process_threads, 1, workers=remote)
        by_key: dict[str, tuple[str, dict]] = {}
        for key, cell in pending:
            fut = client.submit(run_cell, config, cell, pure=False, key=f"syngeo-cell-{key}")
            by_key[fut.key] = (key, cell)
            futures.append(fut)
        for fut in as_completed(futures, loop=client.loop):
            key, cell = by_key[fut.key]
            if fut.status == "error":
                if error is None:
                    error = _with_note(fut.exception(), cell)
                    for other in futures:
                        if not other.done():
                            other.cancel()
                continue
            if fut.status == "cancelled":
                continue
            store(key, fut.result())
    finally:
        with contextlib.suppress(Exception):
            client.cancel([f for f in futures if not f.done()])
    if error is not None:
        raise error


# --------------------------------------------------------------------------------------------
# Progress
# --------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _progress(total: int, completed: int, label: str, quiet: bool) -> Iterator[Callable[[], None]]:
    if quiet:
        yield lambda: None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=False,
    ) as progress:
        task = progress.add_task(label, total=total, completed=completed)
        yield lambda: progress.advance(task)


# --------------------------------------------------------------------------------------------
# Public entry point
# --------------------------------------------------------------------------------------------


def run_sweep(
    experiment: Experiment | str,
    config: Any | None,
    out: str | os.PathLike,
    *,
    workers: int = 1,
    scheduler: str | None = None,
    force: bool = False,
    quiet: bool = False,
) -> SweepResult:
    """Run the unfinished cells of ``experiment`` under ``config``, storing each in ``out``.

    Parameters
    ----------
    experiment
        An :class:`~syngeo.app.experiments.base.Experiment` (its ``run_cell`` a module-level,
        picklable function) or the name of a registered one (``"fig3a"``; see
        ``syngeo reproduce --list``).
    config
        An instance of the experiment's ``Config`` (``None``: the paper's defaults).
    out
        The sweep folder (created if missing). A folder holding the same experiment and config,
        computed by the same syngeo version and experiment definition, is resumed: finished
        cells are read back, not recomputed.
    workers
        Number of local worker processes (1: compute in this process).
    scheduler
        Address of an existing Dask scheduler (``"tcp://host:8786"``) to run the cells on,
        instead of local workers (give one or the other). It is reached before ``out`` is
        touched: a malformed address, or one where no scheduler answers within
        :data:`CONNECT_TIMEOUT` seconds (at once when the connection is refused), is an
        :class:`~syngeo.InputError` and leaves no folder behind.
    force
        Discard the stored cells (and the cache) in ``out`` and start afresh (needed when
        ``out`` holds a different sweep, results of another command, or cells computed by
        other code).
    quiet
        No progress bar.

    Returns
    -------
    SweepResult
        The table (rows of every cell in ``cells(config)`` order) and how many cells were
        computed and reused.

    Raises
    ------
    FileExistsError
        ``out`` holds a different sweep, or results of another command, and ``force`` is
        false (files syngeo does not write are left alone and do not count).
    syngeo.InputError
        ``out`` holds cells of this sweep computed by another syngeo version or definition of
        the experiment (and ``force`` is false); bad ``workers``/``scheduler``/``config``, an
        unreachable scheduler, or cells that are not distinct JSON dicts.
    PermissionError
        ``out`` cannot be created or written in (the message names ``out``).
    """
    workers = as_positive_int(workers, "workers")
    if scheduler is not None:
        _scheduler_address(scheduler)
        if workers != 1:
            raise InputError(
                "give either --workers (local processes) or --scheduler (a Dask cluster), not both"
            )
    start = time.perf_counter()
    exp = _resolve_experiment(experiment)
    if config is None:
        config = exp.config()
    if not isinstance(config, exp.Config):
        raise InputTypeError(
            f"config must be a {exp.Config.__name__} of experiment {exp.name!r}, "
            f"got {type(config).__name__}"
        )
    keyed = _expand_cells(exp, config)
    out = Path(out)
    with contextlib.ExitStack() as stack:
        # Reach the cluster before touching ``out``: a wrong address leaves no folder behind.
        client = None
        if scheduler is not None:
            client = _connect_dask(scheduler)
            stack.callback(client.close)
        cells_dir = _prepare_store(
            out, _manifest(exp, _config_dict(config), len(keyed)), force=force
        )
        n_computed, n_reused = _run_pending(
            exp, config, keyed, cells_dir, workers=workers, client=client, quiet=quiet
        )
    table = _read_table(cells_dir, [k for k, _ in keyed])
    return SweepResult(
        table=table,
        n_cells=len(keyed),
        n_computed=n_computed,
        n_reused=n_reused,
        out=out,
        seconds=time.perf_counter() - start,
    )


def _run_pending(
    exp: Experiment,
    config: Any,
    keyed: list[tuple[str, dict]],
    cells_dir: Path,
    *,
    workers: int,
    client: Any,
    quiet: bool,
) -> tuple[int, int]:
    """Compute the cells not stored in ``cells_dir`` yet; (computed, reused)."""
    _remove_stale_temporaries(cells_dir)
    pending = [(k, c) for k, c in keyed if not _cell_path(cells_dir, k).exists()]
    n_reused = len(keyed) - len(pending)

    n_computed = 0
    run_cell = _CellCall(exp.run_cell, str((cells_dir.parent / CACHE_DIR).resolve()))
    with _sigterm_as_exit(), _progress(len(keyed), n_reused, exp.name, quiet) as advance:

        def store(key: str, rows: Sequence[Mapping[str, Any]]) -> None:
            nonlocal n_computed
            _write_cell(cells_dir, key, rows)
            n_computed += 1
            advance()

        if pending:
            if client is not None:
                _run_dask(run_cell, config, pending, store, client)
            elif workers > 1 and len(pending) > 1:
                _run_pool(run_cell, config, pending, store, min(workers, len(pending)))
            else:
                _run_serial(run_cell, config, pending, store)

    return n_computed, n_reused
