"""Applications built on the syngeo core: the command line, reproduced experiments, reports and
resumable sweeps.

Nothing here defines mathematics: every module composes the public API of :mod:`syngeo` (and its
core modules). The dependency points one way only: ``syngeo.app`` imports the core, the core
never imports ``syngeo.app`` (a test checks this).

* :mod:`syngeo.app.cli` — the ``syngeo`` command (typer);
* :mod:`syngeo.app.experiments` — one :class:`~syngeo.app.experiments.Experiment` per reproduced
  figure;
* :mod:`syngeo.app.sweep` — cells, the resumable store and executors;
* :mod:`syngeo.app.report`, :mod:`syngeo.app.outputs`, :mod:`syngeo.app.plotting` — results
  folders, figures and reports.
"""
