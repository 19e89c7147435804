"""Reproduced experiments: one :class:`Experiment` object per figure, listed in :data:`EXPERIMENTS`.

An experiment is an explicit object (:class:`~syngeo.app.experiments.base.Experiment`) holding its
name, title, ``Config`` dataclass (defaults: the paper's protocol), ``quick`` preset, and the
functions ``cells``, ``run_cell``, ``summarise``, ``plot`` and ``report``. The modules here
define them from the public core API (:mod:`syngeo`) only:

==========================  ==========================================================
module                      experiments
==========================  ==========================================================
``regression``              ``fig3a``, ``fig6`` (Pogodin et al. Figs. 3A, 6)
``robustness``              ``fig3b`` (Pogodin et al. Fig. 3B)
``surace``                  ``surace-fig1``, ``surace-fig2`` (Surace & Brea Figs. 1, 2)
``deep``                    ``fig4``, ``fig7a``, ``fig7b`` (Pogodin et al. Figs. 4, 7)
``raman`` (a package)       ``raman-k``, ``raman-difficulty``, ``raman-size``,
                            ``raman-geometry``, ``raman-deep``,
                            ``raman-training`` (Raman et al.)
``spines``                  ``fig5`` (Pogodin et al. Fig. 5, spine volumes)
``power``                   ``power`` (experiment design: synapses needed vs noise)
==========================  ==========================================================

:func:`get` looks an experiment up by its exact name; :func:`run` returns the table of every
cell through :func:`syngeo.app.sweep.run_sweep` (the path ``syngeo reproduce`` takes too):
resumably in a folder, in a process pool or on a Dask cluster.

>>> [e.name for e in EXPERIMENTS][:3]
['fig3a', 'fig6', 'fig3b']
>>> get("fig3b").title
'Pogodin et al. Fig. 3B: robustness of the inferred potential'
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from syngeo.app.experiments import deep, power, regression, robustness, spines, surace
from syngeo.app.experiments.base import Experiment
from syngeo.app.experiments.raman import deep as raman_deep
from syngeo.app.experiments.raman import difficulty, geometry, k, size, training
from syngeo.errors import InputError

__all__ = [
    "EXPERIMENTS",
    "QUICK_SECONDS",
    "QUICK_SECONDS_MACHINE",
    "Experiment",
    "get",
    "run",
]

#: Every experiment ``syngeo reproduce`` knows, in the order it lists them.
EXPERIMENTS: tuple[Experiment, ...] = (
    regression.FIG3A,
    regression.FIG6,
    robustness.FIG3B,
    deep.FIG4,
    spines.FIG5,
    deep.FIG7A,
    deep.FIG7B,
    surace.FIG1,
    surace.FIG2,
    k.EXPERIMENT,
    difficulty.EXPERIMENT,
    size.EXPERIMENT,
    geometry.EXPERIMENT,
    raman_deep.EXPERIMENT,
    training.EXPERIMENT,
    power.POWER,
)


#: How :data:`QUICK_SECONDS` was measured (shown by ``syngeo reproduce --list``).
QUICK_SECONDS_MACHINE = (
    "as CPU time of one worker on an x86 core (about the wall-clock time when the core is idle)"
)

#: Seconds of ``syngeo reproduce NAME --quick`` with one worker (cells run one after another on
#: one thread), start-up and writing the outputs included: the CPU time (user + system) of the
#: process, measured with ``/usr/bin/time`` once per experiment (syngeo 0.1.0, 2-core x86 machine).
#: The machine was shared with other jobs (load average in the comments), so the wall-clock
#: times were several times longer; the CPU time is what the run costs on an idle core.
#: Remeasure when an experiment's quick preset changes.
QUICK_SECONDS: dict[str, float] = {
    "fig3a": 8,  # wall 30 s under load 5.82
    "fig6": 14,  # wall 81 s under load 6.03
    "fig3b": 8,  # wall 10 s under load 5.41
    "fig4": 17,  # wall 139 s under load 7.78
    "fig5": 30,  # wall 268 s under load 8.90
    "fig7a": 13,  # wall 128 s under load 10.54
    "fig7b": 15,  # wall 196 s under load 12.17
    "surace-fig1": 7,  # wall 100 s under load 11.32
    "surace-fig2": 10,  # wall 104 s under load 9.90
    "raman-k": 8,  # wall 104 s under load 9.13
    "raman-difficulty": 10,  # wall 136 s under load 9.10
    "raman-size": 12,  # wall 137 s under load 8.00
    "raman-geometry": 10,  # wall 78 s under load 7.39
    "raman-deep": 17,  # wall 206 s under load 7.87
    "raman-training": 12,  # wall 118 s under load 7.90
    "power": 8,  # wall 41 s under load 7.68
}


def get(name: str) -> Experiment:
    """The experiment called exactly ``name`` (see ``syngeo reproduce --list``)."""
    for experiment in EXPERIMENTS:
        if experiment.name == name:
            return experiment
    known = ", ".join(e.name for e in EXPERIMENTS)
    raise InputError(
        f"unknown experiment {name!r}; choose one of: {known} (syngeo reproduce --list)"
    )


def run(
    experiment: Experiment | str,
    config: Any | None = None,
    *,
    out: Any | None = None,
    workers: int = 1,
    scheduler: str | None = None,
    force: bool = False,
    quiet: bool = True,
) -> pd.DataFrame:
    """Run every cell of ``experiment`` (an :class:`Experiment` or its name); the tidy table.

    The cells go through :func:`syngeo.app.sweep.run_sweep`, the same path as
    ``syngeo reproduce``: with ``out`` the finished cells are stored there (and a rerun resumes);
    without it they are stored in a temporary folder that is removed afterwards. ``workers`` and
    ``scheduler`` choose the executor (see :mod:`syngeo.app.sweep`).
    """
    import tempfile

    from syngeo.app.sweep import run_sweep

    exp = get(experiment) if isinstance(experiment, str) else experiment
    options = {"workers": workers, "scheduler": scheduler, "quiet": quiet}
    if out is not None:
        return run_sweep(exp, config, out, force=force, **options).table
    with tempfile.TemporaryDirectory(prefix=f"syngeo-{exp.name}-") as tmp:
        return run_sweep(exp, config, tmp, **options).table
