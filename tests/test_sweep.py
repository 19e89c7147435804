"""Resumable sweeps: keys, the store, resume after SIGINT/SIGKILL, and the three executors.

The sweeps run ``syngeo.app.experiments._testing``: cells that sleep, log each computation to
``<log_dir>/cell-<i>.log`` and return rows drawn from ``default_rng(seed + i)``, so a test can count
recomputations and compare tables exactly.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest

from syngeo.app.experiments import _testing
from syngeo.app.sweep import SweepResult, cell_key, run_sweep
from syngeo.errors import InputError, InputTypeError

N_CELLS = 10


def _reference_table(n_cells: int = N_CELLS) -> pd.DataFrame:
    """The rows an uninterrupted in-memory run produces (ground truth for every executor)."""
    config = _testing.Config(n_cells=n_cells, delay=0.0)
    rows = [row for cell in _testing.cells(config) for row in _testing.run_cell(config, cell)]
    return pd.DataFrame(rows)


def _log_counts(log_dir: Path) -> dict[int, int]:
    counts = {}
    for path in log_dir.glob("cell-*.log"):
        counts[int(path.stem.split("-")[1])] = len(path.read_text().splitlines())
    return counts


def _stored(out: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in (out / "cells").glob("*.parquet")}


# ------------------------------------------------------------------------------------------ keys


def test_cell_key_ignores_key_order_and_distinguishes_values():
    assert cell_key({"a": 1, "b": [1, 2]}) == cell_key({"b": [1, 2], "a": 1})
    assert cell_key({"a": 1}) != cell_key({"a": 2})
    assert cell_key({"a": 1}) != cell_key({"a": 1.5})
    assert len(cell_key({"a": 1})) == 16


def test_cell_key_rejects_non_json_cells():
    with pytest.raises(TypeError, match="JSON"):
        cell_key({"a": object()})
    with pytest.raises(TypeError, match="dict"):
        cell_key([1, 2])


# ------------------------------------------------------------------------------- serial + resume


def test_serial_sweep_matches_reference_and_resume_recomputes_nothing(tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    config = _testing.Config(n_cells=4, delay=0.0, log_dir=str(logs))
    first = run_sweep(_testing.EXPERIMENT, config, tmp_path / "out", quiet=True)
    assert isinstance(first, SweepResult)
    assert (first.n_cells, first.n_computed, first.n_reused) == (4, 4, 0)
    pd.testing.assert_frame_equal(first.table, _reference_table(4))
    before = _stored(tmp_path / "out")

    second = run_sweep(_testing.EXPERIMENT, config, tmp_path / "out", quiet=True)
    assert (second.n_computed, second.n_reused) == (0, 4)
    assert _stored(tmp_path / "out") == before
    assert _log_counts(logs) == {i: 1 for i in range(4)}
    pd.testing.assert_frame_equal(second.table, first.table)
    assert "n_reused=4" in repr(second)
    assert second.to_dict()["n_rows"] == 8


def test_manifest_records_experiment_config_version_and_cell_count(tmp_path):
    config = _testing.Config(n_cells=3, delay=0.0)
    run_sweep(_testing.EXPERIMENT, config, tmp_path, quiet=True)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["experiment"] == "_testing"
    assert manifest["config"]["n_cells"] == 3
    assert manifest["n_cells"] == 3
    assert manifest["syngeo_version"]
    assert manifest["created"]


def test_different_config_in_the_same_folder_is_an_error_unless_forced(tmp_path):
    run_sweep(_testing.EXPERIMENT, _testing.Config(n_cells=3, delay=0.0), tmp_path, quiet=True)
    with pytest.raises(FileExistsError, match=r"n_cells: 3 -> 4.*--force"):
        run_sweep(_testing.EXPERIMENT, _testing.Config(n_cells=4, delay=0.0), tmp_path, quiet=True)
    forced = run_sweep(
        _testing.EXPERIMENT,
        _testing.Config(n_cells=4, seed=5, delay=0.0),
        tmp_path,
        force=True,
        quiet=True,
    )
    assert (forced.n_computed, forced.n_reused) == (4, 0)  # old cells were discarded
    assert len(list((tmp_path / "cells").glob("*.parquet"))) == 4


def test_cells_computed_by_other_code_are_not_resumed(tmp_path):
    # issue 8, defect 5: a folder whose experiment and config match was resumed whatever code
    # had computed its cells, mixing rows of two versions into one table
    config = _testing.Config(n_cells=3, delay=0.0)
    run_sweep(_testing.EXPERIMENT, config, tmp_path, quiet=True)
    manifest_path = tmp_path / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    assert manifest["definition"] == _testing.EXPERIMENT.definition_hash()
    # a folder written by syngeo 0.1.0 (no definition hash) or by another version
    old = {k: v for k, v in manifest.items() if k != "definition"}
    manifest_path.write_text(json.dumps(old))
    with pytest.raises(InputError, match=r"different code: definition None \(stored\).*--force"):
        run_sweep(_testing.EXPERIMENT, config, tmp_path, quiet=True)
    manifest_path.write_text(json.dumps({**manifest, "syngeo_version": "0.0.9"}))
    with pytest.raises(InputError, match=r"syngeo version '0\.0\.9' \(stored\)"):
        run_sweep(_testing.EXPERIMENT, config, tmp_path, quiet=True)
    # this version, but the experiment's code was edited since the cells were stored
    manifest_path.write_text(json.dumps({**manifest, "definition": "0" * 16}))
    with pytest.raises(InputError, match=r"definition '0{16}' \(stored\)"):
        run_sweep(_testing.EXPERIMENT, config, tmp_path, quiet=True)
    forced = run_sweep(_testing.EXPERIMENT, config, tmp_path, force=True, quiet=True)
    assert (forced.n_computed, forced.n_reused) == (3, 0)
    assert json.loads(manifest_path.read_text())["definition"] == manifest["definition"]
    resumed = run_sweep(_testing.EXPERIMENT, config, tmp_path, quiet=True)
    assert (resumed.n_computed, resumed.n_reused) == (0, 3)


def test_definition_hash_follows_the_code_and_the_config_fields():
    import dataclasses

    exp = _testing.EXPERIMENT
    assert exp.definition_hash() == exp.definition_hash()  # deterministic
    assert exp.source_modules == ("syngeo.app.experiments._testing",)
    more_code = dataclasses.replace(exp, modules=("syngeo.app.formatting",))
    assert more_code.definition_hash() != exp.definition_hash()

    @dataclasses.dataclass(frozen=True)
    class Config(_testing.Config):
        extra: int = 0

    assert dataclasses.replace(exp, Config=Config).definition_hash() != exp.definition_hash()


def test_experiments_are_looked_up_by_exact_name():
    from syngeo.app.experiments import EXPERIMENTS, get

    assert [get(e.name) for e in EXPERIMENTS] == list(EXPERIMENTS)
    assert len({e.name for e in EXPERIMENTS}) == len(EXPERIMENTS)
    for wrong in ("fig3", "FIG3A", "fig3a_", "raman"):
        with pytest.raises(InputError, match=r"unknown experiment.*fig3a, fig6"):
            get(wrong)
    with pytest.raises(InputTypeError, match="must be an Experiment"):
        run_sweep(_testing, _testing.Config(n_cells=1, delay=0.0), "unused", quiet=True)


def test_unrelated_files_are_left_alone_but_other_results_need_force(tmp_path):
    config = _testing.Config(n_cells=2, delay=0.0)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    run_sweep(_testing.EXPERIMENT, config, mine, quiet=True)  # not "already holding results"
    assert (mine / "notes.txt").read_text() == "mine"
    assert len(_stored(mine)) == 2

    other = tmp_path / "other"
    other.mkdir()
    (other / "report.md").write_text("# results of syngeo infer")
    with pytest.raises(FileExistsError, match=r"holds results of another command \(report.md\)"):
        run_sweep(_testing.EXPERIMENT, config, other, quiet=True)
    assert sorted(p.name for p in other.iterdir()) == ["report.md"]
    run_sweep(_testing.EXPERIMENT, config, other, force=True, quiet=True)
    assert len(_stored(other)) == 2


def test_an_unwritable_folder_is_named_not_a_temporary_file(tmp_path, monkeypatch):
    import tempfile

    # as root every folder is writable: make the temporary file fail as it would without rights
    def refuse(*args, dir=None, **kwargs):
        raise PermissionError(13, "Permission denied", str(Path(dir) / ".manifest.json.x.tmp"))

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    with pytest.raises(PermissionError) as info:
        run_sweep(_testing.EXPERIMENT, _testing.Config(n_cells=1), tmp_path / "out", quiet=True)
    message = str(info.value)
    assert f"in {tmp_path / 'out'}: permission denied" in message
    assert ".tmp" not in message
    monkeypatch.setattr(os, "access", lambda path, mode: False)
    with pytest.raises(PermissionError, match=rf"--out {tmp_path / 'x'}: permission denied"):
        run_sweep(_testing.EXPERIMENT, _testing.Config(n_cells=1), tmp_path / "x", quiet=True)


def test_failing_cell_keeps_the_finished_ones(tmp_path):
    config = _testing.Config(n_cells=4, delay=0.0, fail_on=(2,))
    with pytest.raises(ValueError, match="fails on purpose") as info:
        run_sweep(_testing.EXPERIMENT, config, tmp_path, quiet=True)
    assert any("'index': 2" in note for note in getattr(info.value, "__notes__", ["'index': 2"]))
    assert len(_stored(tmp_path)) == 2  # cells 0 and 1 were stored before the failure


def test_an_interrupted_write_leaves_no_file_and_stale_temporaries_are_removed(
    tmp_path, monkeypatch
):
    config = _testing.Config(n_cells=2, delay=0.0)
    original = pd.DataFrame.to_parquet

    def broken(self, path, *args, **kwargs):
        Path(path).write_bytes(b"PAR1 half a file")
        raise KeyboardInterrupt

    monkeypatch.setattr(pd.DataFrame, "to_parquet", broken)
    with pytest.raises(KeyboardInterrupt):
        run_sweep(_testing.EXPERIMENT, config, tmp_path, quiet=True)
    assert list((tmp_path / "cells").iterdir()) == []  # neither a cell nor a temporary
    monkeypatch.setattr(pd.DataFrame, "to_parquet", original)

    stale = tmp_path / "cells" / ".0123456789abcdef.xyz.tmp"
    stale.write_bytes(b"left by kill -9")
    result = run_sweep(_testing.EXPERIMENT, config, tmp_path, quiet=True)
    assert result.n_computed == 2
    assert not stale.exists()


def test_bad_arguments_are_reported(tmp_path):
    with pytest.raises(ValueError, match="workers"):
        run_sweep(_testing.EXPERIMENT, None, tmp_path, workers=0)
    with pytest.raises(ValueError, match="not both"):
        run_sweep(_testing.EXPERIMENT, None, tmp_path, workers=2, scheduler="tcp://127.0.0.1:1")
    with pytest.raises(TypeError, match="Config"):
        run_sweep(_testing.EXPERIMENT, {"n_cells": 2}, tmp_path)
    with pytest.raises(TypeError, match="must be an Experiment"):
        run_sweep(object(), None, tmp_path)
    with pytest.raises(ValueError, match="unknown experiment"):
        run_sweep("no-such-figure", None, tmp_path)
    assert not (tmp_path / "manifest.json").exists()


def test_duplicate_cells_are_rejected(tmp_path):
    import dataclasses

    exp = dataclasses.replace(
        _testing.EXPERIMENT, cells=lambda config: [{"index": 0}, {"index": 0}]
    )
    with pytest.raises(ValueError, match="twice"):
        run_sweep(exp, _testing.Config(), tmp_path, quiet=True)


def test_missing_dask_gives_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)
    with pytest.raises(ImportError, match=r'pip install -e "\.\[cluster\]"'):
        run_sweep(
            _testing.EXPERIMENT,
            _testing.Config(n_cells=2, delay=0.0),
            tmp_path,
            scheduler="tcp://127.0.0.1:1",
            quiet=True,
        )


def _closed_port() -> int:
    """A local TCP port nothing listens on (bound, then released)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize(
    ("address", "message"),
    [
        ("localhost", "not a Dask scheduler address"),
        ("http://127.0.0.1:8786", "not a Dask scheduler address"),
        ("tcp://127.0.0.1:port", "not a Dask scheduler address"),
        ("tcp://127.0.0.1:{closed}", "could not reach the Dask scheduler"),
        ("tcp://no-such-host.invalid:8786", "could not reach the Dask scheduler"),
    ],
)
def test_bad_scheduler_fails_before_the_folder_is_made(tmp_path, address, message):
    pytest.importorskip("distributed")
    out = tmp_path / "out"
    with pytest.raises(InputError, match=message):
        run_sweep(
            _testing.EXPERIMENT,
            _testing.Config(n_cells=2, delay=0.0),
            out,
            scheduler=address.format(closed=_closed_port()),
            quiet=True,
        )
    assert not out.exists()


def test_a_server_that_is_not_a_dask_scheduler_is_abandoned(tmp_path, monkeypatch):
    import socket

    import syngeo.app.sweep as sweep

    pytest.importorskip("distributed")
    monkeypatch.setattr(sweep, "CONNECT_TIMEOUT", 1.0)
    with socket.socket() as server:  # accepts connections (the kernel's backlog), never answers
        server.bind(("127.0.0.1", 0))
        server.listen(4)
        address = f"tcp://127.0.0.1:{server.getsockname()[1]}"
        with pytest.raises(InputError, match="not as a Dask scheduler"):
            run_sweep(
                _testing.EXPERIMENT,
                _testing.Config(n_cells=2, delay=0.0),
                tmp_path / "out",
                scheduler=address,
                quiet=True,
            )
    assert not (tmp_path / "out").exists()


def test_a_tcp_dask_scheduler_passes_the_probes(tmp_path):
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(
        n_workers=1,
        threads_per_worker=1,
        processes=False,
        protocol="tcp://",
        dashboard_address=None,
    ) as cluster:
        assert cluster.scheduler_address.startswith("tcp://")
        result = run_sweep(
            _testing.EXPERIMENT,
            _testing.Config(n_cells=2, delay=0.0),
            tmp_path,
            scheduler=cluster.scheduler_address,
            quiet=True,
        )
    assert result.n_computed == 2


# ------------------------------------------------------------------------------------ executors


def test_process_pool_gives_the_serial_table(tmp_path):
    config = _testing.Config(n_cells=6, delay=0.0)
    pooled = run_sweep(_testing.EXPERIMENT, config, tmp_path, workers=2, quiet=True)
    assert pooled.n_computed == 6
    pd.testing.assert_frame_equal(pooled.table, _reference_table(6))


def test_process_pool_failure_keeps_other_cells_and_raises(tmp_path):
    config = _testing.Config(n_cells=4, delay=0.0, fail_on=(0,))
    with pytest.raises(ValueError, match="fails on purpose"):
        run_sweep(_testing.EXPERIMENT, config, tmp_path, workers=2, quiet=True)
    assert 0 < len(_stored(tmp_path)) <= 3


def test_dask_local_cluster_gives_the_serial_table(tmp_path):
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None
    ) as cluster:
        config = _testing.Config(n_cells=5, delay=0.0)
        result = run_sweep(
            _testing.EXPERIMENT, config, tmp_path, scheduler=cluster.scheduler_address, quiet=True
        )
        assert result.n_computed == 5
        pd.testing.assert_frame_equal(result.table, _reference_table(5))
        again = run_sweep(
            _testing.EXPERIMENT, config, tmp_path, scheduler=cluster.scheduler_address, quiet=True
        )
        assert (again.n_computed, again.n_reused) == (0, 5)


def test_dask_failing_cell_raises(tmp_path):
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(
        n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None
    ) as cluster:
        with pytest.raises(ValueError, match="fails on purpose"):
            run_sweep(
                _testing.EXPERIMENT,
                _testing.Config(n_cells=3, delay=0.0, fail_on=(1,)),
                tmp_path,
                scheduler=cluster.scheduler_address,
                quiet=True,
            )


# ---------------------------------------------------------------------------- kill and resume

_SCRIPT = textwrap.dedent(
    """
    import sys
    from syngeo.app.experiments import _testing
    from syngeo.app.sweep import run_sweep

    out, log_dir, workers, n_cells, delay = sys.argv[1:]
    config = _testing.Config(n_cells=int(n_cells), delay=float(delay), log_dir=log_dir)
    run_sweep(_testing.EXPERIMENT, config, out, workers=int(workers), quiet=True)
    """
)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.slow
@pytest.mark.parametrize(
    ("sig", "workers", "delay"),
    [
        (signal.SIGINT, 1, 0.3),
        (signal.SIGKILL, 2, 0.5),
        (signal.SIGTERM, 2, 0.5),
    ],
    ids=["sigint-serial", "sigkill-pool", "sigterm-pool"],
)
def test_killed_sweep_resumes_without_losing_or_recomputing_finished_cells(
    tmp_path, sig, workers, delay
):
    out, logs = tmp_path / "out", tmp_path / "logs"
    logs.mkdir()
    n_cells = 12
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            _SCRIPT,
            str(out),
            str(logs),
            str(workers),
            str(n_cells),
            str(delay),
        ],
        start_new_session=True,  # its own process group: the signal reaches pool workers too
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 120
        while len(_stored(out)) < 2:
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "the sweep did not store two cells in 120 s"
            time.sleep(0.02)
        if sig == signal.SIGTERM:
            # as from a batch scheduler: only the parent is signalled; it must stop its workers
            os.kill(proc.pid, sig)
            proc.wait(timeout=60)
            deadline = time.monotonic() + 30
            while _group_alive(proc.pid):
                assert time.monotonic() < deadline, "worker processes outlived the sweep"
                time.sleep(0.1)
        else:
            os.killpg(proc.pid, sig)
            proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode != 0
    stored = _stored(out)
    assert 2 <= len(stored) < n_cells, "the kill should land mid-sweep"
    for name in stored:  # every stored cell is whole
        assert len(pd.read_parquet(out / "cells" / name)) == 2
    time.sleep(0.05)  # let any orphaned worker notice its parent is gone

    config = _testing.Config(n_cells=n_cells, delay=delay, log_dir=str(logs))  # same command
    resumed = run_sweep(_testing.EXPERIMENT, config, out, quiet=True)
    assert resumed.n_reused == len(stored)
    assert resumed.n_computed == n_cells - len(stored)
    after = _stored(out)
    assert {name: after[name] for name in stored} == stored  # finished cells untouched
    counts = _log_counts(logs)
    keys = {cell_key({"index": i}): i for i in range(n_cells)}
    finished_before = {keys[name.removesuffix(".parquet")] for name in stored}
    assert all(counts[i] == 1 for i in finished_before), counts
    assert all(1 <= counts.get(i, 0) <= 2 for i in range(n_cells)), counts  # in-flight: <= 2
    pd.testing.assert_frame_equal(resumed.table, _reference_table(n_cells))
    assert not list((out / "cells").glob(".*.tmp"))


def _threads_cell(config, cell):
    import torch

    return [{"index": cell["index"], "torch_threads": torch.get_num_threads()}]


def test_serial_cells_run_on_one_thread_and_the_setting_is_restored(tmp_path):
    import dataclasses

    import torch

    exp = dataclasses.replace(_testing.EXPERIMENT, run_cell=_threads_cell)
    before = torch.get_num_threads()
    result = run_sweep(exp, _testing.Config(n_cells=2, delay=0.0), tmp_path, quiet=True)
    assert result.table["torch_threads"].tolist() == [1, 1]
    assert torch.get_num_threads() == before


def test_a_dead_worker_is_reported_and_finished_cells_are_kept(tmp_path):
    config = _testing.Config(n_cells=4, delay=0.0, crash_on=(3,))
    with pytest.raises(RuntimeError, match="worker process died"):
        run_sweep(_testing.EXPERIMENT, config, tmp_path, workers=2, quiet=True)
    assert len(_stored(tmp_path)) <= 3


# ------------------------------------------------------------------------- cache and --data


def _caching_cell(config, cell):
    """A cell that 'pretrains' once per sweep folder: the first cell writes the cache file."""
    from syngeo.app.outputs import atomic_write_text
    from syngeo.app.sweep import cache_dir

    folder = cache_dir()
    if folder is None:
        return [{"index": cell["index"], "source": "no cache"}]
    path = folder / f"pretrained-seed{config.seed}.txt"
    if path.exists():
        return [{"index": cell["index"], "source": "reused " + path.read_text()}]
    atomic_write_text(path, f"by cell {cell['index']}")
    return [{"index": cell["index"], "source": "computed"}]


def test_cells_share_the_cache_folder_of_their_sweep_and_force_empties_it(tmp_path):
    import dataclasses

    from syngeo.app.sweep import cache_dir

    exp = dataclasses.replace(_testing.EXPERIMENT, run_cell=_caching_cell)
    config = _testing.Config(n_cells=3, delay=0.0)
    assert cache_dir() is None  # outside a cell
    first = run_sweep(exp, config, tmp_path, quiet=True).table
    assert list(first["source"]) == ["computed", "reused by cell 0", "reused by cell 0"]
    assert (tmp_path / "cache" / "pretrained-seed0.txt").read_text() == "by cell 0"
    assert cache_dir() is None  # restored after the sweep
    # a different sweep forced into the folder starts from an empty cache (the file name
    # ignores `delay`, so only the discarded cache makes the first cell compute again)
    changed = _testing.Config(n_cells=3, delay=0.001)
    again = run_sweep(exp, changed, tmp_path, force=True, quiet=True).table
    assert list(again["source"]) == ["computed", "reused by cell 0", "reused by cell 0"]
    assert _caching_cell(config, {"index": 7}) == [{"index": 7, "source": "no cache"}]


def test_with_data_sets_the_declared_field_as_an_absolute_path(tmp_path, monkeypatch):
    import dataclasses

    from syngeo.app.experiments import get

    fig7a = get("fig7a")
    assert fig7a.data_field == "data_dir"
    (tmp_path / "mnist").mkdir()
    (tmp_path / "mnist" / "t10k-images-idx3-ubyte").write_bytes(b"")
    monkeypatch.chdir(tmp_path)
    config = fig7a.with_data(fig7a.config(quick=True), "mnist")
    assert config.data_dir == str(tmp_path / "mnist")
    assert dataclasses.replace(config, data_dir=None) == fig7a.config(quick=True)
    with pytest.raises(InputError, match="takes no --data"):
        get("fig3a").with_data(get("fig3a").config(quick=True), "mnist")
    with pytest.raises(InputError, match="no such folder"):
        fig7a.with_data(config, tmp_path / "missing")
    with pytest.raises(InputError, match="is a file"):
        fig7a.with_data(config, tmp_path / "mnist" / "t10k-images-idx3-ubyte")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="empty"):
        fig7a.with_data(config, tmp_path / "empty")
    with pytest.raises(InputError, match="not a field"):
        dataclasses.replace(_testing.EXPERIMENT, data_field="data_dir")


def _cache_of_this_cell(config, cell):
    from syngeo.app.sweep import cache_dir

    config["barrier"].wait()  # both cells are inside at once
    seen = cache_dir()
    config["barrier"].wait()
    return [seen]


def test_cells_running_in_threads_at_once_each_see_their_own_cache(tmp_path):
    """An in-process Dask cluster runs cells of several sweeps in threads at once: each must see
    its own sweep's cache, and none may leave its folder set when it ends (a module global saved
    and restored by each call leaks one across them)."""
    import threading

    from syngeo.app.sweep import _CellCall, cache_dir

    config = {"barrier": threading.Barrier(2)}
    seen = {}

    def run(name, order):
        call = _CellCall(_cache_of_this_cell, str(tmp_path / name))
        order.wait() if order else None
        seen[name] = call(config, {})[0]

    start = threading.Barrier(2)
    threads = [threading.Thread(target=run, args=(n, start)) for n in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert seen == {"a": tmp_path / "a", "b": tmp_path / "b"}
    assert cache_dir() is None
    # sequential calls in one thread restore the state each found
    _CellCall(lambda c, cell: [cache_dir()], str(tmp_path / "c"))({}, {})
    assert cache_dir() is None
